/* cmd_tokenize.c - `quorum tokenize`: encode text to ids, or decode ids to text, with a tokenizer.json. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "quorum/common.h"
#include "quorum/tokenizer.h"

static int usage(int rc) {
    fprintf(rc ? stderr : stdout,
            "usage: quorum tokenize --tokenizer PATH [--decode | --jsonl] [--text S | FILE]\n"
            "  Encodes UTF-8 text (from --text, FILE, or stdin) and prints the ids on one line, separated by\n"
            "  spaces, as HF's tokenizer(text, add_special_tokens=False) gives them (special tokens written\n"
            "  in the text are matched). With --decode the input is ids (spaces, commas or newlines between)\n"
            "  and the decoded text is printed as is. With --jsonl every input line is one JSON string, encoded\n"
            "  on its own: one line of ids per input line, in order (many texts, one tokenizer load).\n"
            "  PATH: a tokenizer.json, or a folder holding one (and tokenizer_config.json).\n");
    return rc;
}

static char *read_stdin(size_t *len) {
    Buf b = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, stdin)) > 0) buf_append(&b, chunk, k);
    buf_append(&b, "", 1);
    *len = b.len - 1;
    return b.data;
}

static int parse_ids(const char *s, size_t n, I32Vec *ids) {
    for (size_t i = 0; i < n;) {
        if (strchr(" \t\r\n,[]", s[i])) { i++; continue; }
        char *end;
        long v = strtol(s + i, &end, 10);
        if (end == s + i || v < 0 || v > INT32_MAX)
            return quorum_input_error("tokenize:ids", "expected a token id at byte %zu", i);
        i32vec_push(ids, (int32_t)v);
        i = (size_t)(end - s);
    }
    return 0;
}

/* --jsonl: each line of data a JSON string, its ids printed on one line */
static int encode_jsonl(const Tokenizer *t, char *data, size_t len, const char *src) {
    I32Vec ids = {0};
    int rc = 0;
    size_t line = 0;
    for (char *p = data, *end = data + len; !rc && p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl) *nl = 0;
        cJSON *j = cJSON_Parse(p);
        if (!cJSON_IsString(j))
            rc = quorum_input_error(src, "line %zu: '%.40s' is not a JSON string (--jsonl: one \"text\" per line)",
                                    line + 1, p);
        ids.len = 0;
        if (!rc) rc = tokenizer_encode(t, j->valuestring, strlen(j->valuestring), &ids);
        for (size_t i = 0; !rc && i < ids.len; i++) printf(i ? " %d" : "%d", ids.data[i]);
        if (!rc) printf("\n");
        cJSON_Delete(j);
        p = nl ? nl + 1 : end;
    }
    i32vec_free(&ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) return usage(0);
    const char *tok_path = NULL, *text = NULL, *file = NULL;
    int decode = 0, jsonl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--jsonl")) jsonl = 1;
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else { fprintf(stderr, "quorum: error: tokenize: unknown or incomplete argument '%s'\n", argv[i]); return usage(2); }
    }
    if (!tok_path || (text && file) || (decode && jsonl)) return usage(2);
    Tokenizer *t = tokenizer_load(tok_path);
    if (!t) return 1;
    size_t len;
    char *data;
    if (text) { data = xstrdup(text); len = strlen(text); }
    else if (file) {
        const char *err;
        data = file_read_all(file, &len, &err);
        if (!data) { quorum_input_error(file, "%s", err); tokenizer_free(t); return 1; }
    } else data = read_stdin(&len);
    I32Vec ids = {0};
    Buf out = {0};
    int rc = 0;
    if (decode) {
        rc = parse_ids(data, len, &ids) || tokenizer_decode(t, ids.data, ids.len, &out);
        if (!rc) fwrite(out.data, 1, out.len, stdout);
    } else if (jsonl) {
        rc = encode_jsonl(t, data, len, file ? file : text ? "--text" : "stdin");
    } else {
        rc = tokenizer_encode(t, data, len, &ids);
        for (size_t i = 0; !rc && i < ids.len; i++) printf(i ? " %d" : "%d", ids.data[i]);
        if (!rc) printf("\n");
    }
    buf_free(&out);
    i32vec_free(&ids);
    free(data);
    tokenizer_free(t);
    return rc ? 1 : 0;
}
