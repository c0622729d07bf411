"""DAPO (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale"): GRPO with four changes.

    ftkit rl recipes/dapo_arithmetic.yaml
    ftkit rl recipes/grpo_arithmetic.yaml train.epsilon_high=0.28 rollout.dynamic_filtering=true   # a la carte

1. Clip-higher: the ratio's upper clip `train.epsilon_high` (0.28) above its lower `train.epsilon` (0.2),
   so that tokens the policy found unlikely can grow when they pay off (entropy does not collapse).
2. Token-level loss: `train.loss_type: dapo` averages over every token, so a long episode weighs
   as much per token as a short one.
3. Dynamic sampling: `rollout.dynamic_filtering` trains only on groups whose rewards differ, drawing
   more problems until the batch is full (at most `rollout.max_num_gen_batches` generation batches).
4. Overlong shaping: `train.mask_truncated_completions` leaves actions cut by the length limit out of
   the loss (the paper's overlong filtering); `rollout.overlong_buffer_len` instead lowers the reward
   of answers that come near the limit (its soft overlong punishment).

Each is a recipe key of its own that works with algo grpo (and rloo) too; `algo: dapo` is GRPO with
1-3 and overlong filtering as its defaults (`ALGO_DEFAULTS` in ftkit/rl/config.py), which a recipe may
still override. The advantages are GRPO's: reward minus the group's mean, over the group's std.
"""

from __future__ import annotations

from ftkit.rl.objectives.grpo import GRPO


class DAPO(GRPO):
    name = "dapo"
    note = ("note: DAPO trains only on groups whose rewards differ; num_gen_batches and problems_drawn in "
            "metrics.jsonl say how many problems each step played to find them")
