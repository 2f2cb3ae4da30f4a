"""The repeated-key check on request bodies, `python -m bench.json_keys`.

A 128-id POST /api/pmd/action body decoded as the server decodes it (`decode_json`: msgspec,
then the repeated-key check) against msgspec alone, and the check's exact path (a key's name also
inside a value), which only such bodies pay. Prints seconds per call (and to `--json`).
"""

from __future__ import annotations

import json
import timeit

import msgspec

from bench import cli
from pmd_service.api.validation import decode_json
from pmd_service.posts.schemas import ActionRequest

IDS = list(range(900_001, 900_129))
PLAIN = json.dumps({"action": "delete", "post_ids": IDS, "target_sqid": "k3Xa9"}).encode()
# `"action"` twice in the bytes: the fast check cannot rule out a repeat.
KEY_AS_VALUE = json.dumps({"action": "delete", "post_ids": IDS, "target_sqid": "action"}).encode()


def main() -> None:
    args = cli.parser("json_keys", __doc__).parse_args()
    stmts = {
        "base": lambda: msgspec.json.decode(PLAIN, type=ActionRequest),
        "checked": lambda: decode_json(PLAIN, ActionRequest),
        "exact": lambda: decode_json(KEY_AS_VALUE, ActionRequest),
    }
    t = dict.fromkeys(stmts, float("inf"))
    for _ in range(7):  # taking turns, so a shared machine's noise falls on all alike
        for name, stmt in stmts.items():
            t[name] = min(t[name], timeit.timeit(stmt, number=10_000) / 10_000)
    base = t["base"]
    print(f"128-id action body, {len(PLAIN)} bytes, best of 7 × 10,000 calls each")
    print(f"  msgspec decode alone:                    {base * 1e6:6.2f} µs")
    labels = {"checked": "decode + fast check", "exact": "exact check (key as value)"}
    for name, label in labels.items():
        print(f"  decode_json, {label + ':':<28}{t[name] * 1e6:6.2f} µs  ({t[name] / base:.2f}×, "
              f"+{(t[name] - base) * 1e6:.2f} µs)")  # fmt: skip
    cli.save(args.json, t)


if __name__ == "__main__":
    main()
