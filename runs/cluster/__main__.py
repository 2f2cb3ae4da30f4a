"""`python -m runs.cluster`: the entry point; the run itself is runs/cluster/run.py."""

import sys

from runs.cluster.run import main

sys.exit(main())
