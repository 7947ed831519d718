/* model_adapter.c - a model.h Model as the trainer's TrainModel (policy: model_logprobs; reward model:
 * model_reward). On the CPU backend params and grads are host memory; on the CUDA backend they stay on
 * the device and the trainer works on them through train_ops_cuda. */
#include "internal.h"
#include "quorum/backend.h"
#include "quorum/common.h"
#include "quorum/model.h"
#include "quorum/train.h"

#include <stdlib.h>
#include <string.h>

static void ad_forward(TrainModel *tm, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                       float *out) {
    Model *m = tm->impl;
    int rc = model_config(m)->head == HEAD_REWARD ? model_reward(m, ids, lens, B, T, out)
                                                  : model_logprobs(m, ids, lens, mask, B, T, out);
    qCheck(rc == 0, "see the model error above", "model forward failed (B=%d, T=%d)", B, T);
}

/* batch_build's rows: chosen 0..B/2-1, then rejected; row b and b + B/2 are one pair (model_backward's dseq keeps
 * that order: the packed forward returns seq_logp in input order) */
static void ad_forward_packed(TrainModel *tm, const int32_t *ids, const int *lens, const uint8_t *mask, int B, int T,
                              float *out) {
    const int32_t **seqs = xmalloc(sizeof(int32_t *) * B);
    const uint8_t **masks = xmalloc(sizeof(uint8_t *) * B);
    for (int b = 0; b < B; b++) seqs[b] = ids + (size_t)b * T, masks[b] = mask + (size_t)b * T;
    ModelPackOpts o = {.share_pairs = 1, .pair_stride = B / 2};
    int rc = model_logprobs_packed(tm->impl, seqs, lens, masks, B, &o, out, NULL);
    qCheck(rc == 0, "see the model error above", "packed model forward failed (B=%d, T=%d)", B, T);
    free(seqs);
    free(masks);
}

int train_model_set_packed(TrainModel *tm) {
    const Backend *be = model_backend(tm->impl);
    if (model_config(tm->impl)->head != HEAD_LM)
        return quorum_input_error("dpo:packed", "%s is not a causal LM", model_config(tm->impl)->architecture);
    if (!be->attention_varlen_forward || !be->attention_varlen_backward)
        return quorum_input_error("dpo:packed", "backend %s has no flash attention backward (attention_varlen_*): "
                                  "run without packing", be->name);
    tm->forward = ad_forward_packed;
    return 0;
}

void train_model_set_recompute(TrainModel *tm) { model_set_recompute(tm->impl, 1); }

static void ad_backward(TrainModel *tm, const float *dout) {
    qCheck(model_backward(tm->impl, dout) == 0, "one backward per forward", "model backward failed");
}

static void ad_zero_grad(TrainModel *tm) { model_zero_grad(tm->impl); }

/* backend_auto's choice (a GPU bound to this rank, unless QUORUM_BACKEND=cpu). */
static const Backend *train_backend(const TrainOps **ops) {
    const Backend *be = backend_auto();
    *ops = &train_ops_cpu;
#ifdef QUORUM_HAVE_CUDA
    if (be == &backend_cuda) *ops = &train_ops_cuda;
#endif
    return be;
}

static void ad_params_changed(TrainModel *tm) { model_refresh_shadow(tm->impl); }

static void ad_set_grad_ready(TrainModel *tm, void (*ready)(void *ctx, size_t lo, size_t hi), void *ctx) {
    model_set_grad_ready_hook(tm->impl, ready, ctx);
}

int train_model_precision(TrainModel *tm, DType p) {
    if (model_set_precision(tm->impl, p)) return -1;
    tm->precision = p;
    tm->params_changed = p == DT_BF16 ? ad_params_changed : NULL;
    return 0;
}

int train_model_open(TrainModel *tm, const char *dir, int want_reward) {
    Model *m = NULL;
    memset(tm, 0, sizeof *tm);
    const TrainOps *ops;
    const Backend *be = train_backend(&ops);
    if (model_load(&m, dir, be)) return -1;
    const ModelConfig *c = model_config(m);
    if ((c->head == HEAD_REWARD) != !!want_reward) {
        quorum_input_error(dir, "config.json:architectures: %s is not a %s", c->architecture,
                           want_reward ? "*ForSequenceClassification reward model" : "causal LM policy");
        model_free(m);
        return -1;
    }
    tm->impl = m;
    tm->ops = ops;
    tm->params = model_params(m);
    tm->grads = model_grads(m);
    tm->n_params = model_n_params(m);
    tm->forward = ad_forward;
    tm->backward = ad_backward;
    tm->zero_grad = ad_zero_grad;
    tm->set_grad_ready = ad_set_grad_ready;
    int nt;
    const ModelTensor *ts = model_tensors(m, &nt);
    uint8_t *mask = xmalloc(tm->n_params);
    memset(mask, 1, tm->n_params);
    for (int i = 0; i < nt; i++)
        if (ts[i].ndim == 1) memset(mask + ts[i].offset, 0, (size_t)ts[i].shape[0]);
    tm->decay_mask = mask;
    return 0;
}

void train_model_close(TrainModel *tm) {
    if (tm->impl) model_free(tm->impl);
    free((void *)tm->decay_mask);
    memset(tm, 0, sizeof *tm);
}

/* <out>/final: model_save into a side folder, tokenizer files added, then renamed into place. Rank 0. */
int train_export(TrainModel *tm, const char *src_dir, const char *out) {
    char *final = path_join(out, "final"), *part = path_join(out, "final.partial"), *old = path_join(out, "final.old");
    int rc = model_save(tm->impl, part);
    if (!rc) rc = train_copy_tokenizer(src_dir, part);
    if (!rc) {
        dir_remove_flat(old);
        if (file_exists(final) && rename(final, old)) rc = quorum_input_error(final, "cannot replace the old export");
        if (!rc && rename(part, final)) rc = quorum_input_error(final, "cannot rename %s into place", part);
        dir_remove_flat(old);
    }
    if (!rc) quorum_log("exported %s", final);
    free(final); free(part); free(old);
    return rc;
}
