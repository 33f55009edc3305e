// libFuzzer harness: tokenizer_load on arbitrary tokenizer.json text (tokenizer.c), through a
// directory (tokenizer_load reads DIR/tokenizer.json); an accepted tokenizer must encode and
// decode a short text.
#include "r1.h"
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[64], path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/r1_fuzz_tok_%ld", (long)getpid());
        mkdir(dir, 0755);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    Tokenizer t;
    char err[R1_ERR_LEN];
    if (tokenizer_load(&t, dir, err) == 0) {
        int ids[64];
        int n = tokenizer_encode(&t, "12 + 3 = 15 <think>", 19, ids, 64);
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= t.vocab_size) abort();
        tokenizer_free(&t);
    }
    return 0;
}
