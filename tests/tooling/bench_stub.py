"""A benchmark that measures nothing: `--json PATH` gets one figure, for the runner's tests."""

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps({"nothing": 0}))
