#!/usr/bin/env python3
# usage: /usr/bin/python3 bench/theorem1_numpy.py N d C SEEDS  (e.g. 3000 3000 1000 3)
# Independent check of C^2 R for Theorem 1 (linear + CE at LeCun init), numpy float64:
# R = (T - D) / ((C - 1) D) from the aggregate contractions (not blockopt's per-pair code):
#   T = sum K o (c c^T - 2 c (q o q)^T + (q q^T)^2),  D = sum K o (a a^T),  K = (X X^T)^2,
#   c = p / N, q = p / sqrt(N), a = c - q^2.
import numpy as np, sys, math
N, d, C = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for seed in range(int(sys.argv[4])):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    W = rng.standard_normal((C, d)) / math.sqrt(d)
    Z = X @ W.T
    Z -= Z.max(1, keepdims=True)
    P = np.exp(Z); P /= P.sum(1, keepdims=True)
    c, q = P / N, P / math.sqrt(N)
    K = (X @ X.T) ** 2
    qq = q @ q.T
    T = (K * (c @ c.T - 2 * c @ (q * q).T + qq * qq)).sum()
    a = c - q * q
    D = (K * (a @ a.T)).sum()
    R = (T - D) / ((C - 1) * D)
    g = d / N
    print(f"N={N} d={d} C={C} seed={seed}: C^2 R = {C*C*R:.4f}, limit {(g*math.e**2+1)/(g*math.e+1):.4f}", flush=True)
