"""What GPT-2's tanh GELU costs on this CPU in each way retort could run it under bf16 autocast
(bench/RESULTS.md, "Framework overhead"): forward + backward, ms per call, 1 thread, on
Debian's PyTorch (the LibTorch retort links). bf16 throughout (LibTorch's bf16 kernel), fp32
through casts (what amp::gelu does under a CPU autocast), GPT-2's composite of elementwise
ops in bf16 (gpt2.py's gelu_new), and the erf GELU in bf16 for scale.

    /usr/bin/python3 bench/reference/gelu_cost.py [--rows 8192 --cols 768 --reps 5]
"""
import argparse
import math
import time

import torch


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


VARIANTS = {
    "bf16 tanh GELU (LibTorch's kernel)": lambda y: torch.nn.functional.gelu(y, approximate="tanh"),
    "fp32 tanh GELU through casts (amp::gelu on CPU)":
        lambda y: torch.nn.functional.gelu(y.float(), approximate="tanh").bfloat16(),
    "bf16 composite gelu_new (gpt2.py)": gelu_new,
    "bf16 erf GELU": lambda y: torch.nn.functional.gelu(y),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=8192)  # the teacher's batch x context: 32 x 256
    p.add_argument("--cols", type=int, default=768)   # its MLP width: 4 x 192
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(a.rows, a.cols)
    print(f"| {a.rows} x {a.cols}, 1 thread | forward + backward, ms |\n|---|---|")
    for name, f in VARIANTS.items():
        y = x.bfloat16().requires_grad_()
        g = torch.randn_like(y)
        for _ in range(2):
            f(y).backward(g)
        t0 = time.perf_counter()
        for _ in range(a.reps):
            f(y).backward(g)
        print(f"| {name} | {(time.perf_counter() - t0) / a.reps * 1e3:.1f} |")


if __name__ == "__main__":
    main()
