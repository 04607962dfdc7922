#!/usr/bin/env bash
# Run a recipe on a GPU: the same recipe file as on a CPU, one device flag, nothing else different.
#
#   IG_LLM_HOME=DIR bash tools/gpu_train.sh [RECIPE] [more `train-recipe` options]
#
# RECIPE defaults to recipes/clevr.toml (the shipped model's). Renders need bpy, which a GPU
# machine usually lacks: render the recipe's datasets into the data home where bpy is
# (`python -m ig_llm train-recipe RECIPE` renders first, or tools/render_home.sh), copy the
# home's datasets/ over, and this script finds them complete and goes straight to the two
# stages and the evaluation. Every step resumes, so a lost machine costs one checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${1:-recipes/clevr.toml}
shift || true
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
exec python3 -m ig_llm train-recipe "$RECIPE" --device cuda "$@"
