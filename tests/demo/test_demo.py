#!/usr/bin/env python3
"""quorum demo at a small size on 2 ranks: the summary's flip-detection numbers are recomputed here
independently from the cleaned outputs (actions.jsonl of every method vs the .flipped lists written by
gen), every ledger balances, the held-out evaluation covers every held-out pair, and on this fixed seed
the SAC-cleaned policy beats the noisy one on held-out preference accuracy (the issue's acceptance)."""
import json, os, shutil, subprocess, sys, tempfile

quorum, mpiexec, np_flag = sys.argv[1:4]
work = tempfile.mkdtemp(prefix="quorum_demo_")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish  # noqa: E402
try:
    out = os.path.join(work, "demo")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", QUORUM_BACKEND="cpu")
    r = subprocess.run([mpiexec, np_flag, "2", "--oversubscribe", quorum, "demo", "--out", out, "--size", "200",
                        "--heldout", "50", "--rm-steps", "40", "--dpo-steps", "40"], env=env, capture_output=True, text=True)
    sys.stderr.write(r.stderr[-3000:])
    check(r.returncode == 0, "quorum demo exit %d" % r.returncode)
    summary = json.load(open(os.path.join(out, "demo.json")))
    print(open(os.path.join(out, "demo.md")).read())
    flipped = {s: {int(x) for x in open(os.path.join(out, "data", s + ".flipped")).read().split()} for s in ("harmless", "helpful")}
    check(summary["planted_flips"] == sum(len(v) for v in flipped.values()), "planted count")
    for method, got in summary["detection"].items():
        folder = "cleaned" if method == "sac" else "cleaned-" + method
        tp = fp = fn = nf = nr = 0
        for s in ("harmless", "helpful"):
            cdir = os.path.join(out, "run", folder, s)
            led = json.load(open(os.path.join(cdir, "ledger.json")))
            t = led["totals"]
            check(led["lines"] == t["kept"] + t["flipped"] + t["removed"] + t["rejected"], method + " ledger balances")
            for line in open(os.path.join(cdir, "actions.jsonl")):
                a = json.loads(line)
                flagged, planted = a["action"] != "keep", a["id"] in flipped[s]
                tp += flagged and planted; fp += flagged and not planted; fn += planted and not flagged
                nf += a["action"] == "flip"; nr += a["action"] == "remove"
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        check(abs(prec - got["precision"]) < 1e-9 and abs(rec - got["recall"]) < 1e-9,
              "%s precision/recall %.4f/%.4f, demo says %.4f/%.4f" % (method, prec, rec, got["precision"], got["recall"]))
        check(nf == got["flipped"] and nr == got["removed"], method + " flip/remove counts")
    check(summary["detection"]["sac"]["precision"] > 0.6, "SAC flags mostly planted flips")
    # every method, the PrefCleanBench ifd / rw_gap / llm_judge rules and consensus included, and the winner by F1
    methods = ["sac", "vote_all_remove", "vote_all_flip", "vote_maj_remove", "vote_maj_flip", "margin_remove",
               "margin_flip", "ifd_r", "ifd_gap_r", "ifd_gap_f", "rw_gap_r", "rw_gap_f", "llm_judge_r", "llm_judge_f",
               "consensus_r", "consensus_f"]
    check(sorted(summary["detection"]) == sorted(methods), "demo compares every method: %s" % sorted(summary["detection"]))
    f1 = {m: 2 * d["precision"] * d["recall"] / (d["precision"] + d["recall"]) if d["precision"] + d["recall"] else 0.0
          for m, d in summary["detection"].items()}
    check(f1[summary["best_method"]] >= max(f1.values()) - 1e-12, "best_method %s has the highest F1" % summary["best_method"])
    check(("**%s**" % summary["best_method"]) in open(os.path.join(out, "demo.md")).read(), "demo.md names the winner")
    for k, v in summary["dpo"].items():
        check(v["heldout_pairs"] == 100, k + " evaluated on every held-out pair")
        check(0.0 <= v["heldout_preference_accuracy"] <= 1.0, k + " accuracy in range")
    check(summary["cleaned_beats_noisy"] and summary["dpo"]["sac-cleaned"]["heldout_preference_accuracy"] >
          summary["dpo"]["noisy"]["heldout_preference_accuracy"], "cleaned beats noisy on held-out preference accuracy")
    for f in ("demo.md", "run/report/report.md", "job.json", "dpo-sac/final/model.safetensors", "models/rm0/final/config.json"):
        check(os.path.exists(os.path.join(out, f)), "artifact " + f)
finally:
    shutil.rmtree(work, ignore_errors=True)
finish()
