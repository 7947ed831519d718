/* ingest.c - corpus_ingest: JSONL / JSON array (.gz) -> shards + index.h5 + rejects.jsonl + manifest.json over MPI.
 *
 * Every rank streams the whole input (gzip cannot be split; reader.h) and numbers its records; shard k
 * (records [k*S+1, (k+1)*S]) is parsed by rank k % R and written, as soon as it is complete, to the
 * staging folder <dir>/.staging, so memory holds one shard, never the input. Order of effects: stream
 * and stage -> (a stream error, or strict and a bad record: drop the staging folder, nothing else
 * touched) -> remove the old manifest, then stale files -> staged shards renamed into place -> index.h5
 * (collective MPI-IO) -> rejects.jsonl -> manifest.json, last and atomic. */
#define _GNU_SOURCE
#include "ingest_check.h"
#include "parse.h"
#include "reader.h"
#include "quorum/corpus.h"
#include "quorum/h5.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What one rank produced for the shards it owns (ascending k). */
typedef struct {
    int64_t n_lines, n_shards, S;
    int rank, world;
    Buf status;           /* [n_lines] LineStatus bytes; only owned lines filled */
    Buf *rejects;         /* [n_shards] JSONL chunk of each owned shard */
    I64Vec pairs, sums;   /* [n_shards] pairs and shard_checksum of owned shards, 0 elsewhere */
    int64_t n_rejected;   /* over owned shards */
    int64_t n_format[8];  /* owned pairs per CorpusFormat (auto detection summary) */
    int64_t first_bad;    /* lowest rejected line (1-based) over owned shards, INT64_MAX if none */
    char first_bad_field[300], first_bad_detail[300];
    LineStatus first_bad_status;
    int failed;           /* a staged shard could not be written */
} Local;

static int owns(const Local *L, int64_t k) { return k % L->world == L->rank; }
static int64_t shard_first(const Local *L, int64_t k) { return k * L->S; } /* 0-based line */
static int64_t shard_end(const Local *L, int64_t k) {
    int64_t e = (k + 1) * L->S;
    return e < L->n_lines ? e : L->n_lines;
}

static void add_reject(Local *L, Buf *chunk, const JobCorpus *c, int64_t line, const LineVerdict *v) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "corpus", c->name);
    cJSON_AddNumberToObject(o, "line", (double)line);
    cJSON_AddStringToObject(o, "field", v->field);
    cJSON_AddStringToObject(o, "reason", line_status_name(v->status));
    if (v->detail[0]) cJSON_AddStringToObject(o, "detail", v->detail);
    char *s = cJSON_PrintUnformatted(o);
    buf_append_str(chunk, s);
    buf_append_str(chunk, "\n");
    free(s);
    cJSON_Delete(o);
    L->n_rejected++;
    if (line < L->first_bad) {
        L->first_bad = line;
        L->first_bad_status = v->status;
        snprintf(L->first_bad_field, sizeof L->first_bad_field, "%s", v->field);
        snprintf(L->first_bad_detail, sizeof L->first_bad_detail, "%s", v->detail);
    }
}

static char *staged_path(const char *dir, int64_t k) {
    char *stage = path_join(dir, ".staging"), *p = shard_path(stage, k);
    free(stage);
    return p;
}

/* A finished owned shard: written to the staging folder, counted, freed. */
static void stage_shard(Local *L, ShardBuilder *b, int64_t last_line, const char *dir) {
    Shard s;
    b->s.last_line = last_line;
    shard_builder_finish(b, &s);
    char *p = staged_path(dir, s.index);
    if (!L->failed && shard_write(&s, p) != 0) L->failed = 1;
    L->pairs.data[s.index] = s.n;
    L->sums.data[s.index] = (int64_t)shard_checksum(&s);
    free(p);
    shard_free(&s);
}

/* Streams every record; parses and stages the owned shards. 0, or -1 on a stream error (r->err). */
static int parse_stream(Local *L, const JobCorpus *c, RecordReader *r, const char *dir) {
    ShardBuilder b;
    int open = 0, got = 1;
    int64_t i = 0;
    const char *rec;
    size_t len;
    for (; c->max_pairs <= 0 || i < c->max_pairs; i++) {
        if ((got = reader_next(r, &rec, &len)) <= 0) break;
        int64_t k = i / L->S;
        if (i % L->S == 0) { /* a new shard */
            L->rejects = xrealloc(L->rejects, sizeof(Buf) * (size_t)(k + 1));
            L->rejects[k] = (Buf){0};
            i64vec_push(&L->pairs, 0);
            i64vec_push(&L->sums, 0);
            if (owns(L, k)) {
                shard_builder_init(&b, c->name, c->split, k, i + 1, (k + 1) * L->S, c->format);
                open = 1;
            }
        }
        uint8_t st = LINE_OK;
        if (owns(L, k)) {
            LineVerdict v = parse_line(rec, len, i + 1, c, &b);
            st = (uint8_t)v.status;
            if (v.status != LINE_OK) add_reject(L, &L->rejects[k], c, i + 1, &v);
            else if (v.format >= 0 && v.format < 8) L->n_format[v.format]++;
        }
        buf_append(&L->status, &st, 1);
        if (open && (i + 1) % L->S == 0) {
            stage_shard(L, &b, i + 1, dir);
            open = 0;
        }
    }
    L->n_lines = i;
    L->n_shards = (i + L->S - 1) / L->S;
    if (got < 0) L->failed = 1; /* a stream error: the staged shards are dropped with the staging folder */
    if (open) stage_shard(L, &b, i, dir);
    return got < 0 ? -1 : reader_drain(r);
}

/* Removes the manifest first (the folder is now "incomplete"), then what an earlier run left. */
static void clear_corpus_dir(const char *dir) {
    char *m = path_join(dir, "manifest.json");
    unlink(m);
    free(m);
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        int shard = !strncmp(n, "shard-", 6) && (strstr(n, ".tmp.") || (len > 3 && !strcmp(n + len - 3, ".h5")));
        int ours = !strncmp(n, "index.h5", 8) || !strncmp(n, "rejects.jsonl", 13) || !strncmp(n, "manifest.json", 13);
        if (shard || ours) {
            char *p = path_join(dir, n);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
}

/* Collective: every rank writes the slabs of its own shards' lines. */
static int write_index(const Local *L, const char *dir) {
    char *path = path_join(dir, "index.h5"), *tmp = path_join(dir, "index.h5.tmp");
    int64_t mine = 0;
    for (int64_t k = 0; k < L->n_shards; k++)
        if (owns(L, k)) mine += shard_end(L, k) - shard_first(L, k);
    uint8_t *status = xmalloc((size_t)mine + 1);
    int32_t *shard = xmalloc(sizeof(int32_t) * ((size_t)mine + 1));
    int64_t j = 0;
    for (int64_t k = 0; k < L->n_shards; k++)
        for (int64_t i = shard_first(L, k); owns(L, k) && i < shard_end(L, k); i++, j++) {
            status[j] = (uint8_t)L->status.data[i];
            shard[j] = L->status.data[i] == LINE_OK ? (int32_t)k : -1;
        }

    hid_t dxpl;
    hid_t f = h5q_create_collective(tmp, &dxpl);
    h5Check(f, "create index.h5 (collective)");
    hsize_t dims[1] = {(hsize_t)L->n_lines}, mdims[1] = {(hsize_t)(mine ? mine : 1)};
    hid_t fspace = H5Screate_simple(1, dims, NULL);
    hid_t mspace = H5Screate_simple(1, mdims, NULL);
    H5Sselect_none(fspace);
    for (int64_t k = 0; k < L->n_shards; k++) {
        if (!owns(L, k)) continue;
        hsize_t start[1] = {(hsize_t)shard_first(L, k)}, count[1] = {(hsize_t)(shard_end(L, k) - shard_first(L, k))};
        h5Check(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, NULL, count, NULL), "select index slab");
    }
    if (mine == 0) H5Sselect_none(mspace);
    const char *names[2] = {"line_status", "line_shard"};
    hid_t types[2] = {H5T_NATIVE_UINT8, H5T_NATIVE_INT32};
    const void *data[2] = {status, shard};
    for (int d = 0; d < 2; d++) {
        hid_t ds = H5Dcreate2(f, names[d], types[d], fspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        h5Check(ds, names[d]);
        if (L->n_lines > 0) h5Check(H5Dwrite(ds, types[d], mspace, fspace, dxpl, data[d]), names[d]);
        H5Dclose(ds);
    }
    H5Sclose(fspace);
    H5Sclose(mspace);
    H5Pclose(dxpl);
    h5Check(H5Fclose(f), "close index.h5");
    int rc = 0;
    if (L->rank == 0 && rename(tmp, path) != 0) rc = quorum_input_error(path, "cannot rename index");
    free(status);
    free(shard);
    free(path);
    free(tmp);
    return rc;
}

/* Rank 0: the owners' reject chunks, gathered and put back in line (= shard) order. */
static int write_rejects(const Local *L, const char *dir) {
    Buf mine = {0};
    int64_t *lens = xcalloc((size_t)L->n_shards + 1, sizeof(int64_t));
    int64_t *all_lens = xcalloc((size_t)L->n_shards + 1, sizeof(int64_t));
    for (int64_t k = 0; k < L->n_shards; k++)
        if (owns(L, k)) {
            buf_append(&mine, L->rejects[k].data, L->rejects[k].len);
            lens[k] = (int64_t)L->rejects[k].len;
        }
    mpiCheck(MPI_Reduce(lens, all_lens, (int)L->n_shards, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    int len = (int)mine.len, *counts = NULL, *displs = NULL;
    char *gathered = NULL;
    if (L->rank == 0) {
        counts = xcalloc((size_t)L->world, sizeof(int));
        displs = xcalloc((size_t)L->world, sizeof(int));
    }
    mpiCheck(MPI_Gather(&len, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD));
    int64_t total = 0;
    if (L->rank == 0) {
        for (int r = 0; r < L->world; r++) { displs[r] = (int)total; total += counts[r]; }
        qCheck(total < (1LL << 31), "use a smaller corpus or fix the input", "rejects ledger over 2 GiB");
        gathered = xmalloc((size_t)total + 1);
    }
    mpiCheck(MPI_Gatherv(mine.data ? mine.data : "", len, MPI_CHAR, gathered, counts, displs, MPI_CHAR, 0, MPI_COMM_WORLD));
    int rc = 0;
    if (L->rank == 0) {
        /* rank r's chunks are its shards r, r+R, r+2R ... back to back */
        int64_t *cursor = xcalloc((size_t)L->world, sizeof(int64_t));
        Buf out = {0};
        for (int64_t k = 0; k < L->n_shards; k++) {
            int r = (int)(k % L->world);
            buf_append(&out, gathered + displs[r] + cursor[r], (size_t)all_lens[k]);
            cursor[r] += all_lens[k];
        }
        char *path = path_join(dir, "rejects.jsonl");
        if (file_write_atomic(path, out.data ? out.data : "", out.len) != 0) rc = quorum_input_error(path, "cannot write");
        free(path);
        free(cursor);
        buf_free(&out);
    }
    free(gathered); free(counts); free(displs); free(lens); free(all_lens);
    buf_free(&mine);
    return rc;
}

/* Renames the owned staged shards into place; sums pairs and checksums into rank 0's manifest arrays. */
static int publish_shards(const Local *L, const char *dir, CorpusManifest *m) {
    int rc = 0;
    for (int64_t k = 0; k < L->n_shards && rc == 0; k++) {
        if (!owns(L, k)) continue;
        char *from = staged_path(dir, k), *to = shard_path(dir, k);
        if (rename(from, to) != 0) rc = quorum_input_error(to, "cannot rename the staged shard into place");
        free(from);
        free(to);
    }
    m->shard_pairs = xcalloc((size_t)L->n_shards + 1, sizeof(int64_t));
    m->shard_checksum = xcalloc((size_t)L->n_shards + 1, sizeof(uint64_t));
    mpiCheck(MPI_Reduce(L->pairs.data, m->shard_pairs, (int)L->n_shards, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    mpiCheck(MPI_Reduce(L->sums.data, m->shard_checksum, (int)L->n_shards, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    int any = 0;
    mpiCheck(MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    return any;
}

/* Strict mode: the globally first bad line stops everything before any file is touched. */
static int strict_stop(const Local *L, const JobCorpus *c) {
    int64_t first = INT64_MAX;
    mpiCheck(MPI_Allreduce(&L->first_bad, &first, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD));
    if (first == INT64_MAX) return 0;
    if (first == L->first_bad) {
        char where[2048];
        snprintf(where, sizeof where, "%s:%lld:%s", c->path, (long long)first, L->first_bad_field);
        quorum_input_error(where, "%s%s%s (--strict: nothing written)", line_status_name(L->first_bad_status),
                           L->first_bad_detail[0] ? ": " : "", L->first_bad_detail);
    }
    return -1;
}

static void local_free(Local *L) {
    for (int64_t k = 0; k < L->n_shards; k++) buf_free(&L->rejects[k]);
    free(L->rejects);
    buf_free(&L->status);
    i64vec_free(&L->pairs);
    i64vec_free(&L->sums);
}

static int write_corpus(const Job *job, const JobCorpus *c, const Local *L, uint64_t source_sum, int64_t source_bytes) {
    char *dir = corpus_dir(job->out_dir, c->name);
    int rc = 0;
    if (L->rank == 0) {
        if (mkdir_p(dir) != 0) rc = quorum_input_error(dir, "cannot create the corpus folder");
        else clear_corpus_dir(dir);
    }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (rc != 0) { free(dir); return -1; }
    CorpusManifest m = {0};
    if (publish_shards(L, dir, &m) != 0) rc = -1;
    if (rc == 0) rc = write_index(L, dir);
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD)); /* only rank 0 renames */
    if (rc == 0) rc = write_rejects(L, dir);
    int64_t pairs = 0, rejected = 0;
    for (int64_t k = 0; k < L->n_shards; k++)
        if (owns(L, k)) pairs += L->pairs.data[k];
    int64_t mine[2] = {pairs, L->n_rejected}, tot[2] = {0, 0}, hist[256] = {0};
    mpiCheck(MPI_Reduce(mine, tot, 2, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    for (int64_t k = 0; k < L->n_shards; k++)
        for (int64_t i = shard_first(L, k); owns(L, k) && i < shard_end(L, k); i++) hist[(uint8_t)L->status.data[i]]++;
    mpiCheck(MPI_Reduce(L->rank == 0 ? MPI_IN_PLACE : hist, hist, 256, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (L->rank == 0 && rc == 0) {
        pairs = tot[0];
        rejected = tot[1];
        qCheck(pairs + rejected == L->n_lines, "this is a bug in the corpus stage",
               "%lld pairs + %lld rejected != %lld lines", (long long)pairs, (long long)rejected, (long long)L->n_lines);
        snprintf(m.name, sizeof m.name, "%s", c->name);
        snprintf(m.split, sizeof m.split, "%s", c->split);
        snprintf(m.source, sizeof m.source, "%s", c->path);
        m.format = c->format;
        m.shard_size = L->S;
        m.n_lines = L->n_lines;
        m.n_pairs = pairs;
        m.n_rejected = rejected;
        m.n_shards = L->n_shards;
        m.source_checksum = source_sum;
        m.source_bytes = source_bytes;
        rc = ingest_check_rejects(job, c, hist, L->n_lines); /* no manifest: the folder stays incomplete */
        if (rc == 0) rc = corpus_manifest_write(&m, dir);
    }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    corpus_manifest_free(&m);
    free(dir);
    return rc;
}

/* Rank 0 prints what the input was read as (container, and per-pair layouts for "auto"). */
static void log_detected(const Local *L, const JobCorpus *c, const RecordReader *r) {
    int64_t tot[8] = {0};
    mpiCheck(MPI_Reduce(L->n_format, tot, 8, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    if (L->rank != 0) return;
    Buf b = {0};
    for (int f = FORMAT_HH; f < 8; f++)
        if (tot[f]) buf_appendf(&b, "%s%lld %s", b.len ? ", " : "", (long long)tot[f], corpus_format_name(f));
    quorum_log("ingest: %s: %s read as %s, %lld records (%s: %s)", c->name, c->path, reader_describe(r),
               (long long)L->n_lines, corpus_format_name(c->format), b.len ? b.data : "no pairs");
    buf_free(&b);
}

/* Rank 0 (re)creates an empty staging folder; every rank learns whether it could. */
static int make_staging(const char *dir, int create) {
    char *stage = path_join(dir, ".staging");
    int rc = 0;
    if (quorum_rank() == 0) {
        dir_remove_flat(stage);
        if (!create) rmdir(dir); /* only when empty: a failed first ingest leaves no folder behind */
        if (create && mkdir_p(stage) != 0) rc = quorum_input_error(stage, "cannot create the staging folder");
    }
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    free(stage);
    return rc;
}

int corpus_ingest(const Job *job, const JobCorpus *c, int strict) {
    RecordReader r;
    int opened = reader_open(&r, c->path) == 0, all_ok = 0; /* ranks on different nodes may see different files */
    char *dir = corpus_dir(job->out_dir, c->name);
    int ok = make_staging(dir, 1) == 0 && opened;
    Local L = {0};
    L.rank = quorum_rank();
    L.world = quorum_world();
    L.S = job->shard_size;
    L.first_bad = INT64_MAX;
    if (ok) ok = parse_stream(&L, c, &r, dir) == 0 && !L.failed;
    mpiCheck(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    int root_ok = ok;
    mpiCheck(MPI_Bcast(&root_ok, 1, MPI_INT, 0, MPI_COMM_WORLD));
    int rc = 0;
    if (!all_ok) { /* one line: rank 0's, or else each failing rank's */
        if (!ok && r.err[0] && quorum_rank() == 0) quorum_input_error(c->path, "cannot read corpus: %s", r.err);
        else if (!ok && r.err[0] && root_ok) quorum_log_all("error: cannot read corpus %s: %s", c->path, r.err);
        rc = -1;
    }
    if (rc == 0 && strict) rc = strict_stop(&L, c);
    if (rc == 0) log_detected(&L, c, &r);
    if (rc == 0) rc = write_corpus(job, c, &L, r.checksum, r.bytes);
    make_staging(dir, 0);
    reader_close(&r);
    local_free(&L);
    free(dir);
    return rc;
}
