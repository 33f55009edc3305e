# Chapter 4 §4.5: one GRPO step with two passes (--mu 2) and the language reward, so that some
# advantages are not 0 and the second pass sees a moved policy. Stops in grpo_token at the first
# token with A != 0 on pass 1 (the ratio, the k3 KL, the weight, g), then on pass 2 at one token
# per clip branch, then prints the gradient norm adamw_step returns.
# tutorial/gdb/run.sh tutorial/gdb/grpo.gdb ./r1-debug grpo --model runs/base --out /tmp/grpo_gdb --task all --levels 1-5 --steps 1 --prompts 2 --group 4 --max-new-tokens 48 --w-language 1 --mu 2
set pagination off
set print frame-info short-location
break @grpo.c:out.loss = -w * (objective - gc->beta * k3);@ if A != 0
run
printf "pass 1: A %g  lp %.9g  old_lp %.9g  rho %.9g\n", A, lp, old_lp, rho
printf "  ref_lp %.9g  pi_ref/pi %.9g  k3 %g  dk3 %g  w %g = 1/(B |o_b|)\n", ref_lp, ratio_ref, k3, dk3, w
up
printf "  in grpo_loss: row b %d, position t %d predicts token %d\n", b, t, ids[target]
down
break @grpo.c:dz[o] -= g;@
continue
printf "  g = w (dobj - beta dk3) = %.9g\n", g
delete
break grpo_loss
continue
delete
break @grpo.c:out.loss = -w * (objective - gc->beta * k3);@ if rho != rho_clip && dobj != 0
continue
printf "pass 2: A %g  rho %g outside [%g, %g]  min(%g, %g): unclipped, dobj %g\n", A, rho, lo, hi, unclipped, clip, dobj
delete
break @grpo.c:out.loss = -w * (objective - gc->beta * k3);@ if A != 0 && dobj == 0
continue
printf "pass 2: A %g  rho %g outside [%g, %g]  min(%g, %g): clipped, dobj %g\n", A, rho, lo, hi, unclipped, clip, dobj
delete
break adamw_step
continue
finish
