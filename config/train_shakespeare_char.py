"""nanoGPT's character-level Shakespeare, with nanoGPT's settings: a 10.7M-parameter GPT on a GPU.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_char --tokenizer=char
    python train.py config/train_shakespeare_char.py
    python sample.py --checkpoint=out-shakespeare-char -n 3

nanoGPT reports val loss 1.4697 after 5,000 iterations, about 3 minutes on one A100. Its model differs from
GPT-2's defaults here in two ways, set below: no biases and the exact GELU. On a 2-core CPU an iteration takes
14 s (measured over 5), the 5,000 about 19 hours: config/train_shakespeare_char_cpu.py is nanoGPT's laptop
variant, 1 min 43 s.
"""

out_dir = "out-shakespeare-char"
eval_interval = 250  # keep frequent because we'll overfit
eval_iters = 200
log_interval = 10  # don't print too too often
always_save_checkpoint = False  # we expect to overfit on this small dataset, so only save when val improves

wandb_log = False  # override via command line if you like
wandb_project = "shakespeare-char"
wandb_run_name = "mini-gpt"

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # context of up to 256 previous characters

# baby GPT model :)
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
bias = False  # nanoGPT's default
gelu = "exact"  # nanoGPT's MLP

learning_rate = 1e-3  # with baby networks can afford to go a bit higher
max_iters = 5000
lr_decay_iters = 5000  # make equal to max_iters usually
min_lr = 1e-4  # learning_rate / 10 usually
beta2 = 0.99  # make a bit bigger because number of tokens per iter is small

warmup_iters = 100  # not super necessary potentially
