"""The RL trainer end to end on a tiny model: each algorithm learns, metrics are written (resuming: test_rl_resume.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ftkit.errors import ConfigError, FtkitError, TrainingError
from ftkit.rl.config import load_rl_recipe
from gyms.base import TextEnv


class FirstByteEnv(TextEnv):
    """Reward 1 when the action's first character is an ASCII letter.

    A freshly initialised byte-level model writes one about a fifth of the time, so groups disagree
    from the first step and a working policy gradient visibly raises the rate within a few steps.
    """

    has_oracle = True
    multi_turn = False

    def __init__(self, render_mode=None):
        super().__init__(render_mode=render_mode, max_observation_length=32, max_action_length=4096)

    def oracle(self) -> str:
        return "a"

    def _reset(self, options):
        n = int(self.np_random.integers(0, 1000))
        return f"item {n}:", {"answer": "a", "difficulty": {"kind": "letter"}}

    def _step(self, action):
        solved = bool(action[:1].isascii() and action[:1].isalpha())
        return "", float(solved), True, False, {"answer": "a", "difficulty": {"kind": "letter"}, "solved": solved}


@pytest.fixture
def first_byte_gym(temporary_gym):
    return temporary_gym("ftkit/FirstByteTest-v0", FirstByteEnv, "first_byte_test")


def rl_recipe(tmp_path, **sections) -> dict:
    recipe = {
        "name": "rl_tiny",
        "output_dir": str(tmp_path / "run"),
        "algo": "grpo",
        "model": {"name": "scratch:tiny"},
        "gym": {"id": "first_byte_test"},
        "rollout": {"prompts_per_step": 4, "num_generations": 8, "max_completion_length": 3},
        "train": {"max_steps": 3, "learning_rate": 3e-3, "per_device_train_batch_size": 16, "save_steps": 2},
        "eval": {"n": 8, "every_steps": 2, "max_new_tokens": 3, "samples": 4},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and isinstance(recipe.get(key), dict) else value
    return recipe


def run(recipe: dict, **kwargs) -> dict:
    from ftkit.rl import trainer

    return trainer.main(load_rl_recipe(None, base=recipe), **kwargs)


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


STEP_METRICS = ("reward_mean", "reward_std", "success_rate", "entropy", "clip_fraction", "response_length",
                "identical_groups", "rollout_tokens_per_s", "train_tokens_per_s", "loss", "grad_norm")


@pytest.mark.parametrize("algo", ["grpo", "rloo", "ppo", "dapo", "gspo", "reinforce_plus_plus",
                                  "reinforce_plus_plus_baseline"])
def test_each_algorithm_learns_the_toy_task_and_logs_finite_metrics(tmp_path, first_byte_gym, algo):
    extra = {"value_learning_rate": 1e-2, "num_iterations": 2, "minibatch_size": 16} if algo == "ppo" else {}
    if algo == "dapo":  # the untrained model rarely stops within 3 tokens: masking cut episodes would leave none
        extra = {"mask_truncated_completions": False}
    recipe = rl_recipe(tmp_path, algo=algo, train={"max_steps": 12, "beta": 0.01, "learning_rate": 1e-2, **extra},
                       eval={"n": 8, "every_steps": 100})
    summary = run(recipe)
    run_dir = tmp_path / "run"
    records = [r for r in read_metrics(run_dir) if "reward_mean" in r]
    assert len(records) == 12
    for record in records:
        for key in (*STEP_METRICS, "kl"):
            assert math.isfinite(record[key]), (key, record[key])
    first = sum(r["success_rate"] for r in records[:3]) / 3
    last = sum(r["success_rate"] for r in records[-3:]) / 3
    assert last > first + 0.2, f"{algo}: success rate {first:.2f} -> {last:.2f}"
    assert summary["heldout_accuracy_end"] > summary["heldout_accuracy_start"]
    base, trained = weights(run_dir / "base_model"), weights(run_dir / "model")
    assert any(not torch.equal(base[k], trained[k]) for k in base)
    if algo == "ppo":
        assert "value_loss" in records[0] and (run_dir / "value_head.safetensors").is_file()
    for name in ("summary.json", "samples.md", "trajectories.jsonl", "reward.png", "accuracy.png", "recipe.yaml",
                 "model/ftkit_training_data.json"):
        assert (run_dir / name).is_file(), name
    assert summary["heldout_accuracy_start"] is not None and summary["steps"] == 12


def test_lora_run_uses_the_disabled_adapter_as_reference_and_saves_only_the_adapter(tmp_path, first_byte_gym):
    recipe = rl_recipe(tmp_path, method="lora", train={"max_steps": 2, "beta": 0.1, "learning_rate": 1e-2},
                       lora={"r": 4, "alpha": 8, "dropout": 0.0})
    summary = run(recipe)
    run_dir = tmp_path / "run"
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and not (run_dir / "model").exists()
    records = [r for r in read_metrics(run_dir) if "kl" in r]
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # before any update the policy is the reference
    assert records[-1]["kl"] > 0
    assert summary["parameters"]["trainable"] < summary["parameters"]["total"] / 5


def test_multi_turn_run_trains_on_whole_episodes(tmp_path):
    recipe = rl_recipe(tmp_path,
                       gym={"id": "guess_number", "kwargs": {"max_number": 8}, "chat": True, "max_turns": 3},
                       rollout={"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 3},
                       train={"max_steps": 2}, eval={"n": 4, "every_steps": 100})
    summary = run(recipe)
    records = [r for r in read_metrics(tmp_path / "run") if "reward_mean" in r]
    assert all(1 <= r["turns_mean"] <= 3 for r in records)
    assert summary["heldout_mean_turns_end"] is not None
    # An untrained model rarely solves: unsolved episodes count as the runner's limit of 3 turns.
    assert summary["heldout_mean_turns_end"] <= summary["heldout_turns_to_solve_end"] <= 3
    trajectory = json.loads((tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()[0])
    assert trajectory["gym"] == "ftkit/GuessNumber-v0" and trajectory["num_turns"] >= 1


def test_dynamic_filtering_draws_more_problems_and_logs_how_many(tmp_path, first_byte_gym):
    # Pairs of episodes: with about one first letter in five, most pairs agree, so a step needs more than
    # its 4 problems to find 4 pairs that disagree, and sometimes runs out at the cap of 3 x 4 problems.
    recipe = rl_recipe(tmp_path, rollout={"num_generations": 2, "dynamic_filtering": True, "max_num_gen_batches": 3},
                       train={"max_steps": 4}, eval={"n": 0})
    run(recipe)
    records = [r for r in read_metrics(tmp_path / "run") if "reward_mean" in r]
    assert len(records) == 4
    for r in records:
        assert r["num_gen_batches"] >= 1 and 4 <= r["problems_drawn"] <= 12
        assert 0 <= r["padded_groups"] <= 4 and (r["padded_groups"] == 0 or r["problems_drawn"] == 12)
        assert r["episodes"] == 2 * r["problems_drawn"]  # the logged rewards are over every episode played
    assert any(r["num_gen_batches"] > 1 for r in records)
    trajectories = [json.loads(line) for line in (tmp_path / "run" / "trajectories.jsonl").open()]
    assert len({(t["step"], t["group"]) for t in trajectories}) > 1  # groups renumbered across batches stay apart


def test_the_soft_overlong_penalty_shapes_the_trained_reward(tmp_path, first_byte_gym):
    # 3-token actions with a 2-token buffer: anything past 1 token loses (length - 1) / 2.
    recipe = rl_recipe(tmp_path, rollout={"overlong_buffer_len": 2, "overlong_penalty_factor": 1.0},
                       train={"max_steps": 2}, eval={"n": 0})
    run(recipe)
    for r in (r for r in read_metrics(tmp_path / "run") if "reward_mean" in r):
        assert r["shaped_reward_mean"] < r["reward_mean"] and math.isfinite(r["loss"])  # it only ever lowers


def test_masked_truncated_episodes_teach_nothing(tmp_path, first_byte_gym):
    # The untrained model never stops within 3 tokens here: every action is cut, so nothing trains.
    run(rl_recipe(tmp_path, train={"max_steps": 2, "mask_truncated_completions": True}, eval={"n": 0}))
    records = [r for r in read_metrics(tmp_path / "run") if "reward_mean" in r]
    assert [r["masked_truncated_fraction"] for r in records] == [1.0, 1.0]
    base, trained = weights(tmp_path / "run" / "base_model"), weights(tmp_path / "run" / "model")
    assert all(torch.equal(base[k], trained[k]) for k in base)


def test_resume_without_a_checkpoint_is_one_clear_error(tmp_path, first_byte_gym):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.yaml").write_text("x")
    with pytest.raises(TrainingError, match="no complete checkpoint"):
        run(rl_recipe(tmp_path), resume=True)


def test_an_existing_run_is_not_overwritten(tmp_path, first_byte_gym):
    recipe = rl_recipe(tmp_path, train={"max_steps": 1}, eval={"n": 0})
    run(recipe)
    with pytest.raises(FtkitError, match="already holds a run"):
        run(recipe)


def test_nan_loss_stops_with_the_step_and_advice(tmp_path, first_byte_gym, monkeypatch):
    from ftkit.rl import algorithms

    monkeypatch.setattr(algorithms, "policy_loss",
                        lambda *a, **k: (torch.tensor(float("nan"), requires_grad=True), {}))
    with pytest.raises(TrainingError, match="step 1.*learning_rate"):
        run(rl_recipe(tmp_path, eval={"n": 0}))


def test_curriculum_moves_up_when_the_policy_succeeds(tmp_path):
    # The oracle-easy end of guess_number: with max_number 2 half the first guesses are right.
    recipe = rl_recipe(tmp_path,
                       gym={"id": "guess_number", "kwargs": {"max_number": 64}, "max_turns": 2},
                       curriculum={"option": "max_number", "levels": [2, 64], "threshold": 0.01, "window": 1},
                       train={"max_steps": 2}, eval={"n": 0})
    run(recipe)
    levels = [r["curriculum_level"] for r in read_metrics(tmp_path / "run") if "curriculum_level" in r]
    assert levels[0] == 2


def test_recipe_checks(tmp_path):
    with pytest.raises(ConfigError, match="num_generations must be >= 2"):
        load_rl_recipe(None, base=rl_recipe(tmp_path, rollout={"num_generations": 1}))
    with pytest.raises(ConfigError, match="must differ"):
        load_rl_recipe(None, base=rl_recipe(tmp_path, eval={"seed": 0}))
    with pytest.raises(ConfigError, match='unknown recipe key "train.learning_rat".*learning_rate'):
        load_rl_recipe(None, base=rl_recipe(tmp_path, train={"learning_rat": 1}))
    with pytest.raises(ConfigError, match="chat: true"):
        load_rl_recipe(None, base=rl_recipe(tmp_path, gym={"id": "arithmetic", "system_prompt": "hi"}))
    assert load_rl_recipe(None, base=rl_recipe(tmp_path), overrides=["algo=ppo"]).algo == "ppo"


def test_turns_to_solve_counts_an_unsolved_episode_as_the_turn_limit():
    from ftkit.evaluate import _turn_limit
    from gyms.runner import Trajectory, Turn

    cut_short = Trajectory(gym="g", seed=0, turns=[Turn("o", "a", 0.0, {})],
                           reset_info={"difficulty": {"max_turns": 7}})
    assert _turn_limit(cut_short, None) == 7 and _turn_limit(cut_short, 4) == 4
    assert _turn_limit(Trajectory(gym="g", seed=0, turns=[Turn("o", "a", 0.0, {})] * 2), None) == 2


def test_constant_schedule_honours_warmup(tmp_path, first_byte_gym):
    from ftkit.rl.trainer import RLRun

    recipe = load_rl_recipe(None, base=rl_recipe(tmp_path, train={"max_steps": 3, "warmup_steps": 4,
                                                                  "learning_rate": 1e-3}))
    run_ = RLRun(recipe)
    run_.setup()
    # the default constant_with_warmup: step 0 of 4 warm-up steps (transformers' "constant" would give 1e-3)
    assert run_.learner.scheduler.get_last_lr()[0] == 0.0
    with pytest.raises(ConfigError, match='"constant" ignores warmup_steps.*constant_with_warmup'):
        load_rl_recipe(None, base=rl_recipe(tmp_path, train={"warmup_steps": 4, "lr_scheduler_type": "constant"}))
