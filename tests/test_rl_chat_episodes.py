"""RL episodes of real chat models: the ids trained are the ids sampled plus the environment's, turn by
turn, and a problem's prompt ids are the ones evaluation shows the model.

The tokenizer is SmolLM2's, alone and dressed as Llama 3, Qwen3 and Gemma 3 (their TRL chat templates and
special tokens: `family_tokenizer` in conftest.py); the engine answers with scripted token ids, so every
awkward action a model can sample is played on purpose.
"""

from __future__ import annotations

import pytest

from data_tools.gym_data import item_seed
from ftkit.chat import end_of_turn_id
from ftkit.engine import Completion, HFEngine, SamplingParams
from ftkit.evaluate import EvalOptions, evaluate_on_gym
from ftkit.rl.rollout import collect
from gyms.spec import GymSpec

FAMILIES = ["smollm2", "llama3", "qwen3", "gemma3"]


class ScriptedIdsEngine:
    """Answers each prompt with the next scripted (token ids, finish reason); records the prompt ids it was
    shown, tokenized as HFEngine tokenizes them."""

    def __init__(self, tokenizer, actions=()):
        self.tokenizer, self.actions, self.calls = tokenizer, list(actions), []
        self.hf = HFEngine(None, tokenizer)

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            prompt_ids = self.hf.encode(prompt)
            self.calls.append(prompt_ids)
            ids, reason = self.actions.pop(0) if self.actions else (self.tokenizer("1")["input_ids"][-1:], "length")
            shown = ids[:-1] if reason == "eos" else ids
            text = self.tokenizer.decode(shown, skip_special_tokens=True)
            out.append(Completion(prompt, prompt_ids, text, list(ids), [-0.5] * len(ids), reason))
        return out

    def sync_weights(self, model):
        pass


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("chat", [True, False])
def test_a_problems_rl_prompt_ids_are_the_ids_evaluation_shows(family_tokenizer, family, chat):
    tok = family_tokenizer(family)
    spec = GymSpec("arithmetic", {"digits": 2}, chat=chat, system_prompt="Answer with a number." if chat else None)
    shown_in_eval = ScriptedIdsEngine(tok)
    evaluate_on_gym(None, tok, spec, EvalOptions(n=3, seed=1, samples=0), engine=shown_in_eval)
    shown_in_rl = ScriptedIdsEngine(tok)
    collect(shown_in_rl, tok, spec, [item_seed(1, i) for i in range(3)], SamplingParams(max_new_tokens=4))
    assert shown_in_rl.calls == shown_in_eval.calls
    bos = tok.bos_token_id if family in ("llama3", "gemma3") else None  # the families whose BOS opens a prompt
    for ids in shown_in_rl.calls:
        assert ids.count(bos) == (1 if bos is not None else 0) and (bos is None or ids[0] == bos)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def _guesses(tok, hidden: int) -> list[tuple[list[int], str]]:
    """Four actions, each awkward in its own way; the last one finds the number."""
    end = end_of_turn_id(tok)
    wrong, other = [n for n in range(1, 9) if n != hidden][:2]
    return [
        (_ids(tok, f" {wrong}") + [end], "eos"),  # a leading space, which Llama 3's and Gemma 3's templates trim
        (_ids(tok, "5") + [tok.convert_tokens_to_ids("<|endoftext|>")] + _ids(tok, "x") + [end], "eos"),  # a special token inside
        (_ids(tok, str(other)), "length"),  # cut at the length limit: no end of turn, the environment closes the turn
        (_ids(tok, str(hidden)) + [end], "eos"),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_turn_ids_are_the_sampled_ids_plus_the_environments_turn_by_turn(family_tokenizer, family):
    import gyms

    tok = family_tokenizer(family)
    system = None if family == "gemma3" else "Find the number."  # Gemma 3's template folds it into the user turn
    spec = GymSpec("guess_number", {"max_number": 8}, chat=True, system_prompt=system, max_turns=6)
    env = gyms.make("guess_number", max_number=8)
    env.reset(seed=3)
    actions = _guesses(tok, int(env.unwrapped._hidden))
    engine = ScriptedIdsEngine(tok, actions)
    (episode,) = collect(engine, tok, spec, [3], SamplingParams(max_new_tokens=4)).episodes
    assert episode.trajectory.num_turns == 4 and episode.trajectory.solved
    ids, mask = episode.tokens.input_ids, episode.tokens.policy_mask
    # Every id the policy is trained on is an id it sampled, in order, and nothing it sampled is missing.
    assert [t for t, m in zip(ids, mask) if m] == [t for action, _ in actions for t in action]
    # Each turn's prompt is the sequence so far: the policy saw exactly the ids it is trained on.
    for turn, shown in enumerate(engine.calls):
        assert shown == ids[: len(shown)] and mask[len(shown) - 1] == 0
        assert mask[len(shown): len(shown) + len(actions[turn][0])] == [1] * len(actions[turn][0])
    assert len(ids) == len(engine.calls[-1]) + len(actions[-1][0])
    # Decoded, the sequence is the template's conversation with the policy's words as it wrote them.
    words = [tok.decode(a[:-1] if reason == "eos" else a) for a, reason in actions]
    marks = [f"\u2063A{i}\u2063" for i in range(len(actions))]
    messages = [{"role": "system", "content": system}] if system else []
    for turn, mark in zip(episode.trajectory.turns, marks):
        messages += [{"role": "user", "content": turn.observation}, {"role": "assistant", "content": mark}]
    expected = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True) + marks[-1]
    for mark, word in zip(marks, words):
        expected = expected.replace(mark, word)
    assert tok.decode(ids) == expected + tok.decode([actions[-1][0][-1]])


def test_an_answer_ended_by_another_stop_token_still_gets_the_templates_end_of_turn(family_tokenizer):
    """Llama 3 may end an answer with <|end_of_text|> (its tokenizer's eos) instead of <|eot_id|>: the
    sampled token stays, and the turn is still closed the way the template closes it."""
    tok = family_tokenizer("llama3")
    spec = GymSpec("guess_number", {"max_number": 8}, chat=True, max_turns=2)
    actions = [(_ids(tok, "9") + [tok.eos_token_id], "eos"), (_ids(tok, "9") + [tok.eos_token_id], "eos")]
    (episode,) = collect(ScriptedIdsEngine(tok, actions), tok, spec, [3], SamplingParams(max_new_tokens=4)).episodes
    text = tok.decode(episode.tokens.input_ids)
    assert "9<|end_of_text|><|eot_id|><|start_header_id|>user<|end_header_id|>" in text


@pytest.mark.parametrize("chat", [True, False])
def test_a_reward_model_scores_an_episode_as_it_was_trained_bos_once(family_tokenizer, chat):
    from ftkit.preference import RewardScorer
    from ftkit.rl.rollout import add_model_reward

    class RecordingScorer(RewardScorer):
        def score_ids(self, sequences):
            self.seen = [list(ids) for ids in sequences]
            return [0.5] * len(sequences)

    tok = family_tokenizer("llama3")
    spec = GymSpec("arithmetic", {"digits": 1}, chat=chat, system_prompt="Be brief." if chat else None)
    actions = [(_ids(tok, "7") + [end_of_turn_id(tok) if chat else tok.eos_token_id], "eos")]
    batch = collect(ScriptedIdsEngine(tok, actions), tok, spec, [5], SamplingParams(max_new_tokens=4))
    scorer = RecordingScorer(None, tok)
    add_model_reward(batch, scorer, tok, weight=1.0, verifier_weight=0.0)
    (ids,) = scorer.seen
    observation = batch.episodes[0].trajectory.turns[0].observation
    if chat:  # TRL's conversational format: the template's rendering of the whole conversation
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": observation},
                    {"role": "assistant", "content": "7"}]
        assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    else:  # TRL's text format: prompt + answer + eos, with the tokenizer's BOS
        assert ids == tok(observation + "7" + tok.eos_token)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and batch.model_scores == [0.5]
