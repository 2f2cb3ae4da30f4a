"""The page's bulk action words and flags, generated from their one definition (the records of
features/posts/actions.py ACTIONS) into `web/static/action_words.js`, which the page imports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core import generated
from ..features.posts.action_shape import BulkAction
from ..features.posts.actions import ACTIONS

MODULE = Path(__file__).parent / "static" / "action_words.js"
# Where an action is sent unless it has an endpoint of its own, POST /api/pmd/<its name>
# (tests/unit/test_action_words.py holds each such path one of the posts' routes).
SHARED_ENDPOINT = "/api/pmd/action"


def page_words(action: BulkAction) -> dict[str, str]:
    page = action.page
    done = page.done or (action.past.lower() if isinstance(action.past, str) else None)
    already = page.already or action.already
    if done is None or already is None:
        raise ValueError(f"{action.name}: its PageWords need `done` and `already`")
    return {
        "verb": action.verb[:1].upper() + action.verb[1:],
        "doing": page.doing,
        "done": done,
        "already": already,
        "did": page.did,
        "undone": action.undone,
    }


def endpoint(action: BulkAction) -> str:
    return f"/api/pmd/{action.name}" if action.own_endpoint else SHARED_ENDPOINT


def module_text() -> str:
    def table(value: object, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    # Posts an action writes `deleted_by_user` of go from "Posts" to "Recently deleted" or back.
    moving = [a.name for a in ACTIONS if "deleted_by_user" in a.writes]
    return f"""\
// Generated from pmd_service/features/posts/actions.py ACTIONS by
// `python -m pmd_service.web.action_words`: edit that, not this file.

// Each bulk action's words, by its name: `verb` a title's ("Hide" 3 posts?), `doing` and `done`
// the batch line's ("Hiding" 3 posts…, 3 posts "hidden"), `already` the posts found already so
// ("; 1 already hidden"), `did` "Recent actions"' ("Hid" 3 posts), `undone` what an undo names
// ("Undid the hide of" 3 posts).
export const ACTION_WORDS = {table({a.name: page_words(a) for a in ACTIONS}, 2)};
// Actions that move posts between "Posts" and "Recently deleted".
export const MOVING = {table(moving)};
// Actions that bring deleted posts back.
export const RESTORING = {table([a.name for a in ACTIONS if a.restores])};
// Where each action is sent.
export const ENDPOINTS = {table({a.name: endpoint(a) for a in ACTIONS}, 2)};
"""


def main(argv: list[str] | None = None) -> int:
    prog = "python -m pmd_service.web.action_words"
    return generated.main(prog, __doc__.split("\n\n")[0], MODULE, module_text, argv)


if __name__ == "__main__":
    sys.exit(main())
