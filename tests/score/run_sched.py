"""run_sched.py WORKDIR - the dynamic score schedule (quorum/score.h) over N members x R ranks.

Two corpora of different sizes (HH harmless-base-test, first 700 lines; helpful-base-test, first 260
lines; shard_size 50: 14 and 6 shards), builtin members. Every N = 1..5 runs on 1 rank (the baseline,
checked against reference.py, an independent numpy re-implementation) and on one more rank count, so
that R = 1..5 all occur with N > R, N = R and N < R: (1,3) (2,5) (3,3) (4,2) (5,4). Each run:
  - every (corpus, member, shard) unit is written exactly once (QUORUM_TEST_UNIT_LOG: one line per score
    file a rank wrote), one current score file per unit, and the schedule log lists the same units;
  - the votes file and the stats JSON are byte-identical to the 1-rank run's.
One Hugging Face member (a 1-layer GPT-2 score model from `quorum init-model`) with 2 builtin members on 1
and 2 ranks: votes byte-identical, and the schedule log's predicted cost of every unit equals the cost model
of score.h recomputed here from the shard datasets (h5py) and the safetensors header (json).
Then a kill + resume with a different rank count: 4 members on 3 ranks, rank 1 SIGKILLed after 2 score
files (QUORUM_TEST_DIE_AFTER_SHARDS, 150 ms per shard so the kill lands mid-stage), resumed on 2 ranks:
the resumed run writes exactly the units whose files were missing, once each, leaves every finished file
untouched, and the votes equal the 1-rank baseline byte for byte.
Env: QUORUM_BIN, SCORE_VOTE_ONCE, QUORUM_SHARED_DIR, MPIEXEC, MPIEXEC_NUMPROC_FLAG. Exit 77 without data."""
import collections
import glob
import json
import os
import shutil
import struct
import subprocess
import sys

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402
import run_hh as hh  # noqa: E402

CORPORA = [("harmless", "harmless-base-test.jsonl.gz", 700), ("helpful", "helpful-base-test.jsonl.gz", 260)]
SHARD_SIZE = 50
CELLS = [(1, 3), (2, 5), (3, 3), (4, 2), (5, 4)]  # (N, R) besides R = 1
check = hh.check


def write_job(out, data_dir, n_members, committee=None):
    job = {"name": os.path.basename(out), "out_dir": out, "shard_size": SHARD_SIZE,
           "corpora": [{"name": n, "path": os.path.join(data_dir, f), "format": "hh", "split": n, "max_pairs": k}
                       for n, f, k in CORPORA],
           "committee": committee or [{"name": n, "path": p} for n, p in hh.MEMBERS[:n_members]]}
    os.makedirs(out, exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(job, f)
    return out + ".json"


def shard_counts(work):
    out = {}
    for name, _, _ in CORPORA:
        with open(os.path.join(work, "base", "corpora", name, "manifest.json")) as f:
            out[name] = len(json.load(f)["shards"])
    return out


def all_units(shards, n_members):
    return {(c, m, k) for c in shards for m, _ in hh.MEMBERS[:n_members] for k in range(shards[c])}


def unit_log(path):
    """Counter of (corpus, member, shard) written, from the test hook's lines "corpus member shard rank"."""
    if not os.path.exists(path):
        return collections.Counter()
    with open(path) as f:
        return collections.Counter((c, m, int(k)) for c, m, k, _ in (line.split() for line in f))


def score_files(out):
    """{(corpus, member, shard): (inode, mtime_ns)} of the score files present."""
    files = {}
    for p in glob.glob(os.path.join(out, "scores", "*", "*", "shard-*.h5")):
        parts = p.split(os.sep)
        st = os.stat(p)
        files[(parts[-3], parts[-2], int(parts[-1][6:11]))] = (st.st_ino, st.st_mtime_ns)
    return files


def schedule_units(out):
    with open(os.path.join(out, "scores", "schedule.jsonl")) as f:
        return collections.Counter((d["corpus"], d["member"], d["shard"]) for d in map(json.loads, f))


def votes_bytes(out):
    return {c: (hh.file_bytes(os.path.join(out, "votes", c + ".h5")),
                hh.file_bytes(os.path.join(out, "votes", c + ".stats.json"))) for c, _, _ in CORPORA}


def run_cell(work, data_dir, shards, N, R, tag):
    out = os.path.join(work, tag)
    hh.link_corpora(work, out)
    job = write_job(out, data_dir, N)
    log = out + ".units"
    rc, text = hh.quorum(R, job, binary="SCORE_VOTE_ONCE", env={"QUORUM_TEST_UNIT_LOG": log})
    check(rc == 0, f"{tag}: score + vote rc {rc}\n{text}")
    want = all_units(shards, N)
    got = unit_log(log)
    check(set(got) == want, f"{tag}: units written {len(got)}, expected {len(want)}")
    check(all(v == 1 for v in got.values()), f"{tag}: units written twice: {[u for u, v in got.items() if v > 1]}")
    check(set(score_files(out)) == want, f"{tag}: score files differ from the units")
    check(schedule_units(out) == collections.Counter(want), f"{tag}: the schedule log does not list each unit once")
    return out


def mode_grid(work, data_dir, shards, pairs):
    base = {}
    for N in range(1, 6):
        out = run_cell(work, data_dir, shards, N, 1, f"N{N}R1")
        scores = {c: hh.reference_scores(pairs[c], N, {}) for c in pairs}
        for c in pairs:
            hh.check_votes(out, c, pairs[c], scores[c], 0.0, "0.5", f"N={N} R=1")
        base[N] = votes_bytes(out)
    for N, R in CELLS:
        out = run_cell(work, data_dir, shards, N, R, f"N{N}R{R}")
        check(votes_bytes(out) == base[N], f"N={N} R={R}: votes or stats differ from the 1-rank run's bytes")
        print(f"N={N} R={R}: ok so far ({hh.fails} failures)", flush=True)
    return base


def safetensors_params(path):
    """Element count of every tensor, from the file's JSON header (safetensors format: u64 length + JSON)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name != "__metadata__":
            k = 1
            for d in t["shape"]:
                k *= d
            total += k
    return total


def shard_cost_bytes(work, corpus, k):
    with h5py.File(os.path.join(work, "base", "corpora", corpus, "shard-%05d.h5" % k), "r") as f:
        return 1 + 2 * f["prompt"].shape[0] + f["chosen"].shape[0] + f["rejected"].shape[0]


def mode_hf(work, data_dir, shards):
    tok = os.path.join(os.environ.get("QUORUM_SHARED_DIR", ""), "tokenizers", "gpt2")
    if not os.path.exists(os.path.join(tok, "tokenizer.json")):
        print(f"hf: skipped, no GPT-2 tokenizer under {tok}")
        return
    rm = os.path.join(work, "rm")
    p = subprocess.run([os.environ["QUORUM_BIN"], "init-model", "--arch", "gpt2", "--layers", "1", "--dim", "16",
                        "--heads", "2", "--max-pos", "128", "--tokenizer", tok, "--head", "score", "--seed", "3",
                        "--out", rm], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not check(p.returncode == 0, "hf: init-model failed\n" + p.stdout):
        return
    committee = [{"name": "rm", "path": rm, "max_length": 96, "batch_size": 3}] + \
                [{"name": n, "path": q} for n, q in hh.MEMBERS[:2]]
    params = {"rm": safetensors_params(os.path.join(rm, "model.safetensors")), "len": 1, "h7": 1}
    got = {}
    for R in (1, 2):
        out = os.path.join(work, f"hfR{R}")
        hh.link_corpora(work, out)
        job = write_job(out, data_dir, 3, committee)
        rc, text = hh.quorum(R, job, binary="SCORE_VOTE_ONCE", env={"QUORUM_TEST_UNIT_LOG": out + ".units"})
        check(rc == 0, f"hf R={R}: score + vote rc {rc}\n{text}")
        units = unit_log(out + ".units")
        check(len(units) == 3 * sum(shards.values()) and all(v == 1 for v in units.values()),
              f"hf R={R}: units written {sum(units.values())}, expected each of {3 * sum(shards.values())} once")
        got[R] = votes_bytes(out)
        with open(os.path.join(out, "scores", "schedule.jsonl")) as f:
            for d in map(json.loads, f):
                want = shard_cost_bytes(work, d["corpus"], d["shard"]) * params[d["member"]]
                check(abs(d["cost"] - want) <= 1e-5 * want, f"hf R={R}: {d['member']} {d['corpus']} shard {d['shard']}: "
                                                            f"cost {d['cost']}, expected {want}")
    check(got[1] == got[2], "hf: votes with an HF member differ between 1 and 2 ranks")
    print(f"hf: GPT-2 member ({params['rm']} parameters) + 2 builtin: votes equal at 1 and 2 ranks, costs as predicted",
          flush=True)


def mode_resume(work, data_dir, shards, base):
    N, R1, R2 = 4, 3, 2
    out = os.path.join(work, "resume")
    hh.link_corpora(work, out)
    job = write_job(out, data_dir, N)
    log1, log2 = out + ".units1", out + ".units2"
    rc, text = hh.quorum(R1, "score", "--job", job, env={"QUORUM_TEST_DIE_AFTER_SHARDS": "2", "QUORUM_TEST_SLOW_SHARD_MS": "150",
                                                          "QUORUM_TEST_UNIT_LOG": log1})
    check(rc != 0, f"resume: the killed run exited 0\n{text}")
    kept = score_files(out)
    want = all_units(shards, N)
    check(0 < len(kept) < len(want), f"resume: {len(kept)} of {len(want)} score files after the kill")
    check(all(v == 1 for v in unit_log(log1).values()), "resume: the killed run wrote a unit twice")
    rc, text = hh.quorum(R2, job, binary="SCORE_VOTE_ONCE", env={"QUORUM_TEST_UNIT_LOG": log2})
    check(rc == 0, f"resume: the resumed run rc {rc}\n{text}")
    second = unit_log(log2)
    check(set(second) == want - set(kept), f"resume: the resumed run wrote {len(second)} units, "
                                           f"{len(want) - len(kept)} were missing")
    check(all(v == 1 for v in second.values()), "resume: the resumed run wrote a unit twice")
    now = score_files(out)
    check(set(now) == want, "resume: score files missing after the resumed run")
    check(all(now[u] == kept[u] for u in kept), "resume: a file finished before the kill was rewritten")
    check(schedule_units(out) == collections.Counter(want - set(kept)), "resume: the schedule log is not the rest")
    check(votes_bytes(out) == base[N], "resume: votes differ from the 1-rank run's bytes")
    print(f"resume: killed at {R1} ranks with {len(kept)}/{len(want)} files, {R2} ranks wrote the {len(second)} others",
          flush=True)


def main():
    work = sys.argv[1]
    data_dir = os.path.join(os.environ.get("QUORUM_SHARED_DIR", ""), "data", "hh-rlhf")
    if not all(os.path.exists(os.path.join(data_dir, f)) for _, f, _ in CORPORA):
        print(f"skip: HH-RLHF test splits not found under {data_dir} (set QUORUM_SHARED_DIR)")
        return 77
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rc, text = hh.quorum(2, "ingest", "--job", write_job(os.path.join(work, "base"), data_dir, 1))
    if not check(rc == 0, "ingest failed:\n" + text):
        return 1
    shards = shard_counts(work)
    pairs = {c: [p for p in ref.hh_pairs(os.path.join(data_dir, f)) if p[0] <= k] for c, f, k in CORPORA}
    base = mode_grid(work, data_dir, shards, pairs)
    mode_hf(work, data_dir, shards)
    mode_resume(work, data_dir, shards, base)
    print(f"sched: {'ok' if not hh.fails else str(hh.fails) + ' failures'}")
    return 1 if hh.fails else 0


if __name__ == "__main__":
    sys.exit(main())
