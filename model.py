"""
The GPT-2 language model, in one file.

References:
1) OpenAI's official GPT-2 TensorFlow implementation:
   https://github.com/openai/gpt-2/blob/master/src/model.py
2) karpathy's nanoGPT model.py, which this file follows closely.

A token's path through this file: ids (B, T) -> token + position embeddings -> n_layer pre-LayerNorm
blocks (attention, then MLP, each added to the residual stream) -> final LayerNorm -> logits over the
vocabulary through the (tied) token embedding matrix.
"""

import inspect
import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context the model can see (size of the position embedding)
    vocab_size: int = 50304  # GPT-2's 50257 tokens padded up to a multiple of 64 for fast matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # 0 for pretraining, try 0.1+ for finetuning or small data
    bias: bool = True  # biases in Linears and LayerNorms, like GPT-2; False is a bit better and faster
    # "tanh": the approximation GPT-2 was trained with ("gelu_new"); "exact": the erf form, as in nanoGPT,
    # equally good for a model trained from scratch and ~2x cheaper on a CPU (the tanh kernel is slow there)
    gelu: str = "tanh"

    def __post_init__(self):
        # Fail at construction with a message that says what to change, not deep inside a matmul.
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"try n_head={_closest_divisor(self.n_embd, self.n_head)}"
            )
        if self.gelu not in ("tanh", "exact"):
            raise ValueError(f"gelu must be 'tanh' or 'exact', got {self.gelu!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


def _closest_divisor(n: int, d: int) -> int:
    return min((k for k in range(1, n + 1) if n % k == 0), key=lambda k: abs(k - d))


class PretrainedError(ValueError):
    """A pretrained model could not be found, downloaded, or is not a GPT-2 this file can hold."""


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's nn.LayerNorm can't switch the bias off alone)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class LayerCache:
    """One block's decoding state: preallocated keys and values (B, n_head, block_size, head_size) for
    every position seen so far, and the decoding copies of the weights shared by all blocks (see KVCache)."""

    def __init__(self, shape: tuple, like: torch.Tensor, weights: dict):
        self.k = torch.empty(shape, dtype=like.dtype, device=like.device)
        self.v = torch.empty(shape, dtype=like.dtype, device=like.device)
        self.weights = weights


class KVCache:
    """Everything generate() keeps between steps, built per call and never part of the state_dict.

    Why decoding copies of the weights (CPU only): a batch-1 decoding step is bound by reading every weight
    once from memory, and on CPU a matrix-vector product through F.linear streams them at ~10 GB/s, half
    this machine's bandwidth, because BLAS hardly splits it across threads. Each weight is therefore copied
    into as many blocks of rows as there are threads and multiplied with one bmm, which PyTorch parallelises
    over the blocks: every thread streams its own contiguous block (measured here on GPT-2 124M's 49
    matrices: 15 vs 11.7 GB/s at batch 1, 2x faster at batch 8). Making the copies costs about a second on
    GPT-2 124M and doubles the weights' memory, so the model keeps them between generate() calls while its
    weights are unchanged (GPT._decode_weights); training and forward() never see them. On a GPU,
    F.linear already reads at full bandwidth and no copies are made."""

    def __init__(self, model: "GPT", batch_size: int, vocab_limit: int):
        cfg = model.config
        self.weights, self.vocab_limit = model._decode_weights(vocab_limit), vocab_limit
        shape = (batch_size, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.layers = [LayerCache(shape, model.lm_head.weight, self.weights) for _ in range(cfg.n_layer)]


def _row_blocks(w: torch.Tensor, n: int) -> torch.Tensor:
    """A copy of the weight W (out, in) as n equal blocks of rows (n, ceil(out / n), in), zero-padded."""
    rows = -(-w.size(0) // n)
    blocks = w.new_zeros(n * rows, w.size(1))
    blocks[: w.size(0)] = w
    return blocks.view(n, rows, w.size(1))


def _linear(layer: nn.Linear, x: torch.Tensor, cache: "LayerCache | KVCache | None") -> torch.Tensor:
    """layer(x); while decoding on CPU, the same product through the row blocks of the weight (KVCache):
    one bmm, each thread multiplying x by its own block, the outputs read back in row order."""
    if cache is None or layer not in cache.weights:
        return layer(x)
    blocks, n_out = cache.weights[layer]
    x2 = x.reshape(-1, x.size(-1))  # (N, in)
    y = torch.bmm(blocks, x2.t().expand(blocks.size(0), -1, -1))  # (n, rows, N)
    y = y.view(-1, x2.size(0))[:n_out].t().reshape(*x.shape[:-1], n_out)
    return y if layer.bias is None else y + layer.bias


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        # query, key and value projections for all heads in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        # output projection back into the residual stream
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x, cache: LayerCache | None = None, pos: int = 0):
        B, T, C = x.size()
        q, k, v = _linear(self.c_attn, x, cache).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, nh, T, hs): heads become a batch dimension
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if cache is not None:
            # Decoding: remember this step's keys/values at positions pos..pos+T (a 1-row prefill of a
            # prompt shared by every sample broadcasts into all rows), and let a single new query attend
            # to everything cached so far (a step feeds one token at pos > 0). A prefill always starts at
            # pos 0, so it attends to its own k, v with the ordinary causal mask.
            cache.k[:, :, pos : pos + T] = k
            cache.v[:, :, pos : pos + T] = v
            if pos > 0:
                k, v = cache.k[:, :, : pos + 1], cache.v[:, :, : pos + 1]
        # PyTorch's fused attention (flash attention on CUDA); is_causal masks out the future.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=T > 1
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(_linear(self.c_proj, y, cache))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh" if config.gelu == "tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache: LayerCache | None = None):
        return self.dropout(_linear(self.c_proj, self.gelu(_linear(self.c_fc, x, cache)), cache))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: the residual stream is only ever added to, never normalised."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache: LayerCache | None = None, pos: int = 0):
        x = x + self.attn(self.ln_1(x), cache, pos)
        x = x + self.mlp(self.ln_2(x), cache)
        return x


# Rows of hidden states per chunk in ChunkedLMHeadLoss; 0 turns it off (plain F.cross_entropy everywhere).
LOSS_CHUNK_ROWS = 512


class ChunkedLMHeadLoss(torch.autograd.Function):
    """lm_head + mean cross-entropy (ignore_index=-1), computed in chunks of rows, gradient included.

    Why: with a 50k vocabulary the (rows x vocab) logits are most of a small model's work, and on a CPU
    the plain path spends ~25% of the step outside the matmuls: writing the huge logits tensor, the
    softmax, zero-filling and re-reading it in the backward pass. Here each chunk's logits are formed,
    turned straight into their gradient (softmax - one_hot) / n while still in cache, and used at once for
    the gradients of the hidden states and of the weight; backward only scales them. Same loss, same
    gradients (to rounding), ~1.2x faster on this CPU, and the peak memory of one chunk instead of all.
    On CUDA the plain path stays: there autocast and torch.compile already fuse the cross-entropy and
    this Function would cut the compiled graph in two."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk: int):
        # x: (N, C) final hidden states, weight: (V, C) lm_head, targets: (N,) with -1 = ignore
        valid = targets != -1
        n = valid.sum().to(x.dtype)  # 0 valid targets -> 0/0 = nan, as F.cross_entropy gives
        loss = x.new_zeros(())
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros_like(weight)
        # One logits buffer for every chunk, and every step below in place: a fresh 100 MB tensor per
        # chunk (and logsumexp's hidden temporary of the same size) costs ~25k page faults each on a CPU,
        # which was ~20% of an L6/C384 step in system time.
        buf = x.new_empty(min(chunk, x.size(0)), weight.size(0))
        for s in range(0, x.size(0), chunk):
            xc, tc, vc = x[s : s + chunk], targets[s : s + chunk].clamp(min=0), valid[s : s + chunk]
            logits = torch.mm(xc, weight.t(), out=buf[: xc.size(0)])
            target_logit = logits.gather(1, tc[:, None])
            m = logits.amax(dim=1, keepdim=True)
            g = logits.sub_(m).exp_()  # exp(logits - max): the softmax's numerators, overwriting logits
            sum_exp = g.sum(dim=1, keepdim=True)
            loss += ((m + sum_exp.log() - target_logit).squeeze(1) * vc).sum()  # logsumexp - target
            # d(mean loss)/d(logits) = (softmax - one_hot) / n on the valid rows
            scale = (vc / n)[:, None]
            g.mul_(scale / sum_exp)
            g.scatter_add_(1, tc[:, None], -scale)
            torch.mm(g, weight, out=grad_x[s : s + chunk])
            grad_w.addmm_(g.t(), xc)
        ctx.grads = [grad_x, grad_w]
        return loss / n

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.grads is None:
            raise RuntimeError("ChunkedLMHeadLoss keeps its gradients for one backward pass only")
        grad_x, grad_w = ctx.grads
        ctx.grads = None  # handed over, not copied: scaling them in place saves two big allocations
        if grad_output.item() != 1.0:  # a CPU scalar; 1 unless the loss was scaled (gradient accumulation)
            grad_x.mul_(grad_output)
            grad_w.mul_(grad_output)
        return grad_x, grad_w, None, None


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
                wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embeddings
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2016): the output layer reuses the token embedding matrix. Saves
        # vocab_size*n_embd parameters and is what GPT-2 did.
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)

    def _init_weights(self, module):
        # GPT-2 init: N(0, 0.02) weights, zero biases. Projections that write into the residual stream
        # are scaled by 1/sqrt(2 * n_layer) (two per block) so the stream's variance does not grow
        # with depth.
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "RESIDUAL_SCALE_INIT", False):
                std = 0.02 / math.sqrt(2 * self.config.n_layer)
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. The position embeddings are subtracted by default, as in nanoGPT; the token
        embeddings stay in, since through weight tying they are also the output layer."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def forward(self, idx, targets=None):
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)

        chunked = LOSS_CHUNK_ROWS and x.device.type == "cpu" and torch.is_grad_enabled()
        if targets is not None and chunked and not torch.compiler.is_compiling():
            # training on a CPU: the logits are never materialised whole (see ChunkedLMHeadLoss), so none
            # are returned. Under torch.compile the plain path is traced instead (one graph, no Python loop).
            loss = ChunkedLMHeadLoss.apply(x.reshape(-1, x.size(-1)), self.lm_head.weight,
                                           targets.reshape(-1), LOSS_CHUNK_ROWS)
            logits = None
        elif targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        else:
            # inference: only the last position's logits are needed (list index keeps the time dim)
            logits = self.lm_head(x[:, [-1], :])
            loss = None
        return logits, loss

    def crop_block_size(self, block_size: int):
        """Shrink the context length, e.g. to finetune GPT-2 (1024) with a smaller block_size."""
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, eps=1e-8, fused=True):
        # Weight decay applies to matrices (matmul weights, embeddings), not to biases and LayerNorm
        # gains: decaying a 1-d scale or shift towards zero only fights the normalisation.
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        print(
            f"optimizer: {len(decay)} decayed tensors ({sum(p.numel() for p in decay):,} parameters), "
            f"{len(no_decay)} not decayed ({sum(p.numel() for p in no_decay):,} parameters)"
        )
        # The fused kernel does the whole AdamW update in one pass per group. PyTorch picks it on neither
        # device by default; on CUDA it saves launches, and on this CPU it ran 4-7x faster than the default
        # per-tensor loop (L6/C384, vocab 50304: 27 vs 180 ms per step; measured with torch 2.13).
        # fused=False keeps that default loop (bench.py's nanoGPT-equivalent reference).
        fused = fused and device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = dict(fused=True) if fused else dict()
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, **extra)

    # OpenAI's released GPT-2 sizes, as named on the Hugging Face hub (openai-community/<name>)
    PRETRAINED = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
    # HF's GPT-2 stores these four as Conv1D, weight (in, out): transposed relative to nn.Linear
    CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

    @classmethod
    def from_pretrained(cls, name_or_dir: str, override_args: dict | None = None) -> "GPT":
        """OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'; config.json + model.safetensors
        fetched from the Hugging Face hub into its cache) or a local directory in the same format (what
        transformers' save_pretrained and export.py write; also how to run offline)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        override_args = override_args or {}
        if set(override_args) - {"dropout"}:
            raise PretrainedError(f"only dropout can be overridden, not {sorted(set(override_args) - {'dropout'})}")
        if os.path.isdir(name_or_dir):
            paths = [os.path.join(name_or_dir, f) for f in ("config.json", "model.safetensors")]
            for path in paths:
                if not os.path.isfile(path):
                    raise PretrainedError(f"{path} not found: a pretrained directory needs config.json and "
                                          f"model.safetensors (transformers' save_pretrained or export.py)")
        elif name_or_dir in cls.PRETRAINED:
            from huggingface_hub import hf_hub_download

            repo = f"openai-community/{name_or_dir}"
            try:
                paths = [hf_hub_download(repo, f) for f in ("config.json", "model.safetensors")]
            except Exception as e:  # noqa: BLE001 - offline, hub down, disk full: all end the same way
                raise PretrainedError(f"cannot download {repo} ({type(e).__name__}); connect to the internet "
                                      f"once (it is cached after), or pass a local directory") from None
        else:
            raise PretrainedError(f"{name_or_dir!r} is neither a directory nor one of {', '.join(cls.PRETRAINED)}")

        # Refuse configs this model would compute differently, rather than give quietly wrong logits.
        try:
            with open(paths[0], encoding="utf-8") as f:
                hf = json.load(f)
            n_embd, vocab_size = hf["n_embd"], hf["vocab_size"]
            args = dict(n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=n_embd, vocab_size=vocab_size,
                        block_size=hf.get("n_positions", hf.get("n_ctx")), bias=True,
                        gelu="exact" if hf.get("activation_function") == "gelu" else "tanh")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PretrainedError(f"{paths[0]} is not a GPT-2 config.json ({type(e).__name__}: {e})") from None
        wrong = {"model_type": hf.get("model_type", "gpt2") != "gpt2",
                 "activation_function": hf.get("activation_function") not in ("gelu_new", "gelu_pytorch_tanh", "gelu"),
                 "n_inner": hf.get("n_inner") not in (None, 4 * n_embd),
                 "layer_norm_epsilon": hf.get("layer_norm_epsilon", 1e-5) != 1e-5,
                 "scale_attn_weights": hf.get("scale_attn_weights", True) is not True,
                 "scale_attn_by_inverse_layer_idx": bool(hf.get("scale_attn_by_inverse_layer_idx")),
                 "add_cross_attention": bool(hf.get("add_cross_attention"))}
        wrong.update({k: True for k, v in hf.items() if ("rope" in k or "rotary" in k) and v})
        for key, bad in wrong.items():
            if bad:
                raise PretrainedError(f"{paths[0]}: {key}={hf.get(key)!r} is not GPT-2's architecture (model_type "
                                      f"gpt2, tanh GELU 'gelu_new', n_inner 4*n_embd, learned positions)")
        try:
            # built on the meta device, then given uninitialised memory: every tensor is loaded below, so
            # the random init (tens of seconds for gpt2-xl on a CPU) would be wasted work
            with torch.device("meta"):
                model = cls(GPTConfig(**args, dropout=override_args.get("dropout", 0.0)))
            model.to_empty(device="cpu")
            model.transformer.wte.weight = model.lm_head.weight  # to_empty unties them: tie again
        except ValueError as e:
            raise PretrainedError(f"{paths[0]}: {e}") from None

        # Weights: the hub's files have no "transformer." prefix and carry each block's causal-mask buffer
        # (attn.bias / attn.masked_bias, not parameters); save_pretrained's have the prefix, no buffers.
        try:
            hf_sd = load_file(paths[1])
        except (OSError, SafetensorError) as e:
            raise PretrainedError(f"{paths[1]} is not a readable safetensors file ({e})") from None
        hf_sd = {k.removeprefix("transformer."): v for k, v in hf_sd.items()
                 if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        head = hf_sd.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, hf_sd.get("wte.weight", head)):
            raise PretrainedError(f"{paths[1]}: lm_head.weight differs from wte.weight; GPT-2 ties them")
        sd = model.state_dict()
        with torch.no_grad():
            for key, param in sd.items():
                if key == "lm_head.weight":
                    continue  # the same tensor as transformer.wte.weight
                name = key.removeprefix("transformer.")
                if name not in hf_sd:
                    raise PretrainedError(f"{paths[1]}: tensor {name} is missing")
                t = hf_sd.pop(name)
                want = param.shape[::-1] if name.endswith(cls.CONV1D) else param.shape  # in the file's layout
                if t.shape != want:
                    raise PretrainedError(f"{paths[1]}: tensor {name} has shape {tuple(t.shape)}, but "
                                          f"config.json implies {tuple(want)}")
                param.copy_(t.t() if name.endswith(cls.CONV1D) else t)
        if hf_sd:
            raise PretrainedError(f"{paths[1]}: unexpected tensor {sorted(hf_sd)[0]} (not GPT-2's)")
        return model

    def flops_per_token(self, T: int | None = None) -> int:
        """Training FLOPs per token (forward + backward = 3x forward), as in the PaLM paper's appendix B:
        6 per parameter for the matmuls with the weights, plus 12*n_layer*n_embd*T for the attention
        scores and their weighted sum over T positions. Non-matmul work is not counted."""
        cfg = self.config
        T = cfg.block_size if T is None else T
        N = self.get_num_params(non_embedding=True)
        return 6 * N + 12 * cfg.n_layer * cfg.n_embd * T

    def estimate_mfu(self, tokens_per_sec: float, peak_flops: float, T: int | None = None) -> float:
        """Model FLOPs utilisation: achieved FLOP/s over the device's peak (measured or given)."""
        return self.flops_per_token(T) * tokens_per_sec / peak_flops

    def _decode_weights(self, vocab_limit: int) -> dict:
        """The decoding copies of the weights (see KVCache), {layer: (row blocks, rows used)}, empty off
        the CPU: made once, then reused for as long as the weights stay the same tensors, unmodified, and
        the thread count is the same. An optimizer step or load_state_dict bumps a tensor's version and
        .to() gives it new storage; either makes the next call copy afresh."""
        if self.lm_head.weight.device.type != "cpu":
            return {}
        linears = [m for m in self.transformer.h.modules() if isinstance(m, nn.Linear)] + [self.lm_head]
        n = torch.get_num_threads()
        key = (vocab_limit, n) + tuple((id(m.weight), m.weight.data_ptr(), m.weight._version) for m in linears)
        cached = self.__dict__.get("_decode_cache")
        if cached is None or cached[0] != key:
            self.__dict__.pop("_decode_cache", None)  # free the stale copies before making new ones
            # the output layer over the real vocabulary only: padded rows are never computed, never sampled
            rows = {m: m.weight[:vocab_limit] if m is self.lm_head else m.weight for m in linears}
            cached = (key, {m: (_row_blocks(w, n), w.size(0)) for m, w in rows.items()})
            self.__dict__["_decode_cache"] = cached
        return cached[1]

    def train(self, mode: bool = True):
        if mode:  # training is about to change the weights: don't hold decoding copies of them meanwhile
            self.__dict__.pop("_decode_cache", None)
        return super().train(mode)

    def forward_cached(self, idx: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
        """Decoding forward: tokens idx (B, T) at positions pos..pos+T through the same blocks as forward(),
        keys/values kept in cache. Returns the last position's logits (B, vocab_limit)."""
        T = idx.size(1)
        positions = torch.arange(pos, pos + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for block, layer_cache in zip(self.transformer.h, cache.layers):
            x = block(x, layer_cache, pos)
        return _linear(self.lm_head, self.transformer.ln_f(x[:, -1, :]), cache)[:, : cache.vocab_limit]

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, **kwargs):
        """Take a conditioning sequence idx (B, T) and append up to max_new_tokens sampled tokens (fewer when
        every row has stopped). Options are generate_tokens()'s."""
        for next_tokens, _, _ in self.generate_tokens(idx, max_new_tokens, temperature, top_k, **kwargs):
            idx = torch.cat((idx, next_tokens), dim=1)
        return idx

    @torch.no_grad()
    def generate_tokens(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        repetition_penalty=1.0, vocab_limit=None, stop_tokens=(), use_cache=True, keep=None):
        """Yield (next_tokens (B, 1), logits (B, vocab_limit), finished (B,) bool) once per new token.

        temperature 0 is greedy; top_k keeps the k likeliest tokens, top_p the smallest set whose
        probability reaches top_p (nucleus sampling); repetition_penalty > 1 makes tokens already in the
        row less likely (CTRL's rule). vocab_limit (e.g. the tokenizer's n_vocab) masks the padded rows of
        the vocabulary. A row that samples one of stop_tokens is finished: from then on it repeats its
        last token (filler for the caller to cut) and generation ends once every row is finished. The
        caller may also finish rows itself by setting them in the yielded `finished` (e.g. on stop text).

        With use_cache (the default) the prompt is run once and each step feeds only the new token,
        reusing the cached keys/values; a batch whose rows share a prompt prefills it once for all rows.
        Past block_size the context is a window: when it would outgrow block_size it is cut to its last
        `keep` tokens (default block_size // 2) and re-prefilled, then grows again. use_cache=False runs
        the full window through forward() every step: same windows, same tokens, the uncached reference.
        keep=block_size gives nanoGPT's crop (always the last block_size tokens) at the price of a full
        re-prefill every step once the context is longer than block_size."""
        B, bs = idx.size(0), self.config.block_size
        V = vocab_limit or self.config.vocab_size
        keep = keep or bs // 2
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError("generate needs a non-empty (batch, time) tensor of token ids")
        if not 0 < V <= self.config.vocab_size or not 1 <= keep <= bs:
            raise ValueError(f"need 0 < vocab_limit <= {self.config.vocab_size} and 1 <= keep <= {bs}")
        if int(idx.max()) >= V:
            raise ValueError(f"token id {int(idx.max())} is outside the vocabulary ({V} tokens)")
        if temperature < 0 or (top_p is not None and not 0 < top_p <= 1) or repetition_penalty <= 0:
            raise ValueError("need temperature >= 0, 0 < top_p <= 1 and repetition_penalty > 0")
        stop = torch.tensor(list(stop_tokens), dtype=torch.long, device=idx.device)
        finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
        cache = KVCache(self, B, V) if use_cache else None
        start = -1  # where in idx the cached window begins (-1: nothing cached yet)
        for _ in range(max_new_tokens):
            n = idx.size(1)
            s = _window_start(n, bs, keep)
            if cache is None:
                logits = self(idx[:, s:])[0][:, -1, :V]
            elif s != start:  # first step, or the window moved: (re-)prefill the whole window
                start, window = s, idx[:, s:]
                shared = B > 1 and bool((window == window[:1]).all())
                logits = self.forward_cached(window[:1] if shared else window, cache, 0).expand(B, -1)
            else:  # the usual step: only the newest token goes through the model
                logits = self.forward_cached(idx[:, -1:], cache, n - 1 - s)
            next_tokens = _sample(logits, idx, temperature, top_k, top_p, repetition_penalty)
            next_tokens = torch.where(finished[:, None], idx[:, -1:], next_tokens)
            finished |= torch.isin(next_tokens[:, 0], stop)
            idx = torch.cat((idx, next_tokens), dim=1)
            yield next_tokens, logits, finished
            if finished.all():
                return


def _window_start(n: int, block_size: int, keep: int) -> int:
    """Where the context window starts when n tokens exist: 0 while they fit, else a window that was cut to
    `keep` tokens and has grown by one per token since, cut again whenever it would exceed block_size."""
    if n <= block_size:
        return 0
    return n - keep - (n - block_size - 1) % (block_size - keep + 1)


def _sample(logits, idx, temperature, top_k, top_p, repetition_penalty) -> torch.Tensor:
    """Next token ids (B, 1) from the last position's logits (B, V)."""
    if repetition_penalty != 1.0:  # CTRL (Keskar et al. 2019): shrink the scores of tokens already present
        seen = logits.gather(1, idx)
        seen = torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty)
        logits = logits.scatter(1, idx, seen)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float("inf"))
    if top_p is not None and top_p < 1.0:
        # nucleus: drop the tail of tokens outside the smallest set whose probability reaches top_p
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the likeliest token is always inside
        logits = logits.scatter(1, order, sorted_logits.masked_fill(outside, -float("inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
