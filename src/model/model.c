/* model.c - config.json parsing, the parameter tensor table, checkpoint load/save, accessors.
 * The forward and backward passes are in model_forward.c. */
#define _GNU_SOURCE
#include "model_internal.h"
#include "quorum/common.h"
#include "quorum/safetensors.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- config.json ---- */

/* Reads an integer key; `def` < 0 means required. -1 after a one-line error. */
static int cfg_int(const cJSON *j, const char *key, int def, const char *path, int *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!x || cJSON_IsNull(x)) {
        if (def < 0) {
            char where[1024];
            snprintf(where, sizeof where, "%s:%s", path, key);
            return quorum_input_error(where, "missing required key");
        }
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(x) || x->valuedouble != (double)(int)x->valuedouble || x->valuedouble < 0) {
        char where[1024];
        snprintf(where, sizeof where, "%s:%s", path, key);
        return quorum_input_error(where, "must be a non-negative integer");
    }
    *out = (int)x->valuedouble;
    return 0;
}

static float cfg_float(const cJSON *j, const char *key, float def) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(x) ? (float)x->valuedouble : def;
}

static int cfg_bool(const cJSON *j, const char *key, int def) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(x) ? cJSON_IsTrue(x) : def;
}

static int cfg_err(const char *path, const char *key, const char *msg) {
    char where[1024];
    snprintf(where, sizeof where, "%s:%s", path, key);
    return quorum_input_error(where, "%s", msg);
}

/* One RoPE description: rs is rope_scaling (v4) or rope_parameters (v5, which also holds rope_theta). */
static int parse_rope_obj(ModelConfig *c, const cJSON *rs, const char *path, const char *key) {
    char k[96];
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    snprintf(k, sizeof k, "%s.rope_type", key);
    if (!cJSON_IsString(type)) return cfg_err(path, k, "missing");
    float partial = cfg_float(rs, "partial_rotary_factor", 1.0f);
    snprintf(k, sizeof k, "%s.partial_rotary_factor", key);
    if (partial != 1.0f) return cfg_err(path, k, "only 1.0 (full rotary) is supported");
    if (!strcmp(type->valuestring, "default")) return 0;
    snprintf(k, sizeof k, "%s.rope_type", key);
    if (!strcmp(type->valuestring, "linear")) {
        c->rope_linear = cfg_float(rs, "factor", 0.0f);
        snprintf(k, sizeof k, "%s.factor", key);
        return c->rope_linear > 0 ? 0 : cfg_err(path, k, "must be positive");
    }
    if (strcmp(type->valuestring, "llama3"))
        return cfg_err(path, k, "only \"default\", \"linear\" and \"llama3\" are supported");
    c->rope_llama3 = 1;
    c->rope_factor = cfg_float(rs, "factor", 8.0f);
    c->rope_low_freq_factor = cfg_float(rs, "low_freq_factor", 1.0f);
    c->rope_high_freq_factor = cfg_float(rs, "high_freq_factor", 4.0f);
    if (cfg_int(rs, "original_max_position_embeddings", 8192, path, &c->rope_original_max_pos)) return -1;
    snprintf(k, sizeof k, "%s.high_freq_factor", key);
    if (c->rope_high_freq_factor <= c->rope_low_freq_factor) return cfg_err(path, k, "must exceed low_freq_factor");
    return 0;
}

/* v5 configs: rope_parameters {rope_type, rope_theta, ...}, or one such object per layer type (which must
 * then all agree: quorum has one RoPE table). v4 configs: rope_theta + rope_scaling. */
static int parse_rope(ModelConfig *c, const cJSON *j, const char *path) {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp)) return cfg_err(path, "rope_parameters", "must be an object");
        const cJSON *first = rp->child;
        if (first && cJSON_IsObject(first)) { /* per layer type */
            const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
            const cJSON *local = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
            if (c->arch == ARCH_GEMMA3 && cJSON_IsObject(full) && cJSON_IsObject(local)) { /* two tables */
                const cJSON *lt = cJSON_GetObjectItemCaseSensitive(local, "rope_type");
                if (lt && !(cJSON_IsString(lt) && !strcmp(lt->valuestring, "default")))
                    return cfg_err(path, "rope_parameters.sliding_attention.rope_type",
                                   "only \"default\" is supported");
                c->rope_local_theta = cfg_float(local, "rope_theta", 10000.0f);
                first = full;
            } else {
                for (const cJSON *e = first; e; e = e->next)
                    if (!cJSON_Compare(e, first, 1))
                        return cfg_err(path, "rope_parameters", "per-layer-type RoPE parameters differ (unsupported)");
            }
            rp = first;
        }
        c->rope_theta = cfg_float(rp, "rope_theta", c->rope_theta);
        return parse_rope_obj(c, rp, path, "rope_parameters");
    }
    c->rope_theta = cfg_float(j, "rope_theta", c->rope_theta);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return 0;
    return parse_rope_obj(c, rs, path, "rope_scaling");
}

static int parse_gpt2(ModelConfig *c, const cJSON *j, const char *path) {
    if (cfg_int(j, "n_embd", -1, path, &c->d_model) || cfg_int(j, "n_layer", -1, path, &c->n_layer) ||
        cfg_int(j, "n_head", -1, path, &c->n_head) || cfg_int(j, "n_positions", 1024, path, &c->max_pos) ||
        cfg_int(j, "n_inner", 4 * c->d_model, path, &c->d_ff))
        return -1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu_new")))
        return cfg_err(path, "activation_function", "only \"gelu_new\" is supported");
    if (!cfg_bool(j, "scale_attn_weights", 1) || cfg_bool(j, "scale_attn_by_inverse_layer_idx", 0))
        return cfg_err(path, "scale_attn_weights", "only the default 1/sqrt(head_dim) attention scaling is supported");
    c->n_kv_head = c->n_head;
    c->norm_eps = cfg_float(j, "layer_norm_epsilon", 1e-5f);
    c->tied = cfg_bool(j, "tie_word_embeddings", 1);
    c->qkv_bias = c->o_bias = c->mlp_bias = 1;
    return 0;
}

/* Optional float that may be null (= off); `def` when absent. */
static float cfg_float_or_off(const cJSON *j, const char *key, float def) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!x) return def;
    return cJSON_IsNumber(x) ? (float)x->valuedouble : 0.0f;
}

/* Which layers use the sliding window: an explicit layer_types list, else the family's rule. */
static int parse_layer_windows(ModelConfig *c, const cJSON *j, const char *path) {
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(j, "layer_types");
    if (c->n_layer > MODEL_MAX_LAYERS) return cfg_err(path, "num_hidden_layers", "more than 512 layers");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layer)
            return cfg_err(path, "layer_types", "must be a list with one entry per layer");
        int l = 0;
        for (const cJSON *e = lt->child; e; e = e->next, l++) {
            int sliding = cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention");
            if (!sliding && !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")))
                return cfg_err(path, "layer_types", "entries must be \"full_attention\" or \"sliding_attention\"");
            c->layer_window[l] = (unsigned char)(sliding && c->sliding_window > 0);
        }
        return 0;
    }
    int from = 0, every = 1; /* Mistral: every layer */
    if (c->arch == ARCH_QWEN2 || c->arch == ARCH_QWEN3) {
        if (cfg_int(j, "max_window_layers", 28, path, &from)) return -1;
        if (!cfg_bool(j, "use_sliding_window", 0)) c->sliding_window = 0;
    } else if (c->arch == ARCH_GEMMA2) {
        every = 2; /* layers 0, 2, 4, ... */
    } else if (c->arch == ARCH_GEMMA3) { /* sliding unless (l + 1) % sliding_window_pattern == 0 */
        int pattern;
        if (cfg_int(j, "sliding_window_pattern", 6, path, &pattern)) return -1;
        for (int l = 0; l < c->n_layer; l++)
            c->layer_window[l] = (unsigned char)(c->sliding_window > 0 && pattern && (l + 1) % pattern);
        return 0;
    } else if (c->arch != ARCH_MISTRAL) {
        c->sliding_window = 0;
    }
    for (int l = 0; l < c->n_layer; l++)
        c->layer_window[l] = (unsigned char)(c->sliding_window > 0 && l >= from && l % every == 0);
    return 0;
}

static int parse_llama_like(ModelConfig *c, const cJSON *j, const char *path) {
    int gemma = c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3, gemma3 = c->arch == ARCH_GEMMA3;
    if (cfg_int(j, "hidden_size", -1, path, &c->d_model) || cfg_int(j, "num_hidden_layers", -1, path, &c->n_layer) ||
        cfg_int(j, "num_attention_heads", -1, path, &c->n_head) ||
        cfg_int(j, "intermediate_size", -1, path, &c->d_ff) ||
        cfg_int(j, "max_position_embeddings", gemma ? 8192 : 2048, path, &c->max_pos) ||
        cfg_int(j, "num_key_value_heads", c->n_head, path, &c->n_kv_head) ||
        cfg_int(j, "sliding_window", gemma ? 4096 : 0, path, &c->sliding_window))
        return -1;
    if (c->n_head > 0 && cfg_int(j, "head_dim", gemma ? 256 : c->d_model / c->n_head, path, &c->head_dim)) return -1;
    const char *act_key =
        gemma && cJSON_GetObjectItemCaseSensitive(j, "hidden_activation") ? "hidden_activation" : "hidden_act";
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, act_key);
    const char *want = gemma ? "gelu_pytorch_tanh" : "silu";
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, want))) { /* absent: the family default */
        char msg[64];
        snprintf(msg, sizeof msg, "only \"%s\" is supported", want);
        return cfg_err(path, act_key, msg);
    }
    c->act = gemma ? ACT_GEGLU : ACT_SWIGLU;
    c->norm_eps = cfg_float(j, "rms_norm_eps", 1e-6f);
    c->rope_theta = gemma3 ? 1000000.0f : 10000.0f;
    c->tied = cfg_bool(j, "tie_word_embeddings", gemma);
    if (c->arch == ARCH_QWEN2) {
        c->qkv_bias = 1;
    } else {
        c->qkv_bias = c->o_bias = cfg_bool(j, "attention_bias", 0);
        if (c->arch == ARCH_LLAMA) c->mlp_bias = cfg_bool(j, "mlp_bias", 0);
    }
    c->qk_norm = c->arch == ARCH_QWEN3 || gemma3;
    if (gemma) {
        c->norm_plus_one = c->post_norms = 1;
        c->embed_scale = sqrtf((float)c->d_model); /* HF: torch.tensor(hidden_size**0.5, dtype=fp32) */
        float qs = cfg_float(j, "query_pre_attn_scalar", 256.0f);
        if (!(qs > 0)) return cfg_err(path, "query_pre_attn_scalar", "must be positive");
        c->attn_scale = (float)(1.0 / sqrt((double)qs)); /* else 1/sqrt(head_dim), set once head_dim is known */
        c->attn_softcap = cfg_float_or_off(j, "attn_logit_softcapping", gemma3 ? 0.0f : 50.0f);
        c->final_softcap = cfg_float_or_off(j, "final_logit_softcapping", gemma3 ? 0.0f : 30.0f);
        if (gemma3) c->rope_local_theta = cfg_float(j, "rope_local_base_freq", 10000.0f);
        if (c->attn_softcap < 0 || c->final_softcap < 0) return cfg_err(path, "attn_logit_softcapping", "must be >= 0");
    }
    if (parse_layer_windows(c, j, path)) return -1;
    return parse_rope(c, j, path);
}

int model_config_parse(ModelConfig *c, const char *text, const char *path) {
    memset(c, 0, sizeof *c);
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cfg_err(path, "(json)", "not a JSON object");
    }
    int rc = -1;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0)) {
        cfg_err(path, "architectures", "missing or empty");
        goto done;
    }
    const char *name = a0->valuestring;
    snprintf(c->architecture, sizeof c->architecture, "%s", name);
    static const struct { const char *prefix; ModelArch arch; } families[] = {
        {"GPT2", ARCH_GPT2}, {"Llama", ARCH_LLAMA}, {"Qwen2", ARCH_QWEN2}, {"Mistral", ARCH_MISTRAL},
        {"Qwen3", ARCH_QWEN3}, {"Gemma2", ARCH_GEMMA2}, {"Gemma3", ARCH_GEMMA3}};
    int fam = -1;
    for (int i = 0; i < (int)(sizeof families / sizeof families[0]); i++)
        if (!strncmp(name, families[i].prefix, strlen(families[i].prefix))) fam = i;
    const char *suffix = fam >= 0 ? name + strlen(families[fam].prefix) : "";
    int armo = fam >= 0 && families[fam].arch == ARCH_LLAMA && !strcmp(suffix, "ForRewardModelWithGating");
    int g3 = fam >= 0 && families[fam].arch == ARCH_GEMMA3; /* Gemma3ForCausalLM, Gemma3TextForSequenceClassification */
    if (g3 && !strcmp(suffix, "TextForSequenceClassification")) suffix = "ForSequenceClassification";
    else if (g3 && !strcmp(suffix, "ForSequenceClassification")) suffix = "(multimodal)";
    if (fam < 0 || (strcmp(suffix, "LMHeadModel") && strcmp(suffix, "ForCausalLM") &&
                    strcmp(suffix, "ForSequenceClassification") && !armo)) {
        cfg_err(path, "architectures", "unsupported: want GPT2/Llama/Qwen2/Qwen3/Mistral/Gemma2/Gemma3(Text) with a "
                "causal LM or "
                "sequence classification head, or LlamaForRewardModelWithGating");
        goto done;
    }
    c->arch = families[fam].arch;
    c->head = strcmp(suffix, "ForSequenceClassification") && !armo ? HEAD_LM : HEAD_REWARD;
    if (armo && (c->reward_head = RHEAD_ARMO, head_config_parse(c, j, path))) goto done;
    if (cfg_int(j, "vocab_size", -1, path, &c->vocab_size)) goto done;
    if (c->arch == ARCH_GPT2 ? parse_gpt2(c, j, path) : parse_llama_like(c, j, path)) goto done;
    if (c->arch == ARCH_GPT2) c->head_dim = c->n_head ? c->d_model / c->n_head : 0;
    if (!c->attn_scale && c->head_dim > 0) c->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    if (c->head == HEAD_REWARD && !armo) {
        const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(j, "id2label");
        int labels = 2; /* the HF default */
        if (cJSON_IsObject(id2label)) labels = cJSON_GetArraySize(id2label);
        else if (cfg_int(j, "num_labels", 2, path, &labels)) goto done;
        if (labels != 1) {
            cfg_err(path, "num_labels", "a reward model needs exactly 1 label (id2label with one entry)");
            goto done;
        }
    }
    if (c->vocab_size < 1 || c->d_model < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_kv_head < 1 ||
        c->d_ff < 1 || c->max_pos < 1) {
        cfg_err(path, "(sizes)", "every size must be positive");
        goto done;
    }
    if (c->n_head % c->n_kv_head) { cfg_err(path, "num_key_value_heads", "must divide num_attention_heads"); goto done; }
    if (c->arch == ARCH_GPT2 && c->d_model % c->n_head) { cfg_err(path, "n_head", "must divide n_embd"); goto done; }
    if (c->arch != ARCH_GPT2 && (c->head_dim < 2 || c->head_dim % 2)) { cfg_err(path, "head_dim", "must be even"); goto done; }
    rc = 0;
done:
    cJSON_Delete(j);
    return rc;
}

/* ---- tensor table ---- */

/* Appends a tensor; while m->split, a matrix goes to the bf16 buffer. Returns its offset. */
static size_t table_add(Model *m, const char *name, int64_t d0, int64_t d1, int transposed) {
    m->tensors = xrealloc(m->tensors, sizeof(ModelTensor) * (m->n_tensors + 1));
    ModelTensor *t = &m->tensors[m->n_tensors++];
    t->name = xstrdup(name);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->dtype = m->split && d1 ? DT_BF16 : DT_F32;
    size_t *count = t->dtype == DT_BF16 ? &m->n_wbf : &m->n_params;
    if (t->dtype == DT_BF16) *count = (*count + 127) & ~(size_t)127; /* 256-byte aligned: what GEMM kernels like */
    t->offset = *count;
    t->transposed = transposed;
    *count += (size_t)d0 * (d1 ? d1 : 1);
    return t->offset;
}

static size_t tensor_numel(const ModelTensor *t) { return (size_t)t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1); }

static size_t table_addf(Model *m, int64_t d0, int64_t d1, int transposed, const char *fmt, int layer) {
    char name[256];
    snprintf(name, sizeof name, fmt, layer);
    return table_add(m, name, d0, d1, transposed);
}

static void table_build_gpt2(Model *m) {
    const ModelConfig *c = &m->cfg;
    int C = c->d_model, F = c->d_ff;
    m->wte = table_add(m, "transformer.wte.weight", c->vocab_size, C, 0);
    m->wpe = table_add(m, "transformer.wpe.weight", c->max_pos, C, 0);
    for (int l = 0; l < c->n_layer; l++) {
        LayerOffsets *L = &m->layers[l];
        L->ln1_w = table_addf(m, C, 0, 0, "transformer.h.%d.ln_1.weight", l);
        L->ln1_b = table_addf(m, C, 0, 0, "transformer.h.%d.ln_1.bias", l);
        L->qkv_w = table_addf(m, 3 * C, C, 1, "transformer.h.%d.attn.c_attn.weight", l);
        L->qkv_b = table_addf(m, 3 * C, 0, 0, "transformer.h.%d.attn.c_attn.bias", l);
        L->o_w = table_addf(m, C, C, 1, "transformer.h.%d.attn.c_proj.weight", l);
        L->o_b = table_addf(m, C, 0, 0, "transformer.h.%d.attn.c_proj.bias", l);
        L->ln2_w = table_addf(m, C, 0, 0, "transformer.h.%d.ln_2.weight", l);
        L->ln2_b = table_addf(m, C, 0, 0, "transformer.h.%d.ln_2.bias", l);
        L->fc_w = table_addf(m, F, C, 1, "transformer.h.%d.mlp.c_fc.weight", l);
        L->fc_b = table_addf(m, F, 0, 0, "transformer.h.%d.mlp.c_fc.bias", l);
        L->proj_w = table_addf(m, C, F, 1, "transformer.h.%d.mlp.c_proj.weight", l);
        L->proj_b = table_addf(m, C, 0, 0, "transformer.h.%d.mlp.c_proj.bias", l);
    }
    m->lnf_w = table_add(m, "transformer.ln_f.weight", C, 0, 0);
    m->lnf_b = table_add(m, "transformer.ln_f.bias", C, 0, 0);
}

/* Gemma: every RMSNorm weight first, in one block [norm_lo, norm_hi), so 1 + w is one buffer. */
static void table_build_norms(Model *m) {
    const ModelConfig *c = &m->cfg;
    int C = c->d_model;
    m->norm_lo = m->n_params;
    for (int l = 0; l < c->n_layer; l++) {
        LayerOffsets *L = &m->layers[l];
        L->ln1_w = table_addf(m, C, 0, 0, "model.layers.%d.input_layernorm.weight", l);
        if (c->post_norms) {
            L->pa_w = table_addf(m, C, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l);
            L->ln2_w = table_addf(m, C, 0, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l);
            L->pf_w = table_addf(m, C, 0, 0, "model.layers.%d.post_feedforward_layernorm.weight", l);
        } else {
            L->ln2_w = table_addf(m, C, 0, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        }
        if (c->qk_norm) {
            L->qn_w = table_addf(m, c->head_dim, 0, 0, "model.layers.%d.self_attn.q_norm.weight", l);
            L->kn_w = table_addf(m, c->head_dim, 0, 0, "model.layers.%d.self_attn.k_norm.weight", l);
        }
    }
    m->lnf_w = table_add(m, "model.norm.weight", C, 0, 0);
    m->norm_hi = m->n_params;
}

static void table_build_llama(Model *m) {
    const ModelConfig *c = &m->cfg;
    int C = c->d_model, F = c->d_ff, Q = c->n_head * c->head_dim, KV = c->n_kv_head * c->head_dim;
    for (int l = 0; l < c->n_layer; l++)
        m->layers[l] = (LayerOffsets){.ln1_b = OFF_NONE, .qkv_b = OFF_NONE, .o_b = OFF_NONE, .ln2_b = OFF_NONE,
                                      .fc_b = OFF_NONE, .proj_b = OFF_NONE, .qn_w = OFF_NONE, .kn_w = OFF_NONE,
                                      .pa_w = OFF_NONE, .pf_w = OFF_NONE};
    table_build_norms(m);
    m->wte = table_add(m, "model.embed_tokens.weight", c->vocab_size, C, 0);
    m->wpe = m->lnf_b = OFF_NONE;
    for (int l = 0; l < c->n_layer; l++) {
        LayerOffsets *L = &m->layers[l];
        L->qkv_w = table_addf(m, Q, C, 0, "model.layers.%d.self_attn.q_proj.weight", l); /* q,k,v adjacent */
        table_addf(m, KV, C, 0, "model.layers.%d.self_attn.k_proj.weight", l);
        table_addf(m, KV, C, 0, "model.layers.%d.self_attn.v_proj.weight", l);
        if (c->qkv_bias) {
            L->qkv_b = table_addf(m, Q, 0, 0, "model.layers.%d.self_attn.q_proj.bias", l);
            table_addf(m, KV, 0, 0, "model.layers.%d.self_attn.k_proj.bias", l);
            table_addf(m, KV, 0, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        }
        L->o_w = table_addf(m, C, Q, 0, "model.layers.%d.self_attn.o_proj.weight", l);
        if (c->o_bias) L->o_b = table_addf(m, C, 0, 0, "model.layers.%d.self_attn.o_proj.bias", l);
        L->fc_w = table_addf(m, F, C, 0, "model.layers.%d.mlp.gate_proj.weight", l); /* gate,up adjacent */
        table_addf(m, F, C, 0, "model.layers.%d.mlp.up_proj.weight", l);
        if (c->mlp_bias) {
            L->fc_b = table_addf(m, F, 0, 0, "model.layers.%d.mlp.gate_proj.bias", l);
            table_addf(m, F, 0, 0, "model.layers.%d.mlp.up_proj.bias", l);
        }
        L->proj_w = table_addf(m, C, F, 0, "model.layers.%d.mlp.down_proj.weight", l);
        if (c->mlp_bias) L->proj_b = table_addf(m, C, 0, 0, "model.layers.%d.mlp.down_proj.bias", l);
    }
}

/* split: the trunk matrices (and an untied lm_head) go to the bf16 buffer; reward heads stay fp32. */
static void table_build(Model *m, int split) {
    m->layers = xcalloc(m->cfg.n_layer, sizeof(LayerOffsets));
    m->split = split;
    if (m->cfg.arch == ARCH_GPT2) table_build_gpt2(m);
    else table_build_llama(m);
    if (m->cfg.head == HEAD_LM) m->head_w = m->cfg.tied ? m->wte : table_add(m, "lm_head.weight", m->cfg.vocab_size,
                                                                             m->cfg.d_model, 0);
    m->split = 0;
    if (m->cfg.head == HEAD_REWARD) head_table_build(m, table_add);
    m->wdtype = m->n_wbf ? DT_BF16 : DT_F32;
}

static void table_free(Model *m) {
    for (int i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->tensors);
    free(m->layers);
    m->tensors = NULL;
    m->layers = NULL;
    m->n_tensors = 0;
    m->n_params = m->n_wbf = 0;
}

const ModelTensor *model_find_tensor(const Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

/* ---- load ---- */

/* The file's name for table tensor t: GPT-2 hub checkpoints often drop the "transformer." prefix. */
static const StTensor *find_in_file(const SafeTensors *st, const ModelTensor *t) {
    const StTensor *s = safetensors_find(st, t->name);
    if (!s && !strncmp(t->name, "transformer.", 12)) s = safetensors_find(st, t->name + 12);
    return s;
}

/* dst (cols,rows) = src (rows,cols)^T, elements of `es` bytes */
static void transpose(void *dst, const void *src, int64_t rows, int64_t cols, size_t es) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) memcpy((char *)dst + (c * rows + r) * es, (const char *)src + (r * cols + c) * es, es);
}

enum { LOAD_CHUNK = 1 << 20 }; /* floats staged per copy: a load never widens a whole big tensor on the host */

/* Copies file tensor s into table slot t: bf16 as stored, else fp32 in slices through buf[LOAD_CHUNK]. */
static int load_data(Model *m, const SafeTensors *st, const StTensor *s, const ModelTensor *t, float *buf) {
    size_t n = tensor_numel(t);
    if (t->dtype == DT_BF16) { /* the file is BF16 (bf16_file checked it): a copy, little-endian like F32 */
        void *tr = NULL;
        const void *src = s->data;
        if (t->transposed) src = tr = xmalloc(2 * n), transpose(tr, s->data, t->shape[1], t->shape[0], 2);
        m->be->to_backend(m->wbf + t->offset, src, 2 * n);
        free(tr);
        return 0;
    }
    if (t->transposed) { /* GPT-2 Conv1D: whole tensor (at most a few MB per layer) */
        float *a = xmalloc(sizeof(float) * n), *b = xmalloc(sizeof(float) * n);
        int rc = safetensors_read_f32(st, s, a);
        if (!rc) transpose(b, a, t->shape[1], t->shape[0], sizeof(float));
        if (!rc) m->be->to_backend(m->params + t->offset, b, sizeof(float) * n);
        free(a);
        free(b);
        return rc;
    }
    for (size_t i = 0; i < n; i += LOAD_CHUNK) {
        size_t k = n - i < LOAD_CHUNK ? n - i : LOAD_CHUNK;
        if (safetensors_read_f32_range(st, s, (int64_t)i, (int64_t)k, buf)) return -1;
        m->be->to_backend(m->params + t->offset + i, buf, sizeof(float) * k);
    }
    return 0;
}

static int load_tensor(Model *m, const SafeTensors *st, const ModelTensor *t, const char *cfg_path,
                       const char *dir, float *buf) {
    const StTensor *s = find_in_file(st, t);
    char where[1024];
    if (!s) {
        if (st->n_files == 1) snprintf(where, sizeof where, "%s:tensor \"%s\"", st->paths[0], t->name);
        else snprintf(where, sizeof where, "%s/model.safetensors.index.json:tensor \"%s\"", dir, t->name);
        return quorum_input_error(where, "missing (required by %s)", cfg_path);
    }
    int64_t want0 = t->transposed ? t->shape[1] : t->shape[0], want1 = t->transposed ? t->shape[0] : t->shape[1];
    int ok = s->ndim == t->ndim && s->shape[0] == want0 && (t->ndim == 1 || s->shape[1] == want1);
    if (!ok) {
        snprintf(where, sizeof where, "%s:tensor \"%s\":shape", st->paths[s->file], s->name);
        char got[128] = "";
        for (int d = 0; d < s->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)s->shape[d]);
        if (t->ndim == 1) return quorum_input_error(where, "is [%s] but %s implies [%lld]", got, cfg_path, (long long)want0);
        return quorum_input_error(where, "is [%s] but %s implies [%lld,%lld]", got, cfg_path, (long long)want0,
                                  (long long)want1);
    }
    int rc = load_data(m, st, s, t, buf);
    safetensors_release(st, s); /* the peak RSS of a load is the model, not model + file */
    return rc;
}

/* 1 when every tensor the table put in the bf16 buffer is BF16 in the file (a missing one is load_tensor's error) */
static int bf16_file(const Model *m, const SafeTensors *st) {
    for (int i = 0; i < m->n_tensors; i++) {
        const StTensor *s = find_in_file(st, &m->tensors[i]);
        if (m->tensors[i].dtype == DT_BF16 && s && s->dtype != ST_BF16) return 0;
    }
    return 1;
}

/* Table and buffers for the file: bf16 matrices kept when asked for and possible, else all fp32. */
static int params_load(Model *m, const SafeTensors *st, const char *cfg_path, const char *dir, int keep_bf16) {
    const Backend *be = m->be;
    table_build(m, keep_bf16 && be->matmul_forward_bf16 && be->embedding_forward_bf16);
    if (m->n_wbf && !bf16_file(m, st)) {
        table_free(m);
        table_build(m, 0);
    }
    m->params = be->alloc(sizeof(float) * (m->n_params ? m->n_params : 1));
    if (m->n_wbf) m->wbf = be->alloc(sizeof(uint16_t) * m->n_wbf);
    float *buf = xmalloc(sizeof(float) * LOAD_CHUNK);
    int rc = 0;
    for (int i = 0; i < m->n_tensors && !rc; i++) rc = load_tensor(m, st, &m->tensors[i], cfg_path, dir, buf);
    free(buf);
    return rc;
}

int model_load_ex(Model **out, const char *dir, const Backend *be, const ModelLoadOpts *opts) {
    *out = NULL;
    int inference = opts && opts->inference;
    char *cfg_path = path_join(dir, "config.json");
    const char *err = NULL;
    size_t len;
    char *text = file_read_all(cfg_path, &len, &err);
    if (!text) {
        quorum_input_error(cfg_path, "cannot read: %s", err ? err : "?");
        free(cfg_path);
        return -1;
    }
    Model *m = xcalloc(1, sizeof(Model));
    m->be = be;
    m->grad_enabled = !inference;
    int rc = model_config_parse(&m->cfg, text, cfg_path);
    if (!rc) m->config_json = cJSON_Parse(text);
    free(text);
    SafeTensors st = {0};
    if (!rc) rc = safetensors_open(&st, dir);
    if (!rc && m->cfg.head == HEAD_REWARD) head_detect(m, &st, cfg_path);
    const char *missing = NULL;
    if (!rc && !model_backend_supports(&m->cfg, be, &missing)) { /* optional op absent (quorum/ops.h) */
        quorum_log("%s: backend %s lacks %s needed by %s: this model runs on the cpu backend", cfg_path, be->name,
                   missing, m->cfg.architecture);
        m->be = be = &backend_cpu;
    }
    if (!rc) {
        rc = params_load(m, &st, cfg_path, dir, inference);
        safetensors_close(&st);
    }
    free(cfg_path);
    if (rc) {
        model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int model_load(Model **out, const char *dir, const Backend *be) { return model_load_ex(out, dir, be, NULL); }

/* Host fp32 copy of tensor t (our layout) into dst[numel]. */
static void tensor_host_f32(const Model *m, const ModelTensor *t, float *dst) {
    size_t n = tensor_numel(t);
    if (t->dtype == DT_F32) {
        m->be->to_host(dst, m->params + t->offset, sizeof(float) * n);
        return;
    }
    uint16_t *h = xmalloc(sizeof(uint16_t) * n);
    m->be->to_host(h, m->wbf + t->offset, sizeof(uint16_t) * n);
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
    free(h);
}

/* bf16 weights -> one fp32 buffer in the training layout (exact: bf16 widens losslessly). */
static void params_to_f32(Model *m) {
    int n = m->n_tensors;
    float **host = xcalloc(n, sizeof(float *));
    for (int i = 0; i < n; i++) {
        host[i] = xmalloc(sizeof(float) * tensor_numel(&m->tensors[i]));
        tensor_host_f32(m, &m->tensors[i], host[i]);
    }
    m->be->free(m->params);
    m->be->free(m->wbf);
    m->wbf = NULL;
    table_free(m);
    table_build(m, 0);
    m->params = m->be->alloc(sizeof(float) * m->n_params);
    for (int i = 0; i < n; i++) {
        m->be->to_backend(m->params + m->tensors[i].offset, host[i], sizeof(float) * tensor_numel(&m->tensors[i]));
        free(host[i]);
    }
    free(host);
}

void model_free(Model *m) {
    if (!m) return;
    table_free(m);
    if (m->params) m->be->free(m->params);
    if (m->wbf) m->be->free(m->wbf);
    if (m->wshadow) m->be->free(m->wshadow);
    free(m->tensor_stage);
    if (m->grads) m->be->free(m->grads);
    if (m->act_mem) m->be->free(m->act_mem);
    if (m->act_int) m->be->free(m->act_int);
    if (m->norm1p) m->be->free(m->norm1p);
    lora_free(m);
    free(m->rows_host);
    free(m->row_seq);
    free(m->tok_logp);
    cJSON_Delete(m->config_json);
    free(m);
}

/* ---- save ---- */


int model_save_sharded(const Model *m, const char *dir_arg, size_t max_shard_bytes) {
    char dir[4096], tmpdir[4200], olddir[4200];
    snprintf(dir, sizeof dir, "%s", dir_arg);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = 0; /* "out/policy/" */
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp.%d", dir, (int)getpid());
    snprintf(olddir, sizeof olddir, "%s.old.%d", dir, (int)getpid());
    dir_remove_flat(tmpdir);
    if (mkdir_p(tmpdir)) return quorum_input_error(tmpdir, "cannot create folder");
    /* host fp32 copy of every tensor, Conv1D tensors transposed back to the file layout */
    StWrite *ws = xcalloc(m->n_tensors, sizeof(StWrite));
    float **owned = xcalloc(m->n_tensors, sizeof(float *));
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        size_t n = tensor_numel(t);
        owned[i] = xmalloc(sizeof(float) * n);
        tensor_host_f32(m, t, owned[i]);
        ws[i] = (StWrite){.name = t->name, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]}, .data = owned[i]};
        if (t->transposed) {
            float *tr = xmalloc(sizeof(float) * n);
            transpose(tr, owned[i], t->shape[0], t->shape[1], sizeof(float));
            free(owned[i]);
            ws[i].data = owned[i] = tr;
            ws[i].shape[0] = t->shape[1];
            ws[i].shape[1] = t->shape[0];
        }
    }
    int rc = safetensors_write(tmpdir, ws, m->n_tensors, max_shard_bytes);
    for (int i = 0; i < m->n_tensors; i++) free(owned[i]);
    free(owned);
    free(ws);
    if (!rc) {
        cJSON *cfg = cJSON_Duplicate(m->config_json, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "torch_dtype");
        cJSON_AddStringToObject(cfg, "torch_dtype", "float32");
        char *path = path_join(tmpdir, "config.json");
        rc = json_write_atomic(path, cfg);
        free(path);
        cJSON_Delete(cfg);
    }
    /* swap the folder in: dir -> dir.old, tmp -> dir, drop dir.old */
    struct stat sb;
    int had_old = stat(dir, &sb) == 0;
    if (!rc && had_old && rename(dir, olddir)) rc = quorum_input_error(dir, "cannot replace existing folder");
    if (!rc && rename(tmpdir, dir)) {
        if (had_old) rename(olddir, dir);
        rc = quorum_input_error(dir, "cannot rename %s into place", tmpdir);
    }
    if (!rc && had_old) dir_remove_flat(olddir);
    if (rc) dir_remove_flat(tmpdir);
    return rc;
}

int model_save(const Model *m, const char *dir) { return model_save_sharded(m, dir, 0); }

/* ---- accessors ---- */
float *model_params(Model *m) { return m->params; }
void grads_ensure(Model *m) {
    if (m->grads) return;
    m->grads = m->be->alloc(sizeof(float) * (m->n_params ? m->n_params : 1));
    m->be->zero(m->grads, sizeof(float) * m->n_params);
}
float *model_grads(Model *m) {
    if (m->lora) return NULL; /* frozen base */
    grads_ensure(m);
    return m->grads;
}
size_t model_n_params(const Model *m) { return m->n_params; }
const ModelConfig *model_config(const Model *m) { return &m->cfg; }
const Backend *model_backend(const Model *m) { return m->be; }
const ModelTensor *model_tensors(const Model *m, int *n) {
    *n = m->n_tensors;
    return m->tensors;
}
void model_zero_grad(Model *m) {
    if (m->lora) return lora_zero_grad(m); /* the adapters' grads; the frozen base has none */
    grads_ensure(m);
    m->be->zero(m->grads, sizeof(float) * m->n_params);
}
void model_set_grad_enabled(Model *m, int on) {
    if (on && m->wdtype == DT_BF16) params_to_f32(m); /* training updates fp32 weights */
    if (m->grad_enabled != !!on) m->act_cap = 0; /* re-carve the activations on the next forward */
    m->grad_enabled = !!on;
    m->last = 0;
}

int model_set_precision(Model *m, DType gemm_weights) {
    if (gemm_weights == DT_BF16 && m->wdtype == DT_BF16)
        return quorum_input_error("model:precision", "bf16 mixed precision needs fp32 master weights; this model "
                                  "holds bf16 weights from an inference load (use model_load)");
    if (gemm_weights != DT_BF16) {
        m->be->free(m->wshadow);
        m->wshadow = NULL;
        return 0;
    }
    if (!m->wshadow) m->wshadow = m->be->alloc(sizeof(uint16_t) * (m->n_params ? m->n_params : 1));
    model_refresh_shadow(m);
    return 0;
}

void model_refresh_shadow(Model *m) {
    if (m->wshadow) m->be->cast_f32_to_bf16(m->wshadow, m->params, m->n_params);
}

/* The backward stage after which a tensor's gradient is final (grad_ready_report): its layer, else n_layer for
 * the final norm and heads, n_layer + 1 for the embeddings (a tied head's weight is the embedding's). */
static int tensor_stage_of(const Model *m, const ModelTensor *t) {
    if (t->offset == m->wte || t->offset == m->wpe) return m->cfg.n_layer + 1;
    const char *p = strstr(t->name, ".layers."); /* "model.layers.<l>." */
    if (p) return atoi(p + 8);
    if ((p = strstr(t->name, ".h."))) return atoi(p + 3); /* GPT-2 "transformer.h.<l>." */
    return m->cfg.n_layer;
}

void model_set_grad_ready_hook(Model *m, void (*ready)(void *ctx, size_t lo, size_t hi), void *ctx) {
    m->grad_ready = ready;
    m->grad_ready_ctx = ctx;
    if (!ready || m->tensor_stage) return;
    m->tensor_stage = xmalloc(sizeof(int) * (size_t)(m->n_tensors ? m->n_tensors : 1));
    for (int i = 0; i < m->n_tensors; i++) m->tensor_stage[i] = tensor_stage_of(m, &m->tensors[i]);
}

void grad_ready_report(Model *m, int stage) {
    if (!m->grad_ready || m->lora) return; /* adapters attached: the base has no grads to report */
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensor_stage[i] == stage && m->tensors[i].dtype == DT_F32)
            m->grad_ready(m->grad_ready_ctx, m->tensors[i].offset, m->tensors[i].offset + tensor_numel(&m->tensors[i]));
}
void model_set_recompute(Model *m, int on) {
    if (m->recompute != !!on) m->act_cap = 0; /* re-carve (and reallocate to size) on the next forward */
    m->recompute = !!on;
    m->last = 0;
}

size_t model_activation_bytes(const Model *m) { return m->act_mem ? sizeof(float) * m->act_cap : 0; }
