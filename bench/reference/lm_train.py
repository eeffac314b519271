"""PyTorch's twin of `retort train` on a gpt (bench/lm_speed.sh): the same model
(gpt2.py's GPT-2, GPT-2's initialisation), next-token cross-entropy over every position of
windows of context + 1 tokens at random offsets of a retort token file, AdamW (decaying
every parameter, as retort's does), gradient clipping at 1.0, optionally bf16 autocast as
torch.amp runs it on CPU. Prints one JSON line: tokens/s over the steps after the warm-up.

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
    p.add_argument("--softmax-fp32", action="store_true",
                   help="attention softmax in fp32 under autocast, as retort's policy (PyTorch 1.13's CPU autocast: bf16)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tokens, vocab = read_tokens(a.tokens)
    cfg = {"vocab_size": vocab, "n_positions": a.context, "n_embd": a.dim, "n_layer": a.layers, "n_head": a.heads,
           "resid_pdrop": a.dropout, "embd_pdrop": a.dropout, "attn_pdrop": a.dropout, "layer_norm_epsilon": 1e-5,
           "softmax_fp32": a.softmax_fp32}
    model = Gpt2LMHead(cfg)
    model.init_weights(0.02)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.1)
    rng = np.random.default_rng(0)

    def batch():
        starts = rng.integers(0, len(tokens) - a.context - 1, a.batch)
        w = torch.from_numpy(np.stack([tokens[s:s + a.context + 1].astype(np.int64) for s in starts]))
        return w[:, :-1], w[:, 1:]

    def step():
        x, y = batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.amp == "autocast"):
            logits, _, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "amp": a.amp, "batch": a.batch, "context": a.context, "steps": a.steps,
                      "seconds": dt, "loss": loss, "tokens_per_s": a.batch * a.context * a.steps / dt}))


if __name__ == "__main__":
    main()
