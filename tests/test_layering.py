"""Imports point one way: core types -> passes -> runtime, data and evaluation -> targets ->
workload -> search, QAT and jobs -> compiler -> API -> CLI. Every import counts, also one
inside a function; the graph of mpqc's own modules has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "mpqc": ROOT / "mpqc",
    "mpqc.passes": ROOT / "passes",
    "mpqc.targets": ROOT / "targets",
    "mpqc.models": ROOT / "models",
}

#: (layer, module prefixes), lowest first
LAYERS = [
    (
        "core",
        [
            "mpqc.errors",
            "mpqc.precision",
            "mpqc.scheme",
            "mpqc.analysis",
            "mpqc.quant",
            "mpqc.ranges",
            "mpqc.stats",
            "mpqc.recipe",
            "mpqc.metrics",
            "mpqc.cost",
            "mpqc.budget",
            "mpqc.progress",
            "mpqc.version",
            "mpqc.realkit",
            "mpqc.cpu",
            "mpqc.backend",
            "mpqc.recovery",
        ],
    ),
    ("passes", ["mpqc.passes"]),
    (
        "runtime",
        [
            "mpqc.modelio",
            "mpqc.signature",
            "mpqc.runtime",
            "mpqc.data",
            "mpqc.splits",
            "mpqc.quality",
            "mpqc.frontend",
            "mpqc.calibrate",
            "mpqc.emit",
            "mpqc.autocalib",
            "mpqc.cache",
            "mpqc.export",
            "mpqc.baselines",
            "mpqc.ort_overrides",
            "mpqc.backend_check",
            "mpqc.models",
        ],
    ),
    ("targets", ["mpqc.targets"]),
    ("workload", ["mpqc.workload"]),
    (
        "search",
        [
            "mpqc.search",
            "mpqc.training",
            "mpqc.executor",
            "mpqc.ray_executor",
            "mpqc.scheduler",
            "mpqc.jobs",
            "mpqc.necessity",
            "mpqc.necessity_eval",
            "mpqc.plots",
            "mpqc.report_html",
            "mpqc.profiling",
            "mpqc.necessity_run",
            "mpqc.models.train",
            "mpqc.models.zoo",
            "mpqc.models.hf_encoder",
        ],
    ),
    ("compiler", ["mpqc.compiler"]),
    ("api", ["mpqc.api", "mpqc.olive_pass"]),
    ("cli", ["mpqc.cli", "mpqc.__main__"]),
]
#: the package root re-exports the API lazily (PEP 562) and is exempt
FACADE = "mpqc"


def _layer(module: str) -> int:
    best, found = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found >= 0, f"module {module} is in no layer: add it to LAYERS"
    return found


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if package == "mpqc" and parts[0] in ("passes", "targets", "models"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mpqc")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base == "mpqc":  # `from mpqc import api` imports the submodule
                out |= {f"mpqc.{a.name}" for a in node.names if not a.name.startswith("_")}
            elif base.startswith("mpqc"):
                out.add(base)
    return out


def _under_type_checking(path: Path) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def test_imports_point_down_the_layers():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        if module == FACADE:
            continue
        for target in _imports(path, module):
            if target == FACADE:
                wrong.append(f"{module} imports the package root (import the defining module instead)")
                continue
            if _layer(target) > _layer(module):
                wrong.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    modules = _modules()
    graph = nx.DiGraph()
    for module, path in modules.items():
        if module == FACADE:
            continue
        for target in _imports(path, module):
            resolved = target if target in modules else target.rsplit(".", 1)[0]
            if resolved in modules and resolved != module and resolved != FACADE:
                graph.add_edge(module, resolved)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles[:5]


def test_every_module_is_in_a_layer():
    for module in _modules():
        if module != FACADE:
            _layer(module)
