/* test_model_mixed.c - the ops of mixed-precision training (quorum/ops.h): matmul_backward_bf16 against float64
 * sums of the widened bf16 weight (a C wide enough for several weight panels, accumulation onto non-zero
 * gradients, both CPU GEMM paths), and cast_f32_to_bf16 against round-to-nearest-even worked out in double
 * (the nearer of the two bf16 neighbours, ties to the even one).
 *   test_model mixed_ops */
#define TEST_EXTERN_COUNTERS /* test_model.c (main) defines them */
#include "../test.h"
#include "model_fixture.h"
#include "quorum/common.h"

#include <float.h>
#include <math.h>
#include <string.h>

enum { N = 3, C = 70001, OC = 40 };

/* worst |got - ref| / (sum |terms| + |start|) over the rows of dinp, dweight, dbias */
static double check_backward(const float *gi, const float *gw, const float *gb, const float *dout, const float *x,
                             const uint16_t *w, const float *start) {
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) { /* dinp[n,c] = start + sum_o dout[n,o] W[o,c] */
            double ref = start[c % 97], mag = fabs(ref);
            for (int o = 0; o < OC; o++) {
                double t = (double)dout[n * OC + o] * bf16_widen(w[(size_t)o * C + c]);
                ref += t, mag += fabs(t);
            }
            double e = fabs(gi[(size_t)n * C + c] - ref) / mag;
            worst = !(e <= worst) ? e : worst;
        }
    for (int o = 0; o < OC; o++) {
        for (int c = 0; c < C; c += 7) { /* dweight[o,c] = start + sum_n dout[n,o] x[n,c] (every 7th column) */
            double ref = start[c % 97], mag = fabs(ref);
            for (int n = 0; n < N; n++) {
                double t = (double)dout[n * OC + o] * x[(size_t)n * C + c];
                ref += t, mag += fabs(t);
            }
            double e = fabs(gw[(size_t)o * C + c] - ref) / mag;
            worst = !(e <= worst) ? e : worst;
        }
        double ref = start[o % 97], mag = fabs(ref);
        for (int n = 0; n < N; n++) ref += dout[n * OC + o], mag += fabs(dout[n * OC + o]);
        double e = fabs(gb[o] - ref) / mag;
        worst = !(e <= worst) ? e : worst;
    }
    return worst;
}

static void fill_start(float *g, size_t n, const float *start) {
    for (size_t i = 0; i < n; i++) g[i] = start[(i % ((n == OC) ? (size_t)OC : (size_t)C)) % 97];
}

static void test_backward(void) {
    uint16_t *w = xmalloc(sizeof(uint16_t) * OC * C);
    float *x = xmalloc(sizeof(float) * N * C), dout[N * OC], start[97];
    float *gi = xmalloc(sizeof(float) * N * C), *gw = xmalloc(sizeof(float) * OC * C), gb[OC];
    Rng r;
    rng_seed(&r, 19, 1);
    for (size_t i = 0; i < (size_t)OC * C; i++) { /* bf16 in (-2, 2): the top half of a uniform fp32 */
        float f = 4 * rng_uniform(&r) - 2;
        uint32_t u;
        memcpy(&u, &f, 4);
        w[i] = (uint16_t)(u >> 16);
    }
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)(2 * rng_uniform(&r) - 1);
    for (int i = 0; i < N * OC; i++) dout[i] = (float)(2 * rng_uniform(&r) - 1);
    for (int i = 0; i < 97; i++) start[i] = (float)(rng_uniform(&r) - 0.5);
    uint16_t *dw = BE->alloc(sizeof(uint16_t) * OC * C);
    float *dx = BE->alloc(sizeof(float) * N * C), *ddo = BE->alloc(sizeof dout);
    float *dgi = BE->alloc(sizeof(float) * N * C), *dgw = BE->alloc(sizeof(float) * OC * C), *dgb = BE->alloc(sizeof gb);
    BE->to_backend(dw, w, sizeof(uint16_t) * OC * C);
    BE->to_backend(dx, x, sizeof(float) * N * C);
    BE->to_backend(ddo, dout, sizeof dout);
    /* cpu: fp32 dout times the exact widened weight; cuda rounds dout to bf16 (2^-9 relative per term) */
    double tol = !strcmp(BE->name, "cpu") ? 1e-5 : 8e-3;
    for (int blas = 1; blas >= 0; blas--) {
        int prev = backend_cpu_use_blas(blas);
        fill_start(gi, (size_t)N * C, start), fill_start(gw, (size_t)OC * C, start), fill_start(gb, OC, start);
        BE->to_backend(dgi, gi, sizeof(float) * N * C);
        BE->to_backend(dgw, gw, sizeof(float) * OC * C);
        BE->to_backend(dgb, gb, sizeof gb);
        BE->matmul_backward_bf16(dgi, dgw, dgb, ddo, dx, dw, N, C, OC);
        BE->to_host(gi, dgi, sizeof(float) * N * C);
        BE->to_host(gw, dgw, sizeof(float) * OC * C);
        BE->to_host(gb, dgb, sizeof gb);
        double worst = check_backward(gi, gw, gb, dout, x, w, start);
        printf("matmul_backward_bf16 (%s): worst err / sum|terms| %.3g (tolerance %.0e)\n", blas ? "blas" : "loop",
               worst, tol);
        CHECKF(worst < tol, "matmul_backward_bf16 %s: %.3g", blas ? "blas" : "loop", worst);
        backend_cpu_use_blas(prev);
    }
    BE->free(dw), BE->free(dx), BE->free(ddo), BE->free(dgi), BE->free(dgw), BE->free(dgb);
    free(w), free(x), free(gi), free(gw);
}

/* round to nearest even worked out in double: the two bf16 neighbours of x, the nearer wins, a tie goes to the
 * one with an even last mantissa bit */
static uint16_t rne_ref(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1); /* truncation and the next one away from zero */
    if ((u & 0xffff) == 0) return lo;
    double dl = fabs((double)x - bf16_widen(lo)), dh = fabs((double)x - bf16_widen(hi));
    if (dl != dh) return dl < dh ? lo : hi;
    return (lo & 1) ? hi : lo;
}

static void test_cast(void) {
    enum { M = 1 << 16 };
    float *x = xmalloc(sizeof(float) * M);
    uint16_t *got = xmalloc(sizeof(uint16_t) * M);
    Rng r;
    rng_seed(&r, 19, 2);
    for (int i = 0; i < M; i++) {
        uint32_t u = (uint32_t)rng_u64(&r);
        if (i % 4 == 1) u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        if (i % 4 == 2) u &= 0xffff0000u;                /* already bf16 */
        if ((u & 0x7f800000u) == 0x7f800000u) u &= 0xbfffffffu; /* keep Inf/NaN for the cases below */
        memcpy(&x[i], &u, 4);
    }
    x[0] = INFINITY, x[3] = -INFINITY, x[4] = FLT_MAX; /* the largest finite fp32 rounds to Inf */
    float *dx = BE->alloc(sizeof(float) * M);
    uint16_t *dg = BE->alloc(sizeof(uint16_t) * M);
    BE->to_backend(dx, x, sizeof(float) * M);
    BE->cast_f32_to_bf16(dg, dx, M);
    BE->to_host(got, dg, sizeof(uint16_t) * M);
    int bad = 0;
    for (int i = 0; i < M; i++) {
        uint16_t want = isinf(x[i]) ? (uint16_t)(x[i] > 0 ? 0x7f80 : 0xff80) : rne_ref(x[i]);
        if (i == 4) want = 0x7f80;
        if (got[i] != want && !bad) printf("cast_f32_to_bf16(%a) = 0x%04x, want 0x%04x\n", x[i], got[i], want);
        bad += got[i] != want;
    }
    CHECKF(bad == 0, "cast_f32_to_bf16: %d of %d differ from round-to-nearest-even", bad, M);
    float nan = NAN;
    BE->to_backend(dx, &nan, sizeof nan);
    BE->cast_f32_to_bf16(dg, dx, 1);
    BE->to_host(got, dg, sizeof(uint16_t));
    CHECKF(isnan(bf16_widen(got[0])), "cast_f32_to_bf16(NaN) = 0x%04x is not a NaN", got[0]);
    BE->free(dx), BE->free(dg);
    free(x), free(got);
}

int cmd_mixed_ops(void) {
    test_backward();
    test_cast();
    TEST_MAIN_END();
}
