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

static double sumsq(const float *g, size_t lo, size_t hi) {
    double s = 0;
    for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
    return s;
}

/* One bucket g[0..len) with bf16 on the wire (quorum/train.h TrainOps.grads_allreduce): chunk j of R is
 * [len*j/R, len*(j+1)/R); rank r rounds its gradient to bf16, MPI_Alltoallv hands chunk j to rank j, rank j
 * sums the R copies of its chunk in rank order in fp32 and rounds the sum to bf16, MPI_Allgatherv gives every
 * chunk to every rank, widened back to fp32. buf holds 2*len + R*(len/R + 1) halves. Element order within
 * the sum is fixed, so every rank and every run gets the same bits. */
static void reduce_bf16_bucket(float *g, size_t len, uint16_t *buf, int *cnt, int *dsp, int *rcnt, int *rdsp) {
    int R = quorum_world(), me = quorum_rank();
    for (int j = 0; j < R; j++) {
        dsp[j] = (int)(len * j / R);
        cnt[j] = (int)(len * (j + 1) / R) - dsp[j];
    }
    int mine = cnt[me];
    for (int j = 0; j < R; j++) rcnt[j] = mine, rdsp[j] = j * mine;
    uint16_t *wire = buf, *recv = buf + len, *out = recv + (size_t)R * mine;
    backend_cpu.cast_f32_to_bf16(wire, g, len);
    mpiCheck(MPI_Alltoallv(wire, cnt, dsp, MPI_UINT16_T, recv, rcnt, rdsp, MPI_UINT16_T, MPI_COMM_WORLD));
    for (int i = 0; i < mine; i++) {
        float s = bf16_to_f32(recv[i]);
        for (int j = 1; j < R; j++) s += bf16_to_f32(recv[(size_t)j * mine + i]);
        backend_cpu.cast_f32_to_bf16(&recv[i], &s, 1); /* rank 0's copy of element i is read: its slot takes the sum */
    }
    mpiCheck(MPI_Allgatherv(recv, mine, MPI_UINT16_T, out, cnt, dsp, MPI_UINT16_T, MPI_COMM_WORLD));
    for (size_t i = 0; i < len; i++) g[i] = bf16_to_f32(out[i]);
}

/* bf16 wire: the buckets one after another (reduce_bf16_bucket). Returns the global L2 norm. */
static double grads_allreduce_bf16(float *g, size_t n, size_t bucket) {
    int R = quorum_world(), *ints = xmalloc(4 * sizeof(int) * (size_t)R);
    size_t b = bucket < n ? bucket : n;
    uint16_t *buf = xmalloc(sizeof(uint16_t) * (2 * b + (size_t)R * (b / R + 1) + 2));
    double s = 0;
    for (size_t lo = 0; lo < n; lo += b) {
        size_t len = n - lo < b ? n - lo : b;
        reduce_bf16_bucket(g + lo, len, buf, ints, ints + R, ints + 2 * R, ints + 3 * R);
        s += sumsq(g, lo, lo + len);
    }
    free(buf);
    free(ints);
    return sqrt(s);
}

/* The fp32 buckets of one step's reduction: bucket k = g[k*bucket, +bucket) is posted (MPI_Iallreduce) when the
 * last of its floats is reported final (overlap_ready_cpu, from the model's grad-ready hook during the last
 * backward of the step) or, for the rest, by grads_allreduce_cpu in index order. The posting order depends only
 * on the model's architecture, so it is the same on every rank, as MPI requires; each bucket's sum does not
 * depend on when it was posted, so overlapped and plain reductions give the same bits. One per process. */
static struct {
    float *g;
    size_t n, bucket, nb;
    size_t *left;       /* (nb) floats of bucket k not yet final */
    MPI_Request *req;   /* (nb) MPI_REQUEST_NULL until posted (or completed by a test) */
    uint8_t *posted;    /* (nb) */
    size_t early;       /* buckets posted during the backward */
} ov;

static void bucket_post(size_t k) {
    size_t lo = k * ov.bucket, cnt = lo + ov.bucket < ov.n ? ov.bucket : ov.n - lo;
    mpiCheck(MPI_Iallreduce(MPI_IN_PLACE, ov.g + lo, (int)cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &ov.req[k]));
    ov.posted[k] = 1;
}

static void overlap_begin_cpu(float *g, size_t n, size_t bucket) {
    ov.g = g, ov.n = n, ov.bucket = bucket, ov.nb = (n + bucket - 1) / bucket;
    ov.left = xmalloc((ov.nb + 1) * sizeof(size_t));
    ov.req = xmalloc((ov.nb + 1) * sizeof(MPI_Request));
    ov.posted = xcalloc(ov.nb + 1, 1);
    for (size_t k = 0; k < ov.nb; k++) {
        ov.left[k] = k * bucket + bucket < n ? bucket : n - k * bucket;
        ov.req[k] = MPI_REQUEST_NULL;
    }
}

/* [lo, hi) of g is final: posts the buckets it completes, then lets MPI progress the ones in flight (Open MPI
 * moves a non-blocking collective only inside MPI calls) */
static void overlap_ready_cpu(void *ctx, size_t lo, size_t hi) {
    (void)ctx;
    if (!ov.g || hi <= lo) return;
    for (size_t k = lo / ov.bucket; k * ov.bucket < hi && k < ov.nb; k++) {
        size_t a = k * ov.bucket > lo ? k * ov.bucket : lo, b = (k + 1) * ov.bucket < hi ? (k + 1) * ov.bucket : hi;
        ov.left[k] -= b - a;
        if (!ov.left[k] && !ov.posted[k]) bucket_post(k), ov.early++;
    }
    int done;
    mpiCheck(MPI_Testall((int)ov.nb, ov.req, &done, MPI_STATUSES_IGNORE));
}

/* Sums grads over ranks in buckets: whatever the backward did not post yet is posted now, in index order, and
 * the squared norm of each bucket is accumulated as soon as it lands (in index order), overlapping with the
 * buckets still in flight. Returns the global L2 norm. */
static double grads_allreduce_cpu(float *g, size_t n, size_t bucket, DType wire) {
    if (quorum_world() == 1) return sqrt(sumsq(g, 0, n));
    if (wire == DT_BF16) return grads_allreduce_bf16(g, n, bucket);
    if (ov.g != g || ov.n != n || ov.bucket != bucket) overlap_begin_cpu(g, n, bucket); /* no overlap this step */
    static int logged;
    if (!logged++ && quorum_rank() == 0)
        quorum_log("gradient allreduce: %zu of %zu buckets posted during the backward", ov.early, ov.nb);
    for (size_t k = 0; k < ov.nb; k++)
        if (!ov.posted[k]) bucket_post(k);
    double s = 0;
    for (size_t k = 0; k < ov.nb; k++) {
        mpiCheck(MPI_Wait(&ov.req[k], MPI_STATUS_IGNORE));
        size_t lo = k * bucket, hi = (lo + bucket < n ? lo + bucket : n);
        s += sumsq(g, lo, hi);
    }
    free(ov.left), free(ov.req), free(ov.posted);
    memset(&ov, 0, sizeof ov);
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
    .overlap_begin = overlap_begin_cpu,
    .overlap_ready = overlap_ready_cpu,
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

/* One reduction (cuda_allreduce_sum: NCCL, else MPI on device pointers, else host-staged), then the norm of
 * the summed grads on the device (fixed-order, bit-identical on every rank). bf16 on the wire: NCCL's bf16
 * sum, or without NCCL the CPU twin on a host copy (the same arithmetic as train_ops_cpu). */
static double grads_allreduce_cuda(float *g, size_t n, size_t bucket, DType wire) {
    if (quorum_world() > 1 && wire == DT_BF16 && cuda_allreduce_sum_bf16(g, n, MPI_COMM_WORLD) != 0) {
        float *h = xmalloc((n ? n : 1) * sizeof(float));
        to_host_cuda(h, g, n);
        grads_allreduce_bf16(h, n, bucket ? bucket : n);
        to_device_cuda(g, h, n);
        free(h);
    } else if (quorum_world() > 1 && wire != DT_BF16) {
        cuda_allreduce_sum(g, n, MPI_COMM_WORLD);
    }
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
