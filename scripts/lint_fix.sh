#!/usr/bin/env bash
# Apply ruff's automatic fixes and formatter to the whole tree (the rule set is in pyproject.toml; CI checks
# `ruff check .` and `ruff format --check .` with the `lint` extra's ruff). Safe fixes only; what remains is listed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF="${RUFF:-ruff}"
"$RUFF" check --fix .
"$RUFF" format .
"$RUFF" check --statistics . || true
