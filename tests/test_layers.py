"""Imports run one way: every module of ``src/adadiffsr`` imports only from its own layer or below.

The graph is read from the source (every ``import``, including those inside functions and under
``TYPE_CHECKING``), so an upward import fails here whether or not it would happen at run time.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "adadiffsr"

# Bottom to top. A module may import from its own layer and the layers below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("core",),  # schedule, backbone contract, policy contract, gain eq. 1, one step's arithmetic
    ("io", "color", "metrics", "policies", "devices"),
    ("engine", "weights"),  # the sampling loop, tiling and fusion, the image pipeline; safetensors files
    ("prior",),
    ("backbones",),
    ("data",),
    ("pfj", "gain"),
    ("report", "runtime", "result"),
    ("config",),  # UpscaleConfig, composed of the parts' settings
    ("resolve",),  # a call's config with the model's defaults filled in
    ("api",),
    ("files", "bench", "train", "distributed", "serve", "ray_data"),
    ("cli",),
    ("__main__", "__init__"),
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    return ".".join(path.relative_to(package).with_suffix("").parts)


def imported(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """The ``adadiffsr`` modules ``path`` imports, as dotted names below the package."""
    package = module_name(path, package_dir).split(".")[:-1]  # what a relative import starts from
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module is None:  # from . import name: the names are modules of the package
                base = package[: len(package) - (node.level - 1)]
                found |= {".".join([*base, a.name]) for a in node.names}
            elif node.level:
                base = package[: len(package) - (node.level - 1)]
                found.add(".".join([*base, node.module]))
            elif node.module and node.module.startswith("adadiffsr"):
                found.add(node.module.removeprefix("adadiffsr").lstrip(".") or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("adadiffsr").lstrip(".") or "__init__"
                      for a in node.names if a.name.split(".")[0] == "adadiffsr"}
    return found


def layer(dotted: str) -> str:
    return dotted.split(".")[0]


def upward_imports(package: Path = PACKAGE) -> list[str]:
    wrong = []
    for path in sorted(package.rglob("*.py")):
        here = layer(module_name(path, package))
        for target in sorted(imported(path, package)):
            if RANK[layer(target)] > RANK[here]:
                wrong.append(f"{module_name(path, package)} imports {target} ({layer(target)} is above {here})")
    return wrong


def test_every_module_has_a_layer() -> None:
    tops = {layer(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert tops <= set(RANK), f"modules with no layer: {sorted(tops - set(RANK))}"


def test_imports_run_one_way() -> None:
    assert upward_imports() == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The checker itself: a core module importing the engine is reported, a downward one is not."""
    fake = tmp_path / "adadiffsr"
    (fake / "core").mkdir(parents=True)
    (fake / "engine").mkdir()
    (fake / "core" / "bad.py").write_text("def f():\n    from ..engine.sampler import sample_tiles\n")
    (fake / "engine" / "good.py").write_text("from ..core.schedule import NoiseSchedule\nimport adadiffsr.errors\n")
    (fake / "engine" / "__init__.py").write_text("from adadiffsr.api import Upscaler\n")
    assert upward_imports(fake) == ["core.bad imports engine.sampler (engine is above core)",
                                    "engine.__init__ imports api (api is above engine)"]


def module_file(dotted: str, package: Path = PACKAGE) -> str:
    """The module a dotted import target runs: the file, or the package's ``__init__``."""
    parts = dotted.split(".") if dotted != "__init__" else []
    if parts and (package.joinpath(*parts[:-1]) / f"{parts[-1]}.py").is_file():
        return dotted
    if (package.joinpath(*parts) / "__init__.py").is_file():
        return ".".join([*parts, "__init__"])
    return module_file(".".join(parts[:-1]), package) if len(parts) > 1 else "__init__"


def import_cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Cycles between files (each file's imports, lazy ones included), one list of modules per cycle."""
    graph = {module_name(p, package): {module_file(t, package) for t in imported(p, package)}
             for p in package.rglob("*.py")}
    graph = {m: targets - {m} for m, targets in graph.items()}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_two_files_import_each_other() -> None:
    """Within a layer too: no cycle of imports between files, a package's ``__init__`` included."""
    assert import_cycles() == []


def test_a_cycle_between_files_is_caught(tmp_path: Path) -> None:
    fake = tmp_path / "adadiffsr"
    (fake / "serve").mkdir(parents=True)
    (fake / "serve" / "app.py").write_text("from .server import Settings\n")
    (fake / "serve" / "server.py").write_text("def f():\n    from .app import build\n")
    (fake / "serve" / "jobs.py").write_text("from ..errors import E\n")
    (fake / "errors.py").write_text("")
    assert import_cycles(fake) == [["serve.app", "serve.server", "serve.app"]]


def test_no_module_is_over_300_lines() -> None:
    """Small modules a newcomer reads top to bottom: over 300 lines, a file holds more than one idea."""
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}


def quoted_policy_names(root: Path) -> list[str]:
    """``file:line name`` for every string constant outside ``policies/`` (docstrings aside) that is a
    policy's name; names that are also an option's (``timesteps``) are left out."""
    from adadiffsr.config import UpscaleConfig
    from adadiffsr.policies.registry import POLICIES

    names = set(POLICIES) - set(UpscaleConfig.option_fields())
    found = []
    for path in sorted(root.rglob("*.py")):
        if "policies" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        found += [f"{path.relative_to(root)}:{node.lineno} {node.value}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings]
    return found


def test_policy_names_live_in_the_registry() -> None:
    """Code outside ``policies/`` reads a policy's facts or the registry's named constants
    (``GROUPED_POLICY``, ``PACED_POLICY``...), not a quoted name."""
    assert quoted_policy_names(PACKAGE) == []


def test_a_quoted_policy_name_is_caught(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "registry.py").write_text('NAME = "grouped"\n')
    (tmp_path / "api.py").write_text('"""grouped"""\nDEFAULT = "grouped"\n')  # a docstring is prose
    assert quoted_policy_names(tmp_path) == ["api.py:2 grouped"]


def flags_in_library_errors(root: Path) -> list[str]:
    """Raised messages outside ``cli/`` that name a CLI flag (``--tile``) instead of the setting
    (`tile`, which the CLI shows as its flag); a whole command to run (``adadiffsr ... --out X``, ``apt-get``) is fine."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "cli" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            text = " ".join(c.value for c in ast.walk(node.exc) if isinstance(c, ast.Constant) and isinstance(c.value, str))
            if re.search(r"(^|[\s(/])--[a-z]", text) and not re.search(r"adadiffsr |apt-get ", text):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_library_errors_name_settings_not_flags(tmp_path: Path) -> None:
    assert flags_in_library_errors(PACKAGE) == []
    (tmp_path / "api.py").write_text('raise ValueError(f"pass --force {1}")\nraise ValueError("pass `force`")\n')
    assert flags_in_library_errors(tmp_path) == ["api.py:1"]
