"""The host's own rules for a post's metadata, kept by every bulk write of the service.

From the host (Makapix Club): `ND_LICENSE_IDENTIFIERS` of api/app/utils/provenance.py (rule L5:
a NoDerivatives work is never remixable), `normalize_hashtags` of api/app/utils/hashtags.py and
the limits of api/app/constants.py and schemas.py (PostUpdate.hashtags).
"""

from __future__ import annotations

from collections.abc import Iterable

ND_LICENSE_IDENTIFIERS = ("CC-BY-ND-4.0", "CC-BY-NC-ND-4.0")
# SQL: the license `license_id` is NoDerivatives. The identifiers are constants, never input.
_ND_ARRAY = "ARRAY[" + ", ".join(f"'{i}'" for i in ND_LICENSE_IDENTIFIERS) + "]::text[]"


def is_nd_license(license_id: str) -> str:
    """SQL: the license whose id is the expression `license_id` is NoDerivatives (false for
    NULL, no license)."""
    return (
        f"coalesce((SELECT l_nd.identifier::text = ANY({_ND_ARRAY}) FROM licenses l_nd"
        f" WHERE l_nd.id = {license_id}), false)"
    )


# An artist's tags a post (the host's PostUpdate.hashtags) and a tag's length (its
# MAX_HASHTAG_LENGTH, the player's verify bound).
MAX_TAGS_PER_POST = 64
MAX_TAG_LENGTH = 64
# A moderator's tags a post (the host's MAX_MOD_HASHTAGS_PER_POST).
MAX_MOD_TAGS_PER_POST = 16


def normalize_hashtags(tags: Iterable[str]) -> list[str]:
    """The host's normalisation: strip, drop one leading '#', strip again, lowercase, drop
    empties, dedupe keeping order (no cap: the caller decides what more than 64 means)."""
    normalized: list[str] = []
    for raw in tags:
        tag = raw.strip()
        if tag.startswith("#"):
            tag = tag[1:].strip()
        tag = tag.lower()
        if tag and tag not in normalized:
            normalized.append(tag)
    return normalized
