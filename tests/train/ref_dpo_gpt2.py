"""ref_dpo_gpt2.py - `quorum dpo` on a tiny random GPT-2 (init-model) and a few HH-RLHF pairs, replayed in
torch (tests/model/ref_model.py's GPT-2, float64) with torch.optim.AdamW, clip_grad_norm_ and the HF
cosine-with-warmup schedule, on the exact tokenized pairs and batch order the C run dumped. Checks:
init-model's checkpoint (normal(0,0.02) / zeros / ones), the cached reference log-probs, the loss of
each of 10 steps (grad_accum 2), and the exported final weights.
usage: ref_dpo_gpt2.py QUORUM TRAIN_TOOL SHARED_DIR WORKDIR"""
import json, math, os, sys
import numpy as np
import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import ref_model  # noqa: E402

QUORUM, TOOL, SHARED, WORK = sys.argv[1:5]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, sh, tiny_gpt2_dpo_setup, verbose  # noqa: E402
verbose()
STEPS, B, LR, WD, CLIP, WARM, BETA = 10, 4, 2e-3, 0.01, 1.0, 2, 0.1
_, pol, TOK = tiny_gpt2_dpo_setup(QUORUM, TOOL, SHARED, WORK)
out = os.path.join(WORK, "dpo")
sh(TOOL, "dpo", "--policy", pol, "--corpus-dir", os.path.join(WORK, "corpora", "hh"), "--out", out,
   "--steps", str(STEPS), "--batch-size", str(B), "--grad-accum", "2", "--lr", str(LR), "--weight-decay", str(WD),
   "--grad-clip", str(CLIP), "--warmup-steps", str(WARM), "--schedule", "cosine", "--beta", str(BETA),
   "--max-length", "40", "--max-prompt-length", "24", "--checkpoint-every", "0", "--quiet",
   env={"QUORUM_TEST_DUMP_PAIRS": os.path.join(WORK, "pairs.json")})

def check_init(W, tag):
    """HF init: biases 0, norm weights 1, every other tensor ~ normal(0, 0.02)"""
    bad = []
    for name, a in W.items():
        if name.endswith("bias"):
            ok = np.all(a == 0)
        elif ".ln_" in name or "norm" in name:
            ok = np.all(a == 1)
        else:
            ok = a.size < 64 or (abs(a.std() - 0.02) < 0.003 and abs(a.mean()) < 0.003)
        if not ok:
            bad.append(name)
    check(not bad, f"init-model {tag}: {len(W)} tensors with HF init {bad}")

cfg, W0 = ref_model.load_dir(pol)
check_init(W0, "gpt2 lm")
check(cfg["vocab_size"] == 50257 and "lm_head.weight" not in W0, "init-model: gpt2 vocab, tied head")
LTOK = os.path.join(SHARED, "tokenizers", "llama3")
if os.path.exists(os.path.join(LTOK, "tokenizer.json")):
    lm = os.path.join(WORK, "llama")
    sh(TOOL, "init-model", "--arch", "llama", "--layers", "1", "--dim", "16", "--heads", "4", "--kv-heads", "2",
       "--tokenizer", LTOK, "--head", "lm", "--seed", "2", "--out", lm)
    lcfg, LW = ref_model.load_dir(lm)
    check_init(LW, "llama lm")
    check(lcfg["num_key_value_heads"] == 2 and list(LW["model.layers.0.self_attn.k_proj.weight"].shape) == [8, 16]
          and LW["lm_head.weight"].shape[0] == lcfg["vocab_size"] >= 128000, "init-model: llama GQA shapes, untied head")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    o, _ = ref_model.forward(lcfg, {k: torch.tensor(v, dtype=torch.float64) for k, v in LW.items()}, ids,
                             torch.tensor([5]), torch.ones(1, 5))
    check(abs(o.item() / 4 + math.log(lcfg["vocab_size"])) < 0.25, f"init-model llama: near-uniform LM at init ({o.item() / 4:.3f}/token)")

data = json.load(open(os.path.join(WORK, "pairs.json")))
pairs, order = data["pairs"], data["order"]
check(len(pairs) >= 20 and all(len(p["chosen"]) <= 40 and len(p["rejected"]) <= 40 for p in pairs),
      f"{len(pairs)} pairs, truncated to max_length 40")

params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in W0.items()}
with torch.no_grad():
    ref = []
    for s in range(0, len(pairs), 8):
        idx = list(range(s, min(len(pairs), s + 8)))
        o, _ = ref_model.forward(cfg, params, *ref_model.dpo_batch(pairs, idx))
        ref += list(zip(o[:len(idx)].tolist(), o[len(idx):].tolist()))
ref = torch.tensor(ref, dtype=torch.float64)
c_ref = torch.tensor([p["ref"] for p in pairs], dtype=torch.float64)
d = (c_ref - ref).abs().max().item()
check(torch.allclose(c_ref, ref, rtol=1e-4, atol=1e-3), f"reference log-probs vs torch (max diff {d:.3g}, values ~{ref.abs().mean():.0f})")

# HF Trainer's groups (what TRL uses): no decay for biases and LayerNorm weights
decay = [p for k, p in params.items() if p.dim() > 1]
no_decay = [p for k, p in params.items() if p.dim() == 1]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=LR, betas=(0.9, 0.999), eps=1e-8)
losses = []
for step in range(STEPS):
    idx = order[step * B:(step + 1) * B]
    o, _ = ref_model.forward(cfg, params, *ref_model.dpo_batch(pairs, idx))
    z = (o[:B] - o[B:]) - (ref[idx, 0] - ref[idx, 1])
    loss = -torch.nn.functional.logsigmoid(BETA * z).mean()
    ref_model.optimizer_step(opt, loss, list(params.values()), CLIP, ref_model.hf_lr(step, LR, WARM, STEPS))
    losses.append(loss.item())

met = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
cl = [m["loss"] for m in met]
print("C     losses:", " ".join(f"{x:.6f}" for x in cl))
print("torch losses:", " ".join(f"{x:.6f}" for x in losses))
check(len(cl) == STEPS and np.allclose(cl, losses, rtol=1e-3, atol=1e-5), "per-step DPO loss vs torch (10 steps)")
check(losses[-1] < losses[0] - 1e-3, "the loss moved down")
_, Wf = ref_model.load_dir(os.path.join(out, "final"))
worst = max(float(np.max(np.abs(Wf[k] - params[k].detach().numpy()))) for k in params)
moved = max(float(np.max(np.abs(Wf[k] - W0[k]))) for k in params)
check(worst < 2e-4 and moved > 5e-3, f"exported final weights vs torch (max diff {worst:.3g}; moved up to {moved:.3g})")
check(os.path.exists(os.path.join(out, "final", "tokenizer.json")), "final/ has the tokenizer files")

# ---- rm-train: Bradley-Terry with margin and reward centering on slice 1/3, replayed the same way
rm0, rout = os.path.join(WORK, "rm0"), os.path.join(WORK, "rm")
sh(TOOL, "init-model", "--arch", "gpt2", "--layers", "2", "--dim", "32", "--heads", "2", "--max-pos", "64",
   "--tokenizer", TOK, "--head", "score", "--seed", "6", "--out", rm0)
RM_STEPS, MARGIN, CENTER = 4, 0.2, 0.01
sh(TOOL, "rm-train", "--model", rm0, "--corpus-dir", os.path.join(WORK, "corpora", "hh"), "--out", rout,
   "--slice", "1/3", "--steps", str(RM_STEPS), "--batch-size", str(B), "--lr", str(LR), "--margin", str(MARGIN),
   "--center-rewards", str(CENTER), "--max-length", "40", "--checkpoint-every", "0", "--quiet",
   env={"QUORUM_TEST_DUMP_PAIRS": os.path.join(WORK, "rm_pairs.json")})
rdata = json.load(open(os.path.join(WORK, "rm_pairs.json")))
ids_all = [p["id"] for p in pairs]
check([p["id"] for p in rdata["pairs"]] == ids_all[1::3], "rm-train --slice 1/3 keeps pairs 1, 4, 7, ...")
pairs, order = rdata["pairs"], rdata["order"]
rcfg, R0 = ref_model.load_dir(rm0)
check(rcfg["architectures"] == ["GPT2ForSequenceClassification"] and list(R0["score.weight"].shape) == [1, 32],
      "init-model --head score: GPT2ForSequenceClassification with a [1, C] score head")
params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in R0.items()}
opt = torch.optim.AdamW(list(params.values()), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
losses = []
for step in range(RM_STEPS):
    idx = order[step * B:(step + 1) * B]
    o, _ = ref_model.forward(rcfg, params, *ref_model.dpo_batch(pairs, idx))
    rc, rr = o[:B], o[B:]
    loss = (-torch.nn.functional.logsigmoid(rc - rr - MARGIN)).mean() + CENTER * ((rc + rr) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
    opt.step()
    losses.append(loss.item())
cl = [json.loads(l)["loss"] for l in open(os.path.join(rout, "metrics.jsonl"))]
print("C     rm losses:", " ".join(f"{x:.6f}" for x in cl))
print("torch rm losses:", " ".join(f"{x:.6f}" for x in losses))
check(len(cl) == RM_STEPS and np.allclose(cl, losses, rtol=1e-3, atol=1e-5), "per-step Bradley-Terry loss vs torch")
_, Rf = ref_model.load_dir(os.path.join(rout, "final"))
worst = max(float(np.max(np.abs(Rf[k] - params[k].detach().numpy()))) for k in params)
check(worst < 2e-4, f"rm-train exported weights vs torch (max diff {worst:.3g})")
finish()
