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


class FakeVLLM:
    """Just enough of the `vllm` module for VLLMEngine: records the SamplingParams it is given and
    answers each prompt with the next scripted (token_ids, finish_reason, stop_reason)."""

    def __init__(self, outputs):
        import types

        self.outputs, self.sampling = list(outputs), []
        fake = self

        class SamplingParams:
            def __init__(self, **kwargs):
                self.kwargs = kwargs
                fake.sampling.append(kwargs)

        class LLM:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

            def generate(self, prompts, sampling, use_tqdm=False):
                answers = []
                for _ in prompts:
                    ids, finish, stop = fake.outputs.pop(0)
                    sample = types.SimpleNamespace(token_ids=ids, text="", logprobs=None, finish_reason=finish,
                                                   stop_reason=stop)
                    answers.append(types.SimpleNamespace(outputs=[sample]))
                return answers

        self.module = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)


def test_vllm_stops_at_every_stop_token_and_reports_it_as_eos(monkeypatch, family_tokenizer):
    import sys
    import types

    from ftkit.chat import stop_token_ids
    from ftkit.engine import SamplingParams

    tok = family_tokenizer("llama3")
    eot, eos = tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id
    fake = FakeVLLM([([5, eot], "stop", eot), ([5, eos], "stop", None), ([5, 6], "stop", "\n"), ([5, 6], "length", None)])
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    model = types.SimpleNamespace(generation_config=types.SimpleNamespace(eos_token_id=[eos, 7]), name_or_path="m")
    monkeypatch.setattr(vllm_engine, "resolve_engine", lambda name: "vllm")
    engine = vllm_engine.make_engine("vllm", model, tok)
    out = engine.generate(["a", "b", "c", [{"role": "user", "content": "d"}]], SamplingParams(stop=("\n",)))
    assert sorted(fake.sampling[0]["stop_token_ids"]) == sorted(stop_token_ids(tok, model)) == sorted([eos, 7, eot])
    assert [c.finish_reason for c in out] == ["eos", "eos", "stop", "length"]
    assert out[0].prompt_ids == tok("a")["input_ids"] and out[0].prompt_ids[0] == tok.bos_token_id
    assert out[3].prompt_ids.count(tok.bos_token_id) == 1
