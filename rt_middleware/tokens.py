"""Decision tokens: which control token stands for `respond` and for each refusal category."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from rt_middleware.errors import TokenSchemaError

__all__ = [
    "CATEGORY_ALIASES",
    "COCONOT_CATEGORIES",
    "RESPOND",
    "RefusalTokenSchema",
    "ResolvedTokens",
    "category_alias",
    "resolve_category",
]

RESPOND = "respond"
"""The name under which the respond token appears in policies, biases and probabilities."""

COCONOT_CATEGORIES: tuple[str, ...] = (
    "Requests with safety concerns",
    "Incomplete requests",
    "Unsupported requests",
    "Indeterminate requests",
    "Humanizing requests",
)
"""The five CoCoNot refusal categories, in the paper's order."""

CATEGORY_ALIASES: Mapping[str, str] = MappingProxyType(
    dict(zip(("safety", "incomplete", "unsupported", "indeterminate", "humanizing"), COCONOT_CATEGORIES, strict=True))
)
"""Short name -> CoCoNot category name; accepted wherever a policy (or ``rt calibrate --target``)
names a category. Decisions, probabilities and written policies always use the full name."""

_ALIAS_OF: Mapping[str, str] = MappingProxyType({full: short for short, full in CATEGORY_ALIASES.items()})


def resolve_category(name: str) -> str:
    """The full category name for a short alias (``safety``); any other name unchanged."""
    return CATEGORY_ALIASES.get(name, name)


def category_alias(name: str) -> str | None:
    """The short alias of a CoCoNot category name (``Requests with safety concerns`` -> ``safety``)."""
    return _ALIAS_OF.get(name)


@dataclass(frozen=True)
class RefusalTokenSchema:
    """A respond token plus one refusal token per category.

    Keys everywhere (policies, logit biases, probabilities) are category names plus ``"respond"``.
    """

    categories: Mapping[str, str]
    """Category name -> its control token string, in a stable order."""
    respond_token: str = "[respond]"

    def __post_init__(self) -> None:
        cats = dict(self.categories)
        if not cats:
            raise TokenSchemaError("a token schema needs at least one refusal category")
        if RESPOND in cats:
            raise TokenSchemaError(f"{RESPOND!r} is reserved for the respond token, not a category")
        tokens = [*cats.values(), self.respond_token]
        for tok in tokens:
            if not tok or tok != tok.strip():
                raise TokenSchemaError(f"decision token {tok!r} is empty or has surrounding spaces", token=tok)
        if len(set(tokens)) != len(tokens):
            raise TokenSchemaError(f"decision tokens must be distinct, got {tokens}")
        object.__setattr__(self, "categories", MappingProxyType(cats))

    @classmethod
    def single(cls) -> RefusalTokenSchema:
        """`[refuse]` / `[respond]`: one refusal category named ``refuse``."""
        return cls(categories={"refuse": "[refuse]"})

    @classmethod
    def coconot(cls) -> RefusalTokenSchema:
        """The paper's five CoCoNot category tokens plus `[respond]`."""
        return cls(categories={name: f"[{name}]" for name in COCONOT_CATEGORIES})

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], respond_token: str = "[respond]") -> RefusalTokenSchema:
        """Build a schema from bracketed token strings; the category name is the text inside."""
        cats = {}
        for tok in tokens:
            if tok == respond_token:
                continue
            cats[tok[1:-1] if tok.startswith("[") and tok.endswith("]") else tok] = tok
        return cls(categories=cats, respond_token=respond_token)

    @classmethod
    def detect(cls, special_tokens: Sequence[str]) -> RefusalTokenSchema | None:
        """The built-in schema whose tokens a tokenizer's special tokens contain, if any."""
        present = set(special_tokens)
        for candidate in (cls.coconot(), cls.single()):
            if set(candidate.tokens) <= present:
                return candidate
        return None

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(self.categories)

    @property
    def names(self) -> tuple[str, ...]:
        """Every decision name: ``respond`` first, then the categories."""
        return (RESPOND, *self.categories)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every decision token string, in `names` order."""
        return (self.respond_token, *self.categories.values())

    def token_for(self, name: str) -> str:
        if name == RESPOND:
            return self.respond_token
        try:
            return self.categories[name]
        except KeyError:
            raise TokenSchemaError(
                f"unknown decision name {name!r}; known: {', '.join(self.names)}", token=name
            ) from None

    def resolve(self, encode: Callable[[str], Sequence[int]]) -> ResolvedTokens:
        """Map every decision name to its single token id.

        `encode` tokenizes a token string *as a special token*; each must give exactly one id.
        """
        ids: dict[str, int] = {}
        for name in self.names:
            tok = self.token_for(name)
            got = list(encode(tok))
            if len(got) != 1:
                raise TokenSchemaError(
                    f"decision token {tok!r} is not a single token of this model's tokenizer "
                    f"(it encodes to {len(got)} ids: {got[:8]}); train or load a model whose "
                    "tokenizer has it as a special token",
                    token=tok,
                )
            ids[name] = int(got[0])
        if len(set(ids.values())) != len(ids):
            raise TokenSchemaError(f"two decision tokens share one id: {ids}")
        return ResolvedTokens(schema=self, ids=MappingProxyType(ids))


@dataclass(frozen=True)
class ResolvedTokens:
    """A schema bound to one tokenizer: decision name -> token id."""

    schema: RefusalTokenSchema
    ids: Mapping[str, int] = field(default_factory=dict)

    @property
    def id_set(self) -> frozenset[int]:
        return frozenset(self.ids.values())

    def id_for(self, name: str) -> int:
        self.schema.token_for(name)  # raises a typed error for an unknown name
        return self.ids[name]
