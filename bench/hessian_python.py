#!/usr/bin/python3
"""Python baseline for bench_hessian: full Hessian of a bias-free ReLU MLP (widths d, hidden...,
C; the seed's setup is 500,8,500) under cross-entropy, with
torch.autograd.functional.hessian(vectorize=False), or vectorize=True (--vectorize: all rows
batched through PyTorch's vmap). Prints one JSON line.

Usage: /usr/bin/python3 bench/hessian_python.py [--widths 500,8,500 --n 5000 --threads 0]
                                                [--vectorize]
"""
import argparse
import json
import resource
import time

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", default="500,8,500", help="d,hidden...,C")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch default")
    parser.add_argument("--vectorize", action="store_true", help="batch the rows (vmap)")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.n, widths[0])
    y = torch.randint(widths[-1], (args.n,))
    weights = tuple(torch.randn(fan_out, fan_in) / fan_in ** 0.5
                    for fan_in, fan_out in zip(widths[:-1], widths[1:]))

    def loss(*ws):
        h = x
        for i, w in enumerate(ws):
            h = h @ w.t()
            if i + 1 < len(ws):
                h = torch.relu(h)
        return torch.nn.functional.cross_entropy(h, y)

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.autograd.functional.hessian(loss, weights, vectorize=args.vectorize)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "params": sum(w.numel() for w in weights),
        "threads": torch.get_num_threads(),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
