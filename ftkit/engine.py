"""Generation engines: one interface for sampling completions, whatever does the sampling.

    python -c "from ftkit.engine import HFEngine, SamplingParams; help(HFEngine)"

RL rollouts, evaluation and data collection all ask an engine for completions with
`engine.generate(prompts, params)` and get back, per prompt, the text, the sampled token ids and the
log-probability of each sampled token under the sampling distribution. The Hugging Face engine below
(batched, left-padded, KV cache; ftkit's lean loop `ftkit/decode.py`, or `model.generate`) is the CPU
default. A vLLM engine implements the same two methods (`generate`, and `sync_weights` to load the
policy's new weights after each update), so the algorithms never know which one they talk to.
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
    # A torch.Generator to draw the random numbers from instead of torch's global one (the Hugging Face
    # engine's lean loop only): asynchronous RL samples in a background thread, each step's batch from a
    # generator of its own, so that the training thread's use of the global one cannot change it.
    generator: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and self.generator is not None:
            raise ValueError("give a seed or a generator, not both (seed the generator instead)")


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
    """Sampling with a Hugging Face model: `HFEngine(model, tokenizer).generate(["12+34="], SamplingParams())`.

    Prompts are left-padded so that every row's new tokens start at the same column, which is what
    lets one batched call with a KV cache serve prompts of different lengths. `loop` says what samples:
    "lean" is `ftkit/decode.py`, a loop that computes each distinct prompt once and does per token only
    what the engine needs (for the 0.9M-parameter arithmetic model, `generate`'s own bookkeeping and a
    GRPO batch's repeated prompts were most of the time); "generate" is `model.generate`; "auto", the
    default, is "lean" whenever it samples what `generate` would (`ftkit.decode.unsupported`: not for
    encoder-decoders, nor for a generation_config with a repetition penalty or similar), else "generate".
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, loop: str = "auto"):
        if loop not in ("auto", "lean", "generate"):
            raise ValueError(f"HFEngine loop must be auto, lean or generate, got {loop!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.loop = loop

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
        little padding; the results are put back in the caller's order. `params.seed` seeds the call
        once, not each batch: batches do not replay each other's random numbers. `params.generator`, when
        given, supplies every random number instead of torch's global generator.
        """
        import torch

        from ftkit.chat import stop_token_ids

        if params.seed is not None:
            torch.manual_seed(params.seed)
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

        was_training = self.model.training
        self.model.eval()
        try:
            sample = self._sample_lean if self.uses_lean_loop() else self._sample_with_generate
            new_tokens, token_logprobs = sample(encoded, params, stops)
        finally:
            self.model.train(was_training)
        if token_logprobs is None:
            token_logprobs = torch.full(new_tokens.shape, float("nan"))
        rows = zip(prompts, encoded, new_tokens.tolist(), token_logprobs.tolist())
        return [self._finish(prompt, ids, tokens, logprobs, params, stops) for prompt, ids, tokens, logprobs in rows]

    def uses_lean_loop(self) -> bool:
        """Whether this engine samples with `ftkit.decode` (see `loop`) rather than `model.generate`."""
        from ftkit import decode

        if self.loop == "generate":
            return False
        reason = decode.unsupported(self.model)
        if self.loop == "lean" and reason:
            raise ValueError(f"HFEngine(loop='lean') cannot sample this model: {reason}; use loop='auto'")
        return reason is None

    def _sample_lean(self, encoded: list[list[int]], params: SamplingParams, stops: list[int]):
        from ftkit import decode

        return decode.sample(self.model, encoded, params, stops, self._pad_id(stops), self.tokenizer)

    def _sample_with_generate(self, encoded: list[list[int]], params: SamplingParams, stops: list[int]):
        """(new tokens, their log-probs or None) from `model.generate` on the left-padded batch."""
        import torch

        if params.generator is not None:
            raise ValueError("model.generate draws from torch's global generator and cannot take "
                             "params.generator: this model samples through generate (see HFEngine.loop)")
        tok = self.tokenizer
        saved_side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        finally:
            tok.padding_side = saved_side
        enc = enc.to(self.model.device)
        greedy = params.temperature == 0
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "do_sample": not greedy,
                                  "pad_token_id": self._pad_id(stops), "eos_token_id": stops,
                                  "return_dict_in_generate": True, "output_scores": params.logprobs}
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out.sequences[:, enc["input_ids"].shape[1] :]
        if not params.logprobs:
            return new_tokens, None
        # `scores` are the logits after temperature and top-p, so their log-softmax is the sampling
        # distribution; gather the log-probability of each token that was actually sampled, one step at a
        # time, so that no second (batch, steps, vocabulary) tensor is built beside the scores.
        return new_tokens, torch.stack([step.float().log_softmax(-1).gather(-1, new_tokens[:, t, None]).squeeze(-1)
                                        for t, step in enumerate(out.scores)], dim=1)

    def _pad_id(self, stops: list[int]) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else stops[0]

    def _finish(self, prompt: Prompt, prompt_ids: list[int], ids: list[int], logprobs: list[float],
                params: SamplingParams, stops: list[int]) -> Completion:
        """Cut one row at its end: the first stop token (`stops`), a stop string, or the length limit.

        A stop string that ends before the first stop token wins: after it a row holds only padding,
        which is a stop token itself where the pad token is the end-of-text token (SmolLM2's).
        """
        eos = next((i for i, token in enumerate(ids) if token in stops), None)
        before_eos = ids if eos is None else ids[:eos]
        for end in range(1, len(before_eos) + 1 if params.stop else 0):  # the shortest prefix holding a stop string
            text = self._decode(ids[:end])
            hits = [text.find(s) for s in params.stop if s in text]
            if hits:
                return Completion(prompt, prompt_ids, text[: min(hits)], ids[:end], logprobs[:end], "stop")
        if eos is not None:
            ids, logprobs = ids[: eos + 1], logprobs[: eos + 1]
            return Completion(prompt, prompt_ids, self._decode(ids[:-1]), ids, logprobs, "eos")
        return Completion(prompt, prompt_ids, self._decode(ids), ids, logprobs, "length")

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def _check_chat(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat-message prompts need a tokenizer with a chat template")
