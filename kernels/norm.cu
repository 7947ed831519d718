/*
 * kernels/norm.cu - LayerNorm (GPT-2) and RMSNorm (Llama) forward/backward. One warp per row for the
 * row statistics and dinp; the weight/bias gradients are deterministic column sums (colsum_accumulate).
 * Biased variance, two passes over the row (mean first, then variance) like the CPU reference.
 */
#include "cuda_common.cuh"
#include "ops_cuda.cuh"

#define ROWS_PER_BLOCK 8 /* warps per 256-thread block */

/* out: (N,C), mean, rstd: (N) <- inp: (N,C), weight, bias: (C). One warp per row. */
__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                         const float *weight, const float *bias, int N, int C, float eps) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = x[c] - m; v += d * d; }
    float r = rsqrtf(warp_sum(v) / C + eps);
    float *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    if (lane == 0) { mean[row] = m; rstd[row] = r; }
}

/* dinp: (N,C) += ... from dout, inp: (N,C), weight: (C), mean, rstd: (N). One warp per row.
 * dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * weight. */
__global__ void layernorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                               const float *mean, const float *rstd, int N, int C) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float m = mean[row], r = rstd[row], s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dn = dy[c] * weight[c];
        s1 += dn;
        s2 += dn * (x[c] - m) * r;
    }
    s1 = warp_sum(s1) / C;
    s2 = warp_sum(s2) / C;
    float *dx = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) dx[c] += r * (dy[c] * weight[c] - s1 - (x[c] - m) * r * s2);
}

/* dweight[c] += sum_n dout * norm, dbias[c] += sum_n dout */
struct LayernormParamTerm {
    const float *dout, *inp, *mean, *rstd;
    int C;
    __device__ void operator()(int n, int c, float &a, float &b) const {
        size_t i = (size_t)n * C + c;
        a = dout[i] * (inp[i] - mean[n]) * rstd[n];
        b = dout[i];
    }
};

void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int N, int C, float eps) {
    layernorm_forward_kernel<<<ceil_div(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
        out, mean, rstd, inp, weight, bias, N, C, eps);
    cudaCheckLaunch();
}

void layernorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int N, int C) {
    if (dinp) {
        layernorm_backward_dinp_kernel<<<ceil_div(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
            dinp, dout, inp, weight, mean, rstd, N, C);
        cudaCheckLaunch();
    }
    colsum_accumulate(dweight, dbias, N, C, LayernormParamTerm{dout, inp, mean, rstd, C});
}

/* out: (N,C), rstd: (N) <- inp: (N,C), weight: (C). rstd = 1/sqrt(mean(x^2) + eps). One warp per row. */
__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *weight,
                                       int N, int C, float eps) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c] * x[c];
    float r = rsqrtf(warp_sum(s) / C + eps);
    float *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) o[c] = x[c] * r * weight[c];
    if (lane == 0) rstd[row] = r;
}

/* dinp: (N,C) += rstd * (dnorm - x * rstd^2 * mean(dnorm * x)), dnorm = dout * weight. One warp per row. */
__global__ void rmsnorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                             const float *rstd, int N, int C) {
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float r = rstd[row], s = 0.0f;
    for (int c = lane; c < C; c += 32) s += dy[c] * weight[c] * x[c];
    s = warp_sum(s) / C;
    float *dx = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) dx[c] += r * (dy[c] * weight[c] - x[c] * r * r * s);
}

/* dweight[c] += sum_n dout * x * rstd */
struct RmsnormParamTerm {
    const float *dout, *inp, *rstd;
    int C;
    __device__ void operator()(int n, int c, float &a, float &) const {
        size_t i = (size_t)n * C + c;
        a = dout[i] * inp[i] * rstd[n];
    }
};

void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps) {
    rmsnorm_forward_kernel<<<ceil_div(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
        out, rstd, inp, weight, N, C, eps);
    cudaCheckLaunch();
}

void rmsnorm_backward_cuda(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           const float *rstd, int N, int C) {
    if (dinp) {
        rmsnorm_backward_dinp_kernel<<<ceil_div(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
            dinp, dout, inp, weight, rstd, N, C);
        cudaCheckLaunch();
    }
    colsum_accumulate(dweight, (float *)NULL, N, C, RmsnormParamTerm{dout, inp, rstd, C});
}

/* ---- Qwen3 q/k norm: the H heads starting at head `off` of each qkv row (width floats) are rows of HD.
 * Row r -> token n = r / H, head off + r % H; rstd is (N, heads = NH + NKV). One warp per row. */
__global__ void qknorm_forward_kernel(float *out, float *rstd, const float *inp, const float *weight, int N, int H,
                                     int off, int heads, int width, int HD, float eps) {
    long long row = blockIdx.x * (long long)ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (long long)N * H) return;
    long long n = row / H, h = off + row % H;
    const float *x = inp + n * width + h * HD;
    float s = 0.0f;
    for (int c = lane; c < HD; c += 32) s += x[c] * x[c];
    float r = rsqrtf(warp_sum(s) / HD + eps);
    float *o = out + n * width + h * HD;
    for (int c = lane; c < HD; c += 32) o[c] = x[c] * r * weight[c];
    if (lane == 0) rstd[n * heads + h] = r;
}

__global__ void qknorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp, const float *weight,
                                            const float *rstd, int N, int H, int off, int heads, int width, int HD) {
    long long row = blockIdx.x * (long long)ROWS_PER_BLOCK + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (long long)N * H) return;
    long long n = row / H, h = off + row % H, base = n * width + h * HD;
    const float *x = inp + base, *dy = dout + base;
    float r = rstd[n * heads + h], s = 0.0f;
    for (int c = lane; c < HD; c += 32) s += dy[c] * weight[c] * x[c];
    s = warp_sum(s) / HD;
    for (int c = lane; c < HD; c += 32) dinp[base + c] += r * (dy[c] * weight[c] - x[c] * r * r * s);
}

/* dweight[c] += sum over the rows of one head group of dout * x * rstd */
struct QknormParamTerm {
    const float *dout, *inp, *rstd;
    int H, off, heads, width, HD;
    __device__ void operator()(int r, int c, float &a, float &) const {
        long long n = r / H, h = off + r % H, i = n * width + h * HD + c;
        a = dout[i] * inp[i] * rstd[n * heads + h];
    }
};

/* the v part: dinp += dout (backward of the copy) */
__global__ void qknorm_v_backward_kernel(float *dinp, const float *dout, int N, int v0, int vw, int width) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)N * vw) return;
    long long j = i / vw * width + v0 + i % vw;
    dinp[j] += dout[j];
}

void qknorm_forward_cuda(float *out, float *rstd, const float *inp, const float *qw, const float *kw, int N, int NH,
                         int NKV, int HD, float eps) {
    int width = (NH + 2 * NKV) * HD, heads = NH + NKV;
    qknorm_forward_kernel<<<ceil_div((long long)N * NH, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
        out, rstd, inp, qw, N, NH, 0, heads, width, HD, eps);
    cudaCheckLaunch();
    qknorm_forward_kernel<<<ceil_div((long long)N * NKV, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(
        out, rstd, inp, kw, N, NKV, NH, heads, width, HD, eps);
    cudaCheckLaunch();
    size_t pitch = sizeof(float) * width, v0 = (size_t)heads * HD;
    cudaCheck(cudaMemcpy2DAsync(out + v0, pitch, inp + v0, pitch, sizeof(float) * NKV * HD, N, cudaMemcpyDeviceToDevice,
                                cuda_stream()));
}

void qknorm_backward_cuda(float *dinp, float *dqw, float *dkw, const float *dout, const float *inp, const float *qw,
                          const float *kw, const float *rstd, int N, int NH, int NKV, int HD) {
    int width = (NH + 2 * NKV) * HD, heads = NH + NKV;
    if (dinp) {
        qknorm_backward_dinp_kernel<<<ceil_div((long long)N * NH, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0,
                                      cuda_stream()>>>(dinp, dout, inp, qw, rstd, N, NH, 0, heads, width, HD);
        cudaCheckLaunch();
        qknorm_backward_dinp_kernel<<<ceil_div((long long)N * NKV, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0,
                                      cuda_stream()>>>(dinp, dout, inp, kw, rstd, N, NKV, NH, heads, width, HD);
        cudaCheckLaunch();
        qknorm_v_backward_kernel<<<ceil_div((long long)N * NKV * HD, 256), 256, 0, cuda_stream()>>>(
            dinp, dout, N, heads * HD, NKV * HD, width);
        cudaCheckLaunch();
    }
    colsum_accumulate(dqw, (float *)NULL, N * NH, HD, QknormParamTerm{dout, inp, rstd, NH, 0, heads, width, HD});
    colsum_accumulate(dkw, (float *)NULL, N * NKV, HD, QknormParamTerm{dout, inp, rstd, NKV, NH, heads, width, HD});
}
