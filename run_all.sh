#!/usr/bin/env bash
# Batch benchmarking: sets up .venv, runs every (stream, strategy, seed) of a profile, skipping runs whose results
# are complete (their files parse and agree; a broken one is redone), keeps going past failures (listed at the end,
# exit 1), then writes the report (results/REPORT.md, summary.{md,csv,tex}, per_task.*, figures/).
#   ./run_all.sh                        the offline default profile
#   ./run_all.sh --profile NAME         another profile from benchmark/profiles/
#   ./run_all.sh --force                redo runs that already have results
#   ./run_all.sh --strategies naive,lwf --seeds 0 --epochs 1    a subset / any `hatswap run` flag
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_venv.sh
exec .venv/bin/hatswap batch "$@"
