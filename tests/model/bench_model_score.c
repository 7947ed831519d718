/* bench_model_score.c - the C side of benchmarks/model_score_cpu.py (built, not a ctest): scores the sequences of
 * a batch file with a reward model loaded for inference, prints
 * {"seconds","cpu_seconds","sequences","tokens","padded_tokens","forwards","shared_tokens","matmul_gflop",
 *  "sgemm_gflops"} as JSON and writes the rewards as raw float32 to <out>. Load time is not counted.
 *   bench_model_score <model_dir> <batches.safetensors> <rewards.f32>
 *       padded batches ids.<i> (B,T), lens.<i> (B) (F32 tensors), model_reward per batch; rewards in batch order
 *   bench_model_score <model_dir> <batches.safetensors> <rewards.f32> packed <token_budget> <share 0|1>
 *       all_ids (n,T) / all_lens (n) in pair order (chosen, rejected, ...), model_reward_packed; input order
 * QUORUM_MODEL_BACKEND=cuda scores on the GPU (the bench_model_score_cuda build of tests/gpu); QUORUM_BENCH_REPS=k
 * runs the whole scoring k times and times the last (warm: plans, scratch and caches built).
 * matmul_gflop counts the linear layers (2 * tokens run * weights per token); sgemm_gflops is this process's
 * cblas_sgemm rate on a (512,768)x(768,3072) product, measured after scoring: their ratio to the seconds is
 * how close the engine gets to the machine's GEMM speed. */
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef QUORUM_HAVE_CBLAS
#include <cblas.h>
#endif

static float *get(const SafeTensors *st, const char *key, const StTensor **t) { /* NULL when absent */
    *t = safetensors_find(st, key);
    if (!*t) return NULL;
    float *x = xmalloc(sizeof(float) * (*t)->numel);
    if (safetensors_read_f32(st, *t, x)) exit(1);
    return x;
}

static double sgemm_gflops(void) {
#ifdef QUORUM_HAVE_CBLAS
    enum { M = 512, K = 768, N = 3072 };
    float *a = xcalloc((size_t)M * K, 4), *b = xcalloc((size_t)K * N, 4), *c = xcalloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 13) * 0.01f;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
        double g = 2.0 * M * N * K / (now_seconds() - t0) / 1e9;
        best = g > best ? g : best;
    }
    free(a), free(b), free(c);
    return best;
#else
    return 0;
#endif
}

/* weights a token meets in linear layers (embeddings excluded) */
static double matmul_weights(const Model *m) {
    const ModelConfig *c = model_config(m);
    double C = c->d_model, Q = (double)c->n_head * c->head_dim, KV = (double)c->n_kv_head * c->head_dim;
    double mlp = c->act == ACT_GELU_NEW ? 2.0 * C * c->d_ff : 3.0 * C * c->d_ff;
    return c->n_layer * (C * (Q + 2 * KV) + Q * C + mlp);
}

typedef struct {
    long seqs, toks, padded, run;
    ModelPackStats ps;
} Counts;

/* all_ids / all_lens (pair order) through model_reward_packed */
static int score_packed(Model *m, const SafeTensors *st, int budget, int share, Buf *out, Counts *k) {
    const StTensor *ti, *tl;
    float *idf = get(st, "all_ids", &ti), *lf = get(st, "all_lens", &tl);
    if (!idf || !lf) return 1;
    int n = (int)ti->shape[0], T = (int)ti->shape[1];
    int32_t **sq = xmalloc(sizeof(int32_t *) * n);
    int *lens = xmalloc(sizeof(int) * n);
    float *r = xmalloc(sizeof(float) * n);
    for (int s = 0; s < n; s++) {
        k->toks += lens[s] = (int)lf[s];
        sq[s] = xmalloc(sizeof(int32_t) * T);
        for (int t = 0; t < T; t++) sq[s][t] = (int32_t)idf[(size_t)s * T + t];
    }
    ModelPackOpts o = {.token_budget = budget, .share_pairs = share};
    int rc = model_reward_packed(m, (const int32_t *const *)sq, lens, n, &o, r, &k->ps);
    buf_append(out, r, sizeof(float) * n);
    k->seqs = n;
    k->padded = k->run = k->ps.tokens;
    for (int s = 0; s < n; s++) free(sq[s]);
    free(sq), free(lens), free(r), free(idf), free(lf);
    return rc != 0;
}

/* padded batches ids.<i> / lens.<i> through model_reward */
static int score_padded(Model *m, const SafeTensors *st, Buf *out, Counts *k) {
    for (int i = 0;; i++) {
        const StTensor *ti, *tl;
        char ki[32], kl[32];
        snprintf(ki, sizeof ki, "ids.%d", i);
        snprintf(kl, sizeof kl, "lens.%d", i);
        float *idf = get(st, ki, &ti), *lf = get(st, kl, &tl);
        if (!idf || !lf) return 0;
        int B = (int)ti->shape[0], T = (int)ti->shape[1];
        int32_t *ids = xmalloc(sizeof(int32_t) * B * T);
        int *lens = xmalloc(sizeof(int) * B);
        float *r = xmalloc(sizeof(float) * B);
        for (int j = 0; j < B * T; j++) ids[j] = (int32_t)idf[j];
        for (int b = 0; b < B; b++) k->toks += lens[b] = (int)lf[b];
        int rc = model_reward(m, ids, lens, B, T, r);
        buf_append(out, r, sizeof(float) * B);
        k->seqs += B;
        k->padded += (long)B * T;
        k->run = k->padded;
        k->ps.forwards++;
        free(idf), free(lf), free(ids), free(lens), free(r);
        if (rc) return 1;
    }
}

int main(int argc, char **argv) {
    int packed = argc == 7 && !strcmp(argv[4], "packed");
    if (argc != 4 && !packed) {
        fprintf(stderr, "usage: bench_model_score <model_dir> <batches.safetensors> <rewards.f32> "
                        "[packed <token_budget> <share 0|1>]\n");
        return 2;
    }
    const Backend *be = backend_get(getenv("QUORUM_MODEL_BACKEND"));
    if (!be) {
        fprintf(stderr, "bench_model_score: backend %s not compiled in\n", getenv("QUORUM_MODEL_BACKEND"));
        return 1;
    }
    Model *m;
    SafeTensors st;
    ModelLoadOpts lo = {.inference = 1};
    if (model_load_ex(&m, argv[1], be, &lo) || safetensors_open(&st, argv[2])) return 1;
    const char *reps_env = getenv("QUORUM_BENCH_REPS");
    int reps = reps_env && atoi(reps_env) > 1 ? atoi(reps_env) : 1;
    Buf out = {0};
    Counts k;
    double dt = 0, cpu = 0;
    for (int rep = 0; rep < reps; rep++) { /* the last repetition is the one timed */
        out.len = 0;
        k = (Counts){0};
        double t0 = now_seconds();
        clock_t c0 = clock();
        int rc = packed ? score_packed(m, &st, atoi(argv[5]), atoi(argv[6]), &out, &k) : score_padded(m, &st, &out, &k);
        if (rc) return 1;
        dt = now_seconds() - t0;
        cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    }
    if (file_write_atomic(argv[3], out.data, out.len)) return 1;
    printf("{\"seconds\": %.4f, \"cpu_seconds\": %.4f, \"sequences\": %ld, \"tokens\": %ld, \"padded_tokens\": %ld, "
           "\"forwards\": %lld, \"shared_tokens\": %lld, \"matmul_gflop\": %.3f, \"sgemm_gflops\": %.2f}\n",
           dt, cpu, k.seqs, k.toks, k.padded, (long long)k.ps.forwards, (long long)k.ps.shared_tokens,
           2.0 * (double)k.run * matmul_weights(m) / 1e9, sgemm_gflops());
    buf_free(&out);
    safetensors_close(&st);
    model_free(m);
    return 0;
}
