"""The labelled-prompt record, the user FILE schema (JSONL/CSV) and where shared data lives."""

from __future__ import annotations

import csv
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rt_middleware.errors import ConfigError

__all__ = [
    "DATA_DIR_ENV",
    "DatasetError",
    "LabeledPrompt",
    "NearDuplicateIndex",
    "checkout_data_dir",
    "content_words",
    "data_dir",
    "dedupe_against",
    "load_file",
    "normalize_text",
]

DATA_DIR_ENV = "RT_DATA_DIR"
_LABEL_KEYS = ("label", "expected", "category")


class DatasetError(ConfigError):
    """A data file is missing, empty or malformed; the message names the file and line."""


@dataclass(frozen=True)
class LabeledPrompt:
    """One prompt and the decision it should get (a category name, or ``respond``)."""

    prompt: str
    label: str
    source: str = "file"
    subcategory: str | None = None
    id: str | None = None
    response: str | None = None
    """A reference answer where the set has one (used as a training target)."""
    mimics: str | None = None
    """For contrast prompts (label ``respond``): the refusal category they look like."""
    history: tuple[tuple[str, str], ...] = ()
    """Earlier ``(role, text)`` turns before `prompt` (the last user turn), for multi-turn rows."""

    @property
    def should_refuse(self) -> bool:
        return self.label != "respond"


def data_dir(folder: str | Path | None = None) -> Path:
    """The folder holding the data sets (coconot/, xstest/, ...): `folder`, else ``$RT_DATA_DIR``.

    Nothing is searched for: the library never guesses from the working directory. The `rt` CLI
    and the test suite default ``RT_DATA_DIR`` to the ``shared/data`` folder beside a source
    checkout (`checkout_data_dir`).
    """
    chosen = folder if folder is not None else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        raise DatasetError(
            f"no data folder given: set {DATA_DIR_ENV} to the folder holding coconot/, xstest/, ... "
            f"(e.g. export {DATA_DIR_ENV}=/path/to/shared/data; in a source checkout that is "
            "../shared/data beside the repository), or pass the folder as `root=`"
        )
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"the data folder {path} does not exist; set {DATA_DIR_ENV} to the folder holding "
            "coconot/, xstest/, ..."
        )
    return path


def checkout_data_dir() -> Path | None:
    """``shared/data`` beside the source checkout this package runs from, if there is one.

    The default of the `rt` CLI and of the tests; an installed wheel has none.
    """
    candidate = Path(__file__).resolve().parents[3] / "shared" / "data"
    return candidate if candidate.is_dir() else None


def normalize_text(text: str) -> str:
    """Casefolded, NFKC, punctuation-free, single-spaced: the key for de-duplication."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def _identity(row: LabeledPrompt) -> tuple[str, ...]:
    """The normalised texts of every turn: two rows are duplicates when these are equal."""
    return (*(normalize_text(text) for _, text in row.history), normalize_text(row.prompt))


def _user_texts(row: LabeledPrompt) -> list[str]:
    return [*(normalize_text(text) for role, text in row.history if role == "user"), normalize_text(row.prompt)]


def dedupe_against(rows: Iterable[LabeledPrompt], *held_out: Iterable[LabeledPrompt]) -> list[LabeledPrompt]:
    """Drop rows that repeat a held-out row, and duplicates among rows (by normalised text).

    A single-turn held-out row also bans every multi-turn row with that text in any user turn, so
    an EVAL prompt never enters training inside a conversation either.
    """
    held = [_identity(r) for rows_ in held_out for r in rows_]
    banned = set(held)
    banned_turns = {key[0] for key in held if len(key) == 1}
    out, seen = [], set()
    for row in rows:
        key = _identity(row)
        if key in banned or key in seen or (row.history and banned_turns.intersection(_user_texts(row))):
            continue
        seen.add(key)
        out.append(row)
    return out


_STOPWORDS = frozenset(
    ["a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "is", "are", "was", "were", "be", "i", "you", "my", "me", "your", "it", "this", "that", "how", "what", "do", "does", "can", "could", "would", "should", "with", "by", "as", "at", "from"]
)


def content_words(text: str) -> frozenset[str]:
    """The normalised words of `text` without function words: "How can I make a bomb?" -> {make, bomb}."""
    return frozenset(normalize_text(text).split()) - _STOPWORDS


class NearDuplicateIndex:
    """Finds held-out prompts whose content words nearly equal a row's (Jaccard >= `threshold`).

    Why: exact de-duplication misses a rewrite such as "How can I commit identity theft?" when an
    EVAL set asks "How do I commit identity theft?"; a generated row must not train on it either.
    `strict` (mix v6 on) also catches what content words alone let through: a short rewrite that
    adds one word ("how do i commit mail fraud" vs "How do I commit fraud?": 2 of 3 content words,
    but 5 of 6 words), and a long row that shares a passage with a held-out prompt (half or more
    of its 8-word runs occur there: HarmBench rows built around the same context text).
    """

    def __init__(self, held_out: Iterable[LabeledPrompt], threshold: float = 0.8, *, strict: bool = False) -> None:
        self.threshold = threshold
        self.strict = strict
        self._sets: list[frozenset[str]] = []
        self._index: dict[str, list[int]] = {}
        self._word_sets: list[frozenset[str]] = []  # aligned with `_sets`
        self._shingles: set[tuple[str, ...]] = set()
        for row in held_out:
            _add(self._sets, self._index, content_words(row.prompt))
            if strict:
                words = normalize_text(row.prompt).split()
                self._word_sets.append(frozenset(words))
                self._shingles.update(_shingles(words))

    def similarity(self, text: str) -> float:
        """The highest Jaccard similarity between `text`'s content words and any held-out prompt's
        (strict: the higher of that and the same over all its words, among the prompts that share a
        content word: two texts 80% alike in words share their rare ones too)."""
        words = content_words(text)
        shared = _shared_counts(words, self._index)
        best = max((n / len(words | self._sets[i]) for i, n in shared.items()), default=0.0)
        if self.strict:
            every = frozenset(normalize_text(text).split())
            best = max([best, *(len(every & self._word_sets[i]) / len(every | self._word_sets[i]) for i in shared)])
        return best

    def shared_passage(self, text: str) -> float:
        """Strict: the share of `text`'s 8-word runs found in held-out prompts (0 for shorter text)."""
        runs = _shingles(normalize_text(text).split())
        return sum(run in self._shingles for run in runs) / len(runs) if runs else 0.0

    def near(self, row: LabeledPrompt) -> bool:
        """True when any user turn of `row` is a near-duplicate of a held-out prompt."""
        texts = [row.prompt, *(text for role, text in row.history if role == "user")]
        return any(self.similarity(text) >= self.threshold or (self.strict and self.shared_passage(text) >= 0.5)
                   for text in texts)


_SHINGLE = 8


def _shingles(words: list[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + _SHINGLE]) for i in range(len(words) - _SHINGLE + 1)]


def _add(sets: list[frozenset[str]], index: dict[str, list[int]], words: frozenset[str]) -> None:
    for word in words:
        index.setdefault(word, []).append(len(sets))
    sets.append(words)


def _shared_counts(words: frozenset[str], index: dict[str, list[int]]) -> dict[int, int]:
    """Held-out prompt index -> how many of `words` it holds (only prompts holding any)."""
    shared: dict[int, int] = {}
    for word in words:
        for i in index.get(word, ()):
            shared[i] = shared.get(i, 0) + 1
    return shared


def _row(record: dict, where: str, source: str) -> LabeledPrompt:
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DatasetError(f"{where}: missing or empty 'prompt'")
    label = next((record[k] for k in _LABEL_KEYS if record.get(k) not in (None, "")), None)
    if not isinstance(label, str):
        raise DatasetError(f"{where}: missing label (one of {', '.join(_LABEL_KEYS)}: a category or 'respond')")
    return LabeledPrompt(
        prompt=prompt,
        label=label.strip(),
        source=source,
        subcategory=record.get("subcategory") or None,
        id=str(record["id"]) if record.get("id") not in (None, "") else None,
        response=record.get("response") or None,
    )


def load_file(path: str | Path, *, categories: Iterable[str] | None = None) -> list[LabeledPrompt]:
    """Read the FILE schema: JSONL or CSV rows with ``prompt`` and ``label`` (or ``expected``/``category``).

    The label is a category name or ``respond``; optional fields: id, subcategory, response.
    With `categories`, an unknown label is an error naming its line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data file not found: {path}")
    rows: list[LabeledPrompt] = []
    source = path.stem
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "prompt" not in reader.fieldnames:
                raise DatasetError(f"{path}:1: the CSV header needs a 'prompt' column")
            for line, record in enumerate(reader, start=2):
                rows.append(_row(record, f"{path}:{line}", source))
    else:
        with path.open(encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{line}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{path}:{line}: each line must be a JSON object")
                rows.append(_row(record, f"{path}:{line}", source))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    if categories is not None:
        known = {*categories, "respond"}
        for i, row in enumerate(rows):
            if row.label not in known:
                raise DatasetError(
                    f"{path}: row {i + 1}: unknown label {row.label!r}; expected one of {sorted(known)}"
                )
    return rows
