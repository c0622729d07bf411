"""`ftkit serve`: an OpenAI-compatible server for a trained model, through `vllm serve`.

    ftkit serve --model runs/gpt2_math/model
    ftkit serve --model runs/gpt2_math_lora/adapter --print-command -- --max-model-len 1024
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `ftkit serve`."""
    srv = subparsers.add_parser("serve", help="an OpenAI-compatible server for a trained model (vLLM)",
                                description="Serve a model folder or LoRA adapter: ftkit serve --model runs/gpt2_math/model")
    srv.add_argument("--model", required=True, help="model folder, or a LoRA adapter folder")
    srv.add_argument("--name", help="the model name clients ask for (default: the run's name)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--merge", action="store_true", help="serve a LoRA adapter merged into its base model")
    srv.add_argument("--print-command", action="store_true", help="only print the vllm serve command")
    srv.add_argument("vllm_args", nargs="*", help="more `vllm serve` arguments, after --")
    srv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex

    from ftkit.serve import run_serve, serve_command

    where = {"name": args.name, "host": args.host, "port": args.port, "merge": args.merge, "extra": args.vllm_args}
    if args.print_command:
        print(shlex.join(serve_command(args.model, **where)))
        return 0
    return run_serve(args.model, **where)
