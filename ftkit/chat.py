"""How a prompt, an answer or a conversation becomes the token ids a model sees: one place, every stage.

    python -m ftkit data show recipes/smollm2_math.yaml --n 3     # the result, with the trained tokens marked

SFT data, evaluation, collection and RL rollouts all turn text into ids through `Formatter`, so a model
is shown the same tokens at every stage. That sounds obvious; it is where real models break:

- **BOS.** A Llama tokenizer adds `<s>`/`<|begin_of_text|>` when it tokenizes plain text, and a Llama 3
  chat template writes it into the text too. Plain text is therefore tokenized with the tokenizer's
  special tokens (one BOS where the model expects one) and a rendered chat template without them
  (the template's own BOS, never two).
- **Where the answer ends.** Chat models end a turn with their own token (`<|im_end|>`, `<|eot_id|>`,
  `<end_of_turn>`, `<|end|>`), which need not be the tokenizer's `eos_token`. `stop_token_ids` gathers
  every token that ends an answer: the model's `generation_config.eos_token_id` (an int or a list),
  the tokenizer's `eos_token_id`, and the token the chat template closes an assistant turn with.
- **Which tokens are trained.** `{% generation %}` markers (what TRL's `assistant_only_loss` needs)
  are missing from most templates, SmolLM2's, Llama's and Qwen's among them. `Formatter.conversation`
  renders the conversation up to each answer to find, in characters, where every answer lies, then
  tokenizes the whole conversation once and marks each token by the characters it covers (the
  tokenizer's offsets). Tokenizing message by message instead would split some texts differently
  ("\n\n" + "0" is not "\n\n0" for a GPT-2-style tokenizer under Llama 3's template). A system prompt
  the template inserts by itself comes before the first answer, so it is shown and never trained on.
- **Turn after turn.** In multi-turn RL the sequence grows by the ids the policy sampled and the ids of
  the environment's next message (`Formatter.next_turn_ids`), never by re-rendering the history:
  templates that trim an answer, or rewrite earlier turns (Qwen3's `<think>`), would change ids the
  policy already produced.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from ftkit.errors import DataError

Message = dict[str, str]
# A placeholder answer: the text a chat template puts after it is how that template closes a turn.
_MARK = "\u2063FTKIT-ANSWER\u2063"


@dataclass
class Tokenized:
    """Token ids of one training example and, per id, 1 if it is trained on (an answer) else 0."""

    input_ids: list[int]
    trained: list[int]


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Every token id that ends an answer: `stop_token_ids(tokenizer, model)` -> [2, 49152] style list.

    The model's `generation_config.eos_token_id` (Llama 3 lists `<|eot_id|>` and `<|end_of_text|>`),
    the tokenizer's `eos_token_id`, and the token that the chat template closes an assistant turn with
    (ChatML's `<|im_end|>` on a base tokenizer whose eos is `<|endoftext|>`).
    """
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    for token in ([eos] if isinstance(eos, int) else list(eos or [])) + [tokenizer.eos_token_id]:
        if token is not None and token not in ids:
            ids.append(int(token))
    end = end_of_turn_id(tokenizer)
    if end is not None and end not in ids:
        ids.append(end)
    return ids


def end_of_turn_id(tokenizer) -> int | None:
    """The special token a chat template writes right after an assistant's answer, if there is one."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = _apply(tokenizer, [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": _MARK}])
    except Exception:  # a template that cannot render this minimal conversation has no end token to find
        return None
    after = text.split(_MARK, 1)[-1] if _MARK in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(getattr(tokenizer, "all_special_ids", []) or []) | set(_added_special_ids(tokenizer))
    return ids[0] if ids and ids[0] in special else None


def _added_special_ids(tokenizer) -> list[int]:
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return [i for i, t in decoder.items() if getattr(t, "special", False)]


def _apply(tokenizer, messages: Sequence[Message], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


@dataclass
class Formatter:
    """Text to ids for one model, the same at every stage:

    >>> from ftkit.scratch import build_tokenizer
    >>> f = Formatter(build_tokenizer())
    >>> f.example("2+2=", "4").trained
    [0, 0, 0, 0, 1, 1]

    `chat=True`: a prompt is the user's message (after `system_prompt`, if given) and an answer the
    assistant's, rendered with the tokenizer's chat template. `chat=False`: prompt and answer are plain
    text, and an answer ends with the end-of-text token.
    """

    tokenizer: object
    chat: bool = False
    system_prompt: str | None = None
    def __post_init__(self):
        if self.chat and not getattr(self.tokenizer, "chat_template", None):
            raise DataError("chat mode needs a tokenizer with a chat template, and this one has none; "
                            "set chat: false, or use a model whose tokenizer has one")

    # Found on first use and kept: each is a template render, and a Formatter may format thousands of examples.
    @cached_property
    def _stops(self) -> frozenset[int]:
        return frozenset(stop_token_ids(self.tokenizer))

    @cached_property
    def _end_of_turn(self) -> int | None:
        return end_of_turn_id(self.tokenizer)

    # -- prompts ---------------------------------------------------------------------------------

    def messages(self, prompt: str | Sequence[Message]) -> list[Message]:
        """A prompt as chat messages: text becomes one user message after the system prompt."""
        if isinstance(prompt, str):
            head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            return [*head, {"role": "user", "content": prompt}]
        return [dict(m) for m in prompt]

    def prompt_ids(self, prompt: str | Sequence[Message]) -> list[int]:
        """The ids a model is shown before it answers `prompt` (text, or chat messages)."""
        if self.chat or not isinstance(prompt, str):
            return self._encode_rendered(self._render(self.messages(prompt), generation_prompt=True))
        return self._encode_plain(prompt)

    # -- training examples -----------------------------------------------------------------------

    def example(self, prompt: str | Sequence[Message], answer: str) -> Tokenized:
        """One prompt and its answer: the answer's ids (and the token that ends it) are trained."""
        if self.chat or not isinstance(prompt, str):
            return self.conversation([*self.messages(prompt), {"role": "assistant", "content": answer}])
        prompt_ids = self._encode_plain(prompt)
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return Tokenized(prompt_ids + answer_ids, [0] * len(prompt_ids) + [1] * len(answer_ids))

    def conversation(self, messages: Sequence[Message]) -> Tokenized:
        """A whole conversation; every assistant message (with its end-of-turn token) is trained.

        The ids are those of the whole rendered conversation tokenized at once (what the model reads,
        and what TRL trains on). Which of them are an answer's comes from the text: answer i spans from
        the end of the conversation before it rendered with the generation prompt, to where the
        conversation through it stops agreeing with the whole; a token is trained when its characters
        (the tokenizer's offsets) overlap an answer. Raises `DataError` when the template rejects the
        conversation or renders what comes before an answer differently once more turns follow.
        """
        messages = [dict(m) for m in messages]
        if not any(m.get("role") == "assistant" for m in messages):
            raise DataError("a training conversation needs at least one assistant message")
        whole = self._render(messages, generation_prompt=False)
        spans = [self._answer_span(messages, i, whole) for i, m in enumerate(messages) if m.get("role") == "assistant"]
        encoded = self.tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
        trained = [int(any(a < end and start < b for start, end in spans)) for a, b in encoded["offset_mapping"]]
        return Tokenized(list(encoded["input_ids"]), self._trim_after_end(encoded["input_ids"], trained))

    def _answer_span(self, messages: list[Message], i: int, whole: str) -> tuple[int, int]:
        """Where answer `i` (with whatever closes its turn) lies in `whole`, in characters."""
        head = self._render(messages[:i], generation_prompt=True)
        if not whole.startswith(head):
            raise DataError(
                f"the chat template renders the conversation before message {i} differently once later messages "
                "are added, so which tokens are the assistant's is ambiguous; ftkit cannot build an "
                "assistant-only loss mask with this template"
            )
        through = self._render(messages[: i + 1], generation_prompt=False)
        end = len(os.path.commonprefix([through, whole]))  # Phi-3 appends eos only to a conversation's end
        if end <= len(head):
            raise DataError(f"message {i} (the assistant's) renders as no text at all with this chat template")
        return len(head), end

    # -- multi-turn RL ---------------------------------------------------------------------------

    def next_turn_ids(self, history: Sequence[Message], observation: str, action_ids: Sequence[int]) -> list[int]:
        """The ids the environment adds after the policy's last action (`action_ids`, as sampled).

        Chat: what the template writes between an answer and the next generation prompt (the end of
        the assistant's turn, the user's message, the assistant header), without the end-of-turn token
        when the action already sampled it. Plain text: the observation, without special tokens.
        """
        if not self.chat:
            return self.tokenizer(observation, add_special_tokens=False)["input_ids"]
        closed = [*[dict(m) for m in history], {"role": "assistant", "content": _MARK}]
        text = self._render([*closed, {"role": "user", "content": observation}], generation_prompt=True)
        if _MARK not in text:
            raise DataError("the chat template dropped the assistant's answer from the conversation, so a "
                            "multi-turn episode cannot continue it; use a template that keeps every turn")
        ids = self.tokenizer(text.rsplit(_MARK, 1)[1], add_special_tokens=False)["input_ids"]
        end = self._end_of_turn
        if action_ids and ids and ids[0] == end and action_ids[-1] == end:
            ids = ids[1:]  # the policy closed its own turn (another stop token, e.g. <|end_of_text|>, did not)
        return ids

    # -- helpers ---------------------------------------------------------------------------------

    def _render(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        if not messages:
            return ""
        try:
            return _apply(self.tokenizer, messages, generation_prompt)
        except Exception as e:  # jinja's raise_exception (roles out of order, unknown role) and the like
            roles = ", ".join(m.get("role", "?") for m in messages)
            raise DataError(f"the chat template rejects a conversation with roles [{roles}]: {e}") from None

    def _encode_plain(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]  # with BOS where the tokenizer adds one

    def _encode_rendered(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template wrote its own BOS

    def _trim_after_end(self, ids: list[int], trained: list[int]) -> list[int]:
        """Within each answer, train up to its first stop token: not the newline (or, with Phi-3, the
        end-of-text) a template writes after the end of the turn, which generation never reaches."""
        stops = self._stops
        out, inside_answer, ended = list(trained), False, False
        for k, (token, is_answer) in enumerate(zip(ids, trained)):
            if not is_answer:
                inside_answer = ended = False
                continue
            if not inside_answer:
                inside_answer, ended = True, False
            if ended:
                out[k] = 0
            elif token in stops:
                ended = True
        return out
