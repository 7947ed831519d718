/* tokpairs.c - tokenized preference pairs (quorum/tokpairs.h): TRL classic truncation, flat storage, padded batches. */
#include "quorum/common.h"
#include "quorum/tokpairs.h"

#include <stdlib.h>
#include <string.h>

void pair_truncate(int *np, int *prompt_start, int *nc, int *nr, int max_length, int max_prompt_length) {
    *prompt_start = 0;
    int longer = *nc > *nr ? *nc : *nr;
    if (*np + longer > max_length && *np > max_prompt_length) { /* keep_end: drop the oldest turns */
        *prompt_start = *np - max_prompt_length;
        *np = max_prompt_length;
    }
    if (*np + longer > max_length) {
        int keep = max_length - max_prompt_length;
        if (keep < 1) keep = 1;
        if (*nc > keep) *nc = keep;
        if (*nr > keep) *nr = keep;
    }
}

static void ids_append(TokPairs *p, const int32_t *x, int n) {
    if (p->n_ids + n > p->cap_ids) {
        p->cap_ids = (p->n_ids + n) * 2 + 1024;
        p->ids = xrealloc(p->ids, p->cap_ids * sizeof(int32_t));
    }
    memcpy(p->ids + p->n_ids, x, n * sizeof(int32_t));
    p->n_ids += n;
}

void tokpairs_push(TokPairs *p, int64_t pair_id, const int32_t *prompt, int np, const int32_t *chosen, int nc,
                   const int32_t *rejected, int nr, int max_length, int max_prompt_length) {
    int start;
    pair_truncate(&np, &start, &nc, &nr, max_length, max_prompt_length);
    if ((p->n & (p->n - 1)) == 0) { /* grow per-pair arrays at powers of two */
        size_t cap = p->n ? 2 * p->n : 1;
        p->chosen_off = xrealloc(p->chosen_off, (cap + 1) * sizeof(int64_t));
        p->rejected_off = xrealloc(p->rejected_off, (cap + 1) * sizeof(int64_t));
        p->prompt_len = xrealloc(p->prompt_len, cap * sizeof(int32_t));
        p->pair_id = xrealloc(p->pair_id, cap * sizeof(int64_t));
    }
    int64_t i = p->n++;
    p->pair_id[i] = pair_id;
    p->prompt_len[i] = np;
    p->chosen_off[i] = p->n_ids;
    ids_append(p, prompt + start, np);
    ids_append(p, chosen, nc);
    p->rejected_off[i] = p->n_ids;
    ids_append(p, prompt + start, np);
    ids_append(p, rejected, nr);
    p->chosen_off[i + 1] = p->rejected_off[i + 1] = p->n_ids; /* the end of pair i = the start of pair i+1 */
}

void tokpairs_free(TokPairs *p) {
    free(p->ids); free(p->chosen_off); free(p->rejected_off); free(p->prompt_len); free(p->pair_id);
    free(p->ref_chosen); free(p->ref_rejected);
    memset(p, 0, sizeof *p);
}

/* Sequence j of the batch (j < B: chosen of idx[j], else rejected of idx[j-B]). */
static const int32_t *seq_of(const TokPairs *d, const int64_t *idx, int B, int j, int *len) {
    int64_t i = idx[j % B];
    int64_t a = j < B ? d->chosen_off[i] : d->rejected_off[i];
    int64_t b = j < B ? d->rejected_off[i] : d->chosen_off[i + 1];
    *len = (int)(b - a);
    return d->ids + a;
}

int batch_build(const TokPairs *d, const int64_t *idx, int B, int32_t **ids, uint8_t **mask, int **lens,
                size_t *cap) {
    int T = 1, len;
    for (int j = 0; j < 2 * B; j++) {
        seq_of(d, idx, B, j, &len);
        if (len > T) T = len;
    }
    size_t need = (size_t)2 * B * T;
    if (need > *cap || !*ids) {
        *ids = xrealloc(*ids, need * sizeof(int32_t));
        *mask = xrealloc(*mask, need);
        *cap = need;
    }
    *lens = xrealloc(*lens, 2 * B * sizeof(int));
    for (int j = 0; j < 2 * B; j++) {
        const int32_t *s = seq_of(d, idx, B, j, &len);
        int np = d->prompt_len[idx[j % B]];
        int32_t *row = *ids + (size_t)j * T;
        uint8_t *mrow = *mask + (size_t)j * T;
        memcpy(row, s, len * sizeof(int32_t));
        for (int t = len; t < T; t++) row[t] = 0; /* right padding; masked out */
        for (int t = 0; t < T; t++) mrow[t] = t >= np && t < len;
        (*lens)[j] = len;
    }
    return T;
}
