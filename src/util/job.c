/* job.c - job file parsing with a strict, table-driven schema (see quorum/job.h). */
#include "quorum/job.h"
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <mpi.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { F_STR, F_PATH, F_INT, F_I64, F_U64, F_FLOAT, F_BOOL, F_ENUM, F_STRLIST, F_JSON } FieldType;

/* One key of one JSON object: where it lands in the C struct and how it is typed. */
typedef struct {
    const char *key;
    FieldType type;
    size_t offset;
    size_t size;              /* bytes for strings; element size for F_STRLIST */
    const char *const *enums; /* F_ENUM: NULL-terminated names, value = index */
    size_t count_offset;      /* F_STRLIST: where the count lives */
    int max_count;            /* F_STRLIST */
} Field;

static const char *const FORMAT_NAMES[] = {"auto", "hh", "pcr", "chat", "sharegpt", "pairs", NULL};
static const char *const CLEAN_NAMES[] = {"none", "sac", "vote_all_remove", "vote_all_flip", "vote_maj_remove",
                                          "vote_maj_flip", "margin_remove", "margin_flip", "ifd_r", "ifd_gap_r",
                                          "ifd_gap_f", "rw_gap_r", "rw_gap_f", "llm_judge_r", "llm_judge_f",
                                          "consensus_r", "consensus_f", NULL};
static const char *const DTYPE_NAMES[] = {"fp32", "bf16", NULL}; /* index = quorum/ops.h DType */
static const char *const NORM_NAMES[] = {"none", "zscore", "rank", NULL};
static const char *const KIND_NAMES[] = {"reward", "lm", "implicit", "judge", NULL};
/* Order = DpoLoss (quorum/job.h); TRL's loss_type names, then quorum's names for TRL's pre-2026 forms. */
static const char *const LOSS_NAMES[] = {"sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair",
                                         "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop",
                                         "sft", "sigmoid_norm", "cdpo", "ipo_mean", NULL};

const char *corpus_format_name(int format) {
    return (format >= FORMAT_AUTO && format <= FORMAT_PAIRS) ? FORMAT_NAMES[format] : "unknown";
}
const char *clean_method_name(CleanMethod m) { return CLEAN_NAMES[m]; }
int clean_method_parse(const char *name, CleanMethod *out) {
    for (int m = 0; CLEAN_NAMES[m]; m++)
        if (!strcmp(name, CLEAN_NAMES[m])) {
            *out = (CleanMethod)m;
            return 0;
        }
    return -1;
}
const char *dpo_loss_name(DpoLoss l) { return l >= 0 && l < DPO_N_LOSSES ? LOSS_NAMES[l] : "?"; }
const char *member_kind_name(MemberKind k) { return (unsigned)k < MEMBER_KIND_COUNT ? KIND_NAMES[k] : "?"; }
int dpo_loss_parse(const char *name, DpoLoss *out) {
    for (int l = 0; LOSS_NAMES[l]; l++)
        if (!strcmp(name, LOSS_NAMES[l])) {
            *out = (DpoLoss)l;
            return 0;
        }
    return -1;
}

#define S(T, f) offsetof(T, f), sizeof(((T *)0)->f)
static const Field TOP_FIELDS[] = {
    {"name", F_STR, S(Job, name)},
    {"out_dir", F_STR, S(Job, out_dir)},
    {"shard_size", F_INT, S(Job, shard_size)},
    {"seed", F_U64, S(Job, seed)},
    {"reject_limit", F_FLOAT, S(Job, reject_limit)},
    {NULL},
};
static const Field CORPUS_FIELDS[] = {
    {"name", F_STR, S(JobCorpus, name)},
    {"path", F_PATH, S(JobCorpus, path)},
    {"format", F_ENUM, S(JobCorpus, format), FORMAT_NAMES},
    {"split", F_STR, S(JobCorpus, split)},
    {"field_prompt", F_STR, S(JobCorpus, field_prompt)},
    {"field_chosen", F_STR, S(JobCorpus, field_chosen)},
    {"field_rejected", F_STR, S(JobCorpus, field_rejected)},
    {"field_role", F_STR, S(JobCorpus, field_role)},
    {"field_content", F_STR, S(JobCorpus, field_content)},
    {"field_conversations", F_STR, S(JobCorpus, field_conversations)},
    {"field_system", F_STR, S(JobCorpus, field_system)},
    {"field_a", F_STR, S(JobCorpus, field_a)},
    {"field_b", F_STR, S(JobCorpus, field_b)},
    {"field_label", F_STR, S(JobCorpus, field_label)},
    {"label_a", F_JSON, S(JobCorpus, label_a)},
    {"label_b", F_JSON, S(JobCorpus, label_b)},
    {"label_tie", F_JSON, S(JobCorpus, label_tie)},
    {"roles", F_JSON, S(JobCorpus, roles)},
    {"max_pairs", F_I64, S(JobCorpus, max_pairs)},
    {NULL},
};
static const Field MEMBER_FIELDS[] = {
    {"name", F_STR, S(JobMember, name)},
    {"path", F_PATH, S(JobMember, path)},
    {"max_length", F_INT, S(JobMember, max_length)},
    {"batch_size", F_INT, S(JobMember, batch_size)},
    {"kind", F_ENUM, S(JobMember, kind), KIND_NAMES},
    {"ref", F_PATH, S(JobMember, ref)},
    {"prompt_template", F_PATH, S(JobMember, prompt_template)},
    {NULL},
};
static const Field VOTE_FIELDS[] = {
    {"margin", F_FLOAT, S(JobVote, margin)},
    {"high_frac", F_FLOAT, S(JobVote, high_frac)},
    {NULL},
};
static const Field CLEAN_FIELDS[] = {
    {"method", F_ENUM, S(JobClean, method), CLEAN_NAMES},
    {"splits", F_STRLIST, offsetof(JobClean, splits), sizeof(((JobClean *)0)->splits[0]), NULL,
     offsetof(JobClean, n_splits), JOB_MAX_SPLITS},
    {"bad_threshold", F_FLOAT, S(JobClean, bad_threshold)},
    {"p", F_FLOAT, S(JobClean, p)},
    {"normalize", F_ENUM, S(JobClean, normalize), NORM_NAMES},
    {"weights", F_JSON, S(JobClean, weights)},
    {"consensus", F_STRLIST, offsetof(JobClean, consensus), sizeof(((JobClean *)0)->consensus[0]), NULL,
     offsetof(JobClean, n_consensus), JOB_MAX_SPLITS},
    {"consensus_k", F_INT, S(JobClean, consensus_k)},
    {NULL},
};
static const Field DPO_FIELDS[] = {
    {"policy", F_PATH, S(JobDpo, policy)},
    {"corpus", F_STR, S(JobDpo, corpus)},
    {"loss", F_ENUM, S(JobDpo, loss), LOSS_NAMES},
    {"beta", F_FLOAT, S(JobDpo, beta)},
    {"label_smoothing", F_FLOAT, S(JobDpo, label_smoothing)},
    {"discopop_tau", F_FLOAT, S(JobDpo, discopop_tau)},
    {"lora_r", F_INT, S(JobDpo, lora_r)},
    {"lora_alpha", F_FLOAT, S(JobDpo, lora_alpha)},
    {"lora_dropout", F_FLOAT, S(JobDpo, lora_dropout)},
    {"lora_targets", F_STR, S(JobDpo, lora_targets)},
    {"lr", F_FLOAT, S(JobDpo, lr)},
    {"weight_decay", F_FLOAT, S(JobDpo, weight_decay)},
    {"grad_clip", F_FLOAT, S(JobDpo, grad_clip)},
    {"warmup_steps", F_INT, S(JobDpo, warmup_steps)},
    {"schedule", F_STR, S(JobDpo, schedule)},
    {"steps", F_INT, S(JobDpo, steps)},
    {"batch_size", F_INT, S(JobDpo, batch_size)},
    {"grad_accum", F_INT, S(JobDpo, grad_accum)},
    {"max_length", F_INT, S(JobDpo, max_length)},
    {"max_prompt_length", F_INT, S(JobDpo, max_prompt_length)},
    {"zero1", F_BOOL, S(JobDpo, zero1)},
    {"checkpoint_every", F_INT, S(JobDpo, checkpoint_every)},
    {"precision", F_ENUM, S(JobDpo, precision), DTYPE_NAMES},
    {"grad_reduce", F_ENUM, S(JobDpo, grad_reduce), DTYPE_NAMES},
    {"packed", F_BOOL, S(JobDpo, packed)},
    {"recompute", F_BOOL, S(JobDpo, recompute)},
    {NULL},
};
#undef S

static void corpus_defaults(JobCorpus *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->field_prompt, "prompt");
    strcpy(c->field_chosen, "chosen");
    strcpy(c->field_rejected, "rejected");
    strcpy(c->field_role, "role");
    strcpy(c->field_content, "content");
    strcpy(c->field_conversations, "conversations");
    strcpy(c->field_system, "system");
    strcpy(c->field_a, "a");
    strcpy(c->field_b, "b");
}
static void member_defaults(JobMember *m) {
    memset(m, 0, sizeof *m);
    m->max_length = 1024;
    m->batch_size = 8;
}

void job_defaults(Job *job) {
    memset(job, 0, sizeof *job);
    strcpy(job->name, "job");
    for (int i = 0; i < JOB_MAX_CORPORA; i++) corpus_defaults(&job->corpora[i]); /* programmatic jobs too */
    job->shard_size = 1024;
    job->seed = 1;
    job->reject_limit = 1.0f;
    job->vote.margin = 0.0f;
    job->vote.high_frac = 0.5f;
    job->clean.method = CLEAN_SAC;
    strcpy(job->clean.splits[0], "harmless");
    job->clean.n_splits = 1;
    static const char *const CONSENSUS[] = {"sac", "vote_maj_remove", "margin_remove"};
    for (int i = 0; i < 3; i++) strcpy(job->clean.consensus[i], CONSENSUS[i]);
    job->clean.n_consensus = 3;
    job->clean.consensus_k = 2;
    job->clean.bad_threshold = 0.0f;
    job->clean.p = 0.1f;
    JobDpo *d = &job->dpo;
    d->loss = DPO_SIGMOID;
    d->beta = 0.1f;
    d->discopop_tau = 0.05f;
    d->lora_alpha = 32.0f;
    d->lr = 5e-6f;
    d->grad_clip = 1.0f;
    strcpy(d->schedule, "constant");
    d->steps = 100;
    d->batch_size = 8;
    d->grad_accum = 1;
    d->max_length = 512;
    d->max_prompt_length = 256;
    d->checkpoint_every = 50;
}

typedef struct {
    const char *file;
    const char *dir;
} Ctx;

static int key_error(const Ctx *cx, const char *keypath, const char *msg) {
    char where[2048];
    snprintf(where, sizeof where, "%s: key \"%s\"", cx->file, keypath);
    return quorum_input_error(where, "%s", msg);
}

static int set_string(const Ctx *cx, const char *keypath, char *dst, size_t cap, const char *s, int is_path) {
    char tmp[JOB_STR * 2];
    /* "builtin:<rule>" members name no file: never resolve them against the job folder */
    if (is_path && s[0] != '/' && cx->dir[0] && strncmp(s, "builtin:", 8) != 0) {
        snprintf(tmp, sizeof tmp, "%s/%s", cx->dir, s);
        s = tmp;
    }
    if (strlen(s) >= cap) return key_error(cx, keypath, "string too long");
    strcpy(dst, s);
    return 0;
}

static int parse_fields(const Ctx *cx, const char *prefix, const cJSON *obj, const Field *fields, void *base) {
    char keypath[1024];
    if (!cJSON_IsObject(obj)) return key_error(cx, prefix, "expected an object");
    for (const cJSON *it = obj->child; it; it = it->next) {
        snprintf(keypath, sizeof keypath, "%s%s%s", prefix, prefix[0] ? "." : "", it->string);
        const Field *f = fields;
        while (f->key && strcmp(f->key, it->string) != 0) f++;
        if (!f->key) return key_error(cx, keypath, "unknown key");
        char *dst = (char *)base + f->offset;
        switch (f->type) {
        case F_STR:
        case F_PATH:
            if (!cJSON_IsString(it)) return key_error(cx, keypath, "expected a string");
            if (set_string(cx, keypath, dst, f->size, it->valuestring, f->type == F_PATH)) return -1;
            break;
        case F_INT:
        case F_I64:
        case F_U64: {
            if (!cJSON_IsNumber(it)) return key_error(cx, keypath, "expected an integer");
            double v = it->valuedouble;
            if (v != floor(v) || v < (f->type == F_U64 ? 0 : -9.2e18) || fabs(v) > 9.0e15 ||
                (f->type == F_INT && fabs(v) > 2147483647.0))
                return key_error(cx, keypath, "expected an integer in range");
            if (f->type == F_INT) *(int *)dst = (int)v;
            else if (f->type == F_I64) *(int64_t *)dst = (int64_t)v;
            else *(uint64_t *)dst = (uint64_t)v;
            break;
        }
        case F_FLOAT:
            if (!cJSON_IsNumber(it)) return key_error(cx, keypath, "expected a number");
            *(float *)dst = (float)it->valuedouble;
            break;
        case F_BOOL:
            if (!cJSON_IsBool(it)) return key_error(cx, keypath, "expected true or false");
            *(int *)dst = cJSON_IsTrue(it);
            break;
        case F_ENUM: {
            if (!cJSON_IsString(it)) return key_error(cx, keypath, "expected a string");
            int k = 0;
            while (f->enums[k] && strcmp(f->enums[k], it->valuestring) != 0) k++;
            if (!f->enums[k]) {
                char msg[512] = "expected one of:";
                for (int j = 0; f->enums[j]; j++) {
                    strncat(msg, " ", sizeof msg - strlen(msg) - 1);
                    strncat(msg, f->enums[j], sizeof msg - strlen(msg) - 1);
                }
                return key_error(cx, keypath, msg);
            }
            *(int *)dst = k; /* enums are int-sized */
            break;
        }
        case F_STRLIST: {
            if (!cJSON_IsArray(it)) return key_error(cx, keypath, "expected an array of strings");
            int n = cJSON_GetArraySize(it);
            if (n > f->max_count) return key_error(cx, keypath, "too many entries");
            int i = 0;
            for (const cJSON *s = it->child; s; s = s->next, i++) {
                char kp[1100];
                snprintf(kp, sizeof kp, "%s[%d]", keypath, i);
                if (!cJSON_IsString(s)) return key_error(cx, kp, "expected a string");
                if (set_string(cx, kp, dst + (size_t)i * f->size, f->size, s->valuestring, 0)) return -1;
            }
            *(int *)((char *)base + f->count_offset) = n;
            break;
        }
        case F_JSON: { /* kept as compact JSON text; its shape is checked by the caller */
            char *text = cJSON_PrintUnformatted(it);
            int bad = !text || strlen(text) >= f->size;
            if (!bad) strcpy(dst, text);
            free(text);
            if (bad) return key_error(cx, keypath, "value too long");
            break;
        }
        }
    }
    return 0;
}

static int require(const Ctx *cx, const char *keypath, const char *value) {
    if (value[0]) return 0;
    return key_error(cx, keypath, "required key is missing");
}

/* Names become folder and file names: [A-Za-z0-9_.-]+, and not ".", ".." or a hidden name (a leading '.'),
 * so two names never share a folder and none escapes out_dir. */
#define NAME_RULE "names use only [A-Za-z0-9_.-] and do not start with '.' (\".\", \"..\" would share or escape folders)"
static int valid_name(const char *s) {
    if (!s[0] || s[0] == '.') return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return 0;
    return 1;
}

/* label_*: a JSON scalar or an array of scalars (strings, numbers, booleans). */
static int check_label_values(const Ctx *cx, const char *kp, const char *key, const char *text) {
    if (!text[0]) return 0;
    cJSON *v = cJSON_Parse(text);
    int ok = v != NULL;
    for (const cJSON *e = cJSON_IsArray(v) ? v->child : v; ok && e; e = cJSON_IsArray(v) ? e->next : NULL)
        ok = cJSON_IsString(e) || cJSON_IsNumber(e) || cJSON_IsBool(e);
    cJSON_Delete(v);
    if (ok) return 0;
    char k2[700];
    snprintf(k2, sizeof k2, "%s.%s", kp, key);
    return key_error(cx, k2, "expected a string, number or boolean, or an array of them");
}

/* The layout keys of one corpus: the role map's values and the labelled-pairs settings. */
static int check_layout(const Ctx *cx, const char *kp, const JobCorpus *c) {
    static const char *const ROLES[] = {"system", "user", "assistant", "observation", "function_call"};
    char k2[700];
    if (c->roles[0]) {
        cJSON *m = cJSON_Parse(c->roles);
        int rc = 0;
        snprintf(k2, sizeof k2, "%s.roles", kp);
        if (!cJSON_IsObject(m)) rc = key_error(cx, k2, "expected an object: input role name -> role");
        for (const cJSON *e = cJSON_IsObject(m) ? m->child : NULL; e && rc == 0; e = e->next) {
            int known = 0;
            for (int r = 0; r < 5; r++) known |= cJSON_IsString(e) && !strcmp(e->valuestring, ROLES[r]);
            snprintf(k2, sizeof k2, "%s.roles.%s", kp, e->string);
            if (!known) rc = key_error(cx, k2, "expected one of: system user assistant observation function_call");
        }
        cJSON_Delete(m);
        if (rc) return rc;
    }
    if (check_label_values(cx, kp, "label_a", c->label_a) || check_label_values(cx, kp, "label_b", c->label_b) ||
        check_label_values(cx, kp, "label_tie", c->label_tie))
        return -1;
    int labelled = c->format == FORMAT_PAIRS || c->field_label[0];
    const char *need[3][2] = {{"field_label", c->field_label}, {"label_a", c->label_a}, {"label_b", c->label_b}};
    for (int i = 0; i < 3 && labelled; i++) {
        snprintf(k2, sizeof k2, "%s.%s", kp, need[i][0]);
        if (!need[i][1][0]) return key_error(cx, k2, "required for labelled pairs (format \"pairs\")");
    }
    return 0;
}

/* clean.weights names reward members with weights > 0; clean.consensus names methods other than
 * consensus_*, and 1 <= consensus_k <= their count. */
static int check_clean_family(const Ctx *cx, const Job *job) {
    const JobClean *c = &job->clean;
    char kp[512];
    if (c->weights[0]) {
        cJSON *w = cJSON_Parse(c->weights);
        int bad = !cJSON_IsObject(w);
        if (bad) key_error(cx, "clean.weights", "expected an object: member name -> weight");
        for (cJSON *e = w ? w->child : NULL; e && !bad; e = e->next) {
            snprintf(kp, sizeof kp, "clean.weights.%s", e->string);
            int m = 0;
            while (m < job->n_members && strcmp(job->committee[m].name, e->string)) m++;
            if (m == job->n_members || job->committee[m].kind != MEMBER_REWARD)
                bad = key_error(cx, kp, "not a reward member of the committee");
            else if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
                bad = key_error(cx, kp, "the weight must be a number > 0");
        }
        cJSON_Delete(w);
        if (bad) return -1;
    }
    for (int i = 0; i < c->n_consensus; i++) {
        snprintf(kp, sizeof kp, "clean.consensus[%d]", i);
        int m = 0;
        while (CLEAN_NAMES[m] && strcmp(CLEAN_NAMES[m], c->consensus[i])) m++;
        if (!CLEAN_NAMES[m] || m == CLEAN_CONSENSUS_R || m == CLEAN_CONSENSUS_F)
            return key_error(cx, kp, "expected a cleaning method other than consensus_r / consensus_f");
    }
    if (c->consensus_k < 1 || c->consensus_k > c->n_consensus)
        return key_error(cx, "clean.consensus_k", "must be in 1..the number of clean.consensus methods");
    return 0;
}

/* clean.splits, when the job names them, must be splits of its corpora. */
static int check_clean_splits(const Ctx *cx, const Job *job) {
    for (int s = 0; s < job->clean.n_splits; s++) {
        int found = 0;
        for (int i = 0; i < job->n_corpora && !found; i++) found = !strcmp(job->corpora[i].split, job->clean.splits[s]);
        if (found) continue;
        char kp[64];
        Buf msg = {0};
        snprintf(kp, sizeof kp, "clean.splits[%d]", s);
        buf_appendf(&msg, "\"%s\" is not a split of the job's corpora (splits:", job->clean.splits[s]);
        for (int i = 0; i < job->n_corpora; i++) buf_appendf(&msg, " %s", job->corpora[i].split);
        buf_append_str(&msg, ")");
        int rc = key_error(cx, kp, msg.data);
        buf_free(&msg);
        return rc;
    }
    return 0;
}

int job_parse(Job *job, const char *json, const char *path) {
    job_defaults(job);
    snprintf(job->path, sizeof job->path, "%s", path);
    snprintf(job->dir, sizeof job->dir, "%s", path);
    char *slash = strrchr(job->dir, '/');
    if (slash) *slash = 0;
    else job->dir[0] = 0;
    Ctx cx = {path, job->dir};

    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        long off = e ? (long)(e - json) : -1;
        char where[2048];
        snprintf(where, sizeof where, "%s: byte %ld", path, off);
        return quorum_input_error(where, "malformed JSON");
    }
    int rc = -1, explicit_splits = 0;
    if (!cJSON_IsObject(root)) { key_error(&cx, "", "the job file must be a JSON object"); goto done; }

    /* Split the top level: scalar keys go through the table; sections are handled below. */
    for (cJSON *it = root->child; it; it = it->next) {
        const char *k = it->string;
        char kp[512];
        if (!strcmp(k, "corpora") || !strcmp(k, "committee")) {
            int is_c = !strcmp(k, "corpora");
            if (!cJSON_IsArray(it)) { key_error(&cx, k, "expected an array of objects"); goto done; }
            int n = cJSON_GetArraySize(it);
            if (n > (is_c ? JOB_MAX_CORPORA : JOB_MAX_MEMBERS)) { key_error(&cx, k, "too many entries"); goto done; }
            int i = 0;
            for (cJSON *e = it->child; e; e = e->next, i++) {
                snprintf(kp, sizeof kp, "%s[%d]", k, i);
                if (is_c) {
                    JobCorpus *c = &job->corpora[i];
                    corpus_defaults(c);
                    if (parse_fields(&cx, kp, e, CORPUS_FIELDS, c)) goto done;
                    char k2[600];
                    snprintf(k2, sizeof k2, "%s.name", kp);
                    if (require(&cx, k2, c->name)) goto done;
                    if (!valid_name(c->name)) { key_error(&cx, k2, NAME_RULE); goto done; }
                    snprintf(k2, sizeof k2, "%s.path", kp);
                    if (require(&cx, k2, c->path)) goto done;
                    if (!c->split[0]) strcpy(c->split, c->name);
                    if (check_layout(&cx, kp, c)) goto done;
                    for (int j = 0; j < i; j++)
                        if (!strcmp(job->corpora[j].name, c->name)) { key_error(&cx, kp, "duplicate corpus name"); goto done; }
                } else {
                    JobMember *m = &job->committee[i];
                    member_defaults(m);
                    if (parse_fields(&cx, kp, e, MEMBER_FIELDS, m)) goto done;
                    char k2[600];
                    snprintf(k2, sizeof k2, "%s.name", kp);
                    if (require(&cx, k2, m->name)) goto done;
                    if (!valid_name(m->name)) { key_error(&cx, k2, NAME_RULE); goto done; }
                    snprintf(k2, sizeof k2, "%s.path", kp);
                    if (require(&cx, k2, m->path)) goto done;
                    if (m->max_length < 8 || m->batch_size < 1) { key_error(&cx, kp, "max_length >= 8 and batch_size >= 1 required"); goto done; }
                    snprintf(k2, sizeof k2, "%s.ref", kp);
                    if (m->kind == MEMBER_IMPLICIT && !strstr(m->path, "builtin:") && require(&cx, k2, m->ref)) goto done;
                    for (int j = 0; j < i; j++)
                        if (!strcmp(job->committee[j].name, m->name)) { key_error(&cx, kp, "duplicate member name"); goto done; }
                }
            }
            if (is_c) job->n_corpora = n;
            else job->n_members = n;
        } else if (!strcmp(k, "vote")) {
            if (parse_fields(&cx, "vote", it, VOTE_FIELDS, &job->vote)) goto done;
            if (!(job->vote.high_frac > 0.0f && job->vote.high_frac <= 1.0f)) { key_error(&cx, "vote.high_frac", "must be in (0, 1]"); goto done; }
        } else if (!strcmp(k, "clean")) {
            if (parse_fields(&cx, "clean", it, CLEAN_FIELDS, &job->clean)) goto done;
            explicit_splits = cJSON_GetObjectItemCaseSensitive(it, "splits") != NULL;
            if (!(job->clean.p >= 0.0f && job->clean.p <= 1.0f)) { key_error(&cx, "clean.p", "must be in [0, 1]"); goto done; }
        } else if (!strcmp(k, "dpo")) {
            if (parse_fields(&cx, "dpo", it, DPO_FIELDS, &job->dpo)) goto done;
            job->dpo.enabled = 1;
            if (require(&cx, "dpo.policy", job->dpo.policy)) goto done;
            if (strcmp(job->dpo.schedule, "constant") && strcmp(job->dpo.schedule, "cosine")) { key_error(&cx, "dpo.schedule", "expected one of: constant cosine"); goto done; }
            if (job->dpo.steps < 0 || job->dpo.batch_size < 1 || job->dpo.grad_accum < 1) { key_error(&cx, "dpo", "steps >= 0, batch_size >= 1, grad_accum >= 1 required"); goto done; }
        } else {
            /* One-key table lookup for scalars; parse_fields reports unknown keys. */
            cJSON *one = cJSON_CreateObject();
            cJSON_AddItemReferenceToObject(one, k, it);
            int bad = parse_fields(&cx, "", one, TOP_FIELDS, job);
            cJSON_Delete(one);
            if (bad) goto done;
        }
    }
    if (job->shard_size < 1) { key_error(&cx, "shard_size", "must be >= 1"); goto done; }
    if (!(job->reject_limit > 0.0f && job->reject_limit <= 1.0f)) { key_error(&cx, "reject_limit", "must be in (0, 1]"); goto done; }
    if (!valid_name(job->name)) { key_error(&cx, "name", NAME_RULE); goto done; }
    if (!job->out_dir[0]) snprintf(job->out_dir, sizeof job->out_dir, "out/%s", job->name);
    if (explicit_splits && job->n_corpora > 0 && check_clean_splits(&cx, job)) goto done;
    if (check_clean_family(&cx, job)) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

static int job_load_here(Job *job, const char *path) {
    size_t n;
    const char *err;
    char *text = file_read_all(path, &n, &err);
    if (!text) {
        char where[2048];
        snprintf(where, sizeof where, "%s", path);
        return quorum_input_error(where, "cannot read job file: %s", err);
    }
    int rc = job_parse(job, text, path);
    free(text);
    return rc;
}

/* Every rank reads the job; the errors every rank hits are printed once, by rank 0, and the ranks agree on
 * the outcome (so no rank goes on alone into a collective). With one process, simply job_load_here. */
int job_load(Job *job, const char *path) {
    if (quorum_world() == 1) return job_load_here(job, path);
    quorum_mute_errors(quorum_rank() != 0);
    int rc = job_load_here(job, path);
    quorum_mute_errors(0);
    int mine = rc != 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any && !mine && quorum_rank() == 0)
        quorum_input_error(path, "another rank could not load this job file (not on a shared file system?)");
    return any ? -1 : 0;
}
