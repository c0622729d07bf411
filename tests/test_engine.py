"""The generation engine: sampling log-probabilities match a forward pass, stops, chat, seeds."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftkit.engine import HFEngine, SamplingParams
from ftkit.evaluate import generate as greedy_generate
from ftkit.scratch import build_scratch


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = build_scratch("tiny", tmp_path_factory.mktemp("tiny") / "m")
    return HFEngine(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder))


PROMPTS = ["rev 12+34=", "7*8=", "a much longer prompt, to force left padding: 1+1="]


def test_logprobs_match_a_forward_pass_of_the_policy(engine):
    out = engine.generate(PROMPTS, SamplingParams(max_new_tokens=8, temperature=1.0, seed=0))
    for c in out:
        ids = torch.tensor([c.prompt_ids + c.token_ids])
        with torch.no_grad():
            logits = engine.model(ids).logits[0].float().log_softmax(-1)
        # the token at position t is predicted by the logits at t - 1
        start = len(c.prompt_ids)
        expected = [logits[start - 1 + i, t].item() for i, t in enumerate(c.token_ids)]
        assert c.logprobs == pytest.approx(expected, abs=1e-4)
        assert len(c.token_ids) == len(c.logprobs) >= 1


def test_temperature_scales_the_sampling_distribution(engine):
    hot = engine.generate(PROMPTS[:1], SamplingParams(max_new_tokens=4, temperature=2.0, seed=1))[0]
    c = hot
    ids = torch.tensor([c.prompt_ids + c.token_ids])
    with torch.no_grad():
        logits = (engine.model(ids).logits[0].float() / 2.0).log_softmax(-1)
    start = len(c.prompt_ids)
    assert c.logprobs == pytest.approx([logits[start - 1 + i, t].item() for i, t in enumerate(c.token_ids)],
                                       abs=1e-4)


def test_greedy_matches_evaluation_and_seeds_replay(engine):
    greedy = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6, temperature=0))
    assert [c.text for c in greedy] == greedy_generate(engine.model, engine.tokenizer, PROMPTS, max_new_tokens=6)
    a = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6, seed=3))
    b = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6, seed=3))
    assert [c.token_ids for c in a] == [c.token_ids for c in b]


def test_stop_strings_and_finish_reasons(engine):
    out = engine.generate(PROMPTS * 4, SamplingParams(max_new_tokens=12, seed=0, stop=("1", "2")))
    for c in out:
        assert c.finish_reason in ("stop", "eos", "length")
        assert "1" not in c.text and "2" not in c.text
        if c.finish_reason == "stop":
            full = engine.tokenizer.decode(c.token_ids, skip_special_tokens=True)
            assert full.startswith(c.text) and full[len(c.text)] in "12"
        if c.finish_reason == "length":
            assert len(c.token_ids) == 12


def test_chat_prompts_use_the_template(engine):
    chat = [{"role": "user", "content": "12+34="}]
    assert engine.render(chat) == "User: 12+34=\nAssistant: "
    (c,) = engine.generate([chat], SamplingParams(max_new_tokens=3, temperature=0))
    assert engine.tokenizer.decode(c.prompt_ids) == "User: 12+34=\nAssistant: "


def test_bad_sampling_params():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)


def always_says(model, token_id: int):
    """`model` with its output layer replaced so that it samples `token_id` at every step (nearly surely)."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = 50.0
    model.lm_head = head
    return model


@pytest.mark.parametrize("stop", ["end_of_turn", "generation_config"])
def test_generation_stops_at_every_stop_token_not_only_the_tokenizers_eos(family_tokenizer, stop):
    from conftest import tiny_llama

    tok = family_tokenizer("llama3")  # eos <|end_of_text|>, but a turn ends with <|eot_id|>
    extra = tok.convert_tokens_to_ids("<|endoftext|>")
    model = tiny_llama(tok, tie_word_embeddings=False)
    model.generation_config.eos_token_id = [tok.eos_token_id, extra]  # Llama 3 lists several
    said = tok.convert_tokens_to_ids("<|eot_id|>") if stop == "end_of_turn" else extra
    engine = HFEngine(always_says(model, said), tok)
    for params in (SamplingParams(max_new_tokens=5, temperature=0), SamplingParams(max_new_tokens=5, seed=0)):
        (c,) = engine.generate([[{"role": "user", "content": "2+2?"}]], params)
        assert (c.token_ids, c.finish_reason, c.text) == ([said], "eos", "")
        assert len(c.logprobs) == 1


def test_prompts_get_one_bos_whether_text_or_chat(family_tokenizer):
    from conftest import tiny_llama

    from ftkit.chat import Formatter

    for family in ("llama3", "gemma3"):  # templates that write BOS, tokenizers that add it to plain text
        tok = family_tokenizer(family)
        engine = HFEngine(tiny_llama(tok), tok)
        chat = [{"role": "user", "content": "2+2?"}]
        for prompt in (chat, "2+2="):
            ids = engine.encode(prompt)
            assert ids == Formatter(tok).prompt_ids(prompt)
            assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id, (family, prompt)
        (c,) = engine.generate([chat], SamplingParams(max_new_tokens=2, temperature=0))
        assert c.prompt_ids == engine.encode(chat)
