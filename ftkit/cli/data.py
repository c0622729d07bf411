"""`ftkit data show`: the examples SFT trains on, as the model sees them, with the trained tokens marked.

    ftkit data show recipes/gpt2_math.yaml --n 3
    ftkit data show recipes/gpt2_math.yaml train.max_length=12      # what a shorter cut would do
    ftkit data show data/chats.jsonl --model runs/smol/model --n 2
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit data show`."""
    data = subparsers.add_parser("data", help="training data as the model sees it",
                                 description="Look at training data as token ids: ftkit data show RECIPE_OR_DATASET")
    commands = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))
    show = commands.add_parser("show", help="a recipe's (or dataset's) first examples, trained tokens marked",
                               description="Print the first examples SFT trains on, decoded, with the trained "
                                           "tokens marked: ftkit data show recipes/gpt2_math.yaml --n 3")
    show.add_argument("target", help="an SFT recipe (.yaml), or a dataset file or folder (with --model)")
    show.add_argument("overrides", nargs="*", help="a recipe's dotted overrides: train.max_length=32 gym.chat=true")
    show.add_argument("--n", type=int, default=3, help="examples to print (default 3)")
    show.add_argument("--model", help="a dataset's model (folder, hub id or scratch:tiny): its tokenizer and chat "
                                      "template; no weights are loaded")
    show.add_argument("--chat", action="store_true", help="a dataset's prompt/completion rows through the chat template")
    show.add_argument("--system-prompt", default=None, help="with a dataset: the system message (implies --chat)")
    show.add_argument("--max-length", type=int, default=None, help="with a dataset: cut as train.max_length would")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from ftkit.data_show import ShowOptions, show_data

    options = ShowOptions(n=args.n, model=args.model, chat=args.chat, system_prompt=args.system_prompt,
                          max_length=args.max_length)
    show_data(args.target, args.overrides, options)
    return 0
