/* ingest_check.h - the reject-rate rule of ingest (ingest_check.c), private to src/corpus. */
#ifndef QUORUM_INGEST_CHECK_H
#define QUORUM_INGEST_CHECK_H

#include <stdint.h>

#include "quorum/job.h"

/* hist[code] = rejected lines per LineStatus code (hist[0] unused), over all n_lines lines. When the
 * rejected lines reach job->reject_limit * n_lines (n_lines > 0), prints one line naming the source,
 * the top reject reasons and a hint from the file's first bytes, and returns -1; else 0. Rank 0. */
int ingest_check_rejects(const Job *job, const JobCorpus *c, const int64_t hist[256], int64_t n_lines);

#endif
