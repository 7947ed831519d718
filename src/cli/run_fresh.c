/*
 * run_fresh.c - is a stage of `quorum run` current? Stage fingerprints (quorum/record.h) per corpus:
 *
 *   ingest  the source's bytes (decompressed FNV-1a) + every ingest option of the corpus (the whole
 *           corpus entry of the job but its path) + shard_size + reject_limit
 *   score   the ingest manifest (source checksum, shard checksums and pair counts) + every member's
 *           identity (member_fingerprint: config, weights, tokenizer, template, max_length)
 *   vote    the score fingerprint + the vote section + the corpus name and split + the member names
 *   clean   the vote fingerprint + the clean section + out_dir (the ledger names the votes file by path)
 *   report  the clean fingerprints of the corpora it covers (per job)
 *   dpo     the clean fingerprints of its corpora + the policy's identity + the dpo section + seed
 *
 * A stage is current iff its record holds the fingerprint computed now and its completion file
 * (manifest, votes file, ledger, report.json, final model) still has the recorded checksum; score is
 * current iff every score file carries the member, member fingerprint and shard checksum of now.
 * Rank 0 only (reads files); cmd_run broadcasts the answers.
 */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "quorum/corpus.h"
#include "quorum/record.h"
#include "quorum/score.h"
#include "quorum/vote.h"
#include "run_stages.h"

#include <stdlib.h>
#include <string.h>

const char *const STAGE_NAMES[STAGE_COUNT] = {"ingest", "score", "vote", "clean", "report", "dpo"};

/* FNV-1a of n bytes of a config struct (job_defaults zero-fills, so padding and string tails are 0). */
static uint64_t hash_struct(const void *p, size_t n) { return fnv1a64(p, n, FNV1A64_INIT); }

static int fp_ingest(const Job *job, const JobCorpus *c, Fingerprint *f, char *why, size_t cap) {
    const char *err = NULL;
    uint64_t sum = 0;
    int64_t records = 0; /* streamed as ingest reads it (JSONL or JSON array, gzip or not): never slurped */
    if (corpus_source_scan(c->path, c->max_pairs, &sum, &records, &err) != 0) {
        snprintf(why, cap, "source %s unreadable: %s", c->path, err);
        return -1;
    }
    fp_add(f, "source", fp_hash_i64(sum, records));
    JobCorpus k;
    memcpy(&k, c, sizeof k);
    memset(k.path, 0, sizeof k.path);
    fp_add(f, "options", fp_hash_f32(fp_hash_i64(hash_struct(&k, sizeof k), job->shard_size), job->reject_limit));
    return 0;
}

static int fp_score(const Job *job, const JobCorpus *c, const uint64_t *member_fp, Fingerprint *f, char *why,
                    size_t cap) {
    char *dir = corpus_dir(job->out_dir, c->name), *mp = path_join(dir, "manifest.json");
    CorpusManifest m;
    int rc = file_exists(mp) && corpus_manifest_read(&m, dir) == 0 ? 0 : -1;
    free(mp);
    free(dir);
    if (rc) { snprintf(why, cap, "corpus \"%s\" not ingested", c->name); return -1; }
    uint64_t h = fp_hash_i64(fp_hash_i64(FNV1A64_INIT, (int64_t)m.source_checksum), m.n_lines);
    for (int64_t k = 0; k < m.n_shards; k++) h = fp_hash_i64(fp_hash_i64(h, (int64_t)m.shard_checksum[k]), m.shard_pairs[k]);
    fp_add(f, "shards", h);
    corpus_manifest_free(&m);
    char name[FP_NAME];
    for (int k = 0; k < job->n_members; k++) {
        snprintf(name, sizeof name, "member %s", job->committee[k].name);
        fp_add(f, name, member_fp[k]);
    }
    return 0;
}

/* The fingerprint of the stage before s for corpus c, as one value. */
static int fp_upstream(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp, uint64_t *out,
                       char *why, size_t cap) {
    Fingerprint *up = xmalloc(sizeof *up);
    int rc = stage_fingerprint(s, job, c, member_fp, up, why, cap);
    *out = fp_value(up);
    free(up);
    return rc;
}

/* Fingerprints of the clean stage of every corpus the job trains on (dpo) or covers (report). */
static int fp_cleans(const Job *job, const char *only, const uint64_t *member_fp, Fingerprint *f, char *why,
                     size_t cap) {
    char name[FP_NAME];
    for (int i = 0; i < job->n_corpora; i++) {
        if (only && only[0] && strcmp(only, job->corpora[i].name)) continue;
        uint64_t v;
        if (fp_upstream(STAGE_CLEAN, job, &job->corpora[i], member_fp, &v, why, cap)) return -1;
        snprintf(name, sizeof name, "clean %s", job->corpora[i].name);
        fp_add(f, name, v);
    }
    return 0;
}

static int fp_dpo(const Job *job, const uint64_t *member_fp, Fingerprint *f, char *why, size_t cap) {
    if (fp_cleans(job, job->dpo.corpus, member_fp, f, why, cap)) return -1;
    JobMember policy;
    memset(&policy, 0, sizeof policy);
    snprintf(policy.name, sizeof policy.name, "policy");
    snprintf(policy.path, sizeof policy.path, "%s", job->dpo.policy);
    policy.max_length = job->dpo.max_length;
    uint64_t v;
    if (member_fingerprint(&policy, &v)) { snprintf(why, cap, "policy %s unreadable", job->dpo.policy); return -1; }
    fp_add(f, "policy", v);
    JobDpo d;
    memcpy(&d, &job->dpo, sizeof d);
    memset(d.policy, 0, sizeof d.policy);
    fp_add(f, "options", fp_hash_i64(hash_struct(&d, sizeof d), (int64_t)job->seed));
    return 0;
}

int stage_fingerprint(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp, Fingerprint *f,
                      char *why, size_t cap) {
    fp_init(f);
    uint64_t v;
    switch (s) {
    case STAGE_INGEST: return fp_ingest(job, c, f, why, cap);
    case STAGE_SCORE: return fp_score(job, c, member_fp, f, why, cap);
    case STAGE_VOTE: {
        if (fp_upstream(STAGE_SCORE, job, c, member_fp, &v, why, cap)) return -1;
        fp_add(f, "score", v);
        uint64_t h = fp_hash_str(fp_hash_str(hash_struct(&job->vote, sizeof job->vote), c->name), c->split);
        for (int k = 0; k < job->n_members; k++) h = fp_hash_str(h, job->committee[k].name);
        fp_add(f, "config", h);
        return 0;
    }
    case STAGE_CLEAN:
        if (fp_upstream(STAGE_VOTE, job, c, member_fp, &v, why, cap)) return -1;
        fp_add(f, "vote", v);
        fp_add(f, "config", hash_struct(&job->clean, sizeof job->clean));
        fp_add(f, "out_dir", fp_hash_str(FNV1A64_INIT, job->out_dir)); /* the ledger names the votes file */
        return 0;
    case STAGE_REPORT: return fp_cleans(job, NULL, member_fp, f, why, cap);
    case STAGE_DPO: return fp_dpo(job, member_fp, f, why, cap);
    default: return -1;
    }
}

/* The completion file of stage s relative to out_dir (NULL for score: checked per file). Caller frees. */
char *stage_output(Stage s, const Job *job, const JobCorpus *c) {
    Buf b = {0};
    switch (s) {
    case STAGE_INGEST: buf_appendf(&b, "corpora/%s/manifest.json", c->name); break;
    case STAGE_VOTE: buf_appendf(&b, "votes/%s.h5", c->name); break;
    case STAGE_CLEAN: buf_appendf(&b, "cleaned/%s/ledger.json", c->name); break;
    case STAGE_REPORT: buf_append_str(&b, "report/report.json"); break;
    case STAGE_DPO: buf_append_str(&b, "dpo/final/config.json"); break;
    default: return NULL;
    }
    (void)job;
    return b.data;
}

static int job_wide(Stage s) { return s == STAGE_REPORT || s == STAGE_DPO; }

/* Score: every member x shard file present with the member, its fingerprint and the shard checksum. */
static int scores_current(const Job *job, const JobCorpus *c, const uint64_t *member_fp, char *why, size_t cap) {
    char *dir = corpus_dir(job->out_dir, c->name), *mp = path_join(dir, "manifest.json");
    CorpusManifest m;
    int rc = file_exists(mp) ? corpus_manifest_read(&m, dir) : -1;
    free(mp);
    free(dir);
    if (rc) { snprintf(why, cap, "corpus \"%s\" not ingested", c->name); return 0; }
    int current = 1;
    for (int k = 0; k < job->n_members && current; k++) {
        for (int64_t s = 0; s < m.n_shards && current; s++) {
            char *p = score_path(job->out_dir, c->name, job->committee[k].name, s);
            current = score_file_current(p, job->committee[k].name, member_fp[k], m.shard_checksum[s]);
            if (!current)
                snprintf(why, cap, "%s %s", p, file_exists(p) ? "is stale (member, member or shard changed)" : "is missing");
            free(p);
        }
    }
    corpus_manifest_free(&m);
    return current;
}

int stage_current(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp, char *why, size_t cap) {
    if (s == STAGE_SCORE) return scores_current(job, c, member_fp, why, cap);
    Fingerprint *f = xmalloc(sizeof *f);
    int current = stage_fingerprint(s, job, c, member_fp, f, why, cap) == 0 &&
                  record_check(job->out_dir, STAGE_NAMES[s], job_wide(s) ? NULL : c->name, f, NULL, why, cap);
    free(f);
    return current;
}

int stage_record(Stage s, const Job *job, const JobCorpus *c, const uint64_t *member_fp) {
    if (s == STAGE_SCORE) return 0;
    Fingerprint *f = xmalloc(sizeof *f);
    char why[1024];
    int rc = stage_fingerprint(s, job, c, member_fp, f, why, sizeof why);
    if (rc) quorum_input_error(job->path, "stage %s: cannot fingerprint its inputs: %s", STAGE_NAMES[s], why);
    char *out = stage_output(s, job, c);
    if (rc == 0) rc = record_write(job->out_dir, STAGE_NAMES[s], job_wide(s) ? NULL : c->name, f, out);
    free(out);
    free(f);
    return rc;
}
