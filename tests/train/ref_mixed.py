"""ref_mixed.py - `quorum dpo --precision bf16` (bf16 + fp32 master) on a tiny random GPT-2 and a few HH-RLHF
pairs, against a float64 torch replay (tests/model/ref_model.py's GPT-2) that emulates the CPU twin's
rounding: before each forward the GEMM weights (c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj and the tied LM
head) are the master weights rounded fp32 -> bf16 to nearest even, used straight-through (their gradient is
the master's); the embedding lookups, norms, biases, softmax, loss, AdamW and its moments stay at full
precision. Checks:
  1. the reference log-probs (bf16 GEMMs at the initial weights) and every step's loss equal the emulating
     replay (ref log-probs to ~2e-7 relative, losses to 1e-5: measured 3e-6, where the fp32 run sits 1e-6 from
     its own float64 replay), and the exported master weights to fp32-vs-float64 AdamW tolerance; the same replay WITHOUT the rounding is far off (so each
     check can fail: the emulation is what makes it pass)
  2. the bf16 run tracks the fp32 run of the same data within a bf16 tolerance (stated at the check)
  3. killed after step 5 (checkpoint at 3) and resumed, the bf16 run ends bit-identical to the uninterrupted
     one: the resumed run refreshes the bf16 shadow from the loaded master weights
usage: ref_mixed.py QUORUM TRAIN_TOOL SHARED_DIR WORKDIR"""
import json, os, sys
import numpy as np
import torch

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
sys.path.insert(0, os.path.join(HERE, ".."))
import ref_model  # noqa: E402
from support import check, finish, sh, tiny_gpt2_dpo_setup, verbose  # noqa: E402

verbose()
QUORUM, TOOL, SHARED, WORK = sys.argv[1:5]
STEPS, B, LR, WD, CLIP, WARM, BETA = 10, 4, 2e-3, 0.01, 1.0, 2, 0.1
GEMM = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
corpus, pol, _ = tiny_gpt2_dpo_setup(QUORUM, TOOL, SHARED, WORK)


def dpo(name, precision, env=None, ok=True):
    out = os.path.join(WORK, name)
    cmd = [TOOL, "dpo", "--policy", pol, "--corpus-dir", corpus, "--out", out,
           "--steps", str(STEPS), "--batch-size", str(B), "--grad-accum", "2", "--lr", str(LR), "--weight-decay",
           str(WD), "--grad-clip", str(CLIP), "--warmup-steps", str(WARM), "--schedule", "cosine", "--beta",
           str(BETA), "--max-length", "40", "--max-prompt-length", "24", "--checkpoint-every", "3", "--quiet",
           "--precision", precision]
    if ok:
        sh(*cmd, env=dict(env or {}, QUORUM_TEST_DUMP_PAIRS=os.path.join(WORK, name + ".json")))
    else:
        import subprocess
        p = subprocess.run(cmd, env=dict(os.environ, **(env or {})), capture_output=True, text=True)
        check(p.returncode != 0, f"{name}: the killed run did not finish (exit {p.returncode})")
    return out


def losses(out):
    return [json.loads(l)["loss"] for l in open(os.path.join(out, "metrics.jsonl"))]


def bf16(x):
    """fp32 -> bf16 round to nearest even, back to float64 (what cast_f32_to_bf16 does to the fp32 master)"""
    return x.float().to(torch.bfloat16).double()


def gemm_view(cfg, W, emulate):
    """(cfg, weights) the forward reads: with emulate, each GEMM weight is bf16(master) straight-through and the
    tied head becomes an explicit lm_head of the rounded wte (the embedding lookup keeps the master)"""
    if not emulate:
        return cfg, W
    st = lambda w: w + (bf16(w) - w).detach()
    V = {k: (st(w) if k.endswith(GEMM) else w) for k, w in W.items()}
    V["lm_head.weight"] = st(W["transformer.wte.weight"])
    return dict(cfg, tie_word_embeddings=False), V


def replay(cfg, W0, pairs, order, emulate):
    """float64 DPO as quorum's trainer runs it (ref_dpo_gpt2.py's replay) -> (ref log-probs, losses, weights)"""
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in W0.items()}
    with torch.no_grad():
        ref = []
        for s in range(0, len(pairs), 4):
            idx = list(range(s, min(len(pairs), s + 4)))
            o, _ = ref_model.forward(*gemm_view(cfg, params, emulate), *ref_model.dpo_batch(pairs, idx))
            ref += list(zip(o[:len(idx)].tolist(), o[len(idx):].tolist()))
    ref = torch.tensor(ref, dtype=torch.float64)
    decay = [p for p in params.values() if p.dim() > 1]
    no_decay = [p for p in params.values() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.999), eps=1e-8)
    out = []
    for step in range(STEPS):
        idx = order[step * B:(step + 1) * B]
        o, _ = ref_model.forward(*gemm_view(cfg, params, emulate), *ref_model.dpo_batch(pairs, idx))
        z = (o[:B] - o[B:]) - (ref[idx, 0] - ref[idx, 1])
        loss = -torch.nn.functional.logsigmoid(BETA * z).mean()
        ref_model.optimizer_step(opt, loss, list(params.values()), CLIP, ref_model.hf_lr(step, LR, WARM, STEPS))
        out.append(loss.item())
    return ref, out, {k: p.detach().numpy() for k, p in params.items()}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def wdiff(Wa, Wb):
    return max(float(np.max(np.abs(Wa[k] - Wb[k]))) for k in Wb)


ob, of = dpo("bf16", "bf16"), dpo("fp32", "fp32")
data = json.load(open(os.path.join(WORK, "bf16.json")))
pairs, order = data["pairs"], data["order"]
cfg, W0 = ref_model.load_dir(pol)
ref_e, loss_e, W_e = replay(cfg, W0, pairs, order, True)
ref_f, loss_f, W_f = replay(cfg, W0, pairs, order, False)

# 1. bf16 run == the emulating replay
c_ref = np.array([p["ref"] for p in pairs])
d_e, d_f = rel(c_ref, ref_e.numpy()), rel(c_ref, ref_f.numpy())
check(d_e < 2e-6 and d_f > 20 * d_e, f"reference log-probs (bf16 GEMMs) vs the emulating replay: max rel {d_e:.3g} "
      f"(vs the unrounded replay {d_f:.3g})")
cb = losses(ob)
print("C bf16 losses:        ", " ".join(f"{x:.7f}" for x in cb))
print("torch bf16-emulating: ", " ".join(f"{x:.7f}" for x in loss_e))
print("torch unrounded:      ", " ".join(f"{x:.7f}" for x in loss_f))
d_e, d_f = rel(cb, loss_e), rel(cb, loss_f)
check(len(cb) == STEPS and d_e < 1e-5 and d_f > 20 * d_e,
      f"per-step bf16 DPO loss vs the emulating float64 replay: max rel {d_e:.3g} (unrounded replay: {d_f:.3g})")
_, Wb = ref_model.load_dir(os.path.join(ob, "final"))
d_e, d_f = wdiff(Wb, W_e), wdiff(Wb, W_f)
check(d_e < 2e-4 and d_f > 10 * d_e, f"exported fp32 master weights vs the emulating replay: max abs {d_e:.3g} "
      f"(unrounded replay: {d_f:.3g}; moved up to {wdiff(Wb, W0):.3g})")

# 2. bf16 tracks fp32. Tolerance: a bf16 weight is within 2^-9 relative of its master, so per-sequence log-probs
# (sums of ~20 token log-probs of ~10.8 nats) move by ~1e-2 nats and the loss (~0.69) by ~1e-4; after 10 steps at
# lr 2e-3: the loss within 2e-3 relative, and each tensor's update W - W0 within 2e-2 (relative L2) of the fp32
# run's (0.4% = bf16's precision, amplified by Adam). Not a max-abs bound: AdamW's m/sqrt(v) gives a weight whose
# gradient is tiny a full lr-sized step of either sign, so single embedding entries may differ by ~lr * steps.
cf = losses(of)
d = rel(cb, cf)
check(d < 2e-3 and d > 0, f"bf16 loss tracks the fp32 run: max rel diff {d:.3g} over {STEPS} steps (tolerance 2e-3)")
_, Wf = ref_model.load_dir(os.path.join(of, "final"))
upd = {k: float(np.linalg.norm(Wb[k] - Wf[k]) / max(np.linalg.norm(Wf[k] - W0[k]), 1e-30)) for k in W0}
worst = max(upd, key=upd.get)
check(upd[worst] < 2e-2, f"bf16 weight updates vs fp32's: worst relative L2 difference {upd[worst]:.3g} ({worst}; "
      f"tolerance 2e-2)")
check(rel(cf, loss_f) < 1e-5, f"the fp32 run equals the unrounded replay (max rel {rel(cf, loss_f):.3g})")

# 3. kill after step 5 (checkpoint at 3), resume: bit-identical to the uninterrupted bf16 run
ok_ = dpo("kill", "bf16", env={"QUORUM_TEST_KILL_AFTER_STEP": "5"}, ok=False)
dpo("kill", "bf16")
_, Wk = ref_model.load_dir(os.path.join(ok_, "final"))
check(all(np.array_equal(Wk[k], Wb[k]) for k in Wb) and losses(ok_) == cb,
      "bf16 killed at step 5 and resumed from the step-3 checkpoint == the uninterrupted run, bit for bit")
finish()
