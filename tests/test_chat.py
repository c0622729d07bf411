"""ftkit.chat: the one place text becomes ids, checked token by token on the real SmolLM2 tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftkit.chat import Formatter, end_of_turn_id, stop_token_ids
from ftkit.errors import DataError

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"


def trained_text(tok, example) -> str:
    return tok.decode([i for i, t in zip(example.input_ids, example.trained) if t])


def test_plain_example_is_prompt_ids_then_answer_and_eos():
    from ftkit.scratch import build_tokenizer

    tok = build_tokenizer()
    example = Formatter(tok).example("12+34=", "46")
    assert example.input_ids == tok("12+34=")["input_ids"] + tok("46", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id]
    assert example.trained == [0] * 6 + [1] * 3


def test_chat_mask_on_the_real_tokenizer(smollm2_tokenizer):
    tok = smollm2_tokenizer
    example = Formatter(tok, chat=True).example("What is 2+2?", "4")
    text = tok.decode(example.input_ids)
    # the template's own system prompt is shown...
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    # ...and only the answer and the token that ends it are trained, not the newline after it
    assert trained_text(tok, example) == "4<|im_end|>"
    assert example.input_ids[-1] == tok("\n", add_special_tokens=False)["input_ids"][0]
    assert example.trained[-1] == 0
    assert example.input_ids == tok(text, add_special_tokens=False)["input_ids"]


def test_prompt_ids_are_the_examples_untrained_head(smollm2_tokenizer):
    f = Formatter(smollm2_tokenizer, chat=True, system_prompt="Answer with a number.")
    prompt = f.prompt_ids("7*8=")
    example = f.example("7*8=", "56")
    assert example.input_ids[: len(prompt)] == prompt
    assert set(example.trained[: len(prompt)]) == {0}
    assert "Answer with a number." in smollm2_tokenizer.decode(prompt)
    assert "SmolLM" not in smollm2_tokenizer.decode(prompt)  # a system prompt given replaces the default


def test_multi_turn_conversation_trains_every_answer(smollm2_tokenizer):
    tok = smollm2_tokenizer
    messages = [{"role": "user", "content": "Guess a number."}, {"role": "assistant", "content": "50"},
                {"role": "user", "content": "Higher."}, {"role": "assistant", "content": "75"}]
    example = Formatter(tok, chat=True).conversation(messages)
    assert trained_text(tok, example) == "50<|im_end|>75<|im_end|>"


def test_template_that_rejects_roles_is_a_data_error(smollm2_tokenizer):
    tok = smollm2_tokenizer
    tok.chat_template = (TRL_TEMPLATES / "gemma.jinja").read_text()  # raises on a system role after the first
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    with pytest.raises(DataError, match="rejects a conversation with roles"):
        Formatter(tok, chat=True).conversation(bad)


def test_no_template_in_chat_mode_is_a_data_error(smollm2_tokenizer):
    smollm2_tokenizer.chat_template = None
    with pytest.raises(DataError, match="chat template"):
        Formatter(smollm2_tokenizer, chat=True)


def test_stop_tokens_gather_eos_lists_and_the_end_of_turn(smollm2_tokenizer):
    class Model:  # what matters of a model here: its generation config
        class generation_config:
            eos_token_id = [0, 2]

    tok = smollm2_tokenizer
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tok, Model()) == [0, 2]


def test_next_turn_closes_an_unfinished_answer_and_skips_a_finished_ones_end(smollm2_tokenizer):
    tok = smollm2_tokenizer
    f = Formatter(tok, chat=True)
    history = [{"role": "user", "content": "Guess."}, {"role": "assistant", "content": "50"}]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    finished = f.next_turn_ids(history, "Higher.", [tok.convert_tokens_to_ids("5"), end])
    cut = f.next_turn_ids(history, "Higher.", [tok.convert_tokens_to_ids("5")])
    assert tok.decode(finished) == "\n<|im_start|>user\nHigher.<|im_end|>\n<|im_start|>assistant\n"
    assert cut == [end, *finished]
