# Chapter 1, exercise 1: every routing decision of step 1, one line per MoE layer: a breakpoint
# in sort_by_expert (moe_forward calls it once per layer, right after routing every token) that
# prints topk_idx from moe_forward's frame and goes on.
# tutorial/gdb/run.sh tutorial/gdb/route_all.gdb ./r1-debug train --config tiny --steps 1 --seq 8 --batch 1
break sort_by_expert
commands
  silent
  up-silently
  printf "layer %d  topk_idx ", layer
  output a->topk_idx[0]@16
  echo \n
  continue
end
run
