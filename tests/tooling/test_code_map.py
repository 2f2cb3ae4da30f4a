"""Every path docs/architecture.md names exists (`make lint` runs this file, so the code map
cannot drift from the tree): the paths the page names from the checkout's root (`pmd_service/…`,
`tests/…`, `bench/…`, …) or from the package (`sse/hub.py`, `web/static/`), and, in the code
map's table, each module a row names bare (`listing.py`), which must be in one of the row's
folders."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
PACKAGE = "pmd_service"
# The checkout's own top-level folders a path on the page may start with.
TOP = (
    "pmd_service",
    "tests",
    "bench",
    "support",
    "runs",
    "migrations",
    "docs",
    "scripts",
    "deploy",
)
_CODE = re.compile(r"`([^`\n]+)`")
# A path as the page writes one: folders and a file name, no placeholder or pattern.
_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?$")


def _path(token: str) -> str | None:
    """`token` as a path the page names (a pytest id's file), or None when it is not one."""
    token = token.split("::")[0]
    return token if _PATH.match(token) and ("/" in token or token.endswith(".py")) else None


def _exists(root: Path, path: str) -> bool:
    target = root / path
    return target.is_dir() if path.endswith("/") else target.is_file()


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def missing(text: str, root: Path = ROOT) -> list[str]:
    """The paths `text` (the page) names that are not in the checkout at `root`."""
    package = root / PACKAGE
    rooms = {p.name for p in package.iterdir() if p.is_dir() and not p.name.startswith("_")}
    gone: dict[str, None] = {}

    def check(path: str, *bases: Path, label: str | None = None) -> None:
        if not any(_exists(base, path) for base in bases):
            gone[label or path] = None

    for token in _CODE.findall(text):
        path = _path(token)
        if path is None or "/" not in path:
            continue
        first = path.split("/")[0]
        if first in TOP:
            check(path, root)
        elif first in rooms:
            check(path, package)
    code_map = _section(text, "Code map")
    # The layers' block: each line's first column names rooms and modules of the package.
    block = code_map.split("```")[1]
    for line in block.splitlines():
        for token in re.split(r"\s{2,}", line.strip())[0].split():
            path = _path(token)
            if path is not None:
                check(path, package, root)
    # The table: a row's folders (first column), and the modules it names bare in the second.
    for row in code_map.splitlines():
        if not row.startswith("| `"):
            continue
        where, holds = row.split(" | ", 1)
        folders = [package / p for p in map(_path, _CODE.findall(where)) if p and p.endswith("/")]
        for token in _CODE.findall(holds):
            path = _path(token)
            if path is not None and path.split("/")[0] not in {*TOP, *rooms}:
                check(path, package, *folders, label=f"{', '.join(_CODE.findall(where))}: {path}")
    return list(gone)


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
