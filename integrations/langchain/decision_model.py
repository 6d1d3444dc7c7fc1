"""RefusalTokenDecisionModel: LangChain's decision-model interface answered by one prefill."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.decisions import (
    BaseDecisionModel,
    Choice,
    ChoiceAnswer,
    ClassifierResponse,
    Noul,
    NoulAnswer,
    Question,
    State,
)
from langchain_core.decisions.types import ClassifierRequest
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list, set_config_context
from pydantic import ConfigDict, Field, model_validator

from rt_middleware.backends.base import BaseBackend
from rt_middleware.distribution import FirstTokenDistribution
from rt_middleware.errors import InvalidInputError
from rt_middleware.messages import ChatMessage, DecideOn, messages_to_decide_on
from rt_middleware.router import to_conversation
from rt_middleware.tokens import RESPOND

__all__ = ["RefusalTokenDecisionModel", "UnsupportedQuestionError"]


class UnsupportedQuestionError(InvalidInputError):
    """A question one first-token distribution cannot answer (the message says what it can)."""


def state_conversation(state: State) -> list[ChatMessage]:
    """Decision-model state (text, a message, messages, or a mapping with `messages`) -> conversation."""
    if isinstance(state, BaseMessage):
        return to_conversation([state])
    if isinstance(state, Mapping):
        if "messages" not in state:
            raise InvalidInputError(
                "state must be text, a message, a list of messages or a mapping with a 'messages' key; "
                f"got a mapping with keys {sorted(map(str, state))}"
            )
        return to_conversation(state["messages"])  # type: ignore[arg-type]
    if isinstance(state, str | Sequence):
        return to_conversation(state)  # type: ignore[arg-type]
    raise InvalidInputError(f"state of type {type(state).__name__} cannot be read as a conversation")


class RefusalTokenDecisionModel(BaseDecisionModel):
    """A refusal-token model as a LangChain decision model: every question from one prefill.

    Questions it answers, all from the first-token distribution over the decision tokens:

    - `Choice` whose labels are decision names (``respond`` and/or category names): the
      probabilities are renormalised over the asked labels, the choice is the most probable one,
      and ``confidence`` is that label's renormalised probability.
    - `Noul`: always read as "should this be refused?", answered with 1 - P(respond) where P is
      renormalised over all decision tokens.

    Instructions and criteria texts are not read: one prefill measures what the model was trained
    to emit first, and no wording changes that. State is text, a message, messages, or a mapping
    whose ``messages`` are read (other keys, such as `AutoModeMiddleware`'s ``tool_call``, are not). `Score`, `Box` and labels outside the token schema
    get an `UnsupportedQuestionError` saying what is supported. Use it as the ``classifier`` of
    `ModelRouterMiddleware` with route names that are decision names.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any
    """A `BaseBackend` whose model has the decision tokens (HFBackend, LlamaCppBackend, ...)."""
    temperature: float = Field(default=1.0, gt=0.0)
    """Softmax temperature of the first-token distribution."""
    logit_bias: dict[str, float] = Field(default_factory=dict)
    """Decision name -> bias added to its first-step logit before the softmax."""
    decide_on: DecideOn = "last_turn"
    """What is classified, as a tenant policy's ``decide_on``: ``last_turn`` (system messages plus the
    latest user message, so one refused turn does not colour the next) or ``conversation``."""
    max_batch_size: int = Field(default=32, ge=1)
    """`batch`/`abatch` read at most this many states in one padded forward."""

    @model_validator(mode="after")
    def _check_backend(self) -> RefusalTokenDecisionModel:
        if not isinstance(self.backend, BaseBackend):
            raise TypeError(f"backend must be a BaseBackend, got {type(self.backend).__name__}")
        return self

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def _provider(self) -> str:
        return "rt-middleware"

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels a `Choice` may ask about: ``respond`` and the model's category names."""
        return tuple(self.backend.schema.names)

    def _check(self, questions: Mapping[str, Question]) -> None:
        supported = (
            f"RefusalTokenDecisionModel answers Choice questions over the labels {list(self.labels)} "
            "and Noul questions (read as 'should this be refused?')"
        )
        if not questions:
            raise InvalidInputError(f"no questions asked; {supported}")
        for name, question in questions.items():
            if isinstance(question, Choice):
                unknown = [label for label in question.criteria if label not in self.labels]
                if unknown:
                    raise UnsupportedQuestionError(
                        f"question {name!r}: labels {unknown} are not decision tokens of this model; {supported}"
                    )
            elif not isinstance(question, Noul):
                raise UnsupportedQuestionError(
                    f"question {name!r} is a {type(question).__name__}, which one first-token "
                    f"distribution cannot answer; {supported}"
                )

    def _respond(self, distribution: FirstTokenDistribution, questions: Mapping[str, Question]) -> ClassifierResponse:
        answers: dict[str, Any] = {}
        for name, question in questions.items():
            if isinstance(question, Choice):
                probabilities = distribution.renormalized(list(question.criteria))
                choice = max(probabilities, key=probabilities.__getitem__)
                answers[name] = ChoiceAnswer(
                    type="choice", choice=choice, probabilities=probabilities,
                    confidence=min(1.0, probabilities[choice]),
                )
            else:
                refuse = 1.0 - distribution.renormalized()[RESPOND]
                answers[name] = NoulAnswer(type="noul", noul=min(1.0, max(0.0, refuse)))
        usage = {"input_tokens": distribution.prompt_tokens or 0, "output_tokens": 0}
        return ClassifierResponse(model=self.model, answers=answers, usage=usage)  # type: ignore[arg-type]

    def _decided(self, state: State) -> list[ChatMessage]:
        return messages_to_decide_on(state_conversation(state), self.decide_on)

    def _classify(self, state: State, questions: dict[str, Question]) -> ClassifierResponse:
        self._check(questions)
        distribution = self.backend.first_token_distribution(
            self._decided(state), temperature=self.temperature, logit_bias=self.logit_bias
        )
        return self._respond(distribution, questions)

    async def _aclassify(self, state: State, questions: dict[str, Question]) -> ClassifierResponse:
        self._check(questions)
        [distribution] = await self.backend.afirst_token_distributions(
            [self._decided(state)], temperature=self.temperature, logit_bias=self.logit_bias
        )
        return self._respond(distribution, questions)

    def invoke(self, input: ClassifierRequest, config: RunnableConfig | None = None, **kwargs: Any) -> ClassifierResponse:
        _checked_request(input)  # a typed error, not the base class's KeyError
        return super().invoke(input, config, **kwargs)

    async def ainvoke(
        self, input: ClassifierRequest, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ClassifierResponse:
        _checked_request(input)
        return await super().ainvoke(input, config, **kwargs)

    def batch(
        self,
        inputs: list[ClassifierRequest],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ClassifierResponse]:
        """Every request's distribution from batched forwards (the base class classifies one at a
        time); callbacks, tracing metadata and errors per request as `invoke`."""
        configs = [self._traced_config(c) for c in get_config_list(config, len(inputs))]
        return self._batch_with_config(
            self._classify_batch, list(inputs), configs, return_exceptions=return_exceptions, run_type="llm",
            **kwargs,
        )

    async def abatch(
        self,
        inputs: list[ClassifierRequest],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[ClassifierResponse]:
        """`batch` in a worker thread, so the event loop never blocks."""
        return await asyncio.to_thread(self.batch, inputs, config, return_exceptions=return_exceptions, **kwargs)

    def _classify_batch(
        self, requests: list[ClassifierRequest], config: list[RunnableConfig]
    ) -> list[ClassifierResponse | Exception]:
        out: list[ClassifierResponse | Exception] = [None] * len(requests)  # type: ignore[list-item]
        asked: dict[int, tuple[dict[str, Question], list[ChatMessage]]] = {}
        for i, request in enumerate(requests):
            try:
                questions, state = _checked_request(request)
                self._check(questions)
                asked[i] = (questions, self._decided(state))
            except Exception as exc:
                out[i] = exc
        rows = list(asked)
        distributions = self.backend.first_token_distributions(
            [asked[i][1] for i in rows], temperature=self.temperature, logit_bias=self.logit_bias,
            batch_size=self.max_batch_size, return_exceptions=True,
        )
        for i, distribution in zip(rows, distributions, strict=True):
            if isinstance(distribution, Exception):
                out[i] = distribution
                continue
            response = self._respond(distribution, asked[i][0])
            with set_config_context(config[i]) as context:  # usage on this request's own traced run
                out[i] = context.run(_record_usage, response)
        return out


def _checked_request(request: Any) -> tuple[dict[str, Question], Any]:
    """(questions, state) of a ClassifierRequest, or InvalidInputError naming what is missing."""
    if not isinstance(request, Mapping):
        raise InvalidInputError(f"a request is a mapping with 'state' and 'questions', got {type(request).__name__}")
    missing = [key for key in ("state", "questions") if key not in request]
    if missing:
        raise InvalidInputError(f"the request has no {' and no '.join(repr(k) for k in missing)}")
    if not isinstance(request["questions"], Mapping):
        raise InvalidInputError(f"'questions' must map ids to questions, got {type(request['questions']).__name__}")
    return dict(request["questions"]), request["state"]


def _record_usage(response: ClassifierResponse) -> ClassifierResponse:
    """The base class's usage record (LangSmith run metadata), as its `invoke` writes it."""
    from langchain_core.decisions import base

    record = getattr(base, "_record_usage", None)
    return record(response) if record is not None else response
