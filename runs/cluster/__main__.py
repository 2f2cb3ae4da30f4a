"""`python -m runs.cluster`: see runs/cluster/run.py."""

import sys

from runs.cluster.run import main

sys.exit(main())
