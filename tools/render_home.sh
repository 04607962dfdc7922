#!/usr/bin/env bash
# Grow the v10 datasets in the data home, resuming whatever is there (run it at every start
# of work; it is safe to kill at any moment: `generate --resume` renders only missing scenes).
#   tools/render_home.sh [TARGET_TRAIN_COUNT]     (default 48000)
# Datasets: $IG_LLM_HOME/datasets/{valA,valB,valA_480,valB_480,trainA} (default ~/.cache/ig_llm).
# The held-out sets use other seeds than trainA (1 and 2 vs 0); condition B is only ever a
# validation set. trainA grows in chunks of 4,000 so every chunk ends with a complete scenes.json.
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR="${IG_LLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ig_llm}"
TARGET="${1:-48000}"
PY="${PYTHON:-.venv/bin/python}"
gen() {  # name condition count seed split size
  nice -n 19 "$PY" -m ig_llm generate --resume --no-progress --out "$HOME_DIR/datasets/$1" \
    --condition "$2" --count "$3" --seed "$4" --split "$5" --size "$6"
}
gen valA A 500 1 valA 192x128
gen valB B 500 2 valB 192x128
gen valA_480 A 500 1 valA 480x320
gen valB_480 B 500 2 valB 480x320
for ((n = 4000; n <= TARGET; n += 4000)); do
  gen trainA A "$n" 0 trainA 192x128
done
