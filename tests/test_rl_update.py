"""The RL update skips what cannot change the gradient, and nothing else.

    python -m pytest tests/test_rl_update.py -q
"""

from __future__ import annotations

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


def update_for(algo: str, beta: float = 0.0, micro: int = 3) -> tuple[Update, Learner]:
    from transformers import GPT2Config, GPT2LMHeadModel

    recipe = load_rl_recipe(None, base={
        "name": "update_test", "algo": algo, "model": {"name": "scratch:tiny"}, "gym": {"id": "arithmetic"},
        "rollout": {"prompts_per_step": 3, "num_generations": 4},
        "train": {"learning_rate": 1e-2, "beta": beta, "per_device_train_batch_size": micro}})
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
