"""The training loop's schedule, checkpoint loading and low-precision (bf16/fp16) paths on CPU."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from tiny_model import build_tiny  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from rt_middleware.backends.hf import HFBackend, resolve_hf_tokens  # noqa: E402
from rt_middleware.cli.app import app  # noqa: E402
from rt_middleware.errors import ConfigError  # noqa: E402
from rt_middleware.tokens import RefusalTokenSchema  # noqa: E402
from rt_middleware.train import TrainConfig, add_decision_tokens, apply_artifact, train  # noqa: E402
from rt_middleware.train.sft import SFTRecord, build_examples  # noqa: E402

COCONOT = RefusalTokenSchema.coconot()
TOY = [
    ("how do i bake bread", "respond", "mix flour and water"),
    ("hello world", "respond", "hello to you"),
    ("tell me how to build a bomb", "Requests with safety concerns", None),
    ("write it again but better", "Incomplete requests", None),
    ("draw me a picture", "Unsupported requests", None),
    ("what is the meaning of life", "Indeterminate requests", None),
    ("do you love me", "Humanizing requests", None),
]


def _examples():
    model, tok = build_tiny(RefusalTokenSchema.single(), seed=1)
    add_decision_tokens(model, tok, COCONOT)
    tokens = resolve_hf_tokens(tok, COCONOT)
    records = [SFTRecord(prompt=p, category=label, response=r) for p, label, r in TOY]
    examples, _ = build_examples(tok, records, tokens)
    return model, tok, tokens, examples


def _old_schedule(step: int, total: int, warmup: int) -> float:
    """The hand-written schedule this loop used before transformers' (kept here as the reference)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def test_learning_rate_is_transformers_cosine_warmup_and_matches_the_old_curve(tmp_path: Path) -> None:
    model, tok, tokens, examples = _examples()
    total, lr = 10, 1e-2
    config = TrainConfig(method="lora", lr=lr, max_steps=total, batch_size=4, warmup_ratio=0.3, lora_r=2)
    result = train(model, examples, tokens, config, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    warmup = 3
    assert len(result.learning_rates) == total
    for step, got in enumerate(result.learning_rates):
        if step >= warmup:  # cosine decay: identical to the old formula
            assert got == pytest.approx(lr * _old_schedule(step, total, warmup), rel=1e-12)
        else:  # warm-up starts at 0 (HF): each warm-up step gets the old curve's previous value
            expected = 0.0 if step == 0 else lr * _old_schedule(step - 1, total, warmup)
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


class _RunsCode:
    """A pickled object whose loading would write a file: what weights_only=True must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_resume_loads_tensors_only_and_never_runs_pickled_code(tmp_path: Path) -> None:
    model, tok, tokens, examples = _examples()
    marker = tmp_path / "code-ran"
    folder = tmp_path / "run" / "checkpoints" / "step-2"
    folder.mkdir(parents=True)
    torch.save({"step": 2, "losses": [1.0, 1.0], "payload": _RunsCode(marker)}, folder / "state.pt")
    config = TrainConfig(method="lora", lr=1e-2, max_steps=4, batch_size=4, lora_r=2)
    with pytest.raises(ConfigError, match="not a tensors-only checkpoint"):
        train(model, examples, tokens, config, out=tmp_path / "run", pad_id=tok.pad_token_id, progress=False)
    assert not marker.exists()


def test_resume_restores_the_schedule_position(tmp_path: Path) -> None:
    config = TrainConfig(method="lora", lr=1e-2, max_steps=8, batch_size=3, checkpoint_every=5, warmup_ratio=0.25,
                         lora_r=2, seed=2)
    model, tok, tokens, examples = _examples()
    full = train(model, examples, tokens, config, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    model, tok, tokens, examples = _examples()
    resumed = train(model, examples, tokens, config, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    assert resumed.resumed_from == 5
    assert resumed.learning_rates == pytest.approx(full.learning_rates[5:], rel=1e-12)
    assert resumed.losses == pytest.approx(full.losses, rel=1e-4)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_bfloat16_keeps_trained_tensors_float32_and_returns_a_bf16_model(tmp_path: Path, method: str) -> None:
    model, tok, tokens, examples = _examples()
    seen: dict[str, set] = {"trained": set(), "frozen": set()}

    def record(module, args) -> None:  # dtypes the optimizer sees, at the first forward
        if seen["trained"]:
            return
        for param in module.parameters():
            seen["trained" if param.requires_grad else "frozen"].add(param.dtype)

    model.register_forward_pre_hook(record)
    config = TrainConfig(method=method, lr=1e-2 if method == "lora" else 1e-3, max_steps=4, batch_size=4,
                         lora_r=2, device="cpu", dtype="bfloat16")
    result = train(model, examples, tokens, config, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    assert all(math.isfinite(x) for x in result.losses)
    assert seen["trained"] == {torch.float32}
    assert seen["frozen"] == ({torch.bfloat16} if method == "lora" else set())
    base = result.model.get_base_model() if method == "lora" else result.model
    assert base.get_input_embeddings().weight.dtype == torch.bfloat16  # back to the requested dtype
    assert base.model.rotary_emb.inv_freq.dtype == torch.float32  # buffers are never rounded


@pytest.mark.parametrize("method", ["lora", "full"])
def test_cli_trains_in_bfloat16_and_the_outputs_load_back(tmp_path: Path, method: str) -> None:
    model, tok = build_tiny(RefusalTokenSchema.single(), seed=1)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    data = tmp_path / "toy.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": p, "label": lab, "response": r}) for p, lab, r in TOY))
    out = tmp_path / "out"
    args = ["train", "--model", str(tmp_path / "base"), "--data", str(data), "--out", str(out), "--max-steps", "3",
            "--batch-size", "4", "--device", "cpu", "--dtype", "bfloat16", f"--{method}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train"]["dtype"] == "bfloat16" and manifest["train"]["device"] == "cpu"
    assert all(math.isfinite(x) for x in manifest["loss_curve"])
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    trained = HFBackend.from_pretrained(out / "model", schema=COCONOT)  # float32 by default
    prompts = [p for p, *_ in TOY[:3]]
    expected = [trained.first_token_distribution(p).probabilities for p in prompts]
    assert all(math.isfinite(v) for probs in expected for v in probs.values())
    if method == "lora":  # the compact artifact rebuilds the same model on a fresh float32 base
        base, base_tok = build_tiny(RefusalTokenSchema.single(), seed=1)
        rebuilt = HFBackend(base, base_tok, schema=apply_artifact(base, base_tok, out / "artifact"))
        for prompt, probs in zip(prompts, expected, strict=True):
            # the artifact's factors are fp16 and the saved model bf16: agreement to bf16 precision
            assert rebuilt.first_token_distribution(prompt).probabilities == pytest.approx(probs, abs=2e-2)


def test_cli_rejects_an_unknown_dtype(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--model", str(tmp_path), "--data", str(tmp_path / "x.jsonl"),
                                      "--dtype", "float8"])
    assert result.exit_code != 0 and "unknown --dtype 'float8'" in result.output


def test_resume_refuses_other_settings_and_restart_starts_over(tmp_path: Path) -> None:
    """A resumed run kept the checkpoint's lr while its manifest recorded the new one; a restart
    over a run killed at its first checkpoint crashed renaming onto the stale step folder."""
    config = TrainConfig(method="lora", lr=1e-2, max_steps=6, batch_size=3, checkpoint_every=5, lora_r=2, seed=2)
    model, tok, tokens, examples = _examples()
    train(model, examples, tokens, config, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    other = config.model_copy(update={"lr": 5e-2, "lora_r": 4})
    model, tok, tokens, examples = _examples()
    with pytest.raises(ConfigError, match=r"lr 0.01 -> 0.05; lora_r 2 -> 4.*--restart"):
        train(model, examples, tokens, other, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    model, tok, tokens, examples = _examples()  # threads may change: they do not change the result
    resumed = train(model, examples, tokens, config.model_copy(update={"threads": 1}), out=tmp_path,
                    pad_id=tok.pad_token_id, progress=False)
    assert resumed.resumed_from == 5
    model, tok, tokens, examples = _examples()
    restarted = train(model, examples, tokens, other, out=tmp_path, pad_id=tok.pad_token_id, progress=False,
                      resume=False)
    assert restarted.resumed_from == 0 and len(restarted.losses) == 6
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-5"]


def test_weight_decay_leaves_the_other_embedding_rows_alone(tmp_path: Path) -> None:
    """AdamW's decoupled decay acts on the whole matrix; the artifact stores only the decision rows."""
    model, tok, tokens, examples = _examples()
    before = model.get_input_embeddings().weight.detach().float().clone()
    config = TrainConfig(method="lora", lr=1e-2, max_steps=3, batch_size=3, lora_r=2, weight_decay=0.1)
    result = train(model, examples, tokens, config, out=tmp_path, pad_id=tok.pad_token_id, progress=False)
    after = result.model.get_base_model().get_input_embeddings().weight.detach().float()
    decision = sorted(set(tokens.ids.values()))
    others = [i for i in range(before.shape[0]) if i not in set(decision)]
    assert torch.equal(after[others], before[others])
    assert not torch.equal(after[decision], before[decision])
