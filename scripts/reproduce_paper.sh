#!/usr/bin/env bash
# Reproduce the MoXI paper's insertion/deletion evaluation (CVPR'24, Fig. 3/4) on ImageNet-1k:
# 1000 validation images, one correctly classified image per class (--per-class 1), for
# ViT-T/S/B and DeiT-T/S/B with token removal, every method, both curves.
#
# Needs the Hugging Face Hub: the models and the gated ILSVRC/imagenet-1k dataset (accept its terms
# on the Hub, then `hf auth login` or export HF_TOKEN). Not run by the tests.
#
#   scripts/reproduce_paper.sh [OUTPUT_ROOT] [extra `moxi evaluate` options...]
#
# Environment: NUM_PROCESSES (default: the number of visible GPUs, at least 1), DTYPE (float32),
# BATCH_SIZE (8), MODELS (space-separated Hub ids, default: the six below), METHODS (all six).
# Each model writes OUTPUT_ROOT/<model name>/ (an HF dataset folder: data/, curves.json, plots/,
# config.json, README.md); rerunning the script resumes unfinished runs.
set -euo pipefail

OUTPUT_ROOT="${1:-paper-results}"
shift || true
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DEFAULT_MODELS="WinKawaks/vit-tiny-patch16-224 WinKawaks/vit-small-patch16-224 google/vit-base-patch16-224
facebook/deit-tiny-patch16-224 facebook/deit-small-patch16-224 facebook/deit-base-patch16-224"
MODELS="${MODELS:-$DEFAULT_MODELS}"
METHODS="${METHODS:-moxi self-shapley full-shapley gradcam gradcam++ attention-rollout}"
DTYPE="${DTYPE:-float32}"
BATCH_SIZE="${BATCH_SIZE:-8}"

if [[ -z "${NUM_PROCESSES:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    NUM_PROCESSES="$(nvidia-smi --list-gpus | wc -l)"
  else
    NUM_PROCESSES=1
  fi
  (( NUM_PROCESSES >= 1 )) || NUM_PROCESSES=1
fi

LAUNCH=(accelerate launch --num_machines 1 --mixed_precision no --dynamo_backend no --num_processes "$NUM_PROCESSES")
if (( NUM_PROCESSES > 1 )); then
  LAUNCH+=(--multi_gpu)
fi

for MODEL in $MODELS; do
  NAME="${MODEL##*/}"
  echo "== ${MODEL} -> ${OUTPUT_ROOT}/${NAME} (${NUM_PROCESSES} process(es))"
  # shellcheck disable=SC2086 # METHODS is a word list on purpose
  "${LAUNCH[@]}" "${REPO_ROOT}/scripts/evaluate.py" \
    --model "$MODEL" \
    --dataset ILSVRC/imagenet-1k --split validation \
    --per-class 1 --seed 0 \
    --methods $METHODS --curves insertion deletion \
    --num-samples 200 --sampler original \
    --masking token --reward log-odds \
    --dtype "$DTYPE" --batch-size "$BATCH_SIZE" \
    --output-dir "${OUTPUT_ROOT}/${NAME}" \
    "$@"
done

echo "done: curves in ${OUTPUT_ROOT}/*/plots/curves.png, AUC in ${OUTPUT_ROOT}/*/curves.json"
