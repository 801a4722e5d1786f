"""The committed checkpoint's recipe (checkpoint/): an 11M-parameter GPT on tinyshakespeare, on a 2-core CPU.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_bpe --tokenizer=bpe --vocab_size=2048
    python train.py config/train_shakespeare_bpe.py     # 1.4610 nats/char; 56 min of steps on a 2-core CPU
    python export.py --checkpoint=out-shakespeare-bpe --half=checkpoint/ckpt.pt   # fp16 weights, no optimizer

A byte-level BPE of 2,048 tokens trained on the train split (~2.6-2.9 characters per token, so the
128-token context sees ~330 characters), 6 layers of width 384, Muon on the blocks' matrices and AdamW
on the rest, and the best-val weights kept. The train split is only ~347k tokens: an hour of steps
makes ~14 passes over it, and a model this wide memorises it unless held back, here by dropout 0.25
and a weight decay of 0.6 (docs/performance.md has the runs that chose them).

The run stops after 56 minutes of training steps whatever the machine's speed, with the cosine decay
following the clock (here: 1,222 steps of 2.4-2.9 s, 62 min with the evaluations). A faster machine
does more steps in the same minutes; for a fixed number of steps instead, give
--max_seconds=0 --max_iters=N --lr_decay_iters=N.
"""

out_dir = "out-shakespeare-bpe"
dataset = "shakespeare_bpe"
max_seconds = 3360.0  # of training steps; the evaluations add ~6 min here
max_iters = 1_000_000  # the clock ends the run
eval_interval = 100
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
dropout = 0.25  # 0.3 learns too slowly for an hour; 0.2 stalls before the hour is out
bias = False
gelu = "exact"  # the same training as GPT-2's tanh GELU, and a few percent faster on a CPU

optimizer = "muon"  # on the blocks' matrices; AdamW for the embeddings, gains and biases
learning_rate = 2e-3  # AdamW's: the embeddings, gains and biases
muon_lr = 4e-3
warmup_iters = 50
min_lr = 2e-4
beta2 = 0.99
weight_decay = 0.6  # on the matrices, both optimizers'
