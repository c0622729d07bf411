"""RL objectives, one class each, chosen by the recipe's `algo` through `OBJECTIVES`.

    python -c "from ftkit.rl.objectives import OBJECTIVES; print(sorted(OBJECTIVES))"

A new objective is one `Objective` subclass in a module of its own, added to the tuple below, to
`RLRecipe.algo`'s choices (`Algo` in ftkit/rl/config.py) and to `ftkit rl --algo`'s (`ftkit/cli/rl.py`,
kept free of torch so that `ftkit --help` stays fast), with tests against hand-computed values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ftkit.rl.objectives.base import LossInputs, Objective, ScoredBatch
from ftkit.rl.objectives.dapo import DAPO
from ftkit.rl.objectives.grpo import GRPO
from ftkit.rl.objectives.gspo import GSPO
from ftkit.rl.objectives.ppo import PPO
from ftkit.rl.objectives.reinforce_pp import ReinforcePlusPlus, ReinforcePlusPlusBaseline
from ftkit.rl.objectives.rloo import RLOO

if TYPE_CHECKING:
    from ftkit.rl.config import RLRecipe

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (GRPO, RLOO, PPO, DAPO, GSPO, ReinforcePlusPlus, ReinforcePlusPlusBaseline)
}

__all__ = ["OBJECTIVES", "DAPO", "GRPO", "GSPO", "PPO", "RLOO", "ReinforcePlusPlus", "ReinforcePlusPlusBaseline",
           "LossInputs", "Objective", "ScoredBatch", "make_objective"]


def make_objective(recipe: RLRecipe) -> Objective:
    """The objective of a recipe's `algo`, configured by its train section."""
    return OBJECTIVES[recipe.algo](recipe.train, recipe.rollout.num_generations)
