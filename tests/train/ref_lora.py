"""ref_lora.py - `quorum dpo --lora-r` on a tiny random Llama (init-model) and a few HH-RLHF pairs, replayed
in float64 torch with LoRA written out by hand (W = W0 + alpha/r * B @ A on the targeted weights,
tests/model/ref_model.py's Llama), torch.optim.AdamW over the adapters only, clip_grad_norm_ and the HF
cosine-with-warmup schedule, on the exact tokenized pairs, batch order and initial adapters the C run
dumped. Checks: the initial adapters (A within PEFT's kaiming bound, B = 0), the loss of each of 8 steps
(grad_accum 2), the exported PEFT adapter (config, tensor names and shapes, values vs torch), that the
adapter applied by hand to the base gives the log-probs of the merged export (final/), that untargeted
weights did not move, and that 2 ranks (ZeRO-1) give the 1-rank adapters.
usage: ref_lora.py QUORUM MPIEXEC NPFLAG SHARED_DIR WORKDIR"""
import json, math, os, shutil, sys
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


def dpo(out, ranks, extra=(), env=None):
    sh(MPIEXEC, NP, str(ranks), "--oversubscribe", QUORUM, "dpo", "--policy", pol, "--corpus-dir", corpus,
       "--out", out, "--steps", str(STEPS), "--batch-size", str(B), "--grad-accum", "2", "--lr", str(LR),
       "--weight-decay", str(WD), "--grad-clip", str(CLIP), "--warmup-steps", str(WARM), "--schedule", "cosine",
       "--beta", str(BETA), "--max-length", "40", "--max-prompt-length", "24", "--checkpoint-every", "0", "--quiet",
       "--lora-r", str(R), "--lora-alpha", str(ALPHA), "--lora-targets", TARGETS, *extra, env=env)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
sh(QUORUM, "ingest", "--out", WORK, "--name", "hh", "--format", "hh", "--max-pairs", "24", HH)
corpus = os.path.join(WORK, "corpora", "hh")
pol = os.path.join(WORK, "policy")
sh(QUORUM, "init-model", "--arch", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2",
   "--tokenizer", TOK, "--head", "lm", "--seed", "9", "--out", pol)
out = os.path.join(WORK, "dpo")
dpo(out, 1, env={"QUORUM_TEST_DUMP_PAIRS": os.path.join(WORK, "pairs.json")})

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
A = {t: torch.tensor(A0[t], dtype=torch.float64, requires_grad=True) for t in targets}
Bm = {t: torch.tensor(B0[t], dtype=torch.float64, requires_grad=True) for t in targets}
S = ALPHA / R


def merged(A, Bm):
    W = dict(base)
    for t in targets:
        W[t] = base[t] + S * Bm[t] @ A[t]
    return W


ref = torch.tensor([p["ref"] for p in pairs], dtype=torch.float64)
with torch.no_grad():
    o, _ = ref_model.forward(cfg, base, *ref_model.dpo_batch(pairs, list(range(len(pairs)))))
    n = len(pairs)
    d = max(abs(o[:n] - ref[:, 0]).max().item(), abs(o[n:] - ref[:, 1]).max().item())
check(d < 1e-3, f"reference log-probs = the base model's (max diff {d:.3g})")
adapters = [A[t] for t in targets] + [Bm[t] for t in targets]
opt = torch.optim.AdamW(adapters, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD)
losses = []
for step in range(STEPS):
    idx = order[step * B:(step + 1) * B]
    W = merged(A, Bm)
    loss = 0
    for a in range(2):  # grad_accum 2: two micro-batches of B/2, loss a mean over the global batch
        mb = idx[a * B // 2:(a + 1) * B // 2]
        o, _ = ref_model.forward(cfg, W, *ref_model.dpo_batch(pairs, mb))
        k = len(mb)
        z = (o[:k] - o[k:]) - (ref[mb, 0] - ref[mb, 1])
        loss = loss - torch.nn.functional.logsigmoid(BETA * z).sum() / B
    ref_model.optimizer_step(opt, loss, adapters, CLIP, ref_model.hf_lr(step, LR, WARM, STEPS))
    losses.append(loss.item())

met = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
cl = [m["loss"] for m in met]
print("C     losses:", " ".join(f"{x:.7f}" for x in cl))
print("torch losses:", " ".join(f"{x:.7f}" for x in losses))
dl = max(abs(a - b) for a, b in zip(cl, losses))
check(len(cl) == STEPS and dl < 1e-6, f"per-step LoRA DPO loss vs float64 torch, {STEPS} steps (max diff {dl:.2g})")
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

finish()
