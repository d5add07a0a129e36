"""The package's layout, read from its own source: subpackages in layers, no import cycles, short
modules, imports at the top, and one home for each rule."""

import ast
import importlib
from pathlib import Path

import pytest

import colorcube

ROOT = Path(colorcube.__file__).parent
#: bottom to top; a module imports modules of its own subpackage and of the layers below it
LAYERS = ("core", "inputs", "guidance", "network", "render", "conformal", "cube", "run", "apps")
#: the package's own top-level modules: the core layer, except the test helpers, which may use anything
CORE = {"errors", "files", "color", "settings", "metrics"}
TOP = {"testing"}
MAX_LINES = 400


def _modules() -> dict:
    """colorcube's modules: dotted name -> path (packages by their ``__init__``)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("colorcube", *path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _layer(name: str) -> int:
    parts = name.split(".")[1:]
    if not parts:  # the package itself: only its errors and its lazy names
        return 0
    if len(parts) == 1 and not (ROOT / parts[0]).is_dir():
        if parts[0] in TOP:
            return len(LAYERS)
        assert parts[0] in CORE, f"{name}: a top-level module must be declared core or top"
        return 0
    return LAYERS.index(parts[0])


def _home(name: str) -> str:
    """The group a module belongs to: its subpackage, or "core"."""
    parts = name.split(".")[1:]
    return parts[0] if parts and (ROOT / parts[0]).is_dir() else "core"


def _target(dotted: str) -> str | None:
    """The colorcube module a dotted name reaches (the longest module prefix)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in MODULES:
            return ".".join(parts[:k])
    return None


def _edges(name: str, path: Path) -> list:
    """(target module, line) for every import of a colorcube module in ``name``, and for every use
    of a name the package serves lazily (``colorcube.explore``, ``colorcube.cube.store``)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                base = ".".join(up[: len(up) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                target = _target(f"{base}.{alias.name}") if base.startswith("colorcube") else None
                if target:
                    out.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(_target(a.name), node.lineno) for a in node.names if a.name.startswith("colorcube.")]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "colorcube":
            if node.attr in colorcube._API:
                out.append((f"colorcube.{colorcube._API[node.attr]}", node.lineno))
            elif f"colorcube.{node.attr}" in MODULES:
                out.append((f"colorcube.{node.attr}", node.lineno))
    return [(t, line) for t, line in out if t and t != name]


EDGES = {name: _edges(name, path) for name, path in MODULES.items()}


def _upward(name: str, target: str) -> bool:
    return target != "colorcube" and _home(target) != _home(name) and _layer(target) >= _layer(name)


def test_every_subpackage_imports_only_itself_and_the_layers_below():
    wrong = [f"{name}:{line} imports {target}" for name, edges in EDGES.items() for target, line in edges
             if _upward(name, target)]
    assert wrong == []


def test_the_layer_rule_sees_imports_of_every_kind():
    """Not vacuous: an import up the layers is flagged, and relative imports as well as the package's
    lazy names are read as edges."""
    assert _upward("colorcube.render.bands", "colorcube.run.pipeline")
    assert _upward("colorcube.color", "colorcube.inputs.images")
    assert not _upward("colorcube.run.pipeline", "colorcube.render.bands")
    assert not _upward("colorcube.render.fullres", "colorcube.render.bands")
    fullres = {t for t, _ in EDGES["colorcube.render.fullres"]}
    assert {"colorcube.render.bands", "colorcube.network.guided"} <= fullres  # `from .bands`, `from ..network`
    assert "colorcube.run.colorize" in {t for t, _ in EDGES["colorcube.apps.commands"]}  # colorcube.write_colorized


def test_modules_import_one_another_without_cycles():
    graph = {name: {t for t, _ in edges if t != "colorcube"} for name, edges in EDGES.items()}
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*trail, node])
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        state[node] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_imports_are_at_the_top_of_every_module():
    """Deferred imports live in the package's ``__getattr__`` and ``_deferred`` only."""
    inner = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        inner += [f"{name}:{n.lineno}" for n in ast.walk(tree)
                  if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top]
    assert inner == []


def test_every_module_is_imported_by_another_or_is_a_public_entry():
    """No module is reachable only through the package's lazy names unless it is the home of a
    public name (or the command line's, or the test helpers')."""
    imported = {t for edges in EDGES.values() for t, _ in edges}
    public = {f"colorcube.{m}" for m in (*colorcube._API.values(), *colorcube._MODULES.values())}
    # the package itself, the accessor it registers with xarray, the command line and the test helpers
    entries = {"colorcube", "colorcube.apps.accessor", "colorcube.apps.cli", "colorcube.testing"}
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    orphans = sorted(set(MODULES) - imported - public - entries - packages)
    assert orphans == []


@pytest.mark.parametrize("package", sorted(n for n, p in MODULES.items() if p.name == "__init__.py" and n != "colorcube"))
def test_each_subpackage_says_what_lives_there_and_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    assert "may import" in doc.lower(), f"{package}/__init__.py: say what lives there and what it may import"
    below = LAYERS[: LAYERS.index(package.split(".")[1])]
    # the sentence names the layers below it (the core always), so it stays true to the test above
    assert all(layer in doc for layer in below if layer != "core")


@pytest.mark.parametrize("rule, home", [
    ("band", "colorcube.render.bands"),
    ("pinned_band", "colorcube.render.pins"),
    ("pin_codes", "colorcube.render.pins"),
    ("outward_codes", "colorcube.render.bands"),
    ("interval_codes", "colorcube.render.bands"),
    ("round_outward", "colorcube.render.bands"),
    ("nested_interval", "colorcube.render.bands"),
    ("photo_step", "colorcube.run.pipeline"),
    ("resolve_calibration", "colorcube.conformal.lookup"),
    ("cube_calibration", "colorcube.conformal.lookup"),
    ("hint_channels", "colorcube.network.model"),
    ("array_to_gray", "colorcube.inputs.images"),
    ("read_input", "colorcube.run.pipeline"),
    ("atomic_path", "colorcube.files"),
])
def test_each_rule_has_one_definition(rule, home):
    defined = [name for name, path in MODULES.items() for node in ast.parse(path.read_text()).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == rule]
    assert defined == [home]
    assert callable(getattr(importlib.import_module(home), rule))
