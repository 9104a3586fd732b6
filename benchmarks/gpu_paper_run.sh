#!/usr/bin/env bash
# Issue 8 on one GPU lease, without DVC/MLflow/Prefect (the GPU machine has none of them).
#
#   benchmarks/gpu_paper_run.sh bench    # throughput ladder (reference vs real step) + graph check, then
#                                        # data, shards at 74 px and the text encoder for the paper profile
#   benchmarks/gpu_paper_run.sh train    # paper-profile train_gan for as many epochs as TRAIN_SECONDS
#                                        # allows at the measured rate (at most 600), then evaluate
#
# Everything goes to runs/gpu/ (and a copy to $OUT when set). Sizes are env vars so the same script is
# smoke-tested on a CPU: WIDTH, SIZE, LOAD, BATCH, ITERS, WARMUP, IMAGES, TRAIN_SECONDS, MAX_EPOCHS,
# EXTRA_SETS; BENCH_ARGS adds options to the throughput run (e.g. --compile-rung).
set -euo pipefail
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
RUN=runs/gpu
mkdir -p "$RUN"
# The paper profile (its one definition: sisgan/config.py, PAPER_RECIPE); sizes only when asked for.
PAPER=(--profile paper --set gan.checkpoint_every=50 --set gan.sample_every=25 --set tracking.enabled=false)
for pair in "data.load_size=${LOAD:-}" "text.image_size=${SIZE:-}" "gan.image_size=${SIZE:-}" \
  "gan.width=${WIDTH:-}" "gan.batch_size=${BATCH:-}"; do
  if [ -n "${pair#*=}" ]; then PAPER+=(--set "$pair"); fi
done
WIDTH=${WIDTH:-1.0} SIZE=${SIZE:-64} BATCH=${BATCH:-64}
read -ra EXTRA <<<"${EXTRA_SETS:-}"  # more --set pairs, e.g. for a CPU smoke test
PAPER+=("${EXTRA[@]}")

copy_out() {
  [ -n "${OUT:-}" ] || return 0
  tar -czf "$OUT/gpu_run.tar.gz" runs/gpu metrics plots 2>/dev/null || true
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
  return 0
}

bench() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv \
    >"$RUN/nvidia-smi.csv" 2>&1 || true
  $PY -m benchmarks.train_throughput --width "$WIDTH" --size "$SIZE" --batch "$BATCH" \
    --iters "${ITERS:-60}" --warmup "${WARMUP:-10}" --images "${IMAGES:-2048}" --ladder \
    --check-steps "${CHECK_STEPS:-20}" --out "$RUN/train_throughput.json" ${BENCH_ARGS:-} 2>&1 |
    tee "$RUN/throughput.log"
  local t0=$SECONDS
  $PY -m pipeline.download "${PAPER[@]}"
  $PY -m pipeline.preprocess "${PAPER[@]}" 2>&1 | tail -n 2
  $PY -m pipeline.pretrain_text "${PAPER[@]}" 2>&1 | tail -n 3 | tee "$RUN/pretrain_text.log"
  $PY -m pipeline.edit_pairs "${PAPER[@]}" 2>&1 | tail -n 1
  echo "data + text encoder: $((SECONDS - t0)) s" | tee -a "$RUN/times.txt"
  copy_out "$RUN/train_throughput.json" "$RUN/throughput.log"
}

train() {
  # Epochs from the rate the stage's own step reached in `bench` (row "real"), at most MAX_EPOCHS.
  local epochs
  epochs=$($PY - "$RUN/train_throughput.json" "${TRAIN_SECONDS:-330}" "${MAX_EPOCHS:-600}" "$BATCH" <<'EOF'
import json, sys
rate = next(r["images_per_s"] for r in json.load(open(sys.argv[1]))["rows"] if r["mode"] == "real")
rows = json.load(open("data/shards/synth-birds/manifest.json"))["splits"]["train"]["rows"]
per_epoch = rows // int(sys.argv[4]) * int(sys.argv[4])  # whole batches
print(max(1, min(int(sys.argv[3]), int(float(sys.argv[2]) * rate / per_epoch))))
EOF
  )
  echo "train_gan: $epochs epochs" | tee -a "$RUN/times.txt"
  local t0=$SECONDS
  # A SIGTERM checkpoints and exits; the second call (epochs = those done) only exports the generator.
  timeout -s TERM "${TRAIN_LIMIT:-420}" $PY -m pipeline.train_gan "${PAPER[@]}" --set gan.epochs="$epochs" \
    2>&1 | tr '\r' '\n' | grep -v "^\s*$" | tee "$RUN/train_gan.log" || true
  if [ ! -f models/gan/generator.pt ] || [ checkpoints/synth-birds/gan.pt -nt models/gan/generator.pt ]; then
    done_epochs=$($PY -c "import torch; print(max(1, torch.load('checkpoints/synth-birds/gan.pt', weights_only=True)['epoch']))")
    $PY -m pipeline.train_gan "${PAPER[@]}" --set gan.epochs="$done_epochs" 2>&1 | tail -n 3
  fi
  echo "train_gan wall: $((SECONDS - t0)) s" | tee -a "$RUN/times.txt"
  t0=$SECONDS
  $PY -m pipeline.evaluate "${PAPER[@]}" 2>&1 | tail -n 30 | tee "$RUN/evaluate.log"
  echo "evaluate wall: $((SECONDS - t0)) s" | tee -a "$RUN/times.txt"
  cat metrics/train.json metrics/eval.json
  copy_out metrics/eval.json metrics/train.json plots/eval_grid.png plots/train_gan_samples.png \
    plots/train_gan.png "$RUN/train_gan.log"
}

"$@"
