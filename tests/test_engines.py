"""Engine choice (auto / hf / vllm), vLLM's one-line errors on a machine without it, and `ftkit serve`."""

from __future__ import annotations

import json

import pytest

from ftkit import vllm_engine
from ftkit.cli import main
from ftkit.errors import EngineError


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("error: "), err
    return err


@pytest.mark.parametrize(("installed", "cuda", "auto"), [(False, False, "hf"), (True, False, "hf"),
                                                          (False, True, "hf"), (True, True, "vllm")])
def test_auto_picks_vllm_only_when_installed_and_a_gpu_is_present(monkeypatch, installed, cuda, auto):
    monkeypatch.setattr(vllm_engine, "engine_status",
                        lambda: {"vllm_installed": installed, "cuda": cuda, "auto": "vllm" if installed and cuda else "hf"})
    assert vllm_engine.resolve_engine("auto") == auto
    assert vllm_engine.resolve_engine("hf") == "hf"
    if installed and cuda:
        assert vllm_engine.resolve_engine("vllm") == "vllm"
    else:
        with pytest.raises(EngineError, match="not installed" if not installed else "no CUDA GPU"):
            vllm_engine.resolve_engine("vllm")


def test_this_machine_gets_the_hf_engine():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine")
    assert vllm_engine.engine_status()["auto"] == "hf"
    from ftkit.engine import HFEngine

    assert isinstance(vllm_engine.make_engine("auto", model=None, tokenizer=None), HFEngine)
    with pytest.raises(EngineError, match="one of auto, hf, vllm"):
        vllm_engine.resolve_engine("tensorrt")


def test_vllm_names_drop_peft_prefixes():
    assert (vllm_engine._vllm_name("base_model.model.transformer.h.0.attn.c_attn.base_layer.weight")
            == "transformer.h.0.attn.c_attn.weight")


def test_serve_builds_the_vllm_command_for_models_and_adapters(tmp_path):
    from ftkit.serve import serve_command

    model = tmp_path / "runs" / "math" / "model"
    model.mkdir(parents=True)
    command = serve_command(str(model), port=9000)
    assert command[:3] == ["vllm", "serve", str(model)] and "--served-model-name" in command
    assert command[command.index("--served-model-name") + 1] == "math" and "9000" in command
    adapter = tmp_path / "runs" / "math_lora" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "base/dir", "r": 32}))
    command = serve_command(str(adapter))
    assert command[2] == "base/dir" and "--enable-lora" in command
    assert command[command.index("--lora-modules") + 1] == f"math_lora={adapter}"
    assert command[command.index("--max-lora-rank") + 1] == "32"


def test_serve_and_eval_say_in_one_line_why_vllm_cannot_run(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine")
    model = tmp_path / "model"
    model.mkdir()
    assert main(["serve", "--model", str(model)]) == 2
    assert "vllm" in _error_line(capsys).lower()
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "no such model folder" in _error_line(capsys)
    assert main(["collect", "rollouts", "--gym", "arithmetic", "--model", str(model), "--n", "1", "--k", "1",
                 "--engine", "vllm", "--out", str(tmp_path / "r")]) == 2
    assert "vllm" in _error_line(capsys).lower()
    assert not list(tmp_path.glob("r*"))  # nothing left behind


def test_gpu_check_script_parses():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
