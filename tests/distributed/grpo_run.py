"""A GRPO run whose rollouts do not depend on the process layout, for the multi-process test.

    python tests/distributed/grpo_run.py OUT
    accelerate launch --multi_gpu --num_processes 2 tests/distributed/grpo_run.py OUT
    accelerate launch --multi_gpu --num_processes 2 tests/distributed/grpo_run.py OUT --kill-in-step 3
    accelerate launch --multi_gpu --num_processes 2 tests/distributed/grpo_run.py OUT --resume
    accelerate launch --config_file recipes/accelerate/zero3_cpu_1proc.yaml tests/distributed/grpo_run.py OUT eval.n=4

Hugging Face `generate` draws from one random stream per call, so two processes sampling half the
prompts each can never reproduce one process sampling all of them. This script gives the rollouts an
engine whose answer depends only on the prompt and the episode's place in its group; everything else (the
update, gradient all-reduce, metric reduction, checkpoints, the main-process-only run folder, and with
`eval.n=N` greedy held-out evaluation of N problems after every step) is the real code. Words with `=`
override recipe keys, as on ftkit's command line.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import types
import zlib

from ftkit.engine import Completion

GROUP_SIZE = 4


def deterministic_generate(self, prompts, params):
    """Episode k of a group answers right when (crc(prompt) + k) % 3 == 0, else one too high."""
    completions = []
    for position, prompt in enumerate(prompts):
        ids = self.encode(prompt)
        a, b = map(int, re.findall(r"[0-9]+", self.render(prompt))[:2])
        right = (zlib.crc32(self.render(prompt).encode()) + position % GROUP_SIZE) % 3 == 0
        text = str(a + b if right else a + b + 1)
        tokens = self.tokenizer(text)["input_ids"] + [self.tokenizer.eos_token_id]
        completions.append(Completion(prompt, ids, text, tokens, [0.0] * len(tokens), "eos"))
    return completions


def deterministic_rollouts() -> None:
    """The run's rollout engine answers with `deterministic_generate`; evaluation samples for real."""
    import ftkit.vllm_engine

    make_engine = ftkit.vllm_engine.make_engine

    def make(*args, **kwargs):
        engine = make_engine(*args, **kwargs)
        engine.generate = types.MethodType(deterministic_generate, engine)
        return engine

    ftkit.vllm_engine.make_engine = make


def kill_after_the_optimizer_step(step: int) -> None:
    """SIGKILL every process right after its optimizer step of `step` (1-based): the weights in memory
    have moved past the last checkpoint, and nothing of the step is logged or saved."""
    from ftkit.rl.update import Update

    original = Update._apply

    def apply_then_die(self, sums, index):
        result = original(self, sums, index)
        if index + 1 == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Update._apply = apply_then_die


def main(out: str, *options: str) -> None:
    from ftkit.rl import trainer
    from ftkit.rl.config import load_rl_recipe

    deterministic_rollouts()
    if "--kill-in-step" in options:
        kill_after_the_optimizer_step(int(options[options.index("--kill-in-step") + 1]))
    overrides = [o for o in options if "=" in o]  # recipe keys, as on ftkit's command line
    recipe = load_rl_recipe(None, overrides, base={
        "name": "dist", "output_dir": out, "algo": "grpo", "seed": 0, "model": {"name": "scratch:tiny"},
        "gym": {"id": "arithmetic", "kwargs": {"digits": 2}},
        "rollout": {"prompts_per_step": 4, "num_generations": GROUP_SIZE, "max_completion_length": 4},
        # A decaying schedule with warm-up: each process must step it once per optimizer step.
        "train": {"max_steps": 3, "learning_rate": 1e-3, "per_device_train_batch_size": 8, "save_steps": 2,
                  "lr_scheduler_type": "linear", "warmup_steps": 1},
        "eval": {"n": 0, "every_steps": 1, "max_new_tokens": 4, "samples": 4}})
    resume = "--resume" in options
    trainer.main(recipe, resume=resume, overwrite=not resume)


if __name__ == "__main__":
    main(*sys.argv[1:])
