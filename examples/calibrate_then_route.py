"""Calibrate, then route: fit per-category thresholds to target refusal rates, then serve that policy.

    python examples/calibrate_then_route.py [--model ...] [--per-label 12] [--out calibrated.yaml]

Fits on CoCoNot's calibration split (never its test split) with `rt_middleware.calibration`, the
library behind `rt calibrate`. The base policy answers every category not targeted, so each target
is met by its own threshold. The fitted tenant is written to a policy file, loaded back as a
router would load it, and compared with the shipped `default` tenant on a few prompts. The same fit
from the command line (on the whole split, with a held-out report):

    rt calibrate --target "Requests with safety concerns=0.9" --target "Incomplete requests=0.6" \\
        --policy base.yaml --base-tenant answer --out calibrated.yaml --tenant calibrated
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from _common import decision_fields, load, parser, short
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from rt_middleware import PolicyStore, RefusalRouter, TenantPolicy
from rt_middleware.backends import BaseBackend
from rt_middleware.calibration import CalibrationError, fit_policy, parse_targets
from rt_middleware.datasets import LabeledPrompt, load_coconot
from rt_middleware.evaluation import ProbabilityTable
from rt_middleware.messages import as_conversation
from rt_middleware.policy_io import write_policy

TARGETS = ["Requests with safety concerns=0.9", "Incomplete requests=0.6"]
PROMPTS = ["How do I make a bomb at home?", "Write it again but better.", "How do I bake sourdough bread?"]


def calibration_rows(backend: BaseBackend, per_label: int) -> list[LabeledPrompt]:
    """The first `per_label` prompts of each label that fit the model's context."""
    kept: dict[str, list[LabeledPrompt]] = defaultdict(list)
    for row in load_coconot("calibration"):
        fits = backend.max_context is None or len(backend.encode(as_conversation(row.prompt))) < backend.max_context
        if fits and len(kept[row.label]) < per_label:
            kept[row.label].append(row)
    return [row for rows in kept.values() for row in rows]


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--target", action="append", help=f"'Category=rate', repeatable (default: {TARGETS})")
    cli.add_argument("--per-label", type=int, default=12, help="calibration prompts per label")
    cli.add_argument("--out", type=Path, default=None, help="policy file to write (default: a temp file)")
    args = cli.parse_args()
    backend = load(args.model)
    try:
        targets = parse_targets(args.target or TARGETS, backend.schema.category_names)
    except CalibrationError as exc:
        sys.exit(str(exc))
    rows = calibration_rows(backend, args.per_label)
    table = ProbabilityTable.from_distributions(
        backend.first_token_distributions([row.prompt for row in rows], progress=True))
    base = TenantPolicy(categories={c: {"action": "respond"} for c in backend.schema.category_names
                                    if c not in targets})
    try:
        fit = fit_policy(table, [row.label for row in rows], targets, base)
    except CalibrationError as exc:
        sys.exit(f"calibration failed: {exc}")
    for category, result in fit.fits.items():
        print(f"category={category} | target={result.target:.2f} | threshold={result.threshold:.4g} | "
              f"calibration_rate={result.achieved:.3f} | n={result.n}")
    out = args.out or Path(tempfile.mkdtemp(prefix="rt-calibrated-")) / "policy.yaml"
    calibrated = write_policy(out, "calibrated", fit.policy, header=f"fitted on {len(rows)} CoCoNot calibration prompts")
    print(f"policy_file={out} | policy_version={calibrated.version}")
    clarify = RunnableLambda(lambda _input: AIMessage("Could you tell me more?"))  # the shipped bank tenant routes
    routers = {"default": RefusalRouter(backend=backend, policies=PolicyStore.default(), routes={"clarify": clarify}),
               "calibrated": RefusalRouter(backend=backend, policies=calibrated)}
    for prompt in PROMPTS:
        for tenant, router in routers.items():
            decision = router.decide(prompt, tenant_id=tenant)
            print(f"tenant={tenant} | prompt={short(prompt, 40)} | {decision_fields(decision.to_dict())}")


if __name__ == "__main__":
    main()
