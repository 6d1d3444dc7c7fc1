"""`GenerationThreads`: the long-lived threads `HFBackend` generates on (no model needed)."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest

pytest.importorskip("transformers")

from rt_middleware.backends._hf_generation import GenerationThreads


def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll instead of sleeping a guessed time: a loaded 2-core machine stalls threads."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_at_most_limit_run_at_once_and_the_rest_wait_in_order() -> None:
    threads = GenerationThreads(2, "t")
    release = threading.Event()
    lock = threading.Lock()
    running: set[int] = set()
    peak: list[int] = []

    def work(i: int) -> None:
        with lock:
            running.add(i)
            peak.append(len(running))
        release.wait(10)
        with lock:
            running.discard(i)

    jobs = [threads.submit(lambda i=i: work(i)) for i in range(5)]
    assert eventually(lambda: running == {0, 1})
    assert [j.started for j in jobs] == [True, True, False, False, False]
    assert list(threads._pending) == jobs[2:]  # first come, first served
    release.set()
    for job in jobs:
        job.wait()
    assert max(peak) == 2 and all(j.started for j in jobs) and threads.threads == 2


def test_a_queued_job_cancelled_never_runs_and_lets_go_of_its_work() -> None:
    threads = GenerationThreads(1, "t")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    class Cache:  # stands for the KV cache a queued answer holds
        pass

    cache = Cache()
    alive = weakref.ref(cache)
    first = threads.submit(lambda: (started.set(), release.wait(10), ran.append("first")))
    assert started.wait(10)
    second = threads.submit(lambda cache=cache: ran.append(f"second {cache}"))
    del cache
    assert not first.cancel() and second.cancel()  # running vs queued
    second.wait()  # returns at once: cancelled
    gc.collect()
    assert alive() is None
    release.set()
    first.wait()
    assert eventually(lambda: threads._idle != [])
    assert ran == ["first"]


def test_a_job_waiting_for_itself_does_not_hang() -> None:
    """A stream finalised by the garbage collector inside its own generation thread waits on its job."""
    threads = GenerationThreads(1, "t")
    box: dict[str, object] = {}
    submitted = threading.Event()

    def work() -> None:
        submitted.wait(10)
        box["job"].wait()  # type: ignore[attr-defined]
        box["returned"] = True

    box["job"] = threads.submit(work)
    submitted.set()
    box["job"].wait()  # type: ignore[attr-defined]
    assert box.get("returned") is True


def test_the_most_recently_idle_thread_takes_the_next_job_and_idle_threads_end() -> None:
    threads = GenerationThreads(4, "t", idle_seconds=0.5)
    gate = threading.Barrier(4)
    burst = [threads.submit(lambda: gate.wait(10)) for _ in range(4)]
    for job in burst:
        job.wait()
    assert threads.threads == 4
    names = []
    for _ in range(5):
        threads.submit(lambda: names.append(threading.current_thread().name)).wait()
    assert len(set(names)) == 1, names
    assert eventually(lambda: threads.threads == 0)
    threads.submit(lambda: names.append("again")).wait()
    assert names[-1] == "again" and threads.threads == 1


def test_a_failing_job_keeps_its_thread() -> None:
    threads = GenerationThreads(1, "t")
    threads.submit(lambda: 1 / 0).wait()
    done: list[bool] = []
    threads.submit(lambda: done.append(True)).wait()
    assert done == [True] and threads.threads == 1


def test_stop_all_stops_running_jobs_and_drops_queued_ones() -> None:
    threads = GenerationThreads(1, "t")
    stop = threading.Event()
    started = threading.Event()
    ran: list[str] = []
    running = threads.submit(lambda: (started.set(), stop.wait(10), ran.append("stopped")), stop.set)
    assert started.wait(10)
    queued = threads.submit(lambda: ran.append("queued"))
    threads.stop_all(timeout=5)
    assert stop.is_set() and ran == ["stopped"] and running.started and not queued.started
    late = threads.submit(lambda: ran.append("late"))
    late.wait()
    assert ran == ["stopped"]  # a closed pool takes no more work


def test_a_thread_that_cannot_start_is_not_counted(monkeypatch) -> None:
    threads = GenerationThreads(1, "t")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError):
        threads.submit(lambda: None)
    monkeypatch.undo()
    assert threads.threads == 0
    done: list[bool] = []
    threads.submit(lambda: done.append(True)).wait()
    assert done == [True]
