"""GPT-2 (124M) on OpenWebText, nanoGPT's recipe: ~0.5M tokens per step, 600k steps (~300B tokens).

    python data/prepare.py                                      # once: OpenWebText -> data/openwebtext/
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py

On 8x A100 40GB this reaches a val loss of ~2.85 in about 4 days (nanoGPT's figure). The global batch,
12 sequences x 1024 tokens x 40 micro-steps = 491,520 tokens, is the same for any number of processes:
gradient_accumulation_steps is divided among them. A GPU recipe: on a 2-core CPU a micro-step of 12 x 1024
tokens takes 100 s (measured), an optimizer step about an hour.
"""

dataset = "openwebtext"
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

max_iters = 600000
lr_decay_iters = 600000

eval_interval = 1000
eval_iters = 200
log_interval = 10

weight_decay = 1e-1
