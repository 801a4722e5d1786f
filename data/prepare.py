"""
Turn text into the token shards that train.py reads (data/shards.py has the format; corpus.py reads
the files).

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare  # data/shakespeare/
    python data/prepare.py --input="quotes/*.txt" --split=%   # documents separated by a '%' line
    python data/prepare.py --input=titles.txt --split=line    # one document per line
    python data/prepare.py --input=posts.csv --column=body --tokenizer=bpe --vocab_size=5000
    python data/prepare.py --input=more.txt --tokenizer=data/custom  # data/custom's tokenizer
    python data/prepare.py                                    # OpenWebText -> data/openwebtext/
    python data/prepare.py --hf_dataset=HuggingFaceFW/fineweb-edu --hf_config=sample-10BT
    python data/prepare.py --hf_dataset=pq   # a folder: pq/data/train-00000-of-00002.parquet, ...

A text that is one document (one file, no --split) is split like nanoGPT's shakespeare: its first
1-val_fraction goes to train, the rest to val. Otherwise each document goes to val with probability
val_fraction (seeded), and each split gets at least one. Documents are separated by <|endoftext|>.
Text is read, tokenized (on --num_proc threads) and written in bounded batches: memory stays flat
whatever the size.

A prepare that stops (Ctrl-C, a lost connection, a full disk, kill -9) keeps its complete shards and
progress.json; the same command, run again, continues from there to the very bytes an uninterrupted
run writes. Another command over that half-finished folder is refused; over a finished one, the same
command has nothing to do, and another prepares it anew.
"""

import itertools
import json
import os
import signal
import sys
import time

# the repository's root, for `python data/prepare.py` run as a script
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data import corpus, shards
from data.tokenizer import load_tokenizer
from data.tokenizer_files import save_tokenizer
from support.common import ArgumentParser, atomic_write, check_writable, in_range, one_line_errors
from support.prepare_progress import PROGRESS, Progress, read_json, read_state, stopped, the_job


def prepare(files: list[str] | None, out_dir: str, tokenizer_name: str = "gpt2",
            vocab_size: int = 5000, split: str | None = None, val_fraction: float = 0.1,
            seed: int = 1337, num_proc: int = 8, progress: bool = True, column: str = "text",
            hub: tuple | None = None, shard_tokens: int | None = None) -> dict:
    """Tokenize the documents of `files`, or else of the Hugging Face dataset hub = (name, config,
    split) (default: OpenWebText), into out_dir's shards and meta.json; returns the meta dict. A
    prepare that stopped continues where it was."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    check_writable(out_dir)
    hub = None if files else hub or (corpus.OPENWEBTEXT["name"], None, "train")
    job = the_job(files, hub, tokenizer=tokenizer_name,
                  vocab_size=vocab_size if tokenizer_name == "bpe" else None, split=split,
                  column=column, seed=seed, val_fraction=val_fraction,
                  shard_tokens=shard_tokens or shards.SHARD_TOKENS)
    state = read_state(out_dir, job)
    meta = read_json(os.path.join(out_dir, "meta.json")) if state is None else None
    if isinstance(meta, dict) and meta.get("job") == job:
        print(f"{out_dir} is already prepared from this input with these arguments: nothing to do")
        return meta
    t0, created = time.time(), not os.path.exists(out_dir)
    docs = lambda: corpus.pieces_by_split(files, split, val_fraction, seed, column, hub)
    run = None
    try:
        if state:
            tok = load_tokenizer(state["tokenizer"], f"{out_dir}/{PROGRESS}")
        else:
            tok = corpus.tokenizer_for(tokenizer_name, vocab_size, docs)
        os.makedirs(out_dir, exist_ok=True)
        if tok.name == "bpe":
            # vocab.json + merges.txt beside the shards (GPT-2's format)
            save_tokenizer(tok, out_dir)
        run = Run(out_dir, tok, job, state)
        total = sum(os.path.getsize(f) for f in files) if files else corpus.hub_rows(*hub)
        meta = run.tokenize(docs, num_proc, total, progress)
        meta.update(source=files or hub[0], seed=seed, val_fraction=val_fraction)
        run.finish(meta)
    except BaseException as e:
        stopped(out_dir, created, run, e)
        raise
    report(meta)
    corpus.print_hint(files, split)
    print(f"wrote {out_dir} in {time.time() - t0:.1f}s")
    return meta


class Run(Progress):
    """Encodes the documents into both splits' shards and counts them; Progress
    (support/prepare_progress.py) records where it is each time a shard is complete."""

    def tokenize(self, docs, num_proc: int, total: int | None, progress: bool) -> dict:
        """Encode the pieces not yet written (the ones before are read again, not encoded)."""
        from tqdm import tqdm

        # a dataset's rows are counted as documents, files as bytes
        hub = not isinstance(self.job["source"][0], list)
        done = sum(st["documents" if hub else "bytes"] for st in self.stats.values())
        bar = tqdm(total=total, initial=done, unit="doc" if hub else "B", unit_scale=True,
                   desc=f"tokenizing ({self.tok.name})", disable=not progress)
        # a batch at most about a quarter of a shard: progress is recorded close to each shard
        pieces = itertools.islice(docs(), self.pieces, None)
        groups = corpus.batches(pieces, min(1 << 20, self.job["shard_tokens"]))
        for batch, encoded in corpus.encode_batches(self.tok, groups, num_proc):
            for (part, text, starts), ids in zip(batch, encoded):
                nbytes = self.write(part, text, starts, ids)
                bar.update(int(starts) if hub else nbytes)
            self.pieces += len(batch)
            if any(w.pending for w in self.writers.values()):
                self.checkpoint()
        bar.close()
        return dict(format="gpt-shards", version=shards.VERSION, tokenizer=self.tok.name,
                    vocab_size=self.tok.n_vocab, eot_token=self.tok.eot_token,
                    dtype=self.writers["train"].dtype.name, splits=self.stats,
                    **({"chars": self.tok.chars} if self.tok.name == "char" else {}))

    def write(self, part: str, text: str, starts: bool, ids) -> int:
        """Append a piece's ids to its split; returns its size in bytes."""
        st = self.stats[part]
        if starts:
            # <|endoftext|> between documents
            if st["documents"]:
                self.writers[part].write([self.tok.eot_token])
                st["tokens"] += 1
            st["documents"] += 1
        self.writers[part].write(ids)
        st["tokens"] += len(ids)
        st["chars"] += len(text)
        nbytes = len(text.encode("utf-8"))
        st["bytes"] += nbytes
        st["replaced"] += text.count("\ufffd")
        return nbytes

    def finish(self, meta: dict):
        """Seal the last shards and write meta.json."""
        for part, w in self.writers.items():
            self.stats[part]["shards"] = w.close()
            if self.stats[part]["tokens"] == 0:
                raise ValueError(f"the {part} split is empty: the input has no text (or too "
                                 f"little for val_fraction={meta['val_fraction']}, or a single "
                                 f"document: see --split)")
        meta["decode_errors"] = sum(st.pop("replaced") for st in self.stats.values())
        meta["job"] = self.job
        atomic_write(os.path.join(self.out_dir, "meta.json"),
                     lambda f: json.dump(meta, f, indent=1), text=True)
        self.clean_up()


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
    parser.add_argument("--hf_dataset", help="a Hugging Face dataset instead of --input: a name on "
                        "the hub (streamed), or a local folder of parquet/arrow/jsonl files in the "
                        "hub's layout; rows with an empty text are skipped, a row whose text is "
                        "missing or not a string is refused (default: Skylion007/openwebtext)")
    parser.add_argument("--hf_config", help="the dataset's configuration (subset), e.g. "
                        "sample-10BT (default: none)")
    parser.add_argument("--hf_split", default="train", help="the dataset's split to read; "
                        "--val_fraction of it is held out (default train)")
    parser.add_argument("--name", help="output goes to data/NAME/ (default: the input's file name)")
    parser.add_argument("--out_dir", help="output folder, instead of data/NAME/")
    parser.add_argument("--split", help="in .txt files, a line holding only this text separates "
                        "documents (e.g. %%; '' splits on blank lines), or 'line': each line is "
                        "one (default: a document per file)")
    parser.add_argument("--column", default="text", help="the field of .jsonl, the column of "
                        ".csv/.tsv or of the dataset, that holds the text (default text)")
    parser.add_argument("--tokenizer", default="gpt2", help="gpt2; bpe (train one on this text); "
                        "char (its characters); or a folder with vocab.json + merges.txt, a data "
                        "folder, a checkpoint to reuse theirs (default gpt2)")
    parser.add_argument("--vocab_size", type=in_range(257, 10**7), default=5000,
                        help="tokens for --tokenizer=bpe: 256 bytes, merges, <|endoftext|> "
                        "(default 5000)")
    parser.add_argument("--val_fraction", type=float, default=None, help="fraction held out for "
                        "validation (default 0.1; 0.0005 for a Hugging Face dataset)")
    parser.add_argument("--num_proc", type=in_range(1, 1024), default=os.cpu_count() or 1,
                        help="tokenizer threads (default: the number of CPUs)")
    parser.add_argument("--seed", type=in_range(0, 2**32 - 1), default=1337,
                        help="seed of the train/val assignment (default 1337)")
    parser.add_argument("--shard_tokens", type=in_range(1, 2**40), default=shards.SHARD_TOKENS,
                        help="tokens per shard file; a stopped prepare continues from its last "
                        f"complete shard (default {shards.SHARD_TOKENS:,})")
    args = parser.parse_args(argv)
    if "" in (args.name, args.out_dir, args.hf_dataset) or os.sep in (args.name or ""):
        raise ValueError("--name must be a plain name (data/NAME/), --out_dir and --hf_dataset "
                         "a folder or name; none can be empty")
    if args.input is not None and args.hf_dataset is not None:
        raise ValueError("give --input (your files) or --hf_dataset (a dataset), not both")
    files = corpus.expand_inputs(args.input) if args.input is not None else None
    hub = (args.hf_dataset or corpus.OPENWEBTEXT["name"], args.hf_config, args.hf_split)
    name = args.name or (os.path.basename(files[0]).split(".")[0] if files else
                         os.path.basename(hub[0].rstrip("/" + os.sep)))
    val_fraction = args.val_fraction
    if val_fraction is None:
        val_fraction = 0.1 if files else 0.0005
    # a SIGTERM stops like Ctrl-C: the complete shards are kept, and said
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        prepare(files, args.out_dir or os.path.join(shards.DATA_ROOT, name), args.tokenizer,
                args.vocab_size, args.split, val_fraction, args.seed, args.num_proc,
                progress=sys.stderr.isatty(), column=args.column, hub=None if files else hub,
                shard_tokens=args.shard_tokens)
    finally:
        signal.signal(signal.SIGTERM, before)


if __name__ == "__main__":
    one_line_errors()
    main()
