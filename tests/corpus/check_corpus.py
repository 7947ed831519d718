#!/usr/bin/env python3
"""check_corpus.py - end-to-end checks of `quorum ingest` / `quorum export` against an independent
Python reference: json + gzip read the inputs, h5py reads the shards by the documented layout
(include/quorum/corpus.h), and the HH prompt split, turn normalization and reject rules are
re-implemented here from the contract, not from the C code.

usage: check_corpus.py --quorum BIN --mpiexec MPIEXEC [--np-flag -n] --shared DIR --work DIR TEST
TEST: hh_ranks | roundtrip | fuzz | strict | flat | chat | gen
Exit 0 pass, 1 fail, 77 skip (shared data missing)."""
import argparse
import copy
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish  # noqa: E402


ROLE = {"system": 0, "user": 1, "assistant": 2}
STATUS = {"ok": 0, "blank line": 1, "malformed JSON": 2, "not a JSON object": 3, "missing field": 4,
          "wrong type": 5, "invalid UTF-8": 6, "empty response": 7, "identical responses": 8,
          'no common "\\n\\nAssistant:"': 9, "unknown role": 10,
          "chat lists do not share a prefix ending in an assistant reply": 11, "NUL character in a string": 12}
WS = b" \t\n\r\x0b\x0c"


# ---------------------------------------------------------------- running quorum
def run(args, np_=1, expect_rc=0):
    cmd = [A.mpiexec, A.np_flag, str(np_), "--oversubscribe", A.quorum] + args
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    p = subprocess.run(cmd, capture_output=True, env=env)
    if expect_rc is not None and p.returncode != expect_rc:
        print(p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), file=sys.stderr)
        raise SystemExit("FAIL: %s exited %d, expected %d" % (" ".join(cmd), p.returncode, expect_rc))
    return p


def quorum_lines(stderr):
    return [l for l in stderr.decode(errors="replace").splitlines() if l.startswith("quorum: ")]


# ---------------------------------------------------------------- independent reference
def input_lines(path):
    data = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def split_transcript(p):
    """HH transcript bytes -> [(role, text)], per corpus.h."""
    parts = re.split(b"(\n\nHuman:|\n\nAssistant:)", p)
    turns = []
    if parts[0]:
        turns.append((0, parts[0]))
    marks = list(zip(parts[1::2], parts[2::2]))
    for i, (m, t) in enumerate(marks):
        role = 1 if m == b"\n\nHuman:" else 2
        if t.startswith(b" "):
            t = t[1:]
        if role == 2 and i == len(marks) - 1 and t == b"":
            continue
        turns.append((role, t))
    return turns


def render_chat_prompt(turns):
    names = {0: b"System", 1: b"Human", 2: b"Assistant"}
    return b"".join(b"\n\n" + names[r] + b": " + t for r, t in turns) + b"\n\nAssistant:"


class Bad(Exception):
    def __init__(self, reason, field):
        self.reason, self.field = reason, field


def utf8(b, field):
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("invalid UTF-8", field)
    return b


def get_str(o, key, field):
    if key not in o:
        raise Bad("missing field", field)
    if not isinstance(o[key], str):
        raise Bad("wrong type", field)
    # json.loads(bytes) would refuse bad UTF-8 for the whole line; we decode with surrogateescape
    return utf8(o[key].encode("utf-8", "surrogateescape"), field)


def passthrough(o, used):
    """The columns the layout did not consume go to cleaned.jsonl: each must be valid UTF-8 (issue 16)."""
    for k, v in o.items():
        if k in used:
            continue
        try:
            json.dumps([k, v], ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Bad("invalid UTF-8", k)


def responses(ch, rj, m):
    if ch.strip(WS) == b"":
        raise Bad("empty response", m["chosen"])
    if rj.strip(WS) == b"":
        raise Bad("empty response", m["rejected"])
    if ch == rj:
        raise Bad("identical responses", m["rejected"])


def expect_line(raw, m, fmt):
    """-> ("ok", dict) or (reason, field) from the contract's check order."""
    if raw.strip(WS) == b"":
        return "blank line", "(line)"
    try:
        o = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError:
        return "malformed JSON", "(line)"
    if not isinstance(o, dict):
        return "not a JSON object", "(line)"

    def strings(x):
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for k, v in x.items():
                yield k
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
    if any("\0" in t for t in strings(o)):
        return "NUL character in a string", "(line)"
    try:
        f = fmt
        if f == "auto":
            f = "chat" if isinstance(o.get(m["chosen"]), list) else ("pcr" if m["prompt"] in o else "hh")
        if f == "hh":
            c = get_str(o, m["chosen"], m["chosen"])
            r = get_str(o, m["rejected"], m["rejected"])
            lcp = os.path.commonprefix([c, r])
            cut = lcp.rfind(b"\n\nAssistant:")
            if cut < 0:
                raise Bad('no common "\\n\\nAssistant:"', m["chosen"])
            cut += len(b"\n\nAssistant:")
            responses(c[cut:], r[cut:], m)
            passthrough(o, (m["chosen"], m["rejected"]))
            return "ok", dict(format=1, prompt=c[:cut], chosen=c[cut:], rejected=r[cut:],
                              turns=split_transcript(c[:cut]))
        if f == "pcr":
            p = get_str(o, m["prompt"], m["prompt"])
            c = get_str(o, m["chosen"], m["chosen"])
            r = get_str(o, m["rejected"], m["rejected"])
            responses(c, r, m)
            turns = split_transcript(p) if b"\n\nHuman:" in p else ([(1, p)] if p else [])
            passthrough(o, (m["prompt"], m["chosen"], m["rejected"]))
            return "ok", dict(format=2, prompt=p, chosen=c, rejected=r, turns=turns)
        lists = []
        for key in (m["chosen"], m["rejected"]):
            if key not in o:
                raise Bad("missing field", key)
            if not isinstance(o[key], list):
                raise Bad("wrong type", key)
            msgs = []
            for i, msg in enumerate(o[key]):
                if not isinstance(msg, dict):
                    raise Bad("wrong type", "%s[%d]" % (key, i))
                rf = "%s[%d].%s" % (key, i, m["role"])
                role = get_str(msg, m["role"], rf).decode()
                if role not in ROLE:
                    raise Bad("unknown role", rf)
                msgs.append((ROLE[role], get_str(msg, m["content"], "%s[%d].%s" % (key, i, m["content"]))))
            lists.append(msgs)
        c, r = lists
        bad = "chat lists do not share a prefix ending in an assistant reply"
        if not c or c[-1][0] != 2:
            raise Bad(bad, m["chosen"])
        if len(r) != len(c) or r[-1][0] != 2 or r[:-1] != c[:-1]:
            raise Bad(bad, m["rejected"])
        turns = c[:-1]
        used, fmt = (m["chosen"], m["rejected"]), 3
        if not turns and m["prompt"] in o:
            turns = [(1, get_str(o, m["prompt"], m["prompt"]))]
            used, fmt = used + (m["prompt"],), 3 | 1 << 6  # pair_format bits 6-7: the prompt came from a string
        responses(c[-1][1], r[-1][1], m)
        passthrough(o, used)
        return "ok", dict(format=fmt, prompt=render_chat_prompt(turns), chosen=c[-1][1], rejected=r[-1][1],
                          turns=turns)
    except Bad as b:
        return b.reason, b.field


# ---------------------------------------------------------------- reading the output with h5py
def read_shard(path):
    with h5py.File(path, "r") as f:
        d = {k: f[k][()] for k in f.keys()}
        a = {k: f.attrs[k] for k in f.attrs.keys()}
    return d, a


def shard_pairs(path):
    d, a = read_shard(path)
    n = len(d["pair_id"])

    def txt(name, i):
        o = d[name + "_off"]
        return d[name][o[i]:o[i + 1]].tobytes()

    out = {}
    for i in range(n):
        t0, t1 = d["turn_off"][i], d["turn_off"][i + 1]
        turns = [(int(d["turn_role"][t]), d["text"][d["text_off"][t]:d["text_off"][t + 1]].tobytes())
                 for t in range(t0, t1)]
        out[int(d["pair_id"][i])] = dict(format=int(d["pair_format"][i]), prompt=txt("prompt", i),
                                         chosen=txt("chosen", i), rejected=txt("rejected", i), turns=turns)
    return out, a


def corpus_dir(out, name):
    return os.path.join(out, "corpora", name)


def read_corpus(cdir):
    man = json.load(open(os.path.join(cdir, "manifest.json")))
    pairs = {}
    for k, s in enumerate(man["shards"]):
        p, a = shard_pairs(os.path.join(cdir, s["file"]))
        check(len(p) == s["pairs"], "%s: shard %d pair count" % (cdir, k))
        check(int(a["shard"]) == k and int(a["first_line"]) == k * man["shard_size"] + 1,
              "%s: shard %d attributes" % (cdir, k))
        check(all(a["first_line"] <= i <= a["last_line"] for i in p), "%s: shard %d ids in range" % (cdir, k))
        pairs.update(p)
    rejects = [json.loads(l) for l in open(os.path.join(cdir, "rejects.jsonl"))]
    with h5py.File(os.path.join(cdir, "index.h5"), "r") as f:
        status, shard = f["line_status"][()], f["line_shard"][()]
    return man, pairs, rejects, status, shard


def check_against_reference(cdir, src, mapping, fmt, name, max_lines=None):
    """Every input line is either the expected pair or the expected reject, and the ledgers agree."""
    lines = input_lines(src)[:max_lines]
    man, pairs, rejects, status, shard = read_corpus(cdir)
    check(man["n_lines"] == len(lines), "%s: n_lines %d vs independent count %d" % (name, man["n_lines"], len(lines)))
    check(man["n_pairs"] + man["n_rejected"] == len(lines), "%s: pairs + rejected == lines" % name)
    check(len(pairs) == man["n_pairs"] and len(rejects) == man["n_rejected"], "%s: manifest counts" % name)
    want_rejects = []
    bad = 0
    for i, raw in enumerate(lines, 1):
        reason, x = expect_line(raw, mapping, fmt)
        if reason == "ok":
            got = pairs.get(i)
            if got != x:
                bad += 1
                if bad <= 3:
                    print("line %d: expected %r\n got %r" % (i, x, got), file=sys.stderr)
            check(status[i - 1] == 0 and shard[i - 1] == (i - 1) // man["shard_size"], "%s: index line %d" % (name, i))
        else:
            want_rejects.append({"corpus": name, "line": i, "field": x, "reason": reason})
            check(i not in pairs, "%s: rejected line %d has a pair" % (name, i))
            check(status[i - 1] == STATUS[reason] and shard[i - 1] == -1, "%s: index status line %d" % (name, i))
    check(bad == 0, "%s: %d pairs differ from the reference" % (name, bad))
    details = {r["line"]: r.pop("detail") for r in rejects if "detail" in r}  # checked by the layout tests
    check(rejects == want_rejects, "%s: rejects ledger %r != expected %r" % (name, rejects[:5], want_rejects[:5]))
    return man, pairs


def check_export(cdir, src, mapping, name):
    """export -> JSONL: ids, split, and the input's strings byte for byte (decoded JSON strings)."""
    out = os.path.join(A.work, name + "-export.jsonl")
    run(["export", "--corpus-dir", cdir, "--out", out])
    man = json.load(open(os.path.join(cdir, "manifest.json")))
    lines = input_lines(src)
    got = [json.loads(l) for l in open(out, "rb")]
    ids = [g["id"] for g in got]
    check(ids == sorted(ids) and len(ids) == man["n_pairs"], "%s: export ids in order, one per pair" % name)
    bad = 0
    for g in got:
        o = json.loads(lines[g["id"] - 1].decode("utf-8", "surrogateescape"))
        ok = g["split"] == man["split"]
        if "prompt" in g:  # flat
            ok &= (g["prompt"], g["chosen"], g["rejected"]) == (o[mapping["prompt"]], o[mapping["chosen"]], o[mapping["rejected"]])
        elif isinstance(g["chosen"], str):  # HH transcript
            ok &= g["chosen"].encode() == o[mapping["chosen"]].encode() and g["rejected"].encode() == o[mapping["rejected"]].encode()
        else:  # chat lists, message keys normalized to role/content
            for key in ("chosen", "rejected"):
                want = [(msg[mapping["role"]], msg[mapping["content"]]) for msg in o[mapping[key]]]
                have = [(msg["role"], msg["content"]) for msg in g[key]]
                if len(want) == 1 and mapping["prompt"] in o:
                    want = [("user", o[mapping["prompt"]])] + want
                ok &= want == have
        if not ok:
            bad += 1
            if bad <= 3:
                print("export id %d differs" % g["id"], file=sys.stderr)
    check(bad == 0, "%s: %d exported pairs differ from the input" % (name, bad))


DEFAULT_MAP = dict(prompt="prompt", chosen="chosen", rejected="rejected", role="role", content="content")


# ---------------------------------------------------------------- tests
def hh_sources():
    d = os.path.join(A.shared, "data", "hh-rlhf")
    srcs = [os.path.join(d, f) for f in ("harmless-base-test.jsonl.gz", "helpful-base-test.jsonl.gz")]
    if not all(os.path.exists(s) for s in srcs):
        print("shared HH-RLHF data not found under %s: skipping" % d)
        raise SystemExit(77)
    return srcs


def same_h5(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        if sorted(fa.keys()) != sorted(fb.keys()) or sorted(fa.attrs.keys()) != sorted(fb.attrs.keys()):
            return False
        for k in fa.keys():
            x, y = fa[k][()], fb[k][()]
            if x.dtype != y.dtype or not np.array_equal(x, y):
                return False
        return all(np.array_equal(fa.attrs[k], fb.attrs[k]) for k in fa.attrs.keys())


def test_hh_ranks():
    for src in hh_sources():
        name = "harmless" if "harmless" in src else "helpful"
        dirs = []
        for n in (1, 2, 4):
            out = os.path.join(A.work, "r%d" % n)
            run(["ingest", "--out", out, "--name", name, "--format", "hh", "--shard-size", "300", src], np_=n)
            dirs.append(corpus_dir(out, name))
        man = json.load(open(os.path.join(dirs[0], "manifest.json")))
        check(man["n_shards"] >= 7, "%s: enough shards to spread over 4 ranks" % name)
        for d in dirs[1:]:
            files = sorted(f for f in os.listdir(d))
            check(files == sorted(os.listdir(dirs[0])), "%s: same file list %s" % (d, files))
            for f in files:
                if f.endswith(".h5"):
                    check(same_h5(os.path.join(dirs[0], f), os.path.join(d, f)), "%s/%s identical to 1 rank" % (d, f))
                else:
                    check(open(os.path.join(dirs[0], f), "rb").read() == open(os.path.join(d, f), "rb").read(),
                          "%s/%s identical to 1 rank" % (d, f))
        check_against_reference(dirs[2], src, DEFAULT_MAP, "hh", name)


def test_roundtrip():
    for src in hh_sources():
        name = "harmless" if "harmless" in src else "helpful"
        run(["ingest", "--out", A.work, "--name", name, "--shard-size", "512", src], np_=2)
        cdir = corpus_dir(A.work, name)
        man, pairs = check_against_reference(cdir, src, DEFAULT_MAP, "auto", name)
        check(man["n_pairs"] > 2200, "%s: most HH lines ingested (%d)" % (name, man["n_pairs"]))
        check_export(cdir, src, DEFAULT_MAP, name)
        # prompt + response reproduces the transcript, read straight from the shard with h5py
        lines = input_lines(src)
        bad = sum(1 for i, p in pairs.items()
                  if p["prompt"] + p["chosen"] != json.loads(lines[i - 1])["chosen"].encode()
                  or p["prompt"] + p["rejected"] != json.loads(lines[i - 1])["rejected"].encode())
        check(bad == 0, "%s: %d h5py-read pairs do not rebuild their transcripts" % (name, bad))


WORDS = ["the", "cat", "é", "中文", "😀", "a\"quote", "back\\slash", "tab\t", "new\nline", "Human", "Assistant:",
         "ok", "\u2028", "x" * 40, "naïve", "\\n\\nHuman:"]


def rand_text(rng, n=None):
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(1, 12)))


def hh_record(rng, turns=None):
    t = "".join("\n\nHuman: %s\n\nAssistant: %s" % (rand_text(rng), rand_text(rng))
                for _ in range(turns or rng.randint(0, 2)))
    t += "\n\nHuman: " + rand_text(rng) + "\n\nAssistant:"
    return {"chosen": t + " " + rand_text(rng), "rejected": t + " different " + rand_text(rng)}


def dumps(o):
    return json.dumps(o, ensure_ascii=rng_global.random() < 0.5).encode()


def fuzz_file(path, rng):
    """A synthetic HH file with one bad line of each kind, expected reasons computed by the reference."""
    good = lambda: dumps(hh_record(rng))
    r = hh_record(rng)
    prompt = r["chosen"][:r["chosen"].rfind("\n\nAssistant:") + 12]
    bad = [
        dumps(hh_record(rng))[:40],                                          # truncated JSON
        dumps(hh_record(rng)).replace(b"Human: ", b"Human: \xff\xfe", 1),   # bad UTF-8 in chosen
        json.dumps({"chosen": r["chosen"], "rejected": r["rejected"] + "\udcff"}, ensure_ascii=False)
        .encode("utf-8", "surrogateescape"),                                 # bad UTF-8 in rejected
        json.dumps({"chosen": r["chosen"], "rejected": r["rejected"], "meta": "\udcc3("}, ensure_ascii=False)
        .encode("utf-8", "surrogateescape"),                                 # bad bytes in a pass-through column
        dumps({"chosen": 5, "rejected": r["rejected"]}),                     # wrong type
        dumps({"chosen": r["chosen"], "rejected": ["x"]}),                   # wrong type
        dumps({"chosen": r["chosen"]}),                                      # missing key
        dumps({"rejected": r["rejected"]}),                                  # missing key
        dumps({"chosen": prompt + " \n\t", "rejected": r["rejected"]}),      # empty chosen
        dumps({"chosen": r["chosen"], "rejected": prompt}),                  # empty rejected
        dumps({"chosen": r["chosen"], "rejected": r["chosen"]}),             # identical
        dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}),  # no marker
        b"", b"   \t", b"[1, 2]", b"\"just a string\"", b"{\"chosen\": 1} trailing", b"nul\x00l",
        dumps(hh_record(rng)) + b"\r",                                       # CRLF line: fine
        dumps({"chosen": r["chosen"] + "\0 cut", "rejected": r["rejected"]}),  # \u0000 escape
        dumps({"chosen": r["chosen"] + "\\u0000 literal", "rejected": r["rejected"]}),  # an escaped backslash: fine
    ]
    lines = [good() for _ in range(30)] + bad
    rng.shuffle(lines)
    with open(path, "wb") as f:
        f.write(b"\n".join(lines))  # no final newline: the last line still counts
    return len(lines)


def test_fuzz():
    rng = random.Random(11)
    src = os.path.join(A.work, "fuzz.jsonl")
    n = fuzz_file(src, rng)
    for np_ in (1, 2):
        out = os.path.join(A.work, "f%d" % np_)
        p = run(["ingest", "--out", out, "--name", "fz", "--format", "hh", "--shard-size", "4", src], np_=np_)
        man, _ = check_against_reference(corpus_dir(out, "fz"), src, DEFAULT_MAP, "hh", "fz")
        check(man["n_lines"] == n and man["n_rejected"] == 19, "fuzz: %d lines, 19 rejected (got %d)" % (n, man["n_rejected"]))
        check(b"ingest fz: %d lines" % n in p.stdout, "fuzz: summary line")
    # a re-run with another shard size replaces the folder cleanly (no stale shards)
    out = os.path.join(A.work, "f2")
    run(["ingest", "--out", out, "--name", "fz", "--format", "hh", "--shard-size", "1000", src], np_=2)
    check(sorted(os.listdir(corpus_dir(out, "fz"))) == ["index.h5", "manifest.json", "rejects.jsonl", "shard-00000.h5"],
          "fuzz: re-run leaves exactly one shard: %s" % os.listdir(corpus_dir(out, "fz")))
    check_against_reference(corpus_dir(out, "fz"), src, DEFAULT_MAP, "hh", "fz")
    # --max-pairs: only the first N lines are read; more ranks than shards (ranks 2, 3 write no shard)
    run(["ingest", "--out", out, "--name", "fz", "--format", "hh", "--shard-size", "3", "--max-pairs", "5", src], np_=4)
    man, _ = check_against_reference(corpus_dir(out, "fz"), src, DEFAULT_MAP, "hh", "fz", max_lines=5)
    check(man["n_lines"] == 5 and man["n_shards"] == 2, "fuzz: --max-pairs 5 reads 5 lines into 2 shards")


def test_strict():
    rng = random.Random(5)
    src = os.path.join(A.work, "strict.jsonl")
    lines = [dumps(hh_record(rng)) for _ in range(12)]
    lines[6] = dumps({"chosen": "\n\nHuman: x\n\nAssistant: y", "rejected": 3})  # shard 1 (rank 1 of 2)
    lines[9] = b"{broken"                                                       # shard 2 (rank 0), later
    open(src, "wb").write(b"\n".join(lines) + b"\n")
    out = os.path.join(A.work, "s")
    p = run(["ingest", "--out", out, "--name", "st", "--format", "hh", "--shard-size", "4", "--strict", src], np_=2, expect_rc=1)
    q = quorum_lines(p.stderr)
    check(len(q) == 1 and q[0].startswith("quorum: error: %s:7:rejected: wrong type" % src), "strict: one line, got %r" % q)
    check(not os.path.exists(corpus_dir(out, "st")), "strict: nothing written")
    # strict over an existing good corpus leaves it untouched
    good = os.path.join(A.work, "good.jsonl")
    open(good, "wb").write(b"\n".join(lines[:6]) + b"\n")
    run(["ingest", "--out", out, "--name", "st", "--format", "hh", "--shard-size", "4", good], np_=2)
    before = {f: open(os.path.join(corpus_dir(out, "st"), f), "rb").read() for f in os.listdir(corpus_dir(out, "st"))}
    run(["ingest", "--out", out, "--name", "st", "--format", "hh", "--shard-size", "4", "--strict", src], np_=2, expect_rc=1)
    after = {f: open(os.path.join(corpus_dir(out, "st"), f), "rb").read() for f in os.listdir(corpus_dir(out, "st"))}
    check(before == after, "strict: an earlier corpus is left as it was")
    # a truncated .gz is one clean error line, and no manifest
    gz = os.path.join(A.work, "trunc.jsonl.gz")
    blob = gzip.compress(b"\n".join(dumps(hh_record(rng)) for _ in range(200)) + b"\n")
    open(gz, "wb").write(blob[: len(blob) // 2])
    p = run(["ingest", "--out", out, "--name", "tz", gz], np_=2, expect_rc=1)
    q = quorum_lines(p.stderr)
    check(len(q) == 1 and q[0].startswith("quorum: error: %s: cannot read corpus" % gz), "truncated gz: one line, got %r" % q)
    check(not os.path.exists(os.path.join(corpus_dir(out, "tz"), "manifest.json")), "truncated gz: no manifest")
    p = run(["ingest", "--out", out, "--name", "nf", os.path.join(A.work, "missing.jsonl")], np_=1, expect_rc=1)
    check(len(quorum_lines(p.stderr)) == 1, "missing file: one line")


def write_job(path, corpus):
    json.dump({"name": "t", "out_dir": os.path.join(A.work, "jobout"), "shard_size": 5, "corpora": [corpus]},
              open(path, "w"))


def test_flat():
    rng = random.Random(3)
    m = dict(DEFAULT_MAP, prompt="question", chosen="good", rejected="bad")
    recs = []
    for i in range(40):
        p = rand_text(rng) if i % 3 else hh_record(rng)["chosen"].rsplit(" ", 1)[0]  # some prompts are HH transcripts
        recs.append({"question": p, "good": rand_text(rng), "bad": "no: " + rand_text(rng), "extra": i})
    recs[4]["question"] = ""
    recs[7]["bad"] = recs[7]["good"]
    del recs[11]["question"]
    recs[13]["good"] = "  \n"
    recs[17]["bad"] = None
    src = os.path.join(A.work, "flat.jsonl")
    open(src, "wb").write(b"\n".join(dumps(r) for r in recs) + b"\n")
    job = os.path.join(A.work, "flat-job.json")
    write_job(job, {"name": "flat", "path": src, "format": "pcr", "split": "helpful",
                    "field_prompt": "question", "field_chosen": "good", "field_rejected": "bad"})
    run(["ingest", "--job", job], np_=2)
    cdir = corpus_dir(os.path.join(A.work, "jobout"), "flat")
    man, pairs = check_against_reference(cdir, src, m, "pcr", "flat")
    check(man["n_rejected"] == 4 and man["split"] == "helpful", "flat: 4 rejects, split label")
    check(any(len(p["turns"]) > 1 for p in pairs.values()), "flat: HH-style prompts split into turns")
    check_export(cdir, src, m, "flat")


def chat_record(rng, m):
    prefix = []
    if rng.random() < 0.3:
        prefix.append({m["role"]: "system", m["content"]: rand_text(rng)})
    for _ in range(rng.randint(0, 2)):
        prefix += [{m["role"]: "user", m["content"]: rand_text(rng)}, {m["role"]: "assistant", m["content"]: rand_text(rng)}]
    prefix.append({m["role"]: "user", m["content"]: rand_text(rng)})
    return {m["chosen"]: prefix + [{m["role"]: "assistant", m["content"]: rand_text(rng)}],
            m["rejected"]: copy.deepcopy(prefix) + [{m["role"]: "assistant", m["content"]: "nope " + rand_text(rng)}]}


def test_chat():
    rng = random.Random(7)
    m = dict(DEFAULT_MAP, chosen="win", rejected="lose", role="speaker", content="text")
    recs = [chat_record(rng, m) for _ in range(40)]
    recs[3]["lose"][0]["text"] += " changed"                        # prefixes differ
    recs[5]["win"][0]["speaker"] = "narrator"                       # unknown role
    recs[8]["win"] = recs[8]["win"][:-1]                            # chosen does not end with the reply
    recs[10]["lose"][-1]["text"] = 42                               # wrong type inside a message
    recs[12]["lose"][-1]["text"] = recs[12]["win"][-1]["text"]      # identical
    recs[14]["win"] = "not a list"                                  # auto: not chat -> pcr/hh rules
    recs[15] = {"prompt": "just the question", "win": [{"speaker": "assistant", "text": "A"}],
                "lose": [{"speaker": "assistant", "text": "B"}]}     # reply-only lists + prompt key
    recs[16] = {"win": "\n\nHuman: hi\n\nAssistant: hello", "lose": "\n\nHuman: hi\n\nAssistant: go away"}  # hh line
    recs[17] = {"prompt": "flat q", "win": "flat a", "lose": "flat b"}  # pcr line
    recs[19]["win"][0] = "oops"                                     # a message that is not an object
    src = os.path.join(A.work, "chat.jsonl.gz")
    open(src, "wb").write(gzip.compress(b"\n".join(dumps(r) for r in recs) + b"\n"))
    job = os.path.join(A.work, "chat-job.json")
    write_job(job, {"name": "chat", "path": src, "format": "auto",
                    "field_chosen": "win", "field_rejected": "lose", "field_role": "speaker", "field_content": "text"})
    for np_ in (1, 3):
        run(["ingest", "--job", job, "--corpus", "chat"], np_=np_)
        cdir = corpus_dir(os.path.join(A.work, "jobout"), "chat")
        man, pairs = check_against_reference(cdir, src, m, "auto", "chat")
        check(man["n_rejected"] == 7, "chat: 7 rejects (got %d)" % man["n_rejected"])
        check({p["format"] & 0x3f for p in pairs.values()} == {1, 2, 3}, "chat: auto found all three formats")
    rj = [json.loads(x) for x in open(os.path.join(cdir, "rejects.jsonl"))]
    check(any(r["line"] == 6 and r.get("detail") == '"narrator"; accepted: system user assistant' for r in rj),
          "chat: the unknown role's reject names the value and the accepted roles")
    check_export(cdir, src, m, "chat")


def test_gen():
    """quorum gen (the demo's planted-noise corpus, checked in tests/demo): every generated pair ingests."""
    out = os.path.join(A.work, "g")
    run(["gen", "--out", out, "--size", "400", "--heldout", "20", "--seed", "9"], np_=2)
    for name in ("harmless", "helpful"):
        src = os.path.join(out, name + ".jsonl")
        run(["ingest", "--out", out, "--name", name, "--shard-size", "64", src], np_=2)
        man, _ = check_against_reference(corpus_dir(out, name), src, DEFAULT_MAP, "auto", name)
        check(man["n_pairs"] == 400 and man["n_rejected"] == 0, "gen: every generated %s pair ingests" % name)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quorum", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--np-flag", default="-n")
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("test")
    A = ap.parse_args()
    rng_global = random.Random(1)
    A.work = os.path.join(A.work, A.test)
    shutil.rmtree(A.work, ignore_errors=True)
    os.makedirs(A.work)
    globals()["test_" + A.test]()
    finish()
