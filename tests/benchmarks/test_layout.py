"""The benchmarks' layout: one sub-package per kind, imports between benchmark modules at the top
of a file only, and no import cycle among them."""

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
KINDS = ("speed", "faults", "movies", "movielens")


def module_name(path: Path) -> str:
    parts = path.relative_to(BENCHMARKS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def benchmark_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported benchmarks module, imported at the top of the file) for each import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "benchmarks":
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [
                (
                    name if BENCHMARKS.parent.joinpath(*name.split(".")).with_suffix(".py").is_file() else node.module,
                    id(node) in top,
                )
                for name in names
            ]
        elif isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names if alias.name.split(".")[0] == "benchmarks"]
    return found


def kind_modules() -> dict[str, Path]:
    return {module_name(path): path for kind in KINDS for path in sorted((BENCHMARKS / kind).glob("*.py"))}


def test_every_benchmark_module_lives_in_a_kind_package():
    flat = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "__init__.py")
    assert flat == []
    for kind in KINDS:
        assert (BENCHMARKS / kind / "__init__.py").is_file()
    assert (BENCHMARKS / "README.md").is_file()


def test_benchmark_modules_import_each_other_at_the_top_of_the_file_only():
    hidden = {
        name: [imported for imported, at_top in benchmark_imports(path) if not at_top]
        for name, path in kind_modules().items()
    }
    assert {name: found for name, found in hidden.items() if found} == {}


def test_no_import_cycle_among_the_benchmark_modules():
    modules = kind_modules()
    graph = {
        name: {imported for imported, _ in benchmark_imports(path) if imported in modules}
        for name, path in modules.items()
    }
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            assert state.get(imported) != "open", f"import cycle: {' -> '.join([*path, name, imported])}"
            if imported not in state:
                visit(imported, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert graph["benchmarks.movielens.benchmark"] >= {
        "benchmarks.movielens.two_tower",
        "benchmarks.movielens.rating_ranking",
    }


def test_the_readme_names_every_benchmark_command():
    readme = (BENCHMARKS / "README.md").read_text()
    runnable = [name for name, path in kind_modules().items() if '__name__ == "__main__"' in path.read_text()]
    assert runnable
    assert [name for name in runnable if f"python -m {name}" not in readme] == []
