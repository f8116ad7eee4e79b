#!/usr/bin/python3
"""Python baseline for bench_hessian: full Hessian of the paper's 1-hidden-layer ReLU MLP with
torch.autograd.functional.hessian(vectorize=False). Prints one JSON line.

Usage: /usr/bin/python3 bench/hessian_python.py [--d 500 --m 8 --classes 500 --n 5000]
"""
import argparse
import json
import resource
import time

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--d", type=int, default=500)
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=0, help="0 = torch default")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.n, args.d)
    y = torch.randint(args.classes, (args.n,))
    w1 = torch.randn(args.m, args.d) / args.d ** 0.5
    w2 = torch.randn(args.classes, args.m) / args.m ** 0.5

    def loss(a, b):
        return torch.nn.functional.cross_entropy(torch.relu(x @ a.t()) @ b.t(), y)

    start, cpu_start = time.perf_counter(), time.process_time()
    torch.autograd.functional.hessian(loss, (w1, w2), vectorize=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "params": w1.numel() + w2.numel(),
        "threads": torch.get_num_threads(),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
