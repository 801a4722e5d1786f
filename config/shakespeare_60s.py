"""Best val loss in about a minute of CPU, from nothing: tokenizer, training and the final report.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_bpe8k --tokenizer=bpe --vocab_size=8192
    python train.py config/shakespeare_60s.py    # 1.66-1.69 nats/char by the machine's speed; 52 s for both

The training stops after max_seconds of steps whatever the machine's speed, with the cosine decay run
over that time, so a slower machine does fewer steps but still finishes its schedule. Nothing is tuned to
one text. What the choices rest on (tinyshakespeare, 45 s, nats/char on the whole val split, this 2-core CPU):
- The unit: a byte-level BPE trained on the train split. Longer tokens put more text through each step:
  vocab 1,024 1.83, 2,048 1.80, 4,096 1.74-1.76, 8,192 1.71-1.73 (characters stall near 2.7).
- Many small steps beat fewer big ones: batch 32 1.90-1.97, 16 1.82-1.84, 8 1.80 (vocab 2,048); batch 4
  loses to per-step overhead.
- The learning rate peaks sharply for a model this small and a run this short: 1e-3 1.86, 1.5e-3 1.82,
  2e-3 1.80, 3e-3 1.89 (vocab 2,048, batch 8).
"""

out_dir = "out-shakespeare-60s"
dataset = "shakespeare_bpe8k"  # its own BPE of 8,192 tokens: the command above
max_seconds = 42.0  # training steps only; start-up, the two evaluations and the final report add ~12 s
max_iters = 1_000_000  # the clock ends the run
eval_interval = 1_000_000  # evaluate at the start and the end only: every second counts
eval_iters = 10
log_interval = 50
always_save_checkpoint = False
peak_flops = 170e9  # this CPU's fp32 matmul peak, given to save the 1 s measurement (MFU display only)

gradient_accumulation_steps = 1
batch_size = 8
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0  # 45 s is far too short to overfit
bias = False

learning_rate = 2e-3
warmup_iters = 30
min_lr = 2e-4
beta2 = 0.99
weight_decay = 0.1

