#!/usr/bin/env python3
"""1 rank x N threads against N ranks x 1 thread on this machine, with the blockopt CLI.

Runs the compare-gpt model (d_model 128, 4 layers, context 128, global batch 16) for --steps
steps with each optimizer, alternating the two set-ups --repeats times, and prints a markdown
table: tokens/s over the steps after the first 10 (median of the logged steps, then mean and
sd over the repeats), and for the ranks the gradient averaging time per step (copies into the
buckets and the allreduce, summary.json; with `distributed.overlap` the part left after
backward). Only the standard library: python3 is used to drive
the CLI, not as a runtime dependency.

    python3 bench/data_parallel.py --blockopt build/blockopt --ranks 2 --repeats 3
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

CONFIG = """name: dp-bench
seed: 0
data: {{type: text, corpus: kjv, tokenizer: {{type: byte}}, context: 128, batch: 16, eval_windows: 16}}
model: {{type: gpt, d_model: 128, layers: 4, heads: 4, bias: false, tie_weights: false}}
optimizer: {optimizer}
train: {{steps: {steps}, log_every: 1, grad_clip: 1.0}}
"""

OPTIMIZERS = {
    "adamw": "{name: adamw, lr: 3.0e-3}",
    "muon": "{name: muon, lr: 0.02, fallback: {lr: 3.0e-3}}",
}


def run(blockopt, config, out, extra):
    subprocess.run([blockopt, "run", config, "--out", out, "--no-progress", *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"loss"' in l]
    rates = [s["tokens_per_s"] for s in steps if "tokens_per_s" in s and s["step"] > 10]
    summary = json.load(open(os.path.join(out, "summary.json")))
    sync = summary.get("data_parallel", {}).get("gradient_sync_seconds_per_step")
    return statistics.median(rates), sync


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--blockopt", default="build/blockopt")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    args = parser.parse_args()
    threads = os.cpu_count()
    print(f"| optimizer | set-up | tokens/s (mean +- sd of {args.repeats}) | gradient averaging ms/step |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.optimizers:
            optimizer = OPTIMIZERS[name]
            config = os.path.join(tmp, f"{name}.yaml")
            with open(config, "w") as f:
                f.write(CONFIG.format(optimizer=optimizer, steps=args.steps))
            one, many, syncs, overlapped, overlapped_syncs = [], [], [], [], []
            for r in range(args.repeats):
                rate, _ = run(args.blockopt, config, os.path.join(tmp, f"{name}-one-{r}"),
                              ["--set", f"runtime.threads={threads}"])
                one.append(rate)
                rate, sync = run(args.blockopt, config, os.path.join(tmp, f"{name}-many-{r}"),
                                 ["--nproc", str(args.ranks)])
                many.append(rate)
                syncs.append(sync * 1e3)
                rate, sync = run(args.blockopt, config, os.path.join(tmp, f"{name}-overlap-{r}"),
                                 ["--nproc", str(args.ranks), "--set", "distributed.overlap=true"])
                overlapped.append(rate)
                overlapped_syncs.append(sync * 1e3)
            fmt = lambda xs: f"{statistics.mean(xs):.0f} +- {statistics.stdev(xs) if len(xs) > 1 else 0:.0f}"
            print(f"| {name} | 1 rank x {threads} threads | {fmt(one)} | - |")
            ms = lambda xs: f"{statistics.mean(xs):.2f} +- {statistics.stdev(xs) if len(xs) > 1 else 0:.2f}"
            ranks = f"{args.ranks} ranks x {max(1, threads // args.ranks)} thread(s)"
            print(f"| {name} | {ranks} | {fmt(many)} | {ms(syncs)} |")
            print(f"| {name} | {ranks}, overlap | {fmt(overlapped)} | {ms(overlapped_syncs)} |")


if __name__ == "__main__":
    main()
