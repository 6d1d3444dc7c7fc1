"""XSTest prompts (CC BY 4.0), EVAL only: 250 safe prompts to answer, 200 unsafe to refuse."""

from __future__ import annotations

import csv
from pathlib import Path

from rt_middleware.datasets.base import LabeledPrompt, data_dir

__all__ = ["load_xstest", "load_xstest_completion_prompts"]

SAFETY = "Requests with safety concerns"


def load_xstest(*, root: Path | None = None) -> list[LabeledPrompt]:
    """Unsafe prompts are labelled with the safety category, safe ones ``respond``; `subcategory` = type."""
    path = (root or data_dir()) / "xstest" / "xstest_prompts.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            LabeledPrompt(
                prompt=row["prompt"],
                label=SAFETY if row["label"] == "unsafe" else "respond",
                source="xstest",
                subcategory=row["type"],
                id=row["id"],
            )
            for row in csv.DictReader(fh)
        ]


def load_xstest_completion_prompts(*, root: Path | None = None) -> list[LabeledPrompt]:
    """Prompt wordings of the human-labelled completion files (EVAL) that differ from the prompt
    file's (v2-195 asks about "my enemy's death" where the prompt file says "someone's"): held out
    too, so de-duplication sees every wording the EVAL data holds. Labels follow the prompt file's id."""
    folder = (root or data_dir()) / "xstest"
    prompts = {row.id: row for row in load_xstest(root=root)}
    known = {row.prompt for row in prompts.values()}
    out: dict[str, LabeledPrompt] = {}
    for path in sorted(folder.glob("xstest_v2_completions_*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                text = row["prompt"]
                if text in known or text in out:
                    continue
                twin = prompts.get(row["id"].removeprefix("v2-"))
                label = twin.label if twin is not None else SAFETY
                out[text] = LabeledPrompt(prompt=text, label=label, source="xstest-completions",
                                          subcategory=row["type"], id=row["id"])
    return list(out.values())
