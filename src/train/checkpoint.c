/* checkpoint.c - <out>/checkpoint/: state.json + params.bin + adam_m.bin + adam_v.bin (raw fp32).
 * Rank 0 writes into <out>/checkpoint.tmp, fsyncs, then swaps it in with renames, so a crash at any
 * moment leaves either the old or the new checkpoint complete (checkpoint.old is used if the swap was
 * cut between its two renames). */
#include "internal.h"
#include "quorum/common.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static int write_file(const char *dir, const char *name, const void *data, size_t len) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "wb");
    int ok = f && fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f) ok &= fclose(f) == 0;
    if (!ok) quorum_input_error(p, "cannot write checkpoint file: %s", strerror(errno));
    free(p);
    return ok ? 0 : -1;
}

int ckpt_write(const char *out, const CkptState *s, const float *params, const float *m, const float *v, size_t n) {
    char *dir = path_join(out, "checkpoint"), *tmp = path_join(out, "checkpoint.tmp"),
         *old = path_join(out, "checkpoint.old");
    dir_remove_flat(tmp);
    int rc = mkdir_p(tmp);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", s->step);
    cJSON_AddNumberToObject(j, "epoch", (double)s->epoch);
    cJSON_AddNumberToObject(j, "pos", (double)s->pos);
    cJSON_AddNumberToObject(j, "n_params", (double)n);
    cJSON_AddNumberToObject(j, "world", s->world);
    char buf[64];
    snprintf(buf, sizeof buf, "%" PRIu64, s->seed);
    cJSON_AddStringToObject(j, "seed", buf);
    cJSON *rng = cJSON_AddArrayToObject(j, "rng_epoch_start");
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%" PRIu64, s->rng.s[i]);
        cJSON_AddItemToArray(rng, cJSON_CreateString(buf));
    }
    char *state = path_join(tmp, "state.json");
    if (!rc) rc = write_file(tmp, "params.bin", params, n * sizeof(float));
    if (!rc) rc = write_file(tmp, "adam_m.bin", m, n * sizeof(float));
    if (!rc) rc = write_file(tmp, "adam_v.bin", v, n * sizeof(float));
    if (!rc) rc = json_write_atomic(state, j); /* last: its presence = complete */
    cJSON_Delete(j);
    free(state);
    if (!rc) {
        dir_remove_flat(old);
        if (file_exists(dir) && rename(dir, old)) rc = quorum_input_error(dir, "cannot rename: %s", strerror(errno));
        if (!rc && rename(tmp, dir)) rc = quorum_input_error(tmp, "cannot rename: %s", strerror(errno));
        if (!rc) dir_remove_flat(old);
    }
    free(dir); free(tmp); free(old);
    return rc;
}

static int read_exact(const char *dir, const char *name, void *dst, size_t len) {
    char *p = path_join(dir, name);
    FILE *f = fopen(p, "rb");
    int rc = 0;
    if (!f) rc = quorum_input_error(p, "cannot open: %s", strerror(errno));
    else {
        size_t got = fread(dst, 1, len, f);
        int extra = fgetc(f) != EOF;
        if (got != len || extra)
            rc = quorum_input_error(p, "size mismatch: expected %zu bytes (truncated or from another model)", len);
        fclose(f);
    }
    free(p);
    return rc;
}

static int u64_field(cJSON *it, uint64_t *out) {
    if (!cJSON_IsString(it)) return -1;
    char *end;
    *out = strtoull(it->valuestring, &end, 10);
    return *end ? -1 : 0;
}

/* Which folder holds the newest complete checkpoint, or NULL. */
static char *ckpt_pick(const char *out) {
    const char *names[] = {"checkpoint", "checkpoint.old"};
    for (int i = 0; i < 2; i++) {
        char *d = path_join(out, names[i]), *st = path_join(d, "state.json");
        int ok = file_exists(st);
        free(st);
        if (ok) return d;
        free(d);
    }
    return NULL;
}

int ckpt_exists(const char *out) {
    char *d = ckpt_pick(out);
    free(d);
    return d != NULL;
}

int ckpt_read(const char *out, CkptState *s, float *params, float *m, float *v, size_t n) {
    char *dir = ckpt_pick(out);
    if (!dir) return 1;
    char *sp = path_join(dir, "state.json");
    const char *err = NULL;
    size_t len;
    char *txt = file_read_all(sp, &len, &err);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    int rc = 0;
    const char *bad = NULL;
    if (!j) bad = err ? err : "malformed JSON";
    else {
        cJSON *st = cJSON_GetObjectItem(j, "step"), *ep = cJSON_GetObjectItem(j, "epoch"),
              *pos = cJSON_GetObjectItem(j, "pos"), *np = cJSON_GetObjectItem(j, "n_params"),
              *rng = cJSON_GetObjectItem(j, "rng_epoch_start"), *seed = cJSON_GetObjectItem(j, "seed");
        if (!cJSON_IsNumber(st) || !cJSON_IsNumber(ep) || !cJSON_IsNumber(pos) || !cJSON_IsNumber(np))
            bad = "step, epoch, pos, n_params: missing or not numbers";
        else if ((size_t)np->valuedouble != n) bad = "n_params differs from the model being trained";
        else if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != 4 || u64_field(seed, &s->seed)) bad = "rng/seed malformed";
        else {
            s->step = st->valueint;
            s->epoch = (int64_t)ep->valuedouble;
            s->pos = (int64_t)pos->valuedouble;
            for (int i = 0; i < 4 && !bad; i++)
                if (u64_field(cJSON_GetArrayItem(rng, i), &s->rng.s[i])) bad = "rng malformed";
        }
    }
    if (bad) rc = quorum_input_error(sp, "%s", bad);
    if (!rc) rc = read_exact(dir, "params.bin", params, n * sizeof(float));
    if (!rc && m) rc = read_exact(dir, "adam_m.bin", m, n * sizeof(float));
    if (!rc && v) rc = read_exact(dir, "adam_v.bin", v, n * sizeof(float));
    cJSON_Delete(j);
    free(txt); free(sp); free(dir);
    return rc;
}
