/*
 * quorum/tokenizer.h - Hugging Face tokenizer.json (byte-level BPE and SentencePiece-style BPE with byte
 * fallback) and chat templates, in plain C with exact HF parity for the tokenizers quorum ships with.
 *
 * Supported, exactly (anything else is rejected at load time with one line naming the file and key):
 *   model          BPE; merges as "a b" strings or ["a","b"] pairs; ignore_merges; byte_fallback; unk_token
 *   normalizer     null | NFC | Sequence[Prepend("\u2581"), Replace(" " -> "\u2581")]
 *   pre_tokenizer  null | ByteLevel(use_regex=true, GPT-2 pattern) |
 *                  Sequence[Split(Llama-3 or Qwen2 pattern, Isolated), ByteLevel(use_regex=false)]
 *   decoder        ByteLevel | Sequence[Replace("\u2581" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0)]
 *   added tokens   lstrip = rstrip = single_word = false (matched leftmost-longest on the raw text)
 * The split patterns are hand-written scanners over Unicode classes generated from Python's
 * unicodedata (src/tokenizer/unicode_gen.py; the version is tokenizer_unicode_version()).
 *
 * Encoding is what HF's tokenizer(text, add_special_tokens=False) gives: added/special tokens written
 * in the text ARE matched; no BOS/EOS is added. Decoding is HF's decode(ids) with special tokens kept and
 * no clean_up_tokenization_spaces, so decode(encode(x)) == x for valid UTF-8 x.
 *
 * Thread safety: a loaded Tokenizer is read-only except for its pre-token cache, which has its own
 * lock; encode/decode may run concurrently on one Tokenizer.
 */
#ifndef QUORUM_TOKENIZER_H
#define QUORUM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "quorum/common.h"
#include "quorum/corpus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Growable int32 vector: token ids. */
typedef struct {
    int32_t *data;
    size_t len, cap;
} I32Vec;
void i32vec_push(I32Vec *v, int32_t x);
void i32vec_free(I32Vec *v);

typedef struct Tokenizer Tokenizer;

/* path: a tokenizer.json, or a folder holding one. bos/eos/pad come from tokenizer_config.json beside it
 * (absent file or null -> -1). NULL after a one-line error naming the file and the key. */
Tokenizer *tokenizer_load(const char *path);
void tokenizer_free(Tokenizer *t);

/* Appends the ids of UTF-8 text[0..len) to *ids. Returns 0, or -1 (after a one-line error) when the
 * text is not valid UTF-8 - *ids is then left as it was. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, I32Vec *ids);
/* Appends the text of ids to *out (not NUL-terminated; out->len grows). -1 on an id out of range. */
int tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, Buf *out);

int32_t tokenizer_token_id(const Tokenizer *t, const char *token); /* vocab or added token; -1 if absent */
int32_t tokenizer_bos(const Tokenizer *t);
int32_t tokenizer_eos(const Tokenizer *t);
int32_t tokenizer_pad(const Tokenizer *t);
int tokenizer_vocab_size(const Tokenizer *t);                      /* largest id + 1 (added tokens too) */
int tokenizer_add_bos(const Tokenizer *t);   /* tokenizer_config.json add_bos_token (0 when absent) */
const char *tokenizer_unicode_version(void); /* Unicode version of the generated class/NFC tables */

/*
 * Chat templates. The family is picked from the chat_template in tokenizer_config.json (dir holds it):
 *   CHAT_LLAMA3   <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n trim(text)<|eot_id|> ...
 *   CHAT_CHATML   Qwen3: <|im_start|>role\n text<|im_end|>\n ... ; the response follows an empty
 *                 <think>\n\n</think>\n\n block (Qwen3's enable_thinking=False generation prompt)
 *   CHAT_MISTRAL  <s>[INST] user [/INST]assistant</s> (Mistral-7B-Instruct v0.1/v0.2 template)
 *   CHAT_GEMMA    <bos><start_of_turn>user\n trim(text)<end_of_turn>\n<start_of_turn>model\n ... (Gemma and
 *                 Gemma-2 instruct: no system role, strict user/model alternation)
 *   CHAT_HH       no chat_template: the HH transcript "\n\nHuman: text\n\nAssistant: text", BOS first
 *                 only when tokenizer_config.json says add_bos_token
 * A template is recognised by its exact text (FNV-1a of chat_template): an unknown one is an error naming
 * the file, never a guess. Turn text and the response are as quorum/corpus.h stores turn text (HH:
 * without the "Human:"/"Assistant:" marker and the one space after it).
 */
typedef enum { CHAT_HH = 0, CHAT_LLAMA3, CHAT_CHATML, CHAT_MISTRAL, CHAT_GEMMA } ChatFamily;
typedef struct ChatTemplate ChatTemplate;

ChatTemplate *chat_template_load(const char *dir, const Tokenizer *t); /* NULL after a one-line error */
void chat_template_free(ChatTemplate *ct);
ChatFamily chat_template_family(const ChatTemplate *ct);
const char *chat_family_name(ChatFamily f);

/* The two strings a template renders (what HF's apply_chat_template gives, as text): *prompt = the
 * dialogue with the generation prompt, *response = the rest of the dialogue once the response is
 * appended as the last assistant turn (ends with the family's end-of-turn, e.g. <|eot_id|>; HH: none).
 * Both appended to the Bufs. -1 after a one-line error (e.g. roles a template refuses). */
int chat_render_text(const ChatTemplate *ct, const Turn *turns, int n_turns, const char *response,
                     size_t response_len, Buf *prompt, Buf *resp);

/* The turns a template can render, by quorum's documented rule (README "System turns and tool roles"),
 * applied by the committee before chat_render so a corpus role never kills a job:
 *   observation -> a user turn, function_call -> an assistant turn (every family);
 *   system, for the families without a system role (hh, mistral, gemma): folded into the next user turn as
 *   "<system text>\n\n<user text>" (several system turns in a row are joined the same way).
 * out: room for n turns; folded texts live in *scratch (free it after use). Returns the number of turns
 * written; *n_folded = system turns folded (0 when none). chat_render_text itself stays exactly the
 * model's own template (it refuses what that template refuses). */
int chat_fold_turns(const ChatTemplate *ct, const Turn *in, int n, Turn *out, Buf *scratch, int *n_folded);

/* Renders turns + one assistant response into ids: encode(prompt) ++ encode(response) (TRL's DPO
 * convention: the prompt ids are the same for the chosen and the rejected response). BOS exactly once
 * (the templates that use one write it as text; HH adds the id when add_bos_token). *prompt_len = the
 * number of ids before the response starts. -1 on error, *ids then left as it was. */
int chat_render(const ChatTemplate *ct, const Tokenizer *t, const Turn *turns, int n_turns,
                const char *response, size_t response_len, I32Vec *ids, int *prompt_len);
/* chat_fold_turns, then chat_render: what the committee and the trainers render (corpus turns of any
 * role). *n_folded as chat_fold_turns. */
int chat_render_folded(const ChatTemplate *ct, const Tokenizer *t, const Turn *turns, int n_turns,
                       const char *response, size_t response_len, I32Vec *ids, int *prompt_len, int *n_folded);

/* `quorum tokenize`: encode/decode text with a tokenizer.json (quorum/cli.h has the subcommand conventions). */
int cmd_tokenize(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* QUORUM_TOKENIZER_H */
