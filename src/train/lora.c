/* lora.c - LoRA DPO: the model stage's adapters (quorum/model.h, model_lora_attach) as the trainer's TrainModel
 * (quorum/train.h, section LoRA).
 *
 * The adapters live inside the model's linears (src/model/model_lora.c): y = x W0^T + s (drop(x) A^T) B^T with
 * the base frozen, so a step computes dA, dB and dx only, never a base weight gradient, on whichever backend the
 * model is. This wrapper's params/grads ARE the model's flat adapter buffers ([A_0, B_0, A_1, B_1, ...]), so
 * AdamW moments, ZeRO-1 shards, the gradient allreduce and checkpoints cover the adapters alone. It turns the
 * adapters on in train mode (dropout) for each forward, with a mask seed derived from (seed, rank, step,
 * micro-batch); the base with the adapters off is the DPO reference (B = 0 at the start, no second copy). */
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
    TrainModel *base;
    Model *model;
    LoraCfg cfg;
    uint64_t seed, fwd_seed; /* the run's seed; this micro-batch's dropout seed (lo_micro) */
} Lora;

/* The dropout seed of micro-batch `micro` of optimizer step `step` on this rank: a pure function of them, so a
 * resumed run draws the masks the uninterrupted one would (quorum/train.h LoraCfg has the formula). */
static void lo_micro(TrainModel *tm, int step, int micro) {
    Lora *L = tm->impl;
    uint64_t key = ((uint64_t)quorum_rank() << 40) | ((uint64_t)step << 16) | (uint64_t)micro;
    L->fwd_seed = rng_counter_u64(L->seed ^ 0x1d70u, key);
}

static void lo_forward(TrainModel *tm, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                       float *out) {
    Lora *L = tm->impl;
    model_lora_mode(L->model, MODEL_LORA_TRAIN, L->fwd_seed); /* nn.Dropout in train mode, as TRL's steps */
    L->base->forward(L->base, ids, lens, mask, B, T, out);
}

/* dA, dB into the adapter grads (the frozen base has no gradient buffer) */
static void lo_backward(TrainModel *tm, const float *dout) {
    Lora *L = tm->impl;
    L->base->backward(L->base, dout);
}

static void lo_zero_grad(TrainModel *tm) { model_zero_grad(((Lora *)tm->impl)->model); }

int lora_check(const LoraCfg *c, char *why, size_t n) {
    if (c->r < 0) return snprintf(why, n, "lora r must be >= 0 (0 = off), got %d", c->r), -1;
    if (c->r == 0) return 0;
    if (!(c->alpha > 0)) return snprintf(why, n, "lora alpha must be > 0, got %g", (double)c->alpha), -1;
    if (!(c->dropout >= 0 && c->dropout < 1))
        return snprintf(why, n, "lora dropout must be in [0, 1), got %g", (double)c->dropout), -1;
    if (!c->targets[0]) return snprintf(why, n, "lora targets: empty (e.g. q_proj,k_proj,v_proj,o_proj)"), -1;
    return 0;
}

int lora_wrap(TrainModel *out, TrainModel *base, const LoraCfg *cfg, uint64_t seed) {
    Model *m = base->impl;
    ModelLoraCfg mc = {.r = cfg->r, .alpha = cfg->alpha, .dropout = cfg->dropout, .targets = cfg->targets,
                       .seed = seed};
    if (model_lora_attach(m, &mc)) return -1;
    base->grads = NULL; /* the frozen base's gradient buffer is gone */
    Lora *L = xcalloc(1, sizeof *L);
    L->base = base;
    L->model = m;
    L->cfg = *cfg;
    L->seed = seed;
    memset(out, 0, sizeof *out);
    out->impl = L;
    out->n_params = model_lora_n_params(m);
    out->params = model_lora_params(m);
    out->grads = model_lora_grads(m);
    out->ops = base->ops; /* the adapters live on the model's backend */
    out->forward = lo_forward;
    out->backward = lo_backward;
    out->zero_grad = lo_zero_grad;
    out->micro_begin = lo_micro;
    out->decay_mask = NULL; /* A and B are 2-D: decayed, as HF Trainer does */
    int n;
    model_lora_sites(m, &n);
    quorum_log("lora: r=%d alpha=%g dropout=%g on %d weights (%s): %zu trainable params, on the %s backend", cfg->r,
               (double)cfg->alpha, (double)cfg->dropout, n, cfg->targets, out->n_params, model_backend(m)->name);
    return 0;
}

void lora_close(TrainModel *tm) {
    free(tm->impl);
    memset(tm, 0, sizeof *tm);
}

void lora_merge_into_base(TrainModel *tm) { model_lora_merge(((Lora *)tm->impl)->model); }

/* The PEFT name of a site's tensor: base_model.model.<module>.lora_{A,B}.weight */
static char *peft_name(const char *weight_name, const char *which) {
    size_t l = strlen(weight_name) - strlen(".weight");
    size_t cap = l + 64;
    char *s = xmalloc(cap);
    snprintf(s, cap, "base_model.model.%.*s.%s.weight", (int)l, weight_name, which);
    return s;
}

/* a float as the JSON number of its shortest decimal (0.1f -> 0.1, not 0.10000000149011612) */
static double json_float(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)x);
    return strtod(buf, NULL);
}

/* "<...>.q_proj.weight" -> "q_proj" */
static void module_name(const char *weight_name, char *buf, size_t cap) {
    size_t l = strlen(weight_name) - strlen(".weight");
    const char *b = weight_name + l;
    while (b > weight_name && b[-1] != '.') b--;
    snprintf(buf, cap, "%.*s", (int)(weight_name + l - b), b);
}

static char *adapter_config(const Lora *L, const char *base_dir) {
    const ModelConfig *mc = model_config(L->model);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(j, "base_model_name_or_path", base_dir);
    cJSON_AddNumberToObject(j, "r", L->cfg.r);
    cJSON_AddNumberToObject(j, "lora_alpha", json_float(L->cfg.alpha));
    cJSON_AddNumberToObject(j, "lora_dropout", json_float(L->cfg.dropout));
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", !strncmp(mc->architecture, "GPT2", 4)); /* Conv1D weights */
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "use_rslora", 0);
    cJSON *t = cJSON_AddArrayToObject(j, "target_modules"); /* the module names that matched, first-seen order */
    int n;
    const ModelLoraSite *S = model_lora_sites(L->model, &n);
    for (int k = 0; k < n; k++) {
        char buf[128];
        module_name(S[k].name, buf, sizeof buf);
        int seen = 0;
        for (int e = 0; e < cJSON_GetArraySize(t); e++) seen |= !strcmp(cJSON_GetArrayItem(t, e)->valuestring, buf);
        if (!seen) cJSON_AddItemToArray(t, cJSON_CreateString(buf));
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
    int n;
    const ModelLoraSite *S = model_lora_sites(L->model, &n);
    float *host = xmalloc(sizeof(float) * (tm->n_params ? tm->n_params : 1));
    tm->ops->to_host(host, tm->params, tm->n_params);
    StWrite *w = xcalloc(2 * (size_t)n, sizeof(StWrite));
    for (int k = 0; k < n && !rc; k++) {
        w[2 * k] = (StWrite){.name = peft_name(S[k].name, "lora_A"), .ndim = 2, .shape = {L->cfg.r, S[k].in},
                             .data = host + S[k].a};
        w[2 * k + 1] = (StWrite){.name = peft_name(S[k].name, "lora_B"), .ndim = 2, .shape = {S[k].out, L->cfg.r},
                                 .data = host + S[k].b};
    }
    if (!rc) rc = safetensors_write_file(part, "adapter_model.safetensors", w, 2 * n);
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
    for (int k = 0; k < 2 * n; k++) free((char *)w[k].name);
    free(w);
    free(host);
    free(dir);
    free(part);
    return rc;
}
