#!/usr/bin/env python3
"""tests/gpu/device_bench.py BENCH_EXE WORK OUT_JSON - on a GPU machine (tests/gpu/device_check.sh run): quorum's
CUDA engine vs HF transformers on the same random-init reward models and inputs, one run.

Models (written here with transformers' own init, saved as bf16 safetensors): GPT-2-small-sized
(GPT2ForSequenceClassification, 12 layers), a ~1B Llama (Llama-3.2-1B shape: 2048 wide, 16 layers, GQA 32/8) and an
8B-shaped Llama (Llama-3-8B layer shape, 4 of its 32 layers: the numbers are per-layer representative). Inputs:
P pairs of random tokens of length T whose two sequences share their first T/2 tokens (a prompt).
Per (model, T): transformers bf16 + sdpa (padded batch of 2P) and quorum (BENCH_EXE = bench_model_score_cuda,
bf16 weights kept, fp32 activations) padded and packed + shared, each timed warm (second repetition);
rewards of quorum vs transformers computing in fp32 on the same bf16 weights (parity), tokens/s, pairs/s and
MFU = 2 * (non-embedding params) * tokens / s / 989e12 (H200 dense bf16 peak; attention flops not counted).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import ref_model  # noqa: E402  (safetensors writer in the benchmark's batch format)

PEAK = 989e12
MODELS = {
    "gpt2_small": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024), (512,)),
    "llama_1b": ("llama", dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                               rope_theta=500000.0), (512, 2048, 4096)),
    "llama_8b_4layers": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=4,
                                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                       max_position_embeddings=8192, rope_theta=500000.0), (512, 2048, 4096)),
}


def make_model(kind, kw, d):
    import transformers as tf
    torch.manual_seed(0)
    cfg = (tf.GPT2Config if kind == "gpt2" else tf.LlamaConfig)(num_labels=1, pad_token_id=0, **kw)
    model = tf.AutoModelForSequenceClassification.from_config(cfg).to(torch.bfloat16)
    model.save_pretrained(d, safe_serialization=True)
    return cfg


def batch(P, T, V, path):
    g = torch.Generator().manual_seed(T)
    ids = torch.randint(1, V, (2 * P, T), generator=g)
    ids[1::2, : T // 2] = ids[0::2, : T // 2]  # each pair shares its prompt
    a = ids.float().numpy()
    lens = np.full(2 * P, T, np.float32)
    ref_model.st_write(path, [("all_ids", a), ("all_lens", lens), ("ids.0", a), ("lens.0", lens)])
    return ids


def hf_run(d, ids, dtype):
    import transformers as tf
    m = tf.AutoModelForSequenceClassification.from_pretrained(d, dtype=dtype, attn_implementation="sdpa").cuda().eval()
    x = ids.cuda()
    with torch.no_grad():
        m(input_ids=x)  # warm
        torch.cuda.synchronize()
        t0 = time.time()
        r = m(input_ids=x).logits.float().squeeze(-1)
        torch.cuda.synchronize()
        dt = time.time() - t0
    n_params = sum(p.numel() for n, p in m.named_parameters() if "embed" not in n and "wte" not in n and "wpe" not in n)
    del m
    torch.cuda.empty_cache()
    return r.cpu().numpy(), dt, n_params


def quorum_run(exe, d, bfile, extra):
    env = dict(os.environ, QUORUM_MODEL_BACKEND="cuda", QUORUM_BENCH_REPS="2")
    out = subprocess.run([exe, d, bfile, bfile + ".f32"] + extra, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout), np.fromfile(bfile + ".f32", dtype=np.float32)


def main():
    exe, work, out_json = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    res = {"device": torch.cuda.get_device_name(0), "peak_flops": PEAK, "runs": []}
    for name, (kind, kw, Ts) in MODELS.items():
        d = os.path.join(work, name)
        try:
            make_model(kind, kw, d)
        except Exception as e:  # noqa: BLE001  (record and go on: one call must bring everything back)
            res["runs"].append({"model": name, "error": f"make: {e}"})
            continue
        for T in Ts:
            P = max(1, 4096 // T)
            row = {"model": name, "T": T, "pairs": P}
            try:
                bfile = os.path.join(work, f"{name}_{T}.safetensors")
                ids = batch(P, T, kw["vocab_size"], bfile)
                r_hf, dt_hf, n_params = hf_run(d, ids, torch.bfloat16)
                r_ref, _, _ = hf_run(d, ids, torch.float32) if T <= 2048 else (None, 0, 0)
                toks = 2 * P * T
                row["hf_bf16_sdpa"] = {"seconds": dt_hf, "tokens_per_s": toks / dt_hf, "pairs_per_s": P / dt_hf,
                                       "mfu": 2 * n_params * toks / dt_hf / PEAK}
                for tag, extra in (("quorum_padded", []), ("quorum_packed_shared", ["packed", str(toks), "1"])):
                    j, r = quorum_run(exe, d, bfile, extra)
                    run_toks = j["padded_tokens"]
                    row[tag] = {"seconds": j["seconds"], "tokens_per_s": toks / j["seconds"],
                                "pairs_per_s": P / j["seconds"], "tokens_run": run_toks,
                                "mfu": 2 * n_params * run_toks / j["seconds"] / PEAK}
                    if r_ref is not None:
                        row[tag]["max_rel_diff_vs_hf_fp32"] = float(np.max(np.abs(r - r_ref)) / max(1e-6, np.max(np.abs(r_ref))))
                    row[tag]["max_rel_diff_vs_hf_bf16"] = float(np.max(np.abs(r - r_hf)) / max(1e-6, np.max(np.abs(r_hf))))
                row["speedup_pairs_per_s"] = row["quorum_packed_shared"]["pairs_per_s"] / row["hf_bf16_sdpa"]["pairs_per_s"]
            except Exception as e:  # noqa: BLE001
                row["error"] = str(e)[-2000:]
            res["runs"].append(row)
            print(json.dumps(row), flush=True)
            json.dump(res, open(out_json, "w"), indent=1)
    json.dump(res, open(out_json, "w"), indent=1)
    bad = [r for r in res["runs"] if "error" in r or any(
        r.get(t, {}).get("max_rel_diff_vs_hf_fp32", 0) > 5e-2 for t in ("quorum_padded", "quorum_packed_shared"))]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
