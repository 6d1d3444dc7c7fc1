"""The opener detector (rt_middleware/refusal_text.py): what counts as opening with refusal text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rt_middleware.refusal_text import (
    NOT_REFUSALS,
    REFUSAL_OPENERS,
    WINDOW,
    normalize_opening,
    opens_with_refusal,
    refusal_opener,
)

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I am sorry, I cannot draw pictures.",
    "Sorry, I can't do that.",
    "I apologize, but I cannot provide real-time information.",
    "I apologise for the inconvenience.",
    "My apologies, but that is outside what I can do.",
    "I can't help with that request.",
    "I cannot assist with creating that content.",
    "I won't provide instructions for that.",
    "I am unable to access your order history.",
    "I'm unable to browse the internet.",
    "I am not able to create images.",
    "I'm not able to see images.",
    "I can't really help with that.",
    "I cannot and will not do that.",
    "As an AI, I don't have a favourite colour.",
    "As an AI language model, I cannot browse.",
    "As a text-based AI, I can't draw.",
    "As a language model, I have no body.",
    "I'm just an AI, so I can't feel anything.",
    "I am only a language model.",
    "I don't have the ability to browse the web.",
    "I do not have access to real-time data.",
    "I don't have personal opinions, but many people think...",
    "Unfortunately, I can't help with that.",
    "Unfortunately, I'm unable to open links.",
    "I must decline this request.",
    "I'll decline this one.",
    "It is not appropriate to write that.",
    "It wouldn't be appropriate for me to answer.",
    "It's not appropriate for me to guess.",
    "That would be inappropriate.",
    "I'm afraid I can't do that, Dave.",
    "I understand your request, but I can't help with that.",
    "That sounds fun, but as an AI I cannot draw.",
    "No, I can't.",
    "I'm not comfortable writing that.",
    "Hmm, I'm sorry, but no.",
    "Hello! I'm sorry, but I cannot track orders.",
    "I'm sorry to hear that you're locked out. However, for your safety and security, I can't provide",
    "{I'm unable to assist with this question.",
    "(As an AI, I don't browse.)",
]

ANSWERS = [
    "I can help with that! Here is a recipe.",
    "I can't stress enough how important sleep is.",
    "I cannot stress enough: back up your files.",
    "I can't believe it's already December.",
    "I can't help but notice the pattern here.",
    "Sorry to hear that. Here are some ways to cope.",
    "I'm sorry to hear about your loss. Grief takes time.",
    "I'm so sorry you're going through this. Here is what helps.",
    "Sure! The capital of France is Paris.",
    "It is appropriate to tip 15-20% in the US.",
    "It's not appropriate to wear white to a wedding.",
    "It's not ethical to lie, but people do.",
    "I can't tell you how happy that makes me!",
    "Here's a poem about the sea.",
    "Unfortunately, the Titanic sank in 1912.",
    "I don't recommend using bleach; vinegar works instead.",
    "I would suggest starting with Python.",
    "As a rule of thumb, use 2 cups of water per cup of rice.",
    "Immediately after the war, the economy grew.",
    "The answer is 42.",
    "",
    "   \n  ",
    "**Step 1:** Preheat the oven. I can't wait for you to try it.",
    "Cats sleep a lot. Sorry, I can't help mentioning that.",  # not the opening
    "I wanted to stay, but I can't see the road ahead.",  # a story line, not a refusal
    "I'm sorry to hear that you're locked out. I can offer some suggestions, but I must emphasize that",
    "I am like a moth to a flame; I can't help but be drawn to her.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusal_openers_are_found(text: str) -> None:
    assert opens_with_refusal(text), text
    found = refusal_opener(text)
    assert found and found in normalize_opening(text)


@pytest.mark.parametrize("text", ANSWERS)
def test_ordinary_answers_are_not_refusals(text: str) -> None:
    assert refusal_opener(text) is None, (text, refusal_opener(text))


@pytest.mark.parametrize(
    "text",
    [
        "I’m sorry, but I can’t help with that.",  # curly apostrophes
        "I‘m sorry",
        "   \n\n  I'm sorry, but no.",  # leading whitespace
        "**I'm sorry**, but I can't help.",  # markdown emphasis
        "# Sorry, I cannot do that",
        "> I cannot provide that.",
        '"I am unable to help with that."',  # quoted
        "- As an AI, I can't.",
        "i'm SORRY, BUT I CAN'T",  # case
        "I'm\nsorry,\n\nbut I can't",  # line breaks inside
    ],
)
def test_normalisation(text: str) -> None:
    assert opens_with_refusal(text), normalize_opening(text)


def test_only_the_window_is_read() -> None:
    assert not opens_with_refusal("Sure. " + "x" * WINDOW + " but I can't help with that.")
    assert len(normalize_opening(" " * 10_000 + "a" * 10_000)) == WINDOW


def test_patterns_are_data() -> None:
    assert len(REFUSAL_OPENERS) > 10 and NOT_REFUSALS


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    found = refusal_opener(text)
    assert found is None or isinstance(found, str)
    assert opens_with_refusal(text) is (found is not None)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["I'm sorry, but I can't help with that.", "As an AI, I can't do that.",
                     "I cannot assist with that.", "I apologize.", "Unfortunately, I can't do that."]),
    st.text(alphabet=" \n\t*#>_\"'", max_size=12),
    st.text(),
)
def test_a_known_opener_is_found_before_any_text(opener: str, lead: str, rest: str) -> None:
    assert opens_with_refusal(lead + opener + " " + rest)
