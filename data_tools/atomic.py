"""Write a whole folder so that a kill at any moment leaves the old one or the new one, never half of one.

    save_folder_atomic(Path("data/arith_demos"), lambda staging: (staging / "x.txt").write_text("x"))

Used for collected datasets (`data_tools.store`) and, through `ftkit.runs`, for models and checkpoints.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def save_folder_atomic(final: Path, write: Callable[[Path], object]) -> None:
    """Write a whole folder with `write(staging_folder)` beside `final`, then rename it into place.

    A kill during the write leaves the previous version (or nothing), never a half-written folder.
    """
    staging = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    _permissions_from_umask(staging)
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _permissions_from_umask(folder: Path) -> None:
    """Give the written files the permissions the user's umask asks for (usually rw-r--r--).

    safetensors (through transformers' and peft's save_pretrained) writes its file through a private
    temporary file, which leaves it rw------- while the config beside it is rw-r--r--: a model another
    account (a shared cache, a serving user) can list but not load.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)
