"""The floor plan, checked from the code's own imports.

Layers, each importing only downward:

* core ``dfd``: imports no sibling package, names none by string;
* model packages ``mesonet_tf``, ``temporal_tf``, ``frame_tf``: the core only (no ``data_prep``, no video
  or face detection), and not each other;
* ``data_prep``: the core only (no model package);
* app ``dfd_app``: anything; nothing else imports it.

Every import counts: module level, inside functions, and module names given as strings
(``importlib.import_module("x")``, or any string constant naming a package module, e.g. in a
lookup table). No two modules may import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dfd", "mesonet_tf", "temporal_tf", "frame_tf", "data_prep", "dfd_app")
ALLOWED = {
    "dfd": {"dfd"},
    "mesonet_tf": {"dfd", "mesonet_tf"},
    "temporal_tf": {"dfd", "temporal_tf"},
    "frame_tf": {"dfd", "frame_tf"},
    "data_prep": {"dfd", "data_prep"},
    "dfd_app": set(PACKAGES),
}


def module_files(root: Path = REPO) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The package module ``name`` refers to (itself or its nearest known parent)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict) -> set[str]:
    """Every package module ``module`` imports: statements anywhere, and names as strings."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.split(":")[0]
            if text in modules or (text.split(".")[0] in PACKAGES and "." in text
                                   and _resolve(text, modules) and " " not in text):
                names = [text]
        for n in names:
            target = _resolve(n, modules)
            if target and target != module:
                found.add(target)
    return found


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    modules = module_files(root)
    return {m: imports_of(m, f, modules) for m, f in modules.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, targets in sorted(graph.items()):
        layer = mod.split(".")[0]
        for t in sorted(targets):
            if t.split(".")[0] not in ALLOWED[layer]:
                bad.append(f"{mod} imports {t}")
    return bad


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-loops.

    An edge from a module to one of its own parent packages is how Python imports a
    submodule, not a design cycle, so it is left out."""
    def parents(m):
        parts = m.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    edges = {m: {t for t in ts if t not in parents(m)} for m, ts in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_layers_import_only_downward():
    assert layer_violations(import_graph()) == []


def test_no_circular_imports():
    assert find_cycles(import_graph()) == []


def test_every_package_is_parsed():
    graph = import_graph()
    for pkg in PACKAGES:
        assert any(m.split(".")[0] == pkg for m in graph), pkg
    assert "dfd.presets" in graph["mesonet_tf"]  # the model package registers with the core


@pytest.fixture
def planted(tmp_path):
    """A copy of the package tree in which violations can be planted."""
    import shutil

    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.keras", "*.onnx",
                                                      "*.mp4", "static"))
    return tmp_path


@pytest.mark.parametrize("where, code, expect", [
    ("dfd/labels.py", "\ndef _f():\n    import mesonet_tf.models\n", "dfd.labels imports mesonet_tf"),
    ("dfd/labels.py", "\nimport importlib\n_M = importlib.import_module('data_prep.splits')\n",
     "dfd.labels imports data_prep.splits"),
    ("dfd/scores.py", "\n_TABLE = {'x': ('dfd_app.cli.main', 'main')}\n",
     "dfd.scores imports dfd_app.cli.main"),
    ("mesonet_tf/models.py", "\nfrom data_prep.faces import align\n",
     "mesonet_tf.models imports data_prep.faces"),
    ("data_prep/splits.py", "\ndef _g():\n    from temporal_tf import model\n",
     "data_prep.splits imports temporal_tf.model"),
    ("data_prep/prep.py", "\nfrom dfd_app.detect import pipeline\n",
     "data_prep.prep imports dfd_app.detect.pipeline"),
])
def test_a_planted_violation_fails(planted, where, code, expect):
    f = planted / where
    f.write_text(f.read_text() + code)
    assert expect in "\n".join(layer_violations(import_graph(planted)))


def test_a_planted_cycle_fails(planted):
    assert "dfd.schema" in import_graph(planted)["dfd.readers"]
    f = planted / "dfd" / "schema.py"
    f.write_text(f.read_text() + "\ndef _h():\n    from dfd import readers\n")
    assert any({"dfd.readers", "dfd.schema"} <= set(c) for c in find_cycles(import_graph(planted)))
