"""The floors of DESIGN.md, proved from the imports: `python -m pytest tests/test_layers.py -q`.

    ftkit/       may import data_tools and gyms
    data_tools/  may import gyms, never ftkit
    gyms/        imports neither ftkit nor data_tools

Every module of the three packages is parsed (not grepped, not imported) and every import in it is read:
at the top or inside a function, `import x` or `from x import y`, relative ones resolved to absolute names,
and `importlib.import_module("x")` with a literal name. A gym id such as "ftkit/Arithmetic-v0" is a
string, not an import, and is not looked at.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FLOORS = {"gyms": 0, "data_tools": 1, "ftkit": 2}  # an import may only go to the same floor or one below


def module_name(path: Path) -> tuple[str, bool]:
    """("gyms.adapters", True) for gyms/adapters/__init__.py; ("gyms.base", False) for gyms/base.py."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, the text of module `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package)
            # `from pkg import name` may name a submodule: pkg.name is where the import lands then.
            found += [(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and _is_import_module(node.func) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


def upward_imports(source: str, module: str, where: str, is_package: bool = False) -> list[str]:
    """"where:line: floor imports target" for each import of `source` that goes up a floor."""
    floor = FLOORS[module.split(".")[0]]
    return [f"{where}:{line}: {module.split('.')[0]} imports {target} (a floor above it)"
            for line, target in imported_names(source, module, is_package)
            if FLOORS.get(target.split(".")[0], -1) > floor]


def package_modules() -> list[Path]:
    return sorted(p for package in FLOORS for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_floor_has_modules_to_check():
    modules = package_modules()
    for package in FLOORS:
        assert any(p.relative_to(REPO).parts[0] == package for p in modules), f"no modules found in {package}/"


def test_no_import_goes_up_a_floor():
    problems = []
    for path in package_modules():
        module, is_package = module_name(path)
        problems += upward_imports(path.read_text(), module, str(path.relative_to(REPO)), is_package)
    assert not problems, "imports that go up a floor (see DESIGN.md, Floors):\n" + "\n".join(problems)


SYNTHETIC = '''\
import json
from gyms.base import TextEnv

def late():
    from ftkit.errors import GymError
    import data_tools.store as store
    from . import registry
    from .. import data_tools
'''


def test_the_check_finds_an_upward_import_wherever_it_is():
    problems = upward_imports(SYNTHETIC, "gyms.adapters.fake", "gyms/adapters/fake.py")
    assert problems == ["gyms/adapters/fake.py:5: gyms imports ftkit.errors.GymError (a floor above it)",
                        "gyms/adapters/fake.py:6: gyms imports data_tools.store (a floor above it)"]
    # The same imports are allowed one floor up, and data_tools may not import ftkit either.
    assert upward_imports(SYNTHETIC, "ftkit.sub.fake", "ftkit/sub/fake.py") == []
    assert upward_imports(SYNTHETIC, "data_tools.sub.fake", "data_tools/sub/fake.py") == [
        "data_tools/sub/fake.py:5: data_tools imports ftkit.errors.GymError (a floor above it)"]
    found = upward_imports("import importlib\nimportlib.import_module('ftkit.rl')\n", "gyms.x", "gyms/x.py")
    assert found == ["gyms/x.py:2: gyms imports ftkit.rl (a floor above it)"]


@pytest.mark.parametrize(("source", "module", "is_package", "expected"), [
    ("from . import registry", "gyms.adapters.textarena", False, "gyms.adapters.registry"),
    ("from . import textarena", "gyms.adapters", True, "gyms.adapters.textarena"),
    ("from ..base import TextEnv", "gyms.adapters.textarena", False, "gyms.base.TextEnv"),
    ("from .. import runner", "gyms.adapters", True, "gyms.runner"),
])
def test_relative_imports_are_resolved(source, module, is_package, expected):
    assert imported_names(source, module, is_package) == [(1, expected)]
