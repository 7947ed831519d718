/*
 * kernels/matmul_lt.cu - the bf16-weight linear layer (quorum/ops.h matmul_forward_bf16, and for mixed-precision
 * training matmul_backward_bf16 and the shadow cast cast_f32_to_bf16) through cuBLASLt:
 * bf16 x bf16 on the tensor cores with fp32 accumulate and an fp32 output, the bias added by the GEMM's
 * epilogue. The fp32 activations are rounded to bf16 first (one pass into a scratch buffer), as HF does
 * when it runs a bf16 model. Plans (descriptors + the heuristic's algorithm) are cached per shape, and one
 * 32 MiB workspace serves every call: no per-call allocation, no per-call heuristic search once warm.
 *
 * Row-major out (N,OC) = inp (N,C) @ W^T is column-major out^T (OC,N) = W (C,OC col-major, op T) x inp^T
 * (C,N col-major, op N): A = W with ld C, B = inp with ld C, D with ld OC; the epilogue bias has one entry
 * per row of D, i.e. per output channel. The backward's dinp (N,C) += dout (N,OC) @ W is column-major
 * dinp^T (C,N) += W (C,OC col-major, op N) x dout^T (OC,N col-major, op N), beta 1, D = C = dinp with ld C.
 */
#include <cublasLt.h>

#include "cuda_common.cuh"
#include "ops_cuda.cuh"

#define LT_WORKSPACE ((size_t)32 << 20)
#define LT_PLANS 16

enum { LT_FORWARD = 0, LT_BACKWARD_DATA = 1 }; /* which product a plan computes (see the top) */

typedef struct {
    int kind, N, C, OC, bias, align, used; /* align: the smallest pointer alignment of the call (bytes, <= 256) */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
} LtPlan;

static cublasLtHandle_t g_lt;
static void *g_ws;
static LtPlan g_plans[LT_PLANS];
static int g_next; /* round-robin eviction: shapes repeat across batches of a run */

static void plan_destroy(LtPlan *p) {
    if (!p->used) return;
    cublasCheck(cublasLtMatrixLayoutDestroy(p->a));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->b));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->d));
    cublasCheck(cublasLtMatmulDescDestroy(p->op));
    p->used = 0;
}

void cuda_lt_release(void) {
    for (int i = 0; i < LT_PLANS; i++) plan_destroy(&g_plans[i]);
    if (g_ws) cudaCheck(cudaFree(g_ws));
    if (g_lt) cublasCheck(cublasLtDestroy(g_lt));
    g_ws = NULL;
    g_lt = NULL;
}

/* largest power of two (<= 256) dividing the address; cuBLASLt's heuristic assumes 256 unless told */
static int ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && a % al) al /= 2;
    return al;
}

static LtPlan *plan_get(int kind, int N, int C, int OC, int bias, int align) {
    for (int i = 0; i < LT_PLANS; i++) {
        LtPlan *p = &g_plans[i];
        if (p->used && p->kind == kind && p->N == N && p->C == C && p->OC == OC && p->bias == bias && p->align == align) return p;
    }
    if (!g_lt) {
        cublasCheck(cublasLtCreate(&g_lt));
        cudaCheck(cudaMalloc(&g_ws, LT_WORKSPACE));
    }
    LtPlan *p = &g_plans[g_next];
    g_next = (g_next + 1) % LT_PLANS;
    plan_destroy(p);
    *p = (LtPlan){.kind = kind, .N = N, .C = C, .OC = OC, .bias = bias, .align = align};
    int fwd = kind == LT_FORWARD;
    cublasOperation_t ta = fwd ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) {
        cudaDataType_t bt = CUDA_R_32F;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    cublasCheck(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, C, OC, C)); /* W either way; op T or N */
    cublasCheck(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, fwd ? C : OC, N, fwd ? C : OC));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, fwd ? OC : C, N, fwd ? OC : C));
    cublasLtMatmulPreference_t pref;
    size_t ws = LT_WORKSPACE;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    uint32_t al = (uint32_t)align; /* weights and outputs sit at offsets inside bigger buffers */
    cublasLtMatmulPreferenceAttributes_t which[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, which[i], &al, sizeof al));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(g_lt, p->op, p->a, p->b, p->d, p->d, pref, 1, &res, &found));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (!found)
        quorum_die_at(__FILE__, __LINE__, "use fp32 weights (model_load) for this shape",
                      "cuBLASLt has no bf16 GEMM algorithm for N=%d C=%d OC=%d", N, C, OC);
    p->algo = res.algo;
    p->used = 1;
    return p;
}

/* dst (n) bf16 = src (n) fp32, round to nearest even */
__global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

void cast_f32_to_bf16_cuda(uint16_t *dst, const float *src, size_t n) {
    if (!n) return;
    f32_to_bf16_kernel<<<ceil_div((long long)n, 256), 256, 0, cuda_stream()>>>((__nv_bfloat16 *)dst, src, (long long)n);
    cudaCheckLaunch();
}

/* src (rows, C) fp32 rounded into the bf16 scratch (the GEMM's activation operand) */
static const __nv_bfloat16 *to_bf16_scratch(const float *src, long long n) {
    __nv_bfloat16 *x = (__nv_bfloat16 *)cuda_scratch(SCRATCH_BF16, sizeof(__nv_bfloat16) * (size_t)n);
    cast_f32_to_bf16_cuda((uint16_t *)x, src, (size_t)n);
    return x;
}

void matmul_backward_bf16_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const uint16_t *weight, int N, int C, int OC) {
    matmul_backward_cuda(NULL, dweight, dbias, dout, inp, NULL, N, C, OC); /* fp32, the weight is not read */
    if (!dinp || N <= 0 || OC <= 0) return;
    const __nv_bfloat16 *x = to_bf16_scratch(dout, (long long)N * OC);
    LtPlan *p = plan_get(LT_BACKWARD_DATA, N, C, OC, 0, min(ptr_align(weight), ptr_align(dinp)));
    const float one = 1.0f;
    cublasCheck(cublasLtMatmul(g_lt, p->op, &one, weight, p->a, x, p->b, &one, dinp, p->d, dinp, p->d, &p->algo, g_ws,
                               LT_WORKSPACE, cuda_stream()));
}

void matmul_forward_bf16_cuda(float *out, const float *inp, const uint16_t *weight, const float *bias, int N, int C,
                              int OC) {
    if (N <= 0 || OC <= 0) return;
    const __nv_bfloat16 *x = to_bf16_scratch(inp, (long long)N * C);
    int align = min(ptr_align(weight), min(ptr_align(out), bias ? ptr_align(bias) : 256)); /* x: cudaMalloc, 256 */
    LtPlan *p = plan_get(LT_FORWARD, N, C, OC, bias != NULL, align);
    if (bias)
        cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasLtMatmul(g_lt, p->op, &one, weight, p->a, x, p->b, &zero, out, p->d, out, p->d, &p->algo, g_ws,
                               LT_WORKSPACE, cuda_stream()));
}
