"""The committed checkpoint's recipe (checkpoint/): a 5M-parameter GPT on tinyshakespeare, on a 2-core CPU.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_bpe --tokenizer=bpe --vocab_size=2048
    python train.py config/train_shakespeare_bpe.py     # 1.4871 nats/char; 47 min on a 2-core CPU
    python export.py --checkpoint=out-shakespeare-bpe --half=checkpoint/ckpt.pt   # fp16 weights, no optimizer

A byte-level BPE of 2,048 tokens trained on the train split (~2.6-2.9 characters per token, so the
128-token context sees ~330 characters), 6 layers of width 256, dropout against overfitting (the train split is only
~347k tokens and the run makes ~16 passes over it), and the best-val weights kept.
"""

out_dir = "out-shakespeare-bpe"
dataset = "shakespeare_bpe"
max_iters = 1400
lr_decay_iters = 1400
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
n_head = 8
n_embd = 256
dropout = 0.15
bias = False

learning_rate = 2e-3
warmup_iters = 100
min_lr = 2e-4
beta2 = 0.99
weight_decay = 0.1

