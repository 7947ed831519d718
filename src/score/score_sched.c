/* score_sched.c - the dynamic schedule's queue policy and its cost inputs (quorum/score.h, "Dynamic
 * schedule"). No MPI here: the dispatcher (score_dispatch.c) calls sched_next under its lock, and the
 * unit test drives it by hand. */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"
#include "quorum/safetensors.h"
#include "quorum/h5.h"
#include "score_internal.h"

static const double *g_cost; /* qsort has no context argument */

static int cmp_cost_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (g_cost[x] != g_cost[y]) return g_cost[x] < g_cost[y] ? 1 : -1;
    return (x > y) - (x < y); /* ties: unit order, so the schedule is a function of the inputs */
}

void sched_init(Sched *s, const int *member, const double *cost, int64_t n, int n_members, int world) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->n_members = n_members;
    s->world = world;
    s->member = member;
    s->cost = cost;
    s->order = xmalloc(sizeof(int64_t) * (size_t)(n + 1));
    s->held = xcalloc((size_t)world, sizeof(uint32_t));
    int64_t pos = 0;
    for (int m = 0; m < n_members; m++) {
        s->start[m] = s->next[m] = pos;
        for (int64_t u = 0; u < n; u++)
            if (member[u] == m) { s->order[pos++] = u; s->remaining[m] += cost[u]; }
        g_cost = cost;
        qsort(s->order + s->start[m], (size_t)(pos - s->start[m]), sizeof(int64_t), cmp_cost_desc);
    }
    s->start[n_members] = pos;
}

void sched_free(Sched *s) {
    free(s->order);
    free(s->held);
    memset(s, 0, sizeof *s);
}

static int has_work(const Sched *s, int m) { return s->next[m] < s->start[m + 1]; }

/* Ranks other than `rank` that hold member m. */
static int holders(const Sched *s, int m, int rank) {
    int h = 0;
    for (int r = 0; r < s->world; r++) h += r != rank && (s->held[r] >> m & 1u);
    return h;
}

/* 1. a member the rank holds, with work: the one with the most cost left (no load);
 * 2. else a member no other rank holds (it must be loaded somewhere anyway): the most cost left;
 * 3. else the member whose cost left per holder, counting this rank, is largest (joins the longest tail).
 * Ties: the lower member index. */
static int pick_member(const Sched *s, int rank, uint32_t held) {
    int best = -1;
    for (int m = 0; m < s->n_members; m++)
        if ((held >> m & 1u) && has_work(s, m) && (best < 0 || s->remaining[m] > s->remaining[best])) best = m;
    if (best >= 0) return best;
    double best_key = -1;
    int best_free = 0;
    for (int m = 0; m < s->n_members; m++) {
        if (!has_work(s, m)) continue;
        int h = holders(s, m, rank), free_m = h == 0;
        double key = s->remaining[m] / (h + 1);
        if (best < 0 || free_m > best_free || (free_m == best_free && key > best_key)) {
            best = m;
            best_key = key;
            best_free = free_m;
        }
    }
    return best;
}

int64_t sched_next(Sched *s, int rank, uint32_t held) {
    s->held[rank] = held;
    int m = pick_member(s, rank, held);
    if (m < 0) return -1;
    int64_t u = s->order[s->next[m]++];
    s->remaining[m] -= s->cost[u];
    s->held[rank] |= 1u << m; /* loading it now: the next rank to ask sees it taken */
    s->given++;
    return u;
}

static double folder_params(const char *dir) {
    SafeTensors st;
    if (safetensors_open(&st, dir) != 0) return -1.0;
    double p = 0;
    for (int i = 0; i < st.n; i++) p += (double)st.t[i].numel;
    safetensors_close(&st);
    return p > 0 ? p : 1.0;
}

/* Bytes the model in `dir` holds loaded for scoring (model.h, model_load_ex .inference): the matrices stay
 * bf16 when every 2-D tensor of the checkpoint is BF16, everything else is fp32. */
static double folder_bytes(const char *dir) {
    SafeTensors st;
    if (safetensors_open(&st, dir) != 0) return -1.0;
    int bf16 = 1;
    for (int i = 0; i < st.n; i++) bf16 &= st.t[i].ndim != 2 || st.t[i].dtype == ST_BF16;
    double b = 0;
    for (int i = 0; i < st.n; i++) b += (bf16 && st.t[i].ndim == 2 ? 2.0 : 4.0) * (double)st.t[i].numel;
    safetensors_close(&st);
    return b > 0 ? b : 4.0;
}

double member_bytes(const JobMember *cfg) {
    if (strstr(cfg->path, "builtin:")) return 4.0;
    double p = folder_bytes(cfg->path), r = cfg->kind == MEMBER_IMPLICIT ? folder_bytes(cfg->ref) : 0.0;
    return p < 0 || r < 0 ? -1.0 : p + r;
}

/* An implicit member holds two models (policy + reference): both count, for memory and cost. */
double member_params(const JobMember *cfg) {
    if (strstr(cfg->path, "builtin:")) return 1.0;
    double p = folder_params(cfg->path), r = cfg->kind == MEMBER_IMPLICIT ? folder_params(cfg->ref) : 0.0;
    return p < 0 || r < 0 ? -1.0 : p + r;
}

/* Element count of a 1-D dataset, or -1 (no message: the scoring of the shard reports a broken file). */
static int64_t dataset_len(hid_t f, const char *name) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[1] = {0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, dims, NULL) == 1;
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    return ok ? (int64_t)dims[0] : -1;
}

double shard_text_bytes(const char *shard_file, int64_t pairs) {
    h5q_quiet();
    hid_t f = H5Fopen(shard_file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 1.0 + (double)pairs;
    int64_t p = dataset_len(f, "prompt"), c = dataset_len(f, "chosen"), r = dataset_len(f, "rejected");
    H5Fclose(f);
    if (p < 0 || c < 0 || r < 0) return 1.0 + (double)pairs;
    return 1.0 + (double)(2 * p + c + r);
}
