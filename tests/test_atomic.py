"""Folders written atomically: old or new, never half; files readable as the umask says.

    python -m pytest tests/test_atomic.py -q
"""

from __future__ import annotations

import os
import stat

import pytest

from data_tools.atomic import save_folder_atomic


def test_a_failed_write_keeps_the_old_folder(tmp_path):
    final = tmp_path / "model"
    save_folder_atomic(final, lambda d: (d / "a.txt").write_text("old"))

    def broken(d):
        (d / "a.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        save_folder_atomic(final, broken)
    assert (final / "a.txt").read_text() == "old"


def test_private_temporary_files_get_the_umask_permissions(tmp_path):
    # safetensors writes model.safetensors through a private (0600) temporary file
    def write(d):
        fd = os.open(d / "model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)

    old = os.umask(0o022)
    try:
        save_folder_atomic(tmp_path / "model", write)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model" / "model.safetensors").stat().st_mode) == 0o644


def test_a_metrics_line_cut_by_a_kill_is_skipped_and_dropped_on_resume(tmp_path):
    from ftkit.runs import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1, "loss": 2.0})
    log.append({"step": 2, "loss": 1.5})
    with log.path.open("a") as f:
        f.write('{"step": 3, "lo')  # SIGKILL in the middle of a write
    assert [r["step"] for r in log.read()] == [1, 2]
    log.truncate_after(1)  # --resume from the checkpoint at step 1
    log.append({"step": 2, "loss": 1.4})
    assert log.read() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.4}]
