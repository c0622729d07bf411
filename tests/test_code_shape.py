"""The library stays readable: small functions, short parameter lists, files one can read in a sitting.

    python -m pytest tests/test_code_shape.py

Limits (STYLE.md, habit 7): a function or method of at most 60 lines, at most 8 parameters (self and
cls not counted), a module of at most 500 lines. `bench/` and `tests/` are exempt: they are scripts.
And a class's state is declared where a reader looks for it: every `self.x = ...` of a method names an
attribute that `__init__` (or the class body, for dataclasses, or a base class) already declares.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gyms", "data_tools", "ftkit")
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8
MAX_FILE_LINES = 500


def library_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def shape_problems(source: str, where: str) -> list[str]:
    """Every function over the line or parameter limit, and the file itself if it is too long."""
    problems = []
    lines = len(source.splitlines())
    if lines > MAX_FILE_LINES:
        problems.append(f"{where}: {lines} lines (at most {MAX_FILE_LINES}: split it by role)")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
            problems.append(f"{where}:{node.lineno}: {node.name}() is {length} lines (at most {MAX_FUNCTION_LINES})")
        args = node.args
        names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        count = len([n for n in names if n not in ("self", "cls")])
        if count > MAX_PARAMETERS:
            problems.append(f"{where}:{node.lineno}: {node.name}() takes {count} parameters "
                            f"(at most {MAX_PARAMETERS}: group options in a dataclass)")
    return problems


def test_library_functions_and_files_stay_small():
    problems = [p for path in library_files()
                for p in shape_problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)


def _self_stores(function: ast.FunctionDef) -> list[ast.Attribute]:
    return [n for n in ast.walk(function) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
            and isinstance(n.value, ast.Name) and n.value.id == "self"]


def _declared(name: str, classes: dict[str, ast.ClassDef]) -> set[str]:
    """Attributes a class (and its bases, found by name) declares: in __init__ or in its body."""
    cls = classes.get(name)
    if cls is None:
        return set()
    names: set[str] = set()
    for item in cls.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
        elif isinstance(item, ast.Assign):
            names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
        elif isinstance(item, ast.FunctionDef) and item.name in ("__init__", "__post_init__"):
            names |= {a.attr for a in _self_stores(item)}
    for base in cls.bases:
        if isinstance(base, ast.Name):
            names |= _declared(base.id, classes)
    return names


def undeclared_state(sources: dict[str, str]) -> list[str]:
    """`where: Class.method sets self.x` for every attribute first set outside __init__."""
    classes, homes = {}, {}
    for where, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                classes[node.name], homes[node.name] = node, where
    problems = []
    for name, cls in classes.items():
        declared = _declared(name, classes)
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name not in ("__init__", "__post_init__"):
                problems += [f"{homes[name]}:{a.lineno}: {name}.{item.name} sets self.{a.attr}, which __init__ "
                             "does not declare" for a in _self_stores(item) if a.attr not in declared]
    return problems


def test_run_state_is_declared_in_init():
    problems = undeclared_state({str(p.relative_to(ROOT)): p.read_text() for p in library_files()})
    assert not problems, "\n".join(problems)


def test_the_state_check_finds_what_it_should():
    source = ("class A:\n    def __init__(self):\n        self.a = 1\n"
              "class B(A):\n    def setup(self):\n        self.a = 2\n        self.b = 3\n")
    assert undeclared_state({"x.py": source}) == ["x.py:7: B.setup sets self.b, which __init__ does not declare"]


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n" + "    x = 1\n" * 60 + "    return x\n", "f() is 62 lines"),
    ("def g(a, b, c, d, e, f, g, h, i):\n    pass\n", "g() takes 9 parameters"),
    ("class C:\n    def m(self, a, b, c, d, e, f, g, *, h, i):\n        pass\n", "m() takes 9 parameters"),
    ("x = 1\n" * 501, "501 lines"),
])
def test_the_check_finds_what_it_should(source, expected):
    problems = shape_problems(source, "example.py")
    assert any(expected in p for p in problems), problems


def test_the_check_passes_what_it_should():
    source = "class C:\n    def m(self, a, b, c, d, e, f, g, h):\n" + "        x = 1\n" * 57 + "        return x\n"
    assert shape_problems(source, "example.py") == []
