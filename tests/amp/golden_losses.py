"""Golden values for tests/amp/ops_test.cpp, from PyTorch's own losses.

Run with Debian's python3-torch:  /usr/bin/python3 tests/amp/golden_losses.py
The inputs are built from sin/cos so that C++ and Python make them identically.
"""
import torch
import torch.nn.functional as F

torch.set_printoptions(precision=10)
s = torch.sin(torch.arange(24, dtype=torch.float32) * 0.37).reshape(4, 6) * 3  # student logits
t = torch.cos(torch.arange(24, dtype=torch.float32) * 0.11).reshape(4, 6) * 2  # teacher logits
labels = torch.tensor([0, 5, 2, 3])
T = 2.0

kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True) * T * T
ce = F.cross_entropy(s, labels)
ce_ls = F.cross_entropy(s, labels, label_smoothing=0.1)
mse = F.mse_loss(s, t)
cos = (1 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()
for name, v in [("kl_T2", kl), ("cross_entropy", ce), ("cross_entropy_ls0.1", ce_ls), ("mse", mse), ("cosine", cos)]:
    print(f"{name} {v.item():.9g}")
