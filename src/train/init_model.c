/* init_model.c - quorum init-model: a random-init tiny HF checkpoint (GPT-2, Llama, Qwen3, Gemma-2/3; LM,
 * linear score or INF-ORM MLP reward head) with HF's initialisation: every weight matrix and embedding
 * ~ normal(0, 0.02), biases 0, norm weights 1 (Gemma: 0, its norms scale by 1 + w).
 * The folder is written next to its destination and renamed into place, then loaded back with
 * model_load as a check that quorum (and thus HF, same names and shapes) reads it. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/safetensors.h"
#include "quorum/tokenizer.h"
#include "quorum/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { INIT_NORMAL, INIT_ZERO, INIT_ONE, INIT_EYE };

typedef struct {
    StWrite *t;
    int *init;
    int n;
    Buf names; /* storage for the names; pointers fixed up at the end */
} TensorList;

static void tl_add(TensorList *l, int init, int64_t d0, int64_t d1, const char *fmt, int layer) {
    l->t = xrealloc(l->t, (l->n + 1) * sizeof(StWrite));
    l->init = xrealloc(l->init, (l->n + 1) * sizeof(int));
    StWrite *w = &l->t[l->n];
    memset(w, 0, sizeof *w);
    w->name = (const char *)(uintptr_t)l->names.len; /* offset until fixed */
    buf_appendf(&l->names, fmt, layer);
    buf_append(&l->names, "", 1);
    w->ndim = d1 ? 2 : 1;
    w->shape[0] = d0;
    w->shape[1] = d1;
    l->init[l->n++] = init;
}

/* HF names and FILE shapes (GPT-2 Conv1D weights are [in, out]). */
static void tensors_gpt2(TensorList *l, const InitModelOptions *o, int V, int F) {
    int C = o->dim;
    tl_add(l, INIT_NORMAL, V, C, "transformer.wte.weight", 0);
    tl_add(l, INIT_NORMAL, o->max_pos, C, "transformer.wpe.weight", 0);
    for (int i = 0; i < o->layers; i++) {
        tl_add(l, INIT_ONE, C, 0, "transformer.h.%d.ln_1.weight", i);
        tl_add(l, INIT_ZERO, C, 0, "transformer.h.%d.ln_1.bias", i);
        tl_add(l, INIT_NORMAL, C, 3 * C, "transformer.h.%d.attn.c_attn.weight", i);
        tl_add(l, INIT_ZERO, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", i);
        tl_add(l, INIT_NORMAL, C, C, "transformer.h.%d.attn.c_proj.weight", i);
        tl_add(l, INIT_ZERO, C, 0, "transformer.h.%d.attn.c_proj.bias", i);
        tl_add(l, INIT_ONE, C, 0, "transformer.h.%d.ln_2.weight", i);
        tl_add(l, INIT_ZERO, C, 0, "transformer.h.%d.ln_2.bias", i);
        tl_add(l, INIT_NORMAL, C, F, "transformer.h.%d.mlp.c_fc.weight", i);
        tl_add(l, INIT_ZERO, F, 0, "transformer.h.%d.mlp.c_fc.bias", i);
        tl_add(l, INIT_NORMAL, F, C, "transformer.h.%d.mlp.c_proj.weight", i);
        tl_add(l, INIT_ZERO, C, 0, "transformer.h.%d.mlp.c_proj.bias", i);
    }
    tl_add(l, INIT_ONE, C, 0, "transformer.ln_f.weight", 0);
    tl_add(l, INIT_ZERO, C, 0, "transformer.ln_f.bias", 0);
}

/* Llama, Qwen3 (+ q_norm/k_norm), Gemma-2 (+ pre/post feed-forward norms; norm weights are w in (1 + w), so
 * HF initialises them to 0) and Gemma-3 (both). */
static void tensors_llama(TensorList *l, const InitModelOptions *o, int V, int F) {
    int C = o->dim, hd = o->dim / o->heads, Q = o->heads * hd, KV = o->kv_heads * hd;
    int gemma = !strncmp(o->arch, "gemma", 5), norm = gemma ? INIT_ZERO : INIT_ONE;
    int qk = !strcmp(o->arch, "qwen3") || !strcmp(o->arch, "gemma3");
    tl_add(l, INIT_NORMAL, V, C, "model.embed_tokens.weight", 0);
    for (int i = 0; i < o->layers; i++) {
        tl_add(l, norm, C, 0, "model.layers.%d.input_layernorm.weight", i);
        tl_add(l, INIT_NORMAL, Q, C, "model.layers.%d.self_attn.q_proj.weight", i);
        tl_add(l, INIT_NORMAL, KV, C, "model.layers.%d.self_attn.k_proj.weight", i);
        tl_add(l, INIT_NORMAL, KV, C, "model.layers.%d.self_attn.v_proj.weight", i);
        if (qk) {
            tl_add(l, norm, hd, 0, "model.layers.%d.self_attn.q_norm.weight", i);
            tl_add(l, norm, hd, 0, "model.layers.%d.self_attn.k_norm.weight", i);
        }
        tl_add(l, INIT_NORMAL, C, Q, "model.layers.%d.self_attn.o_proj.weight", i);
        tl_add(l, norm, C, 0, "model.layers.%d.post_attention_layernorm.weight", i);
        if (gemma) {
            tl_add(l, norm, C, 0, "model.layers.%d.pre_feedforward_layernorm.weight", i);
            tl_add(l, norm, C, 0, "model.layers.%d.post_feedforward_layernorm.weight", i);
        }
        tl_add(l, INIT_NORMAL, F, C, "model.layers.%d.mlp.gate_proj.weight", i);
        tl_add(l, INIT_NORMAL, F, C, "model.layers.%d.mlp.up_proj.weight", i);
        tl_add(l, INIT_NORMAL, C, F, "model.layers.%d.mlp.down_proj.weight", i);
    }
    tl_add(l, norm, C, 0, "model.norm.weight", 0);
    if (!gemma) tl_add(l, INIT_NORMAL, V, C, "lm_head.weight", 0); /* untied (HF Llama default); dropped for score */
}

/* ArmoRM's head at init: ARMO_K objectives, gating MLP of ARMO_HIDDEN layers of width dim, unit logit
 * scale, identity transform (as its modeling code initialises it). */
enum { ARMO_K = 19, ARMO_HIDDEN = 3 };

/* The reward head's tensors (src/model/model_head.c): score [1,C], INF-ORM's score.0 / ReLU / score.2,
 * or ArmoRM's regression layer + gating network + transform. */
static void tensors_head(TensorList *l, const InitModelOptions *o) {
    if (!strcmp(o->head, "armo")) {
        tl_add(l, INIT_NORMAL, ARMO_K, o->dim, "regression_layer.weight", 0);
        for (int i = 0; i <= ARMO_HIDDEN; i++) {
            tl_add(l, INIT_NORMAL, i < ARMO_HIDDEN ? o->dim : ARMO_K, o->dim, "gating.layers.%d.weight", i);
            tl_add(l, INIT_ZERO, i < ARMO_HIDDEN ? o->dim : ARMO_K, 0, "gating.layers.%d.bias", i);
        }
        tl_add(l, INIT_ONE, 1, 0, "gating.logit_scale", 0);
        tl_add(l, INIT_EYE, ARMO_K, ARMO_K, "reward_transform_matrix", 0);
    } else if (!strcmp(o->head, "mlp")) {
        tl_add(l, INIT_NORMAL, o->dim, o->dim, "score.0.weight", 0);
        tl_add(l, INIT_ZERO, o->dim, 0, "score.0.bias", 0);
        tl_add(l, INIT_NORMAL, 1, o->dim, "score.2.weight", 0);
        tl_add(l, INIT_ZERO, 1, 0, "score.2.bias", 0);
    } else {
        tl_add(l, INIT_NORMAL, 1, o->dim, "score.weight", 0);
    }
}

/* HF family names of --arch */
static const struct { const char *arch, *prefix, *model_type; } FAMILIES[] = {
    {"gpt2", "GPT2", "gpt2"}, {"llama", "Llama", "llama"}, {"qwen3", "Qwen3", "qwen3"}, {"gemma2", "Gemma2", "gemma2"},
    {"gemma3", "Gemma3", "gemma3_text"}};

static int family_of(const char *arch) {
    for (int i = 0; i < (int)(sizeof FAMILIES / sizeof *FAMILIES); i++)
        if (!strcmp(arch, FAMILIES[i].arch)) return i;
    return -1;
}

/* The family-specific config keys of the RoPE families. */
static void config_rope_family(cJSON *j, const InitModelOptions *o) {
    int hd = o->dim / o->heads;
    if (!strncmp(o->arch, "gemma", 5)) { /* Gemma-2, or Gemma-3: no softcaps, a local RoPE base, 5 of 6 sliding */
        int g3 = !strcmp(o->arch, "gemma3");
        cJSON_AddNumberToObject(j, "head_dim", hd);
        cJSON_AddStringToObject(j, "hidden_activation", "gelu_pytorch_tanh");
        cJSON_AddNumberToObject(j, "query_pre_attn_scalar", hd);
        if (g3) {
            cJSON_AddNullToObject(j, "attn_logit_softcapping");
            cJSON_AddNullToObject(j, "final_logit_softcapping");
            cJSON_AddNumberToObject(j, "rope_local_base_freq", 10000.0);
            cJSON_AddNumberToObject(j, "sliding_window_pattern", 6);
        } else {
            cJSON_AddNumberToObject(j, "attn_logit_softcapping", 50.0);
            cJSON_AddNumberToObject(j, "final_logit_softcapping", 30.0);
        }
        cJSON_AddNumberToObject(j, "sliding_window", g3 ? 512 : 4096);
        cJSON_AddNumberToObject(j, "rope_theta", g3 ? 1000000.0 : 10000.0);
        cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
        return;
    }
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", 0);
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    if (!strcmp(o->arch, "qwen3")) {
        cJSON_AddNumberToObject(j, "head_dim", hd);
        cJSON_AddNumberToObject(j, "rope_theta", 1000000.0);
        cJSON_AddBoolToObject(j, "use_sliding_window", 0);
    } else {
        cJSON_AddNumberToObject(j, "rope_theta", 10000.0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
    }
}

static cJSON *config_json(const InitModelOptions *o, int V, int F, int bos, int eos, int pad) {
    int gpt2 = !strcmp(o->arch, "gpt2"), score = strcmp(o->head, "lm") != 0, fam = family_of(o->arch);
    cJSON *j = cJSON_CreateObject();
    char arch[64];
    snprintf(arch, sizeof arch, "%s%s", FAMILIES[fam].prefix, !strcmp(o->head, "armo") ? "ForRewardModelWithGating"
             : score ? (strcmp(o->arch, "gemma3") ? "ForSequenceClassification" : "TextForSequenceClassification")
             : gpt2 ? "LMHeadModel" : "ForCausalLM");
    cJSON *a = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(arch));
    cJSON_AddStringToObject(j, "model_type", FAMILIES[fam].model_type);
    cJSON_AddNumberToObject(j, "vocab_size", V);
    if (gpt2) {
        cJSON_AddNumberToObject(j, "n_positions", o->max_pos);
        cJSON_AddNumberToObject(j, "n_embd", o->dim);
        cJSON_AddNumberToObject(j, "n_layer", o->layers);
        cJSON_AddNumberToObject(j, "n_head", o->heads);
        cJSON_AddNumberToObject(j, "n_inner", F);
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(j, "layer_norm_epsilon", 1e-5);
        cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
    } else {
        cJSON_AddNumberToObject(j, "hidden_size", o->dim);
        cJSON_AddNumberToObject(j, "intermediate_size", F);
        cJSON_AddNumberToObject(j, "num_hidden_layers", o->layers);
        cJSON_AddNumberToObject(j, "num_attention_heads", o->heads);
        cJSON_AddNumberToObject(j, "num_key_value_heads", o->kv_heads);
        cJSON_AddNumberToObject(j, "max_position_embeddings", o->max_pos);
        cJSON_AddNumberToObject(j, "rms_norm_eps", 1e-6);
        config_rope_family(j, o);
    }
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    if (bos >= 0) cJSON_AddNumberToObject(j, "bos_token_id", bos);
    if (eos >= 0) cJSON_AddNumberToObject(j, "eos_token_id", eos);
    if (!strcmp(o->head, "armo")) {
        cJSON_AddNumberToObject(j, "num_objectives", ARMO_K);
        cJSON_AddNumberToObject(j, "gating_hidden_dim", o->dim);
        cJSON_AddNumberToObject(j, "gating_n_hidden", ARMO_HIDDEN);
        cJSON_AddNumberToObject(j, "gating_temperature", 10);
    }
    if (score) { /* HF sequence classification needs a pad id to find the last token of padded rows */
        cJSON *l = cJSON_AddObjectToObject(j, "id2label");
        cJSON_AddStringToObject(l, "0", "LABEL_0");
        if (pad >= 0 || eos >= 0) cJSON_AddNumberToObject(j, "pad_token_id", pad >= 0 ? pad : eos);
    }
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    return j;
}

int train_copy_tokenizer(const char *src, const char *dst) {
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *s = path_join(src, files[i]), *d = path_join(dst, files[i]);
        int rc = 0;
        if (file_exists(s)) {
            size_t len;
            const char *err = NULL;
            char *data = file_read_all(s, &len, &err);
            rc = !data ? quorum_input_error(s, "cannot read: %s", err) : file_write_atomic(d, data, len) ? -1 : 0;
            free(data);
        }
        free(s); free(d);
        if (rc) return -1;
    }
    return 0;
}

int model_init_random(const InitModelOptions *o) {
    int gpt2 = !strcmp(o->arch, "gpt2"), score = strcmp(o->head, "lm") != 0;
    if (family_of(o->arch) < 0 || (strcmp(o->head, "lm") && strcmp(o->head, "score") && strcmp(o->head, "mlp") &&
                                   strcmp(o->head, "armo")) || (!strcmp(o->head, "armo") && strcmp(o->arch, "llama")))
        return quorum_input_error("init-model:--arch/--head", "got --arch %s --head %s: arch gpt2|llama|qwen3|gemma2|gemma3, "
                                  "head lm|score|mlp, or --arch llama --head armo", o->arch, o->head);
    int kv = o->kv_heads ? o->kv_heads : o->heads;
    if (o->layers < 1 || o->dim < 2 || o->heads < 1 || o->dim % o->heads || o->heads % kv ||
        (!gpt2 && (o->dim / o->heads) % 2))
        return quorum_input_error("init-model:--dim/--heads", "need dim %% heads == 0, heads %% kv-heads == 0 "
                                  "(and an even head size for llama)");
    Tokenizer *t = tokenizer_load(o->tokenizer);
    if (!t) return -1;
    int V = o->vocab ? o->vocab : tokenizer_vocab_size(t);
    int bos = tokenizer_bos(t), eos = tokenizer_eos(t), pad = tokenizer_pad(t);
    tokenizer_free(t);
    InitModelOptions c = *o;
    c.kv_heads = kv;
    if (!c.max_pos) c.max_pos = 1024;
    int F = o->ffn ? o->ffn : gpt2 ? 4 * o->dim : ((8 * o->dim / 3 + 7) / 8) * 8;

    TensorList l = {0};
    if (gpt2) tensors_gpt2(&l, &c, V, F);
    else tensors_llama(&l, &c, V, F);
    if (score) { /* replace the LM head (if any) by the reward head */
        if (!gpt2 && strncmp(o->arch, "gemma", 5)) l.n--; /* Gemma ties its LM head: none to drop */
        tensors_head(&l, &c);
    }
    Rng r;
    rng_seed(&r, o->seed, 0x1417);
    float **data = xcalloc(l.n, sizeof(float *));
    for (int i = 0; i < l.n; i++) {
        l.t[i].name = l.names.data + (uintptr_t)l.t[i].name;
        int64_t n = l.t[i].shape[0] * (l.t[i].ndim == 2 ? l.t[i].shape[1] : 1);
        data[i] = xmalloc(n * sizeof(float));
        for (int64_t k = 0; k < n; k++)
            data[i][k] = l.init[i] == INIT_NORMAL ? 0.02f * rng_normal(&r) : l.init[i] == INIT_ONE ? 1.0f
                         : l.init[i] == INIT_EYE ? (float)(k / l.t[i].shape[1] == k % l.t[i].shape[1]) : 0.0f;
        l.t[i].data = data[i];
    }
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", o->out, (int)getpid());
    cJSON *cfg = config_json(&c, V, F, bos, eos, pad);
    char *cfg_path = path_join(tmp, "config.json");
    int rc = mkdir_p(tmp) ? quorum_input_error(tmp, "cannot create: %s", strerror(errno)) : 0;
    if (!rc) rc = safetensors_write(tmp, l.t, l.n, 0);
    if (!rc) rc = json_write_atomic(cfg_path, cfg);
    if (!rc) rc = train_copy_tokenizer(o->tokenizer, tmp);
    if (!rc) {
        Model *m = NULL;
        rc = model_load(&m, tmp, &backend_cpu);
        if (!rc) model_free(m);
    }
    if (!rc && file_exists(o->out)) {
        char old[2100];
        snprintf(old, sizeof old, "%s.old.%d", o->out, (int)getpid());
        if (rename(o->out, old)) rc = quorum_input_error(o->out, "exists and cannot be replaced: %s", strerror(errno));
        else dir_remove_flat(old);
    }
    if (!rc && rename(tmp, o->out)) rc = quorum_input_error(o->out, "cannot rename %s into place: %s", tmp, strerror(errno));
    for (int i = 0; i < l.n; i++) free(data[i]);
    free(data); free(l.t); free(l.init); buf_free(&l.names); cJSON_Delete(cfg); free(cfg_path);
    return rc;
}
