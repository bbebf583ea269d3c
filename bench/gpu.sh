#!/usr/bin/env bash
# GPU acceptance of the learner at scale (issue 14), in one run for a lent device (about 12 minutes
# on one H200; every step runs regardless, the exit status says whether all passed):
#   1. bench/models/gpu.sh: the CUDA tests and the models benchmark (sampling and training steps);
#   2. the learner memory benchmark on the APPS preset (t5-large-shaped actor, base-shaped critic,
#      600 + 512 tokens, bf16, micro-batches, activation checkpointing): peak_bytes_per_rank;
#   3. the whole pipeline at the APPS preset's shapes for a few RL updates on the built-in suite,
#      in one process (the executor's process backend: the device machine has no Docker engine),
#      then its samples/s, tokens/s, update time, sync time and peak memory from metrics.jsonl.
# usage: bash bench/gpu.sh [OUT_DIR]          (default runs/bench/gpu-accept)
#   POLICY=tiny CRITIC=tiny bash bench/gpu.sh  tries step 3 on a CPU with the tiny models
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench/gpu-accept}
policy=${POLICY:-t5-large-random}
critic=${CRITIC:-t5-base-random}
mkdir -p "$out"
source bench/steps.sh
export PYTHONUNBUFFERED=1
if python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    step models bash bench/models/gpu.sh "$out/models"
    step memory python3 -m bench.memory --config deploy/configs/codet5-large-ntp-py-apps.toml \
        --json "$out/memory.json"
fi
rm -rf "$out/run"
step pipeline python3 -m driver --config deploy/configs/codet5-large-ntp-py-apps.toml --no-ray \
    --run-dir "$out/run" --set \
    "policy.model=$policy" "critic.model=$critic" problems.source=suite \
    problems.suite.train_size=60 problems.suite.held_out_size=8 \
    phases.sft_steps=4 phases.critic_steps=1 phases.rl_steps=4 sft_checkpoint_every=4 \
    execution.external_workers=false execution.redis_url=null execution.executor_actors=1 \
    execution.worker.executor.sandbox.backend=process execution.worker.executor.workers=8 \
    sampler.problems_per_round=1 sampler.sampling.max_new_tokens=128 eval.max_new_tokens=128 \
    learner.wait_s=900
step summary python3 - "$out/run/metrics.jsonl" <<'EOF'
import math, sys
from driver.metrics import read_metrics

rows = [m for m in read_metrics(sys.argv[1]) if "loss/rl" in m]
if not rows:
    sys.exit("no RL update in the run's metrics")
keys = ("throughput/samples_per_s", "throughput/tokens_per_s", "learner/train_s",
        "sync/weight_broadcast_s", "learner/peak_memory_gib")
for key in keys:
    values = [m[key] for m in rows if key in m and math.isfinite(m[key])]
    print(f"{key:<28} last {values[-1]:10.3f}   median {sorted(values)[len(values) // 2]:10.3f}")
EOF
exit $failed
