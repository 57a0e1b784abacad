#!/usr/bin/env bash
# A change of structure must not change a number: run the golden fixtures at BASE and at HEAD (or the working tree
# with --worktree) on this machine and compare every number they check byte for byte. The golden tests' tolerance
# (tests/golden_files.py) is for other CPU kinds; on one machine a refactor must reproduce the last digit.
#   scripts/golden_bitexact.sh BASE [--worktree]     e.g. scripts/golden_bitexact.sh main~1
# BASE must be at or after the commit that added HATSWAP_GOLDEN_DUMP (2026-12-06). About 4 minutes per side on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/golden_bitexact.sh BASE [--worktree]}
root=$(pwd)
out=$(mktemp -d -t hatswap-bitexact-XXXX)
tests=(tests/test_strategies.py::test_every_strategy_fills_R_and_writes_its_run tests/test_golden.py
       tests/test_mtl_contract.py)
bash scripts/setup_venv.sh
dump() {  # $1: a checkout; $2: where its dumps go
  (cd "$1" && HATSWAP_GOLDEN_DUMP="$2" "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}" \
     >"$2.log" 2>&1) || true
  echo "$(basename "$2"): $(tail -1 "$2.log")"
}
git worktree add -q --detach "$out/base-tree" "$base"
trap 'git worktree remove --force "$out/base-tree" 2>/dev/null || true' EXIT
dump "$out/base-tree" "$out/base"
if [ "${2:-}" = "--worktree" ]; then
  dump "$root" "$out/head"
else
  git worktree add -q --detach "$out/head-tree" HEAD
  trap 'git worktree remove --force "$out/base-tree" 2>/dev/null || true; git worktree remove --force "$out/head-tree" 2>/dev/null || true' EXIT
  dump "$out/head-tree" "$out/head"
fi
echo "dumps: $out/base, $out/head"
.venv/bin/python scripts/golden_compare.py --exact "$out/base" "$out/head"
