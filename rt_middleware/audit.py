"""Decision audit trail: one record per decision, to a JSONL file or a callable.

A record holds the decision (tenant, requested tenant, action, category, reason, probabilities,
policy version), the latency, the model name and ``prompt_sha256``: the SHA-256 of the decided
messages as compact JSON, ``[["role", "text"], ...]`` (`prompt_sha256`). The prompt's text is
recorded only with ``include_text=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rt_middleware.decision import Decision
from rt_middleware.errors import ConfigError
from rt_middleware.messages import ChatMessage

__all__ = ["DecisionAudit", "as_audit", "prompt_sha256"]

logger = logging.getLogger(__name__)

AuditSink = Callable[[dict[str, Any]], Any]


def prompt_sha256(messages: Sequence[ChatMessage]) -> str:
    """Hex SHA-256 of ``json.dumps([[role, content], ...], ensure_ascii=False, separators=(",", ":"))``."""
    blob = json.dumps([[m.role, m.content] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class DecisionAudit:
    """Thread-safe decision recorder.

    `sink`: a path (records are appended as JSON lines, flushed per record) or a callable that
    receives each record dict. A failing sink is logged at ERROR on ``rt_middleware.audit`` and
    never fails the request.
    """

    def __init__(self, sink: str | os.PathLike[str] | AuditSink, *, include_text: bool = False) -> None:
        self.include_text = include_text
        self._lock = threading.Lock()
        self._file: Any = None
        if callable(sink):
            self._path: Path | None = None
            self._call: AuditSink | None = sink
        elif isinstance(sink, str | os.PathLike):
            self._path = Path(sink)
            self._call = None
        else:
            raise ConfigError(f"audit sink must be a file path or a callable, got {type(sink).__name__}")

    @property
    def path(self) -> Path | None:
        return self._path

    def make_record(
        self,
        decision: Decision,
        messages: Sequence[ChatMessage],
        *,
        latency_ms: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "ts": time.time(),
            "tenant": decision.tenant,
            "requested_tenant": decision.requested_tenant,
            "action": decision.action,
            "category": decision.category,
            "reason": decision.reason,
            "route": decision.route,
            "threshold": decision.threshold,
            "probabilities": dict(decision.probabilities),
            "policy_version": decision.policy_version,
            "latency_ms": latency_ms,
            "prompt_sha256": prompt_sha256(messages),
            **fields,
        }
        if decision.extras:
            record["extras"] = dict(decision.extras)
        if self.include_text:
            record["prompt"] = [{"role": m.role, "content": m.content} for m in messages]
        return record

    def record(self, decision: Decision, messages: Sequence[ChatMessage], **fields: Any) -> None:
        record = self.make_record(decision, messages, **fields)
        try:
            with self._lock:
                if self._call is not None:
                    self._call(record)
                    return
                if self._file is None:
                    assert self._path is not None
                    self._file = self._path.open("a", encoding="utf-8")
                self._file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                self._file.flush()
        except Exception as exc:
            logger.error("decision audit sink failed: %s: %s", type(exc).__name__, str(exc)[:200])

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __repr__(self) -> str:
        target = self._path if self._path is not None else getattr(self._call, "__name__", "callable")
        return f"DecisionAudit({target!s}, include_text={self.include_text})"


def as_audit(value: DecisionAudit | str | os.PathLike[str] | AuditSink | Mapping[str, Any] | None) -> DecisionAudit | None:
    """None, a DecisionAudit, a path or a callable -> DecisionAudit | None."""
    if value is None or isinstance(value, DecisionAudit):
        return value
    if isinstance(value, Mapping):
        raise ConfigError("audit must be a file path, a callable or a DecisionAudit, not a mapping")
    return DecisionAudit(value)
