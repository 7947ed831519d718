#!/usr/bin/env python3
"""Every cleaning rule at its boundaries against an independent numpy re-implementation.

The oracle below is written from the definitions in include/quorum/clean.h and quorum/vote.h, not from
src/clean: mean rewards in double summed member by member, SAC's strict "C < bad_threshold AND
R < bad_threshold" (a pair exactly at the threshold is kept), vote_all "agree == 0", vote_maj
"N - agree > N/2" (an even split is kept), margin_* the k = floor(p * n) lowest mean margins with p read
as its 6-decimal value and ties broken by the smaller pair id. The test writes votes files with h5py
(the layout of quorum/vote.h), runs clean_decide on each through clean_decide_tool, and compares every
pair's action.

Cases: SAC with the chosen mean exactly at, and one float32 step below, the threshold (and the same for
the rejected mean) for dyadic and non-dyadic thresholds, every bucket, listed and unlisted splits;
vote_all / vote_maj for N = 1..6 and every agree count (ties count as disagreement); margin_* with
p * n on an integer (0.7 * 10), p = 0 and 1, tie groups straddling the cut and pair ids not in file
order; and random votes for every method.

usage: test_rules_oracle.py CLEAN_DECIDE_TOOL SCRATCH
"""
import math
import os
import shutil
import subprocess
import sys
from fractions import Fraction

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, rng  # noqa: E402

TOOL, SCRATCH = sys.argv[1], sys.argv[2]
f32 = np.float32
METHODS = ["none", "sac", "vote_all_remove", "vote_all_flip", "vote_maj_remove", "vote_maj_flip",
           "margin_remove", "margin_flip"]


# ---------------------------------------------------------------- the oracle (clean.h, vote.h)
def bucket_of(agree, n, high_frac):
    h = math.ceil(float(f32(high_frac)) * n)
    if agree == 0:
        return 0                     # NoAgree
    if agree == n:
        return 3                     # AllAgree
    return 2 if agree >= h else 1    # HighAgree / LowAgree


def member_mean(x, i):
    """(1/N) sum_m x[m][i], in double, members in order."""
    acc = 0.0
    for m in range(x.shape[0]):
        acc += float(x[m, i])
    return acc / x.shape[0]


def margin_count(p, n):
    """k = floor(p6 * n) with p6 = p (a float32) rounded to 6 decimals, exactly, clamped to [0, n]."""
    p6 = Fraction(f"{float(f32(p)):.6f}")
    return max(0, min(n, math.floor(p6 * n)))


def oracle(method, v, splits, bad_threshold, p):
    n, N = len(v["pair_id"]), v["chosen"].shape[0]
    act = ["keep"] * n
    if method == "sac":
        thr = float(f32(bad_threshold))
        listed = v["split"] in splits
        for i in range(n):
            b = v["bucket"][i]
            if b == 0:
                act[i] = "flip"
            elif b == 1 and listed and member_mean(v["chosen"], i) < thr and member_mean(v["rejected"], i) < thr:
                act[i] = "remove"
    elif method.startswith("vote_"):
        what = "flip" if method.endswith("flip") else "remove"
        for i in range(n):
            a = int(v["agree"][i])
            hit = a == 0 if method.startswith("vote_all") else (N - a) > N / 2
            if hit:
                act[i] = what
    elif method.startswith("margin_"):
        what = "flip" if method.endswith("flip") else "remove"
        margins = [sum(float(v["chosen"][m, i]) - float(v["rejected"][m, i]) for m in range(N)) / N for i in range(n)]
        order = sorted(range(n), key=lambda i: (margins[i], int(v["pair_id"][i])))
        for i in order[:margin_count(p, n)]:
            act[i] = what
    return act


# ---------------------------------------------------------------- votes files and the tool
def votes(chosen, rejected, split="harmless", high_frac=0.5, pair_id=None):
    """A votes table from per-member rewards [N][n]: agree and bucket by quorum/vote.h (float32
    difference > margin 0; a tie disagrees)."""
    chosen, rejected = np.asarray(chosen, dtype=f32), np.asarray(rejected, dtype=f32)
    N, n = chosen.shape
    agree = np.array([sum(int(chosen[m, i] - rejected[m, i] > f32(0)) for m in range(N)) for i in range(n)], np.int32)
    bucket = np.array([bucket_of(int(a), N, high_frac) for a in agree], np.uint8)
    ids = np.arange(1, n + 1, dtype=np.int64) if pair_id is None else np.asarray(pair_id, np.int64)
    return {"pair_id": ids, "agree": agree, "bucket": bucket, "chosen": chosen, "rejected": rejected,
            "split": split, "high_frac": high_frac}


def write_votes(path, v):
    N = v["chosen"].shape[0]
    with h5py.File(path, "w") as f:
        for k in ("pair_id", "agree", "bucket", "chosen", "rejected"):
            f.create_dataset(k, data=v[k])
        f.attrs.create("n_members", np.int32(N))
        f.attrs.create("margin", f32(0))
        f.attrs.create("high_frac", f32(v["high_frac"]))
        f.attrs.create("members", np.bytes_(",".join(f"m{m}" for m in range(N))))
        f.attrs.create("corpus", np.bytes_("c"))
        f.attrs.create("split", np.bytes_(v["split"]))


CASE = [0]


def compare(name, v, methods, splits=("harmless",), bad_threshold=0.0, p=0.1):
    CASE[0] += 1
    path = os.path.join(SCRATCH, f"case{CASE[0]}.h5")
    write_votes(path, v)
    for method in methods:
        r = subprocess.run([TOOL, path, method, ",".join(splits), repr(float(bad_threshold)), repr(float(p))],
                           capture_output=True, text=True)
        if not check(r.returncode == 0, f"{name} {method}: tool exited {r.returncode}: {r.stderr.strip()}"):
            continue
        got = r.stdout.split()
        want = oracle(method, v, splits, bad_threshold, p)
        check(len(got) == len(want), f"{name} {method}: {len(got)} actions for {len(want)} pairs")
        for i, (g, w) in enumerate(zip(got, want)):
            check(g == w, f"{name} {method} (threshold {bad_threshold}, p {p}): pair {i} (id {v['pair_id'][i]}, "
                          f"bucket {v['bucket'][i]}, agree {v['agree'][i]}): {g}, oracle {w}")


def down(x):
    """The float32 just below x."""
    return np.nextafter(f32(x), f32(-np.inf), dtype=f32)


# ---------------------------------------------------------------- SAC at its threshold
def sac_cases():
    for t in [0.0, 0.25, -1.5, 40.0, 0.1, -0.37]:
        T, Td = f32(t), down(t)
        cols = []  # (chosen[3], rejected[3], what the column tests)
        # chosen mean exactly t (all members equal), rejected below: one member agrees, two tie -> LowAgree
        cols.append(([T, T, T], [T - f32(1), T, T], "C == t, R < t: keep"))
        # chosen one float32 step below t: remove
        cols.append(([Td, Td, Td], [Td - f32(1), Td, Td], "C just below t, R < t: remove"))
        # rejected mean exactly t, chosen below: keep
        cols.append(([T + f32(0.5), T - f32(1), T - f32(1)], [T, T, T], "R == t, C < t: keep"))
        # rejected one step below t, chosen below: remove
        cols.append(([Td + f32(0.5), Td - f32(1), Td - f32(1)], [Td, Td, Td], "R just below t, C < t: remove"))
        # both at t (dyadic t: the means are exact)
        cols.append(([T + f32(1), T - f32(0.5), T - f32(0.5)], [T, T, T], "C == R == t: keep"))
        # far below and far above
        cols.append(([T - f32(5), T - f32(6), T - f32(6)], [T - f32(6), T - f32(5), T - f32(5)], "both far below"))
        cols.append(([T + f32(5), T + f32(4), T + f32(4)], [T + f32(4), T + f32(5), T + f32(5)], "both above"))
        # the other buckets with both responses below t: NoAgree flips, High/All keep
        cols.append(([Td - f32(2)] * 3, [Td - f32(1)] * 3, "NoAgree below t: flip"))
        cols.append(([Td - f32(1), Td - f32(1), Td - f32(2)], [Td - f32(2), Td - f32(2), Td - f32(1)], "HighAgree below t"))
        cols.append(([Td - f32(1)] * 3, [Td - f32(2)] * 3, "AllAgree below t: keep"))
        chosen = np.array([c for c, _, _ in cols], dtype=f32).T
        rejected = np.array([r for _, r, _ in cols], dtype=f32).T
        for split, splits in [("harmless", ("harmless",)), ("helpful", ("harmless",)), ("helpful", ("x", "helpful"))]:
            v = votes(chosen, rejected, split=split)
            if split == "harmless" and t in (0.0, 0.25, -1.5, 40.0):
                # the fixture is what it claims: LowAgree columns, exact means at the threshold
                check(list(v["bucket"][:7]) == [1] * 7, f"SAC fixture t={t}: columns 0-6 are LowAgree ({v['bucket']})")
                check(member_mean(v["chosen"], 0) == float(T) and member_mean(v["rejected"], 2) == float(T),
                      f"SAC fixture t={t}: the means sit exactly on the threshold")
                want = ["keep", "remove", "keep", "remove", "keep", "remove", "keep", "flip", "keep", "keep"]
                check(oracle("sac", v, splits, t, 0) == want, f"SAC t={t}: the oracle's own reading of the cases")
            compare(f"sac t={t} split={split} listed={splits}", v, ["sac"], splits=splits, bad_threshold=t)


# ---------------------------------------------------------------- vote_all / vote_maj for every N and agree count
def vote_cases():
    for N in range(1, 7):
        chosen, rejected = [], []
        for a in range(N + 1):
            for tie in (False, True):  # disagreeing members: strictly lower, or a tie (a tie disagrees)
                c = [f32(1.0)] * a + [f32(0.5)] * (N - a)
                r = [f32(0.0)] * a + [f32(0.5) if tie else f32(2.0)] * (N - a)
                chosen.append(c)
                rejected.append(r)
        v = votes(np.array(chosen).T, np.array(rejected).T)
        check(sorted(set(int(a) for a in v["agree"])) == list(range(N + 1)), f"vote fixture N={N}: every agree count")
        if N == 4:
            # N/2 exactly: 2 of 4 disagreeing is not a strict majority
            a2 = [i for i in range(len(v["agree"])) if v["agree"][i] == 2]
            check(all(oracle("vote_maj_remove", v, (), 0, 0)[i] == "keep" for i in a2), "oracle: an even split is kept")
        compare(f"vote N={N}", v, ["vote_all_remove", "vote_all_flip", "vote_maj_remove", "vote_maj_flip", "none"])


# ---------------------------------------------------------------- margin_*: the count and the ties at the cut
def margin_cases():
    # p * n on an integer: 0.7 * 10 = 7 (a float32 0.7 times 10 is 6.99999988)
    c = np.array([[float(i) for i in range(10)]], dtype=f32)
    v = votes(c, np.zeros_like(c), pair_id=[10, 3, 7, 1, 9, 2, 8, 4, 6, 5])
    check(margin_count(0.7, 10) == 7, "oracle: floor(0.7 * 10) = 7")
    for p in [0.7, 0.0, 1.0, 0.05, 0.1, 0.15, 0.333333, 0.5, 0.99]:
        compare(f"margin 10 pairs p={p}", v, ["margin_remove", "margin_flip"], p=p)
    # tie groups straddling the cut, pair ids not in file order
    g = rng(24)
    n, N = 40, 3
    chosen = g.integers(-2, 3, size=(N, n)).astype(f32)
    rejected = g.integers(-2, 3, size=(N, n)).astype(f32)
    ids = g.permutation(np.arange(100, 100 + 3 * n, 3))
    v = votes(chosen, rejected, pair_id=ids)
    margins = [sum(float(chosen[m, i]) - float(rejected[m, i]) for m in range(N)) / N for i in range(n)]
    straddled = 0
    for p in [0.1, 0.15, 0.2, 0.25, 0.3, 0.45, 0.5, 0.625, 0.8]:
        k = margin_count(p, n)
        srt = sorted(margins)
        straddled += 0 < k < n and srt[k - 1] == srt[k]
        compare(f"margin ties p={p}", v, ["margin_remove", "margin_flip"], p=p)
    check(straddled >= 3, f"the tie fixture puts a tie group across the cut for {straddled} values of p (want >= 3)")


# ---------------------------------------------------------------- random votes, every method
def random_cases():
    g = rng(2024)
    for trial, (n, N, hf) in enumerate([(200, 4, 0.5), (150, 5, 0.6), (120, 1, 0.5), (90, 2, 0.5), (160, 3, 0.75)]):
        chosen = np.round(g.normal(0, 1, size=(N, n)), 1).astype(f32)
        rejected = np.round(g.normal(0, 1, size=(N, n)), 1).astype(f32)
        v = votes(chosen, rejected, split="harmless" if trial % 2 == 0 else "helpful", high_frac=hf,
                  pair_id=g.permutation(n) * 2 + 1)
        compare(f"random n={n} N={N}", v, METHODS, splits=("harmless", "helpful"), bad_threshold=0.1 * trial,
                p=0.05 + 0.1 * trial)


if __name__ == "__main__":
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    sac_cases()
    vote_cases()
    margin_cases()
    random_cases()
    finish()
