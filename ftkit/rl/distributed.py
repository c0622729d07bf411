"""ftkit's own RL loop under Accelerate and DeepSpeed: the run's Accelerator, the DeepSpeed config's "auto"
values filled from the recipe, and the whole weights of a ZeRO-3 policy where the bare model is used.

    accelerate launch --config_file recipes/accelerate/zero2_cpu_1proc.yaml -m ftkit rl recipes/grpo_arithmetic.yaml

The launch configs in recipes/accelerate/ leave `gradient_accumulation_steps` and `gradient_clipping` to
"auto", and DeepSpeed wants its micro-batch too. TRL's trainers fill those from their own arguments; the
RL loop is ftkit's (`ftkit/rl/update.py`), so `deepspeed_values` fills them from the RL recipe, and the
update marks the last micro-batch of each optimizer step as DeepSpeed's accumulation boundary, where the
engine clips and steps (`Update._backward`): the optimizer steps exactly where it does in a plain run.

Under ZeRO-3 each process holds a shard of every weight, which the engine gathers layer by layer inside its
forward. Sampling, evaluation and saving use the bare model, so `whole_weights` gathers all of them for
the length of a block (every process must enter it: the gathering is collective).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from ftkit.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from ftkit.rl.config import RLRecipe

# Where each value `deepspeed_values` fills comes from in the recipe: named by the error when a DeepSpeed
# config sets another value.
RECIPE_KEYS = {
    "train_micro_batch_size_per_gpu": "train.per_device_train_batch_size",
    "gradient_accumulation_steps": "train.minibatch_size and train.per_device_train_batch_size",
    "train_batch_size": "train.minibatch_size and train.per_device_train_batch_size",
    "gradient_clipping": "train.max_grad_norm",
}


def accelerator_options(recipe: RLRecipe) -> dict[str, Any]:
    """The layout arguments of the run's `Accelerator`: `cpu`, and under a DeepSpeed launch config its
    plugin with the "auto" values filled from `recipe`, and the accumulation that goes with it."""
    from accelerate.utils import DeepSpeedPlugin, GradientAccumulationPlugin

    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        # On a CPU, `cpu=True` is what makes launched processes a gloo group (MULTI_CPU).
        return {"cpu": not torch.cuda.is_available()}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.cuda.is_available():
        # Accelerate gives a CPU process under DeepSpeed no backend, so every process would call itself
        # process 0 of 1 and write the same run folder.
        raise ConfigError(f"DeepSpeed with {world} processes on a CPU: Accelerate runs DeepSpeed in one CPU "
                          "process only; use recipes/accelerate/zero2_cpu_1proc.yaml (or zero3_cpu_1proc.yaml), "
                          "or --multi_gpu --num_processes N for several CPU processes")
    plugin = DeepSpeedPlugin()  # the launch config, as `accelerate launch` hands it over (environment variables)
    values = deepspeed_values(recipe, world)
    fill_auto(plugin.deepspeed_config, values)
    plugin.gradient_accumulation_steps = values["gradient_accumulation_steps"]
    plugin.gradient_clipping = values["gradient_clipping"]
    # Given no accumulation plugin, Accelerator reads ACCELERATE_GRADIENT_ACCUMULATION_STEPS with int(),
    # which fails on the launch config's "auto"; the value must also be DeepSpeed's, or Accelerate warns.
    # cpu=False: with cpu=True Accelerate would quietly leave DeepSpeed out (the device is still the CPU).
    return {"cpu": False, "deepspeed_plugin": plugin,
            "gradient_accumulation_plugin": GradientAccumulationPlugin(num_steps=values["gradient_accumulation_steps"])}


def deepspeed_values(recipe: RLRecipe, world: int) -> dict[str, Any]:
    """What ftkit's update (`Update._optimizer_step`) does, in DeepSpeed's words, for `world` processes.

    One optimizer step takes a minibatch of episodes on each process, in forward passes (micro-batches)
    of per_device_train_batch_size whose gradients accumulate, each one's loss already divided by the
    whole minibatch's size; then the gradient is clipped to max_grad_norm and the optimizer steps once.
    """
    from ftkit.rl.learner import minibatch_size

    minibatch = minibatch_size(recipe, world)
    micro = min(recipe.train.per_device_train_batch_size, minibatch)
    accumulation = math.ceil(minibatch / micro)
    return {
        # DeepSpeed's micro-batch is ftkit's forward pass.
        "train_micro_batch_size_per_gpu": micro,
        # Micro-batches per optimizer step, at most: where the update skips rows of zero advantage it runs
        # fewer, and it marks each step's last one as the boundary itself. The engine's own division of
        # each loss by this count is turned off (`scale_wrt_gas=False`): ftkit's losses are already means.
        "gradient_accumulation_steps": accumulation,
        "train_batch_size": micro * accumulation * world,  # DeepSpeed checks micro x accumulation x processes
        # The engine clips inside its step, where a plain run calls clip_grad_norm_.
        "gradient_clipping": recipe.train.max_grad_norm,
    }


def fill_auto(config: dict[str, Any], values: dict[str, Any]) -> None:
    """Put `values` into a DeepSpeed `config` where it says "auto" or nothing; where it sets a value of its
    own, that value must agree (a one-line error says which key and how to fix it)."""
    for key, value in values.items():
        given = config.get(key, "auto")
        if given == "auto":
            config[key] = value
        elif float(given) != float(value):
            raise ConfigError(f"the DeepSpeed config sets {key}: {given}, but ftkit rl's update uses {value} "
                              f"(from {RECIPE_KEYS[key]}): set {key}: auto in the launch config (or its "
                              "DeepSpeed config file) to take the recipe's value")
    for block in ("optimizer", "scheduler"):
        if block in config:
            raise ConfigError(f"the DeepSpeed config has an '{block}' section, but ftkit rl makes its own AdamW "
                              f"and schedule from the recipe's train section: remove '{block}' from the DeepSpeed config")


def zero_stage(accelerator) -> int | None:
    """The DeepSpeed ZeRO stage the run trains under; None without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return None if plugin is None else plugin.zero_stage


def refuse_value_head(accelerator) -> None:
    """PPO's value head is a second trained module beside the policy, and Accelerate gives a DeepSpeed
    engine one: under DeepSpeed it would silently wrap the head alone."""
    if zero_stage(accelerator) is not None:
        raise TrainingError("algo ppo under DeepSpeed: Accelerate wraps one trained model per DeepSpeed engine, "
                            "and PPO trains a value head beside the policy; launch PPO without a DeepSpeed config "
                            "(one process, or --multi_gpu), or use a critic-free algo (grpo, rloo, dapo, gspo, "
                            "reinforce_plus_plus)")


def prepare_reference(ref_model, accelerator):
    """The frozen reference model, ready for its forward passes. Under ZeRO-3 transformers loaded it in
    shards, like the policy (`zero.Init`), so it gets an inference engine of its own that gathers them at
    each forward (TRL's `prepare_deepspeed`); otherwise it is a plain copy on the device."""
    if ref_model is None or zero_stage(accelerator) != 3:
        return ref_model
    from trl.models import prepare_deepspeed

    return prepare_deepspeed(ref_model, accelerator)


@contextmanager
def whole_weights(accelerator, model) -> Iterator[Any]:
    """`model` bare (no Accelerate or DeepSpeed wrapper), with every weight whole inside the block.

    Under ZeRO-3 every process gathers all the shards (a collective: every process must enter, even one
    that then does nothing), and the engine's gathering hooks are off until the block ends, as TRL's
    `unwrap_model_for_generation` does for its rollouts. Elsewhere the weights are whole already.
    """
    if zero_stage(accelerator) != 3:
        yield accelerator.unwrap_model(model)
        return
    from trl.models import unwrap_model_for_generation

    with unwrap_model_for_generation(model, accelerator) as bare:
        yield bare
