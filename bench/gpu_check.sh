#!/usr/bin/env bash
# The GPU check: on a fresh single-GPU Linux machine, install ftkit and print what only a GPU can show.
# 3 minutes on one H200 (185 s measured, with the missing packages carried as wheels; 174 s on Nov 28 2026
# with the wheels installed beforehand: README "Scaling up" has that run's figures).
#
#   bash bench/gpu_check.sh                 # OUT=/tmp/ftkit-gpu-check by default
#   SKIP_INSTALL=1 bash bench/gpu_check.sh  # reuse the current environment
#   SKIP_INSTALL=1 SFT_STEPS=3 RL_STEPS=2 EVAL_N=10 bash bench/gpu_check.sh  # a smoke test of the script on a CPU
#
# 1. GPT-2 124M-shape SFT in bf16 (gpt2_math's main settings, 300 steps): tokens/s and MFU, counted the
#    way nanoGPT's `estimate_mfu` does: (6N + 12·L·H·Q·T) FLOPs per token against the card's bf16 peak.
# 2. 4-bit QLoRA on CUDA (bitsandbytes).
# 3. GRPO on the GPU with the Hugging Face engine, and with vLLM where it is installed: rollout
#    tokens/s and seconds per step of each, and their ratio.
# 4. `ftkit eval` on the GPU: Hugging Face engine, and vLLM where it is installed.
# 5. `ftkit serve`: with vLLM, the `vllm serve` command it runs answers a chat request; without it,
#    the one line a user sees.
# Offline: scratch weights in GPT-2's shape stand in for the hub's gpt2 (speed depends on the shape).
# Each section runs on when an earlier one fails, and the last line lists the sections that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ftkit-gpu-check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
START=$(date +%s)
FAILED=()
SFT_STEPS=${SFT_STEPS:-300} RL_STEPS=${RL_STEPS:-10} EVAL_N=${EVAL_N:-500}

if [ -z "${SKIP_INSTALL:-}" ]; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    # A machine without a package index: the missing packages were carried as wheels. Install them
    # beside the image's own torch and transformers (no dependency resolution, nothing to download),
    # and run ftkit from this checkout.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    python3 -m pip install -q torch==2.13.0 -e ".[vllm,deepspeed]" || exit 1
  fi
fi
python3 - <<'PY'
import torch, transformers, trl
print("torch", torch.__version__, "| transformers", transformers.__version__, "| trl", trl.__version__,
      "| GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
from ftkit.vllm_engine import engine_status
print("engines:", engine_status())
PY
HAVE_VLLM=$(python3 -c "import importlib.util; print(int(importlib.util.find_spec('vllm') is not None))")
ftkit() { python3 -m ftkit "$@"; }
section() { echo; echo "== $1 ($(( $(date +%s) - START )) s in) =="; }
run() { local name=$1; shift; "$@" || { echo "!! $name failed (exit $?)"; FAILED+=("$name"); }; }

sft_124m() {
  ftkit sft recipes/gpt2_math.yaml model.name=scratch:gpt2-124m model.fallback=null train.max_steps=$SFT_STEPS \
    eval.n=$(( EVAL_N < 200 ? EVAL_N : 200 )) output_dir="$OUT/sft124m" --overwrite > "$OUT/sft124m.log" 2>&1 \
    || { tail -20 "$OUT/sft124m.log"; return 1; }
  python3 - "$OUT/sft124m" <<'PY'
import json, sys, torch
from transformers import AutoConfig
run = sys.argv[1]
s = json.load(open(f"{run}/summary.json"))
cfg = AutoConfig.from_pretrained(f"{run}/model")
n = s["parameters"]["total"] - cfg.n_positions * cfg.n_embd  # nanoGPT leaves out the position embeddings
L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, s["train_args"].get("max_length", 64)
flops_per_token = 6 * n + 12 * L * H * Q * T
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
# dense bf16 peaks (TFLOPS) from the vendors' data sheets
peaks = {"H100": 989e12 if "SXM" in name or "HBM3" in name else 756e12, "H200": 989e12, "A100": 312e12,
         "L40S": 362e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}
peak = next((v for k, v in peaks.items() if k in name), None)
tps = s["tokens_per_s"]
print(f"tokens/s {tps:,.0f} (non-padding) | {flops_per_token / 1e6:.0f} MFLOP/token | "
      + (f"MFU {tps * flops_per_token / peak:.1%} of {peak / 1e12:.0f} TFLOPS ({name})" if peak else f"no peak known for {name}"))
print(f"held-out accuracy after {s['steps']} steps: {s['eval_accuracy']:.1%} | train {s['train_runtime_s']:.0f} s")
PY
}

qlora_124m() {
  ftkit sft recipes/gpt2_math_qlora.yaml model.name="$OUT/sft124m/model" model.fallback=null train.max_steps=$(( SFT_STEPS / 3 )) \
    eval.n=$(( EVAL_N < 100 ? EVAL_N : 100 )) output_dir="$OUT/qlora124m" --overwrite > "$OUT/qlora124m.log" 2>&1 \
    || { tail -20 "$OUT/qlora124m.log"; return 1; }
  python3 -c "import json; s = json.load(open('$OUT/qlora124m/summary.json')); print('QLoRA', s['method'], 'steps', s['steps'], 'tokens/s', round(s['tokens_per_s'] or 0), 'trainable', s['parameters'])"
  grep -m3 -iE "4bit|nf4|quantiz" "$OUT/qlora124m.log" || true
}

grpo() {  # grpo ENGINE
  ftkit rl recipes/grpo_arithmetic.yaml model.name="$OUT/sft124m/model" rollout.engine="$1" train.max_steps=$RL_STEPS \
    eval.n=0 output_dir="$OUT/grpo_$1" --overwrite > "$OUT/grpo_$1.log" 2>&1 \
    || { tail -20 "$OUT/grpo_$1.log"; return 1; }
  python3 - "$OUT/grpo_$1" "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
steps = [r for r in rows if "rollout_tokens_per_s" in r][1:]  # step 1 warms up
tps = sum(r["rollout_tokens_per_s"] for r in steps) / len(steps)
secs = [r["step_s"] for r in steps if "step_s" in r]
print(f"engine {sys.argv[2]}: rollout tokens/s {tps:,.0f}"
      + (f" | {sum(secs) / len(secs):.3f} s/step" if secs else "") + f" (mean of steps 2-{len(steps) + 1})")
PY
}

eval_engine() {  # eval_engine ENGINE
  local t0; t0=$(date +%s.%N)
  ftkit eval --gym arithmetic --model "$OUT/sft124m/model" --engine "$1" --n "$EVAL_N" --samples 3 \
    > "$OUT/eval_$1.log" 2>&1 || { tail -20 "$OUT/eval_$1.log"; return 1; }
  grep -m1 "accuracy" "$OUT/eval_$1.log"
  echo "engine $1: $EVAL_N problems x 3 samples in $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}") s (model load included)"
}

serve_check() {
  if [ "$HAVE_VLLM" = 1 ]; then
    ftkit serve --model "$OUT/sft124m/model" --port 8011 > "$OUT/serve.log" 2>&1 &
    local pid=$!
    for _ in $(seq 90); do curl -sf localhost:8011/v1/models >/dev/null && break; sleep 2; done
    curl -sf localhost:8011/v1/completions -H 'Content-Type: application/json' \
      -d '{"model": "sft124m", "prompt": "12+34=", "max_tokens": 6}'; local rc=$?
    kill $pid; echo; return $rc
  fi
  # without vLLM the command must stop with one line and a non-zero exit, not a traceback
  if ftkit serve --model "$OUT/sft124m/model" > "$OUT/serve.log" 2>&1; then echo "serve ran without vLLM?"; return 1; fi
  echo "without vLLM, ftkit serve says: $(cat "$OUT/serve.log")"
  [ "$(wc -l < "$OUT/serve.log")" -le 2 ] && ! grep -q Traceback "$OUT/serve.log"
}

section "1. SFT, GPT-2 124M shape, bf16, 300 steps"; run sft_124m sft_124m
section "2. 4-bit QLoRA on CUDA";                     run qlora_124m qlora_124m
section "3. GRPO on the GPU, 10 steps";               run grpo_hf grpo hf
if [ "$HAVE_VLLM" = 1 ]; then run grpo_vllm grpo vllm; else echo "vLLM is not installed: its GRPO run is left out"; fi
section "4. ftkit eval on the GPU, 500 problems x 3 samples"; run eval_hf eval_engine hf
if [ "$HAVE_VLLM" = 1 ]; then run eval_vllm eval_engine vllm; else echo "vLLM is not installed: its eval is left out"; fi
section "5. ftkit serve";                             run serve serve_check
echo
echo "total wall time: $(( $(date +%s) - START )) s | failed: ${FAILED[*]:-none}"
[ ${#FAILED[@]} -eq 0 ]
