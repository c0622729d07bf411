"""RL recipes: what to train, against which gym, with which algorithm, as typed YAML.

    ftkit rl recipes/grpo_arithmetic.yaml train.learning_rate=5e-5 rollout.num_generations=16

The same conventions as SFT recipes (`ftkit/config.py`): unknown keys are one-line errors with a
did-you-mean, and `key.sub=value` overrides are merged in before validation. The model, LoRA and
quantisation sections are the SFT recipe's own, so a model folder behaves the same in both.

A key that means what a field of TRL's `GRPOConfig` means has that field's name (`max_steps`,
`num_generations`, `beta`, `epsilon`, `loss_type`...), so a TRL user reads an RL recipe without a
dictionary. `TRL_NAMES` (ftkit/rl/trl_names.py) says, for every key, its GRPOConfig counterpart or why
it is ftkit's own (tests/test_rl_trl_names.py holds the two in step); the keys' former ftkit names are
one-line errors that name the new key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ftkit.config import (
    REPORT_TO_HELP,
    GymSection,
    LoraSection,
    ModelConfig,
    QuantizationSection,
    ReportTo,
    Section,
    merge_overrides,
    read_recipe_dict,
    reject_moved_keys,
    validate_section,
)
from ftkit.errors import ConfigError
from ftkit.rl import DEFAULT_MODEL


class RolloutSection(Section):
    prompts_per_step: int = Field(16, gt=0, description="Distinct problems per RL step.")
    num_generations: int = Field(
        8, gt=0, description="Episodes played per problem (a group: GRPO/RLOO compare within it)."
    )
    max_completion_length: int = Field(
        16, gt=0, description="Longest action the policy may write (per turn in a multi-turn gym)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (the loss uses the same one).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest set of this much mass.")
    stop: list[str] = Field(default_factory=list, description="An action ends at the first of these strings.")
    batch_size: int = Field(256, gt=0, description="Prompts per generate() call.")
    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="Who samples: vLLM (GPU, weights synced after each update) or Hugging Face generate."
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="vLLM: share of the GPU's memory its weights and KV cache may take."
    )
    importance_sampling: Literal["auto", "none", "tis", "mis"] = Field(
        "auto", description="Correct the policy gradient for the engine's sampling log-probs differing from the "
                            "trainer's (ftkit/rl/correction.py): tis weights each token by min(ratio, cap), mis "
                            "drops tokens whose ratio is over the cap; auto is tis with vLLM, none with Hugging Face "
                            "generate (the training model itself)."
    )
    importance_sampling_cap: float = Field(
        3.0, ge=1, description="The cap on a token's trainer/sampler probability ratio (TRL's default, 3)."
    )
    async_steps: int = Field(
        0, ge=0, description="Play the batches of the next N steps in a background thread while a step trains, "
                             "from a policy at most N updates old (logged as async_lag; importance_sampling auto "
                             "is then tis); 0: play each step's batch, then train on it."
    )
    format_reward_weight: float = Field(
        0.0, ge=0, description="Add this much of the gym's format_reward (well-formed answers) to the reward."
    )
    dynamic_filtering: bool = Field(
        False, description="DAPO's dynamic sampling: train only on groups whose rewards differ, drawing more "
                           "problems until there are prompts_per_step of them."
    )
    max_num_gen_batches: int = Field(
        4, gt=0, description="Dynamic filtering: a step plays at most this many times prompts_per_step problems; "
                             "then groups of equal rewards fill the rest."
    )
    replay_unsolved: float = Field(
        0.0, ge=0, le=1, description="Play again, as this share of each step's problems, earlier problems that not "
                                     "every sample solved, newest first (ftkit/rl/replay.py); 0: every problem fresh."
    )
    replay_limit: int = Field(
        2, gt=0, description="replay_unsolved: times one problem is played again, at most."
    )
    overlong_buffer_len: int = Field(
        0, ge=0, description="DAPO's soft overlong punishment: an action longer than max_completion_length minus "
                             "this loses up to overlong_penalty_factor, linearly (0: off)."
    )
    overlong_penalty_factor: float = Field(
        1.0, gt=0, description="The overlong punishment of an action max_completion_length tokens long."
    )


# TRL's loss_type values that ftkit implements, and the aggregation each means (`algorithms.aggregate`).
LOSS_TYPES = {"dapo": "token", "grpo": "sequence"}


class RLTrainSection(Section):
    max_steps: int = Field(100, gt=0, description="RL steps: each is one rollout batch and its updates.")
    time_limit_minutes: float | None = Field(
        None, gt=0, description="Also stop (and save, and evaluate) once training has run this long."
    )
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    lr_scheduler_type: Literal["constant_with_warmup", "constant", "linear", "cosine"] = Field(
        "constant_with_warmup", description="Learning-rate schedule after the warm-up (transformers' names)."
    )
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps of linear warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    num_iterations: int = Field(1, gt=0, description="Passes over each rollout batch (PPO's 'epochs', GRPO's mu).")
    minibatch_size: int | None = Field(
        None, gt=0, description="Episodes per optimizer step; default the whole rollout batch (one step)."
    )
    per_device_train_batch_size: int = Field(
        64, gt=0, description="Episodes per forward pass on each process (gradients accumulate over a minibatch)."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the gradient's global norm to this.")
    epsilon: float = Field(0.2, gt=0, lt=1, description="PPO clip range of the probability ratio.")
    epsilon_high: float | None = Field(
        None, gt=0, description="Upper clip range (DAPO's clip-higher: 0.28); default epsilon."
    )
    importance_sampling_level: Literal["token", "sequence"] = Field(
        "token", description='"token": one probability ratio per token; "sequence": one per episode, the geometric '
                             "mean of its tokens' (GSPO), clipped as a whole."
    )
    advantage_level: Literal["episode", "turn"] = Field(
        "episode", description='GRPO, DAPO, GSPO: "episode": every token of an episode gets its advantage; "turn": each '
                               "turn's tokens get the turn's own, from the rewards of that turn and the later ones, "
                               "against the same turn of its group's other episodes (multi-turn gyms)."
    )
    mask_truncated_completions: bool = Field(
        False, description="Leave out of the loss every action cut by max_completion_length (DAPO's overlong "
                           "filtering); its episode's reward still counts in its group."
    )
    loss_type: Literal["dapo", "grpo"] = Field(
        "dapo", description='"dapo": the loss averaged over every policy token of the minibatch; "grpo": '
                            "over each sequence's tokens first, then over sequences (the original GRPO)."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description='GRPO: divide advantages by the std of the group, of the whole batch, or "none" '
                             "(Dr. GRPO); true and false mean group and none."
    )
    beta: float = Field(0.0, ge=0, description="Weight of the KL to the reference model (0: no reference).")
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="KL estimator (k3: low variance, >= 0).")
    value_coef: float = Field(0.5, ge=0, description="PPO: weight of the value loss.")
    value_clip: float = Field(0.2, gt=0, description="PPO: clip range of the value update.")
    value_learning_rate: float | None = Field(None, gt=0, description="PPO: value head's learning rate.")
    gamma: float = Field(1.0, ge=0, le=1, description="PPO and REINFORCE++: discount per policy token.")
    lam: float = Field(0.95, ge=0, le=1, description="PPO: GAE lambda.")
    save_steps: int = Field(50, gt=0, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept (older ones are deleted).")
    samples_per_step: int = Field(2, ge=0, description="Sample trajectories written to trajectories.jsonl.")

    @field_validator("scale_rewards", mode="before")
    @classmethod
    def _booleans_as_trl_does(cls, value: Any) -> Any:
        return {True: "group", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _constant_has_no_warmup(self) -> RLTrainSection:
        if self.lr_scheduler_type == "constant" and self.warmup_steps:
            raise ValueError('train.lr_scheduler_type "constant" ignores warmup_steps (as in transformers and '
                             'TRL): use "constant_with_warmup"')
        return self

    @model_validator(mode="after")
    def _clip_higher_is_not_lower(self) -> RLTrainSection:
        # Clip-higher widens the upper clip range; below epsilon it would clip improving tokens sooner
        # than the lower range clips worsening ones, the opposite of what DAPO's key is for.
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(f"train.epsilon_high ({self.epsilon_high:g}) is below train.epsilon ({self.epsilon:g}): "
                             "it widens the upper clip range (DAPO: 0.28 with epsilon 0.2), so it must be at least "
                             "epsilon")
        return self


class CurriculumSection(Section):
    option: str = Field(description="The gym's reset option that sets difficulty (digits, max_number...).")
    levels: list[Any] = Field(min_length=1, description="Its values from easiest to hardest.")
    threshold: float = Field(0.8, gt=0, le=1, description="Move up when the success rate passes this.")
    window: int = Field(3, gt=0, description="...averaged over this many steps.")


class RewardModelSection(Section):
    path: str = Field(description="Reward model folder written by `ftkit rm` (either reward_head).")
    weight: float = Field(1.0, description="The reward model's score is multiplied by this and added.")
    verifier_weight: float = Field(
        0.0, ge=0, description="Weight of the gym's own reward beside it (0: the reward model alone)."
    )


class RLEvalSection(Section):
    n: int = Field(200, ge=0, description="Held-out problems scored before, during and after training.")
    seed: int = Field(1, ge=0, description="Seed of the held-out problems.")
    every_steps: int | None = Field(None, gt=0, description="Also score every N steps (default max_steps // 5).")
    batch_size: int = Field(256, gt=0, description="Prompts per generate() call.")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Longest answer; default rollout.max_completion_length."
    )
    samples: int = Field(20, ge=0, description="Sample episodes written to samples.md.")


# The algorithms (`algo`); those that compare the episodes of one problem need num_generations >= 2.
Algo = Literal["grpo", "rloo", "ppo", "dapo", "gspo", "reinforce_plus_plus", "reinforce_plus_plus_baseline"]
GROUP_ALGOS = ("grpo", "rloo", "dapo", "gspo", "reinforce_plus_plus_baseline")
TURN_LEVEL_ALGOS = ("grpo", "dapo", "gspo")  # train.advantage_level "turn": GRPO's advantages, turn by turn

# DAPO and GSPO are GRPO with their papers' settings: `algo: dapo` and `algo: gspo` set these keys where a
# recipe leaves them out (each key also works on its own, with any algo). Keys grouped in one dict are set
# together or not at all: a recipe that sets epsilon keeps epsilon_high = epsilon, as in TRL.
ALGO_DEFAULTS: dict[str, dict[str, list[dict[str, Any]]]] = {
    # Yu et al. 2025: clip-higher, dynamic sampling, overlong filtering (the token-level loss is the default)
    "dapo": {"train": [{"epsilon": 0.2, "epsilon_high": 0.28}, {"mask_truncated_completions": True}],
             "rollout": [{"dynamic_filtering": True}]},
    # Zheng et al. 2025: a sequence's ratio stays close to 1, hence clip ranges of 3e-4 and 4e-4; the loss is a
    # mean over sequences (TRL's advice for GSPO: a token mean would weigh each sequence by its length)
    "gspo": {"train": [{"importance_sampling_level": "sequence"}, {"loss_type": "grpo"},
                       {"epsilon": 3e-4, "epsilon_high": 4e-4}]},
}
# What an algo is: a recipe that sets these keys otherwise is asking for another algo.
ALGO_REQUIRES = {"dapo": ("train", "loss_type", "dapo"), "gspo": ("train", "importance_sampling_level", "sequence")}


class RLRecipe(Section):
    """An RL recipe. Every field is documented once, here."""

    name: str = Field(description="Run name; the run folder defaults to runs/<name>.")
    output_dir: str | None = Field(None, description="Run folder (default runs/<name>).")
    algo: Algo = Field(
        "grpo", description="How advantages are computed (dapo and gspo: GRPO with their papers' settings)."
    )
    method: Literal["full", "lora", "qlora"] = Field("full", description="What trains: all weights or adapters.")
    seed: int = Field(0, ge=0, description="Seed of sampling, shuffling and the value head's init.")
    report_to: ReportTo = Field(default_factory=list, description=REPORT_TO_HELP)
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

    @model_validator(mode="before")
    @classmethod
    def _algo_defaults(cls, data: Any) -> Any:
        """Fill in what `algo: dapo` / `algo: gspo` mean, under whatever keys the recipe set itself."""
        if not isinstance(data, dict) or data.get("algo") not in ALGO_DEFAULTS:
            return data
        data = dict(data)
        for section, groups in ALGO_DEFAULTS[data["algo"]].items():
            given = data.get(section)
            if given is not None and not isinstance(given, dict):
                continue  # not a mapping: the section's own validation says so
            filled = dict(given or {})
            for group in groups:
                if not filled.keys() & group.keys():
                    filled.update(group)
            data[section] = filled
        return data

    @model_validator(mode="after")
    def _check(self) -> RLRecipe:
        ro = self.rollout
        if self.algo in GROUP_ALGOS and ro.num_generations < 2:
            raise ValueError(f"{self.algo} compares episodes of the same problem: rollout.num_generations "
                             "must be >= 2")
        if self.gym.train_seed == self.eval.seed:
            raise ValueError("gym.train_seed and eval.seed must differ: held-out problems need a seed of their own")
        if self.algo in ALGO_REQUIRES:
            section, key, value = ALGO_REQUIRES[self.algo]
            given = getattr(getattr(self, section), key)
            if given != value:
                raise ValueError(f'algo {self.algo} is GRPO with {section}.{key} "{value}" (got "{given}"): for '
                                 f'{key} "{given}" with the rest of {self.algo}\'s settings, use algo grpo')
        if self.train.advantage_level == "turn" and self.algo not in TURN_LEVEL_ALGOS:
            why = ("it already credits each token with the rewards from it on" if self.algo in ("ppo", "reinforce_plus_plus")
                   else "use algo grpo")
            raise ValueError(f'train.advantage_level "turn" is for algo {", ".join(TURN_LEVEL_ALGOS)}, not {self.algo}: '
                             f"{why}")
        _check_rollout_options(ro)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")

    @property
    def episodes_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.rollout.num_generations

    @property
    def eval_every(self) -> int:
        return self.eval.every_steps or max(1, self.train.max_steps // 5)


def _check_rollout_options(ro: RolloutSection) -> None:
    if ro.dynamic_filtering and ro.num_generations < 2:
        raise ValueError("rollout.dynamic_filtering drops groups whose rewards are all equal, which every group "
                         "of one episode is: set rollout.num_generations >= 2")
    if "replay_limit" in ro.model_fields_set and not ro.replay_unsolved:
        raise ValueError("rollout.replay_limit counts how often an unsolved problem is played again: set "
                         "rollout.replay_unsolved (the share of each step's problems played again) above 0")
    if "max_num_gen_batches" in ro.model_fields_set and not ro.dynamic_filtering:
        raise ValueError("rollout.max_num_gen_batches only counts dynamic filtering's draws: set "
                         "rollout.dynamic_filtering: true (or algo: dapo)")
    if ro.overlong_buffer_len >= ro.max_completion_length:
        raise ValueError(f"rollout.overlong_buffer_len ({ro.overlong_buffer_len}) must be less than "
                         f"rollout.max_completion_length ({ro.max_completion_length}): the penalty starts that "
                         "many tokens before the limit")
    if "overlong_penalty_factor" in ro.model_fields_set and not ro.overlong_buffer_len:
        raise ValueError("rollout.overlong_penalty_factor needs rollout.overlong_buffer_len > 0 (the tokens "
                         "before max_completion_length where the penalty grows)")


def load_rl_recipe(path: str | Path | None, overrides: list[str] | None = None,
                   base: dict[str, Any] | None = None) -> RLRecipe:
    """An RL recipe from a YAML file (or from `base`, a dict, for `ftkit rl --gym`), with overrides."""
    if path is not None:
        raw = read_recipe_dict(path, overrides)
    else:
        raw = merge_overrides(base or {}, overrides) if overrides else dict(base or {})
    if path is not None and "algo" not in raw and ("data" in raw or "kind" in raw):
        kind = raw.get("kind", "sft")
        label = {"sft": "an SFT", "dpo": "a DPO", "rm": "a reward-model"}.get(kind, f"a {kind}")
        raise ConfigError(f"{path} is {label} recipe (it has `{'kind' if 'kind' in raw else 'data'}:`): "
                          f"run it with `ftkit {kind} {path}`")
    reject_moved_keys(raw, RENAMED_KEYS, "TRL's GRPOConfig name", _RENAME_NOTES)
    return validate_section(raw, RLRecipe)


# ftkit's former names of keys that now have TRL's GRPOConfig names.
RENAMED_KEYS = {
    "rollout.group_size": "rollout.num_generations", "rollout.max_new_tokens": "rollout.max_completion_length",
    "rollout.gpu_memory_utilization": "rollout.vllm_gpu_memory_utilization",
    "train.steps": "train.max_steps", "train.save_every": "train.save_steps",
    "train.lr_schedule": "train.lr_scheduler_type", "train.epochs": "train.num_iterations",
    "train.micro_batch_size": "train.per_device_train_batch_size",
    "train.clip_eps": "train.epsilon", "train.kl_coef": "train.beta", "train.loss_aggregation": "train.loss_type",
}
_RENAME_NOTES = {"train.loss_aggregation": '; "token" is "dapo", "sequence" is "grpo"'}
