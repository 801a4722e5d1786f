"""
From text to token ids, in one folder: read in this order to follow a token from your file to a batch.

    prepare.py    the script: text -> token ids -> shards on disk, with meta.json beside them
    corpus.py     reading your files as documents: .txt (whole, delimited, one per line), .jsonl/.csv/.tsv
    tokenizer.py  GPT-2's tokenizer (offline), your own byte-level BPE, or characters; load_tokenizer()
    bpe.py        training a byte-level BPE on your text, saved in GPT-2's file format
    shards.py     the shard format, and Batches: the training windows train.py draws from the shards

and, for a second reading:

    tokenizer_files.py  the files tokenizers come in (vocab.json + merges.txt, tokenizer.json, meta.pkl)
    shard_writer.py     writing shards, so that a stopped prepare continues from its complete ones
    nanogpt.py          nanoGPT's data folders (headerless train.bin / val.bin, meta.pkl), as they are

Prepared datasets live in subfolders here (data/NAME/), which git ignores.
"""
