#!/usr/bin/env bash
# Train the shipped default model and its ablations on one CUDA GPU in one go.
#
#   bash tools/gpu_train.sh PACK_DIR OUT_DIR [STAGE2_MINUTES]
#
# PACK_DIR holds trainA.npz, valA.npz, valB.npz written by `python -m
# ig_llm.training.data.dataset` from folders that have their per-pixel truth (index/: the
# packs then carry it). Stage 1 trains the conv tower on dense targets (preset tiny) and,
# for the ablation, the earlier ViT tower contrastively (preset tiny-vit); stage 2 runs
# in parallel on the same GPU for the same wall-clock budget: the default (conv tower,
# frozen, numeric head), the ViT-tower model, the character-number model, and the
# default at half budget. Each model is evaluated on valA/valB. The conv-tower runs
# recolour objects in both stages (RECOLOUR, default 0.5: v7's finding for CoGenT B; the
# ViT ablation letterboxes to a square, where recolouring is refused, so it runs without).
# OUT_DIR receives at most 8 files: one tar per kept model, and results.tar (logs + metrics).
set -uo pipefail
PACKS=${1:?pack dir}; OUT=${2:?out dir}; MIN=${3:-3}
R=${RUNS_DIR:-/tmp/ig_llm_runs}; mkdir -p "$R" "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
DEV=${DEVICE:-cuda}; BF16=${BF16:-}; S1STEPS=${S1STEPS:-800}; RC="--recolour ${RECOLOUR:-0.5}"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/gpu.log"; }
S1DATA="$PACKS/trainA.npz"; [ -f "$PACKS/pretrain.npz" ] && S1DATA="$S1DATA $PACKS/pretrain.npz"

log "stage 1 on $S1DATA: conv tower (dense) and, for the ablation, the ViT tower (contrastive)"
python3 -m ig_llm train --data $S1DATA --out "$R/main" --stage 1 --device $DEV --workers 0 \
  --stage1-steps $S1STEPS --stage1-batch-size ${S1BATCH:-128} --stage1-lr 2e-3 $RC \
  --log-every 100 --quiet >> "$R/stage1.log" 2>&1 || { log "stage 1 failed"; tail -30 "$R/stage1.log"; }
python3 -m ig_llm train --data $S1DATA --out "$R/vit" --stage 1 --preset tiny-vit --device $DEV $BF16 \
  --cache-images --workers 8 --stage1-steps $S1STEPS --stage1-batch-size 512 --stage1-lr 1e-3 \
  --log-every 100 --quiet >> "$R/stage1_vit.log" 2>&1 || { log "ViT stage 1 failed"; tail -30 "$R/stage1_vit.log"; }
V="$R/main/stage1/vision.safetensors"
C="--data $PACKS/trainA.npz --stage 2 --device $DEV $BF16 --cache-images --workers 4 --mirror 0.5
   --batch-size ${BATCH:-128} --lr 1e-3 --time-budget $MIN --save-every 1000000 --log-every 200 --quiet"
# `short` is the default recipe with half the budget: a guard against over-fitting a
# small dataset; the better of main/short on valA (in distribution) is shipped.
HALF=$(python3 -c "print($MIN / 2)")
log "stage 2: main, char, vit for $MIN min each and short for $HALF min, in parallel"
python3 -m ig_llm train --out "$R/main" $C $RC --vision-weights $V                > "$R/main.log" 2>&1 & p1=$!
python3 -m ig_llm train --out "$R/char" $C $RC --vision-weights $V --numbers char > "$R/char.log" 2>&1 & p2=$!
python3 -m ig_llm train --out "$R/vit" $C --preset tiny-vit \
  --vision-weights "$R/vit/stage1/vision.safetensors"                         > "$R/vit.log" 2>&1 & p3=$!
python3 -m ig_llm train --out "$R/short" ${C/--time-budget $MIN/--time-budget $HALF} $RC --vision-weights $V > "$R/short.log" 2>&1 & p4=$!
wait $p1; log "main exit $?"; wait $p2; log "char exit $?"; wait $p3; log "vit exit $?"; wait $p4; log "short exit $?"
evaluate_run() {  # predict + evaluate one run on both held-out packs
  local r=$1
  [ -f "$R/$r/model/model.safetensors" ] || { log "$r: no model"; return; }
  for s in valA valB; do
    python3 -m ig_llm predict "$PACKS/$s.npz" --model "$R/$r/model" --out "$R/$r/$s.pred.json" \
      --device $DEV --batch-size 100 --quiet >> "$R/$r.eval.log" 2>&1
    python3 -m ig_llm evaluate --truth "$PACKS/$s.npz" --pred "$R/$r/$s.pred.json" \
      --out "$R/$r/$s.metrics.json" >> "$R/$r.eval.log" 2>&1
  done
  log "$r evaluated"
}
for r in main short char vit; do evaluate_run $r & done; wait
for r in main short char vit; do echo "== $r"; grep -E "scenes|_acc|ace|l2|yaw" "$R/$r.eval.log"; done
for r in main short vit; do
  [ -d "$R/$r/model" ] && tar -C "$R/$r" -cf "$OUT/model_$r.tar" model
done
(cd "$R" && tar -cf "$OUT/results.tar" --exclude='*.safetensors' --exclude='ckpt*' --exclude='checkpoints' \
  gpu.log stage1.log *.log main/*.json short/*.json char/*.json vit/*.json */train.log \
  main/stage1 2>/dev/null)
[ -f "$V" ] && cp "$V" "$OUT/vision_stage1.safetensors"
log "done"; ls -la "$OUT"
