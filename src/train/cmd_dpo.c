/* cmd_dpo.c - quorum dpo: data-parallel DPO from a job file or from direct options. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/job.h"
#include "quorum/train.h"

#include <string.h>

int cmd_dpo(int argc, char **argv) {
    DpoOptions o;
    memset(&o, 0, sizeof o);
    train_cfg_defaults(&o.train);
    o.max_length = 512;
    o.max_prompt_length = 256;
    char job[1024] = "";
    TrainOptStrings s;
    Opt opts[40] = {
        {"job", 's', job, sizeof job, "job file: train its \"dpo\" section on its cleaned corpus (other options ignored)"},
        {"policy", 's', o.policy, sizeof o.policy, "HF causal-LM folder (also the frozen reference)"},
        {"corpus-dir", 's', o.corpus_dir, sizeof o.corpus_dir, "corpus folder(s), comma-separated (manifest.json + shards)"},
        {"out", 's', o.out, sizeof o.out, "output: metrics.jsonl, ref_logps.h5, checkpoint/, final/"},
        {"loss", 's', s.loss, sizeof s.loss, "a TRL loss_type: sigmoid (default) | hinge | ipo | robust | exo_pair | "
         "nca_pair | bco_pair | sppo_hard | aot | aot_unpaired | apo_zero | apo_down | discopop | sft | sigmoid_norm; "
         "or cdpo | ipo_mean (TRL's earlier sigmoid+label smoothing and length-averaged ipo)"},
        {"beta", 'f', &o.train.dpo.beta, 0, "DPO beta (default 0.1)"},
        {"label-smoothing", 'f', &o.train.dpo.label_smoothing, 0, "robust / cdpo / exo_pair / aot epsilon (default 0)"},
        {"discopop-tau", 'f', &o.train.dpo.discopop_tau, 0, "discopop temperature (default 0.05)"},
        {"lora-r", 'i', &o.train.lora.r, 0, "LoRA rank; 0 = full fine-tuning (default 0)"},
        {"lora-alpha", 'f', &o.train.lora.alpha, 0, "LoRA alpha, scale alpha/r (default 32)"},
        {"lora-dropout", 'f', &o.train.lora.dropout, 0, "LoRA dropout on the adapter input, PEFT lora_dropout, in [0,1) (default 0)"},
        {"lora-targets", 's', o.train.lora.targets, sizeof o.train.lora.targets,
         "LoRA modules, comma-separated (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)"},
        {"max-length", 'i', &o.max_length, 0, "prompt + response tokens (default 512)"},
        {"max-prompt-length", 'i', &o.max_prompt_length, 0, "prompt tokens kept when too long (default 256)"},
        {"packed", 'b', &o.train.packed, 0, "pack each micro-batch: a pair's prompt computed once (flash attention; "
         "equal to unpacked within fp32 rounding; default off)"},
    };
    int n = 15;
    n += train_opts(opts + n, &o.train, &s);
    opts[n] = (Opt){0};
    int rc = opts_command_table(argc, argv, opts, "usage: quorum dpo --job J\n       quorum dpo --policy DIR --corpus-dir DIR "
                                "--out DIR [options]\nData-parallel DPO (run under mpirun/srun for several ranks).");
    if (rc >= 0) return rc;
    if (train_opts_finish(argv[0], &o.train, &s)) return 2;
    if (job[0]) {
        Job j;
        if (job_load(&j, job)) return 1;
        rc = dpo_job(&j);
        return rc == 99 ? 99 : rc ? 1 : 0;
    }
    if (!o.policy[0] || !o.corpus_dir[0] || !o.out[0]) {
        fprintf(stderr, "quorum: error: %s: --job, or --policy, --corpus-dir and --out, are required\n", argv[0]);
        return 2;
    }
    rc = dpo_train(&o);
    return rc == 99 ? 99 : rc ? 1 : 0;
}
