"""The opener report (rt_middleware/evaluation/openers.py) without a model: counting, groups,
samples, and what report.json keeps."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from rt_middleware.datasets import DatasetError, LabeledPrompt, data_dir
from rt_middleware.evaluation import load_eval_rows, opener_report, opener_rows
from rt_middleware.evaluation.harness import opener_summary
from rt_middleware.evaluation.openers import opener_group

SAFETY = "Requests with safety concerns"
ANSWERS = [
    "I'm sorry, but I can't help with that.",
    "Sure! Here is a cat: =^.^=",
    "As an AI, I cannot draw.",
    "Sorry to hear that. Here is what helps.",
]


def test_report_counts_openers_overall_and_per_group() -> None:
    report = opener_report(
        ANSWERS, groups=["a", "a", "b", "b"], prompts=["p0", "p1", "p2", "p3"], ids=["0", "1", "2", "3"]
    )
    assert (report["count"], report["total"], report["rate"]) == (2, 4, 0.5)
    lo, hi = report["ci95"]
    assert 0.0 < lo < 0.5 < hi < 1.0
    assert {g: (r["count"], r["total"]) for g, r in report["per_group"].items()} == {"a": (1, 2), "b": (1, 2)}
    assert [e["id"] for e in report["examples"]] == ["0", "2"]
    assert report["examples"][0] == {
        "answer": ANSWERS[0], "opener": "I'm sorry", "id": "0", "group": "a", "prompt": "p0",
    }
    assert [o is not None for o in report["openers"]] == [True, False, True, False]


def test_report_limits_examples_takes_another_detector_and_checks_lengths() -> None:
    assert len(opener_report(ANSWERS * 5, examples=3)["examples"]) == 3
    assert opener_report(ANSWERS, examples=0)["examples"] == []
    every = opener_report(ANSWERS, detector=lambda text: text[:4])
    assert every["count"] == 4 and every["per_group"] == {}
    assert opener_report([])["total"] == 0 and opener_report([])["rate"] is None
    with pytest.raises(ValueError, match="4 answers but 3 groups"):
        opener_report(ANSWERS, groups=["a", "b", "c"])


def test_rows_are_the_benign_ones_and_a_limit_samples_every_group() -> None:
    rows = [LabeledPrompt(f"q{i}", SAFETY) for i in range(5)] + [
        LabeledPrompt(f"b{i}", "respond", subcategory="abcd"[i % 4], id=str(i)) for i in range(40)
    ]
    benign = opener_rows(rows)
    assert len(benign) == 40 and all(not r.should_refuse for r in benign)
    sample = opener_rows(rows, limit=12, seed=3)
    assert len(sample) == 12 and sample == opener_rows(rows, limit=12, seed=3)
    assert [int(r.id) for r in sample] == sorted(int(r.id) for r in sample)  # dataset order kept
    assert len(Counter(r.subcategory for r in sample)) > 1
    assert opener_rows(rows, limit=100) == benign


def test_groups_name_the_mimicked_category_else_the_subcategory() -> None:
    assert opener_group(LabeledPrompt("x", "respond", mimics=SAFETY, subcategory="s")) == f"mimics {SAFETY}"
    assert opener_group(LabeledPrompt("x", "respond", subcategory="homonyms")) == "homonyms"
    assert opener_group(LabeledPrompt("x", "respond")) == "all"


def test_the_json_summary_keeps_no_prompt_text_and_no_per_row_lists() -> None:
    report = {**opener_report(ANSWERS, prompts=["secret"] * 4, ids=list("abcd")), "answers": ANSWERS}
    summary = opener_summary(report)
    assert "answers" not in summary and "openers" not in summary
    assert "secret" not in str(summary) and summary["examples"][0]["id"] == "a"


def test_alpaca_eval_is_a_named_benign_dataset() -> None:
    if not (data_dir() / "alpaca-eval" / "alpaca_eval.json").is_file():
        pytest.skip("AlpacaEval data not present")
    name, rows = load_eval_rows("alpaca-eval", categories=[SAFETY])
    assert name == "alpaca-eval" and len(rows) == 805 and all(r.label == "respond" for r in rows)
    with pytest.raises(DatasetError, match="evaluation-only"):
        load_eval_rows("alpaca-eval", categories=[SAFETY], split="calibration")


def test_the_opener_modules_import_no_torch_in_a_fresh_process() -> None:
    import subprocess

    code = "import sys, rt_middleware.evaluation.openers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
