#!/usr/bin/env bash
# Create or reuse .venv and install hatswap (editable, with the dev extra) into it. Idempotent: a stamp holding
# pyproject.toml's hash skips pip when nothing changed. Sourced by run_all.sh and run_tests.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: need Python >= 3.10 as \`$PY\` (set PYTHON=/path/to/python3)" >&2; exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.hatswap-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing hatswap and its dependencies into .venv (first time: several minutes, torch is large)" >&2
  t0=$(date +%s)
  .venv/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]' 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'does not provide the extra' >&2 || true
  .venv/bin/python -W ignore -c 'import torch, torchvision, avalanche, timm, benchmark, strategies' \
    || { echo "setup: install failed; see pip's output above" >&2; exit 2; }
  echo "$want" > "$stamp"
  echo "setup: done in $(( $(date +%s) - t0 ))s" >&2
fi
