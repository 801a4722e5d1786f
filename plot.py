"""
Plot a run's loss curves from its log.jsonl: train and val loss against iterations (and tokens seen).

    python plot.py [out_dir]          # writes out_dir/loss.png

train.py calls this at every evaluation when matplotlib is installed.
"""

import argparse
import json
import os
import sys

_warned = False


def read_log(out_dir: str) -> list[dict]:
    """The log's entries; a resumed run appends entries again from its checkpoint's iteration on, so for
    each kind of entry the last one written for an iteration wins."""
    rows: dict[tuple, dict] = {}
    with open(os.path.join(out_dir, "log.jsonl"), encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            rows[(entry.get("iter"), tuple(sorted(entry)))] = entry
    return sorted(rows.values(), key=lambda e: e.get("iter", 0))


def plot_log(out_dir: str, quiet: bool = False) -> str | None:
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            print("matplotlib is not installed: no loss curve is plotted (pip install matplotlib)")
            _warned = True
        return None
    rows = read_log(out_dir)
    train = [(r["iter"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["iter"], r["train_loss"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), color="tab:blue", alpha=0.35, lw=0.8, label="train (per step)")
    if evals:
        it, tr, va = zip(*evals)
        ax.plot(it, tr, "o-", color="tab:blue", ms=3, label="train (eval)")
        ax.plot(it, va, "o-", color="tab:orange", ms=3, label="val (eval)")
    tokens = {r["iter"]: r["tokens"] for r in rows if "tokens" in r and r.get("iter")}
    if tokens:
        per_iter = max(tokens.values()) / max(tokens)
        top = ax.secondary_xaxis("top", functions=(lambda x: x * per_iter / 1e6, lambda t: t * 1e6 / per_iter))
        top.set_xlabel("tokens seen (millions)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "loss.png")
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    if not quiet:
        print(f"wrote {path}")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default="out", help="directory holding log.jsonl (default out)")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.out_dir, "log.jsonl")):
        sys.exit(f"error: {args.out_dir}/log.jsonl not found; train first (python train.py ...)")
    plot_log(args.out_dir)
