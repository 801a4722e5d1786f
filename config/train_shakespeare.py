"""A small GPT on a ~1 MB text with GPT-2's tokenizer, on a CPU in a few minutes (any text works alike).

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare   # GPT-2's tokenizer
    python train.py config/train_shakespeare.py
    python sample.py --checkpoint=out-shakespeare -p "ROMEO:"

Small data overfits quickly: dropout, a short context and frequent evaluation keep that in view.
"""

out_dir = "out-shakespeare"
dataset = "shakespeare"
eval_interval = 250
eval_iters = 20
log_interval = 10
always_save_checkpoint = False  # keep the best val loss, not the last
sample_interval = 250

gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.1

learning_rate = 1e-3
max_iters = 2000
lr_decay_iters = 2000
min_lr = 1e-4
beta2 = 0.99  # a little higher: few tokens per step
warmup_iters = 100

