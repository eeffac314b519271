"""Golden values for retort's distillation losses, written by PyTorch for tests/distill.

    /usr/bin/python3 bench/reference/distill_golden.py [out_dir]     # default tests/distill/data

Writes distill_golden.safetensors (inputs, weights, expected tensors) and
distill_golden.json (expected scalars). The formulas here are written from their
definitions with torch.nn.functional, independently of the C++ code:

  ce        F.cross_entropy(student_logits, labels)
  kl        F.kl_div(log_softmax(s / T), log_softmax(t / T), log_target=True, 'batchmean') * T^2
  mse       F.mse_loss(h_s, h_t)
  cos       mean(1 - F.cosine_similarity(rows)), rows = samples (flattened), or tokens for [B, T, D]
  attn      F.mse_loss(a_s, a_t), or of the head means when head counts differ
  pooling   F.adaptive_avg_pool2d of the larger map to the smaller size
  total     sum_term weight * term, the hidden / attention terms averaged over their pairs

plus two whole distillations (MLP -> MLP with a linear projection; ViT -> ViT with token
projection and attention maps) whose models are PyTorch twins of retort's (same parameter
names), so the C++ Distiller and VisionTransformer are checked end to end.

The token-level divergences of language-model distillation (p teacher, q student, both
softened by T, rows = tokens, x T^2), each with its gradient on the student's logits:

  kl          sum p (log p - log q)                         F.kl_div(log q, log p, log_target)
  reverse_kl  sum q (log q - log p)
  skew_kl     KL(p || lam p + (1 - lam) q)                  DistiLLM
  gjs         beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q; beta 0 and
              1 are forward and reverse KL                  GKD (TRL's generalized_jsd_loss)
  top-K       the same over the teacher's K most likely ids plus one bucket for the rest
  attn_kl     MiniLM: KL of each query's attention distribution (causal maps, 0 log 0 = 0)

and a whole gpt -> gpt distillation (bench/reference/gpt2.py's GPT-2 as the twin).
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2 import Gpt2LMHead
from models import save_safetensors


# --- PyTorch twins of retort's models (parameter names as in models/*.cpp) ----------------

class Mlp(nn.Module):
    def __init__(self, inputs, hidden, classes):
        super().__init__()
        self.nfc = len(hidden)
        for i, h in enumerate(hidden):
            self.add_module(f"fc{i}", nn.Linear(inputs, h))
            inputs = h
        self.head = nn.Linear(inputs, classes)

    def forward(self, x):
        x = x.flatten(1)
        hidden = []
        for i in range(self.nfc):
            x = F.relu(getattr(self, f"fc{i}")(x))
            hidden.append(x)
        return self.head(x), hidden, []


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class MlpBlock(nn.Module):
    def __init__(self, dim, width):
        super().__init__()
        self.fc1 = nn.Linear(dim, width)
        self.fc2 = nn.Linear(width, dim)


class Layer(nn.Module):
    def __init__(self, dim, width):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MlpBlock(dim, width)


class Vit(nn.Module):
    """models::VisionTransformer: pre-LN encoder over patches, cls token or mean pooling."""

    def __init__(self, in_channels=1, image_size=8, patch=4, dim=16, depth=2, heads=2, mlp_ratio=2.0,
                 pool="cls", classes=10):
        super().__init__()
        self.heads, self.pool, self.dim = heads, pool, dim
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        tokens = (image_size // patch) ** 2 + (1 if pool == "cls" else 0)
        if pool == "cls":
            self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.layers = nn.ModuleList([Layer(dim, round(dim * mlp_ratio)) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        b = x.shape[0]
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.pool == "cls":
            x = torch.cat([self.cls_token.expand(b, 1, self.dim), x], 1)
        x = x + self.pos_embed
        hidden, attention = [], []
        for layer in self.layers:
            t = x.shape[1]
            q, k, v = layer.attn.qkv(layer.norm1(x)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-2, -1) / (q.shape[-1] ** 0.5), -1)
            x = x + layer.attn.proj((a @ v).transpose(1, 2).reshape(b, t, self.dim))
            x = x + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.norm2(x))))
            hidden.append(x)
            attention.append(a)
        x = self.norm(x)
        pooled = x[:, 0] if self.pool == "cls" else x.mean(1)
        return self.head(pooled), hidden, attention


# --- the terms, from their definitions -----------------------------------------------------

def kl_term(s, t, temperature):
    return F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), reduction="batchmean",
                    log_target=True) * temperature ** 2


def cos_term(a, b):
    if a.dim() == 3:
        a, b = a.flatten(0, 1), b.flatten(0, 1)
    return (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean()


def attn_term(a, b):
    if a.shape[1] != b.shape[1]:
        a, b = a.mean(1), b.mean(1)
    return F.mse_loss(a, b)


def kl_rows(log_a, log_b):
    return F.kl_div(log_b, log_a, reduction="none", log_target=True).sum(-1)


def divergence(kind, s, log_p, temperature, param=0.0, ids=None):
    """log_p: the teacher's log-probabilities at T (top-K ones when ids is given)."""
    log_q = F.log_softmax(s.reshape(-1, s.shape[-1]) / temperature, -1)
    if ids is not None:  # the kept ids, then the rest as one bucket, on both sides
        rest = torch.ones_like(log_q, dtype=torch.bool).scatter(1, ids, False)
        rest_q = torch.logsumexp(log_q.masked_fill(~rest, float("-inf")), -1, keepdim=True)
        rest_p = torch.log((1 - log_p.exp().sum(-1, keepdim=True)).clamp_min(1e-30))
        log_q = torch.cat([log_q.gather(1, ids), rest_q], 1)
        log_p = torch.cat([log_p, rest_p], 1)

    def mix(w):
        return torch.logsumexp(torch.stack([log_p + math.log(w), log_q + math.log1p(-w)]), 0)

    if kind == "kl" or (kind == "gjs" and param == 0):
        rows = kl_rows(log_p, log_q)
    elif kind == "reverse_kl" or (kind == "gjs" and param == 1):
        rows = kl_rows(log_q, log_p)
    elif kind == "skew_kl":
        rows = kl_rows(log_p, mix(param))
    else:
        m = mix(param)
        rows = param * kl_rows(log_p, m) + (1 - param) * kl_rows(log_q, m)
    return rows.mean() * temperature ** 2


def attn_kl_term(a_s, a_t):
    if a_s.shape[1] != a_t.shape[1]:
        a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
    rows = a_t.shape[:-1].numel()
    support = a_t > 0  # the causal mask's zeros add 0 log 0 = 0
    p, q = a_t[support], a_s[support]
    return (p * (p.log() - q.log())).sum() / rows


TOKEN_CASES = [("kl", 0.0), ("reverse_kl", 0.0), ("skew_kl", 0.1), ("skew_kl", 0.5), ("gjs", 0.5), ("gjs", 0.0),
               ("gjs", 1.0), ("gjs", 0.9)]


def token_goldens(T, S):
    """Each divergence on token logits [2, 5, 11], whole and top-4, at T 1 and 2."""
    T["tok_logits_s"] = torch.randn(2, 5, 11) * 2
    T["tok_logits_t"] = torch.randn(2, 5, 11) * 3
    for temp in (1.0, 2.0):
        log_p = F.log_softmax(T["tok_logits_t"].reshape(-1, 11) / temp, -1)
        top = log_p.topk(4, -1)
        T[f"tok_top4_ids_T{temp:g}"] = top.indices
        T[f"tok_top4_logp_T{temp:g}"] = top.values
        for kind, param in TOKEN_CASES:
            for name, lp, ids in (("whole", log_p, None), ("top4", top.values, top.indices)):
                s = T["tok_logits_s"].clone().requires_grad_(True)
                value = divergence(kind, s, lp, temp, param, ids)
                value.backward()
                key = f"{kind}_{param:g}_{name}_T{temp:g}"
                S[key] = value.item()
                T["grad." + key] = s.grad
    causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    T["catt_s"] = torch.softmax(torch.randn(2, 2, 5, 5).masked_fill(~causal, float("-inf")), -1)
    T["catt_t"] = torch.softmax(torch.randn(2, 2, 5, 5).masked_fill(~causal, float("-inf")), -1)
    T["catt_t3"] = torch.softmax(torch.randn(2, 3, 5, 5).masked_fill(~causal, float("-inf")), -1)
    S["attn_kl_same_heads"] = attn_kl_term(T["catt_s"], T["catt_t"]).item()
    S["attn_kl_diff_heads"] = attn_kl_term(T["catt_s"], T["catt_t3"]).item()


def gpt_cfg(d, layers, heads):
    return {"vocab_size": 13, "n_embd": d, "n_positions": 8, "n_layer": layers, "n_head": heads, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "resid_pdrop": 0.0, "layer_norm_epsilon": 1e-5}


def gpt_distillation(T, S):
    """gpt teacher (d 16, 2 layers, 4 heads) -> gpt student (d 8, 1 layer, 2 heads) on ids
    [2, 6]. Weights: ce 0.5, kl 0.5 and reverse_kl 0.25 at T 2, gjs 0.25 (beta 0.3), mse 0.3
    (student layer0 -> teacher layer1 through a linear projection 8 -> 16), attention kl 1
    (uniform: layer0 -> layer1, head-averaged)."""
    teacher, student = Gpt2LMHead(gpt_cfg(16, 2, 4)), Gpt2LMHead(gpt_cfg(8, 1, 2))
    for m in (teacher, student):
        m.init_weights(0.3)
    proj = nn.Linear(8, 16)
    ids = torch.randint(0, 13, (2, 7))
    x, y = ids[:, :6], ids[:, 1:]
    with torch.no_grad():
        t_logits, t_hidden, t_att = teacher(x)
    s_logits, s_hidden, s_att = student(x)
    log_p = F.log_softmax(t_logits.reshape(-1, 13) / 2.0, -1)
    terms = {"ce": F.cross_entropy(s_logits.flatten(0, 1), y.flatten()),
             "kl": divergence("kl", s_logits, log_p, 2.0),
             "reverse_kl": divergence("reverse_kl", s_logits, log_p, 2.0),
             "gjs": divergence("gjs", s_logits, log_p, 2.0, 0.3),
             "mse.layer0": F.mse_loss(proj(s_hidden[0]), t_hidden[1]),
             "attn.0": attn_kl_term(s_att[0], t_att[1])}
    total = (0.5 * terms["ce"] + 0.5 * terms["kl"] + 0.25 * terms["reverse_kl"] + 0.25 * terms["gjs"] +
             0.3 * terms["mse.layer0"] + 1.0 * terms["attn.0"])
    total.backward()
    for k, v in teacher.state_dict().items():
        T["gpt.teacher." + k] = v
    for k, v in student.state_dict().items():
        T["gpt.student." + k] = v
    for k, v in proj.state_dict().items():
        T["gpt.distiller.proj.layer0." + k] = v
    T["gpt.x"], T["gpt.y"] = x, y
    T["gpt.grad.student.transformer.h.0.attn.c_attn.weight"] = student.transformer.h[0].attn.c_attn.weight.grad
    T["gpt.grad.distiller.proj.layer0.weight"] = proj.weight.grad
    S["gpt.total"] = total.item()
    for k, v in terms.items():
        S["gpt." + k] = v.item()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(here, "..", "..", "tests", "distill",
                                                                                  "data"))
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1234)
    T, S = {}, {}  # tensors, scalars

    # Single terms.
    T["logits_s"] = torch.randn(5, 7) * 2
    T["logits_t"] = torch.randn(5, 7) * 3
    T["labels"] = torch.randint(0, 7, (5,))
    S["ce"] = F.cross_entropy(T["logits_s"], T["labels"]).item()
    for temp in (1.0, 2.0, 4.0):
        S[f"kl_T{temp:g}"] = kl_term(T["logits_s"], T["logits_t"], temp).item()
    T["vec_s"], T["vec_t"] = torch.randn(4, 6), torch.randn(4, 6)
    T["map_s"], T["map_t"] = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    T["tok_s"], T["tok_t"] = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    S["mse_vec"] = F.mse_loss(T["vec_s"], T["vec_t"]).item()
    S["mse_map"] = F.mse_loss(T["map_s"], T["map_t"]).item()
    S["cos_vec"] = cos_term(T["vec_s"], T["vec_t"]).item()
    S["cos_map"] = cos_term(T["map_s"], T["map_t"]).item()
    S["cos_tok"] = cos_term(T["tok_s"], T["tok_t"]).item()
    T["att_s"] = torch.softmax(torch.randn(2, 2, 5, 5), -1)
    T["att_t"] = torch.softmax(torch.randn(2, 2, 5, 5), -1)
    T["att_t4"] = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    S["attn_same_heads"] = attn_term(T["att_s"], T["att_t"]).item()
    S["attn_diff_heads"] = attn_term(T["att_s"], T["att_t4"]).item()
    T["big_map"] = torch.randn(2, 3, 7, 6)
    T["small_map"] = torch.randn(2, 3, 3, 6)
    T["pooled_big"] = F.adaptive_avg_pool2d(T["big_map"], (3, 6))

    # Whole distillation 1: MLP teacher (16, 12) -> MLP student (6), 8x8 inputs.
    # Map last: student fc0 [B, 6] -> linear projection -> teacher fc1 [B, 12].
    # alpha 0.6 (ce 0.6, mse 0.4), kl 0.5 at T 3, cosine 0.25.
    teacher, student = Mlp(64, [16, 12], 10), Mlp(64, [6], 10)
    proj = nn.Linear(6, 12)
    x = torch.randn(4, 1, 8, 8)
    y = torch.randint(0, 10, (4,))
    t_logits, t_hidden, _ = teacher(x)
    s_logits, s_hidden, _ = student(x)
    h = proj(s_hidden[0])
    terms = {"ce": F.cross_entropy(s_logits, y), "kl": kl_term(s_logits, t_logits.detach(), 3.0),
             "mse.fc0": F.mse_loss(h, t_hidden[1].detach()), "cos.fc0": cos_term(h, t_hidden[1].detach())}
    total = 0.6 * terms["ce"] + 0.5 * terms["kl"] + 0.4 * terms["mse.fc0"] + 0.25 * terms["cos.fc0"]
    total.backward()
    for k, v in teacher.state_dict().items():
        T["mlp.teacher." + k] = v
    for k, v in student.state_dict().items():
        T["mlp.student." + k] = v
    for k, v in proj.state_dict().items():
        T["mlp.distiller.proj.fc0." + k] = v
    T["mlp.x"], T["mlp.y"] = x, y
    T["mlp.grad.student.fc0.weight"] = student.fc0.weight.grad
    T["mlp.grad.distiller.proj.fc0.weight"] = proj.weight.grad
    S["mlp.total"] = total.item()
    for k, v in terms.items():
        S["mlp." + k] = v.item()

    # Whole distillation 2: ViT teacher (dim 16, depth 2, heads 2) -> ViT student (dim 8,
    # depth 1, heads 1), both cls pooled, 8x8 inputs in 4x4 patches (T = 5 tokens).
    # Map uniform: student layer0 -> teacher layer1 (linear projection 8 -> 16 on tokens);
    # attention uniform, head-averaged (1 vs 2 heads). Weights: ce 0.5, kl 1 at T 2,
    # mse 0.3, attention 2.
    teacher = Vit(dim=16, depth=2, heads=2, mlp_ratio=2.0)
    student = Vit(dim=8, depth=1, heads=1, mlp_ratio=1.5)
    proj = nn.Linear(8, 16)
    x = torch.randn(3, 1, 8, 8)
    y = torch.randint(0, 10, (3,))
    with torch.no_grad():
        t_logits, t_hidden, t_att = teacher(x)
    s_logits, s_hidden, s_att = student(x)
    terms = {"ce": F.cross_entropy(s_logits, y), "kl": kl_term(s_logits, t_logits, 2.0),
             "mse.layer0": F.mse_loss(proj(s_hidden[0]), t_hidden[1]), "attn.0": attn_term(s_att[0], t_att[1])}
    total = 0.5 * terms["ce"] + 1.0 * terms["kl"] + 0.3 * terms["mse.layer0"] + 2.0 * terms["attn.0"]
    for k, v in teacher.state_dict().items():
        T["vit.teacher." + k] = v
    for k, v in student.state_dict().items():
        T["vit.student." + k] = v
    for k, v in proj.state_dict().items():
        T["vit.distiller.proj.layer0." + k] = v
    T["vit.x"], T["vit.y"] = x, y
    T["vit.teacher_logits"] = t_logits
    T["vit.teacher_attention1"] = t_att[1]
    T["vit.teacher_hidden0"] = t_hidden[0]
    S["vit.total"] = total.item()
    for k, v in terms.items():
        S["vit." + k] = v.item()

    token_goldens(T, S)
    gpt_distillation(T, S)

    save_safetensors(os.path.join(out_dir, "distill_golden.safetensors"), T)
    with open(os.path.join(out_dir, "distill_golden.json"), "w") as f:
        json.dump({"torch": torch.__version__, "values": S}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(T)} tensors and {len(S)} values to {out_dir}")


if __name__ == "__main__":
    main()
