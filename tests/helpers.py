"""What many test modules share: the checkout the suite runs in, and (see issue of the
reshaping) the helpers that were spread over test modules."""

from __future__ import annotations

from pathlib import Path

# server.py and worker.py run from here, and .data holds the embedded servers.
CHECKOUT = Path(__file__).resolve().parent.parent
