#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (about 5 minutes on one H200):
#   1. tests/modeling/test_cuda.py (pytest -m gpu): sampling, the critic-weighted update, the critic
#      step and the weight broadcast on the GPU, each against the same computation on the CPU;
#   2. the static decoder against the growing-cache one (python -m bench.models.static_decode, issue
#      17): a T5-large-shaped policy in bf16, batch 64 and 256, 128 and 512 new tokens, with the
#      GPU's busy share of each decode;
#   3. the models benchmark (python -m bench.models) on the GPU, fp32 then bf16, from the tiny
#      preset to a T5-large-shaped model.
# usage: bash bench/models/gpu.sh [OUT_DIR]   (default runs/bench/gpu; logs and JSON go there)
# Exits non-zero if any step fails; every step runs regardless.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/bench/gpu}
mkdir -p "$out"
source bench/steps.sh
export PYTHONUNBUFFERED=1
step gpu nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step pytest python3 -m pytest -q -p no:cacheprovider -m gpu tests/modeling
step static_decode python3 -m bench.models.static_decode --device cuda --dtype bfloat16 \
    --models t5-large-random tiny-causal --batch 64 256 --new-tokens 128 512 --queue 2 --repeats 1 \
    --json "$out/static_decode.json"
step models_fp32 python3 -m bench.models --device cuda \
    --models tiny t5-small-random t5-large-random --json "$out/models_fp32.json"
step models_bf16 python3 -m bench.models --device cuda --dtype bfloat16 \
    --models t5-small-random t5-large-random --batch 64 --new-tokens 128 --json "$out/models_bf16.json"
exit $failed
