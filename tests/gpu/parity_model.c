/*
 * tests/gpu/parity_model.c - the training kernels against direct double-precision computations, and
 * whole models through model.h on backend_cuda vs backend_cpu: a reward-model scoring forward (+ its
 * backward) for GPT-2 and Llama (GQA, llama3 RoPE scaling), and one full DPO step (policy log-probs,
 * DPO loss, backward, AdamW) for a Qwen2 causal LM. Checkpoints are tiny random safetensors written here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "quorum/common.h"
#include "quorum/cuda_backend.h"
#include "quorum/model.h"
#include "quorum/safetensors.h"
#include "quorum/train.h"
#define TEST_EXTERN_COUNTERS
#include "../test.h"
#include "parity.h"

static Rng R;

/* ---------------------------------------------------------------- training kernels */

/* The CPU trainer's DPO loss (src/train/loss.c, checked against TRL/torch by train.losses_torch): sigmoid,
 * or cDPO with label smoothing eps (the kernel's -(1-eps) ls(b z) - eps ls(-b z)); the mean over B pairs and
 * its gradients scaled 1/B, as the CUDA kernel returns them. */
static double dpo_reference(const float *pc, const float *pr, const float *rc, const float *rr, int B, double beta,
                            double eps, float *dpc, float *dpr) {
    DpoLossCfg c = {eps > 0 ? DPO_CDPO : DPO_SIGMOID, (float)beta, (float)eps, 0.05f};
    DpoBatch x = {B, pc, pr, rc, rr, NULL, NULL};
    DpoGrads g = {dpc, dpr, NULL, NULL};
    return dpo_loss(&c, &x, 1.0f / (float)B, &g, NULL) / B;
}

static void case_dpo_loss(int B, float beta, float eps) {
    float *pc = rnd(&R, B, 3), *pr = rnd(&R, B, 3), *rc = rnd(&R, B, 3), *rr = rnd(&R, B, 3);
    for (int b = 0; b < B; b++) { pc[b] -= 60; pr[b] -= 55; rc[b] -= 60; rr[b] -= 55; } /* sequence-sized */
    float *ref_dpc = xmalloc(sizeof(float) * B), *ref_dpr = xmalloc(sizeof(float) * B);
    double ref = dpo_reference(pc, pr, rc, rr, B, beta, eps, ref_dpc, ref_dpr);
    Arena a = {&backend_cuda};
    float *d_dpc = a_nan(&a, B), *d_dpr = a_nan(&a, B), *d_mg = a_nan(&a, B);
    float loss = cuda_dpo_loss(a_up(&a, pc, B), a_up(&a, pr, B), a_up(&a, rc, B), a_up(&a, rr, B), B, beta, eps,
                               d_dpc, d_dpr, d_mg);
    float lossf = loss, reff = (float)ref;
    char name[96];
    snprintf(name, sizeof name, "dpo_loss(B=%d,beta=%g,ls=%g).loss", B, beta, eps);
    check_close(name, &lossf, &reff, 1, TOL_FP32);
    float *dpc = a_down(&a, d_dpc, B), *dpr = a_down(&a, d_dpr, B), *mg = a_down(&a, d_mg, B);
    check_close("dpo_loss.dchosen", dpc, ref_dpc, B, TOL_FP32);
    check_close("dpo_loss.drejected", dpr, ref_dpr, B, TOL_FP32);
    for (int b = 0; b < B; b++) ref_dpc[b] = (pc[b] - pr[b]) - (rc[b] - rr[b]);
    check_close("dpo_loss.margin", mg, ref_dpc, B, TOL_FP32);
    arena_free(&a);
    free(pc); free(pr); free(rc); free(rr); free(ref_dpc); free(ref_dpr); free(dpc); free(dpr); free(mg);
}

static void case_grad_norm(size_t n) {
    float *g = rnd(&R, n, 0.01f);
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    float ref = (float)sqrt(ss);
    Arena a = {&backend_cuda};
    float *d_g = a_up(&a, g, n);
    float n1 = cuda_grad_norm(d_g, n), n2 = cuda_grad_norm(d_g, n);
    check_close("grad_norm vs double", &n1, &ref, 1, TOL_FP32);
    CHECK_NAMED("grad_norm deterministic (bitwise)", !memcmp(&n1, &n2, sizeof n1));
    arena_free(&a);
    free(g);
}

/* train_ops_cuda's AdamW with a grad_scale (clipping) == the CPU's adamw_update on the pre-scaled gradient */
static void case_adamw_scaled(size_t n, float scale) {
    float *p = rnd(&R, n, 1), *g = rnd(&R, n, 1), *gs = xmalloc(sizeof(float) * n), *z = xcalloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) gs[i] = g[i] * scale;
    float *res[2];
    OptimCfg o;
    optim_defaults(&o);
    o.beta2 = 0.95f, o.weight_decay = 0.1f;
    for (int k = 0; k < 2; k++) {
        Arena a = {BE[k]};
        float *d_p = a_up(&a, p, n), *d_m = a_up(&a, z, n), *d_v = a_up(&a, z, n);
        if (k == 0) adamw_update(d_p, a_up(&a, gs, n), d_m, d_v, NULL, n, 1e-3f, &o, 1);
        else train_ops_cuda.adamw(d_p, a_up(&a, g, n), d_m, d_v, NULL, n, 1e-3f, scale, &o, 1);
        res[k] = a_down(&a, d_p, n);
        sub_inplace(res[k], p, n);
        arena_free(&a);
    }
    check_close("adamw_step(grad_scale).dparams", res[1], res[0], n, TOL_FP32);
    free(p); free(g); free(gs); free(z); free(res[0]); free(res[1]);
}

void test_training(void) {
    rng_seed(&R, 777, 0);
    printf("training kernels vs double-precision references\n");
    case_grad_norm(3000017);
    case_dpo_loss(37, 0.1f, 0.0f);
    case_dpo_loss(300, 0.5f, 0.2f);
    case_adamw_scaled(4099, 0.37f);
}

/* ---------------------------------------------------------------- tiny checkpoints */

typedef struct {
    StWrite t[128];
    int n;
} Ckpt;

static void ckpt_add(Ckpt *c, const char *name, int64_t d0, int64_t d1, float scale, float shift) {
    StWrite *w = &c->t[c->n++];
    w->name = xstrdup(name);
    w->ndim = d1 ? 2 : 1;
    w->shape[0] = d0;
    w->shape[1] = d1;
    size_t n = (size_t)d0 * (d1 ? d1 : 1);
    float *x = rnd(&R, n, scale);
    for (size_t i = 0; i < n; i++) x[i] += shift;
    w->data = x;
}
static void ckpt_addf(Ckpt *c, const char *fmt, int layer, int64_t d0, int64_t d1, float scale, float shift) {
    char name[160];
    snprintf(name, sizeof name, fmt, layer);
    ckpt_add(c, name, d0, d1, scale, shift);
}

/* Writes dir/config.json and dir/model.safetensors; frees the tensors. */
static void ckpt_write(Ckpt *c, const char *dir, const char *config) {
    REQUIRE(mkdir_p(dir) == 0);
    char *cfg = path_join(dir, "config.json");
    REQUIRE(file_write_atomic(cfg, config, strlen(config)) == 0);
    REQUIRE(safetensors_write(dir, c->t, c->n, 0) == 0);
    for (int i = 0; i < c->n; i++) { free((void *)c->t[i].name); free((void *)c->t[i].data); }
    c->n = 0;
    free(cfg);
}

/* GPT-2 reward model: Conv1D weights are [in,out] in the file. */
static void write_gpt2_rm(const char *dir, int V, int C, int L, int NH, int maxT) {
    Ckpt c = {0};
    ckpt_add(&c, "transformer.wte.weight", V, C, 0.2f, 0);
    ckpt_add(&c, "transformer.wpe.weight", maxT, C, 0.1f, 0);
    for (int l = 0; l < L; l++) {
        ckpt_addf(&c, "transformer.h.%d.ln_1.weight", l, C, 0, 0.1f, 1);
        ckpt_addf(&c, "transformer.h.%d.ln_1.bias", l, C, 0, 0.1f, 0);
        ckpt_addf(&c, "transformer.h.%d.attn.c_attn.weight", l, C, 3 * C, 0.2f, 0);
        ckpt_addf(&c, "transformer.h.%d.attn.c_attn.bias", l, 3 * C, 0, 0.1f, 0);
        ckpt_addf(&c, "transformer.h.%d.attn.c_proj.weight", l, C, C, 0.2f, 0);
        ckpt_addf(&c, "transformer.h.%d.attn.c_proj.bias", l, C, 0, 0.1f, 0);
        ckpt_addf(&c, "transformer.h.%d.ln_2.weight", l, C, 0, 0.1f, 1);
        ckpt_addf(&c, "transformer.h.%d.ln_2.bias", l, C, 0, 0.1f, 0);
        ckpt_addf(&c, "transformer.h.%d.mlp.c_fc.weight", l, C, 4 * C, 0.2f, 0);
        ckpt_addf(&c, "transformer.h.%d.mlp.c_fc.bias", l, 4 * C, 0, 0.1f, 0);
        ckpt_addf(&c, "transformer.h.%d.mlp.c_proj.weight", l, 4 * C, C, 0.1f, 0);
        ckpt_addf(&c, "transformer.h.%d.mlp.c_proj.bias", l, C, 0, 0.1f, 0);
    }
    ckpt_add(&c, "transformer.ln_f.weight", C, 0, 0.1f, 1);
    ckpt_add(&c, "transformer.ln_f.bias", C, 0, 0.1f, 0);
    ckpt_add(&c, "score.weight", 1, C, 0.3f, 0);
    char cfg[512];
    snprintf(cfg, sizeof cfg, "{\"architectures\":[\"GPT2ForSequenceClassification\"],\"vocab_size\":%d,"
             "\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d,\"n_positions\":%d,\"id2label\":{\"0\":\"LABEL_0\"}}",
             V, C, L, NH, maxT);
    ckpt_write(&c, dir, cfg);
}

/* Llama-family trunk: arch "Llama..." or "Qwen2..." (q/k/v biases), head "reward" or "lm" (untied). */
static void write_llama(const char *dir, const char *arch, int V, int C, int L, int NH, int NKV, int F) {
    Ckpt c = {0};
    int HD = C / NH, qwen = !strncmp(arch, "Qwen2", 5), rm = strstr(arch, "Sequence") != NULL;
    ckpt_add(&c, "model.embed_tokens.weight", V, C, 0.3f, 0);
    for (int l = 0; l < L; l++) {
        ckpt_addf(&c, "model.layers.%d.input_layernorm.weight", l, C, 0, 0.1f, 1);
        ckpt_addf(&c, "model.layers.%d.self_attn.q_proj.weight", l, NH * HD, C, 0.2f, 0);
        ckpt_addf(&c, "model.layers.%d.self_attn.k_proj.weight", l, NKV * HD, C, 0.2f, 0);
        ckpt_addf(&c, "model.layers.%d.self_attn.v_proj.weight", l, NKV * HD, C, 0.2f, 0);
        if (qwen) {
            ckpt_addf(&c, "model.layers.%d.self_attn.q_proj.bias", l, NH * HD, 0, 0.1f, 0);
            ckpt_addf(&c, "model.layers.%d.self_attn.k_proj.bias", l, NKV * HD, 0, 0.1f, 0);
            ckpt_addf(&c, "model.layers.%d.self_attn.v_proj.bias", l, NKV * HD, 0, 0.1f, 0);
        }
        ckpt_addf(&c, "model.layers.%d.self_attn.o_proj.weight", l, C, NH * HD, 0.2f, 0);
        ckpt_addf(&c, "model.layers.%d.post_attention_layernorm.weight", l, C, 0, 0.1f, 1);
        ckpt_addf(&c, "model.layers.%d.mlp.gate_proj.weight", l, F, C, 0.2f, 0);
        ckpt_addf(&c, "model.layers.%d.mlp.up_proj.weight", l, F, C, 0.2f, 0);
        ckpt_addf(&c, "model.layers.%d.mlp.down_proj.weight", l, C, F, 0.2f, 0);
    }
    ckpt_add(&c, "model.norm.weight", C, 0, 0.1f, 1);
    if (rm) ckpt_add(&c, "score.weight", 1, C, 0.3f, 0);
    else ckpt_add(&c, "lm_head.weight", V, C, 0.3f, 0);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"architectures\":[\"%s\"],\"vocab_size\":%d,\"hidden_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
             "\"intermediate_size\":%d,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,"
             "\"max_position_embeddings\":64,%s\"id2label\":{\"0\":\"LABEL_0\"}}",
             arch, V, C, L, NH, NKV, F,
             qwen ? "" : "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
                         "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8},");
    ckpt_write(&c, dir, cfg);
}

/* ---------------------------------------------------------------- whole models */

/* Compares grads tensor by tensor; reports the worst (norm-wise) and checks the whole buffer. */
static void compare_grads(const char *what, Model *cpu, const float *g_cpu, const float *g_cuda, size_t n) {
    int nt;
    const ModelTensor *ts = model_tensors(cpu, &nt);
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < nt; i++) {
        size_t len = (size_t)ts[i].shape[0] * (ts[i].ndim == 2 ? ts[i].shape[1] : 1);
        double num = 0, den = 0;
        for (size_t j = ts[i].offset; j < ts[i].offset + len; j++) {
            double d = (double)g_cuda[j] - g_cpu[j];
            num += d * d;
            den += (double)g_cpu[j] * g_cpu[j];
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        if (rel > worst) { worst = rel; worst_name = ts[i].name; }
    }
    char name[160];
    snprintf(name, sizeof name, "%s.grads (all)", what);
    check_close(name, g_cuda, g_cpu, n, TOL_FP32_MODEL);
    snprintf(name, sizeof name, "%s.grads worst tensor %.1e", what, worst);
    printf("    (worst tensor: %s)\n", worst_name);
    CHECK_NAMED(name, worst <= 1e-3);
}

/* Random right-padded batch: ids (B,T) in [0,V) (0 as padding), lens in [lo,T]. */
static void random_batch(int32_t *ids, int *lens, int B, int T, int V, int lo) {
    for (int b = 0; b < B; b++) {
        lens[b] = b == 0 ? T : lo + (int)rng_below(&R, T - lo + 1);
        for (int t = 0; t < T; t++) ids[b * T + t] = t < lens[b] ? (int32_t)rng_below(&R, V) : 0;
    }
}

static void case_reward_model(const char *what, const char *dir, int V) {
    enum { B = 5, T = 13 };
    int32_t ids[B * T];
    int lens[B];
    random_batch(ids, lens, B, T, V, 1);
    lens[B - 1] = 1;
    float reward[2][B], *dr = rnd(&R, B, 1), *grads[2];
    Model *m[2];
    for (int k = 0; k < 2; k++) {
        REQUIRE(model_load(&m[k], dir, BE[k]) == 0);
        for (int b = 0; b < B; b++) reward[k][b] = NAN;
        REQUIRE(model_reward(m[k], ids, lens, B, T, reward[k]) == 0);
        REQUIRE(model_backward(m[k], dr) == 0);
        size_t n = model_n_params(m[k]);
        grads[k] = xmalloc(sizeof(float) * n);
        BE[k]->to_host(grads[k], model_grads(m[k]), sizeof(float) * n);
    }
    char name[128];
    snprintf(name, sizeof name, "%s.reward", what);
    check_close(name, reward[1], reward[0], B, TOL_FP32_MODEL);
    compare_grads(what, m[0], grads[0], grads[1], model_n_params(m[0]));
    for (int k = 0; k < 2; k++) { model_free(m[k]); free(grads[k]); }
    free(dr);
}

/* One DPO step on a causal LM: chosen rows 0..P-1, rejected rows P..2P-1 of one batch. */
static void case_dpo_step(const char *dir, int V) {
    enum { P = 3, B = 2 * P, T = 11 };
    int32_t ids[B * T];
    int lens[B];
    uint8_t mask[B * T];
    random_batch(ids, lens, B, T, V, 5);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t >= 3 && t < lens[b]; /* prompt = first 3 tokens */
    float ref[B], *off = rnd(&R, B, 0.5f);
    const float beta = 0.5f, lr = 1e-3f;
    float lp[2][B], lp_after[2][B], loss[2], loss_after[2], dseq[2][B], *grads[2], *dparams[2];
    Model *m[2];
    for (int k = 0; k < 2; k++) {
        const Backend *be = BE[k];
        REQUIRE(model_load(&m[k], dir, be) == 0);
        size_t n = model_n_params(m[k]);
        REQUIRE(model_logprobs(m[k], ids, lens, mask, B, T, lp[k]) == 0);
        if (k == 0) for (int b = 0; b < B; b++) ref[b] = lp[0][b] + off[b]; /* a fixed "reference model" */
        if (k == 0) {
            loss[0] = (float)dpo_reference(lp[0], lp[0] + P, ref, ref + P, P, beta, 0, dseq[0], dseq[0] + P);
        } else {
            Arena a = {be};
            float *d_lp = a_up(&a, lp[1], B), *d_ref = a_up(&a, ref, B), *d_d = a_nan(&a, B);
            loss[1] = cuda_dpo_loss(d_lp, d_lp + P, d_ref, d_ref + P, P, beta, 0, d_d, d_d + P, NULL);
            be->to_host(dseq[1], d_d, sizeof dseq[1]);
            arena_free(&a);
        }
        model_zero_grad(m[k]);
        REQUIRE(model_backward(m[k], dseq[k]) == 0);
        grads[k] = xmalloc(sizeof(float) * n);
        be->to_host(grads[k], model_grads(m[k]), sizeof(float) * n);
        float *before = xmalloc(sizeof(float) * n);
        be->to_host(before, model_params(m[k]), sizeof(float) * n);
        float *mv = be->alloc(2 * sizeof(float) * n);
        be->zero(mv, 2 * sizeof(float) * n);
        OptimCfg o;
        optim_defaults(&o);
        (be == &backend_cpu ? &train_ops_cpu : &train_ops_cuda)->adamw(model_params(m[k]), model_grads(m[k]), mv, mv + n,
                                                                      NULL, n, lr, 1.0f, &o, 1);
        be->free(mv);
        dparams[k] = xmalloc(sizeof(float) * n);
        be->to_host(dparams[k], model_params(m[k]), sizeof(float) * n);
        sub_inplace(dparams[k], before, n);
        free(before);
        REQUIRE(model_logprobs(m[k], ids, lens, mask, B, T, lp_after[k]) == 0);
        float unused[B];
        loss_after[k] = (float)dpo_reference(lp_after[k], lp_after[k] + P, ref, ref + P, P, beta, 0, unused, unused + P);
    }
    size_t n = model_n_params(m[0]);
    check_close("dpo_step.policy_logp", lp[1], lp[0], B, TOL_FP32_MODEL);
    check_close("dpo_step.loss", &loss[1], &loss[0], 1, TOL_FP32_MODEL);
    check_close("dpo_step.dloss/dlogp", dseq[1], dseq[0], B, TOL_FP32_MODEL);
    compare_grads("dpo_step", m[0], grads[0], grads[1], n);
    /* AdamW's first step is ~lr*sign(g): tiny gradients on either side may flip a few, so compare in norm */
    check_close("dpo_step.adamw dparams", dparams[1], dparams[0], n, 1e-2);
    check_close("dpo_step.policy_logp after step", lp_after[1], lp_after[0], B, 1e-3);
    printf("    DPO loss %.5f -> %.5f (cpu), %.5f -> %.5f (cuda)\n", loss[0], loss_after[0], loss[1], loss_after[1]);
    CHECK_NAMED("dpo_step lowers the DPO loss on both backends", loss_after[0] < loss[0] && loss_after[1] < loss[1]);
    for (int k = 0; k < 2; k++) { model_free(m[k]); free(grads[k]); free(dparams[k]); }
    free(off);
}

void test_model(void) {
    rng_seed(&R, 4242, 0);
    char tmpl[] = "/tmp/quorum_gpu_parity_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != NULL);
    char *gpt2 = path_join(tmpl, "gpt2_rm"), *llama = path_join(tmpl, "llama_rm"), *qwen = path_join(tmpl, "qwen2_lm");
    write_gpt2_rm(gpt2, 61, 32, 2, 4, 16);
    write_llama(llama, "LlamaForSequenceClassification", 61, 32, 2, 4, 2, 48);
    write_llama(qwen, "Qwen2ForCausalLM", 67, 32, 2, 4, 2, 40);
    printf("models through model.h: backend_cuda vs backend_cpu\n");
    case_reward_model("gpt2_rm", gpt2, 61);
    case_reward_model("llama_rm(gqa,llama3 rope)", llama, 61);
    case_dpo_step(qwen, 67);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpl);
    free(gpt2); free(llama); free(qwen);
}
