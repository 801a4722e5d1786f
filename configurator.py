"""
nanoGPT's "poor man's configurator", as an importable module with real errors instead of asserts.

A script keeps every setting as a plain top-level variable with its default and a comment saying what it does,
then calls `configurator.configure(globals(), sys.argv[1:], doc=__doc__)`. Arguments apply in order:

    config/FILE.py      a Python file whose top-level assignments override the defaults
    --key=value         one override; the value is parsed as a Python literal when it looks like one

Every key must already exist and every value must have its default's type (an int is fine for a float; a bool,
or a setting whose default is None, takes True/False/true/false/1/0, and None means automatic). Mistakes raise
ValueError in one line. `-h/--help` prints every setting with its default and the comment beside it.
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
        raise ValueError(f"config key '{key}' expects a bool (True/False/true/false/1/0), got {value!r}")
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


def require(settings: dict, rule: str, names: str):
    """Check a range for each of the named settings: '> 0', '>= 0' or 'in [0, 1)'."""
    for name in names.split():
        value = settings[name]
        ok = value > 0 if rule == "> 0" else value >= 0 if rule == ">= 0" else 0 <= value < 1
        if not ok:
            raise ValueError(f"{name} must be {rule}, got {value!r}")


def _parse_literal(text: str):
    """'3e-4' -> 0.0003, 'True' -> True, 'gpt2' -> 'gpt2' (anything that is not a literal stays text)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: '{[]}'
        return text


def _print_help(settings: dict, namespace: dict, doc: str | None, prog: str):
    """The script's docstring, then its settings block as written: each setting, its default and its comment."""
    print(f"{(doc or '').strip()}\n\nusage: {prog} [config/FILE.py ...] [--key=value ...]\n\nsettings:")
    with open(namespace["__file__"], encoding="utf-8") as f:
        lines = f.read().splitlines()
    at = [i for i, line in enumerate(lines) if line.split(" = ")[0] in settings]
    end = at[-1] + 1
    while end < len(lines) and lines[end].startswith(" "):  # the last setting's comment may go on
        end += 1
    print("\n".join(f"  {line}" for line in lines[at[0] : end]))


def configure(namespace: dict, argv: list[str], doc: str | None = None, verbose: bool = True, ignore=()) -> dict:
    """Apply config files and --key=value overrides to `namespace` (a script's globals()) in place. Returns
    the resolved settings as a plain dict, ready to be stored in a checkpoint. Keys in `ignore` are accepted
    and dropped (the benchmark takes train.py's config files)."""
    settings = settings_of(namespace)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "script.py"
    overrides = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            _print_help(settings, namespace, doc, prog)
            sys.exit(0)
        if not arg.startswith("--"):  # a config file: run it and keep its top-level assignments
            if not os.path.isfile(arg):
                raise ValueError(f"config file '{arg}' not found (config files live in config/, e.g. "
                                 f"config/train_shakespeare.py)")
            scope = dict(settings)
            try:
                with open(arg, encoding="utf-8") as f:
                    exec(compile(f.read(), arg, "exec"), {}, scope)
            except Exception as e:  # any error in a user's file becomes one line
                raise ValueError(f"config file '{arg}' failed to run: {type(e).__name__}: {e}") from None
            pairs = [(k, v) for k, v in scope.items() if not k.startswith("_") and not callable(v)
                     and type(v).__name__ != "module" and v is not settings.get(k)]
            if verbose:
                print(f"config: read {arg}")
        else:
            key, sep, text = arg[2:].partition("=")
            if not sep:
                raise ValueError(f"argument '{arg}' must look like --key=value")
            key = key.replace("-", "_")
            default = namespace.get(key)
            pairs = [(key, text if isinstance(default, str) else _parse_literal(text))]
        for key, value in pairs:
            if key in ignore and key not in settings:
                continue
            if key not in settings:
                close = difflib.get_close_matches(key, list(settings), n=1)
                raise ValueError(f"unknown config key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else
                                                                   f" (see {prog} --help for the list)"))
            settings[key] = overrides[key] = convert(key, value, namespace[key])
    for k, v in overrides.items():
        if verbose:
            print(f"config: {k} = {v!r}")
        namespace[k] = v
    return settings
