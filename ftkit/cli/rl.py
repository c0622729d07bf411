"""`ftkit rl`: RL (GRPO, DAPO, GSPO, RLOO, REINFORCE++, PPO) against a gym, from a recipe or a gym's name.

    ftkit rl --gym arithmetic
    ftkit rl recipes/grpo_arithmetic.yaml train.max_steps=50
    ftkit rl --gym arithmetic --report-to tensorboard,trackio
"""

from __future__ import annotations

import argparse

from ftkit.cli.sft import add_report_to_flag, add_run_folder_flags, with_report_to
from ftkit.rl import DEFAULT_MODEL as DEFAULT_RL_MODEL

# RLRecipe.algo's choices (ftkit/rl/config.py), spelled out so that `ftkit --help` loads no pydantic model.
ALGOS = ("grpo", "dapo", "gspo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "ppo")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit rl`."""
    rl = subparsers.add_parser("rl", help="reinforcement learning (GRPO, DAPO, GSPO, RLOO, REINFORCE++, PPO)",
                               description="RL against a gym: ftkit rl --gym arithmetic, or ftkit rl RECIPE [key=value ...]")
    rl.add_argument("recipe", nargs="?", help="YAML RL recipe, e.g. recipes/grpo_arithmetic.yaml")
    rl.add_argument("overrides", nargs="*", help="dotted overrides: train.max_steps=50 rollout.num_generations=16")
    rl.add_argument("--gym", help="gym id or short name; uses recipes/<algo>_<gym>.yaml when it exists")
    rl.add_argument("--algo", choices=ALGOS, help="the RL algorithm (default grpo)")
    rl.add_argument("--model", help="model folder to start from (default: the recipe's model.name; "
                                    f"{DEFAULT_RL_MODEL} for a gym without a shipped recipe)")
    add_run_folder_flags(rl)
    add_report_to_flag(rl)
    rl.set_defaults(func=run_rl)


def run_rl(args: argparse.Namespace) -> int:
    from ftkit.rl import trainer
    from ftkit.rl.shortcuts import recipe_from_args

    overrides = with_report_to(args.overrides, args.report_to)
    recipe = recipe_from_args(args.recipe, overrides, gym=args.gym, algo=args.algo, model=args.model)
    summary = trainer.main(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0 if summary is not None else 1
