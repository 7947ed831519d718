# tests/run/lib.sh - helpers shared by the run.* and slurm.* tests (source it; bash).

fail() { echo "FAIL: $*" >&2; exit 1; }

# require_pipeline: what a test that runs the small HH pipeline across processes needs: ../shared's HH
# data and h5diff (skip, 77, without them), and mpirun allowed as root.
require_pipeline() {
  [ -f "$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz" ] || { echo "SKIP: no HH data under $SHARED"; exit 77; }
  command -v h5diff >/dev/null || { echo "SKIP: h5diff (hdf5-tools) is not installed"; exit 77; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
}
pass() { echo "ok: $*"; PASSED=$((${PASSED:-0} + 1)); }

# write_job FILE OUT_DIR CORPUS=SPLITFILE:MAX_PAIRS ...: a small job over HH splits with the three builtin
# members (length, an uncorrelated hash, the keyword "sorry"), shard_size 100, SAC cleaning.
write_job() {
  local file=$1 out=$2; shift 2
  python3 - "$file" "$out" "$SHARED" "$@" <<'PY'
import json, sys
file, out, shared, specs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
corpora = []
for spec in specs:
    name, rest = spec.split("=", 1)
    split, max_pairs = rest.split(":")
    corpora.append({"name": name, "path": "%s/data/hh-rlhf/%s-test.jsonl.gz" % (shared, split),
                    "format": "hh", "split": name, "max_pairs": int(max_pairs)})
job = {"name": "small", "out_dir": out, "shard_size": 100, "seed": 7, "corpora": corpora,
       "committee": [{"name": "len", "path": "builtin:len"}, {"name": "hash", "path": "builtin:hash:1"},
                     {"name": "sorry", "path": "builtin:kw:sorry"}],
       "vote": {"margin": 0.0, "high_frac": 0.5},
       "clean": {"method": "sac", "splits": ["harmless"], "bad_threshold": 0.0}}
json.dump(job, open(file, "w"), indent=1)
PY
}

# same_outputs A B CORPUS...: votes, cleaned corpora and report of two output folders hold the same
# content: HDF5 by h5diff (files carry object times, so not byte for byte), JSON/JSONL byte for byte once
# each folder's own path is replaced by "OUT" (and without ledger.json's votes_checksum: a checksum of the
# votes file's bytes, which carry HDF5 object times).
same_outputs() {
  local a b c f
  a=$(cd "$1" && pwd) b=$(cd "$2" && pwd); shift 2
  norm() { sed -e "s#$2#OUT#g" -e '/"votes_checksum"/d' "$1"; }
  for c in "$@"; do
    h5diff "$a/votes/$c.h5" "$b/votes/$c.h5" || { echo "votes/$c.h5 differ"; return 1; }
    for f in cleaned.jsonl actions.jsonl ledger.json manifest.json; do
      cmp -s <(norm "$a/cleaned/$c/$f" "$a") <(norm "$b/cleaned/$c/$f" "$b") || { echo "cleaned/$c/$f differ"; return 1; }
    done
    for f in "$a"/cleaned/"$c"/shard-*.h5; do
      h5diff "$f" "$b/cleaned/$c/$(basename "$f")" || { echo "cleaned/$c/$(basename "$f") differ"; return 1; }
    done
  done
  cmp -s <(norm "$a/report/report.json" "$a") <(norm "$b/report/report.json" "$b") || { echo "report.json differ"; return 1; }
}

# Modification times of every file under a folder (to prove a rerun wrote nothing).
tree_times() { find "$1" -type f ! -name '.quorum.lock*' -printf '%P %T@\n' | sort; }  # lock files are not outputs
