# Chapter 1 §2: the latent KV cache of the hf-tiny fixture (dc = 16, dr = 4) at position 3 of
# layer 0, once mla_decode_attend has written it.
# tutorial/gdb/run.sh tutorial/gdb/cache.gdb ./r1-debug sample --model tests/fixtures/hf-tiny --prompt-ids "8 3 57 32" --max-new-tokens 6
break mla_decode_attend if pos == 3 && l == 0
run
finish
p s[0]->c_kv[3*16]@16
p s[0]->k_pe[3*4]@4
