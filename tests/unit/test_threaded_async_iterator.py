"""Reading a blocking stream from asyncio: cancelling the reader must end the producer, not leave it running."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from rt_middleware.backends.base import AsyncTextStream, TextStream, ThreadedAsyncIterator


class SlowProducer:
    """A generator that takes `step` seconds per item, as a model takes a forward per token."""

    def __init__(self, items: int = 10_000, step: float = 0.02) -> None:
        self.items, self.step = items, step
        self.produced = 0
        self.closed = threading.Event()

    def __call__(self) -> Iterator[str]:
        try:
            for _ in range(self.items):
                time.sleep(self.step)
                self.produced += 1
                yield "x"
        finally:
            self.closed.set()


def test_cancelling_the_reader_mid_item_closes_the_producer() -> None:
    producer = SlowProducer()

    async def main() -> None:
        chunks = ThreadedAsyncIterator(producer())
        got = []

        async def read() -> None:
            try:
                async for chunk in chunks:
                    got.append(chunk)
            finally:
                await chunks.aclose()

        task = asyncio.create_task(read())
        while len(got) < 3:
            await asyncio.sleep(0.005)
        task.cancel()  # lands while the next item is being produced in its thread
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert producer.closed.is_set()
    stopped_at = producer.produced
    time.sleep(0.1)
    assert producer.produced == stopped_at < 10  # nothing produced after the close


def test_an_error_in_the_abandoned_item_is_not_raised_by_aclose() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        time.sleep(0.05)
        raise RuntimeError("the backend failed after the reader left")

    async def main() -> None:
        chunks = ThreadedAsyncIterator(failing())
        assert await chunks.__anext__() == "a"
        task = asyncio.ensure_future(chunks.__anext__())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await chunks.aclose()

    asyncio.run(main())


def test_async_text_stream_reads_to_the_end_and_reports_why() -> None:
    def chunks() -> Iterator[str]:
        yield "Hello, "
        yield "world. STOP here"
        return "length"

    async def main() -> tuple[list[str], str | None]:
        stream = AsyncTextStream(TextStream(chunks(), stops=("STOP",)))
        out = [c async for c in stream]
        await stream.aclose()
        return out, stream.finish_reason

    out, reason = asyncio.run(main())
    assert "".join(out) == "Hello, world. " and reason == "stop"


def test_a_read_timed_out_then_resumed_loses_nothing() -> None:
    """`wait_for(it.__anext__(), t)` then reading on (a heartbeat loop): the item being produced when
    the read timed out is the next one read, and closing afterwards still works."""
    producer = SlowProducer(items=4, step=0.1)

    async def main() -> list[str]:
        chunks = ThreadedAsyncIterator(producer())
        got = []
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(chunks.__anext__(), 0.02)
        got.append(await chunks.__anext__())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(chunks.__anext__(), 0.02)
        await chunks.aclose()
        return got

    assert asyncio.run(main()) == ["x"]
    assert producer.closed.is_set() and producer.produced == 2
