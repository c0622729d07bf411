"""`ftkit sft`, `ftkit dpo` and `ftkit rm`: train from a YAML recipe, with dotted overrides.

    ftkit sft recipes/gpt2_math.yaml method=lora
    ftkit dpo recipes/dpo_arithmetic.yaml
    ftkit rm recipes/rm_arithmetic.yaml
    ftkit sft recipes/gpt2_math.yaml --report-to tensorboard
"""

from __future__ import annotations

import argparse

PREFERENCE_KINDS = (("dpo", "direct preference optimization on preference pairs (TRL DPOTrainer)"),
                    ("rm", "train a reward model on preference pairs (TRL RewardTrainer)"))


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit sft`, `ftkit dpo` and `ftkit rm`."""
    sft = subparsers.add_parser("sft", help="supervised fine-tuning from a recipe",
                                description="Fine-tune from a YAML recipe: ftkit sft recipes/gpt2_math.yaml method=lora")
    _recipe_arguments(sft, "YAML recipe, e.g. recipes/gpt2_math.yaml",
                      "dotted overrides: train.learning_rate=1e-4 method=lora")
    sft.set_defaults(func=run_sft)
    for kind, help_text in PREFERENCE_KINDS:
        p = subparsers.add_parser(kind, help=help_text,
                                  description=f"{help_text}: ftkit {kind} recipes/{kind}_arithmetic.yaml")
        _recipe_arguments(p, f"YAML recipe with kind: {kind}", "dotted overrides: train.learning_rate=1e-5 method=lora")
        p.set_defaults(func=run_preference, kind=kind)


def _recipe_arguments(p: argparse.ArgumentParser, recipe_help: str, overrides_help: str) -> None:
    p.add_argument("recipe", help=recipe_help)
    p.add_argument("overrides", nargs="*", help=overrides_help)
    add_run_folder_flags(p)
    add_report_to_flag(p)


def add_run_folder_flags(p: argparse.ArgumentParser) -> None:
    """--resume and --overwrite: what to do with a run folder that already holds a run."""
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the same folder")


def add_report_to_flag(p: argparse.ArgumentParser) -> None:
    """--report-to: the recipe's report_to, from the command line."""
    p.add_argument("--report-to", metavar="NAME[,NAME]",
                   help="experiment trackers (tensorboard, trackio, wandb, mlflow, comet_ml, or none); "
                        "overrides the recipe's report_to")


def with_report_to(overrides: list[str], report_to: str | None) -> list[str]:
    """The overrides, with --report-to last so that it wins over the recipe and a report_to=... word."""
    return [*overrides, f"report_to={report_to}"] if report_to is not None else list(overrides)


def run_sft(args: argparse.Namespace) -> int:
    from ftkit import sft
    from ftkit.config import load_recipe

    recipe = load_recipe(args.recipe, with_report_to(args.overrides, args.report_to))
    summary = sft.main(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0 if summary else 1


def run_preference(args: argparse.Namespace) -> int:
    from ftkit import preference
    from ftkit.config import load_recipe

    recipe = load_recipe(args.recipe, with_report_to(args.overrides, args.report_to), kind=args.kind)
    summary = preference.main(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0 if summary else 1
