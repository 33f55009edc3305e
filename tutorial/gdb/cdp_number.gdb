# Chapter 2 §3.2: countdown's verifier on "11 + 11" with [5, 11, 16]: the first 11 marks the given
# 11 as used; the second finds no unused copy and cdp_number gives up.
# tutorial/gdb/run.sh tutorial/gdb/cdp_number.gdb ./build/demos/verify '{"task":"countdown","numbers":[5,11,16],"target":22}' "11 + 11"
break cdp_number
run
finish
p *v
p q->used[0]@3
continue
advance @tasks.c:return 0; // not given, or every copy of it already used@
p *v
p q->given[0]@q->n
p q->used[0]@3
bt
