/*
 * kernels/runtime.cu - device selection, the process stream + cuBLAS handle, backend memory, and the
 * gradient allreduce (NCCL when built and it comes up, else CUDA-aware MPI, else host-staged and pipelined).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_common.cuh"
#include "ops_cuda.cuh"
#include "quorum/cuda_backend.h"
#include "quorum/placement.h"
#if defined(__has_include)
#  if __has_include(<mpi-ext.h>)
#    include <mpi-ext.h>
#  endif
#endif

#ifdef QUORUM_HAVE_NCCL
#include <nccl.h>
#define ncclCheck(x) do { ncclResult_t r_ = (x); if (r_ != ncclSuccess) \
    quorum_die_at(__FILE__, __LINE__, "QUORUM_CUDA_ALLREDUCE=mpi avoids NCCL", "NCCL: %s", \
                  ncclGetErrorString(r_)); } while (0)
static ncclComm_t g_nccl;
static MPI_Comm g_nccl_mpi = MPI_COMM_NULL; /* the MPI communicator g_nccl spans */
#endif
static int g_ar_path = -1;                  /* CudaAllreducePath once chosen */

static cudaStream_t g_stream;
static cublasHandle_t g_cublas;
static int g_device = -1;

extern "C" int cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaSuccess) return n;
    cudaGetLastError(); /* clear it */
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver); /* 0: no driver installed (a CPU node), not a mismatch */
    cudaRuntimeGetVersion(&runtime);
    if (e == cudaErrorNoDevice || driver == 0) return 0;
    /* Anything else (an installed driver older than this runtime, a broken install) is not "no GPU": a
     * silent CPU fallback would run an 8B committee 100x slower without saying why. */
    quorum_die_at(__FILE__, __LINE__,
                  e == cudaErrorInsufficientDriver ? "update the NVIDIA driver, or run with QUORUM_BACKEND=cpu"
                                                   : "check the NVIDIA driver (nvidia-smi), or run with QUORUM_BACKEND=cpu",
                  "CUDA cannot list devices: %s (%s; driver API %d, runtime %d)", cudaGetErrorString(e),
                  cudaGetErrorName(e), driver, runtime);
}

/* Creates the stream and the cuBLAS handle on the current device, once. */
static void runtime_create_handles(void) {
    if (g_cublas) return;
    cudaCheck(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    cublasCheck(cublasCreate(&g_cublas));
    cublasCheck(cublasSetStream(g_cublas, g_stream));
    /* fp32 GEMMs stay true fp32 (no TF32) unless the bf16 path is asked for explicitly */
    cublasCheck(cublasSetMathMode(g_cublas, CUBLAS_DEFAULT_MATH));
}

extern "C" int cuda_backend_init(void) {
    if (g_device >= 0) return g_device;
    int count = cuda_device_count();
    if (count == 0) {
        quorum_log_all("no CUDA device visible (cudaGetDeviceCount found none)");
        return -1;
    }
    /* the node-local rank was found once, right after MPI_Init: no collective here (quorum/placement.h) */
    g_device = quorum_device_for(quorum_node_rank(NULL), count);
    cudaCheck(cudaSetDevice(g_device));
    runtime_create_handles();
    return g_device;
}

extern "C" void cuda_backend_finalize(void) {
    if (!g_cublas) return; /* never initialised */
    cudaCheck(cudaDeviceSynchronize());
    cuda_scratch_release();
    cuda_lt_release();
#ifdef QUORUM_HAVE_NCCL
    if (g_nccl) ncclCommDestroy(g_nccl); /* before MPI_Finalize: main finalizes the backend first */
    g_nccl = NULL;
    g_nccl_mpi = MPI_COMM_NULL;
#endif
    g_ar_path = -1;
    if (g_cublas) { cublasCheck(cublasDestroy(g_cublas)); g_cublas = NULL; }
    if (g_stream) { cudaCheck(cudaStreamDestroy(g_stream)); g_stream = NULL; }
    g_device = -1;
}

/* First use without cuda_backend_init (e.g. through backend_get("cuda")): pick the device the same way,
 * by node-local rank, so ranks sharing a node never pile onto device 0. */
static void runtime_ensure(void) {
    if (g_cublas) return;
    if (cuda_backend_init() < 0)
        quorum_die_at(__FILE__, __LINE__, "run on a GPU node, or use the cpu backend",
                      "the CUDA backend was used but no CUDA device is visible");
}

extern "C" cudaStream_t cuda_stream(void) {
    runtime_ensure();
    return g_stream;
}

cublasHandle_t cuda_cublas(void) {
    runtime_ensure();
    return g_cublas;
}

/* ---------------------------------------------------------------- gradient allreduce
 * Three paths, chosen once (collectively, at the first multi-rank cuda_allreduce_sum) and logged once:
 * NCCL (built with QUORUM_HAVE_NCCL and a communicator came up at run time), else MPI on device pointers
 * (Open MPI built CUDA-aware: MPIX_Query_cuda_support), else host-staged MPI. */

extern "C" int cuda_allreduce_is_cuda_aware(void) {
    const char *force = getenv("QUORUM_CUDA_ALLREDUCE"); /* "staged" forces the host path (tests, debugging) */
    if (force && !strcmp(force, "staged")) return 0;
#if defined(MPIX_CUDA_AWARE_SUPPORT)
    return MPIX_Query_cuda_support() == 1;
#else
    return 0;
#endif
}

/* NCCL over comm, bootstrapped as llm.c does: rank 0's ncclGetUniqueId, MPI_Bcast, ncclCommInitRank on every
 * rank. Collective. 1 when every rank has its communicator, else 0 and none is kept (MPI serves). */
static int nccl_init(MPI_Comm comm) {
#ifdef QUORUM_HAVE_NCCL
    int rank = 0, world = 1, ok = 1, all = 0;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    mpiCheck(MPI_Comm_size(comm, &world));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (rank == 0) ok = ncclGetUniqueId(&id) == ncclSuccess;
    mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, comm));
    if (!ok) return 0;
    mpiCheck(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm));
    runtime_ensure(); /* the communicator binds the current device */
    ok = ncclCommInitRank(&g_nccl, world, id, rank) == ncclSuccess;
    mpiCheck(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm));
    if (!all) {
        if (ok) ncclCommDestroy(g_nccl);
        g_nccl = NULL;
        return 0;
    }
    g_nccl_mpi = comm;
    return 1;
#else
    (void)comm;
    return 0;
#endif
}

extern "C" int cuda_allreduce_path(MPI_Comm comm) {
    if (g_ar_path >= 0) return g_ar_path;
    const char *force = getenv("QUORUM_CUDA_ALLREDUCE"); /* nccl (default when built) | mpi | staged */
    int no_nccl = force && (!strcmp(force, "mpi") || !strcmp(force, "staged"));
    if (!no_nccl && nccl_init(comm)) g_ar_path = CUDA_AR_NCCL;
    else g_ar_path = cuda_allreduce_is_cuda_aware() ? CUDA_AR_MPI_DEVICE : CUDA_AR_STAGED;
#ifdef QUORUM_HAVE_NCCL
    const char *built = no_nccl ? "NCCL off by QUORUM_CUDA_ALLREDUCE" : "NCCL built in";
#else
    const char *built = "built without NCCL";
#endif
    static const char *const names[] = {"host-staged MPI", "MPI on device buffers (CUDA-aware Open MPI)", "NCCL"};
    int rank = 0;
    mpiCheck(MPI_Comm_rank(comm, &rank));
    if (rank == 0) quorum_log("gradient collectives: %s (%s)", names[g_ar_path], built);
    return g_ar_path;
}

/* Host-staged path: two pinned chunks ping-pong. While MPI reduces chunk i on the host, the device->host
 * copy of chunk i+1 runs on the stream and the host->device copy of chunk i-1 drains behind it. */
#define ALLREDUCE_CHUNK ((size_t)4 << 20) /* floats per chunk: 16 MiB */
static void allreduce_host_staged(float *dev, size_t n, MPI_Comm comm) {
    static float *pinned[2];
    static cudaEvent_t down[2], up[2];
    if (!pinned[0]) {
        for (int i = 0; i < 2; i++) {
            cudaCheck(cudaMallocHost((void **)&pinned[i], ALLREDUCE_CHUNK * sizeof(float)));
            cudaCheck(cudaEventCreateWithFlags(&down[i], cudaEventDisableTiming));
            cudaCheck(cudaEventCreateWithFlags(&up[i], cudaEventDisableTiming));
            cudaCheck(cudaEventRecord(up[i], cuda_stream())); /* "buffer free" */
        }
    }
    cudaStream_t st = cuda_stream();
    size_t nchunks = (n + ALLREDUCE_CHUNK - 1) / ALLREDUCE_CHUNK;
    for (size_t c = 0; c <= nchunks; c++) {
        if (c < nchunks) { /* queue download of chunk c once its buffer's previous upload finished */
            int s = (int)(c % 2);
            size_t off = c * ALLREDUCE_CHUNK, len = n - off < ALLREDUCE_CHUNK ? n - off : ALLREDUCE_CHUNK;
            cudaCheck(cudaStreamWaitEvent(st, up[s], 0));
            cudaCheck(cudaMemcpyAsync(pinned[s], dev + off, len * sizeof(float), cudaMemcpyDeviceToHost, st));
            cudaCheck(cudaEventRecord(down[s], st));
        }
        if (c > 0) { /* reduce chunk c-1 on the host, then queue its upload */
            size_t p = c - 1;
            int s = (int)(p % 2);
            size_t off = p * ALLREDUCE_CHUNK, len = n - off < ALLREDUCE_CHUNK ? n - off : ALLREDUCE_CHUNK;
            cudaCheck(cudaEventSynchronize(down[s]));
            mpiCheck(MPI_Allreduce(MPI_IN_PLACE, pinned[s], (int)len, MPI_FLOAT, MPI_SUM, comm));
            cudaCheck(cudaMemcpyAsync(dev + off, pinned[s], len * sizeof(float), cudaMemcpyHostToDevice, st));
            cudaCheck(cudaEventRecord(up[s], st));
        }
    }
    cudaCheck(cudaStreamSynchronize(st));
}

/* 1 when comm is the communicator NCCL was set up on */
static int nccl_serves(MPI_Comm comm) {
#ifdef QUORUM_HAVE_NCCL
    int same = MPI_UNEQUAL;
    if (cuda_allreduce_path(comm) != CUDA_AR_NCCL) return 0;
    mpiCheck(MPI_Comm_compare(comm, g_nccl_mpi, &same));
    return same == MPI_IDENT;
#else
    (void)comm;
    return 0;
#endif
}

extern "C" void cuda_allreduce_sum(float *dev, size_t n, MPI_Comm comm) {
    int world = 1;
    mpiCheck(MPI_Comm_size(comm, &world));
    if (world == 1 || n == 0) return;
#ifdef QUORUM_HAVE_NCCL
    if (nccl_serves(comm)) { /* stream-ordered: the ops after it on cuda_stream() see the sum */
        ncclCheck(ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, g_nccl, cuda_stream()));
        return;
    }
#endif
    if (cuda_allreduce_path(comm) == CUDA_AR_MPI_DEVICE) {
        cudaCheck(cudaStreamSynchronize(cuda_stream())); /* MPI reads the buffer outside our stream */
        for (size_t off = 0; off < n; off += (size_t)1 << 30) {
            size_t len = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
            mpiCheck(MPI_Allreduce(MPI_IN_PLACE, dev + off, (int)len, MPI_FLOAT, MPI_SUM, comm));
        }
        return;
    }
    allreduce_host_staged(dev, n, comm);
}

#ifdef QUORUM_HAVE_NCCL
/* dst (n) fp32 = src (n) bf16, exact */
__global__ static void bf16_to_f32_kernel(float *dst, const __nv_bfloat16 *src, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}
#endif

extern "C" int cuda_allreduce_sum_bf16(float *dev, size_t n, MPI_Comm comm) {
    int world = 1;
    mpiCheck(MPI_Comm_size(comm, &world));
    if (world == 1) return 0;
    if (!nccl_serves(comm)) return -1;
#ifdef QUORUM_HAVE_NCCL
    if (n == 0) return 0;
    __nv_bfloat16 *x = (__nv_bfloat16 *)cuda_scratch(SCRATCH_BF16, sizeof(__nv_bfloat16) * n);
    cast_f32_to_bf16_cuda((uint16_t *)x, dev, n);
    ncclCheck(ncclAllReduce(x, x, n, ncclBfloat16, ncclSum, g_nccl, cuda_stream()));
    bf16_to_f32_kernel<<<ceil_div((long long)n, 256), 256, 0, cuda_stream()>>>(dev, x, (long long)n);
    cudaCheckLaunch();
#endif
    return 0;
}

/* ---------------------------------------------------------------- scratch */

static float *g_scratch[SCRATCH_COUNT];
static size_t g_scratch_cap[SCRATCH_COUNT];

void cuda_scratch_release(void) {
    for (int i = 0; i < SCRATCH_COUNT; i++) {
        if (g_scratch[i]) cudaCheck(cudaFree(g_scratch[i]));
        g_scratch[i] = NULL;
        g_scratch_cap[i] = 0;
    }
}

float *cuda_scratch(int slot, size_t bytes) {
    float **buf = g_scratch;
    size_t *cap = g_scratch_cap;
    if (bytes > cap[slot]) {
        if (buf[slot]) cudaCheck(cudaFree(buf[slot])); /* cudaFree waits for work using it */
        size_t grown = bytes + bytes / 4;
        cudaCheck(cudaMalloc((void **)&buf[slot], grown));
        cap[slot] = grown;
    }
    return buf[slot];
}
