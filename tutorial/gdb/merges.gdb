# Chapter 2 §1.3-1.4: every pop of the training heap (a stale entry is pushed again with its
# current count), then every merge the encoder makes in tok_bpe, in rank order.
# tutorial/gdb/run.sh tutorial/gdb/merges.gdb ./build/demos/bpe_demo "low lower lowest low 42+42=84" 1000 "lowest"
break @tokenizer.c:if (top.count == p->count) return top.p;@
commands
silent
printf "pop (%d,%d) pushed with count %ld, count now %ld\n", top.a, top.b, top.count, p->count
continue
end
break @tokenizer.c:sc->sym[i] = TOK_FIRST_MERGE + (int)top.count;@
commands
silent
printf "  tok_bpe: rank %ld at byte %d: %d + %d\n", top.count, top.p, top.a, top.b
continue
end
run
