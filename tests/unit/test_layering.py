"""The package's layers, read from the source with `ast`: imports only point down, and never in a circle.

Every import counts: module level, inside functions (lazy imports) and under ``TYPE_CHECKING``.
A module may import its own layer or any layer below; a cycle is an error even within one layer.
Importing ``a.b.c`` also runs ``a/b/__init__.py``, so package ``__init__`` modules are checked like
any other module (they may import their own submodules).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import rt_middleware

PACKAGE = Path(rt_middleware.__file__).parent
INTEGRATIONS = PACKAGE.parent / "integrations"
"""Shipped as ``rt_middleware.integrations`` (see the build config)."""

LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("_extras", "_policy_loading", "messages", "refusal_text", "paths", "plots"),
    ("tokens", "templating"),
    ("distribution", "datasets", "artifact", "gguf_export"),
    ("policy",),
    ("policy_io", "decision"),
    ("audit",),
    ("backends",),
    ("default_model",),
    ("loading",),
    ("router",),
    ("evaluation",),
    ("calibration",),
    ("train",),
    ("integrations", "cli"),
]
"""Bottom to top, by module name below ``rt_middleware`` (a package name covers its submodules).
Core chain: tokens -> distribution -> policy -> decision -> backends -> router -> integrations/CLI;
supporting leaves (errors, _extras, messages, templating, artifact, paths, plots, datasets) sit below
what uses them; the decision audit sink (router uses it) above decisions; the default model and
loading by name above the backends; evaluation, calibration and training above those (training
reports through evaluation's metrics). Names listed before their module exists are harmless."""


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, root in (("rt_middleware", PACKAGE), ("rt_middleware.integrations", INTEGRATIONS)):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module of this package, line) for every import statement anywhere in the file, and every
    string that is exactly a module's name (``importlib.import_module("rt_middleware.x")``, the
    PEP 562 ``_LAZY`` maps): imports by name count too."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            targets = [node.value] if node.value.startswith("rt_middleware.") and node.value in MODULES else []
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from pkg import sub` depends on the submodule pkg.sub, `from pkg import name` on pkg
            subs = [f"{module}.{alias.name}" for alias in node.names]
            targets = [sub if sub in MODULES else module for sub in subs]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                yield target, node.lineno
            elif target.startswith("rt_middleware.") and target not in MODULES:
                raise AssertionError(f"{path}:{node.lineno} imports {target}, which does not exist")


GRAPH: dict[str, dict[str, int]] = {name: dict(_imported(name, path)) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest matching name; the top package itself is above everything."""
    if module == "rt_middleware":
        return len(LAYERS)
    rest = module.removeprefix("rt_middleware.")
    best: tuple[int, int] | None = None
    for index, names in enumerate(LAYERS):
        for prefix in names:
            matches = rest == prefix or rest.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in {__file__}")
    return best[0]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    """Guards the reader itself: known imports of each kind are found."""
    assert "rt_middleware.backends.llamacpp" in GRAPH["rt_middleware.loading"]  # inside a function
    assert "rt_middleware.backends.hf" in GRAPH["rt_middleware.default_model"]  # TYPE_CHECKING + lazy
    assert "rt_middleware.decision" in GRAPH["rt_middleware"]
    assert "rt_middleware.router" in GRAPH["rt_middleware"]  # by name, in the _LAZY map


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    here = layer_of(module)
    upward = [
        f"{target} (layer {layer_of(target)} {LAYERS[layer_of(target)]}, line {line})"
        for target, line in GRAPH[module].items()
        if target == "rt_middleware" or layer_of(target) > here
    ]
    assert not upward, f"{module} (layer {here} {LAYERS[here]}) imports upward: {upward}"


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in GRAPH[node]:
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upward edge and a cycle, added by hand, are reported."""
    monkeypatch.setitem(GRAPH, "rt_middleware.tokens", {**GRAPH["rt_middleware.tokens"], "rt_middleware.router": 1})
    assert layer_of("rt_middleware.router") > layer_of("rt_middleware.tokens")
    monkeypatch.setitem(GRAPH, "rt_middleware.errors", {"rt_middleware.tokens": 1})
    assert _cycle() is not None


def test_importing_a_layer_loads_nothing_above_it() -> None:
    """At run time too: in one fresh interpreter, import modules bottom-up and check after each that
    no module of a higher layer has been loaded (beyond what `import rt_middleware` loads for its
    public names: the core chain up to decision)."""
    probes = sorted(
        [
            "rt_middleware.artifact",
            "rt_middleware.paths",
            "rt_middleware.plots",
            "rt_middleware.datasets",
            "rt_middleware.policy_io",
            "rt_middleware.backends",
            "rt_middleware.backends.base",
            "rt_middleware.default_model",
            "rt_middleware.loading",
            "rt_middleware.evaluation.heldout",
            "rt_middleware.calibration",
        ],
        key=layer_of,
    )
    code = f"""
import importlib, json, sys
import rt_middleware
out = {{"": sorted(sys.modules)}}
for name in {probes!r}:
    importlib.import_module(name)
    out[name] = sorted(m for m in sys.modules if m == "rt_middleware" or m.startswith("rt_middleware."))
print(json.dumps(out))
"""
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    public_api = set(loaded.pop(""))  # what `import rt_middleware` loads for its public names
    for name, modules in loaded.items():
        above = [m for m in modules if m in MODULES and m not in public_api and layer_of(m) > layer_of(name)]
        assert not above, f"importing {name} loaded higher layers: {above}"
