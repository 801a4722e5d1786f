"""The committed checkpoint's recipe (checkpoint/): an 11M-parameter GPT on tinyshakespeare, on a 2-core CPU.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_bpe --tokenizer=bpe --vocab_size=2048
    python train.py config/train_shakespeare_bpe.py     # 1.4462 nats/char; 55 min of steps on a 2-core CPU
    python export.py --checkpoint=out-shakespeare-bpe --half=checkpoint/ckpt.pt   # fp16 weights, no optimizer

A byte-level BPE of 2,048 tokens trained on the train split (~2.6-2.9 characters per token, so the
128-token context sees ~330 characters), 6 layers of width 384, Muon on the blocks' matrices and AdamW
on the rest, bf16 matmuls, and the best-val weights kept. The train split is only ~347k tokens: an hour
of bf16 steps makes ~25 passes over it, and a model this wide memorises it unless held back, here by
dropout 0.25 and a weight decay of 1.6 (docs/performance.md has the runs that chose them).

The run stops after 55 minutes of training steps whatever the machine's speed, with the cosine decay
following the clock (here: 2,228 steps of 1.3-1.8 s, 58 min with the evaluations). A faster machine
does more steps in the same minutes; for a fixed number of steps instead, give
--max_seconds=0 --max_iters=N --lr_decay_iters=N.

bf16 needs a CUDA GPU or a CPU with native bf16 (AVX512-BF16 or AMX); elsewhere the run is float32
and does about half the steps, and there the weaker decay does better: --weight_decay=0.6 --max_seconds=3360
--eval_interval=100 reached 1.4610 in float32 in 1,222 steps.
"""

out_dir = "out-shakespeare-bpe"
dataset = "shakespeare_bpe"
max_seconds = 3300.0  # of training steps; the evaluations add ~3 min here
max_iters = 1_000_000  # the clock ends the run
eval_interval = 200
eval_iters = 20
log_interval = 50
always_save_checkpoint = False  # keep the best val loss
sample_interval = 700
sample_tokens = 120

gradient_accumulation_steps = 1
batch_size = 32
block_size = 128
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.25
bias = False
dtype = "bfloat16"  # 1.8x the steps of float32 here; float32, with a note, where bf16 is not native
gelu = "exact"  # the same training as GPT-2's tanh GELU, and a few percent faster on a CPU

optimizer = "muon"  # on the blocks' matrices; AdamW for the embeddings, gains and biases
learning_rate = 2e-3  # AdamW's: the embeddings, gains and biases
muon_lr = 4e-3
warmup_iters = 50
min_lr = 2e-4
beta2 = 0.99
weight_decay = 1.6  # on the matrices, both optimizers'; 0.6 and 1.2 overfit in bf16's ~2,200 steps
