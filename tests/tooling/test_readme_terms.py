"""The README defines its three words of the trade where a reader first meets them (issue 33):
BDR, sqid and Makapix Club."""

from __future__ import annotations

import re

from tests.helpers import CHECKOUT

README = (CHECKOUT / "README.md").read_text()


def _first_sentence_with(word: str) -> str:
    """The sentence (up to its full stop) in which `word` first occurs, on one line."""
    flat = " ".join(README.split())
    at = re.search(rf"\b{word}\b", flat)
    assert at is not None, word
    start = flat.rfind(". ", 0, at.start()) + 2
    end = flat.find(". ", at.end())
    return flat[start:end]


def test_bdr_sqid_and_makapix_club_are_defined_at_their_first_use() -> None:
    assert "batch download request, BDR for short" in _first_sentence_with("BDR")
    sqid = _first_sentence_with("sqid")
    assert "a short public id" in sqid and "Sqids" in sqid, sqid
    club = _first_sentence_with("Makapix Club")
    assert "community site" in club and "makapix.club" in club, club
