"""
nanoGPT's "poor man's configurator", as an importable module with real errors instead of asserts.

A script keeps every setting as a plain top-level variable with its default, then calls

    config = configurator.configure(globals(), sys.argv[1:], doc=__doc__)

Arguments are applied in order:
    config/FILE.py      a Python file whose top-level assignments override the defaults
    --key=value         one override; the value is parsed as a Python literal when it looks like one

Every key must already exist, and every value must have the default's type (an int is fine where a float
is expected, and booleans accept True/False/true/false/1/0). Mistakes raise ConfigError with a one-line
message; scripts print it and exit. `-h/--help` prints the settings with their defaults.
"""

import ast
import difflib
import os
import sys


class ConfigError(ValueError):
    pass


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _settings(namespace: dict) -> dict:
    """The overridable settings of a script: its top-level variables of simple types."""
    simple = (int, float, bool, str, type(None))
    return {
        k: v for k, v in namespace.items() if not k.startswith("_") and isinstance(v, simple)
    }


def _unknown(key: str, valid) -> ConfigError:
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else " (see --help for the list)"
    return ConfigError(f"unknown config key '{key}'{hint}")


def convert(key: str, value, default):
    """Check (and where needed convert) a value against its default's type."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"config key '{key}' expects a bool (True/False/true/false/1/0), got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and isinstance(value, float):
            raise ConfigError(f"config key '{key}' expects an int, got {value!r} (write it without '.0')")
        raise ConfigError(f"config key '{key}' expects an int, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}' expects a float, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
    return value


def _parse_literal(text: str):
    """'3e-4' -> 0.0003, 'True' -> True, 'gpt2' -> 'gpt2' (anything that is not a literal stays text)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # TypeError: '{[]}'
        return text


def _print_help(settings: dict, doc: str | None, prog: str):
    if doc:
        print(doc.strip())
        print()
    print(f"usage: {prog} [config/FILE.py ...] [--key=value ...]\n\nsettings (default):")
    for k, v in settings.items():
        print(f"  --{k}={v!r}")


def configure(namespace: dict, argv: list[str], doc: str | None = None, verbose: bool = True) -> dict:
    """Apply config files and --key=value overrides to `namespace` (a script's globals()) in place.
    Returns the resolved settings as a plain dict, ready to be stored in a checkpoint."""
    settings = _settings(namespace)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "script.py"
    overrides = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            _print_help(settings, doc, prog)
            sys.exit(0)
        if not arg.startswith("--"):
            # a config file: run it and keep its top-level assignments
            if not os.path.isfile(arg):
                raise ConfigError(f"config file '{arg}' not found (config files live in config/, e.g. "
                                  f"config/train_shakespeare.py)")
            scope = dict(settings)
            try:
                with open(arg, encoding="utf-8") as f:
                    exec(compile(f.read(), arg, "exec"), {}, scope)
            except Exception as e:  # noqa: BLE001 - any error in a user's file becomes one line
                raise ConfigError(f"config file '{arg}' failed to run: {type(e).__name__}: {e}") from None
            for k, v in scope.items():
                if k.startswith("_") or callable(v) or type(v).__name__ == "module":
                    continue
                if k not in settings:
                    raise _unknown(k, settings)
                if v is not settings[k]:
                    settings[k] = overrides[k] = convert(k, v, namespace[k])
            if verbose:
                print(f"config: read {arg}")
        else:
            key, sep, text = arg[2:].partition("=")
            if not sep:
                raise ConfigError(f"argument '{arg}' must look like --key=value")
            key = key.replace("-", "_")
            if key not in settings:
                raise _unknown(key, settings)
            default = namespace[key]
            value = text if isinstance(default, str) else _parse_literal(text)
            settings[key] = overrides[key] = convert(key, value, default)
    for k, v in overrides.items():
        if verbose:
            print(f"config: {k} = {v!r}")
        namespace[k] = v
    return settings
