/*
 * quorum/backend.h - which compute backend a process uses.
 *
 * backend_auto(): the CUDA backend when quorum was built with it (QUORUM_HAVE_CUDA) and this rank can
 * bind a GPU (the node-local rank picks one), else the CPU backend. QUORUM_BACKEND=cpu|cuda forces the
 * choice (cuda without a GPU is an error). The choice is made once per process and logged once. The CPU
 * backend runs QUORUM_BLAS_THREADS (default 1) BLAS threads per rank (backend_cpu_pin_threads).
 */
#ifndef QUORUM_BACKEND_H
#define QUORUM_BACKEND_H

#include "quorum/ops.h"

const Backend *backend_auto(void);

#endif
