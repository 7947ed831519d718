/* bench_model_rss.c - peak memory of scoring an 8B-shaped reward model (built, not a ctest; see
 * benchmarks/RESULTS.md). Writes a Llama-3-8B-shaped LlamaForSequenceClassification with L layers (default 2)
 * and random BF16 weights into <scratch>, then measures, each in a fresh process (fork + exec, so one
 * measurement cannot inherit the other's pages), the peak RSS (getrusage ru_maxrss via wait4) of loading it
 * and scoring one batch (B=2, T=64):
 *   fp32   model_load + model_grads: every weight widened to fp32 and the gradient buffer - the layout every
 *          load had before inference loads existed (scoring allocated the gradients too)
 *   bf16   model_load_ex(.inference = 1): matrices kept bf16 as stored, no gradients
 * Both rewards are printed: they agree to fp32 rounding (same weights, same math).
 *   bench_model_rss <scratch_dir> [layers]          writes, measures both, prints one JSON line, removes the model
 *   bench_model_rss measure <model_dir> fp32|bf16  (internal) one measurement */
#define _GNU_SOURCE
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/rng.h"
#include "quorum/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

enum { V = 128256, C = 4096, F = 14336, NH = 32, NKV = 8, HD = 128, B = 2, T = 64 };

static void add(StWrite *w, int *n, const char *name, int64_t d0, int64_t d1, const float *data) {
    w[*n] = (StWrite){.name = xstrdup(name), .ndim = d1 ? 2 : 1, .shape = {d0, d1}, .data = data, .dtype = ST_BF16};
    (*n)++;
}

/* Random N(0, 0.02) matrices (one buffer shared by every tensor: the values do not matter here) and norm
 * weights near 1. */
static int write_model(const char *dir, int L) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"LlamaForSequenceClassification\"], \"model_type\": \"llama\", \"vocab_size\": %d,"
             " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
             " \"num_key_value_heads\": %d, \"rms_norm_eps\": 1e-5, \"rope_theta\": 500000.0, \"hidden_act\": \"silu\","
             " \"max_position_embeddings\": 8192, \"tie_word_embeddings\": false, \"num_labels\": 1,"
             " \"torch_dtype\": \"bfloat16\"}",
             V, C, F, L, NH, NKV);
    char *p = path_join(dir, "config.json");
    int rc = file_write_atomic(p, cfg, strlen(cfg));
    free(p);
    if (rc) return -1;
    size_t big = (size_t)V * C;
    float *w = xmalloc(sizeof(float) * big), *ones = xmalloc(sizeof(float) * C);
    Rng r;
    rng_seed(&r, 17, 0);
    for (size_t i = 0; i < big; i++) w[i] = 0.02f * (float)rng_normal(&r);
    for (int i = 0; i < C; i++) ones[i] = 1.0f + 0.1f * (float)rng_normal(&r);
    StWrite *ts = xcalloc(16 * (size_t)L + 4, sizeof(StWrite));
    int n = 0;
    char name[128];
    add(ts, &n, "model.embed_tokens.weight", V, C, w);
    for (int l = 0; l < L; l++) {
        static const struct { const char *fmt; int d0, d1; } mats[] = {
            {"model.layers.%d.self_attn.q_proj.weight", NH * HD, C}, {"model.layers.%d.self_attn.k_proj.weight", NKV * HD, C},
            {"model.layers.%d.self_attn.v_proj.weight", NKV * HD, C}, {"model.layers.%d.self_attn.o_proj.weight", C, NH * HD},
            {"model.layers.%d.mlp.gate_proj.weight", F, C}, {"model.layers.%d.mlp.up_proj.weight", F, C},
            {"model.layers.%d.mlp.down_proj.weight", C, F}, {"model.layers.%d.input_layernorm.weight", C, 0},
            {"model.layers.%d.post_attention_layernorm.weight", C, 0}};
        for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++) {
            snprintf(name, sizeof name, mats[k].fmt, l);
            add(ts, &n, name, mats[k].d0, mats[k].d1, mats[k].d1 ? w : ones);
        }
    }
    add(ts, &n, "model.norm.weight", C, 0, ones);
    add(ts, &n, "score.weight", 1, C, w);
    rc = safetensors_write(dir, ts, n, 0);
    for (int i = 0; i < n; i++) free((char *)ts[i].name);
    free(ts), free(w), free(ones);
    return rc;
}

static int measure(const char *dir, const char *mode) {
    Model *m = NULL;
    ModelLoadOpts o = {.inference = !strcmp(mode, "bf16")};
    double t0 = now_seconds();
    if (model_load_ex(&m, dir, &backend_cpu, &o)) return 1;
    if (!o.inference) (void)model_grads(m);
    double t1 = now_seconds();
    int32_t ids[B * T];
    int lens[B] = {T, T / 2};
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7919) % V;
    float rw[B];
    if (model_reward(m, ids, lens, B, T, rw)) return 1;
    printf("{\"load_s\": %.2f, \"score_s\": %.2f, \"reward\": [%.6f, %.6f]}\n", t1 - t0, now_seconds() - t1, rw[0], rw[1]);
    model_free(m);
    return 0;
}

/* runs `self measure dir mode` and returns its peak RSS in MiB (-1 on failure); its stdout line goes to ours */
static double child_rss(const char *self, const char *dir, const char *mode) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "measure", dir, mode, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) return -1;
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "measure")) return measure(argv[2], argv[3]);
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_model_rss <scratch_dir> [layers]\n");
        return 2;
    }
    int L = argc == 3 ? atoi(argv[2]) : 2;
    char *dir = path_join(argv[1], "llama8b_rm_bf16");
    if (mkdir_p(dir) || write_model(dir, L)) return 1;
    double fp32 = child_rss(argv[0], dir, "fp32"), bf16 = child_rss(argv[0], dir, "bf16");
    printf("{\"layers\": %d, \"peak_rss_mib_fp32_with_grads\": %.0f, \"peak_rss_mib_bf16_inference\": %.0f, "
           "\"ratio\": %.3f}\n", L, fp32, bf16, bf16 / fp32);
    dir_remove_flat(dir);
    free(dir);
    return fp32 > 0 && bf16 > 0 ? 0 : 1;
}
