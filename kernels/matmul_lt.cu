/*
 * kernels/matmul_lt.cu - the bf16-weight linear layer (quorum/ops.h matmul_forward_bf16) through cuBLASLt:
 * bf16 x bf16 on the tensor cores with fp32 accumulate and an fp32 output, the bias added by the GEMM's
 * epilogue. The fp32 activations are rounded to bf16 first (one pass into a scratch buffer), as HF does
 * when it runs a bf16 model. Plans (descriptors + the heuristic's algorithm) are cached per shape, and one
 * 32 MiB workspace serves every call: no per-call allocation, no per-call heuristic search once warm.
 *
 * Row-major out (N,OC) = inp (N,C) @ W^T is column-major out^T (OC,N) = W (C,OC col-major, op T) x inp^T
 * (C,N col-major, op N): A = W with ld C, B = inp with ld C, D with ld OC; the epilogue bias has one entry
 * per row of D, i.e. per output channel.
 */
#include <cublasLt.h>

#include "cuda_common.cuh"
#include "ops_cuda.cuh"

#define LT_WORKSPACE ((size_t)32 << 20)
#define LT_PLANS 16

typedef struct {
    int N, C, OC, bias, align, used; /* align: the smallest pointer alignment of the call (bytes, <= 256) */
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

static LtPlan *plan_get(int N, int C, int OC, int bias, int align) {
    for (int i = 0; i < LT_PLANS; i++) {
        LtPlan *p = &g_plans[i];
        if (p->used && p->N == N && p->C == C && p->OC == OC && p->bias == bias && p->align == align) return p;
    }
    if (!g_lt) {
        cublasCheck(cublasLtCreate(&g_lt));
        cudaCheck(cudaMalloc(&g_ws, LT_WORKSPACE));
    }
    LtPlan *p = &g_plans[g_next];
    g_next = (g_next + 1) % LT_PLANS;
    plan_destroy(p);
    *p = (LtPlan){.N = N, .C = C, .OC = OC, .bias = bias, .align = align};
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) {
        cudaDataType_t bt = CUDA_R_32F;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    cublasCheck(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, C, OC, C));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, C, N, C));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, OC, N, OC));
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

void matmul_forward_bf16_cuda(float *out, const float *inp, const uint16_t *weight, const float *bias, int N, int C,
                              int OC) {
    if (N <= 0 || OC <= 0) return;
    long long n = (long long)N * C;
    __nv_bfloat16 *x = (__nv_bfloat16 *)cuda_scratch(SCRATCH_BF16, sizeof(__nv_bfloat16) * (size_t)n);
    f32_to_bf16_kernel<<<ceil_div(n, 256), 256, 0, cuda_stream()>>>(x, inp, n);
    cudaCheckLaunch();
    int align = min(ptr_align(weight), min(ptr_align(out), bias ? ptr_align(bias) : 256)); /* x: cudaMalloc, 256 */
    LtPlan *p = plan_get(N, C, OC, bias != NULL, align);
    if (bias)
        cublasCheck(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float one = 1.0f, zero = 0.0f;
    cublasCheck(cublasLtMatmul(g_lt, p->op, &one, weight, p->a, x, p->b, &zero, out, p->d, out, p->d, &p->algo, g_ws,
                               LT_WORKSPACE, cuda_stream()));
}
