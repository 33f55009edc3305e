#!/usr/bin/env bash
# Runs one of the tutorial's gdb sessions in batch mode: tutorial/gdb/run.sh NAME.gdb PROGRAM ARGS...
# A session names the lines it stops on by their text, not their number (numbers move when the
# code is edited): "@tokenizer.c:int k = tok_bpe(@" becomes "tokenizer.c:826", the first line of
# tokenizer.c holding that text. The script with the numbers filled in goes to build/gdb/NAME.gdb.
# gdb's "[Thread debugging ...]" and "[Inferior 1 ... exited]" lines are left out.
set -euo pipefail
script=$1
shift
command -v gdb >/dev/null || { echo "gdb/run.sh: gdb is not installed: skipped" >&2; exit 0; }
mkdir -p build/gdb
resolved=build/gdb/$(basename "$script")
while IFS= read -r line; do
    while [[ $line =~ @([A-Za-z0-9_/]+\.c):([^@]+)@ ]]; do
        file=${BASH_REMATCH[1]} text=${BASH_REMATCH[2]}
        n=$(grep -nF -- "$text" "$file" | head -1 | cut -d: -f1)
        [ -n "$n" ] || { echo "gdb/run.sh: $script: no line of $file holds '$text'" >&2; exit 1; }
        line=${line/"${BASH_REMATCH[0]}"/$file:$n}
    done
    printf '%s\n' "$line"
done < "$script" > "$resolved"
gdb -batch -nx -x "$resolved" --args "$@" 2>&1 | grep -v -e '^\[Thread debugging' -e '^Using host libthread_db' \
    -e '^\[Inferior 1 (process [0-9]*) exited' || true
