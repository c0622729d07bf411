"""`ftkit serve`: an OpenAI-compatible HTTP server for a trained model, through vLLM.

    ftkit serve --model runs/gpt2_math/model                 # a full model folder
    ftkit serve --model runs/gpt2_math_lora/adapter          # a LoRA adapter, served on its base model
    ftkit serve --model runs/gpt2_math_lora/adapter --merge  # ... or merged into a plain folder first
    curl localhost:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"model": "gpt2_math", "prompt": "rev 123+456=", "max_tokens": 6, "temperature": 0}'

ftkit does not write its own server: `vllm serve` is the one people deploy, so this command only
checks the folder, works out vLLM's arguments (the base model and `--lora-modules` for an adapter),
prints the exact command and runs it. Where vLLM cannot run (not installed, or no GPU) it says so in
one line and exits; `ftkit eval` and `transformers` still work on the same folder.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from ftkit.errors import ConfigError
from ftkit.vllm_engine import resolve_engine


def serve_command(model: str, *, name: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                  merge: bool = False, extra: list[str] | None = None) -> list[str]:
    """The `vllm serve ...` command line for a model or adapter folder (no vLLM needed to build it).

        ftkit serve --model runs/gpt2_math/model --print-command

        print(shlex.join(ftkit.serve.serve_command("runs/gpt2_math/model", port=8001)))
    """
    folder = Path(model)
    if not folder.is_dir():
        raise ConfigError(f"no such model folder: {model}")
    served = name or (folder.parent.name if folder.name in ("model", "adapter", "merged") else folder.name)
    adapter_config = folder / "adapter_config.json"
    base = ["vllm", "serve"]
    if adapter_config.is_file() and not merge:
        base_model = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not base_model:
            raise ConfigError(f"{adapter_config} names no base model; serve it with --merge instead")
        rank = json.loads(adapter_config.read_text()).get("r", 16)
        return [*base, base_model, "--host", host, "--port", str(port), "--enable-lora",
                "--max-lora-rank", str(max(8, int(rank))), "--lora-modules", f"{served}={folder}", *(extra or [])]
    if adapter_config.is_file():
        folder = folder.parent / "merged"
        if not folder.is_dir():
            from ftkit.export import merge_adapter

            merge_adapter(Path(model), folder)
    return [*base, str(folder), "--served-model-name", served, "--host", host, "--port", str(port), *(extra or [])]


def run_serve(model: str, *, name: str | None = None, host: str = "127.0.0.1", port: int = 8000,
              merge: bool = False, extra: list[str] | None = None) -> int:
    """Replace this process with `vllm serve` for a model or adapter folder (see `serve_command`).

        ftkit serve --model runs/gpt2_math/model

        ftkit.serve.run_serve("runs/gpt2_math/model", port=8001)  # does not return: vLLM takes the process
    """
    command = serve_command(model, name=name, host=host, port=port, merge=merge, extra=extra)
    resolve_engine("vllm")  # one clear line, not a traceback, where vLLM cannot run
    if shutil.which("vllm") is None:
        raise ConfigError("the `vllm` command is not on PATH; reinstall with pip install 'ftkit[vllm]'")
    print("running: " + shlex.join(command), file=sys.stderr)
    sys.stderr.flush()
    os.execvp(command[0], command)  # the server replaces this process: Ctrl-C stops it directly
    return 0  # pragma: no cover
