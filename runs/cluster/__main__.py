"""`python -m runs.cluster`: runs/cluster/run.py."""

import sys

from runs.cluster.run import main

sys.exit(main())
