"""A JSON file's texts as the host's payloads carry them (`<name>`, `<name>_markup`, `mentions`):
each mention is a slot (`"mentions": 0`) that `fill` replaces, once msgspec has laid the document
out, with accounts encoded once a file (docs/benchmarks-details.md, "Mentions served plain")."""

from __future__ import annotations

from itertools import repeat
from typing import Any

import msgspec

from ..host.mentions import Mentions

PAD = b"  "  # msgspec.json.format's indent=2, one level
# A slot can only be ours: inside a JSON string a quote is escaped, and no other key is so named.
_SLOT = b'"mentions": 0'
_OPEN = b'"mentions": [\n'
_PLACE = msgspec.Raw(_SLOT.rpartition(b" ")[2])


class MentionSlots:
    """The mentions of one file's texts, whose `mentions` keys sit at indentation `key_pad`."""

    def __init__(self, mentions: Mentions, key_pad: bytes) -> None:
        self._mentions = mentions
        self._item_pad = key_pad + PAD
        self._close = b"\n" + key_pad + b"]"
        self._laid_out: dict[str, bytes] = {}  # an account's object, indented for this file
        self._slots: list[bytes] = []

    def fields(self, text: str | None, name: str) -> dict[str, Any]:
        """`name` plain, `<name>_markup` as stored, and `mentions` (a slot when there are any)."""
        plain, sqids = self._mentions.split(text)
        if not sqids:
            return {name: plain, f"{name}_markup": text, "mentions": []}
        laid_out = self._laid_out
        try:  # mapped in C: a download's texts name the same few accounts again and again
            refs = b",\n".join(map(laid_out.__getitem__, sqids))
        except KeyError:
            for sqid in sqids:
                if sqid not in laid_out:
                    laid_out[sqid] = indented(self._mentions.accounts[sqid], self._item_pad)
            refs = b",\n".join(map(laid_out.__getitem__, sqids))
        self._slots.append(refs)
        return {name: plain, f"{name}_markup": text, "mentions": _PLACE}

    def fill(self, laid_out: bytes) -> bytes:
        """`laid_out` (msgspec's pretty-printing) with each slot's accounts in place."""
        slots = self._slots
        if not slots:
            return laid_out
        pieces = laid_out.split(_SLOT)
        if len(pieces) != len(slots) + 1:
            raise ValueError(f"{len(slots)} mention slots made, {len(pieces) - 1} laid out")
        n = len(slots)
        joined = [_OPEN] * (4 * n + 1)  # text, open, accounts, close, text, ...: no call a slot
        joined[0::4] = pieces
        joined[2::4] = slots
        joined[3::4] = repeat(self._close, n)
        return b"".join(joined)

    def clear(self) -> None:
        """Forget the slots filled so far (a streamed file fills each piece as it goes)."""
        self._slots.clear()


def indented(value: object, pad: bytes) -> bytes:
    laid_out = msgspec.json.format(msgspec.json.encode(value), indent=2)
    # Strings never hold a raw newline in JSON (it is escaped), so every b"\n" is layout.
    return pad + laid_out.replace(b"\n", b"\n" + pad)
