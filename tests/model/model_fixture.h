/* tests/model/model_fixture.h - what test_model.c shares with test_model_engine.c: the backend under test, the
 * torch fixtures' batch (ref_model.py make: ref.safetensors) and the comparison helpers. */
#ifndef QUORUM_TEST_MODEL_FIXTURE_H
#define QUORUM_TEST_MODEL_FIXTURE_H
#include <stdint.h>

#include "quorum/model.h"
#include "quorum/safetensors.h"

extern const Backend *BE; /* backend_cpu, or cuda with QUORUM_MODEL_BACKEND=cuda */

typedef struct {
    int B, T, is_rm;
    int32_t *ids;
    int *lens;
    uint8_t *mask;
    float *out, *tok, *dseq, *ref; /* torch: outputs, token log-probs, dLoss/dout, DPO reference */
} Batch;

float *ref_get(const SafeTensors *st, const char *name, int64_t *numel); /* malloc'd fp32, NULL when absent */
double max_rel(const float *a, const float *b, size_t n);               /* max_i |a-b| / max(1,|b|) */
void poison(float *x, size_t n);                                        /* every element NaN */
void batch_load(Batch *b, const SafeTensors *st, const Model *m);
void batch_free(Batch *b);
/* A fixture's model (load options lo; NULL: a training load), ref.safetensors and batch: 0, or 77 after the
 * skip line when the fixture was not made (the HH ones need ../shared) */
int fixture_open(const char *case_dir, const ModelLoadOpts *lo, Model **m, SafeTensors *st, Batch *b);
double norm_rel(const float *a, const float *b, size_t n);               /* ||a-b|| / ||b|| */
void check_grads(Model *m, const SafeTensors *st, const char *label);  /* every grad vs ref grad.<name> (1e-3) */

int cmd_packed(const char *case_dir, int inference); /* test_model_engine.c */
int cmd_bf16_ops(void);
int cmd_flash_backward(const char *dir);
int cmd_packed_lm(const char *case_dir);
int cmd_recompute(const char *case_dir);
int cmd_lora(const char *case_dir); /* test_model_lora.c */
float bf16_widen(uint16_t h);                                          /* bf16 bits -> fp32 (exact) */
int cmd_mixed_ops(void); /* test_model_mixed.c */
#endif
