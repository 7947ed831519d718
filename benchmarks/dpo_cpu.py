#!/usr/bin/env python3
"""DPO training throughput on CPU: `quorum dpo` (T^2 attention, flash attention, and --packed) vs a torch reference
doing the same steps, one run.

A random GPT-2 policy (quorum init-model: --layers x --dim, GPT-2 vocab, tied head) trains --steps DPO
steps (sigmoid loss, batch --batch pairs, AdamW, clipping) on the first --pairs HH-RLHF harmless test
pairs. quorum runs first and dumps its tokenized pairs and batch order (QUORUM_TEST_DUMP_PAIRS); torch
then runs the same steps on exactly those batches: tests/model/ref_model.py's GPT-2 in float32 (padded
(2B, T) batches, log-probs over the response tokens, reference log-probs from quorum's cache),
torch.optim.AdamW, clip_grad_norm_. Both use --threads threads. Tokens/s = tokens of the step's
sequences / step wall time, the median over steps 2.. (step 1 includes warm-up). quorum runs four times on the
same data: QUORUM_ATTENTION=t2 (the (L,B,NH,T,T) probabilities saved for backward), the default flash attention
(logsumexp saved, attention_varlen_backward), --packed (each pair's prompt computed once) and --recompute (each
layer rerun in backward from its saved input); each run's peak RSS
is measured in a process of its own. Tokens/s counts the unpacked tokens in all three, so packing shows as a rate.

  benchmarks/dpo_cpu.py [--build build] [--shared ../shared] [--pairs 48] [--steps 4] [--batch 8]
                        [--layers 4] [--dim 256] [--max-len 192] [--threads 1]
Prints the rates, ratios and peak RSS, and the per-step losses (they must agree: same math).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model"))
import ref_model  # noqa: E402


def sh(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if p.returncode:
        sys.exit(f"dpo_cpu.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return p


def peak_rss_run(cmd, env):
    """runs cmd in a fresh python (so RUSAGE_CHILDREN is that one child's) and returns its peak RSS in MiB"""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(p.stdout[-2000:] + p.stderr[-2000:]) if p.returncode else None; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    p = sh([sys.executable, "-c", probe] + cmd, env=env)
    return int(p.stdout.split()[-1]) / 1024.0


def torch_steps(cfg, W0, pairs, order, a):
    params = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in W0.items()}
    decay = [p for p in params.values() if p.dim() > 1]
    no_decay = [p for p in params.values() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    ref = torch.tensor([p["ref"] for p in pairs], dtype=torch.float32)  # (n, 2): quorum's cached reference
    rates, losses = [], []
    B = a.batch
    for step in range(a.steps):
        idx = order[step * B:(step + 1) * B]
        ids, lens, mask = ref_model.dpo_batch(pairs, idx)
        t0 = time.perf_counter()
        o, _ = ref_model.forward(cfg, params, ids, lens, mask)
        z = (o[:B] - o[B:]) - (ref[idx, 0] - ref[idx, 1])
        loss = -torch.nn.functional.logsigmoid(a.beta * z).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        rates.append(float(lens.sum()) / (time.perf_counter() - t0))
        losses.append(loss.item())
    return rates, losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    a = ap.parse_args()
    quorum = os.path.join(a.build, "quorum")
    tool = quorum  # init-model and dpo are quorum subcommands
    hh = os.path.join(a.shared, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
    tok = os.path.join(a.shared, "tokenizers", "gpt2")
    for f in (quorum, hh, os.path.join(tok, "tokenizer.json")):
        if not os.path.exists(f):
            sys.exit(f"dpo_cpu.py: missing {f} (build first; --shared names the shared folder)")
    torch.set_num_threads(a.threads)
    env = {"OPENBLAS_NUM_THREADS": str(a.threads), "QUORUM_BLAS_THREADS": str(a.threads),
           "OMP_NUM_THREADS": str(a.threads)}
    with tempfile.TemporaryDirectory() as work:
        sh([quorum, "ingest", "--out", work, "--name", "hh", "--format", "hh", "--max-pairs", str(a.pairs), hh])
        pol = os.path.join(work, "policy")
        sh([tool, "init-model", "--arch", "gpt2", "--layers", str(a.layers), "--dim", str(a.dim), "--heads",
            str(max(1, a.dim // 64)), "--max-pos", str(max(a.max_len, 64)), "--tokenizer", tok, "--head", "lm",
            "--seed", "3", "--out", pol])
        dump = os.path.join(work, "pairs.json")
        runs = {}  # name -> (metrics, peak RSS MiB)
        for name, extra, attn in (("t2", [], "t2"), ("flash", [], "flash"), ("packed", ["--packed"], "flash"),
                                  ("recompute", ["--recompute"], "flash")):
            out = os.path.join(work, "dpo_" + name)
            rss = peak_rss_run([tool, "dpo", "--policy", pol, "--corpus-dir", os.path.join(work, "corpora", "hh"),
                                "--out", out, "--steps", str(a.steps), "--batch-size", str(a.batch), "--lr", str(a.lr),
                                "--beta", str(a.beta), "--max-length", str(a.max_len), "--max-prompt-length",
                                str(a.max_len // 2), "--checkpoint-every", "0", "--quiet", *extra],
                               env=dict(env, QUORUM_TEST_DUMP_PAIRS=dump, QUORUM_ATTENTION=attn))
            runs[name] = ([json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))], rss)
        met = runs["flash"][0]
        data = json.load(open(dump))
        cfg, W0 = ref_model.load_dir(pol)
        t_rates, t_losses = torch_steps(cfg, W0, data["pairs"], data["order"], a)
    median = lambda xs: statistics.median(xs[1:]) if len(xs) > 1 else xs[0]
    t_rate = median(t_rates)
    print(f"DPO GPT-2 {a.layers}x{a.dim} (vocab 50257), batch {a.batch} pairs, max_len {a.max_len}, "
          f"{a.threads} thread(s), {a.steps} steps")
    agree = True
    for name, label in (("t2", "quorum T^2 attention"), ("flash", "quorum flash attention"),
                        ("packed", "quorum --packed (flash)"), ("recompute", "quorum --recompute (flash)")):
        m, rss = runs[name]
        rate = median([x["tokens_per_s"] for x in m])
        print(f"  {label:26s} {rate:8.1f} tokens/s  {rate / t_rate:5.2f}x torch  peak RSS {rss:7.1f} MiB")
        ok = np.allclose([x["loss"] for x in m], t_losses, rtol=1e-3, atol=1e-4)
        losses = " ".join(f"{x['loss']:.5f}" for x in m)
        print(f"    losses {losses} ({'agree' if ok else 'DISAGREE'} with torch)")
        agree &= ok
    print(f"  {'torch reference':26s} {t_rate:8.1f} tokens/s")
    print(f"    losses {' '.join(f'{x:.5f}' for x in t_losses)}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
