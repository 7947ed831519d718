/* clean_job.c - applies the cleaning rules to ingested shards and writes the cleaned corpus, the
 * per-pair actions and the ledger (see quorum/clean.h for the layout).
 *
 * Every rank reads the whole votes file and decides every pair (cheap: a few numbers per pair), so the
 * actions and the ledger are the same for any rank count. Ranks split only the shard work: rank r
 * rewrites input shards k with k % R == r. Rank 0 then stitches the per-shard JSONL parts, and writes
 * actions.jsonl, manifest.json and, last, ledger.json. */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "quorum/corpus.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- one corpus's inputs, the same on every rank ---- */
typedef struct {
    const JobCorpus *c;
    CleanMethod method;
    char *in_dir, *out_dir, *votes_file;
    CorpusManifest man;
    Votes v;
    uint8_t *action;    /* [v.n] */
    int64_t *shard_at;  /* [n_shards + 1]: votes index of each shard's first pair */
    uint64_t votes_checksum;
} CleanInput;

static void clean_input_free(CleanInput *in) {
    free(in->in_dir); free(in->out_dir); free(in->votes_file);
    corpus_manifest_free(&in->man);
    votes_free(&in->v);
    free(in->action);
    free(in->shard_at);
}

static int file_checksum(const char *path, uint64_t *out) {
    size_t n = 0;
    const char *err = NULL;
    char *data = file_read_all(path, &n, &err);
    if (!data) return quorum_input_error(path, "cannot read: %s", err);
    *out = fnv1a64(data, n, FNV1A64_INIT);
    free(data);
    return 0;
}

static int clean_input_load(CleanInput *in, const Job *job, const JobClean *cfg, const JobCorpus *c,
                            const char *override) {
    memset(in, 0, sizeof *in);
    in->c = c;
    in->method = cfg->method;
    in->in_dir = corpus_dir(job->out_dir, c->name);
    in->out_dir = clean_dir(job->out_dir, override, c->name);
    in->votes_file = votes_path(job->out_dir, c->name);
    if (corpus_manifest_read(&in->man, in->in_dir)) return -1;
    if (votes_read(&in->v, in->votes_file)) return -1;
    if (in->v.n != in->man.n_pairs) {
        char where[2048];
        snprintf(where, sizeof where, "%s:-:pair_id", in->votes_file);
        return quorum_input_error(where, "%lld pairs but the corpus manifest has %lld (re-run `quorum vote`)",
                                  (long long)in->v.n, (long long)in->man.n_pairs);
    }
    if (file_checksum(in->votes_file, &in->votes_checksum)) return -1;
    in->shard_at = xmalloc((size_t)(in->man.n_shards + 1) * sizeof(int64_t));
    in->shard_at[0] = 0;
    for (int64_t k = 0; k < in->man.n_shards; k++) in->shard_at[k + 1] = in->shard_at[k] + in->man.shard_pairs[k];
    in->action = xmalloc((size_t)(in->v.n ? in->v.n : 1));
    clean_calibrate(cfg, &in->v); /* the committee means of every rule and of cleaned.jsonl are calibrated */
    clean_decide(cfg, &in->v, in->action);
    return 0;
}

/* ---- the cleaned shard: kept and flipped pairs of one input shard ---- */
/* out = s's kept pairs as they are and its flipped pairs with chosen and rejected swapped. */
static void shard_filter(const Shard *s, const uint8_t *act, Shard *out) {
    ShardBuilder b;
    shard_builder_init(&b, s->corpus, s->split, s->index, s->first_line, s->last_line, s->format);
    for (int64_t i = 0; i < s->n; i++) {
        if (act[i] == ACTION_REMOVE) continue;
        Pair p;
        shard_get_pair(s, i, &p);
        if (act[i] == ACTION_FLIP) {
            const char *t = p.chosen;
            int64_t tl = p.chosen_len;
            p.chosen = p.rejected, p.chosen_len = p.rejected_len;
            p.rejected = t, p.rejected_len = tl;
        }
        shard_builder_add(&b, &p);
    }
    shard_builder_finish(&b, out);
}

/* ---- JSONL ---- */
/* One cleaned.jsonl line: the pair in its input layout (flips stored swapped) + its pass-through columns
 * + "quorum": id, split, action, bucket, agree count and the committee's mean margin (as voted). */
static void cleaned_line(Buf *b, const Shard *cs, int64_t j, const CleanInput *in, int64_t vi) {
    Pair p;
    shard_get_pair(cs, j, &p);
    CleanAction a = (CleanAction)in->action[vi];
    pair_layout_json(b, &p, in->c, a == ACTION_FLIP);
    buf_appendf(b, ",\"quorum\":{\"id\":%lld,\"split\":", (long long)p.id);
    json_append_string(b, in->man.split, (int64_t)strlen(in->man.split));
    buf_appendf(b, ",\"action\":\"%s\",\"bucket\":\"%s\",\"agree\":%d,\"mean_margin\":%.9g}}\n", clean_action_name(a),
                bucket_name((Bucket)in->v.bucket[vi]), (int)in->v.agree[vi], votes_mean_margin(&in->v, vi));
}

static char *part_path(const char *dir, int64_t k) {
    Buf b = {0};
    buf_appendf(&b, "%s/.cleaned-%05lld.jsonl.part", dir, (long long)k);
    return b.data;
}

/* Rewrites input shard k: cleaned shard + its JSONL part. Records the new checksum and pair count. */
static int clean_shard(const CleanInput *in, int64_t k, uint64_t *checksum, int64_t *n_pairs) {
    char *src = shard_path(in->in_dir, k), *dst = shard_path(in->out_dir, k), *part = part_path(in->out_dir, k);
    Shard s, cs;
    int rc = shard_read(&s, src);
    if (rc) goto out;
    const int64_t at = in->shard_at[k];
    if (s.n != in->man.shard_pairs[k] || shard_checksum(&s) != in->man.shard_checksum[k]) {
        rc = quorum_input_error(src, "%lld pairs, checksum %016" PRIx64 "; the manifest says %lld, %016" PRIx64
                                " (re-run `quorum ingest`)", (long long)s.n, shard_checksum(&s),
                                (long long)in->man.shard_pairs[k], in->man.shard_checksum[k]);
        goto out_shard;
    }
    for (int64_t i = 0; i < s.n; i++)
        if (s.pair_id[i] != in->v.pair_id[at + i]) {
            char where[2048];
            snprintf(where, sizeof where, "%s:%lld:pair_id", src, (long long)i);
            rc = quorum_input_error(where, "pair id %lld, the votes file has %lld there (re-run `quorum vote`)",
                                    (long long)s.pair_id[i], (long long)in->v.pair_id[at + i]);
            goto out_shard;
        }
    shard_filter(&s, in->action + at, &cs);
    rc = shard_write(&cs, dst);
    if (rc == 0) {
        Buf jl = {0};
        for (int64_t j = 0, i = 0; j < cs.n; j++, i++) {
            while (in->action[at + i] == ACTION_REMOVE) i++; /* cs pair j is input pair i */
            cleaned_line(&jl, &cs, j, in, at + i);
        }
        if (file_write_atomic(part, jl.data ? jl.data : "", jl.len)) rc = quorum_input_error(part, "cannot write");
        buf_free(&jl);
        *checksum = shard_checksum(&cs);
        *n_pairs = cs.n;
    }
    shard_free(&cs);
out_shard:
    shard_free(&s);
out:
    free(src); free(dst); free(part);
    return rc;
}

/* ---- rank 0's files ---- */
static int concat_parts(const CleanInput *in) {
    char *path = path_join(in->out_dir, "cleaned.jsonl");
    Buf tmp = {0};
    buf_appendf(&tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp.data, "wb");
    int rc = f ? 0 : quorum_input_error(tmp.data, "cannot create");
    for (int64_t k = 0; rc == 0 && k < in->man.n_shards; k++) {
        char *part = part_path(in->out_dir, k);
        size_t n = 0;
        const char *err = NULL;
        char *data = file_read_all(part, &n, &err);
        if (!data) rc = quorum_input_error(part, "cannot read: %s", err);
        else if (fwrite(data, 1, n, f) != n) rc = quorum_input_error(tmp.data, "write failed");
        free(data);
        free(part);
    }
    if (f && fclose(f) != 0 && rc == 0) rc = quorum_input_error(tmp.data, "write failed");
    if (rc == 0 && rename(tmp.data, path) != 0) rc = quorum_input_error(path, "cannot rename into place");
    if (rc) unlink(tmp.data);
    for (int64_t k = 0; rc == 0 && k < in->man.n_shards; k++) {
        char *part = part_path(in->out_dir, k);
        unlink(part);
        free(part);
    }
    buf_free(&tmp);
    free(path);
    return rc;
}

static int write_buf(const char *dir, const char *name, const Buf *b) {
    char *path = path_join(dir, name);
    int rc = file_write_atomic(path, b->data ? b->data : "", b->len) ? quorum_input_error(path, "cannot write") : 0;
    free(path);
    return rc;
}

static int write_actions(const CleanInput *in) {
    Buf b = {0};
    for (int64_t i = 0; i < in->v.n; i++)
        buf_appendf(&b, "{\"id\":%lld,\"bucket\":\"%s\",\"action\":\"%s\"}\n", (long long)in->v.pair_id[i],
                    bucket_name((Bucket)in->v.bucket[i]), clean_action_name((CleanAction)in->action[i]));
    int rc = write_buf(in->out_dir, "actions.jsonl", &b);
    buf_free(&b);
    return rc;
}

static char *hex64(uint64_t x, char buf[17]) {
    snprintf(buf, 17, "%016" PRIx64, x);
    return buf;
}

/* The cleaned folder's manifest: the ingest manifest with the cleaned shards' counts and checksums. */
static int write_manifest(const CleanInput *in, const uint64_t *cks, const int64_t *npairs, int64_t kept_pairs) {
    CorpusManifest m = in->man;
    m.n_pairs = kept_pairs;
    m.n_rejected = in->man.n_lines - kept_pairs;
    m.shard_checksum = (uint64_t *)cks;
    m.shard_pairs = (int64_t *)npairs;
    return corpus_manifest_write(&m, in->out_dir) ? -1 : 0;
}

/* A float32 job value as the decimal the user wrote (0.15f -> 0.15, not 0.15000000596). */
static double round6(float x) { return round((double)x * 1e6) / 1e6; }

static cJSON *num_or_null(double x) { return isnan(x) ? cJSON_CreateNull() : cJSON_CreateNumber(x); }

/* The ledger's "calibration": the normalization, and per reward member its weight and agreements. */
static cJSON *calibration_json(const CleanInput *in, const JobClean *cfg) {
    static const char *const NORM[] = {"none", "zscore", "rank"};
    double label[JOB_MAX_MEMBERS], loo[JOB_MAX_MEMBERS];
    clean_member_agreement(&in->v, label, loo);
    cJSON *c = cJSON_CreateObject(), *w = cfg->weights[0] ? cJSON_Parse(cfg->weights) : NULL;
    cJSON_AddStringToObject(c, "normalize", NORM[cfg->normalize]);
    cJSON *members = cJSON_AddArrayToObject(c, "members");
    for (int m = 0; m < in->v.n_members; m++) {
        if (in->v.kind[m] != MEMBER_REWARD) continue;
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(w, in->v.members[m]);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", in->v.members[m]);
        cJSON_AddNumberToObject(o, "weight", cJSON_IsNumber(wm) ? wm->valuedouble : 1.0);
        cJSON_AddItemToObject(o, "label_agreement", num_or_null(label[m]));
        cJSON_AddItemToObject(o, "loo_agreement", num_or_null(loo[m]));
        cJSON_AddItemToArray(members, o);
    }
    cJSON_Delete(w);
    return c;
}

static cJSON *ledger_json(const CleanInput *in, const JobClean *cfg, const Ledger *l) {
    char hex[17];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "corpus", in->c->name);
    cJSON_AddStringToObject(j, "split", in->man.split);
    cJSON_AddStringToObject(j, "method", clean_method_name(in->method));
    cJSON *params = cJSON_AddObjectToObject(j, "params");
    cJSON *splits = cJSON_AddArrayToObject(params, "splits");
    for (int s = 0; s < cfg->n_splits; s++) cJSON_AddItemToArray(splits, cJSON_CreateString(cfg->splits[s]));
    cJSON_AddNumberToObject(params, "bad_threshold", round6(cfg->bad_threshold));
    cJSON_AddNumberToObject(params, "p", round6(cfg->p));
    cJSON_AddNumberToObject(params, "margin_count", (double)clean_margin_count(cfg->p, in->v.n));
    cJSON *committee = cJSON_AddObjectToObject(j, "committee");
    cJSON *members = cJSON_AddArrayToObject(committee, "members");
    for (int m = 0; m < in->v.n_members; m++) cJSON_AddItemToArray(members, cJSON_CreateString(in->v.members[m]));
    cJSON_AddNumberToObject(committee, "margin", round6(in->v.margin));
    cJSON_AddNumberToObject(committee, "high_frac", round6(in->v.high_frac));
    cJSON_AddItemToObject(j, "calibration", calibration_json(in, cfg));
    cJSON_AddNumberToObject(j, "lines", (double)l->lines);
    cJSON_AddNumberToObject(j, "pairs", (double)in->v.n);
    static const char *const ACT_KEYS[ACTION_COUNT] = {"kept", "flipped", "removed"};
    cJSON *buckets = cJSON_AddObjectToObject(j, "buckets");
    for (int b = 0; b < BUCKET_COUNT; b++) {
        cJSON *row = cJSON_AddObjectToObject(buckets, bucket_name((Bucket)b));
        for (int a = 0; a < ACTION_COUNT; a++) cJSON_AddNumberToObject(row, ACT_KEYS[a], (double)l->count[b][a]);
    }
    cJSON *tot = cJSON_AddObjectToObject(j, "totals");
    for (int a = 0; a < ACTION_COUNT; a++) cJSON_AddNumberToObject(tot, ACT_KEYS[a], (double)ledger_total(l, (CleanAction)a));
    cJSON_AddNumberToObject(tot, "rejected", (double)l->rejected);
    cJSON_AddBoolToObject(j, "balanced", ledger_balanced(l));
    cJSON *inputs = cJSON_AddObjectToObject(j, "inputs");
    cJSON_AddStringToObject(inputs, "source", in->man.source);
    cJSON_AddStringToObject(inputs, "source_checksum", hex64(in->man.source_checksum, hex));
    cJSON_AddStringToObject(inputs, "votes", in->votes_file);
    cJSON_AddStringToObject(inputs, "votes_checksum", hex64(in->votes_checksum, hex));
    return j;
}

static int write_ledger(const CleanInput *in, const JobClean *cfg) {
    Ledger l;
    memset(&l, 0, sizeof l);
    l.lines = in->man.n_lines;
    l.rejected = in->man.n_rejected;
    ledger_tally(&l, &in->v, in->action);
    qCheck(ledger_balanced(&l), "the ingest manifest's counts disagree with the votes file",
           "%s: ledger does not balance", in->c->name);
    cJSON *j = ledger_json(in, cfg, &l);
    char *path = path_join(in->out_dir, "ledger.json");
    int rc = json_write_atomic(path, j);
    free(path);
    quorum_log("clean %s (%s): %lld lines: %lld kept, %lld flipped, %lld removed, %lld rejected at ingest",
               in->c->name, clean_method_name(in->method), (long long)l.lines, (long long)ledger_total(&l, ACTION_KEEP),
               (long long)ledger_total(&l, ACTION_FLIP), (long long)ledger_total(&l, ACTION_REMOVE),
               (long long)l.rejected);
    cJSON_Delete(j);
    return rc;
}

/* Removes a previous run's ledger.json and manifest.json: they are written last, so while they are
 * absent the folder reads as incomplete. */
static void unlink_completion_marks(const char *dir) {
    static const char *const names[] = {"ledger.json", "manifest.json"};
    for (int i = 0; i < 2; i++) {
        char *p = path_join(dir, names[i]);
        unlink(p);
        free(p);
    }
}

/* Collective: 1 when any rank failed. */
static int any_failed(int rc) {
    int mine = rc != 0, any = 0;
    mpiCheck(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return any;
}

static int clean_corpus(const Job *job, const JobClean *cfg, const JobCorpus *c, const char *override) {
    CleanInput in;
    int rc = clean_input_load(&in, job, cfg, c, override);
    if (any_failed(rc)) { clean_input_free(&in); return -1; }
    int rank = quorum_rank(), world = quorum_world();
    int64_t ns = in.man.n_shards;
    uint64_t *cks = xcalloc((size_t)(ns ? ns : 1), sizeof *cks);
    int64_t *npairs = xcalloc((size_t)(ns ? ns : 1), sizeof *npairs);
    if (mkdir_p(in.out_dir)) rc = quorum_input_error(in.out_dir, "cannot create the folder");
    if (rank == 0) unlink_completion_marks(in.out_dir); /* a re-run that fails must not look complete */
    if (rank == 0) dir_remove_shards_from(in.out_dir, ns); /* left by a longer input */
    for (int64_t k = rank; rc == 0 && k < ns; k += world) rc = clean_shard(&in, k, &cks[k], &npairs[k]);
    if (!any_failed(rc)) {
        /* Each shard was written by exactly one rank; the others hold zeros, so SUM gathers. */
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, cks, (int)ns, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD));
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, npairs, (int)ns, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD));
        if (rank == 0) {
            int64_t kept = 0;
            for (int64_t k = 0; k < ns; k++) kept += npairs[k];
            rc = concat_parts(&in);
            if (rc == 0) rc = write_actions(&in);
            if (rc == 0) rc = write_manifest(&in, cks, npairs, kept);
            if (rc == 0) rc = write_ledger(&in, cfg); /* last: its presence means the folder is complete */
        }
        rc = any_failed(rc) ? -1 : 0;
    } else {
        rc = -1;
    }
    free(cks);
    free(npairs);
    clean_input_free(&in);
    return rc;
}

/* 1 when the method's member kind is in the committee (reward methods always run); consensus_* when
 * every method it combines is. */
static int method_runnable(const Job *job, CleanMethod m) {
    if (m == CLEAN_CONSENSUS_R || m == CLEAN_CONSENSUS_F) {
        for (int k = 0; k < job->clean.n_consensus; k++) {
            CleanMethod c;
            if (clean_method_parse(job->clean.consensus[k], &c) || !method_runnable(job, c)) return 0;
        }
        return 1;
    }
    MemberKind kind = clean_method_kind(m);
    for (int k = 0; k < job->n_members; k++)
        if (job->committee[k].kind == kind) return 1;
    return kind == MEMBER_REWARD;
}

int clean_job_method(const Job *job, const char *method_override) {
    if (method_override && !strcmp(method_override, "all")) {
        for (int m = CLEAN_NONE; m < CLEAN_METHOD_COUNT; m++) {
            if (!method_runnable(job, (CleanMethod)m)) {
                quorum_log("clean: %s skipped: the committee has no %s member", clean_method_name((CleanMethod)m),
                           member_kind_name(clean_method_kind((CleanMethod)m)));
                continue;
            }
            if (clean_job_method(job, clean_method_name((CleanMethod)m))) return -1;
        }
        return 0;
    }
    JobClean cfg = job->clean;
    if (method_override && clean_method_parse(method_override, &cfg.method))
        return quorum_input_error("--method", "unknown cleaning method \"%s\"", method_override);
    if (!method_runnable(job, cfg.method))
        return quorum_input_error(job->path, "clean method %s needs a committee member of kind \"%s\"; the committee "
                                  "has none", clean_method_name(cfg.method), member_kind_name(clean_method_kind(cfg.method)));
    for (int i = 0; i < job->n_corpora; i++)
        if (clean_corpus(job, &cfg, &job->corpora[i], method_override)) return -1;
    return 0;
}

int clean_job(const Job *job) { return clean_job_method(job, NULL); }
