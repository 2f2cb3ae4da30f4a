"""Public sqids of users and posts: `Sqids(alphabet, min_length=0).encode([id])`."""

from __future__ import annotations

from sqids import Sqids


class PublicIds:
    def __init__(self, alphabet: str) -> None:
        self._sqids = Sqids(alphabet=alphabet, min_length=0)

    def encode(self, numeric_id: int) -> str:
        value: str = self._sqids.encode([numeric_id])
        return value

    def decode(self, sqid: str) -> int | None:
        """The id behind `sqid`, or None when it is not the canonical encoding of one id."""
        numbers: list[int] = self._sqids.decode(sqid)
        if len(numbers) != 1 or self.encode(numbers[0]) != sqid:
            return None
        return numbers[0]
