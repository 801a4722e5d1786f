"""Evaluate OpenAI's GPT-2 (124M) on a prepared dataset without training (nothing is saved but the log).

    python data/prepare.py                                      # once: OpenWebText -> data/openwebtext/
    python train.py config/eval_gpt2.py

nanoGPT reports val loss 3.12 (train 3.11) on OpenWebText. --init_from=DIR evaluates a local Hugging Face-format
folder instead (offline); --dataset=... any dataset prepared with GPT-2's tokenizer.
On a 2-core CPU a batch of 8 x 1024 tokens takes 28 s (measured over 8), the 1,000 batches about 8 hours; a GPU
is the place for it.
"""

out_dir = "out-eval-gpt2"  # only log.jsonl (and a plot) is written here; no checkpoint
init_from = "gpt2"
dataset = "openwebtext"
eval_only = True
eval_iters = 500  # 500 x 8 x 1024 = 4M tokens per split: a good estimate
batch_size = 8
block_size = 1024
