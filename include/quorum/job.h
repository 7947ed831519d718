/*
 * quorum/job.h - the job file: one JSON document that names corpora, committee, vote thresholds,
 * cleaning policy and training settings. Read with cJSON by job_load().
 *
 * Contract:
 *  - Every key is optional unless marked REQUIRED; absent keys take the defaults documented here
 *    (and in README.md, "Job file").
 *  - Unknown keys and wrong types are errors that name the key path, e.g.
 *      quorum: error: jobs/x.json: key "corpora[1].fromat": unknown key
 *  - Relative paths inside a job file are resolved against the job file's directory, so a job file
 *    can be run from anywhere (SLURM jobs start in arbitrary working directories).
 *
 * Example (jobs/hh-rlhf.json is a complete one; `quorum demo` builds its job in code, src/app/cmd_demo.c):
 * {
 *   "name": "demo", "out_dir": "out/demo", "shard_size": 1024, "seed": 1,
 *   "corpora":   [{"name": "harmless", "path": "data/x.jsonl.gz", "format": "hh", "split": "harmless"}],
 *   "committee": [{"name": "rm0", "path": "models/rm0"}],
 *   "vote":  {"margin": 0.0, "high_frac": 0.5},
 *   "clean": {"method": "sac", "splits": ["harmless"], "bad_threshold": 0.0, "p": 0.1},
 *   "dpo":   {"policy": "models/policy", "loss": "sigmoid", "beta": 0.1, "steps": 100}
 * }
 */
#ifndef QUORUM_JOB_H
#define QUORUM_JOB_H

#include <stdint.h>

#define JOB_MAX_CORPORA 64
#define JOB_MAX_MEMBERS 32
#define JOB_MAX_SPLITS 16
#define JOB_STR 1024

/* Input formats understood by `quorum ingest`. */
typedef enum {
    FORMAT_AUTO = 0, /* decided per line: "messages"-style list, "prompt" field, or HH transcripts */
    FORMAT_HH,       /* chosen/rejected are full "\n\nHuman: ...\n\nAssistant: ..." transcripts */
    FORMAT_PCR,      /* flat prompt / chosen / rejected strings */
    FORMAT_CHAT,     /* chosen / rejected are lists of {role, content} messages (shared prefix = prompt) */
    FORMAT_SHAREGPT, /* LLaMA-Factory ranking: conversations [{from, value}] + chosen / rejected message objects */
    FORMAT_PAIRS,    /* labelled pairs: prompt, answers a / b and a label naming the winner (or a tie) */
} CorpusFormat;

typedef struct {
    char name[256];        /* REQUIRED; [A-Za-z0-9_.-]+ not starting with '.', unique; names the output folder */
    char path[JOB_STR];    /* REQUIRED; JSONL or a JSON array (.json), either optionally gzip-compressed */
    CorpusFormat format;   /* "auto" (default) | "hh" | "pcr" | "chat" | "sharegpt" | "pairs" */
    char split[256];       /* source split label carried by every pair (default: the corpus name) */
    /* Field mapping: the JSON keys to read (defaults "prompt", "chosen", "rejected"; for chat lists
     * the message keys "role" and "content"). */
    char field_prompt[128], field_chosen[128], field_rejected[128];
    char field_role[128], field_content[128];
    /* sharegpt: the dialogue key (default "conversations") and the optional system column ("system");
     * its message keys are "from" / "value" unless field_role / field_content say otherwise. */
    char field_conversations[128], field_system[128];
    /* pairs: the answers (defaults "a", "b"), the label key (REQUIRED for pairs) and its values: JSON
     * arrays (as text) of the values meaning "a wins", "b wins" and "tie", e.g. ["model_a", -1]. */
    char field_a[128], field_b[128], field_label[128];
    char label_a[512], label_b[512], label_tie[512];
    /* Role-name map, a JSON object as text: input role name -> system | user | assistant | observation |
     * function_call, added to the layout's own names (chat: system/user/assistant; sharegpt: system/
     * human/gpt/observation/function_call). "" = none. */
    char roles[1024];
    int64_t max_pairs;     /* 0 = all lines; else only the first max_pairs lines are read */
} JobCorpus;

/* What a committee member computes per response (quorum/score.h has the exact definitions). Only
 * reward members vote; the other kinds feed their own cleaning rules (quorum/clean.h). */
typedef enum {
    MEMBER_REWARD = 0,     /* "reward": a *ForSequenceClassification reward model (or a builtin rule) */
    MEMBER_LM,             /* "lm": a causal LM; score = IFD = PPL(response | prompt) / PPL(response) */
    MEMBER_IMPLICIT,       /* "implicit": policy + reference causal LMs; score = log pi(y|x) - log pi_ref(y|x) */
    MEMBER_JUDGE,          /* "judge": an instruct causal LM; score = expected rating 1..10 after a judging prompt */
    MEMBER_KIND_COUNT
} MemberKind;

typedef struct {
    char name[256];        /* REQUIRED; unique in the committee */
    char path[JOB_STR];    /* REQUIRED; HF folder: config.json + model.safetensors + tokenizer.json */
    int max_length;        /* tokens; longer pairs are truncated from the left of the prompt (default 1024) */
    int batch_size;        /* sequences per forward (default 8) */
    MemberKind kind;       /* "reward" (default) | "lm" | "implicit" | "judge" */
    char ref[JOB_STR];     /* implicit: the reference causal LM folder (REQUIRED for implicit) */
    char prompt_template[JOB_STR]; /* judge: the judging prompt file ("" = the default in quorum/score.h) */
} JobMember;

typedef struct {
    float margin;          /* member agrees when s_chosen - s_rejected > margin (default 0: ties disagree) */
    float high_frac;       /* HighAgree starts at ceil(high_frac * N) agreeing members (default 0.5) */
} JobVote;

typedef enum {
    CLEAN_NONE = 0,
    CLEAN_SAC,             /* Source-Aware Cleaning (default) */
    CLEAN_VOTE_ALL_REMOVE, CLEAN_VOTE_ALL_FLIP,
    CLEAN_VOTE_MAJ_REMOVE, CLEAN_VOTE_MAJ_FLIP,
    CLEAN_MARGIN_REMOVE, CLEAN_MARGIN_FLIP,
    CLEAN_IFD_R, CLEAN_IFD_GAP_R, CLEAN_IFD_GAP_F,   /* lm members */
    CLEAN_RW_GAP_R, CLEAN_RW_GAP_F,                 /* implicit members */
    CLEAN_LLM_JUDGE_R, CLEAN_LLM_JUDGE_F,           /* judge members */
    CLEAN_CONSENSUS_R, CLEAN_CONSENSUS_F,           /* k of a set of methods agree */
    CLEAN_METHOD_COUNT
} CleanMethod;

typedef enum { NORM_NONE = 0, NORM_ZSCORE, NORM_RANK } CleanNorm;

typedef struct {
    CleanMethod method;              /* "sac" | "vote_all_remove" | ... | "margin_flip" | "ifd_r" | ... | "none" */
    char splits[JOB_MAX_SPLITS][256];/* SAC removes LowAgree pairs only in these splits (default: harmless) */
    int n_splits;
    float bad_threshold;             /* SAC: a LowAgree pair is removed when both responses' mean committee
                                        rewards are below this (default 0.0) */
    float p;                         /* margin_*, ifd_*, rw_gap_*: the fraction p of pairs acted on (default 0.1) */
    CleanNorm normalize;             /* reward members' scores before the committee means: "none" (default) |
                                        "zscore" | "rank" (quorum/clean.h, "Calibrated committees") */
    char weights[1024];              /* JSON object: reward member name -> weight > 0 in the committee means
                                        (absent members 1; default "" = all 1) */
    char consensus[JOB_MAX_SPLITS][32]; /* consensus_*: the methods that vote (default sac, vote_maj_remove,
                                        margin_remove) */
    int n_consensus;
    int consensus_k;                 /* consensus_*: act where at least k of them act (default 2) */
} JobClean;

/* TRL's DPOTrainer loss_type values (definitions: quorum/train.h), then two pre-2026 TRL forms under
 * their own names: cdpo (sigmoid with label smoothing) and ipo_mean (ipo on length-averaged log-probs). */
typedef enum {
    DPO_SIGMOID = 0, DPO_IPO, DPO_HINGE, DPO_ROBUST, DPO_EXO_PAIR, DPO_NCA_PAIR, DPO_BCO_PAIR, DPO_SPPO_HARD,
    DPO_AOT, DPO_AOT_UNPAIRED, DPO_APO_ZERO, DPO_APO_DOWN, DPO_DISCOPOP, DPO_SFT, DPO_SIGMOID_NORM, DPO_CDPO,
    DPO_IPO_MEAN, DPO_N_LOSSES
} DpoLoss;

typedef struct {
    int enabled;                     /* 1 when the "dpo" object is present */
    char policy[JOB_STR];            /* REQUIRED when enabled: HF causal-LM folder */
    char corpus[256];                /* which cleaned corpus to train on (default: all, concatenated) */
    DpoLoss loss;                    /* a loss_type name of quorum/train.h, default "sigmoid" */
    float beta;                      /* default 0.1 */
    float label_smoothing;           /* robust/cdpo/exo_pair/aot epsilon, default 0 (others: must be 0) */
    float discopop_tau;              /* discopop temperature, default 0.05 (TRL's) */
    int lora_r;                      /* LoRA rank, default 0 = full fine-tuning (quorum/train.h LoraCfg) */
    float lora_alpha;                /* default 32 */
    float lora_dropout;              /* in [0, 1), default 0 */
    char lora_targets[256];          /* comma-separated module names; default all Llama projections */
    float lr;                        /* default 5e-6 */
    float weight_decay;              /* default 0 */
    float grad_clip;                 /* global norm, default 1.0; 0 disables */
    int warmup_steps;                /* default 0 */
    char schedule[32];               /* "constant" (default) | "cosine" */
    int steps;                       /* optimizer steps, default 100 */
    int batch_size;                  /* global pairs per optimizer step, default 8 */
    int grad_accum;                  /* micro-batches per step per rank, default 1 */
    int max_length;                  /* default 512 */
    int max_prompt_length;           /* default 256 */
    int zero1;                       /* shard optimizer state over ranks, default 0 */
    int checkpoint_every;            /* steps, default 50 */
    int precision;                   /* "fp32" (default) | "bf16": bf16 + fp32 master (quorum/train.h TrainCfg) */
    int grad_reduce;                 /* "fp32" (default) | "bf16": gradient reduction on the wire */
    int packed;                      /* pack each micro-batch, a pair's prompt once (TrainCfg.packed), default 0 */
    int recompute;                   /* activation recomputation per block (TrainCfg.recompute), default 0 */
} JobDpo;

typedef struct {
    char path[JOB_STR];              /* the job file itself */
    char dir[JOB_STR];               /* its directory: base for relative paths */
    char name[256];                  /* default "job" */
    char out_dir[JOB_STR];           /* default "out/<name>" (relative to the current directory) */
    int shard_size;                  /* input lines per shard, default 1024 */
    uint64_t seed;                   /* default 1 */
    float reject_limit;              /* ingest fails when rejected lines >= reject_limit * lines (default 1:
                                        a corpus whose every line is rejected); in (0, 1] */
    JobCorpus corpora[JOB_MAX_CORPORA];
    int n_corpora;
    JobMember committee[JOB_MAX_MEMBERS];
    int n_members;
    JobVote vote;
    JobClean clean;
    JobDpo dpo;
} Job;

/* Fills every field with its default. */
void job_defaults(Job *job);
/* Parses a job file. Returns 0, or -1 after printing one line that names the file and key. Under MPI
 * (world > 1) it is collective: every rank loads, rank 0 alone prints, and all ranks return the same. */
int job_load(Job *job, const char *path);
/* Parses a job from a JSON string; `path` is used for messages and relative paths. */
int job_parse(Job *job, const char *json, const char *path);

/* The names of the enums above, as the job file and the command lines spell them: one table per enum
 * (src/util/job.c), so a name accepted in a job file is accepted on a command line and printed back
 * the same. The enums live here, not in their stages' headers, because the job file is parsed and
 * checked as a whole before any stage runs (a misspelled "clean.method" fails at load, naming the key,
 * not hours later), and this file is below every stage. */
const char *corpus_format_name(int format); /* "auto" | "hh" | "pcr" | "chat" | "sharegpt" | "pairs" | "unknown" */
const char *clean_method_name(CleanMethod m);
const char *member_kind_name(MemberKind k); /* "reward", "lm", "implicit", "judge" */
/* Parses a method name ("sac", "margin_flip", ...). 0 and *out set, or -1 (no message) for an unknown name. */
int clean_method_parse(const char *name, CleanMethod *out);
const char *dpo_loss_name(DpoLoss l);
/* A loss_type name -> DpoLoss: 0, or -1 for an unknown name (dpo_loss_name(i), i < DPO_N_LOSSES, lists them). */
int dpo_loss_parse(const char *name, DpoLoss *out);

#endif /* QUORUM_JOB_H */
