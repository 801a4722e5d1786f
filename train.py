"""
Train a GPT, in one process or in several with torchrun (DDP), on one node or many:

    python train.py config/train_shakespeare.py --max_iters=2000
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 train.py config/train_gpt2.py

Every setting below is a plain variable with its default (GPT-2 124M on OpenWebText, nanoGPT's
recipe and names); config files and --key=value arguments override them (--help lists them all). If
out_dir holds a checkpoint the run resumes from it, else it starts from scratch; it says which.
"""

import math
import os
import signal
import sys
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import configurator
from data.shards import Batches, data_dir as find_data_dir, read_meta
from data.tokenizer import check_fits, load_tokenizer
from model import GPT, GPTConfig
from support import checks, ckpt, devices, generation, hellaswag as hellaswag_eval, loss_eval, plot, speedups
from support.common import one_line_errors
from support.devices import device_type
from support.optim import MuonWithAdamW, shard_over_processes

# --------------------------------------------------------------------------------------------------
# The settings, with GPT-2 124M's defaults: the comment beside each is what --help prints
# I/O
out_dir = "out"  # where ckpt.pt, log.jsonl and loss.png are written
eval_interval = 2000  # evaluate, and save a checkpoint, every this many iterations
log_interval = 1  # print a line every this many iterations
eval_iters = 200  # batches per split in each evaluation
eval_only = False  # evaluate once and exit
always_save_checkpoint = True  # False: save only when the val loss improves
# 'auto' resumes out_dir/ckpt.pt if there is one, else starts from scratch; 'resume' insists on it
init_from = "auto"  # 'auto', 'scratch', 'resume', 'gpt2'(-medium/-large/-xl) or a HF weights folder
final_eval = True  # at the end, the loss over the whole val split, in nats/char and bits/byte
sample_interval = 0  # print a short sample every this many iterations (0: never)
sample_tokens = 200  # the length of those samples, in tokens
hellaswag_interval = 0  # score HellaSwag every this many iterations and at the end (0: never)
hellaswag = "val"  # its examples: a split (val, train or test; downloaded once) or a .jsonl file
hellaswag_limit = 0  # score only the first this many examples (0: all of them)
wandb_log = False  # also log to Weights & Biases (pip install wandb; offline: WANDB_MODE=offline)
wandb_project = "owt"  # its project
wandb_run_name = "gpt2"  # its run name
# data
dataset = "openwebtext"  # a folder under data/ made by data/prepare.py, or a path to one
gradient_accumulation_steps = 5 * 8  # micro-steps per optimizer step, over all processes together
batch_size = 12  # sequences per micro-step; 12 * 1024 * 40 = 491,520 tokens per optimizer step
block_size = 1024  # the context length: the model's and the training windows', one setting for both
# model
n_layer = 12  # transformer blocks
n_head = 12  # attention heads per block
n_embd = 768  # width of the residual stream
dropout = 0.0  # 0 for pretraining; 0.1+ for finetuning or small data
bias = True  # biases in Linears and LayerNorms, as in GPT-2
gelu = "tanh"  # GPT-2's tanh approximation; 'exact' (nanoGPT's erf) trains as well, faster on CPUs
vocab_size = 0  # 0: the data's tokenizer size, padded up to a multiple of 64
# the optimizer
optimizer = "adamw"  # 'adamw' (nanoGPT's), or 'muon': Muon on the blocks' matrices, AdamW on the rest
learning_rate = 6e-4  # the peak learning rate
muon_lr = 0.0  # with optimizer='muon', its peak learning rate (0: learning_rate's)
muon_momentum = 0.95  # with optimizer='muon', its momentum
max_iters = 600000  # optimizer steps in all
# with a time budget the cosine decay runs over that time instead of over iterations
max_seconds = 0.0  # > 0: also stop after this many seconds of training steps (not evaluations)
weight_decay = 1e-1  # AdamW's weight decay, on matrices only
beta1 = 0.9  # AdamW's beta1
beta2 = 0.95  # AdamW's beta2
eps = 1e-8  # AdamW's epsilon
grad_clip = 1.0  # clip the global gradient norm at this value (0: don't)
# learning rate schedule: a linear warmup, then a decay to min_lr
decay_lr = True  # False: learning_rate throughout
lr_schedule = "cosine"  # 'cosine' (nanoGPT's), or 'wsd': hold the peak, then fall linearly at the end
wsd_decay = 0.2  # with 'wsd', the fraction of the run (after warmup) that falls to min_lr
warmup_iters = 2000  # iterations of linear warmup
lr_decay_iters = 600000  # where the cosine decay ends (~= max_iters per Chinchilla)
min_lr = 6e-5  # the learning rate after the decay (~= learning_rate / 10 per Chinchilla)
# system
device = "auto"  # 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = "auto"  # 'auto': bfloat16 on CUDA (float16 on old GPUs), else float32; 'bfloat16' on a CPU needs native bf16
compile = None  # torch.compile the model; None: on CUDA only (on a CPU its minute pays back on long runs)
backend = ""  # the DDP backend; '': nccl on CUDA, gloo elsewhere
zero_stage = 0  # 1: under torchrun, each process keeps 1/world of AdamW's state (ZeRO-1)
seed = 1337  # seeds the initialisation, the batches and dropout
peak_flops = 0.0  # the device's peak FLOP/s for MFU; 0: the datasheet on known GPUs, else measured
# --------------------------------------------------------------------------------------------------
# The settings as given, checked: bad input ends the run in one line, before anything is written
one_line_errors()
# `python train.py > log &` shows each line as it happens (a notebook's output cannot reconfigure)
if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)
defaults = configurator.settings_of(globals())
config = configurator.configure(globals(), sys.argv[1:], doc=__doc__)
checks.check_settings(config)

# Processes and devices: one process, or one per GPU under torchrun, each with a share of the batch
device, dtype = devices.resolve_device(device, dtype)
ddp, rank, world, device = devices.setup_training(device, backend)
device_kind = device_type(device)
# rank 0 logs, makes the final report and writes the files; the global batch is split among all
master = rank == 0
log = print if master else (lambda *a, **k: None)
gradient_accumulation_steps //= world
ckpt_path = os.path.join(out_dir, "ckpt.pt")
# different dropout masks per process; DDP broadcasts rank 0's initial weights
torch.manual_seed(seed + rank)
ctx = devices.autocast(device, dtype)
# Ctrl-C or SIGTERM: the loop drops the step it is in (between micro-steps), saves, then stops
interrupted = []
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: interrupted.append(True))

# Data: the token shards and the tokenizer that data/prepare.py made (data/shards.py has the format)
data_path = find_data_dir(dataset)
meta = read_meta(data_path)
tokenizer = load_tokenizer(data_path)
data_vocab = meta["vocab_size"]
log(f"data: {data_path} ({tokenizer.name} tokenizer, {data_vocab:,} tokens in the vocabulary, "
    f"{meta['splits']['train']['tokens']:,} train / {meta['splits']['val']['tokens']:,} val tokens)")
# HellaSwag's examples for hellaswag_interval, checked against the tokenizer before any training
if hellaswag_interval:
    hs_examples = hellaswag_eval.for_training(hellaswag, hellaswag_limit, tokenizer, ddp, master)

# The model: resumed from out_dir's checkpoint, new, or OpenAI's GPT-2
has_checkpoint = os.path.exists(ckpt_path)
if init_from == "resume" and not has_checkpoint:
    raise ValueError(f"init_from=resume but there is no {ckpt_path}: use init_from=auto or scratch")
# a fine-tune's rerun resumes its own checkpoint, not the pretrained weights (eval_only rates those)
fine_tune_rerun = (has_checkpoint and not eval_only
                   and init_from not in ("auto", "scratch", "resume"))
resuming = fine_tune_rerun or (has_checkpoint and init_from in ("auto", "resume"))
iter_num, best_val_loss, train_seconds, state = 0, float("inf"), 0.0, None
if resuming:
    began = f" (a run that began from {init_from})" if fine_tune_rerun else ""
    log(f"resuming from {ckpt_path}{began}")
    state = ckpt.load(ckpt_path)
    changed = {k: v for k, v in config.items() if v != defaults[k]}
    model_args = ckpt.check_resume(state, ckpt_path, changed, tokenizer, optimizer)
    model = ckpt.model_from({**state, "model_args": {**model_args, "dropout": dropout}})
    iter_num, best_val_loss = state["iter_num"], float(state["best_val_loss"])
    block_size, train_seconds = model_args["block_size"], state.get("train_seconds", 0.0)
    if (iter_num >= max_iters or 0 < max_seconds <= train_seconds) and not eval_only:
        log(f"nothing left to do: {ckpt_path} is at iteration {iter_num}, {train_seconds:.0f} s of "
            f"training (max_iters={max_iters}, max_seconds={max_seconds:g}); raise one to train on")
        sys.exit(0)
    # the log shows the trajectory this checkpoint continues
    if master:
        plot.keep_log_until(out_dir, iter_num)
elif init_from in ("auto", "scratch"):
    if vocab_size and vocab_size < data_vocab:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the data's tokenizer "
                         f"({data_vocab} tokens): drop --vocab_size to take it from the data")
    if has_checkpoint and master:  # kept as ckpt.pt.old: a fresh start overwrites nothing
        ckpt.set_aside(ckpt_path)
    # the data's vocabulary padded up to a multiple of 64, for faster matmuls
    vocab_size = vocab_size or -(-data_vocab // 64) * 64
    model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                      bias=bias, gelu=gelu, vocab_size=vocab_size, dropout=dropout)
    log(f"starting from scratch: {n_layer} layers, {n_head} heads, width {n_embd}, "
        f"vocab {vocab_size}")
    model = GPT(GPTConfig(**model_args))
else:
    log(f"initializing from pretrained weights: {init_from}")
    model = GPT.from_pretrained(init_from, dict(dropout=dropout))
    theirs = load_tokenizer(init_from)
    check_fits(theirs, model.config.vocab_size, init_from, tokenizer, data_path)
    model_args = model.config.to_dict()
# e.g. GPT-2's 1024 positions, fine-tuned on shorter windows (a longer block_size is refused)
if block_size != model.config.block_size:
    model.crop_block_size(block_size)
    model_args["block_size"] = block_size
model.to(device)
log(f"model: {model.get_num_params() / 1e6:.2f}M parameters")
# the batches: random windows of block_size + 1 tokens, each process taking its share
train_data = Batches(data_path, meta, "train", block_size, batch_size, device)
val_data = Batches(data_path, meta, "val", block_size, batch_size, device)
tokens_per_iter = gradient_accumulation_steps * world * batch_size * block_size
log(f"tokens per iteration: {tokens_per_iter:,} ({world} process(es) x "
    f"{gradient_accumulation_steps} micro-steps x {batch_size} sequences x {block_size} tokens)")
# fp16 needs loss scaling so that small gradients don't flush to zero; bf16 and fp32 don't
scaler = torch.amp.GradScaler(device_kind, enabled=(dtype == "float16"))
# the setting's name becomes the optimizer it names
if optimizer == "muon":
    optimizer = MuonWithAdamW(model, muon_lr or learning_rate, muon_momentum, weight_decay,
                              learning_rate, (beta1, beta2), device_kind, eps)
else:
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2),
                                           device_kind, eps)
# ZeRO-1 splits AdamW's moments among the processes, which already share every gradient
zero = zero_stage == 1 and ddp
if zero:
    optimizer = shard_over_processes(optimizer)
# draws the batches; the same on every process
sampler = torch.Generator().manual_seed(seed)
# a resumed run continues exactly where the saved one was: optimizer, loss scale, random states
if state is not None:
    if not ckpt.restore_training(state, optimizer, scaler, sampler, rank, device_kind == "cuda"):
        log("note: the checkpoint holds no random states (nanoGPT's): batches and dropout restart")
# the checkpoint's tensors are in the model and optimizer now: free the copies
state = None
# out_dir is made when there is something to write; a run killed while saving leaves ckpt.pt.tmp
if master:
    ckpt.remove_partial(ckpt_path)
# a resumed run does not rewrite the checkpoint it just loaded
start_iter = iter_num
# the iteration of the checkpoint in out_dir, if there is one
saved_iter = iter_num if resuming else None

raw_model = model
use_compile = device_kind == "cuda" if compile is None else compile
# A CPU's fast paths (support/speedups.py), compiled or not: "chunked" is GPT.forward's loss computed
# without forming the logits, dropout with cheaper masks and attention in float32 under bf16;
# "plain" is GPT.forward as it reads.
cpu_loss = "chunked"
if device_kind == "cpu" and cpu_loss == "chunked":
    # swaps forwards on this model: model(x, y) gives (None, loss), dropout masks are integers
    speedups.use_cpu_training(model)
if use_compile:
    log("compiling the model (the first iteration takes longer)...")
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[int(device.split(":")[1])] if device_kind == "cuda" else None)


def stop_now() -> bool:
    """Whether Ctrl-C or SIGTERM came: every process gets the same answer, so all stop together."""
    return devices.any_process(bool(interrupted), ddp, device)


def get_lr(it: int, elapsed: float) -> float:
    """Linear warmup, then a decay to min_lr at lr_decay_iters (cosine, or the end of a held peak);
    with a time budget, at the end of max_seconds: a slow machine does fewer steps but still ends
    its schedule."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if max_seconds > 0:
        ratio = min(elapsed / max_seconds, 1.0)
    else:
        ratio = min((it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1), 1.0)
    if lr_schedule == "wsd":
        return min_lr + min(1.0, (1.0 - ratio) / wsd_decay) * (learning_rate - min_lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def save_checkpoint():
    """Every process takes part (each one's dropout RNG is gathered); rank 0 writes."""
    rng = devices.random_states(sampler, ddp, world, device_kind == "cuda")
    # ZeRO-1's shards come together on rank 0, the one that writes
    if zero:
        optimizer.consolidate_state_dict(to=0)
    # documents 1: sample.py starts an unprompted sample with "\n" rather than <|endoftext|>
    # scaler: fp16's loss scale ({} otherwise)
    state = dict(model=raw_model.state_dict(),
                 optimizer=optimizer.state_dict() if master else None, scaler=scaler.state_dict(),
                 model_args=model_args, config=config, iter_num=iter_num, rng=rng,
                 best_val_loss=best_val_loss, train_seconds=train_seconds,
                 tokenizer=tokenizer.to_dict(), dataset=os.path.abspath(data_path),
                 documents=meta["splits"]["train"].get("documents", 1))
    if master:
        ckpt.save(state, ckpt_path)
        log(f"saved checkpoint to {ckpt_path}")
    global saved_iter
    saved_iter = iter_num


peak, peak_source = devices.device_peak_flops(device, dtype, given=peak_flops)
log(f"device: {device}, {dtype}, peak {peak / 1e12:.2f} TFLOP/s ({peak_source})")
# log.jsonl, which loss.png is drawn from (and Weights & Biases with wandb_log): rank 0 writes
wandb_init = dict(project=wandb_project, name=wandb_run_name, config=config) if wandb_log else None
log_json = plot.RunLog(out_dir, wandb_init) if master else (lambda **entry: None)

# The training loop: evaluate and save every eval_interval steps, stop at max_iters or max_seconds
t_start = t0 = time.time()
running_mfu, step_time = -1.0, 0.0
while True:
    # every process stops after the same step
    stop = stop_now()
    if stop:
        # without always_save_checkpoint the best weights so far stay, if there are any yet
        if iter_num > start_iter and (always_save_checkpoint or saved_iter is None):
            save_checkpoint()
        log(f"interrupted at iteration {iter_num}: "
            + ckpt.how_to_continue(saved_iter, iter_num, best_val_loss))
        break
    lr = get_lr(iter_num, train_seconds)
    # Muon's groups keep their own peak, on the same schedule
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    done = iter_num >= max_iters or 0 < max_seconds <= train_seconds

    # evaluate the loss on both splits, and save a checkpoint
    if iter_num % eval_interval == 0 or done or eval_only:
        losses = loss_eval.estimate_loss(model, dict(train=train_data, val=val_data), eval_iters,
                                         seed, ctx, stop_now, rank, world)
        # cut off by Ctrl-C: the top of the loop stops the run
        if losses is None:
            continue
        log(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        log_json(iter=iter_num, train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                 tokens=iter_num * tokens_per_iter, time=time.time() - t_start)
        checks.finite(losses["val"], "val loss", iter_num)
        improved = losses["val"] < best_val_loss
        best_val_loss = min(best_val_loss, losses["val"])
        if iter_num > start_iter and (improved or always_save_checkpoint):
            save_checkpoint()
        if master:
            plot.plot_log(out_dir, quiet=True)
        if eval_only:
            break
    # HellaSwag, scored by eval.py's code, the examples shared out over the processes
    if hellaswag_interval and (iter_num % hellaswag_interval == 0 or done):
        hs = hellaswag_eval.score(raw_model, tokenizer, hs_examples, device, ctx, rank, world, stop_now)
        # cut off by Ctrl-C: the top of the loop stops the run
        if hs is None:
            continue
        log(f"step {iter_num}: hellaswag acc_norm {hs['acc_norm']:.4f} ({hs['right']}/{hs['n']})")
        log_json(iter=iter_num, hellaswag=hs["acc_norm"])
    if sample_interval and iter_num % sample_interval == 0 and master:
        # Ctrl-C ends the sample at the next token
        text = generation.training_sample(raw_model, tokenizer, sample_tokens, seed, ctx,
                                          stop=lambda: bool(interrupted))
        log(f"sample at step {iter_num}:\n{text}")
    if done:
        break

    # one optimizer step: each process takes its share of the global batch, loading it as it goes
    t_step = time.time()
    # the random states before the step: an abandoned step gives back its batch and dropout masks
    before_step = devices.random_states(sampler, False, 1, device_kind == "cuda")
    starts = train_data.draw(sampler, gradient_accumulation_steps * world)
    loss_sum = torch.zeros((), device=device)
    abandoned = False
    for micro_step in range(gradient_accumulation_steps):
        # Ctrl-C need not wait for a long step: every process abandons it at the same micro-step
        if stop_now():
            abandoned = True
            break
        X, Y = train_data.get(starts[rank * gradient_accumulation_steps + micro_step])
        # DDP all-reduces the gradients on the last micro-step only
        last = micro_step == gradient_accumulation_steps - 1
        with (model.no_sync() if ddp and not last else nullcontext()), ctx:
            _, loss = model(X, Y)
            # the gradients become a mean over the micro-steps
            loss = loss / gradient_accumulation_steps
        scaler.scale(loss).backward()
        loss_sum += loss.detach()
    if abandoned:
        # as after the last finished step: no gradients, nothing drawn; the top of the loop saves
        optimizer.zero_grad(set_to_none=True)
        devices.set_random_states(before_step, sampler, 0, device_kind == "cuda")
        continue
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    # free the gradients' memory now; it also saves a zero-fill
    optimizer.zero_grad(set_to_none=True)
    if ddp:
        dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
    # waits for the device, once per step
    lossf = loss_sum.item()
    checks.finite(lossf, "loss", iter_num)
    t1 = time.time()
    dt, t0 = t1 - t0, t1
    train_seconds += t1 - t_step
    # the learning rate and the last step must agree on every process: rank 0's clock decides
    if ddp and max_seconds > 0:
        train_seconds = devices.from_rank0(train_seconds, device)
    iter_num += 1
    step_time = 0.9 * step_time + 0.1 * (t1 - t_step) if step_time else t1 - t_step
    if iter_num % log_interval == 0 and master:
        tok_s = tokens_per_iter / dt
        mfu = raw_model.estimate_mfu(tok_s / world, peak)  # per device, as peak is
        running_mfu = mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * mfu
        left = (max(max_seconds - train_seconds, 0) if max_seconds
                else (max_iters - iter_num) * step_time)
        # a peak measured below what the model reaches would give an MFU over 100%: left out
        shown = f", mfu {running_mfu * 100:.1f}%" if running_mfu <= 1 else ""
        log(f"iter {iter_num}: loss {lossf:.4f}, lr {lr:.2e}, {dt * 1000:.1f}ms, {tok_s:,.0f} "
            f"tok/s ({tok_s / world:,.0f} per process){shown}, {left / 60:.1f} min left")
        log_json(iter=iter_num, loss=lossf, lr=lr, ms=dt * 1000, tokens_per_sec=tok_s,
                 mfu=mfu if mfu <= 1 else None, tokens=iter_num * tokens_per_iter,
                 time=time.time() - t_start)

# The final report: the loss over every token of the val split, comparable across tokenizers
# everything is saved: Ctrl-C or SIGTERM may now stop the report at once; a launcher's SIGTERM to
# a rank that is stopping already changes nothing
report = None
try:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if stop else signal.default_int_handler)
    if final_eval and not eval_only and not stop and master:
        # keeping the best val loss, ckpt.pt may hold an earlier step's weights: the report is on them
        if saved_iter not in (None, iter_num):
            raw_model.load_state_dict(ckpt.load(ckpt_path)["model"])
            log(f"the final report is on ckpt.pt's weights: step {saved_iter}'s, the best val loss")
        report = loss_eval.final_report(raw_model, val_data.shards, meta["splits"]["val"],
                                        block_size, batch_size, tokenizer.n_vocab, device, ctx)
        log_json(iter=iter_num, **report)
        plot.plot_log(out_dir, quiet=True)
except KeyboardInterrupt:
    stop = True
    if report is None:
        log(f"interrupted: the final report is left out; the checkpoint is saved, and eval.py "
            f"--checkpoint={out_dir} --input={data_path} computes it")
# the DDP wrapper and ZeRO-1's optimizer hold the process group: all go now, not as Python exits
# (where gloo can abort)
if ddp:
    del model, optimizer
    dist.destroy_process_group()
# 130 = 128 + SIGINT: what a shell reports for an interrupted program
if stop:
    sys.exit(130)
