/* model_lora.c - LoRA adapters inside the model's linears (quorum/model.h, LoRA section).
 *
 * A site is one targeted weight W0 [O,I]: rows [o0, o0+O) of the linear at param offset w (the fused q;k;v or
 * gate;up matmul, or a plain one). With x the linear's input (N,I) and s = alpha / r:
 *   forward    xd = drop(x) (TRAIN, p > 0; else x)    u = xd A^T (N,r)    v = u B^T (N,O)    out[:, o0:] += s v
 *   backward   dv = s dout[:, o0:]    du = dv B, dB += dv^T u    dxd = du A, dA += du^T xd    dx += drop(dxd)
 * u (N,r) is kept per site (r floats a row: small); xd is regenerated in backward (the mask is counter-based, ops.h
 * dropout_forward), so the only (N, width) buffers are a few scratch ones shared by every site. Everything is Backend ops, so the
 * same code runs on cpu and cuda. The base weights are frozen: model_forward.c's G() gives NULL for every base
 * parameter once adapters are attached, and no base gradient buffer exists. */
#include "model_internal.h"
#include "quorum/common.h"
#include "quorum/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ModelLoraSite pub;
    size_t w;   /* param offset of the linear this site adds into */
    int o0, OC; /* its first output column, and the linear's output width */
} Site;

struct ModelLora {
    ModelLoraCfg cfg;
    float scale;
    int n;
    Site *site;
    ModelLoraSite *pub;        /* model_lora_sites' view, n entries */
    float *params, *grads;     /* backend, n_params each */
    size_t n_params;
    ModelLoraMode mode;
    int merged;                /* model_lora_merge ran: OFF for good */
    uint64_t seed;             /* this forward's dropout seed (TRAIN) */
    float *xd, *dxd, *u, *du, *v; /* backend scratch: (N,maxI) (N,maxI) (n sites,N,r) (N,r) (N,maxO) */
    size_t scratch_N;
    int max_in, max_out;
};

/* The next name of a comma-separated target list at *p (its length in *len, possibly 0 for ",,"), *p moved past
 * it; NULL at the end. */
static const char *target_next(const char **p, size_t *len) {
    if (!**p) return NULL;
    const char *name = *p, *e = strchr(name, ',');
    *len = e ? (size_t)(e - name) : strlen(name);
    *p = name + *len + (e != NULL);
    return name;
}

/* 1 when tensor `name` is "<...>.<target>.weight" for one of the comma-separated targets. */
static int targeted(const char *targets, const char *name) {
    size_t nl = strlen(name), tl;
    if (nl < 8 || strcmp(name + nl - 7, ".weight")) return 0;
    for (const char *p = targets, *t; (t = target_next(&p, &tl));)
        if (tl && nl >= tl + 8 && !strncmp(name + nl - 7 - tl, t, tl) && name[nl - 8 - tl] == '.') return 1;
    return 0;
}

/* The trunk linear holding the weight at param offset off: its offset *w, output width *OC and input width *I;
 * 0 when off is in none (embeddings, norms, the head). */
static int linear_of(const Model *m, size_t off, size_t *w, int *OC, int *I) {
    const ModelConfig *c = &m->cfg;
    int C = c->d_model, NHD = c->n_head * c->head_dim, QKV = (c->n_head + 2 * c->n_kv_head) * c->head_dim;
    int F = c->d_ff, FC = c->act == ACT_GELU_NEW ? F : 2 * F;
    for (int l = 0; l < c->n_layer; l++) {
        const LayerOffsets *L = &m->layers[l];
        size_t ws[4] = {L->qkv_w, L->o_w, L->fc_w, L->proj_w};
        int oc[4] = {QKV, C, FC, C}, in[4] = {C, NHD, C, F};
        for (int k = 0; k < 4; k++)
            if (ws[k] != OFF_NONE && off >= ws[k] && off < ws[k] + (size_t)oc[k] * in[k]) {
                *w = ws[k], *OC = oc[k], *I = in[k];
                return 1;
            }
    }
    return 0;
}

static void lora_release(Model *m, struct ModelLora *L) {
    const Backend *be = m->be;
    be->free(L->params);
    be->free(L->grads);
    be->free(L->xd);
    be->free(L->dxd);
    be->free(L->u);
    be->free(L->du);
    be->free(L->v);
    free(L->site);
    free(L->pub);
    free(L);
}

void lora_free(Model *m) {
    if (m->lora) lora_release(m, m->lora);
    m->lora = NULL;
}

static int cfg_check(const Model *m, const ModelLoraCfg *c) {
    const char *what = "model_lora_attach";
    if (m->lora) return quorum_input_error(what, "adapters are already attached");
    if (c->r < 1) return quorum_input_error(what, "lora r=%d: must be >= 1", c->r);
    if (!(c->alpha > 0)) return quorum_input_error(what, "lora alpha=%g: must be > 0", (double)c->alpha);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return quorum_input_error(what, "lora dropout=%g: must be in [0, 1)", (double)c->dropout);
    if (m->cfg.head != HEAD_LM)
        return quorum_input_error(what, "%s: adapters are for causal LM policies", m->cfg.architecture);
    if (m->wdtype != DT_F32) return quorum_input_error(what, "bf16 weights: load the model for training (fp32)");
    return 0;
}

/* PEFT's init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; uploaded once */
static void adapters_init(Model *m, struct ModelLora *L) {
    float *h = xcalloc(L->n_params ? L->n_params : 1, sizeof(float));
    Rng rng;
    rng_seed(&rng, L->cfg.seed, 0x10a);
    for (int k = 0; k < L->n; k++) {
        const ModelLoraSite *S = &L->site[k].pub;
        float bound = 1.0f / sqrtf((float)S->in);
        for (int64_t j = 0; j < (int64_t)L->cfg.r * S->in; j++) h[S->a + j] = bound * (2 * rng_uniform(&rng) - 1);
    }
    L->params = m->be->alloc(sizeof(float) * L->n_params);
    L->grads = m->be->alloc(sizeof(float) * L->n_params);
    m->be->to_backend(L->params, h, sizeof(float) * L->n_params);
    m->be->zero(L->grads, sizeof(float) * L->n_params);
    free(h);
}

int model_lora_attach(Model *m, const ModelLoraCfg *c) {
    if (cfg_check(m, c)) return -1;
    struct ModelLora *L = xcalloc(1, sizeof *L);
    L->cfg = *c;
    L->scale = c->alpha / (float)c->r;
    L->site = xcalloc((size_t)m->n_tensors, sizeof(Site));
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        size_t w;
        int OC, I;
        if (t->ndim != 2 || !c->targets || !targeted(c->targets, t->name)) continue;
        if (!linear_of(m, t->offset, &w, &OC, &I) || t->shape[1] != I) {
            quorum_input_error(t->name, "lora target: not a trunk projection (q/k/v/o, gate/up/down, c_attn/c_proj/c_fc)");
            lora_release(m, L);
            return -1;
        }
        Site *S = &L->site[L->n++];
        S->w = w, S->OC = OC, S->o0 = (int)((t->offset - w) / (size_t)I);
        S->pub = (ModelLoraSite){.name = t->name, .out = t->shape[0], .in = I, .a = L->n_params};
        L->n_params += (size_t)c->r * I;
        S->pub.b = L->n_params;
        L->n_params += (size_t)t->shape[0] * c->r;
        if (I > L->max_in) L->max_in = I;
        if (t->shape[0] > L->max_out) L->max_out = (int)t->shape[0];
    }
    if (!L->n) {
        lora_release(m, L);
        return quorum_input_error(c->targets ? c->targets : "(none)", "lora targets: no 2-D weight of the policy "
                                  "matches (names end in \"<target>.weight\", e.g. q_proj, v_proj; GPT-2: c_attn, c_proj, c_fc)");
    }
    L->pub = xcalloc((size_t)L->n, sizeof(ModelLoraSite));
    for (int k = 0; k < L->n; k++) L->pub[k] = L->site[k].pub;
    adapters_init(m, L);
    L->mode = MODEL_LORA_EVAL;
    if (m->grads) m->be->free(m->grads); /* frozen base: its gradient buffer goes */
    m->grads = NULL;
    m->lora = L;
    m->last = 0;
    return 0;
}

void model_lora_mode(Model *m, ModelLoraMode mode, uint64_t seed) {
    if (!m->lora || m->lora->merged) return;
    m->lora->mode = mode;
    m->lora->seed = seed;
}
const ModelLoraSite *model_lora_sites(const Model *m, int *n) {
    *n = m->lora ? m->lora->n : 0;
    return m->lora ? m->lora->pub : NULL;
}
float *model_lora_params(Model *m) { return m->lora ? m->lora->params : NULL; }
float *model_lora_grads(Model *m) { return m->lora ? m->lora->grads : NULL; }
size_t model_lora_n_params(const Model *m) { return m->lora ? m->lora->n_params : 0; }
void lora_zero_grad(Model *m) { m->be->zero(m->lora->grads, sizeof(float) * m->lora->n_params); }

/* scratch for N rows */
static void scratch_ensure(Model *m, struct ModelLora *L, int N) {
    if ((size_t)N <= L->scratch_N) return;
    const Backend *be = m->be;
    float **bufs[5] = {&L->xd, &L->dxd, &L->u, &L->du, &L->v};
    int width[5] = {L->max_in, L->max_in, L->n * L->cfg.r, L->cfg.r, L->max_out};
    for (int i = 0; i < 5; i++) {
        be->free(*bufs[i]);
        *bufs[i] = be->alloc(sizeof(float) * (size_t)N * width[i]);
    }
    L->scratch_N = (size_t)N;
}

/* the adapter input of site k: x itself, or drop(x) into L->xd in TRAIN mode */
static const float *site_input(Model *m, struct ModelLora *L, int k, const float *x, int N, int I) {
    float p = L->cfg.dropout;
    if (L->mode != MODEL_LORA_TRAIN || p <= 0) return x;
    m->be->dropout_forward(L->xd, x, (size_t)N * I, p, rng_counter_u64(L->seed, (uint64_t)k));
    return L->xd;
}

void lora_linear_forward(Model *m, float *out, const float *inp, size_t w, int N, int C, int OC) {
    struct ModelLora *L = m->lora;
    if (!L || L->mode == MODEL_LORA_OFF) return;
    const Backend *be = m->be;
    int r = L->cfg.r;
    for (int k = 0; k < L->n; k++) {
        const Site *S = &L->site[k];
        if (S->w != w) continue;
        scratch_ensure(m, L, N);
        int O = (int)S->pub.out;
        const float *xd = site_input(m, L, k, inp, N, C);
        float *u = L->u + (size_t)k * N * r; /* kept for the backward of this forward */
        be->matmul_forward(u, xd, L->params + S->pub.a, NULL, N, C, r);  /* u (N,r) = xd A^T */
        be->matmul_forward(L->v, u, L->params + S->pub.b, NULL, N, r, O); /* v (N,O) = u B^T */
        be->axpy_cols(out + S->o0, OC, L->v, O, L->scale, N, O);
    }
}

void lora_linear_backward(Model *m, float *dinp, const float *dout, const float *inp, size_t w, int N, int C, int OC) {
    struct ModelLora *L = m->lora;
    if (!L || L->mode == MODEL_LORA_OFF) return;
    const Backend *be = m->be;
    int r = L->cfg.r, drop = L->mode == MODEL_LORA_TRAIN && L->cfg.dropout > 0;
    for (int k = 0; k < L->n; k++) {
        const Site *S = &L->site[k];
        if (S->w != w) continue;
        scratch_ensure(m, L, N);
        int O = (int)S->pub.out;
        const float *A = L->params + S->pub.a, *B = L->params + S->pub.b;
        float *dA = L->grads + S->pub.a, *dB = L->grads + S->pub.b;
        const float *xd = site_input(m, L, k, inp, N, C);
        be->zero(L->v, sizeof(float) * (size_t)N * O);
        be->axpy_cols(L->v, O, dout + S->o0, OC, L->scale, N, O); /* dv = s dout[:, o0:o0+O] */
        be->zero(L->du, sizeof(float) * (size_t)N * r);
        be->matmul_backward(L->du, dB, NULL, L->v, L->u + (size_t)k * N * r, B, N, r, O);
        if (!dinp || !drop) { /* dx += du A straight into dinp */
            be->matmul_backward(dinp, dA, NULL, L->du, xd, A, N, C, r);
            continue;
        }
        be->zero(L->dxd, sizeof(float) * (size_t)N * C);
        be->matmul_backward(L->dxd, dA, NULL, L->du, xd, A, N, C, r);
        be->dropout_forward(L->dxd, L->dxd, (size_t)N * C, L->cfg.dropout, rng_counter_u64(L->seed, (uint64_t)k));
        be->residual_forward(dinp, dinp, L->dxd, (size_t)N * C);
    }
}

void model_lora_merge(Model *m) {
    struct ModelLora *L = m->lora;
    if (!L) return;
    const Backend *be = m->be;
    int r = L->cfg.r;
    float *ad = xmalloc(sizeof(float) * L->n_params);
    be->to_host(ad, L->params, sizeof(float) * L->n_params);
    for (int k = 0; k < L->n; k++) {
        const ModelLoraSite *S = &L->site[k].pub;
        size_t off = model_find_tensor(m, S->name)->offset, n = (size_t)(S->out * S->in);
        float *W = xmalloc(sizeof(float) * n);
        be->to_host(W, m->params + off, sizeof(float) * n);
        const float *A = ad + S->a, *B = ad + S->b;
        for (int64_t o = 0; o < S->out; o++)
            for (int64_t i = 0; i < S->in; i++) {
                double acc = 0;
                for (int j = 0; j < r; j++) acc += (double)B[o * r + j] * A[(int64_t)j * S->in + i];
                W[o * S->in + i] += (float)(L->scale * acc);
            }
        be->to_backend(m->params + off, W, sizeof(float) * n);
        free(W);
    }
    free(ad);
    L->mode = MODEL_LORA_OFF;
    L->merged = 1;
}
