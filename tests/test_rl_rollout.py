"""Rollouts: groups share a problem, tokens line up with trajectories, env tokens are masked, PPO's rewards land."""

from __future__ import annotations

import pytest
import torch

from ftkit.engine import Completion, SamplingParams
from ftkit.errors import TrainingError
from ftkit.rl.policy import forward_tokens, pad_episodes, token_rewards
from ftkit.rl.rollout import collect
from ftkit.scratch import build_tokenizer
from gyms.spec import GymSpec


class ScriptedEngine:
    """An engine that answers every prompt with the next of `answers` (as byte tokens, ending with eos)."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.calls = tokenizer, list(answers), []

    def generate(self, prompts, params):
        self.calls.append([list(p) for p in prompts])
        out = []
        for prompt in prompts:
            text = self.answers.pop(0)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            out.append(Completion(prompt, list(prompt), text, ids, [-0.5] * len(ids), "eos"))
        return out

    def sync_weights(self, model):
        pass


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_groups_play_the_same_problem_and_rewards_match_the_gym(tokenizer):
    import gyms

    env = gyms.make("arithmetic", digits=1)
    seeds = [11, 12]
    answers = []
    for seed in seeds:
        env.reset(seed=seed)
        answers += [gyms.oracle(env), "wrong", "nope"]
    batch = collect(ScriptedEngine(tokenizer, answers), tokenizer, GymSpec("arithmetic", {"digits": 1}), seeds,
                    SamplingParams(), group_size=3)
    assert [e.group for e in batch.episodes] == [0, 0, 0, 1, 1, 1]
    assert [e.trajectory.seed for e in batch.episodes] == [11, 11, 11, 12, 12, 12]
    assert [e.reward for e in batch.episodes] == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    first = batch.episodes[0]
    prompt = first.trajectory.turns[0].observation
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert first.tokens.policy_mask == [0] * prompt_len + [1] * (len(first.tokens.input_ids) - prompt_len)
    assert first.reward_positions == [(len(first.tokens.input_ids) - 1, 1.0)]
    assert 0 < batch.generate_seconds <= batch.seconds  # the engine's share of the rollout, logged as generate_s


def test_multi_turn_episode_is_one_sequence_with_only_actions_trained_on(tokenizer):
    import gyms

    env = gyms.make("guess_number", max_number=8)
    env.reset(seed=3)
    hidden = int(env.unwrapped._hidden)
    wrong = 1 if hidden != 1 else 2
    engine = ScriptedEngine(tokenizer, [str(wrong), str(hidden)])
    batch = collect(engine, tokenizer, GymSpec("guess_number", {"max_number": 8}, chat=True), [3], SamplingParams(),
                    group_size=1)
    episode = batch.episodes[0]
    assert episode.trajectory.num_turns == 2 and episode.trajectory.solved
    # The second turn's prompt is the whole first turn plus the feedback, as token ids.
    second_prompt = engine.calls[1][0]
    assert second_prompt == episode.tokens.input_ids[: len(second_prompt)]
    policy_text = tokenizer.decode([t for t, m in zip(episode.tokens.input_ids, episode.tokens.policy_mask) if m])
    assert policy_text == f"{wrong}<|endoftext|>{hidden}<|endoftext|>"
    feedback = "higher" if hidden > wrong else "lower"
    env_text = tokenizer.decode([t for t, m in zip(episode.tokens.input_ids, episode.tokens.policy_mask) if not m])
    assert feedback in env_text and "Assistant: " in env_text
    (end1, r1), (end2, r2) = episode.reward_positions
    assert r1 == 0.0 and r2 == 1.0 and end2 == len(episode.tokens.input_ids) - 1


def test_an_episode_that_outgrows_the_context_is_cut_not_crashed(tokenizer):
    engine = ScriptedEngine(tokenizer, ["x"] * 20)
    batch = collect(engine, tokenizer, GymSpec("guess_number", {"max_number": 100}), [0],
                    SamplingParams(max_new_tokens=4), group_size=1, max_context=200)
    episode = batch.episodes[0]
    assert episode.trajectory.truncated and batch.context_cuts == 1
    assert len(episode.tokens.input_ids) + 4 <= 200
    assert episode.tokens.policy_mask[-1] == 1  # it ends on the last action, not on an unanswered observation
    with pytest.raises(TrainingError, match="does not fit"):
        collect(engine, tokenizer, "guess_number", [0], SamplingParams(max_new_tokens=4), group_size=1, max_context=50)


def test_padding_and_ppo_rewards_are_shifted_onto_the_predicting_positions(tokenizer):
    engine = ScriptedEngine(tokenizer, ["7", "12"])
    batch = collect(engine, tokenizer, GymSpec("arithmetic", {"digits": 1}), [5], SamplingParams(), group_size=2)
    tensors = pad_episodes(batch.episodes, tokenizer.pad_token_id)
    lengths = [len(e.tokens.input_ids) for e in batch.episodes]
    assert tensors["input_ids"].shape == (2, max(lengths))
    assert tensors["loss_mask"].shape == (2, max(lengths) - 1)
    for row, episode in enumerate(batch.episodes):
        assert tensors["loss_mask"][row].tolist()[: lengths[row] - 1] == [float(m) for m in episode.tokens.policy_mask[1:]]
        assert tensors["loss_mask"][row, lengths[row] - 1 :].sum() == 0  # padding carries no loss
    rewards = token_rewards(batch.episodes, max(lengths))
    for row, episode in enumerate(batch.episodes):
        (end, reward), = episode.reward_positions
        assert rewards[row, end - 1] == reward and rewards[row].sum() == reward


def test_forward_log_probs_match_the_engines_sampling_log_probs(tokenizer):
    import tempfile

    from transformers import AutoModelForCausalLM

    from ftkit.engine import HFEngine
    from ftkit.scratch import build_scratch

    with tempfile.TemporaryDirectory() as folder:
        build_scratch("tiny", folder, seed=0)
        model = AutoModelForCausalLM.from_pretrained(folder)
    engine = HFEngine(model, tokenizer)
    torch.manual_seed(0)
    batch = collect(engine, tokenizer, GymSpec("arithmetic", {"digits": 2}), [1, 2],
                    SamplingParams(max_new_tokens=5, temperature=0.7), group_size=2)
    tensors = pad_episodes(batch.episodes, tokenizer.pad_token_id)
    with torch.no_grad():
        logprobs, entropy, _ = forward_tokens(model, tensors["input_ids"], tensors["attention_mask"], 0.7,
                                              with_entropy=True)
    mask = tensors["loss_mask"].bool()
    torch.testing.assert_close(logprobs[mask], tensors["sample_logprobs"][mask], atol=1e-4, rtol=1e-4)
    assert (entropy[mask] > 0).all()
    # With the loss mask, the LM head skips the prompt's columns: the same log-probs where it counts
    with torch.no_grad():
        kept, kept_entropy, _ = forward_tokens(model, tensors["input_ids"], tensors["attention_mask"], 0.7,
                                               with_entropy=True, loss_mask=tensors["loss_mask"])
    first = int(mask.any(0).nonzero()[0])
    assert first > 0 and kept.shape == logprobs.shape and (kept[:, :first] == 0).all()
    torch.testing.assert_close(kept[mask], logprobs[mask])
    torch.testing.assert_close(kept_entropy[mask], entropy[mask])
