"""The throughput benchmark's model: GPT-2's vocabulary (50,304 padded) on a small body.

    python bench/bench.py config/bench_gpt2vocab.py      # about 4 minutes on a 2-core CPU, with its references

n_layer 6, n_head 6, n_embd 384, context 256, batch 8: the lm_head and the loss over 50k classes are ~62%
of the FLOPs, which is where support/speedups.py's ChunkedLMHeadLoss earns its keep.
"""

n_layer = 6
n_head = 6
n_embd = 384
block_size = 256
batch_size = 8
gradient_accumulation_steps = 1
vocab_size = 50304
dropout = 0.0
