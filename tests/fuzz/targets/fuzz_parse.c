/* fuzz_parse - the record parser (src/corpus/parse.c) in every layout (hh, pcr, chat, sharegpt, labelled
 * pairs, auto; with a role map): any bytes give a verdict, and a good pair's stored bytes are
 * self-consistent (offsets in range, turns inside the pair, pass-through columns one JSON object). */
#include "../../../src/corpus/parse.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    JobCorpus c;
    memset(&c, 0, sizeof c);
    c.format = (CorpusFormat)(data[0] % 6); /* first byte picks the layout */
    strcpy(c.name, "fuzz");
    strcpy(c.split, "fuzz");
    strcpy(c.field_prompt, "prompt");
    strcpy(c.field_chosen, "chosen");
    strcpy(c.field_rejected, "rejected");
    strcpy(c.field_role, "role");
    strcpy(c.field_content, "content");
    strcpy(c.field_conversations, "conversations");
    strcpy(c.field_system, "system");
    strcpy(c.field_a, "a");
    strcpy(c.field_b, "b");
    strcpy(c.field_label, "w");
    strcpy(c.label_a, "[1,\"a\"]");
    strcpy(c.label_b, "2");
    strcpy(c.label_tie, "[0]");
    strcpy(c.roles, "{\"bot\":\"assistant\",\"tool\":\"observation\"}");
    ShardBuilder b;
    shard_builder_init(&b, "fuzz", "fuzz", 0, 1, 1, c.format);
    LineVerdict v = parse_line((const char *)data + 1, size - 1, 1, &c, &b);
    Shard s;
    shard_builder_finish(&b, &s);
    if ((v.status == LINE_OK) != (s.n == 1)) abort(); /* a verdict and the builder agree */
    if (v.status >= LINE_N_STATUS) abort();
    if (s.n == 1) {
        shard_index_turns(&s);
        Pair p;
        shard_get_pair(&s, 0, &p);
        if (p.chosen_len < 0 || p.rejected_len < 0 || p.prompt_len < 0) abort();
        if (p.chosen_len == p.rejected_len && !memcmp(p.chosen, p.rejected, (size_t)p.chosen_len)) abort();
        for (int t = 0; t < p.n_turns; t++)
            if (p.turns[t].len < 0 || (int)p.turns[t].role >= ROLE_COUNT) abort();
        if (p.extra_len > 0) { /* pass-through columns: one JSON object */
            cJSON *x = cJSON_ParseWithLength(p.extra, (size_t)p.extra_len);
            if (!cJSON_IsObject(x)) abort();
            cJSON_Delete(x);
        }
        size_t bad = 0;
        if (!utf8_valid(p.chosen, (size_t)p.chosen_len, &bad) || !utf8_valid(p.rejected, (size_t)p.rejected_len, &bad)) abort();
    }
    shard_free(&s);
    return 0;
}
