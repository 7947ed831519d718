/* lora_bench.c - LoRA DPO step throughput on one backend: the old design (merge W0 + s B A into the weights, full
 * base backward, project dW onto A and B: what src/train/lora.c did before issue 19) vs the adapters inside the
 * model's linears (model_lora_attach: frozen base, dA/dB/dx only), side by side in one process on the same batches.
 *
 *   lora_bench TOKENIZER_DIR [layers dim ffn vocab B T r steps]   (defaults 4 256 688 8192 8 192 16 6)
 *
 * A random Llama (quorum init-model's model_init_random; the tokenizer folder only names the special ids) with
 * LoRA on q,k,v,o,gate,up,down; B sequences of T random tokens, the second half of each masked as the completion
 * (a DPO micro-batch's shape: forward log-prob sums, backward from a random dLoss/dlogp). A step = forward + zero
 * grads + backward (+ the old design's merge and projection). The two designs alternate step by step; tokens/s =
 * B*T / median step time. Before timing, both designs' adapter gradients are compared (same adapters, B != 0,
 * dropout 0: the same math). Prints one JSON line per design. */
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/ops.h"
#include "quorum/rng.h"
#include "quorum/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TARGETS "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

typedef struct {
    int B, T;
    int32_t *ids;
    int *lens;
    uint8_t *mask;
    float *out, *dout;
} Batch;

/* The old design on model `m` (grads on), adapters `ad` on the host in model_lora_sites' layout of `sites`:
 * W = W0 + s B A into the weights, forward, full backward, dA += s B^T dW, dB += s dW A^T. w0: the frozen copies. */
static void old_step(Model *m, float **w0, const ModelLoraSite *S, int ns, int r, float s, const float *ad,
                     float *gad, const Batch *b) {
    float *W = model_params(m);
    for (int k = 0; k < ns; k++) {
        float *w = W + model_find_tensor(m, S[k].name)->offset;
        const float *A = ad + S[k].a, *Bm = ad + S[k].b;
        for (int64_t o = 0; o < S[k].out; o++)
            for (int64_t i = 0; i < S[k].in; i++) {
                double acc = 0;
                for (int j = 0; j < r; j++) acc += (double)Bm[o * r + j] * A[(int64_t)j * S[k].in + i];
                w[o * S[k].in + i] = w0[k][o * S[k].in + i] + (float)(s * acc);
            }
    }
    model_logprobs(m, b->ids, b->lens, b->mask, b->B, b->T, b->out);
    model_zero_grad(m);
    model_backward(m, b->dout);
    const float *G = model_grads(m);
    for (int k = 0; k < ns; k++) {
        int64_t O = S[k].out, I = S[k].in;
        const float *dW = G + model_find_tensor(m, S[k].name)->offset, *A = ad + S[k].a, *Bm = ad + S[k].b;
        double *gA = xcalloc((size_t)(r * I), sizeof(double)), *gB = xcalloc((size_t)(O * r), sizeof(double));
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < I; i++) {
                double g = dW[o * I + i];
                for (int j = 0; j < r; j++) {
                    gA[j * I + i] += Bm[o * r + j] * g;
                    gB[o * r + j] += g * A[j * I + i];
                }
            }
        for (int64_t x = 0; x < r * I; x++) gad[S[k].a + x] = (float)(s * gA[x]);
        for (int64_t x = 0; x < O * r; x++) gad[S[k].b + x] = (float)(s * gB[x]);
        free(gA);
        free(gB);
    }
}

static void new_step(Model *m, const Batch *b, uint64_t seed, ModelLoraMode mode) {
    model_lora_mode(m, mode, seed);
    model_logprobs(m, b->ids, b->lens, b->mask, b->B, b->T, b->out);
    model_zero_grad(m);
    model_backward(m, b->dout);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: lora_bench TOKENIZER_DIR [layers dim ffn vocab B T r steps]\n");
        return 2;
    }
    int v[8] = {4, 256, 688, 8192, 8, 192, 16, 6};
    for (int i = 0; i < 8 && i + 2 < argc; i++) v[i] = atoi(argv[i + 2]);
    int L = v[0], C = v[1], F = v[2], V = v[3], r = v[6], steps = v[7];
    Batch b = {.B = v[4], .T = v[5]};
    backend_cpu_pin_threads();
    char dir[] = "/tmp/lora_bench.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    InitModelOptions io = {.arch = "llama", .layers = L, .dim = C, .heads = C / 64 > 0 ? C / 64 : 1,
                           .kv_heads = C / 128 > 0 ? C / 128 : 1, .ffn = F, .vocab = V, .head = "lm", .seed = 5};
    snprintf(io.tokenizer, sizeof io.tokenizer, "%s", argv[1]);
    snprintf(io.out, sizeof io.out, "%s/policy", dir);
    if (model_init_random(&io)) return 1;
    Model *mo = NULL, *mn = NULL;
    if (model_load(&mo, io.out, &backend_cpu) || model_load(&mn, io.out, &backend_cpu)) return 1;
    ModelLoraCfg lc = {.r = r, .alpha = 2.0f * r, .dropout = 0, .targets = TARGETS, .seed = 9};
    if (model_lora_attach(mn, &lc)) return 1;
    int ns;
    const ModelLoraSite *S = model_lora_sites(mn, &ns);
    size_t n = model_lora_n_params(mn);
    float *ad = model_lora_params(mn), *gad = xcalloc(n, sizeof(float)), **w0 = xcalloc((size_t)ns, sizeof(float *));
    Rng rng;
    rng_seed(&rng, 3, 0);
    for (size_t i = 0; i < n; i++) ad[i] += 0.01f * (2 * rng_uniform(&rng) - 1); /* B != 0: every path carries */
    for (int k = 0; k < ns; k++) {
        size_t cnt = (size_t)(S[k].out * S[k].in);
        w0[k] = xmalloc(cnt * sizeof(float));
        memcpy(w0[k], model_params(mo) + model_find_tensor(mo, S[k].name)->offset, cnt * sizeof(float));
    }
    size_t N = (size_t)b.B * b.T;
    b.ids = xmalloc(N * sizeof(int32_t)), b.mask = xmalloc(N), b.lens = xmalloc(b.B * sizeof(int));
    b.out = xmalloc(b.B * sizeof(float)), b.dout = xmalloc(b.B * sizeof(float));
    for (size_t i = 0; i < N; i++) b.ids[i] = (int32_t)rng_below(&rng, (uint64_t)V), b.mask[i] = (i % b.T) >= (size_t)b.T / 2;
    for (int i = 0; i < b.B; i++) b.lens[i] = b.T, b.dout[i] = 2 * rng_uniform(&rng) - 1;

    /* same math: the adapter gradients of both designs */
    old_step(mo, w0, S, ns, r, lc.alpha / r, ad, gad, &b);
    new_step(mn, &b, 1, MODEL_LORA_TRAIN);
    const float *gn = model_lora_grads(mn);
    double err = 0, mag = 0;
    for (size_t i = 0; i < n; i++) err = fmax(err, fabs(gn[i] - gad[i])), mag = fmax(mag, fabs(gad[i]));
    fprintf(stderr, "lora_bench: adapter grads old vs new: max |diff| %.3g (max |grad| %.3g)\n", err, mag);

    double *to = xmalloc(steps * sizeof(double)), *tn = xmalloc(steps * sizeof(double)),
           *tb = xmalloc(steps * sizeof(double));
    for (int s = 0; s < steps; s++) {
        double t0 = now_seconds();
        old_step(mo, w0, S, ns, r, lc.alpha / r, ad, gad, &b);
        to[s] = now_seconds() - t0;
        t0 = now_seconds();
        new_step(mn, &b, (uint64_t)s, MODEL_LORA_TRAIN);
        tn[s] = now_seconds() - t0;
        t0 = now_seconds();
        new_step(mn, &b, 0, MODEL_LORA_OFF); /* the frozen base alone: dx only, no adapter */
        tb[s] = now_seconds() - t0;
    }
    qsort(to, steps, sizeof(double), cmp_d);
    qsort(tn, steps, sizeof(double), cmp_d);
    qsort(tb, steps, sizeof(double), cmp_d);
    double mo_s = to[steps / 2], mn_s = tn[steps / 2], mb_s = tb[steps / 2];
    printf("{\"bench\":\"lora_dpo_step\",\"design\":\"merge+full_dW\",\"layers\":%d,\"dim\":%d,\"ffn\":%d,\"vocab\":%d,"
           "\"B\":%d,\"T\":%d,\"r\":%d,\"median_step_s\":%.4f,\"tokens_per_s\":%.1f}\n", L, C, F, V, b.B, b.T, r, mo_s,
           N / mo_s);
    printf("{\"bench\":\"lora_dpo_step\",\"design\":\"adapters_in_linear\",\"layers\":%d,\"dim\":%d,\"ffn\":%d,\"vocab\":%d,"
           "\"B\":%d,\"T\":%d,\"r\":%d,\"median_step_s\":%.4f,\"tokens_per_s\":%.1f,\"speedup\":%.2f,"
           "\"grad_max_abs_diff\":%.3g}\n", L, C, F, V, b.B, b.T, r, mn_s, N / mn_s, mo_s / mn_s, err);
    printf("{\"bench\":\"lora_dpo_step\",\"design\":\"frozen_base_no_adapter\",\"layers\":%d,\"dim\":%d,\"ffn\":%d,"
           "\"vocab\":%d,\"B\":%d,\"T\":%d,\"median_step_s\":%.4f,\"tokens_per_s\":%.1f}\n", L, C, F, V, b.B, b.T, mb_s,
           N / mb_s);
    for (int k = 0; k < ns; k++) free(w0[k]);
    free(w0), free(gad), free(to), free(tn), free(tb);
    free(b.ids), free(b.mask), free(b.lens), free(b.out), free(b.dout);
    model_free(mo);
    model_free(mn);
    dir_remove_flat(io.out);
    rmdir(dir);
    return err <= 1e-3 * fmax(1.0, mag) ? 0 : 1; /* the designs must agree */
}
