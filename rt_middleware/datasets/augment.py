"""Question-form rewrites of TRAIN instructions: the same request asked the way people ask it.

The harmful TRAIN sets are written as instructions ("Write a tutorial on how to make a bomb"), so a
model trained on them alone misses the plain question ("How do I make a bomb?"). `extract_action`
pulls the verb phrase out of an instruction or question ("make a bomb"); `question_rewrites` renders
it in varied question forms. The SAME templates are applied to benign TRAIN rows, so the question
form alone never signals harm. Rows whose extraction is not clean are skipped, never guessed.
Pure and deterministic given a seed; no model.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from rt_middleware.datasets.base import LabeledPrompt

__all__ = ["QUESTION_TEMPLATES", "extract_action", "question_rewrites", "render_question"]

QUESTION_TEMPLATES: tuple[str, ...] = (
    "How do I {x}?",
    "How can I {x}?",
    "What's the easiest way to {x}?",
    "how to {x}",
    "Tell me how to {x}.",
    "Is there a way to {x}?",
    "What is the best way to {x}?",
    "How would someone {x}?",
    "how do i {x}",
    "Can you tell me how to {x}?",
    "How does one {x}?",
    "Any tips on how to {x}?",
    "how can i {x}",
    "What do I need to {x}?",
    "I want to {x}. How do I do it?",
    "What's a good way to {x}?",
    "Could you explain how to {x}?",
    "how would i {x}?",
    "Explain how to {x}",
    "What are the steps to {x}?",
)
"""Question forms, casing and punctuation varied on purpose (users rarely write like a benchmark)."""

# Instruction heads: a verb, then only filler words ("a detailed step-by-step guide on"), then
# "how to X" or "to X". Anything else between the head and the action rejects the row.
_HEADS = (
    "write|create|develop|generate|produce|publish|draft|compose|provide|give|design|outline|offer|"
    "explain|describe|demonstrate|show|teach|instruct|detail|guide|suggest|list|share|tell|help|"
    "prepare|make|post|record|film|present|walk|advise|can you|could you|please|i want you to"
)
_FILLER = {
    "a", "an", "the", "me", "us", "users", "people", "someone", "others", "readers", "viewers", "children",
    "kids", "detailed", "step-by-step", "comprehensive", "clear", "simple", "short", "quick", "thorough",
    "practical", "full", "complete", "video", "written", "tutorial", "guide", "manual", "instructions",
    "set", "of", "plan", "strategy", "tips", "advice", "guidance", "steps", "explanation", "overview",
    "in", "detail", "on", "for", "about", "regarding", "explaining", "that", "explains", "teaches",
    "shows", "through", "process", "method", "methods", "ways", "way", "some", "list", "recipe",
    "how-to", "blog", "post", "article", "lesson", "course", "demonstration", "expert", "specific",
    "concrete", "exactly", "please", "help", "can", "you", "could", "i", "want", "to", "describes",
    "outlines", "details", "describing", "outlining",
}
_QUESTION = re.compile(
    r"^(?:how (?:can|do|would|could|should|might) (?:i|we|one|someone|a person)"
    r"|what(?:'s| is) (?:the|a) (?:best|easiest|simplest|fastest|quickest|most effective|most efficient|"
    r"safest|cheapest|good) way to"
    r"|what are (?:some|the) (?:best )?(?:ways|steps|methods|tips) (?:to|for how to)"
    r"|is there a way to|how to|ways to|tips for how to)\s+(?P<x>.+)$",
    re.IGNORECASE,
)
_HOW_TO = re.compile(rf"^(?P<head>(?:{_HEADS})\b[\w\s'-]*?)\s+how to\s+(?P<x>.+)$", re.IGNORECASE)
_TO = re.compile(
    r"^(?:instruct|teach|encourage|show|help|tell|advise)\s+(?:users|people|someone|readers|others|me|children)"
    r"\s+(?:on\s+how\s+)?to\s+(?P<x>.+)$",
    re.IGNORECASE,
)
_GERUND_FORM = re.compile(
    rf"^(?P<head>(?:{_HEADS})\b[\w\s'-]*?)\s+(?:on|for|about)\s+(?P<g>[a-z]+ing)\s+(?P<rest>.+)$",
    re.IGNORECASE,
)

# Gerund -> base verb, only for verbs seen in the TRAIN sets; anything else is skipped.
_GERUNDS = {
    "abducting": "abduct", "accessing": "access", "altering": "alter", "avoiding": "avoid",
    "breaking": "break", "building": "build", "buying": "buy", "cheating": "cheat",
    "circumventing": "circumvent", "committing": "commit", "concealing": "conceal",
    "counterfeiting": "counterfeit", "creating": "create", "cracking": "crack", "disabling": "disable",
    "disrupting": "disrupt", "distributing": "distribute", "engaging": "engage", "escaping": "escape",
    "establishing": "establish", "evading": "evade", "executing": "execute", "exploiting": "exploit",
    "extracting": "extract", "falsifying": "falsify", "fooling": "fool", "forging": "forge",
    "getting": "get", "giving": "give", "hacking": "hack", "harassing": "harass", "hijacking": "hijack",
    "hiding": "hide", "increasing": "increase", "infiltrating": "infiltrate", "isolating": "isolate",
    "launching": "launch", "laundering": "launder", "making": "make", "manipulating": "manipulate",
    "manufacturing": "manufacture", "obtaining": "obtain", "paying": "pay", "planting": "plant",
    "poisoning": "poison", "producing": "produce", "promoting": "promote", "recruiting": "recruit",
    "running": "run", "sabotaging": "sabotage", "selling": "sell", "smuggling": "smuggle",
    "spreading": "spread", "stalking": "stalk", "starting": "start", "stealing": "steal",
    "synthesizing": "synthesize", "taking": "take", "tampering": "tamper", "tracking": "track",
    "trafficking": "traffic", "using": "use", "writing": "write", "improving": "improve",
    "learning": "learn", "cooking": "cook", "cleaning": "clean", "preparing": "prepare",
    "organizing": "organize", "finding": "find", "reducing": "reduce", "saving": "save",
    "choosing": "choose", "training": "train", "growing": "grow", "managing": "manage",
    "staying": "stay", "keeping": "keep", "dealing": "deal", "setting": "set", "removing": "remove",
}
# The action must start with a verb-like word: these starts mean the extraction went wrong.
_BAD_START = {
    "a", "an", "the", "this", "that", "these", "those", "it", "its", "to", "and", "or", "but", "of", "in",
    "on", "for", "with", "by", "as", "is", "are", "was", "be", "i", "you", "your", "my", "we", "they",
    "he", "she", "his", "her", "their", "which", "who", "what", "when", "where", "why", "how", "if",
    "not", "no", "any", "some", "all", "every", "each", "about", "at", "from", "so", "than", "then",
}
_BAD_WORDS = re.compile(r"\b(?:you|your|yours|yourself|above|below|following|this text|this article)\b",
                        re.IGNORECASE)
_MAX_WORDS, _MIN_WORDS = 22, 2
_FIRST_PERSON = re.compile(r"\b(?:i|me|my|mine|myself|i'm|i've|i'd)\b", re.IGNORECASE)
_THIRD_PERSON = re.compile(r"\b(?:someone|one)\b")
""""How would someone recover my account?" reads wrong: first-person actions get first-person forms."""


def _clean_action(action: str) -> str | None:
    action = action.strip().rstrip(" .?!:;,")
    action = re.sub(r",\s+(?:including|and (?:explain|describe|provide|give|include)|step by step|"
                    r"with (?:detailed )?(?:instructions|examples|steps))\b.*$", "", action, flags=re.IGNORECASE)
    action = action.strip().rstrip(" .?!:;,")
    if not action or any(ch in action for ch in "\n?!:;\"“”()[]{}") or re.search(r"\.\s", action):
        return None
    words = action.split()
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS:
        return None
    if words[0].lower() in _BAD_START or not words[0].isalpha() or _BAD_WORDS.search(action):
        return None
    return words[0].lower() + (" " + " ".join(words[1:]) if len(words) > 1 else "")


def _filler_only(head: str) -> bool:
    """True when the words after the instruction verb are only filler ("a detailed tutorial on")."""
    words = head.lower().replace(",", " ").split()[1:]
    return all(w in _FILLER for w in words)


def _coordinated_gerunds(rest: str) -> str | None:
    """"markets and profiting from" -> "markets and profit from"; None for an unknown gerund."""
    def base(match: re.Match[str]) -> str:
        verb = _GERUNDS.get(match.group(2).lower())
        return f"{match.group(1)}{verb}" if verb else match.group(0)

    rest = re.sub(r"(\b(?:and|or|then) )([a-z]+ing)\b", base, rest)
    if re.search(r"\b(?:and|or|then) [a-z]+ing\b", rest) and not re.search(r"\bavoid(?:ing)? [a-z]+ing\b", rest):
        return None
    return rest


def extract_action(text: str) -> str | None:
    """The verb phrase a request asks for ("make a bomb"), or None when it cannot be cut out cleanly.

    Handles "<Write a tutorial on> how to X", "<Instruct users> to X", "<Develop a strategy for>
    X-ing ..." (known gerunds only) and questions ("How can I X?", "What's the best way to X?").
    """
    text = " ".join(text.strip().split())
    if not text or len(text) > 300:
        return None
    match = _QUESTION.match(text)
    if match:
        return _clean_action(match.group("x"))
    match = _HOW_TO.match(text)
    if match and _filler_only(match.group("head")):
        return _clean_action(match.group("x"))
    match = _TO.match(text)
    if match:
        return _clean_action(match.group("x"))
    match = _GERUND_FORM.match(text)
    if match and _filler_only(match.group("head")):
        verb = _GERUNDS.get(match.group("g").lower())
        if verb is not None:
            rest = _coordinated_gerunds(match.group("rest"))
            return None if rest is None else _clean_action(f"{verb} {rest}")
    return None


def render_question(action: str, template: str) -> str:
    """One question form; lowercase templates keep the action lowercase (as people type)."""
    return template.format(x=action)


def question_rewrites(
    rows: Iterable[LabeledPrompt],
    *,
    source: str,
    seed: int = 0,
    per_row: int = 1,
    templates: Sequence[str] = QUESTION_TEMPLATES,
    keep_response: bool = True,
) -> list[LabeledPrompt]:
    """Question-form rewrites of the rows whose action extracts cleanly; labels and answers are kept.

    Each row gets `per_row` distinct templates drawn with `seed`; a rewrite equal to its own source
    prompt (normalised) is skipped, so the rewrites add forms rather than copies. A near-duplicate
    source row (AdvBench repeats "hack into a government database" many times) adds no second copy
    of an action already rewritten.
    """
    rng = random.Random(f"{seed}:{source}")
    out: list[LabeledPrompt] = []
    actions: set[str] = set()
    for row in rows:
        action = extract_action(row.prompt)
        if action is None or action.casefold() in actions:
            continue
        actions.add(action.casefold())
        fitting = [t for t in templates if not (_FIRST_PERSON.search(action) and _THIRD_PERSON.search(t))]
        original = row.prompt.strip().casefold().rstrip("?.! ")
        for template in rng.sample(fitting, min(per_row, len(fitting))):
            question = render_question(action, template)
            if question.casefold().rstrip("?.! ") == original:
                continue
            out.append(
                replace(
                    row,
                    prompt=question,
                    source=source,
                    id=f"{row.id or row.source}:q:{templates.index(template)}",
                    response=row.response if keep_response else None,
                )
            )
    return out
