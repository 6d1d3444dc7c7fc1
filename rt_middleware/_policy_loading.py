"""Policy documents from bytes: UTF-8, YAML (C loader where present) or JSON, with hostile input bounded.

Every failure is a `PolicyError` with a short message (never the expanded input):
non-UTF-8 bytes, duplicate keys (YAML and JSON, the key named; YAML also its line), nesting deeper than
`MAX_DEPTH`, YAML aliases that expand beyond `MAX_ALIAS_EXPANSION` (alias bombs) or refer to
themselves, and documents larger than `MAX_POLICY_BYTES`.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rt_middleware.errors import PolicyError

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_DEPTH", "MAX_POLICY_BYTES", "YAML_LOADER", "load_policy_text"]

MAX_POLICY_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32
"""A policy is about 6 levels deep; anything much deeper is refused before it is composed
(libyaml's composer recurses in C: 50k nested brackets crash the interpreter)."""
MAX_ALIAS_EXPANSION = 10_000
"""Aliases may add at most this many nodes plus 10 per distinct node of the document."""
_SAFE_BOUND = 2_000
"""Below this cheap upper bound on nesting the exact (slower) depth scan is skipped."""
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MESSAGE_CHARS = 300

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_LOADER_IS_C = _BaseLoader is not yaml.SafeLoader


def _cut(text: str, limit: int = _MESSAGE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _PolicyYAMLLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe YAML loader (libyaml-backed when available) that rejects duplicate keys and alias bombs."""

    source = "<text>"
    may_alias = True

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        if self.may_alias:
            _check_aliases(node, self.source)
        return self.construct_document(node)

    def construct_mapping(self, node: Node, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: the base class reports it
                    continue
                if duplicate:
                    raise PolicyError(
                        f"policy {self.source}: duplicate key {_cut(repr(key), 80)} at line "
                        f"{key_node.start_mark.line + 1}; each key may appear once",
                        field=str(key)[:80],
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


YAML_LOADER: type = _PolicyYAMLLoader


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_aliases(root: Node, source: str) -> None:
    """Refuse self-referencing aliases and documents whose aliases expand them past the bound."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise PolicyError(f"policy {source}: a YAML alias refers to itself (recursive structure)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    expanded, distinct = sizes[id(root)], len(sizes)
    if expanded > MAX_ALIAS_EXPANSION + 10 * distinct:
        raise PolicyError(
            f"policy {source}: YAML aliases expand {distinct} nodes to {expanded}, over the limit of "
            f"{MAX_ALIAS_EXPANSION} + 10 per node (an alias bomb?); write the repeated parts out"
        )


def _yaml_depth(text: str) -> int:
    """Exact nesting depth from libyaml's event stream (iterative: safe on any input)."""
    depth = deepest = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


def _check_yaml_depth(text: str, source: str) -> None:
    # block nesting needs a deeper column, flow nesting a bracket: a cheap upper bound first
    bound = text.count("[") + text.count("{") + max(map(len, text.splitlines()), default=0) + 2
    if bound <= _SAFE_BOUND:
        return
    if _yaml_depth(text) > MAX_DEPTH:
        raise PolicyError(f"policy {source}: nested deeper than {MAX_DEPTH} levels")


def _check_json_depth(data: Any, source: str) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PolicyError(f"policy {source}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _json_object(source: str):
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise PolicyError(
                    f"policy {source}: duplicate key {_cut(repr(key), 80)}; each key may appear once",
                    field=key[:80],
                )
            out[key] = value
        return out

    return build


def load_policy_text(raw: bytes, source: str, *, as_json: bool = False) -> Any:
    """Decode and parse a policy document; the result still needs validating (`PolicyFile`)."""
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy {source} is {len(raw)} bytes, over the limit of {MAX_POLICY_BYTES}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"policy {source} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    kind = "JSON" if as_json else "YAML"
    try:
        if as_json:
            data = json.loads(text, object_pairs_hook=_json_object(source))
            _check_json_depth(data, source)
            return data
        _check_yaml_depth(text, source)
        loader = _PolicyYAMLLoader(text)
        loader.source = source
        loader.may_alias = "*" in text  # no '*', no alias: skip the graph walk on big files
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy file {source} is not valid {kind}: {_cut(str(exc))}") from None
    except RecursionError:
        raise PolicyError(f"policy {source}: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # odd scalars libyaml hands to constructors
        if isinstance(exc, PolicyError):
            raise
        raise PolicyError(f"policy file {source} is not valid {kind}: {_cut(str(exc))}") from None
