"""The SFT loop: full or LoRA fine-tuning with the decision-token rows trainable.

Plain PyTorch (no transformers Trainer) so the same loop runs a 135M model on 2 CPU cores and an
8B one on a GPU, with resumable checkpoints and the first-token loss weighted on its own.

8B GPU recipe. The paper fine-tuned Llama-3-8B (base) fully with the Zephyr SFT defaults: lr 2e-5,
cosine schedule, warmup 0.1, 1 epoch, max length 2048, bf16. This loop does not shard optimizer
state across GPUs, so on ONE 80 GB card train LoRA with the decision rows fully trainable::

    rt train --model /models/Meta-Llama-3-8B --data mix.jsonl --out runs/llama3-8b --lora \
        --lora-r 64 --lora-alpha 128 --lr 1e-4 --epochs 1 --batch-size 8 --grad-accum 16 \
        --warmup-ratio 0.1 --max-length 2048 --max-response-tokens 1024 --dtype bfloat16 --device cuda

``--full --lr 2e-5`` is the paper's setting; for 8B it needs ~16 bytes per parameter of GPU memory
(float32 master weights, gradients, AdamW state), i.e. several GPUs with sharding (e.g. accelerate
+ FSDP).

Precision (`TrainConfig.dtype`). ``float32`` trains in full precision. With ``bfloat16`` or
``float16`` the forward and backward run under ``torch.autocast`` in that dtype while every tensor
the optimizer updates stays float32 (LoRA: the factors and the two decision-row matrices; full: all
weights, as master weights); LoRA keeps the frozen base weights in the low dtype to save memory.
The loss is computed in float32; ``float16`` adds a gradient scaler. The trained model comes back
in the requested dtype (LoRA factors stay float32; the artifact stores them as fp16, the rows as
float32), so it saves and loads like any model of that dtype.

The learning rate follows ``transformers.get_cosine_schedule_with_warmup`` (as the HF Trainer used
by the Zephyr recipe does): linear warm-up from 0, then cosine decay to 0.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rt_middleware._extras import require
from rt_middleware.errors import ConfigError
from rt_middleware.tokens import ResolvedTokens
from rt_middleware.train.sft import IGNORE_INDEX, SFTExample

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["TrainConfig", "TrainResult", "decision_accuracy", "train"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(BaseModel):
    """Hyperparameters of one run; stored in every checkpoint and in the manifest."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["lora", "full"] = "lora"
    lr: float = Field(default=5e-4, gt=0)
    """Peak learning rate (LoRA factors, or every weight with `full`)."""
    embedding_lr: float | None = Field(default=None, gt=0)
    """Learning rate of the decision-token rows; None uses `lr`."""
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    """Stop after this many optimizer steps (overrides `epochs`)."""
    batch_size: int = Field(default=8, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    first_token_weight: float = Field(default=1.0, ge=0)
    """Weight of the control-token loss, averaged on its own beside the mean response-token loss."""
    lora_r: int = Field(default=16, gt=0)
    lora_alpha: int = Field(default=32, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0
    checkpoint_every: int = Field(default=50, gt=0)
    threads: int | None = Field(default=None, gt=0)
    """torch CPU threads; None keeps torch's default."""
    device: str | None = None
    """Where to train ('cpu', 'cuda', 'cuda:1', 'mps'); None keeps the model where it is."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute dtype (see the module docstring: autocast, float32 trainable tensors)."""


@dataclass
class TrainResult:
    """The trained (unmerged, for LoRA) model and what happened."""

    model: Any
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
    learning_rates: list[float] = field(default_factory=list)
    """Learning rate of the first parameter group at each step run (not before a resume)."""


def _collate(torch: Any, batch: Sequence[SFTExample], pad_id: int, device: Any = "cpu") -> dict[str, Any]:
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    control = torch.tensor([e.control_position for e in batch])
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    tensors = {"input_ids": ids, "labels": labels, "attention_mask": mask, "control": control}
    return {name: value.to(device) for name, value in tensors.items()}


def _loss(torch: Any, logits: Any, batch: dict[str, Any], weight: float) -> tuple[Any, float]:
    """(control-token CE * weight + mean CE of the other response tokens, control CE)."""
    shifted = logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(targets.shape)
    rows = torch.arange(targets.shape[0], device=targets.device)
    control_ce = ce[rows, batch["control"] - 1]
    rest = targets != IGNORE_INDEX
    rest[rows, batch["control"] - 1] = False
    loss = control_ce.mean() * weight
    if rest.any():
        loss = loss + ce[rest].mean()
    return loss, float(control_ce.detach().mean())


def _decision_matrices(model: Any) -> list[Any]:
    """The input embedding and, when present, the output matrix (once if they are tied)."""
    modules = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None and not any(module.weight is m.weight for m in modules):
            modules.append(module)
    return modules


def _mark_decision_rows(torch: Any, model: Any, ids: Sequence[int]) -> list[Any]:
    """Make the embedding (and untied output) matrices trainable on the decision rows only.

    The matrices become float32 so small updates to the rows are not rounded away in a low dtype.
    """
    keep = sorted(set(ids))
    params = []
    for module in _decision_matrices(model):
        _cast_parameters(module, torch.float32)
        weight = module.weight
        weight.requires_grad_(True)
        mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
        mask[keep] = 1
        weight.register_hook(lambda grad, m=mask: grad * m)
        params.append(weight)
    return params


def _place(torch: Any, model: Any, config: TrainConfig) -> tuple[Any, Any]:
    """Move the model to its device and storage dtype; return (device, compute dtype).

    Full fine-tuning keeps float32 master weights whatever the compute dtype; LoRA stores the
    frozen base in the compute dtype.
    """
    device = torch.device(config.device) if config.device else next(model.parameters()).device
    compute = getattr(torch, config.dtype)
    model.to(device)
    _cast_parameters(model, torch.float32 if config.method == "full" else compute)
    return device, compute


def _cast_parameters(model: Any, dtype: Any) -> None:
    """Cast floating-point parameters only: `model.to(dtype)` would also round float32 buffers
    such as the rotary ``inv_freq``, which transformers keeps in float32 in every dtype."""
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)


def _prepare(model: PreTrainedModel, config: TrainConfig, tokens: ResolvedTokens) -> tuple[Any, list[dict]]:
    """Wrap with LoRA (or not) and return the model plus optimizer parameter groups."""
    torch = require("torch", extra="train", feature="rt train")
    embedding_lr = config.embedding_lr or config.lr
    if config.method == "full":
        model.requires_grad_(True)
        return model, [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
    peft = require("peft", extra="train", feature="LoRA training")
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise ConfigError(f"LoRA found none of {LORA_TARGETS} in this model; use --full")
    lora = peft.LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets, bias="none", task_type="CAUSAL_LM",
    )
    wrapped = peft.get_peft_model(model, lora, autocast_adapter_dtype=True)
    rows = _mark_decision_rows(torch, wrapped.get_base_model(), list(tokens.ids.values()))
    lora_params = [p for n, p in wrapped.named_parameters() if p.requires_grad and "lora_" in n]
    for param in lora_params:  # peft already does this for bf16/fp16 bases; make it explicit
        param.data = param.data.float()
    # no decay on the embedding matrices: AdamW's decoupled decay would shrink every row, not only
    # the decision rows the gradient mask lets train (and the artifact stores only those rows)
    return wrapped, [{"params": lora_params, "lr": config.lr},
                     {"params": rows, "lr": embedding_lr, "weight_decay": 0.0}]


def _batch_order(examples: Sequence[SFTExample], batch_size: int, batches: int, seed: int) -> list[list[int]]:
    """Seeded shuffled batches of similar lengths (less padding: ~30% less compute on mixed data).

    Each epoch is shuffled, cut into pools of 32 batches, each pool sorted by length and cut into
    batches, and the batches shuffled again.
    """
    rng = random.Random(seed)
    order: list[list[int]] = []
    pool = batch_size * 32
    while len(order) < batches:
        epoch = list(range(len(examples)))
        rng.shuffle(epoch)
        chunked = []
        for at in range(0, len(epoch), pool):
            part = sorted(epoch[at : at + pool], key=lambda i: len(examples[i].input_ids))
            chunked.extend(part[k : k + batch_size] for k in range(0, len(part), batch_size))
        rng.shuffle(chunked)
        order.extend(chunked)
    return order[:batches]


def _finish(torch: Any, model: Any, config: TrainConfig) -> None:
    """Return the trained model in the requested dtype (LoRA factors stay float32)."""
    compute = getattr(torch, config.dtype)
    if compute == torch.float32:
        return
    if config.method == "full":
        _cast_parameters(model, compute)
        return
    for module in _decision_matrices(model.get_base_model()):
        _cast_parameters(module, compute)


def _trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step-*/state.pt"), key=lambda p: int(p.parent.name[5:]))
    return found[-1] if found else None


def train(
    model: PreTrainedModel,
    examples: Sequence[SFTExample],
    tokens: ResolvedTokens,
    config: TrainConfig,
    *,
    out: Path,
    pad_id: int,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train on `examples`, checkpointing into ``out/checkpoints``; resumes from the latest one.
    `config.threads` holds for this call only: torch's thread count is restored afterwards."""
    torch = require("torch", extra="train", feature="rt train")
    transformers = require("transformers", extra="train", feature="rt train")
    from tqdm.auto import tqdm

    if not examples:
        raise ConfigError("no training examples (all rows were too long or the data is empty)")
    with _torch_threads(torch, config.threads):
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        device, compute = _place(torch, model, config)
        model, groups = _prepare(model, config, tokens)
        model.train()
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, betas=(0.9, 0.95))
        per_step = config.batch_size * config.grad_accum
        total = config.max_steps or max(1, math.ceil(len(examples) * config.epochs / per_step))
        warmup = int(total * config.warmup_ratio)
        scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, warmup, total)
        scaler = torch.amp.GradScaler(device.type, enabled=compute == torch.float16)
        order = _batch_order(examples, config.batch_size, total * config.grad_accum, config.seed)
        start, losses = 0, []
        if not resume:  # a restart must not trip over (or later resume from) an older run's steps
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        checkpoint = _latest_checkpoint(out)  # none after a restart's clearing
        if checkpoint is not None:
            start, losses = _load_checkpoint(torch, checkpoint, model, optimizer, scheduler, scaler, config)
        began = time.monotonic()
        learning_rates = []
        bar = tqdm(total=total, initial=start, desc="training", unit="step", disable=not progress, dynamic_ncols=True)
        for step in range(start, total):
            learning_rates.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad(set_to_none=True)
            step_loss = step_control = 0.0
            for micro in range(config.grad_accum):
                chunk = [examples[i] for i in order[step * config.grad_accum + micro]]
                batch = _collate(torch, chunk, pad_id, device)
                with torch.autocast(device.type, dtype=compute, enabled=compute != torch.float32):
                    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss, control = _loss(torch, logits, batch, config.first_token_weight)  # float32
                scaler.scale(loss / config.grad_accum).backward()
                step_loss += float(loss.detach()) / config.grad_accum
                step_control += control / config.grad_accum
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", first_token=f"{step_control:.3f}")
            done = step + 1
            if done % config.checkpoint_every == 0 and done < total:
                _save_checkpoint(torch, model, optimizer, scheduler, scaler, out, done, losses, config)
        bar.close()
        _finish(torch, model, config)
        model.eval()
        return TrainResult(
            model=model, steps=total, seconds=time.monotonic() - began, losses=losses, resumed_from=start,
            learning_rates=learning_rates,
        )


@contextlib.contextmanager
def _torch_threads(torch: Any, threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to `threads` (None: left alone) for the block, then restored."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_RESUME_MAY_CHANGE = frozenset({"threads", "device", "checkpoint_every"})
"""Settings a resumed run may change: they do not change what is computed."""


def _check_same_settings(saved: dict[str, Any] | None, config: TrainConfig, path: Path) -> None:
    """A resumed run continues the checkpoint's optimiser, schedule and weights: other settings now
    would be silently ignored (lr) or crash (LoRA rank, full vs LoRA) part-way."""
    if saved is None:  # written before checkpoints recorded their settings
        return
    now = config.model_dump()
    changed = [f"{key} {saved[key]!r} -> {now[key]!r}" for key in now
               if key not in _RESUME_MAY_CHANGE and key in saved and saved[key] != now[key]]
    if changed:
        raise ConfigError(
            f"cannot resume from {path}: it was trained with other settings ({'; '.join(changed)}); "
            "train with --restart, or with the checkpoint's settings"
        )


def _load_checkpoint(
    torch: Any, path: Path, model: Any, optimizer: Any, scheduler: Any, scaler: Any, config: TrainConfig
) -> tuple[int, list[float]]:
    """Restore a checkpoint written by `_save_checkpoint`; returns (step, losses so far).

    Only tensors and plain containers are unpickled (``weights_only=True``): a checkpoint file
    cannot run code.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for foreign objects, RuntimeError for corrupt files
        raise ConfigError(
            f"cannot resume from {path}: it is not a tensors-only checkpoint written by rt train ({exc}); "
            "delete it or train with --restart"
        ) from None
    _check_same_settings(state.get("config"), config, path)
    with torch.no_grad():
        named = dict(model.named_parameters())
        for name, value in state["trainable"].items():
            named[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    start = int(state["step"])
    if "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    else:  # written before the schedule was saved: recompute it at `start`
        scheduler.last_epoch = start
        for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
            group["lr"] = base * fn(start)
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return start, list(state["losses"])


def _save_checkpoint(
    torch: Any, model: Any, optimizer: Any, scheduler: Any, scaler: Any, out: Path, step: int,
    losses: list[float], config: TrainConfig,
) -> None:
    """Write step-N atomically, then drop older checkpoints (one is enough to resume)."""
    folder = out / "checkpoints"
    tmp = folder / f".step-{step}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "trainable": _trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "step": step,
            "losses": losses,
            "config": config.model_dump(),
        },
        tmp / "state.pt",
    )
    (tmp / "config.json").write_text(json.dumps(config.model_dump(), indent=2))
    final = folder / f"step-{step}"
    tmp.rename(final)
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def decision_accuracy(
    model: Any, examples: Sequence[SFTExample], tokens: ResolvedTokens, *, batch_size: int = 16
) -> dict[str, float]:
    """Share of examples whose most probable decision token is the trained one, share whose
    refuse-or-respond side is right, and the mean probability of the trained token."""
    torch = require("torch", extra="train", feature="rt train")
    ids = list(tokens.ids.values())
    respond = tokens.id_for("respond")
    hits, sides, prob = 0, 0, 0.0
    model.eval()
    with torch.inference_mode():
        for at in range(0, len(examples), batch_size):
            chunk = examples[at : at + batch_size]
            batch = _collate(torch, chunk, 0, next(model.parameters()).device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            rows = logits[torch.arange(len(chunk), device=logits.device), batch["control"] - 1].float().softmax(-1)
            for row, example in zip(rows, chunk, strict=True):
                target = example.input_ids[example.control_position]
                predicted = ids[int(row[ids].argmax())]
                hits += int(predicted == target)
                sides += int((predicted == respond) == (target == respond))
                prob += float(row[target])
    n = max(1, len(examples))
    return {"accuracy": hits / n, "refuse_or_respond_accuracy": sides / n, "target_probability": prob / n}
