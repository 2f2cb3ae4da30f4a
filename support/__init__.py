"""What the tests, the benchmarks (bench/) and the chaos and cluster runs (runs/) share: a fresh
database and the service's processes with the one builder of their environment (stack.py), the
servers they run beside it (redis.py, mailbox.py, seaweed.py, pgbouncer.py), one seeder
(seeding.py), the measures (measures.py) and the table of the machine's programs (tools.py).
It imports only `pmd_service` (an import-linter contract in pyproject.toml keeps it so);
nothing here is shipped."""
