/*
 * kernels/backend_cuda.cu - the Backend table of include/quorum/ops.h on CUDA: device memory helpers and
 * the pointers to the ops in matmul/norm/pointwise/embed/attention/logprob/optim.cu. Copies to and from
 * the host are synchronous (they wait for queued work on the process stream), as ops.h requires.
 */
#include "cuda_common.cuh"
#include "ops_cuda.cuh"
#include "quorum/ops.h"
#include "quorum/cuda_backend.h"

static void *alloc_cuda(size_t bytes) {
    void *p = NULL;
    (void)cuda_stream(); /* selects the device (by node-local rank) before the first allocation */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess)
        quorum_die_at(__FILE__, __LINE__, "reduce the batch size (B*T) or the model size, or use a larger GPU",
                      "CUDA out of memory allocating %zu bytes: %s", bytes, cudaGetErrorString(e));
    return p;
}
static void free_cuda(void *p) { if (p) cudaCheck(cudaFree(p)); }
static void to_backend_cuda(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream()));
    cudaCheck(cudaStreamSynchronize(cuda_stream()));
}
static void to_host_cuda(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream()));
    cudaCheck(cudaStreamSynchronize(cuda_stream()));
}
static void zero_cuda(void *p, size_t bytes) { cudaCheck(cudaMemsetAsync(p, 0, bytes, cuda_stream())); }

static void adamw_update_cuda(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1,
                              float beta2, float eps, float weight_decay, int step) {
    cuda_adamw_step(params, grads, m, v, n, step, lr, beta1, beta2, eps, weight_decay, 1.0f);
}

/* designated initializers (C++20): a field added to or removed from quorum/ops.h cannot shift the others */
extern "C" const Backend backend_cuda = {
    .name = "cuda",
    .alloc = alloc_cuda, .free = free_cuda, .to_backend = to_backend_cuda, .to_host = to_host_cuda,
    .zero = zero_cuda,
    .matmul_forward = matmul_forward_cuda, .matmul_backward = matmul_backward_cuda,
    .matmul_forward_bf16 = matmul_forward_bf16_cuda,
    .layernorm_forward = layernorm_forward_cuda, .layernorm_backward = layernorm_backward_cuda,
    .rmsnorm_forward = rmsnorm_forward_cuda, .rmsnorm_backward = rmsnorm_backward_cuda,
    .residual_forward = residual_forward_cuda,
    .gelu_forward = gelu_forward_cuda, .gelu_backward = gelu_backward_cuda,
    .swiglu_forward = swiglu_forward_cuda, .swiglu_backward = swiglu_backward_cuda,
    .rope_forward = rope_forward_cuda, .rope_backward = rope_backward_cuda,
    .attention_forward = attention_forward_cuda, .attention_backward = attention_backward_cuda,
    .attention_varlen_forward = attention_varlen_forward_cuda,
    .embedding_forward = embedding_forward_cuda, .embedding_forward_bf16 = embedding_forward_bf16_cuda,
    .embedding_backward = embedding_backward_cuda,
    .gather_forward = gather_forward_cuda, .gather_backward = gather_backward_cuda,
    .logprob_forward = logprob_forward_cuda, .logprob_backward = logprob_backward_cuda,
    .adamw_update = adamw_update_cuda,
    .qknorm_forward = qknorm_forward_cuda, .qknorm_backward = qknorm_backward_cuda,
    .attention_ex_forward = attention_ex_forward_cuda, .attention_ex_backward = attention_ex_backward_cuda,
    .geglu_forward = geglu_forward_cuda, .geglu_backward = geglu_backward_cuda,
    .scale_forward = scale_forward_cuda,
    .softcap_forward = softcap_forward_cuda, .softcap_backward = softcap_backward_cuda,
    .relu_forward = relu_forward_cuda, .relu_backward = relu_backward_cuda,
};
