"""loss.png: every logged point, smoothed, with the evaluations and the final report marked."""

import json
import random

import pytest

from support import plot


def test_smoothing_keeps_the_start_and_calms_the_noise():
    rng = random.Random(0)
    noisy = [5.0 + rng.gauss(0, 0.5) for _ in range(400)]
    smoothed = plot.smooth(noisy)
    assert len(smoothed) == len(noisy) and smoothed[0] == pytest.approx(noisy[0])  # debiased start
    spread = lambda xs: max(xs[100:]) - min(xs[100:])
    assert spread(smoothed) < spread(noisy) / 3
    assert plot.smooth([3.0, 2.0]) == [3.0, 2.0]  # too few points to smooth: drawn as they are


def test_plot_writes_a_png_from_every_kind_of_entry(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [dict(iter=0, train_loss=9.0, val_loss=9.1, tokens=0)]
    rows += [dict(iter=i, loss=9.0 - i / 100, tokens=i * 64) for i in range(1, 300)]
    rows += [dict(iter=300, train_loss=6.0, val_loss=6.2, tokens=300 * 64), dict(iter=300, final_val_loss=6.1)]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut sho')
    path = plot.plot_log(str(tmp_path), quiet=True)
    assert path and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
