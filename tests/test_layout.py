"""The package's shape (issue 25): imports point one way, so a newcomer can read it stage by stage."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "maskclf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the maskclf modules it imports, at the top or inside functions alike."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "maskclf":
                if node.level:
                    continue
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.split(".")[0] == "maskclf")
        graph[name] = {d for d in deps if d in modules and d != name and d != "maskclf"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_circles_even_through_imports_inside_functions():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The stages, bottom up: a module imports only from its own floor or below (docs/ARCHITECTURE.md).
FLOORS = ["maskclf", "maskclf.files", "maskclf.config", "maskclf.config_checks"], ["maskclf.data"], ["maskclf.edge"], ["maskclf.models"], \
    ["maskclf.reports"], ["maskclf.research"], ["maskclf.training"], ["maskclf.tuning"], ["maskclf.export"], \
    ["maskclf.cli", "maskclf.commands", "maskclf.__main__"]


def floor_of(module: str) -> int:
    best, found = -1, None
    for i, prefixes in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    assert found is not None, f"{module}: not on any floor of tests/test_layout.py; add its subpackage there"
    return found


def test_imports_point_down_the_stages():
    upward = [f"{m} (floor {floor_of(m)}) imports {d} (floor {floor_of(d)})"
              for m, deps in sorted(import_graph().items()) for d in sorted(deps) if floor_of(d) > floor_of(m)]
    assert not upward, "imports pointing up the stages:\n" + "\n".join(upward)


def test_every_module_stays_under_about_500_lines():
    long = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 560 and p.name != "_metadata_schema_fb.py"}
    assert not long, f"modules over ~500 lines (split them by reason to change): {long}"


def test_every_public_function_and_class_has_a_docstring():
    """Public = not starting with ``_``, at module level or a public method of a public class (the vendored
    flatbuffers schema excluded)."""
    missing = []
    for p in sorted(PKG.rglob("*.py")):
        if p.name == "_metadata_schema_fb.py":
            continue
        for node in ast.parse(p.read_text()).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            methods = node.body if isinstance(node, ast.ClassDef) else []
            members = [node] + [m for m in methods if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]
            missing += [f"{p.relative_to(PKG.parent)}:{m.lineno} {m.name}" for m in members if not ast.get_docstring(m)]
    assert not missing, "public functions/classes without a docstring:\n" + "\n".join(missing)


def test_import_paths_from_before_the_subpackages_still_work_with_a_warning():
    import importlib
    import importlib.util
    import sys
    import warnings

    import pytest

    from maskclf import _moved

    for old, new in _moved.MOVED.items():  # every old name points at a module that exists, and none is real
        assert importlib.util.find_spec(f"maskclf.{new}") is not None, new
        assert not (PKG / f"{old}.py").exists() and not (PKG / old).is_dir(), old
    sys.modules.pop("maskclf.tflite_metadata", None)
    with pytest.warns(DeprecationWarning, match="maskclf.tflite_metadata moved to maskclf.edge.tflite_metadata"):
        old = importlib.import_module("maskclf.tflite_metadata")
    assert old is importlib.import_module("maskclf.edge.tflite_metadata")
    with pytest.warns(DeprecationWarning, match="maskclf.models.create_model moved to maskclf.models.registry"):
        from maskclf.models import create_model
    from maskclf.models.registry import create_model as new

    assert create_model is new
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from maskclf.models import create_model  # noqa: F811  (cached: no second warning)
    with pytest.raises(ImportError):
        from maskclf.export import no_such_function  # noqa: F401
