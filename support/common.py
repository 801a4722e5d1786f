"""
What every script shares: bad input ends in one line, `error: ...`, and exit status 1; and files are
written under a temporary name and renamed, so an interrupted write never leaves half a file where a
reader looks.
"""

import argparse
import contextlib
import os
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the script's docstring as its help, and bad arguments reported like any bad
    input."""

    def __init__(self, doc: str):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(1)


def in_range(lo, hi, kind=int):
    """An argparse type: a `kind` number from lo to hi (both included); anything else is refused in
    one line."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        # the comparison also refuses nan
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"need {kind.__name__} from {lo:,} to {hi:,}, "
                                             f"got {text!r}")
        return value
    return parse


def one_line_errors():
    """Print an uncaught user error (a bad setting or file, a full disk: ValueError, OSError, ...)
    as one line, `error: ...`, exit status 1; anything else is a bug and keeps its traceback."""
    user_errors = (ValueError, OSError, MemoryError, FloatingPointError)

    def hook(kind, error, tb):
        # torch.cuda.OutOfMemoryError, a RuntimeError, too: a smaller batch_size is the user's fix
        if issubclass(kind, user_errors) or "OutOfMemory" in kind.__name__:
            print(f"error: {error}", file=sys.stderr)
        # torch's CPU allocator refuses a size beyond the machine's memory as a RuntimeError
        elif "can't allocate memory" in str(error):
            print(f"error: out of memory ({str(error).split('memory: ')[-1]}): use smaller "
                  f"settings (batch_size, eval_iters, the model's size)", file=sys.stderr)
        elif not issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
    sys.excepthook = hook


def atomic_write(path: str, write, text: bool = False):
    """Call write(f) on path + '.tmp', flush it to disk, then rename it to path; the folder is
    made if need be."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w" if text else "wb", encoding="utf-8" if text else None) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path + ".tmp")
        raise


def check_writable(path: str):
    """Refuse, before any work is done, a folder that cannot be made or written to."""
    if not path:
        raise ValueError("an empty folder name was given: name a folder")
    parent = os.path.abspath(path)
    # the nearest part of the path that exists: it will hold the rest
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        what = "a file" if os.path.isfile(parent) else "read-only"
        raise ValueError(f"{path} is not writable ({parent} is {what}); choose another folder")
