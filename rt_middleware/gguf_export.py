"""HF (transformers) llama-architecture model -> GGUF for llama.cpp, keeping the decision tokens.

Written with the `gguf` package's GGUFWriter, tensor-name tables (`TensorNameMap`, `TENSOR_NAMES`)
and token types (`TokenType`): llama.cpp's own convert_hf_to_gguf.py does not run against the PyPI
`gguf` package, but the tables it uses ship there. Each pitfall below corrupts a file *silently* (it loads and runs):

- q_proj / k_proj must be permuted to llama.cpp's rotary layout;
- `tokenizer.ggml.pre` must name the pre-tokenizer whose regex equals the HF one (anything we cannot
  map is a ConfigError, never a guess);
- HF special tokens (the decision tokens among them) must be CONTROL: llama.cpp matches USER_DEFINED
  tokens inside user text even when tokenizing with ``special=False``;
- norms stay F32; tied embeddings have no ``output.weight``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rt_middleware._extras import require
from rt_middleware.errors import ConfigError

if TYPE_CHECKING:
    import gguf
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

__all__ = ["GGUFDtype", "export_gguf", "llama_cpp_pre_tokenizer"]

GGUFDtype = Literal["f32", "f16", "q8_0"]

_Q8_0_BLOCK = 32
_SUPPORTED_MODEL_TYPES = ("llama",)


def export_gguf(
    model_dir: str | Path,
    out_path: str | Path,
    *,
    dtype: GGUFDtype = "f16",
    base_gguf: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write `model_dir` (a `save_pretrained` llama-architecture model) as a GGUF file.

    With `base_gguf` (the GGUF the model was loaded from, e.g. SmolLM2), its ``tokenizer.*``
    metadata is copied verbatim and the model's added tokens are appended; otherwise the tokenizer
    metadata is mapped from the HF tokenizer. The file is written next to `out_path` and renamed
    into place, so a failed export never leaves a truncated GGUF behind.
    """
    gguf = require("gguf", extra="llamacpp", feature="GGUF export")
    transformers = require("transformers", extra="hf", feature="GGUF export")
    if dtype not in ("f32", "f16", "q8_0"):
        raise ConfigError(f"dtype must be one of f32, f16, q8_0; got {dtype!r}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} is not a transformers model directory (no config.json)")
    if out_path.is_dir():  # checked before the conversion, not after it
        raise ConfigError(f"{out_path} is a folder; give the GGUF file to write, e.g. {out_path / 'model.gguf'}")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    if config.model_type not in _SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"GGUF export supports the llama architecture (Llama, SmolLM2); got model_type "
            f"{config.model_type!r}"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("GGUF export needs a fast (tokenizers) tokenizer in the model directory")
    hparams = _LlamaHParams.from_config(config)

    tmp_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(str(tmp_path), "llama")
    try:
        hparams.write(writer, dtype, name=model_dir.name)
        if base_gguf is not None:
            _write_tokenizer_from_base(writer, Path(base_gguf), tokenizer, hparams.vocab_size)
        else:
            _write_tokenizer_from_hf(writer, tokenizer, hparams.vocab_size)
        for name, array, qtype in _converted_tensors(model_dir, hparams, dtype, progress):
            writer.add_tensor(name, array, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress)
        writer.close()
        os.replace(tmp_path, out_path)
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
    return out_path


# ---- hyperparameters -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _LlamaHParams:
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int
    rms_eps: float
    rope_theta: float
    vocab_size: int
    tied: bool

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> _LlamaHParams:
        rope = dict(getattr(config, "rope_parameters", None) or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ConfigError(f"rope scaling {rope_type!r} is not supported by the GGUF exporter")
        theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
        if theta is None:
            raise ConfigError("the model config has no rope theta (rope_parameters['rope_theta'])")
        if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
            raise ConfigError("llama models with attention or MLP biases are not supported by the exporter")
        n_heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
        return cls(
            n_layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
            ffn=int(config.intermediate_size),
            n_heads=n_heads,
            n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
            head_dim=head_dim,
            context_length=int(config.max_position_embeddings),
            rms_eps=float(config.rms_norm_eps),
            rope_theta=float(theta),
            vocab_size=int(config.vocab_size),
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )

    def write(self, writer: gguf.GGUFWriter, dtype: GGUFDtype, *, name: str) -> None:
        import gguf

        file_type = {
            "f32": gguf.LlamaFileType.ALL_F32,
            "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        }[dtype]
        writer.add_name(name)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_vocab_size(self.vocab_size)
        writer.add_context_length(self.context_length)
        writer.add_embedding_length(self.hidden)
        writer.add_block_count(self.n_layers)
        writer.add_feed_forward_length(self.ffn)
        writer.add_head_count(self.n_heads)
        writer.add_head_count_kv(self.n_kv_heads)
        writer.add_rope_dimension_count(self.head_dim)
        if self.head_dim * self.n_heads != self.hidden:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        writer.add_rope_freq_base(self.rope_theta)
        writer.add_layer_norm_rms_eps(self.rms_eps)


# ---- tensors ---------------------------------------------------------------------------------------
def permute_rotary(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's half-split rotary layout -> llama.cpp's interleaved one (q with n_heads, k with n_kv_heads)."""
    out_dim, in_dim = weight.shape
    head_dim = out_dim // n_heads
    return (
        weight.reshape(n_heads, 2, head_dim // 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)
    )


def _llama_tensors(n_layers: int, *, tied: bool) -> set[str]:
    """The GGUF names of every tensor llama.cpp needs for this llama model (`gguf.TENSOR_NAMES`)."""
    import gguf

    t = gguf.MODEL_TENSOR
    top = [t.TOKEN_EMBD, t.OUTPUT_NORM] + ([] if tied else [t.OUTPUT])
    per_block = [t.ATTN_NORM, t.ATTN_Q, t.ATTN_K, t.ATTN_V, t.ATTN_OUT, t.FFN_NORM, t.FFN_GATE, t.FFN_UP, t.FFN_DOWN]
    names = {gguf.TENSOR_NAMES[kind] + ".weight" for kind in top}
    for bid in range(n_layers):
        names |= {gguf.TENSOR_NAMES[kind].format(bid=bid) + ".weight" for kind in per_block}
    return names


def _gguf_name(name_map: gguf.TensorNameMap, hf_name: str, wanted: set[str]) -> tuple[str, str | None] | None:
    """GGUF name and rotary permutation ("q" | "k" | None) of an HF tensor; None if llama.cpp does not store it.

    The names come from the `gguf` package's `TensorNameMap` (llama.cpp's own converter tables).
    """
    import gguf

    mapped = name_map.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
    if mapped is not None and mapped[0] in (gguf.MODEL_TENSOR.ROPE_FREQS, gguf.MODEL_TENSOR.ATTN_ROT_EMBD):
        return None  # rotary frequencies: llama.cpp computes them from rope.freq_base
    if mapped is None or mapped[1] not in wanted:
        if hf_name == "lm_head.weight":  # a tied checkpoint that still saved its head
            return None
        raise ConfigError(f"unexpected tensor {hf_name!r}: not a plain llama-architecture checkpoint")
    permute = {gguf.MODEL_TENSOR.ATTN_Q: "q", gguf.MODEL_TENSOR.ATTN_K: "k"}.get(mapped[0])
    return mapped[1], permute


def _read_safetensors(model_dir: Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """(name, loader) for every tensor, across shards; loaders read one tensor as float32."""
    require("torch", extra="hf", feature="GGUF export")
    from safetensors import SafetensorError, safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise ConfigError(f"{model_dir} has no model.safetensors (save the model with save_pretrained)")
    for shard in shards:
        try:
            handle = safe_open(str(model_dir / shard), framework="pt")
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"cannot read {model_dir / shard}: {exc}") from exc
        for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            yield name, lambda h=handle, n=name: h.get_tensor(n).float().numpy()


def _converted_tensors(
    model_dir: Path, hp: _LlamaHParams, dtype: GGUFDtype, progress: bool
) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(gguf name, data, raw qtype or None) in a stable order, checked against the config."""
    import gguf

    wanted = _llama_tensors(hp.n_layers, tied=hp.tied)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp.n_layers)
    entries: dict[str, tuple[Callable[[], np.ndarray], str | None]] = {}
    for hf_name, load in _read_safetensors(model_dir):
        mapped = _gguf_name(name_map, hf_name, wanted)
        if mapped is not None:
            entries[mapped[0]] = (load, mapped[1])
    missing = sorted(wanted - set(entries))
    if missing:
        raise ConfigError(f"the checkpoint lacks tensors llama.cpp needs: {missing[:5]}")
    names = sorted(entries, key=_tensor_order)
    iterator: Any = names
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc="converting tensors", unit="tensor")
    for name in iterator:
        load, permute = entries[name]
        data = load()
        if permute is not None:
            data = permute_rotary(data, hp.n_heads if permute == "q" else hp.n_kv_heads)
        if name in ("token_embd.weight", "output.weight") and data.shape[0] != hp.vocab_size:
            raise ConfigError(f"{name} has {data.shape[0]} rows but the config's vocab_size is {hp.vocab_size}")
        if data.ndim == 1 or dtype == "f32":
            yield name, np.ascontiguousarray(data, dtype=np.float32), None
        elif dtype == "q8_0" and data.shape[-1] % _Q8_0_BLOCK == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0
            yield name, gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype), qtype
        else:  # f16, and q8_0 rows that are not whole blocks (as llama.cpp's converter does)
            yield name, np.ascontiguousarray(data, dtype=np.float16), None


def _tensor_order(name: str) -> tuple[int, int, str]:
    if name.startswith("blk."):
        return 1, int(name.split(".")[1]), name
    return (0 if name == "token_embd.weight" else 2), 0, name


# ---- tokenizer -------------------------------------------------------------------------------------
def llama_cpp_pre_tokenizer(pre_tokenizer: dict[str, Any] | None) -> str:
    """The `tokenizer.ggml.pre` name whose regex equals an HF pre-tokenizer (tokenizer.json form).

    Only exact, verified equivalences are mapped: a wrong name silently mis-tokenizes.
    """
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}

    def is_byte_level(node: dict[str, Any]) -> bool:
        return all(node.get(k, v if k != "type" else None) == v for k, v in byte_level.items())

    if pre_tokenizer is not None:
        if is_byte_level(pre_tokenizer):
            return "gpt-2"
        steps = pre_tokenizer.get("pretokenizers") if pre_tokenizer.get("type") == "Sequence" else None
        if (
            steps
            and len(steps) == 2
            and steps[0] == {"type": "Digits", "individual_digits": True}
            and is_byte_level(steps[1])
        ):
            return "smollm"
    raise ConfigError(
        "cannot map this tokenizer's pre-tokenizer to a llama.cpp one (supported: byte-level BPE "
        "as GPT-2 has it, and SmolLM's digits + byte-level); export with base_gguf= (--base-gguf) "
        f"if the model came from a GGUF. Pre-tokenizer: {json.dumps(pre_tokenizer)[:300]}"
    )


def _special_flags(tokenizer: PreTrainedTokenizerBase) -> tuple[bool, bool]:
    """Whether encoding with special tokens adds BOS / EOS, read from behaviour, not attributes."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a", add_special_tokens=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos


def _hf_added_types(tokenizer: PreTrainedTokenizerBase) -> dict[int, gguf.TokenType]:
    """Added tokens: special -> CONTROL; the rest USER_DEFINED (HF matches them in text too)."""
    import gguf

    return {
        idx: gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
        for idx, added in tokenizer.added_tokens_decoder.items()
    }


def _plain_type(in_vocab: bool) -> gguf.TokenType:
    """A vocabulary entry that is not an added token; ids the tokenizer lacks are UNUSED rows."""
    import gguf

    return gguf.TokenType.NORMAL if in_vocab else gguf.TokenType.UNUSED


def _padded(tokens: list[str], types: list[int], vocab_size: int) -> tuple[list[str], list[int]]:
    """Pad to the embedding's row count with UNUSED placeholders (llama.cpp wants equal sizes)."""
    import gguf

    if len(tokens) > vocab_size:
        raise ConfigError(
            f"the tokenizer has {len(tokens)} tokens but the model only {vocab_size} embedding rows; "
            "resize the embeddings (model.resize_token_embeddings) before saving"
        )
    extra = range(len(tokens), vocab_size)
    return tokens + [f"[PAD{i}]" for i in extra], types + [gguf.TokenType.UNUSED] * len(extra)


def _write_tokenizer_from_hf(writer: gguf.GGUFWriter, tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise ConfigError(
            f"only byte-level BPE tokenizers map to GGUF here (got {model.get('type')!r}); "
            "export with base_gguf= if the model came from a GGUF"
        )
    if spec.get("normalizer") is not None:
        raise ConfigError(f"cannot map the tokenizer's normalizer {spec['normalizer'].get('type')!r} to llama.cpp")
    decoder = spec.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise ConfigError(f"expected a ByteLevel decoder, got {decoder.get('type')!r}")
    pre = llama_cpp_pre_tokenizer(spec.get("pre_tokenizer"))

    by_id = {idx: tok for tok, idx in tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).items()}
    added = _hf_added_types(tokenizer)
    size = max(by_id) + 1
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    types = [added.get(i, _plain_type(i in by_id)) for i in range(size)]
    tokens, types = _padded(tokens, types, vocab_size)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if merges:
        writer.add_token_merges(merges)
    _write_special_ids(writer, tokenizer)
    add_bos, add_eos = _special_flags(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.add_add_space_prefix(False)
    if isinstance(tokenizer.chat_template, str) and tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _write_special_ids(writer: gguf.GGUFWriter, tokenizer: PreTrainedTokenizerBase) -> None:
    for value, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id),
    ):
        if value is not None:
            add(int(value))


def _write_tokenizer_from_base(
    writer: gguf.GGUFWriter, base_path: Path, tokenizer: PreTrainedTokenizerBase, vocab_size: int
) -> None:
    """Copy the base GGUF's tokenizer.* keys; append the tokens the HF tokenizer added after it."""
    import gguf

    if not base_path.is_file():
        raise ConfigError(f"base GGUF not found: {base_path}")
    try:
        reader = gguf.GGUFReader(str(base_path))
    except (ValueError, OSError, IndexError) as exc:
        raise ConfigError(f"cannot read the base GGUF {base_path}: {exc}") from exc
    fields = {k: f for k, f in reader.fields.items() if k.startswith("tokenizer.")}
    if "tokenizer.ggml.tokens" not in fields or "tokenizer.ggml.token_type" not in fields:
        raise ConfigError(f"the base GGUF {base_path} has no tokenizer vocabulary")
    base_tokens: list[str] = list(fields["tokenizer.ggml.tokens"].contents())
    base_types: list[int] = [int(t) for t in fields["tokenizer.ggml.token_type"].contents()]

    hf_by_id = {idx: tok for tok, idx in tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).items()}
    mismatched = [i for i, tok in enumerate(base_tokens) if hf_by_id.get(i) != tok]
    if mismatched:
        i = mismatched[0]
        raise ConfigError(
            f"the model's tokenizer is not an extension of the base GGUF's ({len(mismatched)} ids differ; "
            f"id {i}: base {base_tokens[i]!r} vs model {hf_by_id.get(i)!r})"
        )
    added = _hf_added_types(tokenizer)
    size = max(max(hf_by_id) + 1, len(base_tokens))
    tokens = base_tokens + [hf_by_id.get(i, f"[PAD{i}]") for i in range(len(base_tokens), size)]
    types = base_types + [
        added.get(i, _plain_type(i in hf_by_id)) for i in range(len(base_tokens), size)
    ]
    for idx, kind in added.items():  # an HF special token is CONTROL, whatever the base said
        if kind == gguf.TokenType.CONTROL and idx < len(base_tokens):
            types[idx] = kind
    tokens, types = _padded(tokens, types, vocab_size)

    replaced = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"}
    for key, field in fields.items():
        if key in replaced or (key == "tokenizer.chat_template" and tokenizer.chat_template):
            continue
        main = field.types[0]
        if main == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, list(field.contents()), main, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), main)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if "tokenizer.ggml.scores" in fields:
        scores = [float(s) for s in fields["tokenizer.ggml.scores"].contents()]
        writer.add_token_scores(scores + [0.0] * (len(tokens) - len(scores)))
    if isinstance(tokenizer.chat_template, str) and tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
