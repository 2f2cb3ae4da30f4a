"""The code map's check (`python -m support.code_map`, run by `make lint`) finds a path the
page names that is not in the tree, wherever the page names it."""

from __future__ import annotations

from support.code_map import PAGE, missing

PAGE_TEXT = """# Architecture

See `pmd_service/core/db.py` and `tests/unit/test_gone.py::test_x`.

## Code map

```
core/ : dev/gone.py                 what every process uses
```

| where | holds |
|---|---|
| `sse/` | `hub.py` (the hub), `access.py` |
| `core/db.py` | pools |

## Next

`sse/hub.py`, `web/nothing.py`, `data/artworks/x.png` (inside a ZIP, not the tree).
"""


def test_the_shipped_page_names_only_what_exists() -> None:
    assert missing(PAGE.read_text("utf-8")) == []


def test_every_kind_of_stale_path_is_found() -> None:
    assert sorted(missing(PAGE_TEXT)) == [
        "dev/gone.py",
        "sse/: access.py",
        "tests/unit/test_gone.py",
        "web/nothing.py",
    ]
