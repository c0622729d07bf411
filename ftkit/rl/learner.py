"""What an RL run trains: the policy (all weights or LoRA adapters), PPO's value head, the frozen
reference, and the optimizer with its schedule, prepared by Accelerate.

    python -c "from ftkit.rl.learner import build_learner; help(build_learner)"

With LoRA the reference is the same model with its adapters disabled, so only full fine-tuning loads
a second copy, and only when the KL has a weight (`train.beta > 0`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ftkit.errors import TrainingError
from ftkit.model_config import hidden_size
from ftkit.models import count_parameters, load_model, lora_config
from ftkit.rl.distributed import prepare_reference, refuse_value_head
from ftkit.rl.objectives import Objective
from ftkit.rl.policy import ValueHead, disable_dropout

if TYPE_CHECKING:
    from ftkit.rl.config import RLRecipe, RLTrainSection


@dataclass
class Learner:
    """The trained pieces of a run, after `accelerator.prepare` (`model` may be wrapped for DDP, or be a
    DeepSpeed engine: `ftkit/rl/distributed.py`)."""

    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    minibatch: int  # episodes per optimizer step on this process
    value_head: Any = None  # PPO's critic (ValueHead), else None
    ref_model: Any = None  # full fine-tuning with beta > 0; LoRA disables its adapters instead
    parameters: dict[str, int] = field(default_factory=dict)  # trainable and total


def build_learner(recipe: RLRecipe, objective: Objective, accelerator, base_model: str,
                  checkpoint: Path | None = None) -> Learner:
    """Load the policy from `base_model` (or `checkpoint`, when resuming) and set up its training."""
    if objective.needs_value_head:
        refuse_value_head(accelerator)
    model, ref_model, value_head = _load_models(recipe, objective, base_model, checkpoint, accelerator.device)
    trainable, total = count_parameters(model)
    t = recipe.train
    per_process = episodes_per_process(recipe, accelerator.num_processes)
    minibatch = minibatch_size(recipe, accelerator.num_processes)
    optimizer_steps = t.max_steps * t.num_iterations * math.ceil(per_process / minibatch)
    optimizer, scheduler = _optimizer(t, model, value_head, optimizer_steps)
    # The schedule is not prepared: Accelerate's wrapper steps it once per process at every optimizer
    # step (it assumes a data loader that shrank with more processes), so two processes ran a linear
    # schedule and its warm-up twice as fast. Every process here takes the same optimizer steps.
    prepared = accelerator.prepare(model, optimizer, *([value_head] if value_head is not None else []))
    return Learner(model=prepared[0], optimizer=prepared[1], scheduler=scheduler, minibatch=minibatch,
                   value_head=prepared[2] if value_head is not None else None,
                   ref_model=prepare_reference(ref_model, accelerator),
                   parameters={"trainable": trainable, "total": total})


def episodes_per_process(recipe: RLRecipe, world: int) -> int:
    """Each process plays an equal share of the step's problems, every episode of a problem included."""
    prompts = recipe.rollout.prompts_per_step
    if prompts % world:
        raise TrainingError(f"rollout.prompts_per_step ({prompts}) must be a multiple of the number of "
                            f"processes ({world})")
    return prompts // world * recipe.rollout.num_generations


def minibatch_size(recipe: RLRecipe, world: int) -> int:
    """Episodes per optimizer step on each process: train.minibatch_size, at most the process's share."""
    per_process = episodes_per_process(recipe, world)
    return min(recipe.train.minibatch_size or per_process, per_process)


def _load_models(recipe: RLRecipe, objective: Objective, base_model: str, checkpoint: Path | None, device):
    """(policy, reference or None, value head or None), the policy's dropout off."""
    r = recipe
    full = r.method == "full"
    weights = str(checkpoint / "model") if checkpoint is not None and full else base_model
    model = load_model(weights, r.model, r.method, r.quantization)
    ref_model = None
    if full and objective.needs_reference:  # LoRA's reference is the same model with its adapters disabled
        ref_model = load_model(base_model, r.model, "full").eval().requires_grad_(False)
        ref_model.to(device)
    if not full:
        model = _add_adapters(r, model, checkpoint)
    disable_dropout(model)
    torch.manual_seed(r.seed)
    value_head = ValueHead(hidden_size(model.config)) if objective.needs_value_head else None  # text_config's
    if value_head is not None and checkpoint is not None:
        from safetensors.torch import load_file

        value_head.load_state_dict(load_file(checkpoint / "value_head.safetensors"))
    return model, ref_model, value_head


def _add_adapters(recipe: RLRecipe, model, checkpoint: Path | None):
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if recipe.method == "qlora":
        # load_model already kept its 4-bit layers off bitsandbytes' CPU inference kernel
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if checkpoint is not None:
        return PeftModel.from_pretrained(model, checkpoint / "adapter", is_trainable=True)
    return get_peft_model(model, lora_config(recipe.lora))


def _optimizer(t: RLTrainSection, model, value_head, optimizer_steps: int):
    """AdamW over the trainable weights (the value head at its own learning rate) and its schedule."""
    from transformers import get_scheduler

    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": t.learning_rate}]
    if value_head is not None:
        groups.append({"params": list(value_head.parameters()), "lr": t.value_learning_rate or t.learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=t.weight_decay)
    scheduler = get_scheduler(t.lr_scheduler_type, optimizer, num_warmup_steps=t.warmup_steps,
                              num_training_steps=optimizer_steps)
    return optimizer, scheduler
