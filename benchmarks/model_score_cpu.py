#!/usr/bin/env python3
"""Reward-model scoring throughput on CPU: quorum's C engine vs the torch reference, same inputs, one run.

A GPT-2-small-sized reward model (GPT2ForSequenceClassification, 12 layers, 768 wide, 12 heads, vocab
50257, random weights) scores the chosen and rejected texts of the first --pairs HH-RLHF helpful-base
test pairs, GPT-2 BPE-tokenized (tokenizers/gpt2 of the shared folder), truncated to --max-len tokens,
sorted by length and cut into batches of --batch sequences (the padded runs). Every --threads value (e.g. "1,2")
runs, side by side in one invocation:
  torch          the fp32 reference on the padded batches
  quorum padded  model_reward per padded batch (flash attention: inference load)
  quorum packed  model_reward_packed, pairs in order, --budget tokens per forward, no padding
  quorum shared  as packed, each pair's longest common token prefix (its prompt) run once
  benchmarks/model_score_cpu.py [--build build] [--shared ../shared] [--pairs 32] [--batch 8] [--budget 2048]
                                [--max-len 256] [--threads 1,2] [--layers 12] [--out benchmarks/model_score_cpu.md]
--layers below 12 gives a shallower model of the same width (benchmarks/run --quick uses 2).
Prints pairs/s, tokens/s, GEMM GFLOP/s vs this process's sgemm rate and the max reward difference to torch
per engine; appends one row per (threads, engine) to --out.
"""
import argparse
import gzip
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model"))
import ref_model  # noqa: E402

# ---- a small GPT-2 byte-level BPE (the `regex` module is not available: \p{L} -> [^\W\d_], \p{N} -> \d)
PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def byte_table():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Bpe:
    def __init__(self, path):
        tok = json.load(open(path))
        self.vocab = tok["model"]["vocab"]
        merges = tok["model"]["merges"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
        self.rank = {m: i for i, m in enumerate(merges)}
        self.bytes = byte_table()
        self.cache = {}

    def word(self, w):
        if w in self.cache:
            return self.cache[w]
        parts = list(w)
        while len(parts) > 1:
            pairs = [(self.rank.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        out = []
        for piece in PRETOK.findall(text):
            out += self.word("".join(self.bytes[b] for b in piece.encode("utf-8")))
        return out


def make_model(d, seed=0, layers=12):
    cfg = {"architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2", "vocab_size": 50257,
           "n_embd": 768, "n_layer": layers, "n_head": 12, "n_positions": 1024, "activation_function": "gelu_new",
           "layer_norm_epsilon": 1e-5, "pad_token_id": 50256, "id2label": {"0": "LABEL_0"}}
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape in ref_model.param_shapes(cfg):  # GPT-2-like init: N(0, 0.02), norms at 1
        if "ln_" in name:
            w[name] = (np.ones(shape) if name.endswith("weight") else np.zeros(shape)).astype(np.float32)
        else:
            w[name] = (0.02 * torch.randn(shape, generator=g)).numpy()
    ref_model.write_checkpoint(d, cfg, w, "F32", {})


def make_batches(path, shared, pairs, batch, max_len):
    bpe = Bpe(os.path.join(shared, "tokenizers", "gpt2", "tokenizer.json"))
    seqs = []
    with gzip.open(os.path.join(shared, "data", "hh-rlhf", "helpful-base-test.jsonl.gz"), "rt") as f:
        for i, line in enumerate(f):
            if i == pairs:
                break
            rec = json.loads(line)
            for k in ("chosen", "rejected"):
                seqs.append(bpe.encode(rec[k])[:max_len])
    n, T = len(seqs), max(len(s) for s in seqs)
    all_ids = np.zeros((n, T), dtype=np.float32)  # pair order, for the packed / shared runs
    for b, s in enumerate(seqs):
        all_ids[b, :len(s)] = s
    tensors = [("all_ids", all_ids), ("all_lens", np.array([len(s) for s in seqs], np.float32))]
    order = sorted(range(n), key=lambda i: len(seqs[i]))  # sort-by-length keeps padding small
    seqs = [seqs[i] for i in order]
    for i in range(0, len(seqs), batch):
        chunk = seqs[i:i + batch]
        T = max(len(s) for s in chunk)
        ids = np.zeros((len(chunk), T), dtype=np.float32)
        for b, s in enumerate(chunk):
            ids[b, :len(s)] = s
        tensors += [(f"ids.{i // batch}", ids), (f"lens.{i // batch}", np.array([len(s) for s in chunk], np.float32))]
    ref_model.st_write(path, tensors)
    return len(seqs), sum(len(s) for s in seqs), np.array(order)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--out", default=os.path.join(HERE, "model_score_cpu.md"))
    a = ap.parse_args()
    exe = os.path.join(a.build, "tests", "model", "bench_model_score")
    if not os.path.exists(exe):
        sys.exit(f"{exe} missing: build first (cmake --build {a.build})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="quorum_bench_") as tmp:
        mdir, bfile = os.path.join(tmp, "rm"), os.path.join(tmp, "batches.safetensors")
        t0 = time.time()
        make_model(mdir, layers=a.layers)
        n_seq, n_tok, order = make_batches(bfile, a.shared, a.pairs, a.batch, a.max_len)
        print(f"setup {time.time() - t0:.1f}s: {a.layers} layers, {n_seq} sequences, {n_tok} tokens", flush=True)
        for threads in [int(x) for x in str(a.threads).split(",")]:
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                       QUORUM_BENCH_THREADS=str(threads), QUORUM_BLAS_THREADS=str(threads))
            t = json.loads(subprocess.run([sys.executable, os.path.join(HERE, "..", "tests", "model", "ref_model.py"),
                                           "bench", mdir, bfile], env=env, check=True, capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1])
            rt = np.empty(n_seq, np.float32)
            rt[order] = np.load(bfile + ".torch_rewards.npy")  # back to pair order
            runs = [("torch reference (fp32)", t, rt)]
            for name, extra in (("quorum padded", []), ("quorum packed", ["packed", str(a.budget), "0"]),
                                ("quorum packed+shared", ["packed", str(a.budget), "1"])):
                c = json.loads(subprocess.run([exe, mdir, bfile, bfile + ".c.f32"] + extra, env=env, check=True,
                                              capture_output=True, text=True).stdout)
                rc = np.fromfile(bfile + ".c.f32", dtype=np.float32)
                if not extra:  # padded batches come back in length order
                    back = np.empty_like(rc)
                    back[order] = rc
                    rc = back
                runs.append((name, c, rc))
            for name, r, rew in runs:
                diff = float(np.max(np.abs(rew - rt)) / max(1e-6, float(np.max(np.abs(rt)))))
                gemm = r.get("matmul_gflop", 0) / r["seconds"]
                rows.append((threads, name, r["sequences"] / 2 / r["seconds"], r["tokens"] / r["seconds"], r["seconds"],
                             r["tokens"] / r["cpu_seconds"], gemm, r.get("sgemm_gflops", 0), r.get("shared_tokens", 0),
                             r.get("padded_tokens", r["tokens"]), diff, t["sequences"] / 2 / t["seconds"]))
    print(f"{'thr':>3s} {'engine':22s} {'pairs/s':>8s} {'tokens/s':>9s} {'seconds':>8s} {'tok/cpu-s':>9s} "
          f"{'GEMM GF/s':>9s} {'sgemm GF/s':>10s} {'run tok':>8s} {'shared':>7s} {'vs torch':>8s} {'rel diff':>8s}")
    for th, name, ps, ts, s, tc, g, sg, sh, run, diff, tps in rows:
        print(f"{th:3d} {name:22s} {ps:8.2f} {ts:9.1f} {s:8.2f} {tc:9.1f} {g:9.1f} {sg:10.1f} {run:8d} {sh:7d} "
              f"{ps / tps:7.2f}x {diff:8.1e}")
    new = not os.path.exists(a.out)
    with open(a.out, "a") as f:
        if new:
            f.write("# Reward-model scoring on CPU (benchmarks/model_score_cpu.py)\n\nGPT-2-small-sized RM, random "
                    "weights, HH-RLHF helpful-base test texts.\n\n")
        f.write(f"\n{time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}, load avg {os.getloadavg()[0]:.1f}: "
                f"{a.pairs} pairs, batch {a.batch}, max len {a.max_len}, budget {a.budget}, {a.layers} layers\n\n"
                "| threads | engine | pairs/s | tokens/s | tokens/cpu-s | GEMM GFLOP/s | sgemm GFLOP/s | tokens run | "
                "tokens shared | pairs/s vs torch | max rel reward diff |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
        for th, name, ps, ts, s, tc, g, sg, sh, run, diff, tps in rows:
            f.write(f"| {th} | {name} | {ps:.2f} | {ts:.1f} | {tc:.1f} | {g:.1f} | {sg:.1f} | {run} | {sh} | "
                    f"{ps / tps:.2f}x | {diff:.1e} |\n")


if __name__ == "__main__":
    main()
