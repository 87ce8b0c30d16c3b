#!/usr/bin/env bash
# Submit a stage as a job array of SHARDS tasks and a merge job that runs when all of them succeeded:
#   STAGE=self-instruct RUN_DIR=/shared/runs/x MODEL=openai:http://vllm:8000/v1#base SHARDS=8 \
#     STAGE_FLAGS="--target 8192" examples/slurm/submit.sh
# Extra sbatch options (partition, account) go in SBATCH_OPTIONS.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${STAGE:?set STAGE}" "${RUN_DIR:?set RUN_DIR}" "${SHARDS:?set SHARDS}"
export STAGE RUN_DIR SHARDS MODEL="${MODEL:-}" STAGE_FLAGS="${STAGE_FLAGS:-}" SELFALIGN="${SELFALIGN:-npx selfalign}"
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_OPTIONS:-} --array="0-$((SHARDS - 1))" --export=ALL "$here/shard.sbatch")
array="${array%%;*}"
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_OPTIONS:-} --dependency="afterok:${array}" --export=ALL "$here/merge.sbatch")
echo "submitted ${STAGE}: shards job ${array} (${SHARDS} tasks), merge job ${merge%%;*} after them"
