#!/usr/bin/env bash
# make demo: train a small character-level LSTM on bundled Shakespeare (well under a minute on a laptop CPU),
# sample from it, then summarise the run.
set -euo pipefail
cd "$(dirname "$0")/.."
DLKIT=.venv/bin/dlkit
RUN=runs/demo/charrnn

echo "== dlkit charrnn train: an LSTM on builtin:text =="
"$DLKIT" charrnn train --data builtin:text --arch lstm --hidden-size 128 --num-layers 1 --block-size 64 \
    --dropout 0.2 --batch-size 32 --lr 1e-2 --max-steps 200 --eval-every 50 --output-dir "$RUN" --overwrite

echo "== dlkit charrnn sample =="
"$DLKIT" charrnn sample --run "$RUN" --prompt "ROMEO:" --num-chars 300 --temperature 0.8 --seed 0

echo "== dlkit compare =="
"$DLKIT" compare "$RUN"

echo "Run folder: $RUN (metrics.json, plots/loss.png, plots/val_bpc.png, samples/)"
