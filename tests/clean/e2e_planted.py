#!/usr/bin/env python3
"""End-to-end test of cleaning on real HH-RLHF data with planted label flips.

1. Writes a planted copy of harmless-base-test.jsonl.gz to a scratch folder: a known subset of lines
   gets chosen and rejected swapped, and a few bad lines are inserted (they must be ledgered as
   rejected at ingest).
2. Runs quorum ingest -> score -> vote -> clean (every method) -> export -> report with RANKS MPI
   ranks, committee = builtin members whose rewards are known functions of the response bytes.
3. Re-implements here, independently of the C code, the HH prompt/response split, the builtin
   rewards, the votes, the buckets and every cleaning rule, and checks every pair's action, the
   ledger counts, cleaned.jsonl (flipped pairs really swapped; planted flips of pairs the whole
   committee agreed on are restored to the original text), and the cleaned folder as a corpus.

With a sixth argument "family" the committee holds builtin members of every kind (quorum/score.h: a
builtin member of any kind writes its rule's value as that kind's score): 4 reward members (N even, so
vote_maj's tie agree == N/2 occurs), 2 lm, 2 implicit and 1 judge member, and every method runs,
ifd_r / ifd_gap_* / rw_gap_* / llm_judge_* included, each against the reference below.

usage: e2e_planted.py QUORUM MPIEXEC SHARED_DIR SCRATCH RANKS [family]   (exit 77 when the data is missing)
"""
import gzip
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

QUORUM, MPIEXEC, SHARED, SCRATCH, RANKS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
SRC = os.path.join(SHARED, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
if not os.path.exists(SRC):
    print(f"skip: {SRC} not found (set QUORUM_SHARED_DIR)")
    sys.exit(77)

MODE = sys.argv[6] if len(sys.argv) > 6 else ""
FAMILY = MODE == "family"
MEMBERS = [("len", "builtin:len", "reward"), ("kw", "builtin:kw:you", "reward"), ("hash", "builtin:hash:7", "reward")]
METHODS = ["none", "sac", "vote_all_remove", "vote_all_flip", "vote_maj_remove", "vote_maj_flip",
           "margin_remove", "margin_flip"]
# modes "zscore" and "rank": a calibrated committee of 4 reward members with weights, and the consensus rules
NORMALIZE, WEIGHTS = (MODE, {"len": 3.0, "hash": 0.5}) if MODE in ("zscore", "rank") else ("none", {})
CONSENSUS, CONSENSUS_K = ["sac", "vote_maj_remove", "margin_remove"], 2
if NORMALIZE != "none":
    MEMBERS += [("hash2", "builtin:hash:11", "reward")]
    METHODS += ["consensus_r", "consensus_f"]
if FAMILY:
    MEMBERS += [("hash2", "builtin:hash:11", "reward"), ("ifd0", "builtin:kw:the", "lm"), ("ifd1", "builtin:hash:5", "lm"),
                ("dpo0", "builtin:hash:3", "implicit"), ("dpo1", "builtin:neglen", "implicit"),
                ("judge", "builtin:kw:I", "judge")]
    METHODS += ["ifd_r", "ifd_gap_r", "ifd_gap_f", "rw_gap_r", "rw_gap_f", "llm_judge_r", "llm_judge_f"]
MARGIN, HIGH_FRAC, BAD_THRESHOLD, P = 0.0, 0.5, 40.0, 0.15
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, n_failed  # noqa: E402
TIMES = []  # (step, seconds): printed at the end, for the log


# ---------------------------------------------------------------- the planted corpus
def write_planted(path):
    """Returns (planted line numbers, bad line numbers, original objects by planted line)."""
    rng = random.Random(20251124)
    lines = gzip.open(SRC, "rt", encoding="utf-8").read().splitlines()
    out, planted, bad, orig = [], set(), set(), {}
    bad_lines = {17: '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: a", "rejected": ',   # truncated JSON
                 400: json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: same", "rejected": "\n\nHuman: x\n\nAssistant: same"}),
                 1500: json.dumps({"chosen": 5, "rejected": "\n\nHuman: x\n\nAssistant: y"})}
    for text in lines:
        ln = len(out) + 1
        if ln in bad_lines:
            out.append(bad_lines[ln])
            bad.add(ln)
            ln += 1
        obj = json.loads(text)
        orig[ln] = obj
        if rng.random() < 0.12:
            obj = {"chosen": obj["rejected"], "rejected": obj["chosen"]}
            planted.add(ln)
        out.append(json.dumps(obj, ensure_ascii=False))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    return planted, bad, orig, len(out)


# ---------------------------------------------------------------- the reference
ASSISTANT = b"\n\nAssistant:"


def hh_split(chosen, rejected):
    """(prompt, chosen response, rejected response) bytes, or None when the line is not a valid pair:
    the prompt ends just after the last "\\n\\nAssistant:" lying wholly in the common prefix."""
    c, r = chosen.encode(), rejected.encode()
    lcp = 0
    while lcp < min(len(c), len(r)) and c[lcp] == r[lcp]:
        lcp += 1
    cut = c.rfind(ASSISTANT, 0, lcp)
    if cut < 0:
        return None
    cut += len(ASSISTANT)
    pc, rc = c[cut:], r[cut:]
    ws = b" \t\n\r\v\f"
    if not pc.strip(ws) or not rc.strip(ws) or pc == rc:
        return None
    return c[:cut], pc, rc


def fnv1a64(data, h=0xcbf29ce484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def reward(rule, resp):
    if rule == "builtin:len":
        return np.float32(len(resp))
    if rule == "builtin:neglen":
        return np.float32(-len(resp))
    if rule.startswith("builtin:kw:"):
        return np.float32(resp.count(rule[len("builtin:kw:"):].encode()) - 0.5)
    if rule.startswith("builtin:hash:"):
        h = fnv1a64(resp, fnv1a64(int(rule.split(":")[2]).to_bytes(8, "little")))
        return np.float32((h >> 40) / 8388608.0 - 1.0)
    raise ValueError(rule)


def reference(path, n_lines):
    """Every ingested pair: id -> dict(prompt, chosen, rejected, rewards, agree, bucket, ...)."""
    pairs = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for ln, text in enumerate(f, 1):
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if not isinstance(obj.get("chosen"), str) or not isinstance(obj.get("rejected"), str):
                continue
            sp = hh_split(obj["chosen"], obj["rejected"])
            if sp is None:
                continue
            p, c, r = sp
            score = {kind: [(reward(rule, c), reward(rule, r)) for _, rule, k in MEMBERS if k == kind]
                     for kind in ("reward", "lm", "implicit", "judge")}
            rw = score["reward"]
            agree = sum(1 for a, b in rw if np.float32(a - b) > np.float32(MARGIN))  # votes: raw scores
            n = len(rw)
            h = math.ceil(HIGH_FRAC * n - 1e-4)
            bucket = "NoAgree" if agree == 0 else "AllAgree" if agree == n else "LowAgree" if agree < h else "HighAgree"
            raw = sum(float(a) - float(b) for a, b in rw) / n
            pairs[ln] = dict(prompt=p, chosen=c, rejected=r, agree=agree, bucket=bucket, score=score, raw_margin=raw)
    calibrate(pairs)
    for q in pairs.values():
        def mean(kind, wc, wr):
            xs = q["score"][kind]
            return sum(wc * float(a) + wr * float(b) for a, b in xs) / len(xs) if xs else 0.0
        q.update(margin=mean("reward", 1, -1), mean_c=mean("reward", 1, 0), mean_r=mean("reward", 0, 1),
                 ifd_c=mean("lm", 1, 0), ifd_gap=mean("lm", 1, -1), rw_gap=mean("implicit", 1, -1),
                 judge=mean("judge", 1, -1))
    return pairs


def calibrate(pairs):
    """quorum/clean.h "Calibrated committees": per reward member over the 2n scores (all chosen, then all
    rejected, pair-id order): z-score (sequential double sums, population sigma) or unit rank (average of tied
    0-based ranks / (2n - 1)), times w * V / sum(w), rounded to float32. In place."""
    ids = sorted(pairs)
    names = [m[0] for m in MEMBERS if m[2] == "reward"]
    if NORMALIZE == "none" and not WEIGHTS:
        return
    wsum = sum(WEIGHTS.get(nm, 1.0) for nm in names)
    for m, nm in enumerate(names):
        x = [float(pairs[i]["score"]["reward"][m][0]) for i in ids] + [float(pairs[i]["score"]["reward"][m][1]) for i in ids]
        if NORMALIZE == "zscore":
            mu = 0.0
            for v in x: mu += v
            mu /= len(x)
            var = 0.0
            for v in x: var += (v - mu) * (v - mu)
            sd = math.sqrt(var / len(x))
            y = [(v - mu) / sd if sd > 0 else 0.0 for v in x]
        elif NORMALIZE == "rank":
            order = sorted(range(len(x)), key=lambda k: (x[k], k))
            y, a = [0.0] * len(x), 0
            while a < len(order):
                b = a
                while b + 1 < len(order) and x[order[b + 1]] == x[order[a]]: b += 1
                for k in order[a:b + 1]: y[k] = ((a + b) / 2.0) / (len(x) - 1)
                a = b + 1
        else:
            y = x
        f = WEIGHTS.get(nm, 1.0) * len(names) / wsum
        for k, i in enumerate(ids):
            pairs[i]["score"]["reward"][m] = (np.float32(y[k] * f), np.float32(y[len(ids) + k] * f))


def member_agreement(pairs):
    """{member: (label agreement, leave-one-out agreement or None)} on the calibrated scores"""
    names = [m[0] for m in MEMBERS if m[2] == "reward"]
    out = {}
    for m, nm in enumerate(names):
        lab = loo = 0
        for q in pairs.values():
            d = [float(a) - float(b) for a, b in q["score"]["reward"]]
            rest = 0.0
            for k, dk in enumerate(d):
                if k != m: rest += dk
            lab += d[m] > 0
            loo += (d[m] > 0) == (rest > 0)
        out[nm] = (lab / len(pairs), loo / len(pairs) if len(names) > 1 else None)
    return out


def lowest(pairs, ids, key, p):
    """the floor(p * len(ids)) ids with the lowest key, ties by pair id (np.argsort order, made total)"""
    p6 = round(float(np.float32(p)) * 1e6) / 1e6
    k = min(len(ids), int(math.floor(p6 * len(ids) + 1e-9)))
    return sorted(ids, key=lambda i: (pairs[i][key], i))[:k]


def ref_actions(method, pairs, split="harmless", splits=("harmless",)):
    n = sum(1 for m in MEMBERS if m[2] == "reward")
    act = {i: "keep" for i in pairs}
    what = {"r": "remove", "f": "flip"}.get(method[-1])
    if method == "sac":
        for i, q in pairs.items():
            if q["bucket"] == "NoAgree":
                act[i] = "flip"
            elif q["bucket"] == "LowAgree" and split in splits and q["mean_c"] < BAD_THRESHOLD and q["mean_r"] < BAD_THRESHOLD:
                act[i] = "remove"
    elif method.startswith("vote_all_"):
        for i, q in pairs.items():
            if q["agree"] == 0:
                act[i] = method.split("_")[-1]
    elif method.startswith("vote_maj_"):
        for i, q in pairs.items():
            if n - q["agree"] > n / 2:
                act[i] = method.split("_")[-1]
    elif method.startswith("margin_"):
        for i in lowest(pairs, list(pairs), "margin", P):
            act[i] = method.split("_")[-1]
    elif method == "ifd_r":  # PrefCleanBench: keep IFD(chosen) <= 1, then drop the lowest p of those
        cand = [i for i in pairs if pairs[i]["ifd_c"] <= 1.0]
        for i in pairs:
            if pairs[i]["ifd_c"] > 1.0:
                act[i] = "remove"
        for i in lowest(pairs, cand, "ifd_c", P):
            act[i] = "remove"
    elif method.startswith(("ifd_gap_", "rw_gap_")):
        for i in lowest(pairs, list(pairs), "ifd_gap" if method.startswith("ifd") else "rw_gap", P):
            act[i] = what
    elif method.startswith("consensus_"):  # at least k of the listed methods act
        each = [ref_actions(m, pairs, split, splits) for m in CONSENSUS]
        for i in pairs:
            if sum(a[i] != "keep" for a in each) >= CONSENSUS_K:
                act[i] = what
    elif method.startswith("llm_judge_"):  # rating(chosen) < rating(rejected); a tie keeps
        for i in pairs:
            if pairs[i]["judge"] < 0:
                act[i] = what
    return act


# ---------------------------------------------------------------- running quorum
def quorum(*args, stdout=None):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [MPIEXEC, "-n", str(RANKS), "--oversubscribe", QUORUM, *args] if RANKS > 1 else [QUORUM, *args]
    t0 = time.time()
    res = subprocess.run(cmd, env=env, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    TIMES.append((args[0] + (" " + args[-1] if args[0] == "clean" else ""), time.time() - t0))
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {res.returncode}")
    return res


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_method(out, folder, method, pairs, n_lines, n_bad, planted, orig):
    d = os.path.join(out, folder, "harmless")
    want = ref_actions(method, pairs)
    got = {a["id"]: a for a in read_jsonl(os.path.join(d, "actions.jsonl"))}
    check(sorted(got) == sorted(pairs), f"{method}: actions.jsonl ids differ from the reference's valid lines")
    wrong = [i for i in pairs if i in got and (got[i]["action"] != want[i] or got[i]["bucket"] != pairs[i]["bucket"])]
    check(not wrong, f"{method}: {len(wrong)} pairs with another action/bucket than the reference, e.g. "
                     f"{[(i, got[i], want[i], pairs[i]['bucket']) for i in wrong[:3]]}")
    # the ledger, bucket x action, balanced
    led = json.load(open(os.path.join(d, "ledger.json")))
    names = {"keep": "kept", "flip": "flipped", "remove": "removed"}
    for b in ("NoAgree", "LowAgree", "HighAgree", "AllAgree"):
        for a, key in names.items():
            cnt = sum(1 for i in pairs if pairs[i]["bucket"] == b and want[i] == a)
            check(led["buckets"][b][key] == cnt, f"{method}: ledger {b}.{key} = {led['buckets'][b][key]}, want {cnt}")
    t = led["totals"]
    check(led["lines"] == n_lines and t["rejected"] == n_lines - len(pairs) and t["rejected"] >= n_bad,
          f"{method}: ledger lines {led['lines']} rejected {t['rejected']}, want {n_lines} / {n_lines - len(pairs)}")
    check(t["kept"] + t["flipped"] + t["removed"] + t["rejected"] == n_lines and led["balanced"] is True,
          f"{method}: ledger does not balance")
    # cleaned.jsonl: pair-id order, the input's HH layout (whole transcripts), flips swapped, + "quorum"
    cl = read_jsonl(os.path.join(d, "cleaned.jsonl"))
    ids = [r["quorum"]["id"] for r in cl]
    check(ids == sorted(i for i in pairs if want[i] != "remove"), f"{method}: cleaned.jsonl ids / order")
    for r in cl:
        i = r["quorum"]["id"]
        q, flip = pairs[i], want[i] == "flip"
        ok = (r["quorum"]["split"] == "harmless" and r["quorum"]["action"] == want[i] and
              r["quorum"]["bucket"] == pairs[i]["bucket"] and r["quorum"]["agree"] == pairs[i]["agree"] and
              abs(r["quorum"]["mean_margin"] - pairs[i]["margin"]) <= 1e-6 * (1 + abs(pairs[i]["margin"])) and
              set(r) == {"chosen", "rejected", "quorum"} and
              r["chosen"].encode() == q["prompt"] + (q["rejected"] if flip else q["chosen"]) and
              r["rejected"].encode() == q["prompt"] + (q["chosen"] if flip else q["rejected"]))
        check(ok, f"{method}: cleaned.jsonl id {i} differs from the reference")
    restored = 0
    if method in ("sac", "vote_all_flip", "vote_maj_flip"):
        # a planted flip of a pair the whole committee agreed with lands in NoAgree and is flipped back
        for i in planted:
            o = orig[i]
            sp = hh_split(o["chosen"], o["rejected"])
            if i not in pairs or sp is None:
                continue
            if pairs[i]["agree"] == 0:
                r = next(x for x in cl if x["quorum"]["id"] == i)
                check(r["chosen"] == o["chosen"] and r["rejected"] == o["rejected"],
                      f"{method}: planted flip at line {i} not restored")
                restored += 1
    if folder == "cleaned":
        # the cleaned folder is a corpus: quorum export reads it back (checksums verified)
        exp = os.path.join(out, f"export-{method}.jsonl")
        quorum("export", "--corpus-dir", d, "--out", exp)
        ex = read_jsonl(exp)
        check([r["id"] for r in ex] == ids, f"{method}: export of the cleaned corpus: ids")
        check(all(e["chosen"] == c["chosen"] and e["rejected"] == c["rejected"]
                  for e, c in zip(ex, cl)), f"{method}: export of the cleaned corpus: HH transcripts")
    return led, restored


def main():
    os.makedirs(SCRATCH, exist_ok=True)
    work = os.path.join(SCRATCH, f"np{RANKS}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.join(work, "planted.jsonl.gz")
    planted, bad, orig, n_lines = write_planted(data)
    with open(os.path.join(work, "planted.json"), "w") as f:
        json.dump({"planted_lines": sorted(planted), "bad_lines": sorted(bad)}, f)
    job = {"name": "planted", "out_dir": "out", "shard_size": 300,
           "corpora": [{"name": "harmless", "path": "planted.jsonl.gz", "format": "hh", "split": "harmless"}],
           "committee": [{"name": n, "path": p, "kind": k} for n, p, k in MEMBERS],
           "vote": {"margin": MARGIN, "high_frac": HIGH_FRAC},
           "clean": {"method": "sac", "splits": ["harmless"], "bad_threshold": BAD_THRESHOLD, "p": P,
                     "normalize": NORMALIZE, "weights": WEIGHTS}}
    jf = os.path.join(work, "job.json")
    json.dump(job, open(jf, "w"), indent=1)
    os.chdir(work)  # out_dir "out" is relative to the current directory
    out = os.path.join(work, "out")
    for step in ("ingest", "score", "vote"):
        quorum(step, "--job", jf)
    pairs = reference(data, n_lines)
    print(f"np{RANKS}: {n_lines} lines, {len(pairs)} valid pairs, {len(planted)} planted flips, {len(bad)} bad lines")
    quorum("clean", "--job", jf)
    summary = {}
    led, restored = check_method(out, "cleaned", "sac", pairs, n_lines, len(bad), planted, orig)
    summary["sac (job)"] = led["totals"]
    quorum("clean", "--job", jf, "--method", "all")
    for m in METHODS:
        led, r = check_method(out, f"cleaned-{m}", m, pairs, n_lines, len(bad), planted, orig)
        summary[m] = led["totals"]
        if m == "sac":
            check(r == restored and r > 0, f"sac restored {r} planted flips (job run: {restored})")
    # the report on real data
    res = quorum("report", "--job", jf, stdout=subprocess.PIPE)
    rep = json.load(open(os.path.join(out, "report", "report.json")))
    check(rep["corpora"][0]["ledger"]["method"] == "sac" and "# quorum report: planted" in res.stdout,
          "report.json / report.md on stdout")
    check(sum(rep["corpora"][0]["margin_histogram"]["counts"]) == len(pairs), "report: margin histogram counts")
    if NORMALIZE != "none":  # calibration must matter here, or this mode tests nothing
        check(set(lowest(pairs, list(pairs), "margin", P)) != set(lowest(pairs, list(pairs), "raw_margin", P)),
              "calibration leaves margin_remove's set unchanged on this corpus")
    # the calibration section of the job's ledger: weights, label and leave-one-out agreement per reward member
    cal = json.load(open(os.path.join(out, "cleaned", "harmless", "ledger.json")))["calibration"]
    want = member_agreement(pairs)
    check(cal["normalize"] == NORMALIZE and [m["name"] for m in cal["members"]] == list(want),
          f"ledger calibration: {cal}")
    for m in cal["members"]:
        lab, loo = want[m["name"]]
        check(m["weight"] == WEIGHTS.get(m["name"], 1.0) and abs(m["label_agreement"] - lab) < 1e-12 and
              (m["loo_agreement"] is None if loo is None else abs(m["loo_agreement"] - loo) < 1e-12),
              f"ledger calibration of {m['name']}: {m}, want {lab}, {loo}")
    check(f"### Calibrated committee on harmless (normalize {NORMALIZE})" in res.stdout and
          all(f"| {m['name']} | {m['weight']:g} | {m['label_agreement']:.4f} |" in res.stdout for m in cal["members"]),
          "report.md: the calibrated committee table")
    check(all(f"| cleaned-{m} | {m} |" in res.stdout for m in METHODS), "report.md: one row per method in the comparison")
    print("  calibration: " + ", ".join(f"{m['name']} w {m['weight']} labels {m['label_agreement']:.3f} "
                                         f"rest {m['loo_agreement']}" for m in cal["members"]))
    for m, t in summary.items():
        print(f"  {m:16s} kept {t['kept']:5d} flipped {t['flipped']:5d} removed {t['removed']:5d} rejected {t['rejected']}")
    print(f"  planted flips restored by sac: {restored} of {len(planted)}")
    sac = ref_actions("sac", pairs)
    by = {}
    for i in planted:
        if i in pairs:
            key = (pairs[i]["bucket"], sac[i])
            by[key] = by.get(key, 0) + 1
    print("  planted flips by bucket -> sac action: " + ", ".join(f"{b}->{a} {c}" for (b, a), c in sorted(by.items())))
    json.dump(summary, open(os.path.join(work, "summary.json"), "w"), indent=1, sort_keys=True)
    print("  wall seconds per quorum call: " + ", ".join(f"{s} {t:.1f}" for s, t in TIMES))
    print(f"{'FAILED' if n_failed() else 'ok'}: {n_failed()} failures")
    return 1 if n_failed() else 0


if __name__ == "__main__":
    sys.exit(main())
