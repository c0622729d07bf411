"""A GRPO run whose rollouts do not depend on the process layout, for the multi-process test.

    python tests/distributed/grpo_run.py OUT
    accelerate launch --multi_gpu --num_processes 2 tests/distributed/grpo_run.py OUT

Hugging Face `generate` draws from one random stream per call, so two processes sampling half the
prompts each can never reproduce one process sampling all of them. This script swaps in an engine whose
answer depends only on the prompt and the episode's place in its group; everything else (the update,
gradient all-reduce, metric reduction, checkpoints, the main-process-only run folder) is the real code.
"""

from __future__ import annotations

import re
import sys
import zlib

from ftkit.engine import Completion, HFEngine

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


def main(out: str) -> None:
    from ftkit.rl import trainer
    from ftkit.rl.config import load_rl_recipe

    HFEngine.generate = deterministic_generate
    recipe = load_rl_recipe(None, base={
        "name": "dist", "output_dir": out, "algo": "grpo", "seed": 0, "model": {"name": "scratch:tiny"},
        "gym": {"id": "arithmetic", "kwargs": {"digits": 2}},
        "rollout": {"prompts_per_step": 4, "num_generations": GROUP_SIZE, "max_completion_length": 4},
        "train": {"max_steps": 3, "learning_rate": 1e-3, "per_device_train_batch_size": 8, "save_steps": 100},
        "eval": {"n": 0}})
    trainer.main(recipe, overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1])
