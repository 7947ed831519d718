"""ref_overlap.py - the gradient allreduce overlapped with the backward (each bucket posted by the model's
grad-ready hook as soon as its last layer is done, on the last micro-batch of a step) changes nothing: a tiny
GPT-2 DPO run at 2 ranks with small buckets (4096 floats, so layers fill many) and grad_accum 2 gives the final
weights and per-step metrics of the same run with --no-overlap bit for bit, plain and with ZeRO-1; the log
shows that every bucket was posted from the hook (the embeddings' last, when the backward ends) and none
with --no-overlap. Also: --grad-reduce bf16 reaches the trainer (logged, changes the run, tracks fp32).
usage: ref_overlap.py QUORUM TRAIN_TOOL SHARED_DIR WORKDIR MPIEXEC NPFLAG"""
import json, os, re, sys
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
sys.path.insert(0, os.path.join(HERE, ".."))
import ref_model  # noqa: E402
from support import check, finish, mpi_env, sh, tiny_gpt2_dpo_setup, verbose  # noqa: E402

verbose()
QUORUM, TOOL, SHARED, WORK, MPIEXEC, NP = sys.argv[1:7]
corpus, pol, _ = tiny_gpt2_dpo_setup(QUORUM, TOOL, SHARED, WORK)


def dpo(name, *extra):
    out = os.path.join(WORK, name)
    p = sh(MPIEXEC, NP, "2", "--oversubscribe", TOOL, "dpo", "--policy", pol, "--corpus-dir", corpus, "--out", out,
           "--steps", "4", "--batch-size", "4", "--grad-accum", "2", "--lr", "2e-3", "--max-length", "40",
           "--max-prompt-length", "24", "--checkpoint-every", "0", "--quiet", "--bucket-floats", "4096", *extra,
           env=mpi_env())
    met = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    return p.stdout + p.stderr, met, ref_model.load_dir(os.path.join(out, "final"))[1]


fp32_wire = {}
for tag, extra in (("plain", ()), ("zero1", ("--zero1",))):
    log, met, w = dpo("overlap_" + tag, *extra)
    m = re.search(r"(\d+) of (\d+) buckets posted during the backward", log)
    check(m and int(m.group(1)) == int(m.group(2)) > 100, f"{tag}: every bucket left from the backward's hook: "
          f"{m.group(0) if m else 'no log line'}")
    log0, met0, w0 = dpo("no_overlap_" + tag, "--no-overlap", *extra)
    fp32_wire[tag] = met0, w0
    m = re.search(r"(\d+) of (\d+) buckets posted during the backward", log0)
    check(m and int(m.group(1)) == 0, f"{tag} --no-overlap: no bucket leaves during the backward")
    same = all(np.array_equal(w[k], w0[k]) for k in w0)
    keys = ("loss", "grad_norm", "rewards/margins")
    check(same and [[x[k] for k in keys] for x in met] == [[x[k] for k in keys] for x in met0],
          f"{tag}: 2 ranks with overlap == without, bit for bit (final weights, per-step loss / grad norm / margins)")
# --grad-reduce bf16 reaches the trainer: logged, applied (the run differs from the fp32 one) and within bf16
# tolerance of it (each reduced gradient element is within 2^-7 of the fp32 sum's scale: losses 1e-3 relative)
log, met, w = dpo("grad_bf16", "--grad-reduce", "bf16")
met0, w0 = fp32_wire["plain"]
a, b = [x["loss"] for x in met], [x["loss"] for x in met0]
check("gradient reduction: bf16 on the wire" in log and not all(np.array_equal(w[k], w0[k]) for k in w0)
      and np.allclose(a, b, rtol=1e-3, atol=1e-5), f"--grad-reduce bf16 at 2 ranks: logged, applied, losses {a} "
      f"track the fp32 wire's {b}")
finish()
