/* cmd_rm_train.c - quorum rm-train: Bradley-Terry reward-model training (same trainer as dpo). */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/train.h"

#include <stdio.h>
#include <string.h>

int cmd_rm_train(int argc, char **argv) {
    RmOptions o;
    memset(&o, 0, sizeof o);
    train_cfg_defaults(&o.train);
    o.train.optim.lr = 1e-5f;
    o.max_length = 512;
    char slice[32] = "";
    TrainOptStrings s;
    Opt opts[40] = {
        {"model", 's', o.model, sizeof o.model, "HF *ForSequenceClassification folder to start from"},
        {"corpus-dir", 's', o.corpus_dir, sizeof o.corpus_dir, "corpus folder(s), comma-separated"},
        {"out", 's', o.out, sizeof o.out, "output: metrics.jsonl, checkpoint/, final/ (a committee member)"},
        {"slice", 's', slice, sizeof slice, "k/K: train on pairs with index %% K == k (default all)"},
        {"margin", 'f', &o.train.bt_margin, 0, "Bradley-Terry margin (default 0)"},
        {"center-rewards", 'f', &o.train.bt_center, 0, "center_rewards_coefficient (default 0)"},
        {"max-length", 'i', &o.max_length, 0, "tokens per sequence (default 512)"},
    };
    int n = 7;
    n += train_opts(opts + n, &o.train, &s);
    opts[n] = (Opt){0};
    int rc = opts_command_table(argc, argv, opts, "usage: quorum rm-train --model DIR --corpus-dir DIR --out DIR [options]\n"
                                "Bradley-Terry reward model: -logsigmoid(r_c - r_r - margin) + center * (r_c + r_r)^2.\n"
                                "(--lr defaults to 1e-5 here.)");
    if (rc >= 0) return rc;
    if (train_opts_finish(argv[0], &o.train, &s)) return 2;
    if (slice[0] && (sscanf(slice, "%d/%d", &o.slice_k, &o.slice_K) != 2 || o.slice_K < 1 || o.slice_k < 0 ||
                     o.slice_k >= o.slice_K)) {
        fprintf(stderr, "quorum: error: %s: --slice: expected k/K with 0 <= k < K, got \"%s\"\n", argv[0], slice);
        return 2;
    }
    if (!o.model[0] || !o.corpus_dir[0] || !o.out[0]) {
        fprintf(stderr, "quorum: error: %s: --model, --corpus-dir and --out are required\n", argv[0]);
        return 2;
    }
    rc = rm_train(&o);
    return rc == 99 ? 99 : rc ? 1 : 0;
}
