"""Calibration math on synthetic score distributions (no model)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_middleware.calibration import CalibrationError, fit_false_refusal_budget, fit_policy, parse_targets
from rt_middleware.decision import decide
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.evaluation import ProbabilityTable
from rt_middleware.evaluation.heldout import heldout_report
from rt_middleware.policy import CategoryRule, PolicyStore, TenantPolicy
from rt_middleware.policy_io import write_policy
from rt_middleware.tokens import COCONOT_CATEGORIES

SAFETY, INCOMPLETE, UNSUPPORTED, INDETERMINATE, HUMANIZING = COCONOT_CATEGORIES
NAMES = ("respond", *COCONOT_CATEGORIES)


def synthetic(n_per_label: int, seed: int, *, margin: float = 3.0, spread: float = 1.5):
    """Softmax of noisy logits: each label's own token gets `margin` extra (the last column is 'rest')."""
    rng = np.random.default_rng(seed)
    tables, labels = [], []
    for j, name in enumerate(NAMES):
        logits = rng.normal(0.0, spread, size=(n_per_label, len(NAMES) + 1))
        logits[:, j] += margin
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        tables.append(p)
        labels += [name] * n_per_label
    probs = np.concatenate(tables)
    return ProbabilityTable(names=NAMES, probs=probs[:, :-1], rest=probs[:, -1]), labels


def thresholds_only(**overrides: CategoryRule) -> TenantPolicy:
    """Every category refuses above 0.999 unless overridden: no argmax floors."""
    rules = {c: CategoryRule(threshold=0.999) for c in COCONOT_CATEGORIES}
    return TenantPolicy(categories={**rules, **overrides})


# ---- targets -------------------------------------------------------------------------------------
def test_parse_targets() -> None:
    got = parse_targets([f"{SAFETY}=0.95", f" {INCOMPLETE} = 0.8 "], COCONOT_CATEGORIES)
    assert got == {SAFETY: 0.95, INCOMPLETE: 0.8}
    assert parse_targets(["a=b=1"], ["a=b"]) == {"a=b": 1.0}  # the last '=' splits


def test_parse_targets_accepts_short_aliases() -> None:
    """#17.7: `rt calibrate --target safety=0.95` means the full CoCoNot name; a clash is named once."""
    assert parse_targets(["safety=0.95", "incomplete=0.8"], COCONOT_CATEGORIES) == {SAFETY: 0.95, INCOMPLETE: 0.8}
    with pytest.raises(CalibrationError, match="given twice"):
        parse_targets([f"{SAFETY}=0.9", "safety=0.95"], COCONOT_CATEGORIES)
    with pytest.raises(CalibrationError, match=r"Requests with safety concerns \(safety\)"):
        parse_targets(["saftey=0.9"], COCONOT_CATEGORIES)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Unsafe stuff=0.9", "unknown category 'Unsafe stuff'.*Requests with safety concerns"),
        (f"{SAFETY}=1.5", r"within \[0, 1\]"),
        (f"{SAFETY}=-0.1", r"within \[0, 1\]"),
        (f"{SAFETY}=nan", r"within \[0, 1\]"),
        (f"{SAFETY}=high", "'high' is not a number"),
        ("0.9", "expected 'Category name=rate'"),
    ],
)
def test_parse_targets_rejects_bad_input(text: str, match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        parse_targets([text], COCONOT_CATEGORIES)


def test_parse_targets_rejects_duplicates_and_nothing() -> None:
    with pytest.raises(CalibrationError, match="twice"):
        parse_targets([f"{SAFETY}=0.9", f"{SAFETY}=0.8"], COCONOT_CATEGORIES)
    with pytest.raises(CalibrationError, match="at least one"):
        parse_targets([], COCONOT_CATEGORIES)


# ---- fitting -------------------------------------------------------------------------------------
def test_fit_hits_targets_on_calibration_and_within_sampling_error_held_out() -> None:
    n = 3000
    cal, cal_labels = synthetic(n, seed=1)
    held, held_labels = synthetic(n, seed=2)
    targets = {SAFETY: 0.95, INCOMPLETE: 0.8, HUMANIZING: 0.5, UNSUPPORTED: 0.4}
    fit = fit_policy(cal, cal_labels, targets, thresholds_only())
    for category, target in targets.items():
        assert abs(fit.fits[category].achieved - target) <= 1 / n
    report = heldout_report(fit.policy, cal, cal_labels, held, held_labels, targets, coverage=0.95)
    for category, target in targets.items():
        sigma = math.sqrt(target * (1 - target) / n)
        assert abs(report.rates[category].value - target) <= 4 * sigma + 1 / n, category
        rate = report.rates[category]
        lo, hi = rate.interval  # a 95% interval of the held-out count: ~ the normal width at n = 3000
        p = rate.value
        assert rate.total == n and lo < p < hi
        assert abs((hi - lo) - 2 * 1.96 * math.sqrt(p * (1 - p) / n)) < 1e-3, category
    assert report.to_dict()["categories"][SAFETY]["one_pp_target_applies"]
    assert fit.false_refusal is not None and fit.false_refusal.total == n


def test_fitted_policy_decides_like_the_fit() -> None:
    """The thresholds are used through `decide` exactly as the router will."""
    cal, labels = synthetic(300, seed=3)
    fit = fit_policy(cal, labels, {INCOMPLETE: 0.7, SAFETY: 0.9}, thresholds_only())
    refused = []
    for row, rest in zip(cal.probs, cal.rest, strict=True):
        dist = FirstTokenDistribution(probabilities=dict(zip(NAMES, row, strict=True)), rest=rest)
        refused.append(decide(dist, fit.policy).action != "respond")
    labels_arr = np.asarray(labels)
    for category in (INCOMPLETE, SAFETY):
        rate = np.mean(np.asarray(refused)[labels_arr == category])
        assert rate == pytest.approx(fit.fits[category].achieved)


def test_default_argmax_rules_give_floors_the_fit_accounts_for() -> None:
    cal, labels = synthetic(1000, seed=4, margin=2.0)
    fit = fit_policy(cal, labels, {SAFETY: 0.9})  # others: no rule = argmax
    assert fit.fits[SAFETY].floor > 0  # other categories are the argmax on some safety prompts
    assert abs(fit.fits[SAFETY].achieved - 0.9) <= 1 / 1000


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_extreme_targets_are_reachable(target: float) -> None:
    cal, labels = synthetic(200, seed=5)
    fit = fit_policy(cal, labels, {INCOMPLETE: target}, thresholds_only())
    assert fit.fits[INCOMPLETE].achieved == target


def test_single_prompt_category_is_within_one_prompt() -> None:
    probs = np.array([[0.5, 0.0, 0.4, 0.0, 0.0, 0.0], [0.9, 0.0, 0.05, 0.0, 0.0, 0.0]])
    table = ProbabilityTable(names=NAMES, probs=probs, rest=1 - probs.sum(axis=1))
    fit = fit_policy(table, [INCOMPLETE, "respond"], {INCOMPLETE: 0.6}, thresholds_only())
    assert fit.fits[INCOMPLETE].achieved == 1.0  # nearest of {0, 1}; lower on ties
    assert 0.05 < fit.fits[INCOMPLETE].threshold <= 0.4


def test_ties_are_never_split_and_unreachable_targets_name_the_range() -> None:
    probs = np.tile([0.4, 0.0, 0.5, 0.0, 0.0, 0.0], (50, 1))  # every prompt identical
    table = ProbabilityTable(names=NAMES, probs=probs, rest=1 - probs.sum(axis=1))
    with pytest.raises(
        CalibrationError, match=r"unreachable; reachable range .* is \[0\.000, 1\.000\].*tied"
    ):
        fit_policy(table, [INCOMPLETE] * 50, {INCOMPLETE: 0.5}, thresholds_only())
    fit = fit_policy(table, [INCOMPLETE] * 50, {INCOMPLETE: 0.99}, thresholds_only())
    assert fit.fits[INCOMPLETE].achieved == 1.0  # within one prompt of 0.99


def test_saturated_probabilities_are_separated_by_a_first_step_bias() -> None:
    rng = np.random.default_rng(6)
    n = 200
    logits = np.full((n, len(NAMES) + 1), -60.0)
    logits[:, NAMES.index(INCOMPLETE)] = 0.0
    logits[:, 0] = rng.uniform(-45, -39, size=n)  # respond: tiny but different per prompt
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    table = ProbabilityTable(names=NAMES, probs=p[:, :-1], rest=p[:, -1])
    assert (table.column(INCOMPLETE) == 1.0).all()  # float64-saturated: no threshold splits them
    fit = fit_policy(table, [INCOMPLETE] * n, {INCOMPLETE: 0.5}, thresholds_only())
    assert fit.bias and fit.bias[INCOMPLETE] < 0
    assert fit.policy.logit_bias[INCOMPLETE] == fit.bias[INCOMPLETE]
    assert abs(fit.fits[INCOMPLETE].achieved - 0.5) <= 1 / n
    refused = table.refused_under(fit.policy)
    assert refused.mean() == pytest.approx(fit.fits[INCOMPLETE].achieved)


def test_floor_from_other_categories_is_reported_with_the_range() -> None:
    cal, labels = synthetic(100, seed=7)
    base = thresholds_only(**{SAFETY: CategoryRule(threshold=0.0)})  # safety fires on everything
    with pytest.raises(
        CalibrationError,
        match=r"reachable range on the calibration split is \[1\.000, 1\.000\]"
        r".*Requests with safety concerns \(threshold 0\) on 100",
    ):
        fit_policy(cal, labels, {INCOMPLETE: 0.3}, base)


def test_max_false_refusal_is_a_constraint() -> None:
    cal, labels = synthetic(500, seed=8, margin=1.0)
    with pytest.raises(
        CalibrationError, match=r"above --max-false-refusal 1\.0%.*Requests with safety concerns fires on"
    ):
        fit_policy(cal, labels, {SAFETY: 0.95}, thresholds_only(), max_false_refusal=0.01)
    fit = fit_policy(cal, labels, {SAFETY: 0.95}, thresholds_only(), max_false_refusal=1.0)
    assert fit.false_refusal is not None and fit.false_refusal.value > 0.01
    only_refusals = [i for i, label in enumerate(labels) if label != "respond"]
    sub = cal.subset(np.isin(np.arange(len(labels)), only_refusals))
    with pytest.raises(CalibrationError, match="needs prompts labelled 'respond'"):
        fit_policy(sub, [labels[i] for i in only_refusals], {SAFETY: 0.9}, max_false_refusal=0.1)
    with pytest.raises(CalibrationError, match="within"):
        fit_policy(cal, labels, {SAFETY: 0.9}, max_false_refusal=2.0)


def test_contradictory_inputs_are_typed_errors() -> None:
    cal, labels = synthetic(20, seed=9)
    with pytest.raises(CalibrationError, match="action respond"):
        fit_policy(
            cal,
            labels,
            {HUMANIZING: 0.5},
            TenantPolicy(categories={HUMANIZING: CategoryRule(action="respond")}),
        )
    with pytest.raises(CalibrationError, match="unknown category"):
        fit_policy(cal, labels, {"Other": 0.5})
    no_humanizing = np.asarray(labels) != HUMANIZING
    with pytest.raises(CalibrationError, match="no prompts labelled 'Humanizing requests'"):
        fit_policy(cal.subset(no_humanizing), [x for x in labels if x != HUMANIZING], {HUMANIZING: 0.5})


def test_isolation_is_small_on_well_separated_categories() -> None:
    cal, cal_labels = synthetic(1000, seed=10, margin=8.0, spread=0.5)
    held, held_labels = synthetic(1000, seed=11, margin=8.0, spread=0.5)
    targets = {SAFETY: 0.9, INCOMPLETE: 0.8}
    fit = fit_policy(cal, cal_labels, targets, thresholds_only())
    report = heldout_report(fit.policy, cal, cal_labels, held, held_labels, targets, coverage=0.95)
    assert {row.category for row in report.isolation} == set(COCONOT_CATEGORIES)
    for row in report.isolation:
        assert row.max_other_delta <= 0.01, row.to_dict()
        assert row.own_rates[0] >= 0.9  # the knob still moves its own category
    assert sorted(report.isolation_profile) == [0.5, 0.8, 0.9, 0.95]
    assert report.isolation_profile[0.95] == {r.category: r.max_other_delta for r in report.isolation}


def test_isolation_profile_grows_with_coverage_on_confusable_categories() -> None:
    cal, cal_labels = synthetic(1000, seed=13, margin=2.0)
    held, held_labels = synthetic(1000, seed=14, margin=2.0)
    fit = fit_policy(cal, cal_labels, {SAFETY: 0.6}, thresholds_only())
    report = heldout_report(fit.policy, cal, cal_labels, held, held_labels, {SAFETY: 0.6}, coverage=0.99)
    worst = [max(report.isolation_profile[c].values()) for c in (0.5, 0.8, 0.9, 0.95, 0.99)]
    assert worst == sorted(worst) and worst[-1] > 0.05  # reaching deeper costs more isolation
    data = report.to_dict()["isolation_max_other_delta_pp_by_coverage"]
    assert set(data) == {"0.5", "0.8", "0.9", "0.95", "0.99"}


# ---- policy file ---------------------------------------------------------------------------------
def test_written_policy_loads_and_merges(tmp_path: Path) -> None:
    cal, labels = synthetic(200, seed=12)
    fit = fit_policy(cal, labels, {SAFETY: 0.9}, thresholds_only())
    path = tmp_path / "policy.yaml"
    store = write_policy(path, "bank", fit.policy, header="line one\n\nline three")
    assert path.read_text().startswith("# line one\n#\n# line three\n")
    assert store.default_tenant == "bank"
    loaded = store.get("bank")
    assert loaded.categories[SAFETY].threshold == fit.fits[SAFETY].threshold  # exact float round trip
    assert (cal.refused_under(loaded) == cal.refused_under(fit.policy)).all()
    store = write_policy(path, "shop", TenantPolicy())
    assert set(store.tenants) == {"bank", "shop"} and store.default_tenant == "bank"
    assert PolicyStore.from_file(path).get("bank") == loaded


def test_an_existing_file_without_default_tenant_keeps_none(tmp_path: Path) -> None:
    """The calibrated tenant never becomes the default of an existing file that had none."""
    path = tmp_path / "policy.yaml"
    path.write_text("tenants:\n  bank: {}\n", encoding="utf-8")
    store = write_policy(path, "calibrated", TenantPolicy())
    assert store.default_tenant is None
    assert "default_tenant" not in path.read_text()
    assert set(store.tenants) == {"bank", "calibrated"}


def test_policy_file_is_replaced_atomically(tmp_path: Path) -> None:
    """A store reading the file during a write sees the old or the new file, never a partial one:
    the text goes to a temporary file beside it, which then replaces it (same inode never truncated)."""
    path = tmp_path / "policy.yaml"
    write_policy(path, "bank", TenantPolicy())
    path.chmod(0o640)
    before = path.stat().st_ino
    held = path.open(encoding="utf-8")  # a reader that opened the old file keeps reading it whole
    old_text = path.read_text(encoding="utf-8")
    write_policy(path, "shop", TenantPolicy(), header="second write")
    assert held.read() == old_text
    held.close()
    assert path.stat().st_ino != before  # replaced, not rewritten in place
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    assert [p.name for p in tmp_path.iterdir()] == ["policy.yaml"]  # no temporary file left behind
    assert set(PolicyStore.from_file(path).tenants) == {"bank", "shop"}


# ---- one shared threshold to a false-refusal budget ------------------------------------------------
def refused_share(table: ProbabilityTable, labels: list[str], policy: TenantPolicy, label: str) -> float:
    arr = np.asarray(labels)
    return float(table.refused_under(policy)[arr == label].mean())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(0.0, 1.0), n=st.integers(3, 60))
def test_the_budget_holds_and_no_lower_threshold_would(seed: int, budget: float, n: int) -> None:
    """Within budget on the calibration prompts, and the threshold is the lowest that is."""
    table, labels = synthetic(n, seed=seed, margin=1.5)
    fit = fit_false_refusal_budget(table, labels, budget)
    policy = fit.policy
    thresholds = {rule.threshold for rule in policy.categories.values()}
    assert len(thresholds) == 1
    (threshold,) = thresholds
    assert threshold is not None and 0.0 <= threshold <= 1.0
    benign = np.asarray(labels) == "respond"
    refused = table.refused_under(policy)
    assert refused[benign].sum() <= math.floor(budget * benign.sum() + 1e-9)
    assert fit.false_refusal is not None and fit.false_refusal.count == int(refused[benign].sum())
    # every score at or above the threshold was allowed; the next benign score below it was not
    score = table.probs[:, 1:].max(axis=1)
    below = score[benign & (score < threshold)]
    if below.size:
        assert (refused[benign].sum() + (score[benign] == below.max()).sum()) > math.floor(
            budget * benign.sum() + 1e-9
        )


def test_decisions_agree_with_the_table() -> None:
    """The fitted policy, applied by `decide` to each distribution, refuses exactly what the fit counted."""
    table, labels = synthetic(40, seed=3)
    fit = fit_false_refusal_budget(table, labels, 0.05)
    for i in range(len(labels)):
        probs = dict(zip(table.names, table.probs[i].tolist(), strict=True))
        dist = FirstTokenDistribution(probabilities=probs, rest=float(table.rest[i]))
        assert (decide(dist, fit.policy).action != "respond") == bool(table.refused_under(fit.policy)[i])
    for category, item in fit.fits.items():
        assert item.target is None
        assert item.achieved == pytest.approx(refused_share(table, labels, fit.policy, category))


def test_bigger_budget_refuses_more() -> None:
    table, labels = synthetic(80, seed=5, margin=1.0)
    rates = [
        refused_share(table, labels, fit_false_refusal_budget(table, labels, b).policy, SAFETY)
        for b in (0.0, 0.05, 0.2, 1.0)
    ]
    assert rates == sorted(rates) and rates[-1] == 1.0 and rates[0] < rates[-1]


def test_base_policy_keeps_messages_actions_bias_and_answered_categories() -> None:
    base = TenantPolicy(
        categories={
            INCOMPLETE: CategoryRule(action="route", route="clarify"),
            HUMANIZING: CategoryRule(action="respond"),
            SAFETY: CategoryRule(message="No."),
        },
        logit_bias={"respond": -0.5},
    )
    table, labels = synthetic(40, seed=11)
    fit = fit_false_refusal_budget(table, labels, 0.1, base)
    rules = fit.policy.categories
    assert rules[HUMANIZING].action == "respond" and rules[HUMANIZING].threshold is None
    assert rules[INCOMPLETE].action == "route" and rules[INCOMPLETE].route == "clarify"
    assert rules[SAFETY].message == "No."
    assert fit.policy.logit_bias == {"respond": -0.5}
    assert HUMANIZING not in fit.fits
    # the bias is applied before the budget is counted
    benign = np.asarray(labels) == "respond"
    assert table.refused_under(fit.policy)[benign].mean() <= 0.1 + 1e-12


def test_bad_inputs_are_typed_errors() -> None:
    table, labels = synthetic(10, seed=1)
    with pytest.raises(CalibrationError, match="within"):
        fit_false_refusal_budget(table, labels, 1.5)
    refusals = np.asarray(labels) != "respond"
    with pytest.raises(CalibrationError, match="labelled 'respond'"):
        fit_false_refusal_budget(table.subset(refusals), [x for x in labels if x != "respond"], 0.1)
    everything_answered = TenantPolicy(
        categories={c: CategoryRule(action="respond") for c in COCONOT_CATEGORIES}
    )
    with pytest.raises(CalibrationError, match="nothing to fit"):
        fit_false_refusal_budget(table, labels, 0.1, everything_answered)


def test_written_messages_read_back_unchanged_whatever_their_characters(tmp_path: Path) -> None:
    """YAML writes U+0085 raw when allowed to, and reads it back as a line break."""
    path = tmp_path / "policy.yaml"
    for message in ("a\x85b", "é \u2028 x\ty", "plain"):
        policy = TenantPolicy(refusal_message=message)
        assert write_policy(path, "t", policy).get("t").refusal_message == message


def test_an_unwritable_policy_file_is_a_config_error(tmp_path: Path) -> None:
    from rt_middleware.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot write the policy file"):
        write_policy(blocker / "policy.yaml", "t", TenantPolicy())
