"""
Modules that a first reading can skip: each does one job for the scripts at the top of the repository, and
none of them changes what the model computes.

    ckpt.py       checkpoints: atomic save, safe load (weights_only, CRC), the model and tokenizer inside
    checks.py     the ranges of train.py's settings, checked before a run reads or writes anything
    devices.py    device and precision, autocast, the DDP process group, the peak FLOP/s for MFU
    speedups.py   CPU fast paths: the chunked lm_head + loss for training, row-block weights for decoding
    hf.py         Hugging Face interop: OpenAI's GPT-2 weights in, our checkpoints out
    optim.py      Muon beside AdamW as one optimizer; AdamW's state sharded over processes (ZeRO-1)
    loss_eval.py  train.py's evaluations; the loss over every token of a text: nats/token, nats/char,
                  bits/byte, perplexity
    hellaswag.py  HellaSwag's examples and their scoring, for eval.py and for train.py's runs
    generation.py sample.py's prompts, batches of prompts, their text streamed and cut at stop texts;
                  train.py's samples during a run
    prepare_progress.py
                  data/prepare.py's progress.json: continuing a stopped prepare, refusing another
    plot.py       a run's log.jsonl (and Weights & Biases), and loss.png drawn from it
    common.py     one-line errors for bad input, command-line parsing, atomic file writes

The scripts import these; these import model.py and data/. Nothing in model.py or data/ imports them, but
for three lazy imports that say why: reading OpenAI's weights, a tokenizer kept in a checkpoint, and
decoding through row blocks on a CPU.
"""
