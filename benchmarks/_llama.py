"""Random-weight Llama models of real shapes, with a small word-level tokenizer that carries the
decision tokens as special tokens (no downloads; timings do not depend on the weights).

The tokenizer maps the words ``w0 w1 ...`` to one id each, so a prompt of N words is N tokens plus
the chat template's few. It has no end-of-sequence token and the model no ``eos_token_id``, so every
generation runs to ``max_new_tokens``: two paths asked for N tokens generate the same N tokens.
"""

from __future__ import annotations

import random
from typing import Any

from rt_middleware.tokens import RefusalTokenSchema

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["<|pad|>", "[UNK]", "<|user|>", "<|assistant|>", "<|system|>"]

# Llama-3.2-1B and Llama-3-8B (Meta's config.json); tiny is the check shape.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512, "tie_word_embeddings": False,
    },
    "1b": {
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True, "head_dim": 64,
    },
    "8b": {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    },
}


def build_tokenizer(vocab_size: int, schema: RefusalTokenSchema | None = None) -> Any:
    """A word-level tokenizer of exactly `vocab_size` ids whose last ids are the decision tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    schema = schema or RefusalTokenSchema.coconot()
    words = vocab_size - len(SPECIALS) - len(schema.tokens)
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": len(SPECIALS) + i for i in range(words)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", unk_token="[UNK]")
    hf.add_special_tokens({"additional_special_tokens": SPECIALS[2:] + list(schema.tokens)})
    hf.chat_template = CHAT_TEMPLATE
    assert len(hf) == vocab_size, (len(hf), vocab_size)
    return hf


def llama_config(shape: str) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        **SHAPES[shape], max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
        pad_token_id=0, bos_token_id=None, eos_token_id=None,
    )


def build_model(shape: str, *, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer): random weights initialised directly on `device` in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = llama_config(shape)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval(), build_tokenizer(config.vocab_size)


def word_prompt(words: int, seed: int, vocab_words: int = 400) -> str:
    """`words` random vocabulary words: exactly `words` tokens of user text."""
    rng = random.Random(seed)
    return " ".join(f"w{rng.randrange(vocab_words)}" for _ in range(words))


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
