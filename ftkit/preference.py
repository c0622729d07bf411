"""Training on preference pairs: DPO (TRL's DPOTrainer) and reward models (TRL's RewardTrainer).

    ftkit dpo recipes/dpo_arithmetic.yaml     # the policy itself learns to prefer chosen over rejected
    ftkit rm recipes/rm_arithmetic.yaml       # a sequence-classification model learns to score them

Both read folders written by `ftkit collect pairs` (or `label`): rows with `prompt`, `chosen` and
`rejected`. They run exactly like `ftkit sft` (the same recipe sections, run folder, checkpoints,
`--resume`, full / LoRA / QLoRA), so each class below only changes what differs: the data, the TRL
trainer, and how the result is scored. A reward model's score is a new linear head on the last token
(`reward_head: linear`) or the model's own log-likelihood of the text (`reward_head: likelihood`). DPO is scored like SFT, by held-out accuracy on the recipe's gym
(or `eval.gym`); a reward model by how often it ranks a held-out pair's chosen answer above its rejected
one.
"""

from __future__ import annotations

from typing import Any

from ftkit.config import Recipe
from ftkit.errors import DataError
from ftkit.evaluate import EvalResult, heldout_problems
from ftkit.runs import write_json_atomic
from ftkit.sft import SFTRun, _eval_task

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def main(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run a DPO or reward-model recipe end to end; returns the summary (also written to summary.json).

        ftkit dpo recipes/dpo_arithmetic.yaml        # or: ftkit rm recipes/rm_arithmetic.yaml

        summary = ftkit.preference.main(load_recipe("recipes/dpo_arithmetic.yaml", kind="dpo"))
    """
    run = {"dpo": DPORun, "rm": RewardModelRun}[recipe.kind]
    return run(recipe, resume=resume, overwrite=overwrite).run()


def load_pairs(path: str, split: str = "train") -> list[dict[str, Any]]:
    """prompt/chosen/rejected rows from a collected folder or a file; errors name the row."""
    from data_tools.store import read_rows

    rows = read_rows(path, split)
    if not rows:
        raise DataError(f"{path}: no preference pairs (the dataset is empty)")
    for i, row in enumerate(rows):
        missing = [c for c in PAIR_COLUMNS if row.get(c) is None]  # an empty answer is a fine rejected one
        if missing:
            raise DataError(f"{path} row {i}: missing {', '.join(missing)} (a preference pair needs prompt, "
                            f"chosen and rejected; `ftkit collect pairs` writes them)")
    return [{c: row[c] for c in PAIR_COLUMNS} for row in rows]


def _has_split(path: str | None, split: str) -> bool:
    from pathlib import Path

    return bool(path) and any((Path(path) / "data").glob(f"{split}-*.parquet"))


class PairsRun(SFTRun):
    """What DPO and reward-model runs share: prompt/chosen/rejected rows, from `data.path`, with the
    folder's validation split (or `data.eval_path`) as held-out pairs. TRL formats the pairs itself."""

    def __init__(self, recipe, **kwargs):
        super().__init__(recipe, **kwargs)
        self.train_rows: list[dict[str, Any]] = []  # prompt/chosen/rejected, as read
        self.eval_rows: list[dict[str, Any]] = []

    def _setup_data(self) -> None:
        from datasets import Dataset

        data = self.recipe.data
        if data.path is None:
            raise DataError(f"a {self.recipe.kind} recipe needs data.path: a preference folder from "
                            "`ftkit collect pairs`")
        self.train_rows = load_pairs(data.path)
        self.train_dataset = Dataset.from_list(self.train_rows)
        self.train_prompts = {r["prompt"] for r in self.train_rows if isinstance(r["prompt"], str)}
        eval_path = data.eval_path or (data.path if _has_split(data.path, "validation") else None)
        self.eval_rows = load_pairs(eval_path, "train" if data.eval_path else "validation") if eval_path else []
        self.eval_dataset = Dataset.from_list(self.eval_rows) if self.eval_rows else None
        self.eval_gym, self.heldout = None, []


class DPORun(PairsRun):
    """Direct Preference Optimization (Rafailov et al. 2023): the policy's log-ratio to a frozen
    reference is pushed up on chosen answers and down on rejected ones; with LoRA the reference is the
    base model with adapters disabled (TRL's doing), so there is no second model in memory."""

    def _setup_data(self) -> None:
        super()._setup_data()
        self.eval_gym = _eval_task(self.recipe)
        if self.eval_gym and self.recipe.eval.n > 0:
            self.heldout = heldout_problems(self.eval_gym, self.recipe.eval.n, self.recipe.eval.seed,
                                            exclude_prompts=self.train_prompts)

    def _announce(self) -> None:
        super()._announce()
        if not self.heldout:
            self.console.print("no gym: accuracy is not measured (set gym, or eval.gym, to score the policy on a gym)")


class RewardModelRun(PairsRun):
    """A reward model trained with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) by TRL's
    RewardTrainer. `reward_head: linear`: r is a new one-number head on the causal LM's body
    (`AutoModelForSequenceClassification`, num_labels=1). `reward_head: likelihood`: r is the LM's own
    log-likelihood of the text (`as_likelihood_reward_model`), so the loss is CPO's preference term."""

    accuracy_label = "pairwise accuracy (chosen scored above rejected)"

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.peft_config is not None:
            # SEQ_CLS keeps the new score head trainable beside the adapters; a likelihood model has none
            self.peft_config.task_type = "CAUSAL_LM" if self.recipe.reward_head == "likelihood" else "SEQ_CLS"

    def _load_model(self):
        if self.recipe.reward_head == "likelihood":
            return as_likelihood_reward_model(super()._load_model())
        return load_reward_model(self.resolved.path, self.recipe.model, self.recipe.method, self.recipe.quantization,
                                 pad_token_id=self.tokenizer.pad_token_id)

    def _announce(self) -> None:
        super()._announce()
        where = f"{len(self.eval_rows):,} held-out pairs" if self.eval_rows else "the training pairs (no held-out split)"
        self.console.print(f"scored by pairwise accuracy on {where}")

    def evaluate(self) -> EvalResult | None:
        """Pairwise accuracy: the share of pairs whose chosen answer scores above the rejected one."""
        rows = self.eval_rows or self.train_rows
        scorer = RewardScorer(self.trainer.model, self.tokenizer)
        chosen = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
        rejected = scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
        correct = sum(c > r for c, r in zip(chosen, rejected))
        result = EvalResult(gym="pairs", n=len(rows), correct=correct)
        result.samples = [{"prompt": _shown(r["prompt"]), "completion": f"chosen {c:.3f} vs rejected {j:.3f}",
                           "answer": _shown(r["chosen"]), "reward": c, "solved": c > j}
                          for r, c, j in list(zip(rows, chosen, rejected))[: self.recipe.eval.samples]]
        write_json_atomic(self.run_dir / "eval.json", result.to_dict())
        self.metrics.append({"step": self.trainer.state.global_step, "pairwise_accuracy": result.accuracy})
        return result


def load_reward_model(path: str, cfg, method: str, quant=None, *, pad_token_id: int | None = None):
    """A sequence-classification model with one output (the reward) from a causal-LM or reward-model folder."""
    from ftkit.models import load_model

    model = load_model(path, cfg, method, quant, auto_class="AutoModelForSequenceClassification", num_labels=1)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id  # GPT-2 has none; the head reads the last non-pad token
    return model


LIKELIHOOD_MARK = "ftkit_reward_head"  # in config.json: "likelihood" for a model scored by `as_likelihood_reward_model`


def as_likelihood_reward_model(model):
    """Make a causal LM a reward model whose score is its own log-likelihood of the text; returns the model.

    Why: a new head on the last token must learn to *check* an answer from one bit per pair, while the
    body already knows, token by token, how likely each answer is. On the arithmetic pairs a linear head
    stayed near 55-61% pairwise accuracy after 1-3 epochs even on a body whose own likelihood ranked 91.6%
    of them right; scored by likelihood and trained on the same pairs it passes 90% in one epoch.

    The forward pass returns `logits` (B, 1): the sum of log p(token | the tokens before it) over the
    attended tokens after the first (`sequence_logprob`), which is what RewardTrainer's Bradley-Terry loss
    and `RewardScorer` read. The prompt's share is the same for a pair's chosen and rejected texts (and
    for the episodes of one RL group), so it cancels in what either compares. Marked in the config so
    `RewardScorer.load` scores the saved folder the same way.
    """
    from transformers.modeling_outputs import SequenceClassifierOutput

    lm_forward = model.forward

    def forward(input_ids=None, attention_mask=None, labels=None, **kwargs):
        kwargs["use_cache"] = False
        logits = lm_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        if attention_mask is None:
            attention_mask = input_ids.new_ones(input_ids.shape)
        return SequenceClassifierOutput(logits=sequence_logprob(logits, input_ids, attention_mask).unsqueeze(-1))

    model.forward = forward
    model.config.num_labels = 1  # one score per text, which RewardTrainer checks
    setattr(model.config, LIKELIHOOD_MARK, "likelihood")
    return model


def sequence_logprob(logits, input_ids, attention_mask):
    """(B,) sum of log p(input_ids[t] | input_ids[:t]) over the positions t >= 1 where t and t - 1 are attended.

    Counting a token only when the one before it is attended leaves out each row's first token, whose
    context is nothing (right padding) or padding (left padding): either padding gives the same score.
    """
    import torch

    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    counted = (attention_mask[:, 1:] * attention_mask[:, :-1]).to(token_logp.dtype)
    return (token_logp * counted).sum(dim=1)


class RewardScorer:
    """Score (prompt, completion) pairs with a reward model: `RewardScorer.load(dir).score(prompts, completions)`.

    A pair is scored on the ids TRL's RewardTrainer trains on, so scores at use match scores in training:
    text is the prompt followed by the completion and the end-of-text token, tokenized with the
    tokenizer's special tokens; chat messages (TRL's conversational format: a prompt of messages, an
    answer of assistant messages) are the chat template's rendering of the whole conversation.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @classmethod
    def load(cls, folder: str) -> RewardScorer:
        from pathlib import Path

        from ftkit.config import ModelConfig
        from ftkit.models import load_tokenizer

        if not Path(folder).is_dir():
            from ftkit.errors import ConfigError

            raise ConfigError(f"no such reward model folder: {folder} (train one with `ftkit rm RECIPE`)")
        if (Path(folder) / "adapter_config.json").is_file():
            model = _load_reward_adapter(folder)
        elif _is_likelihood_model(folder):
            from ftkit.models import load_model

            model = as_likelihood_reward_model(load_model(folder, ModelConfig(name=folder), "full"))
        else:
            model = load_reward_model(folder, ModelConfig(name=folder), "full")
        tokenizer = load_tokenizer(folder, ModelConfig(name=folder))
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model.eval(), tokenizer)

    def score(self, prompts: list, completions: list) -> list[float]:
        """One score per pair; each prompt and completion is text or a list of chat messages."""
        return self.score_ids([self.encode(p, c) for p, c in zip(prompts, completions)])

    def encode(self, prompt: str | list[dict[str, str]], completion: str | list[dict[str, str]]) -> list[int]:
        """The ids of one pair as TRL's RewardTrainer trains on them.

        A conversation is rendered by the chat template and tokenized without special tokens (the rule of
        `ftkit.chat.Formatter`: the template's own BOS, once). It is tokenized whole, as TRL does, not message
        by message: a reward model needs no answer mask, so no template is refused for lacking a clean one.
        """
        tok = self.tokenizer
        if isinstance(prompt, str) and isinstance(completion, str):
            return tok(prompt + completion + (tok.eos_token or ""))["input_ids"]
        messages = _messages(prompt, "user") + _messages(completion, "assistant")
        return tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]

    def score_ids(self, sequences: list[list[int]]) -> list[float]:
        """One score per token sequence (right-padded in batches; a linear head reads the last real token, a
        likelihood model sums the log-probabilities of the real tokens)."""
        import torch

        scores: list[float] = []
        tok = self.tokenizer
        saved, tok.padding_side = tok.padding_side, "right"
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(sequences), self.batch_size):
                    batch = [list(ids) for ids in sequences[start : start + self.batch_size]]
                    enc = tok.pad({"input_ids": batch}, padding=True, return_tensors="pt").to(self.model.device)
                    scores += self.model(**enc).logits[:, 0].float().tolist()
        finally:
            tok.padding_side = saved
            self.model.train(was_training)
        return scores


def _is_likelihood_model(folder: str) -> bool:
    """Whether a full reward-model folder was trained with `reward_head: likelihood` (its config says so)."""
    import json
    from pathlib import Path

    config = Path(folder) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get(LIKELIHOOD_MARK) == "likelihood"


def _load_reward_adapter(folder: str):
    """A LoRA reward model: a linear head's adapters are SEQ_CLS, a likelihood model's CAUSAL_LM."""
    import json
    from pathlib import Path

    task_type = json.loads((Path(folder) / "adapter_config.json").read_text()).get("task_type")
    if task_type == "CAUSAL_LM":
        from peft import AutoPeftModelForCausalLM

        return as_likelihood_reward_model(AutoPeftModelForCausalLM.from_pretrained(folder))
    from peft import AutoPeftModelForSequenceClassification

    return AutoPeftModelForSequenceClassification.from_pretrained(folder, num_labels=1)


def _messages(part: str | list[dict[str, str]], role: str) -> list[dict[str, str]]:
    """A pair's prompt or answer as chat messages: a text becomes one message of `role`."""
    return [dict(m) for m in part] if isinstance(part, list) else [{"role": role, "content": part}]


def _shown(part) -> str:
    """A prompt or answer as one line of a report: chat messages as `role: content | ...`."""
    return part if isinstance(part, str) else " | ".join(f"{m.get('role')}: {m.get('content')}" for m in part)
