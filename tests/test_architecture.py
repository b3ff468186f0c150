"""The layout's rules, checked on the source's imports (every import statement, also those
inside functions and ``TYPE_CHECKING`` blocks): arrows point one way, with no import cycles;
no code outside an algorithm's own modules and the registry branches on an algorithm's name
(but the reader of fastadapt 0.1.0's run directories, which maps 0.1.0's sections by name).

Layers, lowest first (a module imports only its own layer and the ones below; ``sampling``
never imports an algorithm, ``envs`` nothing of learning):

0. values and errors: ``types``, ``errors``, ``closing``, ``plugins``, ``config``,
   ``quoting``, ``files``
1. ``envs``, ``policies``, ``baselines``, ``buffers``
2. ``backends``
3. ``sampling``
4. ``algorithms`` (``agent`` below ``base``; ``common`` below ``maml``, ``rl2``, ``pearl``;
   ``transfer`` above ``maml``)
5. ``run``
6. ``evaluation``
7. ``plots``
8. ``cli``, ``sweeps`` (orchestration) and the package's face (``fastadapt/__init__.py``,
   which imports lazily)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fastadapt"
LAYERS: dict[str, int] = {
    "types": 0, "errors": 0, "closing": 0, "plugins": 0, "config": 0, "quoting": 0, "files": 0,
    "envs": 1, "policies": 1, "baselines": 1, "buffers": 1,
    "backends": 2,
    "sampling": 3,
    "algorithms": 4,
    "run": 5, "integrations": 5,
    "evaluation": 6,
    "plots": 7,
    "cli": 8, "sweeps": 8, "": 8,
}
ALGORITHM_LEVELS = {"agent": 0, "base": 1, "common": 1, "maml": 2, "rl2": 2, "pearl": 2,
                    "transfer": 3, "memory": 3, "toolkit": 3, "registry": 4}
"""Within ``algorithms``: each folder imports its own level and the ones below."""
SAME_LAYER_FORBIDDEN = {("envs", "policies"), ("policies", "envs"), ("envs", "baselines"),
                        ("policies", "baselines"), ("buffers", "envs"), ("buffers", "policies")}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The fastadapt modules ``module`` imports (resolved to the deepest known module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("fastadapt"):
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer() -> None:
    assert {_top(m) for m in _modules()} <= set(LAYERS)


def test_arrows_point_down_the_layers() -> None:
    wrong = []
    for module, targets in _graph().items():
        for target in targets:
            here, there = _top(module), _top(target)
            if LAYERS[there] > LAYERS[here] or (here, there) in SAME_LAYER_FORBIDDEN:
                wrong.append(f"{module} -> {target}")
            if here == there == "algorithms":
                mine, theirs = (m.split(".")[2] for m in (module, target))
                levels = (ALGORITHM_LEVELS[mine.removesuffix(".py")],
                          ALGORITHM_LEVELS[theirs.removesuffix(".py")])
                if levels[1] > levels[0] or (levels[0] == levels[1] and mine != theirs):
                    wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_there_are_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_only_algorithms_and_the_registry_branch_on_an_algorithm_name() -> None:
    pattern = re.compile(r"algorithm\S*\s*(==|!=|\bin\b)|(==|!=)\s*\"(rl2|maml-\w+|promp|meta-sgd|"
                         r"finetune|oracle|random-init)\"")
    found = []
    for module, path in _modules().items():
        if module.startswith("fastadapt.algorithms.") or module == "fastadapt.run.format_0_1":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not found, "branches on an algorithm's name:\n" + "\n".join(found)


def test_source_files_stay_small() -> None:
    """The style's file size: at most 400 lines."""
    large = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in large.items() if lines > 400} == {}


BUILTIN_ALGORITHMS = ("maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd", "rl2", "pearl",
                      "finetune", "random-init", "oracle")
NAMES_ALLOWED = {"fastadapt.run.format_0_1": "converts 0.1.0's configs, which it knows by name"}
"""Modules outside ``algorithms`` that may write an algorithm's name, and why."""
NAME_LITERALS_ALLOWED = {("fastadapt.config", "maml-trpo"): "TrainConfig.algorithm's default"}
"""``(module, literal)`` pairs allowed besides :data:`NAMES_ALLOWED`, and why."""


def _code_strings(path: Path) -> list[ast.Constant]:
    """The string constants of a module's code: docstrings (a string standing alone as a
    statement: a module's, class's, function's or attribute's) are left out."""
    tree = ast.parse(path.read_text())
    documentation = {id(node.value) for node in ast.walk(tree)
                     if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in documentation]


def test_built_in_algorithm_names_are_the_registered_ones() -> None:
    from fastadapt.algorithms.registry import algorithm_names

    assert set(BUILTIN_ALGORITHMS) <= set(algorithm_names())


def test_algorithm_names_are_written_only_in_the_algorithms() -> None:
    """The trainer and everything but the algorithms never write an algorithm's name (nor a
    packaged config's, ``rl2/bandit-k5``) as a string: nothing branches on it. Help texts and
    messages that mention one as an example are longer strings and pass."""
    name = re.compile("(" + "|".join(map(re.escape, BUILTIN_ALGORITHMS)) + r")(/[\w.-]+)?")
    found = []
    for module, path in _modules().items():
        if module.startswith("fastadapt.algorithms.") or module in NAMES_ALLOWED:
            continue
        for node in _code_strings(path):
            if name.fullmatch(node.value) and (module, node.value) not in NAME_LITERALS_ALLOWED:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not found, "algorithm names outside the algorithms:\n" + "\n".join(found)


def _algorithm_config_folders() -> dict[str, str]:
    """Each built-in algorithm's config classes (its section's and their bases up to
    ``AlgorithmConfig``) by name, with the folder of ``algorithms`` that defines them."""
    from fastadapt.algorithms.registry import algorithm_class
    from fastadapt.config import AlgorithmConfig

    folders = {}
    for name in BUILTIN_ALGORITHMS:
        for cls in algorithm_class(name).config_class.__mro__:
            if isinstance(cls, type) and issubclass(cls, AlgorithmConfig) \
                    and cls is not AlgorithmConfig:
                folders[cls.__name__] = cls.__module__.split(".")[2]
    return folders


def test_only_an_algorithm_tests_for_its_config_class() -> None:
    """``isinstance(section, RL2Config)`` outside ``algorithms/rl2`` is a branch on the
    algorithm; the trainer and the rest ask the algorithm's class instead."""
    folders = _algorithm_config_folders()
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "isinstance" and len(node.args) == 2):
                continue
            classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            for cls in classes:
                cls_name = cls.id if isinstance(cls, ast.Name) else getattr(cls, "attr", "")
                folder = folders.get(cls_name)
                if folder is not None and not module.startswith(f"fastadapt.algorithms.{folder}"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {cls_name}")
    assert folders and not found, "config classes tested outside their algorithm:\n" + \
        "\n".join(found)
