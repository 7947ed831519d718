#!/usr/bin/env python3
"""check_layouts.py - real corpora as people ship them (issue 16), end to end: ingest -> run -> cleaned.jsonl.

Fixtures are written here, from a seeded RNG, in five layouts and four containers:
  sg   ShareGPT / LLaMA-Factory ranking, a JSON array (.json): conversations [{from, value}] with human /
       gpt / observation / function_call turns, chosen / rejected message objects, a system column on
       some rows, extra columns (id, meta)
  uf   UltraFeedback-binarized-like chat JSONL: message lists + prompt, prompt_id, messages, score_* columns
  lp   labelled pairs, a gzip JSON array (.json.gz): question / answer_a / answer_b / overall_preference in
       {-1, 1, 0 = tie}, annotator column; ties and an unknown label value
  sys  chat lists with system turns and a role-name map (customer / bot), gzip JSONL
  hh   HH transcripts, JSONL, with a source column
  trl  TRL conversational: explicit prompt lists, prompt strings, implicit prompts (full lists)
Bad records are planted with the reject (line, field, reason, detail) they must produce: the oracle is the
construction, not the C code. One job mixes all five; `quorum run` with builtin members on 1 and 2 ranks.
Checks, with json/gzip only: every cleaned.jsonl line minus its "quorum" object equals its input record
(chosen/rejected swapped for flips, a labelled pair's label flipped to the other side's first value), the
cleaned ids are the ingested ids whose action is keep/flip, the rejects ledger is exactly the planted one,
ledger.json balances with the planted counts, the detection log names each container, and the 1- and
2-rank outputs are byte-identical.

usage: check_layouts.py --quorum BIN --mpiexec MPIEXEC [--np-flag -n] --work DIR layouts
       check_layouts.py ... --shared DIR fold      (needs ../shared/tokenizers/gpt2, else exit 77)
fold: a GPT-2 reward member (HH template, no system role) scores a chat corpus with system turns: the job
completes and every pair scores exactly as the same pair with the system text folded by hand into the
first user turn ("<system>\\n\\n<user>"), the documented rule; a pair no template can render (prompt ending
in an assistant turn), in the last shard, stops the job before any score file is written, naming it."""
import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish  # noqa: E402


def run(args, np_=1, expect_rc=0):
    cmd = [A.mpiexec, A.np_flag, str(np_), "--oversubscribe", A.quorum] + args
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run(cmd, capture_output=True, env=env)
    if p.returncode != expect_rc:
        print(p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), file=sys.stderr)
        raise SystemExit("FAIL: %s exited %d, expected %d" % (" ".join(cmd), p.returncode, expect_rc))
    return p


ALPHABET = "abcdefghij klmnop,.?!\"\\/\n\té€😀{}[]:"


def text(rng, lo=3, hi=40):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi))).strip() or "x"


def two(rng):
    a = text(rng)
    b = text(rng)
    return (a, b) if a != b else (a, b + "!")


# ---------------------------------------------------------------- fixtures: (records, planted rejects)
SG_ROLES = "system human gpt observation function_call"


def make_sg(rng, n=30):
    recs, bad = [], {}
    for i in range(n):
        conv = [{"from": "human", "value": text(rng)}]
        if i % 3 == 1:
            conv += [{"from": "function_call", "value": text(rng)}, {"from": "observation", "value": text(rng)}]
        if i % 4 == 2:
            conv += [{"from": "gpt", "value": text(rng)}, {"from": "human", "value": text(rng)}]
        c, r = two(rng)
        rec = {"conversations": conv, "chosen": {"from": "gpt", "value": c}, "rejected": {"from": "gpt", "value": r},
               "id": "sg-%d" % i, "meta": {"lang": rng.choice(["en", "fr"]), "w": [rng.random(), None, True]}}
        if i % 5 == 0:
            rec["system"] = text(rng)
        if i % 7 == 3:
            rec["system"] = ""  # an empty system column is not a turn: it passes through
        recs.append(rec)
    recs[4]["conversations"][0]["from"] = "bot"
    bad[5] = ("conversations[0].from", "unknown role", '"bot"; accepted: ' + SG_ROLES)
    recs[8]["rejected"]["value"] = recs[8]["chosen"]["value"]
    bad[9] = ("rejected", "identical responses", None)
    recs[11]["conversations"].append({"from": "gpt", "value": "ends with a reply"})
    bad[12] = ("conversations", "chat lists do not share a prefix ending in an assistant reply",
               "the conversation must end with a human or observation turn")
    return recs, bad


def make_uf(rng, n=30):
    recs, bad = [], {}
    for i in range(n):
        p = text(rng)
        c, r = two(rng)
        recs.append({"prompt": p, "prompt_id": "%016x" % rng.getrandbits(64),
                     "chosen": [{"role": "user", "content": p}, {"role": "assistant", "content": c}],
                     "rejected": [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                     "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": c}],
                     "score_chosen": rng.choice([8.0, 7.5, 10]), "score_rejected": round(rng.uniform(1, 7), 3),
                     "source": "uf\u00e9"})
    recs[6]["chosen"][1]["content"] = "  \n "
    bad[7] = ("chosen", "empty response", None)
    return recs, bad


LP_MAP = {"label_a": [-1], "label_b": [1], "label_tie": [0]}


def make_lp(rng, n=30):
    recs, bad = [], {}
    for i in range(n):
        a, b = two(rng)
        recs.append({"question": text(rng), "answer_a": a, "answer_b": b,
                     "overall_preference": rng.choice([-1, 1]), "annotator": rng.randint(1, 9)})
    for k in (3, 10, 17):
        recs[k]["overall_preference"] = 0
        bad[k + 1] = ("overall_preference", "tie", "0; accepted: a wins [-1], b wins [1], tie [0]")
    recs[20]["overall_preference"] = 2
    bad[21] = ("overall_preference", "unknown label", "2; accepted: a wins [-1], b wins [1], tie [0]")
    return recs, bad


SYS_MAP = {"customer": "user", "bot": "assistant"}


def make_sys(rng, n=30):
    recs, bad = [], {}
    for i in range(n):
        pre = [{"role": "system", "content": text(rng)}] if i % 2 == 0 else []
        pre += [{"role": "customer", "content": text(rng)}]
        if i % 3 == 0:
            pre += [{"role": "bot", "content": text(rng)}, {"role": "customer", "content": text(rng)}]
        c, r = two(rng)
        recs.append({"chosen": pre + [{"role": "bot", "content": c}], "rejected": pre + [{"role": "bot", "content": r}],
                     "tag": i})
    recs[13]["chosen"][0]["role"] = "narrator"
    bad[14] = ("chosen[0].role", "unknown role", '"narrator"; accepted: system user assistant customer bot')
    return recs, bad


def make_trl(rng, n=24):
    """TRL conversational layouts: explicit prompt (a message list) with reply-only lists, a prompt string with
    reply-only lists, and implicit prompt (full lists)."""
    recs, bad = [], {}
    for i in range(n):
        c, r = two(rng)
        reply = lambda t: [{"role": "assistant", "content": t}]
        if i % 3 == 0:
            prompt = ([{"role": "system", "content": text(rng)}] if i % 2 else []) + [{"role": "user", "content": text(rng)}]
            recs.append({"prompt": prompt, "chosen": reply(c), "rejected": reply(r), "k": i})
        elif i % 3 == 1:
            recs.append({"prompt": text(rng), "chosen": reply(c), "rejected": reply(r)})
        else:
            pre = [{"role": "user", "content": text(rng)}]
            recs.append({"chosen": pre + reply(c), "rejected": pre + reply(r), "prompt": "kept as a column"})
    recs[9]["prompt"][-1]["role"] = "human"
    bad[10] = ("prompt[%d].role" % (len(recs[9]["prompt"]) - 1), "unknown role", '"human"; accepted: system user assistant')
    return recs, bad


def make_hh(rng, n=20):
    recs = []
    for i in range(n):
        p = "\n\nHuman: %s\n\nAssistant:" % text(rng)
        c, r = two(rng)
        recs.append({"chosen": p + " " + c, "rejected": p + " " + r, "source": "hh-%d" % i})
    return recs, {}


def write(path, recs):
    if path.endswith(".jsonl") or path.endswith(".jsonl.gz"):
        data = "".join(json.dumps(r, ensure_ascii=bool(len(r) % 2)) + "\n" for r in recs)
    else:  # a pretty-printed top-level array, as datasets ship them
        data = json.dumps(recs, indent=2, ensure_ascii=False)
    raw = data.encode()
    open(path, "wb").write(gzip.compress(raw) if path.endswith(".gz") else raw)


# ---------------------------------------------------------------- expected cleaned records
def flipped(name, rec):
    r = json.loads(json.dumps(rec))
    if name == "lp":
        r["overall_preference"] = LP_MAP["label_b" if rec["overall_preference"] in LP_MAP["label_a"] else "label_a"][0]
    else:
        r["chosen"], r["rejected"] = rec["rejected"], rec["chosen"]
    return r


def check_corpus(out, name, recs, bad, tag):
    cdir = os.path.join(out, "cleaned", name)
    actions = {a["id"]: a for a in map(json.loads, open(os.path.join(cdir, "actions.jsonl")))}
    good = [i for i in range(1, len(recs) + 1) if i not in bad]
    check(sorted(actions) == good, "%s %s: ingested ids %s != planted good records" % (tag, name, sorted(actions)[:8]))
    rejects = [json.loads(l) for l in open(os.path.join(out, "corpora", name, "rejects.jsonl"))]
    want = []
    for line in sorted(bad):
        field, reason, detail = bad[line]
        w = {"corpus": name, "line": line, "field": field, "reason": reason}
        if detail:
            w["detail"] = detail
        want.append(w)
    check(rejects == want, "%s %s: rejects ledger\n got %s\nwant %s" % (tag, name, rejects, want))
    cleaned = [json.loads(l) for l in open(os.path.join(cdir, "cleaned.jsonl"), encoding="utf-8")]
    ids = [c["quorum"]["id"] for c in cleaned]
    check(ids == [i for i in good if actions[i]["action"] != "remove"], "%s %s: cleaned ids / order" % (tag, name))
    n_flip = 0
    for c in cleaned:
        q = c.pop("quorum")
        i = q["id"]
        act = actions[i]["action"]
        n_flip += act == "flip"
        want_rec = flipped(name, recs[i - 1]) if act == "flip" else recs[i - 1]
        check(c == want_rec, "%s %s: cleaned record %d (%s)\n got %s\nwant %s" % (tag, name, i, act, c, want_rec))
        check(q["action"] == act and q["bucket"] == actions[i]["bucket"] and q["split"] == name and
              isinstance(q["agree"], int) and isinstance(q["mean_margin"], float), "%s %s: quorum object %s" % (tag, name, q))
    led = json.load(open(os.path.join(cdir, "ledger.json")))
    t = led["totals"]
    n_act = {a: sum(1 for x in actions.values() if x["action"] == a) for a in ("keep", "flip", "remove")}
    check(led["lines"] == len(recs) and t["rejected"] == len(bad) and
          (t["kept"], t["flipped"], t["removed"]) == (n_act["keep"], n_act["flip"], n_act["remove"]) and led["balanced"],
          "%s %s: ledger %s, want lines %d rejected %d actions %s" % (tag, name, t, len(recs), len(bad), n_act))
    return n_flip


def test_layouts():
    rng = random.Random(16)
    spec = {  # name -> (file, maker, job keys)
        "sg": ("sg.json", make_sg, {"format": "auto"}),
        "uf": ("uf.jsonl", make_uf, {}),
        "lp": ("lp.json.gz", make_lp, dict(format="pairs", field_prompt="question", field_a="answer_a",
                                           field_b="answer_b", field_label="overall_preference", **LP_MAP)),
        "sys": ("sys.jsonl.gz", make_sys, {"format": "chat", "roles": SYS_MAP}),
        "hh": ("hh.jsonl", make_hh, {}),
        "trl": ("trl.jsonl", make_trl, {}),
    }
    data = {}
    corpora = []
    for name, (fname, maker, keys) in spec.items():
        recs, bad = maker(rng)
        path = os.path.join(A.work, fname)
        write(path, recs)
        data[name] = (recs, bad)
        corpora.append(dict(name=name, path=fname, split=name, **keys))
    seen = {}
    for np_ in (1, 2):
        out = os.path.join(A.work, "out%d" % np_)
        job = {"name": "layouts", "out_dir": out, "shard_size": 7, "corpora": corpora,
               # two length-averse members and an uncorrelated one: flips (NoAgree), keeps and some removals
               "committee": [{"name": "n1", "path": "builtin:neglen"}, {"name": "n2", "path": "builtin:neglen"},
                             {"name": "h", "path": "builtin:hash:3"}],
               "clean": {"method": "sac", "splits": ["sg", "lp"], "bad_threshold": 0.0}}
        jp = os.path.join(A.work, "job%d.json" % np_)
        json.dump(job, open(jp, "w"))
        p = run(["run", jp], np_=np_)
        log = p.stderr.decode(errors="replace")
        for name, kind in (("sg", "JSON array"), ("uf", "JSONL"), ("lp", "gzip JSON array"), ("sys", "gzip JSONL")):
            check(" read as %s, %d records" % (kind, len(data[name][0])) in log, "np%d: detection log for %s" % (np_, name))
        flips = 0
        for name, (recs, bad) in data.items():
            flips += check_corpus(out, name, recs, bad, "np%d" % np_)
            seen.setdefault(name, []).append(open(os.path.join(out, "cleaned", name, "cleaned.jsonl"), "rb").read())
        check(flips >= 10, "np%d: only %d flips: the flip path is not exercised" % (np_, flips))
    for name, outs in seen.items():
        check(outs[0] == outs[1], "%s: cleaned.jsonl differs between 1 and 2 ranks" % name)
    # verify counts records (array elements, not newlines) and checksums the decompressed stream; a rerun
    # finds every ingest current
    jp = os.path.join(A.work, "job2.json")
    run(["verify", "--job", jp])
    log = run(["run", jp], np_=2).stderr.decode()
    check("ingest skipped (outputs complete and current)" in log, "rerun: ingest not skipped:\n" + log)
    # --strict names the bad value and what is accepted
    jp = os.path.join(A.work, "job1.json")
    p = run(["ingest", "--job", jp, "--corpus", "lp", "--strict"], expect_rc=1)
    err = [l for l in p.stderr.decode().splitlines() if l.startswith("quorum: error")]
    check(len(err) == 1 and err[0].endswith(":4:overall_preference: tie: 0; accepted: a wins [-1], b wins [1], tie [0] "
                                            "(--strict: nothing written)"), "strict message: %s" % err)
    # a truncated JSON array is a file error, not a short corpus
    bad_path = os.path.join(A.work, "cut.json")
    open(bad_path, "w").write(open(os.path.join(A.work, "sg.json")).read()[:-40])
    p = run(["ingest", "--out", os.path.join(A.work, "cut"), "--name", "cut", bad_path], expect_rc=1)
    check("the JSON array is not closed" in p.stderr.decode(), "truncated array: %s" % p.stderr.decode()[-300:])
    check(not os.path.exists(os.path.join(A.work, "cut", "corpora", "cut", "manifest.json")), "truncated array: no manifest")
    # a truncated gzip input leaves the previous corpus exactly as it was (staged shards are dropped)
    cdir = os.path.join(A.work, "out1", "corpora", "lp")
    before = {f: open(os.path.join(cdir, f), "rb").read() for f in sorted(os.listdir(cdir))}
    src = os.path.join(A.work, "lp.json.gz")
    whole = open(src, "rb").read()
    open(src, "wb").write(whole[:len(whole) // 2])
    p = run(["ingest", "--job", os.path.join(A.work, "job1.json"), "--corpus", "lp"], np_=2, expect_rc=1)
    check("truncated or corrupt gzip stream" in p.stderr.decode(), "truncated gzip: %s" % p.stderr.decode()[-300:])
    after = {f: open(os.path.join(cdir, f), "rb").read() for f in sorted(os.listdir(cdir))}
    check(after == before, "truncated gzip: the previous corpus changed (%s -> %s)" % (sorted(before), sorted(after)))
    open(src, "wb").write(whole)


def test_fold():
    tok = os.path.join(A.shared, "tokenizers", "gpt2")
    if not os.path.exists(os.path.join(tok, "tokenizer.json")):
        print("skip: %s/tokenizer.json not found (set QUORUM_SHARED_DIR)" % tok)
        raise SystemExit(77)
    import h5py
    rng = random.Random(5)
    model = os.path.join(A.work, "rm")
    run(["init-model", "--tokenizer", tok, "--out", model, "--head", "score", "--layers", "1", "--dim", "16",
         "--max-pos", "512"])
    with_sys, folded = [], []
    for i in range(12):
        s, u = text(rng), text(rng)
        c, r = two(rng)
        with_sys.append({"chosen": [{"role": "system", "content": s}, {"role": "user", "content": u},
                                    {"role": "assistant", "content": c}],
                         "rejected": [{"role": "system", "content": s}, {"role": "user", "content": u},
                                      {"role": "assistant", "content": r}]})
        folded.append({"chosen": [{"role": "user", "content": s + "\n\n" + u}, {"role": "assistant", "content": c}],
                       "rejected": [{"role": "user", "content": s + "\n\n" + u}, {"role": "assistant", "content": r}]})
    write(os.path.join(A.work, "with_sys.jsonl"), with_sys)
    write(os.path.join(A.work, "folded.jsonl"), folded)
    out = os.path.join(A.work, "fold-out")
    job = {"name": "fold", "out_dir": out, "shard_size": 5,
           "corpora": [{"name": "with_sys", "path": "with_sys.jsonl", "format": "chat"},
                       {"name": "folded", "path": "folded.jsonl", "format": "chat"}],
           "committee": [{"name": "rm", "path": "rm", "max_length": 256, "batch_size": 4}],
           "clean": {"method": "none"}}
    jp = os.path.join(A.work, "fold.json")
    json.dump(job, open(jp, "w"))
    p = run(["run", jp, "--to", "vote"], np_=2)
    check("folded into the next user turn" in p.stderr.decode(), "fold: the member reports folded system turns")
    # a dialogue no template can take (the prompt ends with an assistant turn), in the last shard: the
    # member's start-of-score check stops the job before it scores anything, naming corpus and record
    bad = [dict(r) for r in folded]
    bad[-1] = {"chosen": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
                          {"role": "assistant", "content": "c"}],
               "rejected": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
                            {"role": "assistant", "content": "r"}]}
    write(os.path.join(A.work, "bad.jsonl"), bad)
    job_bad = dict(job, out_dir=os.path.join(A.work, "bad-out"),
                   corpora=job["corpora"] + [{"name": "bad", "path": "bad.jsonl", "format": "chat"}])
    jb = os.path.join(A.work, "bad.json")
    json.dump(job_bad, open(jb, "w"))
    p = run(["run", jb, "--to", "score"], np_=1, expect_rc=1)
    err = [l for l in p.stderr.decode().splitlines() if l.startswith("quorum: error")]
    check(any("corpus bad: record 12: chosen" in l and "member rm" in l for l in err), "fold: fail-fast message: %s" % err)
    sdir = os.path.join(A.work, "bad-out", "scores")
    written = [f for _, _, fs in os.walk(sdir) for f in fs if f.endswith(".h5")] if os.path.isdir(sdir) else []
    check(written == [], "fold: score files written before the render check failed: %s" % written)
    for k in range(3):
        a = h5py.File(os.path.join(out, "scores", "with_sys", "rm", "shard-%05d.h5" % k), "r")
        b = h5py.File(os.path.join(out, "scores", "folded", "rm", "shard-%05d.h5" % k), "r")
        for d in ("pair_id", "chosen", "rejected"):
            check((a[d][()] == b[d][()]).all(), "fold: shard %d %s differs from the hand-folded corpus" % (k, d))
        check(len(a["chosen"][()]) > 0, "fold: shard %d is empty" % k)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quorum", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--np-flag", default="-n")
    ap.add_argument("--shared", default="")
    ap.add_argument("--work", required=True)
    ap.add_argument("test", choices=["layouts", "fold"])
    A = ap.parse_args()
    A.work = os.path.join(A.work, A.test)
    shutil.rmtree(A.work, ignore_errors=True)
    os.makedirs(A.work)
    {"layouts": test_layouts, "fold": test_fold}[A.test]()
    finish()
