"""
The GPT-2 language model, in one file.

References:
1) OpenAI's GPT-2 (TensorFlow): https://github.com/openai/gpt-2/blob/master/src/model.py
2) karpathy's nanoGPT model.py, which this file follows: the same modules and state dict keys.

A token's path through this file: ids (B, T) -> token + position embeddings -> n_layer pre-LayerNorm
blocks (attention, then MLP, each added to the residual stream) -> final LayerNorm -> logits over
the vocabulary through the token embedding matrix (tied). generate() runs the prompt through once,
then one new token per step, with every layer's keys and values kept in a cache. On a CPU,
support/speedups.py computes the same numbers sooner: train.py's chunked loss (GPT.forward says
where) and generate()'s row-block Linears.
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    # block_size: the longest context; vocab_size: GPT-2's 50257 tokens padded to a multiple of 64
    # for faster matmuls; dropout: 0 to pretrain, 0.1+ to finetune or for small data; bias: as in
    # GPT-2 (False is a little better and faster); gelu: "tanh" (GPT-2's) or "exact" (erf, nanoGPT)
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    gelu: str = "tanh"

    def __post_init__(self):
        # fail here, with a message that says what to change, rather than deep inside a matmul
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.gelu not in ("tanh", "exact"):
            raise ValueError(f"gelu must be 'tanh' or 'exact', got {self.gelu!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


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
        # q, k, v of all heads at once; then the heads' outputs, back into the residual stream
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x, kv=None, pos: int = 0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size): the heads become a batch dimension
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if kv is not None:
            # decoding: keys and values go into the cache at pos..pos+T (a one-row prompt shared by
            # every sample broadcasts into all rows), and a new token at pos > 0 attends to all of
            # them; a prompt starts at pos 0 and needs only the causal mask.
            kv[0][:, :, pos : pos + T], kv[1][:, :, pos : pos + T] = k, v
            if pos > 0:
                k, v = kv[0][:, :, : pos + T], kv[1][:, :, : pos + T]
        # PyTorch's fused attention (flash attention on CUDA); is_causal masks out the future
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)
        # the heads' outputs side by side again
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh" if config.gelu == "tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm block: the residual stream is only ever added to, never normalised itself."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv=None, pos: int = 0):
        x = x + self.attn(self.ln_1(x), kv, pos)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # wte: the token embeddings; wpe: the learned position embeddings
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2016): the output layer reuses the token embedding matrix, as
        # GPT-2 did; it saves vocab_size * n_embd parameters.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # GPT-2's init: N(0, 0.02) weights, zero biases; the two projections per block that write
        # into the residual stream get std 0.02/sqrt(2 * n_layer): depth does not grow its variance
        if isinstance(module, nn.Linear):
            residual = hasattr(module, "RESIDUAL_SCALE_INIT")
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if residual else 0.02
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. The position embeddings are subtracted by default, as in nanoGPT; the
        token embeddings stay in, since through weight tying they are also the output layer."""
        n_params = sum(p.numel() for p in self.parameters())
        return n_params - self.transformer.wpe.weight.numel() if non_embedding else n_params

    def hidden_states(self, idx, kv_cache=None, pos: int = 0):
        """Token ids (B, T) at positions pos..pos+T -> the final LayerNorm's output (B, T, C)."""
        T, bs = idx.size(1), self.config.block_size
        if pos + T > bs:
            raise ValueError(f"sequence of length {pos + T} is longer than block_size {bs}")
        positions = torch.arange(pos, pos + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv_cache is None else kv_cache[i], pos)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, kv_cache=None, pos: int = 0):
        x = self.hidden_states(idx, kv_cache, pos)
        if targets is None:
            # inference: only the last position's logits are needed (a list index keeps T)
            return self.lm_head(x[:, [-1], :]), None
        # On a CPU, train.py computes this same loss without forming the whole logits tensor:
        # support/speedups.py's use_chunked_loss replaces forward on the model it trains.
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss

    def crop_block_size(self, block_size: int):
        """Shrink the context length, e.g. to finetune GPT-2 (1024) with a smaller block_size."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"block_size must be in 1..{self.config.block_size}, got {block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, eps=1e-8,
                             fused=True, params=None):
        # Weight decay applies to matrices (matmul weights, embeddings), not to biases and
        # LayerNorm gains: pulling a 1-d scale or shift towards zero only fights the normalisation.
        params = [p for p in (params or self.parameters()) if p.requires_grad]
        decay, no_decay = [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]
        print(f"optimizer: {len(decay)} decayed tensors ({sum(p.numel() for p in decay):,} "
              f"parameters), {len(no_decay)} not decayed ({sum(p.numel() for p in no_decay):,} "
              f"parameters)")
        groups = [{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        # The fused kernel updates a whole group in one pass, on CUDA and on CPUs alike; PyTorch
        # picks it by default on neither. fused=False leaves PyTorch's choice (None).
        fused = True if fused and device_type in ("cuda", "cpu") else None
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, fused=fused)

    @classmethod
    def from_pretrained(cls, model_type: str, override_args: dict | None = None) -> "GPT":
        """OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl', fetched from the Hugging
        Face hub once) or a local folder in the same format (config.json + model.safetensors);
        hf.py reads the files."""
        # support/hf.py knows the Hugging Face formats; imported here, as the model needs it for
        # nothing else
        from support import hf

        override_args = override_args or {}
        if set(override_args) - {"dropout"}:
            raise ValueError(f"only dropout can be overridden, not "
                             f"{sorted(set(override_args) - {'dropout'})}")
        config_path, weights_path = hf.files(model_type)
        try:
            with torch.device("meta"):  # no random init: every tensor comes from the file
                model = cls(GPTConfig(**hf.read_config(config_path), **override_args))
        except ValueError as e:
            raise ValueError(f"{config_path}: {e}") from None
        # renamed and transposed as ours, then every tensor's name and shape checked
        hf.load_weights(model, weights_path)
        # assign=True made two parameters of the tied tensor: tie them again
        model.lm_head.weight = model.transformer.wte.weight
        return model

    def flops_per_token(self, T: int | None = None) -> int:
        """Training FLOPs per token (forward + backward = 3x forward), as in the PaLM paper's
        appendix B: 6 per parameter for the matmuls with the weights, plus 12 * n_layer * n_embd * T
        for attention over T positions. Non-matmul work is not counted."""
        cfg = self.config
        T = cfg.block_size if T is None else T
        return 6 * self.get_num_params() + 12 * cfg.n_layer * cfg.n_embd * T

    def estimate_mfu(self, tokens_per_sec: float, peak_flops: float, T: int | None = None) -> float:
        """Model FLOPs utilisation: achieved FLOP/s over the device's peak FLOP/s."""
        return self.flops_per_token(T) * tokens_per_sec / peak_flops

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, **kwargs):
        """Take a conditioning sequence idx (B, T) and append up to max_new_tokens sampled tokens
        (fewer when every row has stopped). The other options are generate_tokens()'s."""
        # A CPU decoding step is bound by reading every weight, which F.linear spreads poorly over
        # the threads. For this call, support/speedups.py's row_blocks swaps each Linear's forward
        # for one reading the weight as one block of rows per thread: the same numbers, sooner (off
        # a CPU it does nothing). Imported here, lazily: the model itself does not depend on it.
        from support import speedups
        with speedups.row_blocks(self, kwargs.get("vocab_limit") or self.config.vocab_size):
            steps = self.generate_tokens(idx, max_new_tokens, temperature, top_k, **kwargs)
            return torch.cat([idx] + [next_tokens for next_tokens, _, _ in steps], dim=1)

    @torch.no_grad()
    def generate_tokens(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        repetition_penalty=1.0, vocab_limit=None, stop_tokens=(), use_cache=True,
                        keep=None, stop_rows=None):
        """Yield (next_tokens (B, 1), logits (B, vocab_limit), finished (B,) bool) per new token.

        temperature 0 is greedy; top_k keeps the k likeliest tokens, top_p the smallest set whose
        probability reaches top_p (nucleus sampling); repetition_penalty > 1 makes tokens already
        in the row less likely. vocab_limit (the tokenizer's size) masks the padded vocabulary.
        A row finishes at one of stop_tokens, or when stop_rows(next_tokens), called each step
        before the yield, returns True for it (B booleans: a list or a tensor); it then repeats its
        last token (filler to cut), and generation ends once every row is finished.

        The prompt runs once, then each step feeds only the new token, reusing the cached keys and
        values (rows sharing a prompt run it once). Whenever the context would pass block_size it
        restarts from its last `keep` tokens (default block_size // 2). use_cache=False re-runs the
        window every step (the uncached reference); keep=block_size is nanoGPT's crop."""
        B, bs, vocab = idx.size(0), self.config.block_size, self.config.vocab_size
        V, keep = vocab_limit or vocab, keep or bs // 2
        check_sampling(temperature, top_k, top_p, repetition_penalty)
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError("generate needs a non-empty (batch, time) tensor of token ids")
        if not 0 < V <= vocab or not 1 <= keep <= bs:
            raise ValueError(f"need 0 < vocab_limit <= {vocab} and 1 <= keep <= {bs}")
        if int(idx.max()) >= V:
            raise ValueError(f"token id {int(idx.max())} is outside the vocabulary ({V} tokens)")
        stop = torch.tensor(list(stop_tokens), dtype=torch.long, device=idx.device)
        finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
        w = self.lm_head.weight
        shape = (2, B, self.config.n_head, bs, self.config.n_embd // self.config.n_head)
        cache = [w.new_empty(shape) for _ in self.transformer.h] if use_cache else None
        # the context is the window idx[:, start:]; the cache holds its first `cached` tokens
        start, cached = 0, 0
        for _ in range(max_new_tokens):
            n = idx.size(1)
            if n - start > bs:
                # the context would pass block_size: restart from the last `keep` tokens
                start, cached = n - keep, 0
            if cache is None:
                logits = self(idx[:, start:])[0]
            elif cached == 0:
                # the first step, or a restart: the whole window (once for rows that share it)
                window = idx[:, start:]
                shared = B > 1 and bool((window == window[:1]).all())
                logits = self(window[:1] if shared else window, kv_cache=cache)[0].expand(B, -1, -1)
            else:
                # the usual step: only the newest token goes through the model
                logits = self(idx[:, -1:], kv_cache=cache, pos=cached)[0]
            cached = n - start
            logits = logits[:, -1, :V]
            next_tokens = _sample(logits, idx, temperature, top_k, top_p, repetition_penalty)
            next_tokens = torch.where(finished[:, None], idx[:, -1:], next_tokens)
            finished |= torch.isin(next_tokens[:, 0], stop)
            if stop_rows is not None:
                finished |= torch.as_tensor(stop_rows(next_tokens), device=finished.device)
            idx = torch.cat((idx, next_tokens), dim=1)
            yield next_tokens, logits, finished
            if finished.all():
                return


def check_sampling(temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0):
    """The sampling options' ranges: generate checks them, and sample.py before it loads a model."""
    t, r = temperature, repetition_penalty
    if not t >= 0 or not r > 0 or math.isinf(t + r):
        raise ValueError(f"need temperature >= 0 and repetition_penalty > 0, got {t}, {r}")
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        raise ValueError(f"top_k must be a positive number of tokens (0 or none: off), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _sample(logits, idx, temperature, top_k, top_p, repetition_penalty) -> torch.Tensor:
    """Next token ids (B, 1) from the last position's logits (B, V)."""
    if repetition_penalty != 1.0:
        # CTRL (Keskar et al. 2019): shrink the scores of tokens already present
        seen = logits.gather(1, idx)
        seen = torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty)
        logits = logits.scatter(1, idx, seen)
    if temperature < torch.finfo(logits.dtype).tiny:  # 0, or too small for the dtype: greedy
        return logits.argmax(dim=-1, keepdim=True)
    # shifted so that the largest is 0: a tiny temperature cannot overflow the scores to inf
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float("inf"))
    if top_p is not None and top_p < 1.0:
        # nucleus: drop the tail outside the smallest set of tokens whose probability reaches
        # top_p; subtracting each token's own probability keeps the likeliest one always inside
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(1, order, sorted_logits.masked_fill(outside, -float("inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
