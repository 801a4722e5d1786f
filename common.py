"""
What every script shares: bad input ends in one line, `error: ...`, and exit status 1; and files are written
under a temporary name and renamed, so an interrupted write never leaves half a file where a reader looks.
"""

import contextlib
import os
import sys


def one_line_errors():
    """Print an uncaught user error (a bad setting or file, a full disk: ValueError, OSError, ...) as one line,
    `error: ...`, exit status 1; anything else is a bug and keeps its traceback."""
    def hook(kind, error, tb):
        if issubclass(kind, (ValueError, OSError, MemoryError, FloatingPointError)) or "OutOfMemory" in kind.__name__:
            print(f"error: {error}", file=sys.stderr)
        elif not issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
    sys.excepthook = hook


def atomic_write(path: str, write, text: bool = False):
    """Call write(f) on path + '.tmp', flush it to disk, then rename it to path."""
    try:
        with open(path + ".tmp", "w" if text else "wb", encoding="utf-8" if text else None) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path + ".tmp")
        raise
