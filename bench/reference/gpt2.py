"""A PyTorch GPT-2, the twin of retort's gpt family (models/gpt.h), written from GPT-2's
published definition (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners": GPT's Transformer decoder with layer norm at each block's input, a final layer
norm, residual projections initialised at 1/sqrt(N) for N residual layers; the tanh GELU),
with the parameter names and layouts of Hugging Face's GPT2LMHeadModel (Conv1D weights
stored [in, out], lm_head tied to transformer.wte), so one model.safetensors loads in all
three. Golden data for tests/models/gpt_test.cpp:

    /usr/bin/python3 bench/reference/gpt2.py logits DIR
        DIR holds config.json (GPT2Config fields), model.safetensors and ids.safetensors
        ("ids" [B, T]); writes DIR/torch.safetensors: logits, hidden.<l>, attention.<l>.
    /usr/bin/python3 bench/reference/gpt2.py init DIR --vocab 61 --context 16 --dim 24 \\
        --layers 2 --heads 3 [--inner 40] [--std 0.02] [--jitter 0] [--seed 1] [--batch 2 --tokens 9]
        a GPT-2-initialised model (every parameter then moved by normal(0, jitter), so biases
        and layer norms are tested too) saved as a Hugging Face checkpoint folder: config.json,
        model.safetensors (with the attn.bias / attn.masked_bias buffers and lm_head.weight
        such files carry), and golden.safetensors: ids and the model's logits.
"""
import argparse
import json
import math
import os

import torch
import torch.nn as nn

from models import load_safetensors, save_safetensors


def gelu_new(x):
    """GPT-2's GELU, the tanh approximation (Hendrycks & Gimpel 2016)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """GPT-2's projection: y = x @ W + b with W stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["n_embd"], cfg["n_positions"]
        self.heads = cfg["n_head"]
        self.softmax_fp32 = cfg.get("softmax_fp32", False)  # as retort's autocast policy (lm_train.py)
        self.c_attn = Conv1D(d, 3 * d)
        self.c_proj = Conv1D(d, d)
        self.attn_dropout = nn.Dropout(cfg["attn_pdrop"])
        self.resid_dropout = nn.Dropout(cfg["resid_pdrop"])
        # Causal mask: position i sees 0..i. Not state (older Hugging Face files carry it).
        self.register_buffer("bias", torch.tril(torch.ones(p, p, dtype=torch.bool)).view(1, 1, p, p),
                             persistent=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.c_attn(x).split(d, 2))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~self.bias[:, :, :t, :t], float("-inf"))
        probs = torch.softmax(scores.float() if self.softmax_fp32 else scores, -1)
        y = (self.attn_dropout(probs) @ v).transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.c_proj(y)), probs


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * d
        self.c_fc = Conv1D(d, inner)
        self.c_proj = Conv1D(inner, d)
        self.dropout = nn.Dropout(cfg["resid_pdrop"])

    def forward(self, x):
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["n_embd"], cfg["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(cfg)

    def forward(self, x):
        a, probs = self.attn(self.ln_1(x))
        x = x + a
        return x + self.mlp(self.ln_2(x)), probs


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        self.drop = nn.Dropout(cfg["embd_pdrop"])
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg["layer_norm_epsilon"])


class Gpt2LMHead(nn.Module):
    """GPT2LMHeadModel's structure: logits, each block's output, each block's attention."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg.get("activation_function", "gelu_new") in ("gelu_new", "gelu_pytorch_tanh")
        assert cfg.get("tie_word_embeddings", True)
        self.transformer = Transformer(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one tensor

    def forward(self, ids):
        tr = self.transformer
        positions = torch.arange(ids.shape[1])
        x = tr.drop(tr.wte(ids) + tr.wpe(positions))
        hidden, attention = [], []
        for block in tr.h:
            x, probs = block(x)
            hidden.append(x)
            attention.append(probs)
        return self.lm_head(tr.ln_f(x)), hidden, attention

    def init_weights(self, std):
        """GPT-2's initialisation: normal(0, std) weights and embeddings, zero biases, unit
        layer norms; the projections into the residual stream at std / sqrt(2 layers)."""
        for m in self.modules():
            if isinstance(m, (Conv1D, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, Conv1D):
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        layers = len(self.transformer.h)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * layers))


def read_config(path):
    with open(path) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "gpt2", cfg["model_type"]
    cfg.setdefault("n_positions", cfg.get("n_ctx"))
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        cfg.setdefault(key, 0.1)
    cfg.setdefault("layer_norm_epsilon", 1e-5)
    return cfg


def logits(folder):
    """Loads a retort export strictly (its lm_head is wte's tensor) and runs ids.safetensors."""
    model = Gpt2LMHead(read_config(os.path.join(folder, "config.json")))
    state = load_safetensors(os.path.join(folder, "model.safetensors"))
    state.setdefault("lm_head.weight", state["transformer.wte.weight"])
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        out, hidden, attention = model(load_safetensors(os.path.join(folder, "ids.safetensors"))["ids"])
    result = {"logits": out}
    for i, (h, a) in enumerate(zip(hidden, attention)):
        result[f"hidden.{i}"], result[f"attention.{i}"] = h, a
    save_safetensors(os.path.join(folder, "torch.safetensors"), result)


def init(folder, a):
    """A GPT-2-initialised model written as a Hugging Face checkpoint folder, with golden logits."""
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": a.vocab,
           "n_positions": a.context, "n_ctx": a.context, "n_embd": a.dim, "n_layer": a.layers, "n_head": a.heads,
           "n_inner": a.inner, "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1,
           "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5, "initializer_range": a.std, "scale_attn_weights": True,
           "tie_word_embeddings": True, "use_cache": True, "bos_token_id": a.vocab - 1, "eos_token_id": a.vocab - 1}
    torch.manual_seed(a.seed)
    model = Gpt2LMHead(cfg)
    model.init_weights(a.std)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * a.jitter)
    model.eval()
    state = dict(model.state_dict())  # lm_head.weight included, as GPT2LMHeadModel saves it
    for i in range(a.layers):
        state[f"transformer.h.{i}.attn.bias"] = model.transformer.h[i].attn.bias
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    ids = torch.randint(0, a.vocab, (a.batch, a.tokens))
    with torch.no_grad():
        out, _, _ = model(ids)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    save_safetensors(os.path.join(folder, "model.safetensors"), state)
    save_safetensors(os.path.join(folder, "golden.safetensors"), {"ids": ids, "logits": out})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["logits", "init"])
    parser.add_argument("dir")
    for name, default in (("vocab", 61), ("context", 16), ("dim", 24), ("layers", 2), ("heads", 3), ("seed", 1),
                          ("batch", 2), ("tokens", 9)):
        parser.add_argument("--" + name, type=int, default=default)
    parser.add_argument("--inner", type=int, default=None, help="MLP width (n_inner); default 4 * dim")
    parser.add_argument("--std", type=float, default=0.02, help="initializer_range")
    parser.add_argument("--jitter", type=float, default=0.0, help="noise added to every parameter after init")
    a = parser.parse_args()
    if a.command == "logits":
        logits(a.dir)
    else:
        init(a.dir, a)


if __name__ == "__main__":
    main()
