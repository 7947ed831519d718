/* test_util.c - job file schema (defaults, unknown keys, wrong types, relative paths), UTF-8
 * validation against hand-made cases, atomic writes. */
#include "../test.h"
#include "quorum/common.h"
#include "quorum/job.h"

#include <string.h>
#include <unistd.h>

static int parse(Job *j, const char *s) { return job_parse(j, s, "jobs/t.json"); }

static void test_job(void) {
    Job j;
    CHECK(parse(&j, "{}") == 0);
    CHECK(j.shard_size == 1024 && j.clean.method == CLEAN_SAC && j.vote.high_frac == 0.5f);
    CHECK(!strcmp(j.out_dir, "out/job"));
    CHECK(parse(&j, "{\"name\":\"x\",\"corpora\":[{\"name\":\"a\",\"path\":\"d/a.jsonl\",\"format\":\"hh\"}],"
                    "\"committee\":[{\"name\":\"m\",\"path\":\"/abs/m\",\"batch_size\":4}],"
                    "\"clean\":{\"method\":\"margin_flip\",\"p\":0.2,\"splits\":[\"a\"]},"
                    "\"dpo\":{\"policy\":\"p\",\"loss\":\"ipo\",\"zero1\":true}}") == 0);
    CHECK(j.n_corpora == 1 && !strcmp(j.corpora[0].path, "jobs/d/a.jsonl")); /* relative to job dir */
    CHECK(!strcmp(j.corpora[0].split, "a") && j.corpora[0].format == FORMAT_HH);
    CHECK(j.n_members == 1 && !strcmp(j.committee[0].path, "/abs/m") && j.committee[0].batch_size == 4);
    CHECK(j.committee[0].max_length == 1024);
    CHECK(j.clean.method == CLEAN_MARGIN_FLIP && fabsf(j.clean.p - 0.2f) < 1e-7 && j.clean.n_splits == 1);
    CHECK(j.dpo.enabled && j.dpo.loss == DPO_IPO && j.dpo.zero1 == 1 && !strcmp(j.dpo.policy, "jobs/p"));
    CHECK(j.dpo.precision == 0 && j.dpo.grad_reduce == 0); /* fp32 unless asked */
    CHECK(parse(&j, "{\"dpo\":{\"policy\":\"p\",\"precision\":\"bf16\",\"grad_reduce\":\"bf16\"}}") == 0 &&
          j.dpo.precision == 1 && j.dpo.grad_reduce == 1);
    CHECK(parse(&j, "{\"dpo\":{\"policy\":\"p\",\"precision\":\"fp16\"}}") != 0);
    /* builtin members name no file: not resolved against the job folder */
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"m\",\"path\":\"builtin:kw:x\"}]}") == 0 &&
          !strcmp(j.committee[0].path, "builtin:kw:x"));
    /* errors: unknown keys, wrong types, bad enums, missing required keys, malformed JSON */
    CHECK(parse(&j, "{\"shard_sise\":3}") != 0);
    CHECK(parse(&j, "{\"shard_size\":\"3\"}") != 0);
    CHECK(parse(&j, "{\"shard_size\":3.5}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\"}]}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"fromat\":\"hh\"}]}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a b\",\"path\":\"x\"}]}") != 0);
    CHECK(parse(&j, "{\"clean\":{\"method\":\"sack\"}}") != 0);
    CHECK(parse(&j, "{\"dpo\":{\"loss\":\"ipo\"}}") != 0);
    CHECK(parse(&j, "{\"vote\":{\"high_frac\":0}}") != 0);
    CHECK(parse(&j, "{\"clean\":{\"splits\":[1]}}") != 0);
    /* clean.splits must name splits of the job's corpora; layout keys are checked (issue 16) */
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"split\":\"s\"}],\"clean\":{\"splits\":[\"t\"]}}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"split\":\"s\"}],\"clean\":{\"splits\":[\"s\"]}}") == 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"roles\":{\"bot\":\"assistant\"}}]}") == 0);
    CHECK(!strcmp(j.corpora[0].roles, "{\"bot\":\"assistant\"}"));
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"roles\":{\"bot\":\"robot\"}}]}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"format\":\"pairs\",\"label_a\":[1]}]}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"format\":\"pairs\",\"field_label\":\"w\","
                    "\"label_a\":[\"A\",-1],\"label_b\":1,\"label_tie\":[{}]}]}") != 0);
    CHECK(parse(&j, "{\"corpora\":[{\"name\":\"a\",\"path\":\"x\",\"format\":\"pairs\",\"field_label\":\"w\","
                    "\"label_a\":[\"A\",-1],\"label_b\":1}]}") == 0);
    CHECK(j.corpora[0].format == FORMAT_PAIRS && !strcmp(j.corpora[0].label_a, "[\"A\",-1]"));
    CHECK(parse(&j, "{\"name\":") != 0);
    CHECK(parse(&j, "[]") != 0);
}

/* issue 20: member kinds, calibrated committees and consensus in the job schema */
static void test_job_family(void) {
    Job j;
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"r\",\"path\":\"m\"},{\"name\":\"l\",\"path\":\"m\",\"kind\":\"lm\"},"
                    "{\"name\":\"d\",\"path\":\"m\",\"kind\":\"implicit\",\"ref\":\"r0\"},"
                    "{\"name\":\"j\",\"path\":\"m\",\"kind\":\"judge\",\"prompt_template\":\"t.txt\"}],"
                    "\"clean\":{\"method\":\"rw_gap_f\",\"normalize\":\"rank\",\"weights\":{\"r\":2.5},"
                    "\"consensus\":[\"ifd_r\",\"sac\"],\"consensus_k\":2}}") == 0);
    CHECK(j.committee[0].kind == MEMBER_REWARD && j.committee[1].kind == MEMBER_LM && j.committee[3].kind == MEMBER_JUDGE);
    CHECK(!strcmp(j.committee[2].ref, "jobs/r0") && !strcmp(j.committee[3].prompt_template, "jobs/t.txt"));
    CHECK(j.clean.method == CLEAN_RW_GAP_F && j.clean.normalize == NORM_RANK && !strcmp(j.clean.weights, "{\"r\":2.5}"));
    CHECK(j.clean.n_consensus == 2 && !strcmp(j.clean.consensus[0], "ifd_r") && j.clean.consensus_k == 2);
    CHECK(parse(&j, "{}") == 0 && j.clean.n_consensus == 3 && j.clean.consensus_k == 2 && j.clean.normalize == NORM_NONE);
    /* errors: an implicit member without ref, an unknown kind, weights of a non-member / non-reward member or
     * <= 0, consensus of an unknown method or of itself, k outside 1..count */
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"d\",\"path\":\"m\",\"kind\":\"implicit\"}]}") != 0);
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"d\",\"path\":\"m\",\"kind\":\"oracle\"}]}") != 0);
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"r\",\"path\":\"m\"}],\"clean\":{\"weights\":{\"x\":1}}}") != 0);
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"r\",\"path\":\"m\",\"kind\":\"lm\"}],\"clean\":{\"weights\":{\"r\":1}}}") != 0);
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"r\",\"path\":\"m\"}],\"clean\":{\"weights\":{\"r\":0}}}") != 0);
    CHECK(parse(&j, "{\"committee\":[{\"name\":\"r\",\"path\":\"m\"}],\"clean\":{\"weights\":[1]}}") != 0);
    CHECK(parse(&j, "{\"clean\":{\"consensus\":[\"sac\",\"nope\"]}}") != 0);
    CHECK(parse(&j, "{\"clean\":{\"consensus\":[\"sac\",\"consensus_r\"]}}") != 0);
    CHECK(parse(&j, "{\"clean\":{\"consensus\":[\"sac\"],\"consensus_k\":2}}") != 0);
    CHECK(parse(&j, "{\"clean\":{\"normalize\":\"minmax\"}}") != 0);
}

static void test_utf8(void) {
    size_t off = 0;
    CHECK(utf8_valid("hello", 5, &off));
    CHECK(utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, &off));     /* e-acute, euro, emoji */
    CHECK(!utf8_valid("ab\xc3", 3, &off) && off == 2);                       /* truncated sequence */
    CHECK(!utf8_valid("a\xc0\xaf", 3, &off) && off == 1);                    /* overlong '/' */
    CHECK(!utf8_valid("\xed\xa0\x80", 3, &off) && off == 0);                 /* surrogate */
    CHECK(!utf8_valid("\xf4\x90\x80\x80", 4, &off));                         /* > U+10FFFF */
    CHECK(!utf8_valid("x\x80", 2, &off) && off == 1);                        /* lone continuation */
    CHECK(!utf8_valid("\xff", 1, &off));
}

static void test_files(void) {
    char dir[] = "/tmp/quorum_test_util_XXXXXX";
    REQUIRE(mkdtemp(dir));
    char *p = path_join(dir, "a/b/c.txt");
    CHECK(file_write_atomic(p, "abc", 3) == 0);
    size_t n = 0;
    const char *err;
    char *s = file_read_all(p, &n, &err);
    CHECK(s && n == 3 && !strcmp(s, "abc"));
    free(s);
    CHECK(file_read_all("/nonexistent/x", &n, &err) == NULL && err);
    CHECK(fnv1a64("a", 1, FNV1A64_INIT) == 0xaf63dc4c8601ec8cULL); /* published FNV-1a test vector */
    free(p);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_job();
    test_job_family();
    test_utf8();
    test_files();
    TEST_MAIN_END();
}
