"""`python -m runs.cluster`: runs/cluster/run.py."""

from runs.cluster.run import main

raise SystemExit(main())
