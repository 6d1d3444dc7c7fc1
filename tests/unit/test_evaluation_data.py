"""The distribution cache file and the seeded FILE split (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rt_middleware.cli import eval as eval_cli
from rt_middleware.datasets import DatasetError, LabeledPrompt
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import ConfigError
from rt_middleware.evaluation import ISOLATION_COVERAGE, DistributionCache, load_eval_rows, split_rows

DIST = FirstTokenDistribution(probabilities={"respond": 0.7, "refuse": 0.2}, rest=0.1, prompt_tokens=5)


def test_cache_round_trip_is_keyed_by_model_prompt_and_temperature(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.jsonl"
    cache = DistributionCache(path)
    cache.put_many("m@1", 1.0, [("hello", DIST)])
    again = DistributionCache(path)
    assert len(again) == 1
    assert again.get("m@1", "hello", 1.0) == DIST
    assert again.get("m@1", "hello", 0.5) is None
    assert again.get("m@2", "hello", 1.0) is None
    assert again.get("m@1", "hello!", 1.0) is None
    assert "hello" not in path.read_text()  # prompts are hashed, not stored


def test_cache_rejects_biased_distributions_and_names_corrupt_lines(tmp_path: Path) -> None:
    cache = DistributionCache(None)
    with pytest.raises(ConfigError, match="unbiased"):
        cache.put_many("m", 1.0, [("x", DIST.with_bias({"refuse": 1.0}))])
    path = tmp_path / "cache.jsonl"
    good = json.dumps({"key": "k", "model": "m", "temperature": 1.0, "distribution": DIST.to_dict()})
    path.write_text(good + "\n\n" + '{"key": "k2"}\n')
    with pytest.raises(ConfigError, match=r"cache\.jsonl:3: corrupt"):
        DistributionCache(path)


def rows(n_a: int, n_respond: int) -> list[LabeledPrompt]:
    return [LabeledPrompt(f"a{i}", "a") for i in range(n_a)] + [
        LabeledPrompt(f"r{i}", "respond") for i in range(n_respond)
    ]


def test_split_is_seeded_stratified_and_disjoint() -> None:
    data = rows(10, 7)
    cal, held = split_rows(data, holdout_fraction=0.3, seed=1)
    assert sum(r.label == "a" for r in held) == 3 and sum(r.label == "respond" for r in held) == 2
    assert {r.prompt for r in cal}.isdisjoint({r.prompt for r in held})
    assert len(cal) + len(held) == len(data)
    assert split_rows(data, holdout_fraction=0.3, seed=1) == (cal, held)
    assert split_rows(data, holdout_fraction=0.3, seed=2) != (cal, held)
    # adding rows of one label leaves the other label's assignment alone
    _, held_more = split_rows([*data, LabeledPrompt("a-new", "a")], holdout_fraction=0.3, seed=1)
    assert [r for r in held_more if r.label == "respond"] == [r for r in held if r.label == "respond"]
    with pytest.raises(DatasetError, match="holdout fraction"):
        split_rows(data, holdout_fraction=1.0)


def test_load_eval_rows_file_splits_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": r.prompt, "label": r.label}) for r in rows(6, 4)))
    name, whole = load_eval_rows(str(path), categories=["a"])
    assert name == "mine" and len(whole) == 10
    _, test = load_eval_rows(str(path), categories=["a"], split="test")
    _, cal = load_eval_rows(str(path), categories=["a"], split="calibration")
    assert (cal, test) == split_rows(whole)
    with pytest.raises(DatasetError, match="unknown label 'a'"):
        load_eval_rows(str(path), categories=["b"])
    with pytest.raises(DatasetError, match="--split"):
        load_eval_rows(str(path), categories=["a"], split="train")
    with pytest.raises(DatasetError, match="evaluation-only"):
        load_eval_rows("xstest", categories=["a"], split="calibration")
    with pytest.raises(DatasetError, match="coconot must be test or calibration"):
        load_eval_rows("coconot", categories=["a"], split="train")


def test_cli_commands_default_to_the_library_isolation_coverage() -> None:
    """One definition: `rt eval` and `rt calibrate` take the default from rt_middleware.evaluation."""
    import inspect

    from rt_middleware.cli import calibrate as calibrate_cli

    for command in (eval_cli.eval_command, calibrate_cli.calibrate_command):
        assert inspect.signature(command).parameters["isolation_coverage"].default == ISOLATION_COVERAGE
