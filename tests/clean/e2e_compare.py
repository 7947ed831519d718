#!/usr/bin/env python3
"""The clean.e2e_np{1,2,3,4} runs must have produced identical cleaning outputs: ledgers (bucket x
action counts), actions.jsonl, cleaned.jsonl and the cleaned shards' checksums in manifest.json.
usage: e2e_compare.py SCRATCH [RANK COUNTS, default 1,2,3,4]   (exit 77 when a run is missing, e.g. no shared data)"""
import json
import os
import sys

scratch = sys.argv[1]
counts = [int(r) for r in (sys.argv[2] if len(sys.argv) > 2 else "1,2,3,4").split(",")]
runs = [os.path.join(scratch, f"np{r}", "out") for r in counts]
if not all(os.path.exists(os.path.join(r, "cleaned", "harmless", "ledger.json")) for r in runs):
    print("skip: not every clean.e2e_np* run left its output")
    sys.exit(77)
fails = 0
folders = sorted(d for d in os.listdir(runs[0]) if d.startswith("cleaned"))
for folder in folders:
    base = os.path.join(runs[0], folder, "harmless")
    ref_ledger = json.load(open(os.path.join(base, "ledger.json")))
    ref_manifest = json.load(open(os.path.join(base, "manifest.json")))
    for run in runs[1:]:
        d = os.path.join(run, folder, "harmless")
        led = json.load(open(os.path.join(d, "ledger.json")))
        man = json.load(open(os.path.join(d, "manifest.json")))
        same = (led["buckets"] == ref_ledger["buckets"] and led["totals"] == ref_ledger["totals"] and
                man["shards"] == ref_manifest["shards"] and man["n_pairs"] == ref_manifest["n_pairs"])
        for f in ("actions.jsonl", "cleaned.jsonl"):
            same = same and open(os.path.join(d, f), "rb").read() == open(os.path.join(base, f), "rb").read()
        if not same:
            fails += 1
            print(f"FAIL: {d} differs from {base}")
print(f"{len(folders)} methods x {len(runs)} rank counts compared: {'FAILED' if fails else 'identical'}")
sys.exit(1 if fails else 0)
