"""The repeated-key check on request bodies, `python -m bench.json_keys`.

Not a test: prints figures (per call, in seconds, to `--json` too), exits 0. A POST /api/pmd/action body with 128 ids decoded as the
server decodes it (`decode_json`: msgspec, then the repeated-key check) against msgspec's decode
alone, in the same run; and the check's exact path (a field's name also inside a value, so the
body is parsed again with every key pair seen), which only such bodies pay.
"""

from __future__ import annotations

import json
import timeit

import msgspec

from bench import cli
from pmd_service.posts.schemas import ActionRequest
from pmd_service.web.validation import decode_json

IDS = list(range(900_001, 900_129))
PLAIN = json.dumps({"action": "delete", "post_ids": IDS, "target_sqid": "k3Xa9"}).encode()
# `"action"` twice in the bytes: the fast check cannot rule out a repeat.
KEY_AS_VALUE = json.dumps({"action": "delete", "post_ids": IDS, "target_sqid": "action"}).encode()


def interleaved(
    stmts: dict[str, object], number: int = 10_000, rounds: int = 7
) -> dict[str, float]:
    """Best time per call of each, the statements taking turns (a shared machine's noise then
    falls on all of them alike)."""
    best = dict.fromkeys(stmts, float("inf"))
    for _ in range(rounds):
        for name, stmt in stmts.items():
            t = timeit.timeit(stmt, number=number)  # type: ignore[arg-type]
            best[name] = min(best[name], t / number)
    return best


def main() -> None:
    args = cli.parser("json_keys", __doc__).parse_args()
    t = interleaved({
        "base": lambda: msgspec.json.decode(PLAIN, type=ActionRequest),
        "checked": lambda: decode_json(PLAIN, ActionRequest),
        "exact": lambda: decode_json(KEY_AS_VALUE, ActionRequest),
    })  # fmt: skip
    base, checked, exact = t["base"], t["checked"], t["exact"]
    print(f"128-id action body, {len(PLAIN)} bytes, best of 7 × 10,000 calls each")
    print(f"  msgspec decode alone:                    {base * 1e6:6.2f} µs")
    print(
        f"  decode_json (decode + fast check):       {checked * 1e6:6.2f} µs  "
        f"({checked / base:.2f}×, +{(checked - base) * 1e6:.2f} µs)"
    )
    print(
        f"  decode_json, exact check (key as value): {exact * 1e6:6.2f} µs  "
        f"({exact / base:.2f}×, +{(exact - base) * 1e6:.2f} µs)"
    )
    cli.save(args.json, t)


if __name__ == "__main__":
    main()
