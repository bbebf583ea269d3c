#!/usr/bin/env bash
# The README's first command: set up this host (deploy/setup-host.sh), then run the main job on
# embedded defaults: `coderl train`, CodeRL on the built-in task suite with a tiny model (local Ray,
# a Redis server started for the run, Docker sandboxes), ending with a table of held-out pass@1
# before and after training. A few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN_DIR=${CODERL_RUN_DIR:-runs/quickstart}

bash deploy/setup-host.sh
if [[ -e $RUN_DIR ]]; then
	# A fresh run each time: `coderl train` refuses to overwrite a run without --resume.
	rm -rf -- "$RUN_DIR"
fi
coderl train --run-dir "$RUN_DIR"
