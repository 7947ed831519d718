/* eval.c - held-out preference accuracy of a DPO policy against its reference (see dpo_eval in
 * quorum/train.h). Ranks split the pairs (i % R == r); sums are combined with one MPI_Allreduce, so
 * the result does not depend on the rank count beyond fp64 summation order. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/train.h"

#include <mpi.h>
#include <stdlib.h>

/* Sequence log-probs of every pair of `d` owned by this rank: lp[2i] chosen, lp[2i+1] rejected. */
static void seq_logps(TrainModel *m, const TokPairs *d, int batch, double *lp) {
    int R = quorum_world(), r = quorum_rank();
    int64_t n_own = 0, *own = xmalloc(sizeof(int64_t) * (size_t)(d->n / R + 1));
    for (int64_t i = r; i < d->n; i += R) own[n_own++] = i;
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int *lens = NULL;
    size_t cap = 0;
    float *out = xmalloc(sizeof(float) * 2 * (size_t)batch);
    for (int64_t s = 0; s < n_own; s += batch) {
        int n = (int)(n_own - s < batch ? n_own - s : batch);
        int T = batch_build(d, own + s, n, &ids, &mask, &lens, &cap);
        m->forward(m, ids, lens, mask, 2 * n, T, out); /* rows: n chosen, then n rejected */
        for (int b = 0; b < n; b++) {
            lp[2 * own[s + b]] = out[b];
            lp[2 * own[s + b] + 1] = out[n + b];
        }
    }
    free(own); free(ids); free(mask); free(lens); free(out);
}

int dpo_eval(const char *policy_dir, const char *ref_dir, const char *corpus_dirs, int max_length,
             int max_prompt_length, PrefEval *res) {
    TokPairs d = {0};
    TrainModel pol, ref;
    PairsLoadCfg pc = {.corpus_dirs = corpus_dirs, .model_dir = policy_dir, .max_length = max_length,
                       .max_prompt_length = max_prompt_length};
    if (pairs_load(&d, &pc)) return -1;
    if (train_model_open(&pol, policy_dir, 0)) { tokpairs_free(&d); return -1; }
    if (train_model_open(&ref, ref_dir, 0)) { train_model_close(&pol); tokpairs_free(&d); return -1; }
    double *lp = xcalloc(2 * (size_t)(d.n ? d.n : 1), sizeof(double));
    double *lr = xcalloc(2 * (size_t)(d.n ? d.n : 1), sizeof(double));
    seq_logps(&pol, &d, 8, lp);
    seq_logps(&ref, &d, 8, lr);
    /* sums[0] = correct, [1] = margin sum, [2] = pairs, [3] = policy prefers chosen outright */
    double sums[4] = {0, 0, 0, 0}, all[4];
    for (int64_t i = quorum_rank(); i < d.n; i += quorum_world()) {
        double margin = (lp[2 * i] - lr[2 * i]) - (lp[2 * i + 1] - lr[2 * i + 1]);
        sums[0] += margin > 0;
        sums[1] += margin;
        sums[2] += 1;
        sums[3] += lp[2 * i] > lp[2 * i + 1];
    }
    mpiCheck(MPI_Allreduce(sums, all, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    res->n = (int64_t)all[2];
    res->accuracy = res->n ? all[0] / all[2] : 0.0;
    res->mean_margin = res->n ? all[1] / all[2] : 0.0;
    res->logp_accuracy = res->n ? all[3] / all[2] : 0.0;
    free(lp); free(lr);
    train_model_close(&pol);
    train_model_close(&ref);
    tokpairs_free(&d);
    return 0;
}
