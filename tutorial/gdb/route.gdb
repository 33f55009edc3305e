# Chapter 1 §5: moe_route_token for the first token of the first MoE layer (layer 3 of tiny) in
# the first training step: the scores, the groups, the top-K and the weights.
# tutorial/gdb/run.sh tutorial/gdb/route.gdb ./r1-debug train --config tiny --steps 1 --seq 8 --batch 1
break moe_route_token
run
p logits[0]@8
p bias[0]@8
advance @moe.c:allowed[e] = kept[e / per_group];@
p s[0]@8
p choice
p group_score
p/d kept
advance @moe.c:if (c->norm_topk_prob) w[k] /= sum@
p idx[0]@2
p w[0]@2
p sum
finish
p t
p a->topk_idx[t*2]@2
p a->topk_w[t*2]@2
