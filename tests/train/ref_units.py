"""ref_units.py - recomputes test_units' dumped losses, gradients and AdamW runs with torch.
usage: ref_units.py <test_units binary>"""
import json, os, subprocess, sys
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import ref_model  # noqa: E402

torch.set_num_threads(1)
import torch.nn.functional as F

def close(a, b, rtol, atol, what):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    ok = bool(torch.all(torch.abs(a - b) <= atol + rtol * torch.abs(b)))
    if not ok:
        print(f"FAIL {what}: max abs diff {float(torch.max(torch.abs(a - b))):.3g}")
    return ok

def dpo_losses(kind, pc, pr, rc, rr, nc, nr, beta, ls, tau):
    """Per-sequence losses as TRL's DPOTrainer writes them (dpo_trainer.py loss ladder), in float64."""
    logsig, sig = F.logsigmoid, torch.sigmoid
    if kind in ("sigmoid_norm", "ipo_mean"):  # log-ratios over completion lengths
        cl, rl = (pc - rc) / nc.clamp(min=1), (pr - rr) / nr.clamp(min=1)
    else:
        cl, rl = pc - rc, pr - rr
    d = cl - rl
    if kind in ("sigmoid", "sigmoid_norm"):
        return -logsig(beta * d)
    if kind == "cdpo":
        return -logsig(beta * d) * (1 - ls) - logsig(-beta * d) * ls
    if kind == "robust":
        return (-logsig(beta * d) * (1 - ls) + logsig(-beta * d) * ls) / (1 - 2 * ls)
    if kind == "hinge":
        return torch.relu(1 - beta * d)
    if kind in ("ipo", "ipo_mean"):
        return (d - 1 / (2 * beta)) ** 2
    if kind == "exo_pair":
        eps = torch.tensor(ls, dtype=torch.float64)
        return sig(beta * d) * (logsig(beta * d) - torch.log1p(-eps)) + sig(-beta * d) * (logsig(-beta * d) - torch.log(eps))
    if kind == "nca_pair":
        return -logsig(beta * cl) - 0.5 * logsig(-beta * cl) - 0.5 * logsig(-beta * rl)
    if kind == "bco_pair":
        return -logsig(beta * cl) - logsig(-beta * rl)
    if kind == "sppo_hard":
        return (cl - 0.5 / beta) ** 2 + (rl + 0.5 / beta) ** 2
    if kind in ("aot", "aot_unpaired"):
        if kind == "aot":
            delta = torch.sort(pc - pr, dim=0)[0] - torch.sort(rc - rr, dim=0)[0]
        else:
            delta = torch.sort(cl, dim=0)[0] - torch.sort(rl, dim=0)[0]
        return -logsig(beta * delta) * (1 - ls) - logsig(-beta * delta) * ls
    if kind == "apo_zero":
        return 1 - sig(beta * cl) + sig(beta * rl)
    if kind == "apo_down":
        return sig(beta * cl) + 1 - sig(beta * (cl - rl))
    if kind == "discopop":
        u = beta * d
        m = sig(u / tau)
        return -logsig(u) * (1 - m) + torch.exp(-u) * m
    if kind == "sft":  # token-mean NLL of the chosen completions, expanded per sequence
        return (-pc.sum() / nc.sum()).expand(pc.shape[0])
    raise SystemExit(f"ref_units.py: no reference for loss {kind}")

def dpo_ref(rec):
    t = {k: torch.tensor(rec[k], dtype=torch.float64, requires_grad=True) for k in ("pc", "pr", "rc", "rr")}
    nc, nr = (torch.tensor(rec[k], dtype=torch.float64) for k in ("nc", "nr"))
    beta, ls, kind = rec["beta"], rec["ls"], rec["loss_type"]
    loss = dpo_losses(kind, t["pc"], t["pr"], t["rc"], t["rr"], nc, nr, beta, ls, rec["tau"]).mean()
    loss.backward()
    cr = beta * (t["pc"] - t["rc"]).detach()
    rr = beta * (t["pr"] - t["rr"]).detach()
    ok = close(rec["loss"], loss.item(), 1e-4, 1e-7, f"{kind} ls={ls} loss")
    for k in ("pc", "pr", "rc", "rr"):
        grad = t[k].grad if t[k].grad is not None else torch.zeros_like(t[k])  # sft: only pc
        ok &= close(rec["d" + k], grad, 1e-3, 1e-7, f"{kind} ls={ls} d{k}")
    ok &= close(rec["m_rc"], cr.mean(), 1e-4, 1e-6, f"{kind} rewards/chosen")
    ok &= close(rec["m_rr"], rr.mean(), 1e-4, 1e-6, f"{kind} rewards/rejected")
    ok &= close(rec["m_acc"], (cr > rr).double().mean(), 0, 1e-9, f"{kind} rewards/accuracies")
    ok &= close(rec["m_margin"], (cr - rr).mean(), 1e-4, 1e-6, f"{kind} rewards/margins")
    ok &= close(rec["m_lc"], t["pc"].detach().mean(), 1e-5, 1e-6, f"{kind} logps/chosen")
    ok &= close(rec["m_lr"], t["pr"].detach().mean(), 1e-5, 1e-6, f"{kind} logps/rejected")
    return ok

def bt_ref(rec):
    rc = torch.tensor(rec["rc"], dtype=torch.float64, requires_grad=True)
    rr = torch.tensor(rec["rr"], dtype=torch.float64, requires_grad=True)
    loss = -F.logsigmoid(rc - rr - rec["margin"]).mean()
    if rec["center"]:
        loss = loss + rec["center"] * torch.mean((rc + rr) ** 2)
    loss.backward()
    ok = close(rec["loss"], loss.item(), 1e-4, 1e-7, "bt loss")
    ok &= close(rec["drc"], rc.grad, 1e-3, 1e-7, "bt drc") & close(rec["drr"], rr.grad, 1e-3, 1e-7, "bt drr")
    ok &= close(rec["m_acc"], (rc > rr).double().mean(), 0, 1e-9, "bt accuracy")
    return ok

def adamw_ref(rec):
    p0 = torch.tensor(rec["p0"], dtype=torch.float32)
    nd = 10 if rec["cosine"] else 0  # the C side exempts the first 10 from decay in the cosine run
    pn, pd = torch.nn.Parameter(p0[:nd].clone()), torch.nn.Parameter(p0[nd:].clone())
    opt = torch.optim.AdamW([{"params": [pn], "weight_decay": 0.0}, {"params": [pd], "weight_decay": rec["wd"]}],
                            lr=rec["lr"], betas=(0.9, 0.999), eps=1e-8)
    ok = True
    for t, g in enumerate(rec["grads"]):
        lr = ref_model.hf_lr(t, rec["lr"], rec["warmup"], rec["total"], rec["cosine"])
        ok &= close(rec["lrs"][t], lr, 1e-6, 1e-12, f"lr step {t}")
        for group in opt.param_groups:
            group["lr"] = lr
        g = torch.tensor(g, dtype=torch.float32)
        pn.grad, pd.grad = g[:nd].clone(), g[nd:].clone()
        norm = torch.nn.utils.clip_grad_norm_([pn, pd], rec["clip"])
        ok &= close(rec["norms"][t], norm, 1e-5, 1e-7, f"grad norm step {t}")
        opt.step()
    ok &= close(rec["p"], torch.cat([pn.detach(), pd.detach()]), 1e-5, 1e-6, f"adamw params cosine={rec['cosine']}")
    return ok

def main():
    out = subprocess.run([sys.argv[1], "dump"], check=True, capture_output=True, text=True).stdout
    npass = nfail = 0
    for line in out.splitlines():
        rec = json.loads(line)
        ok = {"dpo": dpo_ref, "bt": bt_ref, "adamw": adamw_ref}[rec["kind"]](rec)
        npass += ok
        nfail += not ok
    print(f"{npass} passed, {nfail} failed")
    sys.exit(1 if nfail or npass < 2 * 17 + 2 + 2 else 0)  # 17 losses x 2 settings, 2 bt, 2 adamw

if __name__ == "__main__":
    main()
