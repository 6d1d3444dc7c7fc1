"""The compact trained artifact: LoRA factors (fp16) + decision-token rows + manifest.json.

A full 135M model is ~270 MB in fp16; the factors and rows are a few MB, so they ship inside the
package and are merged into the base model on first use. Applying needs torch and safetensors
only (no peft): ``W += B @ A`` with the LoRA scale already folded into ``B``.

Layering: inference (`rt_middleware.default_model`) and training (`rt_middleware.train`) both build
on this module; it imports neither.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rt_middleware._extras import require
from rt_middleware.errors import ConfigError, TokenSchemaError
from rt_middleware.tokens import RefusalTokenSchema

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "ADAPTER_FILE",
    "MANIFEST_FILE",
    "ArtifactError",
    "apply_artifact",
    "artifact_hash",
    "read_manifest",
    "register_decision_tokens",
    "save_artifact",
]

ADAPTER_FILE = "adapter.safetensors"
MANIFEST_FILE = "manifest.json"
_ROWS_IN = "decision_rows.input"
_ROWS_OUT = "decision_rows.output"


class ArtifactError(ConfigError):
    """The trained artifact is missing, incomplete or does not match the base model."""


def artifact_hash(folder: Path) -> str:
    """Content hash of the adapter and manifest: names the cache folder of a materialised model."""
    digest = hashlib.sha256()
    for name in (MANIFEST_FILE, ADAPTER_FILE):
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"the trained artifact is incomplete: {path} is missing")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def register_decision_tokens(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, schema: RefusalTokenSchema
) -> list[str]:
    """Add the schema's tokens as special tokens and size the embeddings to the new vocabulary.

    Special tokens stay one id, render as their text when decoded with special tokens shown, and
    user text can never produce them (the backends tokenize message text with specials split).
    Tokens that already exist must already be special. Returns the tokens that were added (their
    rows are whatever `resize_token_embeddings` left: the caller sets them).
    """
    existing = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    missing = []
    for token in schema.tokens:
        if token not in existing:
            missing.append(token)
        elif not existing[token]:
            raise TokenSchemaError(f"{token!r} is already in the vocabulary as a non-special token", token=token)
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return missing


def _base_name(peft_name: str) -> str:
    """peft's ``base_model.model.X.lora_A.default.weight`` -> ``X``."""
    name = peft_name.removeprefix("base_model.model.")
    return name.split(".lora_")[0]


def save_artifact(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    schema: RefusalTokenSchema,
    folder: Path,
    manifest: Mapping[str, Any],
) -> Path:
    """Write the LoRA factors of a peft model, the decision rows and the manifest into `folder`."""
    torch = require("torch", extra="train", feature="saving the artifact")
    from safetensors.torch import save_file

    base = model.get_base_model()
    config = model.peft_config["default"]
    scale = config.lora_alpha / config.r
    tensors: dict[str, Any] = {}
    for name, param in model.named_parameters():
        if ".lora_A." in name:
            tensors[f"{_base_name(name)}.lora_A"] = param.detach().to(torch.float16).contiguous()
        elif ".lora_B." in name:
            tensors[f"{_base_name(name)}.lora_B"] = (param.detach() * scale).to(torch.float16).contiguous()
    ids = [tokenizer.convert_tokens_to_ids(tok) for tok in schema.tokens]
    inputs = base.get_input_embeddings().weight
    tensors[_ROWS_IN] = inputs.detach()[ids].float().contiguous()
    outputs = base.get_output_embeddings()
    if outputs is not None and outputs.weight.data_ptr() != inputs.data_ptr():
        tensors[_ROWS_OUT] = outputs.weight.detach()[ids].float().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / ADAPTER_FILE))
    full = {
        **manifest,
        "format": "rt-middleware-lora-v1",
        "tokens": list(schema.tokens),
        "respond_token": schema.respond_token,
        "categories": dict(schema.categories),
        "lora": {"r": config.r, "alpha": config.lora_alpha, "scale_folded_into_B": True},
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ArtifactError(f"the trained artifact is missing its manifest: {path}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"the artifact manifest {path} is corrupt: {exc.msg}") from None
    if manifest.get("format") != "rt-middleware-lora-v1" or not manifest.get("tokens"):
        raise ArtifactError(f"{path} is not an rt-middleware artifact manifest (format rt-middleware-lora-v1)")
    return manifest


def apply_artifact(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> RefusalTokenSchema:
    """Add the artifact's decision tokens to `tokenizer`, set their rows and merge the LoRA deltas."""
    torch = require("torch", extra="hf", feature="the default model")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = read_manifest(folder)
    schema = RefusalTokenSchema(categories=manifest["categories"], respond_token=manifest["respond_token"])
    try:
        tensors = load_file(str(folder / ADAPTER_FILE))
    except (OSError, SafetensorError) as exc:
        raise ArtifactError(f"the trained weights {folder / ADAPTER_FILE} are missing or corrupt: {exc}") from None
    register_decision_tokens(model, tokenizer, schema)
    ids = [tokenizer.convert_tokens_to_ids(tok) for tok in schema.tokens]
    modules = dict(model.named_modules())
    with torch.no_grad():
        inputs = model.get_input_embeddings().weight
        rows = tensors.get(_ROWS_IN)
        if rows is None or tuple(rows.shape) != (len(ids), inputs.shape[1]):
            raise ArtifactError(f"{folder / ADAPTER_FILE}: decision rows do not fit this base model")
        inputs[ids] = rows.to(inputs.dtype)
        if _ROWS_OUT in tensors:
            output = model.get_output_embeddings().weight
            output[ids] = tensors[_ROWS_OUT].to(output.dtype)
        for key, a in tensors.items():
            if not key.endswith(".lora_A"):
                continue
            name = key.removesuffix(".lora_A")
            module = modules.get(name)
            b = tensors.get(f"{name}.lora_B")
            if module is None or b is None or not hasattr(module, "weight"):
                raise ArtifactError(f"{folder / ADAPTER_FILE}: {name} is not a layer of this base model")
            delta = b.float() @ a.float()
            if delta.shape != module.weight.shape:
                raise ArtifactError(f"{folder / ADAPTER_FILE}: {name} has shape {tuple(delta.shape)}, "
                                    f"the base model {tuple(module.weight.shape)}")
            module.weight += delta.to(module.weight.dtype)
    return schema
