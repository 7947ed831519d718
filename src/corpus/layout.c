/* layout.c - a pair written back in its corpus's input layout, with its pass-through columns
 * (the cleaned.jsonl writer; README "Corpora"). */
#include "parse.h"
#include "reader.h"
#include "quorum/corpus.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* s[0..n) JSON-escaped. The bytes are valid UTF-8 (ingest checked), so only the JSON specials and
 * control bytes need escaping. */
static void json_escape(Buf *b, const char *s, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { char e[2] = {'\\', (char)ch}; buf_append(b, e, 2); }
        else if (ch == '\n') buf_append(b, "\\n", 2);
        else if (ch == '\t') buf_append(b, "\\t", 2);
        else if (ch == '\r') buf_append(b, "\\r", 2);
        else if (ch < 0x20 || ch == 0x7f) buf_appendf(b, "\\u%04x", ch);
        else buf_append(b, &s[i], 1);
    }
}

void json_append_string(Buf *b, const char *s, int64_t n) {
    buf_append(b, "\"", 1);
    json_escape(b, s, n);
    buf_append(b, "\"", 1);
}

static void key(Buf *b, const char *k) {
    if (b->len && b->data[b->len - 1] != '{' && b->data[b->len - 1] != '[') buf_append(b, ",", 1);
    json_append_string(b, k, (int64_t)strlen(k));
    buf_append(b, ":", 1);
}
static void str_member(Buf *b, const char *k, const char *s, int64_t n) {
    key(b, k);
    json_append_string(b, s, n);
}
static void message(Buf *b, const JobCorpus *c, int format, const char *rk, const char *ck, Role r, const char *s, int64_t n) {
    if (b->data[b->len - 1] == '}') buf_append(b, ",", 1); /* after a previous message of a list */
    buf_append(b, "{", 1);
    str_member(b, rk, layout_role_name(c, format, r), (int64_t)strlen(layout_role_name(c, format, r)));
    str_member(b, ck, s, n);
    buf_append(b, "}", 1);
}

/* chat: full message lists, the prompt turns then the reply; or, when the prompt key gave the prompt,
 * that key (a string or a message list) and reply-only lists. */
static void write_chat(Buf *b, const Pair *p, const JobCorpus *c) {
    const char *keys[2] = {c->field_chosen, c->field_rejected};
    if (p->prompt_from == 1 && p->n_turns == 1) str_member(b, c->field_prompt, p->turns[0].text, p->turns[0].len);
    if (p->prompt_from == 2) {
        key(b, c->field_prompt);
        buf_append(b, "[", 1);
        for (int t = 0; t < p->n_turns; t++)
            message(b, c, FORMAT_CHAT, c->field_role, c->field_content, p->turns[t].role, p->turns[t].text, p->turns[t].len);
        buf_append(b, "]", 1);
    }
    for (int s = 0; s < 2; s++) {
        key(b, keys[s]);
        buf_append(b, "[", 1);
        for (int t = 0; !p->prompt_from && t < p->n_turns; t++)
            message(b, c, FORMAT_CHAT, c->field_role, c->field_content, p->turns[t].role, p->turns[t].text, p->turns[t].len);
        message(b, c, FORMAT_CHAT, c->field_role, c->field_content, ROLE_ASSISTANT, s ? p->rejected : p->chosen,
                s ? p->rejected_len : p->chosen_len);
        buf_append(b, "]", 1);
    }
}

/* sharegpt: a leading system turn goes back to the system column, the rest to conversations. */
static void write_sharegpt(Buf *b, const Pair *p, const JobCorpus *c) {
    const char *rk = strcmp(c->field_role, "role") ? c->field_role : "from";
    const char *ck = strcmp(c->field_content, "content") ? c->field_content : "value";
    int t0 = p->n_turns > 0 && p->turns[0].role == ROLE_SYSTEM;
    key(b, c->field_conversations);
    buf_append(b, "[", 1);
    for (int t = t0; t < p->n_turns; t++)
        message(b, c, FORMAT_SHAREGPT, rk, ck, p->turns[t].role, p->turns[t].text, p->turns[t].len);
    buf_append(b, "]", 1);
    key(b, c->field_chosen);
    message(b, c, FORMAT_SHAREGPT, rk, ck, ROLE_ASSISTANT, p->chosen, p->chosen_len);
    key(b, c->field_rejected);
    message(b, c, FORMAT_SHAREGPT, rk, ck, ROLE_ASSISTANT, p->rejected, p->rejected_len);
    if (t0) str_member(b, c->field_system, p->turns[0].text, p->turns[0].len);
}

/* The first value of a label list ("[v, ...]" or one scalar), as JSON text into b. */
static void first_label(Buf *b, const char *values) {
    cJSON *l = cJSON_Parse(values);
    char *v = cJSON_PrintUnformatted(cJSON_IsArray(l) ? l->child : l);
    buf_append_str(b, v ? v : "null");
    free(v);
    cJSON_Delete(l);
}

/* pairs: a / b in their input places, the label naming the (possibly flipped) winner. */
static void write_pairs(Buf *b, const Pair *p, const JobCorpus *c, int flipped) {
    cJSON *extra = cJSON_ParseWithLength(p->extra, (size_t)p->extra_len);
    int a_won = label_matches(c->label_a, cJSON_GetObjectItemCaseSensitive(extra, c->field_label));
    cJSON_Delete(extra);
    int a_is_chosen = a_won != flipped;
    str_member(b, c->field_prompt, p->prompt, p->prompt_len);
    str_member(b, c->field_a, a_is_chosen ? p->chosen : p->rejected, a_is_chosen ? p->chosen_len : p->rejected_len);
    str_member(b, c->field_b, a_is_chosen ? p->rejected : p->chosen, a_is_chosen ? p->rejected_len : p->chosen_len);
    if (!flipped) return; /* the input's own label value stays in the pass-through columns */
    key(b, c->field_label);
    first_label(b, a_is_chosen ? c->label_a : c->label_b);
}

/* Leaves the object open: the caller adds its own members (cleaned.jsonl: "quorum") and the '}'. */
void pair_layout_json(Buf *b, const Pair *p, const JobCorpus *c, int flipped) {
    buf_append(b, "{", 1);
    if (p->format == FORMAT_HH) { /* whole transcripts: prompt + response */
        const char *keys[2] = {c->field_chosen, c->field_rejected};
        for (int s = 0; s < 2; s++) {
            key(b, keys[s]);
            buf_append(b, "\"", 1);
            json_escape(b, p->prompt, p->prompt_len);
            json_escape(b, s ? p->rejected : p->chosen, s ? p->rejected_len : p->chosen_len);
            buf_append(b, "\"", 1);
        }
    } else if (p->format == FORMAT_CHAT) write_chat(b, p, c);
    else if (p->format == FORMAT_SHAREGPT) write_sharegpt(b, p, c);
    else if (p->format == FORMAT_PAIRS) write_pairs(b, p, c, flipped);
    else {
        str_member(b, c->field_prompt, p->prompt, p->prompt_len);
        str_member(b, c->field_chosen, p->chosen, p->chosen_len);
        str_member(b, c->field_rejected, p->rejected, p->rejected_len);
    }
    if (p->extra_len > 2) { /* "{...}": its members, minus a labelled pair's flipped label */
        const char *skip[1] = {c->field_label};
        Buf members = {0};
        json_members_except(p->extra, (size_t)p->extra_len, skip, p->format == FORMAT_PAIRS && flipped, &members, NULL, 0);
        if (members.len > 2) {
            buf_append(b, ",", 1);
            buf_append(b, members.data + 1, members.len - 2);
        }
        buf_free(&members);
    }
}
