// bpe_demo.c: trains r1.c's BPE on TEXT (or on the file F with @F), prints the merges (the first
// 30), encodes WORDS token by token, decodes them back, and saves the tokenizer in DIR if given.
// usage: bpe_demo TEXT|@FILE VOCAB_SIZE WORDS [DIR]
#include "r1.h"
#include <stdlib.h>
#include <string.h>

static int utf8_ok(const unsigned char *s, int n) { // whole UTF-8 characters only?
    for (int i = 0; i < n;) {
        int k = s[i] < 0x80 ? 1 : s[i] >= 0xC2 && s[i] < 0xE0 ? 2 : s[i] >= 0xE0 && s[i] < 0xF0 ? 3
              : s[i] >= 0xF0 && s[i] < 0xF5 ? 4 : 0;
        if (k == 0 || i + k > n) return 0;
        for (int j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static void show(const Tokenizer *t, int id) { // a token in quotes: \n, and \xNN for part of a character
    const unsigned char *s = t->bytes[id];
    int ok = utf8_ok(s, t->len[id]);
    putchar('"');
    for (int i = 0; i < t->len[id]; i++)
        if (s[i] == '\n') printf("\\n");
        else if (s[i] >= 0x80 && !ok) printf("\\x%02x", s[i]);
        else putchar(s[i]);
    putchar('"');
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bpe_demo TEXT|@FILE VOCAB_SIZE WORDS [DIR]\n");
        return 1;
    }
    char err[R1_ERR_LEN], *text = argv[1];
    size_t len = strlen(text);
    if (text[0] == '@' && !(text = read_file(argv[1] + 1, &len, err))) {
        fprintf(stderr, "r1: %s\n", err);
        return 1;
    }
    Tokenizer t;
    if (tokenizer_train(&t, text, len, atoi(argv[2]), err)) {
        fprintf(stderr, "r1: %s\n", err);
        return 1;
    }
    for (int i = 0; i < t.n_merges && i < 30; i++) {
        int id = TOK_N_SPECIAL + 256 + i, a = t.merges[i][0], b = t.merges[i][1];
        printf("merge %d: %3d + %3d -> %d  ", i, a, b, id);
        show(&t, a), printf(" + "), show(&t, b), printf(" -> "), show(&t, id), putchar('\n');
    }
    printf("%d merges, vocab_size %d\n", t.n_merges, t.vocab_size);
    int ids[4096], n = tokenizer_encode(&t, argv[3], strlen(argv[3]), ids, 4096);
    printf("encode: %d tokens:", n);
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n       ");
    for (int i = 0; i < n; i++) printf(" "), show(&t, ids[i]);
    char *back = tokenizer_decode(&t, ids, n);
    printf("\ndecode: %s\n", strcmp(back, argv[3]) == 0 ? "the same text" : "DIFFERENT");
    free(back);
    if (argc > 4 && tokenizer_save(&t, argv[4], err)) {
        fprintf(stderr, "r1: %s\n", err);
        return 1;
    }
    tokenizer_free(&t);
    return 0;
}
