/* clean_report.c - the job report: report.json, report.md and gnuplot PNGs under <out_dir>/report/.
 *
 * Inputs per corpus: <out_dir>/votes/<corpus>.stats.json (vote_job), the votes file (for the histogram
 * of mean margins) and <out_dir>/cleaned/<corpus>/ledger.json (clean_job). A missing input drops its
 * section with a warning; a missing or failing gnuplot drops the PNGs with a warning. Rank 0 works. */
#include "quorum/clean.h"
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HIST_BINS 20

/* What the report knows about one corpus. */
typedef struct {
    const JobCorpus *c;
    cJSON *stats;   /* NULL when missing */
    cJSON *ledger;  /* NULL when missing */
    cJSON *others;  /* [{"folder": "cleaned-<method>", "ledger": {...}}] from `quorum clean --method` runs */
    int have_hist;
    double lo, hi;  /* histogram range of mean margins */
    int64_t hist[HIST_BINS];
} CorpusReport;

static cJSON *json_load(const char *path, int quiet_missing) {
    size_t n = 0;
    const char *err = NULL;
    char *text = file_read_all(path, &n, &err);
    if (!text) {
        if (!quiet_missing) quorum_warn("report: %s: cannot read (%s); its section is left out", path, err);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    if (!j || !cJSON_IsObject(j)) {
        quorum_warn("report: %s: not a JSON object; its section is left out", path);
        cJSON_Delete(j);
        j = NULL;
    }
    free(text);
    return j;
}

static double jnum(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}
static const cJSON *jget(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }
static double jarr_num(const cJSON *a, int i) {
    const cJSON *x = cJSON_GetArrayItem(a, i);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}
static const char *jarr_str(const cJSON *a, int i) {
    const cJSON *x = cJSON_GetArrayItem(a, i);
    return cJSON_IsString(x) ? x->valuestring : "?";
}

/* Histogram of mean committee margins over HIST_BINS equal bins of [lo, hi]. */
static void margin_histogram(CorpusReport *r, const Votes *v) {
    if (v->n == 0) return;
    double *mm = xmalloc((size_t)v->n * sizeof *mm);
    r->lo = INFINITY;
    r->hi = -INFINITY;
    for (int64_t i = 0; i < v->n; i++) {
        mm[i] = votes_mean_margin(v, i);
        if (mm[i] < r->lo) r->lo = mm[i];
        if (mm[i] > r->hi) r->hi = mm[i];
    }
    if (r->hi <= r->lo) r->hi = r->lo + 1.0;
    for (int64_t i = 0; i < v->n; i++) {
        int b = (int)((mm[i] - r->lo) / (r->hi - r->lo) * HIST_BINS);
        r->hist[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b]++;
    }
    r->have_hist = 1;
    free(mm);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The ledgers of <out_dir>/cleaned-<method>/<corpus>/, sorted by folder name. */
static cJSON *method_ledgers(const char *out_dir, const char *corpus) {
    cJSON *arr = cJSON_CreateArray();
    DIR *d = opendir(out_dir);
    if (!d) return arr;
    char *names[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;)
        if (!strncmp(e->d_name, "cleaned-", 8)) names[n++] = xstrdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, str_cmp);
    for (int i = 0; i < n; i++) {
        Buf p = {0};
        buf_appendf(&p, "%s/%s/%s/ledger.json", out_dir, names[i], corpus);
        cJSON *l = file_exists(p.data) ? json_load(p.data, 0) : NULL;
        if (l) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "folder", names[i]);
            cJSON_AddItemToObject(o, "ledger", l);
            cJSON_AddItemToArray(arr, o);
        }
        buf_free(&p);
        free(names[i]);
    }
    return arr;
}

static void corpus_report_load(CorpusReport *r, const Job *job, const JobCorpus *c) {
    memset(r, 0, sizeof *r);
    r->c = c;
    Buf p = {0};
    buf_appendf(&p, "%s/votes/%s.stats.json", job->out_dir, c->name);
    r->stats = json_load(p.data, 0);
    buf_free(&p);
    char *dir = clean_dir(job->out_dir, NULL, c->name), *lp = path_join(dir, "ledger.json");
    r->ledger = json_load(lp, 0);
    r->others = method_ledgers(job->out_dir, c->name);
    free(dir);
    free(lp);
    char *vp = votes_path(job->out_dir, c->name);
    Votes v;
    memset(&v, 0, sizeof v);
    if (votes_read(&v, vp) == 0) {
        margin_histogram(r, &v);
        votes_free(&v);
    } else {
        quorum_warn("report: %s: unreadable; the margin histogram is left out", vp);
    }
    free(vp);
}

/* ---- report.json ---- */
static cJSON *report_json(const Job *job, const CorpusReport *rs, int n) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "job", job->name);
    cJSON *arr = cJSON_AddArrayToObject(j, "corpora");
    for (int i = 0; i < n; i++) {
        const CorpusReport *r = &rs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "corpus", r->c->name);
        cJSON_AddItemToObject(o, "stats", r->stats ? cJSON_Duplicate(r->stats, 1) : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "ledger", r->ledger ? cJSON_Duplicate(r->ledger, 1) : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "method_ledgers", cJSON_Duplicate(r->others, 1));
        if (r->have_hist) {
            cJSON *h = cJSON_AddObjectToObject(o, "margin_histogram");
            cJSON_AddNumberToObject(h, "lo", r->lo);
            cJSON_AddNumberToObject(h, "hi", r->hi);
            cJSON *counts = cJSON_AddArrayToObject(h, "counts");
            for (int b = 0; b < HIST_BINS; b++) cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)r->hist[b]));
        } else {
            cJSON_AddNullToObject(o, "margin_histogram");
        }
        cJSON_AddItemToArray(arr, o);
    }
    return j;
}

/* ---- report.md ---- */
static void md_buckets(Buf *md, const CorpusReport *rs, int n) {
    buf_append_str(md, "## Agreement buckets\n\n| corpus | split | pairs | members | NoAgree % | LowAgree % | "
                       "HighAgree % | AllAgree % | Fleiss kappa |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const cJSON *s = rs[i].stats;
        if (!s) continue;
        const cJSON *sp = jget(s, "split"), *b = jget(s, "buckets");
        buf_appendf(md, "| %s | %s | %.0f | %.0f |", rs[i].c->name, cJSON_IsString(sp) ? sp->valuestring : "?",
                    jnum(s, "n_pairs"), jnum(s, "n_members"));
        for (int k = 0; k < BUCKET_COUNT; k++) buf_appendf(md, " %.2f |", jnum(jget(b, bucket_name((Bucket)k)), "pct"));
        double kappa = jnum(s, "fleiss_kappa"); /* null with one member */
        if (isnan(kappa)) buf_append_str(md, " n/a |\n");
        else buf_appendf(md, " %.4f |\n", kappa);
    }
    buf_append_str(md, "\n");
}

static void md_committee(Buf *md, const CorpusReport *r) {
    const cJSON *s = r->stats, *names = jget(s, "members"), *acc = jget(s, "member_accuracy"),
                *mm = jget(s, "mean_margin"), *ag = jget(s, "agreement");
    int nm = cJSON_GetArraySize(names);
    buf_appendf(md, "### Committee on %s\n\n| member | accuracy | mean margin |\n|---|---:|---:|\n", r->c->name);
    for (int m = 0; m < nm; m++)
        buf_appendf(md, "| %s | %.4f | %.4f |\n", jarr_str(names, m), jarr_num(acc, m), jarr_num(mm, m));
    buf_append_str(md, "\nPairwise agreement (fraction of pairs with the same vote):\n\n|   |");
    for (int m = 0; m < nm; m++) buf_appendf(md, " %s |", jarr_str(names, m));
    buf_append_str(md, "\n|---|");
    for (int m = 0; m < nm; m++) buf_append_str(md, "---:|");
    buf_append_str(md, "\n");
    for (int a = 0; a < nm; a++) {
        buf_appendf(md, "| %s |", jarr_str(names, a));
        for (int b = 0; b < nm; b++) buf_appendf(md, " %.3f |", jarr_num(cJSON_GetArrayItem(ag, a), b));
        buf_append_str(md, "\n");
    }
    buf_append_str(md, "\n");
}

static void md_ledger(Buf *md, const CorpusReport *r) {
    const cJSON *l = r->ledger, *b = jget(l, "buckets"), *t = jget(l, "totals"), *m = jget(l, "method");
    buf_appendf(md, "### Ledger of %s (method %s)\n\n| bucket | kept | flipped | removed |\n|---|---:|---:|---:|\n",
                r->c->name, cJSON_IsString(m) ? m->valuestring : "?");
    for (int k = 0; k < BUCKET_COUNT; k++) {
        const cJSON *row = jget(b, bucket_name((Bucket)k));
        buf_appendf(md, "| %s | %.0f | %.0f | %.0f |\n", bucket_name((Bucket)k), jnum(row, "kept"), jnum(row, "flipped"),
                    jnum(row, "removed"));
    }
    buf_appendf(md, "| **total** | %.0f | %.0f | %.0f |\n\n", jnum(t, "kept"), jnum(t, "flipped"), jnum(t, "removed"));
    buf_appendf(md, "Input lines %.0f = kept + flipped + removed + rejected at ingest (%.0f): %s.\n\n", jnum(l, "lines"),
                jnum(t, "rejected"), cJSON_IsTrue(jget(l, "balanced")) ? "balanced" : "**NOT balanced**");
}

/* The job ledger's calibration section (quorum/clean.h, "Calibrated committees"): which member to drop. */
static void md_calibration(Buf *md, const CorpusReport *r) {
    const cJSON *cal = jget(r->ledger, "calibration"), *ms = jget(cal, "members"), *it;
    if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0) return;
    const cJSON *norm = jget(cal, "normalize");
    buf_appendf(md, "### Calibrated committee on %s (normalize %s)\n\n| member | weight | agrees with labels | "
                    "agrees with the rest |\n|---|---:|---:|---:|\n",
                r->c->name, cJSON_IsString(norm) ? norm->valuestring : "?");
    cJSON_ArrayForEach(it, ms) {
        const cJSON *name = jget(it, "name");
        double loo = jnum(it, "loo_agreement");
        buf_appendf(md, "| %s | %g | %.4f |", cJSON_IsString(name) ? name->valuestring : "?", jnum(it, "weight"),
                    jnum(it, "label_agreement"));
        if (isnan(loo)) buf_append_str(md, " n/a |\n");
        else buf_appendf(md, " %.4f |\n", loo);
    }
    buf_append_str(md, "\n");
}

/* One row per cleaning run found: the job's own (cleaned/) and every `--method` run (cleaned-<m>/). */
static void md_methods(Buf *md, const CorpusReport *r) {
    if (cJSON_GetArraySize(r->others) == 0) return;
    buf_appendf(md, "### Methods compared on %s\n\n| folder | method | kept | flipped | removed | rejected |\n"
                    "|---|---|---:|---:|---:|---:|\n", r->c->name);
    const cJSON *it;
    if (r->ledger) {
        const cJSON *t = jget(r->ledger, "totals"), *m = jget(r->ledger, "method");
        buf_appendf(md, "| cleaned | %s | %.0f | %.0f | %.0f | %.0f |\n", cJSON_IsString(m) ? m->valuestring : "?",
                    jnum(t, "kept"), jnum(t, "flipped"), jnum(t, "removed"), jnum(t, "rejected"));
    }
    cJSON_ArrayForEach(it, r->others) {
        const cJSON *l = jget(it, "ledger"), *t = jget(l, "totals"), *m = jget(l, "method");
        buf_appendf(md, "| %s | %s | %.0f | %.0f | %.0f | %.0f |\n", jget(it, "folder")->valuestring,
                    cJSON_IsString(m) ? m->valuestring : "?", jnum(t, "kept"), jnum(t, "flipped"), jnum(t, "removed"),
                    jnum(t, "rejected"));
    }
    buf_append_str(md, "\n");
}

static void report_markdown(Buf *md, const Job *job, const CorpusReport *rs, int n, const char *const *pngs, int n_png) {
    buf_appendf(md, "# quorum report: %s\n\n", job->name);
    md_buckets(md, rs, n);
    buf_append_str(md, "## Committee\n\n");
    for (int i = 0; i < n; i++)
        if (rs[i].stats) md_committee(md, &rs[i]);
    buf_append_str(md, "## Cleaning ledgers\n\n");
    for (int i = 0; i < n; i++)
        if (rs[i].ledger) md_ledger(md, &rs[i]), md_calibration(md, &rs[i]);
    for (int i = 0; i < n; i++) md_methods(md, &rs[i]);
    if (n_png) buf_append_str(md, "## Plots\n\n");
    for (int i = 0; i < n_png; i++) buf_appendf(md, "![%s](%s)\n\n", pngs[i], pngs[i]);
}

/* ---- plots ---- */
#define MAX_PNG (1 + 3 * JOB_MAX_CORPORA)

typedef struct {
    Buf gp;
    const char *dir;
    const char *names[MAX_PNG];
    int n;
} Plots;

/* A name as it may appear inside a gnuplot "..." string: quotes, backslashes and controls become '_'. */
static const char *gp_label(const char *s) {
    static char buf[4][256];
    static int slot;
    char *o = buf[slot++ & 3];
    size_t i = 0;
    for (; s[i] && i < sizeof buf[0] - 1; i++) o[i] = (s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20) ? '_' : s[i];
    o[i] = 0;
    return o;
}

/* Starts one PNG (written to <name>.tmp, renamed once gnuplot succeeds). */
static void plot_begin(Plots *p, const char *name, const char *title) {
    p->names[p->n++] = xstrdup(name);
    buf_appendf(&p->gp, "reset\nset termoption noenhanced\nset output \"%s/%s.tmp\"\nset title \"%s\"\n", p->dir, name, gp_label(title));
}

static void plot_buckets(Plots *p, const CorpusReport *rs, int n) {
    plot_begin(p, "buckets.png", "agreement buckets (% of pairs)");
    buf_append_str(&p->gp, "$B << EOD\ncorpus NoAgree LowAgree HighAgree AllAgree\n");
    for (int i = 0; i < n; i++) {
        if (!rs[i].stats) continue;
        const cJSON *b = jget(rs[i].stats, "buckets");
        buf_appendf(&p->gp, "\"%s\"", gp_label(rs[i].c->name));
        for (int k = 0; k < BUCKET_COUNT; k++) buf_appendf(&p->gp, " %g", jnum(jget(b, bucket_name((Bucket)k)), "pct"));
        buf_append_str(&p->gp, "\n");
    }
    buf_append_str(&p->gp, "EOD\nset style data histograms\nset style histogram clustered\nset style fill solid 0.8\n"
                           "set ylabel \"% of pairs\"\nset yrange [0:100]\nset key top left\n"
                           "plot for [c=2:5] $B using c:xtic(1) title columnheader\n");
}

static void plot_committee(Plots *p, const CorpusReport *r) {
    const cJSON *names = jget(r->stats, "members"), *acc = jget(r->stats, "member_accuracy"),
                *ag = jget(r->stats, "agreement");
    int nm = cJSON_GetArraySize(names);
    Buf name = {0}, title = {0};
    buf_appendf(&name, "accuracy-%s.png", r->c->name);
    buf_appendf(&title, "%s: per-member accuracy vs the human label", r->c->name);
    plot_begin(p, name.data, title.data);
    buf_append_str(&p->gp, "$A << EOD\n");
    for (int m = 0; m < nm; m++) buf_appendf(&p->gp, "\"%s\" %g\n", gp_label(jarr_str(names, m)), jarr_num(acc, m));
    buf_append_str(&p->gp, "EOD\nset style fill solid 0.8\nset boxwidth 0.6\nset yrange [0:1]\nset ylabel \"accuracy\"\n"
                           "plot $A using 0:2:xtic(1) with boxes notitle\n");
    name.len = title.len = 0;
    buf_appendf(&name, "agreement-%s.png", r->c->name);
    buf_appendf(&title, "%s: pairwise member agreement", r->c->name);
    plot_begin(p, name.data, title.data);
    buf_append_str(&p->gp, "$M << EOD\n");
    for (int a = 0; a < nm; a++) {
        for (int b = 0; b < nm; b++) buf_appendf(&p->gp, "%g ", jarr_num(cJSON_GetArrayItem(ag, a), b));
        buf_append_str(&p->gp, "\n");
    }
    buf_append_str(&p->gp, "EOD\nset cbrange [0:1]\nset palette rgb 33,13,10\nset xtics (");
    for (int m = 0; m < nm; m++) buf_appendf(&p->gp, "%s\"%s\" %d", m ? ", " : "", gp_label(jarr_str(names, m)), m);
    buf_append_str(&p->gp, ")\nset ytics (");
    for (int m = 0; m < nm; m++) buf_appendf(&p->gp, "%s\"%s\" %d", m ? ", " : "", gp_label(jarr_str(names, m)), m);
    buf_append_str(&p->gp, ")\nset yrange [] reverse\nplot $M matrix with image notitle\n");
    buf_free(&name);
    buf_free(&title);
}

static void plot_margins(Plots *p, const CorpusReport *r) {
    Buf name = {0}, title = {0};
    buf_appendf(&name, "margins-%s.png", r->c->name);
    buf_appendf(&title, "%s: mean committee margin (chosen - rejected)", r->c->name);
    plot_begin(p, name.data, title.data);
    double w = (r->hi - r->lo) / HIST_BINS;
    buf_append_str(&p->gp, "$H << EOD\n");
    for (int b = 0; b < HIST_BINS; b++) buf_appendf(&p->gp, "%.9g %lld\n", r->lo + (b + 0.5) * w, (long long)r->hist[b]);
    buf_appendf(&p->gp, "EOD\nset style fill solid 0.8\nset boxwidth %.9g\nset xlabel \"mean margin\"\n"
                        "set ylabel \"pairs\"\nplot $H using 1:2 with boxes notitle\n", w * 0.9);
    buf_free(&name);
    buf_free(&title);
}

/* Runs gnuplot (QUORUM_GNUPLOT overrides the binary) on the script; renames the PNGs into place.
 * Returns the number of PNGs produced (0 with a warning when gnuplot is missing or fails). */
static int plots_render(Plots *p) {
    const char *gnuplot = getenv("QUORUM_GNUPLOT");
    if (!gnuplot || !*gnuplot) gnuplot = "gnuplot";
    char *script = path_join(p->dir, "plots.gp");
    Buf full = {0};
    buf_append_str(&full, "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n  set terminal pngcairo size 900,540\n"
                          "} else {\n  set terminal png size 900,540\n}\n");
    buf_append(&full, p->gp.data, p->gp.len);
    buf_append_str(&full, "unset output\n");
    int ok = file_write_atomic(script, full.data, full.len) == 0;
    Buf cmd = {0};
    buf_appendf(&cmd, "'%s' '%s' >/dev/null 2>&1", gnuplot, script);
    if (ok) ok = system(cmd.data) == 0;
    int made = 0;
    for (int i = 0; i < p->n; i++) {
        Buf tmp = {0}, dst = {0};
        buf_appendf(&tmp, "%s/%s.tmp", p->dir, p->names[i]);
        buf_appendf(&dst, "%s/%s", p->dir, p->names[i]);
        if (ok && rename(tmp.data, dst.data) == 0) p->names[made++] = p->names[i];
        else { unlink(tmp.data); unlink(dst.data); free((char *)p->names[i]); } /* no stale plot either */
        buf_free(&tmp);
        buf_free(&dst);
    }
    if (!ok) quorum_warn("report: \"%s\" is missing or failed on %s; the report has no PNG plots", gnuplot, script);
    p->n = made;
    buf_free(&full);
    buf_free(&cmd);
    free(script);
    return made;
}

static int report_write(const Job *job, Buf *md_out) {
    char *dir = path_join(job->out_dir, "report");
    if (mkdir_p(dir)) { free(dir); return quorum_input_error(job->out_dir, "cannot create the report folder"); }
    int n = job->n_corpora;
    CorpusReport *rs = xcalloc((size_t)(n ? n : 1), sizeof *rs);
    for (int i = 0; i < n; i++) corpus_report_load(&rs[i], job, &job->corpora[i]);

    Plots p = {.dir = dir};
    plot_buckets(&p, rs, n);
    for (int i = 0; i < n; i++) {
        if (rs[i].stats) plot_committee(&p, &rs[i]);
        if (rs[i].have_hist) plot_margins(&p, &rs[i]);
    }
    plots_render(&p);

    cJSON *j = report_json(job, rs, n);
    cJSON *plots = cJSON_AddArrayToObject(j, "plots");
    for (int i = 0; i < p.n; i++) cJSON_AddItemToArray(plots, cJSON_CreateString(p.names[i]));
    report_markdown(md_out, job, rs, n, p.names, p.n);
    char *jp = path_join(dir, "report.json"), *mp = path_join(dir, "report.md");
    int rc = json_write_atomic(jp, j);
    if (rc == 0 && file_write_atomic(mp, md_out->data, md_out->len)) rc = quorum_input_error(mp, "cannot write");

    for (int i = 0; i < p.n; i++) free((char *)p.names[i]);
    for (int i = 0; i < n; i++) { cJSON_Delete(rs[i].stats); cJSON_Delete(rs[i].ledger); cJSON_Delete(rs[i].others); }
    free(rs); free(jp); free(mp); free(dir);
    cJSON_Delete(j);
    buf_free(&p.gp);
    return rc;
}

/* The Markdown is returned through report_markdown_last() for `quorum report` to print. */
static Buf last_md;
const char *report_markdown_last(void) { return last_md.data ? last_md.data : ""; }

int report_job(const Job *job) {
    int rc = 0;
    buf_free(&last_md);
    if (quorum_rank() == 0) rc = report_write(job, &last_md);
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}
