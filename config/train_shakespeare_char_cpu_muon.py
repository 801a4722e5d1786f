"""nanoGPT's character-level Shakespeare on a laptop CPU (config/train_shakespeare_char_cpu.py), with Muon on
the blocks' matrices and AdamW on the rest; every other setting is nanoGPT's.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_char --tokenizer=char
    python train.py config/train_shakespeare_char_cpu_muon.py

Measured on a 2-core CPU (load 1.9), side by side with the AdamW recipe: val 1.7361 at iteration 2,000
(the estimate over 20 batches), 1.7182 nats/char over the whole val split, in 2 min 27 s; AdamW's 1.8908
and 1.8774, in 1 min 47 s. Muon's orthogonalisation makes each step about 1.4x as long here.
"""

out_dir = "out-shakespeare-char-cpu-muon"
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

learning_rate = 1e-3  # AdamW's, for the embeddings, the gains and the biases
optimizer = "muon"
muon_lr = 1e-3  # Muon's updates are scaled to the size of AdamW's, so the same rate suits both
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = "cpu"
compile = False
