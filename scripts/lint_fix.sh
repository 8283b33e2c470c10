#!/usr/bin/env bash
# Apply ruff's automatic fixes and formatter to the whole tree, once, after the branches that edit many files are
# merged (the rule set is in pyproject.toml). Safe fixes only; what remains is listed for review. Then add
# `ruff check . && ruff format --check .` to .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUFF="${RUFF:-ruff}"
"$RUFF" check --fix .
"$RUFF" format .
"$RUFF" check --statistics . || true
