"""RL recipe keys have TRL's GRPOConfig names where they mean what a GRPOConfig field means (DESIGN.md, 9).

`ftkit.rl.trl_names.TRL_NAMES` maps every key of the RL recipe to its GRPOConfig field, or to None with
the reason ftkit has a key of its own; these tests hold the table, the schema and TRL in step.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from trl import GRPOConfig

from ftkit.config import EvalConfig
from ftkit.errors import ConfigError
from ftkit.rl.config import LOSS_TYPES, RENAMED_KEYS, RLEvalSection, RLTrainSection, load_rl_recipe
from ftkit.rl.trl_names import TRL_NAMES, rl_recipe_keys, trl_names_markdown

GRPO_FIELDS = {f.name: f for f in dataclasses.fields(GRPOConfig)}
# Other spellings of GRPOConfig's concepts (ftkit's former names among them): no RL key may use one.
SYNONYMS = {"steps", "num_steps", "total_steps", "save_every", "save_interval", "lr_schedule", "scheduler",
            "group_size", "num_samples", "samples_per_prompt", "clip_eps", "clip_range", "cliprange", "kl_coef",
            "kl_coeff", "init_kl_coef", "epochs", "ppo_epochs", "num_ppo_epochs", "max_new_tokens", "max_tokens",
            "response_length", "loss_aggregation", "micro_batch_size", "gpu_memory_utilization", "lr"}


def test_every_recipe_key_is_in_the_table_and_nothing_else():
    assert sorted(rl_recipe_keys()) == sorted(TRL_NAMES)


@pytest.mark.parametrize("key", sorted(k for k, v in TRL_NAMES.items() if v.trl is not None))
def test_a_key_with_a_trl_counterpart_has_its_name(key):
    trl = TRL_NAMES[key].trl
    assert trl in GRPO_FIELDS, f"{key}: {trl} is not a field of GRPOConfig"
    assert key.split(".")[-1] == trl, f"{key} means GRPOConfig's {trl}: name it so"


@pytest.mark.parametrize("key", sorted(k for k, v in TRL_NAMES.items() if v.trl is None))
def test_a_key_of_ftkits_own_says_why_and_is_no_synonym_of_trls(key):
    assert len(TRL_NAMES[key].why) > 10, f"{key}: say why it has no GRPOConfig counterpart"
    if key.startswith("eval."):
        return  # the SFT recipes' eval keys (next test), held-out gym scoring that TRL does not have
    assert key.split(".")[-1] not in SYNONYMS, f"{key} spells a GRPOConfig concept differently"


def test_the_eval_section_uses_the_sft_recipes_keys():
    assert set(RLEvalSection.model_fields) <= set(EvalConfig.model_fields)


def test_values_are_trls_where_the_key_is():
    from transformers import SchedulerType

    def choices(name):
        return typing.get_args(RLTrainSection.model_fields[name].annotation)

    assert set(choices("lr_scheduler_type")) <= {s.value for s in SchedulerType}
    assert set(choices("loss_type")) == set(LOSS_TYPES)
    for name in ("loss_type", "scale_rewards", "importance_sampling_level"):  # each one GRPOConfig's help lists
        for value in choices(name):
            assert f"{value}'" in GRPO_FIELDS[name].metadata["help"], (name, value)


def test_the_sampler_correction_maps_onto_trls_vllm_importance_sampling():
    from ftkit.rl.config import RolloutSection

    assert "vllm_importance_sampling_correction" in GRPO_FIELDS
    modes = GRPO_FIELDS["vllm_importance_sampling_mode"].metadata["help"]
    for ours, trls in {"tis": "token_truncate", "mis": "token_mask"}.items():
        assert f"'{trls}'" in modes
        assert f'{ours} is its "{trls}"' in TRL_NAMES["rollout.importance_sampling"].why
    cap = GRPO_FIELDS["vllm_importance_sampling_clip_max"]
    assert RolloutSection.model_fields["importance_sampling_cap"].default == cap.default
    assert cap.name in TRL_NAMES["rollout.importance_sampling_cap"].why


def base_recipe() -> dict:
    return {"name": "t", "gym": {"id": "arithmetic"}, "rollout": {}, "train": {}}


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED_KEYS.items()))
def test_a_former_key_is_one_line_naming_the_new_one(old, new):
    assert TRL_NAMES[new].trl == new.split(".")[-1]  # renamed to TRL's name, and the table says so
    with pytest.raises(ConfigError) as caught:
        load_rl_recipe(None, base=base_recipe(), overrides=[f"{old}=1"])
    message = str(caught.value)
    assert message.startswith(f'recipe key "{old}" is now "{new}" (TRL\'s GRPOConfig name)') and "\n" not in message


def test_loss_aggregation_error_maps_its_values():
    with pytest.raises(ConfigError, match='"token" is "dapo", "sequence" is "grpo"'):
        load_rl_recipe(None, base=base_recipe(), overrides=["train.loss_aggregation=token"])


def test_the_readme_table_has_a_row_per_key():
    table = trl_names_markdown().splitlines()
    assert table[0] == "| ftkit RL key | TRL GRPOConfig key | meaning |"
    assert len(table) == 2 + len(TRL_NAMES)
    assert "| `train.beta` | `beta` |" in trl_names_markdown()
