"""dpo_backends.py - `quorum dpo` on the CUDA backend tracks the CPU backend: the same tiny GPT-2 policy, HH
pairs and options, 10 steps (grad_accum 2), once with QUORUM_BACKEND=cpu and once on the GPU (1 rank, then
2 ranks with ZeRO-1: the host-staged all-gather and cuda_allreduce_sum), and LoRA (r 8, lora_dropout 0.1: the
adapters' axpy_cols / dropout_forward kernels; the counter-based masks are the same on both backends, so each
LoRA run is compared with a CPU run on as many ranks). Per-step losses and grad norms
within fp32 tolerance, exported weights close, and the log names the backend that trained. Exits 77
(skipped) without a visible GPU.
usage: dpo_backends.py QUORUM PROBE MPIEXEC NPFLAG SHARED_DIR WORKDIR"""
import json, os, shutil, subprocess, sys
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import ref_model  # noqa: E402

QUORUM, PROBE, MPIEXEC, NP, SHARED, WORK = sys.argv[1:7]
if subprocess.run([PROBE, "--probe"]).returncode != 0:
    print("skipping: no visible GPU")
    sys.exit(77)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, sh, shared_hh_gpt2, verbose  # noqa: E402
verbose()
HH, TOK = shared_hh_gpt2(SHARED)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
sh(QUORUM, "ingest", "--out", WORK, "--name", "hh", "--format", "hh", "--max-pairs", "32", HH)
pol = os.path.join(WORK, "policy")
sh(QUORUM, "init-model", "--arch", "gpt2", "--layers", "2", "--dim", "64", "--heads", "4", "--max-pos", "128",
   "--tokenizer", TOK, "--head", "lm", "--seed", "4", "--out", pol)


def dpo(name, backend, ranks, extra=()):
    out = os.path.join(WORK, name)
    p = sh(MPIEXEC, NP, str(ranks), "--oversubscribe", QUORUM, "dpo", "--policy", pol, "--corpus-dir",
           os.path.join(WORK, "corpora", "hh"), "--out", out, "--steps", "10", "--batch-size", "8", "--grad-accum", "2",
           "--lr", "2e-3", "--weight-decay", "0.01", "--warmup-steps", "2", "--schedule", "cosine", "--max-length", "96",
           "--max-prompt-length", "48", "--checkpoint-every", "4", "--quiet", *extra, env={"QUORUM_BACKEND": backend})
    check(f"on the {backend} backend" in p.stdout + p.stderr, f"{name}: the log names the {backend} backend")
    met = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    return met, ref_model.load_dir(os.path.join(out, "final"))[1]


def compare(name, m, w, cpu_m, cpu_w):
    for key in ("loss", "grad_norm", "rewards/margins"):
        a, b = [x[key] for x in m], [x[key] for x in cpu_m]
        ok = len(a) == 10 and np.allclose(a, b, rtol=2e-3, atol=1e-5)
        check(ok, f"{name}: per-step {key} vs the CPU run (max diff {np.max(np.abs(np.subtract(a, b))):.3g})")
    d = max(float(np.max(np.abs(w[k] - cpu_w[k]))) for k in cpu_w)
    check(d < 1e-3, f"{name}: exported weights vs the CPU run (max diff {d:.3g})")


cpu_m, cpu_w = dpo("cpu", "cpu", 1)
for name, ranks, extra in (("cuda", 1, ()), ("cuda2z", 2, ("--zero1",))):
    compare(name, *dpo(name, "cuda", ranks, extra), cpu_m, cpu_w)
LORA = ("--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.1", "--lora-targets", "c_attn,c_proj,c_fc")
for name, ranks, extra in (("cuda_lora", 1, LORA), ("cuda2z_lora", 2, LORA + ("--zero1",))):
    compare(name, *dpo(name, "cuda", ranks, extra), *dpo(name + "_cpu", "cpu", ranks, extra))
finish()
