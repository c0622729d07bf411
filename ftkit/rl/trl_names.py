"""Every RL recipe key beside its TRL GRPOConfig name, or why ftkit has a key of its own: the README's table.

    python -c "from ftkit.rl.trl_names import trl_names_markdown; print(trl_names_markdown())"

tests/test_rl_trl_names.py holds this table, the recipe schema (ftkit/rl/config.py) and TRL in step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ftkit.config import Section
from ftkit.rl.config import RLRecipe


class TrlName(NamedTuple):
    """A recipe key's counterpart in TRL's GRPOConfig (`trl`), or None and `why` ftkit has its own key.

    For a mapped key, `why` notes where ftkit's meaning differs in detail (empty: it does not)."""

    trl: str | None
    why: str = ""


_EVAL = "held-out gym scoring, as in SFT recipes' eval section (TRL's eval_* fields run a loss on an eval dataset)"
_PPO = "PPO's value head; GRPOConfig has none"
_SFT = "the SFT recipes' own section (ftkit/config.py), so a model folder loads the same in both"

TRL_NAMES: dict[str, TrlName] = {
    "name": TrlName(None, "names the run folder (runs/<name>) as in SFT recipes; TRL's run_name only labels logs"),
    "output_dir": TrlName("output_dir"),
    "algo": TrlName(None, "TRL's GRPOTrainer is GRPO only (DAPO and GSPO are its loss_type, epsilon_high and "
                          "importance_sampling_level); ftkit also has RLOO, PPO and REINFORCE++ (veRL's names)"),
    "method": TrlName(None, "full, LoRA or QLoRA as in SFT recipes; TRL takes a peft_config object"),
    "seed": TrlName("seed"),
    "report_to": TrlName("report_to", "ftkit rl logs what metrics.jsonl holds, at its steps, through Accelerate's "
                                      "trackers; the names are those both TRL and Accelerate know"),
    "model": TrlName(None, _SFT),
    "lora": TrlName(None, _SFT),
    "quantization": TrlName(None, _SFT),
    "gym.id": TrlName(None, "TRL trains on a prompt dataset with reward functions; ftkit plays a gym"),
    "gym.kwargs": TrlName(None, "TRL has no environment to configure"),
    "gym.chat": TrlName(None, "TRL decides from the dataset's format (conversational or not)"),
    "gym.system_prompt": TrlName(None, "TRL reads a system message from each dataset row"),
    "gym.max_turns": TrlName(None, "environment turns; TRL's max_tool_calling_iterations counts tool calls"),
    "gym.train_seed": TrlName(None, "the seed stream of training problems; TRL shuffles a fixed dataset"),
    "rollout.prompts_per_step": TrlName(
        None, "TRL counts completions: its generation_batch_size is prompts_per_step x num_generations over all "
              "processes; ftkit counts problems so that every group is whole"),
    "rollout.num_generations": TrlName("num_generations"),
    "rollout.max_completion_length": TrlName(
        "max_completion_length", "TRL's bounds a whole completion, tool calls included"),
    "rollout.temperature": TrlName("temperature"),
    "rollout.top_p": TrlName("top_p"),
    "rollout.stop": TrlName(None, "TRL passes stop strings inside generation_kwargs"),
    "rollout.batch_size": TrlName(None, "a memory knob of the generation engine; TRL samples a generation batch at once"),
    "rollout.engine": TrlName(None, "TRL's use_vllm is on or off; ftkit's auto picks vLLM where it can run"),
    "rollout.vllm_gpu_memory_utilization": TrlName("vllm_gpu_memory_utilization"),
    "rollout.importance_sampling": TrlName(
        None, "TRL's vllm_importance_sampling_correction (on or off) and vllm_importance_sampling_mode in one key: "
              'tis is its "token_truncate" and mis is its "token_mask" (no sequence-level modes here); auto is on '
              "for vLLM as TRL's default is, and ftkit can also correct Hugging Face sampling, hence no vllm_ prefix"),
    "rollout.importance_sampling_cap": TrlName(
        None, "TRL's vllm_importance_sampling_clip_max (formerly vllm_importance_sampling_cap), with the same "
              "default; no vllm_ prefix as it applies to either engine, and no lower bound (TRL's clip_min)"),
    "rollout.async_steps": TrlName(
        None, "GRPOConfig is synchronous; TRL's experimental AsyncGRPOConfig bounds the same lag with max_staleness, "
              "dropping older samples, where ftkit plays each batch on a fixed schedule and drops none"),
    "rollout.format_reward_weight": TrlName(
        None, "the weight of the gym's own format reward; TRL weighs reward functions with reward_weights"),
    "rollout.dynamic_filtering": TrlName(
        None, "TRL has no dynamic sampling; the name is OpenRLHF's --dynamic_filtering (veRL: "
              "algorithm.filter_groups.enable)"),
    "rollout.max_num_gen_batches": TrlName(
        None, "TRL has no dynamic sampling; the name is veRL's (algorithm.filter_groups.max_num_gen_batches, whose "
              "batches are all of one size and where 0 means no cap; here further draws are as large as needed)"),
    "rollout.replay_unsolved": TrlName(
        None, "TRL has no problem replay: it walks its dataset in order (Kimi k1.5 calls this prioritized sampling)"),
    "rollout.replay_limit": TrlName(None, "TRL has no problem replay"),
    "rollout.overlong_buffer_len": TrlName(
        None, "GRPOConfig has no overlong shaping: TRL offers it as a reward function, "
              "get_soft_overlong_punishment(max_completion_len, soft_punish_cache); the name is OpenRLHF's and veRL's"),
    "rollout.overlong_penalty_factor": TrlName(
        None, "OpenRLHF's and veRL's name; TRL's reward function has none (its reward_weights entry scales it)"),
    "train.max_steps": TrlName("max_steps", "counts RL steps (rollouts); TRL counts optimizer steps, the same "
                                            "when each rollout makes one update (the default)"),
    "train.time_limit_minutes": TrlName(None, "TRL has no wall-clock limit"),
    "train.learning_rate": TrlName("learning_rate"),
    "train.lr_scheduler_type": TrlName("lr_scheduler_type"),
    "train.warmup_steps": TrlName("warmup_steps"),
    "train.weight_decay": TrlName("weight_decay", "applied to every trainable weight; TRL's Trainer exempts "
                                                  "biases and norms"),
    "train.num_iterations": TrlName("num_iterations"),
    "train.minibatch_size": TrlName(
        None, "episodes per optimizer step on each process; TRL's is per_device_train_batch_size x "
              "gradient_accumulation_steps, here it is set directly (default: the whole rollout batch)"),
    "train.per_device_train_batch_size": TrlName(
        "per_device_train_batch_size", "a memory knob only: gradients accumulate up to minibatch_size, so the "
                                       "update does not depend on it"),
    "train.max_grad_norm": TrlName("max_grad_norm"),
    "train.epsilon": TrlName("epsilon"),
    "train.epsilon_high": TrlName("epsilon_high"),
    "train.importance_sampling_level": TrlName("importance_sampling_level"),
    "train.advantage_level": TrlName(None, "TRL's completion is one answer, so its advantages are per completion; "
                                           "a multi-turn episode here has turns to credit apart"),
    "train.mask_truncated_completions": TrlName(
        "mask_truncated_completions", "in a multi-turn episode only the actions that were cut are left out (TRL's "
                                      "completion is the whole episode)"),
    "train.loss_type": TrlName("loss_type", 'ftkit implements "dapo" and "grpo"'),
    "train.scale_rewards": TrlName("scale_rewards", "RLOO ignores it: its baseline is never divided by a std"),
    "train.beta": TrlName("beta", "GRPO and RLOO add beta x KL to the loss as TRL does; PPO subtracts it from "
                                  "the per-token reward (InstructGPT)"),
    "train.kl_estimator": TrlName(None, "TRL always uses k3"),
    "train.value_coef": TrlName(None, f"{_PPO} (TRL's experimental PPOConfig calls it vf_coef)"),
    "train.value_clip": TrlName(None, f"{_PPO} (TRL's experimental PPOConfig calls it cliprange_value)"),
    "train.value_learning_rate": TrlName(None, f"{_PPO}, so no learning rate of its own"),
    "train.gamma": TrlName(None, "GRPOConfig has no discount: GRPO's reward is the episode's (the same name in TRL's "
                                 "experimental PPOConfig)"),
    "train.lam": TrlName(None, f"{_PPO} (the same name in TRL's experimental PPOConfig)"),
    "train.save_steps": TrlName("save_steps", "counts RL steps, like max_steps"),
    "train.save_total_limit": TrlName("save_total_limit"),
    "train.samples_per_step": TrlName(None, "trajectories kept in trajectories.jsonl; TRL's log_completions "
                                            "prints a table"),
    "curriculum.option": TrlName(None, "TRL has no curriculum"),
    "curriculum.levels": TrlName(None, "TRL has no curriculum"),
    "curriculum.threshold": TrlName(None, "TRL has no curriculum"),
    "curriculum.window": TrlName(None, "TRL has no curriculum"),
    "reward_model.path": TrlName(None, "TRL takes reward models as reward_funcs"),
    "reward_model.weight": TrlName(None, "TRL weighs reward functions with reward_weights, a list"),
    "reward_model.verifier_weight": TrlName(None, "TRL weighs reward functions with reward_weights, a list"),
    "eval.n": TrlName(None, _EVAL),
    "eval.seed": TrlName(None, _EVAL),
    "eval.every_steps": TrlName(None, _EVAL),
    "eval.batch_size": TrlName(None, _EVAL),
    "eval.max_new_tokens": TrlName(None, _EVAL),
    "eval.samples": TrlName(None, _EVAL),
}

# Sections whose keys are the SFT recipes' (one entry each in TRL_NAMES), not the RL recipe's own.
_SHARED_SECTIONS = {"model", "lora", "quantization"}


def rl_recipe_keys() -> dict[str, str]:
    """Every key of the RL recipe as "section.key" (shared SFT sections as one key), with its description."""
    keys = {}
    for name, field in RLRecipe.model_fields.items():
        section = _section_type(field.annotation)
        if section is None or name in _SHARED_SECTIONS:
            keys[name] = field.description or ""
            continue
        for sub, sub_field in section.model_fields.items():
            keys[f"{name}.{sub}"] = sub_field.description or ""
    return keys


def _section_type(annotation: Any) -> type[Section] | None:
    import typing

    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def trl_names_markdown() -> str:
    """The README's table: each RL recipe key, its TRL GRPOConfig name, and what it means."""
    rows = ["| ftkit RL key | TRL GRPOConfig key | meaning |", "| --- | --- | --- |"]
    for key, description in rl_recipe_keys().items():
        name = TRL_NAMES[key]
        if name.trl is None:
            meaning = f"{description} ftkit's own: {name.why}."
        else:
            meaning = f"{description} Note: {name.why}." if name.why else description
        rows.append(f"| `{key}` | {f'`{name.trl}`' if name.trl else '—'} | {meaning.strip()} |")
    return "\n".join(rows) + "\n"
