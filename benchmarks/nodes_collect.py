#!/usr/bin/env python3
"""Turns benchmarks/nodes.sh's raw logs (OUT/raw) into OUT/results.json, PNG plots (gnuplot) and the
markdown tables printed on stdout (pasted into RESULTS.md).

Efficiency on emulated nodes: every node shares this machine's cores, so wall-time speedup is capped by
the core count. What the emulation does show honestly is (1) the extra work parallelism costs, as
CPU-normalised efficiency = CPU seconds at 1 node / CPU seconds at N nodes (summed over ranks; 1.0 = no
overhead), and (2) the time spent communicating: the vote/clean stages' share of the run (their work is
an allreduce and tiny writes), and in DPO the time rank 0 waits in the gradient allreduce per step.

The ring-allreduce model (RESULTS.md's projection): t = 2(R-1) * (alpha + B / (R * beta)) for B bytes
over R ranks, alpha the one-way link latency and beta the link bandwidth; compared with the measured
median on the shaped link. beta is the shaped rate; alpha is netem's delay where the kernel has netem,
else (tbf: bandwidth only) the per-hop latency the open link showed for the smallest message at the same
R: alpha = t(4 KiB) / (2(R-1)).
"""
import argparse
import json
import os
import re
import subprocess


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip().startswith("{")]


def rate_bytes_per_s(rate):
    m = re.fullmatch(r"([0-9.]+)([kmg]?)bit", rate.lower())
    if not m:
        raise SystemExit("nodes_collect.py: cannot read rate %r (want e.g. 1gbit, 200mbit)" % rate)
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] / 8


def delay_seconds(delay):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", delay)
    if not m:
        raise SystemExit("nodes_collect.py: cannot read delay %r (want e.g. 200us, 1ms)" % delay)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def stage_times(log_path):
    """Seconds per stage from quorum run's 'run: [k/n] STAGE done in X s' lines."""
    out = {}
    for line in open(log_path, errors="replace"):
        m = re.search(r"run: \[\d+/\d+\] (\w+)\s+done in ([0-9.]+) s", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def score_rows(out, runs):
    rows = []
    for r in runs:
        if r.get("bench") != "score":
            continue
        st = stage_times(os.path.join(out, r["log"]))
        total = sum(st.values())
        rows.append({"link": r["link"], "mode": r["mode"], "nodes": r["nodes"], "pairs": r["pairs"],
                     "wall_s": r["wall_s"], "stages_s": st, "cpu_s": sum(r["rank_cpu_s"]),
                     "pairs_per_s": r["pairs"] / r["wall_s"],
                     "comm_share": (st.get("vote", 0) + st.get("clean", 0)) / total if total else None})
    for r in rows:  # CPU-normalised efficiency against the same link and mode at 1 node
        base = [b for b in rows if b["link"] == r["link"] and b["mode"] == r["mode"] and b["nodes"] == 1]
        if base:
            b = base[0]
            work = r["pairs"] / b["pairs"]  # weak scaling does N times the work
            r["cpu_efficiency"] = b["cpu_s"] * work / r["cpu_s"]
            r["wall_speedup"] = (b["wall_s"] * work) / r["wall_s"]
    return rows


def dpo_rows(out, runs):
    rows = []
    for r in runs:
        if r.get("bench") != "dpo":
            continue
        met = read_jsonl(os.path.join(out, r["metrics"]))[1:] or read_jsonl(os.path.join(out, r["metrics"]))
        step = sum(m["step_s"] for m in met) / len(met)
        ar = sum(m["allreduce_s"] for m in met) / len(met)
        rows.append({"link": r["link"], "nodes": r["nodes"], "steps": r["steps"], "batch_size": r["batch_size"],
                     "step_s": step, "allreduce_s": ar, "comm_share": ar / step if step else None,
                     "tokens_per_s": sum(m["tokens_per_s"] for m in met) / len(met),
                     "cpu_s": sum(r["rank_cpu_s"]), "wall_s": r["wall_s"]})
    return rows


def allreduce_rows(raw, beta, alpha):
    rows = []
    for link in ("open", "shaped"):
        for n in (2, 4):
            meas = read_jsonl(os.path.join(raw, "allreduce.%s.n%d.jsonl" % (link, n)))
            open_small = read_jsonl(os.path.join(raw, "allreduce.open.n%d.jsonl" % n))[:1]
            a_n = alpha if alpha is not None else (open_small[0]["median_us"] * 1e-6 / (2 * (n - 1)) if open_small else 0)
            for a in meas:
                row = {"link": link, "nodes": n, "bytes": a["bytes"], "median_us": a["median_us"],
                       "busbw_GBps": a["busbw_GBps"]}
                if link == "shaped":
                    model = 2 * (n - 1) * (a_n + a["bytes"] / (n * beta))
                    row.update(ring_model_us=model * 1e6, model_alpha_us=a_n * 1e6,
                               measured_over_model=a["median_us"] / (model * 1e6))
                rows.append(row)
    return rows


def shaping(raw):
    """(description, beta B/s, alpha s or None) from raw/shaping.txt as tests/nodes/nodes.sh wrote it."""
    text = open(os.path.join(raw, "shaping.txt")).read().strip()
    rate = re.search(r"rate (\S+)", text)
    delay = re.search(r"^netem .*delay (\S+)", text)
    return text, rate_bytes_per_s(rate.group(1)), delay_seconds(delay.group(1)) if delay else None


def plot(out, script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True, cwd=out)


def write_dat(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(" ".join(str(x) for x in r) + "\n")


def make_plots(out, score, dpo, ar):
    for link in ("open", "shaped"):
        s = sorted((r for r in score if r["link"] == link and r["mode"] == "strong"), key=lambda r: r["nodes"])
        write_dat(os.path.join(out, "strong.%s.dat" % link),
                  [(r["nodes"], r["pairs_per_s"], r.get("cpu_efficiency", 1), r["comm_share"]) for r in s])
        d = sorted((r for r in dpo if r["link"] == link), key=lambda r: r["nodes"])
        write_dat(os.path.join(out, "dpo.%s.dat" % link),
                  [(r["nodes"], r["tokens_per_s"], r["comm_share"], r["step_s"]) for r in d])
        for n in (2, 4):
            a = [r for r in ar if r["link"] == link and r["nodes"] == n]
            write_dat(os.path.join(out, "ar.%s.n%d.dat" % (link, n)),
                      [(r["bytes"], r["median_us"], r.get("ring_model_us", 0)) for r in a])
    common = 'set terminal pngcairo size 760,480 font ",10"\nset key top left\nset grid\nset xtics (1, 2, 4)\n'
    plot(out, common + 'set output "nodes_throughput.png"\nset title "score -> vote -> clean, strong scaling, 1 rank per emulated node"\n'
         'set xlabel "nodes"\nset ylabel "pairs/s"\n'
         'plot "strong.open.dat" u 1:2 w lp t "open link", "strong.shaped.dat" u 1:2 w lp t "shaped link"\n')
    plot(out, common + 'set output "nodes_efficiency.png"\nset title "CPU-normalised efficiency (CPU-s at 1 node / CPU-s at N)"\n'
         'set xlabel "nodes"\nset yrange [0:1.2]\n'
         'plot "strong.open.dat" u 1:3 w lp t "score strong, open", "strong.shaped.dat" u 1:3 w lp t "score strong, shaped"\n')
    plot(out, common + 'set output "nodes_comm_share.png"\nset title "communication share vs nodes"\n'
         'set xlabel "nodes"\nset yrange [0:1]\n'
         'plot "strong.open.dat" u 1:4 w lp t "vote+clean / run, open", "strong.shaped.dat" u 1:4 w lp t "vote+clean / run, shaped", '
         '"dpo.open.dat" u 1:3 w lp t "dpo allreduce / step, open", "dpo.shaped.dat" u 1:3 w lp t "dpo allreduce / step, shaped"\n')
    plot(out, 'set terminal pngcairo size 760,480 font ",10"\nset key top left\nset grid\nset logscale xy\n'
         'set output "nodes_allreduce.png"\nset title "allreduce across emulated nodes: measured vs ring model (shaped)"\n'
         'set xlabel "bytes"\nset ylabel "median us"\n'
         'plot "ar.shaped.n2.dat" u 1:2 w lp t "2 nodes measured", "ar.shaped.n2.dat" u 1:3 w l dt 2 t "2 nodes model", '
         '"ar.shaped.n4.dat" u 1:2 w lp t "4 nodes measured", "ar.shaped.n4.dat" u 1:3 w l dt 2 t "4 nodes model", '
         '"ar.open.n4.dat" u 1:2 w lp t "4 nodes, open link"\n')
    for f in os.listdir(out):
        if f.endswith(".dat"):
            os.remove(os.path.join(out, f))


def markdown(res):
    lines = ["| link | mode | nodes | pairs | wall s | pairs/s | CPU s | CPU-norm. eff. | vote+clean share |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(res["score"], key=lambda r: (r["link"], r["mode"], r["nodes"])):
        lines.append("| %s | %s | %d | %d | %.1f | %.1f | %.1f | %.2f | %.2f |" % (
            r["link"], r["mode"], r["nodes"], r["pairs"], r["wall_s"], r["pairs_per_s"], r["cpu_s"],
            r.get("cpu_efficiency", 1), r["comm_share"] or 0))
    lines += ["", "| link | nodes | step s | allreduce wait s | share | tokens/s |", "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(res["dpo"], key=lambda r: (r["link"], r["nodes"])):
        lines.append("| %s | %d | %.3f | %.3f | %.2f | %.0f |" % (r["link"], r["nodes"], r["step_s"], r["allreduce_s"],
                                                                  r["comm_share"], r["tokens_per_s"]))
    lines += ["", "| link | nodes | bytes | measured us | model alpha us | ring model us | measured / model |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["allreduce"]:
        lines.append("| %s | %d | %d | %.0f | %s | %s | %s |" % (
            r["link"], r["nodes"], r["bytes"], r["median_us"],
            "%.0f" % r["model_alpha_us"] if "model_alpha_us" in r else "-",
            "%.0f" % r["ring_model_us"] if "ring_model_us" in r else "-",
            "%.2f" % r["measured_over_model"] if "measured_over_model" in r else "-"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    raw = os.path.join(a.out, "raw")
    runs = read_jsonl(os.path.join(raw, "runs.jsonl"))
    desc, beta, alpha = shaping(raw)
    res = {"date_utc": open(os.path.join(raw, "date.utc")).read().strip(),
           "shaping": {"applied": desc, "beta_Bps": beta, "alpha_s": alpha},
           "score": score_rows(a.out, runs), "dpo": dpo_rows(a.out, runs),
           "allreduce": allreduce_rows(raw, beta, alpha)}
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    make_plots(a.out, res["score"], res["dpo"], res["allreduce"])
    print(markdown(res))


if __name__ == "__main__":
    main()
