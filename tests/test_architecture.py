"""The import graph is the pipeline: data flows one way and no module imports one above it.

    tasks -> model -> training -> affinity (recorders, store) -> grouping -> study -> report,
    with the any-loop fronts (loops), the API and the CLI on top

The package's folders are these stages (``STAGES``); a module may import its own stage and the
stages before it, never a later one. ``errors``, ``storage`` and ``stats`` are the foundations
(they import nothing of the package); ``config`` reads task specs and tracking settings;
``tracking`` serves every stage and reaches no further than the training loop's callback contract.

Source selection by training (``selection``: AutoSeM's bandit) sits beside the recorders, above the
trainer: it trains, so grouping (maths on matrices) must not import it, and it must not import studies.

Every ``import`` in the package is read with :mod:`ast`, at module level and inside functions
(lazy imports are still dependencies), and resolved to the package's modules. The rules below
are the layering; a failure names the importing module, the line and the imported module.

``python tests/test_architecture.py`` prints the module-level graph (one arrow per line).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = "taskaffinity"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package (``__init__`` names its package)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if not level:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in one file; package-internal targets are resolved
    to the deepest module that exists (``from .a import b`` is ``a.b`` when ``b`` is a module),
    external ones to their top-level distribution name (``torch``, ``transformers``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((_target(alias.name, modules), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, is_package, node.module, node.level)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule if submodule in modules else _target(source, modules), node.lineno))
    return found


def _target(dotted: str, modules: dict[str, Path]) -> str:
    if dotted.split(".")[0] != PACKAGE:
        return dotted.split(".")[0]
    while dotted not in modules and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    """Directed graph importer -> imported over the package's modules and the external top-level
    names they use; each edge keeps the first line that creates it (``line``)."""
    modules = module_names(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target, line in imports_of(name, path, modules):
            if target and target != name and not graph.has_edge(name, target):
                graph.add_edge(name, target, line=line)
    return graph


def internal(graph: nx.DiGraph) -> nx.DiGraph:
    return graph.subgraph([n for n in graph if n.split(".")[0] == PACKAGE]).copy()


def _in(module: str, area: str) -> bool:
    full = f"{PACKAGE}.{area}"
    return module == full or module.startswith(full + ".")


# (importer area, imported area or external name, why the arrow would point the wrong way)
FORBIDDEN = [
    ("tasks", "config", "task specs sit below the run config"),
    ("tasks", "training", "tasks know nothing of training"),
    ("tasks", "api", "the API sits on top"),
    ("tasks", "torch", "tasks are data: reading a catalog must not need torch"),
    ("tasks", "transformers", "tasks are data: reading a catalog must not need transformers"),
    ("affinity", "report", "measurement does not draw pictures"),
    ("grouping", "affinity", "grouping is maths on matrices; the CLI/study layer loads stores"),
    ("grouping", "selection", "grouping is maths on matrices; selection trains models"),
    ("affinity", "selection", "recording affinities does not depend on bandit selection"),
    ("selection", "study", "a study picks groups with source selection, not the reverse"),
    ("selection", "report", "selection does not draw pictures"),
    ("selection", "cli", "the CLI sits on top"),
    ("selection.thompson", "torch", "the sampler is maths: testable with an injected reward, no model"),
    ("selection.settings", "torch", "settings are checked before anything heavy is imported"),
    ("report", "study.runner", "reports read study outputs, they do not run jobs"),
    ("report", "study.executors", "reports read study outputs, they do not run jobs"),
    ("report", "study.jobs", "reports read study outputs, they do not run jobs"),
    ("report", "study.worker", "reports read study outputs, they do not run jobs"),
]
EXTERNAL = {"torch", "transformers"}

# the pipeline's stages in order (an area's rank); areas of one rank must not import each other
STAGES = [
    ("errors", "storage", "stats"),
    ("tasks",),
    ("config",),
    ("model",),
    ("training",),
    ("affinity", "grouping", "selection"),
    ("study",),
    ("report",),
    ("loops", "api"),
    ("cli",),
    ("__main__",),
]
RANK = {area: rank for rank, areas in enumerate(STAGES) for area in areas}
CROSS_CUTTING = {"tracking", "_aliases"}  # tracking: logs of every stage (checked by TRACKING_MAY_IMPORT)
TRACKING_MAY_IMPORT = {"errors", "storage", "stats", "config", "tracking", "training.callbacks"}


def area_of(module: str) -> str:
    """``taskaffinity.training.loop`` -> ``training``; the package itself -> ``taskaffinity``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def stage_problems(graph: nx.DiGraph) -> list[str]:
    """Arrows from a stage to a later one, or between two areas of one stage; tracking beyond its reach."""
    problems = []
    for source, target, data in internal(graph).edges(data=True):
        a, b = area_of(source), area_of(target)
        if a == b or PACKAGE in (a, b):
            continue
        if a in CROSS_CUTTING:
            if a == "tracking" and not any(_in(target, ok) for ok in TRACKING_MAY_IMPORT):
                problems.append(
                    f"{source} (line {data['line']}) imports {target}: tracking serves the stages, "
                    "it does not import them"
                )
            continue
        if b in CROSS_CUTTING:
            continue
        if a not in RANK or b not in RANK:
            problems.append(f"{source} or {target}: an area with no stage; add it to STAGES")
        elif RANK[b] >= RANK[a]:
            relation = "comes after" if RANK[b] > RANK[a] else "is a sibling of"
            problems.append(f"{source} (line {data['line']}) imports {target}: {b} {relation} {a}")
    return problems


TOP = {f"{PACKAGE}.api", f"{PACKAGE}.cli", f"{PACKAGE}.__main__"}


def forbidden_edges(graph: nx.DiGraph) -> list[str]:
    problems = []
    for source, target, data in graph.edges(data=True):
        found = [
            why
            for area, banned, why in FORBIDDEN
            if _in(source, area) and (target == banned if banned in EXTERNAL else _in(target, banned))
        ]
        problems += [f"{source} (line {data['line']}) imports {target}: {why}" for why in found]
        if not found and target == f"{PACKAGE}.api" and source not in TOP and not _in(source, "cli"):
            problems.append(
                f"{source} (line {data['line']}) imports {target}: the API sits on top, "
                "library code calls the module that does the work"
            )
    return problems


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return import_graph()


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .leaf import thing\n")
    (package / "sub" / "leaf.py").write_text("import torch\n\ndef f():\n    from .. import top\n    return top\n")
    (package / "top.py").write_text("from .sub import leaf\nfrom taskaffinity.sub.leaf import f\n")
    found = import_graph(package)
    assert set(found.edges) == {
        (f"{PACKAGE}.sub", f"{PACKAGE}.sub.leaf"),
        (f"{PACKAGE}.sub.leaf", "torch"),
        (f"{PACKAGE}.sub.leaf", f"{PACKAGE}.top"),
        (f"{PACKAGE}.top", f"{PACKAGE}.sub.leaf"),
    }
    assert found.edges[f"{PACKAGE}.sub.leaf", f"{PACKAGE}.top"]["line"] == 4
    assert sorted(map(sorted, nx.simple_cycles(internal(found)))) == [[f"{PACKAGE}.sub.leaf", f"{PACKAGE}.top"]]
    found.add_edge(f"{PACKAGE}.tasks.x", "torch", line=7)
    found.add_edge(f"{PACKAGE}.grouping.y", f"{PACKAGE}.api", line=9)
    assert forbidden_edges(found) == [
        f"{PACKAGE}.tasks.x (line 7) imports torch: tasks are data: reading a catalog must not need torch",
        f"{PACKAGE}.grouping.y (line 9) imports {PACKAGE}.api: the API sits on top, library code calls the "
        "module that does the work",
    ]


def test_the_graph_covers_the_package(graph):
    assert len([n for n in internal(graph)]) == len(module_names())
    assert graph.has_edge(f"{PACKAGE}.training.loop", "torch")


def test_the_top_level_reads_as_the_pipeline():
    """The package's top level holds the stages' folders, the foundations and the entry points only."""
    top = {p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    stages = {area for areas in STAGES for area in areas}
    assert top == stages | CROSS_CUTTING | {"__init__"}, sorted(top ^ (stages | CROSS_CUTTING | {"__init__"}))


def test_every_stage_imports_only_earlier_stages(graph):
    problems = stage_problems(graph)
    assert problems == [], "arrows to later stages:\n" + "\n".join(problems)


def test_the_stage_rule_catches_a_backward_arrow(graph):
    broken = graph.copy()
    broken.add_edge(f"{PACKAGE}.training.loop", f"{PACKAGE}.affinity.store", line=3)
    broken.add_edge(f"{PACKAGE}.grouping.tag", f"{PACKAGE}.affinity.store", line=4)
    broken.add_edge(f"{PACKAGE}.tracking.run", f"{PACKAGE}.study.runner", line=5)
    assert sorted(stage_problems(broken)) == [
        f"{PACKAGE}.grouping.tag (line 4) imports {PACKAGE}.affinity.store: affinity is a sibling of grouping",
        f"{PACKAGE}.tracking.run (line 5) imports {PACKAGE}.study.runner: tracking serves the stages, it does not "
        "import them",
        f"{PACKAGE}.training.loop (line 3) imports {PACKAGE}.affinity.store: affinity comes after training",
    ]


def test_no_import_cycles(graph):
    cycles = sorted(" -> ".join(cycle + cycle[:1]) for cycle in nx.simple_cycles(internal(graph)))
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_imports_follow_the_pipeline(graph):
    problems = forbidden_edges(graph)
    assert problems == [], "arrows against the data flow:\n" + "\n".join(problems)


def test_no_layer_reaches_a_forbidden_one_through_others(graph):
    """The same rules over chains of imports: importing a module imports everything it reaches."""
    problems = []
    for area, banned, why in FORBIDDEN:
        for source in [n for n in graph if _in(n, area)]:
            for target in nx.descendants(graph, source):
                if target == banned if banned in EXTERNAL else _in(target, banned):
                    path = nx.shortest_path(graph, source, target)
                    problems.append(f"{' -> '.join(path)}: {why}")
    assert problems == [], "chains against the data flow:\n" + "\n".join(sorted(set(problems)))


def test_earlier_module_paths_still_import_the_same_modules():
    """Each old path is the same module object; a deprecated one warns at the importing line."""
    import importlib
    import warnings

    from taskaffinity import _aliases

    for old, new in {**_aliases.SHORT, **_aliases.MOVED}.items():
        if old in ("lightning", "hf_trainer"):
            continue  # optional extras: their own tests import them through the short name
        sys.modules.pop(f"{PACKAGE}.{old}", None)  # the alias runs again, the real module stays loaded
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            __import__(f"{PACKAGE}.{old}")  # as an import statement does (importlib.import_module adds a frame)
        module = sys.modules[f"{PACKAGE}.{old}"]
        assert module is importlib.import_module(f"{PACKAGE}.{new}")
        deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message)]
        if old in _aliases.MOVED:
            assert [(w.filename, str(w.message).split(";")[0]) for w in deprecated] == [
                (__file__, f"{PACKAGE}.{old} moved to {PACKAGE}.{new}")
            ]
        else:
            assert deprecated == [], old


def print_graph(graph: nx.DiGraph, packages: bool = False) -> None:
    """One ``importer -> imported`` line per internal edge, sorted, package prefix dropped; with
    ``packages`` each subpackage (``affinity``, ``tasks`` ...) is one node and inner arrows are dropped."""
    short = len(PACKAGE) + 1
    edges = {(source[short:] or PACKAGE, target[short:] or PACKAGE) for source, target in internal(graph).edges}
    if packages:
        edges = {(s.split(".")[0], t.split(".")[0]) for s, t in edges if s.split(".")[0] != t.split(".")[0]}
    for source, target in sorted(edges):
        print(f"{source} -> {target}")


if __name__ == "__main__":  # python tests/test_architecture.py [--packages] [PACKAGE_DIR]
    args = [a for a in sys.argv[1:] if a != "--packages"]
    print_graph(import_graph(Path(args[0]) if args else ROOT), packages="--packages" in sys.argv)
