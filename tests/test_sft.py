"""SFT smoke runs on a ~1M-parameter scratch model: full, LoRA, 4-bit and 8-bit QLoRA, and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ftkit import sft
from ftkit.config import validate_recipe
from ftkit.errors import TrainingError


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _run(raw: dict) -> tuple[dict, Path]:
    recipe = validate_recipe(raw)
    summary = sft.main(recipe)
    return summary, recipe.run_dir


def test_full_finetune_changes_weights_and_writes_the_run_folder(tiny_recipe):
    summary, run_dir = _run(tiny_recipe())
    before, after = _weights(run_dir / "base_model"), _weights(run_dir / "model")
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert len(changed) > 0.9 * len(after), "full fine-tuning should update nearly every tensor"
    assert summary["method"] == "full" and summary["steps"] == 4
    assert summary["model"] == "scratch:tiny" and not summary["fallback_used"]
    assert summary["train_loss"] is not None and torch.isfinite(torch.tensor(summary["train_loss"]))
    assert 0.0 <= summary["eval_accuracy"] <= 1.0 and summary["eval_n"] == 16
    assert summary["tokens_per_s"] > 0 and summary["train_runtime_s"] > 0
    for name in ("recipe.yaml", "env.json", "metrics.jsonl", "summary.json", "eval.json", "samples.md", "loss.png"):
        assert (run_dir / name).is_file(), name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert json.loads((run_dir / "env.json").read_text())["packages"]["trl"]
    reloaded = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert reloaded.config.n_layer == 4
    assert not (run_dir / "model" / "training_args.bin").exists()


@pytest.mark.parametrize("method, bits", [("lora", None), ("qlora", 4), ("qlora", 8)])
def test_adapter_methods_train_only_adapters(tiny_recipe, method, bits):
    raw = tiny_recipe(method=method, lora={"r": 4, "alpha": 8}, merge_adapter=True)
    if bits:
        raw["quantization"] = {"bits": bits}
    summary, run_dir = _run(raw)
    assert summary["parameters"]["trainable"] < 0.2 * summary["parameters"]["total"]
    assert torch.isfinite(torch.tensor(summary["train_loss"]))
    adapter = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    lora_b = [t for k, t in adapter.items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b), "LoRA B starts at zero; training must move it"
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merged")  # a plain model, no peft needed
    if method == "lora":  # the same merge from the command line
        from ftkit.cli import main

        assert main(["export", str(run_dir / "adapter"), str(run_dir / "exported")]) == 0
        exported = AutoModelForCausalLM.from_pretrained(run_dir / "exported")
        for key, value in merged.state_dict().items():
            torch.testing.assert_close(exported.state_dict()[key], value)
    base = AutoModelForCausalLM.from_pretrained(run_dir / "base_model")
    merged_sd, base_sd = merged.state_dict(), base.state_dict()
    assert any(not torch.allclose(merged_sd[k], base_sd[k]) for k in base_sd if k.endswith("c_attn.weight"))


def test_nan_loss_stops_with_a_clear_error(tiny_recipe, tmp_path):
    from ftkit.scratch import build_scratch

    broken = build_scratch("tiny", tmp_path / "broken")
    model = AutoModelForCausalLM.from_pretrained(broken)
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))  # every logit, hence the loss, becomes NaN
    model.save_pretrained(broken)
    with pytest.raises(TrainingError, match="the training loss became nan at step 1"):
        _run(tiny_recipe(model={"name": str(broken)}))


def test_existing_run_is_not_clobbered(tiny_recipe):
    _run(tiny_recipe(eval={"n": 0}))
    with pytest.raises(Exception, match="already holds a run"):
        _run(tiny_recipe(eval={"n": 0}))


def test_resume_skips_an_incomplete_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (folder / "checkpoint-4").mkdir()  # killed before its state file was written
    (folder / "checkpoint-6").mkdir()
    (folder / "checkpoint-6" / "trainer_state.json").write_text('{"global_st')  # killed mid-write
    assert sft.last_complete_checkpoint(folder) == folder / "checkpoint-2"
    assert sft.last_complete_checkpoint(tmp_path / "none") is None


def test_killed_run_resumes_from_its_last_checkpoint(tiny_recipe, tmp_path):
    import yaml

    raw = tiny_recipe(train={"max_steps": 60, "save_steps": 5, "logging_steps": 5, "learning_rate": 1e-3,
                             "per_device_train_batch_size": 8, "max_length": 32}, eval={"n": 8})
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    run_dir = Path(raw["output_dir"])
    cmd = [sys.executable, "-m", "ftkit", "sft", str(recipe_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not sft.last_complete_checkpoint(run_dir / "checkpoints"):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoint = sft.last_complete_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None, "no checkpoint was written before the kill"
    killed_at = int(checkpoint.name.split("-")[1])
    assert killed_at < 60 and not (run_dir / "summary.json").exists()

    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {checkpoint}" in done.stderr.replace("\n", "")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["resumed"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loss_steps = [r["step"] for r in records if "loss" in r]
    # Records past the checkpoint were dropped on resume and logged again: no step twice, none missing.
    assert loss_steps == sorted(set(loss_steps)), loss_steps
    assert loss_steps[-1] == 60 and 5 in loss_steps


def _file_recipe(tiny_recipe, path, **data):
    raw = tiny_recipe(eval={"n": 0})
    raw["data"] = {"path": str(path), **data}
    return raw


def test_trains_from_a_jsonl_file_in_both_formats(tiny_recipe, tmp_path):
    rows = [{"q": f"{i}+{i}=", "a": str(2 * i)} for i in range(20)]
    pc = tmp_path / "pc.jsonl"
    pc.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary, _ = _run(_file_recipe(tiny_recipe, pc, prompt_field="q", completion_field="a"))
    assert summary["steps"] == 4 and torch.isfinite(torch.tensor(summary["train_loss"]))

    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": r["q"]},
                                                    {"role": "assistant", "content": r["a"]}]}) + "\n"
                            for r in rows))
    raw = _file_recipe(tiny_recipe, chat)
    raw["output_dir"] = str(tmp_path / "chat-run")
    summary, _ = _run(raw)
    assert "assistant_only_loss" not in summary["train_args"]  # ftkit masks the assistant turns itself (sft_data)
    assert torch.isfinite(torch.tensor(summary["train_loss"]))
