/* test_clean_io.c - clean_job's files on a random corpus written here (shards + manifest + votes file),
 * under any number of MPI ranks: every cleaned shard, cleaned.jsonl line, actions.jsonl line and ledger
 * count is checked on rank 0 against a direct serial walk over the in-memory input. Also: a votes file
 * that disagrees with the manifest fails with one line and leaves no ledger.
 * usage: test_clean_io <scratch folder> */
#include "quorum/clean.h"
#include "quorum/common.h"
#include "quorum/corpus.h"
#include "../test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <mpi.h>
#include <string.h>
#include <unistd.h>


/* Random valid UTF-8 without NUL: ASCII controls, JSON specials, 2- and 3-byte sequences. */
static char *rand_text(int64_t *len) {
    static const char *const pieces[] = {"a", "Z", " ", "\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f", "/",
                                         "\xc3\xa9", "\xe2\x82\xac", "Human:", "{", "}"};
    Buf b = {0};
    int n = (int)(test_u64() % 40);
    for (int i = 0; i < n; i++) buf_append_str(&b, pieces[test_u64() % (sizeof pieces / sizeof *pieces)]);
    buf_reserve(&b, 0);
    b.data[b.len] = 0; /* also when empty */
    *len = (int64_t)b.len;
    return b.data;
}

#define SHARD_SIZE 7
#define N_LINES 40 /* 6 shards, the last one short */
#define NM 3

typedef struct {
    int64_t id;
    char *prompt, *chosen, *rejected, *turn;
    int64_t prompt_len, chosen_len, rejected_len, turn_len;
} InPair;

static InPair IN[N_LINES];
static int n_in;

/* Same data on every rank (same seed); rank 0 writes the shards and the manifest. */
static void make_corpus(const char *dir, CorpusManifest *m) {
    memset(m, 0, sizeof *m);
    strcpy(m->name, "toy");
    strcpy(m->split, "harmless");
    strcpy(m->source, "/nowhere/toy.jsonl");
    m->format = FORMAT_PCR;
    m->shard_size = SHARD_SIZE;
    m->n_lines = N_LINES;
    m->n_shards = (N_LINES + SHARD_SIZE - 1) / SHARD_SIZE;
    m->source_checksum = 0x0123456789abcdefULL;
    m->shard_checksum = xcalloc((size_t)m->n_shards, sizeof(uint64_t));
    m->shard_pairs = xcalloc((size_t)m->n_shards, sizeof(int64_t));
    for (int64_t k = 0; k < m->n_shards; k++) {
        ShardBuilder b;
        int64_t first = k * SHARD_SIZE + 1, last = first + SHARD_SIZE - 1;
        if (last > N_LINES) last = N_LINES;
        shard_builder_init(&b, "toy", "harmless", k, first, last, FORMAT_PCR);
        for (int64_t line = first; line <= last; line++) {
            if (test_u64() % 5 == 0) { m->n_rejected++; continue; } /* a rejected input line: no pair */
            InPair *p = &IN[n_in++];
            p->id = line;
            p->prompt = rand_text(&p->prompt_len);
            p->chosen = rand_text(&p->chosen_len);
            p->rejected = rand_text(&p->rejected_len);
            p->turn = rand_text(&p->turn_len);
            Turn t = {ROLE_USER, p->turn, p->turn_len};
            Pair q = {p->id, p->prompt, p->prompt_len, p->chosen, p->chosen_len, p->rejected, p->rejected_len, &t, 1, FORMAT_PCR};
            shard_builder_add(&b, &q);
            m->shard_pairs[k]++;
        }
        Shard s;
        shard_builder_finish(&b, &s);
        m->shard_checksum[k] = shard_checksum(&s);
        if (quorum_rank() == 0) {
            char *path = shard_path(dir, k);
            REQUIRE(shard_write(&s, path) == 0);
            free(path);
        }
        shard_free(&s);
    }
    m->n_pairs = n_in;
    if (quorum_rank() == 0) REQUIRE(corpus_manifest_write(m, dir) == 0);
}


/* The rules of quorum/clean.h written again from their definitions (not clean_decide, which the files
 * under test come from): the action every pair must show. Rewards are integers, so the means are exact. */
static double member_mean(const float *x, const Votes *v, int64_t i) {
    double s = 0;
    for (int m = 0; m < v->n_members; m++) s += x[(int64_t)m * v->n + i];
    return s / v->n_members;
}
static void expected_actions(const char *method, const JobClean *cfg, const Votes *v, uint8_t *act) {
    int64_t n = v->n;
    int N = v->n_members, listed = 0;
    uint8_t hit = strstr(method, "flip") ? ACTION_FLIP : ACTION_REMOVE;
    for (int s = 0; s < cfg->n_splits; s++) listed |= !strcmp(cfg->splits[s], v->split);
    /* margin_*: k = floor(p * n), p taken to 6 decimals, in integers */
    int64_t k = llround((double)cfg->p * 1e6) * n / 1000000;
    for (int64_t i = 0; i < n; i++) {
        double C = member_mean(v->chosen, v, i), R = member_mean(v->rejected, v, i), M = C - R;
        int64_t below = 0; /* pairs ranked before i: smaller mean margin, or equal and a smaller id */
        for (int64_t j = 0; j < n; j++) {
            double Mj = member_mean(v->chosen, v, j) - member_mean(v->rejected, v, j);
            below += Mj < M || (Mj == M && v->pair_id[j] < v->pair_id[i]);
        }
        act[i] = ACTION_KEEP;
        if (!strcmp(method, "sac")) {
            if (v->bucket[i] == BUCKET_NO) act[i] = ACTION_FLIP;
            else if (v->bucket[i] == BUCKET_LOW && listed && C < cfg->bad_threshold && R < cfg->bad_threshold)
                act[i] = ACTION_REMOVE;
        } else if (!strncmp(method, "vote_all", 8)) {
            if (v->agree[i] == 0) act[i] = hit;
        } else if (!strncmp(method, "vote_maj", 8)) {
            if (N - v->agree[i] > N / 2.0) act[i] = hit;
        } else if (!strncmp(method, "margin", 6)) {
            if (below < k) act[i] = hit;
        }
    }
}

static int bytes_eq(const char *a, int64_t na, const char *b, int64_t nb) { return na == nb && !memcmp(a, b, (size_t)na); }

static cJSON *load_json(const char *path) {
    size_t n; const char *err;
    char *t = file_read_all(path, &n, &err);
    if (!t) return NULL;
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

/* Splits a file into lines; returns the count; lines[] point into *text (caller frees *text). */
static int read_lines(const char *path, char **text, char **lines, int max) {
    size_t n; const char *err;
    *text = file_read_all(path, &n, &err);
    if (!*text) return -1;
    int k = 0;
    for (char *s = *text, *nl; *s && k < max; s = nl + 1) {
        nl = strchr(s, '\n');
        if (!nl) return -1; /* every line ends in \n */
        *nl = 0;
        lines[k++] = s;
    }
    return k;
}

static void check_shards(const char *dir, const uint8_t *act) {
    CorpusManifest m;
    REQUIRE(corpus_manifest_read(&m, dir) == 0);
    int64_t kept = 0;
    for (int i = 0; i < n_in; i++) kept += act[i] != ACTION_REMOVE;
    CHECK(m.n_lines == N_LINES && m.n_pairs == kept && m.n_rejected == N_LINES - kept);
    int i = 0; /* walks IN in order */
    for (int64_t k = 0; k < m.n_shards; k++) {
        char *path = shard_path(dir, k);
        Shard s;
        REQUIRE(shard_read(&s, path) == 0);
        CHECKF(shard_checksum(&s) == m.shard_checksum[k], "shard %lld checksum", (long long)k);
        CHECK(s.n == m.shard_pairs[k] && s.index == k && s.first_line == k * SHARD_SIZE + 1);
        for (int64_t j = 0; j < s.n; j++) {
            while (i < n_in && act[i] == ACTION_REMOVE) i++;
            REQUIRE(i < n_in);
            Pair p;
            shard_get_pair(&s, j, &p);
            const InPair *w = &IN[i];
            int flip = act[i] == ACTION_FLIP;
            CHECKF(p.id == w->id, "shard %lld pair %lld: id %lld want %lld", (long long)k, (long long)j, (long long)p.id, (long long)w->id);
            CHECK(bytes_eq(p.prompt, p.prompt_len, w->prompt, w->prompt_len));
            CHECKF(bytes_eq(p.chosen, p.chosen_len, flip ? w->rejected : w->chosen, flip ? w->rejected_len : w->chosen_len), "id %lld chosen", (long long)w->id);
            CHECK(bytes_eq(p.rejected, p.rejected_len, flip ? w->chosen : w->rejected, flip ? w->chosen_len : w->rejected_len));
            CHECK(p.n_turns == 1 && p.turns[0].role == ROLE_USER && bytes_eq(p.turns[0].text, p.turns[0].len, w->turn, w->turn_len));
            i++;
        }
        shard_free(&s);
        free(path);
    }
    while (i < n_in && act[i] == ACTION_REMOVE) i++;
    CHECK(i == n_in);
    corpus_manifest_free(&m);
}

static void check_jsonl(const char *dir, const Votes *v, const uint8_t *act) {
    char *path = path_join(dir, "cleaned.jsonl"), *text, *lines[N_LINES + 1];
    int n = read_lines(path, &text, lines, N_LINES + 1), j = 0;
    REQUIRE(n >= 0);
    for (int i = 0; i < n_in; i++) {
        if (act[i] == ACTION_REMOVE) continue;
        REQUIRE(j < n);
        cJSON *o = cJSON_Parse(lines[j++]);
        REQUIRE(o);
        int flip = act[i] == ACTION_FLIP;
        const InPair *w = &IN[i];
        cJSON *q = cJSON_GetObjectItem(o, "quorum"); /* the pair in its (pcr) layout + the quorum object */
        REQUIRE(q);
        CHECK(cJSON_GetObjectItem(q, "id")->valuedouble == (double)w->id);
        CHECK(!strcmp(cJSON_GetObjectItem(q, "split")->valuestring, "harmless"));
        CHECK(!strcmp(cJSON_GetObjectItem(q, "bucket")->valuestring, bucket_name((Bucket)v->bucket[i])));
        CHECK(cJSON_GetObjectItem(q, "agree")->valuedouble == (double)v->agree[i]);
        double mm = 0; /* the committee's mean margin, summed here from the votes */
        for (int m = 0; m < v->n_members; m++) mm += (double)v->chosen[m * v->n + i] - (double)v->rejected[m * v->n + i];
        mm /= v->n_members;
        CHECK(fabs(cJSON_GetObjectItem(q, "mean_margin")->valuedouble - mm) < 1e-6 * (1 + fabs(mm)));
        CHECK(!strcmp(cJSON_GetObjectItem(o, "prompt")->valuestring, w->prompt));
        CHECKF(!strcmp(cJSON_GetObjectItem(o, "chosen")->valuestring, flip ? w->rejected : w->chosen), "jsonl id %lld", (long long)w->id);
        CHECK(!strcmp(cJSON_GetObjectItem(o, "rejected")->valuestring, flip ? w->chosen : w->rejected));
        CHECK(!strcmp(cJSON_GetObjectItem(q, "action")->valuestring, clean_action_name((CleanAction)act[i])));
        cJSON_Delete(o);
    }
    CHECK(j == n);
    free(text);
    free(path);
    path = path_join(dir, "actions.jsonl");
    n = read_lines(path, &text, lines, N_LINES + 1);
    REQUIRE(n == n_in);
    for (int i = 0; i < n_in; i++) {
        cJSON *o = cJSON_Parse(lines[i]);
        REQUIRE(o);
        CHECK(cJSON_GetObjectItem(o, "id")->valuedouble == (double)IN[i].id);
        CHECK(!strcmp(cJSON_GetObjectItem(o, "bucket")->valuestring, bucket_name((Bucket)v->bucket[i])));
        CHECK(!strcmp(cJSON_GetObjectItem(o, "action")->valuestring, clean_action_name((CleanAction)act[i])));
        cJSON_Delete(o);
    }
    free(text);
    free(path);
}

static void check_ledger(const char *dir, const Votes *v, const uint8_t *act, int64_t rejected, const char *method) {
    char *path = path_join(dir, "ledger.json");
    cJSON *l = load_json(path);
    REQUIRE(l);
    static const char *const keys[ACTION_COUNT] = {"kept", "flipped", "removed"};
    int64_t sum = 0;
    for (int b = 0; b < BUCKET_COUNT; b++)
        for (int a = 0; a < ACTION_COUNT; a++) {
            int64_t want = 0;
            for (int i = 0; i < n_in; i++) want += v->bucket[i] == b && act[i] == a;
            double got = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(l, "buckets"), bucket_name((Bucket)b)), keys[a])->valuedouble;
            CHECKF(got == (double)want, "%s %s %s: %g want %lld", method, bucket_name((Bucket)b), keys[a], got, (long long)want);
            sum += (int64_t)got;
        }
    cJSON *t = cJSON_GetObjectItem(l, "totals");
    CHECK(cJSON_GetObjectItem(t, "rejected")->valuedouble == (double)rejected);
    CHECK(cJSON_GetObjectItem(l, "lines")->valuedouble == N_LINES && sum + rejected == N_LINES);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(l, "balanced")));
    CHECK(!strcmp(cJSON_GetObjectItem(l, "method")->valuestring, method));
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(l, "inputs"), "source_checksum")->valuestring, "0123456789abcdef"));
    cJSON_Delete(l);
    free(path);
}

/* Nothing but the final files: no .part or .tmp leftovers. */
static void check_no_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    REQUIRE(d);
    for (struct dirent *e; (e = readdir(d));)
        CHECKF(!strstr(e->d_name, ".part") && !strstr(e->d_name, ".tmp"), "leftover %s/%s", dir, e->d_name);
    closedir(d);
}

/* A stats.json as vote_job writes it (the numbers are arbitrary but distinct, to find them again). */
static void write_stats(const char *out) {
    const char *stats =
        "{\"corpus\": \"toy\", \"split\": \"harmless\", \"n_pairs\": 32, \"n_members\": 3, \"members\": [\"m0\", \"m1\", \"m2\"],"
        " \"margin\": 0, \"high_frac\": 0.5, \"buckets\": {\"NoAgree\": {\"count\": 4, \"pct\": 12.5},"
        " \"LowAgree\": {\"count\": 8, \"pct\": 25}, \"HighAgree\": {\"count\": 12, \"pct\": 37.5},"
        " \"AllAgree\": {\"count\": 8, \"pct\": 25}}, \"member_accuracy\": [0.6875, 0.53125, 0.40625],"
        " \"mean_margin\": [0.25, -0.125, 1.5], \"agreement\": [[1, 0.75, 0.5], [0.75, 1, 0.625], [0.5, 0.625, 1]],"
        " \"fleiss_kappa\": 0.1234}\n";
    Buf p = {0};
    buf_appendf(&p, "%s/votes/toy.stats.json", out);
    REQUIRE(file_write_atomic(p.data, stats, strlen(stats)) == 0);
    buf_free(&p);
}

static int file_has(const char *path, const char *needle) {
    size_t n; const char *err;
    char *t = file_read_all(path, &n, &err);
    int found = t && strstr(t, needle) != NULL;
    free(t);
    return found;
}

static int is_png(const char *path) {
    size_t n; const char *err;
    char *t = file_read_all(path, &n, &err);
    int ok = t && n > 1000 && !memcmp(t, "\x89PNG\r\n\x1a\n", 8);
    free(t);
    return ok;
}

/* report_job: JSON + Markdown + PNGs; with the plotting tool missing, JSON + Markdown only, still 0. */
static void check_report(const Job *job, const Votes *v) {
    char *dir = path_join(job->out_dir, "report");
    char *rj = path_join(dir, "report.json"), *rm = path_join(dir, "report.md"), *png = path_join(dir, "buckets.png");
    REQUIRE(report_job(job) == 0);
    if (quorum_rank() == 0) {
        cJSON *r = load_json(rj);
        REQUIRE(r);
        cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "corpora"), 0);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "stats"), "fleiss_kappa")->valuedouble == 0.1234);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "ledger"), "balanced")));
        /* histogram: range = the extreme mean margins, computed directly; counts add up to n */
        double lo = 1e30, hi = -1e30, sum = 0;
        for (int64_t i = 0; i < v->n; i++) {
            double mm = 0;
            for (int m = 0; m < NM; m++) mm += (double)v->chosen[m * v->n + i] - v->rejected[m * v->n + i];
            mm /= NM;
            lo = mm < lo ? mm : lo;
            hi = mm > hi ? mm : hi;
        }
        cJSON *h = cJSON_GetObjectItem(c0, "margin_histogram");
        CHECK(fabs(cJSON_GetObjectItem(h, "lo")->valuedouble - lo) < 1e-12 && fabs(cJSON_GetObjectItem(h, "hi")->valuedouble - hi) < 1e-12);
        cJSON *cnt;
        cJSON_ArrayForEach(cnt, cJSON_GetObjectItem(h, "counts")) sum += cnt->valuedouble;
        CHECK(sum == (double)v->n);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(r, "plots")) == 4);
        cJSON *ml = cJSON_GetObjectItem(c0, "method_ledgers");
        CHECK(cJSON_GetArraySize(ml) == 6); /* the six --method runs of main(), in folder-name order */
        CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(ml, 0), "folder")->valuestring, "cleaned-margin_flip"));
        CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(ml, 5), "folder")->valuestring, "cleaned-vote_maj_flip"));
        cJSON_Delete(r);
        CHECK(file_has(rm, "| toy | harmless | 32 | 3 | 12.50 | 25.00 | 37.50 | 25.00 | 0.1234 |"));
        CHECK(file_has(rm, "| m2 | 0.4062 | 1.5000 |") || file_has(rm, "| m2 | 0.4063 | 1.5000 |"));
        CHECK(file_has(rm, "### Ledger of toy (method sac)"));
        CHECK(file_has(rm, "balanced"));
        char row[128];
        snprintf(row, sizeof row, "| cleaned-none | none | %d | 0 | 0 | %d |", n_in, N_LINES - n_in);
        CHECKF(file_has(rm, row), "report.md has %s", row);
        CHECK(file_has(rm, "![buckets.png](buckets.png)"));
        static const char *const pngs[] = {"buckets.png", "accuracy-toy.png", "agreement-toy.png", "margins-toy.png"};
        for (int i = 0; i < 4; i++) {
            char *p = path_join(dir, pngs[i]);
            CHECKF(is_png(p), "%s is a PNG", p);
            free(p);
        }
        CHECK(!strcmp(report_markdown_last(), "") == 0);
        unlink(png);
        unlink(rm);
    }
    /* No gnuplot: still a report, no plots. */
    setenv("QUORUM_GNUPLOT", "/nonexistent/gnuplot", 1);
    REQUIRE(report_job(job) == 0);
    unsetenv("QUORUM_GNUPLOT");
    if (quorum_rank() == 0) {
        CHECK(file_exists(rm) && !file_exists(png));
        CHECK(!file_has(rm, "## Plots"));
        cJSON *r = load_json(rj);
        REQUIRE(r);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(r, "plots")) == 0);
        cJSON_Delete(r);
    }
    /* A malformed stats.json: a warning, its sections left out, still a report. */
    Buf sp = {0};
    buf_appendf(&sp, "%s/votes/toy.stats.json", job->out_dir);
    if (quorum_rank() == 0) REQUIRE(file_write_atomic(sp.data, "{\"corpus\": ", 12) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    setenv("QUORUM_GNUPLOT", "/nonexistent/gnuplot", 1);
    CHECK(report_job(job) == 0);
    unsetenv("QUORUM_GNUPLOT");
    if (quorum_rank() == 0) {
        CHECK(file_exists(rm) && !file_has(rm, "| toy | harmless |") && file_has(rm, "### Ledger of toy"));
    }
    buf_free(&sp);
    free(dir); free(rj); free(rm); free(png);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    REQUIRE(argc == 2);
    char out[900];
    snprintf(out, sizeof out, "%s/np%d", argv[1], quorum_world());
    if (quorum_rank() == 0) { char cmd[4200]; snprintf(cmd, sizeof cmd, "rm -rf '%s'", out); REQUIRE(system(cmd) == 0); }
    MPI_Barrier(MPI_COMM_WORLD);
    static Job job;
    job_defaults(&job);
    snprintf(job.out_dir, sizeof job.out_dir, "%s", out);
    job.n_corpora = 1;
    strcpy(job.corpora[0].name, "toy");
    strcpy(job.corpora[0].split, "harmless");
    job.clean.p = 0.3f;

    char *cdir = corpus_dir(out, "toy");
    if (quorum_rank() == 0) REQUIRE(mkdir_p(cdir) == 0);
    CorpusManifest m;
    make_corpus(cdir, &m);
    Votes v;
    int64_t ids[N_LINES];
    for (int i = 0; i < n_in; i++) ids[i] = IN[i].id;
    make_votes(&v, n_in, NM, 0.0f, 1, ids);
    char *vp = votes_path(out, "toy");
    REQUIRE(votes_write(&v, vp) == 0);
    MPI_Barrier(MPI_COMM_WORLD);

    static const char *const methods[] = {"none", "sac", "vote_all_remove", "vote_maj_flip", "margin_remove", "margin_flip"};
    int n_flip = 0, n_remove = 0;
    for (int t = 0; t < 7; t++) {
        const char *name = t < 6 ? methods[t] : NULL; /* the last run: the job's own method (sac) */
        REQUIRE(clean_job_method(&job, name) == 0);
        if (quorum_rank() != 0) continue;
        uint8_t act[N_LINES];
        expected_actions(name ? name : "sac", &job.clean, &v, act);
        for (int i = 0; i < n_in; i++) { n_flip += act[i] == ACTION_FLIP; n_remove += act[i] == ACTION_REMOVE; }
        char *dir = clean_dir(out, name, "toy");
        check_shards(dir, act);
        check_jsonl(dir, &v, act);
        check_ledger(dir, &v, act, m.n_rejected, name ? name : "sac");
        check_no_leftovers(dir);
        free(dir);
    }
    if (quorum_rank() == 0) CHECKF(n_flip > 5 && n_remove > 5, "the fixture exercises flips (%d) and removals (%d)", n_flip, n_remove);

    if (quorum_rank() == 0) write_stats(out);
    MPI_Barrier(MPI_COMM_WORLD);
    check_report(&job, &v);

    /* A votes file one pair short of the manifest: a one-line error on every rank, no ledger. */
    Votes bad = v;
    bad.n = v.n - 1;
    float *bc = xmalloc((size_t)(NM * bad.n) * 4), *br = xmalloc((size_t)(NM * bad.n) * 4);
    for (int mm = 0; mm < NM; mm++) {
        memcpy(bc + mm * bad.n, v.chosen + mm * v.n, (size_t)bad.n * 4);
        memcpy(br + mm * bad.n, v.rejected + mm * v.n, (size_t)bad.n * 4);
    }
    bad.chosen = bc;
    bad.rejected = br;
    REQUIRE(votes_write(&bad, vp) == 0);
    CHECK(clean_job_method(&job, "vote_all_flip") == -1);
    char *bdir = clean_dir(out, "vote_all_flip", "toy"), *lp = path_join(bdir, "ledger.json");
    CHECK(!file_exists(lp));
    free(bc); free(br); free(bdir); free(lp);

    /* Same count, but a pair id the shards do not have: one line naming the shard, no ledger. */
    int64_t saved = v.pair_id[n_in - 1];
    v.pair_id[n_in - 1] = 1000000;
    REQUIRE(votes_write(&v, vp) == 0);
    CHECK(clean_job_method(&job, "vote_all_flip") == -1);
    bdir = clean_dir(out, "vote_all_flip", "toy");
    lp = path_join(bdir, "ledger.json");
    CHECK(!file_exists(lp));
    free(bdir); free(lp);
    v.pair_id[n_in - 1] = saved;
    REQUIRE(votes_write(&v, vp) == 0);

    /* A shard changed after ingest (one byte of one response): its checksum no longer matches. */
    char *s0 = shard_path(cdir, 0);
    if (quorum_rank() == 0) {
        Shard sh;
        REQUIRE(shard_read(&sh, s0) == 0 && sh.n > 0 && sh.chosen_off[1] > 0);
        sh.chosen[0] ^= 1;
        REQUIRE(shard_write(&sh, s0) == 0);
        shard_free(&sh);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(clean_job_method(&job, "vote_all_flip") == -1);
    bdir = clean_dir(out, "vote_all_flip", "toy");
    lp = path_join(bdir, "ledger.json");
    CHECK(!file_exists(lp));
    free(bdir); free(lp); free(s0);

    votes_free(&v);
    corpus_manifest_free(&m);
    free(vp); free(cdir);
    int fails = t_fail_, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (quorum_rank() == 0) printf("%d passed, %d failed (all ranks: %d failed)\n", t_pass_, t_fail_, all);
    MPI_Finalize();
    return all ? 1 : 0;
}
