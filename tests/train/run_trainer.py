"""run_trainer.py - the trainer's invariants, with test_trainer's bigram model:
  1. objectives (a per-pair loss of each shape, the length-normalized and the batch-level DPO losses, and
     bt), 1 rank, grad_accum 2: per-step loss and the final weights match a torch re-implementation of
     the same run (ref_units.dpo_losses, torch.optim.AdamW, clip_grad_norm_, the HF cosine-with-warmup
     schedule, the dumped batch order, the same two micro-batches)
  2. 2 ranks and 4 ranks (ZeRO-1 on and off, grad_accum 1/2) give the 1-rank weights (fp32 tolerance)
  3. SIGKILL after step 5 (checkpoint at 3) then a re-run gives the uninterrupted weights bit for bit;
     killed at 2 ranks and resumed at 3, the weights equal the 1-rank run's to fp32 tolerance;
     SIGUSR1 after step 4 exits 99 with a checkpoint at 4, and the re-run again gives the same weights.
usage: run_trainer.py TEST_TRAINER OUTDIR MPIEXEC NPFLAG"""
import json, os, shutil, subprocess, sys
import numpy as np
import torch

torch.set_num_threads(1)
import torch.nn.functional as F
from ref_units import dpo_losses
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import ref_model  # noqa: E402

BIN, ROOT, MPIEXEC, NP = sys.argv[1:5]
STEPS, BATCH = 10, 8
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish  # noqa: E402

def run(name, ranks, accum, zero1, loss, env=None, expect=0):
    out = os.path.join(ROOT, name)
    cmd = [MPIEXEC, NP, str(ranks), "--oversubscribe", BIN, out, str(STEPS), str(BATCH), str(accum), str(zero1), loss]
    e = dict(os.environ, **(env or {}))
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)
    ok = (p.returncode == expect) if expect is not None else p.returncode != 0
    check(ok, f"{name}: exit {p.returncode}, expected {expect}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return out

def params(out):
    return np.fromfile(os.path.join(out, "final_params.bin"), dtype=np.float32)

def metrics(out):
    return [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]

def seq_values(W, seqs, reward):
    """per-sequence (value, completion tokens): masked completion log-prob sum or reward, as the C bigram
    model defines it"""
    vals, counts = [], []
    for plen, ids in seqs:
        ids = torch.tensor(ids)
        prev, cur = ids[:-1], ids[1:]
        keep = torch.arange(1, len(ids)) >= plen
        counts.append(float(keep.sum()))
        if reward:
            vals.append(W[prev, cur].sum() / 8.0)
            continue
        lp = torch.log_softmax(W[prev], dim=-1).gather(1, cur[:, None])[:, 0]
        vals.append(lp[keep].sum())
    return torch.stack(vals), torch.tensor(counts, dtype=torch.float64)

ACCUM = 2  # section 1 runs grad_accum 2 on 1 rank: micro-batches [0, 4) and [4, 8) of each step

def torch_run(data, loss):
    V = data["V"]
    W = torch.nn.Parameter(torch.tensor(data["w0"], dtype=torch.float32).reshape(V, V))
    opt = torch.optim.AdamW([W], lr=data["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=data["wd"])
    pairs = data["seqs"]
    beta, ls = data["beta"], data["ls"]
    with torch.no_grad():
        ref_c = seq_values(W, [(p[0], p[1]) for p in pairs], False)[0]
        ref_r = seq_values(W, [(p[0], p[2]) for p in pairs], False)[0]
    losses = []
    for step in range(data["steps"]):
        idx = data["order"][step * BATCH:(step + 1) * BATCH]
        per_pair = []
        for a in range(ACCUM):
            mb = idx[BATCH * a // ACCUM:BATCH * (a + 1) // ACCUM]
            vc, nc = seq_values(W, [(pairs[i][0], pairs[i][1]) for i in mb], loss == "bt")
            vr, nr = seq_values(W, [(pairs[i][0], pairs[i][2]) for i in mb], loss == "bt")
            if loss == "bt":
                per_pair.append(-F.logsigmoid(vc - vr - data["margin"]) + data["center"] * (vc + vr) ** 2)
            else:
                per_pair.append(dpo_losses(loss, vc.double(), vr.double(), ref_c[mb].double(), ref_r[mb].double(),
                                           nc, nr, beta, ls, data["tau"]))
        l = torch.cat(per_pair).mean()
        ref_model.optimizer_step(opt, l, [W], data["clip"], ref_model.hf_lr(step, data["lr"], data["warmup"], data["steps"]))
        losses.append(l.item())
    return losses, W.detach().numpy().ravel()

def close(a, b, rtol, atol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b))), float(np.max(np.abs(a - b)))

shutil.rmtree(ROOT, ignore_errors=True)
os.makedirs(ROOT)

# 1. torch reference, every objective
for loss in ("sigmoid", "cdpo", "ipo", "ipo_mean", "hinge", "robust", "nca_pair", "apo_down", "discopop",
             "sigmoid_norm", "aot", "sft", "bt"):
    out = run(f"ref_{loss}", 1, 2, 0, loss)
    data = json.load(open(os.path.join(out, "data.json")))
    tl, tw = torch_run(data, loss)
    cl = [m["loss"] for m in metrics(out)]
    ok, d = close(cl, tl, 2e-4, 1e-6)
    check(ok and len(cl) == STEPS, f"{loss}: per-step loss vs torch (max diff {d:.3g}): {cl} vs {tl}")
    ok, d = close(params(out), tw, 1e-4, 2e-5)
    check(ok, f"{loss}: final weights vs torch (max diff {d:.3g})")
    check(abs(cl[-1] - cl[0]) > 1e-3, f"{loss}: training moved the loss")

# 2. rank-count independence (same global batch), ZeRO-1
base = params(os.path.join(ROOT, "ref_sigmoid"))
for name, ranks, accum, zero1 in (("r2", 2, 1, 0), ("r2z", 2, 2, 1), ("r4", 4, 1, 0), ("r4z", 4, 2, 1), ("r1z", 1, 1, 1)):
    out = run(name, ranks, accum, zero1, "sigmoid")
    ok, d = close(params(out), base, 1e-4, 1e-5)
    check(ok, f"{name}: {ranks} ranks zero1={zero1} accum={accum} weights vs 1 rank (max diff {d:.3g})")

# 3. kill / resume, stop signal / resume
for name, ranks, zero1 in (("kill1", 1, 0), ("kill2z", 2, 1)):
    ref = params(run(name + "_ref", ranks, 1, zero1, "sigmoid"))
    out = run(name, ranks, 1, zero1, "sigmoid", env={"QUORUM_TEST_KILL_AFTER_STEP": "5"}, expect=None)
    check(not os.path.exists(os.path.join(out, "final_params.bin")), f"{name}: the killed run did not finish")
    st = json.load(open(os.path.join(out, "checkpoint", "state.json")))
    check(st["step"] == 3, f"{name}: checkpoint after the kill is step 3, got {st['step']}")
    run(name, ranks, 1, zero1, "sigmoid")
    check(np.array_equal(params(out), ref), f"{name}: resumed weights equal the uninterrupted run's")
    steps = [m["step"] for m in metrics(out)]
    check(steps == list(range(1, STEPS + 1)), f"{name}: metrics.jsonl steps after resume {steps}")
# a different rank count on resume (2 ranks ZeRO-1 killed, 3 ranks ZeRO-1 resume): the checkpoint holds
# whole moments and the global data order, so the result is the 1-rank run's to fp32 rounding
out = run("kill2to3", 2, 1, 1, "sigmoid", env={"QUORUM_TEST_KILL_AFTER_STEP": "5"}, expect=None)
check(not os.path.exists(os.path.join(out, "final_params.bin")), "kill2to3: the killed run did not finish")
run("kill2to3", 3, 1, 1, "sigmoid")
ok, d = close(params(out), base, 1e-4, 1e-5)
check(ok, f"kill2to3: killed at 2 ranks, resumed at 3: weights vs the 1-rank run (max diff {d:.3g})")
check([m["step"] for m in metrics(out)] == list(range(1, STEPS + 1)), "kill2to3: metrics.jsonl steps after resume")
out = run("usr1", 2, 1, 0, "sigmoid", env={"QUORUM_TEST_SIGNAL_AFTER_STEP": "4"}, expect=99)
st = json.load(open(os.path.join(out, "checkpoint", "state.json")))
check(st["step"] == 4, f"usr1: checkpoint at step 4, got {st['step']}")
run("usr1", 2, 1, 0, "sigmoid")
ok, d = close(params(out), base, 1e-4, 1e-5)
check(ok, f"usr1: stopped + resumed weights vs the 1-rank run (max diff {d:.3g})")

finish()
