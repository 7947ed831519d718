"""tests/support.py - what every Python test shares: one check() that counts, one finish() that exits,
the seeded RNG, the MPI environment and the skip convention.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from support import check, finish
    ...
    check(got == want, f"pair {i}: {got} != {want}")   # keeps going, counts, prints "FAIL: ..." to stderr
    finish()                                          # "N passed, M failed"; exit 1 on any failure
"""
import os
import subprocess
import sys

import numpy as np

FAILS = []      # the messages of failed checks, in order
PASSES = [0]    # a list so `from support import PASSES` sees the count move
VERBOSE = [False]


def check(ok, what, limit=50):
    """Counts one check; a failure prints "FAIL: what" (the first `limit` of them). Returns bool(ok)."""
    if ok:
        PASSES[0] += 1
        if VERBOSE[0]:
            print("ok:", what, flush=True)
    else:
        FAILS.append(what)
        if len(FAILS) <= limit:
            print("FAIL:", what, file=sys.stderr, flush=True)
    return bool(ok)


def verbose(on=True):
    """Also print "ok: what" for every passing check (the long end-to-end tests log their steps)."""
    VERBOSE[0] = on


def n_failed():
    return len(FAILS)


def finish():
    """Prints "N passed, M failed" and exits: 1 on any failure, else 0."""
    print(f"{PASSES[0]} passed, {len(FAILS)} failed", flush=True)
    sys.exit(1 if FAILS else 0)


def skip(why):
    """The ctest skip convention (SKIP_RETURN_CODE 77): one line saying why, exit 77."""
    print("skip:", why, flush=True)
    sys.exit(77)


def shared_hh_gpt2(shared):
    """(HH harmless test split, GPT-2 tokenizer folder) under the shared folder; skips the test (exit 77)
    with one line when either is missing."""
    hh = os.path.join(shared, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
    tok = os.path.join(shared, "tokenizers", "gpt2")
    if not os.path.exists(hh) or not os.path.exists(os.path.join(tok, "tokenizer.json")):
        skip(f"shared data not found under {shared}")
    return hh, tok


def rng(seed):
    """The one RNG of the Python tests: numpy's PCG64, seeded, so every failure reproduces."""
    return np.random.default_rng(seed)


def sh(*cmd, env=None):
    """Runs cmd with its output captured (env: extra variables); on failure prints the last 3000
    characters of stdout and stderr and exits naming the command. Returns the CompletedProcess."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if p.returncode:
        print(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"command failed ({p.returncode}): {' '.join(str(c) for c in cmd)}")
    return p


def mpi_env(**extra):
    """os.environ plus what mpirun needs as root (and any extra variables)."""
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **extra)


def tiny_gpt2_dpo_setup(quorum, init_tool, shared, work, max_pairs=24, dim=32, heads=2, max_pos=64, seed=5):
    """The DPO tests' start: an empty `work` folder, max_pairs HH-RLHF pairs ingested by quorum into
    work/corpora/hh, and a random 2-layer GPT-2 LM from `init_tool init-model` in work/policy. Skips (77) without
    the shared data. -> (corpus_dir, policy_dir, tokenizer_dir)"""
    import shutil
    hh, tok = shared_hh_gpt2(shared)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sh(quorum, "ingest", "--out", work, "--name", "hh", "--format", "hh", "--max-pairs", str(max_pairs), hh)
    pol = os.path.join(work, "policy")
    sh(init_tool, "init-model", "--arch", "gpt2", "--layers", "2", "--dim", str(dim), "--heads", str(heads),
       "--max-pos", str(max_pos), "--tokenizer", tok, "--head", "lm", "--seed", str(seed), "--out", pol)
    return os.path.join(work, "corpora", "hh"), pol, tok
