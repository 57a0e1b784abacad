#!/usr/bin/env bash
# Create or reuse .venv and install hatswap (editable, with the dev extra) into it. Idempotent: a stamp holding
# pyproject.toml's hash skips pip when nothing changed. Sourced by run_all.sh and run_tests.sh.
#   HATSWAP_LOCKED=1 (or --locked)  install the exact versions of requirements.txt, the lock file the reference
#                                   results were made with, instead of resolving pyproject.toml's ranges
#   --dry-run                       print the pip command this would run, and do nothing else
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
locked=${HATSWAP_LOCKED:-0} dry_run=0
for arg in "$@"; do
  case "$arg" in
    --locked) locked=1 ;;
    --dry-run) dry_run=1 ;;
    *) echo "setup: unknown argument $arg (takes --locked, --dry-run)" >&2; exit 2 ;;
  esac
done
install=(-e '.[dev]')
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$locked" = 1 ]; then
  [ -f requirements.txt ] || { echo "setup: --locked needs requirements.txt (the lock file)" >&2; exit 2; }
  install=(-r requirements.txt "${install[@]}")
  want="$want locked $(sha256sum requirements.txt | cut -d' ' -f1)"  # switching modes reinstalls
fi
if [ "$dry_run" = 1 ]; then
  echo ".venv/bin/python -m pip install ${install[*]}"; exit 0
fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: need Python >= 3.10 as \`$PY\` (set PYTHON=/path/to/python3)" >&2; exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version)" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.hatswap-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing hatswap and its dependencies into .venv$([ "$locked" = 1 ] && echo ' (locked: requirements.txt)')" \
       "(first time: several minutes, torch is large)" >&2
  t0=$(date +%s)
  .venv/bin/python -m pip install --disable-pip-version-check -q "${install[@]}" 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'does not provide the extra' >&2 || true
  .venv/bin/python -W ignore -c 'import torch, torchvision, avalanche, timm, benchmark, strategies' \
    || { echo "setup: install failed; see pip's output above" >&2; exit 2; }
  echo "$want" > "$stamp"
  echo "setup: done in $(( $(date +%s) - t0 ))s" >&2
fi
