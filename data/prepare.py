"""
Turn text into the token shards that train.py reads (data/shards.py has the format; corpus.py reads
the files).

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare  # data/shakespeare/
    python data/prepare.py --input="quotes/*.txt" --split=%   # documents separated by a '%' line
    python data/prepare.py --input=titles.txt --split=line    # one document per line
    python data/prepare.py --input=posts.csv --column=body --tokenizer=bpe --vocab_size=5000
    python data/prepare.py --input=more.txt --tokenizer=data/custom  # data/custom's tokenizer
    python data/prepare.py                                    # OpenWebText -> data/openwebtext/

A text that is one document (one file, no --split) is split like nanoGPT's shakespeare: its first
1-val_fraction goes to train, the rest to val. Otherwise each document goes to val with probability
val_fraction (seeded), and each split gets at least one. Documents are separated by <|endoftext|>.
Text is read, tokenized (in parallel threads) and written in bounded batches: memory stays flat
whatever the size.
"""

import itertools
import json
import os
import shutil
import sys
import time

import numpy as np

# the repository's root, for `python data/prepare.py` run as a script
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data import corpus
from data.shards import DATA_ROOT, VERSION, ShardWriter
from data.tokenizer import save_tokenizer
from support.common import ArgumentParser, atomic_write, check_writable, in_range, one_line_errors


def iter_documents(files: list[str] | None, split: str | None, val_fraction: float, seed: int,
                   column: str):
    """Yield (split, text, starts_document) pieces, in a fixed order for a given seed."""
    if files is not None and len(files) == 1 and split is None and \
            not files[0].endswith(corpus.TABLES):
        # one document: nanoGPT's split, the last val_fraction is val
        last = None
        for part, text in corpus.read_txt_document(files[0], cut_fraction=1 - val_fraction):
            # each split's first piece starts its document
            yield part, text, part != last
            last = part
        return
    rng, pending, seen = np.random.default_rng(seed), None, set()
    for doc in itertools.chain(corpus.documents(files, split, column), [None]):
        # routed one behind, so that the last document can fill a split still empty
        if pending is not None:
            where = "val" if rng.random() < val_fraction else "train"
            if doc is None and {"train", "val"} - seen:
                where = "val" if "val" not in seen else "train"
            seen.add(where)
            yield from ((where, t, i == 0) for i, t in enumerate(pending))
        pending = doc


def prepare(files: list[str] | None, out_dir: str, tokenizer_name: str = "gpt2",
            vocab_size: int = 5000, split: str | None = None, val_fraction: float = 0.1,
            seed: int = 1337, num_proc: int = 8, progress: bool = True,
            column: str = "text") -> dict:
    """Tokenize the documents of `files` (None: OpenWebText) into out_dir's shards and meta.json;
    returns the meta dict."""
    from tqdm import tqdm

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    check_writable(out_dir)
    t0, created = time.time(), not os.path.exists(out_dir)
    docs = lambda: iter_documents(files, split, val_fraction, seed, column)
    try:
        tok = corpus.tokenizer_for(tokenizer_name, vocab_size, docs)
        os.makedirs(out_dir, exist_ok=True)
        if tok.name == "bpe":
            # vocab.json + merges.txt beside the shards (GPT-2's format)
            save_tokenizer(tok, out_dir)
        stats = {s: dict(shards=[], tokens=0, documents=0, chars=0, bytes=0, replaced=0)
                 for s in ("train", "val")}
        writers = {s: ShardWriter(out_dir, s, tok.n_vocab) for s in stats}
        bar = tqdm(total=sum(os.path.getsize(f) for f in files) if files else None, unit="B",
                   unit_scale=True, desc=f"tokenizing ({tok.name})", disable=not progress)
        batch, batched = [], 0
        for piece in docs():
            batch.append(piece)
            batched += len(piece[1])
            # encode a few MB at a time, on num_proc threads
            if batched >= 2 * corpus.CHUNK_BYTES:
                write_batch(batch, tok, writers, stats, num_proc, bar)
                batch, batched = [], 0
        write_batch(batch, tok, writers, stats, num_proc, bar)
        bar.close()
        for part, w in writers.items():
            stats[part]["shards"] = w.close()
            if stats[part]["tokens"] == 0:
                raise ValueError(f"the {part} split is empty: the input has no text (or too "
                                 f"little for val_fraction={val_fraction}, or a single document: "
                                 f"see --split)")
        replaced = sum(st.pop("replaced") for st in stats.values())
        meta = dict(format="gpt-shards", version=VERSION, tokenizer=tok.name,
                    vocab_size=tok.n_vocab, eot_token=tok.eot_token,
                    dtype=writers["train"].dtype.name, splits=stats, decode_errors=replaced,
                    source=files or "openwebtext", seed=seed, val_fraction=val_fraction,
                    **({"chars": tok.chars} if tok.name == "char" else {}))
        atomic_write(os.path.join(out_dir, "meta.json"), lambda f: json.dump(meta, f, indent=1),
                     text=True)
    # a run that fails leaves no folder behind (an existing one keeps what it had)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    seconds = time.time() - t0
    report(meta)
    corpus.print_hint(files, split)
    print(f"wrote {out_dir} in {seconds:.1f}s")
    return meta


def write_batch(batch: list, tok, writers: dict, stats: dict, num_proc: int, bar):
    """Encode a batch of (split, text, starts_document) pieces and append them to their split's
    shards."""
    encoded = tok.encode_batch([text for _, text, _ in batch], num_proc)
    for (part, text, starts), ids in zip(batch, encoded):
        st = stats[part]
        if starts:
            # <|endoftext|> between documents
            ids = [tok.eot_token] + ids if st["documents"] else ids
            st["documents"] += 1
        writers[part].write(ids)
        nbytes = len(text.encode("utf-8"))
        st["tokens"] += len(ids)
        st["chars"] += len(text)
        st["bytes"] += nbytes
        st["replaced"] += text.count("\ufffd")
        bar.update(nbytes)


def report(meta: dict):
    if meta["decode_errors"]:
        print(f"warning: {meta['decode_errors']} invalid UTF-8 sequences were replaced by U+FFFD")
    for part, st in meta["splits"].items():
        print(f"{part}: {st['documents']:,} documents, {st['tokens']:,} tokens, "
              f"{st['bytes'] / max(st['tokens'], 1):.2f} bytes/token, in {len(st['shards'])} "
              f"shard(s)")


def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--input", help="text file(s): a path, a glob or a comma-separated list "
                        "(.txt, .jsonl, .jsonl.gz, .csv, .tsv) (default: OpenWebText from the "
                        "Hugging Face hub)")
    parser.add_argument("--name", help="output goes to data/NAME/ (default: the input's file name)")
    parser.add_argument("--out_dir", help="output folder, instead of data/NAME/")
    parser.add_argument("--split", help="in .txt files, a line holding only this text separates "
                        "documents (e.g. %%; '' splits on blank lines), or 'line': each line is "
                        "one (default: a document per file)")
    parser.add_argument("--column", default="text", help="the field of .jsonl, or the column of "
                        ".csv/.tsv, that holds the text (default text)")
    parser.add_argument("--tokenizer", default="gpt2", help="gpt2; bpe (train one on this text); "
                        "char (its characters); or a folder with vocab.json + merges.txt, a data "
                        "folder, a checkpoint to reuse theirs (default gpt2)")
    parser.add_argument("--vocab_size", type=int, default=5000,
                        help="tokens for --tokenizer=bpe (default 5000)")
    parser.add_argument("--val_fraction", type=float, default=None, help="fraction held out for "
                        "validation (default 0.1; 0.0005 for OpenWebText)")
    parser.add_argument("--num_proc", type=in_range(1, 1024), default=os.cpu_count() or 1,
                        help="tokenizer threads (default: the number of CPUs)")
    parser.add_argument("--seed", type=in_range(0, 2**32 - 1), default=1337,
                        help="seed of the train/val assignment (default 1337)")
    args = parser.parse_args(argv)
    if "" in (args.name, args.out_dir) or os.sep in (args.name or ""):
        raise ValueError("--name must be a plain name (data/NAME/) and --out_dir a folder; neither "
                         "can be empty")
    files = corpus.expand_inputs(args.input) if args.input is not None else None
    name = args.name or (os.path.basename(files[0]).split(".")[0] if files else "openwebtext")
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 0.1 if files else 0.0005
    prepare(files, args.out_dir or os.path.join(DATA_ROOT, name), args.tokenizer, args.vocab_size,
            args.split, val_fraction, args.seed, args.num_proc, progress=sys.stderr.isatty(),
            column=args.column)


if __name__ == "__main__":
    one_line_errors()
    main()
