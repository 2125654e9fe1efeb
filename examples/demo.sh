#!/usr/bin/env bash
# make demo: train a small character-level LSTM on bundled Shakespeare (well under a minute on a laptop CPU),
# sample from it, summarise the run, then compare prompting strategies of a tiny LM on generated maths
# word problems (`llm reason`; a random tiny model, so the point is the pipeline, not the accuracy).
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

echo "== dlkit llm reason: direct, chain of thought and self-consistency on builtin:reasoning =="
"$DLKIT" llm reason --model builtin:tiny-llama --data builtin:reasoning --limit 12 --strategy direct --strategy cot \
    --strategy self-consistency --samples 3 --shots 2 --max-new-tokens 32 --output-dir runs/demo/reason --overwrite

echo "Run folder: $RUN (metrics.json, plots/loss.png, plots/val_bpc.png, samples/)"
echo "Reasoning: runs/demo/reason (reason.csv, plots/accuracy.png, samples/completions.jsonl)"
