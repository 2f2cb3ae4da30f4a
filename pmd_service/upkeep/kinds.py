"""The claimed job kinds the sweep and the cleanup loop over, in the order they visit them."""

from __future__ import annotations

from ..bdr.job import BDR
from ..exports.job import EXPORT
from ..jobs.kind import JobKind

KINDS: tuple[JobKind, ...] = (BDR, EXPORT)
