/* model_forward.c - activations, forward and backward of the transformer, all through the Backend. */
#include "model_internal.h"
#include "quorum/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* widths used everywhere below */
typedef struct { int C, NH, NKV, HD, QKV, F, FC, V, L, LA, LR; } Dims; /* LA / LR: slots of layer activations / outputs */

static Dims dims_of(const Model *m) {
    const ModelConfig *c = &m->cfg;
    Dims d = {.C = c->d_model, .NH = c->n_head, .NKV = c->n_kv_head, .HD = c->head_dim, .F = c->d_ff,
              .V = c->vocab_size, .L = c->n_layer};
    d.QKV = (d.NH + 2 * d.NKV) * d.HD;
    d.FC = c->act == ACT_GELU_NEW ? d.F : 2 * d.F;
    d.LR = m->grad_enabled ? d.L : 1;               /* every layer's output (= the next one's input) for backward */
    d.LA = m->grad_enabled && !m->recompute ? d.L : 1; /* recompute: one slot, each layer rerun in backward */
    return d;
}

/* 1 when a padded batch's attention runs flash-style (attention_varlen_forward over one segment per sequence):
 * inference on a backend that has it, training when the backend also has attention_varlen_backward (the forward
 * saves each row's logsumexp, (L,N,NH), instead of the (L,B,NH,T,T) probabilities). QUORUM_ATTENTION=t2 keeps
 * training on the T^2 path (attention_forward / attention_ex_*: the oracle, and the fallback for a backend
 * without the backward). Packed streams are always flash (forward_packed). */
static int flash_wanted(const Model *m) {
    const Backend *be = m->be;
    if (!be->attention_varlen_forward) return 0;
    if (!m->grad_enabled) return 1;
    const char *e = getenv("QUORUM_ATTENTION");
    return be->attention_varlen_backward && !(e && !strcmp(e, "t2"));
}

/* Carves every activation buffer for (B,T,M) out of one allocation (walk once with base NULL to size), each
 * starting at a multiple of 256 bytes (cudaMalloc is 256-byte aligned: the GEMMs get aligned operands). */
static size_t carve(Model *m, float *base, int B, int T, int M) {
    Dims d = dims_of(m);
    size_t N = (size_t)B * T, off = 0, LA = d.LA, heads = m->cfg.head == HEAD_LM ? (size_t)d.V : 1;
    Acts *a = &m->a;
#define TAKE(ptr, count) do { a->ptr = base ? base + off : NULL; off = (off + (count) + 63) & ~(size_t)63; } while (0)
    TAKE(enc, N * d.C);
    TAKE(ln1, LA * N * d.C); TAKE(ln1_mean, LA * N); TAKE(ln1_rstd, LA * N);
    size_t t2 = !m->flash, grad = m->grad_enabled; /* (B,NH,T,T) probabilities only for the T^2 path */
    TAKE(qkv, LA * N * d.QKV); TAKE(att, t2 * LA * B * d.NH * T * T); TAKE(atty, LA * N * d.NH * d.HD);
    TAKE(alse, !t2 * grad * LA * N * d.NH);
    TAKE(res2, LA * N * d.C);
    TAKE(ln2, LA * N * d.C); TAKE(ln2_mean, LA * N); TAKE(ln2_rstd, LA * N);
    TAKE(fch, LA * N * d.FC); TAKE(fca, LA * N * d.F); TAKE(res3, (size_t)d.LR * N * d.C);
    TAKE(proj, N * d.C);
    TAKE(g, (size_t)M * d.C); TAKE(gn, (size_t)M * d.C); TAKE(g_mean, M); TAKE(g_rstd, M);
    TAKE(logits, (size_t)M * heads); TAKE(logp, M); TAKE(lse, M);
    TAKE(rope_cos, (size_t)T * (d.HD / 2)); TAKE(rope_sin, (size_t)T * (d.HD / 2));
    const ModelConfig *c = &m->cfg;
    size_t two = c->rope_local_theta > 0;
    TAKE(rope_cos_l, two * T * (d.HD / 2)); TAKE(rope_sin_l, two * T * (d.HD / 2));
    size_t qk = c->qk_norm, pn = c->post_norms, hw = c->head == HEAD_REWARD ? head_width(m) : 0;
    size_t cap = c->head == HEAD_LM && c->final_softcap > 0;
    TAKE(qkr, qk * LA * N * d.QKV); TAKE(qk_rstd, qk * LA * N * (d.NH + d.NKV));
    TAKE(po1, pn * LA * N * d.C); TAKE(po1_rstd, pn * LA * N);
    TAKE(po2, pn * LA * N * d.C); TAKE(po2_rstd, pn * LA * N);
    TAKE(hact, (size_t)M * hw);
    TAKE(dres, grad * N * d.C); TAKE(dln, grad * N * d.C); TAKE(dqkv, grad * N * d.QKV);
    TAKE(datt, grad * t2 * B * d.NH * T * T); TAKE(datty, grad * N * d.NH * d.HD);
    TAKE(dfch, grad * N * d.FC); TAKE(dfca, grad * N * d.F);
    TAKE(dg, grad * M * d.C); TAKE(dgn, grad * M * d.C); TAKE(dlogp, grad * M);
    TAKE(dqkr, grad * qk * N * d.QKV); TAKE(dpo, grad * pn * N * d.C); TAKE(dhact, grad * M * hw);
    TAKE(dlogits, grad * cap * M * d.V);
#undef TAKE
    return off;
}

/* ints: ids (N), lens (B), rows (M), targets (M), segs (4S), pos (N) */
static void acts_ensure(Model *m, int B, int T, int M, int S) {
    size_t N = (size_t)B * T, need = carve(m, NULL, B, T, M), need_int = 2 * N + B + 2 * (size_t)M + 4 * (size_t)S;
    if (need > m->act_cap) {
        if (m->act_mem) m->be->free(m->act_mem);
        m->act_mem = m->be->alloc(sizeof(float) * need);
        m->act_cap = need;
        m->rope_T = 0;
    }
    if (need_int > m->act_int_cap) {
        if (m->act_int) m->be->free(m->act_int);
        m->act_int = m->be->alloc(sizeof(int) * need_int);
        m->act_int_cap = need_int;
    }
    if (carve(m, m->act_mem, B, T, M) != need) abort();
    m->a.ids = m->act_int;
    m->a.lens = m->a.ids + N;
    m->a.rows = m->a.lens + B;
    m->a.targets = m->a.rows + M;
    m->a.segs = m->a.targets + M;
    m->a.pos = m->a.segs + 4 * (size_t)S;
    m->S = S;
    m->rope_T = 0; /* carving may have moved the tables */
}

/* cos/sin (T,HD/2) for positions pos[0..T) (NULL: 0..T-1) into backend cos_d/sin_d: inv_freq = theta^(-2i/HD),
 * with llama3 or linear scaling applied as in HF when `scaled` */
static void rope_table(Model *m, int T, const int *pos, double theta, int scaled, float *cos_d, float *sin_d) {
    const ModelConfig *c = &m->cfg;
    int half = c->head_dim / 2;
    float *cs = xmalloc(sizeof(float) * 2 * (size_t)T * half), *sn = cs + (size_t)T * half;
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / pow(theta, (double)(2 * i) / c->head_dim);
        if (scaled && c->rope_linear > 0) inv /= c->rope_linear;
        if (scaled && c->rope_llama3) {
            double wavelen = 2 * M_PI / inv, old = c->rope_original_max_pos;
            double low_wl = old / c->rope_low_freq_factor, high_wl = old / c->rope_high_freq_factor;
            if (wavelen > low_wl) inv /= c->rope_factor;
            else if (wavelen >= high_wl) {
                double smooth = (old / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (1 - smooth) * inv / c->rope_factor + smooth * inv;
            }
        }
        float invf = (float)inv; /* HF keeps inv_freq in fp32 and multiplies by the fp32 position */
        for (int t = 0; t < T; t++) {
            float ang = (float)(pos ? pos[t] : t) * invf;
            cs[(size_t)t * half + i] = cosf(ang);
            sn[(size_t)t * half + i] = sinf(ang);
        }
    }
    m->be->to_backend(cos_d, cs, sizeof(float) * (size_t)T * half);
    m->be->to_backend(sin_d, sn, sizeof(float) * (size_t)T * half);
    free(cs);
}

/* The RoPE table(s) for T rows: every layer's, and Gemma-3's second one for its sliding layers. Row t is position
 * t, or pos[t] for a packed stream (tables rebuilt every time then). */
static void rope_tables(Model *m, int T, const int *pos) {
    const ModelConfig *c = &m->cfg;
    if (c->arch == ARCH_GPT2 || (!pos && m->rope_T == T)) return;
    rope_table(m, T, pos, c->rope_theta, 1, m->a.rope_cos, m->a.rope_sin);
    if (c->rope_local_theta > 0) rope_table(m, T, pos, c->rope_local_theta, 0, m->a.rope_cos_l, m->a.rope_sin_l);
    m->rope_T = pos ? 0 : T;
}

/* layer l's table: Gemma-3's sliding layers use the local one */
static void rope_apply(Model *m, int l, float *qkv, int B, int T, int backward) {
    const ModelConfig *c = &m->cfg;
    if (c->arch == ARCH_GPT2) return;
    int local = c->rope_local_theta > 0 && c->layer_window[l];
    const float *cs = local ? m->a.rope_cos_l : m->a.rope_cos, *sn = local ? m->a.rope_sin_l : m->a.rope_sin;
    if (backward) m->be->rope_backward(qkv, cs, sn, B, T, c->n_head, c->n_kv_head, c->head_dim);
    else m->be->rope_forward(qkv, cs, sn, B, T, c->n_head, c->n_kv_head, c->head_dim);
}

#define P(off) ((off) == OFF_NONE ? NULL : m->params + (off))
#define G(off) ((off) == OFF_NONE || m->lora ? NULL : m->grads + (off)) /* adapters attached: base frozen */

/* out (N,OC) = inp (N,C) @ W^T + b for a trunk / LM-head matrix at offset w, in whichever dtype it is stored;
 * mixed precision (m->wshadow) reads the bf16 shadow of the fp32 master (quorum/model.h model_set_precision) */
static void linear_forward(Model *m, float *out, const float *inp, size_t w, size_t b, int N, int C, int OC) {
    if (m->wdtype == DT_BF16) m->be->matmul_forward_bf16(out, inp, m->wbf + w, P(b), N, C, OC);
    else if (m->wshadow) m->be->matmul_forward_bf16(out, inp, m->wshadow + w, P(b), N, C, OC);
    else m->be->matmul_forward(out, inp, P(w), P(b), N, C, OC);
    if (m->lora) lora_linear_forward(m, out, inp, w, N, C, OC); /* + s drop(x) A^T B^T (model_lora.c) */
}

/* backward of linear_forward: dinp (N,C) += dout @ W, dW += dout^T @ inp, db += sum dout (NULL dinp: skipped);
 * the fp32 dW of a shadowed weight is its master's gradient */
static void linear_backward(Model *m, float *dinp, const float *dout, const float *inp, size_t w, size_t b, int N,
                            int C, int OC) {
    if (m->wshadow) m->be->matmul_backward_bf16(dinp, G(w), G(b), dout, inp, m->wshadow + w, N, C, OC);
    else m->be->matmul_backward(dinp, G(w), G(b), dout, inp, P(w), N, C, OC);
    if (m->lora) lora_linear_backward(m, dinp, dout, inp, w, N, C, OC); /* dA, dB, adapter dx */
}

/* one embedding lookup out[n] = table[ids[n]] (+ pos_table[n % T]) in the stored dtype */
static void embed_lookup(Model *m, float *out, const int *ids, size_t table, size_t pos_table, int B, int T) {
    if (m->wdtype == DT_BF16)
        m->be->embedding_forward_bf16(out, ids, m->wbf + table, pos_table == OFF_NONE ? NULL : m->wbf + pos_table, B, T,
                                      m->cfg.d_model);
    else
        m->be->embedding_forward(out, ids, P(table), P(pos_table), B, T, m->cfg.d_model);
}

/* token (+ GPT-2 learned position) embeddings; a packed stream looks its positions up by a.pos */
static void embed_forward(Model *m, int B, int T, const int *pos) {
    if (!pos || m->wpe == OFF_NONE) {
        embed_lookup(m, m->a.enc, m->a.ids, m->wte, m->wpe, B, T);
        return;
    }
    size_t nc = (size_t)B * T * m->cfg.d_model;
    embed_lookup(m, m->a.enc, m->a.ids, m->wte, OFF_NONE, B, T);
    embed_lookup(m, m->a.proj, m->a.pos, m->wpe, OFF_NONE, B, T); /* wpe rows by position, as a lookup */
    m->be->residual_forward(m->a.enc, m->a.enc, m->a.proj, nc);
}

/* A norm weight as the op sees it: 1 + w for Gemma (norm1p), else the parameter itself. */
static const float *NW(const Model *m, size_t off) {
    if (m->cfg.norm_plus_one && off >= m->norm_lo && off < m->norm_hi) return m->norm1p + (off - m->norm_lo);
    return P(off);
}

/* Gemma: norm1p = 1 + params[norm_lo, norm_hi), once per forward (the optimizer may have moved w). */
static void norm1p_refresh(Model *m) {
    if (!m->cfg.norm_plus_one) return;
    size_t n = m->norm_hi - m->norm_lo;
    if (!m->norm1p) m->norm1p = m->be->alloc(sizeof(float) * n);
    float *h = xmalloc(sizeof(float) * n);
    m->be->to_host(h, m->params + m->norm_lo, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) h[i] = 1.0f + h[i]; /* fp32, as HF's (1.0 + weight.float()) */
    m->be->to_backend(m->norm1p, h, sizeof(float) * n);
    free(h);
}

static void norm_forward(Model *m, float *out, float *mean, float *rstd, const float *inp, size_t w, size_t b, int N) {
    if (m->cfg.arch == ARCH_GPT2)
        m->be->layernorm_forward(out, mean, rstd, inp, P(w), P(b), N, m->cfg.d_model, m->cfg.norm_eps);
    else
        m->be->rmsnorm_forward(out, rstd, inp, NW(m, w), N, m->cfg.d_model, m->cfg.norm_eps);
}

static void norm_backward(Model *m, float *dinp, const float *dout, const float *inp, const float *mean,
                          const float *rstd, size_t w, size_t b, int N) {
    if (m->cfg.arch == ARCH_GPT2)
        m->be->layernorm_backward(dinp, G(w), G(b), dout, inp, P(w), mean, rstd, N, m->cfg.d_model);
    else
        m->be->rmsnorm_backward(dinp, G(w), dout, inp, NW(m, w), rstd, N, m->cfg.d_model);
}

/* Sliding window of layer l for a batch of length T: 0 when it cannot mask anything (T <= window). */
static int attn_window(const Model *m, int l, int T) {
    return m->cfg.layer_window[l] && m->cfg.sliding_window < T ? m->cfg.sliding_window : 0;
}

/* 1 when attention_forward (scale 1/sqrt(head_dim), no softcap) computes this config's attention */
static int attn_plain(const ModelConfig *c) {
    return c->attn_softcap <= 0 && c->attn_scale == 1.0f / sqrtf((float)c->head_dim);
}

int model_backend_supports(const ModelConfig *c, const Backend *be, const char **missing) {
#define NEED(cond, op) do { if ((cond) && !be->op) { *missing = #op; return 0; } } while (0)
    NEED(c->qk_norm, qknorm_forward);
    NEED(c->act == ACT_GEGLU, geglu_forward);
    NEED(c->embed_scale > 0, scale_forward);
    NEED(!attn_plain(c), attention_ex_forward);
    NEED(c->head == HEAD_LM && c->final_softcap > 0, softcap_forward);
    NEED(c->head == HEAD_REWARD && c->reward_head == RHEAD_MLP, relu_forward);
#undef NEED
    return 1;
}

static void attn_forward(Model *m, int l, float *out, float *att, float *lse, const float *qkv, int B, int T) {
    const ModelConfig *c = &m->cfg;
    if (m->flash) {
        if (m->pad_rows) /* padded queries are no segment's: keep their rows finite (ops.h) for the ops after */
            m->be->zero(out, sizeof(float) * (size_t)B * T * c->n_head * c->head_dim);
        m->be->attention_varlen_forward(out, m->grad_enabled ? lse : NULL, qkv, m->a.segs, m->S, c->n_head,
                                        c->n_kv_head, c->head_dim, c->attn_scale, c->attn_softcap,
                                        c->layer_window[l] ? c->sliding_window : 0);
        return;
    }
    int win = attn_window(m, l, T);
    if (!win && attn_plain(c))
        m->be->attention_forward(out, att, qkv, m->a.lens, B, T, c->n_head, c->n_kv_head, c->head_dim);
    else
        m->be->attention_ex_forward(out, att, qkv, m->a.lens, B, T, c->n_head, c->n_kv_head, c->head_dim,
                                    c->attn_scale, c->attn_softcap, win);
}

/* dqkv += d(attention of layer l) given dout; out / att / lse as the forward saved them */
static void attn_backward(Model *m, int l, float *dqkv, const float *dout, const float *qkv, const float *out,
                          const float *att, const float *lse, int B, int T) {
    const ModelConfig *c = &m->cfg;
    if (m->flash) {
        m->be->attention_varlen_backward(dqkv, dout, qkv, out, lse, m->a.segs, m->S, c->n_head, c->n_kv_head,
                                         c->head_dim, c->attn_scale, c->attn_softcap,
                                         c->layer_window[l] ? c->sliding_window : 0);
        return;
    }
    int win = attn_window(m, l, T);
    if (!win && attn_plain(c))
        m->be->attention_backward(dqkv, m->a.datt, dout, qkv, att, m->a.lens, B, T, c->n_head, c->n_kv_head, c->head_dim);
    else
        m->be->attention_ex_backward(dqkv, m->a.datt, dout, qkv, att, m->a.lens, B, T, c->n_head, c->n_kv_head,
                                     c->head_dim, c->attn_scale, c->attn_softcap, win);
}

static void act_forward(Model *m, float *fca, const float *fch, int N, int F) {
    if (m->cfg.act == ACT_GELU_NEW) m->be->gelu_forward(fca, fch, (size_t)N * F);
    else if (m->cfg.act == ACT_GEGLU) m->be->geglu_forward(fca, fch, N, F);
    else m->be->swiglu_forward(fca, fch, N, F);
}

static void act_backward(Model *m, float *dfch, const float *dfca, const float *fch, int N, int F) {
    if (m->cfg.act == ACT_GELU_NEW) m->be->gelu_backward(dfch, fch, dfca, (size_t)N * F);
    else if (m->cfg.act == ACT_GEGLU) m->be->geglu_backward(dfch, dfca, fch, N, F);
    else m->be->swiglu_backward(dfch, dfca, fch, N, F);
}

/* layer slot l of an (LA, n) activation array; ATR: of the (LR, n) layer outputs res3 */
#define AT(arr, l, n) (m->a.arr + (size_t)((m->grad_enabled && !m->recompute ? (l) : 0)) * (n))
#define ATR(l, n) (m->a.res3 + (size_t)((m->grad_enabled ? (l) : 0)) * (n))

/* One layer's activation slots (l-th of every saved array). */
typedef struct {
    float *x, *ln1, *qkv, *qkr, *qk_rstd, *att, *alse, *atty, *po1, *po1_rstd, *res2, *ln2, *fch, *fca, *po2, *po2_rstd, *res3;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;
} LayerActs;

static LayerActs layer_acts(Model *m, int l, int B, int T) {
    Dims d = dims_of(m);
    size_t N = (size_t)B * T, nc = N * d.C;
    LayerActs a = {
        .x = l ? ATR(l - 1, nc) : m->a.enc, .ln1 = AT(ln1, l, nc), .qkv = AT(qkv, l, N * d.QKV),
        .qkr = AT(qkr, l, N * d.QKV), .qk_rstd = AT(qk_rstd, l, N * (d.NH + d.NKV)),
        .att = AT(att, l, N * d.NH * T), .alse = AT(alse, l, N * d.NH), .atty = AT(atty, l, N * d.NH * d.HD),
        .po1 = AT(po1, l, nc), .po1_rstd = AT(po1_rstd, l, N), .res2 = AT(res2, l, nc), .ln2 = AT(ln2, l, nc),
        .fch = AT(fch, l, N * d.FC), .fca = AT(fca, l, N * d.F), .po2 = AT(po2, l, nc), .po2_rstd = AT(po2_rstd, l, N),
        .res3 = ATR(l, nc), .ln1_mean = AT(ln1_mean, l, N), .ln1_rstd = AT(ln1_rstd, l, N),
        .ln2_mean = AT(ln2_mean, l, N), .ln2_rstd = AT(ln2_rstd, l, N)};
    return a;
}

/* Layer l on its input a.x into its activation slots (also rerun by backward under recompute: bit-identical).
 * res2 = x + [postnorm](o(attn(rope([qknorm](qkv(ln1(x))))))), res3 = res2 + [postnorm](proj(act(fc(ln2(res2))))) */
static void layer_forward(Model *m, int l, int B, int T) {
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    Dims d = dims_of(m);
    int N = B * T;
    size_t nc = (size_t)N * d.C;
    const LayerOffsets *L = &m->layers[l];
    LayerActs a = layer_acts(m, l, B, T);
    norm_forward(m, a.ln1, a.ln1_mean, a.ln1_rstd, a.x, L->ln1_w, L->ln1_b, N);
    linear_forward(m, c->qk_norm ? a.qkr : a.qkv, a.ln1, L->qkv_w, L->qkv_b, N, d.C, d.QKV);
    if (c->qk_norm)
        be->qknorm_forward(a.qkv, a.qk_rstd, a.qkr, NW(m, L->qn_w), NW(m, L->kn_w), N, d.NH, d.NKV, d.HD, c->norm_eps);
    rope_apply(m, l, a.qkv, B, T, 0);
    attn_forward(m, l, a.atty, a.att, a.alse, a.qkv, B, T);
    linear_forward(m, c->post_norms ? a.po1 : m->a.proj, a.atty, L->o_w, L->o_b, N, d.NH * d.HD, d.C);
    if (c->post_norms) norm_forward(m, m->a.proj, NULL, a.po1_rstd, a.po1, L->pa_w, OFF_NONE, N);
    be->residual_forward(a.res2, a.x, m->a.proj, nc);
    norm_forward(m, a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, L->ln2_w, L->ln2_b, N);
    linear_forward(m, a.fch, a.ln2, L->fc_w, L->fc_b, N, d.C, d.FC);
    act_forward(m, a.fca, a.fch, N, d.F);
    linear_forward(m, c->post_norms ? a.po2 : m->a.proj, a.fca, L->proj_w, L->proj_b, N, d.F, d.C);
    if (c->post_norms) norm_forward(m, m->a.proj, NULL, a.po2_rstd, a.po2, L->pf_w, OFF_NONE, N);
    be->residual_forward(a.res3, a.res2, m->a.proj, nc);
}

/* Runs embedding + every layer for ids (B,T) (pos: host positions of a packed stream, B = 1, else NULL); the
 * output is ATR(L-1). */
static void trunk_forward(Model *m, int B, int T, const int *pos) {
    const ModelConfig *c = &m->cfg;
    embed_forward(m, B, T, pos);
    if (c->embed_scale > 0) m->be->scale_forward(m->a.enc, m->a.enc, c->embed_scale, (size_t)B * T * c->d_model);
    rope_tables(m, T, pos);
    for (int l = 0; l < c->n_layer; l++) layer_forward(m, l, B, T);
}

/* d(branch output) -> d(pre-postnorm output): dres itself without post norms, else a.dpo */
static const float *postnorm_backward(Model *m, const float *po, const float *rstd, size_t w, int N) {
    if (!m->cfg.post_norms) return m->a.dres;
    m->be->zero(m->a.dpo, sizeof(float) * (size_t)N * m->cfg.d_model);
    norm_backward(m, m->a.dpo, m->a.dres, po, NULL, rstd, w, OFF_NONE, N);
    return m->a.dpo;
}

static void trunk_backward(Model *m, int B, int T) { /* m->a.dres holds dLoss/d(last layer output) */
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    Dims d = dims_of(m);
    int N = B * T;
    size_t nc = (size_t)N * d.C;
    for (int l = d.L - 1; l >= 0; l--) {
        const LayerOffsets *L = &m->layers[l];
        if (m->recompute) layer_forward(m, l, B, T); /* its activations again, from its saved input */
        LayerActs a = layer_acts(m, l, B, T);
        /* MLP branch */
        const float *dmo = postnorm_backward(m, a.po2, a.po2_rstd, L->pf_w, N);
        be->zero(m->a.dfca, sizeof(float) * N * d.F);
        linear_backward(m, m->a.dfca, dmo, a.fca, L->proj_w, L->proj_b, N, d.F, d.C);
        be->zero(m->a.dfch, sizeof(float) * N * d.FC);
        act_backward(m, m->a.dfch, m->a.dfca, a.fch, N, d.F);
        be->zero(m->a.dln, sizeof(float) * nc);
        linear_backward(m, m->a.dln, m->a.dfch, a.ln2, L->fc_w, L->fc_b, N, d.C, d.FC);
        norm_backward(m, m->a.dres, m->a.dln, a.res2, a.ln2_mean, a.ln2_rstd, L->ln2_w, L->ln2_b, N);
        /* attention branch */
        const float *dao = postnorm_backward(m, a.po1, a.po1_rstd, L->pa_w, N);
        be->zero(m->a.datty, sizeof(float) * N * d.NH * d.HD);
        linear_backward(m, m->a.datty, dao, a.atty, L->o_w, L->o_b, N, d.NH * d.HD, d.C);
        be->zero(m->a.dqkv, sizeof(float) * N * d.QKV);
        attn_backward(m, l, m->a.dqkv, m->a.datty, a.qkv, a.atty, a.att, a.alse, B, T);
        rope_apply(m, l, m->a.dqkv, B, T, 1);
        const float *dmm = m->a.dqkv;
        if (c->qk_norm) {
            be->zero(m->a.dqkr, sizeof(float) * N * d.QKV);
            be->qknorm_backward(m->a.dqkr, G(L->qn_w), G(L->kn_w), m->a.dqkv, a.qkr, NW(m, L->qn_w), NW(m, L->kn_w),
                                a.qk_rstd, N, d.NH, d.NKV, d.HD);
            dmm = m->a.dqkr;
        }
        be->zero(m->a.dln, sizeof(float) * nc);
        linear_backward(m, m->a.dln, dmm, a.ln1, L->qkv_w, L->qkv_b, N, d.C, d.QKV);
        norm_backward(m, m->a.dres, m->a.dln, a.x, a.ln1_mean, a.ln1_rstd, L->ln1_w, L->ln1_b, N);
        grad_ready_report(m, l); /* layer l's gradients are final: a reduction may start (model_set_grad_ready_hook) */
    }
    if (m->lora) return; /* frozen embeddings: nothing left to differentiate */
    if (c->embed_scale > 0) be->scale_forward(m->a.dres, m->a.dres, c->embed_scale, nc);
    if (m->packed && m->wpe != OFF_NONE) { /* GPT-2 positions of a packed stream: wpe rows by a.pos, a lookup */
        be->embedding_backward(G(m->wte), NULL, m->a.dres, m->a.ids, B, T, d.C);
        be->embedding_backward(G(m->wpe), NULL, m->a.dres, m->a.pos, B, T, d.C);
    } else {
        be->embedding_backward(G(m->wte), G(m->wpe), m->a.dres, m->a.ids, B, T, d.C);
    }
}

/* Validates a batch; -1 (one line) on bad shapes, lengths or ids. */
static int check_batch(const Model *m, const int32_t *ids, const int *lens, int B, int T) {
    if (B < 1 || T < 1) return quorum_input_error("model:batch", "B=%d T=%d must be positive", B, T);
    if (m->cfg.arch == ARCH_GPT2 && T > m->cfg.max_pos)
        return quorum_input_error("model:batch:T", "T=%d exceeds n_positions=%d", T, m->cfg.max_pos);
    if (m->cfg.sliding_window && T > m->cfg.sliding_window && !m->be->attention_ex_forward)
        return quorum_input_error("model:batch:T", "T=%d exceeds sliding_window=%d and backend %s has no "
                                  "sliding-window attention (use QUORUM_BACKEND=cpu)", T, m->cfg.sliding_window,
                                  m->be->name);
    for (int b = 0; b < B; b++) {
        if (lens[b] < 1 || lens[b] > T)
            return quorum_input_error("model:batch:lens", "lens[%d]=%d not in [1,%d]", b, lens[b], T);
        for (int t = 0; t < T; t++)
            if (ids[(size_t)b * T + t] < 0 || ids[(size_t)b * T + t] >= m->cfg.vocab_size)
                return quorum_input_error("model:batch:ids", "ids[%d,%d]=%d not in [0,%d)", b, t,
                                          ids[(size_t)b * T + t], m->cfg.vocab_size);
    }
    return 0;
}

/* The final norm and the head on the gathered rows a.rows of the trunk output. */
static void head_forward(Model *m, int B, int T, int M) {
    const Backend *be = m->be;
    Dims d = dims_of(m);
    size_t nc = (size_t)B * T * d.C;
    be->gather_forward(m->a.g, ATR(d.L - 1, nc), m->a.rows, M, d.C);
    norm_forward(m, m->a.gn, m->a.g_mean, m->a.g_rstd, m->a.g, m->lnf_w, m->lnf_b, M);
    if (m->cfg.head == HEAD_REWARD) {
        rhead_forward(m, M);
        return;
    }
    linear_forward(m, m->a.logits, m->a.gn, m->head_w, OFF_NONE, M, d.C, d.V);
    if (m->cfg.final_softcap > 0) be->softcap_forward(m->a.logits, m->a.logits, m->cfg.final_softcap, (size_t)M * d.V);
}

/* Uploads ids/lens/rows(/targets) (+ one attention segment per sequence for the flash path), runs the trunk,
 * gathers rows and applies the final norm + head. */
static void run_forward(Model *m, const int32_t *ids, const int *lens, const int *targets, int B, int T, int M) {
    const Backend *be = m->be;
    m->flash = flash_wanted(m);
    m->packed = 0;
    acts_ensure(m, B, T, M, B);
    m->B = B;
    m->T = T;
    m->M = M;
    int *ids_i = xmalloc(sizeof(int) * (size_t)B * T), *segs = xmalloc(sizeof(int) * 4 * (size_t)B);
    for (size_t i = 0; i < (size_t)B * T; i++) ids_i[i] = ids[i];
    m->pad_rows = 0;
    for (int b = 0; b < B; b++) {
        segs[4 * b] = b * T, segs[4 * b + 1] = lens[b], segs[4 * b + 2] = segs[4 * b + 3] = 0;
        m->pad_rows |= lens[b] < T;
    }
    be->to_backend(m->a.ids, ids_i, sizeof(int) * (size_t)B * T);
    be->to_backend(m->a.lens, lens, sizeof(int) * B);
    be->to_backend(m->a.rows, m->rows_host, sizeof(int) * M);
    be->to_backend(m->a.segs, segs, sizeof(int) * 4 * (size_t)B);
    if (targets) be->to_backend(m->a.targets, targets, sizeof(int) * M);
    free(ids_i);
    free(segs);
    norm1p_refresh(m);
    trunk_forward(m, B, T, NULL);
    head_forward(m, B, T, M);
}

void forward_packed(Model *m, const int *ids, const int *pos, int N, const int *segs, int S, const int *rows, int M,
                    const int *targets) {
    const Backend *be = m->be;
    m->flash = m->packed = 1;
    acts_ensure(m, 1, N, M, S);
    m->B = 1;
    m->T = N;
    m->M = M;
    m->last = 0; /* the caller sets it once the head's outputs are read */
    m->pad_rows = 0; /* the segments cover the stream */
    if (targets) be->to_backend(m->a.targets, targets, sizeof(int) * (size_t)M);
    be->to_backend(m->a.ids, ids, sizeof(int) * (size_t)N);
    be->to_backend(m->a.pos, pos, sizeof(int) * (size_t)N);
    be->to_backend(m->a.segs, segs, sizeof(int) * 4 * (size_t)S);
    be->to_backend(m->a.rows, rows, sizeof(int) * (size_t)M);
    norm1p_refresh(m);
    trunk_forward(m, 1, N, pos);
    head_forward(m, 1, N, M);
}

int model_reward(Model *m, const int32_t *ids, const int *lens, int B, int T, float *reward) {
    m->last = 0; /* a failed forward leaves nothing to differentiate */
    if (m->cfg.head != HEAD_REWARD)
        return quorum_input_error("model:reward", "%s is not a reward model", m->cfg.architecture);
    if (check_batch(m, ids, lens, B, T)) return -1;
    int armo = m->cfg.reward_head == RHEAD_ARMO, M = armo ? 2 * B : B; /* ArmoRM: + a gating row each */
    m->rows_host = xrealloc(m->rows_host, sizeof(int) * M);
    for (int b = 0; b < B; b++) m->rows_host[b] = b * T + lens[b] - 1;
    if (armo) head_gate_rows(m, ids, lens, B, T, m->rows_host + B);
    run_forward(m, ids, lens, NULL, B, T, M);
    m->be->to_host(reward, m->a.logits, sizeof(float) * B);
    m->last = 1;
    return 0;
}

int model_logprobs(Model *m, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                   float *seq_logp) {
    m->last = 0;
    if (m->cfg.head != HEAD_LM)
        return quorum_input_error("model:logprobs", "%s is not a causal LM", m->cfg.architecture);
    if (check_batch(m, ids, lens, B, T)) return -1;
    /* row b*T + t-1 predicts ids[b,t] */
    int M = 0;
    m->rows_host = xrealloc(m->rows_host, sizeof(int) * ((size_t)B * T + 1));
    int *targets = xmalloc(sizeof(int) * ((size_t)B * T + 1));
    for (int b = 0; b < B; b++)
        for (int t = 1; t < lens[b]; t++)
            if (mask[(size_t)b * T + t]) {
                m->rows_host[M] = b * T + t - 1;
                targets[M++] = ids[(size_t)b * T + t];
            }
    run_forward(m, ids, lens, targets, B, T, M);
    free(targets);
    m->be->logprob_forward(m->a.logp, m->a.lse, m->a.logits, m->a.targets, M, m->cfg.vocab_size);
    if (m->tok_cap < (size_t)B * T) {
        m->tok_logp = xrealloc(m->tok_logp, sizeof(float) * (size_t)B * T);
        m->tok_cap = (size_t)B * T;
    }
    float *lp = xmalloc(sizeof(float) * (M + 1));
    m->be->to_host(lp, m->a.logp, sizeof(float) * M);
    memset(m->tok_logp, 0, sizeof(float) * (size_t)B * T);
    for (int b = 0; b < B; b++) seq_logp[b] = 0.0f;
    for (int i = 0; i < M; i++) {
        int r = m->rows_host[i];
        m->tok_logp[r + 1] = lp[i];
        seq_logp[r / T] += lp[i];
    }
    free(lp);
    m->last = 2;
    return 0;
}

const float *model_token_logprobs(const Model *m) { return m->tok_logp; }

int model_backward(Model *m, const float *dseq) {
    if (!m->grad_enabled || !m->last)
        return quorum_input_error("model:backward", "no forward to differentiate (one backward per forward, "
                                  "grads must be enabled)");
    if (m->last == 1 && m->cfg.reward_head == RHEAD_ARMO) {
        m->last = 0;
        return quorum_input_error("model:backward", "%s: the ArmoRM head is forward-only (scoring)", m->cfg.architecture);
    }
    if (!m->lora) grads_ensure(m); /* grad_enabled implies fp32 weights (model_set_grad_enabled converts) */
    const Backend *be = m->be;
    Dims d = dims_of(m);
    int B = m->B, T = m->T, M = m->M;
    /* dLoss/d(head output) per gathered row: of its sequence, or of the one or two a packed row serves */
    float *dh = xmalloc(sizeof(float) * (M + 1));
    for (int i = 0; i < M; i++) {
        const int *o = m->row_seq + 2 * i;
        dh[i] = !m->packed ? dseq[m->rows_host[i] / T] : (o[0] >= 0 ? dseq[o[0]] : 0.0f) + (o[1] >= 0 ? dseq[o[1]] : 0.0f);
    }
    be->zero(m->a.dgn, sizeof(float) * (size_t)M * d.C);
    be->to_backend(m->a.dlogp, dh, sizeof(float) * M); /* dlogp, or (B,1) dreward */
    if (m->last == 2) {
        float cap = m->cfg.final_softcap, *dl = cap > 0 ? m->a.dlogits : m->a.logits; /* in place without a cap */
        be->logprob_backward(dl, m->a.dlogp, m->a.logits, m->a.lse, m->a.targets, M, d.V);
        if (cap > 0) be->softcap_backward(dl, dl, m->a.logits, cap, (size_t)M * d.V);
        linear_backward(m, m->a.dgn, dl, m->a.gn, m->head_w, OFF_NONE, M, d.C, d.V);
    } else {
        rhead_backward(m, M);
    }
    free(dh);
    be->zero(m->a.dg, sizeof(float) * (size_t)M * d.C);
    norm_backward(m, m->a.dg, m->a.dgn, m->a.g, m->a.g_mean, m->a.g_rstd, m->lnf_w, m->lnf_b, M);
    be->zero(m->a.dres, sizeof(float) * (size_t)B * T * d.C);
    be->gather_backward(m->a.dres, m->a.dg, m->a.rows, M, d.C);
    grad_ready_report(m, d.L); /* the final norm and the head */
    trunk_backward(m, B, T);
    grad_ready_report(m, d.L + 1); /* the embeddings (and a tied head) */
    m->last = 0; /* the logits buffer now holds dlogits */
    return 0;
}
