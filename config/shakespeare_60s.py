"""Best val loss in about a minute of CPU, from nothing: tokenizer, training and the final report.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_bpe8k --tokenizer=bpe --vocab_size=8192
    python train.py config/shakespeare_60s.py    # 1.57-1.58 nats/char; 55 s for both on a 2-core CPU

The training stops after max_seconds of steps whatever the machine's speed, with the schedule run over
that time, so a slower machine does fewer steps but still finishes its schedule. Nothing is tuned to
one text. What the choices rest on (tinyshakespeare, nats/char on the whole val split, this 2-core CPU;
docs/performance.md has the table and the commands):
- The unit: a byte-level BPE trained on the train split. Longer tokens put more text through each step:
  vocab 1,024 1.83, 2,048 1.80, 4,096 1.74-1.76, 8,192 1.71-1.73 (AdamW, 45 s; characters stall near 2.7).
- The optimizer: Muon on the blocks' matrices (AdamW on the rest). At the same number of steps it gains
  0.04 nats/char over AdamW (500 steps: 1.624 against AdamW's 1.668 after 626), and it is best at twice
  AdamW's peak rate (2e-3 1.631, 4e-3 1.624, 8e-3 1.633). Its orthogonalisation costs a fixed time per
  step, which a batch of 16 shares better than one of 8 (1.611 and 1.625 in 48 s; 12 1.612, 32 1.660 in
  46 s).
- The schedule: holding the peak and falling linearly over the last 40% of the time (lr_schedule="wsd"),
  with AdamW's part at 3e-3, gains 0.014 over the cosine at 320 steps (1.605 against 1.619).
- The optimizers' settings, at 320 steps: no gradient clipping, min_lr 5e-4, AdamW's beta1 0.8, Muon's
  momentum 0.9 and muon_lr 6e-3 gain 0.013 together (1.593 against 1.606); each alone gains 0.002-0.003.
  In the clock's budget (46 s then): 1.589 and 1.593 against 1.612 and 1.617 with the settings before
  them. Evaluating on 5 batches instead of 10 leaves 48 s for the steps.
- On a text it was not tuned on (1 MB of package documentation) these settings give 1.889, the ones
  before them 1.913.
- bf16 matmuls, on a CPU with native bf16 (attention stays float32 while training): 442-450 steps
  in the 48 s against float32's 382-383, 1.572-1.573 nats/char against 1.580-1.581 (two runs of
  each, alternating; two more, on a slower minute, 403-404 steps and 1.579-1.580). A batch of 24
  instead gave 1.563-1.572 in bf16 and 1.586 in float32, within the runs' spread, so it stays 16.
  On the text above (as made again that day), 1.791 against float32's 1.794. Elsewhere the run is
  float32, as before.
"""

out_dir = "out-shakespeare-60s"
dataset = "shakespeare_bpe8k"  # its own BPE of 8,192 tokens: the command above
max_seconds = 48.0  # training steps only; start-up, the two evaluations and the final report add ~8 s
max_iters = 1_000_000  # the clock ends the run
eval_interval = 1_000_000  # evaluate at the start and the end only: every second counts
eval_iters = 5  # the final report scores the whole val split anyway
log_interval = 50
always_save_checkpoint = False
peak_flops = 410e9  # this CPU's bf16 matmul peak, given to save the 1 s measurement (MFU display only)

gradient_accumulation_steps = 1
batch_size = 16
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
gelu = "exact"  # the same training as GPT-2's tanh GELU, and a few percent faster on a CPU
dropout = 0.0  # a minute is far too short to overfit
bias = False

optimizer = "muon"  # on the blocks' matrices; AdamW for the embeddings, gains and biases
learning_rate = 3e-3  # AdamW's: the embeddings, gains and biases
muon_lr = 6e-3
muon_momentum = 0.9
lr_schedule = "wsd"  # hold the peak, then fall linearly over the last 40% of the time
wsd_decay = 0.4
warmup_iters = 30
min_lr = 5e-4
beta1 = 0.8
beta2 = 0.99
weight_decay = 0.1
grad_clip = 0.0  # both optimizers normalise their steps already; clipping them cost 0.003 at 320 steps

dtype = "bfloat16"  # where the CPU has native bf16; float32 elsewhere, with a note

