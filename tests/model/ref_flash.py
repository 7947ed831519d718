#!/usr/bin/env python3
"""Float64 torch autograd reference for the packed flash attention ops (quorum/ops.h attention_varlen_forward /
attention_varlen_backward), written from the ops.h contract as one dense masked attention over the packed rows
(not the flash algorithm): query row q of segment {q0,nq,k0,nk} sees the nk prefix rows k0.. and its own rows up
to itself (virtual key u in [0, nk + i]), within the window when one is set; GQA repeats kv heads.

  ref_flash.py make <out_dir>   writes flash_<case>.safetensors: inputs qkv (N,W), segs (S,4), dout (N,NH*HD),
                                dqkv0 (N,W) (what the backward accumulates into), dims [NH,NKV,HD,scale,softcap,window];
                                expected out (N,NH*HD), lse (N,NH), dqkv = dqkv0 + d(sum(out*dout))/dqkv
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_model import st_write  # noqa: E402

F64 = torch.float64

# name: (NH, NKV, HD, scale (None = HD^-0.5), softcap, window, segments as (own length, prefix segment index or -1))
CASES = {
    "plain": (4, 4, 16, None, 0.0, 0, [(6, -1), (9, -1), (1, -1), (4, -1)]),
    "prefix_gqa": (4, 2, 16, None, 0.0, 0, [(7, -1), (5, 0), (9, 0), (6, -1), (3, -1), (4, 4), (2, 4)]),
    "window_softcap": (6, 2, 8, 0.6, 5.0, 4, [(8, -1), (6, 0), (3, 0), (10, -1), (2, -1), (9, 4)]),
    "long_hd40": (4, 1, 40, None, 0.0, 0, [(40, -1), (70, 0), (45, 0), (100, -1)]),
    "long_window": (2, 1, 24, 0.5, 3.0, 9, [(37, -1), (50, 0), (33, 0), (1, -1), (66, -1)]),
}


def layout(segdef):
    """segments {q0,nq,k0,nk} back to back; a continuing segment uses all rows of its prefix segment"""
    segs, q0 = [], 0
    for nq, pre in segdef:
        k0, nk = (segs[pre][0], segs[pre][1]) if pre >= 0 else (0, 0)
        segs.append((q0, nq, k0, nk))
        q0 += nq
    return segs, q0


def visible(segs, N, window):
    allowed = torch.zeros(N, N, dtype=torch.bool)
    for q0, nq, k0, nk in segs:
        for i in range(nq):
            last = nk + i
            for u in range(last + 1):
                if window and last - u >= window:
                    continue
                allowed[q0 + i, k0 + u if u < nk else q0 + u - nk] = True
    return allowed


def reference(qkv, segs, NH, NKV, HD, scale, softcap, window):
    N = qkv.shape[0]
    q = qkv[:, :NH * HD].reshape(N, NH, HD).transpose(0, 1)
    k = qkv[:, NH * HD:(NH + NKV) * HD].reshape(N, NKV, HD).transpose(0, 1).repeat_interleave(NH // NKV, 0)
    v = qkv[:, (NH + NKV) * HD:].reshape(N, NKV, HD).transpose(0, 1).repeat_interleave(NH // NKV, 0)
    s = q @ k.transpose(-1, -2) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    s = s.masked_fill(~visible(segs, N, window)[None], float("-inf"))
    lse = torch.logsumexp(s, -1)  # (NH,N)
    out = torch.softmax(s, -1) @ v  # (NH,N,HD)
    return out.transpose(0, 1).reshape(N, NH * HD), lse.transpose(0, 1)


def make(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for c, (name, (NH, NKV, HD, scale, softcap, window, segdef)) in enumerate(CASES.items()):
        g = torch.Generator().manual_seed(99 + c)
        segs, N = layout(segdef)
        W = (NH + 2 * NKV) * HD
        scale = scale if scale is not None else HD ** -0.5
        qkv = (torch.randn(N, W, generator=g, dtype=F64) * 1.5).requires_grad_(True)
        dout = torch.randn(N, NH * HD, generator=g, dtype=F64)
        dqkv0 = torch.randn(N, W, generator=g, dtype=F64)
        qkv32 = qkv.detach().float().double().requires_grad_(True)  # what the C side gets (fp32)
        out, lse = reference(qkv32, segs, NH, NKV, HD, scale, softcap, window)
        (grad,) = torch.autograd.grad((out * dout.float().double()).sum(), qkv32)
        if softcap:  # the cap must bite: some |score| near or above it
            s_max = float((qkv32[:, :HD] @ qkv32[:, NH * HD:NH * HD + HD].T).abs().max()) * scale
            assert s_max > softcap, (name, s_max)
        dims = torch.tensor([NH, NKV, HD, scale, softcap, window], dtype=F64)
        st_write(os.path.join(out_dir, f"flash_{name}.safetensors"),
                 [("qkv", qkv32.detach().numpy()), ("segs", torch.tensor(segs, dtype=F64).numpy()),
                  ("dout", dout.numpy()), ("dqkv0", dqkv0.numpy()), ("dims", dims.numpy()),
                  ("out", out.detach().numpy()), ("lse", lse.detach().numpy()),
                  ("dqkv", (dqkv0.float().double() + grad).numpy())])
        print(f"flash_{name}: N={N} S={len(segs)} NH={NH} NKV={NKV} HD={HD} scale={scale:.3f} softcap={softcap} "
              f"window={window} |grad|max={float(grad.abs().max()):.3g}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
