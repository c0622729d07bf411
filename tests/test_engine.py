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


# -- the lean loop (ftkit/decode.py) against model.generate ---------------------------------------------

GROUPS = PROMPTS * 8  # every prompt eight times, as a GRPO batch repeats each problem


@pytest.fixture(scope="module")
def ending_engine(engine):
    """The tiny model with its end-of-text logit raised, so that sampled rows end at different steps."""
    model = AutoModelForCausalLM.from_pretrained(engine.model.name_or_path)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.get_output_embeddings().weight)
        head.bias.zero_()
        head.bias[engine.tokenizer.eos_token_id] = 4.0  # about 1 in 6
    model.lm_head = head
    return HFEngine(model, engine.tokenizer)


def both_loops(engine):
    return (HFEngine(engine.model, engine.tokenizer, loop="lean"),
            HFEngine(engine.model, engine.tokenizer, loop="generate"))


@pytest.mark.parametrize("params", [SamplingParams(max_new_tokens=8, temperature=0),
                                    SamplingParams(max_new_tokens=8, seed=3),
                                    SamplingParams(max_new_tokens=8, seed=4, temperature=0.7, top_p=0.8),
                                    SamplingParams(max_new_tokens=12, seed=5, stop=("1", "2")),
                                    SamplingParams(max_new_tokens=8, seed=6, logprobs=False)],
                         ids=["greedy", "sampled", "top_p", "stop_strings", "no_logprobs"])
def test_the_lean_loop_samples_exactly_what_generate_samples(ending_engine, params):
    """From the same random state: the same tokens, finish reasons, texts and log-probs, though the lean
    loop computes each distinct prompt once and runs finished rows no further."""
    lean, generate = both_loops(ending_engine)
    assert lean.uses_lean_loop() and not generate.uses_lean_loop()
    ours, theirs = lean.generate(GROUPS, params), generate.generate(GROUPS, params)
    assert [(c.token_ids, c.finish_reason, c.text) for c in ours] == [(c.token_ids, c.finish_reason, c.text) for c in theirs]
    if params.temperature > 0:  # rows ended at different steps
        assert len({len(c.token_ids) for c in ours}) > 2
    for a, b in zip(ours, theirs):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5, nan_ok=True)


def test_the_lean_loop_samples_from_the_models_distribution(engine):
    """Frequencies of the first sampled token, over 4,000 rows of one prompt, against the model's own
    probabilities: each within five standard errors (a wrong temperature or top-p would be far off)."""
    lean, _ = both_loops(engine)
    prompt = engine.encode(PROMPTS[0])
    out = lean.generate([prompt] * 4000, SamplingParams(max_new_tokens=1, temperature=0.8, seed=0))
    assert len({c.token_ids[0] for c in out}) > 200  # the 63 batches of 64 rows draw different numbers
    with torch.no_grad():
        probs = (engine.model(torch.tensor([prompt])).logits[0, -1] / 0.8).softmax(-1)
    counts = torch.bincount(torch.tensor([c.token_ids[0] for c in out]), minlength=len(probs)).float()
    se = (probs * (1 - probs) / 4000).sqrt()
    assert ((counts / 4000 - probs).abs() <= 5 * se + 1e-4).all()


def test_models_whose_generation_config_adds_processors_sample_through_generate(engine):
    from ftkit import decode

    assert decode.unsupported(engine.model) is None
    engine.model.generation_config.repetition_penalty = 1.3
    try:
        assert "repetition_penalty" in decode.unsupported(engine.model)
        assert not HFEngine(engine.model, engine.tokenizer).uses_lean_loop()
        with pytest.raises(ValueError, match="repetition_penalty"):
            HFEngine(engine.model, engine.tokenizer, loop="lean").generate(PROMPTS, SamplingParams(max_new_tokens=2))
    finally:
        engine.model.generation_config.repetition_penalty = 1.0


def test_a_stop_string_wins_over_the_padding_after_it_when_pad_is_eos(engine):
    """After a stop string a row holds padding; where the pad token is also a stop token (SmolLM2: both
    are <|endoftext|>), the completion still ends at the stop string, without the padding."""
    from ftkit.chat import stop_token_ids

    stops = stop_token_ids(engine.tokenizer, engine.model)
    ids = engine.tokenizer("12", add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_new_tokens=6, stop=("2",))
    c = engine._finish("p", [1], ids + [stops[0]] * 2, [-0.5] * (len(ids) + 2), params, stops)
    assert (c.text, c.token_ids, c.finish_reason) == ("1", ids, "stop")
