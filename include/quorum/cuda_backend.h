/*
 * quorum/cuda_backend.h - the CUDA side of quorum that is not the op table: device selection, the
 * gradient allreduce, and the training kernels (AdamW, global grad norm, DPO loss) that operate on the
 * model's flat fp32 parameter/gradient buffers. Built only with QUORUM_HAVE_CUDA (the .cu files in kernels/).
 *
 * Every pointer named `dev`/`d_*` is device memory. All work is queued on one stream per process; the
 * functions that return host values (grad norm, DPO loss) synchronise it.
 */
#ifndef QUORUM_CUDA_BACKEND_H
#define QUORUM_CUDA_BACKEND_H

#include <stddef.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices; 0 when there is none (cudaErrorNoDevice, or no driver installed: a CPU
 * node). Any other failure (an installed driver older than the runtime, a broken install) ends the program with one line naming the CUDA error and the
 * way out (QUORUM_BACKEND=cpu): never a silent CPU fallback. */
int cuda_device_count(void);

/* One rank per GPU: the node-local rank (quorum/placement.h: found once, collectively, right after
 * MPI_Init; never here, so a lazy first use inside a scoring round cannot deadlock) picks device
 * quorum_device_for(node_rank, count). Creates the stream and cuBLAS handle. Returns the device index, or
 * -1 (with a one-line message) when there is no device. Idempotent, not collective. The first use of
 * backend_cuda calls it when nobody did, and dies with a clear message when there is no device. Programs
 * other than `quorum` call quorum_placement_init() after MPI_Init, or every rank counts as node rank 0. */
int cuda_backend_init(void);

/* The op table (quorum/ops.h) on the current device. Call cuda_backend_init first under MPI. */
struct Backend;
extern const struct Backend backend_cuda;

/* GEMM precision for every matmul/attention GEMM: 0 = fp32 (default, the parity path), 1 = bf16 inputs
 * with fp32 accumulation on tensor cores. Returns the previous setting. */
int cuda_matmul_use_bf16(int on);

/* Releases the cuBLAS handle, stream and scratch buffers. */
void cuda_backend_finalize(void);

/* In-place sum of dev[0..n) over `comm`, by the first of these that works (chosen at the first multi-rank call,
 * collectively, and logged once on rank 0):
 *   NCCL: built with QUORUM_HAVE_NCCL (CMake found nccl.h + libnccl; -DQUORUM_NCCL=OFF drops it) and a
 *         communicator came up at run time, bootstrapped over `comm` (rank 0's ncclGetUniqueId, MPI_Bcast,
 *         ncclCommInitRank); stream-ordered. It serves that one communicator; others use the MPI paths.
 *   MPI on device pointers when Open MPI is CUDA-aware (MPIX_Query_cuda_support, mpi-ext.h);
 *   host-staged: pinned host memory in chunks, the copy of chunk i+1 overlapping the MPI_Allreduce of chunk i.
 * QUORUM_CUDA_ALLREDUCE=mpi skips NCCL, =staged forces the host-staged path (set alike on every rank).
 * Every rank gets bit-identical results (each NCCL/MPI algorithm reduces an element once and broadcasts it). */
void cuda_allreduce_sum(float *dev, size_t n, MPI_Comm comm);
typedef enum { CUDA_AR_STAGED = 0, CUDA_AR_MPI_DEVICE = 1, CUDA_AR_NCCL = 2 } CudaAllreducePath;
/* The path cuda_allreduce_sum takes on comm (a CudaAllreducePath; collective on its first call). */
int cuda_allreduce_path(MPI_Comm comm);
/* As cuda_allreduce_sum with bf16 on the wire (half the bytes), NCCL path only: dev rounded to bf16 (nearest
 * even), ncclAllReduce in ncclBfloat16 (NCCL's summation order and bf16 partial sums), widened back. Returns -1
 * (nothing done) when NCCL does not serve comm: the caller uses the host twin (quorum/train.h). */
int cuda_allreduce_sum_bf16(float *dev, size_t n, MPI_Comm comm);
/* 1 when Open MPI is CUDA-aware (and QUORUM_CUDA_ALLREDUCE is not "staged"), else 0. */
int cuda_allreduce_is_cuda_aware(void);

/* AdamW (decoupled weight decay, bias-corrected, PyTorch semantics) on fp32 master weights:
 *   g = grads[i] * grad_scale;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * p)
 * `step` is t, starting at 1. grad_scale folds in clipping / loss scaling (1 for none). */
void cuda_adamw_step(float *params, const float *grads, float *m, float *v, size_t n, int step,
                     float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale);

/* sqrt(sum grads[i]^2), two-pass (fixed grid of per-block partials, then one block sums them in a fixed
 * order): bit-identical from run to run. Accumulates in fp32 per thread and per block. */
float cuda_grad_norm(const float *grads, size_t n);

/* DPO sigmoid loss over per-sequence log-probs (TRL "sigmoid" with label smoothing eps):
 *   z_b = beta * ((pc_b - pr_b) - (rc_b - rr_b))
 *   loss = mean_b [ -(1-eps) log sigmoid(z_b) - eps log sigmoid(-z_b) ]
 * Writes d loss / d pc_b and d loss / d pr_b (device, [B]) and returns the loss. The reference log-probs
 * rc/rr carry no gradient. Optional `d_margin_out` [B] (device, may be NULL) gets z_b / beta. */
float cuda_dpo_loss(const float *pc, const float *pr, const float *rc, const float *rr, int B,
                    float beta, float label_smoothing, float *dpc, float *dpr, float *d_margin_out);

#ifdef __cplusplus
}
#endif
#endif /* QUORUM_CUDA_BACKEND_H */
