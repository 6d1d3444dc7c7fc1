from __future__ import annotations

import pytest

from rt_middleware import RefusalTokenSchema, TokenSchemaError
from rt_middleware.tokens import COCONOT_CATEGORIES


def test_coconot_schema_uses_the_papers_exact_strings() -> None:
    schema = RefusalTokenSchema.coconot()
    assert schema.category_names == COCONOT_CATEGORIES
    assert schema.token_for("Requests with safety concerns") == "[Requests with safety concerns]"
    assert schema.token_for("respond") == "[respond]"
    assert schema.names[0] == "respond"
    assert len(schema.tokens) == 6


def test_single_schema() -> None:
    schema = RefusalTokenSchema.single()
    assert schema.category_names == ("refuse",)
    assert schema.tokens == ("[respond]", "[refuse]")


def test_resolve_requires_exactly_one_id_and_names_the_token() -> None:
    schema = RefusalTokenSchema.single()
    vocab = {"[respond]": [7], "[refuse]": [1, 2, 3]}
    with pytest.raises(TokenSchemaError, match=r"\[refuse\]") as info:
        schema.resolve(lambda t: vocab[t])
    assert info.value.token == "[refuse]"
    resolved = RefusalTokenSchema.single().resolve(lambda t: {"[respond]": [7], "[refuse]": [9]}[t])
    assert resolved.ids == {"respond": 7, "refuse": 9}
    assert resolved.id_set == {7, 9}


def test_resolve_rejects_shared_ids() -> None:
    with pytest.raises(TokenSchemaError, match="share"):
        RefusalTokenSchema.single().resolve(lambda t: [5])


@pytest.mark.parametrize(
    "categories",
    [{}, {"respond": "[x]"}, {"a": "[respond]"}, {"a": " [a]"}, {"a": ""}],
)
def test_invalid_schemas(categories: dict[str, str]) -> None:
    with pytest.raises(TokenSchemaError):
        RefusalTokenSchema(categories=categories)


def test_unknown_name_is_typed() -> None:
    with pytest.raises(TokenSchemaError, match="unknown decision name"):
        RefusalTokenSchema.coconot().token_for("nope")


def test_detect_and_from_tokens() -> None:
    coconot = RefusalTokenSchema.coconot()
    assert RefusalTokenSchema.detect([*coconot.tokens, "<|im_start|>"]) == coconot
    assert RefusalTokenSchema.detect(["[refuse]", "[respond]"]) == RefusalTokenSchema.single()
    assert RefusalTokenSchema.detect(["[respond]"]) is None
    assert RefusalTokenSchema.from_tokens(list(coconot.tokens)) == coconot
