"""PyTorch reference for bench/step_bench: the same training step (CNN forward,
cross-entropy, backward, AdamW step) on a batch held in memory. Prints one JSON line."""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from models import Cnn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--channels", default="32,64")
    p.add_argument("--convs", type=int, default=2)
    p.add_argument("--hidden", default="512")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Cnn(channels=[int(c) for c in a.channels.split(",")], convs_per_stage=a.convs,
                hidden=[int(h) for h in a.hidden.split(",")], dropout=0.0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch,))

    def step():
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "batch": a.batch, "threads": a.threads,
                      "steps": a.steps, "seconds": dt, "ms_per_step": 1e3 * dt / a.steps,
                      "samples_per_s": a.batch * a.steps / dt}))


if __name__ == "__main__":
    main()
