"""Tools through a model's own chat template, and tool calls back out of its text (pure functions).

Rendering: a chat template that reads a ``tools`` variable gets the tool schemas set at its top
(``{%- set tools = [...] -%}``), so the backend renders them exactly where and how the template
does, with no backend change. Parsing: the two conventions chat templates teach models,

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (one or more, text around);
- Llama 3.1 JSON: the whole answer is ``{"name": ..., "parameters": {...}}`` (optionally after
  ``<|python_tag|>``, several separated by ``;``).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.tool import InvalidToolCall, ToolCall, invalid_tool_call, tool_call

from rt_middleware.errors import ConfigError

__all__ = [
    "ToolsNotSupportedError",
    "parse_tool_calls",
    "render_tool_calls",
    "template_supports_tools",
    "template_with_tools",
    "tool_convention",
]

Convention = Literal["hermes", "llama3"]

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"
_TOOLS_VAR = re.compile(r"\btools\b")


class ToolsNotSupportedError(ConfigError, NotImplementedError):
    """The model's chat template has no tool support; gate a tool-calling model instead (guard mode)."""


def template_supports_tools(template: str | None) -> bool:
    """True when the chat template reads a ``tools`` variable (so it can render tool schemas)."""
    if not template:
        return False
    import jinja2
    from jinja2 import meta

    try:
        return "tools" in meta.find_undeclared_variables(jinja2.Environment().parse(template))
    except jinja2.TemplateError:  # a template using extensions plain Jinja lacks: read it as text
        return bool(_TOOLS_VAR.search(template))


def tool_convention(template: str | None) -> Convention:
    """How this template's model writes a tool call: ``<tool_call>`` tags, else Llama 3.1 JSON."""
    return "hermes" if template and "<tool_call>" in template else "llama3"


def _literal(value: Any) -> str:
    """A Jinja literal for a JSON-like value (strings as ASCII JSON strings, which Jinja reads back)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise ConfigError(f"a tool schema holds a {type(value).__name__}, which is not JSON")


def template_with_tools(template: str, tools: Sequence[Mapping[str, Any]], forbidden: Iterable[str] = ()) -> str:
    """The template with `tools` (OpenAI tool dicts) bound to its ``tools`` variable.

    Tool schemas render as template text, where special tokens are allowed: a schema holding any
    `forbidden` string (the decision tokens) is rejected rather than rendered.
    """
    text = json.dumps(list(tools), ensure_ascii=False)
    for token in forbidden:
        if token in text:
            raise ConfigError(f"a tool schema contains the control token {token!r}; rename or reword it")
    return "{%- set tools = " + _literal(list(tools)) + " -%}" + template


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _call(raw: str) -> ToolCall | InvalidToolCall:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return invalid_tool_call(name=None, args=raw, id=_new_id(), error=f"not JSON: {exc}")
    return _from_object(data, raw)


def _from_object(data: Any, raw: str) -> ToolCall | InvalidToolCall:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return invalid_tool_call(name=None, args=raw, id=_new_id(), error="a tool call needs a 'name'")
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode the arguments
        with contextlib.suppress(json.JSONDecodeError):
            args = json.loads(args)
    if not isinstance(args, dict):
        return invalid_tool_call(name=data["name"], args=json.dumps(args), id=_new_id(),
                                 error="tool call arguments must be a JSON object")
    return tool_call(name=data["name"], args=args, id=_new_id())


def _llama3_calls(text: str) -> list[ToolCall | InvalidToolCall] | None:
    """The whole text as ``{...}`` or ``{...}; {...}`` tool-call objects, else None."""
    body = text.strip()
    if body.startswith(_PYTHON_TAG):
        body = body[len(_PYTHON_TAG):].strip()
    if not body.startswith("{"):
        return None
    decoder = json.JSONDecoder()
    calls: list[ToolCall | InvalidToolCall] = []
    pos = 0
    while pos < len(body):
        try:
            data, end = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return None
        if not (isinstance(data, dict) and "name" in data and ({"parameters", "arguments"} & set(data))):
            return None
        calls.append(_from_object(data, body[pos:end]))
        pos = end
        while pos < len(body) and body[pos] in " \t\r\n;":
            pos += 1
    return calls


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall], list[InvalidToolCall]]:
    """(text left, tool calls, invalid tool calls) from a model's answer, in either convention."""
    found = list(_TOOL_CALL.finditer(text))
    if found:
        calls = [_call(m.group(1)) for m in found]
        rest = _TOOL_CALL.sub("", text).strip()
    else:
        parsed = _llama3_calls(text)
        if parsed is None:
            return text, [], []
        calls, rest = parsed, ""
    valid = [c for c in calls if c.get("type") == "tool_call"]
    invalid = [c for c in calls if c.get("type") == "invalid_tool_call"]
    return rest, valid, invalid  # type: ignore[return-value]


def render_tool_calls(message: BaseMessage, convention: Convention) -> BaseMessage:
    """An AI message with tool calls as the text the model wrote them (backends read text only)."""
    if not isinstance(message, AIMessage) or not message.tool_calls:
        return message
    calls = [{"name": c["name"], "arguments": c["args"]} for c in message.tool_calls]
    if convention == "hermes":
        written = "\n".join(f"<tool_call>\n{json.dumps(c, ensure_ascii=False)}\n</tool_call>" for c in calls)
    else:
        written = "; ".join(json.dumps({"name": c["name"], "parameters": c["arguments"]}, ensure_ascii=False)
                            for c in calls)
    text = message.text
    return AIMessage(content=f"{text}\n{written}" if text else written)
