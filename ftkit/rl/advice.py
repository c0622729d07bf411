"""Plain-English warnings for the places RL users get lost, read from one step's metrics.

    python -c "from ftkit.rl.advice import advise; print(advise({'identical_groups': 1.0, 'reward_mean': 0.0}, True))"

Each rule looks at numbers the run logs anyway and returns (key, message); the trainer prints a
message the first time its key fires and then at most every `REPEAT_EVERY` steps, so a persistent
problem stays visible without flooding the log.
"""

from __future__ import annotations

from typing import Any

REPEAT_EVERY = 25


def advise(stats: dict[str, Any], compares_groups: bool) -> list[tuple[str, str]]:
    """The warnings that one step's metrics call for, as (key, message) pairs.

    `compares_groups`: the objective learns from differences within a group (GRPO, RLOO), so groups
    whose episodes all got the same reward teach it nothing."""
    out = []
    identical = stats.get("identical_groups")
    reward = stats.get("reward_mean")
    success = stats.get("success_rate")
    if identical is not None and identical >= 0.95 and compares_groups:
        if reward is not None and reward <= 1e-6:
            out.append(("all_zero", "every group has identical rewards (all 0): nothing to learn - make the task "
                                    "easier (or use a curriculum) or the group larger (rollout.num_generations)"))
        elif success is not None and success >= 0.99:
            out.append(("all_solved", "every group is solved by all its episodes: nothing left to learn at this "
                                      "difficulty - make the task harder or add a curriculum"))
        else:
            out.append(("identical", f"{identical:.0%} of groups have identical rewards and teach nothing - "
                                     "raise rollout.num_generations or rollout.temperature"))
    if stats.get("kl", 0.0) > 1.0:
        out.append(("kl", f"the policy has drifted far from the reference (KL {stats['kl']:.2f} per token): "
                          "lower train.learning_rate or raise train.beta"))
    if stats.get("clip_fraction", 0.0) > 0.2:
        out.append(("clip", f"{stats['clip_fraction']:.0%} of tokens hit the clip range: each update moves the "
                            "policy too far; lower train.learning_rate or train.num_iterations"))
    if stats.get("length_limit_fraction", 0.0) > 0.5:
        out.append(("length", f"{stats['length_limit_fraction']:.0%} of actions ran into "
                              "rollout.max_completion_length without ending: raise it, or the model has not "
                              "learned to stop"))
    if stats.get("masked_truncated_fraction", 0.0) > 0.5:
        out.append(("masked", f"{stats['masked_truncated_fraction']:.0%} of actions were cut by "
                              "rollout.max_completion_length and left out of the loss (train.mask_truncated_completions, "
                              "on with algo dapo): raise the limit, or set train.mask_truncated_completions=false"))
    if stats.get("padded_groups", 0) > 0:
        out.append(("padded", f"dynamic filtering found too few groups whose rewards differ in "
                              f"{stats.get('num_gen_batches', 0):.0f} generation batches ({stats['padded_groups']:.0f} "
                              "groups of equal rewards filled the step): raise rollout.max_num_gen_batches or "
                              "rollout.num_generations, or change the task's difficulty"))
    if stats.get("context_cut_fraction", 0.0) > 0.2:
        out.append(("context", f"{stats['context_cut_fraction']:.0%} of episodes ended early because the conversation "
                               "outgrew the model's context: lower gym.max_turns or use a model with a longer one"))
    entropy = stats.get("entropy")
    if entropy is not None and entropy < 0.02 and (identical is None or identical < 0.95):
        out.append(("entropy", f"entropy collapsed to {entropy:.3f}: the policy samples nearly the same tokens "
                               "every time and stops exploring; lower the learning rate or raise the temperature"))
    return out


# The sampler and the trainer run the same weights, so their log-probs should agree to rounding (about 1e-7 per
# token for Hugging Face generate on a CPU). A KL of 0.01 nats per token is 5 nats over a 500-token answer:
# the sampled answers are then noticeably unlikely under the trainer. Growth is measured against the median
# of the run's first SAMPLER_START steps, above a floor that keeps rounding noise from counting as growth.
SAMPLER_KL_LARGE = 0.01
SAMPLER_KL_GROWTH = 4.0
SAMPLER_KL_FLOOR = 2e-3
SAMPLER_START = 5


def sampler_mismatch(start: list[float], stats: dict[str, Any], top_p: float) -> str | None:
    """A warning when the engine's sampling distribution is far from the trainer's, or drifting away.

    `start` holds sampler_kl (`ftkit.rl.correction.Mismatch`) of the run's first steps; `stats` is this
    step's metrics, which carry importance_sampling_capped_fraction when a correction is on.
    """
    kl = stats.get("sampler_kl")
    if kl is None:
        return None
    baseline = sorted(start)[len(start) // 2] if len(start) >= SAMPLER_START else None
    grown = baseline is not None and kl >= SAMPLER_KL_FLOOR and kl >= SAMPLER_KL_GROWTH * max(baseline, 0.0)
    if kl < SAMPLER_KL_LARGE and not grown:
        return None
    trend = f", up from {baseline:.4f} at the start" if grown else ""
    capped = stats.get("importance_sampling_capped_fraction")
    fixes = [f"rollout.top_p {top_p:g} truncates what the engine samples from, which the trainer does not"] \
        if top_p < 1 else []
    fixes.append("turn on rollout.importance_sampling: tis to correct the gradient for it" if capped is None else
                 f"rollout.importance_sampling is correcting for it ({capped:.1%} of tokens over the cap)")
    lag = stats.get("async_lag")
    if lag:  # asynchronous rollouts: the sampler's weights are `lag` updates old, so they differ by design
        fixes.append(f"the batch was sampled by the policy of {lag} update(s) ago (rollout.async_steps): a smaller "
                     "train.learning_rate or fewer async_steps brings the two closer")
    else:
        fixes.append("check that the engine and the trainer compute in the same precision (bf16 against fp32 is "
                     "the usual cause), and lower train.learning_rate if it keeps growing")
    return (f"the engine that samples and the trainer disagree about the policy's probabilities (KL {kl:.4f} per "
            f"token, log-probs {stats['sampler_logprob_diff_mean']:.3f} apart on average{trend}): the update learns "
            "from another model's samples, which can quietly destabilise training. " + "; ".join(fixes))


def accuracy_drop(history: list[float], latest: float, points: float = 0.10) -> str | None:
    """A warning when held-out accuracy fell `points` below its best so far."""
    if history and max(history) - latest >= points:
        return (f"held-out accuracy fell from its best {max(history):.1%} to {latest:.1%}: the learning rate may "
                "be too high; earlier checkpoints are in checkpoints/")
    return None
