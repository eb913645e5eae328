"""Layers import downwards only: the job store knows rows, not configs, tasks or trainers.

Read from the source (every `import` and `from ... import` node, those inside functions and
`if TYPE_CHECKING:` blocks included), so an import that runs only on some path counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lorabench

PACKAGE_ROOT = Path(lorabench.__file__).parent
# What lorabench/store may not import: everything above it.
STORE_FORBIDDEN = tuple(
    f"lorabench.{name}"
    for name in ("config", "tasks", "variants", "train", "worker", "report", "cli")
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every module `source` (the text of `module`) imports, absolute, anywhere in it. For
    `from a import b` both `a` and `a.b` are named (b may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names if alias.name != "*"]
    return found


def forbidden(name: str, floors: tuple[str, ...]) -> bool:
    return any(name == floor or name.startswith(floor + ".") for floor in floors)


def violations(folder: Path, floors: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        module = module_name(path)
        names = imported_modules(
            path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
        )
        found += [f"{module} imports {name}" for name in names if forbidden(name, floors)]
    return found


def test_the_store_imports_nothing_above_it():
    modules = list((PACKAGE_ROOT / "store").rglob("*.py"))
    assert len(modules) >= 5  # the walk sees the store's modules
    assert violations(PACKAGE_ROOT / "store", STORE_FORBIDDEN) == []


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from lorabench.config import JobConfig", "lorabench.store.queue"),
        ("def f():\n    from lorabench.cli.plan import job_rows", "lorabench.store.queue"),
        ("import lorabench.train.loop as loop", "lorabench.store.queue"),
        ("from lorabench import worker", "lorabench.store.queue"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lorabench.report",
            "lorabench.store.queue",
        ),  # fmt: skip
        ("from ..tasks import get_task_info", "lorabench.store.queue"),
        ("class A:\n    def m(self):\n        import lorabench.variants", "lorabench.store"),
    ],
)
def test_the_check_sees_every_kind_of_import(source: str, module: str):
    names = imported_modules(source, module)
    assert any(forbidden(name, STORE_FORBIDDEN) for name in names), names


def test_relative_imports_resolve_to_their_own_package():
    names = imported_modules("from . import variants\nfrom .queue import enqueue",
                             "lorabench.store.dialects")  # fmt: skip
    assert names == ["lorabench.store", "lorabench.store.variants", "lorabench.store.queue",
                     "lorabench.store.queue.enqueue"]  # fmt: skip
    assert not any(forbidden(name, STORE_FORBIDDEN) for name in names)
    package = imported_modules("from .engine import opened", "lorabench.store", is_package=True)
    assert package[0] == "lorabench.store.engine"


def floors(*names: str) -> tuple[str, ...]:
    return tuple(f"lorabench.{name}" for name in names)


@pytest.mark.parametrize(
    ("package", "above"),
    [
        ("tasks", floors("train", "worker", "store", "cli", "report", "config")),
        ("variants", floors("train", "worker", "store", "cli", "report", "config", "tasks")),
        # Declarations: only each other, the shared errors and suggestions.
        ("catalog", floors("tasks", "variants", "train", "worker", "store", "cli", "report",
                           "config", "sandbox", "monitor", "slurm", "memory")),
        # The memory estimate: arithmetic on the catalog, read by plan and tasks.
        ("memory", floors("tasks", "variants", "train", "worker", "store", "cli", "report",
                          "config", "sandbox", "monitor", "slurm")),
        ("sandbox", floors("tasks", "variants", "train", "worker", "store", "cli", "report",
                           "config", "catalog")),
        ("report", floors("tasks", "variants", "train", "worker", "cli")),
        ("train", floors("worker", "store", "cli", "report")),
        # Experiment tracking: below config (which validates backend names) and the trainer
        # (which only sees an observer); the worker wires the two together.
        ("tracking", floors("tasks", "variants", "train", "worker", "store", "cli", "report",
                            "config", "catalog", "sandbox", "monitor", "slurm", "memory")),
        ("train", floors("tracking")),
    ],
)  # fmt: skip
def test_each_floor_imports_only_downwards(package: str, above: tuple[str, ...]):
    assert list((PACKAGE_ROOT / package).rglob("*.py"))
    assert violations(PACKAGE_ROOT / package, above) == []


def test_errors_packing_and_suggest_import_nothing_of_lorabench():
    for name in ("errors.py", "packing.py", "suggest.py"):
        path = PACKAGE_ROOT / name
        names = imported_modules(path.read_text(encoding="utf-8"), f"lorabench.{path.stem}")
        assert [n for n in names if n.startswith("lorabench")] == []


IMPLEMENTATION = floors("tasks", "variants", "train", "worker")
# The commands that train or export: only inside them may cli import an implementation.
TRAINING_COMMANDS = {"work_command", "run_worker", "_run_fleet", "export_command",
                     "quickstart_command"}  # fmt: skip


def cli_implementation_imports(source: str, module: str) -> list[str]:
    """Implementation imports of a cli module outside the functions that train or export."""
    found = []

    def visit(node: ast.AST, inside: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = inside
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and inside is None:
                name = child.name
            if isinstance(child, ast.Import | ast.ImportFrom) and name not in TRAINING_COMMANDS:
                names = imported_modules(ast.unparse(child), module)
                found.extend(f"{name or 'module level'}: {n}" for n in names
                             if forbidden(n, IMPLEMENTATION))  # fmt: skip
            visit(child, name)

    visit(ast.parse(source), None)
    return found


def test_cli_imports_implementations_only_inside_commands_that_train_or_export():
    found = []
    for path in sorted((PACKAGE_ROOT / "cli").glob("*.py")):
        module = module_name(path)
        found += [f"{module} {hit}" for hit in
                  cli_implementation_imports(path.read_text(encoding="utf-8"), module)]  # fmt: skip
    assert found == []


def test_the_cli_check_sees_a_module_level_and_a_command_import():
    source = "import lorabench.train\ndef status_command():\n    from lorabench.worker import W\n"
    hits = cli_implementation_imports(source, "lorabench.cli.x")
    assert hits == ["module level: lorabench.train", "status_command: lorabench.worker",
                    "status_command: lorabench.worker.W"]  # fmt: skip
    allowed = "def work_command():\n    from lorabench.worker import W\n"
    assert cli_implementation_imports(allowed, "lorabench.cli.work") == []
