"""Sampler-trainer consistency: how far the engine's sampling log-probs are from the trainer's, and the
importance weights that correct the policy gradient for the difference.

    python -c "import torch; from ftkit.rl.correction import importance_weights; print(importance_weights(torch.log(torch.tensor([[0.5, 0.9]])), torch.log(torch.tensor([[0.1, 0.9]])), 'tis', 3.0))"

The tokens of a rollout are sampled by the generation engine (vLLM, or Hugging Face `generate`), but
the loss is written for the trainer's own distribution. With asynchronous rollouts
(`rollout.async_steps`, `ftkit/rl/async_rollout.py`) the sampler is also a policy some updates old, and
the same weights correct for that lag. The two are the same model and should agree
exactly; in practice they differ a little (vLLM's bf16 kernels against the trainer's, fp32 sampling
against bf16 autocast training, a top_p that truncates the sampler's distribution), and "on-policy"
RL silently becomes off-policy (Yao et al. 2025, "Your efficient RL framework secretly brings you
off-policy RL training"). Two corrections weight each token's policy-gradient term by the ratio
rho = pi_trainer_old(token) / pi_sampler(token), detached, with a cap C:

- "tis", truncated importance sampling (Yao et al. 2025): weight min(rho, C). Tokens the sampler
  over-samples count less; the cap bounds the variance an unlucky token could add.
- "mis", masked importance sampling (TRL's "token_mask"; IcePop): weight rho, or 0 when rho > C, so a
  token the sampler drew far more often than the trainer would have gives no gradient at all.

`pi_trainer_old` is the trainer's probability before the update (PPO's "old" policy); the PPO ratio
pi_theta / pi_old then carries the rest of the way to the policy being trained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

Mode = Literal["none", "tis", "mis"]
MODES = ("none", "tis", "mis")


def resolve_mode(setting: str, engine: str, async_steps: int = 0) -> Mode:
    """The correction a run uses: `auto` means "tis" when vLLM samples (its kernels differ from the
    trainer's) or when rollouts run ahead of training (`async_steps` > 0: the sampler's policy is up to
    that many updates old), and "none" otherwise (Hugging Face `generate` runs the training model itself:
    on a CPU its log-probs equal the trainer's to about 1e-7). `engine` is the resolved engine, "hf" or
    "vllm"."""
    if setting == "auto":
        return "tis" if engine == "vllm" or async_steps > 0 else "none"
    if setting not in MODES:
        raise ValueError(f"importance_sampling must be auto or one of {', '.join(MODES)}; got {setting!r}")
    return setting  # type: ignore[return-value]


def log_ratio(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor) -> torch.Tensor:
    """log rho = log pi_trainer - log pi_sampler per token; 0 where the sampler gave no log-prob (NaN: an
    engine asked without them), so that such a token is neither corrected nor counted as a mismatch."""
    diff = trainer_logprobs.detach().float() - sampler_logprobs.float()
    return torch.nan_to_num(diff, nan=0.0)


def importance_weights(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mode: Mode,
                       cap: float) -> torch.Tensor | None:
    """Each token's weight on its policy-gradient term (detached), or None for mode "none".

        rho = [0.5/0.1, 0.9/0.9] = [5, 1]  ->  tis, cap 3: [3, 1];  mis, cap 3: [0, 1]
    """
    if mode == "none":
        return None
    ratio = torch.exp(log_ratio(trainer_logprobs, sampler_logprobs))
    if mode == "tis":
        return ratio.clamp(max=cap)
    if mode == "mis":
        return torch.where(ratio > cap, torch.zeros_like(ratio), ratio)
    raise ValueError(f"importance sampling mode must be one of {', '.join(MODES)}; got {mode!r}")


class Mismatch:
    """Running sums of the sampler-trainer mismatch over the policy tokens of one update.

        m = Mismatch(cap=3.0); m.add(trainer_logprobs, sampler_logprobs, mask); m.stats()

    `stats()` gives, over every token added whose sampler log-prob is known:
    sampler_logprob_diff_mean and _max, the mean and largest |log pi_trainer - log pi_sampler|; and
    sampler_kl, the mean of log pi_sampler - log pi_trainer, an unbiased estimate of
    KL(sampler || trainer) per token (k1: k3 would be biased where top_p leaves tokens the sampler
    cannot draw; k1 is noisier and may dip just below 0 when the two agree); and
    importance_sampling_capped_fraction, the share of tokens whose ratio exceeds the cap (truncated
    under tis, masked under mis).
    """

    def __init__(self, cap: float):
        self.cap = cap
        self.sums = torch.zeros(4, dtype=torch.float64)  # sum |diff|, sum (sampler - trainer), capped, tokens
        self.max = torch.zeros((), dtype=torch.float64)

    def add(self, trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor) -> None:
        known = mask.bool() & ~torch.isnan(sampler_logprobs)
        diff = log_ratio(trainer_logprobs, sampler_logprobs)[known].double().cpu()
        if diff.numel() == 0:
            return
        capped = (diff > torch.log(torch.tensor(self.cap, dtype=torch.float64))).sum()
        self.sums += torch.stack([diff.abs().sum(), -diff.sum(), capped.double(), torch.tensor(float(diff.numel()),
                                                                                                dtype=torch.float64)])
        self.max = torch.maximum(self.max, diff.abs().max())

    def stats(self, sum_all: Callable[[torch.Tensor], torch.Tensor] | None = None,
              max_all: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """The figures over every process (`sum_all` and `max_all` reduce a tensor across them); {} when no
        token had a sampler log-prob, so that metrics.jsonl holds no made-up zeros."""
        sums, largest = self.sums, self.max
        if sum_all is not None:
            sums, largest = sum_all(sums), max_all(largest)
        tokens = float(sums[3])
        if tokens == 0:
            return {}
        return {"sampler_logprob_diff_mean": float(sums[0]) / tokens, "sampler_logprob_diff_max": float(largest),
                "sampler_kl": float(sums[1]) / tokens, "importance_sampling_capped_fraction": float(sums[2]) / tokens}
