"""`python -m bench NAME [args…]` runs bench.NAME (or run_all's mode NAME), or lists them."""

from __future__ import annotations

import runpy
import sys

from bench.runner import BENCHMARKS

known = {b.name: b for b in BENCHMARKS}
if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
    print("python -m bench NAME [args…] runs one (NAME --help: its options); all of them, with")
    print("the docs rendered from their figures: python -m bench.run_all\n")
    width = max(map(len, known))
    for b in BENCHMARKS:
        mode = f" (`{b.module} {' '.join(b.args)}`)" if b.module else ""
        print(f"  {b.name:<{width}}  {b.about}{mode}")
    sys.exit(0)
name, args = sys.argv[1], sys.argv[2:]
if name not in known:
    sys.exit(f"no benchmark {name!r}; `python -m bench` lists them")
bench = known[name]
extra = list(bench.args) if bench.module else []
sys.argv = [bench.target, *extra, *args]
runpy.run_module(bench.target, run_name="__main__", alter_sys=True)
