# Chapter 2 §1.3, step 3: tokenizer_train just before its merge loop, the words (distinct chunks)
# with their frequencies, every pair with its count, and the top of the heap.
# tutorial/gdb/run.sh tutorial/gdb/pairs.gdb ./build/demos/bpe_demo "low lower lowest low 42+42=84" 1000 "lowest"
break @tokenizer.c:t->n_merges = tok_learn_merges(@
run
printf "%d distinct chunks (word: bytes x frequency)\n", words.n
set $w = 0
while $w < words.n
  printf "  %d: \"", $w
  set $i = 0
  while $i < words.len[$w]
    printf "%c", words.sym[words.start[$w] + $i] - 9
    set $i = $i + 1
  end
  printf "\" x%ld\n", words.freq[$w]
  set $w = $w + 1
end
printf "%d pairs (a,b): count\n", tr.n_pairs
set $i = 0
while $i < tr.n_pairs
  printf "  (%d,%d) \"%c%c\": %ld\n", tr.pairs[$i].a, tr.pairs[$i].b, tr.pairs[$i].a - 9, tr.pairs[$i].b - 9, tr.pairs[$i].count
  set $i = $i + 1
end
printf "heap top: (%d,%d) count %ld\n", tr.heap[0].a, tr.heap[0].b, tr.heap[0].count
