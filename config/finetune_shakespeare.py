"""Fine-tune OpenAI's GPT-2 (124M) on a small text: a few iterations at a small learning rate.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare   # GPT-2's tokenizer
    python train.py config/finetune_shakespeare.py             # fetches gpt2 from the hub once
    python sample.py --checkpoint=out-shakespeare-ft -p "ROMEO:"

init_from can also be gpt2-medium/-large/-xl (more memory: lower batch_size, raise accumulation), or a
local Hugging Face-format folder (offline). The data must use GPT-2's tokenizer. Only a better val loss is
saved: on ~300k tokens GPT-2 starts to overfit within a few dozen iterations. On a 2-core CPU an iteration of
16,384 tokens takes 2.3 minutes (measured over 3, with a local GPT-2 124M), the 20 about 50 minutes; on a
GPU, seconds.
"""

out_dir = "out-shakespeare-ft"
init_from = "gpt2"
dataset = "shakespeare"
eval_interval = 5
eval_iters = 20
log_interval = 1
always_save_checkpoint = False
final_eval = True

# 4 x 8 x 512 = 16,384 tokens per iteration; a shorter context than GPT-2's 1024 crops the position table
batch_size = 4
gradient_accumulation_steps = 8
block_size = 512
dropout = 0.1

max_iters = 20
learning_rate = 3e-5  # small: nudge the pretrained weights, don't retrain them
decay_lr = False
