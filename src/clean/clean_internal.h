/* clean_internal.h - private to src/clean: the pieces clean_rules.c and clean_rules_family.c share. */
#ifndef QUORUM_CLEAN_INTERNAL_H
#define QUORUM_CLEAN_INTERNAL_H

#include <stdint.h>

#include "quorum/clean.h"

/* The ranking rules: keys[0..n) (value, pair id, index) are sorted by value then pair id, and the first
 * k get `act` in action[index]. */
typedef struct {
    double value;
    int64_t id, index;
} RankKey;
void clean_mark_lowest(RankKey *keys, int64_t n, int64_t k, CleanAction act, uint8_t *action);

/* The rules over lm, implicit and judge members and consensus_* (clean_rules_family.c); clean_decide
 * calls it for every method it does not decide itself. */
void clean_decide_family(const JobClean *cfg, const Votes *v, uint8_t *action);

#endif
