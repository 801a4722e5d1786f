"""Evaluate OpenAI's GPT-2 (774M) on a prepared dataset without training (nothing is saved but the log).

    python data/prepare.py                                      # once: OpenWebText -> data/openwebtext/
    python train.py config/eval_gpt2_large.py

nanoGPT reports val loss 2.67 on OpenWebText. --init_from=DIR evaluates a local Hugging Face-format
folder instead (offline); --dataset=... any dataset prepared with GPT-2's tokenizer.
A GPU is the place for it: on a 2-core CPU this model would take about 6 times gpt2's 8 hours.
"""

out_dir = "out-eval-gpt2-large"  # only log.jsonl (and a plot) is written here; no checkpoint
init_from = "gpt2-large"
dataset = "openwebtext"
eval_only = True
eval_iters = 500  # 500 x 8 x 1024 = 4M tokens per split: a good estimate
batch_size = 8
block_size = 1024
