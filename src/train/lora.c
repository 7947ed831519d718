/* lora.c - LoRA adapters as a TrainModel wrapped around a model.h policy (quorum/train.h, section LoRA).
 *
 * Each targeted weight W (our layout [out,in]) becomes W0 + s * B A with s = alpha / r, A [r,in], B [out,r].
 * The wrapper's flat params are the adapters only ([A_0, B_0, A_1, B_1, ...]), so AdamW moments, ZeRO-1
 * shards, the gradient allreduce and checkpoints cover the adapters alone. Forward writes the merged
 * W0 + s B A into the base model, then runs it; backward runs the base backward (full dW into the base's
 * own grad buffer) and projects: dB = s dW A^T, dA = s B^T dW. That is the exact LoRA gradient (W is
 * linear in A and B), at the cost of the base model's full backward; the frozen W0 is the reference
 * model (the adapters start at B = 0, so the initial policy is the base, and no second copy exists). */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/safetensors.h"
#include "quorum/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const ModelTensor *t; /* the base tensor (name, [out,in], offset into the base params) */
    float *w0;            /* frozen copy of the base weight [out*in] */
    size_t a, b;          /* offsets of A [r,in] and B [out,r] in the adapter params */
} LoraSite;

typedef struct {
    TrainModel *base;
    Model *model;
    LoraCfg cfg;
    float scale;
    int n;
    LoraSite *site;
} Lora;

/* The next name of a comma-separated target list at *p (its length in *len, possibly 0 for ",,"), *p
 * moved past it; NULL at the end. */
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

/* base params of every site = W0 + s B A */
static void lora_merge(Lora *L, const float *ad) {
    float *W = L->base->params;
    int r = L->cfg.r;
    for (int k = 0; k < L->n; k++) {
        const LoraSite *S = &L->site[k];
        int64_t O = S->t->shape[0], I = S->t->shape[1];
        const float *A = ad + S->a, *B = ad + S->b;
        float *w = W + S->t->offset;
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++) {
                double acc = 0;
                for (int j = 0; j < r; j++) acc += (double)B[o * r + j] * A[(int64_t)j * I + i];
                w[o * I + i] = S->w0[o * I + i] + (float)(L->scale * acc);
            }
    }
}

static void lo_forward(TrainModel *tm, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                       float *out) {
    Lora *L = tm->impl;
    lora_merge(L, tm->params);
    if (L->base->params_changed) L->base->params_changed(L->base); /* the merged weights' bf16 shadow */
    L->base->forward(L->base, ids, lens, mask, B, T, out);
}

/* dA += s B^T dW, dB += s dW A^T for every site, from the base's grads of one backward. */
static void lo_backward(TrainModel *tm, const float *dout) {
    Lora *L = tm->impl;
    L->base->zero_grad(L->base);
    L->base->backward(L->base, dout);
    int r = L->cfg.r;
    for (int k = 0; k < L->n; k++) {
        const LoraSite *S = &L->site[k];
        int64_t O = S->t->shape[0], I = S->t->shape[1];
        const float *dW = L->base->grads + S->t->offset, *A = tm->params + S->a, *Bm = tm->params + S->b;
        double *gA = xcalloc((size_t)(r * I), sizeof(double)), *gB = xcalloc((size_t)(O * r), sizeof(double));
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++) {
                double g = dW[o * I + i];
                for (int j = 0; j < r; j++) {
                    gA[j * I + i] += Bm[o * r + j] * g;
                    gB[o * r + j] += g * A[j * I + i];
                }
            }
        for (int64_t x = 0; x < r * I; x++) tm->grads[S->a + x] += (float)(L->scale * gA[x]);
        for (int64_t x = 0; x < O * r; x++) tm->grads[S->b + x] += (float)(L->scale * gB[x]);
        free(gA);
        free(gB);
    }
}

static void lo_zero_grad(TrainModel *tm) { memset(tm->grads, 0, tm->n_params * sizeof(float)); }

int lora_check(const LoraCfg *c, char *why, size_t n) {
    if (c->r < 0) return snprintf(why, n, "lora r must be >= 0 (0 = off), got %d", c->r), -1;
    if (c->r == 0) return 0;
    if (!(c->alpha > 0)) return snprintf(why, n, "lora alpha must be > 0, got %g", (double)c->alpha), -1;
    if (c->dropout != 0)
        return snprintf(why, n, "lora dropout %g: only 0 is supported (quorum merges the adapters into the "
                        "weights each step, where dropout on the adapter input has no place)", (double)c->dropout), -1;
    if (!c->targets[0]) return snprintf(why, n, "lora targets: empty (e.g. q_proj,k_proj,v_proj,o_proj)"), -1;
    return 0;
}

int lora_wrap(TrainModel *out, TrainModel *base, const LoraCfg *cfg, uint64_t seed) {
    Model *m = base->impl;
    int nt;
    const ModelTensor *ts = model_tensors(m, &nt);
    Lora *L = xcalloc(1, sizeof *L);
    L->base = base;
    L->model = m;
    L->cfg = *cfg;
    L->scale = cfg->alpha / (float)cfg->r;
    L->site = xcalloc((size_t)nt, sizeof(LoraSite));
    size_t n = 0;
    for (int i = 0; i < nt; i++) {
        if (ts[i].ndim != 2 || !targeted(cfg->targets, ts[i].name)) continue;
        LoraSite *S = &L->site[L->n++];
        size_t O = (size_t)ts[i].shape[0], I = (size_t)ts[i].shape[1];
        S->t = &ts[i];
        S->w0 = xmalloc(O * I * sizeof(float));
        memcpy(S->w0, base->params + ts[i].offset, O * I * sizeof(float));
        S->a = n;
        n += (size_t)cfg->r * I;
        S->b = n;
        n += O * (size_t)cfg->r;
    }
    if (!L->n) {
        int rc = quorum_input_error(cfg->targets, "lora targets: no 2-D weight of the policy matches (names end "
                                    "in \"<target>.weight\", e.g. q_proj, v_proj; GPT-2: c_attn, c_proj, c_fc)");
        free(L->site);
        free(L);
        return rc;
    }
    memset(out, 0, sizeof *out);
    out->impl = L;
    out->n_params = n;
    out->params = xcalloc(n, sizeof(float));
    out->grads = xcalloc(n, sizeof(float));
    out->forward = lo_forward;
    out->precision = base->precision;
    out->backward = lo_backward;
    out->zero_grad = lo_zero_grad;
    out->decay_mask = NULL; /* A and B are 2-D: decayed, as HF Trainer does */
    /* PEFT's init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0 */
    Rng rng;
    rng_seed(&rng, seed, 0x10a);
    for (int k = 0; k < L->n; k++) {
        LoraSite *S = &L->site[k];
        int64_t I = S->t->shape[1];
        float bound = 1.0f / sqrtf((float)I);
        for (int64_t j = 0; j < (int64_t)cfg->r * I; j++) out->params[S->a + j] = bound * (2 * rng_uniform(&rng) - 1);
    }
    quorum_log("lora: r=%d alpha=%g on %d weights (%s): %zu trainable params", cfg->r, (double)cfg->alpha, L->n,
               cfg->targets, n);
    return 0;
}

void lora_close(TrainModel *tm) {
    Lora *L = tm->impl;
    if (!L) return;
    for (int k = 0; k < L->n; k++) free(L->site[k].w0);
    free(L->site);
    free(L);
    free(tm->params);
    free(tm->grads);
    memset(tm, 0, sizeof *tm);
}

void lora_merge_into_base(TrainModel *tm) { lora_merge(tm->impl, tm->params); }

/* The PEFT name of a site's tensor: base_model.model.<module>.lora_{A,B}.weight */
static char *peft_name(const char *weight_name, const char *which) {
    size_t l = strlen(weight_name) - strlen(".weight");
    size_t cap = l + 64;
    char *s = xmalloc(cap);
    snprintf(s, cap, "base_model.model.%.*s.%s.weight", (int)l, weight_name, which);
    return s;
}

static char *adapter_config(const Lora *L, const char *base_dir) {
    const ModelConfig *mc = model_config(L->model);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(j, "base_model_name_or_path", base_dir);
    cJSON_AddNumberToObject(j, "r", L->cfg.r);
    cJSON_AddNumberToObject(j, "lora_alpha", L->cfg.alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", 0);
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", !strncmp(mc->architecture, "GPT2", 4)); /* Conv1D weights */
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "use_rslora", 0);
    cJSON *t = cJSON_AddArrayToObject(j, "target_modules");
    size_t tl;
    for (const char *p = L->cfg.targets, *name; (name = target_next(&p, &tl));) {
        char buf[128];
        snprintf(buf, sizeof buf, "%.*s", (int)(tl < sizeof buf - 1 ? tl : sizeof buf - 1), name);
        if (tl) cJSON_AddItemToArray(t, cJSON_CreateString(buf));
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    return txt;
}

int lora_export_peft(TrainModel *tm, const char *base_dir, const char *out) {
    Lora *L = tm->impl;
    char *dir = path_join(out, "adapter"), *part = path_join(out, "adapter.partial");
    dir_remove_flat(part);
    int rc = mkdir_p(part) ? quorum_input_error(part, "cannot create the folder") : 0;
    StWrite *w = xcalloc(2 * (size_t)L->n, sizeof(StWrite));
    for (int k = 0; k < L->n && !rc; k++) {
        const LoraSite *S = &L->site[k];
        w[2 * k] = (StWrite){.name = peft_name(S->t->name, "lora_A"), .ndim = 2,
                             .shape = {L->cfg.r, S->t->shape[1]}, .data = tm->params + S->a};
        w[2 * k + 1] = (StWrite){.name = peft_name(S->t->name, "lora_B"), .ndim = 2,
                                 .shape = {S->t->shape[0], L->cfg.r}, .data = tm->params + S->b};
    }
    if (!rc) rc = safetensors_write_file(part, "adapter_model.safetensors", w, 2 * L->n);
    if (!rc) {
        char *txt = adapter_config(L, base_dir), *p = path_join(part, "adapter_config.json");
        rc = file_write_atomic(p, txt, strlen(txt));
        free(txt);
        free(p);
    }
    if (!rc) {
        dir_remove_flat(dir);
        if (rename(part, dir)) rc = quorum_input_error(dir, "cannot rename %s into place", part);
    }
    if (!rc) quorum_log("exported %s (PEFT LoRA adapter)", dir);
    for (int k = 0; k < 2 * L->n; k++) free((char *)w[k].name);
    free(w);
    free(dir);
    free(part);
    return rc;
}
