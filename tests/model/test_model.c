/* test_model.c - the model engine against the torch reference (ref_model.py make), and its errors.
 *
 *   test_model parity <case_dir> <saved_dir>   rewards / log-probs / DPO-loss gradients vs torch (float64),
 *                                              with the cblas and the portable matmul; batch invariance;
 *                                              inference mode; save + bit-exact reload into saved_dir
 *   test_model bf16_ops                        bf16 GEMM / embedding vs float64 sums (test_model_engine.c)
 *   test_model mixed_ops                       matmul_backward_bf16 / cast_f32_to_bf16 vs float64 (test_model_mixed.c)
 *   test_model packed <case_dir> [inference]   packed + shared-prefix scoring vs plain scoring and torch
 *                                              (inference: loaded with model_load_ex, bf16 kept; test_model_engine.c)
 *   test_model errors <fixtures> <scratch_dir>  corrupted safetensors and mismatched configs: one-line
 *                                              errors naming the file and the tensor / key
 *   test_model config                          config.json defaults and refusals of Gemma-2, Qwen3, v5
 *                                              rope_parameters, sliding-window layer rules
 *   test_model fallback <fixtures>             a backend lacking optional ops: cpu fallback / one-line refusal
 */
#define _GNU_SOURCE
#include "../test.h"
#include "model_fixture.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/safetensors.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

/* QUORUM_MODEL_BACKEND=cuda runs the same checks on the CUDA backend (skip, 77, when not compiled in) */
const Backend *BE;

float *ref_get(const SafeTensors *st, const char *name, int64_t *numel) {
    const StTensor *t = safetensors_find(st, name);
    if (!t) return NULL;
    float *x = xmalloc(sizeof(float) * (t->numel + 1));
    REQUIRE(safetensors_read_f32(st, t, x) == 0);
    if (numel) *numel = t->numel;
    return x;
}

/* max_i |a-b| / max(1,|b|) */
double max_rel(const float *a, const float *b, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= e)) e = d; /* NaN-propagating */
    }
    return e;
}

/* ||a-b|| / ||b|| */
double norm_rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

void poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* ---------------------------------------------------------------- parity */

void batch_load(Batch *b, const SafeTensors *st, const Model *m) {
    int64_t n = 0;
    float *ids = ref_get(st, "ids", &n), *lens = ref_get(st, "lens", NULL), *mask = ref_get(st, "mask", NULL);
    b->B = (int)safetensors_find(st, "ids")->shape[0];
    b->T = (int)safetensors_find(st, "ids")->shape[1];
    b->ids = xmalloc(sizeof(int32_t) * n);
    b->mask = xmalloc(n);
    b->lens = xmalloc(sizeof(int) * b->B);
    for (int64_t i = 0; i < n; i++) {
        b->ids[i] = (int32_t)ids[i];
        b->mask[i] = (uint8_t)mask[i];
    }
    for (int i = 0; i < b->B; i++) b->lens[i] = (int)lens[i];
    free(ids);
    free(lens);
    free(mask);
    b->out = ref_get(st, "out", NULL);
    b->tok = ref_get(st, "tok_logp", NULL);
    b->dseq = ref_get(st, "dseq", NULL);
    b->ref = ref_get(st, "ref", NULL);
    b->is_rm = model_config(m)->head == HEAD_REWARD;
}

int fixture_open(const char *case_dir, const ModelLoadOpts *lo, Model **m, SafeTensors *st, Batch *b) {
    char *cfg = path_join(case_dir, "config.json"), *refp = path_join(case_dir, "ref.safetensors");
    int made = file_exists(cfg);
    free(cfg);
    if (!made) { /* the HH fixtures need ../shared */
        printf("%s: fixture not made (no ../shared data?): skipped\n", case_dir);
        free(refp);
        return 77;
    }
    REQUIRE((lo ? model_load_ex(m, case_dir, BE, lo) : model_load(m, case_dir, BE)) == 0);
    REQUIRE(safetensors_open(st, refp) == 0);
    free(refp);
    batch_load(b, st, *m);
    return 0;
}

void batch_free(Batch *b) {
    free(b->ids), free(b->lens), free(b->mask), free(b->out), free(b->tok), free(b->dseq), free(b->ref);
}

static int run_forward(Model *m, const Batch *b, const int32_t *ids, const int *lens, const uint8_t *mask, int B,
                       int T, float *out) {
    poison(out, B);
    return b->is_rm ? model_reward(m, ids, lens, B, T, out) : model_logprobs(m, ids, lens, mask, B, T, out);
}

/* dLoss/dout for -mean logsigmoid(beta ((c - ref_c) - (r - ref_r))), pairs (0,1), (2,3) ... */
static void dpo_grad(const float *out, const float *ref, int B, float beta, float *d) {
    for (int p = 0; p < B / 2; p++) {
        double z = beta * ((out[2 * p] - ref[2 * p]) - (out[2 * p + 1] - ref[2 * p + 1]));
        double g = -(1.0 - 1.0 / (1.0 + exp(-z))) * beta / (B / 2);
        d[2 * p] = (float)g;
        d[2 * p + 1] = (float)-g;
    }
}

/* Compares every parameter gradient with grad.<name> (file layout: Conv1D transposed). */
void check_grads(Model *m, const SafeTensors *st, const char *label) {
    int nt;
    const ModelTensor *ts = model_tensors(m, &nt);
    size_t np = model_n_params(m);
    float *g = xmalloc(sizeof(float) * np);
    model_backend(m)->to_host(g, model_grads(m), sizeof(float) * np);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < nt; i++) {
        char name[300];
        snprintf(name, sizeof name, "grad.%s", ts[i].name);
        int64_t n;
        float *want = ref_get(st, name, &n);
        CHECKF(want != NULL, "%s missing in ref", name);
        if (!want) continue;
        int64_t r = ts[i].shape[0], c = ts[i].ndim == 2 ? ts[i].shape[1] : 1;
        REQUIRE(n == r * c);
        float *got = g + ts[i].offset, *tr = NULL;
        if (ts[i].transposed) { /* ours (r,c) -> file (c,r) */
            tr = xmalloc(sizeof(float) * n);
            for (int64_t y = 0; y < r; y++)
                for (int64_t x = 0; x < c; x++) tr[x * r + y] = got[y * c + x];
            got = tr;
        }
        double e = norm_rel(got, want, (size_t)n);
        CHECKF(e < 1e-3, "%s: %s grad rel err %.3g", label, ts[i].name, e);
        if (!(e <= worst)) { worst = e; worst_name = ts[i].name; }
        free(want);
        free(tr);
    }
    printf("  %s: %d grads, worst norm-rel err %.3g (%s)\n", label, nt, worst, worst_name);
    free(g);
}

static void parity_once(Model *m, const Batch *b, const SafeTensors *st, const char *label) {
    float *out = xmalloc(sizeof(float) * b->B), dseq[64];
    REQUIRE(run_forward(m, b, b->ids, b->lens, b->mask, b->B, b->T, out) == 0);
    double e = max_rel(out, b->out, b->B);
    CHECKF(e < 1e-4, "%s: out rel err %.3g", label, e);
    double et = 0;
    if (!b->is_rm) {
        et = max_rel(model_token_logprobs(m), b->tok, (size_t)b->B * b->T);
        CHECKF(et < 1e-4, "%s: token logp rel err %.3g", label, et);
    }
    printf("  %s: out[0]=%.6f ref %.6f, out max rel err %.3g, token logp max rel err %.3g\n", label, out[0],
           b->out[0], e, et);
    dpo_grad(out, b->ref, b->B, b->is_rm ? 1.0f : 0.5f, dseq); /* our loss gradient agrees with torch's */
    CHECKF(max_rel(dseq, b->dseq, b->B) < 1e-4, "%s: dseq", label);
    model_zero_grad(m);
    if (model_config(m)->reward_head == RHEAD_ARMO) { /* forward-only head: backward is one error line */
        capture_begin();
        int rc = model_backward(m, b->dseq);
        char *msg = capture_end();
        CHECK(rc == -1 && strstr(msg, "forward-only"));
        free(msg);
    } else {
        REQUIRE(model_backward(m, b->dseq) == 0);
        check_grads(m, st, label);
    }
    free(out);
}

/* ArmoRM: a row whose gating pattern was cut away is gated at its last token, warned once per model; the
 * other rows keep their rewards. */
static void check_gate_missing(Model *m, const Batch *b) {
    if (model_config(m)->reward_head != RHEAD_ARMO) return;
    int32_t *ids = xmalloc(sizeof(int32_t) * b->B * b->T);
    memcpy(ids, b->ids, sizeof(int32_t) * b->B * b->T);
    for (int t = 0; t < b->T; t++) ids[2 * b->T + t] = t % 7; /* row 2 without the pattern */
    float out[64], out2[64];
    for (int pass = 0; pass < 2; pass++) {
        capture_begin();
        int rc = model_reward(m, ids, b->lens, b->B, b->T, pass ? out2 : out);
        char *msg = capture_end();
        CHECK(rc == 0 && (pass ? !*msg : strstr(msg, "gating token pattern") != NULL));
        free(msg);
    }
    CHECK(isfinite(out[2]) && out[2] == out2[2] && fabs(out[0] - b->out[0]) <= 1e-4 * fmax(1.0, fabs(b->out[0])));
    free(ids);
}

/* Each sequence alone (B=1, T=lens[b]) must give what it gave inside the padded batch. */
static void check_batch_invariance(Model *m, const Batch *b) {
    float *full = xmalloc(sizeof(float) * b->B), one;
    REQUIRE(run_forward(m, b, b->ids, b->lens, b->mask, b->B, b->T, full) == 0);
    double worst = 0;
    for (int i = 0; i < b->B; i++) {
        REQUIRE(run_forward(m, b, b->ids + (size_t)i * b->T, &b->lens[i], b->mask + (size_t)i * b->T, 1,
                            b->lens[i], &one) == 0);
        double e = fabs(one - full[i]) / fmax(1.0, fabs(full[i]));
        worst = e > worst ? e : worst;
    }
    CHECKF(worst < 1e-5, "batch invariance: %.3g", worst);
    free(full);
}

static void check_inference_mode(Model *m, const Batch *b) {
    float *a = xmalloc(sizeof(float) * b->B), *c = xmalloc(sizeof(float) * b->B);
    REQUIRE(run_forward(m, b, b->ids, b->lens, b->mask, b->B, b->T, a) == 0);
    model_set_grad_enabled(m, 0); /* flash attention (blocked online softmax) instead of the T^2 probabilities */
    REQUIRE(run_forward(m, b, b->ids, b->lens, b->mask, b->B, b->T, c) == 0);
    double e = max_rel(c, a, b->B);
    CHECKF(e < 1e-5, "inference mode vs training mode: %.3g", e);
    capture_begin();
    int rc = model_backward(m, b->dseq);
    free(capture_end());
    CHECK(rc == -1);
    model_set_grad_enabled(m, 1);
    free(a);
    free(c);
}

static float *host_copy(const Model *m, const float *backend_ptr, size_t n) {
    float *h = xmalloc(sizeof(float) * n);
    model_backend(m)->to_host(h, backend_ptr, sizeof(float) * n);
    return h;
}

/* grads after `passes` forward+backward passes from zero, on the host */
static float *grads_after(Model *m, const Batch *b, int passes) {
    float *out = xmalloc(sizeof(float) * b->B);
    model_zero_grad(m);
    for (int k = 0; k < passes; k++) {
        REQUIRE(run_forward(m, b, b->ids, b->lens, b->mask, b->B, b->T, out) == 0);
        REQUIRE(model_backward(m, b->dseq) == 0);
    }
    free(out);
    return host_copy(m, model_grads(m), model_n_params(m));
}

/* Backward is deterministic (bit-identical twice), accumulates (two passes = twice one), and refuses a
 * second backward of the same forward. */
static void check_accumulation(Model *m, const Batch *b) {
    size_t np = model_n_params(m);
    float *g1 = grads_after(m, b, 1), *g1b = grads_after(m, b, 1), *g2 = grads_after(m, b, 2);
    CHECK(memcmp(g1, g1b, sizeof(float) * np) == 0);
    capture_begin();
    int rc = model_backward(m, b->dseq);
    free(capture_end());
    CHECK(rc == -1);
    for (size_t i = 0; i < np; i++) g1[i] *= 2;
    double e = norm_rel(g2, g1, np); /* not bit-exact: tied weights sum their parts in another order */
    CHECKF(e < 1e-6, "accumulation err %.3g", e);
    free(g1);
    free(g1b);
    free(g2);
}

/* A bad batch is a one-line error, and leaves nothing to differentiate. */
static void check_bad_batch(Model *m, const Batch *b) {
    float out[64];
    int lens[64];
    int32_t *ids = xmalloc(sizeof(int32_t) * b->B * b->T);
    memcpy(lens, b->lens, sizeof(int) * b->B);
    memcpy(ids, b->ids, sizeof(int32_t) * b->B * b->T);
    lens[1] = b->T + 1;
    capture_begin();
    int rc = run_forward(m, b, ids, lens, b->mask, b->B, b->T, out);
    char *msg = capture_end();
    CHECK(rc == -1 && strstr(msg, "lens[1]") != NULL);
    free(msg);
    lens[1] = b->lens[1];
    ids[5] = model_config(m)->vocab_size;
    capture_begin();
    rc = run_forward(m, b, ids, lens, b->mask, b->B, b->T, out);
    int rc2 = model_backward(m, b->dseq);
    msg = capture_end();
    CHECK(rc == -1 && rc2 == -1 && strstr(msg, "ids[0,5]") != NULL);
    free(msg);
    free(ids);
}

/* No completion token at all (M = 0): log-probs are 0 and backward adds nothing. */
static void check_empty_mask(Model *m, const Batch *b) {
    if (b->is_rm) return;
    uint8_t *none = xcalloc((size_t)b->B * b->T, 1);
    float *out = xmalloc(sizeof(float) * b->B);
    REQUIRE(run_forward(m, b, b->ids, b->lens, none, b->B, b->T, out) == 0);
    int zero = 1;
    for (int i = 0; i < b->B; i++) zero &= out[i] == 0.0f;
    CHECK(zero);
    model_zero_grad(m);
    REQUIRE(model_backward(m, b->dseq) == 0);
    float *g = host_copy(m, model_grads(m), model_n_params(m));
    for (size_t i = 0; i < model_n_params(m); i++) zero &= g[i] == 0.0f;
    CHECK(zero);
    free(none);
    free(out);
    free(g);
}

static void check_save_reload(Model *m, const char *saved_dir) {
    REQUIRE(model_save(m, saved_dir) == 0);
    char slash[4096];
    snprintf(slash, sizeof slash, "%s/", saved_dir);
    REQUIRE(model_save(m, slash) == 0); /* over an existing folder, named with a trailing slash */
    Model *m2 = NULL;
    REQUIRE(model_load(&m2, saved_dir, BE) == 0);
    size_t np = model_n_params(m);
    REQUIRE(model_n_params(m2) == np);
    float *p1 = host_copy(m, model_params(m), np), *p2 = host_copy(m2, model_params(m2), np);
    CHECK(memcmp(p1, p2, sizeof(float) * np) == 0);
    free(p2);
    model_free(m2);
    /* sharded save reloads bit-exactly too */
    char sharded[4096];
    snprintf(sharded, sizeof sharded, "%s_sharded", saved_dir);
    REQUIRE(model_save_sharded(m, sharded, sizeof(float) * np / 3) == 0);
    char *idx = path_join(sharded, "model.safetensors.index.json");
    CHECK(file_exists(idx));
    free(idx);
    REQUIRE(model_load(&m2, sharded, BE) == 0);
    p2 = host_copy(m2, model_params(m2), np);
    CHECK(memcmp(p1, p2, sizeof(float) * np) == 0);
    free(p1);
    free(p2);
    model_free(m2);
}

/* An inference load (model_load_ex) keeps a bf16 checkpoint's matrices bf16 in memory and an fp32 one fp32, gives
 * the torch float64 outputs within the same tolerance (portable and cblas GEMMs), holds no gradients; enabling
 * grads converts to the fp32 training layout bit-exactly (same params as model_load) and backward matches torch. */
static void check_inference_load(const char *case_dir, const Batch *b, const SafeTensors *st, const float *p_train,
                                 size_t np_train) {
    Model *m = NULL;
    ModelLoadOpts o = {.inference = 1};
    REQUIRE(model_load_ex(&m, case_dir, BE, &o) == 0);
    SafeTensors ck; /* every matrix of a BF16 file is kept bf16 (the reward head excepted), nothing else is */
    REQUIRE(safetensors_open(&ck, case_dir) == 0);
    int nt, n_bf16 = 0, wrong = 0;
    const ModelTensor *ts = model_tensors(m, &nt);
    for (int i = 0; i < nt; i++) {
        const StTensor *s = safetensors_find(&ck, ts[i].name);
        if (!s && !strncmp(ts[i].name, "transformer.", 12)) s = safetensors_find(&ck, ts[i].name + 12);
        REQUIRE(s != NULL);
        int head = !strncmp(ts[i].name, "score", 5) || strstr(ts[i].name, "regression") || strstr(ts[i].name, "gating");
        int want_bf16 = s->dtype == ST_BF16 && ts[i].ndim == 2 && !head && BE->matmul_forward_bf16;
        n_bf16 += ts[i].dtype == DT_BF16;
        wrong += (ts[i].dtype == DT_BF16) != want_bf16;
    }
    safetensors_close(&ck);
    CHECKF(wrong == 0, "%s: %d tensors not in their stored dtype", case_dir, wrong);
    for (int blas = 1; blas >= 0; blas--) {
        int prev = backend_cpu_use_blas(blas);
        float *out = xmalloc(sizeof(float) * b->B);
        REQUIRE(run_forward(m, b, b->ids, b->lens, b->mask, b->B, b->T, out) == 0);
        double e = max_rel(out, b->out, b->B);
        CHECKF(e < 1e-4, "inference load (%s): out rel err %.3g", blas ? "blas" : "loop", e);
        printf("  inference load, %d bf16 tensors, %s: out max rel err %.3g\n", n_bf16, blas ? "blas" : "loop", e);
        free(out);
        backend_cpu_use_blas(prev);
    }
    capture_begin();
    int rc = model_backward(m, b->dseq);
    free(capture_end());
    CHECK(rc == -1);
    if (model_config(m)->reward_head != RHEAD_ARMO) {
        model_set_grad_enabled(m, 1); /* -> fp32 training layout */
        ts = model_tensors(m, &nt);
        int still = 0;
        for (int i = 0; i < nt; i++) still += ts[i].dtype != DT_F32;
        CHECK(still == 0 && model_n_params(m) == np_train);
        float *p = xmalloc(sizeof(float) * np_train);
        model_backend(m)->to_host(p, model_params(m), sizeof(float) * np_train);
        CHECK(memcmp(p, p_train, sizeof(float) * np_train) == 0);
        free(p);
        parity_once(m, b, st, "inference load, grads enabled");
    }
    model_free(m);
}

static int cmd_parity(const char *case_dir, const char *saved_dir) {
    Model *m = NULL;
    SafeTensors st;
    Batch b;
    if (fixture_open(case_dir, NULL, &m, &st, &b)) return 77;
    printf("%s: %s, %zu params, B=%d T=%d lens=[%d,%d,%d,%d]\n", case_dir, model_config(m)->architecture,
           model_n_params(m), b.B, b.T, b.lens[0], b.lens[1], b.lens[2], b.lens[3]);
    int prev = backend_cpu_use_blas(1);
    parity_once(m, &b, &st, "blas");
    backend_cpu_use_blas(0);
    parity_once(m, &b, &st, "loop");
    backend_cpu_use_blas(prev);
    check_batch_invariance(m, &b);
    check_inference_mode(m, &b);
    float *p_train = host_copy(m, model_params(m), model_n_params(m));
    check_inference_load(case_dir, &b, &st, p_train, model_n_params(m));
    free(p_train);
    check_gate_missing(m, &b);
    if (model_config(m)->reward_head != RHEAD_ARMO) check_accumulation(m, &b);
    check_empty_mask(m, &b);
    check_bad_batch(m, &b);
    check_save_reload(m, saved_dir);
    batch_free(&b);
    safetensors_close(&st);
    model_free(m);
    TEST_MAIN_END();
}

/* ---------------------------------------------------------------- errors */

static char *slurp(const char *path, size_t *len) {
    const char *err;
    char *s = file_read_all(path, len, &err);
    REQUIRE(s != NULL);
    return s;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(data, 1, len, f) == len && fclose(f) == 0);
}

/* Rewrites the header of safetensors bytes `src` through `edit` (a cJSON mutation), same data section. */
static void write_header_variant(const char *dst, const char *src, size_t len, void (*edit)(cJSON *h)) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)src[i];
    cJSON *h = cJSON_ParseWithLength(src + 8, hlen);
    REQUIRE(h);
    edit(h);
    char *js = cJSON_PrintUnformatted(h);
    size_t jl = strlen(js);
    char *out = xmalloc(8 + jl + len);
    for (int i = 0; i < 8; i++) out[i] = (char)((uint64_t)jl >> (8 * i));
    memcpy(out + 8, js, jl);
    memcpy(out + 8 + jl, src + 8 + hlen, len - 8 - hlen);
    spit(dst, out, 8 + jl + len - 8 - hlen);
    free(out);
    free(js);
    cJSON_Delete(h);
}

static const char *VICTIM = "transformer.h.1.attn.c_proj.weight"; /* the tensor the header edits hit */
static void edit_overlap(cJSON *h) {
    cJSON *of = cJSON_GetObjectItem(cJSON_GetObjectItem(h, VICTIM), "data_offsets");
    double b = cJSON_GetArrayItem(of, 0)->valuedouble, e = cJSON_GetArrayItem(of, 1)->valuedouble;
    cJSON_SetNumberValue(cJSON_GetArrayItem(of, 0), b - 8);
    cJSON_SetNumberValue(cJSON_GetArrayItem(of, 1), e - 8);
}
static void edit_dtype(cJSON *h) { cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(h, VICTIM), "dtype"), "F16"); }
static void edit_unknown_dtype(cJSON *h) { cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(h, VICTIM), "dtype"), "F8_E9"); }
static void edit_shape(cJSON *h) { /* consistent file, but not what config.json implies */
    cJSON *e = cJSON_GetObjectItem(h, VICTIM);
    cJSON *sh = cJSON_GetObjectItem(e, "shape");
    int a = cJSON_GetArrayItem(sh, 0)->valueint, b = cJSON_GetArrayItem(sh, 1)->valueint;
    cJSON_SetIntValue(cJSON_GetArrayItem(sh, 0), a * 2);
    cJSON_SetIntValue(cJSON_GetArrayItem(sh, 1), b / 2);
}
static void edit_remove(cJSON *h) { cJSON_DeleteItemFromObject(h, VICTIM); }

/* Loads folder dir expecting failure; the single error line must contain every needle. */
static void expect_error(const char *dir, const char *what, const char *needle1, const char *needle2) {
    printf("%s:\n", what);
    Model *m = (Model *)0x1;
    capture_begin();
    int rc = model_load(&m, dir, BE);
    char *msg = capture_end();
    CHECKF(rc == -1 && m == NULL, "%s: load should fail", what);
    CHECKF(strstr(msg, needle1) != NULL, "%s: message lacks \"%s\"", what, needle1);
    if (needle2) CHECKF(strstr(msg, needle2) != NULL, "%s: message lacks \"%s\"", what, needle2);
    int lines = 0;
    for (char *p = msg; *p; p++) lines += *p == '\n';
    CHECKF(lines == 1 && !strncmp(msg, "quorum: error: ", 15), "%s: want one quorum error line", what);
    free(msg);
}

/* A sharded checkpoint (the llama_lm fixture): a missing shard, and a tensor the index lists but its
 * shard lacks, both name the shard file. */
static void check_sharded_errors(const char *case_dir, const char *scratch) {
    static const char *files[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors"};
    char *path[4];
    mkdir_p(scratch);
    for (int i = 0; i < 4; i++) {
        char *src = path_join(case_dir, files[i]);
        size_t len;
        char *data = slurp(src, &len);
        path[i] = path_join(scratch, files[i]);
        spit(path[i], data, len);
        free(data);
        free(src);
    }
    Model *m = NULL;
    REQUIRE(model_load(&m, scratch, BE) == 0);
    model_free(m);
    size_t len;
    char *shard2 = slurp(path[3], &len);
    unlink(path[3]);
    expect_error(scratch, "missing shard", path[3], "cannot open");
    spit(path[3], shard2, len);
    free(shard2);
    char *shard1 = slurp(path[2], &len);
    VICTIM = "model.embed_tokens.weight";
    write_header_variant(path[2], shard1, len, edit_remove);
    expect_error(scratch, "tensor missing from its shard", path[2], VICTIM);
    VICTIM = "transformer.h.1.attn.c_proj.weight";
    free(shard1);
    for (int i = 0; i < 4; i++) free(path[i]);
}

static int cmd_errors(const char *fx_dir, const char *scratch_root) {
    /* the gpt2_rm fixture: single file, names with the transformer. prefix */
    char *case_dir = path_join(fx_dir, "gpt2_rm"), *scratch = path_join(scratch_root, "single");
    char *sharded = path_join(fx_dir, "llama_lm"), *scratch2 = path_join(scratch_root, "sharded");
    check_sharded_errors(sharded, scratch2);
    free(sharded);
    free(scratch2);
    mkdir_p(scratch);
    char *st_path = path_join(case_dir, "model.safetensors"), *cfg_path = path_join(case_dir, "config.json");
    char *dst = path_join(scratch, "model.safetensors"), *dst_cfg = path_join(scratch, "config.json");
    size_t len, clen;
    char *good = slurp(st_path, &len), *cfg = slurp(cfg_path, &clen);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)good[i];
    spit(dst_cfg, cfg, clen);

    spit(dst, good, len);
    Model *m = NULL;
    REQUIRE(model_load(&m, scratch, BE) == 0); /* the untouched copy loads */
    model_free(m);

    spit(dst, good, 8 + hlen / 2);
    expect_error(scratch, "cut header", dst, "header");
    spit(dst, good, 5);
    expect_error(scratch, "cut length", dst, "truncated");
    spit(dst, good, len - 10);
    expect_error(scratch, "cut data", dst, "truncated");
    char *bad = xmalloc(len);
    memcpy(bad, good, len);
    bad[8] = 'x'; /* '{' of the header */
    spit(dst, bad, len);
    expect_error(scratch, "bad JSON", dst, "JSON");
    memcpy(bad, good, len);
    bad[7] = 0x7f; /* absurd header length */
    spit(dst, bad, len);
    expect_error(scratch, "header length", dst, "header_length");
    write_header_variant(dst, good, len, edit_overlap);
    expect_error(scratch, "overlapping offsets", dst, "overlaps");
    write_header_variant(dst, good, len, edit_dtype);
    expect_error(scratch, "wrong dtype size", dst, VICTIM);
    write_header_variant(dst, good, len, edit_unknown_dtype);
    expect_error(scratch, "unknown dtype", dst, "F8_E9");
    write_header_variant(dst, good, len, edit_shape);
    expect_error(scratch, "shape vs config", dst, VICTIM);
    write_header_variant(dst, good, len, edit_remove);
    expect_error(scratch, "missing tensor", dst, VICTIM);

    /* config mismatches */
    spit(dst, good, len);
    const struct { const char *from, *to, *what, *needle; } cfg_edits[] = {
        {"\"n_embd\": 32", "\"n_embd\": 40", "n_embd vs tensors", "transformer.wte.weight"},
        {"\"n_layer\": 2", "\"n_layer\": 3", "n_layer vs tensors", "transformer.h.2.ln_1.weight"},
        {"\"n_head\": 4", "\"n_head\": 5", "n_head does not divide", "n_head"},
        {"\"vocab_size\": 97", "\"vocab_size\": \"97\"", "vocab_size type", "vocab_size"},
        {"GPT2ForSequenceClassification", "GPTJForCausalLM", "unknown architecture", "architectures"},
        {"\"id2label\": {", "\"id2label\": {\"1\": \"LABEL_1\", ", "two labels", "num_labels"},
        {"\"n_embd\": 32,", "", "missing key", "n_embd"},
        {"\"n_embd\": 32,", "\"n_embd\": 32, \"scale_attn_by_inverse_layer_idx\": true,", "attention scaling", "scale_attn"},
    };
    for (size_t i = 0; i < sizeof cfg_edits / sizeof cfg_edits[0]; i++) {
        char *p = strstr(cfg, cfg_edits[i].from);
        REQUIRE(p);
        Buf b = {0};
        buf_append(&b, cfg, (size_t)(p - cfg));
        buf_append_str(&b, cfg_edits[i].to);
        buf_append_str(&b, p + strlen(cfg_edits[i].from));
        spit(dst_cfg, b.data, b.len);
        buf_free(&b);
        expect_error(scratch, cfg_edits[i].what, cfg_edits[i].needle, strstr(cfg_edits[i].needle, "transformer") ? dst : dst_cfg);
    }
    spit(dst_cfg, "{\"architectures\": [", 19);
    expect_error(scratch, "bad config JSON", dst_cfg, NULL);
    free(bad);
    free(good);
    free(cfg);
    free(st_path);
    free(cfg_path);
    free(dst);
    free(dst_cfg);
    free(case_dir);
    free(scratch);
    TEST_MAIN_END();
}

/* ---------------------------------------------------------------- config parsing and backend fallback */

/* Parses `json`; on rc -1 the single error line must contain needle. */
static int parse_cfg(ModelConfig *c, const char *json, const char *needle) {
    capture_begin();
    int rc = model_config_parse(c, json, "cfg.json");
    char *msg = capture_end();
    if (needle)
        CHECKF(rc == -1 && strstr(msg, needle) && !strncmp(msg, "quorum: error: ", 15), "want an error naming %s", needle);
    else CHECKF(rc == 0, "parse failed: %s", msg);
    free(msg);
    return rc;
}

#define LLAMA_CORE "\"vocab_size\": 50, \"hidden_size\": 32, \"intermediate_size\": 40, \"num_attention_heads\": 4"
/* the opening of a config.json: architecture, the sizes above, layers; the caller adds keys and the closing } */
#define CFG(arch, layers) "{\"architectures\": [\"" arch "\"], " LLAMA_CORE ", \"num_hidden_layers\": " #layers ", "

static int cmd_config(void) {
    ModelConfig c;
    /* Gemma-2 with only the required keys: HF's Gemma2Config defaults */
    parse_cfg(&c, CFG("Gemma2ForCausalLM", 4) "\"rms_norm_eps\": 1e-6}", NULL);
    CHECK(c.arch == ARCH_GEMMA2 && c.head_dim == 256 && c.sliding_window == 4096 && c.tied && c.act == ACT_GEGLU);
    CHECK(c.attn_softcap == 50.0f && c.final_softcap == 30.0f && c.attn_scale == 1.0f / 16 && c.norm_plus_one &&
          c.post_norms && fabsf(c.embed_scale - sqrtf(32.0f)) == 0.0f);
    CHECK(c.layer_window[0] && !c.layer_window[1] && c.layer_window[2] && !c.layer_window[3]);
    parse_cfg(&c, CFG("Gemma2ForSequenceClassification", 2)
              "\"num_labels\": 1, \"hidden_act\": \"gelu_pytorch_tanh\", \"attn_logit_softcapping\": null, "
              "\"final_logit_softcapping\": null, \"layer_types\": [\"full_attention\", \"sliding_attention\"]}", NULL);
    CHECK(c.attn_softcap == 0 && c.final_softcap == 0 && !c.layer_window[0] && c.layer_window[1]);
    parse_cfg(&c, CFG("Gemma2ForCausalLM", 2) "\"hidden_activation\": \"gelu\"}", "hidden_activation");
    parse_cfg(&c, CFG("Gemma2ForCausalLM", 2)
              "\"hidden_act\": \"gelu_pytorch_tanh\", \"layer_types\": [\"full_attention\"]}", "layer_types");
    /* Gemma-3 text: q/k norms, no softcaps, 5 of 6 layers sliding with the local RoPE base */
    parse_cfg(&c, CFG("Gemma3ForCausalLM", 7) "\"rms_norm_eps\": 1e-6}", NULL);
    CHECK(c.arch == ARCH_GEMMA3 && c.qk_norm && c.norm_plus_one && c.post_norms && c.attn_softcap == 0 &&
          c.final_softcap == 0 && c.rope_theta == 1e6f && c.rope_local_theta == 1e4f && c.sliding_window == 4096);
    CHECK(c.layer_window[0] && c.layer_window[4] && !c.layer_window[5] && c.layer_window[6]);
    parse_cfg(&c, CFG("Gemma3TextForSequenceClassification", 2) "\"num_labels\": 1, \"rope_scaling\": "
              "{\"rope_type\": \"linear\", \"factor\": 8.0}}", NULL);
    CHECK(c.head == HEAD_REWARD && c.rope_linear == 8.0f);
    parse_cfg(&c, CFG("Gemma3ForSequenceClassification", 2) "\"num_labels\": 1}", "architectures"); /* multimodal */
    /* Qwen3: explicit head_dim, no qkv bias, sliding window from max_window_layers on */
    parse_cfg(&c, CFG("Qwen3ForCausalLM", 4)
              "\"head_dim\": 24, \"use_sliding_window\": true, \"sliding_window\": 64, "
              "\"max_window_layers\": 2}", NULL);
    CHECK(c.arch == ARCH_QWEN3 && c.qk_norm && c.head_dim == 24 && !c.qkv_bias && c.attn_scale == 1.0f / sqrtf(24.0f));
    CHECK(!c.layer_window[0] && !c.layer_window[1] && c.layer_window[2] && c.layer_window[3] && c.sliding_window == 64);
    parse_cfg(&c, CFG("Qwen3ForCausalLM", 2) "\"sliding_window\": 64}", NULL);
    CHECK(c.sliding_window == 0 && !c.layer_window[0] && !c.layer_window[1]); /* use_sliding_window defaults off */
    /* v5 rope_parameters win over stray v4 keys; per-layer-type entries must agree */
    parse_cfg(&c, CFG("LlamaForCausalLM", 2)
              "\"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, "
              "\"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
              "\"original_max_position_embeddings\": 8192}}", NULL);
    CHECK(c.rope_theta == 500000.0f && c.rope_llama3 && c.rope_factor == 32.0f && c.rope_original_max_pos == 8192);
    parse_cfg(&c, CFG("LlamaForCausalLM", 2)
              "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}, "
              "\"sliding_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}}}", NULL);
    CHECK(c.rope_theta == 1e6f && !c.rope_llama3);
    parse_cfg(&c, CFG("LlamaForCausalLM", 2)
              "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1e6}, "
              "\"sliding_attention\": {\"rope_type\": \"default\", \"rope_theta\": 1e4}}}", "rope_parameters");
    parse_cfg(&c, CFG("LlamaForCausalLM", 2)
              "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 1e6}}", "rope_parameters.rope_type");
    parse_cfg(&c, CFG("LlamaForCausalLM", 2)
              "\"rope_parameters\": {\"rope_type\": \"default\", \"partial_rotary_factor\": 0.5}}",
              "partial_rotary_factor");
    /* Mistral: every layer windowed; Llama ignores a stray sliding_window */
    parse_cfg(&c, CFG("MistralForCausalLM", 2) "\"sliding_window\": 4096}", NULL);
    CHECK(c.layer_window[0] && c.layer_window[1]);
    parse_cfg(&c, CFG("LlamaForCausalLM", 2) "\"sliding_window\": 4096}", NULL);
    CHECK(c.sliding_window == 0 && !c.layer_window[0]);
    TEST_MAIN_END();
}

/* A backend without the optional ops (the CUDA backend today): a model that needs one loads onto cpu with
 * one log line; a sliding window past T is refused with one line on such a backend. */
static int cmd_fallback(const char *fx_dir) {
    static Backend bare;
    bare = backend_cpu;
    bare.name = "bare";
    bare.qknorm_forward = NULL, bare.attention_ex_forward = NULL, bare.relu_forward = NULL;
    const char *cases[] = {"qwen3_rm", "llama_mlp_rm", "gemma2_lm"};
    for (int i = 0; i < 3; i++) {
        char *d = path_join(fx_dir, cases[i]);
        Model *m = NULL;
        capture_begin();
        int rc = model_load(&m, d, &bare);
        char *msg = capture_end();
        CHECKF(rc == 0 && model_backend(m) == &backend_cpu && strstr(msg, "cpu backend"), "%s: fallback", cases[i]);
        free(msg);
        model_free(m);
        free(d);
    }
    char *d = path_join(fx_dir, "mistral_sw_lm"); /* window 4: plain attention suffices up to T = 4 */
    Model *m = NULL;
    REQUIRE(model_load(&m, d, &bare) == 0);
    CHECK(model_backend(m) == &bare);
    int32_t ids[5] = {1, 2, 3, 4, 5};
    int lens = 4;
    uint8_t mask[5] = {0, 1, 1, 1, 1};
    float out;
    CHECK(model_logprobs(m, ids, &lens, mask, 1, 4, &out) == 0 && isfinite(out));
    lens = 5;
    capture_begin();
    int rc = model_logprobs(m, ids, &lens, mask, 1, 5, &out);
    char *msg = capture_end();
    CHECK(rc == -1 && strstr(msg, "sliding_window=4"));
    free(msg);
    model_free(m);
    free(d);
    TEST_MAIN_END();
}

int main(int argc, char **argv) {
    const char *name = getenv("QUORUM_MODEL_BACKEND");
    BE = backend_get(name);
    if (!BE) {
        printf("backend %s not compiled in: skipped\n", name);
        return 77;
    }
    if (argc == 4 && !strcmp(argv[1], "parity")) return cmd_parity(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "errors")) return cmd_errors(argv[2], argv[3]);
    if (argc == 2 && !strcmp(argv[1], "bf16_ops")) return cmd_bf16_ops();
    if (argc == 2 && !strcmp(argv[1], "mixed_ops")) return cmd_mixed_ops();
    if (argc == 3 && !strcmp(argv[1], "flash_backward")) return cmd_flash_backward(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "packed_lm")) return cmd_packed_lm(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "recompute")) return cmd_recompute(argv[2]);
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "packed"))
        return cmd_packed(argv[2], argc == 4 && !strcmp(argv[3], "inference"));
    if (argc == 2 && !strcmp(argv[1], "config")) return cmd_config();
    if (argc == 3 && !strcmp(argv[1], "fallback")) return cmd_fallback(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "lora")) return cmd_lora(argv[2]);
    fprintf(stderr, "usage: test_model parity <case_dir> <saved_dir> | errors <fixtures_dir> <scratch_dir> | "
            "bf16_ops | packed <case_dir> [inference] | config | fallback <fixtures_dir> | lora <case_dir>\n");
    return 2;
}
