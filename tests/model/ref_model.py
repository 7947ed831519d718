#!/usr/bin/env python3
"""Torch reference of the HF decoder architectures quorum's model engine implements, written from the
semantics of transformers' modeling_gpt2 / modeling_llama / modeling_qwen2 / modeling_qwen3 /
modeling_mistral / modeling_gemma2 and the INF-ORM score head (no transformers install needed; Debian's
torch 1.13 is enough). Everything is computed in float64 from the
fp32 (or fp16/bf16) weights, so the C fp32 engine is compared against a more precise answer.

  ref_model.py make <out_dir> [<quorum> <shared>]  tiny random checkpoints + batches + reference outputs/grads
                                           (with quorum and ../shared: also *_hh_* fixtures on real HH pairs)
  ref_model.py check (<case_dir> <saved> <saved_sharded>)...  checkpoints written by quorum must reload here and give the
                                           same weights (bit-exact) and outputs as the original
  ref_model.py init <quorum> <tok> <work>  quorum init-model for llama/qwen3/gemma2 x lm/score/mlp (+ llama armo): tensors,
                                           init and a finite forward here
  ref_model.py bench <model_dir> <batches>  (benchmarks) time the reference forward on given batches

Per case folder: config.json, model.safetensors (or shards + index), ref.safetensors with F32 tensors
  ids (B,T) lens (B) mask (B,T) out (B) tok_logp (B,T) dseq (B) loss (1) grad.<hf name> (file layout).
out is the reward (reward models) or the masked sequence log-prob (causal LMs); dseq = dLoss/dout for a
DPO sigmoid loss over pairs (0,1), (2,3), ... with fixed reference log-probs.
"""
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

F64 = torch.float64

# ---------------------------------------------------------------- safetensors by hand


def st_write(path, tensors, dtype="F32"):
    """tensors: list of (name, np.ndarray). Writes F32/F16/BF16 with an 8-byte-aligned header."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype=np.float32)
        if dtype == "F16":
            raw = a.astype(np.float16).tobytes()
        elif dtype == "BF16":
            raw = (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # truncation: exact on read-back
        else:
            raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = body[b:en]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype=np.float32)
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {e['dtype']}")
        out[name] = a.reshape(e["shape"]).copy()
    return out


def load_dir(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(os.path.join(d, "model.safetensors")):
        w = st_read(os.path.join(d, "model.safetensors"))
    else:
        w = {}
        for shard in sorted(set(json.load(open(idx))["weight_map"].values())):
            w.update(st_read(os.path.join(d, shard)))
    cfg = json.load(open(os.path.join(d, "config.json")))
    if cfg["architectures"][0].startswith("GPT2"):  # hub files may drop the prefix
        w = {(k if k.startswith(("transformer.", "score.", "lm_head.")) else "transformer." + k): v for k, v in w.items()}
    return cfg, w

# ---------------------------------------------------------------- the architectures


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def attention(q, k, v, lens, scale=None, softcap=None, window=None):
    """q (B,NH,T,HD), k/v (B,NKV,T,HD): causal + key padding mask, GQA repeat_kv; scores * scale (default
    HD^-0.5), Gemma-2 tanh softcapping, sliding window as HF masking_utils: kv_idx > q_idx - window."""
    B, NH, T, HD = q.shape
    rep = NH // k.shape[1]
    k = k[:, :, None].expand(B, k.shape[1], rep, T, HD).reshape(B, NH, T, HD)
    v = v[:, :, None].expand(B, v.shape[1], rep, T, HD).reshape(B, NH, T, HD)
    s = q @ k.transpose(-1, -2) * (scale if scale is not None else 1.0 / math.sqrt(HD))
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    pos = torch.arange(T)
    causal = pos[None, :] <= pos[:, None]
    if window:
        causal = causal & (pos[None, :] > pos[:, None] - window)
    allowed = causal[None] & (pos[None, None, :] < lens[:, None, None])  # (B,T,T)
    s = s.masked_fill(~allowed[:, None], torch.finfo(s.dtype).min)
    return torch.softmax(s, -1) @ v


def rope_params(cfg, local=False):
    """(theta, scaling dict or None) from a v4 (rope_theta, rope_scaling) or v5 (rope_parameters) config;
    local: Gemma-3's sliding layers (rope_local_base_freq, no scaling)"""
    gemma3 = cfg["architectures"][0].startswith("Gemma3")
    rp = cfg.get("rope_parameters")
    if rp:
        if all(isinstance(x, dict) for x in rp.values()):  # one entry per layer type
            rp = rp["sliding_attention" if local else "full_attention"] if gemma3 else next(iter(rp.values()))
        return rp.get("rope_theta", 10000.0), rp
    if local:
        return cfg.get("rope_local_base_freq", 10000.0), None
    return cfg.get("rope_theta", 1e6 if gemma3 else 10000.0), cfg.get("rope_scaling")


def layer_windows(cfg):
    """sliding window of each layer (None = full attention), HF's layer_types rules"""
    arch, L, w = cfg["architectures"][0], cfg["num_hidden_layers"], cfg.get("sliding_window")
    if arch.startswith(("Qwen2", "Qwen3")) and not cfg.get("use_sliding_window", False):
        w = None
    if arch.startswith(("Gemma2", "Gemma3")) and "sliding_window" not in cfg:
        w = 4096
    if arch.startswith("Llama"):
        w = None
    if "layer_types" in cfg:
        return [w if t == "sliding_attention" else None for t in cfg["layer_types"]]
    if arch.startswith("Gemma2"):
        return [w if i % 2 == 0 else None for i in range(L)]
    if arch.startswith("Gemma3"):
        p = cfg.get("sliding_window_pattern", 6)
        return [w if (i + 1) % p else None for i in range(L)]
    if arch.startswith(("Qwen2", "Qwen3")):
        return [w if i >= cfg.get("max_window_layers", 28) else None for i in range(L)]
    return [w] * L


def rope_cos_sin(cfg, T, dt, local=False):
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    theta, rs = rope_params(cfg, local)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    if rs and rs.get("rope_type", rs.get("type")) == "linear":  # HF _compute_linear_scaling_rope_parameters
        inv = inv / rs["factor"]
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":  # HF _compute_llama3_parameters
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, scaled)
    freqs = torch.arange(T).float()[:, None] * inv[None, :]  # fp32 like HF
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos().to(dt), emb.sin().to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def gpt2_trunk(cfg, W, ids, lens):
    B, T = ids.shape
    C, NH = cfg["n_embd"], cfg["n_head"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (C,), W[p + ".weight"], W[p + ".bias"], eps)
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:T][None]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = ln(x, p + "ln_1")
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: x @ W[in,out] + b
        q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in qkv.split(C, -1))
        y = attention(q, k, v, lens).transpose(1, 2).reshape(B, T, C)
        x = x + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = ln(x, p + "ln_2")
        h = gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + h @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    return ln(x, "transformer.ln_f")


def gelu_tanh(x):
    return torch.nn.functional.gelu(x, approximate="tanh")


def llama_trunk(cfg, W, ids, lens):
    """Llama / Mistral / Qwen2 / Qwen3 / Gemma-2 decoder stack -> final-normed hidden states (B,T,C)"""
    B, T = ids.shape
    arch = cfg["architectures"][0]
    gemma, gemma3 = arch.startswith(("Gemma2", "Gemma3")), arch.startswith("Gemma3")
    qk_norm = arch.startswith("Qwen3") or gemma3
    C, NH = cfg["hidden_size"], cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    HD = cfg.get("head_dim") or (256 if gemma else C // NH)
    eps = cfg.get("rms_norm_eps", 1e-6)
    norm = (lambda x, w: rms_norm(x, 1.0 + w, eps)) if gemma else (lambda x, w: rms_norm(x, w, eps))
    scale = cfg.get("query_pre_attn_scalar", 256) ** -0.5 if gemma else None
    softcap = cfg.get("attn_logit_softcapping", None if gemma3 else 50.0) if gemma else None
    windows = layer_windows(cfg)
    dt = W["model.embed_tokens.weight"].dtype
    ropes = {False: rope_cos_sin(cfg, T, dt), True: rope_cos_sin(cfg, T, dt, local=True) if gemma3 else None}
    lin = lambda x, p: x @ W[p + ".weight"].T + (W[p + ".bias"] if p + ".bias" in W else 0)
    x = W["model.embed_tokens.weight"][ids]
    if gemma:  # HF: normalizer = torch.tensor(hidden_size ** 0.5, dtype=hidden dtype (fp32 here))
        x = x * torch.tensor(C ** 0.5, dtype=torch.float32).to(x.dtype)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = norm(x, W[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(B, T, NH, HD)
        k = lin(h, p + "self_attn.k_proj").view(B, T, NKV, HD)
        v = lin(h, p + "self_attn.v_proj").view(B, T, NKV, HD).transpose(1, 2)
        if qk_norm:  # per-head RMSNorm over head_dim, before RoPE (Gemma-3: 1 + w)
            q, k = norm(q, W[p + "self_attn.q_norm.weight"]) if gemma3 else rms_norm(q, W[p + "self_attn.q_norm.weight"], eps), \
                norm(k, W[p + "self_attn.k_norm.weight"]) if gemma3 else rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        cos, sin = ropes[gemma3 and windows[l] is not None]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        y = attention(q, k, v, lens, scale, softcap, windows[l]).transpose(1, 2).reshape(B, T, NH * HD)
        y = lin(y, p + "self_attn.o_proj")
        if gemma:
            y = norm(y, W[p + "post_attention_layernorm.weight"])
        x = x + y
        h = norm(x, W[p + ("pre_feedforward_layernorm" if gemma else "post_attention_layernorm") + ".weight"])
        act = gelu_tanh if gemma else torch.nn.functional.silu
        y = lin(act(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        if gemma:
            y = norm(y, W[p + "post_feedforward_layernorm.weight"])
        x = x + y
    return norm(x, W["model.norm.weight"])


ARMO_PATTERN = [128009, 128006, 78191, 128007, 271]  # Llama-3 "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def armo_reward(cfg, W, h, ids, lens):
    """ArmoRM (LlamaForRewardModelWithGating): objectives from the last token, gated by an MLP + softmax on the
    hidden state at the start of the LAST occurrence of the gating token pattern, through the transform"""
    pat = cfg.get("gating_token_pattern", ARMO_PATTERN)
    n, temp = cfg.get("gating_n_hidden", 3), cfg.get("gating_temperature", 10)
    out = []
    for b in range(ids.shape[0]):
        seq = ids[b, :lens[b]].tolist()
        j = max(i for i in range(len(seq) - len(pat) + 1) if seq[i:i + len(pat)] == pat)
        r = W["regression_layer.weight"] @ h[b, lens[b] - 1]
        x = h[b, j]
        for l in range(n + 1):
            x = W[f"gating.layers.{l}.weight"] @ x + W[f"gating.layers.{l}.bias"]
            x = torch.relu(x) if l < n else x
        g = torch.softmax(x / temp, -1) * W["gating.logit_scale"][0]
        out.append((g * (r @ W["reward_transform_matrix"])).sum())
    return torch.stack(out)


def is_rm(arch):
    return arch.endswith(("ForSequenceClassification", "ForRewardModelWithGating"))


def reward_head(W, h):
    """(B,T,C) -> (B,T): the linear score head, or INF-ORM's score.0 / ReLU / score.2 MLP"""
    if "score.0.weight" in W:
        z = torch.relu(h @ W["score.0.weight"].T + W["score.0.bias"])
        return (z @ W["score.2.weight"].T + W["score.2.bias"])[..., 0]
    return (h @ W["score.weight"].T)[..., 0]


def forward(cfg, W, ids, lens, mask):
    """-> out (B), tok_logp (B,T)"""
    arch = cfg["architectures"][0]
    h = (gpt2_trunk if arch.startswith("GPT2") else llama_trunk)(cfg, W, ids, lens)
    B, T = ids.shape
    if arch.endswith("ForRewardModelWithGating"):
        return armo_reward(cfg, W, h, ids, lens), torch.zeros(B, T, dtype=h.dtype)
    if arch.endswith("ForSequenceClassification"):
        r = reward_head(W, h)[torch.arange(B), lens - 1]  # last non-pad token
        return r, torch.zeros(B, T, dtype=h.dtype)
    emb = "transformer.wte.weight" if arch.startswith("GPT2") else "model.embed_tokens.weight"
    tied = cfg.get("tie_word_embeddings", arch.startswith(("GPT2", "Gemma2", "Gemma3")))
    head = W[emb] if tied else W["lm_head.weight"]
    logits = h @ head.T
    cap = cfg.get("final_logit_softcapping", 30.0 if arch.startswith("Gemma2") else None) if arch.startswith("Gemma") else None
    if cap:
        logits = torch.tanh(logits / cap) * cap
    logp = torch.log_softmax(logits, -1)  # (B,T,V)
    tok = torch.zeros(B, T, dtype=h.dtype)
    tok[:, 1:] = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    valid = mask.bool() & (torch.arange(T)[None] < lens[:, None]) & (torch.arange(T)[None] >= 1)
    tok = tok * valid
    return tok.sum(1), tok


def hf_lr(step, lr, warmup, total, cosine=True):
    """HF get_constant/cosine_schedule_with_warmup at 0-based optimizer step `step` (quorum's lr_at)."""
    if step < warmup:
        return lr * step / max(1, warmup)
    if not cosine:
        return lr
    return lr * max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def optimizer_step(opt, loss, params, clip, lr):
    """One replayed optimizer step as quorum's trainer takes it: backward, clip_grad_norm_, AdamW at lr."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def dpo_batch(pairs, idx):
    """A DPO micro-batch as quorum builds it from a QUORUM_TEST_DUMP_PAIRS dump: all chosen sequences, then
    all rejected, right-padded with 0; mask = response tokens. -> ids (2B,T), lens (2B,), mask (2B,T)"""
    seqs = [pairs[i]["chosen"] for i in idx] + [pairs[i]["rejected"] for i in idx]
    pl = [pairs[i]["prompt_len"] for i in idx] * 2
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T)
    for j, s in enumerate(seqs):
        ids[j, :len(s)] = torch.tensor(s)
        mask[j, pl[j]:len(s)] = 1
    return ids, torch.tensor([len(s) for s in seqs]), mask


def dpo_loss(out, ref, beta):
    """pairs (0,1), (2,3), ...: -mean logsigmoid(beta * ((c - ref_c) - (r - ref_r)))"""
    d = (out - ref).view(-1, 2)
    return -torch.nn.functional.logsigmoid(beta * (d[:, 0] - d[:, 1])).mean()

# ---------------------------------------------------------------- fixtures


CASES = {
    # name: (config, weight dtype, file options)
    "gpt2_rm": ({"architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2", "vocab_size": 97,
                 "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16, "n_inner": None,
                 "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "pad_token_id": 0,
                 "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}, "F32", {}),
    "gpt2_lm": ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 97, "n_embd": 32,
                 "n_layer": 2, "n_head": 4, "n_positions": 16, "activation_function": "gelu_new",
                 "layer_norm_epsilon": 1e-5}, "F32", {"drop_prefix": True}),
    "llama_rm": ({"architectures": ["LlamaForSequenceClassification"], "model_type": "llama", "vocab_size": 89,
                  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
                  "max_position_embeddings": 128, "tie_word_embeddings": False, "num_labels": 1,
                  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}, "F32", {}),
    "llama_lm": ({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 89,
                  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
                  "max_position_embeddings": 128, "tie_word_embeddings": False,
                  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}, "F32",
                 {"shards": 2}),
    "qwen2_rm": ({"architectures": ["Qwen2ForSequenceClassification"], "model_type": "qwen2", "vocab_size": 101,
                  "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6,
                  "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
                  "max_position_embeddings": 64, "tie_word_embeddings": True, "use_sliding_window": False,
                  "sliding_window": 32, "id2label": {"0": "LABEL_0"}}, "BF16", {}),
    "qwen2_lm": ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 101,
                  "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6,
                  "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
                  "max_position_embeddings": 64, "tie_word_embeddings": True, "use_sliding_window": False}, "F32", {}),
    "mistral_lm": ({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 83,
                    "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 1, "num_attention_heads": 4,
                    "num_key_value_heads": 1, "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                    "hidden_act": "silu", "max_position_embeddings": 64, "tie_word_embeddings": False,
                    "sliding_window": None}, "F16", {}),
    # sequences (T=11) longer than the window (4): the window is implemented, not refused
    "mistral_sw_lm": ({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 83,
                       "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
                       "max_position_embeddings": 64, "tie_word_embeddings": False, "sliding_window": 4}, "F32", {}),
    "qwen3_rm": ({"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3", "vocab_size": 101,
                  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                  "hidden_act": "silu", "max_position_embeddings": 64, "tie_word_embeddings": True,
                  "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
                  "id2label": {"0": "LABEL_0"}}, "BF16", {}),
    # explicit head_dim != hidden/heads, untied, sliding window on layers >= max_window_layers only
    "qwen3_lm": ({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 101,
                  "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "head_dim": 12, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                  "hidden_act": "silu", "max_position_embeddings": 64, "tie_word_embeddings": False,
                  "attention_bias": False, "use_sliding_window": True, "sliding_window": 5,
                  "max_window_layers": 1}, "F32", {}),
    # small softcaps so tanh bites; window 4 < T on layer 0
    "gemma2_rm": ({"architectures": ["Gemma2ForSequenceClassification"], "model_type": "gemma2", "vocab_size": 97,
                   "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
                   "max_position_embeddings": 64, "query_pre_attn_scalar": 24, "attn_logit_softcapping": 2.0,
                   "final_logit_softcapping": 3.0, "sliding_window": 4, "tie_word_embeddings": True,
                   "num_labels": 1}, "F32", {}),
    "gemma2_lm": ({"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 97,
                   "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4,
                   "num_key_value_heads": 1, "head_dim": 8, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
                   "query_pre_attn_scalar": 8, "attn_logit_softcapping": 2.0, "final_logit_softcapping": 3.0,
                   "sliding_window": 4, "tie_word_embeddings": True}, "BF16", {}),
    # INF-ORM's MLP score head on a Llama-3.1 trunk whose RoPE comes from a v5 rope_parameters block
    "llama_mlp_rm": ({"architectures": ["LlamaForSequenceClassification"], "model_type": "llama", "vocab_size": 89,
                      "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                      "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "hidden_act": "silu",
                      "max_position_embeddings": 128, "tie_word_embeddings": False, "num_labels": 1,
                      "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8}},
                     "F32", {"head": "mlp"}),
    # ArmoRM: 5 objectives, 2 hidden gating layers, a non-identity transform; batches carry the Llama-3
    # gating pattern (twice in row 0: the last occurrence counts), forward only
    # Gemma-3: q/k norms (1 + w), local RoPE base on the sliding layers, linear scaling on the full ones
    "gemma3_lm": ({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 97,
                   "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "rope_local_base_freq": 10.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
                   "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
                   "query_pre_attn_scalar": 8, "sliding_window": 4, "sliding_window_pattern": 2,
                   "final_logit_softcapping": None, "attn_logit_softcapping": None, "tie_word_embeddings": True},
                  "F32", {}),
    # the same read from a v5 config: layer_types + per-layer-type rope_parameters
    "gemma3_rm": ({"architectures": ["Gemma3TextForSequenceClassification"], "model_type": "gemma3_text",
                   "vocab_size": 97, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "rms_norm_eps": 1e-6,
                   "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                                       "sliding_attention": {"rope_type": "default", "rope_theta": 10.0}},
                   "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
                   "query_pre_attn_scalar": 16, "sliding_window": 5,
                   "layer_types": ["sliding_attention", "full_attention"], "num_labels": 1}, "F32", {}),
    "llama_armo_rm": ({"architectures": ["LlamaForRewardModelWithGating"], "model_type": "llama", "vocab_size": 128256,
                       "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "num_key_value_heads": 1, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
                       "max_position_embeddings": 64, "tie_word_embeddings": False, "num_objectives": 5,
                       "gating_hidden_dim": 12, "gating_n_hidden": 2, "gating_temperature": 0.5}, "F32",
                      {"armo": True}),
    # bf16 GPT-2: Conv1D matrices transposed on load as bf16, learned positions and the tied LM head in bf16
    "gpt2_bf16_lm": ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 97, "n_embd": 32,
                      "n_layer": 2, "n_head": 4, "n_positions": 16, "activation_function": "gelu_new",
                      "layer_norm_epsilon": 1e-5}, "BF16", {}),
}


# Per case, config edits that switch one feature off: make() asserts each changes the outputs by > 1e-3
# relative, so the fixture really exercises the window / softcap / scale / RoPE path the C engine must match.
NO_WINDOW = {"sliding_window": None, "layer_types": None}
FEATURE_OFF = {
    "mistral_sw_lm": [NO_WINDOW],
    "qwen3_lm": [{"use_sliding_window": False}],
    "gemma2_rm": [{"sliding_window": 1000}, {"attn_logit_softcapping": None}, {"query_pre_attn_scalar": 16}],
    "gemma2_lm": [{"sliding_window": 1000}, {"attn_logit_softcapping": None}, {"final_logit_softcapping": None},
                  {"query_pre_attn_scalar": 16}],
    "llama_mlp_rm": [{"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
                     {"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8}}],
    "llama_armo_rm": [{"gating_temperature": 1000.0}],
    "gemma3_lm": [{"rope_local_base_freq": 1000000.0}, {"rope_scaling": None}, {"sliding_window": 1000}],
    "gemma3_rm": [{"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                                       "sliding_attention": {"rope_type": "default", "rope_theta": 1e6}}}],
}


def check_features_bite(name, cfg, W, ids, lens, mask, out):
    for edit in FEATURE_OFF.get(name, []):
        c2 = {k: v for k, v in {**cfg, **edit}.items() if v is not None or k not in NO_WINDOW}
        with torch.no_grad():
            o2, _ = forward(c2, W, ids, lens, mask)
        d = float(((o2 - out.detach()).abs() / out.detach().abs().clamp(min=1.0)).max())
        assert d > 1e-3, f"{name}: switching off {edit} changes the outputs by only {d:.3g}"
        print(f"  {name}: without {list(edit)} outputs move by {d:.3g}")


def param_shapes(cfg, opts=None):
    """(name, shape) in the FILE layout, HF order."""
    arch = cfg["architectures"][0]
    out = []
    if arch.startswith("GPT2"):
        C, F, V = cfg["n_embd"], cfg.get("n_inner") or 4 * cfg["n_embd"], cfg["vocab_size"]
        out += [("transformer.wte.weight", (V, C)), ("transformer.wpe.weight", (cfg["n_positions"], C))]
        for l in range(cfg["n_layer"]):
            p = f"transformer.h.{l}."
            out += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)), (p + "attn.c_attn.weight", (C, 3 * C)),
                    (p + "attn.c_attn.bias", (3 * C,)), (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                    (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)), (p + "mlp.c_fc.weight", (C, F)),
                    (p + "mlp.c_fc.bias", (F,)), (p + "mlp.c_proj.weight", (F, C)), (p + "mlp.c_proj.bias", (C,))]
        out += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    else:
        C, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
        NH = cfg["num_attention_heads"]
        NKV, HD = cfg.get("num_key_value_heads", NH), cfg.get("head_dim") or C // NH
        bias = arch.startswith("Qwen2")
        gemma = arch.startswith(("Gemma2", "Gemma3"))
        out += [("model.embed_tokens.weight", (V, C))]
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            out += [(p + "input_layernorm.weight", (C,)), (p + "self_attn.q_proj.weight", (NH * HD, C)),
                    (p + "self_attn.k_proj.weight", (NKV * HD, C)), (p + "self_attn.v_proj.weight", (NKV * HD, C))]
            if bias:
                out += [(p + "self_attn.q_proj.bias", (NH * HD,)), (p + "self_attn.k_proj.bias", (NKV * HD,)),
                        (p + "self_attn.v_proj.bias", (NKV * HD,))]
            if arch.startswith(("Qwen3", "Gemma3")):
                out += [(p + "self_attn.q_norm.weight", (HD,)), (p + "self_attn.k_norm.weight", (HD,))]
            out += [(p + "self_attn.o_proj.weight", (C, NH * HD)), (p + "post_attention_layernorm.weight", (C,)),
                    (p + "mlp.gate_proj.weight", (F, C)), (p + "mlp.up_proj.weight", (F, C)),
                    (p + "mlp.down_proj.weight", (C, F))]
            if gemma:
                out += [(p + "pre_feedforward_layernorm.weight", (C,)), (p + "post_feedforward_layernorm.weight", (C,))]
        out += [("model.norm.weight", (C,))]
    C = cfg.get("n_embd") or cfg["hidden_size"]
    if arch.endswith("ForRewardModelWithGating"):
        K, Hd, n = cfg.get("num_objectives", 19), cfg.get("gating_hidden_dim", 1024), cfg.get("gating_n_hidden", 3)
        out += [("regression_layer.weight", (K, C))]
        for l in range(n + 1):
            i, o = (C if l == 0 else Hd), (Hd if l < n else K)
            out += [(f"gating.layers.{l}.weight", (o, i)), (f"gating.layers.{l}.bias", (o,))]
        out += [("gating.logit_scale", (1,)), ("reward_transform_matrix", (K, K))]
    elif arch.endswith("ForSequenceClassification") and (opts or {}).get("head") == "mlp":
        out += [("score.0.weight", (C, C)), ("score.0.bias", (C,)), ("score.2.weight", (1, C)), ("score.2.bias", (1,))]
    elif arch.endswith("ForSequenceClassification"):
        out += [("score.weight", (1, C))]
    elif not cfg.get("tie_word_embeddings", arch.startswith(("GPT2", "Gemma2", "Gemma3"))):
        out += [("lm_head.weight", (cfg["vocab_size"], C))]
    return out


def random_weights(cfg, g, opts=None):
    w = {}
    one = 0.0 if cfg["architectures"][0].startswith("Gemma") else 1.0  # Gemma norms scale by 1 + w
    for name, shape in param_shapes(cfg, opts):
        if name == "gating.logit_scale":
            a = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif "norm" in name or "ln_" in name:  # norms: weight around 1, bias around 0
            a = (one if name.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bias"):
            a = 0.1 * torch.randn(shape, generator=g)
        else:
            a = 0.8 / math.sqrt(shape[-1] if not name.startswith("transformer.h") else shape[0]) * torch.randn(shape, generator=g)
            if "wte" in name or "embed" in name or "wpe" in name:
                a = 0.5 * torch.randn(shape, generator=g)
        w[name] = a.float().numpy()
    return w


def make_batch(cfg, g, B=4, T=11):
    V = cfg["vocab_size"]
    ids = torch.randint(0, V, (B, T), generator=g)
    lens = torch.tensor([T, 6, 9, 4])[:B]
    prompt = torch.tensor([4, 2, 5, 1])[:B]
    mask = (torch.arange(T)[None] >= prompt[:, None]).to(torch.uint8)  # also set beyond lens: must be ignored
    return ids, lens, mask


def write_checkpoint(d, cfg, w, dtype, opts):
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
    names = list(w)
    fname = lambda n: n[len("transformer."):] if opts.get("drop_prefix") and n.startswith("transformer.") else n
    k = opts.get("shards", 1)
    if k == 1:
        st_write(os.path.join(d, "model.safetensors"), [(fname(n), w[n]) for n in names], dtype)
        return
    wm, per = {}, (len(names) + k - 1) // k
    for s in range(k):
        shard = f"model-{s + 1:05d}-of-{k:05d}.safetensors"
        part = names[s * per:(s + 1) * per]
        st_write(os.path.join(d, shard), [(fname(n), w[n]) for n in part], dtype)
        wm.update({fname(n): shard for n in part})
    json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))


# Real HH-RLHF pairs (chosen, rejected) as ragged batches, tokenized by `quorum tokenize` with a shared
# tokenizer, longer than the sliding windows: (base case, tokenizer, pairs, max tokens, config edits).
# (base case, tokenizer, HH lines skipped, pairs, max tokens, config edits)
HH_CASES = {
    "qwen3_hh_rm": ("qwen3_rm", "qwen3", 7, 3, 96, {"use_sliding_window": True, "sliding_window": 24,
                                                    "max_window_layers": 0}),
    "qwen3_hh_lm": ("qwen3_lm", "qwen3", 9, 2, 64, {"sliding_window": 16}),
    "gemma2_hh_rm": ("gemma2_rm", "mistral", 7, 3, 96, {"sliding_window": 24}),
    "gemma2_hh_lm": ("gemma2_lm", "mistral", 9, 2, 64, {"sliding_window": 16}),
    "llama_mlp_hh_rm": ("llama_mlp_rm", "llama3", 7, 3, 96, {}),
}


def tokenizer_vocab(tokdir):
    t = json.load(open(os.path.join(tokdir, "tokenizer.json")))
    return 1 + max(max(t["model"]["vocab"].values()), max([a["id"] for a in t.get("added_tokens", [])], default=0))


def hh_batch(quorum, tokdir, hh, n_pairs, max_len, skip=7):
    """ids (2n,T), lens, mask: pair k's chosen then rejected transcript, the end kept when longer than max_len,
    mask = the response tokens (after the shared prompt up to its last "\n\nAssistant:")."""
    import gzip
    import subprocess
    texts = []  # per pair: prompt, chosen, rejected; tokenized by one `quorum tokenize --jsonl` run
    for line_no, line in enumerate(gzip.open(hh, "rt", encoding="utf-8")):
        if line_no < skip:
            continue
        o = json.loads(line)
        n = 0
        while n < min(len(o["chosen"]), len(o["rejected"])) and o["chosen"][n] == o["rejected"][n]:
            n += 1
        cut = o["chosen"].rfind("\n\nAssistant:", 0, n)
        if cut < 0:
            continue
        texts += [o["chosen"][:cut + len("\n\nAssistant:")], o["chosen"], o["rejected"]]
        if len(texts) == 3 * n_pairs:
            break
    out = subprocess.run([quorum, "tokenize", "--tokenizer", tokdir, "--jsonl"], input="".join(
        json.dumps(t) + "\n" for t in texts), capture_output=True, text=True, check=True).stdout.split("\n")
    enc = [[int(x) for x in row.split()] for row in out[:len(texts)]]
    seqs = []
    for k in range(0, len(texts), 3):
        np_ = len(enc[k])
        for ids in enc[k + 1:k + 3]:
            drop = max(0, len(ids) - max_len)
            seqs.append((ids[drop:], max(1, np_ - drop)))
    T = max(len(x) for x, _ in seqs)
    ids, mask = torch.zeros(len(seqs), T, dtype=torch.long), torch.zeros(len(seqs), T, dtype=torch.uint8)
    for b, (x, np_) in enumerate(seqs):
        ids[b, :len(x)] = torch.tensor(x)
        mask[b, np_:] = 1
    return ids, torch.tensor([len(x) for x, _ in seqs]), mask


def make(out_dir, quorum=None, shared=None):
    x = torch.linspace(-6, 6, 101, dtype=F64)  # our gelu_new is torch's tanh-approximate gelu
    assert torch.allclose(gelu_new(x), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-12)
    cases = dict(CASES)
    hh = os.path.join(shared or "", "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
    if quorum and os.path.exists(hh):
        for name, (base, tok, skip, n_pairs, max_len, edits) in HH_CASES.items():
            cfg, dtype, opts = CASES[base]
            tokdir = os.path.join(shared, "tokenizers", tok)
            cfg = {**cfg, **edits, "vocab_size": tokenizer_vocab(tokdir)}
            cases[name] = (cfg, "F32", {**opts, "hh": (tokdir, skip, n_pairs, max_len)})
    else:
        print(f"no HH data under {shared}: the *_hh_* fixtures are not made (their tests skip)")
    for i, (name, (cfg, dtype, opts)) in enumerate(cases.items()):
        g = torch.Generator().manual_seed(1234 + i)
        d = os.path.join(out_dir, name)
        write_checkpoint(d, cfg, random_weights(cfg, g, opts), dtype, opts)
        _, w = load_dir(d)  # what the file really holds (fp16/bf16 rounding included)
        W = {k: torch.tensor(v, dtype=F64, requires_grad=True) for k, v in w.items()}
        ids, lens, mask = make_batch(cfg, g)
        if opts.get("armo"):  # every row ends its prompt with the gating pattern; row 0 twice
            lens = torch.tensor([11, 6, 9, 7])
            for b, at in enumerate((5, 0, 2, 1)):
                ids[b, at:at + 5] = torch.tensor(ARMO_PATTERN)
            ids[0, 0:5] = torch.tensor(ARMO_PATTERN)
        if opts.get("hh"):
            tokdir, skip, n_pairs, max_len = opts["hh"]
            ids, lens, mask = hh_batch(quorum, tokdir, hh, n_pairs, max_len, skip)
            assert int(lens.max()) > (cfg.get("sliding_window") or 0) and len(set(lens.tolist())) > 1, lens
            print(f"  {name}: HH lens {lens.tolist()}")
        out, tok = forward(cfg, W, ids, lens, mask)
        check_features_bite(name, cfg, W, ids, lens, mask, out)
        rm = is_rm(cfg["architectures"][0])
        B = ids.shape[0]
        ref = torch.zeros(B, dtype=F64) if rm else (out.detach() + torch.randn(B, generator=g, dtype=F64))
        outv = out.detach().clone().requires_grad_(True)
        loss = dpo_loss(outv, ref, 1.0 if rm else 0.5)
        (dseq,) = torch.autograd.grad(loss, outv)
        out.backward(dseq)
        tensors = [("ids", ids.float().numpy()), ("lens", lens.float().numpy()), ("mask", mask.float().numpy()),
                   ("out", out.detach().numpy()), ("tok_logp", tok.detach().numpy()), ("dseq", dseq.numpy()),
                   ("ref", ref.numpy()), ("loss", loss.detach().reshape(1).numpy())]
        tensors += [("grad." + k, v.grad.numpy()) for k, v in W.items()]
        st_write(os.path.join(d, "ref.safetensors"), tensors)
        print(f"{name}: out={out.detach().numpy().round(4).tolist()} loss={loss.item():.5f}")


def check(saved_dir, case_dir):
    cfg, w_saved = load_dir(saved_dir)
    _, w_orig = load_dir(case_dir)
    bad = [k for k in w_orig if k not in w_saved or not np.array_equal(w_orig[k], w_saved[k])]
    extra = [k for k in w_saved if k not in w_orig]
    ref = st_read(os.path.join(case_dir, "ref.safetensors"))
    ids, lens = torch.tensor(ref["ids"]).long(), torch.tensor(ref["lens"]).long()
    mask = torch.tensor(ref["mask"]).to(torch.uint8)
    W = {k: torch.tensor(v, dtype=F64) for k, v in w_saved.items()}
    out, _ = forward(cfg, W, ids, lens, mask)
    err = float(np.max(np.abs(out.numpy() - ref["out"]) / np.maximum(1.0, np.abs(ref["out"]))))  # ref is fp32
    print(f"{saved_dir}: {len(w_saved)} tensors, {len(bad)} differ, {len(extra)} extra, max rel out diff = {err:.3g}")
    for k in bad + extra:
        print("  mismatch:", k)
    return 0 if not bad and not extra and err < 1e-6 else 1


def bench(model_dir, batch_file, reps=1):
    """Scores the batches in batch_file (ref-style safetensors with ids.<i>, lens.<i>) with the fp32 torch
    reference, as a throughput baseline. Prints pairs/s-relevant totals as JSON."""
    cfg, w = load_dir(model_dir)
    W = {k: torch.tensor(v) for k, v in w.items()}  # fp32 here: a fair speed baseline
    data = st_read(batch_file)
    n = len([k for k in data if k.startswith("ids.")])
    torch.set_num_threads(int(os.environ.get("QUORUM_BENCH_THREADS", "1")))
    t0, c0, toks, seqs, rewards = time.time(), time.process_time(), 0, 0, []
    with torch.no_grad():
        for i in range(n):
            ids, lens = torch.tensor(data[f"ids.{i}"]).long(), torch.tensor(data[f"lens.{i}"]).long()
            r, _ = forward(cfg, W, ids, lens, torch.ones_like(ids))
            rewards.append(r.numpy())
            toks += int(lens.sum())
            seqs += len(lens)
    dt, cpu = time.time() - t0, time.process_time() - c0
    np.save(batch_file + ".torch_rewards.npy", np.concatenate(rewards))
    print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "sequences": seqs, "tokens": toks}))


def init_check(quorum, tok, work):
    """`quorum init-model` for every RoPE family x head: the checkpoint holds exactly the tensors this
    reference (written from the HF modeling code) expects, with HF's init, and runs to finite outputs."""
    import subprocess
    bad = 0
    g = torch.Generator().manual_seed(3)
    for arch in ("llama", "qwen3", "gemma2", "gemma3"):
        for head in ("lm", "score", "mlp") + (("armo",) if arch == "llama" else ()):
            d = os.path.join(work, f"{arch}_{head}")
            subprocess.run([quorum, "init-model", "--arch", arch, "--head", head, "--layers", "2", "--dim", "32",
                            "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--max-pos", "64", "--tokenizer", tok,
                            "--seed", "9", "--out", d], check=True)
            cfg, w = load_dir(d)
            want = dict(param_shapes(cfg, {"head": head}))
            got = {k: tuple(v.shape) for k, v in w.items()}
            gemma = arch.startswith("gemma")
            errs = [] if got == {k: tuple(v) for k, v in want.items()} else [f"tensors {sorted(set(got) ^ set(want))}"]
            for k, v in w.items():
                if k in ("reward_transform_matrix", "gating.logit_scale"):  # ArmoRM: identity, 1
                    if not np.array_equal(v, np.eye(len(v)) if v.ndim == 2 else np.ones(1)):
                        errs.append(f"{k} not identity / 1")
                elif "norm" in k and not np.all(v == (0.0 if gemma else 1.0)):
                    errs.append(f"{k} not {'0' if gemma else '1'}")
                elif k.endswith("bias") and np.any(v != 0):
                    errs.append(f"{k} not 0")
                elif "norm" not in k and not k.endswith("bias") and abs(v.std() - 0.02) > 0.004:
                    errs.append(f"{k} std {v.std():.4f}")
            W = {k: torch.tensor(v, dtype=F64) for k, v in w.items()}
            ids, lens, mask = make_batch(cfg, g)
            if head == "armo":  # the gating pattern at the prompt end (vocab 300 here: a small one)
                cfg["gating_token_pattern"] = [7, 8]
                ids[:, 1:3] = torch.tensor([7, 8])
            out, _ = forward(cfg, W, ids, lens, mask)
            if not torch.isfinite(out).all():
                errs.append("non-finite outputs")
            print(f"{arch} {head}: {cfg['architectures'][0]}, {len(w)} tensors, out {out.numpy().round(4).tolist()}"
                  + (f"  FAIL {errs}" if errs else ""))
            bad += len(errs) > 0
    return 1 if bad else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "make":  # make <out_dir> [<quorum binary> <shared dir>]: with both, also the HH fixtures
        make(*sys.argv[2:5])
    elif cmd == "check":  # check (<case_dir> <saved_dir> <saved_sharded_dir>)...
        a = sys.argv[2:]
        sys.exit(max(check(a[i + k], a[i]) for i in range(0, len(a), 3) for k in (1, 2)))
    elif cmd == "init":  # init <quorum binary> <tokenizer dir> <work dir>
        if not os.path.exists(os.path.join(sys.argv[3], "tokenizer.json")):
            print(f"{sys.argv[3]}: no tokenizer.json (../shared absent): skipped")
            sys.exit(77)
        sys.exit(init_check(*sys.argv[2:5]))
    elif cmd == "bench":
        bench(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)
        sys.exit(2)
