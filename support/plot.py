"""
A run's record: train.py's log.jsonl (one JSON line per log entry, copied to Weights & Biases when
asked), and the loss curves drawn from it into out_dir/loss.png: train and val loss against
iterations and tokens seen, and HellaSwag's accuracy when the run scored it. train.py draws them at
every evaluation when matplotlib is installed.
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


class RunLog:
    """Writes out_dir/log.jsonl, one JSON line per call, and copies each entry to Weights & Biases
    when given wandb.init's arguments."""

    def __init__(self, out_dir: str, wandb_init: dict | None = None):
        self.path, self.wandb = os.path.join(out_dir, "log.jsonl"), None
        if wandb_init:
            # optional: train.py's settings check made sure that it is installed
            import wandb

            self.wandb = wandb
            wandb.init(**wandb_init)

    def __call__(self, **entry):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if self.wandb:
            self.wandb.log(entry, step=entry["iter"])


def keep_log_until(out_dir: str, iter_num: int):
    """Drop the entries a run resumed at iter_num will write again: those after it, and the evaluation
    at it (the step's own training line stays). No log, nothing to do."""
    if not os.path.exists(os.path.join(out_dir, "log.jsonl")):
        return
    kept = [e for e in read_log(out_dir)
            if e.get("iter", 0) < iter_num or (e.get("iter") == iter_num and "loss" in e)]
    write = lambda f: f.writelines(json.dumps(e) + "\n" for e in kept)
    atomic_write(os.path.join(out_dir, "log.jsonl"), write, text=True)


def smooth(values: list[float]) -> list[float]:
    """An exponential moving average, debiased at the start as TensorBoard's is. Its span grows with the
    number of points, so a short run keeps its shape and a long one loses its step-to-step noise."""
    beta = 1 - 1 / max(1.0, len(values) / 20)
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i) if beta else v)
    return out


def plot_log(out_dir: str, quiet: bool = False) -> str | None:
    """Write out_dir/loss.png and return its path; None (after one note) without matplotlib.

    Every logged training loss is drawn faintly, with its smoothed curve over it; the evaluations are
    markers (train and val loss on the same batches each time), and the final report's loss over the whole
    val split, when there is one, is a star at the last iteration."""
    try:
        import matplotlib

        # files only: no display is needed, or opened
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not _warned:
            print("matplotlib is not installed: no loss curve is plotted (pip install matplotlib)")
            _warned.append(True)
        return None
    rows = read_log(out_dir)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    steps = [(r["iter"], r["loss"]) for r in rows if "loss" in r]
    if steps:
        its, losses = zip(*steps)
        ax.plot(its, losses, "-", lw=0.8, alpha=0.3, color="tab:blue")
        ax.plot(its, smooth(list(losses)), "-", lw=1.6, color="tab:blue", label="train (smoothed)")
    marks = {"train_loss": ("o", "tab:blue", "train (eval)"), "val_loss": ("s", "tab:orange", "val (eval)"),
             "final_val_loss": ("*", "tab:red", "val, whole split (final)")}
    for key, (marker, color, label) in marks.items():
        points = [(r["iter"], r[key]) for r in rows if key in r]
        if points:
            # a line joins the evaluations only where there are enough of them to make a curve
            joined = key == "val_loss" and len(points) >= 3
            ax.plot(*zip(*points), marker, ms=9 if marker == "*" else 5, color=color, label=label,
                    ls=":" if joined else "none", lw=1)
    tokens = {r["iter"]: r["tokens"] for r in rows if r.get("tokens") and r.get("iter")}
    if tokens:
        per_iter = max(tokens.values()) / max(tokens)
        to_tokens = (lambda x: x * per_iter / 1e6, lambda t: t * 1e6 / per_iter)
        ax.secondary_xaxis("top", functions=to_tokens).set_xlabel("tokens seen (millions)")
    ax.set(xlabel="iteration", ylabel="loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    # HellaSwag (train.py's hellaswag_interval) is an accuracy: a scale of its own, on the right
    scores = [(r["iter"], r["hellaswag"]) for r in rows if "hellaswag" in r]
    if scores:
        acc = ax.twinx()
        acc.plot(*zip(*scores), "^:", ms=5, lw=1, color="tab:green")
        acc.set_ylabel("HellaSwag acc_norm", color="tab:green")
    fig.tight_layout()
    path = os.path.join(out_dir, "loss.png")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    if not quiet:
        print(f"wrote {path}")
    return path
