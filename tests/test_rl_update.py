"""The RL update skips what cannot change the gradient, and nothing else.

    python -m pytest tests/test_rl_update.py -q
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from accelerate import Accelerator

from ftkit.rl.config import load_rl_recipe
from ftkit.rl.learner import Learner
from ftkit.rl.objectives import make_objective
from ftkit.rl.rollout import Episode
from ftkit.rl.update import Update


class Tokens:
    """The three lists `pad_episodes` reads from an episode's tokens."""

    def __init__(self, input_ids: list[int], prompt: int):
        self.input_ids = input_ids
        self.policy_mask = [0] * prompt + [1] * (len(input_ids) - prompt)
        self.logprobs = [0.0] * len(input_ids)


def episodes(rewards: list[list[float]], seed: int = 0) -> list[Episode]:
    """Groups of episodes of random lengths (5-12 tokens), each rewarded on its last token."""
    rng = random.Random(seed)
    out = []
    for group, group_rewards in enumerate(rewards):
        for reward in group_rewards:
            ids = [rng.randrange(1, 60) for _ in range(rng.randrange(5, 13))]
            out.append(Episode(trajectory=None, tokens=Tokens(ids, prompt=3), group=group,
                               reward_positions=[(len(ids) - 1, reward)]))
    return out


def update_for(algo: str, beta: float = 0.0, micro: int = 3, rollout: dict | None = None,
               train: dict | None = None) -> tuple[Update, Learner]:
    from transformers import GPT2Config, GPT2LMHeadModel

    recipe = load_rl_recipe(None, base={
        "name": "update_test", "algo": algo, "model": {"name": "scratch:tiny"}, "gym": {"id": "arithmetic"},
        "rollout": {"prompts_per_step": 3, "num_generations": 4, **(rollout or {})},
        "train": {"learning_rate": 1e-2, "beta": beta, "per_device_train_batch_size": micro, **(train or {})}})
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
                        eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    ref = GPT2LMHeadModel(config) if beta else None
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    learner = Learner(model=model, optimizer=optimizer, scheduler=scheduler, minibatch=12, ref_model=ref)
    objective = make_objective(recipe)
    return Update(Accelerator(cpu=True), learner, objective, recipe, pad_id=0), learner


def gradient_after(update: Update, learner: Learner, batch: list[Episode]) -> tuple[torch.Tensor, dict]:
    """Run one update with an optimizer that does not step, and return the gradient it computed."""
    for group in learner.optimizer.param_groups:  # keep the weights, so two updates see the same model
        group["lr"] = 0.0
    learner.optimizer.zero_grad = lambda set_to_none=True: None
    stats = update(batch, step=0)
    grad = torch.cat([p.grad.flatten() for p in learner.model.parameters()])
    return grad, stats


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_skipping_groups_with_equal_rewards_leaves_the_gradient_unchanged(algo):
    # Group 0 all wrong and group 2 all right: their advantages are 0, so only group 1 is computed.
    batch = episodes([[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]])
    update, learner = update_for(algo)
    skipped_grad, stats = gradient_after(update, learner, batch)
    assert stats["skipped_episodes"] == pytest.approx(8 / 12)

    update, learner = update_for(algo)
    update.objective.zero_advantage_is_zero_loss = False  # compute every row
    full_grad, full_stats = gradient_after(update, learner, batch)
    assert full_stats["skipped_episodes"] == 0
    assert skipped_grad.abs().sum() > 0
    torch.testing.assert_close(skipped_grad, full_grad, rtol=1e-5, atol=1e-7)
    assert stats["loss"] == pytest.approx(full_stats["loss"], abs=1e-7)


def test_nothing_is_skipped_when_a_kl_term_reaches_every_episode():
    update, learner = update_for("grpo", beta=0.1)
    _, stats = gradient_after(update, learner, episodes([[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]]))
    assert stats["skipped_episodes"] == 0
    assert "kl" in stats


def test_a_batch_of_only_equal_groups_still_computes_one_row():
    # The optimizer and DDP's all-reduce must see a gradient (of zeros) at every step.
    update, learner = update_for("grpo")
    grad, stats = gradient_after(update, learner, episodes([[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]))
    assert stats["skipped_episodes"] == pytest.approx(11 / 12)
    assert grad.abs().sum() == 0


def test_micro_batches_group_similar_lengths():
    update, _ = update_for("grpo")
    batch = episodes([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]], seed=3)
    from ftkit.rl.policy import pad_episodes

    tensors = pad_episodes(batch, 0)
    advantages = torch.ones(12)
    scored = type("Scored", (), {"tensors": tensors, "ref_logprobs": None})()
    rows = update.rows_to_run(list(range(12)), scored, advantages)
    lengths = [len(batch[row].tokens.input_ids) for row in rows]
    assert sorted(rows) == list(range(12)) and lengths == sorted(lengths)


def grouped_episodes(rewards: list[list[float]], seed: int = 0) -> list[Episode]:
    """As `episodes`, but the episodes of a group share their prompt (of 3 to 6 tokens), as rollouts do."""
    rng = random.Random(seed)
    out = []
    for group, group_rewards in enumerate(rewards):
        prompt = [rng.randrange(1, 60) for _ in range(rng.randrange(3, 7))]
        for reward in group_rewards:
            ids = prompt + [rng.randrange(1, 60) for _ in range(rng.randrange(1, 7))]
            out.append(Episode(trajectory=None, tokens=Tokens(ids, prompt=len(prompt)), group=group,
                               reward_positions=[(len(ids) - 1, reward)]))
    return out


@pytest.mark.parametrize("algo,beta,iterations", [("grpo", 0.0, 1), ("grpo", 0.1, 1), ("rloo", 0.0, 2)])
def test_episodes_sharing_a_prompt_compute_it_once_with_the_same_gradient(algo, beta, iterations, monkeypatch):
    """The forward passes (training, the reference's, scoring before several iterations) run a group's
    prompt once, with the gradient of one full pass per episode."""
    from ftkit.rl import policy

    batch = grouped_episodes([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]])
    calls = {"shared": 0}
    shared_logits = policy._shared_prompt_logits

    def counted(*args):
        out = shared_logits(*args)
        calls["shared"] += out is not None
        return out

    monkeypatch.setattr(policy, "_shared_prompt_logits", counted)
    update, learner = update_for(algo, beta=beta, train={"num_iterations": iterations})
    shared_grad, stats = gradient_after(update, learner, batch)
    assert calls["shared"] > 0

    monkeypatch.setattr(policy, "_shared_prompt_logits", lambda *args: None)
    update, learner = update_for(algo, beta=beta, train={"num_iterations": iterations})
    plain_grad, plain_stats = gradient_after(update, learner, batch)
    assert shared_grad.abs().sum() > 0
    torch.testing.assert_close(shared_grad, plain_grad, rtol=1e-4, atol=1e-6)
    assert stats["loss"] == pytest.approx(plain_stats["loss"], abs=1e-6)


def test_the_update_logs_where_its_time_went():
    update, learner = update_for("grpo", beta=0.1)  # a reference: a pass without gradient before the update
    _, stats = gradient_after(update, learner, episodes([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]]))
    assert all(stats[key] > 0 for key in ("score_s", "forward_s", "backward_s", "optimizer_s"))


def with_sampler_logprobs(batch: list[Episode], learner: Learner, shift_last: float = 0.0) -> list[Episode]:
    """Give each episode the trainer's own log-probs as its sampler's, minus `shift_last` on its last token
    (a sampler that draws that token exp(shift_last) times more often than the trainer would)."""
    from ftkit.rl.policy import forward_tokens, pad_episodes

    tensors = pad_episodes(batch, 0)
    with torch.no_grad():
        logprobs = forward_tokens(learner.model, tensors["input_ids"], tensors["attention_mask"])[0]
    for row, episode in enumerate(batch):
        n = len(episode.tokens.input_ids)
        episode.tokens.logprobs = [0.0, *logprobs[row, : n - 1].tolist()]  # entry t is token t + 1's
        episode.tokens.logprobs[-1] -= shift_last
    return batch


DIFFERENT_GROUPS = [[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]]  # no group is skipped


def test_a_sampler_that_agrees_changes_nothing():
    update, learner = update_for("grpo", rollout={"importance_sampling": "tis"})
    grad, stats = gradient_after(update, learner, with_sampler_logprobs(episodes(DIFFERENT_GROUPS), learner))
    assert stats["sampler_logprob_diff_max"] < 1e-5 and abs(stats["sampler_kl"]) < 1e-5
    assert stats["importance_sampling_capped_fraction"] == 0
    update, learner = update_for("grpo", rollout={"importance_sampling": "none"})
    plain, stats = gradient_after(update, learner, with_sampler_logprobs(episodes(DIFFERENT_GROUPS), learner))
    torch.testing.assert_close(grad, plain, rtol=1e-5, atol=1e-7)
    assert "importance_sampling_capped_fraction" not in stats  # no correction, no cap to count


@pytest.mark.parametrize("mode", ["tis", "mis"])
def test_the_update_measures_the_mismatch_and_corrects_for_it(mode):
    update, learner = update_for("grpo", rollout={"importance_sampling": mode})
    batch = with_sampler_logprobs(episodes(DIFFERENT_GROUPS), learner, shift_last=math.log(4))  # ratio 4 > 3
    corrected, stats = gradient_after(update, learner, batch)
    tokens = sum(e.policy_tokens for e in batch)
    assert stats["sampler_logprob_diff_max"] == pytest.approx(math.log(4), abs=1e-5)
    assert stats["sampler_logprob_diff_mean"] == pytest.approx(12 * math.log(4) / tokens, abs=1e-5)
    assert stats["sampler_kl"] == pytest.approx(-12 * math.log(4) / tokens, abs=1e-5)
    assert stats["importance_sampling_capped_fraction"] == pytest.approx(12 / tokens)
    update, learner = update_for("grpo", rollout={"importance_sampling": "none"})
    uncorrected, _ = gradient_after(update, learner, batch)
    assert not torch.allclose(corrected, uncorrected)


def test_the_mismatch_covers_the_rows_computed_or_every_row_when_scored_first():
    # Groups 0 and 2 have equal rewards: one update per rollout skips them, and measures 4 episodes of 12.
    rewards = [[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]]
    update, learner = update_for("grpo")
    batch = with_sampler_logprobs(episodes(rewards), learner, shift_last=1.0)
    _, stats = gradient_after(update, learner, batch)
    computed = sum(e.policy_tokens for e in batch[4:8])
    assert stats["sampler_logprob_diff_mean"] == pytest.approx(4 / computed, abs=1e-5)
    # Two passes score the batch before the update, so every episode is measured, once.
    update, learner = update_for("grpo", train={"num_iterations": 2})
    _, stats = gradient_after(update, learner, with_sampler_logprobs(episodes(rewards), learner, shift_last=1.0))
    assert stats["sampler_logprob_diff_mean"] == pytest.approx(12 / sum(e.policy_tokens for e in batch), abs=1e-5)
