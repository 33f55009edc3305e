#!/usr/bin/env python3
"""Checks that a tokenizer directory written by r1.c's tokenizer_save encodes exactly as r1.c does.

The directory holds tokenizer.json, tokenizer_config.json and expected.json, which r1.c's tests
write with `build/test_tokenizer --hf-fixture DIR`: strings with the ids r1.c gave them, and chat
conversations with the text and ids the chat template must give.

    python3 tests/check_hf_tokenizer.py [DIR]               # with transformers + tokenizers
    python3 tests/check_hf_tokenizer.py --reference [DIR]   # no dependencies: a plain-Python
        re-implementation of what tokenizer.json says (regex split, byte-level BPE), to check
        the C code against the file's own description where transformers is not installed

DIR defaults to tests/fixtures/tokenizer. Prints one line per failure and "N passed, M failed";
exits 1 on any failure. With $OUT set, also writes $OUT/hf_tokenizer_check.json.
"""
import json
import os
import re
import sys


def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Reference:
    """tokenizer.json read literally: added tokens, Split(regex, Isolated), ByteLevel, BPE."""

    def __init__(self, path):
        tj = json.load(open(path, encoding="utf-8"))
        self.vocab = tj["model"]["vocab"]
        self.rank = {}
        for i, m in enumerate(tj["model"]["merges"]):
            a, b = m if isinstance(m, list) else m.split(" ")
            self.rank[(a, b)] = i
        self.special = {t["content"]: t["id"] for t in tj["added_tokens"]}
        pts = tj["pre_tokenizer"]["pretokenizers"]
        assert pts[0]["type"] == "Split" and pts[0]["behavior"] == "Isolated"
        self.pattern = re.compile(pts[0]["pattern"]["Regex"])
        self.b2u = bytes_to_unicode()
        self.u2b = {c: b for b, c in self.b2u.items()}
        self.id2tok = {i: t for t, i in self.vocab.items()}

    def split_special(self, text):
        """[(is_special, piece)]: leftmost, then longest match of an added token."""
        out, pos = [], 0
        while pos < len(text):
            best = None
            for i in range(pos, len(text)):
                for s in self.special:
                    if text.startswith(s, i) and (best is None or len(s) > len(best[1])):
                        best = (i, s)
                if best:
                    break
            end = best[0] if best else len(text)
            if end > pos:
                out.append((False, text[pos:end]))
            if not best:
                break
            out.append((True, best[1]))
            pos = best[0] + len(best[1])
        return out

    def split_regex(self, text):
        pieces, pos = [], 0
        for m in self.pattern.finditer(text):
            if m.start() > pos:
                pieces.append(text[pos:m.start()])  # Isolated keeps what no match covers
            if m.end() > m.start():
                pieces.append(m.group())
            pos = m.end()
        if pos < len(text):
            pieces.append(text[pos:])
        return pieces

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            ranks = [self.rank.get((parts[i], parts[i + 1]), None) for i in range(len(parts) - 1)]
            best = min((r for r in ranks if r is not None), default=None)
            if best is None:
                break
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and ranks[i] == best and self.rank.get((parts[i], parts[i + 1])) == best:
                    out.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids = []
        for is_special, piece in self.split_special(text):
            if is_special:
                ids.append(self.special[piece])
                continue
            for chunk in self.split_regex(piece):
                ids += self.bpe("".join(self.b2u[b] for b in chunk.encode("utf-8")))
        return ids

    def decode(self, ids):
        out = b""
        for i in ids:
            t = self.id2tok[i]
            out += t.encode("utf-8") if i < len(self.special) else bytes(self.u2b[c] for c in t)
        return out.decode("utf-8", errors="replace")




def reference_chat(messages, add_generation_prompt):
    s = "<｜begin▁of▁sentence｜>"
    for m in messages:
        if m["role"] == "system":
            s += m["content"]
        elif m["role"] == "user":
            s += "<｜User｜>" + m["content"]
        elif m["role"] == "assistant":
            s += "<｜Assistant｜>" + m["content"] + "<｜end▁of▁sentence｜>"
    if add_generation_prompt:
        s += "<｜Assistant｜>"
    return s


def first_diff(a, b):
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    return i


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    reference = "--reference" in sys.argv
    d = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tokenizer")
    exp = json.load(open(os.path.join(d, "expected.json"), encoding="utf-8"))
    failures, passed, report = [], 0, {}

    def check(name, ok, detail=""):
        nonlocal passed
        if ok:
            passed += 1
        else:
            failures.append(name + (": " + detail if detail else ""))
            print("FAIL", name, detail[:600])

    if reference:
        ref = Reference(os.path.join(d, "tokenizer.json"))
        enc = ref.encode
        dec = ref.decode
        chat = lambda msgs, gen: reference_chat(msgs, gen)  # noqa: E731
        chat_ids = None
        report["mode"] = "python reference"
    else:
        import tokenizers
        import transformers
        from transformers import AutoTokenizer
        report["mode"] = "transformers %s, tokenizers %s" % (transformers.__version__, tokenizers.__version__)
        print(report["mode"])
        raw = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        try:
            tok = AutoTokenizer.from_pretrained(d)
        except Exception as e:  # still check the tokenizers library alone
            check("AutoTokenizer.from_pretrained", False, repr(e))
            tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<｜begin▁of▁sentence｜>",
                                                       eos_token="<｜end▁of▁sentence｜>", pad_token="<｜▁pad▁｜>")
        report["class"] = type(tok).__name__
        print("loaded", type(tok).__name__, "with", len(tok), "tokens;",
              "pre_tokenizer", tok.backend_tokenizer.pre_tokenizer.__getstate__()[:200])
        check("len(tokenizer) == 1024", len(tok) == 1024, str(len(tok)))
        check("special ids", (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2),
              str((tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)))
        want_special = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>",
                        "<｜Assistant｜>", "<think>", "</think>", "<answer>", "</answer>"]
        check("special tokens", tok.convert_ids_to_tokens(list(range(9))) == want_special,
              str(tok.convert_ids_to_tokens(list(range(9)))))

        def enc(text):
            a = tok(text, add_special_tokens=False)["input_ids"]
            b = tok.encode(text)  # add_special_tokens=True must add nothing (no BOS)
            c = raw.encode(text, add_special_tokens=False).ids
            if not (a == b == c):
                check("encode variants agree", False,
                      "%r: no specials %s / default %s / tokenizers %s" % (text[:80], a[:20], b[:20], c[:20]))
            return a

        def dec(ids):
            return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

        def chat(msgs, gen):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

        def chat_ids(msgs, gen):
            r = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
            if hasattr(r, "keys") and "input_ids" in r:
                r = r["input_ids"]
            return list(r)

    n_cases = 0
    for k, case in enumerate(exp["cases"]):
        text, want = case["text"], case["ids"]
        got = enc(text)
        n_cases += 1
        if got != want:
            i = first_diff(got, want)
            check("case %d" % k, False, "%r: ids differ at %d: ours %s, theirs %s" % (
                text[:120], i, want[max(0, i - 3):i + 5], got[max(0, i - 3):i + 5]))
        else:
            check("case %d" % k, True)
        back = dec(want)
        check("decode %d" % k, back == text, "%r -> %r" % (text[:80], back[:80]))
    for k, c in enumerate(exp["chat"]):
        s = chat(c["messages"], c["add_generation_prompt"])
        check("chat template %d" % k, s == c["text"], "%r vs %r" % (s, c["text"]))
        check("chat template %d encodes" % k, enc(c["text"]) == c["ids"])
        if chat_ids:
            got = chat_ids(c["messages"], c["add_generation_prompt"])
            check("chat template %d ids" % k, got == c["ids"], "%s vs %s" % (got, c["ids"]))
    report.update(cases=n_cases, passed=passed, failed=len(failures), failures=failures[:50])
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "hf_tokenizer_check.json"), "w") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)
    print("%d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
