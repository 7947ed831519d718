"""ref_grad_reduce.py - the gradient reduction with bf16 on the wire (--grad-reduce bf16, TrainOps.grads_allreduce)
against numpy + torch's own bf16 rounding: at 2 and 3 ranks, with buckets that do not divide n (nor the chunks
the ranks), every rank's result equals bf16(sum_r bf16(g_r)) with the sum taken in float32 in rank order, bit for
bit, on every rank; the returned norm is that vector's L2 norm. The fp32 wire gives the float32 sum (and differs
from the bf16 one: the option changes something), and one rank leaves the gradient untouched.
usage: ref_grad_reduce.py TEST_GRAD_REDUCE OUTDIR MPIEXEC NPFLAG"""
import os, shutil, subprocess, sys
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from support import check, finish, mpi_env, verbose  # noqa: E402

verbose()

BIN, ROOT, MPIEXEC, NP = sys.argv[1:5]
N = 10007


def run(ranks, bucket, wire):
    out = os.path.join(ROOT, f"r{ranks}_b{bucket}_{wire}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    p = subprocess.run([MPIEXEC, NP, str(ranks), "--oversubscribe", BIN, out, str(N), str(bucket), wire],
                       env=mpi_env(), capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"{out}: exit {p.returncode}\n{p.stdout[-1500:]}{p.stderr[-1500:]}")
    read = lambda what, r: np.fromfile(os.path.join(out, f"{what}_{r}.bin"), dtype=np.float32)
    ins = [read("in", r) for r in range(ranks)]
    outs = [read("out", r) for r in range(ranks)]
    norms = [float(open(os.path.join(out, f"norm_{r}.txt")).read()) for r in range(ranks)]
    return ins, outs, norms


def bf16(x):
    """float32 -> bf16 (torch's round to nearest even) -> float32"""
    return torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16).float().numpy()


def fsum(xs):
    s = xs[0].astype(np.float32)
    for x in xs[1:]:
        s = (s + x).astype(np.float32)
    return s


shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)
for ranks in (2, 3):
    for bucket in (997, N):
        ins, outs, norms = run(ranks, bucket, "bf16")
        ref = bf16(fsum([bf16(g) for g in ins]))
        same = all(np.array_equal(o.view(np.uint32), ref.view(np.uint32)) for o in outs)
        bad = int(np.sum(outs[0].view(np.uint32) != ref.view(np.uint32)))
        check(same, f"bf16 wire, {ranks} ranks, bucket {bucket}: every rank == bf16(sum_r bf16(g_r)) bit for bit "
              f"(rank 0: {bad} of {N} differ)")
        want = float(np.sqrt(np.sum(ref.astype(np.float64) ** 2)))
        check(all(abs(x - want) <= 1e-12 * want for x in norms), f"bf16 wire, {ranks} ranks: norms {norms} vs {want}")
        ins32, outs32, _ = run(ranks, bucket, "fp32")
        exact = np.sum([g.astype(np.float64) for g in ins32], axis=0)
        mag = np.sum([np.abs(g.astype(np.float64)) for g in ins32], axis=0)  # errors relative to sum |terms|
        err32 = float(np.max(np.abs(outs32[0] - exact) / mag))
        err16 = float(np.max(np.abs(outs[0] - exact) / mag))
        check(all(np.array_equal(o, outs32[0]) for o in outs32) and err32 < 2.5e-7 and 1e-3 < err16 < 2 ** -7 + 1e-6,
              f"fp32 wire, {ranks} ranks: the float32 sum on every rank (worst err / sum|terms| {err32:.3g}); the "
              f"bf16 wire's {err16:.3g} (two roundings of at most 2^-8 relative: < 2^-7)")
ins, outs, norms = run(1, 997, "bf16")
check(np.array_equal(ins[0], outs[0]), "bf16 wire, 1 rank: nothing crosses a wire, the gradient is unchanged")
finish()
