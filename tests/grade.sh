#!/bin/sh
# make grade: runs each assignment's tests (tests/test_assignments.c, built as $1) in a process of
# its own, so that one assignment's crash or hang costs only its own points, and prints the
# points per assignment: an assignment's points times the share of its tests that pass. Writes
# the same as JSON to build/grade.json.
bin=${1:-build/test_assignments}
out=build/grade.json
[ -x "$bin" ] || { echo "grade: $bin not built"; exit 1; }
mkdir -p build/grade
total=0; max=0; json=""
printf "%-22s %8s %7s\n" assignment tests points
for line in $("$bin" --list | tr ' ' ':'); do
    name=${line%%:*}; pts=${line#*:}
    log=build/grade/$name.log
    timeout 120 "$bin" "$name" > "$log" 2>&1
    result=$(sed -n "s/^$name: passed \([0-9]*\) of \([0-9]*\)\$/\1 \2/p" "$log")
    if [ -n "$result" ]; then
        passed=${result% *}; tests=${result#* }
    else  # it crashed or timed out: nothing passed
        passed=0; tests=$(grep -c "^\[ RUN" "$log"); [ "$tests" -gt 0 ] || tests=1
    fi
    got=$(awk -v p="$pts" -v x="$passed" -v n="$tests" 'BEGIN { printf "%.1f", p * x / n }')
    printf "%-22s %4s/%-3s %5s/%s\n" "$name" "$passed" "$tests" "$got" "$pts"
    total=$(awk -v a="$total" -v b="$got" 'BEGIN { printf "%.1f", a + b }')
    max=$((max + pts))
    json="$json${json:+,}
    \"$name\": {\"points\": $got, \"max\": $pts, \"passed\": $passed, \"tests\": $tests}"
done
printf "%-22s %8s %5s/%s\n" total "" "$total" "$max"
printf '{"total": %s, "max": %s, "assignments": {%s\n}}\n' "$total" "$max" "$json" > "$out"
echo "grade: $out (each assignment's test output: build/grade/NAME.log)"
