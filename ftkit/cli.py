"""The `ftkit` command.

    ftkit sft recipes/gpt2_math.yaml                       # fine-tune (full, LoRA or QLoRA) from a recipe
    ftkit rl --gym arithmetic                              # GRPO (or --algo rloo|ppo) from the SFT model
    ftkit dpo recipes/dpo_arithmetic.yaml                  # preference pairs -> DPO (ftkit rm: reward model)
    ftkit eval --gym arithmetic --model runs/gpt2_math/model
    ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged
    ftkit serve --model runs/gpt2_math/model              # OpenAI-compatible server (vLLM, on a GPU)
    ftkit gym check arithmetic                             # list | play | new | check text gyms
    ftkit collect demos --gym arithmetic --n 1000 --out data/arith_demos   # datasets with a card

Mistakes in what the user typed or pointed at (a recipe key, a file, a gym id) are reported as one line
and exit code 2; the traceback is kept for ftkit's own bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from ftkit.collect_cli import add_collect_commands
from ftkit.errors import FtkitError
from ftkit.gym_cli import add_gym_commands
from ftkit.rl import DEFAULT_MODEL as DEFAULT_RL_MODEL

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (argparse prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ftkit", description="Fine-tune language models and train them with RL on text gyms.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sft = sub.add_parser("sft", help="supervised fine-tuning from a recipe",
                         description="Fine-tune from a YAML recipe: ftkit sft recipes/gpt2_math.yaml method=lora")
    sft.add_argument("recipe", help="YAML recipe, e.g. recipes/gpt2_math.yaml")
    sft.add_argument("overrides", nargs="*", help="dotted overrides: train.learning_rate=1e-4 method=lora")
    sft.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    sft.add_argument("--overwrite", action="store_true", help="replace an earlier run in the same folder")
    sft.set_defaults(func=_cmd_sft)

    for kind, help_text in (("dpo", "direct preference optimization on preference pairs (TRL DPOTrainer)"),
                            ("rm", "train a reward model on preference pairs (TRL RewardTrainer)")):
        p = sub.add_parser(kind, help=help_text, description=f"{help_text}: ftkit {kind} recipes/{kind}_arithmetic.yaml")
        p.add_argument("recipe", help=f"YAML recipe with kind: {kind}")
        p.add_argument("overrides", nargs="*", help="dotted overrides: train.learning_rate=1e-5 method=lora")
        p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
        p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the same folder")
        p.set_defaults(func=_cmd_preference, kind=kind)

    rl = sub.add_parser("rl", help="reinforcement learning (GRPO, RLOO, PPO) against a gym",
                        description="RL against a gym: ftkit rl --gym arithmetic, or ftkit rl RECIPE [key=value ...]")
    rl.add_argument("recipe", nargs="?", help="YAML RL recipe, e.g. recipes/grpo_arithmetic.yaml")
    rl.add_argument("overrides", nargs="*", help="dotted overrides: train.steps=50 rollout.group_size=16")
    rl.add_argument("--gym", help="gym id or short name; uses recipes/<algo>_<gym>.yaml when it exists")
    rl.add_argument("--algo", choices=("grpo", "rloo", "ppo"), help="advantage estimator (default grpo)")
    rl.add_argument("--model", help="model folder to start from (default: the recipe's model.name; "
                                    f"{DEFAULT_RL_MODEL} for a gym without a shipped recipe)")
    rl.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    rl.add_argument("--overwrite", action="store_true", help="replace an earlier run in the same folder")
    rl.set_defaults(func=_cmd_rl)

    ev = sub.add_parser("eval", help="held-out accuracy of a model on a gym",
                        description="Score a model on held-out gym problems: ftkit eval --gym arithmetic "
                                    "--model runs/gpt2_math/model")
    ev.add_argument("--gym", required=True, help="gym id or short name, e.g. arithmetic")
    ev.add_argument("--model", required=True, help="model folder (or LoRA adapter folder, or hub id)")
    ev.add_argument("gym_args", nargs="*", help="gym arguments as key=value, e.g. digits=4 answer_format=reversed")
    ev.add_argument("--n", type=int, default=500, help="number of held-out problems (default 500)")
    ev.add_argument("--seed", type=int, default=None, help="seed of the problems (default: the run's eval seed)")
    ev.add_argument("--batch-size", type=int, default=128)
    ev.add_argument("--max-new-tokens", type=int, default=16)
    ev.add_argument("--samples", type=int, default=10, help="sample generations to show")
    ev.add_argument("--output", help="also write the results as JSON to this file")
    ev.add_argument("--engine", default="auto", choices=("auto", "hf", "vllm"),
                    help="generation engine: auto picks vLLM when installed and a GPU is present")
    ev.set_defaults(func=_cmd_eval)

    ex = sub.add_parser("export", help="merge a LoRA adapter into a plain model folder",
                        description="ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged")
    ex.add_argument("adapter", help="adapter folder written by a LoRA/QLoRA run")
    ex.add_argument("out", help="where to write the merged model")
    ex.set_defaults(func=_cmd_export)

    srv = sub.add_parser("serve", help="an OpenAI-compatible server for a trained model (vLLM)",
                         description="Serve a model folder or LoRA adapter: ftkit serve --model runs/gpt2_math/model")
    srv.add_argument("--model", required=True, help="model folder, or a LoRA adapter folder")
    srv.add_argument("--name", help="the model name clients ask for (default: the run's name)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--merge", action="store_true", help="serve a LoRA adapter merged into its base model")
    srv.add_argument("--print-command", action="store_true", help="only print the vllm serve command")
    srv.add_argument("vllm_args", nargs="*", help="more `vllm serve` arguments, after --")
    srv.set_defaults(func=_cmd_serve)

    add_gym_commands(sub)  # ftkit gym list | play | new | check
    add_collect_commands(sub)  # ftkit collect demos | rollouts | filter | pairs | import | label | ...
    return parser


def _cmd_sft(args: argparse.Namespace) -> int:
    from ftkit import sft
    from ftkit.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    summary = sft.main(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0 if summary else 1


def _cmd_preference(args: argparse.Namespace) -> int:
    from ftkit import preference
    from ftkit.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, kind=args.kind)
    summary = preference.main(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0 if summary else 1


def _cmd_rl(args: argparse.Namespace) -> int:
    from ftkit.rl import trainer
    from ftkit.rl.shortcuts import recipe_from_args

    recipe = recipe_from_args(args.recipe, args.overrides, gym=args.gym, algo=args.algo, model=args.model)
    summary = trainer.main(recipe, resume=args.resume, overwrite=args.overwrite)
    return 0 if summary is not None else 1


def _cmd_eval(args: argparse.Namespace) -> int:
    from ftkit.evaluate import run_eval

    return run_eval(args)


def _cmd_serve(args: argparse.Namespace) -> int:
    import shlex

    from ftkit.serve import run_serve, serve_command

    if args.print_command:
        print(shlex.join(serve_command(args.model, name=args.name, host=args.host, port=args.port,
                                       merge=args.merge, extra=args.vllm_args)))
        return 0
    return run_serve(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from ftkit.export import merge_adapter

    out = merge_adapter(Path(args.adapter), Path(args.out))
    print(f"merged model written to {out}")
    return 0


def quiet_libraries() -> None:
    """Keep the libraries' chatter (download bars, advisory warnings) out of the user's way.

    One of them is spurious for ftkit: `generate` drops an all-ones attention mask, then GPT-2 warns
    "We strongly recommend passing in an `attention_mask`" when a finished row's padding is decoded.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import logging

    for name in ("bitsandbytes", "accelerate", "peft", "trl", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come after flags (`ftkit rl --gym arithmetic --overwrite train.steps=5`), which
    # argparse alone rejects once the positionals are consumed: collect those key=value words here.
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(raw_argv)
    args.argv = raw_argv  # `ftkit collect` records the exact command in its dataset card
    if extra:
        if not hasattr(args, "overrides") or any("=" not in word or word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    quiet_libraries()
    try:
        return args.func(args)
    except FtkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; `--resume` continues from the last checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
