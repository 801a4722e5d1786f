"""KV-cache generation: equal to the uncached reference, windowing, stopping, nucleus sampling,
batching, the CPU's row-block Linears, sample.py."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run

from model import GPT, GPTConfig, _sample
from support import speedups
from support.speedups import row_blocks


def tiny(block_size=16, vocab_size=64):
    torch.manual_seed(0)
    config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32)
    return GPT(config).eval()


def steps(model, idx, n, **kw):
    """(tokens (B, n), per-step logits (n, B, V)) from generate_tokens."""
    out = [(t, logits.clone()) for t, logits, _ in model.generate_tokens(idx, n, **kw)]
    return torch.cat([t for t, _ in out], 1), torch.stack([lg for _, lg in out])


def no_swapped_forward(model) -> bool:
    return not any("forward" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("keep", [None, 16, 5])
def test_cache_equals_uncached_past_block_size(keep):
    # 40 new tokens from a 5-token prompt cross block_size 16 several times: every re-prefill
    # included
    model = tiny()
    x = torch.randint(0, 60, (3, 5))
    a_tok, a_logits = steps(model, x, 40, temperature=0, vocab_limit=60, keep=keep)
    b_tok, b_logits = steps(model, x, 40, temperature=0, vocab_limit=60, keep=keep, use_cache=False)
    assert torch.equal(a_tok, b_tok)
    assert a_logits.shape == (40, 3, 60)
    assert (a_logits - b_logits).abs().max().item() < 1e-4


def closed_form_window(model, x, n, keep):
    """Greedy tokens, each step's window start computed in closed form from the length t: 0 while
    t <= block_size, then t - keep - (t - block_size - 1) % (block_size - keep + 1)."""
    bs, idx = model.config.block_size, x
    with torch.no_grad():
        for _ in range(n):
            t = idx.size(1)
            s = 0 if t <= bs else t - keep - (t - bs - 1) % (bs - keep + 1)
            logits, _ = model(idx[:, s:])
            idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), 1)
    return idx


@pytest.mark.parametrize("keep", [None, 1, 5, 15, 16])
@pytest.mark.parametrize("prompt", [1, 5, 16, 17])
def test_window_restarts_where_the_closed_form_says(keep, prompt):
    # the window's start kept in a loop (restart from the last `keep` tokens whenever the context
    # would pass block_size) gives the same tokens as the closed form, cached and uncached
    model = tiny()
    x = torch.randint(0, 64, (2, prompt))
    ref = closed_form_window(model, x, 40, keep or 8)
    assert torch.equal(model.generate(x, 40, temperature=0, keep=keep), ref)
    assert torch.equal(model.generate(x, 40, temperature=0, keep=keep, use_cache=False), ref)


def test_prompt_longer_than_block_size_starts_from_its_last_keep_tokens():
    # a 30-token prompt with block_size 16: the same tokens as its last 6 tokens alone give
    model = tiny()
    x = torch.randint(0, 64, (2, 30))
    long = model.generate(x, 25, temperature=0, keep=6)
    assert torch.equal(long[:, 30:], model.generate(x[:, -6:], 25, temperature=0, keep=6)[:, 6:])


def test_row_blocks_equal_the_plain_path_and_go_away():
    # inside row_blocks every Linear reads its weight in blocks of rows: the same tokens and logits
    # as without them; outside, the model is the plain one again; the blocks are views, so they
    # follow the weights as training changes them in place
    model = tiny()
    x = torch.randint(0, 64, (2, 4))
    plain_tok, plain_logits = steps(model, x, 12, temperature=0)
    with row_blocks(model, 64):
        assert "forward" in model.lm_head.__dict__
        fast_tok, fast_logits = steps(model, x, 12, temperature=0)
        # generate inside the block leaves the block's Linears in place
        again = model.generate(x, 12, temperature=0)
        assert "forward" in model.lm_head.__dict__
    assert torch.equal(fast_tok, plain_tok) and (fast_logits - plain_logits).abs().max() < 1e-5
    assert torch.equal(again[:, 4:], plain_tok)
    assert no_swapped_forward(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    with row_blocks(model, 64):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        # in place, as training does
        opt.step()
        cached, _ = steps(model, x, 12, temperature=0)
    uncached, _ = steps(model, x, 12, temperature=0, use_cache=False)
    assert torch.equal(cached, uncached) and not torch.equal(cached, plain_tok)


def test_generate_decodes_through_row_blocks_on_a_cpu(monkeypatch):
    # plain generate() swaps in the row-block Linears for the length of the call, then gives the
    # Linears their own forward back: the same tokens as the plain Linears (generate_tokens alone)
    model = tiny()
    x = torch.randint(0, 64, (2, 4))
    calls = []
    blocked = speedups._blocked_linear
    monkeypatch.setattr(speedups, "_blocked_linear", lambda *a: calls.append(1) or blocked(*a))
    plain, _ = steps(model, x, 12, temperature=0)
    assert not calls
    out = model.generate(x, 12, temperature=0)
    assert len(calls) >= 12 * 9 and torch.equal(out[:, 4:], plain)
    assert no_swapped_forward(model)


def test_keep_block_size_is_nanogpt_crop():
    # keep=block_size: the window is always the last block_size tokens, as in nanoGPT's generate
    model = tiny()
    x = torch.randint(0, 64, (1, 3))
    ref = x
    with torch.no_grad():
        for _ in range(30):
            logits, _ = model(ref[:, -16:])
            ref = torch.cat((ref, logits[:, -1].argmax(-1, keepdim=True)), 1)
    assert torch.equal(model.generate(x, 30, temperature=0, keep=16), ref)


def test_padded_vocab_never_sampled():
    model = tiny()
    # make the padded rows the likeliest by far
    with torch.no_grad():
        model.lm_head.weight[40:] = model.lm_head.weight[:24] * 50
    x = torch.randint(0, 40, (4, 3))
    torch.manual_seed(1)
    y = model.generate(x, 30, temperature=1.0, vocab_limit=40)
    assert y.max().item() < 40
    # the mask is what kept them out
    assert model.generate(x, 30, temperature=1.0).max().item() >= 40


def test_stop_tokens_per_row():
    model = tiny()
    x = torch.randint(0, 64, (4, 4))
    free = model.generate(x, 12, temperature=0)
    # the token row 0 makes at step 4
    stop = int(free[0, 7])
    y = model.generate(x, 12, temperature=0, stop_tokens=[stop])
    for row, ref in zip(y, free):
        new = ref[4:].tolist()
        cut = new.index(stop) + 1 if stop in new else len(new)
        # the same tokens up to and including the stop token, then only filler
        assert row[4 : 4 + cut].tolist() == new[:cut]
        assert all(t == row[3 + cut] for t in row[4 + cut :].tolist())
    if all(stop in r[4:].tolist() for r in free):
        # every row stopped: generation ended early
        assert y.size(1) < free.size(1)


def test_stop_rows_finishes_the_rows_it_names():
    # stop_rows sees every step's new tokens and stops the rows it returns True for: they repeat
    # their last token from then on, the others go on, and generation ends once all have stopped
    model = tiny()
    x = torch.randint(0, 64, (3, 4))
    free = model.generate(x, 12, temperature=0)
    seen = []

    def stop_rows(next_tokens):
        seen.append(next_tokens[:, 0].tolist())
        # row 0 after its 2nd new token, row 1 after its 5th; row 2 never
        return [len(seen) == 2, len(seen) == 5, False]

    y = model.generate(x, 12, temperature=0, stop_rows=stop_rows)
    assert len(seen) == 12 and seen[0] == free[:, 4].tolist()
    assert torch.equal(y[2], free[2])
    assert torch.equal(y[0, :6], free[0, :6]) and (y[0, 6:] == y[0, 5]).all()
    assert torch.equal(y[1, :9], free[1, :9]) and (y[1, 9:] == y[1, 8]).all()
    # a (B,) tensor works too; every row stopped after the first step: generation ends there
    stop_all = lambda t: torch.ones(3, dtype=torch.bool)
    assert torch.equal(model.generate(x, 12, temperature=0, stop_rows=stop_all), free[:, :5])


def test_a_vanishing_temperature_is_greedy_not_an_overflow():
    model = tiny()
    x = torch.randint(0, 64, (2, 4))
    greedy = model.generate(x, 20, temperature=0)
    for t in (1e-30, 1e-300):
        assert torch.equal(model.generate(x, 20, temperature=t, top_k=5, top_p=0.9), greedy)
    # just above float32's smallest normal number, scores of 5 and more would divide to inf
    logits, seen = torch.tensor([[10.0, 5.0, -3.0]]), torch.zeros(1, 1, dtype=torch.long)
    assert _sample(logits, seen, 2e-38, None, None, 1.0).item() == 0


def test_top_p_tiny_is_greedy_and_top_p_masks():
    model = tiny()
    x = torch.randint(0, 64, (2, 4))
    torch.manual_seed(3)
    greedy = model.generate(x, 20, temperature=0)
    assert torch.equal(model.generate(x, 20, temperature=1.0, top_p=1e-6), greedy)
    # with top_p=0.5 every sampled token lies in the nucleus of its step's distribution
    torch.manual_seed(3)
    for t, logits, _ in model.generate_tokens(x, 20, temperature=1.0, top_p=0.5):
        probs = torch.softmax(logits, -1)
        for r in range(2):
            p = probs[r, t[r, 0]]
            assert probs[r][probs[r] > p].sum().item() < 0.5


def test_repetition_penalty_changes_greedy_path():
    model = tiny()
    x = torch.randint(0, 64, (1, 4))
    plain = model.generate(x, 30, temperature=0)[0, 4:].tolist()
    penal = model.generate(x, 30, temperature=0, repetition_penalty=1e6)[0, 4:].tolist()
    # a huge penalty never repeats a token
    assert len(set(penal)) == 30 > len(set(plain))


def test_batched_greedy_equals_one_at_a_time():
    model = tiny(block_size=32)
    x = torch.randint(0, 64, (3, 6))
    batched = model.generate(x, 40, temperature=0)
    for r in range(3):
        assert torch.equal(batched[r : r + 1], model.generate(x[r : r + 1], 40, temperature=0))
    # rows that share their prompt run it once for all
    shared = model.generate(x[:1].expand(3, -1), 20, temperature=0)
    assert torch.equal(shared, model.generate(x[:1], 20, temperature=0).expand(3, -1))


def test_seed_reproducible():
    model = tiny()
    x = torch.randint(0, 64, (3, 4))
    torch.manual_seed(7)
    a = model.generate(x[:1].expand(3, -1), 25, temperature=1.0, top_k=20, top_p=0.9)
    torch.manual_seed(7)
    b = model.generate(x[:1].expand(3, -1), 25, temperature=1.0, top_k=20, top_p=0.9)
    assert torch.equal(a, b)
    # rows sharing a prompt still sample independently
    assert not torch.equal(a[0], a[1])


@pytest.fixture(scope="module")
def ckpt():
    """The committed checkpoint (read only): a trained model, whose greedy continuations differ
    from prompt to prompt, so a row given another row's tokens shows."""
    return ROOT / "checkpoint"


def test_sample_script(ckpt):
    common = [f"--checkpoint={ckpt}", "-m", "40", "--no_stop"]
    p = run("sample.py", *common, "-p", "The", "--temperature=0")
    assert p.stdout.startswith("The") and len(p.stdout) > 10
    # --stream prints the same text as the batch path
    s = run("sample.py", *common, "-p", "The", "--temperature=0", "--stream")
    assert s.stdout == p.stdout
    # -n 3: three samples in one batch, separated by a rule
    n = run("sample.py", *common, "-n", "3", "--seed=5")
    assert n.stdout.count("-" * 40) == 2
    # --stop (here with --stream) cuts greedy output before the first occurrence of the stop text
    body = p.stdout[3:-1]
    stop_text = body[len(body) // 2 : len(body) // 2 + 2]
    st = run("sample.py", *common, "-p", "The", "--temperature=0", "--stop", stop_text, "--stream")
    assert st.stdout == "The" + body[: body.index(stop_text)] + "\n"


def test_sample_errors(ckpt):
    p = run("sample.py", f"--checkpoint={ckpt}", "-p", "", check=False)
    assert p.returncode == 1 and p.stderr.startswith("error: the prompt is empty")


def test_generate_text_stream_utf8(ckpt):
    # the programmatic path: streamed pieces are whole characters and add up to the returned text
    from sample import generate_text
    from support.ckpt import load_for_inference

    model, tok, _, _ = load_for_inference(str(ckpt), "cpu")
    pieces = []
    torch.manual_seed(0)
    [text] = generate_text(model, tok, ["héllo ✓"], 60, temperature=1.5, top_k=None,
                           stop_at_eot=False, stream=pieces.append)
    assert "".join(pieces) == text and text.startswith("héllo ✓")
    assert all(p.encode("utf-8").decode("utf-8") == p for p in pieces)


def test_decode_row_blocks_any_thread_count():
    # the Linears read their weights as one block of rows per thread, views of the weights; the
    # rows left over when they don't divide evenly (96 and 61 over 3 threads here) go on their own:
    # same tokens, same logits
    model = tiny()
    x = torch.randint(0, 61, (2, 5))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        with row_blocks(model, 61):
            a_tok, a_logits = steps(model, x, 20, temperature=0, vocab_limit=61)
            blocks, rest = model.lm_head.forward.args[:2]
            assert blocks.shape == (3, 20, 32) and rest.shape == (1, 32)
            assert blocks.data_ptr() == model.lm_head.weight.data_ptr()
    finally:
        torch.set_num_threads(threads)
    b_tok, b_logits = steps(model, x, 20, temperature=0, vocab_limit=61, use_cache=False)
    assert torch.equal(a_tok, b_tok) and (a_logits - b_logits).abs().max().item() < 1e-4


# token lengths 1, 1, 1, 2, 2, 4 and 7: three batches of several rows
PROMPTS = ["The", "First", "A", "ROMEO:", "My lord", "To be or not", "Hello, my good lord"]


def alone(model, tok, prompts, n):
    """Each prompt's greedy continuation, sampled on its own."""
    from sample import generate_text

    texts = [generate_text(model, tok, [p], n, temperature=0, stop_at_eot=False)[0]
             for p in prompts]
    # the prompts lead to different text: a row given another row's tokens shows
    assert len({t[len(p):] for p, t in zip(prompts, texts)}) == len(prompts)
    return texts


def test_many_prompts_in_one_run_equal_each_alone(ckpt):
    # prompts of different lengths: rows of the same length run as one batch, and every row's
    # greedy tokens are those of its prompt sampled alone
    from sample import generate_text
    from support.ckpt import load_for_inference

    model, tok, _, _ = load_for_inference(str(ckpt), "cpu")
    assert [len(tok.encode(p)) for p in PROMPTS] == [1, 1, 1, 2, 2, 4, 7]
    options = dict(temperature=0, stop_at_eot=False)
    with row_blocks(model, tok.n_vocab):
        batch = generate_text(model, tok, PROMPTS, 12, num_samples=2, **options)
        each = alone(model, tok, PROMPTS, 12)
    assert batch == [t for t in each for _ in range(2)]


def test_sample_to_a_file_without_prompts_and_interactive(ckpt, tmp_path):
    (tmp_path / "prompts.txt").write_text("The\n\nTo be or not\nFirst\nROMEO:\nMy lord\nA\n")
    common = [f"--checkpoint={ckpt}", "-m", "8", "--temperature=0", "--no_stop"]
    p = run("sample.py", *common, f"--prompt_file={tmp_path / 'prompts.txt'}", "--prompts_per_line",
            f"--out={tmp_path / 's.jsonl'}", "--no_prompt")
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    prompts = ["The", "To be or not", "First", "ROMEO:", "My lord", "A"]
    assert [r["prompt"] for r in rows] == prompts and p.stdout == ""
    assert "wrote 6 sample(s)" in p.stderr
    assert all(r["temperature"] == 0 and r["max_new_tokens"] == 8 for r in rows)
    # every row, batched with rows of its length, as its prompt alone gives it
    from support.ckpt import load_for_inference

    model, tok, _, _ = load_for_inference(str(ckpt), "cpu")
    assert [p + r["text"] for p, r in zip(prompts, rows)] == alone(model, tok, prompts, 8)
    one = run("sample.py", *common, "-p", "To be or not").stdout
    # --no_prompt: the new text only
    assert one == "To be or not" + rows[1]["text"] + "\n"
    # streamed too
    streamed = run("sample.py", *common, "-p", "To be or not", "--stream", "--no_prompt").stdout
    assert streamed == rows[1]["text"] + "\n"
    # --out never replaces a file without --force
    import sample

    with pytest.raises(ValueError, match="s.jsonl exists already: add --force to replace it"):
        sample.main([*common, "-p", "The", f"--out={tmp_path / 's.jsonl'}"])
    (tmp_path / "s.txt").write_text("an older file\n")
    run("sample.py", *common, "-p", "The", "-p", "Hello", f"--out={tmp_path / 's.txt'}", "--force")
    assert (tmp_path / "s.txt").read_text().count("-" * 40) == 1
    p = subprocess.run([sys.executable, str(ROOT / "sample.py"), *common, "-i"],
                       input="The\nTo be or not\n", capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    # two prompts, then the end of the input
    assert p.returncode == 0 and p.stdout.count("> ") == 3
    # each continuation as sampling it alone gives it
    assert f"> {rows[0]['text']}\n> {rows[1]['text']}\n> " in p.stdout
