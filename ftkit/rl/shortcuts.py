"""`ftkit rl --gym NAME [--algo A] [--model DIR]`: the short form, turned into a full recipe.

    ftkit rl --gym arithmetic                 # = ftkit rl recipes/grpo_arithmetic.yaml
    ftkit rl --gym guess_number --algo ppo    # no ppo_guess_number.yaml: built-in defaults for the gym

The short form looks for the shipped recipe `recipes/<algo>_<gym>.yaml` (in the working folder, then
beside the installed package) and runs it; without one it builds a recipe from the defaults in
`ftkit/rl/config.py` with that gym. The flags are sugar for overrides (`gym.id=`, `algo=`,
`model.name=`), so every other key can still be set as `key=value` after them.
"""

from __future__ import annotations

from pathlib import Path

from ftkit.config import find_recipe
from ftkit.errors import ConfigError
from ftkit.rl.config import RLRecipe, load_rl_recipe


def recipe_from_args(recipe: str | None, overrides: list[str], *, gym: str | None = None,
                     algo: str | None = None, model: str | None = None) -> RLRecipe:
    """The recipe that `ftkit rl` runs, from its positional arguments and flags."""
    overrides = list(overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        overrides.insert(0, recipe)  # `ftkit rl --gym arithmetic train.max_steps=5`: no recipe file given
        recipe = None
    sugar = []
    if model is not None:
        sugar.append(f"model.name={model}")
        sugar.append("model.fallback=null")
    if algo is not None:
        sugar.append(f"algo={algo}")
    if recipe is not None:
        if gym is not None:
            sugar.append(f"gym.id={gym}")
        return load_rl_recipe(recipe, sugar + overrides)
    if gym is None:
        raise ConfigError("ftkit rl needs a recipe (ftkit rl recipes/grpo_arithmetic.yaml) or a gym "
                          "(ftkit rl --gym arithmetic)")
    import gyms

    short = _short_name(gyms.resolve_id(gym))
    shipped = find_recipe(f"{algo or 'grpo'}_{short}.yaml")
    if shipped is not None:
        return load_rl_recipe(shipped, sugar + overrides)
    base = {"name": f"{algo or 'grpo'}_{short}", "algo": algo or "grpo", "gym": {"id": gym}}
    return load_rl_recipe(None, sugar + overrides, base=base)


def _short_name(gym_id: str) -> str:
    import gyms

    for info in gyms.list_gyms():
        if info.id == gym_id:
            return info.short_name
    return gym_id.replace("/", "_").replace(":", "_")
