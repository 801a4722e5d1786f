"""
Benchmark our train_tokenizer / tiktoken encoding against the `tokenizers` library's own
ByteLevelBPETokenizer: training time, compression (bytes per token on held-out text), encode MB/s.

    python bench/bench_tokenizer.py                 # 100 MB of synthetic multilingual text (see below)
    python bench/bench_tokenizer.py --input="corpus/*.txt" --mb=100

Without --input there is no real 100 MB corpus offline, so the text is SYNTHETIC: tinyshakespeare
(data/tinyshakespeare.txt) mixed with generated pseudo-words in several scripts (Zipf-distributed, so frequent
words are frequent, as in real text), numbers, source code, base64 blobs and whitespace runs.
Absolute numbers depend on the text; the comparison is like for like (same text, same run).
"""

import base64
import glob
import itertools
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's root
from data.bpe import train_tokenizer
from data.tokenizer import EOT
from support.common import ArgumentParser

SHAKESPEARE = Path(__file__).resolve().parents[1] / "data" / "tinyshakespeare.txt"

# syllables per script: pseudo-words built from them look (to BPE) roughly like the language
SYLLABLES = {
    "en": "the an ing er on re in ed nd ha at en es of or nt ea ti to it st io le is ou ar as".split(),
    "de": "sch ein ung ver ich ge be en ie ei au ä ö ü ß zu der die das mit nicht auch".split(),
    "fr": "le la les qu é è ê à ç on ou re ent ai eau tion de un une est pas pour".split(),
    "ru": "при вет ка ко на по ра ст но то ни ли ть ся во да ый ая ое мо же".split(),
    "el": "κα λη με ρα το τη ου αι ει πο λυ σε μα νο".split(),
    "zh": list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年"),
    "ja": list("のにはをたがでてとしれさあいうえおかきくけこなまやらわん"),
    "ar": "ال من في على ما لا ان هو كا نت".split(),
}
EMOJI = list("😀😂🥲🚀🌍🎉👍🏽❤️🔥✨")
CODE = [
    "def {w}(x, y=None):\n    if x is None:\n        return []\n    return [i * 2 for i in range(x)]\n",
    "for (int i = 0; i < n; ++i) {{\n\tsum += a[i] * {n};\n}}\n",
    "const {w} = async (req, res) => {{ await db.query('SELECT * FROM t WHERE id = ?', [{n}]); }};\n",
    "    self.{w} = nn.Linear({n}, {n}, bias=False)  # projection\n",
]


def synthetic_text(n_bytes: int, seed: int = 0) -> str:
    """~n_bytes of varied multilingual text, deterministic for a given seed."""
    rng = random.Random(seed)
    lexicon = {lang: ["".join(rng.choices(syl, k=rng.randint(1, 4))) for _ in range(20_000)]
               for lang, syl in SYLLABLES.items()}
    cum_weights = list(itertools.accumulate(1 / (r + 1) for r in range(20_000)))  # Zipf
    shakespeare = SHAKESPEARE.read_text(encoding="utf-8")
    parts, size = [], 0
    while size < n_bytes:
        kind = rng.random()
        if kind < 0.15:  # a slice of real English
            i = rng.randrange(len(shakespeare) - 2000)
            part = shakespeare[i:i + rng.randint(200, 2000)]
        elif kind < 0.8:  # a paragraph of pseudo-words in one language
            lang = rng.choice(list(SYLLABLES))
            words = rng.choices(lexicon[lang], cum_weights=cum_weights, k=rng.randint(20, 200))
            sep = "" if lang in ("zh", "ja") else " "
            for j in range(0, len(words), rng.randint(5, 15)):  # punctuation, numbers, capitals
                w = words[j]
                words[j] = rng.choice([w.capitalize() + ",", w + ".", str(int(rng.paretovariate(0.8))),
                                       w + rng.choice(EMOJI), f"({w})", w])
            part = sep.join(words) + rng.choice([".\n\n", "\n", "!\n\n", " \n", "\n\t"])
        elif kind < 0.95:  # code
            part = "".join(rng.choice(CODE).format(w=rng.choice(lexicon["en"]), n=rng.randint(0, 4096))
                           for _ in range(rng.randint(1, 6))) + "\n"
        else:  # base64 blob (every one unique, so keep them rare) and odd whitespace
            blob = base64.b64encode(rng.randbytes(rng.randint(30, 300))).decode()
            part = blob + " " * rng.randint(1, 9) + "\n"
        parts.append(part)
        size += len(part.encode("utf-8"))
    return "".join(parts)


def main(argv=None):
    parser = ArgumentParser(__doc__)
    parser.add_argument("--mb", type=float, default=100, help="MB of training text (default 100)")
    parser.add_argument("--vocab_size", type=int, default=5000, help="tokens in the vocabulary (default 5000)")
    parser.add_argument("--input", default="", help="glob of UTF-8 text files (default: synthetic text)")
    parser.add_argument("--heldout_mb", type=float, default=5, help="MB of held-out text to encode (default 5)")
    args = parser.parse_args(argv)
    from tokenizers import ByteLevelBPETokenizer

    # 1) the text: training part written to a file (the library's trainer reads files), plus held-out text
    n_train, n_held = int(args.mb * 2**20), int(args.heldout_mb * 2**20)
    t0 = time.time()
    if args.input:
        files = sorted(glob.glob(args.input, recursive=True))
        text = "".join(Path(f).read_text(encoding="utf-8", errors="replace") for f in files)
        text = text.encode()[: n_train + n_held].decode("utf-8", errors="ignore")
        source = f"{args.input} ({len(files)} files)"
    else:
        text = synthetic_text(n_train + n_held)
        source = "synthetic multilingual text + tinyshakespeare"
    # split at byte n_train (as a character index)
    cut = len(text) - len(text.encode()[n_train:].decode("utf-8", errors="ignore"))
    train_text, held = text[:cut], text[cut:]
    held_docs = held.split("\n\n")  # encode as a batch of documents, as data prep would
    tmp = tempfile.mkdtemp()
    train_path = os.path.join(tmp, "train.txt")
    Path(train_path).write_text(train_text, encoding="utf-8")
    print(f"text: {source}; train {len(train_text.encode()) / 1e6:.1f} MB, held-out "
          f"{len(held.encode()) / 1e6:.1f} MB (made in {time.time() - t0:.1f}s), {os.cpu_count()} CPUs")

    # 2) training, same file, same vocab size
    t0 = time.time()
    hf = ByteLevelBPETokenizer()
    hf.train(files=[train_path], vocab_size=args.vocab_size, special_tokens=[EOT], show_progress=False)
    t_hf = time.time() - t0
    t0 = time.time()
    with open(train_path, encoding="utf-8") as f:
        ours = train_tokenizer(f, vocab_size=args.vocab_size, max_chars=2 * n_train)
    t_ours = time.time() - t0

    # 3) compression on held-out text and encode throughput (batch of documents, all cores)
    mb = len(held.encode()) / 1e6
    t0 = time.time()
    ids_ours = ours.encode_batch(held_docs, num_threads=os.cpu_count() or 1)
    s_ours = time.time() - t0
    t0 = time.time()
    ids_hf = hf.encode_batch(held_docs)
    s_hf = time.time() - t0
    bpt_ours = mb * 1e6 / sum(map(len, ids_ours))
    bpt_hf = mb * 1e6 / sum(len(e.ids) for e in ids_hf)

    print(f"{'':34s} {'ours (tiktoken)':>16s} {'tokenizers':>12s}")
    print(f"{'vocab size':34s} {ours.n_vocab:16d} {hf.get_vocab_size():12d}")
    print(f"{'train time, s':34s} {t_ours:16.1f} {t_hf:12.1f}")
    print(f"{'bytes/token on held-out text':34s} {bpt_ours:16.3f} {bpt_hf:12.3f}")
    print(f"{'encode throughput, MB/s':34s} {mb / s_ours:16.1f} {mb / s_hf:12.1f}")
    os.remove(train_path)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
