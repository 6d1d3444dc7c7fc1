"""`rt export-gguf`: write a transformers llama-architecture model as a GGUF for llama.cpp."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from rt_middleware.cli.app import app
from rt_middleware.cli.common import console, user_errors


@app.command("export-gguf")
def export_gguf_command(
    hf_dir: Annotated[Path, typer.Argument(help="Model directory saved with save_pretrained.")],
    out: Annotated[Path, typer.Argument(help="The .gguf file to write.")],
    dtype: Annotated[
        Literal["f32", "f16", "q8_0"], typer.Option(help="Weight type of the matrices (norms stay F32).")
    ] = "f16",
    base_gguf: Annotated[
        Path | None,
        typer.Option(help="The GGUF the model came from: its tokenizer metadata is copied, new tokens appended."),
    ] = None,
) -> None:
    """Export HF_DIR to OUT.gguf, keeping the decision tokens as CONTROL tokens."""
    with user_errors():
        from rt_middleware.gguf_export import export_gguf

        path = export_gguf(hf_dir, out, dtype=dtype, base_gguf=base_gguf, progress=True)
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {dtype})", highlight=False)
