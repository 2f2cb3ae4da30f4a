"""Names of ZIP entries, built from host data that may be anything (`../../../evil`), so each
part of a name is checked here before anything is built from it."""

from __future__ import annotations

import re

from ..core.public_ids import PublicIds

# post_files.format is varchar(10) on the host; an artwork's extension is a short lowercase word.
_EXTENSION = re.compile(r"[a-z0-9]{1,10}", re.ASCII)
FALLBACK_EXTENSION = "bin"


def safe_part(value: str) -> bool:
    """Fit to be one path component: no separator of any OS, no `..`, no control character
    (SQIDS_ALPHABET is configuration: it may hold `.`, `/` or `\\`)."""
    return (
        bool(value)
        and ".." not in value
        and not any(c in "/\\" or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)
    )


def post_sqid(stored: str | None, post_id: int, ids: PublicIds) -> str:
    """The host's sqid when it is safe, else the post id encoded, else the plain decimal id."""
    if stored and ids.in_alphabet(stored) and safe_part(stored):
        return stored
    encoded = ids.encode(post_id)
    return encoded if safe_part(encoded) else str(post_id)


def extension(fmt: str | None) -> str:
    """The host's format as a file extension when it is a short lowercase word, else `bin`."""
    return fmt if fmt is not None and _EXTENSION.fullmatch(fmt) else FALLBACK_EXTENSION
