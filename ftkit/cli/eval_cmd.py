"""`ftkit eval`: held-out accuracy of a model on a gym, by difficulty, with sample generations.

    ftkit eval --gym arithmetic --model runs/gpt2_math/model --output eval.json
    ftkit eval --gym arithmetic --model runs/smol/model --chat --system-prompt "Answer with the number."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit eval`."""
    ev = subparsers.add_parser("eval", help="held-out accuracy of a model on a gym",
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
    ev.add_argument("--chat", action=argparse.BooleanOptionalAction, default=None,
                    help="show each problem as a chat message through the model's chat template (--no-chat: as "
                         "plain text); default: as the model's training run did (its ftkit_training_data.json)")
    ev.add_argument("--system-prompt", default=None,
                    help="the system message before each problem (implies --chat); default: the training run's")
    ev.add_argument("--engine", default="auto", choices=("auto", "hf", "vllm"),
                    help="generation engine: auto picks vLLM when installed and a GPU is present")
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.config import parse_key_values
    from ftkit.errors import ConfigError
    from ftkit.evaluate import EvalOptions, run_eval
    from gyms.spec import GymSpec

    if args.system_prompt is not None and args.chat is False:
        raise ConfigError("--system-prompt needs chat: drop --no-chat (a plain-text prompt has nowhere to put it)")
    chat = True if args.system_prompt is not None else args.chat
    spec = GymSpec(args.gym, parse_key_values(args.gym_args), chat=args.system_prompt is not None,
                   system_prompt=args.system_prompt)
    options = EvalOptions(n=args.n, seed=args.seed, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                          samples=args.samples)
    result = run_eval(args.model, spec, options, engine=args.engine, chat=chat)
    if args.output:
        Path(args.output).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0
