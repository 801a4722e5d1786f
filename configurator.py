"""
nanoGPT's "poor man's configurator", as an importable module with real errors instead of asserts.

A script keeps every setting as a plain top-level variable with its default and a comment saying
what it does, then calls `configurator.configure(globals(), sys.argv[1:], doc=__doc__)`. Arguments
apply in order:

    config/FILE.py      a Python file whose top-level assignments override the defaults
    --key=value         one override; the value is parsed as a Python literal when it looks like one

Every key must already exist and every value must have its default's type (an int is fine for a
float; a bool, or a setting whose default is None, takes True/False/true/false/1/0, and None means
automatic). Mistakes raise ValueError in one line. `-h/--help` prints every setting with its default
and the comment beside it.
"""

import ast
import difflib
import math
import os
import sys


def settings_of(namespace: dict) -> dict:
    """The overridable settings of a script: its top-level variables of simple types."""
    simple = (int, float, bool, str, type(None))
    return {k: v for k, v in namespace.items() if not k.startswith("_") and isinstance(v, simple)}


def convert(key: str, value, default):
    """Check (and where needed convert) a value against its default's type."""
    if isinstance(default, bool) or default is None:
        text = str(value).strip().lower()
        if default is None and text == "none":
            return None
        if text in ("true", "1", "yes", "false", "0", "no"):
            return text in ("true", "1", "yes")
        raise ValueError(f"config key '{key}' expects a bool (True/False/true/false/1/0), "
                         f"got {value!r}")
    if isinstance(default, int):
        if type(value) is int and abs(value) < 2**62:
            return value
        hint = " (write it without '.0')" if isinstance(value, float) and value.is_integer() else ""
        raise ValueError(f"config key '{key}' expects an int (below 2**62), got {value!r}{hint}")
    if isinstance(default, float):
        if type(value) in (int, float) and math.isfinite(value):
            return float(value)
        raise ValueError(f"config key '{key}' expects a finite float, got {value!r}")
    if isinstance(value, str):
        return value
    raise ValueError(f"config key '{key}' expects a string, got {value!r}")


def _parse_literal(text: str):
    """'3e-4' -> 0.0003, 'True' -> True, 'gpt2' -> 'gpt2': anything that is not a literal stays
    text."""
    try:
        return ast.literal_eval(text)
    # TypeError: '{[]}', a set of a list
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _print_help(settings: dict, namespace: dict, doc: str | None, prog: str):
    """The script's docstring, then its settings block as written: each setting, its default and its
    comment."""
    usage = f"usage: {prog} [config/FILE.py ...] [--key=value ...]"
    print(f"{(doc or '').strip()}\n\n{usage}\n\nsettings:")
    with open(namespace["__file__"], encoding="utf-8") as f:
        lines = f.read().splitlines()
    at = [i for i, line in enumerate(lines) if line.split(" = ")[0] in settings]
    print("\n".join(f"  {line}" for line in lines[at[0] : at[-1] + 1]))


def _read_config_file(path: str, settings: dict) -> list[tuple]:
    """The (key, value) pairs that a config file assigns at its top level."""
    if not os.path.isfile(path):
        raise ValueError(f"config file '{path}' not found (config files live in config/, e.g. "
                         f"config/train_shakespeare.py)")
    scope = dict(settings)
    try:
        with open(path, encoding="utf-8") as f:
            exec(compile(f.read(), path, "exec"), {}, scope)
    # any error in a user's file becomes one line
    except Exception as e:
        raise ValueError(f"config file '{path}' failed to run: {type(e).__name__}: {e}") from None
    return [(k, v) for k, v in scope.items() if not k.startswith("_") and not callable(v)
            and type(v).__name__ != "module" and v is not settings.get(k)]


def configure(namespace: dict, argv: list[str], doc: str | None = None, verbose: bool = True,
              ignore=()) -> dict:
    """Apply config files and --key=value overrides to `namespace` (a script's globals()) in place.
    Returns the resolved settings as a plain dict, ready to be stored in a checkpoint. Keys in
    `ignore` are accepted and dropped (the benchmark takes train.py's config files)."""
    settings = settings_of(namespace)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "script.py"
    overrides = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            _print_help(settings, namespace, doc, prog)
            sys.exit(0)
        if not arg.startswith("--"):
            pairs = _read_config_file(arg, settings)
            if verbose:
                print(f"config: read {arg}")
        else:
            key, sep, text = arg[2:].partition("=")
            if not sep:
                raise ValueError(f"argument '{arg}' must look like --key=value")
            key = key.replace("-", "_")
            # a string setting takes the text as it is: --dataset=1 names a folder "1"
            literal = isinstance(namespace.get(key), str)
            pairs = [(key, text if literal else _parse_literal(text))]
        for key, value in pairs:
            if key in ignore and key not in settings:
                continue
            if key not in settings:
                close = difflib.get_close_matches(key, list(settings), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"see {prog} --help for the list"
                raise ValueError(f"unknown config key '{key}' ({hint})")
            settings[key] = overrides[key] = convert(key, value, namespace[key])
    for k, v in overrides.items():
        if verbose:
            print(f"config: {k} = {v!r}")
        namespace[k] = v
    return settings
