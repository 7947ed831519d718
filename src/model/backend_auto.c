/* backend_auto.c - pick the compute backend once per process (see quorum/backend.h). */
#include "quorum/backend.h"
#include "quorum/common.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#ifdef QUORUM_HAVE_CUDA
#include "quorum/cuda_backend.h"
#endif

extern const Backend backend_cpu;

const Backend *backend_auto(void) {
    static const Backend *chosen = NULL;
    if (chosen) return chosen;
    const char *force = getenv("QUORUM_BACKEND");
    qCheck(!force || !strcmp(force, "cpu") || !strcmp(force, "cuda"), "set QUORUM_BACKEND to cpu or cuda",
           "unknown QUORUM_BACKEND=%s", force);
    chosen = &backend_cpu;
#ifdef QUORUM_HAVE_CUDA
    if (!force || !strcmp(force, "cuda")) {
        if (cuda_device_count() > 0 && cuda_backend_init() >= 0) chosen = &backend_cuda;
        else qCheck(!force, "run on a node with a GPU, or QUORUM_BACKEND=cpu", "QUORUM_BACKEND=cuda but no usable GPU");
    }
#else
    qCheck(!force || !strcmp(force, "cpu"), "rebuild with -DQUORUM_CUDA=ON", "QUORUM_BACKEND=cuda but quorum was built without CUDA");
#endif
    if (chosen == &backend_cpu) {
        const char *why = "";
#ifdef QUORUM_HAVE_CUDA
        if (!force) why = " (built with CUDA, but no GPU is visible)";
#endif
        quorum_log("compute backend: cpu, %d BLAS thread(s) per rank%s", backend_cpu_pin_threads(), why);
    } else {
        quorum_log("compute backend: %s", chosen->name);
    }
    return chosen;
}
