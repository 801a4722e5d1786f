"""GPT-2 (124M) on FineWeb-Edu's 10B-token sample, build-nanogpt's recipe: 2**19 = 524,288 tokens
per step, 19,073 steps (about one pass over the ~10B tokens), 715 warmup steps, a cosine decay from
6e-4 to 6e-5, weight decay 0.1, an eval and HellaSwag every 250 steps (build-nanogpt's settings; no
result of this recipe was measured here). build-nanogpt reports that this run passes GPT-2 124M's
HellaSwag accuracy and approaches GPT-3 124M's (0.337), in about 6 hours on 8 A100s.

    python data/prepare.py --hf_dataset=HuggingFaceFW/fineweb-edu --hf_config=sample-10BT \
        --name=fineweb_edu10B
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb.py

The global batch, 64 sequences x 1024 tokens x 8 micro-steps, is the same for any number of
processes: gradient_accumulation_steps is divided among them (8 GPUs: one micro-step each). A
prepare that stops continues where it was when the same command is run again.
"""

dataset = "fineweb_edu10B"
out_dir = "out-gpt2-fineweb"
batch_size = 64
block_size = 1024
gradient_accumulation_steps = 8

learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 715
max_iters = 19073
lr_decay_iters = 19073
weight_decay = 1e-1

eval_interval = 250
hellaswag_interval = 250  # acc_norm on HellaSwag's val split, downloaded once
eval_iters = 20
log_interval = 10
