"""The repository's shape: scripts share code through modules and never import each other, no import cycles,
every file says what it is for, functions stay short, and the core stays small (README: "The code")."""

import ast
import subprocess

from conftest import ROOT

ENTRY_SCRIPTS = {"train.py", "sample.py", "export.py", "eval.py", "data/prepare.py", "bench/bench.py",
                 "bench/bench_generate.py", "bench/bench_tokenizer.py"}
READING_PATH = {"model.py", "train.py", "sample.py", "configurator.py", "tokenizer.py"}  # and data/*.py
CORE_LINES, READING_LINES = 2910, 1650  # everything but bench/, config/ and tests/; the files above and data/


def python_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split() if not f.startswith("tests/") and (ROOT / f).exists()]


def imports_of(path: str, modules: dict) -> set[str]:
    """The repository files that a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        found |= {modules[n] for n in names if n in modules}
    return found - {path}


def graph() -> dict[str, set[str]]:
    files = python_files()
    modules = {f.removesuffix(".py").replace("/", "."): f for f in files}
    modules.update({f.removesuffix(".py").rsplit("/", 1)[-1]: f for f in files if f.startswith("bench/")})
    return {f: imports_of(f, modules) for f in files}


def test_no_script_imports_another_and_no_cycles():
    g = graph()
    for f, deps in g.items():
        assert not deps & ENTRY_SCRIPTS, f"{f} imports the script(s) {deps & ENTRY_SCRIPTS}: share code through modules"
    state = {}

    def visit(f, path):
        state[f] = "open"
        for d in g[f]:
            assert state.get(d) != "open", f"import cycle: {' -> '.join(path + [f, d])}"
            if d not in state:
                visit(d, path + [f])
        state[f] = "done"

    for f in g:
        if f not in state:
            visit(f, [])


def test_files_say_what_they_are_for_and_functions_stay_short():
    for f in python_files():
        tree = ast.parse((ROOT / f).read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{f} does not open with a docstring"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{f}: {node.name} is {length} lines long"


def test_line_budgets():
    lines = {f: len((ROOT / f).read_text(encoding="utf-8").splitlines()) for f in python_files()}
    core = sum(n for f, n in lines.items() if not f.startswith(("bench/", "config/")))
    reading = sum(n for f, n in lines.items() if f in READING_PATH or f.startswith("data/"))
    print(f"core {core} lines, reading path {reading} lines")
    assert core <= CORE_LINES and reading <= READING_LINES, (core, reading)
