#!/usr/bin/env bash
# The GPU check: on a fresh single-GPU Linux machine, install ftkit with its extras and print what only
# a GPU can show. Under 10 minutes on one H100.
#
#   bash bench/gpu_check.sh                 # OUT=/tmp/ftkit-gpu-check by default
#   SKIP_INSTALL=1 bash bench/gpu_check.sh  # reuse the current environment
#
# 1. GPT-2 124M-shape SFT in bf16 (gpt2_math's main settings, 300 steps): tokens/s and MFU, counted the
#    way nanoGPT's `estimate_mfu` does: (6N + 12·L·H·Q·T) FLOPs per token against the card's bf16 peak.
# 2. 4-bit QLoRA on CUDA.
# 3. GRPO rollouts, vLLM engine against the Hugging Face engine: the same model, prompts and steps;
#    rollout tokens/s of each and their ratio.
# 4. `ftkit eval` through vLLM.
# Offline: scratch weights in GPT-2's shape stand in for the hub's gpt2 (speed depends on the shape).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ftkit-gpu-check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
START=$(date +%s)

if [ -z "${SKIP_INSTALL:-}" ]; then
  if compgen -G ".whl/*.whl" >/dev/null; then  # machines without PyPI: wheels brought along
    python3 -m pip install -q --no-index --find-links .whl -e ".[vllm,deepspeed]" || python3 -m pip install -q -e .
  else
    python3 -m pip install -q torch==2.13.0 -e ".[vllm,deepspeed]"
  fi
fi
python3 -c "import torch; print('torch', torch.__version__, '| GPU:', torch.cuda.get_device_name(0))"
python3 -c "from ftkit.vllm_engine import engine_status; print('engines:', engine_status())"
ftkit() { python3 -m ftkit "$@"; }

echo "== 1. SFT, GPT-2 124M shape, bf16, 300 steps =="
ftkit sft recipes/gpt2_math.yaml model.name=scratch:gpt2-124m model.fallback=null train.max_steps=300 \
  eval.n=200 output_dir="$OUT/sft124m" --overwrite
python3 - "$OUT/sft124m" <<'PY'
import json, sys, torch
from transformers import AutoConfig
run = sys.argv[1]
s = json.load(open(f"{run}/summary.json"))
cfg = AutoConfig.from_pretrained(f"{run}/model")
n = s["parameters"]["total"] - cfg.n_positions * cfg.n_embd  # nanoGPT leaves out the position embeddings
L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, s["train_args"].get("max_length", 64)
flops_per_token = 6 * n + 12 * L * H * Q * T
name = torch.cuda.get_device_name(0)
# dense bf16 peaks (TFLOPS) from the vendors' data sheets
peaks = {"H100": 989e12 if "SXM" in name or "HBM3" in name else 756e12, "H200": 989e12, "A100": 312e12,
         "L40S": 362e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}
peak = next((v for k, v in peaks.items() if k in name), None)
tps = s["tokens_per_s"]
print(f"tokens/s {tps:,.0f} (non-padding) | {flops_per_token / 1e6:.0f} MFLOP/token | "
      + (f"MFU {tps * flops_per_token / peak:.1%} of {peak / 1e12:.0f} TFLOPS ({name})" if peak else f"no peak known for {name}"))
print(f"held-out accuracy after 300 steps: {s['eval_accuracy']:.1%}")
PY

echo "== 2. 4-bit QLoRA on CUDA =="
ftkit sft recipes/gpt2_math_qlora.yaml model.name="$OUT/sft124m/model" model.fallback=null train.max_steps=100 \
  eval.n=100 output_dir="$OUT/qlora124m" --overwrite
python3 -c "import json; s = json.load(open('$OUT/qlora124m/summary.json')); print('QLoRA', s['method'], 'steps', s['steps'], 'tokens/s', round(s['tokens_per_s'] or 0), 'trainable', s['parameters'])"

echo "== 3. GRPO rollouts: vLLM engine vs Hugging Face engine =="
for engine in hf vllm; do
  ftkit rl recipes/grpo_arithmetic.yaml model.name="$OUT/sft124m/model" rollout.engine=$engine train.max_steps=10 \
    eval.n=0 output_dir="$OUT/grpo_$engine" --overwrite || echo "engine $engine failed"
done
python3 - "$OUT" <<'PY'
import json, sys
def rollout_tps(engine):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/grpo_{engine}/metrics.jsonl")]
    rows = [r["rollout_tokens_per_s"] for r in rows if "rollout_tokens_per_s" in r][1:]  # step 1 warms up
    return sum(rows) / len(rows)
hf, vllm = rollout_tps("hf"), rollout_tps("vllm")
print(f"rollout tokens/s: HF {hf:,.0f} | vLLM {vllm:,.0f} | ratio {vllm / hf:.2f}x")
PY

echo "== 4. ftkit eval through vLLM =="
ftkit eval --gym arithmetic --model "$OUT/sft124m/model" --engine vllm --n 500 --samples 3
echo "total wall time: $(( $(date +%s) - START ))s"
