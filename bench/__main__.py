"""`python -m bench NAME [args…]` runs one benchmark, as `python -m bench.NAME [args…]` would;
`python -m bench` lists them, one line each (a benchmark is a module here with a `__main__`)."""

from __future__ import annotations

import ast
import re
import runpy
import sys
from pathlib import Path

from bench.run_all import BENCHMARKS

HERE = Path(__file__).parent
# run_all's names that are a mode of another benchmark (`sse_box`: `sse --box`).
MODES = {b.name: b for b in BENCHMARKS if b.module}


def summary(name: str) -> str:
    """What bench/NAME.py measures: its docstring's first paragraph, without the command line."""
    doc = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text())) or ""
    return re.sub(r"[:,]? ?`python -m bench\.\w+[^`]*`", "", " ".join(doc.split("\n\n")[0].split()))


def benchmarks() -> dict[str, str]:
    """Each benchmark's short name and what it measures."""
    found = {
        path.stem: summary(path.stem)
        for path in HERE.glob("[!_]*.py")
        if path.stem != "run_all" and 'if __name__ == "__main__":' in path.read_text()
    }
    for name, mode in MODES.items():
        found[name] = f"{summary(name)} (`{mode.module} {' '.join(mode.args)}`)"
    return dict(sorted(found.items()))


def main(argv: list[str]) -> None:
    known = benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print("python -m bench NAME [args…] runs one (NAME --help: its options); all of them, with")
        print("the docs rendered from their figures: python -m bench.run_all\n")
        width = max(map(len, known))
        print("\n".join(f"  {name:<{width}}  {doc}" for name, doc in known.items()))
        return
    name, args = argv[0], argv[1:]
    if name not in known:
        sys.exit(f"no benchmark {name!r}; `python -m bench` lists them")
    module = MODES[name].module if name in MODES else name
    extra = list(MODES[name].args) if name in MODES else []
    sys.argv = [f"bench.{module}", *extra, *args]
    runpy.run_module(f"bench.{module}", run_name="__main__", alter_sys=True)


main(sys.argv[1:])
