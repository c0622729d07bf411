"""GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"): GRPO's advantages with one ratio per sequence.

    ftkit rl recipes/gspo_arithmetic.yaml
    ftkit rl recipes/grpo_arithmetic.yaml train.importance_sampling_level=sequence   # the same, a la carte

GRPO weighs each token by its own probability ratio, which is noisy token by token while the reward
is the sequence's. GSPO's ratio is the sequence's: the geometric mean of its tokens' ratios,
exp(mean of log pi - log pi_old), clipped as a whole, so an episode's tokens move together
(`algorithms.importance_ratio`). `algo: gspo` is GRPO with `train.importance_sampling_level: sequence`
(TRL's name), the paper's clip ranges (3e-4 below, 4e-4 above: a sequence's ratio stays close to 1) and
`train.loss_type: grpo` (one term per sequence), unless a recipe sets them (ftkit/rl/config.py).
With one update per rollout batch (the default) every ratio is 1 and GSPO's gradient equals GRPO's
with the sequence-mean loss; the two differ once `num_iterations` or `minibatch_size` reuse a batch.
"""

from __future__ import annotations

from ftkit.rl.objectives.grpo import GRPO


class GSPO(GRPO):
    name = "gspo"
    note = ("note: a GSPO loss near zero is normal (advantages are centred within each group); its ratios are "
            "per sequence, so clip_fraction counts whole episodes")
