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

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, nh, T, hs): heads become a batch dimension
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        # PyTorch's fused attention (flash attention on CUDA); is_causal masks out the future.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 used the tanh approximation ("gelu_new")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: the residual stream is only ever added to, never normalised."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
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
        for s in range(0, x.size(0), chunk):
            xc, tc, vc = x[s : s + chunk], targets[s : s + chunk].clamp(min=0), valid[s : s + chunk]
            logits = xc @ weight.t()
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            target_logit = logits.gather(1, tc[:, None])
            loss += ((lse - target_logit).squeeze(1) * vc).sum()
            # d(mean loss)/d(logits) = (softmax - one_hot) / n on the valid rows, formed in place
            g = logits.sub_(lse).exp_()
            g.scatter_add_(1, tc[:, None], torch.full_like(target_logit, -1.0))
            g.mul_((vc / n)[:, None])
            torch.mm(g, weight, out=grad_x[s : s + chunk])
            grad_w.addmm_(g.t(), xc)
        ctx.save_for_backward(grad_x, grad_w)
        return loss / n

    @staticmethod
    def backward(ctx, grad_output):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_output, grad_w * grad_output, None, None


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

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, eps=1e-8):
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
        # The fused kernel does the whole AdamW update in one launch per group: a clear win on CUDA.
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
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
                        block_size=hf.get("n_positions", hf.get("n_ctx")), bias=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PretrainedError(f"{paths[0]} is not a GPT-2 config.json ({type(e).__name__}: {e})") from None
        wrong = {"model_type": hf.get("model_type", "gpt2") != "gpt2",
                 "activation_function": hf.get("activation_function") not in ("gelu_new", "gelu_pytorch_tanh"),
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

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Take a conditioning sequence idx (B, T) and append max_new_tokens sampled tokens."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size :]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :]
            if temperature == 0:
                idx_next = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("Inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
