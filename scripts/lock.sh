#!/usr/bin/env bash
# Regenerates the hashed locks under requirements/ from pyproject.toml (`make lock`; add
# `--upgrade` to move every pin to the newest release the ranges allow, `--upgrade-package X`
# for one). uv resolves for every platform and every Python the project supports (3.11+) at
# once, keeping environment markers (`async-timeout ; python_full_version < '3.11.3'`), so one
# file serves a laptop, CI and the image alike. Each lock is complete: pip installs it with
# --require-hashes, which refuses any package, transitive or not, that the lock does not pin.
#   runtime.txt  [project] dependencies and the `sentry` extra: what the image installs
#   run.txt      runtime + the `embedded` extra: what `make run` installs
#   dev.txt      runtime + the `dev` extra (tests, lint, bench, page tests): `make test`
#   build.txt    build.in: setuptools, which builds the wheel inside the image
# run.txt and dev.txt are constrained by runtime.txt, so a package pinned in two locks has the
# same version in both.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
export UV_CUSTOM_COMPILE_COMMAND="make lock"
common=(--universal --python-version 3.11 --generate-hashes --quiet "$@")
"$uv" pip compile pyproject.toml --extra sentry "${common[@]}" -o requirements/runtime.txt
"$uv" pip compile pyproject.toml --extra embedded -c requirements/runtime.txt "${common[@]}" \
    -o requirements/run.txt
"$uv" pip compile pyproject.toml --extra dev -c requirements/runtime.txt "${common[@]}" \
    -o requirements/dev.txt
"$uv" pip compile requirements/build.in "${common[@]}" -o requirements/build.txt
