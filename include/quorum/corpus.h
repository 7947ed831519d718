/*
 * quorum/corpus.h - preference pairs, normalized, stored as sharded HDF5.
 *
 * A corpus folder <out_dir>/corpora/<name>/ holds:
 *   manifest.json         counts (lines, pairs, rejected), shard list with per-shard FNV-1a checksums,
 *                         source path + its checksum, format, split, shard_size. Written last, atomically:
 *                         a corpus without a manifest is incomplete.
 *   shard-00000.h5 ...    shard k holds the pairs that came from input lines [k*S+1, (k+1)*S] (S =
 *                         shard_size), so shard contents never depend on the number of MPI ranks.
 *   rejects.jsonl         one line per rejected input line: {"corpus","line","field","reason"}.
 *
 * Shard layout (no variable-length types anywhere: flat uint8 text + int64 offsets, so any rank can
 * write any slab with MPI-IO):
 *   attrs  corpus (string), split (string), shard (int64), first_line, last_line (int64), format (int)
 *   /pair_id      int64[n]        stable id = source line number (1-based); with the corpus name unique
 *   /prompt_off   int64[n+1]      \  raw prompt bytes exactly as in the input (HH: the transcript up to
 *   /prompt       uint8[...]      /  and including the last common "\n\nAssistant:")
 *   /chosen_off   int64[n+1]      \  raw chosen response bytes (HH: the rest of the chosen transcript)
 *   /chosen       uint8[...]      /
 *   /rejected_off int64[n+1]      \  raw rejected response bytes
 *   /rejected     uint8[...]      /
 *   /turn_off     int64[n+1]      pair i owns turns [turn_off[i], turn_off[i+1])
 *   /turn_role    uint8[T]        Role, below
 *   /text_off     int64[T+1]      \  normalized turn text (HH: "Human:"/"Assistant:" markers and the one
 *   /text         uint8[...]      /  following space removed), what chat templates render
 *   /extra_off    int64[n+1]     \  pass-through columns: per pair, one JSON object holding the input
 *   /extra        uint8[...]     /  record's members the layout did not consume, as raw bytes (empty when
 *                                 none). Optional on read; in the checksum only when non-empty.
 *   /pair_format  uint8[n]        CorpusFormat each pair was parsed as (hh/pcr/chat/...) in bits 0-5, and
 *                                 Pair.prompt_from in bits 6-7 (the cleaned output restores the prompt key); with format
 *                                 "auto" lines of one file may differ. Optional on read (a shard without
 *                                 it uses the format attribute for every pair); ingest never writes 0
 *                                 (auto), and export writes such pairs flat (prompt/chosen/rejected).
 * Offsets start at 0, never decrease, and end at the length of their text array; shard_read checks it.
 * "Raw" text means the JSON-decoded string's UTF-8 bytes (escapes resolved, nothing else changed).
 *
 * Chat sources: the prompt turns are the shared message prefix (authoritative); /prompt holds an
 * HH-style rendering of them ("\n\nHuman: ...\n\nAssistant:") for tools that want flat text, and the
 * responses are the final assistant messages' content, exactly.
 * Flat (pcr) sources: the prompt is parsed into turns when it is an HH transcript, else it is one user
 * turn; the raw prompt is kept as is.
 *
 * index.h5 (written collectively with MPI-IO, one slab per shard):
 *   /line_status  uint8[n_lines]  0 = ingested, else a LineStatus reject code (below)
 *   /line_shard   int32[n_lines]  shard holding the line's pair, -1 for a rejected line
 *
 * Export: prompt + chosen (resp. rejected) reproduces the input's HH transcript byte for byte; for flat
 * prompt/chosen/rejected input the three strings are reproduced as they were.
 */
#ifndef QUORUM_CORPUS_H
#define QUORUM_CORPUS_H

#include <stdint.h>

#include "quorum/common.h"
#include "quorum/job.h"

/* Observation (a tool's output) and function call (the assistant calling a tool) are ShareGPT's roles;
 * chat templates render them as user and assistant turns (chat_render_text). */
typedef enum { ROLE_SYSTEM = 0, ROLE_USER = 1, ROLE_ASSISTANT = 2, ROLE_OBSERVATION = 3, ROLE_FUNCTION_CALL = 4 } Role;
#define ROLE_COUNT 5

/* Why an input line was rejected: the code in index.h5 /line_status, the text in rejects.jsonl. */
typedef enum {
    LINE_OK = 0,
    LINE_BLANK,          /* "blank line" (only whitespace) */
    LINE_BAD_JSON,       /* "malformed JSON" */
    LINE_NOT_OBJECT,     /* "not a JSON object" */
    LINE_MISSING,        /* "missing field" */
    LINE_WRONG_TYPE,     /* "wrong type" (string expected, or a message list for chat) */
    LINE_BAD_UTF8,       /* "invalid UTF-8" */
    LINE_EMPTY,          /* "empty response" (nothing but whitespace) */
    LINE_IDENTICAL,      /* "identical responses" */
    LINE_NO_ASSISTANT,   /* "no common \"\n\nAssistant:\"" (HH transcripts) */
    LINE_BAD_ROLE,       /* "unknown role" (chat messages: system / user / assistant only) */
    LINE_BAD_CHAT,       /* "chat lists do not share a prefix ending in an assistant reply" */
    LINE_NUL,            /* "NUL character in a string" (\u0000 would silently cut C strings short) */
    LINE_TIE,            /* "tie" (labelled pairs: the label says neither answer wins) */
    LINE_BAD_LABEL,      /* "unknown label" (labelled pairs: a value not in the job's label_a/label_b/label_tie) */
    LINE_N_STATUS
} LineStatus;
const char *line_status_name(LineStatus s);

typedef struct {
    Role role;
    const char *text; /* not NUL-terminated */
    int64_t len;
} Turn;

/* One pair: views into a Shard's arrays (valid while the shard lives). */
typedef struct {
    int64_t id;                 /* source line number, 1-based */
    const char *prompt;   int64_t prompt_len;
    const char *chosen;   int64_t chosen_len;
    const char *rejected; int64_t rejected_len;
    Turn *turns;                /* the prompt dialogue: system/user/assistant turns before the responses */
    int n_turns;
    int format;                 /* CorpusFormat this pair was parsed as */
    const char *extra;    int64_t extra_len; /* pass-through columns: a JSON object's raw bytes, or empty */
    int prompt_from;            /* chat with reply-only lists: the prompt key gave the prompt turns, as a string
                                   (1) or a message list (2, TRL's explicit prompt); 0 otherwise */
} Pair;

typedef struct {
    char corpus[256], split[256];
    int64_t index;              /* shard number */
    int64_t first_line, last_line;
    int format;                 /* CorpusFormat of the source */
    int64_t n;                  /* pairs in this shard */
    int64_t *pair_id;           /* [n] */
    int64_t *prompt_off, *chosen_off, *rejected_off; /* [n+1] */
    char *prompt, *chosen, *rejected;
    int64_t *turn_off;          /* [n+1] */
    int64_t n_turns_total;
    uint8_t *turn_role;         /* [T] */
    int64_t *text_off;          /* [T+1] */
    char *text;
    Turn *turns;                /* [T], views built at read time (shard_index_turns) */
    uint8_t *pair_format;       /* [n] CorpusFormat per pair; NULL on write means `format` for all */
    int64_t *extra_off;         /* [n+1] pass-through columns per pair (NULL: none) */
    char *extra;
} Shard;

typedef struct {
    char name[256], split[256], source[1024];
    int format;
    int64_t shard_size;
    int64_t n_lines, n_pairs, n_rejected; /* n_lines == n_pairs + n_rejected, always */
    int64_t n_shards;
    uint64_t source_checksum;   /* FNV-1a of the decompressed input bytes */
    uint64_t *shard_checksum;   /* [n_shards], FNV-1a of the shard's pair content (see shard_checksum) */
    int64_t *shard_pairs;       /* [n_shards] */
    int64_t source_bytes;       /* decompressed input size (throughput reports); 0 when unknown */
} CorpusManifest;

/* The folder of corpus `name` under a job's output: <out_dir>/corpora/<name>. Caller frees. */
char *corpus_dir(const char *out_dir, const char *name);
/* Path of shard k inside a corpus folder. Caller frees. */
char *shard_path(const char *corpus_dir, int64_t k);

/* Ingests one corpus over all ranks of MPI_COMM_WORLD (collective). Returns 0, or -1 after a one-line
 * error (unreadable file; with strict, the first bad line). Rejected lines are counted and listed. */
int corpus_ingest(const Job *job, const JobCorpus *c, int strict);

/* Streams a corpus input exactly as ingest reads it (never whole in memory): *checksum = FNV-1a of the
 * decompressed bytes (the manifest's source_checksum), *records = its records (JSONL lines or JSON-array
 * elements; the manifest's n_lines), capped at max_pairs when > 0. 0, or -1 with *err set. */
int corpus_source_scan(const char *path, int64_t max_pairs, uint64_t *checksum, int64_t *records, const char **err);

int corpus_manifest_read(CorpusManifest *m, const char *corpus_dir);
void corpus_manifest_free(CorpusManifest *m);
/* Writes <corpus_dir>/manifest.json atomically. 0 or -1. */
int corpus_manifest_write(const CorpusManifest *m, const char *corpus_dir);

/* Reads a whole shard (any rank, any shard, independent I/O). 0 or -1 after a one-line error naming
 * the file and dataset. Validates offsets (monotone, in range) so a corrupt shard is never used. */
int shard_read(Shard *s, const char *path);
/* Only the /pair_id dataset of shard k of a corpus folder (what the vote joins score files on),
 * checked to hold n ids. 0, or -1 after one line naming the shard file. */
int shard_pair_ids(const char *corpus_dir, int64_t k, int64_t n, int64_t *ids);
void shard_free(Shard *s);
/* Pair i's views. Turns need s->turns (shard_read builds them; else call shard_index_turns). */
void shard_get_pair(const Shard *s, int64_t i, Pair *out);
void shard_index_turns(Shard *s);
/* The response as a chat template renders it: the raw chosen (rejected = 0) or rejected (1) bytes, minus
 * the single space that separates an HH-style prompt ("...\n\nAssistant:") from its response (the
 * templates put their own separator back). Views into the shard; *len set. */
const char *pair_response(const Pair *p, int rejected, int64_t *len);

/* FNV-1a, one running hash over the arrays' little-endian bytes in this order: pair_id, prompt_off,
 * prompt, chosen_off, chosen, rejected_off, rejected, turn_off, turn_role, text_off, text, then
 * extra_off, extra only when some pair has pass-through columns (not the attributes, not pair_format):
 * what the manifest records per shard. */
uint64_t shard_checksum(const Shard *s);

/* Appends s[0..n) (valid UTF-8) as a JSON string literal. */
void json_append_string(Buf *b, const char *s, int64_t n);
/* Appends pair p in its corpus's input layout (README "Corpora") as an OPEN JSON object: "{" + the
 * layout's members (hh transcripts, pcr strings, chat message lists, sharegpt conversations + reply
 * objects + system, pairs prompt/a/b) + the pass-through columns. The caller appends its own members
 * and the closing "}". `flipped`: cleaning swapped chosen and rejected (a labelled pair's label flips). */
void pair_layout_json(Buf *b, const Pair *p, const JobCorpus *c, int flipped);

/* Writes a shard from in-memory arrays (used by ingest and by clean for cleaned corpora): to a temp
 * name, then renamed. 0 or -1. */
int shard_write(const Shard *s, const char *path);

/* Builds a Shard pair by pair (ingest, and clean writing a filtered / flipped copy of a shard):
 *   ShardBuilder b; shard_builder_init(&b, "name", "split", k, first, last, FORMAT_HH);
 *   for (...) shard_builder_add(&b, &pair);   // copies the pair's bytes and turns
 *   Shard s; shard_builder_finish(&b, &s);    // moves the arrays into s; shard_free(&s) later */
typedef struct {
    Shard s;                    /* header fields; arrays are filled at finish */
    I64Vec ids, prompt_off, chosen_off, rejected_off, turn_off, text_off;
    Buf prompt, chosen, rejected, text, roles, formats;
    I64Vec extra_off;
    Buf extra;
} ShardBuilder;
void shard_builder_init(ShardBuilder *b, const char *corpus, const char *split, int64_t index,
                        int64_t first_line, int64_t last_line, int format);
void shard_builder_add(ShardBuilder *b, const Pair *p);
void shard_builder_finish(ShardBuilder *b, Shard *out);

/* The stage's subcommands (argv[0] = the subcommand name; returns the exit code: 0 ok, 1 failure, 2 usage;
 * quorum/cli.h has the conventions). */
int cmd_ingest(int argc, char **argv); /* corpora -> sharded HDF5 */
int cmd_export(int argc, char **argv); /* shards -> JSONL */

#endif /* QUORUM_CORPUS_H */
