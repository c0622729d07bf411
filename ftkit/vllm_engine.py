"""The vLLM generation engine, and the choice between it and the Hugging Face one.

    python -c "from ftkit.vllm_engine import engine_status; print(engine_status())"

vLLM (Kwon et al. 2023) batches sampling with paged attention on a GPU: for RL, most of the time is
rollouts, and vLLM makes them several times faster than `model.generate`. It is an optional extra
(`pip install 'ftkit[vllm]'`) and needs a CUDA GPU, so everything else in ftkit runs without it.

`VLLMEngine` implements the same `generate` / `sync_weights` interface as `ftkit.engine.HFEngine`.
In RL it is *colocated*: it lives in the training process on the same GPU, holding its own copy of
the weights in `gpu_memory_utilization` of the GPU's memory, and after each policy update
`sync_weights(model)` copies the new weights into it (for LoRA, the adapters are merged into the
copy first), as TRL's GRPOTrainer does in its colocate mode.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ftkit.chat import stop_token_ids
from ftkit.engine import Completion, HFEngine, Prompt, SamplingParams
from ftkit.errors import EngineError

ENGINES = ("auto", "hf", "vllm")


def engine_status() -> dict[str, Any]:
    """What decides the engine: is vLLM installed, is there a CUDA GPU, and what `auto` picks."""
    import torch

    installed = importlib.util.find_spec("vllm") is not None
    gpu = torch.cuda.is_available()
    return {"vllm_installed": installed, "cuda": gpu, "auto": "vllm" if installed and gpu else "hf"}


def resolve_engine(name: str) -> str:
    """`auto` -> "vllm" when it is installed and a GPU is present, else "hf"; asking for vLLM where it
    cannot run is an `EngineError` that says why."""
    if name not in ENGINES:
        raise EngineError(f"engine must be one of {', '.join(ENGINES)}; got {name!r}")
    status = engine_status()
    if name == "auto":
        return status["auto"]
    if name == "vllm":
        if not status["vllm_installed"]:
            raise EngineError("engine vllm: vLLM is not installed (pip install 'ftkit[vllm]', on a machine with "
                              "a CUDA GPU); engine: auto uses the Hugging Face engine instead")
        if not status["cuda"]:
            raise EngineError("engine vllm: no CUDA GPU is visible, and vLLM needs one; "
                              "engine: auto (or hf) runs on this machine")
    return name


def make_engine(name: str, model, tokenizer, *, batch_size: int = 256, model_path: str | None = None,
                gpu_memory_utilization: float = 0.3, max_model_len: int | None = None, seed: int = 0):
    """The engine `name` (auto, hf or vllm) for `model`: RL, evaluation and collection all call this."""
    if resolve_engine(name) == "hf":
        return HFEngine(model, tokenizer, batch_size=batch_size)
    return VLLMEngine(model_path or model.name_or_path, tokenizer, gpu_memory_utilization=gpu_memory_utilization,
                      max_model_len=max_model_len, seed=seed, stop_ids=stop_token_ids(tokenizer, model))


class VLLMEngine:
    """Sampling with vLLM: `VLLMEngine("runs/gpt2_math/model", tokenizer).generate(prompts, SamplingParams())`."""

    def __init__(self, model_path: str, tokenizer, *, gpu_memory_utilization: float = 0.3,
                 max_model_len: int | None = None, seed: int = 0, enable_lora: bool = False,
                 stop_ids: list[int] | None = None):
        from vllm import LLM

        if not 0 < gpu_memory_utilization <= 1:
            raise EngineError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        self.tokenizer = tokenizer
        # Every token that ends an answer (`ftkit.chat.stop_token_ids`), as HFEngine stops: vLLM alone
        # would stop at the tokenizer's eos and the generation config's, not at a chat template's end of turn.
        self.stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer)
        self.llm = LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       seed=seed, enable_lora=enable_lora, dtype="auto",
                       # the log-probs vLLM returns are then those of the distribution sampled from
                       # (after temperature and top-p), like HFEngine's
                       logprobs_mode="processed_logprobs")

    def sync_weights(self, model) -> None:
        """Copy the policy's current weights into vLLM's copy (LoRA adapters merged in first)."""
        weights = _merged_state(model)
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(weights.items())
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        from vllm import SamplingParams as VSamplingParams

        encoded = [self.encode(p) for p in prompts]  # the same rendering and tokenization as HFEngine
        greedy = params.temperature == 0
        sampling = VSamplingParams(max_tokens=params.max_new_tokens, temperature=params.temperature,
                                   top_p=1.0 if greedy else params.top_p, stop=list(params.stop) or None,
                                   stop_token_ids=self.stop_ids, seed=params.seed,
                                   logprobs=0 if params.logprobs else None, include_stop_str_in_output=False)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], sampling, use_tqdm=False)
        completions = []
        for prompt, ids, out in zip(prompts, encoded, outputs):
            sample = out.outputs[0]
            tokens = list(sample.token_ids)
            logprobs = ([entry[token].logprob for entry, token in zip(sample.logprobs, tokens)]
                        if params.logprobs and sample.logprobs else [float("nan")] * len(tokens))
            # vLLM's stop_reason: None for its own eos, the token id for a stop token, the string for a stop string
            reason = {"stop": "stop" if isinstance(sample.stop_reason, str) else "eos", "length": "length"}.get(
                sample.finish_reason, sample.finish_reason)
            completions.append(Completion(prompt, ids, sample.text, tokens, logprobs, reason))
        return completions

    # HFEngine's prompt rendering, shared so both engines see prompts identically.
    render = HFEngine.render
    encode = HFEngine.encode


def _merged_state(model) -> dict[str, Any]:
    """The full weights as vLLM names them: LoRA merged into its base layers, peft's prefixes removed."""
    if hasattr(model, "merge_adapter") and hasattr(model, "unmerge_adapter"):  # a peft model
        model.merge_adapter()
        try:
            state = {_vllm_name(k): v.detach().clone() for k, v in model.state_dict().items()
                     if "lora_" not in k and "modules_to_save" not in k}
        finally:
            model.unmerge_adapter()
        return state
    return {k: v.detach() for k, v in model.state_dict().items()}


def _vllm_name(name: str) -> str:
    """peft's `base_model.model.transformer.h.0.attn.c_attn.base_layer.weight` -> `transformer.h.0.attn.c_attn.weight`."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")
