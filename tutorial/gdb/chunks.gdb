# Chapter 2 §1.2: the chunks tokenizer_encode hands to tok_bpe, one line each, then the program's
# own output. tutorial/gdb/run.sh tutorial/gdb/chunks.gdb ./build/demos/bpe_demo x 265 "..."
break @tokenizer.c:int k = tok_bpe(t, s + begin@
commands
silent
printf "chunk [%zu,%zu) ", begin, end
output *(s + begin)@(end - begin)
echo \n
continue
end
run
