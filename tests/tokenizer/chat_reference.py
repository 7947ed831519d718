#!/usr/bin/env python3
"""chat_reference.py - the independent reference for tokenizer.chat_templates.

Renders dialogues with jinja2 exactly as transformers' apply_chat_template does (sandboxed environment,
trim_blocks, lstrip_blocks, loopcontrols, raise_exception), from the real tokenizer_config.json files, and
takes the HH transcripts themselves as the reference of the plain HH family. Writes OUT_DIR/cases.json:
[{dir, family, turns: [{role, text}], response, prompt, completion, error}] where prompt = the render with
the generation prompt and completion = full render minus prompt.

usage: chat_reference.py SHARED_DIR FIXTURE_DIR OUT_DIR   (exit 77 when jinja2 or the data is missing)
"""
import gzip
import json
import os
import re
import sys

try:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("python3-jinja2 not installed: skipping")
    sys.exit(77)

shared, fixtures, out = sys.argv[1:4]
if not os.path.isdir(os.path.join(shared, "tokenizers")):
    print("shared data not found: skipping")
    sys.exit(77)
os.makedirs(out, exist_ok=True)

def template_dir(name, fixture):
    """OUT/name: the shared Mistral tokenizer.json (linked) beside the tokenizer_config.json kept in fixtures/."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "tokenizer.json")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(shared, "tokenizers/mistral/tokenizer.json")), link)
    with open(os.path.join(fixtures, fixture)) as f, open(os.path.join(d, "tokenizer_config.json"), "w") as g:
        g.write(f.read())
    return d


# Mistral Instruct: the shared mistral folder has no chat_template; its tokenizer.json with the
# Mistral-7B-Instruct template config.
mdir = template_dir("mistral_instruct", "mistral_instruct_tokenizer_config.json")
# Gemma instruct: the real Gemma / Gemma-2 template text over the Mistral tokenizer.json (its <s>/</s> stand
# in for <bos>/<eos>: the shared folder has no Gemma tokenizer). What is compared is the rendering of the
# real template.
gdir = template_dir("gemma_instruct", "gemma_it_tokenizer_config.json")


class TemplateError(Exception):
    pass


def raise_exception(msg):
    raise TemplateError(msg)


def token_text(cfg, key):
    v = cfg.get(key)
    return v.get("content", "") if isinstance(v, dict) else (v or "")


def jinja_case(d, family, turns, response):
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    tpl = env.from_string(cfg["chat_template"])
    kw = dict(bos_token=token_text(cfg, "bos_token"), eos_token=token_text(cfg, "eos_token"), enable_thinking=False)
    msgs = [{"role": r, "content": t} for r, t in turns]
    case = {"dir": d, "family": family, "turns": [{"role": r, "text": t} for r, t in turns], "response": response}
    try:
        prompt = tpl.render(messages=msgs, add_generation_prompt=True, **kw)
        full = tpl.render(messages=msgs + [{"role": "assistant", "content": response}], add_generation_prompt=False, **kw)
    except TemplateError:
        case["error"] = True
        return case
    assert full.startswith(prompt), (family, prompt, full)
    case.update(prompt=prompt, completion=full[len(prompt):], error=False)
    return case


def hh_dialogues(limit):
    """(turns, response, prompt, completion) from real HH transcripts: the transcript is the reference."""
    got = []
    path = os.path.join(shared, "data/hh-rlhf/helpful-base-test.jsonl.gz")
    for line in gzip.open(path, "rt", encoding="utf-8"):
        text = json.loads(line)["chosen"]
        cut = text.rfind("\n\nAssistant:") + len("\n\nAssistant:")
        prompt, completion = text[:cut], text[cut:]
        parts = re.split(r"\n\n(Human|Assistant): ", prompt[:-len("\n\nAssistant:")])
        if parts[0] != "" or not completion.startswith(" ") or "\n\nHuman:" in completion:
            continue
        turns = [("user" if parts[i] == "Human" else "assistant", parts[i + 1]) for i in range(1, len(parts), 2)]
        roles = [r for r, _ in turns]
        if roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
            continue
        if len(turns) >= 3 or len(got) < 2:
            got.append((turns, completion[1:], prompt, completion))
        if len(got) == limit:
            break
    return got


hand = [
    ([("user", "Hello there!")], "Hi! How can I help?"),
    ([("system", "You are terse."), ("user", "  Name a color.\n")], "\n\nBlue.  "),
    ([("user", "Qu'est-ce que c'est, l'été ? 😀"), ("assistant", " C'est la saison chaude."), ("user", "Et l'hiver ?")],
     "La saison froide.\n"),
    ([("user", "Write <b>bold</b>\tand [INST] literally")], " Sure: <b>bold</b>"),
]
hh = hh_dialogues(6)
tok = os.path.join(shared, "tokenizers")
cases = []
for turns, resp in hand + [(t, r) for t, r, _, _ in hh]:
    cases.append(jinja_case(os.path.join(tok, "llama3"), "llama3", turns, resp))
    cases.append(jinja_case(os.path.join(tok, "qwen3"), "chatml", turns, resp))
    cases.append(jinja_case(mdir, "mistral", turns, resp))
    cases.append(jinja_case(gdir, "gemma", turns, resp))
for turns, resp, prompt, completion in hh:
    for name in ("gpt2", "mistral"):  # no chat_template in these folders: the HH transcript family
        cases.append({"dir": os.path.join(tok, name), "family": "hh", "turns": [{"role": r, "text": t} for r, t in turns],
                      "response": resp, "prompt": prompt, "completion": completion, "error": False})


def fold_by_hand(turns, family):
    """The fold rule (quorum/tokenizer.h chat_fold_turns), written from its contract: tool roles become user /
    assistant; for families without a system role each run of system turns joins the next user turn."""
    out, pending = [], []
    for r, t in turns:
        r = {"observation": "user", "function_call": "assistant"}.get(r, r)
        if r == "system" and family in ("hh", "mistral", "gemma"):
            pending.append(t)
            continue
        if pending and r == "user":
            t = "\n\n".join(pending + [t])
        else:
            out += [("system", p) for p in pending]
        pending = []
        out.append((r, t))
    return out + [("system", p) for p in pending]


def hh_text(turns, response):
    if any(r == "system" for r, _ in turns) or turns[-1][0] != "user":
        return None
    prompt = "".join(("\n\nHuman: " if r == "user" else "\n\nAssistant: ") + t for r, t in turns) + "\n\nAssistant:"
    return prompt, " " + response


fold_dialogues = [
    [("system", "Be terse."), ("user", "Hi"), ("function_call", "lookup(x)"), ("observation", "42")],
    [("system", "One."), ("system", "Two."), ("user", "Go"), ("assistant", "ok"), ("user", "again")],
    [("user", "a"), ("function_call", "f()"), ("observation", "1"), ("function_call", "g()"), ("observation", "2")],
]
for turns in fold_dialogues:
    n_sys = sum(r == "system" for r, _ in turns)
    for d, fam in ((os.path.join(tok, "llama3"), "llama3"), (os.path.join(tok, "qwen3"), "chatml"), (mdir, "mistral"),
                   (gdir, "gemma"), (os.path.join(tok, "gpt2"), "hh")):
        folded = fold_by_hand(turns, fam)
        if fam == "hh":
            c = {"dir": d, "family": "hh", "turns": [], "response": "Fine."}
            pc = hh_text(folded, "Fine.")
            c.update(prompt=pc[0], completion=pc[1], error=False) if pc else c.update(error=True)
        else:
            c = jinja_case(d, fam, folded, "Fine.")
        c.update(turns=[{"role": r, "text": t} for r, t in turns], fold=True,
                 n_folded=n_sys if fam in ("hh", "mistral", "gemma") else 0)
        cases.append(c)
json.dump(cases, open(os.path.join(out, "cases.json"), "w"), ensure_ascii=False, indent=1)
print("chat reference: %d cases (%d HH dialogues), %d expected template errors"
      % (len(cases), len(hh), sum(c["error"] for c in cases)))
