"""PyTorch's twin of `retort train` on a gpt (bench/lm_speed.sh): the same model
(gpt2.py's GPT-2, GPT-2's initialisation), next-token cross-entropy over every position of
windows of context + 1 tokens at random offsets of a retort token file, AdamW (decaying
every parameter, as retort's does), gradient clipping at 1.0, optionally bf16 autocast as
torch.amp runs it on CPU. Prints one JSON line: tokens/s over the steps after the warm-up.
--fixed-batch: one batch of random bytes held in memory (as bench/step_bench.cpp --model gpt;
TOKENS is then not read, give "-");
--profile: then as many steps again under torch.profiler, and the JSON carries ops_per_step
and the ops of most self time (as step_bench --profile); --trace FILE: their Chrome trace.
--device cuda, --dtype fp16 (torch.amp's GradScaler, as retort's for fp16): the GPU check's
gpt of GPT-2 small's shape (bench/gpu_check.sh).

    /usr/bin/python3 bench/reference/lm_train.py TOKENS --dim 192 --layers 6 --heads 6 \\
        --context 256 --batch 32 --steps 20 --warmup 5 --threads 2 [--amp autocast]
"""
import argparse
import json
import time

import numpy as np
import torch

from gpt2 import Gpt2LMHead


def read_tokens(path):
    """A retort token file (data/token_file.h): a 64-byte header, then uint16 or uint32 tokens."""
    header = np.fromfile(path, dtype=np.uint8, count=64)
    assert header[:8].tobytes() == b"RETORTTK", f"{path}: not a retort token file"
    width = int(header[12:16].view(np.uint32)[0])
    vocab, count = (int(v) for v in header[16:32].view(np.uint64))
    tokens = np.memmap(path, dtype=np.uint16 if width == 2 else np.uint32, mode="r", offset=64, shape=(count,))
    return tokens, vocab


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tokens")
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--amp", default="off", choices=["off", "autocast"])
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"], help="autocast dtype (fp16: with a GradScaler)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--trace", help="with --profile: write the profiled steps' Chrome trace here")
    p.add_argument("--profile-steps", type=int, default=0, help="steps to profile (0: --steps)")
    p.add_argument("--vocab", type=int, default=256, help="with --fixed-batch: the vocabulary size")
    p.add_argument("--softmax-fp32", action="store_true",
                   help="attention softmax in fp32 under autocast, as retort's policy (PyTorch 1.13's CPU autocast: bf16)")
    p.add_argument("--fixed-batch", action="store_true", help="one batch of random tokens, held in memory")
    p.add_argument("--profile", action="store_true", help="then profile as many steps: ops per step, top ops")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if dev.type == "cuda":  # fp32 means fp32, as bench/step_bench.cpp sets it
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dtype = torch.float16 if a.dtype == "fp16" else torch.bfloat16
    scaler = torch.cuda.amp.GradScaler(enabled=a.amp == "autocast" and dtype == torch.float16)
    tokens, vocab = (None, a.vocab) if a.fixed_batch else read_tokens(a.tokens)
    cfg = {"vocab_size": vocab, "n_positions": a.context, "n_embd": a.dim, "n_layer": a.layers, "n_head": a.heads,
           "resid_pdrop": a.dropout, "embd_pdrop": a.dropout, "attn_pdrop": a.dropout, "layer_norm_epsilon": 1e-5,
           "softmax_fp32": a.softmax_fp32}
    model = Gpt2LMHead(cfg)
    model.init_weights(0.02)
    model.to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.1)
    rng = np.random.default_rng(0)

    fixed = torch.randint(0, vocab, (a.batch, a.context + 1)).to(dev)

    def batch():
        if a.fixed_batch:
            return fixed[:, :-1], fixed[:, 1:]
        starts = rng.integers(0, len(tokens) - a.context - 1, a.batch)
        w = torch.from_numpy(np.stack([tokens[s:s + a.context + 1].astype(np.int64) for s in starts]))
        return w[:, :-1], w[:, 1:]

    def step():
        x, y = batch()
        x, y = x.to(dev), y.to(dev)
        with torch.profiler.record_function("forward"), \
                torch.autocast(dev.type, dtype=dtype, enabled=a.amp == "autocast"):
            logits, _, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    dt = time.perf_counter() - t0
    loss = loss.item()
    out = {"impl": "pytorch", "amp": a.amp, "batch": a.batch, "context": a.context, "steps": a.steps,
           "seconds": dt, "ms_per_step": 1e3 * dt / a.steps, "loss": loss,
           "tokens_per_s": a.batch * a.context * a.steps / dt}
    if a.profile:
        n = a.profile_steps or a.steps
        activities = [torch.profiler.ProfilerActivity.CPU]
        if dev.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(n):
                step()
            sync()
        if a.trace:
            prof.export_chrome_trace(a.trace)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        out["phases"] = {e.key: [e.cpu_time_total / 1e3 / n, e.self_cpu_time_total / 1e3 / n]
                         for e in ops if e.key == "forward"}
        ops = [e for e in ops if e.key != "forward"]
        out["ops_per_step"] = sum(e.count for e in ops) / n
        out["casts_per_step"] = sum(e.count for e in ops if e.key == "aten::_to_copy") / n
        out["top_ops"] = [[e.key, e.self_cpu_time_total / 1e3 / n, e.count / n] for e in ops[:15]]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
