"""
Train a GPT, in one process or in several with torchrun (DDP), on one node or many:

    python train.py config/train_shakespeare.py --max_iters=2000
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        train.py config/train_gpt2.py

Every setting below is a plain variable with its default (GPT-2 124M on OpenWebText, nanoGPT's recipe and
names); config files and --key=value arguments override them (configurator.py; --help lists them all). If
out_dir holds a checkpoint the run resumes from it, else it starts from scratch; it says which.
"""

import json
import math
import os
import signal
import sys
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import configurator
from data.shards import Batches, read_meta, windows
from data.shards import data_dir as find_data_dir
from data.tokenizer import load_tokenizer
from model import GPT, GPTConfig
from support import ckpt, hf, loss_eval, plot, speedups
from support.checks import check_settings
from support.common import one_line_errors
from support.devices import autocast, device_peak_flops, device_type, resolve_device, setup_training

# -----------------------------------------------------------------------------------------------------------
# I/O
out_dir = "out"  # where ckpt.pt, log.jsonl and loss.png are written
eval_interval = 2000  # evaluate, and save a checkpoint, every this many iterations
log_interval = 1  # print a line every this many iterations
eval_iters = 200  # batches per split in each evaluation
eval_only = False  # evaluate once and exit
always_save_checkpoint = True  # False: save only when the val loss improves
init_from = "auto"  # 'auto' resumes out_dir/ckpt.pt if there is one, else 'scratch'; 'resume'; 'gpt2',
                    # 'gpt2-medium', 'gpt2-large', 'gpt2-xl' or a folder of Hugging Face weights
final_eval = True  # after the last iteration, the loss over the whole val split, in nats/char and bits/byte
sample_interval = 0  # print a short sample every this many iterations (0: never)
sample_tokens = 200  # the length of those samples, in tokens
wandb_log = False  # also log to Weights & Biases (pip install wandb; WANDB_MODE=offline works without a network)
wandb_project = "owt"  # its project
wandb_run_name = "gpt2"  # its run name
# data
dataset = "openwebtext"  # a folder under data/ made by data/prepare.py, or a path to one
gradient_accumulation_steps = 5 * 8  # micro-steps per optimizer step, counted over all processes together
batch_size = 12  # sequences per micro-step; 12 * 1024 * 40 = 491,520 tokens per optimizer step
block_size = 1024  # the context length: the model's and the training windows', one setting for both
# model
n_layer = 12  # transformer blocks
n_head = 12  # attention heads per block
n_embd = 768  # width of the residual stream
dropout = 0.0  # 0 for pretraining; 0.1+ for finetuning or small data
bias = True  # biases in Linears and LayerNorms, as in GPT-2
gelu = "tanh"  # GPT-2's tanh approximation; 'exact' (nanoGPT's erf) is as good from scratch and cheaper on CPUs
vocab_size = 0  # 0: the data's tokenizer size, padded up to a multiple of 64
# AdamW
learning_rate = 6e-4  # the peak learning rate
max_iters = 600000  # optimizer steps in all
max_seconds = 0.0  # > 0: also stop after this many seconds of training steps (evaluations not counted), the
                   # cosine decay then running over that time instead of over iterations
weight_decay = 1e-1  # AdamW's weight decay, on matrices only
beta1 = 0.9  # AdamW's beta1
beta2 = 0.95  # AdamW's beta2
eps = 1e-8  # AdamW's epsilon
grad_clip = 1.0  # clip the global gradient norm at this value (0: don't)
# learning rate schedule: a linear warmup, then a cosine decay to min_lr
decay_lr = True  # False: learning_rate throughout
warmup_iters = 2000  # iterations of linear warmup
lr_decay_iters = 600000  # where the cosine decay ends (~= max_iters per Chinchilla)
min_lr = 6e-5  # the learning rate after the decay (~= learning_rate / 10 per Chinchilla)
# system
device = "auto"  # 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = "auto"  # 'auto' (bfloat16 on CUDA where supported, else float16; float32 elsewhere), or one of those
compile = None  # torch.compile the model; None: on CUDA, off on a CPU (where the chunked loss pays more)
backend = ""  # the DDP backend; '': nccl on CUDA, gloo elsewhere
seed = 1337  # seeds the initialisation, the batches and dropout
peak_flops = 0.0  # the device's peak FLOP/s for MFU; 0: the datasheet on known GPUs, else measured here
# -----------------------------------------------------------------------------------------------------------
one_line_errors()  # bad input ends the run with one line, `error: ...`
if hasattr(sys.stdout, "reconfigure"):  # a notebook's output has no such method
    sys.stdout.reconfigure(line_buffering=True)  # `python train.py > log &` shows each line as it happens
defaults = configurator.settings_of(globals())
config = configurator.configure(globals(), sys.argv[1:], doc=__doc__)  # the settings, as the checkpoint keeps them

check_settings(config)  # every one, before anything is read, built or written (checks.py)

# -----------------------------------------------------------------------------------------------------------
# Processes and devices: one process, or one per GPU under torchrun, each with a slice of the global batch
device, dtype = resolve_device(device, dtype)
ddp, rank, world, device = setup_training(device, backend)
master = rank == 0  # this process logs, evaluates the final report and writes the files
log = print if master else (lambda *a, **k: None)
gradient_accumulation_steps //= world  # per process: the global batch is split among them
ckpt_path, log_path = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "log.jsonl")
torch.manual_seed(seed + rank)  # different dropout masks per process; DDP broadcasts rank 0's initial weights
ctx = autocast(device, dtype)
interrupted = []  # Ctrl-C or SIGTERM: the loop saves a checkpoint after the step it is in, then stops
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: interrupted.append(True))

# -----------------------------------------------------------------------------------------------------------
# Data: the token shards and the tokenizer that data/prepare.py made (data/shards.py has the format)
data_path = find_data_dir(dataset)
meta = read_meta(data_path)
tokenizer = load_tokenizer(data_path, meta)
data_vocab = meta["vocab_size"]
log(f"data: {data_path} ({tokenizer.name} tokenizer, {data_vocab:,} tokens in the vocabulary, "
    f"{meta['splits']['train']['tokens']:,} train / {meta['splits']['val']['tokens']:,} val tokens)")

# -----------------------------------------------------------------------------------------------------------
# The model: resumed from out_dir's checkpoint, new, or OpenAI's GPT-2
if os.path.exists(ckpt_path) and (init_from in ("auto", "resume") or init_from != "scratch" and not eval_only):
    mode = "resume"  # a rerun, also of a fine-tune: out_dir's own checkpoint, not the pretrained weights again
elif init_from == "resume":
    raise ValueError(f"init_from=resume but {ckpt_path} does not exist; use init_from=auto or scratch")
else:
    mode = "scratch" if init_from == "auto" else init_from
iter_num, best_val_loss, train_seconds, state = 0, float("inf"), 0.0, None  # train_seconds: what max_seconds counts
if mode == "resume":
    began = f" (a run that began from {init_from})" if init_from not in ("auto", "resume") else ""
    log(f"resuming from {ckpt_path}{began}")
    state = ckpt.load(ckpt_path)
    model_args = ckpt.check_resume(state, ckpt_path, {k: v for k, v in config.items() if v != defaults[k]}, tokenizer)
    model = ckpt.model_from({**state, "model_args": {**model_args, "dropout": dropout}})
    iter_num, best_val_loss, block_size = state["iter_num"], float(state["best_val_loss"]), model_args["block_size"]
    train_seconds = state.get("train_seconds", 0.0)
    if (iter_num >= max_iters or 0 < max_seconds <= train_seconds) and not eval_only:
        log(f"nothing left to do: {ckpt_path} is at iteration {iter_num} after {train_seconds:.0f} s of training "
            f"(max_iters={max_iters}, max_seconds={max_seconds:g}); raise them to train on")
        sys.exit(0)
    if master and os.path.exists(log_path):
        plot.keep_log_until(out_dir, iter_num)  # the log shows the trajectory this checkpoint continues
elif mode == "scratch":
    if vocab_size and vocab_size < data_vocab:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the data's tokenizer "
                         f"({data_vocab} tokens): drop --vocab_size to take it from the data")
    if os.path.exists(ckpt_path) and master:
        os.replace(ckpt_path, ckpt_path + ".old")
        log(f"init_from=scratch: moved the existing checkpoint to {ckpt_path}.old")
    model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias, gelu=gelu,
                      vocab_size=vocab_size or -(-data_vocab // 64) * 64, dropout=dropout)  # 64: faster matmuls
    log(f"starting from scratch: {n_layer} layers, {n_head} heads, width {n_embd}, vocab {model_args['vocab_size']}")
    model = GPT(GPTConfig(**model_args))
else:
    log(f"initializing from pretrained weights: {init_from}")
    model = GPT.from_pretrained(init_from, dict(dropout=dropout))
    theirs = hf.tokenizer_of(init_from)
    if theirs.to_dict() != tokenizer.to_dict() or model.config.vocab_size < data_vocab:
        raise ValueError(f"{init_from} has another vocabulary than the {tokenizer.name} tokenizer "
                         f"{data_path} was prepared with: prepare the data with the model's tokenizer")
    model_args = model.config.to_dict()
if block_size < model.config.block_size:  # e.g. GPT-2's 1024 positions, fine-tuned on shorter windows
    model.crop_block_size(block_size)
    model_args["block_size"] = block_size
elif block_size > model.config.block_size:
    raise ValueError(f"block_size={block_size} is larger than the model's ({model.config.block_size})")
model.to(device)
log(f"model: {model.get_num_params() / 1e6:.2f}M parameters")
# the batches: random windows of block_size + 1 tokens, each process taking its slice of the global batch
train_data = Batches(data_path, meta, "train", block_size, batch_size, device)
val_data = Batches(data_path, meta, "val", block_size, batch_size, device)
tokens_per_iter = gradient_accumulation_steps * world * batch_size * block_size
log(f"tokens per iteration: {tokens_per_iter:,} ({world} process(es) x {gradient_accumulation_steps} "
    f"micro-steps x {batch_size} sequences x {block_size} tokens)")

# fp16 needs loss scaling so that small gradients don't flush to zero; bf16 and fp32 don't
scaler = torch.amp.GradScaler(device_type(device), enabled=(dtype == "float16"))
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type(device), eps)
sampler = torch.Generator().manual_seed(seed)  # draws the batches; the same on every process
if state is not None:  # everything that makes the resumed run continue exactly where the saved one was
    optimizer.load_state_dict(state["optimizer"])
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if "rng" in state:
        rng = state["rng"]
        sampler.set_state(rng["sampler"])
        torch.set_rng_state(rng["torch"][rank % len(rng["torch"])])
        if device_type(device) == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state(rng["cuda"][rank % len(rng["cuda"])])
    else:
        log("note: the checkpoint holds no random states (nanoGPT's): batches and dropout start afresh")
state = None  # free the memory
if master:
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(ckpt_path + ".tmp"):
        os.remove(ckpt_path + ".tmp")  # what a run killed while saving leaves behind
start_iter = iter_num  # a resumed run does not rewrite the checkpoint it just loaded

raw_model = model
use_compile = device_type(device) == "cuda" if compile is None else compile
if use_compile:
    log("compiling the model (the first iteration takes longer)...")
    model = torch.compile(model)
elif device_type(device) == "cpu":
    speedups.use_chunked_loss(model)  # the lm_head and the loss in chunks of rows (speedups.py)
if ddp:
    model = DDP(model, device_ids=[int(device.split(":")[1])] if device_type(device) == "cuda" else None)


@torch.no_grad()
def estimate_loss() -> dict:
    """The mean loss over eval_iters batches per split, the same batches every time, spread over the
    processes. A generator of its own keeps evaluations comparable and leaves the training RNG alone."""
    out = {}
    model.eval()
    for i, (split, data) in enumerate((("train", train_data), ("val", val_data))):
        starts = data.draw(torch.Generator().manual_seed(seed + 1000 + i), eval_iters)
        total = torch.zeros(2, device=device)
        for k in tqdm(range(rank, eval_iters, world), desc=f"eval {split}", leave=False, disable=not progress):
            X, Y = data.get(starts[k])
            with ctx:
                _, loss = model(X, Y)
            total += torch.stack([loss.float(), torch.ones((), device=device)])
        if ddp:
            dist.all_reduce(total)
        out[split] = (total[0] / total[1]).item()
    model.train()
    return out


def get_lr(it: int, elapsed: float) -> float:
    """Linear warmup for warmup_iters, cosine decay to min_lr at lr_decay_iters, then min_lr. With a time
    budget (max_seconds) the decay follows the elapsed fraction of it instead: a slow or busy machine does
    fewer steps but still ends its schedule, rather than being cut off at a high learning rate."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if max_seconds > 0:
        ratio = min(elapsed / max_seconds, 1.0)
    elif it > lr_decay_iters:
        return min_lr
    else:
        ratio = (it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)  # cosine from 1 to 0


def save_checkpoint():
    """Every process takes part (each one's dropout RNG is gathered); rank 0 writes."""
    rng = dict(torch=[torch.get_rng_state()], sampler=sampler.get_state())
    if device_type(device) == "cuda":
        rng["cuda"] = [torch.cuda.get_rng_state()]
    if ddp:
        rng["torch"] = [None] * world
        dist.all_gather_object(rng["torch"], torch.get_rng_state())
    state = dict(model=raw_model.state_dict(), optimizer=optimizer.state_dict(), model_args=model_args,
                 config=config, iter_num=iter_num, best_val_loss=best_val_loss, rng=rng, train_seconds=train_seconds,
                 tokenizer=tokenizer.to_dict(), dataset=os.path.abspath(data_path),
                 documents=meta["splits"]["train"].get("documents", 1))  # 1: sample.py starts a sample with "\n"
    if scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    if master:
        ckpt.save(state, ckpt_path)
        log(f"saved checkpoint to {ckpt_path}")


def log_json(**entry):
    if master:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if wandb_log:
            wandb.log(entry, step=entry["iter"])


@torch.no_grad()
def sample_text() -> str:
    """A short sample from the start of a document, with an RNG of its own so that training is unaffected."""
    with torch.random.fork_rng(devices=[]), ctx:
        torch.manual_seed(seed)
        raw_model.eval()
        out = raw_model.generate(torch.tensor([[tokenizer.eot_token]], device=device), sample_tokens,
                                 temperature=0.8, top_k=200, vocab_limit=tokenizer.n_vocab)
        raw_model.train()
    return tokenizer.decode(out[0, 1:].tolist())


peak, peak_source = (peak_flops, "given") if peak_flops else device_peak_flops(device, dtype)
log(f"device: {device}, {dtype}, peak {peak / 1e12:.2f} TFLOP/s ({peak_source})")
progress = master and sys.stderr.isatty()  # progress bars on a terminal, never in a log file
if wandb_log and master:
    import wandb  # optional: check_settings made sure that it is installed
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)

# -----------------------------------------------------------------------------------------------------------
# The training loop
t_start = t0 = time.time()
running_mfu, step_time = -1.0, 0.0
while True:
    stop = bool(interrupted)
    if ddp:  # every process stops after the same step
        flag = torch.tensor(float(stop), device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    if stop:
        if iter_num > start_iter and always_save_checkpoint:  # else the best weights so far stay as they are
            save_checkpoint()
        log(f"interrupted at iteration {iter_num}: rerun the same command to continue from the last checkpoint")
        break
    lr = get_lr(iter_num, train_seconds)
    for group in optimizer.param_groups:
        group["lr"] = lr
    done = iter_num >= max_iters or 0 < max_seconds <= train_seconds

    # evaluate the loss on both splits, and save a checkpoint
    if iter_num % eval_interval == 0 or done or eval_only:
        losses = estimate_loss()
        log(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        log_json(iter=iter_num, train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                 tokens=iter_num * tokens_per_iter, time=time.time() - t_start)
        if not math.isfinite(losses["val"]):
            raise FloatingPointError(f"val loss is {losses['val']} at iteration {iter_num}: training diverged; the "
                                     f"last good checkpoint is untouched. Lower learning_rate or raise "
                                     f"warmup_iters, then rerun to resume from it")
        improved = losses["val"] < best_val_loss
        best_val_loss = min(best_val_loss, losses["val"])
        if iter_num > start_iter and (improved or always_save_checkpoint) and not eval_only:
            save_checkpoint()
        if master:
            plot.plot_log(out_dir, quiet=True)
        if eval_only:
            break
    if sample_interval and iter_num % sample_interval == 0 and master:
        log(f"sample at step {iter_num}:\n{sample_text()}")
    if done:
        break

    # one optimizer step: each process takes its share of the global batch, loading it as it goes
    t_step = time.time()
    starts = train_data.draw(sampler, gradient_accumulation_steps * world)
    loss_sum = torch.zeros((), device=device)
    for micro_step in range(gradient_accumulation_steps):
        X, Y = train_data.get(starts[rank * gradient_accumulation_steps + micro_step])
        # DDP all-reduces the gradients on the last micro-step only
        with (model.no_sync() if ddp and micro_step < gradient_accumulation_steps - 1 else nullcontext()), ctx:
            _, loss = model(X, Y)
            loss = loss / gradient_accumulation_steps  # the gradients become a mean over the micro-steps
        scaler.scale(loss).backward()
        loss_sum += loss.detach()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)  # free the gradients' memory now; it also saves a zero-fill
    if ddp:
        dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
    lossf = loss_sum.item()  # waits for the device, once per step
    if not math.isfinite(lossf):
        raise FloatingPointError(f"loss is {lossf} at iteration {iter_num}: training diverged; the last good "
                                 f"checkpoint is untouched. Lower learning_rate or raise warmup_iters, then rerun")
    t1 = time.time()
    dt, t0 = t1 - t0, t1
    train_seconds += t1 - t_step
    if ddp and max_seconds > 0:  # the learning rate and the last step must agree on every process: rank 0's clock
        clock = torch.tensor(train_seconds, device=device)
        dist.broadcast(clock, 0)
        train_seconds = clock.item()
    iter_num += 1
    step_time = 0.9 * step_time + 0.1 * (t1 - t_step) if step_time else t1 - t_step
    if iter_num % log_interval == 0 and master:
        tok_s = tokens_per_iter / dt
        mfu = raw_model.estimate_mfu(tok_s / world, peak)  # per device: peak is one device's
        running_mfu = mfu if running_mfu < 0 else 0.9 * running_mfu + 0.1 * mfu
        left = max(max_seconds - train_seconds, 0) if max_seconds else (max_iters - iter_num) * step_time
        log(f"iter {iter_num}: loss {lossf:.4f}, lr {lr:.2e}, {dt * 1000:.1f}ms, {tok_s:,.0f} tok/s "
            f"({tok_s / world:,.0f} per process), mfu {running_mfu * 100:.1f}%, {left / 60:.1f} min left")
        log_json(iter=iter_num, loss=lossf, lr=lr, ms=dt * 1000, tokens_per_sec=tok_s, mfu=mfu,
                 tokens=iter_num * tokens_per_iter, time=time.time() - t_start)

# -----------------------------------------------------------------------------------------------------------
# The final report: the loss over every token of the val split, comparable across tokenizers
signal.signal(signal.SIGINT, signal.default_int_handler)  # everything is saved: Ctrl-C may now stop at once
if final_eval and not eval_only and not stop and master:
    split, t0 = meta["splits"]["val"], time.time()
    nats, count = loss_eval.total_loss(raw_model, windows(val_data.shards, block_size, batch_size), tokenizer.n_vocab,
                                       device, ctx, desc="final eval")
    r = loss_eval.report(nats, count, split["chars"], split["bytes"])
    log(f"final val over all {count:,} tokens: {r['nats_per_token']:.4f} nats/token, {r['nats_per_char']:.4f} "
        f"nats/char, {r['bits_per_byte']:.4f} bits/byte ({time.time() - t0:.0f} s)")
    log_json(iter=iter_num, final_val_loss=r["nats_per_token"], val_nats_per_char=r["nats_per_char"],
             val_bits_per_byte=r["bits_per_byte"])
if ddp:
    del model  # the DDP wrapper holds the process group: both go now, not as Python exits (where gloo can abort)
    dist.destroy_process_group()
if stop:
    sys.exit(130)  # 128 + SIGINT: what a shell reports for an interrupted program
