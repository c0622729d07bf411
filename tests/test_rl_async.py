"""Asynchronous rollouts (`rollout.async_steps`, ftkit/rl/async_rollout.py): the next steps' batches are played
in a background thread while a step trains, by a policy at most N updates old.

    OMP_NUM_THREADS=1 python -m pytest tests/test_rl_async.py -q

Killed and resumed, an asynchronous run ends bitwise where an uninterrupted one does:
tests/test_rl_resume.py (`test_async_rollouts_resume_exactly`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from test_rl_trainer import FirstByteEnv, read_metrics, rl_recipe, run, weights

from ftkit.errors import ConfigError


def steps(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir) if "reward_mean" in r]


@pytest.fixture
def first_byte_gym(temporary_gym):
    return temporary_gym("ftkit/FirstByteTest-v0", FirstByteEnv, "first_byte_test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny scratch model and its tokenizer, fresh for each test that asks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit.scratch import build_scratch

    folder = build_scratch("tiny", tmp_path_factory.mktemp("tiny") / "m")
    return lambda: (AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder))


class VersionedEngine:
    """Stands for an engine with weights of its own: which policy version it holds, and its syncs."""

    def __init__(self):
        self.version = 0
        self.syncs: list[int] = []

    def sync_weights(self, policy) -> None:
        self.version = policy["version"]
        self.syncs.append(policy["version"])


def play_ahead(engine: VersionedEngine, steps_ahead: int, steps: range, max_steps: int) -> tuple[list[int], list[int]]:
    """Take the batches of `steps` (the policy's version going up by one per step); (lags, versions that played)."""
    import time

    from ftkit.rl.async_rollout import AsyncRollouts
    from ftkit.rl.rollout import RolloutBatch

    played = {}

    def play(step, options, generator):
        time.sleep(0.005)  # the trainer runs on meanwhile
        played[step] = engine.version
        return RolloutBatch([], 0, 0.0)

    rollouts = AsyncRollouts(engine, play, steps_ahead, max_steps, seed=0, rank=0)
    lags, versions = [], []
    try:
        for step in steps:
            _, version = rollouts.take(step, {"version": step}, None)
            lags.append(step - version)
            versions.append(played[step])
            assert played[step] == version  # each batch was played by the weights it says
    finally:
        rollouts.close()
    return lags, versions


def test_the_schedule_syncs_every_n_steps_and_plays_each_batch_by_the_version_it_names():
    engine = VersionedEngine()
    lags, _ = play_ahead(engine, 2, range(7), max_steps=7)
    assert lags == [0, 1, 2, 1, 2, 1, 2] and engine.syncs == [0, 2, 4]  # none after the last step
    engine = VersionedEngine()
    assert play_ahead(engine, 1, range(4), max_steps=4)[0] == [0, 1, 1, 1] and engine.syncs == [0, 1, 2]
    # Resumed at step 3 from a checkpoint without batches played ahead: played on demand by the current
    # weights (lag 0) until the next sync point, never by weights older than they claim.
    engine = VersionedEngine()
    engine.version = 3
    lags, versions = play_ahead(engine, 2, range(3, 7), max_steps=7)
    assert lags == [0, 0, 1, 2] and versions == [3, 4, 4, 4] and engine.syncs == [3, 4]


def test_async_rollouts_train_with_the_lag_logged_and_corrected(tmp_path, first_byte_gym):
    recipe = rl_recipe(tmp_path, rollout={"async_steps": 1}, train={"max_steps": 5, "learning_rate": 1e-2},
                       eval={"n": 8, "every_steps": 2})
    summary = run(recipe)
    records = steps(tmp_path / "run")
    assert [r["async_lag"] for r in records] == [0, 1, 1, 1, 1]  # step 1 plays the start; then the step before's
    for record in records:
        assert math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])
        assert record["rollout_wait_s"] >= 0
    # auto means tis with a lag: the capped fraction is logged only when a correction is on
    assert all("importance_sampling_capped_fraction" in r for r in records)
    # one update behind, the sampler's log-probs are not the trainer's; at lag 0 they are (to rounding)
    assert records[0]["sampler_logprob_diff_max"] < 1e-4
    assert all(r["sampler_logprob_diff_max"] > 1e-3 for r in records[1:])
    base, trained = weights(tmp_path / "run" / "base_model"), weights(tmp_path / "run" / "model")
    assert any(not torch.equal(base[k], trained[k]) for k in base)
    assert summary["steps"] == 5 and summary["heldout_accuracy_end"] is not None


def test_the_first_batch_is_the_synchronous_loops_and_two_steps_ahead_lag_one_or_two(tmp_path, first_byte_gym):
    """Each batch draws from a generator seeded as the synchronous loop seeds torch's global one at that
    step, so the first batch (played by the same weights) is the same; later ones are played by older
    weights. With async_steps 2 the sampler is synced at steps 0, 2, 4...: lags 0, 1, 2, 1, 2."""
    common = {"train": {"max_steps": 5, "learning_rate": 1e-2}, "eval": {"n": 0}}
    run(rl_recipe(tmp_path / "sync", **common))
    run(rl_recipe(tmp_path / "ahead", rollout={"async_steps": 2}, **common))
    sync, ahead = steps(tmp_path / "sync" / "run"), steps(tmp_path / "ahead" / "run")
    assert [r["async_lag"] for r in ahead] == [0, 1, 2, 1, 2]
    for key in ("reward_mean", "response_length", "identical_groups"):
        assert ahead[0][key] == sync[0][key]
    first = [[json.loads(line) for line in (tmp_path / name / "run" / "trajectories.jsonl").open()][:2]
             for name in ("sync", "ahead")]
    assert first[0] == first[1]
    assert "async_lag" not in sync[0] and "rollout_wait_s" not in sync[0]  # the synchronous loop logs as before


def test_async_rollouts_with_dynamic_filtering_ppo_and_lora(tmp_path, first_byte_gym):
    """Combinations that run through the background thread: DAPO's extra draws (in the sampler's thread),
    PPO's value head (trainer only) and LoRA, whose sampler copies only the adapters."""
    recipe = rl_recipe(tmp_path, algo="ppo", method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0},
                       rollout={"async_steps": 1, "num_generations": 4, "dynamic_filtering": True,
                                "max_num_gen_batches": 2},
                       train={"max_steps": 3, "learning_rate": 1e-2, "value_learning_rate": 1e-2}, eval={"n": 0})
    run(recipe)
    records = steps(tmp_path / "run")
    assert [r["async_lag"] for r in records] == [0, 1, 1]
    assert all("num_gen_batches" in r and "value_loss" in r for r in records)


def test_the_sampler_copies_trainable_weights_and_shares_frozen_ones(tiny):
    import peft

    from ftkit.config import LoraSection
    from ftkit.models import lora_config
    from ftkit.rl.async_rollout import CopiedPolicyEngine, copy_bytes

    model, tokenizer = tiny()
    policy = peft.get_peft_model(model, lora_config(LoraSection(r=4, alpha=8, dropout=0.0)))
    engine = CopiedPolicyEngine(policy, tokenizer)
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    own = dict(engine.model.named_parameters())
    assert trainable and all(own[n].data_ptr() != p.data_ptr() for n, p in trainable.items())
    frozen = [n for n, p in policy.named_parameters() if not p.requires_grad]
    assert all(own[n].data_ptr() == dict(policy.named_parameters())[n].data_ptr() for n in frozen)
    assert copy_bytes(engine, policy) == sum(p.numel() * p.element_size() for p in trainable.values())
    assert not any(p.requires_grad for p in engine.model.parameters())
    with torch.no_grad():
        for p in trainable.values():
            p.add_(1.0)
    name = next(iter(trainable))
    assert not torch.equal(own[name], trainable[name])  # the optimizer's steps do not reach the sampler...
    engine.sync_weights(policy)
    assert all(torch.equal(own[n], p) for n, p in trainable.items())  # ...until it is synced


def test_a_played_batch_survives_json_bit_for_bit(tiny, first_byte_gym):
    from ftkit.engine import HFEngine, SamplingParams
    from ftkit.rl.async_rollout import batch_from_dict, batch_to_dict
    from ftkit.rl.rollout import collect

    model, tokenizer = tiny()
    params = SamplingParams(max_new_tokens=3, generator=torch.Generator().manual_seed(0))
    batch = collect(HFEngine(model, tokenizer), tokenizer, "first_byte_test", [3, 4], params, group_size=3)
    batch.episodes[0].masked_actions = [0]
    back = batch_from_dict(json.loads(json.dumps(batch_to_dict(batch))), tokenizer)
    assert batch_to_dict(back) == batch_to_dict(batch)
    for a, b in zip(batch.episodes, back.episodes):
        assert (a.tokens.input_ids, a.tokens.policy_mask, a.loss_mask(), a.reward, a.group) == \
               (b.tokens.input_ids, b.tokens.policy_mask, b.loss_mask(), b.reward, b.group)
        assert a.tokens.logprobs == b.tokens.logprobs  # floats compared exactly
        assert a.trajectory.to_dict() == b.trajectory.to_dict()


def test_a_generator_makes_sampling_independent_of_the_global_stream(tiny):
    from ftkit.engine import HFEngine, SamplingParams

    model, tokenizer = tiny()
    engine = HFEngine(model, tokenizer)

    def sample(disturb: bool):
        generator = torch.Generator().manual_seed(7)
        if disturb:
            torch.rand(1000)  # another thread drawing from the global generator meanwhile
        return [c.token_ids for c in engine.generate(["ab"] * 4, SamplingParams(max_new_tokens=5, generator=generator))]

    assert sample(False) == sample(True)
    torch.manual_seed(7)  # the synchronous loop's way: the same numbers from the global generator
    assert [c.token_ids for c in engine.generate(["ab"] * 4, SamplingParams(max_new_tokens=5))] == sample(False)
    with pytest.raises(ValueError, match="seed or a generator"):
        SamplingParams(seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="cannot take params.generator"):
        HFEngine(model, tokenizer, loop="generate").generate(["ab"], SamplingParams(generator=torch.Generator()))


def test_a_model_that_samples_through_generate_cannot_play_ahead(tmp_path, first_byte_gym, monkeypatch):
    from ftkit import decode

    monkeypatch.setattr(decode, "unsupported", lambda model: "the model's generation_config sets repetition_penalty")
    with pytest.raises(ConfigError, match="rollout.async_steps: this model samples through model.generate"):
        run(rl_recipe(tmp_path, rollout={"async_steps": 1}, eval={"n": 0}))


def test_negative_async_steps_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ftkit", "rl", "--gym", "arithmetic", "rollout.async_steps=-1",
                           f"output_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "rollout.async_steps" in lines[0] and "Traceback" not in done.stderr, done.stderr


TWO_PROCESS_SCRIPT = '''
import sys
sys.path.insert(0, {distributed!r})
import grpo_run
from ftkit.rl import config

load = config.load_rl_recipe


def asynchronous(path, overrides=None, base=None):
    base["rollout"]["async_steps"] = 1
    return load(path, overrides, base)


config.load_rl_recipe = asynchronous
grpo_run.main(*sys.argv[1:])
'''


def test_two_processes_play_ahead_and_resume_from_sigkill_to_the_same_weights(tmp_path):
    """tests/distributed/grpo_run.py with rollout.async_steps 1, in two processes: killed by SIGKILL right
    after step 3's optimizer step and resumed from checkpoint-2, where each process's batch for step 3 is
    its own (in_flight.json, in rank order), they end bitwise where the uninterrupted run does."""
    from pathlib import Path

    from safetensors.torch import load_file
    from test_distributed import _launch, _rl_steps, _run

    root = Path(__file__).resolve().parent
    script = tmp_path / "grpo_async_run.py"
    script.write_text(TWO_PROCESS_SCRIPT.format(distributed=str(root / "distributed")))
    two = ["--multi_gpu", "--num_processes", "2", str(script)]
    _run(_launch(*two, "straight"), tmp_path)
    killed = subprocess.run(_launch(*two, "killed", "--kill-in-step", "3"), cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    saved = json.loads((tmp_path / "killed" / "checkpoints" / "checkpoint-2" / "in_flight.json").read_text())
    assert [[entry["step"] for entry in rank] for rank in saved] == [[2], [2]]
    assert saved[0][0]["batch"]["episodes"] != saved[1][0]["batch"]["episodes"]  # each process plays its share
    _run(_launch(*two, "killed", "--resume"), tmp_path)
    assert [r["async_lag"] for r in _rl_steps(tmp_path / "straight")] == [0, 1, 1]
    assert _rl_steps(tmp_path / "killed") == _rl_steps(tmp_path / "straight")
    a, b = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("straight", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
