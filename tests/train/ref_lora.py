"""ref_lora.py - `quorum dpo --lora-r` on a tiny random Llama (init-model) and a few HH-RLHF pairs, replayed
in float64 torch with LoRA written out by hand as PEFT computes it (y = x W0^T + alpha/r * (drop(x) A^T) B^T on
the targeted projections of tests/model/ref_model.py's Llama), torch.optim.AdamW over the adapters only,
clip_grad_norm_ and the HF cosine-with-warmup schedule, on the exact tokenized pairs, batch order and initial
adapters the C run dumped. Dropout masks are re-derived here in numpy from the formula quorum/train.h and
quorum/ops.h document (SplitMix64 counter draws seeded from seed, rank, step, micro-batch and site), not read
from quorum. Checks: the initial adapters (A within PEFT's kaiming bound, B = 0), the loss of each of 8 steps
(grad_accum 2) with lora_dropout 0 and 0.1, on 1 rank and on 2 ranks (ZeRO-1, each rank its own masks), the
exported PEFT adapter (config, tensor names and shapes, values vs torch), that the adapter applied by hand to the
base gives the log-probs of the merged export (final/), that untargeted weights did not move, that 2 ranks
(ZeRO-1) give the 1-rank adapters without dropout, and that a run stopped at step 4 and resumed gives the
uninterrupted run's adapters bit for bit with dropout on.
usage: ref_lora.py QUORUM MPIEXEC NPFLAG SHARED_DIR WORKDIR"""
import json, math, os, shutil, subprocess, sys
import numpy as np
import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import ref_model  # noqa: E402

QUORUM, MPIEXEC, NP, SHARED, WORK = sys.argv[1:6]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, sh, shared_hh_gpt2, verbose  # noqa: E402
verbose()
HH, TOK = shared_hh_gpt2(SHARED)
STEPS, B, LR, WD, CLIP, WARM, BETA = 8, 4, 2e-2, 0.01, 1.0, 2, 0.1
R, ALPHA, TARGETS = 4, 8.0, "q_proj,v_proj,down_proj"
SEED, DROP = 1234, 0.1
M64, GAMMA = (1 << 64) - 1, 0x9e3779b97f4a7c15


def dpo_cmd(out, ranks, dropout=0.0, extra=()):
    return (MPIEXEC, NP, str(ranks), "--oversubscribe", QUORUM, "dpo", "--policy", pol, "--corpus-dir", corpus,
       "--out", out, "--steps", str(STEPS), "--batch-size", str(B), "--grad-accum", "2", "--lr", str(LR),
       "--weight-decay", str(WD), "--grad-clip", str(CLIP), "--warmup-steps", str(WARM), "--schedule", "cosine",
       "--beta", str(BETA), "--max-length", "40", "--max-prompt-length", "24", "--checkpoint-every", "0", "--quiet",
       "--lora-r", str(R), "--lora-alpha", str(ALPHA), "--lora-targets", TARGETS, "--seed", str(SEED),
       "--lora-dropout", str(dropout), *extra)


def dpo(out, ranks, dropout=0.0, extra=(), env=None):
    sh(*dpo_cmd(out, ranks, dropout, extra), env=env)


def counter(seed, i):
    """quorum/rng.h rng_counter_u64: output i of the SplitMix64 stream at state `seed` (Python ints)"""
    z = (seed + (i + 1) * GAMMA) & M64
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def keep_mask(seed, n, p):
    """quorum/ops.h dropout_forward's mask over n elements: counter(seed, i) >> 40 >= p * 2^24, in numpy"""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) >= float(np.float32(p)) * 2 ** 24


class LoraLinear:
    """A targeted weight as ref_model's `x @ W[name].T` sees it: PEFT's LoRA Linear, dropout with the mask of site
    `site` of the forward seeded `fwd` (None: no dropout)"""

    def __init__(self, W0, A, B, site, fwd, p):
        self.W0, self.A, self.B, self.site, self.fwd, self.p = W0, A, B, site, fwd, p

    @property
    def T(self):
        return self

    def __rmatmul__(self, x):
        xd = x
        if self.p > 0 and self.fwd is not None:
            keep = keep_mask(counter(self.fwd, self.site), x.numel(), self.p).reshape(x.shape)
            xd = x * torch.tensor(keep, dtype=x.dtype) / (1 - self.p)
        return x @ self.W0.T + S * (xd @ self.A.T) @ self.B.T


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
sh(QUORUM, "ingest", "--out", WORK, "--name", "hh", "--format", "hh", "--max-pairs", "24", HH)
corpus = os.path.join(WORK, "corpora", "hh")
pol = os.path.join(WORK, "policy")
sh(QUORUM, "init-model", "--arch", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2",
   "--tokenizer", TOK, "--head", "lm", "--seed", "9", "--out", pol)
out = os.path.join(WORK, "dpo")
dpo(out, 1, env={"QUORUM_TEST_DUMP_PAIRS": os.path.join(WORK, "pairs.json")})
out_drop = os.path.join(WORK, "dpo_drop")
dpo(out_drop, 1, DROP)

cfg, W0 = ref_model.load_dir(pol)
data = json.load(open(os.path.join(WORK, "pairs.json")))
pairs, order, init = data["pairs"], data["order"], np.array(data["lora_init"])

# --- the PEFT export: config and tensor layout
adir = os.path.join(out, "adapter")
acfg = json.load(open(os.path.join(adir, "adapter_config.json")))
check(acfg["peft_type"] == "LORA" and acfg["r"] == R and acfg["lora_alpha"] == ALPHA and acfg["lora_dropout"] == 0
      and sorted(acfg["target_modules"]) == sorted(TARGETS.split(",")) and acfg["fan_in_fan_out"] is False,
      f"adapter_config.json: {acfg}")
AD = ref_model.st_read(os.path.join(adir, "adapter_model.safetensors"))  # ordered as written
names = list(AD)
targets = [k for k in W0 if k.endswith(".weight") and W0[k].ndim == 2 and k.split(".")[-2] in TARGETS.split(",")]
want = [f"base_model.model.{t[:-len('.weight')]}.lora_{ab}.weight" for t in targets for ab in "AB"]
check(names == want, f"PEFT tensor names, in order: {len(names)} tensors for {len(targets)} targeted weights")
check(all(AD[names[2 * i]].shape == (R, W0[t].shape[1]) and AD[names[2 * i + 1]].shape == (W0[t].shape[0], R)
          for i, t in enumerate(targets)), "lora_A [r, in], lora_B [out, r]")

# --- the initial adapters, flat in the export's order
A0, B0, pos = {}, {}, 0
for t in targets:
    o, i = W0[t].shape
    A0[t] = init[pos:pos + R * i].reshape(R, i); pos += R * i
    B0[t] = init[pos:pos + o * R].reshape(o, R); pos += o * R
check(pos == len(init), f"lora_init holds exactly the adapters ({pos} values)")
check(all(np.all(B0[t] == 0) for t in targets), "B starts at zero (training starts at the base model)")
check(all(np.abs(A0[t]).max() <= 1 / math.sqrt(W0[t].shape[1]) and A0[t].std() > 0.3 / math.sqrt(W0[t].shape[1])
          for t in targets), "A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a=sqrt(5)))")

# --- float64 torch replay
base = {k: torch.tensor(v, dtype=torch.float64) for k, v in W0.items()}
S = ALPHA / R


ref = torch.tensor([p["ref"] for p in pairs], dtype=torch.float64)
with torch.no_grad():
    o, _ = ref_model.forward(cfg, base, *ref_model.dpo_batch(pairs, list(range(len(pairs)))))
    n = len(pairs)
    d = max(abs(o[:n] - ref[:, 0]).max().item(), abs(o[n:] - ref[:, 1]).max().item())
check(d < 1e-3, f"reference log-probs = the base model's (max diff {d:.3g})")


def replay(ranks, p):
    """8 steps as `quorum dpo` on `ranks` ranks takes them: rank r's micro-batch a of step k runs with dropout seed
    counter(SEED ^ 0x1d70, r << 40 | k << 16 | a) (quorum/train.h). -> per-step losses, A, B"""
    A = {t: torch.tensor(A0[t], dtype=torch.float64, requires_grad=True) for t in targets}
    Bm = {t: torch.tensor(B0[t], dtype=torch.float64, requires_grad=True) for t in targets}
    adapters = [A[t] for t in targets] + [Bm[t] for t in targets]
    opt = torch.optim.AdamW(adapters, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
    losses = []
    for step in range(STEPS):
        idx = order[step * B:(step + 1) * B]
        loss = 0
        for r in range(ranks):
            my_lo, my_hi = B * r // ranks, B * (r + 1) // ranks
            for a in range(2):  # grad_accum 2; the loss is a mean over the global batch
                lo, hi = (my_hi - my_lo) * a // 2, (my_hi - my_lo) * (a + 1) // 2
                if hi <= lo:
                    continue
                mb = idx[my_lo + lo:my_lo + hi]
                fwd = counter(SEED ^ 0x1d70, (r << 40) | (step << 16) | a)
                W = dict(base)
                for k, t in enumerate(targets):
                    W[t] = LoraLinear(base[t], A[t], Bm[t], k, fwd, p)
                o, _ = ref_model.forward(cfg, W, *ref_model.dpo_batch(pairs, mb))
                n = len(mb)
                z = (o[:n] - o[n:]) - (ref[mb, 0] - ref[mb, 1])
                loss = loss - torch.nn.functional.logsigmoid(BETA * z).sum() / B
        ref_model.optimizer_step(opt, loss, adapters, CLIP, ref_model.hf_lr(step, LR, WARM, STEPS))
        losses.append(loss.item())
    return losses, A, Bm


def c_losses(d):
    return [json.loads(l)["loss"] for l in open(os.path.join(d, "metrics.jsonl"))]


def check_replay(d, ranks, p, losses):
    cl = c_losses(d)
    print(f"C     losses ({ranks} rank(s), dropout {p}):", " ".join(f"{x:.7f}" for x in cl))
    print(f"torch losses ({ranks} rank(s), dropout {p}):", " ".join(f"{x:.7f}" for x in losses))
    dl = max(abs(a - b) for a, b in zip(cl, losses))
    check(len(cl) == STEPS and dl < 1e-6, f"per-step LoRA DPO loss vs float64 torch, {STEPS} steps, {ranks} rank(s), "
          f"lora_dropout {p} (max diff {dl:.2g})")


losses, A, Bm = replay(1, 0.0)
check_replay(out, 1, 0.0, losses)
check(losses[-1] < losses[0] - 1e-3, "the loss moved down")
worst = max(max(np.abs(AD[f"base_model.model.{t[:-7]}.lora_A.weight"] - A[t].detach().numpy()).max(),
                np.abs(AD[f"base_model.model.{t[:-7]}.lora_B.weight"] - Bm[t].detach().numpy()).max()) for t in targets)
moved = max(np.abs(AD[f"base_model.model.{t[:-7]}.lora_B.weight"]).max() for t in targets)
check(worst < 5e-5 and moved > 1e-3, f"exported adapters vs torch (max diff {worst:.2g}; B moved up to {moved:.3g})")

# --- PEFT adapter applied by hand == merged export; untargeted weights unchanged
_, WF = ref_model.load_dir(os.path.join(out, "final"))
Wh = {k: torch.tensor(v, dtype=torch.float64) for k, v in W0.items()}
for t in targets:
    m = t[:-len(".weight")]
    Wh[t] = Wh[t] + S * torch.tensor(AD[f"base_model.model.{m}.lora_B.weight"], dtype=torch.float64) @ \
        torch.tensor(AD[f"base_model.model.{m}.lora_A.weight"], dtype=torch.float64)
batch = ref_model.dpo_batch(pairs, list(range(8)))
with torch.no_grad():
    lp_peft, _ = ref_model.forward(cfg, Wh, *batch)
    lp_final, _ = ref_model.forward(cfg, {k: torch.tensor(v, dtype=torch.float64) for k, v in WF.items()}, *batch)
    lp_base, _ = ref_model.forward(cfg, base, *batch)
d, moved = (lp_peft - lp_final).abs().max().item(), (lp_peft - lp_base).abs().max().item()
check(d < 1e-4 and moved > 1e-3, f"adapter applied by hand gives the merged export's log-probs (max diff {d:.2g}; "
      f"vs base {moved:.3g})")
same = all(np.array_equal(WF[k], W0[k]) for k in W0 if k not in targets)
check(same, "weights outside the targets are bit-identical to the base")

# --- 2 ranks, ZeRO-1: the same adapters (gradients summed over ranks; fp32 rounding)
out2 = os.path.join(WORK, "dpo2")
dpo(out2, 2, extra=("--zero1",))
AD2 = ref_model.st_read(os.path.join(out2, "adapter", "adapter_model.safetensors"))
d = max(np.abs(AD2[k] - AD[k]).max() for k in AD)
check(d < 1e-5, f"2 ranks (ZeRO-1) give the 1-rank adapters (max diff {d:.2g})")

# --- lora_dropout 0.1: PEFT's nn.Dropout on the adapter input, masks re-derived here, 1 rank and 2 ranks (ZeRO-1)
acfg = json.load(open(os.path.join(out_drop, "adapter", "adapter_config.json")))
check(acfg["lora_dropout"] == DROP, f"adapter_config.json lora_dropout = {acfg['lora_dropout']}")
losses_d, A_d, B_d = replay(1, DROP)
check_replay(out_drop, 1, DROP, losses_d)
ADd = ref_model.st_read(os.path.join(out_drop, "adapter", "adapter_model.safetensors"))
worst = max(max(np.abs(ADd[f"base_model.model.{t[:-7]}.lora_A.weight"] - A_d[t].detach().numpy()).max(),
                np.abs(ADd[f"base_model.model.{t[:-7]}.lora_B.weight"] - B_d[t].detach().numpy()).max()) for t in targets)
check(worst < 5e-5, f"exported adapters with dropout vs torch (max diff {worst:.2g})")
bite = max(abs(a - b) for a, b in zip(c_losses(out_drop), c_losses(out)))
check(bite > 1e-4, f"dropout changes the run (losses differ from dropout 0 by up to {bite:.3g})")
out_drop2 = os.path.join(WORK, "dpo_drop2")
dpo(out_drop2, 2, DROP, extra=("--zero1",))
losses_d2, _, _ = replay(2, DROP)
check_replay(out_drop2, 2, DROP, losses_d2)

# --- stop at step 4 (SIGUSR1 -> checkpoint, exit 99), resume: the uninterrupted run's adapters, bit for bit
out_res = os.path.join(WORK, "dpo_resume")
cmd = [str(c) for c in dpo_cmd(out_res, 1, DROP)]
p1 = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, QUORUM_TEST_SIGNAL_AFTER_STEP="4"))
check(p1.returncode == 99 and len(c_losses(out_res)) == 4, f"stopped after step 4 (exit {p1.returncode})")
dpo(out_res, 1, DROP)
ADr = ref_model.st_read(os.path.join(out_res, "adapter", "adapter_model.safetensors"))
check(all(np.array_equal(ADr[k], ADd[k]) for k in ADd), "resumed run with dropout: adapters bit-identical")

finish()
