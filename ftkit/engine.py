"""Generation engines: one interface for sampling completions, whatever does the sampling.

    python -c "from ftkit.engine import HFEngine, SamplingParams; help(HFEngine)"

RL rollouts, evaluation and data collection all ask an engine for completions with
`engine.generate(prompts, params)` and get back, per prompt, the text, the sampled token ids and the
log-probability of each sampled token under the sampling distribution. The Hugging Face engine below
runs `model.generate` (batched, left-padded, KV cache) and is the CPU default. A vLLM engine implements
the same two methods (`generate`, and `sync_weights` to load the policy's new weights after each
update), so the algorithms never know which one they talk to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Plain text, chat messages (rendered with the chat template), or token ids used as they are: multi-turn
# RL passes ids, so that the tokens the policy is trained on are exactly the tokens it was shown.
Prompt = str | list[dict[str, str]] | list[int]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `temperature=0` means greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # the completion ends at the first of these (not included in `text`)
    seed: int | None = None
    logprobs: bool = True  # evaluation turns this off: the per-step vocab-sized scores cost memory

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Completion:
    """One sampled completion.

    `token_ids` are the tokens the model sampled, up to and including the stop token (any of
    `ftkit.chat.stop_token_ids`: the end-of-text token, the chat template's end of turn, the model's
    `generation_config.eos_token_id`) or the tokens that completed a stop string, and `logprobs[i]` is
    the log-probability of `token_ids[i]` under the distribution it was sampled from (after temperature
    and top-p). The RL trainer's log-probs (`ftkit.rl.policy.forward_tokens`) divide by the temperature
    too but do not truncate, so with top_p < 1 the two differ by design (the log of the nucleus's mass),
    and the RL update's sampler mismatch and correction include that (`ftkit/rl/correction.py`). `text`
    is the decoded completion without the stop token and without the stop string.
    """

    prompt: Prompt
    prompt_ids: list[int]
    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "eos", "stop" or "length"
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]: ...

    def sync_weights(self, model) -> None: ...


class HFEngine:
    """Sampling with Hugging Face `generate`: `HFEngine(model, tokenizer).generate(["12+34="], SamplingParams())`.

    Prompts are left-padded so that every row's new tokens start at the same column, which is what
    lets one batched `generate` call with a KV cache serve prompts of different lengths.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def sync_weights(self, model) -> None:
        """The HF engine samples from the training model itself, so there is nothing to copy."""
        self.model = model

    def render(self, prompt: Prompt) -> str:
        """Chat messages go through the tokenizer's chat template; text is used as it is."""
        if isinstance(prompt, str):
            return prompt
        if prompt and isinstance(prompt[0], int):
            return self.tokenizer.decode(prompt)
        _check_chat(self.tokenizer)
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt, as `ftkit.chat.Formatter.prompt_ids` makes them at every stage: ids pass
        through, text gets the tokenizer's special tokens (BOS where it adds one), chat messages are
        rendered and tokenized without them (the template writes its own BOS, and one is enough)."""
        from ftkit.chat import Formatter

        if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
            return list(prompt)
        if not isinstance(prompt, str):
            _check_chat(self.tokenizer)
        return Formatter(self.tokenizer).prompt_ids(prompt)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        """Completions in the order of `prompts`.

        Prompts are batched by length (shortest first), so that each batch holds similar lengths and
        little padding; the results are put back in the caller's order.
        """
        from ftkit.chat import stop_token_ids

        encoded = [self.encode(p) for p in prompts]
        stops = stop_token_ids(self.tokenizer, self.model)  # the chat template's end of turn too
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self._generate_batch([prompts[i] for i in rows], [encoded[i] for i in rows], params, stops)
            for i, completion in zip(rows, batch):
                results[i] = completion
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[Prompt], encoded: list[list[int]], params: SamplingParams,
                        stops: list[int]) -> list[Completion]:
        import torch

        tok = self.tokenizer
        saved_side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        finally:
            tok.padding_side = saved_side
        enc = enc.to(self.model.device)
        greedy = params.temperature == 0
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "do_sample": not greedy,
                                  "pad_token_id": tok.pad_token_id, "eos_token_id": stops,
                                  "return_dict_in_generate": True, "output_scores": params.logprobs}
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
        finally:
            self.model.train(was_training)
        new_tokens = out.sequences[:, enc["input_ids"].shape[1] :]
        # `scores` are the logits after temperature and top-p, so their log-softmax is the sampling
        # distribution; gather the log-probability of each token that was actually sampled, one step at a
        # time, so that no second (batch, steps, vocabulary) tensor is built beside the scores.
        if params.logprobs:
            token_logprobs = torch.stack([step.float().log_softmax(-1).gather(-1, new_tokens[:, t, None]).squeeze(-1)
                                          for t, step in enumerate(out.scores)], dim=1)
        else:
            token_logprobs = torch.full(new_tokens.shape, float("nan"))
        completions = []
        for row, prompt in enumerate(prompts):
            prompt_ids = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
            completions.append(self._finish(prompt, prompt_ids, new_tokens[row].tolist(),
                                            token_logprobs[row].tolist(), params, stops))
        return completions

    def _finish(self, prompt: Prompt, prompt_ids: list[int], ids: list[int], logprobs: list[float],
                params: SamplingParams, stops: list[int]) -> Completion:
        """Cut one row at its end: the first stop token (`stops`), a stop string, or the length limit."""
        for i, token in enumerate(ids):
            if token in stops:
                ids, logprobs = ids[: i + 1], logprobs[: i + 1]
                return Completion(prompt, prompt_ids, self._decode(ids[:-1]), ids, logprobs, "eos")
        for end in range(1, len(ids) + 1 if params.stop else 0):  # the shortest prefix holding a stop string
            text = self._decode(ids[:end])
            hits = [text.find(s) for s in params.stop if s in text]
            if hits:
                return Completion(prompt, prompt_ids, text[: min(hits)], ids[:end], logprobs[:end], "stop")
        return Completion(prompt, prompt_ids, self._decode(ids), ids, logprobs, "length")

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _check_chat(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat-message prompts need a tokenizer with a chat template")
