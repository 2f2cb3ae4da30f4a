"""`python -m bench NAME [args…]` runs bench.NAME (or run_all's mode NAME); `python -m bench`
lists them: each module here with a `__main__`, by its docstring's first paragraph."""

from __future__ import annotations

import ast
import re
import runpy
import sys
from pathlib import Path

from bench.run_all import BENCHMARKS

HERE = Path(__file__).parent
MODES = {b.name: b for b in BENCHMARKS if b.module}  # e.g. `sse_box`: `sse --box`


def summary(name: str) -> str:
    """The docstring's first paragraph on one line, without its command line."""
    doc = ast.get_docstring(ast.parse((HERE / f"{name}.py").read_text())) or ""
    return re.sub(r"[:,]? ?`python -m bench\.\w+[^`]*`", "", " ".join(doc.split("\n\n")[0].split()))


def main(argv: list[str]) -> None:
    known = {p.stem: summary(p.stem) for p in HERE.glob("[!_]*.py")
             if p.stem != "run_all" and 'if __name__ == "__main__":' in p.read_text()}  # fmt: skip
    known |= {n: f"{summary(n)} (`{m.module} {' '.join(m.args)}`)" for n, m in MODES.items()}
    if not argv or argv[0] in ("-h", "--help"):
        print("python -m bench NAME [args…] runs one (NAME --help: its options); all of them, with")
        print("the docs rendered from their figures: python -m bench.run_all\n")
        width = max(map(len, known))
        print("\n".join(f"  {name:<{width}}  {known[name]}" for name in sorted(known)))
        return
    name, args = argv[0], argv[1:]
    if name not in known:
        sys.exit(f"no benchmark {name!r}; `python -m bench` lists them")
    mode = MODES.get(name)
    module, extra = (mode.module, list(mode.args)) if mode else (name, [])
    sys.argv = [f"bench.{module}", *extra, *args]
    runpy.run_module(f"bench.{module}", run_name="__main__", alter_sys=True)


main(sys.argv[1:])
