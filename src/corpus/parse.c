/* parse.c - one JSONL line -> a normalized pair or a reject reason. Rules and check order: parse.h. */
#define _GNU_SOURCE
#include "parse.h"
#include "reader.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *const STATUS_NAMES[LINE_N_STATUS] = {
    "ok", "blank line", "malformed JSON", "not a JSON object", "missing field", "wrong type",
    "invalid UTF-8", "empty response", "identical responses", "no common \"\\n\\nAssistant:\"",
    "unknown role", "chat lists do not share a prefix ending in an assistant reply", "NUL character in a string",
    "tie", "unknown label",
};
const char *line_status_name(LineStatus s) { return (s >= 0 && s < LINE_N_STATUS) ? STATUS_NAMES[s] : "unknown"; }

/* A raw NUL byte, or a \u0000 escape (a backslash preceded by an even run of backslashes). */
static int has_nul(const char *s, size_t n) {
    if (memchr(s, 0, n)) return 1;
    size_t run = 0;
    for (size_t i = 0; i + 5 < n; i++) {
        if (s[i] != '\\') { run = 0; continue; }
        if (run % 2 == 0 && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4)) return 1;
        run++;
    }
    return 0;
}

static const char HUMAN[] = "\n\nHuman:", ASSISTANT[] = "\n\nAssistant:";
#define HUMAN_LEN (sizeof HUMAN - 1)
#define ASSISTANT_LEN (sizeof ASSISTANT - 1)

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }
static int all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space(s[i])) return 0;
    return 1;
}

/* ---- HH transcripts ---- */

static size_t count_marker(const char *s, size_t n, const char *m, size_t mlen) {
    size_t k = 0;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), m, mlen)) != NULL; p += mlen) k++;
    return k;
}

int transcript_max_turns(const char *s, size_t n) {
    return (int)(count_marker(s, n, HUMAN, HUMAN_LEN) + count_marker(s, n, ASSISTANT, ASSISTANT_LEN) + 1);
}

/* The earliest marker at or after `from`: its offset (n when none), role and length. */
static size_t next_marker(const char *s, size_t n, size_t from, Role *role, size_t *mlen) {
    const char *h = memmem(s + from, n - from, HUMAN, HUMAN_LEN);
    const char *a = memmem(s + from, n - from, ASSISTANT, ASSISTANT_LEN);
    if (!h && !a) return n;
    if (h && (!a || h < a)) { *role = ROLE_USER; *mlen = HUMAN_LEN; return (size_t)(h - s); }
    *role = ROLE_ASSISTANT; *mlen = ASSISTANT_LEN;
    return (size_t)(a - s);
}

int transcript_split(const char *s, size_t n, Turn *out) {
    int k = 0;
    Role role = ROLE_USER;
    size_t mlen = 0;
    size_t m = next_marker(s, n, 0, &role, &mlen);
    if (m > 0) out[k++] = (Turn){ROLE_SYSTEM, s, (int64_t)m};
    while (m < n) {
        Role r = role;
        size_t start = m + mlen;
        if (start < n && s[start] == ' ') start++;
        size_t next = next_marker(s, n, m + mlen, &role, &mlen);
        if (!(r == ROLE_ASSISTANT && next == n && start == n)) out[k++] = (Turn){r, s + start, (int64_t)(next - start)};
        m = next;
    }
    return k;
}

/* ---- field access ---- */

typedef struct {
    LineVerdict v;
    const JobCorpus *c;
    const char *line;      /* the raw record, for the pass-through columns */
    size_t len;
    const char *used[8];   /* top-level keys the layout consumed */
    int n_used;
    int prompt_from;       /* Pair.prompt_from */
} Ctx;

static void use(Ctx *cx, const char *key) {
    if (cx->n_used < 8) cx->used[cx->n_used++] = key;
}

static int reject(Ctx *cx, LineStatus st, const char *field) {
    if (cx->v.status == LINE_OK) {
        cx->v.status = st;
        snprintf(cx->v.field, sizeof cx->v.field, "%s", field);
    }
    return -1;
}

/* A reject whose detail names the bad value (JSON) and the accepted ones. */
static int reject_value(Ctx *cx, LineStatus st, const char *field, const cJSON *value, const char *accepted) {
    if (cx->v.status != LINE_OK) return -1;
    char *v = cJSON_PrintUnformatted(value);
    snprintf(cx->v.detail, sizeof cx->v.detail, "%.100s; accepted: %.180s", v ? v : "?", accepted);
    free(v);
    return reject(cx, st, field);
}

/* A UTF-8 string member: missing / wrong type / invalid UTF-8 rejected under the name `field`. */
static int get_string(Ctx *cx, const cJSON *obj, const char *key, const char *field, const char **s, size_t *n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return reject(cx, LINE_MISSING, field);
    if (!cJSON_IsString(it)) return reject(cx, LINE_WRONG_TYPE, field);
    *s = it->valuestring;
    *n = strlen(it->valuestring);
    if (!utf8_valid(*s, *n, NULL)) return reject(cx, LINE_BAD_UTF8, field);
    return 0;
}

/* Checks the two responses (named fc, fr): non-blank, then different. */
static int check_pair(Ctx *cx, const char *ch, size_t nc, const char *rj, size_t nr, const char *fc, const char *fr) {
    if (all_space(ch, nc)) return reject(cx, LINE_EMPTY, fc);
    if (all_space(rj, nr)) return reject(cx, LINE_EMPTY, fr);
    if (nc == nr && memcmp(ch, rj, nc) == 0) return reject(cx, LINE_IDENTICAL, fr);
    return 0;
}
static int check_responses(Ctx *cx, const char *ch, size_t nc, const char *rj, size_t nr) {
    return check_pair(cx, ch, nc, rj, nr, cx->c->field_chosen, cx->c->field_rejected);
}

/* Appends JSON text s[0..n) without the whitespace between tokens (strings untouched): one line. */
static void append_minified(Buf *out, const char *s, size_t n) {
    int in_string = 0, escape = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_string) {
            if (escape) escape = 0;
            else if (ch == '\\') escape = 1;
            else if (ch == '"') in_string = 0;
        } else if (ch == '"') in_string = 1;
        else if ((unsigned char)ch <= 32) continue; /* cJSON's whitespace: every byte up to ' ' */
        buf_append(out, &ch, 1);
    }
}

static int json_ws(char ch) { return (unsigned char)ch <= 32; } /* as cJSON skips it */

int json_members_except(const char *s, size_t n, const char *const *skip, int n_skip, Buf *out, char *bad_key,
                        size_t cap) {
    size_t i = 0, first = out->len;
    int rc = 0;
    while (i < n && json_ws(s[i])) i++;
    for (i++; i < n;) { /* at a key, a ',' or the closing '}' */
        while (i < n && (json_ws(s[i]) || s[i] == ',')) i++;
        if (i >= n || s[i] != '"') break;
        size_t ks = i++;
        while (i < n && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
        size_t ke = ++i; /* just past the closing quote */
        while (i < n && (json_ws(s[i]) || s[i] == ':')) i++;
        JsonScan st = {0};
        size_t vs = i, ve = vs + json_scan(&st, s + vs, n - vs);
        i = ve;
        int skipped = 0;
        for (int u = 0; u < n_skip && !skipped; u++)
            skipped = strlen(skip[u]) == ke - ks - 2 && !memcmp(skip[u], s + ks + 1, ke - ks - 2);
        if (skipped) continue;
        if (bad_key && rc == 0 && !utf8_valid(s + ks, ve - ks, NULL)) {
            snprintf(bad_key, cap, "%.*s", (int)(ke - ks - 2), s + ks + 1);
            rc = -1;
        }
        buf_append(out, out->len > first ? "," : "{", 1);
        buf_append(out, s + ks, ke - ks);
        buf_append(out, ":", 1);
        append_minified(out, s + vs, ve - vs);
    }
    if (out->len > first) buf_append(out, "}", 1);
    return rc;
}

static void add_pair(Ctx *cx, ShardBuilder *b, int64_t id, int format, const char *p, size_t np, const char *ch,
                     size_t nc, const char *rj, size_t nr, Turn *turns, int n_turns) {
    Buf extra = {0};
    char key[200];
    if (json_members_except(cx->line, cx->len, cx->used, cx->n_used, &extra, key, sizeof key) != 0) {
        reject(cx, LINE_BAD_UTF8, key); /* a pass-through column goes to JSONL outputs: it must be UTF-8 */
    } else {
        Pair pair = {id, p, (int64_t)np, ch, (int64_t)nc, rj, (int64_t)nr, turns, n_turns, format, extra.data, (int64_t)extra.len,
                     cx->prompt_from};
        shard_builder_add(b, &pair);
    }
    buf_free(&extra);
}

/* ---- the three formats ---- */

static int parse_hh(Ctx *cx, const cJSON *o, int64_t id, ShardBuilder *b) {
    const JobCorpus *c = cx->c;
    const char *ch, *rj;
    size_t nc, nr;
    if (get_string(cx, o, c->field_chosen, c->field_chosen, &ch, &nc)) return -1;
    if (get_string(cx, o, c->field_rejected, c->field_rejected, &rj, &nr)) return -1;
    size_t lcp = 0;
    while (lcp < nc && lcp < nr && ch[lcp] == rj[lcp]) lcp++;
    size_t cut = 0; /* just after the last marker that lies wholly inside the common prefix */
    for (const char *p = ch; (p = memmem(p, lcp - (size_t)(p - ch), ASSISTANT, ASSISTANT_LEN)) != NULL; p++)
        cut = (size_t)(p - ch) + ASSISTANT_LEN;
    if (cut == 0) return reject(cx, LINE_NO_ASSISTANT, c->field_chosen);
    if (check_responses(cx, ch + cut, nc - cut, rj + cut, nr - cut)) return -1;
    Turn *turns = xmalloc(sizeof(Turn) * (size_t)transcript_max_turns(ch, cut));
    int nt = transcript_split(ch, cut, turns);
    use(cx, c->field_chosen);
    use(cx, c->field_rejected);
    add_pair(cx, b, id, FORMAT_HH, ch, cut, ch + cut, nc - cut, rj + cut, nr - cut, turns, nt);
    free(turns);
    return 0;
}

/* A flat prompt: an HH transcript is split into turns, anything else is one user turn. */
static int prompt_turns(const char *p, size_t np, Turn **turns) {
    *turns = xmalloc(sizeof(Turn) * (size_t)transcript_max_turns(p, np));
    if (memmem(p, np, HUMAN, HUMAN_LEN)) return transcript_split(p, np, *turns);
    if (np == 0) return 0;
    (*turns)[0] = (Turn){ROLE_USER, p, (int64_t)np};
    return 1;
}

/* A pair with a flat prompt string; keys[3] are the columns it consumed. */
static int add_flat(Ctx *cx, ShardBuilder *b, int64_t id, int format, const char *const keys[3], const char *p,
                    size_t np, const char *ch, size_t nc, const char *rj, size_t nr) {
    Turn *turns;
    int nt = prompt_turns(p, np, &turns);
    for (int k = 0; k < 3; k++) use(cx, keys[k]);
    add_pair(cx, b, id, format, p, np, ch, nc, rj, nr, turns, nt);
    free(turns);
    return 0;
}

static int parse_pcr(Ctx *cx, const cJSON *o, int64_t id, ShardBuilder *b) {
    const JobCorpus *c = cx->c;
    const char *p, *ch, *rj;
    size_t np, nc, nr;
    if (get_string(cx, o, c->field_prompt, c->field_prompt, &p, &np)) return -1;
    if (get_string(cx, o, c->field_chosen, c->field_chosen, &ch, &nc)) return -1;
    if (get_string(cx, o, c->field_rejected, c->field_rejected, &rj, &nr)) return -1;
    if (check_responses(cx, ch, nc, rj, nr)) return -1;
    const char *keys[3] = {c->field_prompt, c->field_chosen, c->field_rejected};
    return add_flat(cx, b, id, FORMAT_PCR, keys, p, np, ch, nc, rj, nr);
}

/* ---- roles ---- */

typedef struct {
    const char *name;
    Role role;
} RoleName;
static const RoleName CHAT_ROLES[] = {{"system", ROLE_SYSTEM}, {"user", ROLE_USER}, {"assistant", ROLE_ASSISTANT}, {NULL, 0}};
static const RoleName SHAREGPT_ROLES[] = {{"system", ROLE_SYSTEM}, {"human", ROLE_USER}, {"gpt", ROLE_ASSISTANT},
                                          {"observation", ROLE_OBSERVATION}, {"function_call", ROLE_FUNCTION_CALL}, {NULL, 0}};
static const char *const ROLE_KEYS[ROLE_COUNT] = {"system", "user", "assistant", "observation", "function_call"};

/* The job's role map, parsed once per corpus (job.c checked it). */
static const cJSON *role_map(const JobCorpus *c) {
    static char text[sizeof c->roles];
    static cJSON *map;
    if (!c->roles[0]) return NULL;
    if (strcmp(text, c->roles) != 0) {
        cJSON_Delete(map);
        map = cJSON_Parse(c->roles);
        snprintf(text, sizeof text, "%s", c->roles);
    }
    return map;
}

/* name -> Role via the role map, then the layout's names; -1 when unknown. */
static int lookup_role(const JobCorpus *c, const RoleName *names, const char *name) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(role_map(c), name);
    if (cJSON_IsString(m))
        for (int r = 0; r < ROLE_COUNT; r++)
            if (!strcmp(m->valuestring, ROLE_KEYS[r])) return r;
    for (int i = 0; names[i].name; i++)
        if (!strcmp(names[i].name, name)) return (int)names[i].role;
    return -1;
}

static void accepted_roles(const JobCorpus *c, const RoleName *names, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; names[i].name; i++) snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? " " : "", names[i].name);
    for (const cJSON *m = role_map(c) ? role_map(c)->child : NULL; m; m = m->next)
        snprintf(out + strlen(out), cap - strlen(out), " %s", m->string);
}

const char *layout_role_name(const JobCorpus *c, int format, Role r) {
    for (const cJSON *m = role_map(c) ? role_map(c)->child : NULL; m; m = m->next)
        if (cJSON_IsString(m) && !strcmp(m->valuestring, ROLE_KEYS[r])) return m->string;
    const RoleName *names = format == FORMAT_SHAREGPT ? SHAREGPT_ROLES : CHAT_ROLES;
    for (int i = 0; names[i].name; i++)
        if (names[i].role == r) return names[i].name;
    return ROLE_KEYS[r];
}

/* ---- messages ---- */

/* The message keys of a layout: chat "role"/"content", sharegpt "from"/"value", unless the job maps them. */
typedef struct {
    const char *role, *content;
    const RoleName *names;
} MsgKeys;
static MsgKeys msg_keys(const JobCorpus *c, int format) {
    if (format != FORMAT_SHAREGPT) return (MsgKeys){c->field_role, c->field_content, CHAT_ROLES};
    return (MsgKeys){strcmp(c->field_role, "role") ? c->field_role : "from",
                     strcmp(c->field_content, "content") ? c->field_content : "value", SHAREGPT_ROLES};
}

/* One {role, content} object `m` named `at` -> a turn (a view into the cJSON strings). */
static int get_message(Ctx *cx, const cJSON *m, const char *at, const MsgKeys *k, Turn *out) {
    char field[300], acc[600];
    if (!cJSON_IsObject(m)) return reject(cx, LINE_WRONG_TYPE, at);
    const char *role, *text;
    size_t nrole, ntext;
    snprintf(field, sizeof field, "%s.%s", at, k->role);
    if (get_string(cx, m, k->role, field, &role, &nrole)) return -1;
    int r = lookup_role(cx->c, k->names, role);
    if (r < 0) {
        accepted_roles(cx->c, k->names, acc, sizeof acc);
        return reject_value(cx, LINE_BAD_ROLE, field, cJSON_GetObjectItemCaseSensitive(m, k->role), acc);
    }
    snprintf(field, sizeof field, "%s.%s", at, k->content);
    if (get_string(cx, m, k->content, field, &text, &ntext)) return -1;
    *out = (Turn){(Role)r, text, (int64_t)ntext};
    return 0;
}

/* A message list -> turns (+ `extra` spare slots in front, left empty). */
static int get_messages(Ctx *cx, const cJSON *o, const char *key, const MsgKeys *k, int extra, Turn **out, int *n) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!list) return reject(cx, LINE_MISSING, key);
    if (!cJSON_IsArray(list)) return reject(cx, LINE_WRONG_TYPE, key);
    *n = cJSON_GetArraySize(list);
    *out = xcalloc((size_t)(*n + extra) + 1, sizeof(Turn));
    int i = 0;
    char at[300];
    for (const cJSON *m = list->child; m; m = m->next, i++) {
        snprintf(at, sizeof at, "%s[%d]", key, i);
        if (get_message(cx, m, at, k, &(*out)[extra + i])) return -1;
    }
    return 0;
}

static int same_turns(const Turn *a, const Turn *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i].role != b[i].role || a[i].len != b[i].len || memcmp(a[i].text, b[i].text, (size_t)a[i].len) != 0) return 0;
    return 1;
}

/* The flat text of chat prompt turns, HH style, ending with the "\n\nAssistant:" the reply follows. */
static void render_prompt(Buf *out, const Turn *t, int n) {
    static const char *const NAMES[ROLE_COUNT] = {"System", "Human", "Assistant", "Observation", "Function call"};
    for (int i = 0; i < n; i++) {
        buf_appendf(out, "\n\n%s: ", NAMES[t[i].role]);
        buf_append(out, t[i].text, (size_t)t[i].len);
    }
    buf_append(out, ASSISTANT, ASSISTANT_LEN);
}

static int parse_chat(Ctx *cx, const cJSON *o, int64_t id, ShardBuilder *b) {
    const JobCorpus *c = cx->c;
    Turn *tc = NULL, *tr = NULL, *tp = NULL, user;
    int nc = 0, nr = 0, rc = -1;
    MsgKeys k = msg_keys(c, FORMAT_CHAT);
    if (get_messages(cx, o, c->field_chosen, &k, 0, &tc, &nc) || get_messages(cx, o, c->field_rejected, &k, 0, &tr, &nr))
        goto done;
    if (nc < 1 || tc[nc - 1].role != ROLE_ASSISTANT) { reject(cx, LINE_BAD_CHAT, c->field_chosen); goto done; }
    if (nr != nc || tr[nr - 1].role != ROLE_ASSISTANT || !same_turns(tc, tr, nc - 1)) {
        reject(cx, LINE_BAD_CHAT, c->field_rejected);
        goto done;
    }
    const Turn *turns = tc;
    int nt = nc - 1;
    if (nt == 0 && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, c->field_prompt))) {
        /* lists holding only the replies, the prompt a message list (TRL's explicit prompt) */
        if (get_messages(cx, o, c->field_prompt, &k, 0, &tp, &nt)) goto done;
        turns = tp;
        cx->prompt_from = 2;
        use(cx, c->field_prompt);
    } else if (nt == 0 && cJSON_GetObjectItemCaseSensitive(o, c->field_prompt)) {
        /* lists holding only the replies: the prompt key supplies the user turn */
        const char *p;
        size_t np;
        if (get_string(cx, o, c->field_prompt, c->field_prompt, &p, &np)) goto done;
        user = (Turn){ROLE_USER, p, (int64_t)np};
        turns = &user;
        nt = 1;
        cx->prompt_from = 1;
        use(cx, c->field_prompt);
    }
    const Turn *ch = &tc[nc - 1], *rj = &tr[nr - 1];
    if (check_responses(cx, ch->text, (size_t)ch->len, rj->text, (size_t)rj->len)) goto done;
    Buf prompt = {0};
    render_prompt(&prompt, turns, nt);
    use(cx, c->field_chosen);
    use(cx, c->field_rejected);
    add_pair(cx, b, id, FORMAT_CHAT, prompt.data, prompt.len, ch->text, (size_t)ch->len, rj->text, (size_t)rj->len,
             (Turn *)turns, nt);
    buf_free(&prompt);
    rc = 0;
done:
    free(tc);
    free(tr);
    free(tp);
    return rc;
}

/* LLaMA-Factory ranking layout: conversations + chosen / rejected message objects [+ system]. */
static int parse_sharegpt(Ctx *cx, const cJSON *o, int64_t id, ShardBuilder *b) {
    const JobCorpus *c = cx->c;
    MsgKeys k = msg_keys(c, FORMAT_SHAREGPT);
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(o, c->field_system);
    int has_sys = sys && !cJSON_IsNull(sys), n = 0, rc = -1;
    Turn *t = NULL, ch, rj;
    const char *st = NULL;
    size_t ns = 0;
    if (has_sys && get_string(cx, o, c->field_system, c->field_system, &st, &ns)) goto done;
    if (get_messages(cx, o, c->field_conversations, &k, 1, &t, &n)) goto done;
    const char *keys[2] = {c->field_chosen, c->field_rejected};
    Turn *resp[2] = {&ch, &rj};
    for (int s = 0; s < 2; s++) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, keys[s]);
        if (!m) { reject(cx, LINE_MISSING, keys[s]); goto done; }
        if (get_message(cx, m, keys[s], &k, resp[s])) goto done;
        if (resp[s]->role != ROLE_ASSISTANT && resp[s]->role != ROLE_FUNCTION_CALL) {
            char field[300];
            snprintf(field, sizeof field, "%s.%s", keys[s], k.role);
            reject_value(cx, LINE_BAD_ROLE, field, cJSON_GetObjectItemCaseSensitive(m, k.role),
                         "a reply role (gpt, function_call or a name mapped to assistant / function_call)");
            goto done;
        }
    }
    if (n < 1 || (t[n].role != ROLE_USER && t[n].role != ROLE_OBSERVATION)) {
        reject(cx, LINE_BAD_CHAT, c->field_conversations);
        snprintf(cx->v.detail, sizeof cx->v.detail, "the conversation must end with a human or observation turn");
        goto done;
    }
    if (check_responses(cx, ch.text, (size_t)ch.len, rj.text, (size_t)rj.len)) goto done;
    Turn *turns = t + 1;
    if (has_sys && ns > 0) { t[0] = (Turn){ROLE_SYSTEM, st, (int64_t)ns}; turns = t; n++; }
    Buf prompt = {0};
    render_prompt(&prompt, turns, n);
    use(cx, c->field_conversations);
    use(cx, c->field_chosen);
    use(cx, c->field_rejected);
    if (has_sys && ns > 0) use(cx, c->field_system); /* an empty or null system column passes through */
    add_pair(cx, b, id, FORMAT_SHAREGPT, prompt.data, prompt.len, ch.text, (size_t)ch.len, rj.text, (size_t)rj.len, turns, n);
    buf_free(&prompt);
    rc = 0;
done:
    free(t);
    return rc;
}

int label_matches(const char *values, const void *item) {
    const cJSON *v = item;
    cJSON *list = cJSON_Parse(values);
    int hit = 0;
    const cJSON *one = cJSON_IsArray(list) ? list->child : list;
    for (; one && !hit; one = cJSON_IsArray(list) ? one->next : NULL) {
        if (cJSON_IsNumber(one) && cJSON_IsNumber(v)) hit = one->valuedouble == v->valuedouble;
        else if (cJSON_IsString(one) && cJSON_IsString(v)) hit = !strcmp(one->valuestring, v->valuestring);
        else if (cJSON_IsBool(one) && cJSON_IsBool(v)) hit = cJSON_IsTrue(one) == cJSON_IsTrue(v);
    }
    cJSON_Delete(list);
    return hit;
}

/* Labelled pairs: prompt, a, b and a label naming the winner. The label stays in the pass-through
 * columns (the cleaned output writes it back, flipped with the pair). */
static int parse_pairs(Ctx *cx, const cJSON *o, int64_t id, ShardBuilder *b) {
    const JobCorpus *c = cx->c;
    const char *p, *sa, *sb;
    size_t np, na, nb;
    if (get_string(cx, o, c->field_prompt, c->field_prompt, &p, &np)) return -1;
    if (get_string(cx, o, c->field_a, c->field_a, &sa, &na)) return -1;
    if (get_string(cx, o, c->field_b, c->field_b, &sb, &nb)) return -1;
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, c->field_label);
    if (!label) return reject(cx, LINE_MISSING, c->field_label);
    int a_wins = label_matches(c->label_a, label), b_wins = !a_wins && label_matches(c->label_b, label);
    if (!a_wins && !b_wins) {
        char acc[1700];
        snprintf(acc, sizeof acc, "a wins %s, b wins %s, tie %s", c->label_a, c->label_b, c->label_tie[0] ? c->label_tie : "[]");
        return reject_value(cx, label_matches(c->label_tie, label) ? LINE_TIE : LINE_BAD_LABEL, c->field_label, label, acc);
    }
    const char *ch = a_wins ? sa : sb, *rj = a_wins ? sb : sa;
    size_t nc = a_wins ? na : nb, nr = a_wins ? nb : na;
    if (check_pair(cx, ch, nc, rj, nr, a_wins ? c->field_a : c->field_b, a_wins ? c->field_b : c->field_a)) return -1;
    const char *keys[3] = {c->field_prompt, c->field_a, c->field_b};
    return add_flat(cx, b, id, FORMAT_PAIRS, keys, p, np, ch, nc, rj, nr);
}

static int resolve_format(const JobCorpus *c, const cJSON *o) {
    if (c->format != FORMAT_AUTO) return c->format;
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, c->field_conversations))) return FORMAT_SHAREGPT;
    if (c->field_label[0] && cJSON_GetObjectItemCaseSensitive(o, c->field_label)) return FORMAT_PAIRS;
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, c->field_chosen))) return FORMAT_CHAT;
    if (cJSON_GetObjectItemCaseSensitive(o, c->field_prompt)) return FORMAT_PCR;
    return FORMAT_HH;
}

LineVerdict parse_line(const char *line, size_t len, int64_t id, const JobCorpus *c, ShardBuilder *b) {
    Ctx cx = {{LINE_OK, "", "", -1}, c, line, len, {0}, 0, 0};
    if (all_space(line, len)) {
        reject(&cx, LINE_BLANK, "(line)");
        return cx.v;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!o || !all_space(end, len - (size_t)(end - line))) reject(&cx, LINE_BAD_JSON, "(line)");
    else if (!cJSON_IsObject(o)) reject(&cx, LINE_NOT_OBJECT, "(line)");
    else if (has_nul(line, len)) reject(&cx, LINE_NUL, "(line)");
    else {
        static int (*const parse[])(Ctx *, const cJSON *, int64_t, ShardBuilder *) = {
            NULL, parse_hh, parse_pcr, parse_chat, parse_sharegpt, parse_pairs};
        cx.v.format = resolve_format(c, o);
        parse[cx.v.format](&cx, o, id, b);
    }
    cJSON_Delete(o);
    return cx.v;
}
