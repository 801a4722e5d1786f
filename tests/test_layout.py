"""The repository's shape, as the README's "The code" describes it.

- The top level holds the scripts people type; text-to-ids lives in data/, the modules a first reading skips
  in support/, and support/__init__.py names each of them.
- Scripts share code through modules and never import each other; there are no import cycles; imports run
  one way: scripts -> support/ -> model.py and data/. model.py and data/ reach back into support/ only
  lazily, inside a function, in the few places listed here.
- Every file opens with a docstring, no function runs past 80 lines, and the line budgets below hold.
  Code lines are the lines that are not blank, a comment or a docstring: prose is free, so write the why.
"""

import ast
import re
import subprocess
from collections import defaultdict

from conftest import ROOT

ROOT_SCRIPTS = {"train.py", "sample.py", "eval.py", "export.py"}  # and configurator.py, model.py: modules
ENTRY_SCRIPTS = ROOT_SCRIPTS | {"data/prepare.py", "bench/bench.py", "bench/bench_generate.py",
                                "bench/bench_tokenizer.py"}
READING_PATH = ["model.py", "train.py", "sample.py", "configurator.py", "data/tokenizer.py", "data/shards.py",
                "data/prepare.py"]
# The lazy imports by which model.py and data/ reach back into support/, each with its reason at the import.
REACH_BACK = {("model.py", "support/hf.py"),  # GPT.from_pretrained reads OpenAI's files
              # GPT.generate decodes through speedups.row_blocks on a CPU: the same numbers, sooner
              ("model.py", "support/speedups.py"),
              ("data/tokenizer.py", "support/ckpt.py")}  # load_tokenizer(a checkpoint) loads it safely
BUDGETS = dict(core_code_lines=2890, reading_path_lines=1650, model_lines=350, train_lines=425, root_py_files=7,
               long_line_percent=10)


def python_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.split() if not f.startswith("tests/") and (ROOT / f).exists()]


def core_files() -> list[str]:
    return [f for f in python_files() if not f.startswith(("bench/", "config/"))]


def module_names(files: list[str]) -> dict[str, str]:
    """Importable name -> file: 'support.ckpt' -> 'support/ckpt.py', 'data' -> 'data/__init__.py'."""
    names = {f.removesuffix(".py").removesuffix("/__init__").replace("/", "."): f for f in files}
    names.update({f.removesuffix(".py").rsplit("/", 1)[-1]: f for f in files if f.startswith("bench/")})
    return names


def imports_of(path: str, modules: dict) -> dict[str, bool]:
    """The repository files that a file imports -> whether every such import sits inside a function."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from support import ckpt` imports support/ckpt.py; `from data.shards import Batches`, data/shards.py
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        for target in {modules[n] for n in names if n in modules} - {path}:
            found[target] = found.get(target, True) and id(node) in lazy_nodes
    return found


def graph() -> dict[str, dict[str, bool]]:
    files = python_files()
    modules = module_names(files)
    return {f: imports_of(f, modules) for f in files}


def test_the_top_level_shows_the_design():
    root_py = sorted(f for f in python_files() if "/" not in f)
    assert len(root_py) <= BUDGETS["root_py_files"], root_py
    assert {"model.py", "train.py", "sample.py", "configurator.py"} <= set(root_py)
    for f in ("data/prepare.py", "data/tokenizer.py", "data/bpe.py", "data/corpus.py", "data/shards.py"):
        assert (ROOT / f).exists(), f"text-to-ids lives in data/: {f} is missing"
    doc = ast.get_docstring(ast.parse((ROOT / "support" / "__init__.py").read_text(encoding="utf-8")))
    for f in python_files():
        if f.startswith("support/") and not f.endswith("__init__.py"):
            assert f.split("/")[1] in doc, f"support/__init__.py does not say what {f} is for"


def test_imports_run_one_way_no_script_imports_another_and_no_cycles():
    g = graph()
    for f, deps in g.items():
        assert not set(deps) & ENTRY_SCRIPTS, f"{f} imports the script(s) {set(deps) & ENTRY_SCRIPTS}"
        is_inner = f == "model.py" or (f.startswith("data/") and f not in ENTRY_SCRIPTS)
        for d, lazy in deps.items():
            if is_inner and d.startswith("support/"):
                assert lazy and (f, d) in REACH_BACK, f"{f} imports {d}: model.py and data/ do not use support/"
    state = {}

    def visit(f, path):
        state[f] = "open"
        for d in [d for d in g[f] if (f, d) not in REACH_BACK]:  # a lazy reach-back runs later
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


def code_lines(path: str) -> list[str]:
    """The lines of a file that are not blank, a comment or a docstring."""
    source = (ROOT / path).read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
                isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return [line for i, line in enumerate(source.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#") and i not in docstrings]


def test_line_budgets():
    lines = {f: (ROOT / f).read_text(encoding="utf-8").splitlines() for f in core_files()}
    code = sum(len(code_lines(f)) for f in lines)
    reading = sum(len(lines[f]) for f in READING_PATH)
    long = sum(len(line) > 100 for f in lines for line in lines[f])
    total = sum(map(len, lines.values()))
    print(f"core: {code} code lines; reading path {reading} lines; {100 * long / total:.1f}% of lines past 100")
    assert code <= BUDGETS["core_code_lines"], code
    assert reading <= BUDGETS["reading_path_lines"], reading
    assert len(lines["model.py"]) <= BUDGETS["model_lines"] and len(lines["train.py"]) <= BUDGETS["train_lines"]
    assert 100 * long <= BUDGETS["long_line_percent"] * total, f"{long} of {total} core lines are past 100 columns"


def test_no_block_of_six_lines_stands_twice_in_the_core():
    """The same six code lines (white space folded) in two places of the core: one of them should call the other."""
    seen = defaultdict(list)
    for f in core_files():
        lines = [re.sub(r"\s+", " ", line.strip()) for line in code_lines(f)]
        lines = [line for line in lines if len(line) > 3 and not line.startswith(("import ", "from "))]
        for i in range(len(lines) - 5):
            seen["\n".join(lines[i : i + 6])].append(f"{f}:{i}")
    repeated = {block: where for block, where in seen.items() if len(where) > 1}
    assert not repeated, next(iter(repeated.items()))
