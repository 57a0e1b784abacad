#!/usr/bin/env bash
# The test suite: sets up .venv, then pytest (slow/GPU tests are skipped with their reason shown).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
