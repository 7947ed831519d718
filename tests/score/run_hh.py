"""run_hh.py MODE WORKDIR - end-to-end score + vote on the HH-RLHF test splits, checked against
reference.py (a serial re-implementation from the .jsonl.gz).

  ranks    N = 1..5 builtin members x R = 1..4 ranks: scores, agree, buckets and stats equal to the
           reference, and the stats files byte-identical for every R (and for a vote run with a rank
           count different from the score run's, N = 2 and 5).
  crash    rank 1 SIGKILLs itself after 3 shard files (QUORUM_TEST_DIE_AFTER_SHARDS); the re-run skips
           the finished files (untouched), rescores a file whose checksum was made stale, and the
           result equals the reference with no missing or duplicate pairs.
  sigusr1  SIGUSR1 to mpirun mid-run (QUORUM_TEST_SLOW_SHARD_MS): exit 99 with complete files only;
           the re-run finishes and equals the reference.
  errors   vote before score, unknown --corpus, a bad / HF member on one rank, a corpus never ingested,
           a truncated and a swapped score file: exit 1 with one error line, no hang; then a re-run heals.
Env: QUORUM_BIN, QUORUM_SHARED_DIR, MPIEXEC, MPIEXEC_NUMPROC_FLAG. Exit 77 when the data is absent."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

MEMBERS = [("len", "builtin:len"), ("h7", "builtin:hash:7"), ("kw", "builtin:kw:you"),
           ("neg", "builtin:neglen"), ("h0", "builtin:hash")]
CORPORA = [("harmless", "harmless-base-test.jsonl.gz"), ("helpful", "helpful-base-test.jsonl.gz")]
SHARD_SIZE = 97
fails = 0


def check(cond, msg):
    global fails
    if cond:
        return True
    fails += 1
    print("FAIL:", msg, flush=True)
    return False


def quorum(ranks, *args, env=None, popen=False, binary="QUORUM_BIN"):
    cmd = [os.environ["MPIEXEC"], os.environ.get("MPIEXEC_NUMPROC_FLAG", "-n"), str(ranks), "--oversubscribe",
           os.environ[binary], *args]
    e = dict(os.environ, **(env or {}))
    if popen:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def write_job(out, data_dir, n_members, margin, high_frac, corpora=CORPORA):
    job = {"name": os.path.basename(out), "out_dir": out, "shard_size": SHARD_SIZE,
           "corpora": [{"name": n, "path": os.path.join(data_dir, f), "format": "hh", "split": n} for n, f in corpora],
           "committee": [{"name": n, "path": p} for n, p in MEMBERS[:n_members]],
           "vote": {"margin": margin, "high_frac": high_frac}}
    os.makedirs(out, exist_ok=True)
    path = out + ".json"
    with open(path, "w") as f:
        json.dump(job, f)
    return path


def setup(work, data_dir):
    """Ingests both corpora once (2 ranks) into work/base; returns the reference pairs per corpus."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base = os.path.join(work, "base")
    job = write_job(base, data_dir, 1, 0.0, 0.5)
    rc, out = quorum(2, "ingest", "--job", job)
    if not check(rc == 0, "ingest failed:\n" + out):
        sys.exit(1)
    return {n: ref.hh_pairs(os.path.join(data_dir, f)) for n, f in CORPORA}


def link_corpora(work, out):
    os.makedirs(out, exist_ok=True)
    os.symlink(os.path.join(work, "base", "corpora"), os.path.join(out, "corpora"))


def reference_scores(pairs, n_members, cache):
    for name, path in MEMBERS[:n_members]:
        if name not in cache:
            cache[name] = ref.member_scores(path[len("builtin:"):], pairs)
    return [cache[name] for name, _ in MEMBERS[:n_members]]


def check_votes(out, corpus, pairs, scores, margin, high_frac, tag):
    """The votes file and stats JSON of one corpus against the reference."""
    agree, buckets, st = ref.votes_and_stats(scores, margin, high_frac)
    N = len(scores)
    with h5py.File(os.path.join(out, "votes", corpus + ".h5"), "r") as f:
        ids = f["pair_id"][:]
        check(np.array_equal(ids, np.array([p[0] for p in pairs])), f"{tag} {corpus}: pair ids differ from reference")
        check(len(np.unique(ids)) == len(ids), f"{tag} {corpus}: duplicate pair ids")
        ch, rj = f["chosen"][:], f["rejected"][:]
        for m in range(N):
            check(np.array_equal(ch[m], scores[m][0]) and np.array_equal(rj[m], scores[m][1]),
                  f"{tag} {corpus}: member {MEMBERS[m][0]} rewards differ from reference")
        check(np.array_equal(f["agree"][:], agree), f"{tag} {corpus}: agree counts differ")
        check(np.array_equal(f["bucket"][:], buckets), f"{tag} {corpus}: buckets differ")
        check(f.attrs["members"].decode() == ",".join(n for n, _ in MEMBERS[:N]), f"{tag}: members attr")
    with open(os.path.join(out, "votes", corpus + ".stats.json")) as fh:
        js = json.load(fh)
    names = ["NoAgree", "LowAgree", "HighAgree", "AllAgree"]
    check([js["buckets"][b]["count"] for b in names] == st["bucket_counts"], f"{tag} {corpus}: bucket counts")
    check(all(abs(js["buckets"][b]["pct"] - 100.0 * c / len(pairs)) < 1e-9 for b, c in zip(names, st["bucket_counts"])),
          f"{tag} {corpus}: bucket pct")
    check(js["n_pairs"] == len(pairs) and js["n_members"] == N and js["corpus"] == corpus, f"{tag}: header")
    close = lambda a, b: (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9 * max(1, abs(b)))
    check(all(close(a, b) for a, b in zip(js["member_accuracy"], st["member_accuracy"])), f"{tag} {corpus}: accuracy")
    check(all(close(a, b) for a, b in zip(js["mean_margin"], st["mean_margin"])), f"{tag} {corpus}: mean margin")
    check(all(close(a, b) for ra, rb in zip(js["agreement"], st["agreement"]) for a, b in zip(ra, rb)),
          f"{tag} {corpus}: agreement matrix")
    check(close(js["fleiss_kappa"], st["fleiss_kappa"]), f"{tag} {corpus}: kappa {js['fleiss_kappa']} vs {st['fleiss_kappa']}")
    return st


def manifest_checksums(work, corpus):
    with open(os.path.join(work, "base", "corpora", corpus, "manifest.json")) as f:
        return [int(s["checksum"], 16) for s in json.load(f)["shards"]]


def check_score_files(work, out, n_members, tag):
    """Exactly one complete score file per corpus x member x shard, with the manifest's checksum."""
    for corpus, _ in CORPORA:
        sums = manifest_checksums(work, corpus)
        for name, _ in MEMBERS[:n_members]:
            d = os.path.join(out, "scores", corpus, name)
            files = sorted(os.listdir(d))
            h5 = [f for f in files if f.endswith(".h5")]
            check(h5 == ["shard-%05d.h5" % k for k in range(len(sums))], f"{tag}: {d} holds {len(h5)} of {len(sums)}")
            check(len(files) == len(h5), f"{tag}: {d} has stray files {set(files) - set(h5)}")
            for k, f in enumerate(h5):
                with h5py.File(os.path.join(d, f), "r") as h:
                    check(int(h.attrs["shard_checksum"]) == sums[k] and h.attrs["member"].decode() == name,
                          f"{tag}: {d}/{f} attrs")


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def mode_ranks(work, pairs):
    caches = {c: {} for c in pairs}
    for N in range(1, 6):
        margin, hf = (0.0, "0.5") if N % 2 else (0.125, "0.6")  # h = ceil(0.6 N): 2 for N=2, 3 for N=4
        first = None
        for R in range(1, 5):
            out = os.path.join(work, f"N{N}R{R}")
            link_corpora(work, out)
            job = write_job(out, os.environ["QUORUM_SHARED_DIR"] + "/data/hh-rlhf", N, margin, float(hf))
            # score_job + vote_job in one mpirun (the CLI path is covered by the other modes)
            rc, log = quorum(R, job, binary="SCORE_VOTE_ONCE")
            check(rc == 0, f"N={N} R={R}: score + vote rc {rc}\n{log}")
            check_score_files(work, out, N, f"N={N} R={R}")
            for corpus in pairs:
                scores = reference_scores(pairs[corpus], N, caches[corpus])
                check_votes(out, corpus, pairs[corpus], scores, margin, hf, f"N={N} R={R}")
            files = {c: file_bytes(os.path.join(out, "votes", c + ".stats.json")) for c in pairs}
            if first is None:
                first = files
            check(files == first, f"N={N} R={R}: stats JSON differs from R=1")
            print(f"N={N} R={R}: ok so far ({fails} failures)", flush=True)
        if N not in (2, 5):
            continue
        # vote with a rank count different from the score run's: same results, same stats bytes
        out = os.path.join(work, f"N{N}R4")
        rc, log = quorum(3, "vote", "--job", out + ".json")
        check(rc == 0, f"N={N}: vote with 3 ranks after score with 4 failed\n{log}")
        for corpus in pairs:
            check_votes(out, corpus, pairs[corpus], reference_scores(pairs[corpus], N, caches[corpus]), margin, hf,
                        f"N={N} vote R=3")
            check(file_bytes(os.path.join(out, "votes", corpus + ".stats.json")) == first[corpus],
                  f"N={N}: stats JSON of a 3-rank vote differs")


def count_h5(out):
    return len(glob.glob(os.path.join(out, "scores", "*", "*", "shard-*.h5")))


def finish_and_check(work, out, job, N, pairs, R, tag):
    rc, log = quorum(R, "score", "--job", job)
    check(rc == 0, f"{tag}: re-run rc {rc}\n{log}")
    rc, log2 = quorum(R, "vote", "--job", job)
    check(rc == 0, f"{tag}: vote rc {rc}\n{log2}")
    check_score_files(work, out, N, tag)  # no temp files left, even the planted one
    for corpus in pairs:
        check_votes(out, corpus, pairs[corpus], reference_scores(pairs[corpus], N, {}), 0.0, "0.5", tag)
    return log


def mode_crash(work, pairs):
    N, R = 3, 4  # ranks > members
    out = os.path.join(work, "crash")
    link_corpora(work, out)
    job = write_job(out, os.environ["QUORUM_SHARED_DIR"] + "/data/hh-rlhf", N, 0.0, 0.5)
    # 100 ms per shard: units are handed out dynamically and the other ranks go on until mpirun notices the
    # kill (about a second on a loaded machine), so the run must be long enough for the kill to land mid-run
    rc, log = quorum(R, "score", "--job", job, env={"QUORUM_TEST_DIE_AFTER_SHARDS": "3", "QUORUM_TEST_SLOW_SHARD_MS": "100"})
    total = N * sum(len(manifest_checksums(work, c)) for c in pairs)
    done = count_h5(out)
    check(rc != 0, f"crash: the killed run exited 0\n{log}")
    check(0 < done < total, f"crash: {done} of {total} score files after the kill")
    # every file that exists is complete (existence = completion), and we remember it to see it skipped
    kept = {}
    for p in glob.glob(os.path.join(out, "scores", "*", "*", "shard-*.h5")):
        with h5py.File(p, "r") as h:
            check(len(h["chosen"]) == len(h["pair_id"]), f"crash: partial file {p}")
        kept[p] = os.stat(p).st_mtime_ns
    # make one finished file stale: the re-run must rescore it
    stale = sorted(kept)[0]
    with h5py.File(stale, "r+") as h:
        h.attrs.modify("shard_checksum", np.uint64(int(h.attrs["shard_checksum"]) ^ 1))
    del kept[stale]
    # a temp file as a rank killed mid-write leaves it: the rescore of that shard removes it
    with open(stale + ".tmp.999999", "wb") as f:
        f.write(b"half a file")
    log = finish_and_check(work, out, job, N, pairs, R, "crash")
    check(f"{len(kept)} shard score files already current" in log, f"crash: re-run did not skip {len(kept)}\n{log}")
    check(all(os.stat(p).st_mtime_ns == t for p, t in kept.items()), "crash: a finished file was rewritten")
    print(f"crash: killed after {done}/{total} files, re-run skipped {len(kept)}, rescored 1 stale", flush=True)


def mode_sigusr1(work, pairs):
    N, R = 2, 2
    out = os.path.join(work, "sigusr1")
    link_corpora(work, out)
    job = write_job(out, os.environ["QUORUM_SHARED_DIR"] + "/data/hh-rlhf", N, 0.0, 0.5)
    p = quorum(R, "score", "--job", job, env={"QUORUM_TEST_SLOW_SHARD_MS": "100"}, popen=True)
    t0 = time.time()
    while count_h5(out) < 4 and time.time() - t0 < 60 and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGUSR1)
    log, _ = p.communicate(timeout=120)
    total = N * sum(len(manifest_checksums(work, c)) for c in pairs)
    done = count_h5(out)
    check(p.returncode == 99, f"sigusr1: exit {p.returncode}, expected 99\n{log}")
    check(0 < done < total, f"sigusr1: {done} of {total} score files at the stop")
    check(not glob.glob(os.path.join(out, "scores", "*", "*", "*.tmp.*")), "sigusr1: temp files left behind")
    log = finish_and_check(work, out, job, N, pairs, R, "sigusr1")
    check(f"{done} shard score files already current" in log, f"sigusr1: re-run did not skip {done}\n{log}")
    print(f"sigusr1: stopped with {done}/{total} files, exit 99; re-run completed", flush=True)


def error_lines(log):
    return [l for l in log.splitlines() if l.startswith("quorum: error")]


def mode_errors(work, pairs):
    """Bad input and broken files: one clear error line (per failing rank), exit 1, no hang."""
    data = os.environ["QUORUM_SHARED_DIR"] + "/data/hh-rlhf"
    out = os.path.join(work, "errors")
    link_corpora(work, out)
    job = write_job(out, data, 2, 0.0, 0.5)
    rc, log = quorum(1, "vote", "--job", job)
    check(rc == 1 and len(error_lines(log)) == 1 and "missing score file" in log, f"errors: vote before score\n{log}")
    rc, log = quorum(1, "score", "--job", job, "--corpus", "nope")
    check(rc == 1 and "--corpus nope" in log, f"errors: unknown --corpus\n{log}")
    # a bad member on rank 1 of 2: both ranks stop together with exit 1
    bad = json.load(open(job))
    bad["committee"][1]["path"] = "builtin:bogus"
    bad_job = os.path.join(work, "errors_bad.json")
    json.dump(bad, open(bad_job, "w"))
    rc, log = quorum(2, "score", "--job", bad_job)
    check(rc == 1 and len(error_lines(log)) == 1 and 'unknown rule "builtin:bogus"' in log, f"errors: bad member\n{log}")
    # an HF member whose folder is missing on rank 1: one clear error naming the folder, not a crash or a hang
    bad["committee"][1]["path"] = "/models/rm0"
    json.dump(bad, open(bad_job, "w"))
    rc, log = quorum(2, "score", "--job", bad_job)
    check(rc == 1 and len(error_lines(log)) == 1 and "/models/rm0" in log, f"errors: HF member\n{log}")
    # a corpus that was never ingested
    bad = json.load(open(job))
    bad["corpora"][0]["name"] = "never"
    json.dump(bad, open(bad_job, "w"))
    rc, log = quorum(2, "score", "--job", bad_job)
    check(rc == 1 and len(error_lines(log)) == 1 and "not ingested" in log, f"errors: corpus not ingested\n{log}")
    # a truncated score file: vote refuses it with one line; score rescores it; vote then matches
    rc, log = quorum(2, "score", "--job", job)
    check(rc == 0, f"errors: score\n{log}")
    victim = os.path.join(out, "scores", "helpful", "h7", "shard-00003.h5")
    data_bytes = file_bytes(victim)
    with open(victim, "wb") as f:
        f.write(data_bytes[: len(data_bytes) // 2])
    rc, log = quorum(1, "vote", "--job", job)
    check(rc == 1 and len(error_lines(log)) == 1 and "shard-00003.h5" in log, f"errors: truncated score file\n{log}")
    # a score file of another shard under this shard's name: wrong pair ids
    shutil.copy(os.path.join(out, "scores", "harmless", "len", "shard-00001.h5"),
                os.path.join(out, "scores", "harmless", "len", "shard-00000.h5"))
    rc, log = quorum(1, "vote", "--job", job)
    check(rc == 1 and len(error_lines(log)) == 1, f"errors: swapped score file\n{log}")
    finish_and_check(work, out, job, 2, pairs, 2, "errors")
    print("errors: ok so far", flush=True)


def main():
    mode, work = sys.argv[1], sys.argv[2]
    data_dir = os.path.join(os.environ.get("QUORUM_SHARED_DIR", ""), "data", "hh-rlhf")
    if not all(os.path.exists(os.path.join(data_dir, f)) for _, f in CORPORA):
        print(f"skip: HH-RLHF test splits not found under {data_dir} (set QUORUM_SHARED_DIR)")
        return 77
    pairs = setup(work, data_dir)
    {"ranks": mode_ranks, "crash": mode_crash, "sigusr1": mode_sigusr1, "errors": mode_errors}[mode](work, pairs)
    print(f"{mode}: {'ok' if not fails else str(fails) + ' failures'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
