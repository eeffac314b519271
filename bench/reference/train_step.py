"""PyTorch reference for bench/step_bench: the same training step (CNN forward,
cross-entropy, backward, AdamW step) on a batch held in memory. Prints one JSON line.
--device cuda: the step as PyTorch users write it in mixed precision (torch.autocast, and
torch.cuda.amp's GradScaler for fp16), TF32 off, timed between device synchronizations,
gpu_peak_mb = torch.cuda.max_memory_allocated over the timed steps."""
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
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", default="off", choices=["off", "autocast"])
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    low = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    use_amp = a.amp == "autocast"
    fp16_scaling = use_amp and low == torch.float16
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):  # 2.x spelling
        scaler = torch.amp.GradScaler("cuda", enabled=fp16_scaling)
    else:
        scaler = torch.cuda.amp.GradScaler(enabled=fp16_scaling)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Cnn(channels=[int(c) for c in a.channels.split(",")], convs_per_stage=a.convs,
                hidden=[int(h) for h in a.hidden.split(",")], dropout=0.0)
    model.to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(a.batch, 1, 28, 28).to(dev)
    y = torch.randint(0, 10, (a.batch,)).to(dev)

    def step():
        with torch.autocast(dev.type, dtype=low, enabled=use_amp):
            logits, _ = model(x)
            loss = F.cross_entropy(logits, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else -1
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "device": str(dev), "amp": a.amp,
                      "dtype": a.dtype if use_amp else "fp32", "gpu_peak_mb": peak, "batch": a.batch, "threads": a.threads,
                      "steps": a.steps, "seconds": dt, "ms_per_step": 1e3 * dt / a.steps,
                      "samples_per_s": a.batch * a.steps / dt}))


if __name__ == "__main__":
    main()
