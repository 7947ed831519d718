#!/usr/bin/env python3
"""DPO step time at 2 ranks with the gradient allreduce overlapped with the backward vs after it, side by side.

A random GPT-2 policy (quorum init-model: --layers x --dim, GPT-2 vocab, tied head) trains --steps DPO steps
on the first --pairs HH-RLHF harmless test pairs under `mpirun -n 2`, once as `quorum dpo` does by default
(each allreduce bucket of --bucket floats posted from the backward's grad-ready hook as soon as its layer is
done) and once with --no-overlap (all buckets posted after the backward), alternating --reps times. Reported:
the median over steps 2.. of step_s (the step's wall time) and allreduce_s (rank 0's wait in grads_allreduce,
which includes waiting for the slower rank's backward), per mode; and whether both modes ended with the same
weights (they must: the reduction is bit-identical).

  benchmarks/dpo_overlap.py [--build build] [--shared ../shared] [--pairs 64] [--steps 6] [--batch 8]
                            [--layers 4] [--dim 256] [--max-len 128] [--bucket 262144] [--reps 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import ref_model  # noqa: E402
from support import mpi_env, tiny_gpt2_dpo_setup  # noqa: E402


def run(cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(f"dpo_overlap.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-2000:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--bucket", type=int, default=1 << 18)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    quorum = os.path.join(a.build, "quorum")
    env = mpi_env(OPENBLAS_NUM_THREADS="1", QUORUM_BLAS_THREADS="1", OMP_NUM_THREADS="1",
                  OMPI_MCA_rmaps_base_oversubscribe="1")
    res = {"overlap": [], "no-overlap": []}
    final = {}
    with tempfile.TemporaryDirectory() as work:
        corpus, pol, _ = tiny_gpt2_dpo_setup(quorum, quorum, a.shared, os.path.join(work, "w"), max_pairs=a.pairs,
                                             dim=a.dim, heads=max(1, a.dim // 64), max_pos=max(a.max_len, 64), seed=3)
        for r in range(a.reps):
            for mode in ("overlap", "no-overlap"):
                out = os.path.join(work, f"{mode}{r}")
                run(["mpirun", "-n", "2", "--oversubscribe", quorum, "dpo", "--policy", pol, "--corpus-dir", corpus,
                     "--out", out, "--steps", str(a.steps), "--batch-size", str(a.batch), "--lr", "1e-4",
                     "--max-length", str(a.max_len), "--max-prompt-length", str(a.max_len // 2), "--checkpoint-every",
                     "0", "--quiet", "--bucket-floats", str(a.bucket)] + (["--no-overlap"] if mode == "no-overlap" else []),
                    env)
                met = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))][1:]
                res[mode] += [(m["step_s"], m["allreduce_s"]) for m in met]
                final[mode] = ref_model.load_dir(os.path.join(out, "final"))[1]
        n_params = sum(v.size for v in final["overlap"].values())
    same = all(np.array_equal(final["overlap"][k], final["no-overlap"][k]) for k in final["overlap"])
    print(f"DPO GPT-2 {a.layers}x{a.dim} ({n_params / 1e6:.1f}M params, vocab 50257), 2 ranks, batch {a.batch} pairs, "
          f"max_len {a.max_len}, bucket {a.bucket} floats, {a.reps} x {a.steps - 1} steps per mode")
    for mode, v in res.items():
        print(f"  {mode:10s} step {statistics.median(x[0] for x in v) * 1e3:8.1f} ms   allreduce wait "
              f"{statistics.median(x[1] for x in v) * 1e3:7.1f} ms")
    ratio = statistics.median(x[0] for x in res["no-overlap"]) / statistics.median(x[0] for x in res["overlap"])
    print(f"  step time no-overlap / overlap = {ratio:.3f}; final weights {'identical' if same else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
