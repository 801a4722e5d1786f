"""The quick start: a Shakespeare model of your own in under four minutes on a 2-core CPU, from nothing.

    python data/prepare.py --input=data/tinyshakespeare.txt --name=shakespeare_bpe --tokenizer=bpe --vocab_size=2048
    python train.py config/train_shakespeare.py       # 1.481-1.490 nats/char on the val split; 3 min 27 s here
    python sample.py --checkpoint=out-shakespeare -p "ROMEO:"

config/shakespeare_60s.py's model and optimizers with a 200 s budget instead of 46 s: a BPE of 2,048
tokens trained on the text (prepare, ~1 s; the committed checkpoint's data, so one prepare serves both
recipes), a 4-layer GPT of width 128 on windows of 64 tokens, Muon on the blocks' matrices and AdamW on
the rest. The run stops after 200 s of training steps whatever the machine's speed, with the cosine decay
following the clock: a slower or busier machine does fewer steps and ends higher (measured here in
float32: 1.481 and 1.490 in 3,308 and 3,089 steps at load 2; with half the time, 100 s, 1.524 in 1,449;
in bf16 on a slower day, 1.484 and 1.485 in 3,177 and 2,682 steps). A slower
machine buys the steps back with --max_seconds; past about 3,000 steps this model overfits the text
(600 s here: 9,607 steps, 1.519), and more time is better spent on a larger model with dropout, as in
the committed checkpoint's recipe: config/train_shakespeare_bpe.py (1.45 nats/char in an hour).
"""

out_dir = "out-shakespeare"
dataset = "shakespeare_bpe"  # its own BPE of 2,048 tokens: the command above
max_seconds = 200.0  # of training steps; start-up, the two evaluations and the final report add ~6 s here
max_iters = 1_000_000  # the clock ends the run
eval_interval = 1_000_000  # evaluate at the start and the end only
eval_iters = 10
log_interval = 50
always_save_checkpoint = False

gradient_accumulation_steps = 1
batch_size = 16
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
gelu = "exact"  # the same training as GPT-2's tanh GELU, and a few percent faster on a CPU
dropout = 0.0  # weight decay holds back overfitting better in a time budget: dropout slows learning
bias = False

optimizer = "muon"  # on the blocks' matrices; AdamW for the embeddings, gains and biases
# the cosine and AdamW at 2e-3: the 60 s recipe's wsd and 3e-3 end higher at this length (1.554
# against 1.530 after 1,300 steps)
learning_rate = 2e-3  # AdamW's: the embeddings, gains and biases
muon_lr = 4e-3
warmup_iters = 30
min_lr = 2e-4
beta2 = 0.99
weight_decay = 0.6  # ~10 passes over the 347k training tokens overfit with 0.1 (1.537 against 1.481)

# bf16 matmuls where the CPU has them natively (float32 elsewhere, with a note): 1.3x the steps in the
# same 200 s (3,177 against 2,467 one after the other, 1.484 against 1.490 nats/char)
dtype = "bfloat16"
