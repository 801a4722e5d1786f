"""
Decoding speed, greedy, 16-token prompt, side by side in one process: our model.generate as a
Python caller gets it, sample.py's path (speedups.row_blocks held around generate_tokens), the
Linears' own F.linear (generate_tokens alone), our uncached path, and Hugging Face transformers'
generate (GPT2LMHeadModel built locally with the SAME weights, use_cache=True); plus the
memory-bandwidth ceiling, measured in the same run.

    python bench/bench_generate.py                                # the full table (slow: ~10+ min)
    python bench/bench_generate.py --shapes=124M --batch=1 --new_tokens=256 --skip_uncached

Batch-1 decoding reads every weight once per token, so tokens/s <= (GB/s) / (model bytes): the
"ceiling" column. The uncached path runs at batch 1 only (at batch 8 it is compute bound and takes
tens of minutes). Each timed path runs --repeats times, alternating with the others, and the best
time counts; the ratios to transformers come from those best times. "load" is the 1-minute load
average when the row was printed, this benchmark's own threads included: well past the number of
cores, another process shares them, and the threaded paths (ours and transformers') slow down most.
"""

import os
import sys
import time

import torch

# the repository's root, for the imports below
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    """GPT2LMHeadModel with our weights (its Conv1D layers store (in, out): transpose ours), or
    None."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    c = model.config
    config = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                        n_layer=c.n_layer, n_head=c.n_head, activation_function="gelu_new",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = GPT2LMHeadModel(config).eval()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    sd = {k: (v.t() if k.endswith(conv1d) else v) for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    if unexpected or not all(k.endswith("attn.bias") or k == "lm_head.weight" for k in missing):
        raise RuntimeError(f"transformers' GPT-2 does not take our weights: {missing, unexpected}")
    return hf


@torch.no_grad()
def timed(fn, *args, **kwargs) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def sample_path(model: GPT, x: torch.Tensor, n: int) -> torch.Tensor:
    """What sample.py runs: generate_tokens inside row_blocks (held by the caller, as sample.py
    holds it around all its decoding), greedy, over the real vocabulary."""
    steps = model.generate_tokens(x, n, temperature=0, vocab_limit=model.config.vocab_size)
    return torch.cat([x] + [t for t, _, _ in steps], dim=1)


def plain_linears(model: GPT, x: torch.Tensor, n: int) -> torch.Tensor:
    """generate_tokens alone: every Linear through its own forward (F.linear)."""
    return torch.cat([x] + [t for t, _, _ in model.generate_tokens(x, n, temperature=0)], dim=1)


def fmt(v: float | None, spec: str = "{:8.1f}") -> str:
    return spec.format(v) if v is not None else "-".rjust(len(spec.format(0.0)))


def time_paths(model, hf, x, N, args) -> tuple[dict, dict]:
    """{path: best seconds}, {path: tokens} for one shape, batch and length, alternating."""
    best, out = {}, {}
    paths = {"generate": lambda: model.generate(x, N, temperature=0),
             "sample.py": lambda: sample_path(model, x, N)}
    if not args.skip_f_linear:
        paths["F.linear"] = lambda: plain_linears(model, x, N)
    if hf is not None:
        # min_new_tokens: no early stop at <|endoftext|>, the same N tokens
        paths["HF"] = lambda: hf.generate(x, max_new_tokens=N, min_new_tokens=N, do_sample=False,
                                          use_cache=True, pad_token_id=0,
                                          attention_mask=torch.ones_like(x))
    for _ in range(args.repeats):
        for name, run in paths.items():
            if name == "sample.py":
                # row_blocks is entered here, outside the timing, as sample.py enters it once
                with speedups.row_blocks(model, model.config.vocab_size):
                    dt, out[name] = timed(run)
            else:
                dt, out[name] = timed(run)
            best[name] = min(best.get(name, 1e9), dt)
    if not args.skip_uncached and x.size(0) == 1:
        best["uncached"], _ = timed(model.generate, x, N, temperature=0, use_cache=False)
    return best, out


def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--shapes", default="124M,30M",
                        help="model shapes, comma-separated: 124M, 30M (default 124M,30M)")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    parser.add_argument("--new_tokens", default="256,512",
                        help="numbers of new tokens, comma-separated (default 256,512)")
    parser.add_argument("--skip_uncached", action="store_true", help="don't time our uncached path")
    parser.add_argument("--skip_f_linear", action="store_true",
                        help="don't time generate_tokens through the Linears' own F.linear")
    parser.add_argument("--skip_hf", action="store_true", help="don't time transformers' generate")
    parser.add_argument("--repeats", type=int, default=2, help="runs per path, the best counting; "
                        "the uncached one runs once (default 2)")
    args = parser.parse_args(argv)

    gbs = bandwidth_gbs()
    print(f"threads {torch.get_num_threads()}, read bandwidth {gbs:.1f} GB/s at start (the ceiling "
          f"uses the best seen), prompt 16 tokens, greedy; tokens/s, then ratios to HF")
    names = ["generate", "sample.py", "F.linear", "uncached", "HF"]
    print(f"{'shape':>5} {'batch':>5} {'new':>4} | " + " ".join(f"{n:>9}" for n in names)
          + f" {'ceiling':>8} | {'gen/HF':>6} {'smp/HF':>6} {'of ceil.':>8} | same as HF | load")
    for shape in args.shapes.split(","):
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=1024, **SHAPES[shape])).eval()
        hf = None if args.skip_hf else hf_model(model)
        # wpe is not counted: a step reads one row of it
        weight_bytes = 4 * (model.get_num_params(non_embedding=True))
        for B in map(int, args.batch.split(",")):
            x = torch.randint(0, 50257, (B, 16))
            for N in map(int, args.new_tokens.split(",")):
                best, out = time_paths(model, hf, x, N, args)
                tps = {k: B * N / v for k, v in best.items()}
                # again, between the timed runs: the box's load changes
                gbs = max(gbs, bandwidth_gbs())
                ceiling = gbs * 1e9 / weight_bytes if B == 1 else None
                ratio = {k: tps[k] / tps["HF"] if "HF" in tps else None
                         for k in ("generate", "sample.py")}
                same = "-"
                if "HF" in out:
                    ok = all(torch.equal(out[k], out["HF"]) for k in out)
                    same = "yes" if ok else "NO"
                of_ceiling = tps["generate"] / ceiling if ceiling else None
                print(f"{shape:>5} {B:>5} {N:>4} | "
                      + " ".join(fmt(tps.get(n), "{:9.1f}") for n in names)
                      + f" {fmt(ceiling)} | {fmt(ratio['generate'], '{:5.2f}x')} "
                      f"{fmt(ratio['sample.py'], '{:5.2f}x')} {fmt(of_ceiling, '{:7.0%}')} | "
                      f"{same:>10} | {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
