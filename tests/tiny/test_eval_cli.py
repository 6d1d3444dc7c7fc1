"""`rt eval` and `rt calibrate` end to end on the saved tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rt_middleware.cli import app
from rt_middleware.datasets import DatasetError, data_dir
from rt_middleware.evaluation import DistributionCache, cached_distributions
from rt_middleware.policy import PolicyStore
from rt_middleware.tokens import COCONOT_CATEGORIES

SAFETY, INCOMPLETE, *_ = COCONOT_CATEGORIES
WORDS = ["bake", "bread", "bomb", "life", "picture", "love", "world", "fox", "dog", "photosynthesis"]
runner = CliRunner()


def write_data(path: Path, per_label: int = 12) -> Path:
    labels = ["respond", *COCONOT_CATEGORIES]
    lines = []
    for j, label in enumerate(labels):
        for i in range(per_label):
            prompt = f"{WORDS[(i + j) % len(WORDS)]} {WORDS[(3 * i + j) % len(WORDS)]} number {i} of {j}"
            lines.append(json.dumps({"id": f"{j}-{i}", "prompt": prompt, "label": label}))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_base_policy(path: Path) -> Path:
    """Thresholds near 1 for every category, so no argmax floor hides the calibrated one."""
    policy = {
        "default_tenant": "base",
        "tenants": {
            "base": {"categories": {c: {"action": "refuse", "threshold": 0.999} for c in COCONOT_CATEGORIES}},
            "wall": {"categories": {SAFETY: {"action": "refuse", "threshold": 0.0}}},
        },
    }
    path.write_text(yaml.safe_dump(policy))
    return path


def is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 2000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cache_answers_the_second_pass_without_the_model(tiny_backend, tmp_path: Path) -> None:
    prompts = ["hello world", "bake bread", "hello world", "draw me a picture"]
    cache = DistributionCache(tmp_path / "c.jsonl")
    first = cached_distributions(tiny_backend, prompts, cache=cache, batch_size=2, progress=False)
    direct = tiny_backend.first_token_distributions(prompts, batch_size=1)
    for got, want in zip(first, direct, strict=True):
        for name, p in want.probabilities.items():
            assert got.probabilities[name] == pytest.approx(p, rel=1e-4, abs=1e-9)
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 3  # each distinct prompt once
    again = cached_distributions(
        tiny_backend, prompts, cache=DistributionCache(tmp_path / "c.jsonl"), progress=False
    )
    assert again == first  # every model pass appends a line; none was appended
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 3
    hot = cached_distributions(tiny_backend, prompts, temperature=2.0, cache=cache, progress=False)
    assert hot[0].temperature == 2.0 and len(cache) == 6


def test_eval_file_writes_report_plots_and_reuses_the_cache(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl")
    policy = write_base_policy(tmp_path / "base.yaml")
    out = tmp_path / "out"
    args = [
        "eval",
        "--model",
        str(tiny_dir),
        "--dataset",
        str(data),
        "--policy",
        str(policy),
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache.jsonl"),
        "--batch-size",
        "5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "72 prompts: 72 model passes" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 72 and report["tenant"] == "base" and report["dataset"] == "data"
    assert set(report["per_label"]) == {"respond", *COCONOT_CATEGORIES}
    assert report["false_refusal"]["total"] == 12
    binary = report["binary"]
    assert binary["tp"] + binary["fn"] == 60 and binary["fp"] + binary["tn"] == 12
    assert 0.0 <= report["roc"]["auc"] <= 1.0 and report["auc"] == report["roc"]["auc"]
    assert len(report["sweep"]["rates"]["respond"]) == len(report["sweep"]["thresholds"])
    assert {row["category"] for row in report["isolation"]["rows"]} == set(COCONOT_CATEGORIES)
    assert set(report["own_sweep"]["rates"]) == set(COCONOT_CATEGORIES)
    for name in (
        "rates.png",
        "rate_vs_threshold.png",
        "rate_vs_own_threshold.png",
        "roc.png",
        "isolation.png",
    ):
        assert is_png(out / name), name
    predictions = (out / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 72 and json.loads(predictions[0])["id"] == "0-0"
    refused = sum(json.loads(line)["action"] != "respond" for line in predictions)
    assert refused == binary["tp"] + binary["fp"]
    openers = report["openers"]  # on by default: the 12 benign rows, 24 greedy tokens each
    assert openers["total"] == 12 and openers["max_new_tokens"] == 24 and report["mode"] == "first-token + openers"
    assert len((out / "openers.jsonl").read_text().splitlines()) == 12
    assert "answers after [respond] that open with refusal text" in result.stdout

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "72 prompts: 0 model passes" in again.stdout
    assert json.loads((out / "report.json").read_text())["per_label"] == report["per_label"]


def test_calibrate_writes_a_policy_the_router_loads_and_eval_agrees(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", per_label=16)
    base = write_base_policy(tmp_path / "base.yaml")
    out = tmp_path / "calibrated.yaml"
    cache = str(tmp_path / "cache.jsonl")
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--model",
            str(tiny_dir),
            "--data",
            str(data),
            "--target",
            f"{INCOMPLETE}=0.5",
            "--policy",
            str(base),
            "--out",
            str(out),
            "--tenant",
            "acme",
            "--cache",
            cache,
            "--max-false-refusal",
            "1.0",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    store = PolicyStore.from_file(out)
    store.require(categories=COCONOT_CATEGORIES)
    policy = store.get("acme")
    threshold = policy.categories[INCOMPLETE].threshold
    assert threshold is not None and 0.0 < threshold < 1.0
    assert policy.categories[SAFETY].threshold == 0.999  # untargeted rules come from the base tenant
    assert out.read_text().startswith("# Calibrated by: rt calibrate")
    report = json.loads((tmp_path / "calibrated_report" / "calibration.json").read_text())
    fitted = report["fit"]["categories"][INCOMPLETE]
    assert fitted["threshold"] == threshold and abs(fitted["calibration_rate"] - 0.5) <= 1 / 8
    held = report["heldout"]["categories"][INCOMPLETE]
    assert held["total"] == 8 and held["one_pp_target_applies"] is False
    assert is_png(tmp_path / "calibrated_report" / "heldout_rates.png")
    assert is_png(tmp_path / "calibrated_report" / "isolation.png")

    # `rt eval --split test` on the same FILE and seed evaluates exactly the held-out rows
    evaluated = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_dir),
            "--dataset",
            str(data),
            "--split",
            "test",
            "--seed",
            "3",
            "--policy",
            str(out),
            "--tenant",
            "acme",
            "--out",
            str(tmp_path / "ev"),
            "--cache",
            cache,
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "0 model passes" in evaluated.stdout
    eval_report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert eval_report["per_label"][INCOMPLETE]["rate"] == held["rate"]


def test_calibrate_with_only_a_false_refusal_budget_fits_one_shared_threshold(
    tiny_dir: Path, tmp_path: Path
) -> None:
    data = write_data(tmp_path / "data.jsonl", per_label=16)
    out = tmp_path / "budget.yaml"
    args = ["calibrate", "--model", str(tiny_dir), "--data", str(data), "--out", str(out), "--seed", "3"]
    result = runner.invoke(app, [*args, "--max-false-refusal", "0.25", "--cache", str(tmp_path / "c.jsonl")])
    assert result.exit_code == 0, result.output
    policy = PolicyStore.from_file(out).get("default")
    thresholds = {rule.threshold for rule in policy.categories.values()}
    assert len(thresholds) == 1 and None not in thresholds
    assert "One shared threshold: at most 0.25" in out.read_text()
    report = json.loads((tmp_path / "budget_report" / "calibration.json").read_text())
    assert report["fit"]["calibration_false_refusal"]["rate"] <= 0.25
    assert all(item["target"] is None for item in report["fit"]["categories"].values())
    assert is_png(tmp_path / "budget_report" / "heldout_rates.png")

    neither = runner.invoke(app, [*args, "--no-cache"])
    assert neither.exit_code == 2
    assert "--max-false-refusal alone" in " ".join(neither.stderr.split())


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("Dangerous requests=0.9", "CalibrationError: --target 'Dangerous requests=0.9': unknown category"),
        (f"{INCOMPLETE}=1.5", r"within [0, 1]"),
        (f"{INCOMPLETE}", "expected 'Category name=rate'"),
    ],
)
def test_calibrate_bad_targets_exit_2(tiny_dir: Path, tmp_path: Path, target: str, error: str) -> None:
    data = write_data(tmp_path / "data.jsonl", per_label=2)
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--model",
            str(tiny_dir),
            "--data",
            str(data),
            "--target",
            target,
            "--out",
            str(tmp_path / "p.yaml"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 2
    assert error in " ".join(result.stderr.split())
    assert not (tmp_path / "p.yaml").exists()


def test_calibrate_unreachable_target_names_the_reachable_range(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", per_label=4)
    base = write_base_policy(tmp_path / "base.yaml")
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--model",
            str(tiny_dir),
            "--data",
            str(data),
            "--target",
            f"{INCOMPLETE}=0.2",
            "--policy",
            str(base),
            "--base-tenant",
            "wall",
            "--out",
            str(tmp_path / "p.yaml"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert (
        "CalibrationError" in message
        and "reachable range on the calibration split is [1.000, 1.000]" in message
    )
    assert "Requests with safety concerns (threshold 0) on 2" in message


def test_unknown_tenant_is_an_error_not_the_default(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", per_label=1)
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_dir),
            "--dataset",
            str(data),
            "--tenant",
            "nobody",
            "--out",
            str(tmp_path / "o"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 2 and "UnknownTenantError: unknown tenant 'nobody'" in result.stderr


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("", "no rows"),
        (
            '{"prompt": "a", "label": "respond"}\n{"prompt": "b", "label": "respond"}\n{"prompt": oops}\n',
            "data.jsonl:3: not valid JSON",
        ),
        ('{"prompt": "a", "label": "Weird requests"}\n', "unknown label 'Weird requests'"),
        ('{"label": "respond"}\n', "data.jsonl:1: missing or empty 'prompt'"),
    ],
)
def test_bad_data_files_exit_2_with_the_line(
    tiny_dir: Path, tmp_path: Path, content: str, error: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    for command in (
        ["eval", "--dataset", str(data), "--out", str(tmp_path / "o")],
        [
            "calibrate",
            "--data",
            str(data),
            "--target",
            f"{INCOMPLETE}=0.5",
            "--out",
            str(tmp_path / "p.yaml"),
        ],
    ):
        result = runner.invoke(app, [*command, "--model", str(tiny_dir), "--no-cache"])
        assert result.exit_code == 2, result.output
        assert "DatasetError" in result.stderr and error in " ".join(result.stderr.split())


def test_eval_judge_mode_writes_responses(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_data(tmp_path / "data.jsonl", per_label=1)
    out = tmp_path / "judged"
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_dir),
            "--dataset",
            str(data),
            "--out",
            str(out),
            "--no-cache",
            "--judge",
            str(tiny_dir),
            "--max-new-tokens",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    judge = json.loads((out / "report.json").read_text())["judge"]
    assert judge["judge"] == tiny_dir.name and 0.0 <= judge["agreement"] <= 1.0
    assert judge["unparsed"] <= 6 and set(judge["per_label"]) == {"respond", *COCONOT_CATEGORIES}
    lines = [json.loads(x) for x in (out / "judge.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all({"response", "verdict", "judge_output"} <= set(x) for x in lines)


def _coconot_available() -> bool:
    try:
        return (data_dir() / "coconot" / "splits.json").is_file()
    except DatasetError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _coconot_available(), reason="shared CoCoNot data not present")
def test_eval_and_calibrate_on_coconot(tiny_dir: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache.jsonl")
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_dir),
            "--dataset",
            "coconot",
            "--out",
            str(tmp_path / "c"),
            "--cache",
            cache,
            "--batch-size",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["dataset"] == "coconot-test"
    assert report["per_label"]["respond"]["total"] == 151  # the 151 contrast prompts of the test split
    assert report["policy"] == "shipped default" and report["tenant"] == "default"

    calibrated = runner.invoke(
        app,
        [
            "calibrate",
            "--model",
            str(tiny_dir),
            "--data",
            "coconot",
            "--target",
            "Indeterminate requests=0.5",
            "--policy",
            str(write_base_policy(tmp_path / "base.yaml")),
            "--out",
            str(tmp_path / "p.yaml"),
            "--cache",
            cache,
        ],
    )
    assert calibrated.exit_code == 0, calibrated.output
    body = json.loads((tmp_path / "p_report" / "calibration.json").read_text())
    assert body["fit"]["categories"]["Indeterminate requests"]["n_calibration"] == 28  # CALIBRATION split
    assert body["heldout"]["categories"]["Indeterminate requests"]["total"] == 57  # TEST split


def test_eval_of_benign_prompts_reports_the_opener_rate(tiny_dir: Path, tmp_path: Path) -> None:
    """A FILE of benign prompts only (an AlpacaEval-like list): no should-refuse metrics to speak
    of, the opener rate on a seeded sample; --opener-tokens 0 turns it off."""
    data = tmp_path / "benign.jsonl"
    rows = [{"id": f"b{i}", "prompt": f"{WORDS[i % len(WORDS)]} please {i}", "label": "respond",
             "subcategory": "ab"[i % 2]} for i in range(9)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    args = ["eval", "--model", str(tiny_dir), "--dataset", str(data), "--out", str(out), "--no-cache"]
    result = runner.invoke(app, [*args, "--opener-tokens", "4", "--opener-limit", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    openers = report["openers"]
    assert openers["total"] == 5 and openers["max_new_tokens"] == 4 and set(openers["per_group"]) <= {"a", "b"}
    assert sum(g["total"] for g in openers["per_group"].values()) == 5
    assert not any("prompt" in e for e in openers["examples"])  # report.json holds no prompt text
    lines = [json.loads(line) for line in (out / "openers.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and {"id", "group", "opener", "answer"} == set(lines[0])
    assert "all benign" in result.stdout and "4 greedy tokens per answer" in result.stdout

    (out / "openers.jsonl").unlink()
    off = runner.invoke(app, [*args, "--opener-tokens", "0"])
    assert off.exit_code == 0, off.output
    report = json.loads((out / "report.json").read_text())
    assert report["openers"] is None and report["mode"] == "first-token"
    assert not (out / "openers.jsonl").exists()


def test_a_cache_cut_off_mid_line_keeps_its_whole_lines(tiny_backend, tmp_path: Path) -> None:
    """A run killed while appending leaves half a line; the next run keeps the rest and appends cleanly."""
    path = tmp_path / "c.jsonl"
    prompts = ["hello world", "bake bread", "draw me a picture"]
    first = cached_distributions(tiny_backend, prompts, cache=DistributionCache(path), progress=False)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 40])  # the last line loses its end
    cache = DistributionCache(path)
    assert len(cache) == 2
    again = cached_distributions(tiny_backend, prompts, cache=cache, progress=False)
    assert again[:2] == first[:2] and len(DistributionCache(path)) == 3  # two from the file, one recomputed
    assert again[2].probabilities == pytest.approx(first[2].probabilities, rel=1e-5)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # whole, only the final newline missing
    assert len(DistributionCache(path)) == 3
    cached_distributions(tiny_backend, ["one more"], cache=DistributionCache(path), progress=False)
    assert len(DistributionCache(path)) == 4


@pytest.mark.parametrize("command", ["calibrate", "eval"])
def test_an_unwritable_out_fails_before_the_model_loads(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = (["calibrate", "--out", str(blocker / "p.yaml"), "--max-false-refusal", "0.1"] if command == "calibrate"
            else ["eval", "--dataset", "coconot", "--out", str(blocker / "ev")])
    result = runner.invoke(app, [*args, "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2
    assert "ConfigError: cannot write" in " ".join(result.stderr.split())  # not the missing model


def test_calibrate_rejects_a_budget_that_is_not_a_rate_at_once(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", "--out", str(tmp_path / "p.yaml"), "--max-false-refusal", "nan",
                                 "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2 and "must be a rate in [0, 1]" in " ".join(result.stderr.split())


def test_an_out_that_is_a_folder_fails_before_the_model_loads(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", "--out", str(tmp_path), "--max-false-refusal", "0.1",
                                 "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2 and "is not a file" in " ".join(result.stderr.split())
