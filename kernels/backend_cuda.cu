/*
 * kernels/backend_cuda.cu - the Backend table of include/quorum/ops.h on CUDA: device memory helpers and
 * the pointers to the ops in matmul/norm/pointwise/embed/attention/logprob/optim.cu. Copies to and from
 * the host are synchronous (they wait for queued work on the process stream), as ops.h requires.
 */
#include "cuda_common.cuh"
#include "ops_cuda.cuh"
#include "quorum/ops.h"
#include "quorum/cuda_backend.h"

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    (void)cuda_stream(); /* selects the device (by node-local rank) before the first allocation */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess)
        quorum_die_at(__FILE__, __LINE__, "reduce the batch size (B*T) or the model size, or use a larger GPU",
                      "CUDA out of memory allocating %zu bytes: %s", bytes, cudaGetErrorString(e));
    return p;
}
static void cuda_free(void *p) { if (p) cudaCheck(cudaFree(p)); }
static void cuda_to_backend(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream()));
    cudaCheck(cudaStreamSynchronize(cuda_stream()));
}
static void cuda_to_host(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream()));
    cudaCheck(cudaStreamSynchronize(cuda_stream()));
}
static void cuda_copy(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
}
static void cuda_zero(void *p, size_t bytes) { cudaCheck(cudaMemsetAsync(p, 0, bytes, cuda_stream())); }
static void cuda_synchronize(void) { cudaCheck(cudaStreamSynchronize(cuda_stream())); }

static void adamw_update_cuda(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, int step) {
    cuda_adamw_step(params, grads, m, v, n, step, lr, beta1, beta2, eps, weight_decay, 1.0f);
}

extern "C" const Backend backend_cuda = {
    "cuda",
    cuda_alloc, cuda_free, cuda_to_backend, cuda_to_host, cuda_copy, cuda_zero, cuda_synchronize,
    matmul_forward_cuda, matmul_backward_cuda,
    layernorm_forward_cuda, layernorm_backward_cuda,
    rmsnorm_forward_cuda, rmsnorm_backward_cuda,
    residual_forward_cuda, residual_backward_cuda,
    gelu_forward_cuda, gelu_backward_cuda,
    swiglu_forward_cuda, swiglu_backward_cuda,
    rope_forward_cuda, rope_backward_cuda,
    attention_forward_cuda, attention_backward_cuda,
    embedding_forward_cuda, embedding_backward_cuda,
    gather_forward_cuda, gather_backward_cuda,
    logprob_forward_cuda, logprob_backward_cuda,
    adamw_update_cuda,
    qknorm_forward_cuda, qknorm_backward_cuda,
    attention_ex_forward_cuda, attention_ex_backward_cuda,
    geglu_forward_cuda, geglu_backward_cuda,
    scale_forward_cuda,
    softcap_forward_cuda, softcap_backward_cuda,
    relu_forward_cuda, relu_backward_cuda,
};
