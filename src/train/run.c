/* run.c - the one driver behind dpo and rm-train: load the model and the pairs, (DPO) precompute the
 * reference log-probs, train, export <out>/final. Also dpo_job, the job-file form. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/train.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

/* Test hook: QUORUM_TEST_DUMP_PAIRS=FILE makes rank 0 write the tokenized pairs, the reference
 * log-probs, the batch order (and with LoRA the initial adapters) of the run as JSON, so a torch
 * re-implementation can replay it. */
static void dump_pairs(const TokPairs *d, const TrainCfg *tc, const TrainModel *lora) {
    const char *path = getenv("QUORUM_TEST_DUMP_PAIRS");
    if (!path || quorum_rank() != 0) return;
    Buf b = {0};
    buf_append_str(&b, "{\"pairs\": [");
    for (int64_t i = 0; i < d->n; i++) {
        buf_appendf(&b, "%s{\"id\": %lld, \"prompt_len\": %d, \"ref\": [%.9g, %.9g], \"chosen\": [", i ? ", " : "",
                    (long long)d->pair_id[i], d->prompt_len[i], d->ref_chosen ? d->ref_chosen[i] : 0.0,
                    d->ref_rejected ? d->ref_rejected[i] : 0.0);
        for (int64_t k = d->chosen_off[i]; k < d->rejected_off[i]; k++) buf_appendf(&b, "%s%d", k > d->chosen_off[i] ? "," : "", d->ids[k]);
        buf_append_str(&b, "], \"rejected\": [");
        for (int64_t k = d->rejected_off[i]; k < d->chosen_off[i + 1]; k++) buf_appendf(&b, "%s%d", k > d->rejected_off[i] ? "," : "", d->ids[k]);
        buf_append_str(&b, "]}");
    }
    int64_t cnt = (int64_t)tc->steps * tc->batch_size;
    int64_t *order = xmalloc((cnt ? cnt : 1) * sizeof(int64_t));
    train_batch_order(tc->seed, d->n, cnt, order);
    buf_append_str(&b, "], \"order\": [");
    for (int64_t i = 0; i < cnt; i++) buf_appendf(&b, "%s%lld", i ? "," : "", (long long)order[i]);
    buf_append_str(&b, "]");
    if (lora) { /* the initial adapters, flat in lora_wrap's order (the PEFT export's tensor order) */
        buf_append_str(&b, ", \"lora_init\": [");
        float *h = xmalloc(sizeof(float) * (lora->n_params ? lora->n_params : 1));
        lora->ops->to_host(h, lora->params, lora->n_params);
        for (size_t i = 0; i < lora->n_params; i++) buf_appendf(&b, "%s%.9g", i ? "," : "", h[i]);
        free(h);
        buf_append_str(&b, "]");
    }
    buf_append_str(&b, "}\n");
    file_write_atomic(path, b.data, b.len);
    free(order);
    buf_free(&b);
}

static int run_pairs(const char *model_dir, TrainCfg *tc, const PairsLoadCfg *pc) {
    int reward = tc->objective == OBJ_BT, lora = !reward && tc->lora.r > 0;
    TrainModel tm, lm = {0}, *train = &tm;
    TokPairs d = {0};
    int rc = train_model_open(&tm, model_dir, reward);
    if (!rc && (rc = train_model_precision(&tm, tc->precision)) == 0 && tc->precision == DT_BF16)
        quorum_log("precision bf16: GEMMs read a bf16 shadow of the fp32 master weights; grads, AdamW, checkpoints fp32");
    if (!rc && tc->grad_reduce == DT_BF16) quorum_log("gradient reduction: bf16 on the wire (half the bytes)");
    if (!rc && !reward && tc->packed && (rc = train_model_set_packed(&tm)) == 0)
        quorum_log("dpo: packed micro-batches (each pair's prompt computed once, flash attention)");
    if (!rc && tc->recompute) {
        train_model_set_recompute(&tm);
        quorum_log("%s: activation recomputation per block", reward ? "rm-train" : "dpo");
    }
    if (!rc) rc = pairs_load(&d, pc);
    if (!rc && mkdir_p(tc->out)) rc = quorum_input_error(tc->out, "cannot create the output folder");
    tc->optim.total_steps = tc->steps;
    if (!rc && !reward) { /* the base model's log-probs: the reference, LoRA or not */
        char *p = path_join(tc->out, "ref_logps.h5");
        rc = ref_logps_compute(&tm, &d, 4, p);
        free(p);
    }
    if (!rc && lora && (rc = lora_wrap(&lm, &tm, &tc->lora, tc->seed)) == 0) train = &lm;
    if (!rc) dump_pairs(&d, tc, lora ? &lm : NULL);
    if (!rc) {
        quorum_log("%s: %zu trainable params, %lld pairs, %d steps x %d pairs over %d ranks%s, on the %s backend",
                   reward ? "rm-train" : "dpo", train->n_params, (long long)d.n, tc->steps, tc->batch_size,
                   quorum_world(), tc->zero1 ? " (ZeRO-1)" : "", tm.ops->name);
        rc = train_run(tc, train, &d, NULL);
    }
    if (rc == 0) {
        if (lora) lora_merge_into_base(&lm);
        if (quorum_rank() == 0) rc = train_export(&tm, model_dir, tc->out);
        if (quorum_rank() == 0 && rc == 0 && lora) rc = lora_export_peft(&lm, model_dir, tc->out);
        mpiCheck(MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD));
    }
    if (lora) lora_close(&lm);
    tokpairs_free(&d);
    train_model_close(&tm);
    return rc;
}

int dpo_train(const DpoOptions *o) {
    TrainCfg tc = o->train;
    tc.objective = OBJ_DPO;
    snprintf(tc.out, sizeof tc.out, "%s", o->out);
    PairsLoadCfg pc = {.corpus_dirs = o->corpus_dir, .model_dir = o->policy, .max_length = o->max_length,
                       .max_prompt_length = o->max_prompt_length};
    return run_pairs(o->policy, &tc, &pc);
}

int rm_train(const RmOptions *o) {
    TrainCfg tc = o->train;
    tc.objective = OBJ_BT;
    snprintf(tc.out, sizeof tc.out, "%s", o->out);
    PairsLoadCfg pc = {.corpus_dirs = o->corpus_dir, .model_dir = o->model, .max_length = o->max_length,
                       .max_prompt_length = o->max_length / 2, .slice_k = o->slice_k, .slice_K = o->slice_K};
    return run_pairs(o->model, &tc, &pc);
}

int dpo_job(const Job *job) {
    const JobDpo *j = &job->dpo;
    if (!j->enabled) return quorum_input_error(job->path, "key \"dpo\": missing, nothing to train");
    DpoOptions o;
    memset(&o, 0, sizeof o);
    snprintf(o.policy, sizeof o.policy, "%s", j->policy);
    Buf dirs = {0};
    for (int i = 0; i < job->n_corpora; i++) {
        if (j->corpus[0] && strcmp(j->corpus, job->corpora[i].name)) continue;
        buf_appendf(&dirs, "%s%s/cleaned/%s", dirs.len ? "," : "", job->out_dir, job->corpora[i].name);
    }
    if (!dirs.len || dirs.len >= sizeof o.corpus_dir) {
        buf_free(&dirs);
        return quorum_input_error(job->path, "key \"dpo.corpus\": no such corpus in the job (or too many paths)");
    }
    snprintf(o.corpus_dir, sizeof o.corpus_dir, "%s", dirs.data);
    buf_free(&dirs);
    char *out = path_join(job->out_dir, "dpo");
    snprintf(o.out, sizeof o.out, "%.*s", (int)sizeof o.out - 1, out);
    free(out);
    train_cfg_defaults(&o.train);
    o.train.dpo = (DpoLossCfg){.type = j->loss, .beta = j->beta, .label_smoothing = j->label_smoothing,
                               .discopop_tau = j->discopop_tau};
    o.train.lora.r = j->lora_r;
    o.train.lora.alpha = j->lora_alpha;
    o.train.lora.dropout = j->lora_dropout;
    if (j->lora_targets[0]) snprintf(o.train.lora.targets, sizeof o.train.lora.targets, "%s", j->lora_targets);
    char why[256];
    if (dpo_loss_check(&o.train.dpo, why, sizeof why) != 0 || lora_check(&o.train.lora, why, sizeof why) != 0)
        return quorum_input_error(job->path, "key \"dpo\": %s", why);
    o.train.optim.lr = j->lr;
    o.train.optim.weight_decay = j->weight_decay;
    o.train.optim.grad_clip = j->grad_clip;
    o.train.optim.warmup_steps = j->warmup_steps;
    o.train.optim.cosine = !strcmp(j->schedule, "cosine");
    o.train.steps = j->steps;
    o.train.batch_size = j->batch_size;
    o.train.grad_accum = j->grad_accum;
    o.train.zero1 = j->zero1;
    o.train.packed = j->packed;
    o.train.recompute = j->recompute;
    o.train.checkpoint_every = j->checkpoint_every;
    o.train.precision = j->precision ? DT_BF16 : DT_F32;
    o.train.grad_reduce = j->grad_reduce ? DT_BF16 : DT_F32;
    o.train.seed = job->seed;
    o.max_length = j->max_length;
    o.max_prompt_length = j->max_prompt_length;
    return dpo_train(&o);
}
