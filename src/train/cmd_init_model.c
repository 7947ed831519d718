/* cmd_init_model.c - quorum init-model: random-init tiny HF checkpoints for tests and the demo. */
#include "internal.h"
#include "quorum/common.h"
#include "quorum/train.h"

#include <string.h>

int cmd_init_model(int argc, char **argv) {
    InitModelOptions o = {.layers = 2, .dim = 32, .heads = 2, .max_pos = 1024, .seed = 1};
    snprintf(o.arch, sizeof o.arch, "gpt2");
    snprintf(o.head, sizeof o.head, "lm");
    const Opt opts[] = {
        {"arch", 's', o.arch, sizeof o.arch, "gpt2 | llama | qwen3 | gemma2 | gemma3 (default gpt2)"},
        {"layers", 'i', &o.layers, 0, "transformer blocks (default 2)"},
        {"dim", 'i', &o.dim, 0, "hidden size (default 32)"},
        {"heads", 'i', &o.heads, 0, "attention heads (default 2)"},
        {"kv-heads", 'i', &o.kv_heads, 0, "llama/qwen3/gemma key/value heads (default = heads)"},
        {"ffn", 'i', &o.ffn, 0, "MLP width (default 4*dim gpt2, ~8/3*dim llama)"},
        {"max-pos", 'i', &o.max_pos, 0, "gpt2 n_positions / llama max_position_embeddings (default 1024)"},
        {"vocab", 'i', &o.vocab, 0, "vocabulary size (default: the tokenizer's)"},
        {"tokenizer", 's', o.tokenizer, sizeof o.tokenizer, "REQUIRED: folder with tokenizer.json (files copied)"},
        {"head", 's', o.head, sizeof o.head, "lm (causal LM policy) | score (1-label reward model) | mlp (reward model with INF-ORM's "
                                          "Linear+ReLU+Linear score head) | armo (llama only: ArmoRM gating head)"},
        {"seed", 'u', &o.seed, 0, "init seed (default 1)"},
        {"out", 's', o.out, sizeof o.out, "REQUIRED: output folder (replaced atomically)"},
        {0}};
    int rc = opts_command_table(argc, argv, opts, "usage: quorum init-model --tokenizer DIR --out DIR [options]\n"
                                "Random-init HF checkpoint: normal(0, 0.02) weights, zero biases, unit norm weights.");
    if (rc >= 0) return rc;
    if (!o.tokenizer[0] || !o.out[0]) {
        fprintf(stderr, "quorum: error: %s: --tokenizer and --out are required\n", argv[0]);
        return 2;
    }
    rc = quorum_rank() == 0 ? model_init_random(&o) : 0;
    if (!rc) quorum_log("init-model: %s %s head, %d layers, dim %d -> %s", o.arch, o.head, o.layers, o.dim, o.out);
    return rc ? 1 : 0;
}
