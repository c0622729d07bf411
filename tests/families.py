"""Tiny random models of real architecture families, built on this machine from transformers' own config
classes, with the real SmolLM2 tokenizer dressed as each family's (its special tokens, BOS, EOS, pad,
chat template and generation_config stop list).

    from families import FAMILIES, build_family   # tests/ is on sys.path under pytest
    build_family(FAMILIES["llama"], "tests-out/llama", smollm2_tokenizer_dir)

What each family brings that GPT-2 does not, and that ftkit must get right:

| family  | config                          | BOS added | eos (tokenizer) | pad           | turn ends with  | tied | other                         |
| ------- | ------------------------------- | --------- | --------------- | ------------- | --------------- | ---- | ----------------------------- |
| llama   | LlamaConfig (Llama 3.2 shape)   | yes       | <|end_of_text|> | none          | <|eot_id|>      | yes  | GQA, template writes BOS too  |
| qwen2   | Qwen2Config (Qwen2.5 base)      | no        | <|endoftext|>   | = eos         | <|im_end|>      | yes  | GQA, q/k/v biases, default system prompt |
| mistral | MistralConfig (v0.3 shape)      | yes       | </s>            | none          | </s> (= eos)    | no   | GQA, [INST] template, no system role |
| gemma2  | Gemma2Config                    | yes       | <eos>           | <pad>         | <end_of_turn>   | yes  | softcapping, sliding window, gelu_pytorch_tanh, no system role |
| phi3    | Phi3Config (Phi-3-mini shape)   | no        | <|endoftext|>   | = eos         | <|end|>         | no   | fused qkv_proj / gate_up_proj, template ends with eos |
| gemma3  | Gemma3Config (text_config + vision_config: nested) | yes | <eos>  | <pad>         | <end_of_turn>   | yes  | multimodal class, no top-level max_position_embeddings / hidden_size |

Every model has max_position_embeddings 256 (in text_config for gemma3), 2 layers, hidden size 64 (the
smallest that bitsandbytes' 4-bit CPU kernels take: a quantized row needs one 64-value block).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"

CONTEXT = 256  # max_position_embeddings of every family model
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": CONTEXT}

# Mistral ships no template in TRL: this is mistralai/Mistral-7B-Instruct-v0.1's (system role refused),
# with [INST] and [/INST] as control tokens as in the v0.3 tokenizer.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    """How one architecture family looks from the outside: config, tokenizer dress and chat template."""

    name: str
    model_type: str  # the config class's model_type
    config: dict[str, Any]  # tiny sizes and the family's switches (vocab and token ids are filled in)
    specials: tuple[str, ...]  # special tokens added to the SmolLM2 vocabulary
    eos: str
    stops: tuple[str, ...]  # generation_config.eos_token_id, in the family's order
    end_of_turn: str  # the token the chat template closes an assistant turn with
    template: str  # a TRL template file name, or the template itself
    bos: str | None = None
    adds_bos: bool = False  # the tokenizer puts BOS in front of plain text
    pad: str | None = None  # None: the family ships no pad token
    unk: str | None = None
    tied: bool = True
    system_role: bool = True  # the template accepts a system message
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # a typical explicit target list for the family
    nested: bool = False  # the causal LM's settings live in config.text_config
    extra: dict[str, Any] = field(default_factory=dict)  # nested: the outer config's other arguments

    def template_text(self) -> str:
        if self.template.endswith(".jinja"):
            return (TRL_TEMPLATES / self.template).read_text()
        return self.template


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "llama", {**TINY, "num_key_value_heads": 2, "rope_theta": 500000.0},
           specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eom_id|>", "<|eot_id|>"),
           bos="<|begin_of_text|>", adds_bos=True, eos="<|end_of_text|>",
           stops=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), end_of_turn="<|eot_id|>",
           template="llama3.jinja", lora_targets=("q_proj", "k_proj", "v_proj", "o_proj")),
    Family("qwen2", "qwen2", {**TINY, "num_key_value_heads": 2, "use_sliding_window": False},
           specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
           eos="<|endoftext|>", pad="<|endoftext|>", stops=("<|endoftext|>",), end_of_turn="<|im_end|>",
           template="qwen2_5.jinja", lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj")),
    Family("mistral", "mistral", {**TINY, "num_key_value_heads": 2, "sliding_window": None},
           specials=("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
           bos="<s>", adds_bos=True, eos="</s>", unk="<unk>", stops=("</s>",), end_of_turn="</s>",
           template=MISTRAL_TEMPLATE, tied=False, system_role=False,
           lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    Family("gemma2", "gemma2", {**TINY, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
                                "sliding_window": 64, "hidden_activation": "gelu_pytorch_tanh"},
           specials=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
           bos="<bos>", adds_bos=True, eos="<eos>", pad="<pad>", unk="<unk>",
           stops=("<eos>", "<end_of_turn>"), end_of_turn="<end_of_turn>", template="gemma.jinja",
           system_role=False, lora_targets=("q_proj", "k_proj", "v_proj", "o_proj")),
    Family("phi3", "phi3", {**TINY, "num_key_value_heads": 4, "original_max_position_embeddings": CONTEXT,
                            "sliding_window": None},
           specials=("<unk>", "<s>", "<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"),
           bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", unk="<unk>",
           stops=("<|endoftext|>", "<|assistant|>", "<|end|>"), end_of_turn="<|end|>", template="phi3.jinja",
           tied=False, lora_targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj")),
    Family("gemma3", "gemma3", {**TINY, "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16,
                                "sliding_window": 64},
           specials=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                     "<end_of_image>", "<image_soft_token>"),
           bos="<bos>", adds_bos=True, eos="<eos>", pad="<pad>", unk="<unk>",
           stops=("<eos>", "<end_of_turn>"), end_of_turn="<end_of_turn>", template="gemma3.jinja",
           lora_targets=("q_proj", "v_proj"), nested=True,
           extra={"vision_config": {"model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
                                    "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 28,
                                    "patch_size": 14},
                  "mm_tokens_per_image": 4}),
)}


def family_tokenizer(family: Family, smollm2_dir: str):
    """The SmolLM2 tokenizer dressed as `family`'s: its special tokens, BOS/EOS/pad, template."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tok.add_special_tokens({"additional_special_tokens": list(family.specials)})
    tok.bos_token = family.bos
    tok.eos_token = family.eos
    tok.pad_token = family.pad
    tok.unk_token = family.unk
    if family.adds_bos:
        bos = (family.bos, tok.convert_tokens_to_ids(family.bos))
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A {family.bos} $B", special_tokens=[bos])
    tok.chat_template = family.template_text()
    tok.padding_side = "right"  # as most families ship; generation must pad on the left by itself
    return tok


def family_config(family: Family, tok):
    """The family's transformers config, tiny, with the tokenizer's vocabulary and token ids."""
    from transformers import AutoConfig

    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.convert_tokens_to_ids(family.eos),
           "pad_token_id": tok.pad_token_id}
    text = {**family.config, **ids, "vocab_size": len(tok), "tie_word_embeddings": family.tied}
    if not family.nested:
        return AutoConfig.for_model(family.model_type, **text)
    image = {"image_token_index": tok.convert_tokens_to_ids("<image_soft_token>"),
             "boi_token_index": tok.convert_tokens_to_ids("<start_of_image>"),
             "eoi_token_index": tok.convert_tokens_to_ids("<end_of_image>")}
    return AutoConfig.for_model(family.model_type, text_config={"model_type": "gemma3_text", **text},
                                tie_word_embeddings=family.tied, **image, **ids, **family.extra)


def build_family(family: Family, out: str | Path, smollm2_dir: str, seed: int = 0) -> Path:
    """Write a tiny random model of `family` and its tokenizer to `out` (safetensors); returns `out`."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    out = Path(out)
    tok = family_tokenizer(family, smollm2_dir)
    config = family_config(family, tok)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
        eos_token_id=[tok.convert_tokens_to_ids(t) for t in family.stops] if len(family.stops) > 1
        else tok.convert_tokens_to_ids(family.stops[0]))
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def rig_to_stop(folder: str | Path, stop: str, out: str | Path, after_stop: str = "X") -> Path:
    """A copy of the model in `folder` that answers any prompt with `stop` (a token that ends a turn), and
    writes the visible `after_stop` whenever its input ends with `stop`: generation that stops at `stop`
    gives an empty answer, generation that runs past it gives "XXX...". Greedy and sampled alike (the
    chosen token's probability is above 0.99).

    How: dimensions 0 and 1 of the embeddings carry all the signal. Every token holds C in dimension 0,
    `stop` 20 C (and 20 C in dimension 1), `after_stop` 80 C in dimension 1; C is far above the random
    weights, so the residual stream at each position points where its own token's embedding points. The
    final norm keeps only these two dimensions, scaled so that logits are a few tens at most (Gemma 2 caps
    them at 30). For tied embeddings the output rows are the same numbers, for untied ones a copy.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    s, v = tok.convert_tokens_to_ids(stop), tok(after_stop, add_special_tokens=False)["input_ids"]
    assert len(v) == 1, f"{after_stop!r} is not one token"
    v = v[0]
    c = 100.0
    with torch.no_grad():
        for emb in {id(e): e for e in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
            emb.weight[:, 0], emb.weight[:, 1] = c, 0.0
            emb.weight[s, 0], emb.weight[s, 1] = 20 * c, 20 * c
            emb.weight[v, 1] = 80 * c
        norm = final_norm(model)
        hidden = norm.weight.shape[0]
        norm.weight.zero_()
        one_plus = bool(norm(torch.ones(1, hidden)).abs().sum() > 0)  # Gemma's norms scale by (1 + weight)
        gain = 1.0 / (hidden**0.5 * c)  # a logit of 1 for a row holding C, on a stream along dimension 0
        norm.weight[:] = -1.0 if one_plus else 0.0
        norm.weight[:2] = gain - 1.0 if one_plus else gain
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    probe = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        ids = tok("3+4=", add_special_tokens=True)["input_ids"]
        logits = probe(torch.tensor([ids + [s]])).logits[0].softmax(-1)
    assert logits[-2].argmax() == s and logits[-2, s] > 0.99, f"{out}: the rigged model does not answer {stop}"
    assert logits[-1].argmax() == v and logits[-1, v] > 0.99, f"{out}: nothing visible follows {stop}"
    return out


def final_norm(model):
    """The norm right before the language-model head (a decoder's `norm`, nested or not)."""
    decoder = model.get_decoder()
    return decoder.norm
