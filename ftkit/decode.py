"""A lean sampling loop for Hugging Face causal LMs: what `HFEngine` asks of `model.generate`, and nothing else.

    python -c "from ftkit.decode import sample; help(sample)"

`model.generate` is general: at every token it prepares the model's inputs, runs a list of logits
processors and stopping criteria, and keeps its caches' bookkeeping. For a million-parameter model on a
CPU that costs as much as the forward pass itself, and a GRPO batch shows it every prompt
`num_generations` times. This loop:

- computes each distinct prompt once and copies its key/value cache to its rows (`ftkit/prefill.py`);
- samples each token as `generate`'s warpers do (temperature, then top-p, then `torch.multinomial` on
  the whole batch), so that from the same random state it samples the same tokens (tested);
- stops a row at any of its stop tokens or at a stop string in its completion, and runs only the rows
  still going (`generate` keeps feeding finished rows padding). A finished row still draws its random
  numbers, which is what keeps the other rows on `generate`'s random stream.

Its random numbers come from torch's global generator, as `generate`'s do, or from the `torch.Generator`
in `params.generator`: asynchronous RL rollouts sample in a background thread while the training thread
uses the global one, so each step's batch draws from a generator of its own (`ftkit/rl/async_rollout.py`).

It returns what the engine reads from `generate`: the new tokens (padding after a row's end) and the
log-probability of each under the distribution it was sampled from. `unsupported(model)` says when it
would sample something else than `generate`; the engine then calls `generate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ftkit.prefill import CachedRows, prefill

# Generation-config fields that do not change what is sampled when the engine calls `generate` (it
# passes the stops, the length, the temperature, top_p and top_k=0 itself). Any other field set on a
# model (a repetition penalty, min_new_tokens, suppressed tokens...) adds a logits processor that this
# loop does not have, so such models sample through `generate`.
NEUTRAL_GENERATION_FIELDS = frozenset({
    "_from_model_config", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
    "decoder_start_token_id", "use_cache", "cache_implementation", "cache_config", "compile_config",
    "disable_compile", "output_attentions", "output_hidden_states", "output_scores", "output_logits",
    "return_dict_in_generate", "max_length", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k",
})


def unsupported(model) -> str | None:
    """Why this loop would not sample what `generate` samples for `model`, or None when it would."""
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models generate through model.generate"
    generation = getattr(model, "generation_config", None)
    extra = sorted(set(generation.to_diff_dict()) - NEUTRAL_GENERATION_FIELDS) if generation is not None else []
    if extra:
        return f"the model's generation_config sets {', '.join(extra)}, which model.generate applies"
    return None


def sample(model, prompts: Sequence[Sequence[int]], params, stops: Sequence[int], pad_id: int,
           tokenizer=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(tokens, logprobs), each (len(prompts), steps <= params.max_new_tokens): a row's new tokens, then
    `pad_id` after its end; logprobs None when `params.logprobs` is off.

        sample(model, [[12, 40, 7]] * 16, SamplingParams(max_new_tokens=6), stops=[256], pad_id=257)

    `params` is an `ftkit.engine.SamplingParams`; stop strings need the `tokenizer` (to read the text).
    """
    device = next(model.parameters()).device
    with torch.inference_mode():
        rows = prefill(model, prompts, pad_id, device)
        return _decode(model, rows, params, torch.tensor(list(stops), device=device), pad_id, tokenizer)


def _decode(model, rows: CachedRows, params, stops: torch.Tensor, pad_id: int, tokenizer):
    batch, steps = rows.last_logits.shape[0], params.max_new_tokens
    device = rows.last_logits.device
    tokens = torch.full((batch, steps), pad_id, dtype=torch.long, device=device)
    logprobs = torch.full((batch, steps), float("nan"), device=device) if params.logprobs else None
    active = torch.arange(batch, device=device)  # the rows still going, as indices into the batch
    picker = _Picker(params, batch, getattr(params, "generator", None))
    logits = rows.last_logits
    for step in range(steps):
        scores = picker.scores(logits)
        token = picker.pick(scores, active)
        tokens[active, step] = token
        if logprobs is not None:
            logprobs[active, step] = scores.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
        going = ~torch.isin(token, stops)
        if params.stop:
            going &= ~_stop_string_hit(tokenizer, tokens[active, : step + 1], params.stop)
        if step == steps - 1 or not bool(going.any()):
            return tokens[:, : step + 1], None if logprobs is None else logprobs[:, : step + 1]
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            rows.keep(keep)
            active, token = active[keep], token[keep]
        logits = rows.forward(model, token[:, None]).logits[:, -1]
    raise AssertionError("unreachable: the loop returns at its last step")


class _Picker:
    """Turns logits into the next tokens as `generate` does, keeping its random stream."""

    def __init__(self, params, batch: int, generator: torch.Generator | None = None):
        self.params = params
        self.batch = batch
        self.generator = generator  # None: torch's global generator, as `generate`'s sampling uses
        self.probs: torch.Tensor | None = None  # (batch, V): the last distribution of every row

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits after `generate`'s warpers: the distribution each token is sampled from."""
        scores = logits.float()
        p = self.params
        if p.temperature == 0:
            return scores
        if p.temperature != 1.0:
            scores = scores / p.temperature
        return top_p_filter(scores, p.top_p) if p.top_p < 1.0 else scores

    def pick(self, scores: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """The active rows' tokens: argmax when greedy, else one `torch.multinomial` over all rows.

        `multinomial` draws as many random numbers per row whatever its probabilities, and each row's
        draw depends only on its own numbers, so sampling a finished row too (with its last distribution)
        keeps every other row's draw identical to `generate`'s.
        """
        if self.params.temperature == 0:
            return scores.argmax(dim=-1)
        probs = scores.softmax(dim=-1)
        if self.probs is None or len(active) == self.batch:
            self.probs = probs
        else:
            self.probs[active] = probs
        return torch.multinomial(self.probs, num_samples=1, generator=self.generator).squeeze(1)[active]


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering as transformers' `TopPLogitsWarper`: the least likely tokens whose mass stays within
    1 - top_p get -inf; the most likely token always stays."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[..., -1:] = False
    return scores.masked_fill(remove.scatter(1, order, remove), -float("inf"))


def _stop_string_hit(tokenizer, tokens: torch.Tensor, stop: Sequence[str]) -> torch.Tensor:
    """Per row: does its completion so far contain a stop string (its newest token completed one)."""
    texts = tokenizer.batch_decode(tokens.tolist(), skip_special_tokens=True)
    return torch.tensor([any(s in text for s in stop) for text in texts], device=tokens.device)
