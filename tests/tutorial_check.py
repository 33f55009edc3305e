#!/usr/bin/env python3
"""make tutorial-check: runs the command blocks of tutorial/*.md and compares what they print with
the output block the text shows after them.

A chapter is a list of ```sh blocks, each optionally followed (nothing but blank lines between) by
an untyped ``` block: the output the text claims; and of terminal transcripts, untyped blocks
whose first line is "$ command": their "$ " lines run, the other lines are what they print. The blocks of a chapter run in order, in the
repository's root, in one bash each (so a later block sees the files an earlier one wrote). An
HTML comment on the line just above a ```sh block says how to treat it:

  <!-- check: full -->          expensive (training): runs only with TUTORIAL_FULL=1
  <!-- check: illustrative -->  never run: shows a pattern, or edits the code, or needs a person
  <!-- check: run -->           run it and require exit status 0, but compare no output (it moves
                                with the kernels' rounding, or is not shown)
  <!-- check: needs MODULE -->  run it only where Python can import MODULE (transformers, ...)
  <!-- check: cheap -->         run and compare it even in a chapter whose blocks default to full

Every other block runs and, if an output block follows, is compared with it: each non-blank line
of the text's output must appear, in order, among the lines printed (so a block may show only
some of the lines: a line "..." stands for lines left out). Before comparing, both sides lose
what changes from run to run: times ("0.52 s", "12 ms", "3 min", tok/s), addresses (0x7fff...),
process ids and gdb's thread lines. Every other number must be the same text.

Blocks that call gdb are skipped, with a line saying so, where gdb is missing. The gdb sessions
of tutorial/gdb/*.gdb are checked by tests/gdb_check.sh, not here.

usage: tests/tutorial_check.py [CHAPTER.md ...]     (default: the chapters in CHAPTERS)
       TUTORIAL_FULL=1 also runs the blocks marked full; TUTORIAL_VERBOSE=1 prints each block.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# The chapters checked, and the default for their unmarked blocks: "cheap" (run them) or "full"
# (chapters whose every command needs a trained model: only with TUTORIAL_FULL=1).
CHAPTERS = {
    "tutorial/01-architecture.md": "cheap",
    "tutorial/02-tokenizer.md": "cheap",
    "tutorial/03-pretraining.md": "cheap",
    "tutorial/04-grpo.md": "cheap",
    "tutorial/05-r1-zero.md": "full",
    "tutorial/06-cold-start-and-sft.md": "full",
    "tutorial/07-rejection-sampling.md": "full",
    "tutorial/08-distillation.md": "full",
    "tutorial/09-bad-input-and-faults.md": "cheap",
    "tutorial/10-reward-models.md": "full",
    "tutorial/11-mtp-and-speculative-decoding.md": "cheap",
}
# Chapters whose commands write files into the current directory (c.txt, base/, ...) run in a
# scratch directory of their own under build/, where ./r1 is a link to the program.
SCRATCH = {"tutorial/09-bad-input-and-faults.md": "build/tutorial-09"}
BLOCK_TIMEOUT = int(os.environ.get("TUTORIAL_TIMEOUT", "300"))  # seconds per block
MARK = re.compile(r"<!--\s*check:\s*(full|cheap|illustrative|run|needs)\b\s*([\w.]*).*?-->")


def transcript(lines, i, marker):
    """An untyped block whose first line is "$ command": a terminal transcript. Its commands run
    in one bash; the other lines are the output they must print."""
    j = i + 1
    while j < len(lines) and lines[j].strip() != "```":
        j += 1
    indent = len(lines[i]) - len(lines[i].lstrip())
    body = [x[indent:] for x in lines[i + 1:j]]
    commands, expected = [], []
    for k, x in enumerate(body):
        if x.startswith("$ "):
            commands.append(x[2:])
        elif x.startswith("      ") and k > 0 and (body[k - 1].startswith("$ ") or
                                                  body[k - 1].endswith("\\")) and \
                commands and commands[-1].endswith("\\"):
            commands.append(x)  # a continued command line
        else:
            expected.append(x)
    return (i + 1, marker, "\n".join(commands), expected), j


def blocks(path):
    """The ```sh blocks and "$ " transcripts of a markdown file: (line, marker, command,
    expected output or None)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```" and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("$ "):
            m = MARK.search(lines[i - 1]) if i > 0 else None
            marker = None if not m else (m.group(1) if m.group(1) != "needs" else "needs " + m.group(2))
            block, i = transcript(lines, i, marker)
            out.append(block)
            i += 1
            continue
        fence = lines[i].strip()
        if fence.startswith("```") and fence != "```sh":  # any other block: skip it whole
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            i += 1
            continue
        if lines[i].strip() != "```sh":
            i += 1
            continue
        start, marker = i + 1, None
        for back in (i - 1, i - 2):  # the marker: on the line above, or above a blank line
            m = MARK.search(lines[back]) if back >= 0 else None
            if m:
                marker = m.group(1) if m.group(1) != "needs" else "needs " + m.group(2)
                break
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        indent = len(lines[i]) - len(lines[i].lstrip())  # a block inside a list item
        command = "\n".join(x[indent:] for x in lines[i + 1:j])
        k = j + 1
        while k < len(lines) and lines[k].strip() == "":
            k += 1
        expected = None
        if k < len(lines) and lines[k].strip() == "```":
            e = k + 1
            while e < len(lines) and lines[e].strip() != "```":
                e += 1
            expected = [x[indent:] for x in lines[k + 1:e]]
            j = e
        out.append((start, marker, command, expected))
        i = j + 1
    return out


VOLATILE = [
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),                      # addresses
    (re.compile(r"\b\d+(\.\d+)?(e[-+]?\d+)?\s*(s|ms|us|µs|min|sec|seconds)\b"), "T"),  # times
    (re.compile(r"\b\d+(\.\d+)?\s*(k|M)?(tok|tokens|steps|seqs|samples)/s\b"), "R"),  # rates
    (re.compile(r"\breal\s+\d+m[\d.]+s"), "real T"),
    (re.compile(r"\[(Inferior|New Thread|Thread debugging|Using host).*"), ""),
    (re.compile(r"process \d+"), "process N"), (re.compile(r"\bpid \d+"), "pid N"),
    (re.compile(r"\.c:\d+"), ".c:N"), (re.compile(r"\bline \d+"), "line N"),  # source lines move
    (re.compile(r"^\d+\t"), "N\t"),                                           # gdb's "1037<TAB>..."
    (re.compile(r"\s+"), " "),
]


def normal(line):
    for pattern, repl in VOLATILE:
        line = pattern.sub(repl, line)
    return line.strip()


def compare(expected, printed):
    """None if every expected line appears in order in printed, else the first one that does not."""
    got = [normal(x) for x in printed.split("\n")]
    at = 0
    for line in expected:
        want = normal(line)
        if not want or want == "..." or want == "T" or want == "":
            continue
        while at < len(got) and got[at] != want:
            at += 1
        if at == len(got):
            return line
        at += 1
    return None


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    full = os.environ.get("TUTORIAL_FULL") == "1"
    verbose = os.environ.get("TUTORIAL_VERBOSE") == "1"
    have_gdb = shutil.which("gdb") is not None
    chapters = argv[1:] or list(CHAPTERS)
    counts = {"passed": 0, "failed": 0, "full": 0, "illustrative": 0, "no gdb": 0, "missing": 0}
    failures = []
    os.makedirs("/tmp/r1demo", exist_ok=True)
    for path in chapters:
        default = CHAPTERS.get(path, "cheap")
        cwd = root
        if path in SCRATCH:
            cwd = os.path.join(root, SCRATCH[path])
            shutil.rmtree(cwd, ignore_errors=True)
            os.makedirs(cwd)
            os.symlink(os.path.join(root, "r1"), os.path.join(cwd, "r1"))
        for line, marker, command, expected in blocks(path):
            kind = marker or ("full" if default == "full" else "cheap")
            where = "%s:%d" % (path, line)
            if kind == "illustrative":
                counts["illustrative"] += 1
                continue
            if kind == "full" and not full:
                counts["full"] += 1
                continue
            if kind.startswith("needs "):
                module = kind.split()[1]
                if subprocess.run([sys.executable, "-c", "import " + module],
                                  stderr=subprocess.DEVNULL).returncode:
                    counts["missing"] += 1
                    print("tutorial-check: %s: skipped (Python module %s missing)" % (where, module))
                    continue
            if re.search(r"(^|\s)gdb\s", command) and not have_gdb:
                counts["no gdb"] += 1
                print("tutorial-check: %s: skipped (gdb not installed)" % where)
                continue
            t0 = time.time()
            # into a file, not a pipe: a job the block leaves in the background would hold a
            # pipe open until it ends
            with tempfile.TemporaryFile() as f:
                status = 0
                try:
                    status = subprocess.run(["bash", "-c", command], stdout=f, cwd=cwd,
                                            stderr=subprocess.STDOUT,
                                            timeout=BLOCK_TIMEOUT).returncode
                    f.seek(0)
                    printed = f.read().decode("utf-8", "replace")
                except subprocess.TimeoutExpired:
                    printed = "(timed out after %d s)" % BLOCK_TIMEOUT
            if verbose:
                print("== %s (%.1f s)\n%s" % (where, time.time() - t0, printed))
            bad = compare(expected, printed) if expected is not None and kind != "run" else None
            if kind == "run" and status != 0:
                bad = "(exit status 0; it exited with %d)" % status
            if bad is None:
                counts["passed"] += 1
            else:
                counts["failed"] += 1
                failures.append((where, bad, printed))
    for where, bad, printed in failures:
        print("tutorial-check: FAIL %s: the text shows\n    %s\nwhich the command did not print; "
              "it printed:\n%s" % (where, bad.strip(), "\n".join(
                  "    " + x for x in printed.rstrip().split("\n")[-40:])))
    print("tutorial-check: %d blocks passed, %d failed; not run: %d full (TUTORIAL_FULL=1), "
          "%d illustrative, %d gdb missing, %d Python module missing" % (
              counts["passed"], counts["failed"], counts["full"], counts["illustrative"],
              counts["no gdb"], counts["missing"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
