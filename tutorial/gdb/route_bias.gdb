# Chapter 1 §5: the bias update changes a choice. Stops in moe_update_bias after step 1 (the loads
# of layer 3 and the new biases), then at call 22 of moe_route_token: step 2, layer 3, token 5.
# tutorial/gdb/run.sh tutorial/gdb/route_bias.gdb ./r1-debug train --config tiny --steps 2 --seq 8 --batch 1 --gamma 0.01
break moe_update_bias
break moe_route_token
ignore 2 21
run
p m->expert_load[3*8]@8
finish
p m->p.layers[3].router_bias[0]@8
continue
advance @moe.c:allowed[e] = kept[e / per_group];@
p s[0]@8
p choice
p group_score
p/d kept
advance @moe.c:if (c->norm_topk_prob) w[k] /= sum@
p idx[0]@2
p w[0]@2
finish
p layer
p t
p a->topk_w[t*2]@2
