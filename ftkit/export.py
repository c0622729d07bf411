"""Merge a LoRA adapter into its base model and save a plain model folder.

    ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged

The merged folder has no peft dependency: `AutoModelForCausalLM.from_pretrained`, vLLM and any other
tool open it as an ordinary checkpoint. QLoRA adapters are merged into the base loaded in full
precision (merging into 4-bit weights would round the update away).
"""

from __future__ import annotations

import json
from pathlib import Path

from ftkit.errors import ModelError


def adapter_base(adapter_dir: Path) -> str:
    """The base model an adapter was trained on, as recorded in its adapter_config.json."""
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise ModelError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{config_file} does not say which base model the adapter belongs to")
    beside = adapter_dir.parent / "base_model"  # an ftkit run folder that was moved keeps its base here
    if not Path(base).exists() and (beside / "config.json").is_file():
        return str(beside)
    return base


def load_adapter_model(adapter_dir: str | Path, dtype=None):
    """Base model plus adapter, ready for generation (the adapter not merged)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir = Path(adapter_dir)
    base = adapter_base(adapter_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, use_safetensors=True)
    except OSError as exc:
        raise ModelError(f"cannot load the adapter's base model {base}: {str(exc).splitlines()[0]}") from None
    return PeftModel.from_pretrained(model, adapter_dir)


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Fold the adapter's low-rank update into the base weights (W + B·A·alpha/r) and save; return `out_dir`.

        ftkit export runs/gpt2_math_lora/adapter runs/gpt2_math_lora/merged

        ftkit.export.merge_adapter("runs/gpt2_math_lora/adapter", "runs/gpt2_math_lora/merged")
    """
    from transformers import AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    merged = load_adapter_model(adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out_dir)
    return out_dir
