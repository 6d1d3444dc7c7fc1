"""Pure helpers of the llama.cpp backend and the GGUF exporter (no model, no llama.cpp)."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from rt_middleware.backends.llamacpp import _Generation, _Lease, _Pool
from rt_middleware.errors import BackendTimeoutError, ConfigError
from rt_middleware.gguf_export import llama_cpp_pre_tokenizer, permute_rotary

BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def test_permute_rotary_interleaves_each_head_halves() -> None:
    # HF keeps (x0, x1 | y0, y1) per head; llama.cpp wants (x0, y0, x1, y1)
    rows = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    out = permute_rotary(rows, n_heads=2)
    assert out[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert out.shape == rows.shape


def test_permute_rotary_keeps_every_row_once() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(12, 5))
    out = permute_rotary(weight, n_heads=3)
    assert sorted(map(tuple, out.round(12))) == sorted(map(tuple, weight.round(12)))


@pytest.mark.parametrize(
    ("pre", "name"),
    [
        (BYTE_LEVEL, "gpt-2"),
        ({"type": "ByteLevel", "add_prefix_space": False}, "gpt-2"),
        (
            {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL]},
            "smollm",
        ),
    ],
)
def test_pre_tokenizer_maps_only_exact_equivalents(pre: dict, name: str) -> None:
    assert llama_cpp_pre_tokenizer(pre) == name


@pytest.mark.parametrize(
    "pre",
    [
        None,
        {**BYTE_LEVEL, "add_prefix_space": True},
        {**BYTE_LEVEL, "use_regex": False},
        {"type": "Metaspace", "replacement": "▁"},
        {"type": "Whitespace"},
        {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, BYTE_LEVEL]},
        {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "x"}}, BYTE_LEVEL]},
    ],
)
def test_pre_tokenizer_refuses_what_it_cannot_map(pre: dict | None) -> None:
    with pytest.raises(ConfigError, match="pre-tokenizer"):
        llama_cpp_pre_tokenizer(pre)


# ---- the slot pool: reservations never make anyone wait ------------------------------------------------
def _pool(n: int, timeout: float | None = 5.0) -> _Pool:
    return _Pool([f"llm{i}" for i in range(n)], timeout)  # the pool never calls its instances


def test_a_continuation_gets_its_own_reserved_slot_back() -> None:
    pool = _pool(2)
    slot, cached = pool.acquire()
    assert not cached
    lease = _Lease(prompt=[1, 2])
    pool.release(slot, lease)
    other, _ = pool.acquire()
    assert other is not slot  # a free slot is preferred to a reserved one
    pool.release(other)
    again, cached = pool.acquire(lease)
    assert again is slot and cached


def test_a_dropped_prefill_frees_its_slot_without_a_release() -> None:
    pool = _pool(1)
    slot, _ = pool.acquire()
    lease = _Lease(prompt=[1])
    pool.release(slot, lease)
    assert slot.reserved_by() is lease
    del lease
    gc.collect()
    assert slot.reserved_by() is None


def test_a_reservation_is_taken_over_instead_of_waited_for() -> None:
    pool = _pool(1)
    slot, _ = pool.acquire()
    held = _Lease(prompt=[1])
    pool.release(slot, held)
    taken, cached = pool.acquire()  # same thread, prefill still held: must not hang
    assert taken is slot and not cached and held.slot is None
    pool.release(taken)
    back, cached = pool.acquire(held)
    assert back is slot and not cached  # its cache is gone: the caller evaluates the prompt again
    pool.release(back)


def test_busy_slots_are_waited_for_and_the_wait_is_bounded() -> None:
    pool = _pool(1, timeout=0.2)
    slot, _ = pool.acquire()
    with pytest.raises(BackendTimeoutError):
        pool.acquire()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(_pool_acquire(pool)))
    pool._wait_timeout = 10.0
    waiter.start()
    pool.release(slot)
    waiter.join(10)
    assert got == [slot]


def _pool_acquire(pool: _Pool) -> object:
    slot, _ = pool.acquire()
    return slot


def test_the_request_deadline_bounds_the_wait_for_a_slot() -> None:
    import time

    pool = _pool(1, timeout=None)  # no wait_timeout: only the deadline ends the wait
    pool.acquire()
    with pytest.raises(BackendTimeoutError, match="request deadline"):
        pool.acquire(deadline=time.monotonic() + 0.05)


# ---- the generation buffer: the consumer's pace never holds the producer ---------------------------------
def test_a_generation_buffer_hands_over_text_end_and_errors() -> None:
    done = _Generation()
    for piece in ("a", "b"):
        done.put(piece)
    done.finish("length")
    assert list(done.drain(None)) == ["a", "b"] and done.finish_reason == "length"
    failed = _Generation()
    failed.put("a")
    failed.fail(ValueError("boom"))
    chunks = failed.drain(None)
    assert next(chunks) == "a"
    with pytest.raises(ValueError, match="boom"):
        next(chunks)


def test_a_stalled_generation_ends_at_the_deadline() -> None:
    import time

    stalled = _Generation()
    with pytest.raises(BackendTimeoutError, match="deadline"):
        list(stalled.drain(time.monotonic() + 0.05))
