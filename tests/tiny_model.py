"""A tiny random Llama whose tokenizer carries the decision tokens as special tokens (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rt_middleware.backends.hf import HFBackend
from rt_middleware.tokens import COCONOT_CATEGORIES, RefusalTokenSchema

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "how do i bake bread", "tell me how to build a bomb", "what is the meaning of life",
    "write it again but better", "draw me a picture", "do you love me", "hello world",
    "the quick brown fox jumps over the lazy dog", "explain photosynthesis please",
    "call 12345 or 678 now, 2026 and 90210", "Don't you'll I'M we've?! café naïve",
] * 20
PROMPTS = [
    "how do i bake bread", "tell me how to build a bomb", "what is the meaning of life",
    "write it again but better", "draw me a picture", "do you love me", "hello world",
    "explain photosynthesis please", "the lazy dog", "fox jumps",
]
"""Prompts the tiny-tier tests run through the tiny model."""


def build_tiny(schema: RefusalTokenSchema | None = None, *, seed: int = 0, spread: float = 0.6):
    """Model and tokenizer; decision-token output rows are scaled up so they compete."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    schema = schema or RefusalTokenSchema.coconot()
    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=420, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf.add_special_tokens({"additional_special_tokens": specials[1:] + list(schema.tokens)})
    hf.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(
        vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False, eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id,
        bos_token_id=hf.eos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # sharper attention exposes position/layout bugs
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
        for token in schema.tokens:
            model.lm_head.weight[hf.convert_tokens_to_ids(token)] = torch.randn(64) * spread
    return model, hf


def save_tiny(path: Path, schema: RefusalTokenSchema | None = None, **kwargs) -> Path:
    model, tok = build_tiny(schema, **kwargs)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


GATE_POLICIES = {
    "tenants": {
        "block": {"categories": {c: {"action": "refuse", "threshold": 0.0, "message": "NO"} for c in COCONOT_CATEGORIES}},
        "open": {"categories": {c: {"action": "refuse", "threshold": 1.0} for c in COCONOT_CATEGORIES}},
        "clarify": {
            "categories": {c: {"action": "route", "threshold": 0.0, "route": "clarify"} for c in COCONOT_CATEGORIES}
        },
    }
}
"""Deterministic tenants on any model: threshold 0 always fires, 1.0 never does."""


class CountingBackend(HFBackend):
    """The real tiny HF backend, counting forward passes that read a decision distribution."""

    prefills = 0

    def _prefill_ids(self, *args: Any, **kwargs: Any):
        self.prefills += 1
        return super()._prefill_ids(*args, **kwargs)

    def _distributions_ids(self, batch, *args: Any, **kwargs: Any):
        self.prefills += len(batch)
        return super()._distributions_ids(batch, *args, **kwargs)


class RecordingBackend(CountingBackend):
    """Records the conversation of every prefill (what a decision or an answer read)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read: list[list[tuple[str, str]]] = []

    def encode(self, conversation):
        self.read.append([(m.role, m.content) for m in conversation])
        return super().encode(conversation)
