/*
 * quorum/record.h - stage records: what every stage output was made from.
 *
 * A fingerprint is a list of named inputs, each a 64-bit FNV-1a value (the source's bytes, a member's
 * identity, a config section, the fingerprint of the stage before); its value is the FNV-1a of the list.
 * `quorum run` writes one record per stage and corpus (the report and dpo per job) after the stage
 * finished, and a stage is current iff the fingerprint it would compute now equals the recorded one and
 * the stage's completion file still has the recorded checksum:
 *
 *   <out_dir>/records/<corpus>.<stage>.json   (report and dpo: records/job.<stage>.json)
 *     {"stage": "vote", "corpus": "harmless", "fingerprint": "hex16",
 *      "inputs": {"score": "hex16", "config": "hex16"}, "output": "votes/harmless.h5", "output_fnv": "hex16"}
 *
 * Written to a temp name and renamed, after the stage's own outputs. When a record disagrees, the name of
 * the first input that differs says why the stage runs again (`quorum run --status`).
 */
#ifndef QUORUM_RECORD_H
#define QUORUM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define FP_MAX_INPUTS 96
#define FP_NAME 80

typedef struct {
    int n;
    char name[FP_MAX_INPUTS][FP_NAME];
    uint64_t value[FP_MAX_INPUTS];
} Fingerprint;

void fp_init(Fingerprint *f);
void fp_add(Fingerprint *f, const char *name, uint64_t value);
/* The fingerprint's value: FNV-1a over every (name, value), in order. */
uint64_t fp_value(const Fingerprint *f);

/* Hash helpers that chain into h (start with FNV1A64_INIT). */
uint64_t fp_hash_str(uint64_t h, const char *s);
uint64_t fp_hash_i64(uint64_t h, int64_t v);
uint64_t fp_hash_f32(uint64_t h, float v);
/* FNV-1a of a whole file's bytes as stored (not decompressed); *ok = 0 when it cannot be read. */
uint64_t fp_file(const char *path, int *ok);
/* A cheap identity of a big file: size, mtime (ns), FNV-1a of its first and last MiB; the whole file's
 * FNV-1a when deep. *ok = 0 when it cannot be read. */
uint64_t fp_file_identity(const char *path, int deep, int *ok);

/* Record path for (stage, corpus); corpus NULL = the job. Caller frees. */
char *record_path(const char *out_dir, const char *stage, const char *corpus);
/* Writes the record; `output` is the stage's completion file relative to out_dir (NULL: none), whose
 * FNV-1a is stored. 0 or -1 after one error line. */
int record_write(const char *out_dir, const char *stage, const char *corpus, const Fingerprint *f,
                 const char *output);
/* 1 when the record exists and matches f and its output file still has the recorded checksum; else 0
 * with `why` set to one short reason ("no record", "input \"member rm0\" changed", "output ... changed").
 * *same_inputs (may be NULL) is set to 1 when the record's fingerprint equals f's, whatever the output. */
int record_check(const char *out_dir, const char *stage, const char *corpus, const Fingerprint *f,
                 int *same_inputs, char *why, size_t cap);

#endif /* QUORUM_RECORD_H */
