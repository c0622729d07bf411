"""Exact resume: an RL run killed between checkpoints and resumed ends bitwise where an uninterrupted run does.

    OMP_NUM_THREADS=1 python -m pytest tests/test_rl_resume.py -q

Every case runs the same 4-step recipe twice: straight through, and killed at the start of step 4
(steps 1-3 done and logged, checkpoint-2 the last one written), then resumed with `--resume`. The
final policy (weights, or the LoRA/QLoRA adapter), PPO's value head, and every logged step must be
identical, bit for bit: steps 3 and 4 replay only if the weights, the optimizer's moments, the
schedule, the random generators, the curriculum and the report's state all came back exactly.

The kill is simulated in the test's process; to stand for a fresh process, every global random
generator is scrambled before resuming. tests/test_distributed.py kills two real processes with SIGKILL.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_rl_trainer import FirstByteEnv, read_metrics, rl_recipe, run


class SizedFirstByteEnv(FirstByteEnv):
    """FirstByteEnv whose item numbers go up to the reset option `size`: a curriculum changes the prompts."""

    def _reset(self, options):
        n = int(self.np_random.integers(0, (options or {}).get("size", 1000)))
        return f"item {n}:", {"answer": "a", "difficulty": {"kind": "letter"}}


@pytest.fixture
def resume_gym(temporary_gym):
    return temporary_gym("ftkit/SizedFirstByteTest-v0", SizedFirstByteEnv, "sized_first_byte_test")


def kill_and_resume(tmp_path, monkeypatch, **sections) -> tuple:
    """Run the recipe straight (in tmp_path/a) and killed at step 4 then resumed (tmp_path/b): the run folders."""
    from ftkit.rl import trainer

    sections.setdefault("eval", {"n": 0})
    # A decaying schedule with warm-up: the scheduler's state matters too.
    sections["train"] = {"max_steps": 4, "save_steps": 2, "lr_scheduler_type": "linear", "warmup_steps": 1,
                         **sections.get("train", {})}
    straight = rl_recipe(tmp_path / "a", gym={"id": "sized_first_byte_test"}, **sections)
    interrupted = rl_recipe(tmp_path / "b", gym={"id": "sized_first_byte_test"}, **sections)
    run(straight)

    original = trainer.RLRun.train_step

    def killed_at_step_4(self):
        if self.step == 3:  # steps 1-3 done and logged: checkpoint-2 is the last one, step 3 is lost
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(trainer.RLRun, "train_step", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run(interrupted)
    monkeypatch.setattr(trainer.RLRun, "train_step", original)
    b = tmp_path / "b" / "run"
    assert (b / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (b / "checkpoints" / "checkpoint-3").exists()
    scramble_global_generators()  # a fresh process would not continue the killed one's random streams
    summary = run(interrupted, resume=True)
    assert summary["steps"] == 4 and summary["resumed"]
    return tmp_path / "a" / "run", b


def scramble_global_generators() -> None:
    seed = 12345
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def assert_same_run(a, b) -> None:
    """The same final weights (and value head), bit for bit, and the same logged steps (timings aside)."""
    folder = "model" if (a / "model").is_dir() else "adapter"
    for name in sorted(p.name for p in (a / folder).glob("*.safetensors")):
        assert_same_tensors(a / folder / name, b / folder / name)
    if (a / "value_head.safetensors").is_file():
        assert_same_tensors(a / "value_head.safetensors", b / "value_head.safetensors")
    steps_a, steps_b = logged_steps(a), logged_steps(b)
    assert [r["step"] for r in steps_b] == [1, 2, 3, 4]  # nothing logged twice
    assert steps_b == steps_a
    trajectories = [[json.loads(line) for line in (run_dir / "trajectories.jsonl").open()] for run_dir in (a, b)]
    assert trajectories[1] == trajectories[0]
    summaries = [json.loads((run_dir / "summary.json").read_text()) for run_dir in (a, b)]
    assert summaries[1]["warnings"] == summaries[0]["warnings"]


def assert_same_tensors(path_a, path_b) -> None:
    ta, tb = load_file(path_a), load_file(path_b)
    assert ta.keys() == tb.keys()
    different = [key for key in ta if not torch.equal(ta[key], tb[key])]
    assert not different, f"{path_b.name}: {len(different)} of {len(ta)} tensors differ, e.g. {different[:3]}"


def logged_steps(run_dir) -> list[dict]:
    """The logged steps without their timings (seconds and rates: the only entries that may differ)."""
    return [{k: v for k, v in r.items() if not k.endswith(("_s", "_per_s"))}
            for r in read_metrics(run_dir) if "reward_mean" in r]


# Each case's settings make its own state matter: PPO steps its optimizer (policy and value head)
# twice per rollout; DAPO's groups of 4 often agree, so steps draw more problems; the curriculum moves
# up a level at every step, changing the prompts; an evaluation at step 2 samples between the steps.
CASES = {
    "grpo": {"algo": "grpo", "train": {"beta": 0.01}, "eval": {"n": 4, "every_steps": 2, "max_new_tokens": 3}},
    "rloo": {"algo": "rloo", "curriculum": {"option": "size", "levels": [10, 100, 1000, 10000, 100000],
                                            "threshold": 1e-9, "window": 1}},
    "ppo": {"algo": "ppo", "train": {"beta": 0.01, "value_learning_rate": 1e-2, "num_iterations": 2,
                                     "minibatch_size": 16}},
    "dapo": {"algo": "dapo", "rollout": {"num_generations": 4, "max_num_gen_batches": 2}, "train": {"mask_truncated_completions": False}},
    "gspo": {"algo": "gspo", "train": {"minibatch_size": 16}},
    "grpo_replay": {"algo": "grpo", "rollout": {"replay_unsolved": 0.5}},
    "reinforce_plus_plus": {"algo": "reinforce_plus_plus", "train": {"beta": 0.01}},
    "reinforce_plus_plus_baseline": {"algo": "reinforce_plus_plus_baseline"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_fine_tuning_resumes_exactly(tmp_path, resume_gym, monkeypatch, case):
    a, b = kill_and_resume(tmp_path, monkeypatch, **CASES[case])
    assert_same_run(a, b)
    if case == "dapo":  # the replayed steps drew extra problems from their own seed streams
        assert any(r["num_gen_batches"] > 1 for r in logged_steps(b)[2:])
    if case == "rloo":
        assert [r["curriculum_level"] for r in logged_steps(b)] == [10, 100, 1000, 10000]
    if case == "grpo_replay":  # half of each step's problems were missed ones, from the restored buffer
        assert_replayed(b)


def assert_replayed(run_dir) -> None:
    assert [r["replayed_problems"] for r in logged_steps(run_dir)] == [0, 2, 2, 2]
    state = json.loads((run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert len(state["replay"]) == 1 and state["replay"][0]["entries"]  # one process's buffer, not empty


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_adapters_resume_exactly(tmp_path, resume_gym, monkeypatch, method):
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    # PPO: the adapters and the value head share one optimizer; beta > 0: the reference is the base
    # model with the adapters disabled.
    a, b = kill_and_resume(tmp_path, monkeypatch, method=method, lora={"r": 4, "alpha": 8, "dropout": 0.0},
                           algo="ppo", train={"beta": 0.01, "learning_rate": 1e-2, "value_learning_rate": 1e-2,
                                              "num_iterations": 2, "minibatch_size": 16})
    assert_same_run(a, b)


class CopyingEngine:
    """An HF engine that samples from its own copy of the weights, read from `model_path` and replaced
    only by `sync_weights`, as vLLM's is."""

    def __init__(self, name, model, tokenizer, *, model_path, **_):
        from ftkit.config import ModelConfig
        from ftkit.engine import HFEngine
        from ftkit.models import load_model
        from ftkit.rl.policy import disable_dropout

        own = load_model(model_path, ModelConfig(name=model_path), "full")
        disable_dropout(own)
        self.hf = HFEngine(own, tokenizer)
        self.generate, self.render, self.encode = self.hf.generate, self.hf.render, self.hf.encode

    def sync_weights(self, model) -> None:
        self.hf.model.load_state_dict(model.state_dict())


def test_an_engine_with_its_own_weights_samples_from_the_checkpoint_after_a_resume(tmp_path, resume_gym,
                                                                                  monkeypatch):
    """Before the fix, a resumed run's first step sampled from the base model's weights (vLLM's copy)."""
    from ftkit import vllm_engine

    monkeypatch.setattr(vllm_engine, "make_engine", CopyingEngine)
    a, b = kill_and_resume(tmp_path, monkeypatch, algo="grpo")
    assert_same_run(a, b)


# Asynchronous rollouts: checkpoint-2 holds the batch already played for step 3 (and its DAPO draws); step 3
# trains on it, lagging. One step ahead, the Hugging Face engine samples from its own copy of the policy
# (of the adapters, with LoRA), with an evaluation between steps in the training thread and a moving
# curriculum; two steps ahead, an engine with its own weights as vLLM's, synced at steps 0 and 2 only.
ASYNC_CASES = {
    "one_step_ahead": {"algo": "grpo", "rollout": {"async_steps": 1}, "train": {"beta": 0.01},
                       "eval": {"n": 4, "every_steps": 2, "max_new_tokens": 3},
                       "curriculum": CASES["rloo"]["curriculum"]},
    "one_step_ahead_lora_ppo": {"algo": "ppo", "method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                                "rollout": {"async_steps": 1},
                                "train": {"learning_rate": 1e-2, "value_learning_rate": 1e-2, "minibatch_size": 16}},
    "two_steps_ahead_vllm_like": {**CASES["dapo"], "rollout": {**CASES["dapo"]["rollout"], "async_steps": 2}},
    "one_step_ahead_replay": {"algo": "grpo", "rollout": {"async_steps": 1, "replay_unsolved": 0.5}},
}


@pytest.mark.parametrize("case", sorted(ASYNC_CASES))
def test_async_rollouts_resume_exactly(tmp_path, resume_gym, monkeypatch, case):
    if "vllm_like" in case:
        from ftkit import vllm_engine

        monkeypatch.setattr(vllm_engine, "make_engine", CopyingEngine)
    a, b = kill_and_resume(tmp_path, monkeypatch, **ASYNC_CASES[case])
    assert_same_run(a, b)
    ahead = ASYNC_CASES[case]["rollout"]["async_steps"]
    assert [r["async_lag"] for r in logged_steps(b)] == ([0, 1, 1, 1] if ahead == 1 else [0, 1, 2, 1])
    if "replay" in case:  # the buffer saved is the one after the batch played ahead
        assert_replayed(b)
    saved = json.loads((b / "checkpoints" / "checkpoint-2" / "in_flight.json").read_text())
    assert [entry["step"] for entry in saved[0]] == [2]  # one process; the batch of step 3, played ahead
    assert saved[0][0]["version"] == (1 if ahead == 1 else 0)


def test_each_process_resumes_its_own_random_generators():
    from ftkit.rl.checkpoint import own_rng_state, rng_state, set_rng_state

    states = []
    for rank in range(2):
        torch.manual_seed(rank)
        random.seed(rank)
        states.append(rng_state())
    expected = torch.rand(3), random.random()  # process 1's next draws
    set_rng_state(own_rng_state(states, rank=1))
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert own_rng_state(states[0], rank=1) is states[0]  # a checkpoint from before: the main process's
