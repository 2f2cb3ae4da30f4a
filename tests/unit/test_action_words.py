"""The page's bulk action words and flags come from the action records (features/posts/actions.py
ACTIONS): `web/static/action_words.js` is generated from them, and `make lint` checks it."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest

from pmd_service.features.posts.action_shape import PageWords
from pmd_service.features.posts.actions import ACTIONS, HIDE, LICENSE, REMIXABLE, RESTORE
from pmd_service.features.posts.endpoints import ENDPOINTS
from pmd_service.web import action_words


def exported(name: str) -> Any:
    """The value of the module's `export const name = …;`."""
    found = re.search(rf"^export const {name} = (.*?);$", action_words.module_text(), re.M | re.S)
    assert found is not None, name
    return json.loads(found[1])


def test_the_pages_action_words_are_the_records() -> None:
    """Changing a record's words without regenerating the page's module fails here."""
    assert action_words.MODULE.read_text("utf-8") == action_words.module_text(), (
        "run: python -m pmd_service.web.action_words"
    )
    assert action_words.main(["--check"]) == 0


def test_the_page_reads_each_actions_words_and_where_it_goes() -> None:
    words = exported("ACTION_WORDS")
    assert list(words) == [a.name for a in ACTIONS]
    assert words["hide"] == action_words.page_words(HIDE)
    # The server's words where the page says the same, the record's page words where not.
    assert words["hide"]["already"] == HIDE.already and words["hide"]["done"] == "hidden"
    assert words["restore"]["already"] == "already restored" != RESTORE.already
    assert words["remixable"]["undone"] == REMIXABLE.undone
    assert exported("MOVING") == ["delete", "restore"]
    assert exported("RESTORING") == ["restore"]
    assert exported("ENDPOINTS")["license"] == "/api/pmd/license"
    assert exported("ENDPOINTS")["hide"] == action_words.SHARED_ENDPOINT


def test_an_action_said_by_a_function_names_its_count_for_the_page() -> None:
    """A `past` the server composes from the row is no word for the page's "3 posts …"."""
    unsaid = replace(LICENSE, page=PageWords(doing="Changing the license of", did="Changed"))
    with pytest.raises(ValueError, match="license: its PageWords need `done`"):
        action_words.page_words(unsaid)


def test_the_page_sends_each_action_to_one_of_the_posts_routes() -> None:
    routes = {e.path for e in ENDPOINTS if e.method == "post"}
    for action in ACTIONS:
        assert action_words.endpoint(action) in routes, action.name
