/*
 * quorum/tokpairs.h - tokenized preference pairs for the model's log-prob forward: TRL classic
 * truncation, flat storage, right-padded batches with completion masks. Owned by the model stage
 * (src/model/tokpairs.c) because both the trainer (DPO, reward models) and the score stage's LM members
 * (IFD, implicit reward, judge) feed it to model_logprobs; neither owns the other.
 */
#ifndef QUORUM_TOKPAIRS_H
#define QUORUM_TOKPAIRS_H

#include <stddef.h>
#include <stdint.h>

/* Tokenized pairs: per pair the full chosen / rejected sequence (prompt + response, already
 * truncated) and the prompt length inside each; flat int32 ids with int64 offsets. */
typedef struct {
    int64_t n;
    int32_t *ids; int64_t n_ids, cap_ids;
    int64_t *chosen_off, *rejected_off; /* (n+1): pair i = ids[chosen_off[i], chosen_off[i+1]): its chosen
                                           sequence up to rejected_off[i], then its rejected sequence */
    int32_t *prompt_len;                /* (n,) identical prefix length of both sequences */
    int64_t *pair_id;                   /* (n,) source id, for messages */
    float *ref_chosen, *ref_rejected;   /* (n,) DPO reference log-probs (NULL until computed) */
} TokPairs;

void tokpairs_free(TokPairs *p);
/* Appends one pair after TRL classic truncation (see pair_truncate). */
void tokpairs_push(TokPairs *p, int64_t pair_id, const int32_t *prompt, int np, const int32_t *chosen, int nc,
                   const int32_t *rejected, int nr, int max_length, int max_prompt_length);

/* TRL classic DPOTrainer truncation: when prompt + longer response exceeds max_length, keep the last
 * max_prompt_length prompt tokens; if still too long, keep the first max_length - max_prompt_length
 * tokens of each response. Updates *np, *nc, *nr and *prompt_start (first prompt token kept). */
void pair_truncate(int *np, int *prompt_start, int *nc, int *nr, int max_length, int max_prompt_length);

/* Fills a right-padded (B,T) batch of the sequences of pairs idx[0..B) (first all chosen, then all
 * rejected: 2B rows), the completion masks and the lengths; returns T. Buffers are grown as needed. */
int batch_build(const TokPairs *d, const int64_t *idx, int B, int32_t **ids, uint8_t **mask, int **lens,
                size_t *cap);

#endif /* QUORUM_TOKPAIRS_H */
