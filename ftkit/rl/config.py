"""RL recipes: what to train, against which gym, with which algorithm, as typed YAML.

    ftkit rl recipes/grpo_arithmetic.yaml train.learning_rate=5e-5 rollout.group_size=16

The same conventions as SFT recipes (`ftkit/config.py`): unknown keys are one-line errors with a
did-you-mean, and `key.sub=value` overrides are merged in before validation. The model, LoRA and
quantisation sections are the SFT recipe's own, so a model folder behaves the same in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ftkit.config import (
    LoraSection,
    ModelConfig,
    QuantizationSection,
    Section,
    merge_overrides,
    read_recipe_dict,
    validate_section,
)
from ftkit.errors import ConfigError
from ftkit.rl import DEFAULT_MODEL


class GymSection(Section):
    id: str = Field(description="Gym id or short name (arithmetic, guess_number, rg:leg_counting...).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Arguments of the gym's constructor.")
    chat: bool = Field(False, description="Wrap observations and actions in the tokenizer's chat template.")
    system_prompt: str | None = Field(None, description="With chat: the first message of every episode.")
    max_turns: int | None = Field(None, gt=0, description="Cut multi-turn episodes after this many actions.")
    train_seed: int = Field(0, ge=0, description="Seed of the training problems (held-out ones are excluded).")

    @model_validator(mode="after")
    def _system_prompt_needs_chat(self) -> GymSection:
        if self.system_prompt is not None and not self.chat:
            raise ValueError("gym.system_prompt needs gym.chat: true (plain text has nowhere to put it)")
        return self


class RolloutSection(Section):
    prompts_per_step: int = Field(16, gt=0, description="Distinct problems per RL step.")
    group_size: int = Field(8, gt=0, description="Episodes played per problem (GRPO/RLOO compare within them).")
    max_new_tokens: int = Field(16, gt=0, description="Longest action the policy may write per turn.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (the loss uses the same one).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest set of this much mass.")
    stop: list[str] = Field(default_factory=list, description="An action ends at the first of these strings.")
    batch_size: int = Field(256, gt=0, description="Prompts per generate() call.")
    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="Who samples: vLLM (GPU, weights synced after each update) or Hugging Face generate."
    )
    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="vLLM: share of the GPU's memory its weights and KV cache may take."
    )
    format_reward_weight: float = Field(
        0.0, ge=0, description="Add this much of the gym's format_reward (well-formed answers) to the reward."
    )


class RLTrainSection(Section):
    steps: int = Field(100, gt=0, description="RL steps: each is one rollout batch and its updates.")
    time_limit_minutes: float | None = Field(
        None, gt=0, description="Also stop (and save, and evaluate) once training has run this long."
    )
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="Learning-rate decay.")
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps of linear warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    epochs: int = Field(1, gt=0, description="Passes over each rollout batch (PPO's 'epochs').")
    minibatch_size: int | None = Field(
        None, gt=0, description="Episodes per optimizer step; default the whole rollout batch (one step)."
    )
    micro_batch_size: int = Field(64, gt=0, description="Episodes per forward pass (gradient accumulation).")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the gradient's global norm to this.")
    clip_eps: float = Field(0.2, gt=0, lt=1, description="PPO clip range of the probability ratio.")
    loss_aggregation: Literal["token", "sequence"] = Field(
        "token", description="Average the loss over all policy tokens, or per sequence first (original GRPO)."
    )
    scale_rewards: bool = Field(True, description="GRPO: divide by the group's std (false: Dr. GRPO).")
    kl_coef: float = Field(0.0, ge=0, description="Weight of the KL to the reference model (0: no reference).")
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="KL estimator (k3: low variance, >= 0).")
    value_coef: float = Field(0.5, ge=0, description="PPO: weight of the value loss.")
    value_clip: float = Field(0.2, gt=0, description="PPO: clip range of the value update.")
    value_learning_rate: float | None = Field(None, gt=0, description="PPO: value head's learning rate.")
    gamma: float = Field(1.0, ge=0, le=1, description="PPO: discount per policy token.")
    lam: float = Field(0.95, ge=0, le=1, description="PPO: GAE lambda.")
    save_every: int = Field(50, gt=0, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept (older ones are deleted).")
    samples_per_step: int = Field(2, ge=0, description="Sample trajectories written to trajectories.jsonl.")


class CurriculumSection(Section):
    option: str = Field(description="The gym's reset option that sets difficulty (digits, max_number...).")
    levels: list[Any] = Field(min_length=1, description="Its values from easiest to hardest.")
    threshold: float = Field(0.8, gt=0, le=1, description="Move up when the success rate passes this.")
    window: int = Field(3, gt=0, description="...averaged over this many steps.")


class RewardModelSection(Section):
    path: str = Field(description="Reward model folder written by `ftkit rm` (a sequence-classification model).")
    weight: float = Field(1.0, description="The reward model's score is multiplied by this and added.")
    verifier_weight: float = Field(
        0.0, ge=0, description="Weight of the gym's own reward beside it (0: the reward model alone)."
    )


class RLEvalSection(Section):
    n: int = Field(200, ge=0, description="Held-out problems scored before, during and after training.")
    seed: int = Field(1, ge=0, description="Seed of the held-out problems.")
    every_steps: int | None = Field(None, gt=0, description="Also score every N steps (default steps // 5).")
    batch_size: int = Field(256, gt=0, description="Prompts per generate() call.")
    max_new_tokens: int | None = Field(None, gt=0, description="Longest answer; default rollout.max_new_tokens.")
    samples: int = Field(20, ge=0, description="Sample episodes written to samples.md.")


class RLRecipe(Section):
    """An RL recipe. Every field is documented once, here."""

    name: str = Field(description="Run name; the run folder defaults to runs/<name>.")
    output_dir: str | None = Field(None, description="Run folder (default runs/<name>).")
    algo: Literal["grpo", "rloo", "ppo"] = Field("grpo", description="How advantages are computed.")
    method: Literal["full", "lora", "qlora"] = Field("full", description="What trains: all weights or adapters.")
    seed: int = Field(0, ge=0, description="Seed of sampling, shuffling and the value head's init.")
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name=DEFAULT_MODEL))
    gym: GymSection
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    train: RLTrainSection = Field(default_factory=RLTrainSection)
    curriculum: CurriculumSection | None = Field(None, description="Raise difficulty as the policy improves.")
    reward_model: RewardModelSection | None = Field(
        None, description="Score episodes with a trained reward model (tasks without a verifier)."
    )
    eval: RLEvalSection = Field(default_factory=RLEvalSection)
    lora: LoraSection = Field(default_factory=LoraSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)

    @model_validator(mode="after")
    def _check(self) -> RLRecipe:
        if self.algo in ("grpo", "rloo") and self.rollout.group_size < 2:
            raise ValueError(f"{self.algo} compares episodes of the same problem: rollout.group_size must be >= 2")
        if self.gym.train_seed == self.eval.seed:
            raise ValueError("gym.train_seed and eval.seed must differ: held-out problems need a seed of their own")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    @property
    def episodes_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.rollout.group_size

    @property
    def eval_every(self) -> int:
        return self.eval.every_steps or max(1, self.train.steps // 5)


def load_rl_recipe(path: str | Path | None, overrides: list[str] | None = None,
                   base: dict[str, Any] | None = None) -> RLRecipe:
    """An RL recipe from a YAML file (or from `base`, a dict, for `ftkit rl --gym`), with overrides."""
    if path is not None:
        raw = read_recipe_dict(path, overrides)
    else:
        raw = merge_overrides(base or {}, overrides) if overrides else dict(base or {})
    if path is not None and "algo" not in raw and "data" in raw:
        raise ConfigError(f"{path} is an SFT recipe (it has `data:`): run it with `ftkit sft {path}`")
    return validate_section(raw, RLRecipe)
