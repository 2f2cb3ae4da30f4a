"""What the tests, the benchmarks (bench/) and the runs (runs/) share; it imports only
`pmd_service` (an import-linter contract keeps it so), and nothing here is shipped."""
