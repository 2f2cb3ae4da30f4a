"""What the tests, the benchmarks (bench/), the runs (runs/) and `make lint` share; it imports
only `pmd_service` (an import-linter contract keeps it so), and nothing here is shipped."""
