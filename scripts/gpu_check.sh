#!/usr/bin/env bash
# Every registered strategy on tiny binary (fine-tuned; frozen + feature cache) and dense configs on CUDA, then a
# 2-epoch DINO pretraining in fp32 and in bf16; one line per case, exit 1 on any failure (benchmark/diagnostics/gpu_check.py).
# Uses .venv if there is one, else python3 (the bare GPU machine of ../shared/device/README.md, after
# `source .device/env.sh`). Extra arguments go to the module
# (--device cpu checks the script itself; --strategies joint,lwf a subset).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
exec "$PY" -m benchmark.diagnostics.gpu_check "$@"
