/* parse.h - one JSONL input line -> one normalized pair, or a reject reason (internal to src/corpus).
 *
 * Formats (quorum/job.h CorpusFormat), with the JSON keys taken from the corpus field mapping:
 *   hh    chosen / rejected are whole "\n\nHuman: ...\n\nAssistant: ..." transcripts. The prompt is
 *         their longest common prefix cut just after its last "\n\nAssistant:"; the responses are the
 *         two remainders, raw.
 *   pcr   flat prompt / chosen / rejected strings, kept as they are.
 *   chat  chosen / rejected are [{role, content}] lists; all but the last message must be equal in
 *         both (the prompt), the last message of each is the assistant response.
 *   sharegpt  LLaMA-Factory ranking: conversations = [{from, value}] (the prompt, ending in a human or
 *         observation turn), chosen / rejected = one {from, value} message each (gpt or function_call),
 *         optional system string column -> a leading system turn.
 *   pairs prompt string, answers a / b, a label whose value is in label_a (a wins), label_b (b wins) or
 *         label_tie (kept out: reject "tie"); anything else is rejected "unknown label".
 *   auto  per record: a conversations list -> sharegpt, a label key -> pairs, a chosen list -> chat,
 *         else a prompt key -> pcr, else hh.
 * Roles: the layout's names (chat: system/user/assistant; sharegpt: system/human/gpt/observation/
 * function_call) plus the job's role map; an unknown one is rejected naming the value and the accepted names.
 * Pass-through: every top-level member the layout does not consume is kept, raw, in the pair's extra
 * object (pairs keep their label there too, so the cleaned output can restore / flip it).
 * Checks run in a fixed order so a line's reject reason is predictable: blank line, malformed JSON,
 * not an object, a NUL character anywhere in the line (raw or \u0000: C strings would be cut), then per field in prompt/chosen/rejected order missing field, wrong type, invalid
 * UTF-8 (chat: per message, role before content, unknown role), then format rules (no common
 * assistant marker, chat prefix), then empty response (chosen first), then identical responses.
 */
#ifndef QUORUM_CORPUS_PARSE_H
#define QUORUM_CORPUS_PARSE_H

#include <stddef.h>

#include "quorum/corpus.h"

typedef struct {
    LineStatus status;
    char field[300];  /* the JSON key (path) at fault, e.g. "chosen" or "chosen[2].role"; "(line)" */
    char detail[300]; /* the bad value and what is accepted, when that helps ("" otherwise) */
    int format;       /* the layout the record was read as (auto resolved); -1 when it was not decided */
} LineVerdict;

/* Parses record `id` (1-based) and, when it is a good pair, appends it to `b`. */
LineVerdict parse_line(const char *line, size_t len, int64_t id, const JobCorpus *c, ShardBuilder *b);

/* Splits an HH-style transcript into turns: "\n\nHuman:" -> user, "\n\nAssistant:" -> assistant (the
 * marker and one following space removed), text before the first marker -> system when non-empty,
 * a trailing empty assistant turn (the prompt's final "\n\nAssistant:") dropped. Views into `s`.
 * Returns the number of turns written to `out` (a caller-sized array of at least
 * transcript_max_turns(s, n) entries). */
int transcript_max_turns(const char *s, size_t n);
int transcript_split(const char *s, size_t n, Turn *out);

/* The names a layout writes for each Role (the inverse of the role map, else the layout's own names),
 * e.g. sharegpt ROLE_USER -> "human". */
const char *layout_role_name(const JobCorpus *c, int format, Role r);
/* Appends to `out` the members of the JSON object text s[0..n) (already validated) whose key is not in
 * skip[], as one object "{...}" of their raw bytes minus the whitespace between tokens (one line, for
 * JSONL outputs); nothing when none is left. With bad_key: -1 (all still appended) when a kept member is
 * not valid UTF-8, its key in bad_key[cap]; else 0. */
int json_members_except(const char *s, size_t n, const char *const *skip, int n_skip, Buf *out, char *bad_key,
                        size_t cap);
/* Is the label value (a cJSON item) in the JSON list text `values` ("[...]" or one scalar)? */
int label_matches(const char *values, const void *item);

#endif
