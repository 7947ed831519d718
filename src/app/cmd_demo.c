/*
 * cmd_demo.c - `quorum demo`: the planted-noise experiment, end to end, on a CPU in minutes.
 *
 *   1. gen       a synthetic HH corpus (harmless + helpful splits) with a fraction of labels flipped
 *                and recorded, plus clean held-out pairs                         (rank 0)
 *   2. tokenizer a small byte-level BPE learned from the training texts           (rank 0)
 *   3. ingest    the two noisy splits and the held-out pairs                      (all ranks)
 *   4. committee K tiny GPT-2 reward models, each trained (rm-train) on its own disjoint slice, and a
 *                tiny GPT-2 policy trained with DPO on the noisy corpus, which joins the committee as an
 *                lm member (IFD), an implicit member (against its initial weights) and a judge member
 *                (quorum/score.h): the PrefCleanBench ifd / rw_gap / llm_judge rules get their members
 *   5. pipeline  score -> vote -> clean (SAC, the job's method) -> report; then every other method
 *   6. DPO       the same initial policy trained on the SAC-cleaned corpus and on the oracle corpus, same
 *                seed, same steps as the noisy one
 *   7. measure   flip-detection precision/recall of every method against the planted flips (the winner
 *                by F1 is named), and each policy's preference accuracy on held-out ground-truth pairs
 * Everything is written under --out; the summary goes to <out>/demo.md, demo.json and demo.png and is
 * printed. Every number is produced by the run.
 */
#include "quorum/bpe_train.h"
#include "quorum/clean.h"
#include "quorum/cli.h"
#include "quorum/common.h"
#include "quorum/corpus.h"
#include "quorum/gen.h"
#include "quorum/job.h"
#include "quorum/opts.h"
#include "quorum/score.h"
#include "quorum/train.h"
#include "quorum/vote.h"

#include <cjson/cJSON.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *out;
    int64_t size, heldout;
    float flip;
    int members, rm_steps, dpo_steps, layers, dim, merges;
    uint64_t seed;
} DemoOptions;

static const char *const SPLITS[2] = {"harmless", "helpful"};
/* Every method but none, in clean.h order: METHODS(m) = m + 1. */
#define N_METHODS (CLEAN_METHOD_COUNT - 1)
#define METHODS(m) ((CleanMethod)((m) + 1))
/* The judge member's prompt (short: the demo's policy has 256 positions). */
static const char *const JUDGE_TEMPLATE = "{prompt}\n\nReply: {response}\n\nRate the reply from 1 to 10:";

typedef struct {
    int64_t tp, fp, fn, flipped, removed;
} Detect;

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return xstrdup(tmp);
}

/* Shares rank 0's return code with every rank (callers do rank-0-only work first). */
static int on_rank0(int rc_rank0) {
    int rc = rc_rank0;
    mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return rc;
}

static double elapsed(double t0) { return now_seconds() - t0; }

/* The tokenizer is learned from every chosen and rejected transcript of the training splits. */
static int learn_tokenizer(const DemoOptions *o, const char *data_dir, const char *tok_dir) {
    Buf texts = {0};
    I64Vec offs = {0};
    int rc = 0;
    for (int s = 0; s < 2 && !rc; s++) {
        char *p = pathf("%s/%s.jsonl", data_dir, SPLITS[s]);
        size_t n;
        const char *err;
        char *all = file_read_all(p, &n, &err);
        if (!all) rc = quorum_input_error(p, "%s", err);
        for (char *line = all, *next; !rc && line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            cJSON *j = cJSON_Parse(line);
            for (int k = 0; k < 2 && j; k++) {
                const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, k ? "rejected" : "chosen");
                if (cJSON_IsString(f)) {
                    i64vec_push(&offs, (int64_t)texts.len);
                    buf_append_str(&texts, f->valuestring);
                }
            }
            cJSON_Delete(j);
        }
        free(all);
        free(p);
    }
    if (!rc) {
        i64vec_push(&offs, (int64_t)texts.len);
        int64_t n = (int64_t)offs.len - 1;
        const char **t = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
        size_t *l = xmalloc(sizeof(size_t) * (size_t)(n ? n : 1));
        for (int64_t i = 0; i < n; i++) {
            t[i] = texts.data + offs.data[i];
            l[i] = (size_t)(offs.data[i + 1] - offs.data[i]);
        }
        rc = bpe_train_write(t, l, n, o->merges, tok_dir);
        free(t);
        free(l);
    }
    buf_free(&texts);
    i64vec_free(&offs);
    return rc;
}

static int init_model(const DemoOptions *o, const char *tok_dir, const char *head, uint64_t seed, const char *out) {
    InitModelOptions m;
    memset(&m, 0, sizeof m);
    snprintf(m.arch, sizeof m.arch, "gpt2");
    m.layers = o->layers;
    m.dim = o->dim;
    m.heads = 4;
    m.max_pos = 256;
    snprintf(m.head, sizeof m.head, "%s", head);
    snprintf(m.tokenizer, sizeof m.tokenizer, "%s", tok_dir);
    snprintf(m.out, sizeof m.out, "%s", out);
    m.seed = seed;
    return model_init_random(&m);
}

static void train_defaults(TrainCfg *c, int steps, uint64_t seed) {
    train_cfg_defaults(c);
    c->steps = steps;
    c->batch_size = 16;
    c->optim.lr = 1e-3f;
    c->optim.warmup_steps = steps / 10;
    c->optim.cosine = 1;
    c->checkpoint_every = 0;
    c->quiet = 1;
    c->seed = seed;
}

/* Writes the job file the pipeline runs on (also left on disk for the user to inspect and re-run). */
static int write_job(const DemoOptions *o, const char *job_path, const char *run_dir, const char *data_dir,
                     const char *models_dir, Job *job) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", "demo");
    cJSON_AddStringToObject(j, "out_dir", run_dir);
    cJSON_AddNumberToObject(j, "shard_size", 256);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON *cs = cJSON_AddArrayToObject(j, "corpora");
    for (int s = 0; s < 2; s++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", SPLITS[s]);
        char *p = pathf("%s/%s.jsonl", data_dir, SPLITS[s]);
        cJSON_AddStringToObject(c, "path", p);
        free(p);
        cJSON_AddStringToObject(c, "format", "hh");
        cJSON_AddStringToObject(c, "split", SPLITS[s]);
        cJSON_AddItemToArray(cs, c);
    }
    cJSON *ms = cJSON_AddArrayToObject(j, "committee");
    for (int k = 0; k < o->members; k++) {
        cJSON *m = cJSON_CreateObject();
        char name[32];
        snprintf(name, sizeof name, "rm%d", k);
        cJSON_AddStringToObject(m, "name", name);
        char *p = pathf("%s/rm%d/final", models_dir, k);
        cJSON_AddStringToObject(m, "path", p);
        free(p);
        cJSON_AddNumberToObject(m, "max_length", 256);
        cJSON_AddNumberToObject(m, "batch_size", 16);
        cJSON_AddItemToArray(ms, m);
    }
    /* the DPO policy trained on the noisy corpus, as the three causal-LM member kinds */
    static const char *const LM_KIND[3][2] = {{"ifd", "lm"}, {"dpo", "implicit"}, {"judge", "judge"}};
    for (int k = 0; k < 3; k++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", LM_KIND[k][0]);
        cJSON_AddStringToObject(m, "kind", LM_KIND[k][1]);
        char *p = pathf("%s/dpo-noisy/final", o->out);
        cJSON_AddStringToObject(m, "path", p);
        free(p);
        p = k == 1 ? pathf("%s/policy-init", models_dir) : k == 2 ? pathf("%s/judge.txt", models_dir) : NULL;
        if (p) cJSON_AddStringToObject(m, k == 1 ? "ref" : "prompt_template", p);
        free(p);
        cJSON_AddNumberToObject(m, "max_length", 256);
        cJSON_AddNumberToObject(m, "batch_size", 16);
        cJSON_AddItemToArray(ms, m);
    }
    cJSON *cl = cJSON_AddObjectToObject(j, "clean");
    cJSON_AddStringToObject(cl, "method", "sac");
    cJSON *sp = cJSON_AddArrayToObject(cl, "splits");
    cJSON_AddItemToArray(sp, cJSON_CreateString("harmless"));
    cJSON_AddNumberToObject(cl, "bad_threshold", 0.0);
    cJSON_AddNumberToObject(cl, "p", (double)o->flip);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = 0;
    if (quorum_rank() == 0) rc = file_write_atomic(job_path, text, strlen(text));
    rc = on_rank0(rc);
    /* paths in the written file are absolute or relative to the current directory: parse it as if
     * it lived here, so nothing is re-resolved against the job file's folder */
    if (!rc) rc = job_parse(job, text, "demo-job.json");
    if (!rc) snprintf(job->path, sizeof job->path, "%s", job_path);
    free(text);
    return rc;
}

/* Flip detection of `method` over both splits: flagged = flipped or removed; truth = planted flips. */
static int detect(const Job *job, CleanMethod method, const char *data_dir, Detect *d) {
    memset(d, 0, sizeof *d);
    JobClean cfg = job->clean;
    cfg.method = method;
    for (int s = 0; s < 2; s++) {
        Votes v;
        char *vp = votes_path(job->out_dir, SPLITS[s]);
        int rc = votes_read(&v, vp);
        free(vp);
        if (rc) return -1;
        char *fp = pathf("%s/%s.flipped", data_dir, SPLITS[s]);
        int64_t n_truth;
        int64_t *truth = gen_read_flipped(fp, &n_truth);
        free(fp);
        if (!truth) { votes_free(&v); return -1; }
        uint8_t *action = xmalloc((size_t)(v.n ? v.n : 1));
        clean_calibrate(&cfg, &v); /* as clean_job decides */
        clean_decide(&cfg, &v, action);
        for (int64_t i = 0; i < v.n; i++) {
            int64_t lo = 0, hi = n_truth; /* truth is sorted: binary search for the pair id */
            while (lo < hi) {
                int64_t mid = (lo + hi) / 2;
                if (truth[mid] < v.pair_id[i]) lo = mid + 1;
                else hi = mid;
            }
            int planted = lo < n_truth && truth[lo] == v.pair_id[i];
            int flagged = action[i] != ACTION_KEEP;
            d->flipped += action[i] == ACTION_FLIP;
            d->removed += action[i] == ACTION_REMOVE;
            d->tp += flagged && planted;
            d->fp += flagged && !planted;
            d->fn += !flagged && planted;
        }
        free(action);
        free(truth);
        votes_free(&v);
    }
    return 0;
}

static double ratio(int64_t a, int64_t b) { return b ? (double)a / (double)b : 0.0; }

/* Final train loss: the mean loss of the last 10% of steps in <dir>/metrics.jsonl. */
static double final_loss(const char *dir) {
    char *p = pathf("%s/metrics.jsonl", dir);
    size_t n;
    const char *err;
    char *all = file_read_all(p, &n, &err);
    free(p);
    if (!all) return 0.0;
    double v[4096];
    int k = 0;
    for (char *line = all, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        cJSON *j = cJSON_Parse(line);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "loss");
        if (cJSON_IsNumber(l) && k < 4096) v[k++] = l->valuedouble;
        cJSON_Delete(j);
    }
    free(all);
    int m = k / 10 > 0 ? k / 10 : 1;
    double s = 0;
    for (int i = k - m; i < k && i >= 0; i++) s += v[i];
    return k ? s / m : 0.0;
}

static void write_summary(const DemoOptions *o, const Detect *det, const PrefEval *ev, const double *loss,
                          int64_t planted, int64_t pairs, double seconds) {
    static const char *const POLICY[3] = {"noisy", "sac-cleaned", "oracle"};
    Buf md = {0};
    cJSON *js = cJSON_CreateObject();
    buf_appendf(&md, "# quorum demo: planted label noise, committee cleaning, DPO\n\n"
                     "%lld training pairs (harmless + helpful), %lld labels flipped (%.1f%%), %d reward models on "
                     "disjoint slices, %lld held-out pairs per split. Run time %.0f s on %d rank(s).\n\n",
                (long long)pairs, (long long)planted, 100.0 * ratio(planted, pairs), o->members,
                (long long)o->heldout, seconds, quorum_world());
    cJSON_AddNumberToObject(js, "pairs", (double)pairs);
    cJSON_AddNumberToObject(js, "planted_flips", (double)planted);
    cJSON_AddNumberToObject(js, "members", o->members);
    cJSON_AddNumberToObject(js, "seconds", seconds);
    buf_append_str(&md, "## Flip detection (flagged = flipped or removed; truth = the planted flips)\n\n"
                        "| method | flipped | removed | precision | recall |\n|---|---:|---:|---:|---:|\n");
    cJSON *jd = cJSON_AddObjectToObject(js, "detection");
    for (int m = 0; m < N_METHODS; m++) {
        const Detect *d = &det[m];
        double p = ratio(d->tp, d->tp + d->fp), r = ratio(d->tp, d->tp + d->fn);
        buf_appendf(&md, "| %s | %lld | %lld | %.3f | %.3f |\n", clean_method_name(METHODS(m)), (long long)d->flipped,
                    (long long)d->removed, p, r);
        cJSON *e = cJSON_AddObjectToObject(jd, clean_method_name(METHODS(m)));
        cJSON_AddNumberToObject(e, "flipped", (double)d->flipped);
        cJSON_AddNumberToObject(e, "removed", (double)d->removed);
        cJSON_AddNumberToObject(e, "precision", p);
        cJSON_AddNumberToObject(e, "recall", r);
    }
    int best = 0;
    double best_f1 = -1;
    for (int m = 0; m < N_METHODS; m++) {
        double f1 = ratio(2 * det[m].tp, 2 * det[m].tp + det[m].fp + det[m].fn);
        if (f1 > best_f1) best_f1 = f1, best = m;
    }
    buf_appendf(&md, "\nBest flip detection by F1 = 2TP / (2TP + FP + FN): **%s** (F1 %.3f, precision %.3f, recall %.3f). "
                     "The lm, implicit and judge members are one tiny GPT-2 policy trained here with DPO on the noisy "
                     "corpus (the implicit member against its initial weights); a 2-layer model trained on this corpus "
                     "is no instruction follower, so the ifd_* and llm_judge_* rows show these mechanisms on tiny "
                     "models, not what real LLMs give.\n",
                clean_method_name(METHODS(best)), best_f1, ratio(det[best].tp, det[best].tp + det[best].fp),
                ratio(det[best].tp, det[best].tp + det[best].fn));
    cJSON_AddStringToObject(js, "best_method", clean_method_name(METHODS(best)));
    buf_append_str(&md, "\n## DPO on noisy vs cleaned data (held-out ground-truth pairs)\n\n"
                        "Preference accuracy = ranking accuracy: the fraction of held-out pairs whose chosen response the "
                        "trained policy itself makes more likely than the rejected one (Chen et al. 2024, \"Preference "
                        "Learning Algorithms Do Not Learn Preference Rankings\"). Implicit-reward accuracy is TRL's "
                        "rewards/accuracies (margin over the reference > 0) on the same pairs.\n\n"
                        "| policy trained on | preference (ranking) accuracy | implicit-reward accuracy | "
                        "mean implicit margin (nats) | final train loss |\n|---|---:|---:|---:|---:|\n");
    cJSON *jp = cJSON_AddObjectToObject(js, "dpo");
    for (int k = 0; k < 3; k++) {
        buf_appendf(&md, "| %s | %.3f | %.3f | %.3f | %.4f |\n", POLICY[k], ev[k].logp_accuracy, ev[k].accuracy,
                    ev[k].mean_margin, loss[k]);
        cJSON *e = cJSON_AddObjectToObject(jp, POLICY[k]);
        cJSON_AddNumberToObject(e, "heldout_preference_accuracy", ev[k].logp_accuracy);
        cJSON_AddNumberToObject(e, "heldout_implicit_reward_accuracy", ev[k].accuracy);
        cJSON_AddNumberToObject(e, "heldout_mean_margin", ev[k].mean_margin);
        cJSON_AddNumberToObject(e, "final_train_loss", loss[k]);
        cJSON_AddNumberToObject(e, "heldout_pairs", (double)ev[k].n);
    }
    buf_appendf(&md, "\nHeld-out preference accuracy: SAC-cleaned %.3f vs noisy %.3f: cleaned %s noisy "
                     "(implicit-reward accuracy: %.3f vs %.3f). The oracle row trains on the true labels (the planted "
                     "flips undone): the ceiling cleaning aims for.\n\n"
                     "Committee buckets, per-member accuracy and agreement: `%s/run/report/report.md`.\n",
                ev[1].logp_accuracy, ev[0].logp_accuracy, ev[1].logp_accuracy > ev[0].logp_accuracy ? "beats" : "does NOT beat",
                ev[1].accuracy, ev[0].accuracy, o->out);
    cJSON_AddBoolToObject(js, "cleaned_beats_noisy", ev[1].logp_accuracy > ev[0].logp_accuracy);
    char *p = pathf("%s/demo.md", o->out);
    file_write_atomic(p, md.data, md.len);
    free(p);
    char *text = cJSON_Print(js);
    p = pathf("%s/demo.json", o->out);
    file_write_atomic(p, text, strlen(text));
    free(p);
    free(text);
    /* A bar chart of precision/recall per method and held-out accuracy per policy (gnuplot optional). */
    p = pathf("%s/demo.dat", o->out);
    Buf dat = {0};
    for (int m = 0; m < N_METHODS; m++)
        buf_appendf(&dat, "%s %.4f %.4f\n", clean_method_name(METHODS(m)), ratio(det[m].tp, det[m].tp + det[m].fp),
                    ratio(det[m].tp, det[m].tp + det[m].fn));
    buf_append_str(&dat, "\n\n");
    for (int k = 0; k < 3; k++) buf_appendf(&dat, "%s %.4f %.4f\n", POLICY[k], ev[k].logp_accuracy, ev[k].accuracy);
    file_write_atomic(p, dat.data, dat.len);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "gnuplot -e \"set terminal pngcairo size 1100,460 noenhanced; set output '%s/demo.png'; set multiplot layout 1,2; "
             "set style data histograms; set style fill solid 0.8; set yrange [0:1]; set xtics rotate by -30; "
             "set key below; set title 'flip detection'; plot '%s' index 0 using 2:xtic(1) title 'precision', "
             "'' index 0 using 3 title 'recall'; set title 'DPO held-out preference accuracy'; "
             "plot '%s' index 1 using 2:xtic(1) title 'preference (ranking) accuracy', '' index 1 using 3 title "
             "'implicit-reward accuracy'; unset multiplot\" 2>/dev/null",
             o->out, p, p);
    if (system(cmd) != 0) quorum_warn("demo: gnuplot failed or is missing: no demo.png");
    free(p);
    buf_free(&dat);
    fputs(md.data, stdout);
    fflush(stdout);
    buf_free(&md);
    cJSON_Delete(js);
}

/* The oracle corpus: the training splits with the planted flips undone (rank 0). */
static int write_oracle(const char *data_dir) {
    int rc = 0;
    for (int s = 0; s < 2 && !rc; s++) {
        char *src = pathf("%s/%s.jsonl", data_dir, SPLITS[s]), *fl = pathf("%s/%s.flipped", data_dir, SPLITS[s]);
        char *dst = pathf("%s/oracle-%s.jsonl", data_dir, SPLITS[s]);
        size_t n;
        const char *err;
        int64_t nf, k = 0, line_no = 0;
        int64_t *flips = gen_read_flipped(fl, &nf);
        char *all = file_read_all(src, &n, &err);
        Buf out = {0};
        if (!all || !flips) rc = -1;
        for (char *line = all, *next; !rc && line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            line_no++;
            cJSON *j = cJSON_Parse(line);
            if (k < nf && flips[k] == line_no) { /* swap back */
                k++;
                cJSON *c = cJSON_DetachItemFromObject(j, "chosen"), *r = cJSON_DetachItemFromObject(j, "rejected");
                cJSON_AddItemToObject(j, "chosen", r);
                cJSON_AddItemToObject(j, "rejected", c);
            }
            char *t = cJSON_PrintUnformatted(j);
            buf_append_str(&out, t);
            buf_append_str(&out, "\n");
            free(t);
            cJSON_Delete(j);
        }
        if (!rc) rc = file_write_atomic(dst, out.data, out.len);
        buf_free(&out);
        free(all); free(flips); free(src); free(fl); free(dst);
    }
    return rc;
}

static int ingest_file(const char *out_dir, const char *name, const char *path, const char *split) {
    Job j;
    char json[4096];
    snprintf(json, sizeof json, "{\"name\":\"x\",\"out_dir\":\"%s\",\"shard_size\":256,\"corpora\":[{\"name\":\"%s\","
             "\"path\":\"%s\",\"format\":\"hh\",\"split\":\"%s\"}]}", out_dir, name, path, split);
    if (job_parse(&j, json, "demo-ingest.json")) return -1;
    return corpus_ingest(&j, &j.corpora[0], 1);
}

static void usage(FILE *f) {
    fprintf(f, "usage: quorum demo [--out DIR] [--size N] [--heldout N] [--flip F] [--members K]\n"
               "                   [--rm-steps S] [--dpo-steps S] [--layers L] [--dim D] [--merges M] [--seed S]\n"
               "  The planted-noise experiment end to end (see README, \"The demo\"): defaults --out out/demo\n"
               "  --size 600 (training pairs per split) --heldout 200 --flip 0.2 --members 3 --rm-steps 150\n"
               "  --dpo-steps 150 --layers 2 --dim 64 --merges 300 --seed 1. Writes <out>/demo.md, demo.json, demo.png.\n");
}

int cmd_demo(int argc, char **argv) {
    DemoOptions o = {"out/demo", 600, 200, 0.2f, 3, 150, 150, 2, 64, 300, 1};
    const Opt opts[] = {{"out", 'p', &o.out}, {"size", 'I', &o.size}, {"heldout", 'I', &o.heldout},
                        {"flip", 'f', &o.flip}, {"members", 'i', &o.members}, {"rm-steps", 'i', &o.rm_steps},
                        {"dpo-steps", 'i', &o.dpo_steps}, {"layers", 'i', &o.layers}, {"dim", 'i', &o.dim},
                        {"merges", 'i', &o.merges}, {"seed", 'u', &o.seed}, {0}};
    int rc = opts_command(argc, argv, opts, usage);
    if (rc >= 0) return rc;
    if (o.size < 16 || o.heldout < 8 || o.flip < 0 || o.flip >= 0.5f || o.members < 1 || o.members > JOB_MAX_MEMBERS ||
        o.rm_steps < 1 || o.dpo_steps < 1 || o.layers < 1 || o.dim < 8 || o.dim % 4 || o.merges < 0) {
        usage(stderr);
        return 2;
    }
    double t0 = now_seconds();
    char *data = pathf("%s/data", o.out), *tok = pathf("%s/tokenizer", o.out), *models = pathf("%s/models", o.out);
    char *run = pathf("%s/run", o.out), *held = pathf("%s/heldout", o.out), *job_path = pathf("%s/job.json", o.out);
    rc = 0;

    /* 1-2. data and tokenizer */
    if (quorum_rank() == 0) {
        GenOptions g = {data, o.size, o.heldout, o.flip, o.seed};
        GenStats st;
        rc = gen_corpus(&g, &st) || write_oracle(data) || learn_tokenizer(&o, data, tok) || mkdir_p(models);
    }
    if ((rc = on_rank0(rc))) goto done;
    quorum_log("demo: [%5.1fs] corpus in %s, byte-level BPE tokenizer in %s", elapsed(t0), data, tok);

    /* 3. ingest: the noisy splits (the job), held-out and oracle pairs */
    Job job;
    if ((rc = write_job(&o, job_path, run, data, models, &job))) goto done;
    for (int s = 0; s < 2 && !rc; s++) rc = corpus_ingest(&job, &job.corpora[s], 1);
    for (int s = 0; s < 2 && !rc; s++) {
        char *hp = pathf("%s/heldout-%s.jsonl", data, SPLITS[s]), *op = pathf("%s/oracle-%s.jsonl", data, SPLITS[s]);
        char hn[64], on[64];
        snprintf(hn, sizeof hn, "heldout-%s", SPLITS[s]);
        snprintf(on, sizeof on, "oracle-%s", SPLITS[s]);
        rc = ingest_file(held, hn, hp, SPLITS[s]) || ingest_file(held, on, op, SPLITS[s]);
        free(hp);
        free(op);
    }
    if (rc) goto done;
    quorum_log("demo: [%5.1fs] ingested", elapsed(t0));

    /* 4. committee: K reward models, each on its own disjoint slice of the noisy data */
    char *noisy = pathf("%s/corpora/harmless,%s/corpora/helpful", run, run);
    for (int k = 0; k < o.members && !rc; k++) {
        char *init = pathf("%s/rm%d-init", models, k);
        rc = on_rank0(quorum_rank() == 0 ? init_model(&o, tok, "score", o.seed * 1000 + 100 + k, init) : 0);
        RmOptions r;
        memset(&r, 0, sizeof r);
        snprintf(r.model, sizeof r.model, "%s", init);
        snprintf(r.corpus_dir, sizeof r.corpus_dir, "%s", noisy);
        snprintf(r.out, sizeof r.out, "%s/rm%d", models, k);
        train_defaults(&r.train, o.rm_steps, o.seed + 17 * (uint64_t)k);
        r.max_length = 256;
        r.slice_k = k;
        r.slice_K = o.members;
        if (!rc) rc = rm_train(&r);
        free(init);
        quorum_log("demo: [%5.1fs] reward model %d/%d trained", elapsed(t0), k + 1, o.members);
    }
    /* 4b-7. DPO from one initial policy on the noisy corpus (before the pipeline: the policy is a member),
     * then the pipeline with every cleaning method, then DPO on the SAC-cleaned and the oracle corpus;
     * held-out evaluation of each */
    char *policy = pathf("%s/policy-init", models), *judge = pathf("%s/judge.txt", models);
    rc = rc || on_rank0(quorum_rank() == 0 ? init_model(&o, tok, "lm", o.seed * 1000 + 7, policy) ||
                                                 file_write_atomic(judge, JUDGE_TEMPLATE, strlen(JUDGE_TEMPLATE))
                                           : 0);
    free(judge);
    char *sets[3] = {noisy, pathf("%s/cleaned/harmless,%s/cleaned/helpful", run, run),
                     pathf("%s/corpora/oracle-harmless,%s/corpora/oracle-helpful", held, held)};
    char *heldout = pathf("%s/corpora/heldout-harmless,%s/corpora/heldout-helpful", held, held);
    static const char *const NAMES[3] = {"dpo-noisy", "dpo-sac", "dpo-oracle"};
    PrefEval ev[3];
    double loss[3] = {0, 0, 0};
    memset(ev, 0, sizeof ev);
    Detect det[N_METHODS];
    for (int k = 0; k < 3 && !rc; k++) {
        if (k == 1) { /* 5. the pipeline, then every other cleaning method */
            rc = score_job(&job) || vote_job(&job) || clean_job(&job) || clean_job_method(&job, "all") ||
                 report_job(&job);
            quorum_log("demo: [%5.1fs] scored, voted, cleaned (all methods), report in %s/report", elapsed(t0), run);
            for (int m = 0; m < N_METHODS && !rc; m++) rc = detect(&job, METHODS(m), data, &det[m]);
            if (rc) break;
        }
        DpoOptions d;
        memset(&d, 0, sizeof d);
        snprintf(d.policy, sizeof d.policy, "%s", policy);
        snprintf(d.corpus_dir, sizeof d.corpus_dir, "%s", sets[k]);
        snprintf(d.out, sizeof d.out, "%s/%s", o.out, NAMES[k]);
        train_defaults(&d.train, o.dpo_steps, o.seed + 5);
        d.max_length = 256;
        d.max_prompt_length = 192;
        rc = dpo_train(&d);
        char *fin = pathf("%s/final", d.out);
        if (!rc) rc = dpo_eval(fin, policy, heldout, 256, 192, &ev[k]);
        free(fin);
        loss[k] = final_loss(d.out);
        quorum_log("demo: [%5.1fs] %s: held-out preference accuracy %.3f (implicit-reward accuracy %.3f)", elapsed(t0),
                   NAMES[k], ev[k].logp_accuracy, ev[k].accuracy);
    }
    if (!rc && quorum_rank() == 0) {
        int64_t planted = det[0].tp + det[0].fn;
        write_summary(&o, det, ev, loss, planted, 2 * o.size, elapsed(t0));
    }
    free(policy); free(sets[0]); free(sets[1]); free(sets[2]); free(heldout);
done:
    free(data); free(tok); free(models); free(run); free(held); free(job_path);
    return rc ? 1 : 0;
}
