"""The package's modules form one stack: each imports only modules below it, so there is no cycle.

Every import counts, those inside functions too. A new module must be placed in LAYERS.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vecsearch"

#: Bottom to top (docs/architecture.md explains each one).
LAYERS = [
    "files",
    "sizes",
    "stages",
    "executors",
    "sources",
    "images",
    "edits",
    "features",
    "manifest",
    "pathnames",
    "vectors",
    "encoder",
    "workdir",
    "rerank",
    "verify",
    "ivf",
    "matching",
    "calibration",
    "store",
    "search",
    "encoding",
    "calibrate",
    "steps",
    "pipeline",
    "embedding",
    "dedup",
    "check",
    "report",
    "evaluate",
    "arguments",
    "output",
    "static",
    "server",
    "commands",
    "cli",
    "__init__",
]


def _module(path: Path) -> str:
    """A file's layer name: the top-level module or subpackage it belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> set[str]:
    """Layer names of the package modules that ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    depth = len(path.relative_to(PACKAGE).parts)  # 1 for vecsearch/x.py, 2 for vecsearch/features/x.py
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(path.relative_to(PACKAGE).parent.parts)[: max(0, depth - node.level)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "vecsearch":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.add(target[0])
            else:  # "from . import x, y"
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "vecsearch":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        graph.setdefault(name, set()).update(i for i in _imports(path) if i != name)
    return graph


def test_every_module_has_a_place_in_the_stack():
    assert set(_graph()) == set(LAYERS), "place new modules in LAYERS (and in docs/architecture.md)"


def test_no_module_imports_one_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{m} imports {i}" for m, imported in _graph().items() for i in imported if rank.get(i, -1) > rank[m]
    ]
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, str] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = "open"
        for i in sorted(graph.get(m, ())):
            if state.get(i) == "open":
                return [*trail, m, i]
            if i not in state and (cycle := visit(i, [*trail, m])):
                return cycle
        state[m] = "done"
        return None

    cycles = [c for m in sorted(graph) if m not in state and (c := visit(m, []))]
    assert cycles == []


def test_the_checks_see_imports_inside_functions(tmp_path):
    """The parser must notice a lazy import, or the tests above would pass on a cyclic package."""
    probe = PACKAGE / "ivf.py"
    assert "rerank" in _imports(probe)
    lazy = _imports(PACKAGE / "calibrate.py")
    assert "ivf" in lazy  # imported inside fit_calibration only
