"""real_run.py - small real runs of the CLI under mpirun (2 ranks): on a planted-noise corpus like
`quorum gen`'s (300 HH-format pairs, polite vs rude answers, 10% of labels flipped) a tiny random GPT-2 trained with `dpo` must show the
DPO loss falling and rewards/accuracies rising; a tiny GPT-2 reward model trained with `rm-train --slice
0/2` must show the Bradley-Terry loss falling and accuracy rising, and export a
GPT2ForSequenceClassification folder. Prints the figures.
usage: real_run.py QUORUM TRAIN_TOOL SHARED_DIR WORKDIR MPIEXEC NPFLAG"""
import json, os, random, shutil, subprocess, sys

QUORUM, TOOL, SHARED, WORK, MPIEXEC, NP = sys.argv[1:7]
TOK = os.path.join(SHARED, "tokenizers", "gpt2")
if not os.path.exists(os.path.join(TOK, "tokenizer.json")):
    print(f"skipping: no gpt2 tokenizer under {SHARED}")
    sys.exit(77)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support import check, finish, verbose, sh as run_or_exit  # noqa: E402
verbose()

def sh(*cmd, ranks=0):
    return run_or_exit(*(([MPIEXEC, NP, str(ranks), "--oversubscribe"] if ranks else []) + list(cmd)))

def mean(xs):
    return sum(xs) / len(xs)

shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
def write_corpus(path, n=300, flip=0.1, seed=3):
    """HH transcripts: a polite, on-topic answer vs a rude one, with a fraction `flip` of labels swapped
    (what `quorum gen` plants; written here so the test does not depend on gen's options)"""
    rng = random.Random(seed)
    topics = ["coffee", "rain", "boats", "music", "gardens", "bread", "trains", "stars", "rivers", "chess"]
    good = ["Of course! {t} have a long history.", "Great question! {t} are studied by many people.",
            "Happy to help. {t} change with the seasons.", "Sure. Many people enjoy learning about {t}."]
    bad = ["What a stupid thing to ask.", "Shut up, that is a dumb question.", "I will not waste time on {t}.",
           "Nobody cares about {t}, go away."]
    with open(path, "w") as f:
        for i in range(n):
            t = rng.choice(topics)
            prompt = f"\n\nHuman: Tell me about {t}.\n\nAssistant:"
            c, r = " " + rng.choice(good).format(t=t.capitalize()), " " + rng.choice(bad).format(t=t)
            if rng.random() < flip:
                c, r = r, c
            f.write(json.dumps({"chosen": prompt + c, "rejected": prompt + r}) + "\n")

write_corpus(os.path.join(WORK, "harmless.jsonl"))
sh(QUORUM, "ingest", "--out", WORK, "--name", "harmless", "--format", "hh", os.path.join(WORK, "harmless.jsonl"))
corpus = os.path.join(WORK, "corpora", "harmless")
common = ["--layers", "2", "--dim", "32", "--heads", "2", "--max-pos", "128", "--tokenizer", TOK, "--seed", "7"]
sh(TOOL, "init-model", "--arch", "gpt2", "--head", "lm", "--out", os.path.join(WORK, "policy"), *common)
sh(TOOL, "init-model", "--arch", "gpt2", "--head", "score", "--out", os.path.join(WORK, "rm0"), *common)

def metrics(out):
    return [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]

# DPO: 30 steps x 8 pairs (0.8 epoch), 2 ranks
out = os.path.join(WORK, "dpo")
sh(TOOL, "dpo", "--policy", os.path.join(WORK, "policy"), "--corpus-dir", corpus, "--out", out, "--steps", "30",
   "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "3", "--max-length", "64", "--max-prompt-length", "48",
   "--beta", "0.1", "--checkpoint-every", "10", "--quiet", ranks=2)
m = metrics(out)
first, last = m[1:6], m[-5:]  # step 1 has all rewards 0 (policy == reference): left out
lf, ll = mean([x["loss"] for x in first]), mean([x["loss"] for x in last])
af, al = mean([x["rewards/accuracies"] for x in first]), mean([x["rewards/accuracies"] for x in last])
print(f"dpo: loss {lf:.4f} (steps 2-6) -> {ll:.4f} (steps 26-30); accuracy {af:.3f} -> {al:.3f}; "
      f"margin {m[-1]['rewards/margins']:.3f}; {mean([x['tokens_per_s'] for x in m]):.0f} tokens/s")
check(len(m) == 30 and abs(m[0]["loss"] - 0.6931471805599453) < 1e-6, "dpo: 30 metrics lines, step 1 loss = ln 2")
check(ll < lf - 0.05, "dpo: loss falls")
check(al > af + 0.02 and al >= 0.6, "dpo: rewards/accuracies rise")
check(os.path.exists(os.path.join(out, "final", "model.safetensors")), "dpo: final/ exported")

# reward model: Bradley-Terry on half the corpus
out = os.path.join(WORK, "rm")
sh(TOOL, "rm-train", "--model", os.path.join(WORK, "rm0"), "--corpus-dir", corpus, "--out", out, "--slice", "0/2",
   "--steps", "20", "--batch-size", "8", "--lr", "3e-3", "--max-length", "64", "--checkpoint-every", "0",
   "--quiet", ranks=2)
m = metrics(out)
lf, ll = mean([x["loss"] for x in m[:5]]), mean([x["loss"] for x in m[-5:]])
af, al = mean([x["rewards/accuracies"] for x in m[:5]]), mean([x["rewards/accuracies"] for x in m[-5:]])
print(f"rm-train: loss {lf:.4f} (steps 1-5) -> {ll:.4f} (steps 16-20); accuracy {af:.3f} -> {al:.3f}")
check(ll < lf - 0.05, "rm-train: Bradley-Terry loss falls")
check(al > af + 0.02, "rm-train: accuracy rises")
cfg = json.load(open(os.path.join(out, "final", "config.json")))
check(cfg["architectures"] == ["GPT2ForSequenceClassification"], "rm-train: exports a *ForSequenceClassification model")
check(os.path.exists(os.path.join(out, "final", "tokenizer.json")), "rm-train: final/ has the tokenizer")
# the job-file form: dpo section, trained on <out_dir>/cleaned/<corpus>
job_out = os.path.join(WORK, "job")
shutil.copytree(corpus, os.path.join(job_out, "cleaned", "harmless"))
job = {"name": "t", "out_dir": job_out, "seed": 4,
       "corpora": [{"name": "harmless", "path": os.path.join(WORK, "harmless.jsonl"), "format": "hh"}],
       "dpo": {"policy": os.path.join(WORK, "policy"), "loss": "ipo", "beta": 0.5, "lr": 1e-3, "steps": 3,
               "batch_size": 4, "grad_accum": 2, "max_length": 48, "max_prompt_length": 32, "zero1": True}}
json.dump(job, open(os.path.join(WORK, "job.json"), "w"))
sh(TOOL, "dpo", "--job", os.path.join(WORK, "job.json"), ranks=2)
m = metrics(os.path.join(job_out, "dpo"))
check(len(m) == 3 and os.path.exists(os.path.join(job_out, "dpo", "final", "config.json")),
      "dpo --job: 3 steps (ipo, ZeRO-1, 2 ranks) into <out_dir>/dpo/final")

# bad input: one line naming the problem, a non-zero exit, never a crash
def fails_with(code, needle, *cmd):
    p = subprocess.run([TOOL, *cmd], capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if l.startswith("quorum: error")]
    ok = p.returncode == code and len(lines) >= 1 and needle in lines[0]
    check(ok, f"bad input {cmd[0]} {needle!r}: exit {p.returncode}, {lines[:2]}")

fails_with(1, "not a causal LM", "dpo", "--policy", os.path.join(WORK, "rm0"), "--corpus-dir", corpus, "--out",
           os.path.join(WORK, "bad1"), "--steps", "1")
fails_with(1, "manifest", "dpo", "--policy", os.path.join(WORK, "policy"), "--corpus-dir", os.path.join(WORK, "nope"),
           "--out", os.path.join(WORK, "bad2"), "--steps", "1")
fails_with(2, "--slice", "rm-train", "--model", os.path.join(WORK, "rm0"), "--corpus-dir", corpus, "--out",
           os.path.join(WORK, "bad3"), "--slice", "3/2")
fails_with(2, "--loss", "dpo", "--policy", "x", "--corpus-dir", "y", "--out", "z", "--loss", "kto")
with open(os.path.join(WORK, "dpo", "checkpoint", "adam_m.bin"), "r+b") as f:
    f.truncate(1000)
fails_with(1, "adam_m.bin", "dpo", "--policy", os.path.join(WORK, "policy"), "--corpus-dir", corpus, "--out",
           os.path.join(WORK, "dpo"), "--steps", "31", "--batch-size", "8", "--max-length", "64", "--max-prompt-length", "48")
finish()
