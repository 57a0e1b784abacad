#!/usr/bin/env bash
# How far the golden fixtures' numbers move between the CPU kernels torch picks on this machine
# (ATEN_CPU_CAPABILITY unset, =avx2, =default): the lower bound of the golden tolerance (tests/golden_files.py).
# Runs the golden tests three times (about 3 minutes each on 2 cores), dumping what they check, then compares.
#   scripts/golden_spread.sh [OUT_DIR]      (default: a temporary folder, kept and printed)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d -t hatswap-golden-spread-XXXX)}
mkdir -p "$out"
tests=(tests/test_strategies.py::test_every_strategy_fills_R_and_writes_its_run tests/test_golden.py
       tests/test_mtl_contract.py)
for cap in unset avx2 default; do
  rm -rf "$out/$cap"
  if [ "$cap" = unset ]; then env -u ATEN_CPU_CAPABILITY HATSWAP_GOLDEN_DUMP="$out/$cap" ./run_tests.sh -q "${tests[@]}" >"$out/$cap.log" 2>&1 || true
  else ATEN_CPU_CAPABILITY=$cap HATSWAP_GOLDEN_DUMP="$out/$cap" ./run_tests.sh -q "${tests[@]}" >"$out/$cap.log" 2>&1 || true; fi
  echo "$cap: $(tail -1 "$out/$cap.log")"
done
for pair in "unset avx2" "unset default" "avx2 default"; do
  set -- $pair
  echo "$1 vs $2: $(.venv/bin/python scripts/golden_compare.py --quiet "$out/$1" "$out/$2")"
done
echo "dumps: $out"
