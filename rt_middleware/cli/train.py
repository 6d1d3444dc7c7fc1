"""`rt train`: fine-tune a causal LM to start every answer with a decision token."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from rt_middleware.cli.app import app
from rt_middleware.cli.common import console, user_errors

if TYPE_CHECKING:
    from rt_middleware.train.trainer import TrainConfig

DTYPES = ("float32", "bfloat16", "float16")


@app.command("train")
def train_command(
    preset: Annotated[
        str | None, typer.Option(help="'default': train the shipped SmolLM2 model on the built-in data mix.")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="A transformers model directory to fine-tune.")] = None,
    data: Annotated[Path | None, typer.Option(help="Training JSONL (see rt_middleware/train/sft.py).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder: checkpoints/, artifact/, model/, manifest.json.")] = Path(
        "runs/rt-train"
    ),
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA (plus the decision rows) or every weight.")] = True,
    schema: Annotated[str, typer.Option(help="Decision tokens: 'coconot' (5 categories) or 'single' (\\[refuse]).")] = (
        "coconot"
    ),
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (default 1e-3 LoRA, 1e-4 full; the preset's own with --preset).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(min=0.01, help="Passes over the data (default 1).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Examples per step (default 8).")] = None,
    grad_accum: Annotated[int | None, typer.Option(min=1, help="Steps accumulated per update (default 1).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option(min=0.0, max=0.99, help="(default 0.05)")] = None,
    lora_r: Annotated[int | None, typer.Option(min=1, help="LoRA rank (default 16).")] = None,
    lora_alpha: Annotated[int | None, typer.Option(min=1, help="LoRA alpha (default 32).")] = None,
    max_length: Annotated[
        int | None,
        typer.Option(min=8, help="Longest example in tokens, longer prompts skip (default 256; the preset's 192)."),
    ] = None,
    max_response_tokens: Annotated[
        int | None, typer.Option(min=1, help="Response targets are cut here (default 48; the preset's 32).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Training seed: initialisation and example order (default 0; the preset's mix stays fixed)."),
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(min=1, help="Steps between checkpoints (default 50).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--restart", help="Continue from out/checkpoints.")] = True,
    dtype: Annotated[
        str,
        typer.Option(help="Compute dtype: float32, bfloat16 or float16 (autocast; trained tensors stay float32)."),
    ] = "float32",
    device: Annotated[str, typer.Option(help="Where to train: cpu, cuda, cuda:1, mps ...")] = "cpu",
    install: Annotated[
        bool, typer.Option(help="With --preset default: copy the artifact into the package's default model.")
    ] = False,
    first_token_weight: Annotated[
        float | None,
        typer.Option(min=0.0, help="Weight of the decision-token loss (default: 1.0, the preset's own with --preset)."),
    ] = None,
    data_version: Annotated[
        str | None,
        typer.Option(help="With --preset default: the training mix, v1 to v6 (default: the shipped model's)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="torch CPU threads while training (default: torch's own; the preset's 1). "
                     "Results can differ in the last digits from a run with another count."),
    ] = None,
    refusal_text: Annotated[
        bool | None,
        typer.Option(
            "--refusal-text/--no-refusal-text",
            help="Train refusal rows on a short refusal text after their token, or on the token alone "
            "(default: yes; with --preset, the shipped model's choice).",
        ),
    ] = None,
) -> None:
    """Add decision tokens, fine-tune, and write the model (and, for LoRA, the compact artifact)."""
    from rt_middleware.errors import ConfigError

    # only what the user gave: the rest comes from the preset, or from TrainConfig / run_training defaults
    given = {
        "lr": lr, "epochs": epochs, "batch_size": batch_size, "grad_accum": grad_accum,
        "warmup_ratio": warmup_ratio, "lora_r": lora_r, "lora_alpha": lora_alpha, "seed": seed,
        "checkpoint_every": checkpoint_every, "max_steps": max_steps, "first_token_weight": first_token_weight,
        "threads": threads,
    }
    recipe = {k: v for k, v in given.items() if v is not None}
    lengths = {
        k: v for k, v in {"max_length": max_length, "max_response_tokens": max_response_tokens}.items() if v is not None
    }
    with user_errors():
        method: Literal["lora", "full"] = "lora" if lora else "full"
        if dtype not in DTYPES:
            raise ConfigError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        if preset is not None:
            if preset != "default":
                raise ConfigError(f"unknown preset {preset!r}; the only preset is 'default'")
            if model is not None or data is not None:
                raise ConfigError("--preset default brings its own model and data; drop --model/--data")
            from rt_middleware.datasets.mix import MIX_VERSIONS

            if data_version is not None and data_version not in MIX_VERSIONS:
                raise ConfigError(f"unknown --data-version {data_version!r}; use one of {', '.join(MIX_VERSIONS)}")
            if not lora:
                raise ConfigError("--preset default ships a LoRA artifact; drop --full")
            if schema != "coconot":
                raise ConfigError("--preset default trains the CoCoNot decision tokens; drop --schema")
            manifest = _train_preset(
                out, resume=resume, install=install, device=device, dtype=dtype, data_version=data_version,
                refusal_text=refusal_text, lengths=lengths, recipe=recipe,
            )
        else:
            if model is None or data is None:
                raise ConfigError("give --preset default, or both --model HF_DIR and --data FILE.jsonl")
            if data_version is not None:
                raise ConfigError("--data-version picks the --preset default mix; with --data, drop it")
            config = _config({"lr": 1e-3 if lora else 1e-4, **recipe, "method": method, "device": device, "dtype": dtype})
            manifest = _train_any(
                model, data, out, config, schema=schema, lengths=lengths, resume=resume,
                refusal_text=True if refusal_text is None else refusal_text,
            )
    metrics = manifest.get("metrics", {})
    console.print(
        f"[bold green]trained[/] {manifest['steps']} steps on {manifest['examples']} examples in "
        f"{manifest['train_seconds']:.0f} s; final loss {metrics.get('final_loss')}; outputs in {out}",
        highlight=False,
    )
    if "held_out" in metrics:
        console.print(f"held-out decision accuracy: {metrics['held_out']}", highlight=False)


def _config(fields: dict[str, object]) -> TrainConfig:
    """A validated TrainConfig; an out-of-range option (``--lr 0``) is a ConfigError naming it."""
    from pydantic import ValidationError

    from rt_middleware.errors import ConfigError
    from rt_middleware.train.trainer import TrainConfig

    try:
        return TrainConfig(**fields)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).replace("_", "-") if first["loc"] else "option"
        raise ConfigError(f"--{name} {first.get('input')!r}: {first['msg']}") from None


def _train_preset(
    out: Path, *, resume: bool, install: bool, device: str, dtype: str, data_version: str | None,
    refusal_text: bool | None, lengths: dict[str, int], recipe: dict[str, object],
) -> dict:
    """The preset's recipe with the options the user gave on top (an ablation run is one flag away)."""
    from rt_middleware.train.presets import (
        DATA_VERSION,
        DEFAULT_PRESET,
        REFUSAL_TEXT,
        install_artifact,
        train_default,
    )
    config = _config({**DEFAULT_PRESET.model_dump(), **recipe, "device": device, "dtype": dtype})
    manifest = train_default(
        out, config=config, data_version=data_version or DATA_VERSION,
        refusal_text=REFUSAL_TEXT if refusal_text is None else refusal_text, resume=resume, **lengths,
    )
    if install:
        from importlib.resources import files

        target = Path(str(files("rt_middleware") / "data" / "default_model"))
        install_artifact(out, target)
        console.print(f"installed the artifact into {target}", highlight=False)
    return manifest


def _train_any(
    model_dir: Path, data: Path, out: Path, config: TrainConfig, *, schema: str, lengths: dict[str, int],
    resume: bool, refusal_text: bool,
) -> dict:
    from rt_middleware._extras import require
    from rt_middleware.errors import ConfigError
    from rt_middleware.tokens import RefusalTokenSchema
    from rt_middleware.train.run import run_training
    from rt_middleware.train.sft import load_sft_jsonl

    torch = require("torch", extra="train", feature="rt train")
    transformers = require("transformers", extra="train", feature="rt train")
    if schema not in ("coconot", "single"):
        raise ConfigError(f"unknown schema {schema!r}; use coconot or single")
    token_schema = RefusalTokenSchema.coconot() if schema == "coconot" else RefusalTokenSchema.single()
    records = load_sft_jsonl(data, token_schema)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} is not a transformers model directory (no config.json)")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"the tokenizer in {model_dir} has no chat template; training needs one")
    # full fine-tuning keeps float32 master weights; LoRA keeps the frozen base in the compute dtype
    # (the trainer moves the model to config.device)
    storage = "float32" if config.method == "full" else config.dtype
    lm = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, storage))
    return run_training(
        lm, tokenizer, token_schema, records, config, out,
        refusal_text=refusal_text, resume=resume, manifest_extra={"base": str(model_dir), "data": str(data)},
        **lengths,
    )
