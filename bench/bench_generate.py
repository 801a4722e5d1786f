"""
Decoding speed: our KV-cache generate vs our uncached path vs Hugging Face transformers' generate
(GPT2LMHeadModel built locally with the SAME weights, use_cache=True), greedy, 16-token prompt, side by side
in one process, plus the memory-bandwidth ceiling measured in the same run.

    python bench/bench_generate.py                                # the full table (slow: ~10+ min on 2 cores)
    python bench/bench_generate.py --shapes=30M --skip_uncached   # a quick look

Batch-1 decoding reads every weight once per token, so tokens/s <= (GB/s) / (model bytes): the "ceiling"
column. The uncached path runs at batch 1 only (at batch 8 it is compute bound and takes tens of minutes).
Each timed path is run --repeats times, alternating with the others, and the best time counts.
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository's root
from model import GPT, GPTConfig
from support import speedups
from support.common import ArgumentParser

SHAPES = {"124M": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257),
          "30M": dict(n_layer=6, n_head=6, n_embd=384, vocab_size=50304)}


def bandwidth_gbs(n_bytes: int = 1 << 28, reps: int = 5) -> float:
    """Read bandwidth: the best of a few sums over a tensor far larger than the caches."""
    x = torch.ones(n_bytes // 4)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return n_bytes / best / 1e9


def hf_model(model: GPT):
    """GPT2LMHeadModel with our weights (its Conv1D layers store (in, out): transpose ours), or None."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    c = model.config
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, activation_function="gelu_new",
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    sd = {k: (v.t() if k.endswith(conv1d) else v) for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("attn.bias") or k == "lm_head.weight" for k in missing), missing
    return hf


@torch.no_grad()
def timed(fn, *args, **kwargs) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def fmt(v: float | None, spec: str = "{:8.1f}") -> str:
    return spec.format(v) if v is not None else "-".rjust(len(spec.format(0.0)))


def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--shapes", default="124M,30M", help="model shapes, comma-separated: 124M, 30M "
                        "(default 124M,30M)")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    parser.add_argument("--new_tokens", default="256,512", help="numbers of new tokens, comma-separated "
                        "(default 256,512)")
    parser.add_argument("--skip_uncached", action="store_true", help="don't time our uncached path")
    parser.add_argument("--skip_hf", action="store_true", help="don't time transformers' generate")
    parser.add_argument("--repeats", type=int, default=2, help="runs per path, the best counting; the uncached "
                        "one runs once (default 2)")
    args = parser.parse_args(argv)

    gbs = bandwidth_gbs()
    print(f"threads {torch.get_num_threads()}, read bandwidth {gbs:.1f} GB/s at start (the ceiling uses the best "
          f"seen), prompt 16 tokens, greedy")
    print(f"{'shape':>5} {'batch':>5} {'new':>4} | {'cached':>8} {'uncached':>8} {'HF':>8} {'ceiling':>8} | "
          f"{'vs HF':>6} {'vs unc.':>7} {'of ceil.':>8} | same tokens as HF")
    for shape in args.shapes.split(","):
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=1024, **SHAPES[shape])).eval()
        hf = None if args.skip_hf else hf_model(model)
        weight_bytes = 4 * (model.get_num_params(non_embedding=True))  # wpe: one row per token, not counted
        for B in map(int, args.batch.split(",")):
            x = torch.randint(0, 50257, (B, 16))
            for N in map(int, args.new_tokens.split(",")):
                best = {}
                ours = hfs = None
                for _ in range(args.repeats):
                    with speedups.decoding_copies(model, model.config.vocab_size):  # made here, outside the timing
                        dt, ours = timed(model.generate, x, N, temperature=0)
                    best["cached"] = min(best.get("cached", 1e9), dt)
                    if hf is not None:  # min_new_tokens: no early stop at <|endoftext|>, the same N tokens
                        dt, hfs = timed(hf.generate, x, max_new_tokens=N, min_new_tokens=N, do_sample=False,
                                        use_cache=True, pad_token_id=0, attention_mask=torch.ones_like(x))
                        best["HF"] = min(best.get("HF", 1e9), dt)
                if not args.skip_uncached and B == 1:
                    best["uncached"], _ = timed(model.generate, x, N, temperature=0, use_cache=False)
                tps = {k: B * N / v for k, v in best.items()}
                gbs = max(gbs, bandwidth_gbs())  # again, between the timed runs: the box's load changes
                ceiling = gbs * 1e9 / weight_bytes if B == 1 else None
                vs_hf = tps["cached"] / tps["HF"] if "HF" in tps else None
                vs_unc = tps["cached"] / tps["uncached"] if "uncached" in tps else None
                same = "-" if hfs is None else ("yes" if torch.equal(ours, hfs) else "NO")
                print(f"{shape:>5} {B:>5} {N:>4} | {fmt(tps['cached'])} {fmt(tps.get('uncached'))} "
                      f"{fmt(tps.get('HF'))} {fmt(ceiling)} | {fmt(vs_hf, '{:5.2f}x')} {fmt(vs_unc, '{:6.1f}x')} "
                      f"{fmt(tps['cached'] / ceiling if ceiling else None, '{:7.0%}')} | {same}", flush=True)


if __name__ == "__main__":
    main()
