#!/usr/bin/env python3
"""An HF reward model as a committee member, end to end: `quorum ingest` + `quorum score` (2 ranks, one
member, so the ranks split the shards) with a tiny random GPT2ForSequenceClassification and the real GPT-2
tokenizer, against an independent reference: GPT-2 byte-level BPE re-implemented here from vocab.json and
merges.txt (exact for ASCII text), the HH rendering (with a leading BOS) and left truncation (which keeps the BOS) re-derived from the transcripts,
and rewards from the torch reference of tests/model. Every comparable pair must agree (rel. err < 1e-4),
and the run must have exercised truncation."""
import gzip, json, os, re, shutil, subprocess, sys, tempfile

quorum, mpiexec, np_flag, shared, srcdir = sys.argv[1:6]
sys.path.insert(0, os.path.join(srcdir, "tests", "model"))
import torch  # noqa: E402
import ref_model as R  # noqa: E402
import h5py  # noqa: E402

hh = os.path.join(shared, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
tokdir = os.path.join(shared, "tokenizers", "gpt2")
if not os.path.exists(hh) or not os.path.exists(os.path.join(tokdir, "merges.txt")):
    print("shared data not found: skipping"); sys.exit(77)

# ---- GPT-2 BPE (independent of quorum's tokenizer) ----
def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))

B2U = bytes_to_unicode()
VOCAB = json.load(open(os.path.join(tokdir, "vocab.json")))
RANKS = {}
for i, line in enumerate(open(os.path.join(tokdir, "merges.txt"), encoding="utf-8").read().split("\n")[1:]):
    if line:
        a, b = line.split(" ")
        RANKS[(a, b)] = i
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")

def bpe(word):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(RANKS.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)]
        rank, _ = min(pairs)
        if rank == 1 << 30:
            break
        a, b = parts[[i for r, i in pairs if r == rank][0]], parts[[i for r, i in pairs if r == rank][0] + 1]
        out, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                out.append(a + b); i += 2
            else:
                out.append(parts[i]); i += 1
        parts = out
    return parts

def encode(text):
    ids = []
    for piece in PAT.findall(text):
        ids += [VOCAB[t] for t in bpe("".join(B2U[b] for b in piece.encode("utf-8")))]
    return ids

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
    BOS = 50256
    def fit(p, r):  # p starts with BOS: it stays, the rest of the prompt is cut from the left
        s = p + r
        if len(s) <= L: return s, 0
        room = L - 1
        return [BOS] + (r[:room] if len(r) >= room else s[-room:]), 1
    MARK = re.compile(r"\n\n(Human|Assistant):")
    passed = failed = compared = truncated = 0
    for line_no, line in enumerate(gzip.open(hh, "rt", encoding="utf-8"), 1):
        if line_no > N_PAIRS: break
        o = json.loads(line)
        ch, rj = o["chosen"], o["rejected"]
        if not (ch.isascii() and rj.isascii()) or line_no not in got: continue
        n = 0
        while n < min(len(ch), len(rj)) and ch[n] == rj[n]: n += 1
        cut = ch.rfind("\n\nAssistant:", 0, n)
        if cut < 0: continue
        prompt = ch[:cut + len("\n\nAssistant:")]
        # comparable when re-rendering the parsed turns gives the transcript back (one space after markers)
        ok = prompt.startswith("\n\nHuman: ") and all(prompt[m.end():m.end() + 1] == " " and prompt[m.end() + 1:m.end() + 2] not in (" ", "")
                                                     for m in MARK.finditer(prompt) if m.end() < len(prompt))
        resp = [ch[len(prompt):], rj[len(prompt):]]
        ok = ok and all(x.startswith(" ") and not x.startswith("  ") for x in resp)
        if not ok: continue
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
