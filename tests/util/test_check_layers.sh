#!/usr/bin/env bash
# test_check_layers.sh CHECK - .ci/check_layers must pass a tree that follows the layers and fail, naming
# the file and line, on each kind of bad include: upward (a stage includes a higher stage's header),
# sideways (model includes tokenizer), another stage's private header, a header or folder with no layer.
set -u
CHECK="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

# a small tree that follows the layers
good() {
    rm -rf "$T/tree"
    mkdir -p "$T/tree/include/quorum" "$T/tree/src/util" "$T/tree/src/score" "$T/tree/src/vote" "$T/tree/src/model"
    printf '#include <stdio.h>\n' > "$T/tree/include/quorum/common.h"
    printf '#include "quorum/common.h"\n' > "$T/tree/include/quorum/score.h"
    printf '#include "quorum/score.h"\n' > "$T/tree/include/quorum/vote.h"
    printf '#include "quorum/common.h"\n' > "$T/tree/src/util/common.c"
    printf '#include "score_private.h"\n#include "quorum/score.h"\n' > "$T/tree/src/score/score.c"
    printf '/* private */\n' > "$T/tree/src/score/score_private.h"
    printf '#include "quorum/vote.h"\n#include "quorum/score.h"\n#include <mpi.h>\n' > "$T/tree/src/vote/vote.c"
    printf '#include "quorum/common.h"\n' > "$T/tree/src/model/model.c"
}

expect() { # expect RC GREP what
    local want="$1" pattern="$2" what="$3" out rc
    out=$("$CHECK" "$T/tree" 2>&1); rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qF -- "$pattern" <<<"$out"; then
        echo "FAIL: $what: rc $rc (want $want), output:"; echo "$out"; fails=$((fails + 1))
    else
        echo "ok: $what"
    fi
}

good
expect 0 "0 bad includes" "a tree that follows the layers passes"

good; printf '#include "quorum/common.h"\n#include "quorum/vote.h"\n' > "$T/tree/src/score/up.c"
expect 1 "src/score/up.c:2: score includes quorum/vote.h (vote)" "upward: score includes vote.h"

good; printf '#include "quorum/vote.h"\n' >> "$T/tree/include/quorum/common.h"
expect 1 "include/quorum/common.h:2: util includes quorum/vote.h (vote)" "upward from a public header: common.h includes vote.h"

good; printf '#include "quorum/tokenizer.h"\n' > "$T/tree/src/model/side.c"
expect 1 "src/model/side.c:1: model includes quorum/tokenizer.h (tokenizer)" "sideways: model includes tokenizer.h"

good; printf '#include "../score/score_private.h"\n' > "$T/tree/src/vote/reach.c"
expect 1 "src/vote/reach.c:1: vote includes \"../score/score_private.h\"" "another stage's private header"

good; printf '#include "score_private.h"\n' > "$T/tree/src/vote/reach2.c"
expect 1 "src/vote/reach2.c:1: vote includes \"score_private.h\"" "a private header that is not in the folder"

good; printf '#include "quorum/newthing.h"\n' > "$T/tree/src/vote/new.c"
expect 1 "includes quorum/newthing.h: a public header with no layer" "a public header with no layer"

good; mkdir -p "$T/tree/src/extra"; printf '\n' > "$T/tree/src/extra/x.c"
expect 1 "folder src/extra is not a known stage" "a folder with no layer"

[ "$fails" -eq 0 ] && echo "check_layers: all cases ok" || { echo "check_layers: $fails case(s) failed"; exit 1; }
