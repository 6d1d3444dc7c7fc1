"""transformers generation plumbing for `HFBackend`: streamer, stopping criterion, seeded sampling.

Imports torch and transformers at module level, so `HFBackend` imports it only after checking
the ``hf`` extra. Each class is defined once here and instantiated per request.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria, TextIteratorStreamer

from rt_middleware.backends.base import check_deadline

__all__ = ["GenerationJob", "GenerationThreads", "Interrupt", "SeededSampling", "TokenStreamer", "install_deadline_hooks"]

logger = logging.getLogger(__name__)


class _RustDecoder:
    """``tokenizer.decode`` for the streamer, straight through a Rust tokenizer: transformers'
    ``decode`` adds ~5 µs of argument handling per call, and the streamer decodes every token."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def decode(self, ids: int | list[int], skip_special_tokens: bool = True, **_: Any) -> str:
        # transformers' streamer passes ONE id after a newline (to measure the kept context token)
        return self._backend.decode([ids] if isinstance(ids, int) else ids, skip_special_tokens=skip_special_tokens)


class TokenStreamer(TextIteratorStreamer):
    """`TextIteratorStreamer` that also counts the new tokens, drops end-of-turn ids from the
    text, skips empty chunks and hands a generation error to the consuming thread (`fail`).

    `rust_backend`: a (private) copy of a fast tokenizer's Rust backend to decode with; only
    equivalent to ``tokenizer.decode`` when the tokenizer does not clean up spaces.
    """

    def __init__(self, tokenizer: Any, eos_ids: Iterable[int], rust_backend: Any = None) -> None:
        if rust_backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
            tokenizer = _RustDecoder(rust_backend)
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.eos_ids = frozenset(eos_ids)
        self.n_tokens = 0
        """New tokens generated so far (end-of-turn ids included)."""
        self.ended_on_eos = False

    def put(self, value: Any) -> None:
        if self.next_tokens_are_prompt:  # generate() first echoes the prompt; the base skips it
            super().put(value)
            return
        ids = value.reshape(-1).tolist()
        self.n_tokens += len(ids)
        if self.eos_ids.isdisjoint(ids):
            super().put(value)
            return
        self.ended_on_eos = True
        kept = [i for i in ids if i not in self.eos_ids]
        if kept:
            super().put(torch.tensor(kept))

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text or stream_end:
            super().on_finalized_text(text, stream_end)

    def fail(self, exc: BaseException) -> None:
        """Called from the generating thread: the consumer raises `exc` at its next chunk."""
        self.text_queue.put(exc)

    def __next__(self) -> str:
        value = super().__next__()
        if isinstance(value, BaseException):
            raise value
        return value


class Interrupt(StoppingCriteria):
    """Ends generation when the consumer goes away (`cancelled`) or the deadline passes (`timed_out`).

    Returns its bool tensor on ``input_ids.device``: transformers ORs it with its own flags on
    the model's device, and a CPU tensor there fails on CUDA.
    """

    def __init__(self, deadline: float | None) -> None:
        self.cancelled = threading.Event()
        self.deadline = deadline
        self.timed_out = False
        self._flags: dict[tuple[Any, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if self.deadline is not None and not self.timed_out and time.monotonic() >= self.deadline:
            self.timed_out = True
        key = (input_ids.device, input_ids.shape[0])
        flags = self._flags.get(key)
        if flags is None:  # two constant tensors per device: no allocation per token
            flags = tuple(  # type: ignore[assignment]
                torch.full((input_ids.shape[0],), v, dtype=torch.bool, device=input_ids.device)
                for v in (False, True)
            )
            self._flags[key] = flags  # type: ignore[assignment]
        return flags[self.timed_out or self.cancelled.is_set()]  # type: ignore[index,return-value]


class SeededSampling(LogitsProcessor):
    """Samples the next token with this request's own `torch.Generator` and masks every other id,
    so greedy selection returns the sample. No process-wide RNG state: the same seed gives the
    same tokens whatever other threads do. Put after the temperature / top-p warpers."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.generator is None:
            self.generator = torch.Generator(device=scores.device)
            if self.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.seed)
        probs = torch.softmax(scores.float(), dim=-1)
        choice = torch.multinomial(probs, num_samples=1, generator=self.generator)
        masked = torch.full_like(scores, float("-inf"))
        return masked.scatter_(1, choice, 0.0)  # type: ignore[return-value]


def _deadline_hook(module: Any, args: Any) -> None:
    check_deadline("the forward pass")


def install_deadline_hooks(model: Any, checkpoints: int = 4) -> int:
    """Check the request's deadline before the first decoder layer and at up to `checkpoints`
    evenly spaced layers in all (once per model; returns how many layers check).

    A prefill or a generation step is interrupted at the next checkpoint after its deadline;
    the layers between two checkpoints are never interrupted. Few checkpoints keep the cost per
    token small (each hooked layer leaves torch's fast call path: ~10 µs on CPU).
    """
    if getattr(model, "_rt_deadline_hooks", None) is not None:
        return int(model._rt_deadline_hooks)
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    step = max(1, -(-len(layers) // checkpoints))
    hooked = layers[::step]
    for layer in hooked:
        layer.register_forward_pre_hook(_deadline_hook)
    model._rt_deadline_hooks = len(hooked)
    return len(hooked)


def _nothing() -> None:
    return None


class GenerationJob:
    """One `generate` call handed to `GenerationThreads`: queued, running, then done (or cancelled
    while still queued, which also lets go of everything the call would have used)."""

    def __init__(self, run: Callable[[], None], stop: Callable[[], None] = _nothing) -> None:
        self._run = run
        self.stop = stop
        """Asks a running job to end early (at interpreter exit)."""
        self._lock = threading.Lock()
        self._queued = True
        self._done = threading.Event()
        self.thread: threading.Thread | None = None
        """The thread running it, once taken."""

    @property
    def started(self) -> bool:
        return not self._queued

    def cancel(self) -> bool:
        """Drop the job if no thread has taken it yet (True); a taken job runs on."""
        with self._lock:
            if not self._queued or self._done.is_set():
                return False
            self._run = self.stop = _nothing  # its KV cache and streamer go now, not when dequeued
            self._done.set()
            return True

    def wait(self, timeout: float | None = None) -> None:
        """Until the job has finished or was cancelled. A no-op in the job's own thread: a stream
        the garbage collector finalises there must not wait for itself."""
        if self.thread is not threading.current_thread():
            self._done.wait(timeout)

    def _execute(self) -> None:
        with self._lock:
            if self._done.is_set():  # cancelled while queued
                return
            self._queued, self.thread = False, threading.current_thread()
        try:
            self._run()
        except BaseException:  # `_run` hands its errors to the consumer; anything else is a bug to log
            logger.exception("a generation job failed")

    def _finish(self) -> None:
        self._run = self.stop = _nothing
        self._done.set()


class GenerationThreads:
    """Long-lived daemon threads for `generate` calls, at most `limit` at once (more wait, first
    come first served).

    Why not a thread per request: CUDA libraries keep per-thread state (cuBLAS handles and
    workspaces, cuDNN graphs) that a new thread builds again. Why not `ThreadPoolExecutor`: its idle
    threads take work in turn, so after a burst even one request at a time cycles through every
    thread; here the most recently idle thread takes the next job (it is idle again before its
    last job counts as done). At interpreter exit (`stop_all`), queued jobs are dropped and running
    ones asked to stop (`GenerationJob.stop`) and given a few seconds: the threads are daemons, so
    a generation whose consumer is gone does not hold the process, and none is cut off inside a
    torch kernel (which aborts the process). A thread idle for `idle_seconds` ends.
    """

    def __init__(self, limit: int, name: str, idle_seconds: float = 300.0) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit, self._name, self._idle_seconds = limit, name, idle_seconds
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[GenerationJob]] = []  # inboxes, the most recently idle last
        self._pending: deque[GenerationJob] = deque()
        self._assigned: set[GenerationJob] = set()  # handed to a thread, not finished
        self._threads = 0
        self._started = 0
        self._closed = False
        _ALL_THREADS.add(self)

    @property
    def threads(self) -> int:
        """Threads alive now."""
        return self._threads

    def submit(self, run: Callable[[], None], stop: Callable[[], None] = _nothing) -> GenerationJob:
        job = GenerationJob(run, stop)
        with self._lock:
            if self._closed:
                job.cancel()
            elif self._idle:
                self._assigned.add(job)
                self._idle.pop().put(job)
            elif self._threads < self._limit:
                inbox: queue.SimpleQueue[GenerationJob] = queue.SimpleQueue()
                inbox.put(job)
                thread = threading.Thread(target=self._work, args=(inbox,), name=f"{self._name}-{self._started + 1}",
                                          daemon=True)
                thread.start()  # raises when no thread can be started: nothing was counted yet
                self._threads += 1
                self._started += 1
                self._assigned.add(job)
            else:
                self._pending.append(job)
        return job

    def _work(self, inbox: queue.SimpleQueue[GenerationJob]) -> None:
        while True:
            try:
                job: GenerationJob | None = inbox.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:  # nobody handed it a job meanwhile: end
                        self._idle.remove(inbox)
                        self._threads -= 1
                        return
                continue  # a job was put in the inbox under the lock just now
            while job is not None:
                job._execute()
                done, job = job, None
                with self._lock:
                    self._assigned.discard(done)
                    while self._pending and not self._closed:
                        waiting = self._pending.popleft()
                        if not waiting._done.is_set():  # skip the ones cancelled while they waited
                            job = waiting
                            self._assigned.add(job)
                            break
                    if job is None:
                        self._idle.append(inbox)
                done._finish()

    def stop_all(self, timeout: float) -> None:
        """Take no more jobs, drop the queued ones, ask the running ones to stop, wait up to
        `timeout` seconds for them."""
        with self._lock:
            self._closed = True
            for job in self._pending:
                job.cancel()
            self._pending.clear()
            assigned = list(self._assigned)
        for job in assigned:
            if not job.cancel():
                job.stop()
        end = time.monotonic() + timeout
        for job in assigned:
            job.wait(max(end - time.monotonic(), 0.0))


_ALL_THREADS: weakref.WeakSet[GenerationThreads] = weakref.WeakSet()


@atexit.register
def _stop_generations_at_exit() -> None:
    end = time.monotonic() + 5.0
    for threads in list(_ALL_THREADS):
        threads.stop_all(timeout=max(end - time.monotonic(), 0.0))
