#!/usr/bin/env bash
# One short GPU check (issue 14): the native Llama path in fp32 and bf16 on CUDA against CPU fp32.
# Run from the repository root on a machine with CUDA; prints texts/s and the max relative difference
# of per-row log-probs, and writes the raw JSON under bench/gpu/raw/. Exit 3 when there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
exec "$PY" bench/gpu/gpu_check.py --data "${DATA:-../shared/data}" --n-texts "${N_TEXTS:-600}" "$@"
