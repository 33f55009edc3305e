# Chapter 1 §2: naive MLA stepped as plain loops (R1_PLAIN_ATTENTION=1: attention_forward_head_loops
# in r1.c instead of the tiled kernel). Stops at row i = 2 of head 0 of layer 0 once its scores
# are softmaxed: P's row, then the output row of that head.
# R1_PLAIN_ATTENTION=1 tutorial/gdb/run.sh tutorial/gdb/naive_mla.gdb ./r1-debug forward --model tests/fixtures/hf-tiny --input tests/fixtures/hf-tiny/reference.safetensors --out /tmp/r1demo/fwd.safetensors
break attention_forward_head_loops if b == 0 && h == 0
run
p T
p m->attn_scale
break @r1.c:for (int j = i + 1; j < T; j++) p[j] = 0.0f;  // masked: P = 0@ if i == 2
continue
p i
p p[0]@3
p p[0] + p[1] + p[2]
advance @r1.c:for (int e = 0; e < dv; e++) {@
finish
p a->att_out[(2 * 4 + 0) * 8]@8
