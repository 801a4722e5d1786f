"""
Train a byte-level BPE on your text, GPT-2 style: every byte is a token, so any text round-trips,
and the result is saved as GPT-2-format vocab.json + merges.txt (tokenizer.py loads and encodes with
it). data/prepare.py --tokenizer=bpe trains one on a corpus's train split and keeps it beside the
shards, where --tokenizer=data/NAME finds it again for another text.
"""

import json
from collections.abc import Iterable

from data.tokenizer import EOT, Tokenizer, load_tokenizer
from data.tokenizer_files import bytes_to_unicode, save_tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 5000, out_dir: str | None = None,
                    max_chars: int = 256 * 2**20) -> Tokenizer:
    """Train a byte-level BPE on documents, and save it in out_dir if given.

    Ids are laid out like GPT-2's: 256 bytes, the merges in order, <|endoftext|> last. n_vocab comes
    out below vocab_size when a small corpus runs out of pairs seen twice. Only the first max_chars
    characters are used; the trainer keeps counts of words, not the text."""
    if not 257 <= vocab_size <= 10**7:
        size = "small" if vocab_size < 257 else "large"
        raise ValueError(f"vocab_size={vocab_size} is too {size}: need 257 (256 bytes + {EOT}) to "
                         f"10,000,000")
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, trainers

    # ByteLevel with use_regex=True splits text with GPT-2's regex, exactly as tiktoken's
    # r50k_pat_str does; min_frequency=2 as in ByteLevelBPETokenizer: a pair seen once is noise
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    n_chars = 0

    # many texts per batch: the trainer works on a batch's items in parallel
    def batches():
        nonlocal n_chars
        batch, size = [], 0
        for text in texts:
            batch.append(text)
            size += len(text)
            n_chars += len(text)
            if n_chars >= max_chars:
                break
            if size >= 1 << 16:
                yield batch
                batch, size = [], 0
        yield batch

    hf.train_from_iterator(batches(), trainer=trainer)
    if n_chars == 0:
        raise ValueError("the training corpus is empty: give some text")
    # Re-number GPT-2 style: bytes 0..255, merge i -> 256+i, <|endoftext|> last. A merge that
    # re-makes an existing token by another pair can't be expressed in tiktoken (one merge per
    # token) and is dropped.
    trained = json.loads(hf.to_str())["model"]["merges"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in trained]
    vocab, kept = {c: i for i, c in enumerate(bytes_to_unicode().values())}, ["#version: 0.2\n"]
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            kept.append(f"{a} {b}\n")
    vocab[EOT] = len(vocab)
    tok = load_tokenizer(dict(name="bpe", vocab=json.dumps(vocab, ensure_ascii=False),
                              merges="".join(kept)), "trained BPE")
    if out_dir is not None:
        save_tokenizer(tok, out_dir)
    return tok
