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

usage: e2e_planted.py QUORUM MPIEXEC SHARED_DIR SCRATCH RANKS      (exit 77 when the data is missing)
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

MEMBERS = [("len", "builtin:len"), ("kw", "builtin:kw:you"), ("hash", "builtin:hash:7")]
MARGIN, HIGH_FRAC, BAD_THRESHOLD, P = 0.0, 0.5, 40.0, 0.15
METHODS = ["none", "sac", "vote_all_remove", "vote_all_flip", "vote_maj_remove", "vote_maj_flip",
           "margin_remove", "margin_flip"]
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
            rc = [reward(rule, c) for _, rule in MEMBERS]
            rr = [reward(rule, r) for _, rule in MEMBERS]
            agree = sum(1 for a, b in zip(rc, rr) if np.float32(a - b) > np.float32(MARGIN))
            n = len(MEMBERS)
            h = math.ceil(HIGH_FRAC * n - 1e-4)
            bucket = "NoAgree" if agree == 0 else "AllAgree" if agree == n else "LowAgree" if agree < h else "HighAgree"
            mm = 0.0
            for a, b in zip(rc, rr):
                mm += float(a) - float(b)
            pairs[ln] = dict(prompt=p, chosen=c, rejected=r, agree=agree, bucket=bucket, margin=mm / n,
                             mean_c=sum(float(a) for a in rc) / n, mean_r=sum(float(b) for b in rr) / n)
    return pairs


def ref_actions(method, pairs, split="harmless", splits=("harmless",)):
    n = len(MEMBERS)
    act = {i: "keep" for i in pairs}
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
        p6 = round(float(np.float32(P)) * 1e6) / 1e6
        k = min(len(pairs), int(math.floor(p6 * len(pairs) + 1e-9)))
        for i in sorted(pairs, key=lambda i: (pairs[i]["margin"], i))[:k]:
            act[i] = method.split("_")[-1]
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
           "committee": [{"name": n, "path": p} for n, p in MEMBERS],
           "vote": {"margin": MARGIN, "high_frac": HIGH_FRAC},
           "clean": {"method": "sac", "splits": ["harmless"], "bad_threshold": BAD_THRESHOLD, "p": P}}
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
