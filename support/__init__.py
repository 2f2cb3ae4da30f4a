"""What the tests, benchmarks, runs and `make lint` share; it imports only `pmd_service`."""
