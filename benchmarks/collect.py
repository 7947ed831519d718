#!/usr/bin/env python3
"""Turns benchmarks/run's raw logs (OUT/raw) into OUT/results.json and PNG plots (gnuplot, pngcairo).

Called by benchmarks/run; can be re-run on its own to redo the JSON and plots from the same raw logs:
  benchmarks/collect.py [--out benchmarks/out] [--shared ../shared] [--quick 0] [--rm-max-len 256]
  benchmarks/collect.py --markdown [--out benchmarks/out]   (prints RESULTS.md tables from results.json)

Definitions (also in benchmarks/RESULTS.md):
  stage seconds   the slowest rank's elapsed time of that subcommand (/usr/bin/time around each rank:
                  includes process start, model load and file I/O, not mpirun's own start-up)
  pairs/s         pairs / score seconds (committee "model": 1 member, so pair-scores = pairs)
  tokens/s        approximate: GPT-2 BPE tokens of the chosen + rejected transcripts, each capped at the
                  member's max_length, / score seconds (quorum's own rendering adds a few template tokens)
  strong eff.     (t_1 / t_R) / R       weak eff.  t_1 / t_R  (work per rank fixed)
  dpo tokens/s    median of metrics.jsonl tokens_per_s over the steps after the first (steady state)
  dpo steps/s     steps / slowest rank's elapsed time (includes load and the reference log-prob pass)
"""
import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def read_or(path, default):
    return open(path).read().strip() if os.path.exists(path) else default


def log_text(out, rec):
    with open(os.path.join(out, rec["log"])) as f:
        return f.read()


def token_counts(shared, n, max_len):
    """Per HH harmless line: GPT-2 tokens of chosen + rejected, each capped at max_len (model_score_cpu's BPE)."""
    sys.path.insert(0, HERE)
    from model_score_cpu import Bpe  # noqa: E402  (reuses the benchmark's pure-python GPT-2 BPE)
    bpe = Bpe(os.path.join(shared, "tokenizers", "gpt2", "tokenizer.json"))
    counts = []
    with gzip.open(os.path.join(shared, "data", "hh-rlhf", "harmless-base-test.jsonl.gz"), "rt") as f:
        for i, line in enumerate(f):
            if i == n:
                break
            rec = json.loads(line)
            counts.append(sum(min(max_len, len(bpe.encode(rec[k]))) for k in ("chosen", "rejected")))
    return counts


def score_rows(out, runs, tokens):
    groups = {}
    for r in runs:
        if r.get("bench") == "score":
            groups.setdefault((r["mode"], r["committee"], r["ranks"]), {})[r["stage"]] = r
    rows = []
    for (mode, committee, ranks), st in sorted(groups.items()):
        m = re.search(r"ingest \S+: (\d+) lines, (\d+) pairs", log_text(out, st["ingest"]))
        lines, pairs = int(m.group(1)), int(m.group(2))
        rates = re.findall(r"pair-scores \([\d.]+%\), (\d+)/s", log_text(out, st["score"]))
        members = 1 if committee == "model" else 4
        row = dict(mode=mode, committee=committee, members=members, ranks=ranks, pairs=pairs,
                   stage_s={k: max(v["rank_elapsed_s"]) for k, v in st.items()},
                   mpirun_wall_s={k: round(v["mpirun_wall_s"], 3) for k, v in st.items()},
                   peak_rss_mb_per_rank=[round(max(v["rank_maxrss_kb"][i] for v in st.values()) / 1024, 1)
                                         for i in range(ranks)],
                   quorum_reported_pair_scores_per_s=int(rates[-1]) if rates else None)
        t = row["stage_s"]["score"]
        row["pairs_per_s"] = round(pairs / t, 2)
        row["pair_scores_per_s"] = round(pairs * members / t, 2)
        if committee == "model" and tokens:
            row["tokens_approx"] = sum(tokens[:lines])
            row["tokens_per_s"] = round(row["tokens_approx"] / t, 1)
        rows.append(row)
    for row in rows:  # efficiency against the 1-rank run of the same series
        base = next((b for b in rows if b["mode"] == row["mode"] and b["committee"] == row["committee"]
                     and b["ranks"] == 1), None)
        if base:
            t1, tr = base["stage_s"]["score"], row["stage_s"]["score"]
            row["speedup"] = round(t1 / tr, 3) if row["mode"] == "strong" else None
            row["efficiency"] = round(t1 / tr / row["ranks"], 3) if row["mode"] == "strong" else round(t1 / tr, 3)
            tp1 = sum(base["stage_s"].values())
            tpr = sum(row["stage_s"].values())
            row["pipeline_efficiency"] = round(tp1 / tpr / (row["ranks"] if row["mode"] == "strong" else 1), 3)
    return rows


def dpo_rows(out, runs):
    rows = []
    for r in sorted((r for r in runs if r.get("bench") == "dpo"), key=lambda r: r["ranks"]):
        steps = read_jsonl(os.path.join(out, r["metrics"]))
        tps = [s["tokens_per_s"] for s in steps]
        steady = tps[1:] if len(tps) > 1 else tps
        t = max(r["rank_elapsed_s"])
        rows.append(dict(ranks=r["ranks"], steps=r["steps"], global_batch=r["batch_size"], max_length=r["max_length"],
                         corpus_pairs=r["pairs"], elapsed_s=t, mpirun_wall_s=round(r["mpirun_wall_s"], 3),
                         steps_per_s=round(r["steps"] / t, 4), tokens_per_s=round(statistics.median(steady), 1),
                         tokens_per_s_by_step=tps, final_loss=steps[-1]["loss"],
                         peak_rss_mb_per_rank=[round(k / 1024, 1) for k in r["rank_maxrss_kb"]]))
    base = next((b for b in rows if b["ranks"] == 1), None)
    for row in rows:
        if base:
            row["efficiency_tokens"] = round(row["tokens_per_s"] / base["tokens_per_s"] / row["ranks"], 3)
            row["efficiency_steps"] = round(row["steps_per_s"] / base["steps_per_s"] / row["ranks"], 3)
    return rows


def allreduce_rows(raw):
    rows = []
    for name in sorted(os.listdir(raw)):
        if name.startswith("allreduce.r"):
            rows += read_jsonl(os.path.join(raw, name))
    return rows


def model_score_cpu(raw):
    text = open(os.path.join(raw, "model_score_cpu.log")).read()
    res = {"log": "raw/model_score_cpu.log"}
    # rows "<threads> <engine> pairs/s tokens/s seconds tok/cpu-s GEMM sgemm run shared <x>x diff": the first
    # thread count's torch row and its fastest quorum variant (packed+shared) are reported
    eng = {}
    for m in re.finditer(r"^\s*(\d+) (torch reference \(fp32\)|quorum packed\+shared|quorum packed|quorum padded)\s+(.*)$",
                         text, re.M):
        v = m.group(3).split()
        eng.setdefault((int(m.group(1)), m.group(2)), dict(pairs_per_s=float(v[0]), tokens_per_s=float(v[1]),
                                                           seconds=float(v[2]), tokens_per_cpu_s=float(v[3]),
                                                           cpu_s=float(v[2]), max_rel_reward_diff=float(v[9])))
    th = min((k[0] for k in eng), default=None)
    if (th, "quorum packed+shared") in eng and (th, "torch reference (fp32)") in eng:
        res["quorum_c"], res["torch"] = eng[(th, "quorum packed+shared")], eng[(th, "torch reference (fp32)")]
        res["speedup_c_over_torch"] = res["quorum_c"]["pairs_per_s"] / res["torch"]["pairs_per_s"]
        res["max_rel_reward_diff"] = res["quorum_c"]["max_rel_reward_diff"]
    m = re.search(r"setup [\d.]+s: (\d+) layers, (\d+) sequences, (\d+) tokens", text)
    if m:
        res["layers"], res["sequences"], res["tokens"] = (int(g) for g in m.groups())
    if "quorum_c" not in res:
        res["note"] = text.strip().splitlines()[-1] if text.strip() else "no output"
    return res


def plot(out, script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True, cwd=out)


def write_dat(path, header, rows):
    with open(path, "w") as f:
        f.write("# " + " ".join(header) + "\n")
        for r in rows:
            f.write(" ".join(str(x) for x in r) + "\n")


def make_plots(out, score, dpo, allreduce):
    term = "set terminal pngcairo size 900,560 font 'Sans,11'\nset grid\nset key top left\n"
    series = [("strong", "model", "score strong, 1 tiny RM"), ("weak", "model", "score weak, 1 tiny RM"),
              ("strong", "builtin", "score strong, 4 builtin members")]
    cmds_t, cmds_e = [], []
    for i, (mode, com, title) in enumerate(series):
        rows = sorted((r for r in score if r["mode"] == mode and r["committee"] == com), key=lambda r: r["ranks"])
        if not rows:
            continue
        f = f"score_{mode}_{com}.dat"
        write_dat(os.path.join(out, f), ["ranks", "pairs_per_s", "efficiency"],
                  [(r["ranks"], r["pairs_per_s"], r.get("efficiency", 1)) for r in rows])
        cmds_t.append(f"'{f}' using 1:2 with linespoints lw 2 pt 7 title '{title}'")
        cmds_e.append(f"'{f}' using 1:3 with linespoints lw 2 pt 7 title '{title}'")
    write_dat(os.path.join(out, "dpo.dat"), ["ranks", "tokens_per_s", "steps_per_s", "eff_tokens", "eff_steps"],
              [(r["ranks"], r["tokens_per_s"], r["steps_per_s"], r.get("efficiency_tokens", 1),
                r.get("efficiency_steps", 1)) for r in dpo])
    xr = "set xrange [0.8:4.4]\nset xtics (1,2,4)\nset xlabel 'MPI ranks (2 physical cores: 4 ranks oversubscribed)'\n"
    plot(out, term + xr + "set output 'score_throughput.png'\nset title 'quorum score: throughput vs ranks (dev2c)'\n"
         "set logscale y\nset ylabel 'pairs scored per second (log scale)'\nplot " + ", ".join(cmds_t) + "\n")
    plot(out, term + xr + "set output 'score_efficiency.png'\nset title 'quorum score: parallel efficiency vs ranks'\n"
         "set yrange [0:1.3]\nset ylabel 'efficiency (strong: t1/(R tR); weak: t1/tR)'\nset key top right\n"
         "plot " + ", ".join(cmds_e) + ", 1 with lines dt 2 lc 'black' title 'ideal'\n")
    plot(out, term + xr + "set output 'dpo_throughput.png'\nset title 'quorum dpo: throughput vs ranks (global batch fixed)'\n"
         "set ylabel 'tokens per second (median step)'\nset y2label 'optimizer steps per second (end to end)'\n"
         "set ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\n"
         "plot 'dpo.dat' using 1:2 axes x1y1 with linespoints lw 2 pt 7 title 'tokens/s', "
         "'dpo.dat' using 1:3 axes x1y2 with linespoints lw 2 pt 5 title 'steps/s (right axis)'\n")
    plot(out, term + xr + "set output 'dpo_efficiency.png'\nset title 'quorum dpo: parallel efficiency vs ranks (strong scaling)'\n"
         "set yrange [0:1.3]\nset ylabel 'efficiency = speedup / ranks'\nset key top right\n"
         "plot 'dpo.dat' using 1:4 with linespoints lw 2 pt 7 title 'tokens/s', "
         "'dpo.dat' using 1:5 with linespoints lw 2 pt 5 title 'steps/s (end to end)', "
         "1 with lines dt 2 lc 'black' title 'ideal'\n")
    cmds = []
    for r in sorted({a["ranks"] for a in allreduce}):
        f = f"allreduce_r{r}.dat"
        write_dat(os.path.join(out, f), ["bytes", "median_us", "busbw_GBps"],
                  [(a["bytes"], a["median_us"], a["busbw_GBps"]) for a in allreduce if a["ranks"] == r])
        cmds.append(f"'{f}' using 1:2 with linespoints lw 2 pt 7 title '{r} rank{'s' if r > 1 else ''}'")
    plot(out, term + "set output 'allreduce.png'\nset title 'MPI\\_Allreduce (f32 sum) time vs message size (dev2c)'\n"
         "set logscale xy\nset format x '%.0s%cB'\nset xlabel 'bytes per rank'\nset ylabel 'median time, worst rank (us)'\n"
         "plot " + ", ".join(cmds) + "\n")


def markdown(res):
    """The RESULTS.md tables of one results.json."""
    p = print
    p("| series | ranks | pairs | ingest s | score s | vote s | pairs/s | tokens/s (approx) | efficiency | "
      "score loop pair-scores/s (quorum) | peak RSS MB per rank |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in sorted(res["score"], key=lambda r: (r["committee"] != "model", r["mode"], r["ranks"])):
        s = r["stage_s"]
        p(f"| {r['mode']}, {'1 tiny RM' if r['committee'] == 'model' else '4 builtin'} | {r['ranks']} | {r['pairs']} | "
          f"{s['ingest']:.2f} | {s['score']:.2f} | {s['vote']:.2f} | {r['pairs_per_s']:.1f} | "
          f"{r.get('tokens_per_s') or '-'} | {r.get('efficiency', '-')} | {r['quorum_reported_pair_scores_per_s']} | "
          f"{', '.join(str(x) for x in r['peak_rss_mb_per_rank'])} |")
    p()
    p("| ranks | steps | global batch | elapsed s | steps/s (end to end) | tokens/s (median step) | eff. (tokens/s) | "
      "eff. (steps/s) | peak RSS MB per rank |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in res["dpo"]:
        p(f"| {r['ranks']} | {r['steps']} | {r['global_batch']} | {r['elapsed_s']:.2f} | {r['steps_per_s']:.3f} | "
          f"{r['tokens_per_s']:.0f} | {r.get('efficiency_tokens', '-')} | {r.get('efficiency_steps', '-')} | "
          f"{', '.join(str(x) for x in r['peak_rss_mb_per_rank'])} |")
    p()
    ranks = sorted({a["ranks"] for a in res["allreduce"]})
    p("| bytes | " + " | ".join(f"{r} rank{'s' if r > 1 else ''}: median us (busbw GB/s)" for r in ranks) + " |")
    p("|---:|" + "---:|" * len(ranks))
    for b in sorted({a["bytes"] for a in res["allreduce"]}):
        cells = []
        for r in ranks:
            a = next((a for a in res["allreduce"] if a["ranks"] == r and a["bytes"] == b), None)
            cells.append(f"{a['median_us']:.1f} ({a['busbw_GBps']:.2f})" if a else "-")
        p(f"| {b} | " + " | ".join(cells) + " |")
    p()
    m = res["model_score_cpu"]
    if "quorum_c" in m:
        p("| engine | pairs/s | tokens/s | seconds | tokens/cpu-s |")
        p("|---|---:|---:|---:|---:|")
        for k, name in (("quorum_c", "quorum C (cpu backend, packed + shared prompts)"), ("torch", "torch 1.13 reference (fp32)")):
            e = m[k]
            p(f"| {name} | {e['pairs_per_s']:.2f} | {e['tokens_per_s']:.1f} | {e['seconds']:.2f} | {e['tokens_per_cpu_s']:.1f} |")
        p(f"\nC / torch (pairs/s, wall): {m['speedup_c_over_torch']:.2f}x; max |reward diff| / max |reward| = {m['max_rel_reward_diff']:.1e}")
    p()
    p("Tokenizer: " + "; ".join(res["tokenizer"]["lines"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--quick", type=int, default=0)
    ap.add_argument("--rm-max-len", type=int, default=256)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    if a.markdown:
        return markdown(json.load(open(os.path.join(a.out, "results.json"))))
    raw = os.path.join(a.out, "raw")
    runs = read_jsonl(os.path.join(raw, "runs.jsonl"))
    n = max((r["max_pairs"] for r in runs if r.get("bench") == "score" and r["committee"] == "model"), default=0)
    score = score_rows(a.out, runs, token_counts(a.shared, n, a.rm_max_len) if n else [])
    dpo = dpo_rows(a.out, runs)
    allreduce = allreduce_rows(raw)
    tok = open(os.path.join(raw, "tokenizer.log")).read().strip().splitlines()
    res = dict(machine=os.environ.get("QUORUM_BENCH_MACHINE", "dev2c"), hostname=os.uname().nodename, cores=os.cpu_count(), date_utc=read_or(os.path.join(raw, "date.utc"), time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
               mode="quick" if a.quick else "full",
               uptime_before=open(os.path.join(raw, "uptime.before")).read().strip(),
               uptime_after=open(os.path.join(raw, "uptime.after")).read().strip(),
               definitions=__doc__.split("Definitions (also in benchmarks/RESULTS.md):\n")[1].strip(),
               score=score, dpo=dpo, allreduce=allreduce, tokenizer={"lines": tok},
               model_score_cpu=model_score_cpu(raw))
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    make_plots(a.out, score, dpo, allreduce)


if __name__ == "__main__":
    main()
