#!/usr/bin/env bash
# GPU check for the SFT recipes: how long gpt2_math's main (non-fallback) settings take on a GPU with
# GPT-2 small's 124M shape, and that 4-bit QLoRA trains on CUDA. Offline: scratch weights stand in
# for the hub's gpt2 (the timing depends on the shape, not on the weights).
#
#   bash bench/gpu_sft_check.sh            # on a machine with one NVIDIA GPU; a few minutes
#
# Wheels in .whl/ (if any) are installed first, for machines that cannot reach PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ftkit-gpu-check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  python3 -m pip install -q -e .
fi
python3 -c "import torch; print('torch', torch.__version__, 'GPU:', torch.cuda.get_device_name(0))"
ftkit() { python3 -m ftkit "$@"; }

echo "== full fine-tuning, gpt2_math's main settings, GPT-2 124M shape (bf16) =="
start=$(date +%s)
ftkit sft recipes/gpt2_math.yaml model.name=scratch:gpt2-124m output_dir="$OUT/full124m" --overwrite
echo "wall time: $(( $(date +%s) - start ))s"
python3 - "$OUT/full124m/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print({k: s[k] for k in ("model", "method", "steps", "train_runtime_s", "tokens_per_s", "eval_accuracy")})
PY

echo "== 4-bit QLoRA on CUDA (on the model just trained) =="
ftkit sft recipes/gpt2_math_qlora.yaml model.name="$OUT/full124m/model" model.fallback=null \
  train.max_steps=100 output_dir="$OUT/qlora124m" --overwrite
python3 - "$OUT/qlora124m/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print({k: s[k] for k in ("model", "method", "steps", "train_runtime_s", "tokens_per_s", "eval_accuracy", "parameters")})
PY
