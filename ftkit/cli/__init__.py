"""The `ftkit` command: one module of this package per command, each with its parser and its handler.

    ftkit sft recipes/gpt2_math.yaml                       # fine-tune (full, LoRA or QLoRA) from a recipe
    ftkit rl --gym arithmetic                              # GRPO (or --algo rloo|ppo) from the SFT model
    ftkit dpo recipes/dpo_arithmetic.yaml                  # preference pairs -> DPO (ftkit rm: reward model)
    ftkit eval --gym arithmetic --model runs/gpt2_math/model
    ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged
    ftkit serve --model runs/gpt2_math/model              # OpenAI-compatible server (vLLM, on a GPU)
    ftkit gym check arithmetic                             # list | play | new | check text gyms
    ftkit collect demos --gym arithmetic --n 1000 --out data/arith_demos   # datasets with a card
    ftkit data show recipes/gpt2_math.yaml --n 3           # the ids SFT trains on, trained tokens marked
    ftkit runs                                             # the run folders in runs/, newest first
    ftkit report runs/grpo_arithmetic                      # an HTML page: curves, accuracy, episodes

Each module (`sft`, `rl`, `eval_cmd`, `export`, `serve`, `gym`, `collect`, `data`, `runs`, `report`) has `add_commands(subparsers)`,
which registers its subcommand(s), and handlers that unpack the parsed arguments into a call of the
library with plain arguments: no library function takes an `argparse.Namespace`.

Mistakes in what the user typed or pointed at (a recipe key, a file, a gym id) are reported as one line
and exit code 2; the traceback is kept for ftkit's own bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ftkit.errors import FtkitError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (argparse prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `ftkit` parser: each command module adds its subcommands, in the order `ftkit --help` lists them."""
    from ftkit.cli import collect, data, eval_cmd, export, gym, report, rl, runs, serve, sft

    parser = _Parser(prog="ftkit", description="Fine-tune language models and train them with RL on text gyms.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in (sft, rl, eval_cmd, export, serve, gym, collect, data, runs, report):
        module.add_commands(sub)
    return parser


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
    # Overrides may come after flags (`ftkit rl --gym arithmetic --overwrite train.max_steps=5`), which
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
