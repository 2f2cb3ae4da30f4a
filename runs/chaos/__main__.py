"""`python -m runs.chaos`: runs/chaos/run.py."""

import contextlib
import sys

from runs.chaos.run import main

with contextlib.suppress(KeyboardInterrupt):
    sys.exit(main())
sys.exit(130)
