#!/usr/bin/env bash
# One GPU, under 10 minutes: Gemma-2-2B-size LoRA (random init from the published config, stored in bf16) trained
# by dlkit and by the Hugging Face Trainer + PEFT with the same LoRA, in bf16 and as 4-bit QLoRA (tokens/s and peak
# CUDA memory, benchmarks/llm_throughput.py), and `dlkit llm plan` against the measured peak
# (benchmarks/plan_vs_measured.py). Results: one JSON file per part in $OUT (default benchmarks/gpu_check_out),
# with the card's name in gpu.txt; record them in benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_check.sh          # on the GPU machine (needs dlkit[llm,quantize] and the Trainer's datasets)
#   bash benchmarks/gpu_check.sh --tiny   # the same steps at CPU size (tiny-llama, a 10M model), to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/gpu_check_out}
root=${ROOT:-${TMPDIR:-/tmp}/dlkit-gpu-check}  # the generated Gemma-2-2B folder (5 GB) is written once here
mkdir -p "$out" "$root"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false

if [[ "${1:-}" == "--tiny" ]]; then
  shape=tiny-llama steps=4 cases=10m-full,10m-qlora threads=2
else
  shape=gemma2-2b steps=8 cases=gemma2-2b-lora-bf16,gemma2-2b-qlora threads=8
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU (CPU run)"; } \
  | tee "$out/gpu.txt"
python -c "import torch, transformers, peft, bitsandbytes, accelerate; print('torch', torch.__version__, 'transformers',
  transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'accelerate',
  accelerate.__version__)" | tee -a "$out/gpu.txt"

start=$SECONDS
for quantize in none 4bit; do
  echo "== throughput: LoRA in bf16, --quantize $quantize (dlkit vs Trainer + PEFT) ==" >&2
  python benchmarks/llm_throughput.py --shapes "$shape" --precision bf16 --quantize "$quantize" --rounds 1 \
    --steps "$steps" --threads "$threads" --contenders trainer_grouped,dlkit --root "$root" \
    > "$out/throughput_bf16_$quantize.json"
  echo "   $((SECONDS - start)) s so far" >&2
done
echo "== dlkit llm plan vs the measured peak ==" >&2
python benchmarks/plan_vs_measured.py --cases "$cases" --steps 3 --root "$root" > "$out/plan_vs_measured.json"
echo "done in $((SECONDS - start)) s; results in $out" >&2
