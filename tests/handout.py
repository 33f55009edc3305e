#!/usr/bin/env python3
"""make handout: a copy of the tree for students, with the assignments' solutions taken out.

Every block of a source file between

    // BEGIN ASSIGNMENT name
    // handout: <a line of the stub>
    ...the solution...
    // END ASSIGNMENT name

becomes the BEGIN line, a TODO, the stub (the "// handout:" lines without their prefix: a body
that compiles and returns zeros, so the program and the tests build) and the END line. Nothing
else changes. The copy goes to OUT (default build/handout): the files git knows (tracked, and
new ones not ignored), so build outputs and runs stay behind. `make grade` in the copy gives 0
points to every assignment until the student writes it.

usage: tests/handout.py [OUT]
"""
import os
import re
import shutil
import subprocess
import sys

BEGIN = re.compile(r"^(\s*)// BEGIN ASSIGNMENT (\w+)\s*$")
END = re.compile(r"^\s*// END ASSIGNMENT (\w+)\s*$")
STUB = re.compile(r"^\s*// handout: ?(.*)$")


def strip_solutions(text, path):
    """The file with every assignment's solution replaced by its TODO and stub; the names."""
    out, names, lines, i = [], [], text.split("\n"), 0
    while i < len(lines):
        m = BEGIN.match(lines[i])
        if not m:
            if END.match(lines[i]):
                sys.exit("handout: %s:%d: END ASSIGNMENT without BEGIN" % (path, i + 1))
            out.append(lines[i])
            i += 1
            continue
        indent, name = m.group(1), m.group(2)
        names.append(name)
        out.append(lines[i])
        out.append("%s// TODO (assignment %s): replace this stub with your code." % (indent, name))
        out.append("%s// tutorial/assignments.md says what `make grade` expects." % indent)
        j = i + 1
        while j < len(lines) and STUB.match(lines[j]):
            out.append(indent + STUB.match(lines[j]).group(1))
            j += 1
        while j < len(lines) and not END.match(lines[j]):
            if BEGIN.match(lines[j]):
                sys.exit("handout: %s:%d: BEGIN ASSIGNMENT inside %s" % (path, j + 1, name))
            j += 1
        if j == len(lines) or END.match(lines[j]).group(1) != name:
            sys.exit("handout: %s:%d: ASSIGNMENT %s has no matching END" % (path, i + 1, name))
        out.append(lines[j])
        i = j + 1
    return "\n".join(out), names


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    dest = argv[1] if len(argv) > 1 else "build/handout"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           stdout=subprocess.PIPE, check=True).stdout.decode().split("\0")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    found = {}
    for f in files:
        if not f or not os.path.isfile(f) or f.startswith("build/"):
            continue
        target = os.path.join(dest, f)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if f.endswith((".c", ".h")):
            text, names = strip_solutions(open(f, encoding="utf-8").read(), f)
            for n in names:
                found.setdefault(n, []).append(f)
            with open(target, "w", encoding="utf-8") as out:
                out.write(text)
            shutil.copymode(f, target)
        else:
            shutil.copy2(f, target)
    print("handout: %s: %d assignments taken out:" % (dest, len(found)))
    for name in sorted(found):
        print("  %-22s %s" % (name, ", ".join(sorted(set(found[name])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
