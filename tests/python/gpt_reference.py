#!/usr/bin/python3
"""PyTorch twin of blockopt's models/gpt.cpp (same parameter names and maths).

Used by the Models GPT match test:  gpt_reference.py IN.pt OUT.pt
IN (written by C++ torch::pickle_save): {"config": int64 [vocab, d_model, layers, heads,
context, bias, tie], "tokens": (B, T), "targets": (B, T), "param.<name>": tensor}.
OUT (torch.save): {"loss": scalar, "grad.<name>": tensor} after one forward/backward.
"""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm(nn.Module):
    def __init__(self, dim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, heads, context, bias):
        super().__init__()
        self.heads = heads
        self.wq = nn.Linear(d_model, d_model, bias=bias)
        self.wk = nn.Linear(d_model, d_model, bias=bias)
        self.wv = nn.Linear(d_model, d_model, bias=bias)
        self.wo = nn.Linear(d_model, d_model, bias=bias)
        self.register_buffer("causal", torch.ones(context, context, dtype=torch.bool).triu(1),
                             persistent=False)

    def forward(self, x):
        b, t, c = x.shape
        d = c // self.heads
        q, k, v = (w(x).view(b, t, self.heads, d).transpose(1, 2)
                   for w in (self.wq, self.wk, self.wv))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        scores = scores.masked_fill(self.causal[:t, :t], float("-inf"))
        y = torch.softmax(scores, -1) @ v
        return self.wo(y.transpose(1, 2).contiguous().view(b, t, c))


class FeedForward(nn.Module):
    def __init__(self, d_model, bias):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model, bias=bias)
        self.proj = nn.Linear(4 * d_model, d_model, bias=bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, d_model, heads, context, bias):
        super().__init__()
        self.ln_1 = LayerNorm(d_model, bias)
        self.attn = CausalSelfAttention(d_model, heads, context, bias)
        self.ln_2 = LayerNorm(d_model, bias)
        self.mlp = FeedForward(d_model, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, d_model, layers, heads, context, bias=False, tie=False):
        super().__init__()
        self.tie = tie
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(context, d_model)
        self.h = nn.ModuleList(Block(d_model, heads, context, bias) for _ in range(layers))
        self.ln_f = LayerNorm(d_model, bias)
        if not tie:
            self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens):
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe.weight[:t]
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight) if self.tie else self.lm_head(x)


def main(in_path, out_path):
    # weights_only=False: the file is the test's own torch::pickle_save of a c10::Dict, whose
    # type tags are not on the weights-only allowlist (the default of newer PyTorch).
    data = torch.load(in_path, weights_only=False)
    vocab, d_model, layers, heads, context, bias, tie = data["config"].tolist()
    model = GPT(vocab, d_model, layers, heads, context, bool(bias), bool(tie))
    params = dict(model.named_parameters())
    given = {k[len("param."):]: v for k, v in data.items() if k.startswith("param.")}
    if set(given) != set(params):
        sys.exit(f"parameter names differ: C++ only {sorted(set(given) - set(params))}, "
                 f"Python only {sorted(set(params) - set(given))}")
    model = model.to(given["wte.weight"].dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(given[name])
    logits = model(data["tokens"])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data["targets"].reshape(-1))
    loss.backward()
    out = {"loss": loss.detach()}
    out.update({"grad." + n: p.grad for n, p in model.named_parameters()})
    torch.save(out, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
