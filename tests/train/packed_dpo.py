"""packed_dpo.py - packed DPO (`dpo --packed`: each pair's prompt computed once, flash attention) equals unpacked:
  1. one micro-batch (test_packed): per-pair log-probs, the DPO loss and every parameter gradient, packed vs the
     padded forward (its attention flash-style, and the T^2 path), on tiny gpt2, llama (GQA 4/2) and gemma2 (sliding window 8 and attention softcap that bite)
     policies: on real HH pairs rendered with the policy's template when ../shared is present, and on random
     token pairs (some responses starting alike) always;
  2. (../shared present) 6 steps of `dpo --packed` vs `dpo` on 24 HH pairs (gpt2 and llama, grad_accum 2): every
     step's metrics and the exported weights agree within fp32 rounding; with --recompute (activation
     recomputation per block) each run's metrics and weights are bit-identical to the same run without it.
usage: packed_dpo.py micro|cli TEST_PACKED TRAIN_TOOL QUORUM SHARED_DIR WORKDIR (micro: part 1, cli: part 2, which
skips (77) without ../shared)"""
import json, os, shutil, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
sys.path.insert(0, os.path.join(HERE, ".."))
import ref_model  # noqa: E402
from support import check, finish, sh, skip, verbose  # noqa: E402
verbose()

PART, TEST, TOOL, QUORUM, SHARED, WORK = sys.argv[1:7]
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
HH = os.path.join(SHARED, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
TOKS = {t: os.path.join(SHARED, "tokenizers", t) for t in ("gpt2", "mistral")}
have_shared = os.path.exists(HH) and all(os.path.exists(os.path.join(d, "tokenizer.json")) for d in TOKS.values())

def edit_config(d, **kv):
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    cfg.update(kv)
    json.dump(cfg, open(p, "w"), indent=1)

def micro(policy, corpus, label):
    """packed vs padded on the flash path (the training default), and vs padded on the T^2 path (another attention
    implementation: QUORUM_ATTENTION=t2 applies to the padded forward only)"""
    for attn in ("flash", "t2"):
        p = sh(TEST, policy, corpus, "64", "40", env={"QUORUM_ATTENTION": attn})
        print(f"{label}, padded on {attn}: {p.stdout.strip()}")
        check(True, f"{label}, padded on {attn}: packed == padded")

# random token pairs on the torch fixtures' configs (no tokenizer needed)
import torch  # noqa: E402
for i, (name, edits) in enumerate((("gpt2_lm", {"n_positions": 64}), ("llama_lm", {}), ("gemma2_lm", {"sliding_window": 8}))):
    cfg, dtype, opts = ref_model.CASES[name]
    cfg = {**cfg, **edits}
    d = os.path.join(WORK, "fx_" + name)
    ref_model.write_checkpoint(d, cfg, ref_model.random_weights(cfg, torch.Generator().manual_seed(50 + i), opts),
                               "F32", opts)
    if PART == "micro":
        micro(d, "-", f"{name} random pairs")

if not have_shared:
    if PART == "cli":
        skip(f"no HH data / tokenizers under {SHARED}")
    print(f"no HH data / tokenizers under {SHARED}: the HH micro-batches are skipped")
    finish()

sh(QUORUM, "ingest", "--out", WORK, "--name", "hh", "--format", "hh", "--max-pairs", "24", HH)
corpus = os.path.join(WORK, "corpora", "hh")
pols = {}
for arch, tok, extra in (("gpt2", "gpt2", ["--heads", "2", "--max-pos", "128"]),
                         ("llama", "mistral", ["--heads", "4", "--kv-heads", "2"]),  # 32K vocab: a faster head
                         ("gemma2", "mistral", ["--heads", "4", "--kv-heads", "2"])):
    d = os.path.join(WORK, arch)
    sh(TOOL, "init-model", "--arch", arch, "--layers", "2", "--dim", "32", *extra, "--tokenizer", TOKS[tok],
       "--head", "lm", "--seed", "3", "--out", d)
    if arch == "gemma2":  # a window shorter than the pairs, a softcap the tiny init's scores reach
        edit_config(d, sliding_window=8, attn_logit_softcapping=0.05)
    pols[arch] = d
    if PART == "micro":
        micro(d, corpus, f"{arch} HH pairs")
        micro(d, "-", f"{arch} random pairs")
if PART == "micro":
    finish()

def metrics(out):
    return [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]

TIMING = ("tokens_per_s", "step_s", "allreduce_s")
KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "grad_norm")
for arch in ("gpt2", "llama"):
    outs = {}
    for packed in (0, 1):
        for rec in (0, 1):
            out = os.path.join(WORK, f"dpo_{arch}_{'packed' if packed else 'padded'}{'_recompute' if rec else ''}")
            sh(TOOL, "dpo", "--policy", pols[arch], "--corpus-dir", corpus, "--out", out, "--steps", "6",
               "--batch-size", "4", "--grad-accum", "2", "--lr", "1e-3", "--beta", "0.1", "--max-length", "64",
               "--max-prompt-length", "40", "--checkpoint-every", "0", "--quiet", *(["--packed"] if packed else []),
               *(["--recompute"] if rec else []))
            outs[packed, rec] = out
        untimed = lambda out: [{k: v for k, v in m.items() if k not in TIMING} for m in metrics(out)]
        same_m = untimed(outs[packed, 0]) == untimed(outs[packed, 1])
        same_w = open(os.path.join(outs[packed, 0], "final", "model.safetensors"), "rb").read() == \
            open(os.path.join(outs[packed, 1], "final", "model.safetensors"), "rb").read()
        check(same_m and same_w, f"{arch} {'packed' if packed else 'padded'}: --recompute gives bit-identical metrics "
              f"({same_m}) and weights ({same_w})")
    outs = {p: outs[p, 0] for p in (0, 1)}
    mu, mp = metrics(outs[0]), metrics(outs[1])
    check(len(mu) == len(mp) == 6, f"{arch}: 6 steps each")
    worst = max(abs(a[k] - b[k]) / max(1.0, abs(a[k])) for a, b in zip(mu, mp) for k in KEYS)
    tps = (np.mean([m["tokens_per_s"] for m in mu]), np.mean([m["tokens_per_s"] for m in mp]))
    _, wu = ref_model.load_dir(os.path.join(outs[0], "final"))
    _, wp = ref_model.load_dir(os.path.join(outs[1], "final"))
    werr = max(float(np.max(np.abs(wu[k] - wp[k]))) for k in wu)
    wmax = max(float(np.max(np.abs(wu[k]))) for k in wu)
    print(f"{arch}: 6 steps padded vs packed: metrics max rel diff {worst:.3g} (loss {mu[-1]['loss']:.6f} vs "
          f"{mp[-1]['loss']:.6f}); final weights max abs diff {werr:.3g} (max |w| {wmax:.3g}); tokens/s "
          f"{tps[0]:.0f} vs {tps[1]:.0f}")
    check(worst < 1e-4, f"{arch}: per-step metrics agree within 1e-4 relative ({worst:.3g})")
    check(werr < 1e-5 * max(1.0, wmax), f"{arch}: final weights agree within 1e-5 ({werr:.3g})")
finish()
