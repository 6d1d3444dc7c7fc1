"""`rt calibrate`: fit per-category thresholds to target refusal rates (or one shared threshold to a
false-refusal budget) and write a policy file."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from rt_middleware.cli._eval_common import distributions, drop_too_long, load_policy, print_isolation
from rt_middleware.cli._options import (
    ISOLATION_COVERAGE,
    BatchOption,
    CacheOption,
    DeviceOption,
    DtypeOption,
    HoldoutOption,
    IsolationOption,
    ModelOption,
    NoCacheOption,
    PolicyOption,
    SeedOption,
    load_model,
)
from rt_middleware.cli.app import app
from rt_middleware.cli.common import check_writable, console, user_errors

if TYPE_CHECKING:
    from rt_middleware.calibration import CalibrationFit
    from rt_middleware.datasets import LabeledPrompt
    from rt_middleware.evaluation.heldout import HeldOutReport


def _splits(
    data: str, categories: tuple[str, ...], holdout_fraction: float, seed: int
) -> tuple[str, list[LabeledPrompt], list[LabeledPrompt]]:
    """CoCoNot: fit on its calibration split, report on its test split; a FILE: seeded stratified split."""
    from rt_middleware.datasets import DatasetError, load_coconot, load_file
    from rt_middleware.evaluation import split_rows

    if data == "coconot":
        return (
            "coconot (fit: calibration split, held-out: test split)",
            load_coconot("calibration"),
            load_coconot("test"),
        )
    if data == "xstest":
        raise DatasetError("XSTest is evaluation-only; calibrate on coconot or your own FILE")
    calibration, heldout = split_rows(
        load_file(data, categories=categories), holdout_fraction=holdout_fraction, seed=seed
    )
    if not calibration or not heldout:
        raise DatasetError(f"{data}: too few rows to split into calibration and held-out parts")
    return f"{data} (seed {seed}, {holdout_fraction:.0%} held out per label)", calibration, heldout


@app.command("calibrate")
def calibrate_command(
    out: Annotated[
        Path, typer.Option("--out", help="Policy file to write (an existing one gets the tenant added).")
    ],
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="'Category name=rate' or 'alias=rate' (repeatable), e.g. 'Incomplete requests=0.8' or 'safety=0.95'. "
            "Without any, --max-false-refusal alone fits one threshold shared by every refusing category.",
        ),
    ] = None,
    model: ModelOption = "default",
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    data: Annotated[
        str, typer.Option("--data", help="coconot, or a FILE (JSONL/CSV: prompt, label).")
    ] = "coconot",
    max_false_refusal: Annotated[
        float | None,
        typer.Option(
            "--max-false-refusal",
            help="With --target: fail unless benign ('respond') calibration prompts are refused at most this often. "
            "Alone: the budget one shared threshold is fitted to (the lowest that stays within it).",
        ),
    ] = None,
    tenant: Annotated[
        str, typer.Option("--tenant", help="Name of the calibrated tenant in --out.")
    ] = "default",
    policy: PolicyOption = None,
    base_tenant: Annotated[
        str | None,
        typer.Option("--base-tenant", help="Tenant of --policy to start from (messages, actions, bias)."),
    ] = None,
    holdout_fraction: HoldoutOption = 0.5,
    seed: SeedOption = 0,
    batch_size: BatchOption = 8,
    cache: CacheOption = None,
    no_cache: NoCacheOption = False,
    isolation_coverage: IsolationOption = ISOLATION_COVERAGE,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Report JSON and plots (default: <out>_report/).")
    ] = None,
) -> None:
    """Fit thresholds on a calibration split: each category's refusal rate to its target, or one shared
    threshold that refuses as much as a false-refusal budget allows."""
    import numpy as np

    from rt_middleware.calibration import (
        CalibrationError,
        fit_false_refusal_budget,
        fit_policy,
        parse_targets,
    )
    from rt_middleware.evaluation import ProbabilityTable
    from rt_middleware.evaluation.heldout import heldout_report
    from rt_middleware.policy_io import write_policy

    with user_errors():
        target = target or []
        if not target and max_false_refusal is None:  # before loading a model that may take minutes
            raise CalibrationError(
                "give --target 'Category name=rate' (repeatable), or --max-false-refusal alone for one shared threshold"
            )
        if max_false_refusal is not None and not 0.0 <= max_false_refusal <= 1.0:  # NaN included
            raise CalibrationError(f"--max-false-refusal must be a rate in [0, 1], got {max_false_refusal}")
        check_writable(out)
        check_writable(report_dir or _report_dir(out), folder=True)
        backend = load_model(model, device=device, dtype=dtype)
        categories = backend.schema.category_names
        targets = parse_targets(target, categories) if target else {}
        _, used_base, base = load_policy(policy, base_tenant, categories)
        described, calibration, heldout = _splits(data, categories, holdout_fraction, seed)
        calibration = drop_too_long(backend, calibration, "calibration split")
        heldout = drop_too_long(backend, heldout, "held-out split")
        dists = distributions(
            backend,
            calibration + heldout,
            temperature=base.temperature,
            cache=cache,
            no_cache=no_cache,
            batch_size=batch_size,
        )
        cal_table = ProbabilityTable.from_distributions(dists[: len(calibration)])
        held_table = ProbabilityTable.from_distributions(dists[len(calibration) :])
        cal_labels = [r.label for r in calibration]
        held_labels = [r.label for r in heldout]
        if targets:
            fit = fit_policy(cal_table, cal_labels, targets, base, max_false_refusal=max_false_refusal)
        else:
            assert max_false_refusal is not None  # checked before the model was loaded
            fit = fit_false_refusal_budget(cal_table, cal_labels, max_false_refusal, base)
        command = ["rt", "calibrate", "--model", model, "--data", data]
        command += [part for t in target for part in ("--target", t)]
        if max_false_refusal is not None:
            command += ["--max-false-refusal", str(max_false_refusal)]
        if policy is not None:
            command += ["--policy", str(policy), "--base-tenant", used_base]
        if data != "coconot":
            command += ["--holdout-fraction", str(holdout_fraction), "--seed", str(seed)]
        header = (
            f"Calibrated by: {shlex.join([*command, '--out', str(out), '--tenant', tenant])}\n"
            f"model {backend.model_name}; data {described}; base tenant {used_base}\n"
            + (
                "Targets: " + ", ".join(f"{c}={t:g}" for c, t in targets.items())
                if targets
                else f"One shared threshold: at most {max_false_refusal:g} of respond-labelled calibration prompts refused"
            )
        )
        store = write_policy(out, tenant, fit.policy, header=header)
        written = store.get(tenant)
        if not np.array_equal(cal_table.refused_under(written), cal_table.refused_under(fit.policy)):
            raise RuntimeError("the written policy decides differently from the fitted one")
        # a shared-threshold fit has no targets: held-out rates are compared with the calibration rates
        expected = targets or {c: f.achieved for c, f in fit.fits.items()}
        report = heldout_report(
            written, cal_table, cal_labels, held_table, held_labels, expected, coverage=isolation_coverage
        )
        files = _write_report(
            report_dir or _report_dir(out),
            fit,
            report,
            {
                "model": model,
                "model_name": backend.model_name,
                "data": described,
                "policy_file": str(out),
                "tenant": tenant,
                "policy_version": store.version,
                "max_false_refusal": max_false_refusal,
            },
        )
    _print(fit, report, out, tenant, isolation_coverage)
    for kind, path in files.items():
        console.print(f"[dim]{kind}:[/] {escape(str(path))}", highlight=False)


def _report_dir(out: Path) -> Path:
    return out.with_name(f"{out.stem}_report")


def _write_report(
    folder: Path, fit: CalibrationFit, report: HeldOutReport, meta: dict[str, Any]
) -> dict[str, Path]:
    import json

    from rt_middleware.evaluation.harness import REFUSAL_RATE_DEFINITION
    from rt_middleware.evaluation.plots import plot_isolation, plot_rates

    folder.mkdir(parents=True, exist_ok=True)
    files = {"report": folder / "calibration.json"}
    body = {
        **meta,
        "refusal_rate_definition": REFUSAL_RATE_DEFINITION,
        "fit": fit.to_dict(),
        "heldout": report.to_dict(),
    }
    files["report"].write_text(json.dumps(body, indent=2), encoding="utf-8")
    rates = dict(report.rates)
    if report.false_refusal is not None:
        rates["respond"] = report.false_refusal
    files["rates"] = plot_rates(
        rates,
        folder / "heldout_rates.png",
        targets=report.targets,
        title=(
            "held-out refusal rate vs calibration rate (one shared threshold)"
            if all(f.target is None for f in fit.fits.values())
            else "held-out refusal rate vs target"
        ),
    )
    if report.isolation:
        files["isolation"] = plot_isolation(
            report.isolation, folder / "isolation.png", title="cross-category isolation (held-out)"
        )
    return files


def _print(fit: CalibrationFit, report: HeldOutReport, out: Path, tenant: str, coverage: float) -> None:
    from rich.table import Table

    table = Table(title=Text(f"calibrated tenant {tenant!r} -> {out}"))  # never markup
    for column in ("category", "target", "threshold", "cal.", "held-out", "95% CI", "|err|", "n"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, item in fit.fits.items():
        rate = report.rates[category]
        lo, hi = rate.interval
        error = report.error_pp(category)
        flag = "" if rate.total >= 100 else " *"
        table.add_row(
            category,
            "-" if item.target is None else f"{item.target:.3f}",
            f"{item.threshold:.4g}",
            f"{item.achieved:.3f}",
            "-" if rate.value is None else f"{rate.value:.3f}",
            f"{lo:.3f} - {hi:.3f}",
            "-" if error is None else f"{error:.2f} pp{flag}",
            str(rate.total),
        )
    console.print(table)
    console.print(
        "[dim]* fewer than 100 held-out prompts: the 1 pp target does not apply (sampling error dominates)[/]"
    )
    if fit.bias:
        console.print(f"first-step logit bias added: {fit.bias}", highlight=False)
    for name, rate in (("calibration", fit.false_refusal), ("held-out", report.false_refusal)):
        if rate is not None and rate.value is not None:
            lo, hi = rate.interval
            console.print(
                f"false-refusal rate ({name}, respond-labelled prompts): {rate.value:.1%} "
                f"({rate.count}/{rate.total}, 95% CI {lo:.1%} - {hi:.1%})",
                highlight=False,
            )
    if report.isolation:
        print_isolation(report.isolation, coverage)
        reach = ", ".join(
            f"{cov:.0%}: {100 * max(deltas.values(), default=0.0):.2f} pp"
            for cov, deltas in report.isolation_profile.items()
        )
        console.print(f"worst change of another category's rate, by sweep coverage: {reach}", highlight=False)
