/* ingest_check.c - a corpus that is (almost) all rejects is an error, not an empty success: the usual
 * cause is a whole file in the wrong shape (UTF-16, CR-only line ends, another compressor), which every
 * record then fails the same way. The error names the top reasons and what the file looks like. */
#include "ingest_check.h"

#include "quorum/common.h"
#include "quorum/corpus.h"

#include <stdio.h>
#include <zlib.h>
#include <stdlib.h>
#include <string.h>

/* What the first bytes of the file (as stored, then decompressed) suggest, or "" when nothing stands out.
 * JSON arrays and gzip are read by content (reader.h), so they need no hint; the rest do. */
static const char *shape_hint(const char *path) {
    unsigned char raw[4096];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(raw, 1, sizeof raw, f) : 0;
    if (f) fclose(f);
    if (n >= 3 && !memcmp(raw, "BZh", 3)) return "; hint: the file looks like bzip2: decompress it (bunzip2)";
    if (n >= 6 && !memcmp(raw, "\xfd" "7zXZ", 5)) return "; hint: the file looks like xz: decompress it (unxz)";
    if (n >= 4 && !memcmp(raw, "\x28\xb5\x2f\xfd", 4)) return "; hint: the file looks like zstd: decompress it (unzstd)";
    gzFile g = gzopen(path, "rb"); /* the text itself: gzip is inflated, anything else read as is */
    int got = g ? gzread(g, raw, sizeof raw) : -1;
    if (g) gzclose(g);
    if (got <= 0) return "";
    n = (size_t)got;
    size_t nul = 0, cr = 0, lf = 0;
    for (size_t k = 0; k < n; k++) nul += raw[k] == 0, cr += raw[k] == '\r', lf += raw[k] == '\n';
    if ((n >= 2 && ((raw[0] == 0xff && raw[1] == 0xfe) || (raw[0] == 0xfe && raw[1] == 0xff))) || nul * 4 > n)
        return "; hint: the file looks like UTF-16: convert it to UTF-8 (iconv -f UTF-16 -t UTF-8)";
    if (cr > 0 && lf == 0) return "; hint: the file has CR-only line ends: convert them (tr '\\r' '\\n')";
    return "";
}

int ingest_check_rejects(const Job *job, const JobCorpus *c, const int64_t hist[256], int64_t n_lines) {
    int64_t rejected = 0;
    for (int k = 1; k < 256; k++) rejected += hist[k];
    if (n_lines <= 0 || (double)rejected < (double)job->reject_limit * (double)n_lines) return 0;
    char reasons[600] = "";
    int used[256] = {0};
    for (int top = 0; top < 3; top++) { /* the three most frequent reasons */
        int best = 0;
        for (int k = 1; k < 256; k++)
            if (!used[k] && hist[k] > 0 && (!best || hist[k] > hist[best])) best = k;
        if (!best) break;
        used[best] = 1;
        size_t at = strlen(reasons);
        snprintf(reasons + at, sizeof reasons - at, "%s%s x%lld", top ? ", " : "",
                 best < LINE_N_STATUS ? line_status_name((LineStatus)best) : "code", (long long)hist[best]);
    }
    return quorum_input_error(c->path, "corpus \"%s\": %lld of %lld lines rejected (reject_limit %.3g): %s%s; "
                              "see rejects.jsonl", c->name, (long long)rejected, (long long)n_lines,
                              (double)job->reject_limit, reasons, shape_hint(c->path));
}
