"""Shared by the member tests: GPT-2 byte-level BPE re-implemented from vocab.json and merges.txt (exact for
ASCII text, independent of quorum's tokenizer), and the HH pairs whose transcript quorum's HH template
renders back byte for byte (one space after every marker), split into prompt and responses."""
import gzip
import json
import os
import re
import sys

BOS = 50256


def shared_fixture(shared):
    """(HH harmless-base test split, GPT-2 tokenizer folder) under the shared folder; exit 77 when absent."""
    hh = os.path.join(shared, "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
    tokdir = os.path.join(shared, "tokenizers", "gpt2")
    if not os.path.exists(hh) or not os.path.exists(os.path.join(tokdir, "merges.txt")):
        print("shared data not found: skipping")
        sys.exit(77)
    return hh, tokdir


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))


class Gpt2Bpe:
    PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")

    def __init__(self, tokdir):
        self.b2u = bytes_to_unicode()
        self.vocab = json.load(open(os.path.join(tokdir, "vocab.json")))
        self.ranks = {}
        for i, line in enumerate(open(os.path.join(tokdir, "merges.txt"), encoding="utf-8").read().split("\n")[1:]):
            if line:
                a, b = line.split(" ")
                self.ranks[(a, b)] = i
        self.cache = {}

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)]
            rank, _ = min(pairs)
            if rank == 1 << 30:
                break
            first = [i for r, i in pairs if r == rank][0]
            a, b = parts[first], parts[first + 1]
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b); i += 2
                else:
                    out.append(parts[i]); i += 1
            parts = out
        return parts

    def encode(self, text):
        ids = []
        for piece in self.PAT.findall(text):
            if piece not in self.cache:
                self.cache[piece] = [self.vocab[t] for t in self.bpe("".join(self.b2u[b] for b in piece.encode("utf-8")))]
            ids += self.cache[piece]
        return ids


MARK = re.compile(r"\n\n(Human|Assistant):")


def hh_comparable(path, n_lines):
    """[(line number, prompt transcript ending in "\\n\\nAssistant:", [chosen, rejected] with their leading
    space)] for the ASCII lines among the first n_lines that re-render byte for byte."""
    out = []
    for line_no, line in enumerate(gzip.open(path, "rt", encoding="utf-8"), 1):
        if line_no > n_lines:
            break
        o = json.loads(line)
        ch, rj = o["chosen"], o["rejected"]
        if not (ch.isascii() and rj.isascii()):
            continue
        n = 0
        while n < min(len(ch), len(rj)) and ch[n] == rj[n]:
            n += 1
        cut = ch.rfind("\n\nAssistant:", 0, n)
        if cut < 0:
            continue
        prompt = ch[:cut + len("\n\nAssistant:")]
        ok = prompt.startswith("\n\nHuman: ") and all(
            prompt[m.end():m.end() + 1] == " " and prompt[m.end() + 1:m.end() + 2] not in (" ", "")
            for m in MARK.finditer(prompt) if m.end() < len(prompt))
        resp = [ch[len(prompt):], rj[len(prompt):]]
        ok = ok and all(x.startswith(" ") and not x.startswith("  ") for x in resp)
        if ok:
            out.append((line_no, prompt, resp))
    return out
