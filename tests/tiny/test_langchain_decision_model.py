"""RefusalTokenDecisionModel on the tiny model: answers match an independent forward pass."""

from __future__ import annotations

import pytest
import torch
from langchain.agents import create_agent
from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
from langchain_core.decisions import BaseDecisionModel, Box, Choice, Noul, Score
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from rt_middleware.errors import InvalidInputError, PromptTooLongError
from rt_middleware.integrations.langchain import RefusalTokenDecisionModel, UnsupportedQuestionError
from rt_middleware.tokens import COCONOT_CATEGORIES

CATS = list(COCONOT_CATEGORIES)
PROMPTS = ["tell me how to build a bomb", "how do i bake bread", "do you love me"]
HOW = "How should the assistant handle this?"


def reference(model_and_tokenizer, prompt: str) -> dict[str, float]:
    """Full-vocabulary softmax of the last logits, computed straight from the model."""
    model, tok = model_and_tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0, -1].double().softmax(-1)
    out = {c: float(probs[tok.convert_tokens_to_ids(f"[{c}]")]) for c in CATS}
    out["respond"] = float(probs[tok.convert_tokens_to_ids("[respond]")])
    return out


@pytest.fixture(scope="module")
def dm(tiny_backend) -> RefusalTokenDecisionModel:
    return RefusalTokenDecisionModel(backend=tiny_backend, model="tiny")


def questions(labels: list[str]) -> dict:
    return {"how": Choice(instructions=HOW, criteria={label: label for label in labels}),
            "refuse": Noul(instructions="Should the assistant refuse this?")}


def test_is_a_decision_model(dm: RefusalTokenDecisionModel) -> None:
    assert isinstance(dm, BaseDecisionModel)
    assert dm.labels == ("respond", *CATS)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_choice_and_noul_match_the_model(dm, tiny_model_and_tokenizer, prompt: str) -> None:
    ref = reference(tiny_model_and_tokenizer, prompt)
    labels = ["respond", CATS[0], CATS[4]]
    out = dm.invoke({"state": prompt, "questions": questions(labels)})
    z = sum(ref[label] for label in labels)
    choice = out.choices["how"]
    assert choice.probabilities == pytest.approx({label: ref[label] / z for label in labels}, abs=1e-6)
    assert choice.choice == max(labels, key=ref.__getitem__)
    assert choice.confidence == pytest.approx(choice.probabilities[choice.choice])
    assert out.nouls["refuse"].noul == pytest.approx(1 - ref["respond"] / sum(ref.values()), abs=1e-6)
    assert out.model == "tiny" and out.usage["input_tokens"] > 0


def assert_same(got, want) -> None:
    """Equal answers; probabilities within float rounding (a padded batch sums in another order)."""
    assert got.model == want.model and got.usage == want.usage and set(got.answers) == set(want.answers)
    for name, answer in want.choices.items():
        assert got.choices[name].choice == answer.choice
        assert got.choices[name].probabilities == pytest.approx(answer.probabilities, abs=1e-6)
    for name, answer in want.nouls.items():
        assert got.nouls[name].noul == pytest.approx(answer.noul, abs=1e-6)


def test_async_and_batch_agree_with_invoke(dm, tiny_backend) -> None:
    import asyncio

    requests = [{"state": p, "questions": questions(["respond", *CATS])} for p in [*PROMPTS, "hi", "hello world " * 9]]
    single = [dm.invoke(r) for r in requests]
    assert asyncio.run(dm.ainvoke(requests[0])) == single[0]
    sizes: list[int] = []
    hook = tiny_backend.model.register_forward_pre_hook(
        lambda _m, _a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        batched = dm.batch(requests)
    finally:
        hook.remove()
    assert sizes == [len(requests)]  # one padded forward, not one per request
    for got, want in zip(batched, single, strict=True):
        assert_same(got, want)
    for got, want in zip(asyncio.run(dm.abatch(requests)), single, strict=True):
        assert_same(got, want)


def test_batch_fails_only_the_bad_requests(dm) -> None:
    good = {"state": PROMPTS[1], "questions": questions(["respond", CATS[0]])}
    boxed = {"state": PROMPTS[1], "questions": {"b": Box(instructions="Find the cat")}}
    too_long = {"state": "hello world " * 300, "questions": questions(["respond"])}
    outs = dm.batch([good, boxed, too_long, good], return_exceptions=True)
    assert isinstance(outs[1], UnsupportedQuestionError) and isinstance(outs[2], PromptTooLongError)
    assert_same(outs[0], dm.invoke(good))
    assert_same(outs[3], outs[0])
    with pytest.raises(UnsupportedQuestionError):
        dm.batch([good, boxed])


def test_state_forms_read_the_same_conversation(dm) -> None:
    asked = questions(["respond", CATS[1]])
    as_text = dm.invoke({"state": PROMPTS[1], "questions": asked})
    for state in (HumanMessage(PROMPTS[1]), [HumanMessage(PROMPTS[1])], {"messages": [("user", PROMPTS[1])]}):
        assert dm.invoke({"state": state, "questions": asked}) == as_text
    with_system = dm.invoke({"state": [SystemMessage("be brief"), HumanMessage(PROMPTS[1])], "questions": asked})
    assert with_system != as_text


def test_decide_on_last_turn_reads_the_system_prompt_and_latest_user_message(tiny_backend) -> None:
    """#17.1: one refused turn must not colour the next; `conversation` keeps the history in view."""
    asked = questions(["respond", *CATS])
    history = [SystemMessage("be brief"), HumanMessage(PROMPTS[0]), AIMessage("I can't help with that."),
               HumanMessage(PROMPTS[1])]
    last_turn = RefusalTokenDecisionModel(backend=tiny_backend, model="tiny")
    whole = RefusalTokenDecisionModel(backend=tiny_backend, model="tiny", decide_on="conversation")
    alone = last_turn.invoke({"state": [SystemMessage("be brief"), HumanMessage(PROMPTS[1])], "questions": asked})
    assert last_turn.invoke({"state": history, "questions": asked}) == alone
    assert whole.invoke({"state": history, "questions": asked}) != alone
    with pytest.raises(ValueError, match="decide_on"):
        RefusalTokenDecisionModel(backend=tiny_backend, model="tiny", decide_on="everything")


@pytest.mark.parametrize(
    ("question", "says"),
    [
        (Score(instructions="How bad?", criteria=["fine", "bad"]), "Score"),
        (Box(instructions="Find the cat"), "Box"),
        (Choice(instructions="Which team?", criteria={"billing": "", "respond": ""}), "'billing'"),
    ],
)
def test_unanswerable_questions_get_a_typed_error(dm, question, says: str) -> None:
    with pytest.raises(UnsupportedQuestionError) as info:
        dm.invoke({"state": "hello", "questions": {"q": question}})
    assert says in str(info.value) and "Choice" in str(info.value) and "Noul" in str(info.value)
    assert "respond" in str(info.value)


@pytest.mark.parametrize("state", ["", [], {"text": "hi"}, 42])
def test_bad_state_is_a_typed_error(dm, state) -> None:
    with pytest.raises(InvalidInputError):
        dm.invoke({"state": state, "questions": questions(["respond"])})


def test_no_questions_is_a_typed_error(dm) -> None:
    with pytest.raises(InvalidInputError, match="no questions"):
        dm.invoke({"state": "hello", "questions": {}})


class CountingFake(GenericFakeChatModel):
    calls: int = 0

    def _generate(self, *args, **kwargs):
        self.calls += 1
        return super()._generate(*args, **kwargs)


@pytest.mark.parametrize("bias_to", ["respond", CATS[1]])
def test_classifier_of_model_router_middleware(tiny_backend, bias_to: str) -> None:
    """A bias makes the route deterministic; the agent's answer shows which model the route picked."""
    classifier = RefusalTokenDecisionModel(backend=tiny_backend, model="tiny", logit_bias={bias_to: 30.0})
    main = CountingFake(messages=iter([AIMessage("ANSWER")]))
    clarify = CountingFake(messages=iter([AIMessage("WHAT DO YOU MEAN?")]))
    router = ModelRouterMiddleware(
        choices={"respond": ModelChoice(model=main, criteria="answer it"),
                 CATS[1]: ModelChoice(model=clarify, criteria="ask what is missing")},
        instructions=HOW, classifier=classifier,
    )
    out = create_agent(model=CountingFake(messages=iter([])), middleware=[router]).invoke(
        {"messages": [HumanMessage("write it again but better")]}
    )
    assert out["model_route"].choice == bias_to and out["model_route"].confidence > 0.99
    assert out["messages"][-1].text == ("ANSWER" if bias_to == "respond" else "WHAT DO YOU MEAN?")
    assert (main.calls, clarify.calls) == ((1, 0) if bias_to == "respond" else (0, 1))


@pytest.mark.parametrize(("bias_to", "blocked"), [("respond", False), (CATS[0], True)])
def test_classifier_of_auto_mode_middleware(tiny_backend, bias_to: str, blocked: bool) -> None:
    """AutoModeMiddleware asks a Noul before a risky tool: ours answers 'would the model refuse this?'."""
    from langchain.agents.middleware import AutoModeMiddleware
    from langchain_core.tools import tool

    ran: list[str] = []

    @tool
    def wipe_disk(device: str) -> str:
        """Erase a disk."""
        ran.append(device)
        return "erased"

    class ToolFake(CountingFake):
        def bind_tools(self, tools, **kwargs):
            return self

    model = ToolFake(messages=iter([
        AIMessage("", tool_calls=[{"name": "wipe_disk", "args": {"device": "sda"}, "id": "call-1"}]),
        AIMessage("DONE"),
    ]))
    classifier = RefusalTokenDecisionModel(backend=tiny_backend, model="tiny", logit_bias={bias_to: 30.0})
    agent = create_agent(model=model, tools=[wipe_disk],
                         middleware=[AutoModeMiddleware(tools=[wipe_disk], classifier=classifier)])
    out = agent.invoke({"messages": [HumanMessage("wipe my disk")]})
    assert (ran == []) is blocked
    assert ("blocked" in out["messages"][2].text) is blocked


def test_batch_traces_each_request_like_invoke(dm) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Starts(BaseCallbackHandler):
        def __init__(self) -> None:
            self.seen: list[tuple[str, dict]] = []

        def on_chain_start(self, serialized, inputs, **kwargs) -> None:
            self.seen.append((kwargs.get("name"), kwargs.get("metadata") or {}))

    requests = [{"state": p, "questions": questions(["respond"])} for p in PROMPTS]
    one, many = Starts(), Starts()
    for r in requests:
        dm.invoke(r, {"callbacks": [one]})
    dm.batch(requests, {"callbacks": [many]})
    assert len(many.seen) == len(requests) and many.seen == one.seen
    assert many.seen[0][1]["ls_provider"] == "rt-middleware"


@pytest.mark.parametrize(("request_", "says"), [({"state": "hi"}, "no 'questions'"),
                                                ({"questions": {}}, "no 'state'"),
                                                ("hi", "a mapping"),
                                                ({"state": "hi", "questions": ["x"]}, "must map ids")])
def test_a_malformed_request_is_a_typed_error(dm, request_, says: str) -> None:
    """The base class read request["questions"] and raised a bare KeyError or TypeError."""
    with pytest.raises(InvalidInputError, match=says):
        dm.invoke(request_)
    assert isinstance(dm.batch([request_], return_exceptions=True)[0], InvalidInputError)
