#!/bin/sh
# Thread scaling of `./r1 bench --quick` (the small preset): runs it at 1, 2, 4, 8 and 16 threads
# (or the counts given: tests/bench_scaling.sh 1 2 4) and prints one table, each rate also as a
# multiple of the 1-thread run. Run from the repository root after `make r1`; the raw output of
# each run is kept in bench-scaling-T.txt, with the training step part by part (`--parts`: which
# part scales worst). On the device's 16-core CPU: one call, ~3-5 minutes.
# To compare OpenMP's wait policies there: OMP_WAIT_POLICY=active tests/bench_scaling.sh (spinning
# threads), OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=0 (sleeping at once); r1's own default is a
# short spin, then sleep (GOMP_SPINCOUNT=1000, main.c).
#   FMA peak    fma_peak_gflops of all T threads (kernels.c: 16 chains of vector FMAs)
#   train       the training step (8 x 256 tokens), tokens/s, and its share of that peak
#   gen 1/16/64 greedy decoding with the latent cache: 1 stream, 16 and 64 streams in batches
#   64 %fwd     64 streams' tokens/s as a share of the training forward's at the same threads
#   grpo        a GRPO step at the pipeline's settings (8 x 8 rollouts of up to 200 tokens), the
#               second of two (seconds), and its rollouts' share
set -e
counts=${*:-1 2 4 8 16}
[ -x ./r1 ] || { echo "bench_scaling.sh: build ./r1 first (make r1)" >&2; exit 1; }
field() {  # field FILE PATTERN AWK_FIELD: the first line matching PATTERN, one field
    grep -m1 -- "$2" "$1" | awk "{print \$$3}"
}
echo "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset} (unset both: r1 sets passive and 1000)"
printf '%7s %9s %9s %6s %9s %9s %9s %8s %8s %6s\n' threads "FMA peak" train "%peak" "gen 1" \
    "gen 16" "gen 64" "64 %fwd" "grpo s" "gen %"
base_train=; base_g1=; base_g16=; base_g64=; base_grpo=
for t in $counts; do
    out=bench-scaling-$t.txt
    OMP_NUM_THREADS=$t ./r1 bench --quick --steps 3 --parts > "$out"
    peak=$(grep -m1 "FMA peak" "$out" | sed 's/.*GFLOP\/s on 1 thread, \([0-9.]*\) on.*/\1/')
    train=$(field "$out" "train step " 4)
    share=$(grep -m1 "of the FMA peak" "$out" | sed 's/.*at \([0-9]*\)%.*/\1/')
    g1=$(field "$out" "(1 stream" 3)
    g16=$(field "$out" "(16 streams" 3)
    g64=$(field "$out" "(64 streams" 3)
    g64share=$(grep -m1 "(64 streams" "$out" | sed 's/.*, \([0-9]*\)% of the training.*/\1/')
    grpo=$(grep -m1 "grpo step 2" "$out" | awk '{print $5}')
    genshare=$(grep -m1 "grpo step 2" "$out" | sed 's/.*rollouts [0-9.]* s (\([0-9]*\)%.*/\1/')
    [ -n "$base_train" ] || { base_train=$train; base_g1=$g1; base_g16=$g16; base_g64=$g64; base_grpo=$grpo; }
    printf '%7s %9s %9s %5s%% %9s %9s %9s %7s%% %8s %5s%%\n' "$t" "$peak" "$train" "$share" "$g1" \
        "$g16" "$g64" "$g64share" "$grpo" "$genshare"
    awk -v t="$train" -v bt="$base_train" -v a="$g1" -v ba="$base_g1" -v b="$g16" \
        -v bb="$base_g16" -v c="$g64" -v bc="$base_g64" -v g="$grpo" -v bg="$base_grpo" \
        'BEGIN { printf "%7s %9s %8.2fx %6s %8.2fx %8.2fx %8.2fx %8s %7.2fx\n", "", "", t / bt, "",
                 a / ba, b / bb, c / bc, "", bg / g }'
done
echo "(second lines: speed-up over the first thread count; raw output in bench-scaling-T.txt)"
