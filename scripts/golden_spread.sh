#!/usr/bin/env bash
# How far the golden fixtures' numbers move between the CPU kernels this machine can be made to use: ATen's own
# (ATEN_CPU_CAPABILITY=avx2 | default, else the best the CPU has) and MKL's BLAS (MKL_CBWR=COMPATIBLE: its
# reproducible SSE2 branch instead of the kernel it picks for this CPU; MKL_ENABLE_INSTRUCTIONS changes nothing on
# AMD CPUs, where MKL already takes a generic path). The largest difference is the lower bound of the golden
# tolerance (tests/golden_files.py). Runs the golden tests once per variant (about 4 minutes each on 2 cores),
# dumping what they check, then compares every variant with the first.
#   scripts/golden_spread.sh [OUT_DIR]      (default: a temporary folder, kept and printed)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d -t hatswap-golden-spread-XXXX)}
mkdir -p "$out"
tests=(tests/test_strategies.py::test_every_strategy_fills_R_and_writes_its_run tests/test_golden.py
       tests/test_mtl_contract.py)
variants=("unset:" "aten-avx2:ATEN_CPU_CAPABILITY=avx2" "aten-default:ATEN_CPU_CAPABILITY=default"
          "aten-default+mkl-compatible:ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE")
for v in "${variants[@]}"; do
  name=${v%%:*}; vars=${v#*:}
  rm -rf "${out:?}/$name"
  # shellcheck disable=SC2086  # $vars: zero or more VAR=value words
  env -u ATEN_CPU_CAPABILITY -u MKL_CBWR $vars HATSWAP_GOLDEN_DUMP="$out/$name" ./run_tests.sh -q "${tests[@]}" \
    >"$out/$name.log" 2>&1 || true
  echo "$name: $(tail -1 "$out/$name.log")"
done
for v in "${variants[@]:1}"; do
  echo "unset vs ${v%%:*}: $(.venv/bin/python scripts/golden_compare.py --quiet "$out/unset" "$out/${v%%:*}")"
done
echo "dumps: $out"
