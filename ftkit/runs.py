"""Run folders: every run is a folder holding what it was asked, what it did and what it made.

    ls runs/gpt2_math/   # recipe.yaml env.json metrics.jsonl loss.png accuracy.png samples.md model/ summary.json

Writes are atomic (a temporary file, then a rename), so a run killed at any moment leaves either the
old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# Re-exported: sft and rl save models and checkpoints through ftkit.runs.
from data_tools.atomic import save_folder_atomic as save_folder_atomic
from ftkit.errors import FtkitError, ModelError, TrainingError
from gyms.spec import GymSpec

# Written into a trained model's folder so that `ftkit eval` can find its task and skip its training problems.
TRAINING_DATA_FILE = "ftkit_training_data.json"


@dataclass(frozen=True)
class TrainingData:
    """What a trained model's folder remembers of its task (TRAINING_DATA_FILE), for `ftkit eval`.

        TrainingData.read("runs/gpt2_math/model").gym   # GymSpec("arithmetic", {...}) or None

    `gym` is the recipe's task (None: trained on a file with no gym); `train_seed` and `train_size` say
    which of its oracle examples were trained on (None when the data was not the gym's oracle's).
    """

    gym: GymSpec | None = None
    train_seed: int | None = None
    train_size: int | None = None
    path: str | None = None  # the training file, when there was one
    eval_seed: int = 1
    trained_with: str | None = None  # e.g. "ftkit rl (grpo)"

    def save(self, model_dir: Path) -> None:
        record = {**dataclasses.asdict(self), "gym": self.gym.to_dict() if self.gym else None}
        write_json_atomic(Path(model_dir) / TRAINING_DATA_FILE, record)

    @classmethod
    def read(cls, model_dir: str | Path) -> TrainingData | None:
        """The folder's record, or None without one; files of earlier versions (a gym id in "gym", its
        arguments in "gym_kwargs", chat / system_prompt / max_turns beside them) are read too."""
        path = Path(model_dir) / TRAINING_DATA_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); delete it to use the folder "
                             "without its training record") from None
        gym = raw.get("gym")
        if isinstance(gym, str):  # written before the gym section: flat keys
            gym = {"id": gym, "kwargs": raw.get("gym_kwargs") or {},
                   **{k: raw[k] for k in ("chat", "system_prompt", "max_turns") if raw.get(k) is not None}}
        known = {f.name for f in dataclasses.fields(cls)} - {"gym"}
        return cls(gym=GymSpec.from_dict(gym) if gym else None,
                   **{k: v for k, v in raw.items() if k in known and v is not None})

PACKAGES = ("ftkit", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes",
            "gymnasium", "deepspeed", "vllm")


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def checkpoint_step(path: Path) -> int:
    """`checkpoint_step(Path("checkpoints/checkpoint-500"))` is 500."""
    return int(path.name.split("-")[-1])


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoint-<step> folders in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()), key=checkpoint_step)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose trainer_state.json is whole.

    transformers (and ftkit's RL trainer) write trainer_state.json last, so a checkpoint killed halfway
    lacks it (or holds a truncated one): such a folder is skipped, and the one before it is used. That
    makes each checkpoint all-or-nothing for resuming.
    """
    for path in reversed(checkpoints(folder)):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return path
        except (OSError, ValueError):
            print(f"skipping incomplete checkpoint {path}", file=sys.stderr)
    return None


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Create the run folder; refuse to clobber an earlier run unless told to."""
    has_content = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        if not has_content:
            raise TrainingError(f"--resume: {run_dir} holds no run to resume; run without --resume first")
        return
    if has_content:
        if not overwrite:
            raise FtkitError(
                f"{run_dir} already holds a run: add --resume to continue it, --overwrite to replace it, "
                f"or output_dir=runs/<new name> to keep both"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def environment_info(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, platform and git revision: enough to reproduce or explain a result later."""
    versions = {}
    for name in PACKAGES:
        with suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "command": " ".join(argv if argv is not None else sys.argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": _cuda_devices(),
        "packages": versions,
        "git": git_revision(),
    }


def _cuda_devices() -> list[str]:
    try:
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch without CUDA support, or a broken driver: report none
        return []


def git_revision(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """The commit of the code that ran and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True,
                               timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


class MetricsLog:
    """Append-only JSONL of metrics, one object per logging step."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        clean = {k: _json_number(v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)

    def truncate_after(self, step: int) -> None:
        """On resume, drop records past the checkpoint's step: training will log them again."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every whole record of a JSONL file that may be being appended to, or was cut by a kill mid-write: a
    line that does not parse is skipped (and `MetricsLog.truncate_after` drops it on resume)."""
    if not path.is_file():
        return []
    out = []
    with path.open() as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _json_number(value: Any) -> Any:
    # JSON has no NaN; keep the record parseable and the fact visible.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def start_run_folder(run_dir: Path, recipe_yaml: str, *, resume: bool, overwrite: bool) -> None:
    """Claim the run folder (see `prepare_run_dir`) and write the resolved recipe and the environment."""
    prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    write_text_atomic(run_dir / "recipe.yaml", recipe_yaml)
    write_json_atomic(run_dir / "env.json", environment_info())
