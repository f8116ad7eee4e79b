#!/usr/bin/env python3
# Markdown tables for docs/results.md from a tuned sweep's comparison.json and telemetry.jsonl:
#   python3 scripts/results_tables.py SWEEP_DIR   (standard library only)
import json, sys, statistics, os
d = sys.argv[1]
c = json.load(open(f'{d}/comparison.json'))
idx = json.load(open(f'{d}/sweep.json'))
t = c['target_loss']
print(f"| optimizer | lrs tried (x base) | best lr | on an edge | final eval loss | steps to {t:g} | seeds at target | target rule |")
print("|---|---|---|---|---|---|---|---|")
for k, v in c['optimizers'].items():
    f = v['final']; g = v['grid']
    if not f:
        print(f"| {k} | | none | | | | | |"); continue
    fe = f['final_eval_loss']; st = f['steps_to_target']
    ci = lambda s, fmt: (fmt.format(s['mean']) + (' +- ' + fmt.format(s['ci95']) if s and s.get('ci95') is not None else '')) if s else '-'
    rule = f.get('target_rule')
    print(f"| {k} | {g[0]['lr_multiplier']:g} .. {g[-1]['lr_multiplier']:g} ({len(g)} lrs) | {f['lr']:.3g} ({f['lr_multiplier']:g}x) | {'yes' if v['best_on_edge'] else 'no'} | {ci(fe, '{:.4f}')} (n={f['final_eval_loss']['count']}) | {ci(st, '{:.0f}')} | {f.get('reached_target', 0)*100:.0f}% | {('met' if rule['passed'] else 'not met') + ' (%.3f)' % rule['value'] if rule else '-'} |")
print()
for p in c['pairwise']: print('-', p['verdict'])
print()
for k, v in c['optimizers'].items():
    print('-', k + ':', ', '.join(f"{g['lr_multiplier']:g}x {g['final_eval_loss']['mean']:.4g}" if g['final_eval_loss'] else f"{g['lr_multiplier']:g}x diverged" for g in v['grid']))
print()
# Telemetry: over the final runs, the mean over steps of the median and worst tensor.
print("| optimizer | update/weight ratio: median tensor | worst tensor | row-norm CV of dW: median | worst | dead rows: worst |")
print("|---|---|---|---|---|---|")
for k, v in c['optimizers'].items():
    runs = [r['id'] for r in idx['runs'] if r['optimizer'] == k and r['stage'] == 'final']
    acc = {q: ([], []) for q in ('update_ratio', 'row_cv', 'dead_rows')}
    for rid in runs:
        p = f'{d}/runs/{rid}/telemetry.jsonl'
        if not os.path.exists(p): continue
        for line in open(p):
            rec = json.loads(line)
            for q in acc:
                vals = sorted(s[q] for s in rec['tensors'].values() if s.get(q) is not None)
                if vals:
                    acc[q][0].append(vals[(len(vals) - 1) // 2]); acc[q][1].append(vals[-1])
    if not acc['update_ratio'][0]: continue
    m = lambda x: statistics.mean(x)
    print(f"| {k} | {m(acc['update_ratio'][0]):.4f} | {m(acc['update_ratio'][1]):.4f} | {m(acc['row_cv'][0]):.3f} | {m(acc['row_cv'][1]):.3f} | {m(acc['dead_rows'][1]):.3f} |")
