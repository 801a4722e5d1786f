"""
Plot a run's loss curves from its log.jsonl into out_dir/loss.png: train and val loss against iterations
and tokens seen. train.py calls this at every evaluation when matplotlib is installed.
"""

import json
import os

from support.common import atomic_write

_warned = []


def read_log(out_dir: str) -> list[dict]:
    """The log's entries, skipping a line cut short by a kill."""
    entries = []
    with open(os.path.join(out_dir, "log.jsonl"), encoding="utf-8") as f:
        for line in f:
            try:
                entries.append(dict(json.loads(line)))
            except (ValueError, TypeError):
                continue
    return entries


def keep_log_until(out_dir: str, iter_num: int):
    """Drop the entries a run resumed at iter_num will write again: those after it, and the evaluation at it."""
    kept = [e for e in read_log(out_dir) if e.get("iter", 0) < iter_num or (e.get("iter") == iter_num and "loss" in e)]
    atomic_write(os.path.join(out_dir, "log.jsonl"), lambda f: f.writelines(json.dumps(e) + "\n" for e in kept), True)


def plot_log(out_dir: str, quiet: bool = False) -> str | None:
    """Write out_dir/loss.png and return its path; None (after one note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            print("matplotlib is not installed: no loss curve is plotted (pip install matplotlib)")
            _warned.append(True)
        return None
    rows = read_log(out_dir)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    curves = {"loss": ("-", "tab:blue", 0.8, 0.4, "train (per step)"),  # format, color, line width, alpha, label
              "train_loss": ("o-", "tab:blue", 1.5, 1, "train (eval)"),
              "val_loss": ("o-", "tab:orange", 1.5, 1, "val (eval)")}
    for key, (fmt, color, lw, alpha, label) in curves.items():
        points = [(r["iter"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points), fmt, ms=3, lw=lw, alpha=alpha, color=color, label=label)
    tokens = {r["iter"]: r["tokens"] for r in rows if r.get("tokens") and r.get("iter")}
    if tokens:
        per_iter = max(tokens.values()) / max(tokens)
        top = ax.secondary_xaxis("top", functions=(lambda x: x * per_iter / 1e6, lambda t: t * 1e6 / per_iter))
        top.set_xlabel("tokens seen (millions)")
    ax.set(xlabel="iteration", ylabel="loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "loss.png")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    if not quiet:
        print(f"wrote {path}")
    return path
