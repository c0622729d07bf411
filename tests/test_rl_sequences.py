"""Multi-turn episodes as one token sequence: the environment's tokens are masked out of the loss."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftkit.engine import HFEngine, SamplingParams
from ftkit.rl.sequences import EpisodeTokens
from ftkit.scratch import build_scratch, build_tokenizer


def test_text_episode_masks_observations_and_keeps_sampled_ids():
    tok = build_tokenizer()
    ep = EpisodeTokens(tok)
    ep.add_observation("Guess 1-100: ")
    ep.add_action([53, 48], [-0.5, -0.25])          # "50" as sampled, kept as ids
    ep.add_observation("\nhigher\n")
    ep.add_action([55, 53, tok.eos_token_id], [-1.0, -2.0, -3.0])
    n_obs1, n_obs2 = len("Guess 1-100: "), len("\nhigher\n")
    assert ep.policy_mask == [0] * n_obs1 + [1, 1] + [0] * n_obs2 + [1, 1, 1]
    assert ep.input_ids[n_obs1 : n_obs1 + 2] == [53, 48]
    assert ep.logprobs == [0.0] * n_obs1 + [-0.5, -0.25] + [0.0] * n_obs2 + [-1.0, -2.0, -3.0]
    assert tok.decode([i for i, m in zip(ep.input_ids, ep.policy_mask) if not m]) == "Guess 1-100: \nhigher\n"
    with pytest.raises(ValueError, match="log-probs"):
        ep.add_action([1, 2], [0.0])


def test_a_copied_episode_grows_on_its_own():
    """Rollouts tokenize a group's first observation once and copy it to each episode of the group."""
    tok = build_tokenizer()
    first = EpisodeTokens(tok)
    first.add_observation("Guess 1-100: ")
    a, b = first.copy(), first.copy()
    a.add_action([53, 48], [-0.5, -0.25])
    a.add_observation("\nhigher\n")
    assert b.input_ids == first.input_ids == tok("Guess 1-100: ")["input_ids"]
    assert (b.policy_mask, b.logprobs, b.messages) == (first.policy_mask, first.logprobs, first.messages)
    b.add_action([55], [-1.0])
    assert a.input_ids[len(first.input_ids):][:2] == [53, 48] and b.input_ids[-1] == 55


def test_chat_episode_masks_the_template_text_around_turns():
    tok = build_tokenizer()
    ep = EpisodeTokens(tok, chat=True, system_prompt="Play well.")
    ep.add_observation("Guess 1-100")
    first = tok.decode(ep.input_ids)
    assert first == "System: Play well.\nUser: Guess 1-100\nAssistant: "
    action = tok("50", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ep.add_action(action, [-0.1] * len(action))
    ep.add_observation("higher")
    text = tok.decode(ep.input_ids)
    assert text == ("System: Play well.\nUser: Guess 1-100\nAssistant: 50<|endoftext|>\n"
                    "User: higher\nAssistant: ")
    trained = tok.decode([i for i, m in zip(ep.input_ids, ep.policy_mask) if m])
    assert trained == "50<|endoftext|>"  # the template's "\n" after the turn is not the policy's
    assert ep.messages[-2] == {"role": "assistant", "content": "50"}


def test_engine_continues_from_the_episode_ids(tmp_path):
    folder = build_scratch("tiny", tmp_path / "m")
    engine = HFEngine(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder))
    ep = EpisodeTokens(engine.tokenizer)
    ep.add_observation("Guess: ")
    params = SamplingParams(max_new_tokens=3, temperature=0)
    (c,) = engine.generate([ep.prompt_ids()], params)
    assert c.prompt_ids == ep.prompt_ids()
    ep.add_action(c.token_ids, c.logprobs)
    ep.add_observation(" lower. Guess: ")
    (c2,) = engine.generate([ep.prompt_ids()], params)
    assert c2.prompt_ids == ep.input_ids and sum(ep.policy_mask) == len(c.token_ids)
