"""Calibration: per-category thresholds (and, where needed, first-step biases) that hit target refusal rates.

Definitions (the decision rule is `rt_middleware.decision.decide`):

- A prompt is *refused* when its decision is refuse or route. Under the rule that happens exactly
  when at least one category fires (probability >= its threshold, or argmax for a rule without
  threshold), whichever category then wins.
- The *refusal rate of category c* is the share of prompts labelled c that are refused, whichever
  category fired. So c's rate has a floor: the prompts other categories' rules already refuse.
- The fit is a fixed point: for each targeted category c in turn, holding the others, c's
  threshold is placed between two adjacent probabilities of c's not-yet-refused prompts so that
  (floor + those above it) / n is as close to the target as the data allows (geometric midpoint,
  never splitting tied probabilities); rounds repeat until no threshold moves.
- Where no threshold can get within one prompt of a target (tied or saturated probabilities, or a
  floor above the target), a first-step logit bias on that category's token is searched (smallest
  magnitude first; re-biasing is exact from cached probabilities, no model call). If that fails
  too, `CalibrationError` gives the reachable range.

`fit_false_refusal_budget` is the one-knob alternative: every refusing category shares one
threshold, the lowest that refuses at most a given share of the respond-labelled prompts. It reads
the benign prompts' scores only, so it needs no per-category sample (CoCoNot's calibration split
has ~40 prompts per category, whose 95th percentiles move with every prompt).

The held-out report of a fitted policy (rates with intervals, isolation) is
`rt_middleware.evaluation.heldout`; writing the policy file is `rt_middleware.policy_io`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rt_middleware.errors import ConfigError
from rt_middleware.evaluation.metrics import Rate
from rt_middleware.evaluation.sweep import common_refusal_score
from rt_middleware.evaluation.table import NEVER, ProbabilityTable, Rule, rules_of
from rt_middleware.policy import CategoryRule, TenantPolicy
from rt_middleware.tokens import RESPOND, category_alias, resolve_category

__all__ = [
    "BIAS_GRID",
    "CalibrationError",
    "CalibrationFit",
    "CategoryFit",
    "fit_false_refusal_budget",
    "fit_policy",
    "parse_targets",
]

BIAS_GRID = (0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 8.0, -8.0, 16.0, -16.0, 32.0, -32.0)
"""First-step biases tried on a category's own token, smallest magnitude first."""
MAX_ROUNDS = 100


class CalibrationError(ConfigError):
    """A target cannot be met, or targets and constraints contradict each other."""


def _with_alias(category: str) -> str:
    alias = category_alias(category)
    return f"{category} ({alias})" if alias else category


def parse_targets(texts: Iterable[str], categories: Sequence[str]) -> dict[str, float]:
    """``"Category name=0.95"`` strings -> {category: rate}; names (or short aliases such as ``safety``)
    must be the model's categories."""
    targets: dict[str, float] = {}
    for text in texts:
        name, sep, value = text.rpartition("=")
        name = resolve_category(name.strip())
        if not sep or not name:
            raise CalibrationError(
                f"--target {text!r}: expected 'Category name=rate', e.g. 'Incomplete requests=0.8'"
            )
        if name not in categories:
            raise CalibrationError(
                f"--target {text!r}: unknown category {name!r}; "
                f"the model's categories are: {', '.join(_with_alias(c) for c in categories)}"
            )
        try:
            rate = float(value)
        except ValueError:
            raise CalibrationError(f"--target {text!r}: {value.strip()!r} is not a number") from None
        if not 0.0 <= rate <= 1.0 or math.isnan(rate):
            raise CalibrationError(f"--target {text!r}: the rate must be within [0, 1], got {rate}")
        if name in targets:
            raise CalibrationError(f"--target given twice for {name!r}")
        targets[name] = rate
    if not targets:
        raise CalibrationError("give at least one --target 'Category name=rate'")
    return targets


def _between(high: float, low: float) -> float:
    """A threshold t with low < t <= high: the geometric midpoint where representable."""
    t = math.sqrt(high * low) if low > 0 else high / 2
    return t if low < t <= high else high


@dataclass(frozen=True)
class _Cut:
    threshold: float
    achieved: float
    reachable: tuple[float, float]
    floor: float


def _place(p_rest: np.ndarray, floor_count: int, n: int, target: float) -> _Cut:
    """Best threshold over c's not-yet-refused probabilities `p_rest`; never splits ties."""
    r = np.sort(p_rest)[::-1]
    cuts: list[tuple[int, float]] = []  # (number firing, threshold)
    if r.size == 0 or r[0] < 1.0:
        cuts.append((0, _between(1.0, float(r[0])) if r.size else 1.0))
    for k in range(1, r.size):
        if r[k - 1] > r[k]:
            cuts.append((k, _between(float(r[k - 1]), float(r[k]))))
    if r.size:
        cuts.append((r.size, float(r[-1]) / 2))
    k, threshold = min(cuts, key=lambda kt: (abs((floor_count + kt[0]) / n - target), kt[0]))
    return _Cut(
        threshold=threshold,
        achieved=(floor_count + k) / n,
        reachable=((floor_count + cuts[0][0]) / n, 1.0),
        floor=floor_count / n,
    )


def _fit_thresholds(
    table: ProbabilityTable, labels: np.ndarray, targets: Mapping[str, float], base_rules: Mapping[str, Rule]
) -> tuple[dict[str, Rule], dict[str, _Cut], int]:
    rules: dict[str, Rule] = {**base_rules, **{c: 1.0 for c in targets}}
    cuts: dict[str, _Cut] = {}
    for round_no in range(1, MAX_ROUNDS + 1):
        moved = False
        for category, target in targets.items():
            mask = labels == category
            floor = table.refused({**rules, category: NEVER})[mask]
            cut = _place(table.column(category)[mask][~floor], int(floor.sum()), int(mask.sum()), target)
            cuts[category] = cut
            if rules[category] != cut.threshold:
                rules[category] = cut.threshold
                moved = True
        if not moved:
            return rules, cuts, round_no
    raise CalibrationError(
        f"thresholds did not settle in {MAX_ROUNDS} rounds (categories keep trading prompts); "
        "set fewer targets at once"
    )


def _reached(cut: _Cut, target: float, n: int) -> bool:
    """Within one prompt of the target: the best any threshold can do on n prompts without ties."""
    return abs(cut.achieved - target) <= 1.0 / n + 1e-12


@dataclass(frozen=True)
class CategoryFit:
    category: str
    target: float | None
    """None for a shared-threshold fit (`fit_false_refusal_budget`): no per-category target."""
    threshold: float
    achieved: float
    """Refusal rate on the calibration split."""
    n: int
    reachable: tuple[float, float]
    floor: float
    """Share of this category's prompts other categories' rules refuse."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "threshold": self.threshold,
            "calibration_rate": self.achieved,
            "n_calibration": self.n,
            "reachable": list(self.reachable),
            "floor": self.floor,
        }


@dataclass(frozen=True)
class CalibrationFit:
    policy: TenantPolicy
    fits: dict[str, CategoryFit]
    bias: dict[str, float]
    """Bias keys the fit added to the base policy's logit_bias."""
    rounds: int
    false_refusal: Rate | None
    """Refusals of ``respond``-labelled calibration prompts (None when there are none)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": {c: f.to_dict() for c, f in self.fits.items()},
            "added_logit_bias": self.bias,
            "rounds": self.rounds,
            "calibration_false_refusal": self.false_refusal.to_dict() if self.false_refusal else None,
        }


def _check_inputs(
    table: ProbabilityTable, labels: np.ndarray, targets: Mapping[str, float], base: TenantPolicy
) -> None:
    if len(table) != labels.size:
        raise ValueError(f"{len(table)} distributions but {labels.size} labels")
    for category in targets:
        if category not in table.categories:
            raise CalibrationError(
                f"unknown category {category!r}; the model's categories are: {', '.join(table.categories)}"
            )
        if not (labels == category).any():
            raise CalibrationError(f"the calibration data has no prompts labelled {category!r}")
        rule = base.rule_for(category)
        if rule is not None and rule.action == "respond":
            raise CalibrationError(
                f"the base policy answers {category!r} (action respond); a refusal-rate target needs "
                "action refuse or route"
            )


def fit_policy(
    table: ProbabilityTable,
    labels: Sequence[str],
    targets: Mapping[str, float],
    base: TenantPolicy | None = None,
    *,
    max_false_refusal: float | None = None,
) -> CalibrationFit:
    """Fit `base` (default: all categories refuse) to `targets` on unbiased distributions `table`.

    `table` must come from the model at `base.temperature` with no bias; the base policy's own
    `logit_bias` is applied here, and any bias the fit adds is merged into it.
    """
    base = base or TenantPolicy()
    arr = np.asarray(labels)
    _check_inputs(table, arr, targets, base)
    if max_false_refusal is not None:
        _check_false_refusal_limit(max_false_refusal)
    base_rules = rules_of(base, table.categories)
    counts = {c: int((arr == c).sum()) for c in targets}

    def attempt(extra: Mapping[str, float]) -> tuple[dict[str, Rule], dict[str, _Cut], int, dict[str, float]]:
        bias = dict(base.logit_bias)
        for key, value in extra.items():
            bias[key] = bias.get(key, 0.0) + value
        rules, cuts, rounds = _fit_thresholds(table.with_bias(bias), arr, targets, base_rules)
        return rules, cuts, rounds, bias

    extra: dict[str, float] = {}
    rules, cuts, rounds, bias = attempt(extra)
    first_rules, first_cuts, first_bias = dict(rules), dict(cuts), dict(bias)
    for category, target in targets.items():
        if _reached(cuts[category], target, counts[category]):
            continue
        reached_before = [c for c in targets if _reached(cuts[c], targets[c], counts[c])]
        for value in BIAS_GRID:
            if not -100.0 <= bias.get(category, 0.0) + value <= 100.0:
                continue
            trial = attempt({**extra, category: value})
            if _reached(trial[1][category], target, counts[category]) and all(
                _reached(trial[1][c], targets[c], counts[c]) for c in reached_before
            ):
                extra[category] = value
                rules, cuts, rounds, bias = trial
                break
    missed = [c for c in targets if not _reached(cuts[c], targets[c], counts[c])]
    if missed:
        parts = []
        for c in missed:
            cut = first_cuts[c]
            why = (
                f"other categories' rules already refuse {cut.floor:.1%} of its prompts: "
                + _blame(table.with_bias(first_bias), arr, first_rules, c)
                if targets[c] < cut.floor
                else "its probabilities are tied or saturated around that rate"
            )
            parts.append(
                f"{c!r}: target {targets[c]:.3f} is unreachable; reachable range on the calibration split "
                f"is [{cut.reachable[0]:.3f}, {cut.reachable[1]:.3f}] ({why}; first-step biases up to "
                f"±{max(BIAS_GRID):g} did not help; n={counts[c]})"
            )
        raise CalibrationError("; ".join(parts))
    categories = dict(base.categories)
    for category in targets:
        old = categories.get(category) or CategoryRule(action="refuse")
        categories[category] = CategoryRule(**{**old.model_dump(), "threshold": float(rules[category])})
    policy = TenantPolicy(**{**base.model_dump(), "categories": categories, "logit_bias": bias})
    fits = {
        c: CategoryFit(
            c, targets[c], float(rules[c]), cuts[c].achieved, counts[c], cuts[c].reachable, cuts[c].floor
        )
        for c in targets
    }
    false_refusal = _false_refusals(table, arr, policy, max_false_refusal)
    return CalibrationFit(policy=policy, fits=fits, bias=extra, rounds=rounds, false_refusal=false_refusal)


def _blame(table: ProbabilityTable, labels: np.ndarray, rules: Mapping[str, Rule], category: str) -> str:
    """Which other categories fire on `category`'s prompts, and how often."""
    mask = labels == category
    fires = table.subset(mask).fires({**rules, category: NEVER})
    counts = Counter({c: int(fires[:, j].sum()) for j, c in enumerate(table.categories)})
    return ", ".join(
        f"{c} ({'argmax' if isinstance(rules[c], str) else f'threshold {float(rules[c]):.3g}'}) on {k}"
        for c, k in counts.most_common()
        if k
    )


def _check_false_refusal_limit(limit: float) -> None:
    if not 0.0 <= limit <= 1.0:  # NaN fails too
        raise CalibrationError(f"--max-false-refusal must be within [0, 1], got {limit}")


def _false_refusals(
    table: ProbabilityTable, labels: np.ndarray, policy: TenantPolicy, limit: float | None,
    *, remedy: str = "lower those categories' targets",
) -> Rate | None:
    benign = labels == RESPOND
    if not benign.any():
        if limit is not None:
            raise CalibrationError(
                "--max-false-refusal needs prompts labelled 'respond' in the calibration data"
            )
        return None
    refused = table.refused_under(policy)[benign]
    rate = Rate(int(refused.sum()), int(benign.sum()))
    if limit is not None and rate.value is not None and rate.value > limit + 1e-12:
        biased = table.with_bias(policy.logit_bias).subset(benign)
        fires = biased.fires(rules_of(policy, biased.categories))[refused]
        blame = Counter({c: int(fires[:, j].sum()) for j, c in enumerate(biased.categories)})
        worst = ", ".join(f"{c} fires on {k}" for c, k in blame.most_common() if k)
        raise CalibrationError(
            f"this policy refuses {rate.value:.1%} ({rate.count}/{rate.total}) of the benign calibration "
            f"prompts, above --max-false-refusal {limit:.1%} ({worst}); {remedy}"
        )
    return rate


def fit_false_refusal_budget(
    table: ProbabilityTable,
    labels: Sequence[str],
    max_false_refusal: float,
    base: TenantPolicy | None = None,
) -> CalibrationFit:
    """One threshold shared by every refusing category of `base`: the lowest that refuses at most
    `max_false_refusal` of the respond-labelled prompts in `table` (unbiased; `base.logit_bias` is applied).

    The lowest such threshold refuses the most should-refuse prompts; it sits between the highest
    benign score allowed through and the next score above it (geometric midpoint), never on a
    calibration probability. Categories the base answers (action respond) keep that rule.
    """
    base = base or TenantPolicy()
    arr = np.asarray(labels)
    if len(table) != arr.size:
        raise ValueError(f"{len(table)} distributions but {arr.size} labels")
    _check_false_refusal_limit(max_false_refusal)
    benign_mask = arr == RESPOND
    if not benign_mask.any():
        raise CalibrationError(
            "a false-refusal budget needs prompts labelled 'respond' in the calibration data"
        )
    refusing = [c for c in table.categories if (r := base.rule_for(c)) is None or r.action != "respond"]
    if not refusing:
        raise CalibrationError("the base policy answers every category (action respond); nothing to fit")
    biased = table.with_bias(base.logit_bias)
    score = common_refusal_score(biased, {c: (1.0 if c in refusing else NEVER) for c in table.categories})
    benign = np.sort(score[benign_mask])[::-1]
    allowed = math.floor(max_false_refusal * benign.size + 1e-9)
    if allowed >= benign.size:
        threshold = _between(float(score.min()), 0.0)
    else:
        above = score[score > benign[allowed]]
        threshold = _between(float(above.min()) if above.size else 1.0, float(benign[allowed]))
    categories = dict(base.categories)
    for category in refusing:
        old = categories.get(category) or CategoryRule(action="refuse")
        categories[category] = CategoryRule(**{**old.model_dump(), "threshold": threshold})
    policy = TenantPolicy(**{**base.model_dump(), "categories": categories})
    refused = table.refused_under(policy)
    fits = {
        c: CategoryFit(
            c, None, threshold, float(refused[arr == c].mean()), int((arr == c).sum()), (0.0, 1.0), 0.0
        )
        for c in refusing
        if (arr == c).any()
    }
    false_refusal = _false_refusals(
        table, arr, policy, max_false_refusal,
        remedy="the base policy's own rules (argmax, logit bias) refuse them at any shared threshold; "
        "start from a base tenant without them (--base-tenant) or raise the budget",
    )
    return CalibrationFit(policy=policy, fits=fits, bias={}, rounds=1, false_refusal=false_refusal)
