#!/bin/sh
# The import order of r1.c's sources (r1.h states it): a file may call only functions defined in
# the files before it. This compiles each file, reads the symbols it defines and the ones it
# needs (nm), and fails, naming the call, on any that points up or sideways.
#   usage: tests/check_layers.sh [CC]   (run by `make test`)
set -eu
ORDER="formats.c tokenizer.c kernels.c moe.c gqa.c r1.c mtp.c tasks.c grpo.c pipeline.c main.c"
CC=${1:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in $ORDER; do
    $CC -std=c11 -fopenmp -O0 -w -Wno-psabi -c -o "$tmp/$f.o" "$f"
    nm --defined-only "$tmp/$f.o" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort > "$tmp/$f.defines"
    nm --undefined-only "$tmp/$f.o" | awk '{print $NF}' | sort > "$tmp/$f.needs"
done
bad=0
below=""
for f in $ORDER; do
    for g in $ORDER; do
        [ "$g" = "$f" ] && continue
        case " $below " in *" $g "*) continue ;; esac  # g is below f: allowed
        calls=$(comm -12 "$tmp/$f.needs" "$tmp/$g.defines" | tr '\n' ' ')
        if [ -n "$calls" ]; then
            echo "layers: $f calls up into $g: $calls" >&2
            bad=1
        fi
    done
    below="$below $f"
done
[ $bad -eq 0 ] || { echo "layers: the import order is $ORDER (r1.h)" >&2; exit 1; }
echo "layers: every call points down $ORDER"
