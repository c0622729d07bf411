"""Built-in `scratch:` models: a GPT-2 architecture at a named size with a tokenizer built on this machine.

    python -c "from ftkit.scratch import build_scratch; build_scratch('tiny', 'runs/scratch-tiny')"

Used offline (the Hugging Face hub may be out of reach) and for fast experiments. The tokenizer is
byte-level with no merges: every byte is one token, so each digit is its own token. GPT-2's own BPE
tokenizer merges digits into irregular chunks ("123" may be one token, "1234" two), which is one reason
small models find arithmetic hard with it; one token per digit lets the model line digits up.
Everything is saved as standard Hugging Face files, so `AutoModelForCausalLM.from_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)` open the result with no ftkit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftkit.errors import ModelError, did_you_mean

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# A plain chat template so that chat-format datasets work with scratch models too. The
# {% generation %} markers let TRL compute the loss on assistant turns only.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ message['role'] | capitalize + ': ' + message['content'] + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
)


@dataclass(frozen=True)
class ScratchPreset:
    """The shape of a scratch GPT-2. `vocab_size=None` means exactly the tokenizer's size."""

    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int | None
    description: str
    # Dropout fights overfitting on small data; procedurally generated tasks have plenty of data, and
    # dropout slows a small model's learning of exact algorithms such as addition a lot.
    dropout: float = 0.0


PRESETS: dict[str, ScratchPreset] = {
    # About 0.9M parameters: trains on a laptop CPU in minutes and learns 3-digit addition.
    "tiny": ScratchPreset(4, 4, 128, 256, None, "~0.9M parameters; a laptop-CPU model"),
    # The 10.6M-parameter NanoGPT of Lee et al. 2023, "Teaching Arithmetic to Small Transformers".
    "mini": ScratchPreset(6, 6, 384, 256, None, "~10.7M parameters; Lee et al. 2023's NanoGPT"),
    # GPT-2 small's exact shape (124M with the 50257-token vocabulary), for timing and memory checks.
    "gpt2-124m": ScratchPreset(12, 12, 768, 1024, 50257, "GPT-2 small's 124M shape", dropout=0.1),
}


def preset(name: str) -> ScratchPreset:
    """Look up a preset by name, with a did-you-mean for typos."""
    if name not in PRESETS:
        raise ModelError(
            f'unknown scratch preset "scratch:{name}"{did_you_mean(name, PRESETS)}; '
            f"available: {', '.join('scratch:' + p for p in PRESETS)}"
        )
    return PRESETS[name]


def build_tokenizer():
    """A byte-level tokenizer with no merges: 256 byte tokens plus end-of-text and padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 printable stand-ins for raw bytes
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # use_regex=False: with no merges, splitting into words first would change nothing but speed.
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    tokenizer.bos_token = EOS_TOKEN  # GPT-2's convention: one token opens and closes documents
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_scratch(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a randomly initialised GPT-2 of preset `name` and its tokenizer, and save both to `out_dir`."""
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    shape = preset(name)
    tokenizer = build_tokenizer()
    config = GPT2Config(
        vocab_size=shape.vocab_size or len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=shape.dropout,
        embd_pdrop=shape.dropout,
        attn_pdrop=shape.dropout,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
