"""`GenerationThreads`: the long-lived threads `HFBackend` generates on (no model needed)."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("transformers")

from rt_middleware.backends._hf_generation import GenerationThreads


def test_at_most_limit_run_at_once_and_the_rest_wait_in_order() -> None:
    threads = GenerationThreads(2, "t")
    release = threading.Event()
    running: list[int] = []
    order: list[int] = []
    peak: list[int] = []
    starts: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with lock:
            running.append(i)
            starts.append(i)
            peak.append(len(running))
        release.wait(5)
        with lock:
            running.remove(i)
            order.append(i)

    jobs = [threads.submit(lambda i=i: work(i)) for i in range(5)]
    time.sleep(0.2)
    assert sorted(running) == [0, 1] and [j.started for j in jobs] == [True, True, False, False, False]
    release.set()
    for job in jobs:
        job.wait()
    assert max(peak) == 2 and sorted(order) == list(range(5)) and starts[2:] == [2, 3, 4]
    assert threads.threads == 2


def test_a_queued_job_cancelled_never_runs() -> None:
    threads = GenerationThreads(1, "t")
    release = threading.Event()
    ran: list[str] = []
    first = threads.submit(lambda: (release.wait(5), ran.append("first")))
    second = threads.submit(lambda: ran.append("second"))
    assert second.cancel() and not first.cancel()  # queued vs running
    second.wait()  # returns at once: cancelled
    release.set()
    first.wait()
    time.sleep(0.1)
    assert ran == ["first"]


def test_a_job_waiting_for_itself_does_not_hang() -> None:
    """A stream finalised by the garbage collector inside its own generation thread waits on its job."""
    threads = GenerationThreads(1, "t")
    box: dict[str, object] = {}
    started = threading.Event()

    def work() -> None:
        started.wait(5)
        box["job"].wait()  # type: ignore[attr-defined]
        box["returned"] = True

    box["job"] = threads.submit(work)
    started.set()
    box["job"].wait()  # type: ignore[attr-defined]
    assert box.get("returned") is True


def test_the_most_recently_idle_thread_takes_the_next_job_and_idle_threads_end() -> None:
    threads = GenerationThreads(4, "t", idle_seconds=0.5)
    gate = threading.Barrier(4)
    burst = [threads.submit(lambda: gate.wait(5)) for _ in range(4)]
    for job in burst:
        job.wait()
    assert threads.threads == 4
    names = []
    for _ in range(5):
        job = threads.submit(lambda: names.append(threading.current_thread().name))
        job.wait()
    assert len(set(names)) == 1
    time.sleep(1.5)
    assert threads.threads == 0
    assert threads.submit(lambda: names.append("again")).wait() is None and names[-1] == "again"


def test_a_failing_job_keeps_its_thread_alive() -> None:
    threads = GenerationThreads(1, "t")
    threads.submit(lambda: 1 / 0).wait()
    done: list[bool] = []
    threads.submit(lambda: done.append(True)).wait()
    assert done == [True] and threads.threads == 1
