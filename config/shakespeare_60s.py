"""Best val loss in about a minute of CPU, from nothing: tokenizer, training and the final report.

    python data/prepare.py --input=shakespeare.txt --tokenizer=bpe --vocab_size=1024   # ~2-5 s
    python train.py config/shakespeare_60s.py

The training stops after max_seconds of steps whatever the machine's speed, with the cosine decay run
over that time, so a slower machine does fewer steps but still finishes its schedule. Nothing is tuned to
one text: a byte-level BPE of 1,024 tokens trained on the train split (characters are too short a unit
for 50 s: they stall near 2.7 nats/char), and a small model that takes ~20 M tokens per ~minute here.
"""

out_dir = "out-shakespeare-60s"
dataset = "shakespeare"
max_seconds = 48.0  # training steps only; start-up, evaluation and the final report add ~5 s
max_iters = 1_000_000  # the clock ends the run
eval_interval = 1_000_000  # evaluate at the start and the end only: every second counts
eval_iters = 10
log_interval = 50
always_save_checkpoint = False
peak_flops = 170e9  # this CPU's fp32 matmul peak, given to save the 1 s measurement (MFU display only)

gradient_accumulation_steps = 1
batch_size = 32
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0  # 50 s is far too short to overfit
bias = False

learning_rate = 3e-3
warmup_iters = 30
min_lr = 3e-4
beta2 = 0.99
weight_decay = 0.1

