#!/usr/bin/env python3
"""device_dpo.py - the GPU part of issue 19 in one call (tests/gpu/device_check.sh run dpo):

  1. tracking: the same tiny GPT-2 policy and HH pairs, 10 DPO steps (grad_accum 2) on the CPU backend in fp32
     (full fine-tuning, and LoRA r 8), then on CUDA: fp32, fp32 --packed (the flash-attention backward kernels),
     fp32 --recompute, fp32 LoRA, --precision bf16 (fp32 master + moments) and bf16 LoRA --packed. Per-step
     loss, grad norm and margin of each CUDA run vs its CPU run: fp32 within rtol 2e-3, bf16 within the bf16
     tolerance below (bf16 keeps 8 bits of mantissa: ~4e-3 relative per weight read, over 10 steps).
  2. throughput: a ~1B Llama policy (Llama-3.2-1B shape: 16 x 2048, 32 heads, 8 kv heads, ffn 8192, GPT-2 vocab,
     tied head; random init) trains --bench-steps steps of batch 8 pairs at max_length 512 in --precision bf16:
     full fine-tuning, full --packed and LoRA (r 16, alpha 32, q,k,v,o,gate,up,down), with quorum and with a
     torch reference on exactly the batches
     quorum ran (QUORUM_TEST_DUMP_PAIRS): HF transformers LlamaForCausalLM loaded from the same folder, fp32
     weights under torch.autocast(bf16) (HF Trainer's bf16=True), sdpa attention, torch.optim.AdamW(fused), the
     same sigmoid loss on quorum's cached reference log-probs; LoRA by hand on the same modules (peft is not on
     the device image). Tokens/s = sequence tokens of a step / its wall time, median over steps 2..; MFU =
     flops/token x tokens/s / peak, flops/token = 6 N (full: forward 2N, backward 4N) or 4 N (LoRA: no weight
     gradients of the base), N = the policy's parameters; peak = --peak-tflops (H200 SXM dense bf16: 989).

usage: device_dpo.py QUORUM DATA WORK OUT_JSON [--bench-steps 4] [--peak-tflops 989] [--skip-bench]
  DATA: the folder device_check.sh pack wrote (corpora/hh + tokenizer/). Exit 0 when every check passed."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
from support import check, finish, verbose  # noqa: E402

BF16_RTOL, BF16_ATOL = 3e-2, 3e-3  # per-step loss / grad norm / margin of the bf16 run vs the fp32 CPU run
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def run(cmd, env=None, log=None):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if log is not None:
        log.append({"cmd": " ".join(cmd), "rc": p.returncode, "s": round(time.time() - t0, 1),
                    "tail": (p.stdout + p.stderr)[-1500:]})
    if p.returncode:
        print(f"FAILED ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}{p.stderr[-3000:]}", flush=True)
    return p


def dpo(q, policy, corpus, out, extra, env, log):
    shutil.rmtree(out, ignore_errors=True)
    p = run([q, "dpo", "--policy", policy, "--corpus-dir", corpus, "--out", out, "--quiet", *extra], env, log)
    if p.returncode:
        return None, p
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))], p


def tracking(q, data, work, res, log):
    pol = os.path.join(work, "tiny")
    run([q, "init-model", "--arch", "gpt2", "--layers", "2", "--dim", "64", "--heads", "4", "--max-pos", "128",
         "--tokenizer", os.path.join(data, "tokenizer"), "--head", "lm", "--seed", "4", "--out", pol], log=log)
    common = ["--steps", "10", "--batch-size", "8", "--grad-accum", "2", "--lr", "2e-3", "--weight-decay", "0.01",
              "--warmup-steps", "2", "--schedule", "cosine", "--max-length", "96", "--max-prompt-length", "48",
              "--checkpoint-every", "0"]
    corpus = os.path.join(data, "corpora", "hh")
    lora = ["--lora-r", "8", "--lora-alpha", "16", "--lora-targets", "c_attn,c_proj,c_fc"]
    refs = {}
    for base, extra in (("full", []), ("lora", lora)):
        refs[base], p = dpo(q, pol, corpus, os.path.join(work, "t_cpu_" + base), common + extra,
                            {"QUORUM_BACKEND": "cpu"}, log)
        check(refs[base] is not None, f"tracking: the CPU fp32 {base} run")
    runs = [("cuda_fp32", "full", [], 2e-3, 1e-5), ("cuda_fp32_packed", "full", ["--packed"], 2e-3, 1e-5),
            ("cuda_fp32_recompute", "full", ["--recompute"], 2e-3, 1e-5), ("cuda_fp32_lora", "lora", lora, 2e-3, 1e-5),
            ("cuda_bf16", "full", ["--precision", "bf16"], BF16_RTOL, BF16_ATOL),
            ("cuda_bf16_lora_packed", "lora", lora + ["--precision", "bf16", "--packed"], BF16_RTOL, BF16_ATOL)]
    for name, base, extra, rtol, atol in runs:
        ref = refs[base]
        met, p = dpo(q, pol, corpus, os.path.join(work, "t_" + name), common + extra, {}, log)
        check(met is not None and "on the cuda backend" in p.stdout + p.stderr, f"tracking: {name} ran on cuda")
        if met is None or ref is None:
            continue
        row = {}
        for key in ("loss", "grad_norm", "rewards/margins"):
            a, b = np.array([m[key] for m in met]), np.array([m[key] for m in ref])
            ok = len(a) == len(b) == 10 and bool(np.allclose(a, b, rtol=rtol, atol=atol))
            d = float(np.max(np.abs(a - b))) if len(a) == len(b) else float("nan")
            row[key] = {"max_abs_diff": d, "cuda": a.tolist(), "cpu": b.tolist()}
            check(ok, f"tracking: {name} per-step {key} vs CPU fp32 {base} (max diff {d:.3g}, rtol {rtol}, atol {atol})")
        res["tracking"][name] = row


def torch_reference(policy, dump, steps, lora, beta=0.1, lr=1e-5):
    """The same DPO steps in torch on quorum's batches; returns tokens/s per step and losses."""
    import torch
    import ref_model
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(policy, torch_dtype=torch.float32, attn_implementation="sdpa").cuda()
    model.config.use_cache = False
    if lora:
        model.requires_grad_(False)
        adapters = []
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name.split(".")[-1] in LORA_TARGETS.split(","):
                A = torch.nn.Parameter(torch.empty(16, mod.in_features, device="cuda").uniform_(
                    -mod.in_features ** -0.5, mod.in_features ** -0.5))
                B = torch.nn.Parameter(torch.zeros(mod.out_features, 16, device="cuda"))
                adapters += [A, B]
                mod.register_forward_hook(lambda m, x, y, A=A, B=B: y + (32 / 16) * ((x[0] @ A.t()) @ B.t()))
        params = adapters
    else:
        params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)
    pairs, order = dump["pairs"], dump["order"]
    ref = torch.tensor([p["ref"] for p in pairs], dtype=torch.float32, device="cuda")
    B = 8  # pairs per step, as quorum's --batch-size
    rates, losses = [], []
    for step in range(steps):
        idx = order[step * B:(step + 1) * B]
        ids, lens, mask = ref_model.dpo_batch(pairs, idx)
        ids, mask = ids.cuda(), mask.cuda()
        att = (torch.arange(ids.shape[1])[None, :] < lens[:, None]).long().cuda()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        seq = (lp * mask[:, 1:]).sum(-1)
        z = (seq[:B] - seq[B:]) - (ref[idx, 0] - ref[idx, 1])
        loss = -torch.nn.functional.logsigmoid(beta * z).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        torch.cuda.synchronize()
        rates.append(float(lens.sum()) / (time.perf_counter() - t0))
        losses.append(loss.item())
    del model, opt
    torch.cuda.empty_cache()
    return rates, losses


def n_params(policy):
    from safetensors import safe_open
    n = 0
    for f in os.listdir(policy):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(policy, f), "np") as st:
                for k in st.keys():
                    n += int(np.prod(st.get_slice(k).get_shape()))
    return n


def median_rate(rates):
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def bench(q, data, work, a, res, log):
    pol = os.path.join(work, "llama1b")
    p = run([q, "init-model", "--arch", "llama", "--layers", "16", "--dim", "2048", "--heads", "32", "--kv-heads", "8",
             "--ffn", "8192", "--max-pos", "4096", "--tokenizer", os.path.join(data, "tokenizer"), "--head", "lm",
             "--seed", "5", "--out", pol], log=log)
    if not check(p.returncode == 0, "bench: init-model of the ~1B Llama policy"):
        return
    N = n_params(pol)
    res["bench"]["n_params"] = N
    lora = ["--lora-r", "16", "--lora-alpha", "32", "--lora-targets", LORA_TARGETS]
    torch_rate = {}
    # mode, quorum options, flops per token / N, the torch reference it is compared with (same batches: same seed)
    for mode, extra, fpt, ref in (("full", [], 6, "full"), ("full_packed", ["--packed"], 6, "full"),
                                  ("lora", lora, 4, "lora")):
        dump = os.path.join(work, f"dump_{mode}.json")
        met, p = dpo(q, pol, os.path.join(data, "corpora", "hh"), os.path.join(work, "b_" + mode),
                     ["--steps", str(a.bench_steps), "--batch-size", "8", "--lr", "1e-5", "--max-length", "512",
                      "--max-prompt-length", "256", "--checkpoint-every", "0", "--precision", "bf16", *extra],
                     {"QUORUM_TEST_DUMP_PAIRS": dump}, log)
        if not check(met is not None, f"bench {mode}: quorum dpo ran"):
            continue
        q_rate = median_rate([m["tokens_per_s"] for m in met])
        row = {"quorum_tokens_per_s": q_rate, "quorum_mfu": fpt * N * q_rate / (a.peak_tflops * 1e12),
               "quorum_losses": [m["loss"] for m in met]}
        if ref not in torch_rate:
            try:
                t_rates, t_losses = torch_reference(pol, json.load(open(dump)), a.bench_steps, ref == "lora")
                torch_rate[ref] = median_rate(t_rates)
                row["torch_losses"] = t_losses
            except Exception as e:  # the quorum figure is still worth recording
                torch_rate[ref] = None
                row["torch_error"] = repr(e)[:500]
                check(False, f"bench {mode}: torch reference ({e!r:.200})")
        if torch_rate[ref]:
            t = torch_rate[ref]
            row.update(torch_tokens_per_s=t, torch_mfu=fpt * N * t / (a.peak_tflops * 1e12), ratio=q_rate / t)
        res["bench"][mode] = row
        print(f"bench {mode}: {json.dumps(row)}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("quorum")
    ap.add_argument("data")
    ap.add_argument("work")
    ap.add_argument("out_json")
    ap.add_argument("--bench-steps", type=int, default=4)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--skip-bench", action="store_true")
    a = ap.parse_args()
    verbose()
    os.makedirs(a.work, exist_ok=True)
    res, log = {"tracking": {}, "bench": {}}, []
    try:
        tracking(a.quorum, a.data, a.work, res, log)
        if not a.skip_bench:
            bench(a.quorum, a.data, a.work, a, res, log)
    finally:
        res["log"] = log
        with open(a.out_json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(a.out_json + ".tmp", a.out_json)
    finish()


if __name__ == "__main__":
    main()
