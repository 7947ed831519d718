"""dpo_backends.py - `quorum dpo` on the CUDA backend tracks the CPU backend: the same tiny GPT-2 policy, HH
pairs and options, 10 steps (grad_accum 2), once with QUORUM_BACKEND=cpu and once on the GPU (1 rank, then
2 ranks with ZeRO-1: the host-staged all-gather and cuda_allreduce_sum), and LoRA (r 8, lora_dropout 0.1: the
adapters' axpy_cols / dropout_forward kernels; the counter-based masks are the same on both backends, so each
LoRA run is compared with a CPU run on as many ranks). Per-step losses and grad norms
within fp32 tolerance, exported weights close, and the log names the backend that trained. Then bf16 mixed
precision (--precision bf16: the CPU twin, the GPU at 1 rank, and 2 ranks with --grad-reduce bf16): the 10 steps
track the CPU fp32 run within bf16 tolerance (loss and margins 2e-3 relative + 2e-4, grad norm 2e-2; each
tensor's update 5e-2 relative L2). Exits 77 (skipped) without a visible GPU.
usage: dpo_backends.py QUORUM PROBE MPIEXEC NPFLAG SHARED_DIR WORKDIR"""
import json, os, subprocess, sys
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import ref_model  # noqa: E402

QUORUM, PROBE, MPIEXEC, NP, SHARED, WORK = sys.argv[1:7]
if subprocess.run([PROBE, "--probe"]).returncode != 0:
    print("skipping: no visible GPU")
    sys.exit(77)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, sh, tiny_gpt2_dpo_setup, verbose  # noqa: E402
verbose()
corpus, pol, _ = tiny_gpt2_dpo_setup(QUORUM, QUORUM, SHARED, WORK, max_pairs=32, dim=64, heads=4, max_pos=128, seed=4)


def dpo(name, backend, ranks, extra=()):
    out = os.path.join(WORK, name)
    p = sh(MPIEXEC, NP, str(ranks), "--oversubscribe", QUORUM, "dpo", "--policy", pol, "--corpus-dir", corpus,
           "--out", out, "--steps", "10", "--batch-size", "8", "--grad-accum", "2", "--lr", "2e-3", "--weight-decay",
           "0.01", "--warmup-steps", "2", "--schedule", "cosine", "--max-length", "96", "--max-prompt-length", "48",
           "--checkpoint-every", "4", "--quiet", *extra, env={"QUORUM_BACKEND": backend})
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


def compare_bf16(name, m, w, cpu_m, cpu_w, w0):
    """bf16 + fp32 master: the GEMMs (cuBLASLt) round weights AND activations to bf16 (2^-8 relative each), so
    the tolerance is bf16's, not fp32's"""
    for key, rtol in (("loss", 2e-3), ("rewards/margins", 2e-3), ("grad_norm", 2e-2)):
        a, b = [x[key] for x in m], [x[key] for x in cpu_m]
        ok = len(a) == 10 and np.allclose(a, b, rtol=rtol, atol=2e-4)
        check(ok, f"{name}: per-step {key} tracks the CPU fp32 run within bf16 tolerance (max diff "
              f"{np.max(np.abs(np.subtract(a, b))):.3g}, rtol {rtol})")
    # each tensor's update W - W0 within 5% (relative L2) of the fp32 run's: AdamW gives a weight with a tiny
    # gradient a full lr-sized step of either sign, so a max-abs bound on single entries would not be bf16's
    upd = {k: float(np.linalg.norm(w[k] - cpu_w[k]) / max(np.linalg.norm(cpu_w[k] - w0[k]), 1e-30)) for k in w0}
    worst = max(upd, key=upd.get)
    check(upd[worst] < 5e-2, f"{name}: weight updates vs the CPU fp32 run: worst relative L2 {upd[worst]:.3g} ({worst})")


cpu_m, cpu_w = dpo("cpu", "cpu", 1)
for name, ranks, extra in (("cuda", 1, ()), ("cuda2z", 2, ("--zero1",))):
    compare(name, *dpo(name, "cuda", ranks, extra), cpu_m, cpu_w)
LORA = ("--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.1", "--lora-targets", "c_attn,c_proj,c_fc")
for name, ranks, extra in (("cuda_lora", 1, LORA), ("cuda2z_lora", 2, LORA + ("--zero1",))):
    compare(name, *dpo(name, "cuda", ranks, extra), *dpo(name + "_cpu", "cpu", ranks, extra))
# the log names the collective path (NCCL / MPI) once
w0 = ref_model.load_dir(pol)[1]
for name, backend, ranks, extra in (("cpu_bf16", "cpu", 1, ("--precision", "bf16")),
                                    ("cuda_bf16", "cuda", 1, ("--precision", "bf16")),
                                    ("cuda2_bf16", "cuda", 2, ("--precision", "bf16", "--grad-reduce", "bf16"))):
    compare_bf16(name, *dpo(name, backend, ranks, extra), cpu_m, cpu_w, w0)
finish()
