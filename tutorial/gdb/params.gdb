# Chapter 1 §1.3: the parameter table of tiny, and where one tensor sits in the one float buffer.
# tutorial/gdb/run.sh tutorial/gdb/params.gdb ./r1-debug train --config tiny --steps 1 --seq 8 --batch 1
break model_forward
run
p m->n_tensors
p m->n_params
p m->table[0]
p m->table[4]
p m->p.layers[3].router - m->params
set $i = 0
while m->table[$i].offset != m->p.layers[3].router - m->params
  set $i = $i + 1
end
p $i
p m->table[$i]
p m->attn_scale
