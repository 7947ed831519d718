/* train_ops.c - the trainer's operations on parameter-sized buffers, one table per backend
 * (quorum/train.h, TrainOps): the CPU twin (host memory, bucketed MPI_Iallreduce, optim.c's AdamW) and
 * the CUDA one (device memory through backend_cuda, cuda_allreduce_sum, cuda_grad_norm, kernels/optim.cu's
 * AdamW), so there is one AdamW per backend. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/ops.h"
#include "quorum/train.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#ifdef QUORUM_HAVE_CUDA
#include "quorum/cuda_backend.h"
#endif

/* ---- CPU ---- */

static float *alloc_zeroed_cpu(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }
static void free_cpu(float *x) { free(x); }
static void to_host_cpu(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void to_device_cpu(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }

/* Sums grads over ranks in buckets: all buckets are posted at once (MPI_Iallreduce) and the squared norm
 * of each is accumulated as soon as it lands, overlapping with the buckets still in flight. Returns the
 * global L2 norm. */
static double grads_allreduce_cpu(float *g, size_t n, size_t bucket) {
    if (quorum_world() == 1) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
        return sqrt(s);
    }
    size_t nb = (n + bucket - 1) / bucket;
    MPI_Request *req = xmalloc((nb ? nb : 1) * sizeof(MPI_Request));
    for (size_t k = 0; k < nb; k++) {
        size_t lo = k * bucket, cnt = (lo + bucket < n ? bucket : n - lo);
        mpiCheck(MPI_Iallreduce(MPI_IN_PLACE, g + lo, (int)cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[k]));
    }
    double s = 0;
    for (size_t k = 0; k < nb; k++) {
        mpiCheck(MPI_Wait(&req[k], MPI_STATUS_IGNORE));
        size_t lo = k * bucket, hi = (lo + bucket < n ? lo + bucket : n);
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
    }
    free(req);
    return sqrt(s);
}

static void adamw_cpu(float *p, float *g, float *m, float *v, const uint8_t *decay, size_t n, float lr,
                      float grad_scale, const OptimCfg *o, int t) {
    if (grad_scale != 1.0f)
        for (size_t i = 0; i < n; i++) g[i] *= grad_scale;
    adamw_update(p, g, m, v, decay, n, lr, o, t);
}

static void params_allgather_cpu(float *p, size_t n, const int *counts, const int *displs) {
    (void)n;
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, p, counts, displs, MPI_FLOAT, MPI_COMM_WORLD));
}

const TrainOps train_ops_cpu = {
    .name = "cpu",
    .alloc_zeroed = alloc_zeroed_cpu,
    .free = free_cpu,
    .to_host = to_host_cpu,
    .to_device = to_device_cpu,
    .grads_allreduce = grads_allreduce_cpu,
    .adamw = adamw_cpu,
    .params_allgather = params_allgather_cpu,
};

/* ---- CUDA: device buffers; compiled in CI, run on a lent GPU (tests/gpu) ---- */
#ifdef QUORUM_HAVE_CUDA

static float *alloc_zeroed_cuda(size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float);
    float *x = backend_cuda.alloc(bytes);
    backend_cuda.zero(x, bytes);
    return x;
}
static void free_cuda(float *x) { backend_cuda.free(x); }
static void to_host_cuda(float *dst, const float *src, size_t n) { backend_cuda.to_host(dst, src, n * sizeof(float)); }
static void to_device_cuda(float *dst, const float *src, size_t n) { backend_cuda.to_backend(dst, src, n * sizeof(float)); }

/* One reduction (device pointers when Open MPI is CUDA-aware, else host-staged in overlapped chunks),
 * then the norm of the summed grads on the device (fixed-order, bit-identical on every rank). */
static double grads_allreduce_cuda(float *g, size_t n, size_t bucket) {
    (void)bucket;
    if (quorum_world() > 1) cuda_allreduce_sum(g, n, MPI_COMM_WORLD);
    return cuda_grad_norm(g, n);
}

/* The kernel has one weight decay for its range: the decay mask is applied as runs of equal mask values
 * (a run per tensor at most, i.e. a few hundred launches per step for an 8B model). */
static void adamw_cuda(float *p, float *g, float *m, float *v, const uint8_t *decay, size_t n, float lr,
                       float grad_scale, const OptimCfg *o, int t) {
    for (size_t lo = 0; lo < n;) {
        size_t hi = decay ? lo + 1 : n;
        while (hi < n && decay[hi] == decay[lo]) hi++;
        float wd = !decay || decay[lo] ? o->weight_decay : 0.0f;
        cuda_adamw_step(p + lo, g + lo, m + lo, v + lo, hi - lo, t, lr, o->beta1, o->beta2, o->eps, wd, grad_scale);
        lo = hi;
    }
}

static void params_allgather_cuda(float *p, size_t n, const int *counts, const int *displs) {
    int r = quorum_rank();
    float *h = xmalloc((n ? n : 1) * sizeof(float));
    to_host_cuda(h + displs[r], p + displs[r], (size_t)counts[r]);
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, h, counts, displs, MPI_FLOAT, MPI_COMM_WORLD));
    to_device_cuda(p, h, n);
    free(h);
}

const TrainOps train_ops_cuda = {
    .name = "cuda",
    .alloc_zeroed = alloc_zeroed_cuda,
    .free = free_cuda,
    .to_host = to_host_cuda,
    .to_device = to_device_cuda,
    .grads_allreduce = grads_allreduce_cuda,
    .adamw = adamw_cuda,
    .params_allgather = params_allgather_cuda,
};
#endif
