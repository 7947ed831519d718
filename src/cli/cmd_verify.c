/*
 * cmd_verify.c - `quorum verify --job J [--out-dir D]`: checks a job's output folder against its inputs.
 *
 * One line per check on stdout, "ok: <file>: <what>" or "FAIL: <file>: <what>"; exit 1 when any check
 * fails. Readers the stages share (manifest, shard, score file, votes) also print their own one-line
 * error on stderr when a file is unreadable. Per corpus, in pipeline order:
 *   ingest  the source's FNV-1a (decompressed bytes) and line count still match the manifest;
 *           n_lines == n_pairs + n_rejected; every shard reads, holds the manifest's pair count and
 *           checksum, and its pair ids are strictly increasing inside [first_line, last_line];
 *           rejects.jsonl has n_rejected lines
 *   score   a score file per member x shard, its member attribute, pair ids == the shard's, shard_checksum ==
 *           the manifest's, member_fingerprint == the member's now
 *   vote    votes pair ids == the shards' ids concatenated; members == the job's committee
 *   clean   ledger.json balanced and consistent with the ingest manifest, the cleaned manifest, the
 *           votes file (votes_checksum) and the source checksum; cleaned shards match the cleaned
 *           manifest; cleaned.jsonl has kept + flipped lines, actions.jsonl one line per pair
 *   records (outputs of `quorum run`): every link of the fingerprint chain (run_fresh.c) recomputed now
 *           equals its record, and each completion file is unchanged; a FAIL names the link and the input
 * A stage whose outputs are absent fails (verify checks a finished pipeline). Rank 0 does the work.
 */
#include "quorum/clean.h"
#include "quorum/cli.h"
#include "quorum/common.h"
#include "quorum/opts.h"
#include "quorum/corpus.h"
#include "quorum/job.h"
#include "quorum/score.h"
#include "quorum/vote.h"
#include "run_stages.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int n_ok, n_fail;
} Verdicts;

/* Prints one check's line; returns ok. */
static int check(Verdicts *v, int ok, const char *file, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int check(Verdicts *v, int ok, const char *file, const char *fmt, ...) {
    char what[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    printf("%s: %s: %s\n", ok ? "ok" : "FAIL", file, what);
    fflush(stdout);
    if (ok) v->n_ok++;
    else v->n_fail++;
    return ok;
}

/* Lines as ingest counts them: newline-terminated ones plus a last unterminated one. */
static int64_t count_lines(const char *data, size_t len) {
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) n += data[i] == '\n';
    return n + (len > 0 && data[len - 1] != '\n');
}

/* Line count of a file, or -1 when it cannot be read. */
static int64_t file_lines(const char *path) {
    size_t len = 0;
    const char *err = NULL;
    char *data = file_read_all(path, &len, &err);
    if (!data) return -1;
    int64_t n = count_lines(data, len);
    free(data);
    return n;
}

/* ---- ingest ---- */

static void verify_source(Verdicts *v, const JobCorpus *c, const CorpusManifest *m) {
    const char *err = NULL;
    uint64_t sum = 0;
    int64_t lines = 0; /* records, JSONL or JSON array, as ingest counts them */
    int ok = corpus_source_scan(c->path, c->max_pairs, &sum, &lines, &err) == 0;
    if (!check(v, ok, c->path, "source readable%s%s", ok ? "" : ": ", ok ? "" : err)) return;
    check(v, sum == m->source_checksum, c->path, "source checksum %016" PRIx64 "%s manifest's %016" PRIx64, sum,
          sum == m->source_checksum ? " ==" : " != the", m->source_checksum);
    check(v, lines == m->n_lines, c->path, "%lld source lines, manifest n_lines %lld", (long long)lines,
          (long long)m->n_lines);
}

/* Reads every shard of a corpus folder against its manifest; ids[] gets the pair ids concatenated in
 * shard order (NULL when a shard failed). `what` names the folder's role in messages. */
static int64_t *verify_shards(Verdicts *v, const char *dir, const CorpusManifest *m) {
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)(m->n_pairs + 1));
    int64_t at = 0, bad = 0;
    for (int64_t k = 0; k < m->n_shards; k++) {
        char *p = shard_path(dir, k);
        Shard s;
        if (!check(v, shard_read(&s, p) == 0, p, "shard readable")) { free(p); bad++; continue; }
        uint64_t sum = shard_checksum(&s);
        int ok = check(v, sum == m->shard_checksum[k], p, "checksum %016" PRIx64 "%s manifest's %016" PRIx64, sum,
                       sum == m->shard_checksum[k] ? " ==" : " != the", m->shard_checksum[k]);
        ok &= check(v, s.n == m->shard_pairs[k], p, "%lld pairs, manifest says %lld", (long long)s.n,
                    (long long)m->shard_pairs[k]);
        int64_t i = 0;
        for (; i < s.n; i++) {
            int64_t id = s.pair_id[i];
            if (id < s.first_line || id > s.last_line || (i > 0 && id <= s.pair_id[i - 1])) break;
        }
        if (i < s.n)
            ok &= check(v, 0, p, "pair %lld: id %lld is a duplicate, out of order, or outside lines [%lld, %lld]",
                        (long long)i, (long long)s.pair_id[i], (long long)s.first_line, (long long)s.last_line);
        if (ok && at + s.n <= m->n_pairs) {
            memcpy(ids + at, s.pair_id, sizeof(int64_t) * (size_t)s.n);
            at += s.n;
        } else {
            bad++;
        }
        shard_free(&s);
        free(p);
    }
    char *extra = shard_path(dir, m->n_shards); /* a shard the manifest does not list (input shrank) */
    check(v, !file_exists(extra), extra, "%s (the manifest lists %lld shards)", file_exists(extra) ? "present" : "absent",
          (long long)m->n_shards);
    free(extra);
    if (bad || at != m->n_pairs) { free(ids); return NULL; }
    return ids;
}

static void verify_rejects(Verdicts *v, const char *dir, const CorpusManifest *m) {
    char *p = path_join(dir, "rejects.jsonl");
    int64_t n = file_lines(p);
    check(v, n == m->n_rejected, p, n < 0 ? "missing or unreadable (manifest n_rejected %lld)"
                                          : "%lld lines, manifest n_rejected %lld",
          n < 0 ? (long long)m->n_rejected : (long long)n, (long long)m->n_rejected);
    free(p);
}

/* ---- score ---- */

static void verify_scores(Verdicts *v, const Job *job, const JobCorpus *c, const char *dir, const CorpusManifest *m,
                          const uint64_t *member_fp) {
    float *ch = NULL, *rj = NULL;
    for (int64_t k = 0; k < m->n_shards; k++) {
        char *sp = shard_path(dir, k);
        Shard s;
        int have_shard = shard_read(&s, sp) == 0;
        free(sp);
        for (int mi = 0; mi < job->n_members; mi++) {
            char *p = score_path(job->out_dir, c->name, job->committee[mi].name, k);
            if (!check(v, file_exists(p), p, "score file present")) { free(p); continue; }
            if (have_shard) {
                ch = xrealloc(ch, sizeof(float) * (size_t)(s.n + 1));
                rj = xrealloc(rj, sizeof(float) * (size_t)(s.n + 1));
                check(v, score_file_read(p, job->committee[mi].name, s.n, s.pair_id, ch, rj) == 0, p,
                      "member attribute == \"%s\", %lld pair ids == the shard's, rewards finite",
                      job->committee[mi].name, (long long)s.n);
            }
            check(v, score_file_current(p, job->committee[mi].name, member_fp[mi], m->shard_checksum[k]), p,
                  "shard_checksum == the manifest's, member_fingerprint == the member's now");
            free(p);
        }
        if (have_shard) shard_free(&s);
    }
    free(ch);
    free(rj);
}

/* ---- vote ---- */

static void verify_votes(Verdicts *v, const Job *job, const JobCorpus *c, const CorpusManifest *m, const int64_t *ids) {
    char *p = votes_path(job->out_dir, c->name);
    Votes vt;
    if (!check(v, file_exists(p) && votes_read(&vt, p) == 0, p, "votes file readable")) { free(p); return; }
    int same = vt.n == m->n_pairs;
    int64_t i = 0;
    if (same && ids)
        for (; i < vt.n && vt.pair_id[i] == ids[i]; i++) {}
    if (!ids) check(v, 0, p, "pair ids not compared: a shard failed its checks");
    else if (!same) check(v, 0, p, "%lld pairs, the corpus has %lld", (long long)vt.n, (long long)m->n_pairs);
    else check(v, i == vt.n, p, i == vt.n ? "%lld pair ids == the shards' ids" : "pair %lld: id differs from the shards'",
               (long long)i);
    int members = vt.n_members == job->n_members;
    for (int k = 0; members && k < vt.n_members; k++) members = !strcmp(vt.members[k], job->committee[k].name);
    check(v, members, p, "members == the job's committee (%d)", job->n_members);
    votes_free(&vt);
    free(p);
}

/* ---- clean ---- */

typedef struct {
    int64_t lines, pairs, kept, flipped, removed, rejected;
    int balanced;
    char source_checksum[32], votes_checksum[32];
} LedgerView;

static int ledger_num(const cJSON *o, const char *key, int64_t *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble != (double)(int64_t)x->valuedouble) return -1;
    *out = (int64_t)x->valuedouble;
    return 0;
}

static int ledger_str(const cJSON *o, const char *key, char *out, size_t cap) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(x) || strlen(x->valuestring) >= cap) return -1;
    strcpy(out, x->valuestring);
    return 0;
}

/* Parses ledger.json; the bucket rows must add up to the totals. 0, or -1 with *why set. */
static int ledger_load(const char *path, LedgerView *l, const char **why) {
    size_t len = 0;
    const char *err = NULL;
    char *text = file_read_all(path, &len, &err);
    if (!text) { *why = "missing or unreadable"; return -1; }
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(o, "totals"), *bk = cJSON_GetObjectItemCaseSensitive(o, "buckets");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "inputs"), *bal = cJSON_GetObjectItemCaseSensitive(o, "balanced");
    int rc = cJSON_IsObject(o) && cJSON_IsObject(tot) && cJSON_IsObject(bk) && cJSON_IsObject(in) && cJSON_IsBool(bal) ? 0 : -1;
    if (rc == 0)
        rc = ledger_num(o, "lines", &l->lines) | ledger_num(o, "pairs", &l->pairs) | ledger_num(tot, "kept", &l->kept) |
             ledger_num(tot, "flipped", &l->flipped) | ledger_num(tot, "removed", &l->removed) |
             ledger_num(tot, "rejected", &l->rejected) |
             ledger_str(in, "source_checksum", l->source_checksum, sizeof l->source_checksum) |
             ledger_str(in, "votes_checksum", l->votes_checksum, sizeof l->votes_checksum);
    *why = "malformed (expected lines, pairs, totals, buckets, balanced, inputs)";
    if (rc == 0) {
        l->balanced = cJSON_IsTrue(bal);
        static const char *const act[3] = {"kept", "flipped", "removed"};
        int64_t want[3] = {l->kept, l->flipped, l->removed}, sum[3] = {0, 0, 0};
        for (const cJSON *row = bk->child; row && rc == 0; row = row->next)
            for (int a = 0; a < 3 && rc == 0; a++) {
                int64_t x = 0;
                rc = ledger_num(row, act[a], &x);
                sum[a] += x;
            }
        if (rc == 0 && (sum[0] != want[0] || sum[1] != want[1] || sum[2] != want[2])) {
            *why = "bucket rows do not add up to the totals";
            rc = -1;
        }
    }
    cJSON_Delete(o);
    return rc ? -1 : 0;
}

static uint64_t file_fnv(const char *path, int *ok) {
    size_t len = 0;
    const char *err = NULL;
    char *data = file_read_all(path, &len, &err);
    *ok = data != NULL;
    uint64_t h = data ? fnv1a64(data, len, FNV1A64_INIT) : 0;
    free(data);
    return h;
}

static void verify_clean(Verdicts *v, const Job *job, const JobCorpus *c, const CorpusManifest *m) {
    char *dir = clean_dir(job->out_dir, NULL, c->name);
    char *lp = path_join(dir, "ledger.json");
    LedgerView l;
    memset(&l, 0, sizeof l);
    const char *why = NULL;
    int loaded = ledger_load(lp, &l, &why) == 0;
    if (!check(v, loaded, lp, "ledger readable%s%s", loaded ? "" : ": ", loaded ? "" : why)) goto out;
    int64_t sum = l.kept + l.flipped + l.removed + l.rejected;
    check(v, l.balanced && sum == l.lines, lp, "balanced: lines %lld %s kept %lld + flipped %lld + removed %lld + rejected %lld",
          (long long)l.lines, sum == l.lines ? "==" : "!=", (long long)l.kept, (long long)l.flipped, (long long)l.removed,
          (long long)l.rejected);
    check(v, l.lines == m->n_lines && l.rejected == m->n_rejected && l.pairs == m->n_pairs, lp,
          "lines %lld, rejected %lld, pairs %lld vs the ingest manifest's %lld, %lld, %lld", (long long)l.lines,
          (long long)l.rejected, (long long)l.pairs, (long long)m->n_lines, (long long)m->n_rejected, (long long)m->n_pairs);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, m->source_checksum);
    check(v, !strcmp(hex, l.source_checksum), lp, "source_checksum %s, the ingest manifest's %s", l.source_checksum, hex);
    char *vp = votes_path(job->out_dir, c->name);
    int ok = 0;
    snprintf(hex, sizeof hex, "%016" PRIx64, file_fnv(vp, &ok));
    check(v, ok && !strcmp(hex, l.votes_checksum), lp, "votes_checksum %s, %s now %s", l.votes_checksum, vp, ok ? hex : "unreadable");
    free(vp);

    CorpusManifest cm;
    if (check(v, corpus_manifest_read(&cm, dir) == 0, dir, "cleaned manifest.json readable")) {
        check(v, cm.n_lines == l.lines && cm.n_pairs == l.kept + l.flipped && cm.n_rejected == l.removed + l.rejected, dir,
              "cleaned manifest: n_lines %lld, n_pairs %lld, n_rejected %lld (ledger: %lld, %lld, %lld)",
              (long long)cm.n_lines, (long long)cm.n_pairs, (long long)cm.n_rejected, (long long)l.lines,
              (long long)(l.kept + l.flipped), (long long)(l.removed + l.rejected));
        free(verify_shards(v, dir, &cm));
        corpus_manifest_free(&cm);
    }
    static const char *const files[2] = {"cleaned.jsonl", "actions.jsonl"};
    int64_t want[2] = {l.kept + l.flipped, l.pairs};
    for (int f = 0; f < 2; f++) {
        char *p = path_join(dir, files[f]);
        int64_t n = file_lines(p);
        check(v, n == want[f], p, "%lld lines, the ledger says %lld", (long long)n, (long long)want[f]);
        free(p);
    }
out:
    free(lp);
    free(dir);
}

/* ---- stage records: each link of the fingerprint chain recomputed now against what its record holds ---- */

static void verify_record(Verdicts *v, const Job *job, Stage s, const JobCorpus *c, const uint64_t *member_fp) {
    char why[512] = "", *rp = record_path(job->out_dir, STAGE_NAMES[s], c ? c->name : NULL);
    if (!file_exists(rp) && s == STAGE_DPO) { free(rp); return; } /* a job without a dpo run */
    int ok = stage_current(s, job, c ? c : &job->corpora[0], member_fp, why, sizeof why);
    check(v, ok, rp, "link %s%s%s: fingerprint of its inputs now == recorded, output unchanged%s%s", STAGE_NAMES[s],
          c ? " of " : "", c ? c->name : "", ok ? "" : ": ", ok ? "" : why);
    free(rp);
}

static void verify_records(Verdicts *v, const Job *job, const uint64_t *member_fp) {
    char *dir = path_join(job->out_dir, "records");
    int present = file_exists(dir);
    free(dir);
    if (!present) { /* outputs of the stage commands: no chain to check, say so without counting it */
        printf("note: %s/records: absent (outputs not made by `quorum run`): the fingerprint chain is not checked\n",
               job->out_dir);
        return;
    }
    static const Stage per_corpus[] = {STAGE_INGEST, STAGE_SCORE, STAGE_VOTE, STAGE_CLEAN};
    for (int i = 0; i < job->n_corpora; i++)
        for (int k = 0; k < 4; k++)
            if (per_corpus[k] != STAGE_SCORE) verify_record(v, job, per_corpus[k], &job->corpora[i], member_fp);
    verify_record(v, job, STAGE_REPORT, NULL, member_fp);
    verify_record(v, job, STAGE_DPO, NULL, member_fp);
}

static void verify_corpus(Verdicts *v, const Job *job, const JobCorpus *c, const uint64_t *member_fp) {
    char *dir = corpus_dir(job->out_dir, c->name);
    char *mp = path_join(dir, "manifest.json");
    CorpusManifest m;
    if (check(v, file_exists(mp) && corpus_manifest_read(&m, dir) == 0, mp,
              "manifest readable, n_lines == n_pairs + n_rejected")) {
        verify_source(v, c, &m);
        int64_t *ids = verify_shards(v, dir, &m);
        verify_rejects(v, dir, &m);
        verify_scores(v, job, c, dir, &m, member_fp);
        verify_votes(v, job, c, &m, ids);
        verify_clean(v, job, c, &m);
        free(ids);
        corpus_manifest_free(&m);
    }
    free(mp);
    free(dir);
}

static void verify_usage(FILE *f) {
    fprintf(f, "usage: quorum verify --job J [--out-dir D]\n\n"
               "Checks a job's outputs (default: the job's out_dir) against its inputs: source checksums, shard\n"
               "checksums and counts, rejects, score files, votes, cleaned ledger and manifest, and the stage\n"
               "records' fingerprint chain. One line per check,\n"
               "\"ok: <file>: <what>\" or \"FAIL: <file>: <what>\". Exit 0 when every check passes, 1 otherwise.\n");
}

int cmd_verify(int argc, char **argv) {
    const char *job_path = NULL, *out_dir = NULL;
    const Opt opts[] = {{"job", 'p', &job_path}, {"out-dir", 'p', &out_dir}, {0}};
    int rc = opts_command(argc, argv, opts, verify_usage);
    if (rc >= 0) return rc;
    if (!job_path) { verify_usage(stderr); return 2; }
    Job *job = xcalloc(1, sizeof *job);
    rc = job_load(job, job_path) ? 1 : 0;
    if (rc == 0 && out_dir) snprintf(job->out_dir, sizeof job->out_dir, "%s", out_dir);
    if (rc == 0 && quorum_rank() == 0) {
        Verdicts v = {0, 0};
        uint64_t member_fp[JOB_MAX_MEMBERS] = {0};
        for (int k = 0; k < job->n_members; k++)
            check(&v, member_fingerprint(&job->committee[k], &member_fp[k]) == 0, job->committee[k].path,
                  "member \"%s\" readable (config, tokenizer, weights)", job->committee[k].name);
        for (int i = 0; i < job->n_corpora; i++) verify_corpus(&v, job, &job->corpora[i], member_fp);
        verify_records(&v, job, member_fp);
        printf("verify: %d checks, %d failed\n", v.n_ok + v.n_fail, v.n_fail);
        rc = v.n_fail ? 1 : 0;
    }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    free(job);
    return rc;
}
