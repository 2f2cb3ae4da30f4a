"""Public sqids of users and posts: `Sqids(alphabet, min_length=0).encode([id])`."""

from __future__ import annotations

from sqids import Sqids


class PublicIds:
    def __init__(self, alphabet: str) -> None:
        self._sqids = Sqids(alphabet=alphabet, min_length=0)
        self._alphabet = frozenset(alphabet)

    def encode(self, numeric_id: int) -> str:
        return self._sqids.encode([numeric_id])

    def in_alphabet(self, value: str) -> bool:
        """Whether `value` is non-empty and of the alphabet alone, fit to be part of a file name."""
        return bool(value) and self._alphabet.issuperset(value)
