"""Tiny causal LMs for tests and the `cpu-smoke` preset, built offline from a config.

No hub: a byte-level BPE tokenizer is trained on a few sentences, given a ChatML chat template, and
saved beside a small Qwen2 or Llama model with random weights, so it loads through the same
`from_pretrained` path as a real model.

    python -m spell.engine.models.tiny /tmp/tiny-qwen2       # build one by hand
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TRAINING_TEXT = [
    "The bridge opened in 1932 and cost four million dollars.",
    "Question: what is the correct answer? The correct answer is (B).",
    "Therefore, the answer is 12.5. Explanation: the answers match. Decision: [[YES]] [[NO]]",
    '```json\n{"question": "Who wrote it?", "answer": "Voltaire", "options": {"A": "x"}}\n```',
    "Read the documents between <text> and </text> and propose one challenging question.",
    "Revenue grew from 1,200 to 1,500 million, an increase of 25 percent in 2019.",
]


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TRAINING_TEXT * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_word_tokenizer(words: Sequence[str]):
    """A word-level tokenizer over `words` only (anything else is one unknown token), for controlled learning
    checks: a random model then samples among a dozen tokens, so a task's first rewards are not zero."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, "[UNK]", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(
    out_dir: str | Path,
    arch: str = "qwen2",
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 4096,
    seed: int = 0,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    words: Sequence[str] | None = None,
) -> Path:
    """Write a tiny random causal LM plus tokenizer to `out_dir` (safetensors) and return the path; with
    `words`, a word-level tokenizer over them (see `build_word_tokenizer`)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_word_tokenizer(words) if words else build_tokenizer()
    common = dict(
        vocab_size=max(vocab_size or 0, len(tokenizer)),  # a real model's vocabulary: bench shapes
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    if arch == "qwen2":
        config = Qwen2Config(**common)
    elif arch == "llama":
        config = LlamaConfig(**common)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use 'qwen2' or 'llama'")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":
    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
