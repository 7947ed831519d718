/* test_chat.c - chat templates vs the jinja2 reference (chat_reference.py writes cases.json): rendered
 * text equal to the template's, ids = [BOS when HH + add_bos] ++ encode(prompt) ++ encode(completion)
 * with prompt_len at the boundary, BOS exactly once for the families that use one, and template errors
 * where jinja raises. "fold" cases hold corpus turns (system, observation, function_call) that go through
 * chat_fold_turns first; their reference is the template rendering the dialogue folded by hand in Python.
 * usage: test_chat CASES_JSON */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../test.h"
#include "quorum/tokenizer.h"

static Role role_of(const char *s) {
    static const char *const NAMES[ROLE_COUNT] = {"system", "user", "assistant", "observation", "function_call"};
    for (int r = 0; r < ROLE_COUNT; r++)
        if (!strcmp(s, NAMES[r])) return (Role)r;
    return ROLE_ASSISTANT;
}

static size_t count_id(const I32Vec *v, int32_t id) {
    size_t n = 0;
    for (size_t i = 0; i < v->len; i++) n += v->data[i] == id;
    return n;
}

/* Tokenizers load once per folder (the large ones take a second). */
static struct { char *dir; Tokenizer *t; ChatTemplate *ct; } loaded[8];
static int n_loaded;

static void load_dir(const char *dir, Tokenizer **t, ChatTemplate **ct) {
    for (int i = 0; i < n_loaded; i++)
        if (!strcmp(loaded[i].dir, dir)) { *t = loaded[i].t; *ct = loaded[i].ct; return; }
    REQUIRE(n_loaded < 8);
    *t = tokenizer_load(dir);
    *ct = *t ? chat_template_load(dir, *t) : NULL;
    REQUIRE(*t && *ct);
    loaded[n_loaded].dir = xstrdup(dir); loaded[n_loaded].t = *t; loaded[n_loaded].ct = *ct;
    n_loaded++;
}

static void check_case(const cJSON *c, int idx) {
    const char *dir = cJSON_GetObjectItem(c, "dir")->valuestring, *fam = cJSON_GetObjectItem(c, "family")->valuestring;
    Tokenizer *t;
    ChatTemplate *ct;
    load_dir(dir, &t, &ct);
    CHECKF(!strcmp(chat_family_name(chat_template_family(ct)), fam), "case %d: family %s, want %s", idx,
           chat_family_name(chat_template_family(ct)), fam);
    const cJSON *jt = cJSON_GetObjectItem(c, "turns");
    int n = cJSON_GetArraySize(jt);
    Turn *turns = calloc(n + 1, sizeof(Turn));
    for (int i = 0; i < n; i++) {
        const cJSON *u = cJSON_GetArrayItem(jt, i);
        turns[i].role = role_of(cJSON_GetObjectItem(u, "role")->valuestring);
        turns[i].text = cJSON_GetObjectItem(u, "text")->valuestring;
        turns[i].len = (int64_t)strlen(turns[i].text);
    }
    const char *resp = cJSON_GetObjectItem(c, "response")->valuestring;
    Buf scratch = {0};
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "fold"))) {
        Turn *folded = calloc(n + 1, sizeof(Turn));
        int n_folded = -1;
        n = chat_fold_turns(ct, turns, n, folded, &scratch, &n_folded);
        CHECKF(n_folded == cJSON_GetObjectItem(c, "n_folded")->valueint, "case %d (%s): %d system turns folded", idx, fam,
               n_folded);
        free(turns);
        turns = folded;
    }
    Buf p = {0}, r = {0};
    I32Vec ids = {0};
    i32vec_push(&ids, -5); /* a poisoned id already there must survive and not count in prompt_len */
    int plen = -1;
    int rc = chat_render_text(ct, turns, n, resp, strlen(resp), &p, &r);
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "error"))) {
        CHECKF(rc == -1, "case %d (%s): jinja raised, quorum rendered", idx, fam);
        CHECK(chat_render(ct, t, turns, n, resp, strlen(resp), &ids, &plen) == -1 && ids.len == 1);
    } else {
        const char *want_p = cJSON_GetObjectItem(c, "prompt")->valuestring, *want_r = cJSON_GetObjectItem(c, "completion")->valuestring;
        CHECKF(rc == 0 && p.len == strlen(want_p) && !memcmp(p.data, want_p, p.len), "case %d (%s): prompt text differs", idx, fam);
        CHECKF(rc == 0 && r.len == strlen(want_r) && !memcmp(r.data, want_r, r.len), "case %d (%s): completion differs", idx, fam);
        CHECK(chat_render(ct, t, turns, n, resp, strlen(resp), &ids, &plen) == 0);
        I32Vec want = {0};
        i32vec_push(&want, -5);
        int hh_bos = !strcmp(fam, "hh") && tokenizer_add_bos(t);
        if (hh_bos) i32vec_push(&want, tokenizer_bos(t));
        tokenizer_encode(t, want_p, strlen(want_p), &want);
        int want_plen = (int)want.len - 1;
        tokenizer_encode(t, want_r, strlen(want_r), &want);
        CHECKF(ids.len == want.len && !memcmp(ids.data, want.data, ids.len * sizeof(int32_t)), "case %d (%s): ids differ", idx, fam);
        CHECKF(plen == want_plen, "case %d (%s): prompt_len %d, want %d", idx, fam, plen, want_plen);
        int32_t bos = tokenizer_bos(t);
        size_t want_bos = (!strcmp(fam, "llama3") || !strcmp(fam, "mistral") || !strcmp(fam, "gemma") || hh_bos) ? 1 : 0;
        if (bos >= 0) CHECKF(count_id(&ids, bos) == want_bos, "case %d (%s): BOS %zu times", idx, fam, count_id(&ids, bos));
        if (want_bos) CHECK(ids.data[1] == bos);
        i32vec_free(&want);
    }
    buf_free(&p); buf_free(&r); buf_free(&scratch); i32vec_free(&ids); free(turns);
}

int main(int argc, char **argv) {
    size_t n;
    const char *err;
    char *s = argc > 1 ? file_read_all(argv[1], &n, &err) : NULL;
    REQUIRE(s);
    cJSON *cases = cJSON_ParseWithLength(s, n);
    REQUIRE(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) > 20);
    int i = 0;
    for (const cJSON *c = cases->child; c; c = c->next) check_case(c, i++);
    printf("chat: %d cases checked against the jinja2 / HH-transcript reference\n", i);
    cJSON_Delete(cases);
    free(s);
    for (int k = 0; k < n_loaded; k++) { chat_template_free(loaded[k].ct); tokenizer_free(loaded[k].t); free(loaded[k].dir); }
    TEST_MAIN_END();
}
