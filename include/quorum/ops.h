/*
 * quorum/ops.h - the compute backend: one table of function pointers, llm.c style.
 *
 * The model (src/model/model.c) never touches tensor memory directly: it allocates, uploads, runs ops
 * and downloads only through a Backend. backend_cpu (src/model/backend_cpu.c) is the reference; a CUDA
 * backend (kernels/ (.cu files), cuBLAS for the GEMMs) implements the same table function for function.
 *
 * Conventions (every backend must follow them exactly; tests/model compares backends against torch):
 *  - Every tensor pointer is backend memory (host memory for cpu, device memory for cuda). Index
 *    arrays (ids, lens, rows, targets) are backend memory too, as int (int32).
 *  - Row-major, contiguous. Shapes are in the comment after each argument; N is a number of rows
 *    (usually B*T), C the channel width.
 *  - Forward ops OVERWRITE their outputs.
 *  - Backward ops ACCUMULATE (+=) into every gradient they write, parameter AND activation gradients
 *    alike (llm.c style): the caller zeroes activation-gradient scratch before reuse and parameter
 *    gradients in model_zero_grad. A NULL gradient pointer means "not needed, skip it".
 *  - The residual stream of a transformer thus needs no residual backward op: branch backward ops
 *    accumulate straight into the running d(residual).
 *  - Batches are right-padded: sequence b of a (B,T) batch has lens[b] valid tokens at t < lens[b].
 *    Positions are t (0-based), so RoPE tables are per t. Work on padded positions may be skipped;
 *    their outputs are unspecified but finite, and their gradients must be treated as zero.
 *  - Ops run in stream order on the backend; copies to/from host are synchronous (they wait for the
 *    queued ops), so no separate synchronize is needed.
 *  - Naming: backend B implements field `op` as `op_B` (matmul_forward_cpu, matmul_forward_cuda); the tables
 *    are built by QUORUM_BACKEND_TABLE from the one list of entries below the struct (designated initializers);
 *    an entry no caller uses is dropped, not kept "for completeness".
 */
#ifndef QUORUM_OPS_H
#define QUORUM_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Storage type of a weight tensor (quorum/model.h ModelTensor.dtype). Activations, norm statistics, biases
 * and accumulation are fp32 on every backend; a bf16 weight is the top 16 bits of an fp32 (uint16_t),
 * exactly as a safetensors BF16 tensor stores it, so loading one is a copy. */
typedef enum { DT_F32 = 0, DT_BF16 = 1 } DType;

/* A bf16 value as fp32 (exact: the bf16 bits are the fp32's top half). The host-side widening every stage uses. */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

typedef struct Backend {
    const char *name; /* "cpu", "cuda" */

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes);                                  /* never NULL: dies on OOM */
    void (*free)(void *p);                                         /* NULL is fine */
    void (*to_backend)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);                           /* memset 0 */

    /* ---- linear: out = inp @ weight^T + bias (PyTorch nn.Linear; GPT-2 Conv1D is transposed on load) ---- */
    void (*matmul_forward)(float *out,          /* (N,OC) */
                           const float *inp,    /* (N,C) */
                           const float *weight, /* (OC,C) */
                           const float *bias,   /* (OC) or NULL */
                           int N, int C, int OC);
    void (*matmul_backward)(float *dinp,        /* (N,C) += dout @ weight, or NULL */
                            float *dweight,     /* (OC,C) += dout^T @ inp, or NULL */
                            float *dbias,       /* (OC) += sum_n dout, or NULL */
                            const float *dout,  /* (N,OC) */
                            const float *inp,   /* (N,C) */
                            const float *weight,/* (OC,C) */
                            int N, int C, int OC);

    /* As matmul_forward with a bf16 weight (inference: the weight stays bf16 in memory, half of fp32; mixed-
     * precision training: the bf16 shadow of the fp32 master, quorum/model.h model_set_precision).
     * cpu converts row panels of the weight to fp32 per GEMM call (never the whole weight); cuda runs a
     * cuBLASLt bf16 GEMM with fp32 accumulate (the activations are rounded to bf16 for it). */
    void (*matmul_forward_bf16)(float *out,             /* (N,OC) */
                                const float *inp,       /* (N,C) */
                                const uint16_t *weight, /* (OC,C) bf16 */
                                const float *bias,      /* (OC) or NULL */
                                int N, int C, int OC);
    /* Backward of matmul_forward_bf16 for mixed-precision training (quorum/model.h model_set_precision): the
     * weight is the bf16 shadow of fp32 master weights; the gradients are fp32 and accumulate (+=) into fp32
     * buffers: dinp += dout @ weight (cpu: fp32 dout times the widened bf16 weight, panel by panel as the
     * forward; cuda: cuBLASLt with dout rounded to bf16, fp32 accumulate), dweight += dout^T @ inp and
     * dbias += sum_n dout exactly as matmul_backward (fp32: the weight is not read). */
    void (*matmul_backward_bf16)(float *dinp,             /* (N,C) += or NULL */
                                 float *dweight,          /* (OC,C) += or NULL (fp32) */
                                 float *dbias,            /* (OC) += or NULL */
                                 const float *dout,       /* (N,OC) */
                                 const float *inp,        /* (N,C) */
                                 const uint16_t *weight,  /* (OC,C) bf16 */
                                 int N, int C, int OC);
    /* dst = bf16(src), round to nearest even (NaN stays a quiet NaN): refreshes the bf16 shadow of the
     * master weights after the optimizer moved them. */
    void (*cast_f32_to_bf16)(uint16_t *dst, const float *src, size_t n); /* (n) (n) */

    /* ---- norms (per row, biased variance) ---- */
    void (*layernorm_forward)(float *out,       /* (N,C) */
                              float *mean,      /* (N) saved for backward */
                              float *rstd,      /* (N) saved: 1/sqrt(var + eps) */
                              const float *inp, /* (N,C) */
                              const float *weight, const float *bias, /* (C), (C) */
                              int N, int C, float eps);
    void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, /* (N,C) (C) (C) += */
                               const float *dout, const float *inp,      /* (N,C) (N,C) */
                               const float *weight, const float *mean, const float *rstd, /* (C) (N) (N) */
                               int N, int C);
    /* RMSNorm (Llama): out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps) */
    void (*rmsnorm_forward)(float *out, float *rstd,             /* (N,C) (N) */
                            const float *inp, const float *weight,/* (N,C) (C) */
                            int N, int C, float eps);
    void (*rmsnorm_backward)(float *dinp, float *dweight,        /* (N,C) (C) += */
                             const float *dout, const float *inp, /* (N,C) (N,C) */
                             const float *weight, const float *rstd, /* (C) (N) */
                             int N, int C);

    /* ---- elementwise ---- */
    void (*residual_forward)(float *out, const float *inp1, const float *inp2, size_t n); /* (n) = inp1 + inp2 */
    /* GPT-2 gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    void (*gelu_forward)(float *out, const float *inp, size_t n);                    /* (n) */
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);/* (n) += */
    /* SwiGLU: inp rows are [gate | up] (the fused gate_proj;up_proj matmul), out = silu(gate) * up */
    void (*swiglu_forward)(float *out,          /* (N,F) */
                           const float *inp,    /* (N,2F) */
                           int N, int F);
    void (*swiglu_backward)(float *dinp,        /* (N,2F) += */
                            const float *dout,  /* (N,F) */
                            const float *inp,   /* (N,2F) */
                            int N, int F);

    /* ---- attention ----
     * qkv rows are [q (NH*HD) | k (NKV*HD) | v (NKV*HD)] with heads HD-contiguous (GPT-2 c_attn and the
     * fused q_proj;k_proj;v_proj matmul both produce this). Query head h uses kv head h / (NH/NKV) (GQA). */
    /* RoPE in place on the q and k parts, HF rotate_half ("split-half") convention, i < HD/2:
     *   x'[i] = x[i] cos[t,i] - x[i+HD/2] sin[t,i];  x'[i+HD/2] = x[i+HD/2] cos[t,i] + x[i] sin[t,i] */
    void (*rope_forward)(float *qkv,            /* (B,T,(NH+2*NKV)*HD) in place */
                         const float *cos, const float *sin, /* (T,HD/2) each, any scaling baked in */
                         int B, int T, int NH, int NKV, int HD);
    /* the transpose rotation (angle -theta), in place on the q and k parts of dqkv */
    void (*rope_backward)(float *dqkv,          /* (B,T,(NH+2*NKV)*HD) in place */
                          const float *cos, const float *sin, /* (T,HD/2) */
                          int B, int T, int NH, int NKV, int HD);
    /* causal softmax(q k^T / sqrt(HD)) v; query t of row b sees keys t2 <= t and t2 < lens[b]. */
    void (*attention_forward)(float *out,       /* (B,T,NH*HD) */
                              float *att,       /* (B,NH,T,T) saved for backward; cpu keeps the probabilities,
                                                   another backend may keep less (e.g. row logsumexp) in it */
                              const float *qkv, /* (B,T,(NH+2*NKV)*HD) post-RoPE */
                              const int *lens,  /* (B) */
                              int B, int T, int NH, int NKV, int HD);
    void (*attention_backward)(float *dqkv,     /* (B,T,(NH+2*NKV)*HD) += */
                               float *datt,     /* (B,NH,T,T) scratch, contents on entry ignored */
                               /* qkv, att: exactly as left by attention_forward */
                               const float *dout,/* (B,T,NH*HD) */
                               const float *qkv, const float *att, const int *lens,
                               int B, int T, int NH, int NKV, int HD);

    /* Packed (variable-length) attention, flash-style: blocks of keys with a running max and sum (online
     * softmax), so no (T,T) scores exist; every forward uses it (training with attention_varlen_backward; the
     * attention_forward / attention_ex_* T^2 ops stay as the fallback and the oracle). GQA reads kv head
     * h / (NH/NKV) in place.
     * qkv holds the N rows of a packed token stream (no padding). Segment s of segs (S,4) = {q0, nq, k0, nk}:
     * its queries are rows q0..q0+nq-1, and query i sees the nk rows k0.. of a prefix it continues from (a
     * prompt shared by two sequences; nk = 0 for none) followed by its own rows q0..q0+i: virtual key index
     * u in [0, nk + i], which is also the position difference the window uses (key u visible when
     * (nk + i) - u < window, for window > 0). Scores s = softcap-ed (q.k * scale) as in attention_ex_forward.
     * lse (N,NH) gets each query's logsumexp (NULL = skip). Rows outside every segment are not written. */
    void (*attention_varlen_forward)(float *out,       /* (N,NH*HD) */
                                     float *lse,       /* (N,NH) or NULL */
                                     const float *qkv, /* (N,(NH+2*NKV)*HD) post-RoPE */
                                     const int *segs,  /* (S,4) backend ints */
                                     int S, int NH, int NKV, int HD, float scale, float softcap, int window);
    /* Backward of attention_varlen_forward over the same segments (training on flash attention: nothing of size
     * T^2 is saved). Probabilities are recomputed from the forward's lse, p = exp(s - lse), and with
     * D = rowsum(dout * out): ds = p (dout.v - D), chained through the softcap and the scale. dQ of a query row
     * comes from its visible keys; dK/dV of a key row from every query that sees it: its own segment's and,
     * for a row of a shared prefix, the queries of every segment continuing from it (so a prefix's rows must
     * be some segment's own rows, as model_pack lays them out). Deterministic: no float atomics in arbitrary
     * order (cuda: one pass owns dQ per query row, another dK/dV per key row). dqkv ACCUMULATES (+=); rows
     * outside every segment are not written. */
    void (*attention_varlen_backward)(float *dqkv,      /* (N,(NH+2*NKV)*HD) += */
                                      const float *dout,/* (N,NH*HD) */
                                      const float *qkv, /* (N,(NH+2*NKV)*HD) as given to the forward */
                                      const float *out, /* (N,NH*HD) the forward's output */
                                      const float *lse, /* (N,NH) the forward's logsumexp */
                                      const int *segs,  /* (S,4) as the forward */
                                      int S, int NH, int NKV, int HD, float scale, float softcap, int window);

    /* ---- embeddings ---- */
    /* out[b,t] = wte[ids[b,t]] (+ wpe[t] when wpe != NULL, GPT-2 learned positions) */
    void (*embedding_forward)(float *out,       /* (B,T,C) */
                              const int *ids,   /* (B,T) */
                              const float *wte, /* (V,C) */
                              const float *wpe, /* (maxT,C) or NULL */
                              int B, int T, int C);
    /* as embedding_forward with bf16 tables (rows converted to fp32 on the fly) */
    void (*embedding_forward_bf16)(float *out, const int *ids,     /* (B,T,C) (B,T) */
                                   const uint16_t *wte,             /* (V,C) bf16 */
                                   const uint16_t *wpe,             /* (maxT,C) bf16 or NULL */
                                   int B, int T, int C);
    /* deterministic: same inputs give bit-identical dwte on every run (no float atomics in arbitrary order) */
    void (*embedding_backward)(float *dwte,     /* (V,C) += */
                               float *dwpe,     /* (maxT,C) += or NULL */
                               const float *dout,/* (B,T,C) */
                               const int *ids,  /* (B,T) */
                               int B, int T, int C);

    /* ---- heads ---- */
    /* row gather: out[m] = inp[rows[m]]. The reward head gathers the last non-pad token of each
     * sequence (rows[b] = b*T + lens[b]-1); the LM head gathers only the positions that predict a
     * completion token, so the (B,T,V) logits are never formed. rows must be distinct. */
    void (*gather_forward)(float *out,          /* (M,C) */
                           const float *inp,    /* (N,C) */
                           const int *rows,     /* (M) in [0,N) */
                           int M, int C);
    void (*gather_backward)(float *dinp,        /* (N,C) += at rows */
                            const float *dout,  /* (M,C) */
                            const int *rows, int M, int C);
    /* fused log-softmax + target gather: logp[m] = logits[m,targets[m]] - logsumexp(logits[m,:]).
     * Only lse is kept; probabilities are recomputed in backward. */
    void (*logprob_forward)(float *logp,        /* (M) */
                            float *lse,         /* (M) saved for backward */
                            const float *logits,/* (M,V) */
                            const int *targets, /* (M) in [0,V) */
                            int M, int V);
    /* dlogits[m,v] = dlogp[m] * (1[v == targets[m]] - softmax(logits[m])[v]). OVERWRITES dlogits (the
     * one exception to +=), and dlogits may alias logits so the (M,V) buffer is reused in place. */
    void (*logprob_backward)(float *dlogits,    /* (M,V) = (not +=) */
                             const float *dlogp,/* (M) */
                             const float *logits, const float *lse, const int *targets, /* (M,V) (M) (M) */
                             int M, int V);

    /* ---- optional ops (NULL = this backend lacks them) ----
     * Used only by the families / heads that need them (Qwen3 q/k norm; Gemma-2 GeGLU, embedding scale,
     * logit softcapping; sliding-window attention; MLP reward heads). cpu and cuda implement them all; a
     * backend without one: model_load moves a model that needs it onto the cpu backend (one log line),
     * except sliding-window attention, which a forward asks for only when T exceeds the window (-1, one line). */
    /* per-head RMSNorm of the q and k parts of qkv rows (Qwen3 q_norm/k_norm, before RoPE); v is copied.
     * out q head h = inp q head h * rstd * qw, k heads likewise with kw. */
    void (*qknorm_forward)(float *out,          /* (N,(NH+2*NKV)*HD) */
                           float *rstd,         /* (N,NH+NKV) saved */
                           const float *inp,    /* (N,(NH+2*NKV)*HD) */
                           const float *qw, const float *kw, /* (HD) (HD) */
                           int N, int NH, int NKV, int HD, float eps);
    void (*qknorm_backward)(float *dinp,        /* (N,(NH+2*NKV)*HD) += (v part: += dout) */
                            float *dqw, float *dkw, /* (HD) (HD) += */
                            const float *dout, const float *inp, const float *qw, const float *kw,
                            const float *rstd, int N, int NH, int NKV, int HD);
    /* attention_forward/backward with a scale (s = q.k * scale), tanh logit softcapping
     * (s = softcap * tanh(s / softcap) when softcap > 0) and a sliding window (key t2 visible to query t
     * only when t - t2 < window, when window > 0; HF's kv_idx > q_idx - sliding_window). att holds the
     * probabilities as in attention_forward. */
    void (*attention_ex_forward)(float *out, float *att, const float *qkv, const int *lens,
                                 int B, int T, int NH, int NKV, int HD, float scale, float softcap, int window);
    void (*attention_ex_backward)(float *dqkv, float *datt, const float *dout, const float *qkv,
                                  const float *att, const int *lens, int B, int T, int NH, int NKV, int HD,
                                  float scale, float softcap, int window);
    /* GeGLU (Gemma): inp rows [gate | up], out = gelu_tanh(gate) * up (gelu_tanh as gelu_forward) */
    void (*geglu_forward)(float *out, const float *inp, int N, int F);          /* (N,F) (N,2F) */
    void (*geglu_backward)(float *dinp, const float *dout, const float *inp, int N, int F); /* (N,2F) += */
    /* out = inp * s (out may alias inp) */
    void (*scale_forward)(float *out, const float *inp, float s, size_t n);
    /* out = cap * tanh(inp / cap) (out may alias inp); backward from the OUTPUT, and like logprob_backward it
     * OVERWRITES: dinp = dout * (1 - (out/cap)^2), dinp may alias dout */
    void (*softcap_forward)(float *out, const float *inp, float cap, size_t n);
    void (*softcap_backward)(float *dinp, const float *dout, const float *out, float cap, size_t n);
    /* ReLU; backward from the output: dinp += dout * (out > 0) */
    void (*relu_forward)(float *out, const float *inp, size_t n);
    void (*relu_backward)(float *dinp, const float *dout, const float *out, size_t n);

    /* ---- LoRA adapters (src/model/model_lora.c; required: every backend has them) ---- */
    /* a column block of row-strided matrices: y[n*ldy + j] += s * x[n*ldx + j], n < N, j < W. An adapter's
     * output is a column slice of a fused matmul's (q_proj inside q;k;v), so it is added (and its gradient
     * taken) in place, with no strided GEMM in the table. */
    void (*axpy_cols)(float *y, int ldy, const float *x, int ldx, float s, int N, int W);
    /* inverted dropout with a counter-based mask (PEFT lora_dropout = nn.Dropout(p)):
     * out[i] = keep(seed, i) ? inp[i] * (1 / (1 - p)) : 0, keep = rng_counter_u64(seed, i) >> 40 >= p * 2^24
     * (quorum/rng.h: the i-th output of the SplitMix64 stream at `seed`, its top 24 bits), so every backend
     * draws the same mask without state, a backward regenerates it, and a test can replay it. out may alias
     * inp. Linear in inp with a fixed mask: applied to a gradient it IS the backward (overwrites). */
    void (*dropout_forward)(float *out, const float *inp, size_t n, float p, uint64_t seed);
} Backend;

/* Every entry of the table after `name`, once, in field order: a backend builds its table from this list with
 * its own suffix (QUORUM_BACKEND_TABLE(cpu) wants matmul_forward_cpu, ...), so the tables cannot drift apart
 * and C++'s designated initializers (which must follow the field order) hold. */
#define QUORUM_BACKEND_OPS(X) \
    X(alloc) X(free) X(to_backend) X(to_host) X(zero) X(matmul_forward) X(matmul_backward) \
    X(matmul_forward_bf16) X(matmul_backward_bf16) X(cast_f32_to_bf16) \
    X(layernorm_forward) X(layernorm_backward) X(rmsnorm_forward) X(rmsnorm_backward) \
    X(residual_forward) X(gelu_forward) X(gelu_backward) X(swiglu_forward) X(swiglu_backward) X(rope_forward) \
    X(rope_backward) X(attention_forward) X(attention_backward) X(attention_varlen_forward) X(attention_varlen_backward) \
    X(embedding_forward) X(embedding_forward_bf16) X(embedding_backward) X(gather_forward) X(gather_backward) \
    X(logprob_forward) X(logprob_backward) X(qknorm_forward) X(qknorm_backward) \
    X(attention_ex_forward) X(attention_ex_backward) X(geglu_forward) X(geglu_backward) X(scale_forward) \
    X(softcap_forward) X(softcap_backward) X(relu_forward) X(relu_backward) X(axpy_cols) X(dropout_forward)
#define QUORUM_BACKEND_ENTRY_(op, suffix) .op = op##_##suffix,
#define QUORUM_BACKEND_ENTRY_cpu(op) QUORUM_BACKEND_ENTRY_(op, cpu)
#define QUORUM_BACKEND_ENTRY_cuda(op) QUORUM_BACKEND_ENTRY_(op, cuda)
/* {.name = "cpu", .alloc = alloc_cpu, ...}: the designated initializers of backend `suffix` (cpu, cuda) */
#define QUORUM_BACKEND_TABLE(suffix) {.name = #suffix, QUORUM_BACKEND_OPS(QUORUM_BACKEND_ENTRY_##suffix)}

extern const Backend backend_cpu;
#ifdef QUORUM_HAVE_CUDA
extern const Backend backend_cuda; /* kernels/: defined by the CUDA backend */
#endif

/* "cpu" or "cuda" (NULL = "cpu"); NULL when that backend is not compiled in. */
const Backend *backend_get(const char *name);

/* CPU backend only: 1 = matmuls through cblas_sgemm (default when built with QUORUM_HAVE_CBLAS),
 * 0 = the portable blocked loop. Returns the previous setting. Lets tests cover both paths. */
int backend_cpu_use_blas(int on);
/* CPU backend only: pins the BLAS thread count of this process to QUORUM_BLAS_THREADS (default 1) and
 * returns it. OpenBLAS splits a GEMM differently with the thread count (and with the CPUs a rank may
 * use), which changes the last bits of a result: pinned, results do not depend on the rank count.
 * backend_auto() calls it when it picks the CPU backend. */
int backend_cpu_pin_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* QUORUM_OPS_H */
