/* cmd_ingest.c - `quorum ingest`: every corpus of a job file, or one file named on the command line. */
#include "quorum/common.h"
#include "quorum/corpus.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: quorum ingest --job JOB.json [--corpus NAME] [--strict]\n"
    "       quorum ingest --out DIR --name NAME [--format auto|hh|pcr|chat|sharegpt|pairs] [--split S]\n"
    "                     [--shard-size N] [--max-pairs N] [--field-prompt K] [--field-chosen K]\n"
    "                     [--field-rejected K] [--field-role K] [--field-content K] [--field-conversations K]\n"
    "                     [--field-system K] [--field-a K] [--field-b K] [--field-label K] [--label-a JSON]\n"
    "                     [--label-b JSON] [--label-tie JSON] [--roles JSON] [--strict] FILE\n"
    "FILE: JSONL or a JSON array (.json), either gzip-compressed or not (detected from the content).\n"
    "Reads preference pairs into DIR/corpora/NAME (job form: <out_dir>/corpora/<name>): shard-*.h5,\n"
    "index.h5, rejects.jsonl, manifest.json (written last). Bad lines are rejected and listed; with\n"
    "--strict the first bad line stops the run (exit 1) and nothing is written. Run under mpirun to\n"
    "parse and write shards in parallel; the output is identical for any number of ranks.\n";

/* Direct-form options that become keys of a one-corpus job (validated by job_parse). */
static const char *const CORPUS_KEYS[][2] = {
    {"--name", "name"}, {"--format", "format"}, {"--split", "split"}, {"--field-prompt", "field_prompt"},
    {"--field-chosen", "field_chosen"}, {"--field-rejected", "field_rejected"}, {"--field-role", "field_role"},
    {"--field-content", "field_content"}, {"--max-pairs", "max_pairs"}, {"--field-conversations", "field_conversations"},
    {"--field-system", "field_system"}, {"--field-a", "field_a"}, {"--field-b", "field_b"}, {"--field-label", "field_label"},
    {"--label-a", "label_a"}, {"--label-b", "label_b"}, {"--label-tie", "label_tie"}, {"--roles", "roles"},
};
#define N_CORPUS_KEYS (int)(sizeof CORPUS_KEYS / sizeof CORPUS_KEYS[0])

static int usage_error(const char *msg, const char *arg) {
    if (quorum_rank() == 0) fprintf(stderr, "quorum: error: ingest: %s%s%s\n%s", msg, arg ? " " : "", arg ? arg : "", USAGE);
    return 2;
}

static void print_summary(const Job *job, const JobCorpus *c, double seconds) {
    if (quorum_rank() != 0) return;
    char *dir = corpus_dir(job->out_dir, c->name);
    CorpusManifest m;
    if (corpus_manifest_read(&m, dir) == 0) {
        double mb = (double)m.source_bytes / 1e6;
        printf("ingest %s: %lld lines, %lld pairs, %lld rejected, %lld shards, %.2f MB in %.3f s (%.1f MB/s, %d ranks) -> %s\n",
               c->name, (long long)m.n_lines, (long long)m.n_pairs, (long long)m.n_rejected, (long long)m.n_shards, mb,
               seconds, seconds > 0 ? mb / seconds : 0.0, quorum_world(), dir);
        fflush(stdout);
        corpus_manifest_free(&m);
    }
    free(dir);
}

static int ingest_job(const Job *job, const char *only, int strict) {
    int found = 0;
    for (int i = 0; i < job->n_corpora; i++) {
        const JobCorpus *c = &job->corpora[i];
        if (only && strcmp(only, c->name) != 0) continue;
        found = 1;
        double t0 = now_seconds();
        if (corpus_ingest(job, c, strict) != 0) return 1;
        print_summary(job, c, now_seconds() - t0);
    }
    if (!found) return usage_error("no corpus named", only ? only : "(job has no corpora)");
    return 0;
}

int cmd_ingest(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
    const char *job_path = NULL, *only = NULL, *out = NULL, *file = NULL, *shard_size = NULL;
    int strict = 0;
    cJSON *corpus = cJSON_CreateObject();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = 0;
        while (k < N_CORPUS_KEYS && strcmp(a, CORPUS_KEYS[k][0]) != 0) k++;
        if (!strcmp(a, "--strict")) { strict = 1; continue; }
        if (a[0] == '-' && a[1] == '-' && i + 1 >= argc) { cJSON_Delete(corpus); return usage_error("missing value for", a); }
        if (!strcmp(a, "--job")) job_path = argv[++i];
        else if (!strcmp(a, "--corpus")) only = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--shard-size")) shard_size = argv[++i];
        else if (k < N_CORPUS_KEYS) {
            const char *v = argv[++i];
            cJSON *json = NULL; /* label values and the role map are JSON ('[-1]', '{"bot":"assistant"}') */
            if (!strcmp(CORPUS_KEYS[k][1], "max_pairs")) cJSON_AddNumberToObject(corpus, "max_pairs", atof(v));
            else if (!strncmp(CORPUS_KEYS[k][1], "label_", 6) || !strcmp(CORPUS_KEYS[k][1], "roles")) {
                json = cJSON_Parse(v);
                cJSON_AddItemToObject(corpus, CORPUS_KEYS[k][1], json ? json : cJSON_CreateString(v));
            } else cJSON_AddStringToObject(corpus, CORPUS_KEYS[k][1], v);
        } else if (a[0] == '-') { cJSON_Delete(corpus); return usage_error("unknown option", a); }
        else if (!file) file = a;
        else { cJSON_Delete(corpus); return usage_error("more than one input file:", a); }
    }
    Job *job = xcalloc(1, sizeof(Job));
    int rc;
    if (job_path) {
        cJSON_Delete(corpus);
        if (out || file) { free(job); return usage_error("--job cannot be combined with --out or FILE", NULL); }
        rc = job_load(job, job_path) != 0 ? 1 : ingest_job(job, only, strict);
        free(job);
        return rc;
    }
    if (!out || !file || !cJSON_GetObjectItem(corpus, "name")) {
        cJSON_Delete(corpus);
        free(job);
        return usage_error("need --job JOB.json, or --out DIR --name NAME FILE", NULL);
    }
    cJSON_AddStringToObject(corpus, "path", file);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "out_dir", out);
    if (shard_size) cJSON_AddNumberToObject(root, "shard_size", atof(shard_size));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "corpora"), corpus);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    rc = job_parse(job, json, "(command line)") != 0 ? 2 : ingest_job(job, NULL, strict);
    free(json);
    free(job);
    return rc;
}
