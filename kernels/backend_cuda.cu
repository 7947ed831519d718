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

/* designated initializers (C++20) from the one list of quorum/ops.h: a field added to or removed from the
 * table cannot shift the others, and a missing op_cuda is a compile error */
extern "C" const Backend backend_cuda = QUORUM_BACKEND_TABLE(cuda);
