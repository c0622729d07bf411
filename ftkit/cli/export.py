"""`ftkit export`: merge a LoRA adapter into a plain model folder.

    ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit export`."""
    ex = subparsers.add_parser("export", help="merge a LoRA adapter into a plain model folder",
                               description="ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged")
    ex.add_argument("adapter", help="adapter folder written by a LoRA/QLoRA run")
    ex.add_argument("out", help="where to write the merged model")
    ex.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.export import merge_adapter

    out = merge_adapter(args.adapter, args.out)
    print(f"merged model written to {out}")
    return 0
