#!/usr/bin/python3
"""Python baseline for bench_models: training steps (forward, cross-entropy, backward, AdamW)
of the GPT in tests/python/gpt_reference.py (the PyTorch twin of models/gpt.cpp), eager mode,
float32. Prints one JSON line {"tokens_per_s", "step_ms", ...}.

Usage: /usr/bin/python3 bench/gpt_python_bench.py [--vocab 2000 --d-model 128 --layers 4
       --heads 4 --context 128 --batch 16 --steps 20 --threads 0]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "python"))
from gpt_reference import GPT  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch default")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(args.vocab, args.d_model, args.layers, args.heads, args.context)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(args.vocab, (args.batch, args.context))
    targets = torch.randint(args.vocab, (args.batch, args.context))

    def step():
        optimizer.zero_grad()
        logits = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"tokens_per_s": args.batch * args.context / seconds,
                      "step_ms": 1e3 * seconds, "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
