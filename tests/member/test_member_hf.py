#!/usr/bin/env python3
"""An HF reward model as a committee member, end to end: `quorum ingest` + `quorum score` (2 ranks, one
member, so the ranks split the shards) with a tiny random GPT2ForSequenceClassification and the real GPT-2
tokenizer, against an independent reference: GPT-2 byte-level BPE re-implemented here from vocab.json and
merges.txt (exact for ASCII text), the HH rendering (with a leading BOS) and left truncation (which keeps the BOS) re-derived from the transcripts,
and rewards from the torch reference of tests/model. Every comparable pair must agree (rel. err < 1e-4),
and the run must have exercised truncation."""
import json, os, shutil, subprocess, sys, tempfile

quorum, mpiexec, np_flag, shared, srcdir = sys.argv[1:6]
sys.path.insert(0, os.path.join(srcdir, "tests", "model"))
import torch  # noqa: E402
import ref_model as R  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hh_gpt2 import BOS, Gpt2Bpe, hh_comparable, shared_fixture  # noqa: E402
import h5py  # noqa: E402

hh, tokdir = shared_fixture(shared)

BPE = Gpt2Bpe(tokdir)
encode = BPE.encode

# ---- fixture: a tiny random GPT-2 reward model with the real GPT-2 tokenizer ----
L, BATCH, N_PAIRS = 96, 5, 160
cfg = {"architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2", "vocab_size": 50257,
       "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128, "layer_norm_epsilon": 1e-5,
       "num_labels": 1, "pad_token_id": 50256}
work = tempfile.mkdtemp(prefix="quorum_member_")
try:
    mdir = os.path.join(work, "rm")
    W = R.random_weights(cfg, torch.Generator().manual_seed(7))
    R.write_checkpoint(mdir, cfg, W, "F32", {})
    shutil.copy(os.path.join(tokdir, "tokenizer.json"), mdir)
    # add_bos_token: the HH rendering starts with <|endoftext|>, which truncation must keep
    json.dump({"model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
               "add_bos_token": True}, open(os.path.join(mdir, "tokenizer_config.json"), "w"))
    job = {"name": "member", "out_dir": os.path.join(work, "out"), "shard_size": 16,
           "corpora": [{"name": "harmless", "path": hh, "format": "hh", "max_pairs": N_PAIRS}],
           "committee": [{"name": "rm", "path": mdir, "max_length": L, "batch_size": BATCH}]}
    jpath = os.path.join(work, "job.json")
    json.dump(job, open(jpath, "w"))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", QUORUM_BACKEND="cpu")
    for cmd in ("ingest", "score"):
        r = subprocess.run([mpiexec, np_flag, "2", "--oversubscribe", quorum, cmd, "--job", jpath], env=env,
                           capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        if r.returncode:
            print("FAIL: quorum", cmd, "exit", r.returncode); print("0 passed, 1 failed"); sys.exit(1)
    got = {}
    sdir = os.path.join(work, "out", "scores", "harmless", "rm")
    for f in sorted(os.listdir(sdir)):
        with h5py.File(os.path.join(sdir, f), "r") as h:
            for pid, c, rj in zip(h["pair_id"][()], h["chosen"][()], h["rejected"][()]):
                got[int(pid)] = (float(c), float(rj))

    # ---- reference ----
    Wt = {k: torch.tensor(v, dtype=torch.float64) for k, v in R.load_dir(mdir)[1].items()}
    def reward(ids):
        t = torch.tensor([ids]); lens = torch.tensor([len(ids)])
        out, _ = R.forward(cfg, Wt, t, lens, torch.ones_like(t, dtype=torch.uint8))
        return float(out[0])
    def fit(p, r):  # p starts with BOS: it stays, the rest of the prompt is cut from the left
        s = p + r
        if len(s) <= L: return s, 0
        room = L - 1
        return [BOS] + (r[:room] if len(r) >= room else s[-room:]), 1
    passed = failed = compared = truncated = 0
    for line_no, prompt, resp in hh_comparable(hh, N_PAIRS):
        if line_no not in got: continue
        p_ids = [BOS] + encode(prompt)
        for k in (0, 1):
            seq, t = fit(p_ids, encode(resp[k]))
            truncated += t
            want, have = reward(seq), got[line_no][k]
            compared += 1
            if abs(have - want) <= 1e-4 * max(1.0, abs(want)): passed += 1
            else:
                failed += 1; print(f"FAIL line {line_no} {'rejected' if k else 'chosen'}: quorum {have:.6f} torch {want:.6f}")
    if compared < 40: failed += 1; print("FAIL: too few comparable pairs:", compared)
    if truncated == 0: failed += 1; print("FAIL: the fixture did not exercise truncation")
    if len(got) < N_PAIRS - 5: failed += 1; print("FAIL: scored pairs", len(got))
    print(f"compared {compared} sequences ({truncated} truncated)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
finally:
    shutil.rmtree(work, ignore_errors=True)
