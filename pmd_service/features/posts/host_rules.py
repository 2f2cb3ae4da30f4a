"""The host's own rules for a post's metadata, kept by every bulk write of the service."""

from __future__ import annotations

from collections.abc import Iterable

ND_LICENSE_IDENTIFIERS = ("CC-BY-ND-4.0", "CC-BY-NC-ND-4.0")
# SQL: the license `license_id` is NoDerivatives. The identifiers are constants, never input.
_ND_ARRAY = "ARRAY[" + ", ".join(f"'{i}'" for i in ND_LICENSE_IDENTIFIERS) + "]::text[]"


def is_nd_license(license_id: str) -> str:
    """SQL: the license `license_id` is NoDerivatives (false for NULL)."""
    return (
        f"coalesce((SELECT l_nd.identifier::text = ANY({_ND_ARRAY}) FROM licenses l_nd"
        f" WHERE l_nd.id = {license_id}), false)"
    )


# An artist's tags a post and a tag's length, as the host's PostUpdate.hashtags bounds them.
MAX_TAGS_PER_POST = 64
MAX_TAG_LENGTH = 64
# A moderator's tags a post (the host's MAX_MOD_HASHTAGS_PER_POST).
MAX_MOD_TAGS_PER_POST = 16


def normalize_hashtags(tags: Iterable[str]) -> list[str]:
    """The host's normalisation: stripped, one leading '#' dropped, lowercased, deduplicated."""
    stripped = (raw.strip() for raw in tags)
    lowered = ((tag[1:].strip() if tag.startswith("#") else tag).lower() for tag in stripped)
    return list(dict.fromkeys(tag for tag in lowered if tag))
