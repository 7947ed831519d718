#!/usr/bin/env python3
"""The causal-LM member kinds (quorum/score.h) end to end on real HH pairs: `quorum ingest` + `score` +
`vote` on RANKS ranks with tiny random GPT-2 causal LMs and the real GPT-2 tokenizer, against an
independent torch reference (tests/model/ref_model.py's GPT-2 trunk, the log-softmax written here):
  lm        IFD = exp(mean log p(y | BOS) - mean log p(y | x)) per response, TRL truncation at max_length
  implicit  log pi(y|x) - log pi_ref(y|x) with two different random LMs
  judge     expected rating sum_k k softmax_k(log P("k" | judging prompt)) with a template file
Every comparable response must agree (rel. err < 1e-4 for lm/implicit, 1e-4 absolute for the judge's
rating in [1, 10]); the votes file must carry the kinds, and agree must count the reward member alone.

usage: test_member_kinds.py QUORUM MPIEXEC SHARED_DIR SRC_DIR RANKS"""
import json, math, os, shutil, subprocess, sys, tempfile

quorum, mpiexec, shared, srcdir, ranks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
sys.path.insert(0, os.path.join(srcdir, "tests", "model"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import ref_model as R  # noqa: E402
import h5py  # noqa: E402
from hh_gpt2 import BOS, Gpt2Bpe, hh_comparable, shared_fixture  # noqa: E402

hh, tokdir = shared_fixture(shared)
BPE = Gpt2Bpe(tokdir)

L, L_JUDGE, BATCH, N_PAIRS = 96, 160, 6, 90
TEMPLATE = "Dialogue:\n{prompt}\n\nLast reply: {response}\n\nScore the last reply from 1 to 10:"
cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_embd": 32,
       "n_layer": 2, "n_head": 4, "n_positions": 256, "layer_norm_epsilon": 1e-5}


def make_lm(d, seed):
    R.write_checkpoint(d, cfg, R.random_weights(cfg, torch.Generator().manual_seed(seed)), "F32", {})
    shutil.copy(os.path.join(tokdir, "tokenizer.json"), d)
    json.dump({"model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>",
               "add_bos_token": True}, open(os.path.join(d, "tokenizer_config.json"), "w"))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in R.load_dir(d)[1].items()}


def token_logps(W, ids):
    """log p(ids[t] | ids[<t]) for t >= 1 (index 0: 0), float64."""
    t = torch.tensor([ids])
    h = R.gpt2_trunk(cfg, W, t, torch.tensor([len(ids)]))[0]
    logp = torch.log_softmax(h[:-1] @ W["transformer.wte.weight"].T, -1)
    return [0.0] + logp.gather(-1, t[0, 1:, None])[:, 0].tolist()


def truncate(np_, nc, nr, max_length, max_prompt):
    """TRL classic (quorum/train.h pair_truncate): -> prompt start, np, nc, nr."""
    start = 0
    if np_ + max(nc, nr) > max_length and np_ > max_prompt:
        start, np_ = np_ - max_prompt, max_prompt
    if np_ + max(nc, nr) > max_length:
        keep = max(1, max_length - max_prompt)
        nc, nr = min(nc, keep), min(nr, keep)
    return start, np_, nc, nr


def fill(template, prompt, response):
    out, i = [], 0
    while i < len(template):
        if template.startswith("{prompt}", i): out.append(prompt); i += 8
        elif template.startswith("{response}", i): out.append(response); i += 10
        else: out.append(template[i]); i += 1
    return "".join(out)


def main():
    work = tempfile.mkdtemp(prefix="quorum_kinds_")
    try:
        W = make_lm(os.path.join(work, "lm"), 7)
        Wref = make_lm(os.path.join(work, "ref"), 8)
        open(os.path.join(work, "judge.txt"), "w").write(TEMPLATE)
        job = {"name": "kinds", "out_dir": os.path.join(work, "out"), "shard_size": 7,
               "corpora": [{"name": "harmless", "path": hh, "format": "hh", "max_pairs": N_PAIRS}],
               "committee": [{"name": "len", "path": "builtin:len"},
                             {"name": "ifd", "path": "lm", "kind": "lm", "max_length": L, "batch_size": BATCH},
                             {"name": "dpo", "path": "lm", "ref": "ref", "kind": "implicit", "max_length": L,
                              "batch_size": BATCH},
                             {"name": "judge", "path": "lm", "kind": "judge", "prompt_template": "judge.txt",
                              "max_length": L_JUDGE, "batch_size": 4}]}
        jpath = os.path.join(work, "job.json")
        json.dump(job, open(jpath, "w"))
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", QUORUM_BACKEND="cpu")
        for cmd in ("ingest", "score", "vote"):
            run = [mpiexec, "-n", str(ranks), "--oversubscribe", quorum] if ranks > 1 else [quorum]
            r = subprocess.run(run + [cmd, "--job", jpath], env=env, capture_output=True, text=True)
            if r.returncode:
                sys.stderr.write(r.stderr); print("FAIL: quorum", cmd, "exit", r.returncode); return 1
        got = {}
        for m in ("len", "ifd", "dpo", "judge"):
            sdir = os.path.join(work, "out", "scores", "harmless", m)
            for f in sorted(os.listdir(sdir)):
                with h5py.File(os.path.join(sdir, f), "r") as h:
                    for pid, c, rj in zip(h["pair_id"][()], h["chosen"][()], h["rejected"][()]):
                        got[(m, int(pid))] = (float(c), float(rj))
        failed, counts = [], {"ifd": 0, "dpo": 0, "judge": 0, "truncated": 0}

        def expect(member, line_no, k, want, have, tol):
            counts[member] += 1
            if not abs(have - want) <= tol * (1.0 if member == "judge" else max(1.0, abs(want))):
                failed.append(f"{member} line {line_no} {'rejected' if k else 'chosen'}: quorum {have:.7g} torch {want:.7g}")

        pairs = hh_comparable(hh, N_PAIRS)
        for line_no, prompt, resp in pairs:
            if ("ifd", line_no) not in got: continue
            p_ids = [BOS] + BPE.encode(prompt)
            r_ids = [BPE.encode(x) for x in resp]
            start, np_, nc, nr = truncate(len(p_ids), len(r_ids[0]), len(r_ids[1]), L, L // 2)
            counts["truncated"] += (np_, nc, nr) != (len(p_ids), len(r_ids[0]), len(r_ids[1]))
            for k, n_resp in ((0, nc), (1, nr)):
                seq = p_ids[start:start + np_] + r_ids[k][:n_resp]
                cond = token_logps(W, seq)[np_:]
                alone = token_logps(W, [BOS] + r_ids[k][:n_resp])[1:]
                ifd = math.exp(sum(alone) / len(alone) - sum(cond) / len(cond))
                expect("ifd", line_no, k, ifd, got[("ifd", line_no)][k], 1e-4)
                implicit = sum(cond) - sum(token_logps(Wref, seq)[np_:])
                expect("dpo", line_no, k, implicit, got[("dpo", line_no)][k], 1e-4)
            dialogue = prompt[2:-len("\n\nAssistant:")]
            for k in (0, 1):
                text = fill(TEMPLATE, dialogue, resp[k][1:])
                j_ids = [BOS] + BPE.encode("\n\nHuman: " + text + "\n\nAssistant:")
                lp = []
                for a in range(1, 11, 2):
                    ans = [BPE.encode(" " + str(a)), BPE.encode(" " + str(a + 1))]
                    s, n_p, na, nb = truncate(len(j_ids), len(ans[0]), len(ans[1]), L_JUDGE, L_JUDGE - 8)
                    for x, n_x in ((ans[0], na), (ans[1], nb)):
                        lp.append(sum(token_logps(W, j_ids[s:s + n_p] + x[:n_x])[n_p:]))
                mx = max(lp)
                w = [math.exp(v - mx) for v in lp]
                rating = sum((i + 1) * wi for i, wi in enumerate(w)) / sum(w)
                expect("judge", line_no, k, rating, got[("judge", line_no)][k], 1e-4)
        with h5py.File(os.path.join(work, "out", "votes", "harmless.h5"), "r") as v:
            kinds = v.attrs["kinds"].decode()
            if kinds != "reward,lm,implicit,judge": failed.append(f"votes kinds attribute {kinds!r}")
            ch, rj = v["chosen"][()], v["rejected"][()]
            want_agree = (ch[0] - rj[0] > 0).astype(int)
            if (v["agree"][()] != want_agree).any(): failed.append("agree does not count the reward member alone")
        # bad members: one line naming the file and what is accepted, exit 1, nothing scored
        bad = [({"name": "l", "path": "lm", "kind": "lm", "max_length": 300}, "n_positions 256 is less than"),
               ({"name": "d", "path": "lm", "kind": "implicit", "ref": "nope"}, "nope: member \"d\": no readable config.json"),
               ({"name": "j", "path": "lm", "kind": "judge", "max_length": 64, "prompt_template": "lm/config.json"},
                "{response} placeholder")]
        for member, want in bad:
            job["committee"], job["out_dir"] = [member], os.path.join(work, "bad-" + member["name"])
            json.dump(job, open(jpath, "w"))
            r = subprocess.run([quorum, "ingest", "--job", jpath], env=env, capture_output=True, text=True)
            r = subprocess.run([quorum, "score", "--job", jpath], env=env, capture_output=True, text=True)
            errs = [x for x in r.stderr.splitlines() if "error:" in x]
            if r.returncode != 1 or len(errs) != 1 or want not in errs[0]:
                failed.append(f"bad member {member}: exit {r.returncode}, errors {errs}")
        if min(counts["ifd"], counts["judge"]) < 12: failed.append(f"too few comparable responses: {counts}")
        if counts["truncated"] == 0: failed.append("the fixture did not exercise truncation")
        for f in failed[:20]: print("FAIL:", f)
        print(f"np{ranks}: compared {counts} responses; {len(failed)} failed")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
