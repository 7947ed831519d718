/* bench_model_score.c - the C side of benchmarks/model_score_cpu.py (built, not a ctest): scores the
 * batches of a batch file (safetensors, F32 tensors ids.<i> (B,T) and lens.<i> (B)) with a reward model
 * in inference mode, prints {"seconds","cpu_seconds","sequences","tokens","padded_tokens"} as JSON and writes the
 * rewards as raw float32 to <out>. Load time is not counted. */
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *get(const SafeTensors *st, const char *name, int i, const StTensor **t) {
    char key[64];
    snprintf(key, sizeof key, "%s.%d", name, i);
    *t = safetensors_find(st, key);
    if (!*t) return NULL;
    float *x = xmalloc(sizeof(float) * (*t)->numel);
    if (safetensors_read_f32(st, *t, x)) exit(1);
    return x;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bench_model_score <model_dir> <batches.safetensors> <rewards.f32>\n");
        return 2;
    }
    Model *m;
    SafeTensors st;
    ModelLoadOpts lo = {.inference = 1};
    if (model_load_ex(&m, argv[1], &backend_cpu, &lo) || safetensors_open(&st, argv[2])) return 1;
    Buf out = {0};
    long seqs = 0, toks = 0, padded = 0;
    double t0 = now_seconds();
    clock_t c0 = clock();
    for (int i = 0;; i++) {
        const StTensor *ti, *tl;
        float *idf = get(&st, "ids", i, &ti), *lf = get(&st, "lens", i, &tl);
        if (!idf) break;
        int B = (int)ti->shape[0], T = (int)ti->shape[1];
        int32_t *ids = xmalloc(sizeof(int32_t) * B * T);
        int *lens = xmalloc(sizeof(int) * B);
        float *r = xmalloc(sizeof(float) * B);
        for (int k = 0; k < B * T; k++) ids[k] = (int32_t)idf[k];
        for (int b = 0; b < B; b++) toks += lens[b] = (int)lf[b];
        if (model_reward(m, ids, lens, B, T, r)) return 1;
        buf_append(&out, r, sizeof(float) * B);
        seqs += B;
        padded += (long)B * T;
        free(idf), free(lf), free(ids), free(lens), free(r);
    }
    double dt = now_seconds() - t0, cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    if (file_write_atomic(argv[3], out.data, out.len)) return 1;
    printf("{\"seconds\": %.4f, \"cpu_seconds\": %.4f, \"sequences\": %ld, \"tokens\": %ld, \"padded_tokens\": %ld}\n",
           dt, cpu, seqs, toks, padded);
    buf_free(&out);
    safetensors_close(&st);
    model_free(m);
    return 0;
}
