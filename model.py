"""
The GPT-2 language model, in one file.

References:
1) OpenAI's official GPT-2 TensorFlow implementation: https://github.com/openai/gpt-2/blob/master/src/model.py
2) karpathy's nanoGPT model.py, which this file follows closely: the same modules and state dict keys.

A token's path through this file: ids (B, T) -> token + position embeddings -> n_layer pre-LayerNorm blocks
(attention, then MLP, each added to the residual stream) -> final LayerNorm -> logits over the vocabulary
through the token embedding matrix (tied). generate() runs the prompt through once, then one new token per
step, with every layer's keys and values kept in a cache.
"""

import inspect
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context the model can see (rows of the position embedding)
    vocab_size: int = 50304  # GPT-2's 50257 tokens padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # 0 for pretraining; try 0.1+ for finetuning or small data
    bias: bool = True  # biases in Linears and LayerNorms, as in GPT-2; False is a little better and faster
    gelu: str = "tanh"  # "tanh": the approximation GPT-2 was trained with; "exact": the erf form, as in nanoGPT

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
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v of all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # back into the residual stream
        self.c_proj.RESIDUAL_SCALE_INIT = True
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x, kv=None, pos: int = 0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size): the heads become a batch dimension
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if kv is not None:
            # decoding: store this step's keys and values at positions pos..pos+T (a one-row prompt shared by
            # every sample broadcasts into all rows); one new token at pos > 0 then attends to all of them.
            # A prompt always starts at pos 0 and needs only the causal mask.
            kv[0][:, :, pos : pos + T], kv[1][:, :, pos : pos + T] = k, v
            if pos > 0:
                k, v = kv[0][:, :, : pos + T], kv[1][:, :, : pos + T]
        # PyTorch's fused attention (flash attention on CUDA); is_causal masks out the future
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # the heads' outputs side by side again
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
    """Pre-LayerNorm transformer block: the residual stream is only ever added to, never normalised itself."""

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
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
            wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embeddings
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2016): the output layer reuses the token embedding matrix, as GPT-2 did;
        # it saves vocab_size * n_embd parameters.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # GPT-2's init: N(0, 0.02) weights, zero biases. The two projections per block that write into the
        # residual stream get std 0.02/sqrt(2 * n_layer), so the stream's variance does not grow with depth.
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if hasattr(module, "RESIDUAL_SCALE_INIT") else 0.02
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. The position embeddings are subtracted by default, as in nanoGPT; the token
        embeddings stay in, since through weight tying they are also the output layer."""
        n_params = sum(p.numel() for p in self.parameters())
        return n_params - self.transformer.wpe.weight.numel() if non_embedding else n_params

    def hidden_states(self, idx, kv_cache=None, pos: int = 0):
        """Token ids (B, T) at positions pos..pos+T -> the final LayerNorm's output (B, T, n_embd)."""
        T = idx.size(1)
        if pos + T > self.config.block_size:
            raise ValueError(f"sequence of length {pos + T} is longer than block_size {self.config.block_size}")
        positions = torch.arange(pos, pos + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv_cache is None else kv_cache[i], pos)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, kv_cache=None, pos: int = 0):
        x = self.hidden_states(idx, kv_cache, pos)
        if targets is None:  # inference: only the last position's logits are needed (a list index keeps T)
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def crop_block_size(self, block_size: int):
        """Shrink the context length, e.g. to finetune GPT-2 (1024) with a smaller block_size."""
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, eps=1e-8, fused=True):
        # Weight decay applies to matrices (matmul weights, embeddings), not to biases and LayerNorm gains:
        # pulling a 1-d scale or shift towards zero only fights the normalisation.
        params = [p for p in self.parameters() if p.requires_grad]
        decay, no_decay = [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]
        print(f"optimizer: {len(decay)} decayed tensors ({sum(p.numel() for p in decay):,} parameters), "
              f"{len(no_decay)} not decayed ({sum(p.numel() for p in no_decay):,} parameters)")
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # The fused kernel updates a whole group in one pass, on CUDA and on CPUs alike; PyTorch picks it by
        # default on neither. fused=False keeps the per-tensor loop.
        fused = fused and device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, **(dict(fused=True) if fused else {}))

    @classmethod
    def from_pretrained(cls, model_type: str, override_args: dict | None = None) -> "GPT":
        """OpenAI's GPT-2 ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl', fetched from the Hugging Face hub
        once) or a local folder in the same format (config.json + model.safetensors); hf.py reads the files."""
        from support import hf

        override_args = override_args or {}
        if set(override_args) - {"dropout"}:
            raise ValueError(f"only dropout can be overridden, not {sorted(set(override_args) - {'dropout'})}")
        config_path, weights_path = hf.files(model_type)
        try:
            with torch.device("meta"):  # no random init: every tensor comes from the file
                model = cls(GPTConfig(**hf.read_config(config_path), **override_args))
        except ValueError as e:
            raise ValueError(f"{config_path}: {e}") from None
        model.load_state_dict(hf.read_weights(weights_path, {k: v.shape for k, v in model.state_dict().items()}),
                              assign=True)
        model.lm_head.weight = model.transformer.wte.weight  # assign=True made two parameters of one: tie again
        return model

    def flops_per_token(self, T: int | None = None) -> int:
        """Training FLOPs per token (forward + backward = 3x forward), as in the PaLM paper's appendix B: 6 per
        parameter for the matmuls with the weights, plus 12 * n_layer * n_embd * T for attention over T
        positions. Non-matmul work is not counted."""
        cfg = self.config
        return 6 * self.get_num_params() + 12 * cfg.n_layer * cfg.n_embd * (cfg.block_size if T is None else T)

    def estimate_mfu(self, tokens_per_sec: float, peak_flops: float, T: int | None = None) -> float:
        """Model FLOPs utilisation: achieved FLOP/s over the device's peak (measured or from a datasheet)."""
        return self.flops_per_token(T) * tokens_per_sec / peak_flops

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, **kwargs):
        """Take a conditioning sequence idx (B, T) and append up to max_new_tokens sampled tokens (fewer when
        every row has stopped). The other options are generate_tokens()'s."""
        for next_tokens, _, _ in self.generate_tokens(idx, max_new_tokens, temperature, top_k, **kwargs):
            idx = torch.cat((idx, next_tokens), dim=1)
        return idx

    @torch.no_grad()
    def generate_tokens(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0,
                        vocab_limit=None, stop_tokens=(), use_cache=True, keep=None):
        """Yield (next_tokens (B, 1), logits (B, vocab_limit), finished (B,) bool) once per new token.

        temperature 0 is greedy; top_k keeps the k likeliest tokens, top_p the smallest set whose probability
        reaches top_p (nucleus sampling); repetition_penalty > 1 makes tokens already in the row less likely.
        vocab_limit (the tokenizer's size) masks the padded rows of the vocabulary. A row that samples one of
        stop_tokens is finished: it then repeats its last token (filler for the caller to cut), and generation
        ends once every row is finished; the caller may finish rows itself by setting `finished`.

        The prompt runs once, then each step feeds only the new token, reusing the cached keys and values
        (rows that share their prompt run it once for all). Past block_size the context is a window: when it
        would outgrow block_size it is cut to its last `keep` tokens (default block_size // 2) and run again.
        use_cache=False runs the whole window every step instead: the same tokens, the uncached reference.
        keep=block_size is nanoGPT's crop (always the last block_size tokens), re-run in full every step."""
        B, bs = idx.size(0), self.config.block_size
        V, keep = vocab_limit or self.config.vocab_size, keep or bs // 2
        check_sampling(temperature, top_k, top_p, repetition_penalty)
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError("generate needs a non-empty (batch, time) tensor of token ids")
        if not 0 < V <= self.config.vocab_size or not 1 <= keep <= bs:
            raise ValueError(f"need 0 < vocab_limit <= {self.config.vocab_size} and 1 <= keep <= {bs}")
        if int(idx.max()) >= V:
            raise ValueError(f"token id {int(idx.max())} is outside the vocabulary ({V} tokens)")
        stop = torch.tensor(list(stop_tokens), dtype=torch.long, device=idx.device)
        finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
        w = self.lm_head.weight
        shape = (B, self.config.n_head, bs, self.config.n_embd // self.config.n_head)
        cache = [(w.new_empty(shape), w.new_empty(shape)) for _ in self.transformer.h] if use_cache else None
        start = -1  # where in idx the cached window begins (-1: nothing cached yet)
        for _ in range(max_new_tokens):
            n = idx.size(1)
            s = _window_start(n, bs, keep)
            if cache is None:
                logits = self(idx[:, s:])[0]
            elif s != start:  # the first step, or the window moved: run the whole window
                start, window = s, idx[:, s:]
                shared = B > 1 and bool((window == window[:1]).all())
                logits = self(window[:1] if shared else window, kv_cache=cache)[0].expand(B, -1, -1)
            else:  # the usual step: only the newest token goes through the model
                logits = self(idx[:, -1:], kv_cache=cache, pos=n - 1 - s)[0]
            logits = logits[:, -1, :V]
            next_tokens = _sample(logits, idx, temperature, top_k, top_p, repetition_penalty)
            next_tokens = torch.where(finished[:, None], idx[:, -1:], next_tokens)
            finished |= torch.isin(next_tokens[:, 0], stop)
            idx = torch.cat((idx, next_tokens), dim=1)
            yield next_tokens, logits, finished
            if finished.all():
                return


def check_sampling(temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0):
    """The sampling options' ranges, checked by generate and, before a model is loaded, by sample.py."""
    if not temperature >= 0 or not repetition_penalty > 0 or math.isinf(temperature + repetition_penalty):
        raise ValueError(f"need temperature >= 0 and repetition_penalty > 0, got {temperature}, {repetition_penalty}")
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        raise ValueError(f"top_k must be a positive number of tokens (0 or none: off), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


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
        logits = logits.scatter(1, idx, torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty))
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], -float("inf"))
    if top_p is not None and top_p < 1.0:
        # nucleus: drop the tail outside the smallest set of tokens whose probability reaches top_p
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the likeliest token is always inside
        logits = logits.scatter(1, order, sorted_logits.masked_fill(outside, -float("inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
