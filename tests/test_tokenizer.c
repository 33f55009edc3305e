// tests/test_tokenizer.c: the byte-level BPE tokenizer (tokenizer.c).
//   built by `make test` as build/test_tokenizer (it includes kernels.c and r1.c and links the
//   other sources). Uses only the tokenizer API of r1.h; the pre-tokenizer and BPE are checked against a
//   slow reference written here from the rule's statement (the regex in tokenizer.json).
//
//   build/test_tokenizer                    runs the tests
//   build/test_tokenizer --hf-fixture DIR   writes a trained tokenizer and expected ids to DIR
//                                           (for tests/check_hf_tokenizer.py)
//   build/test_tokenizer --bench FILE [V]   times training (vocab V, default 1024) and encoding
#include "kernels.c"
#include "r1.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

static const char *const SPECIAL[TOK_N_SPECIAL] = {
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>",
    "<｜Assistant｜>", "<think>", "</think>", "<answer>", "</answer>"};

typedef struct { uint64_t s; } TRng;
static uint64_t trng_next(TRng *r) { // splitmix64
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int trng_int(TRng *r, int n) { return (int)(trng_next(r) % (uint64_t)n); }

// A growing byte buffer.
typedef struct {
    char *p;
    size_t n, cap;
} Buf;
static void buf_add(Buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void buf_puts(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    buf_add(b, tmp, (size_t)n);
}

// A deterministic training corpus of about `bytes` bytes: English, Chinese, arithmetic in the R1
// format, a little code with indentation and tabs.
static char *make_corpus(size_t bytes, uint64_t seed, size_t *len) {
    static const char *const en[] = {
        "the", "answer", "is", "we", "need", "to", "compute", "first", "then", "check", "sum",
        "of", "and", "so", "Let's", "think", "step", "by", "wait", "that", "number", "total",
        "apples", "Alice", "has", "gives", "Bob", "how", "many", "are", "left", "result", "correct"};
    static const char *const zh[] = {"计算", "答案", "我们", "首先", "然后", "检查", "结果", "是",
                                     "苹果", "一共", "多少", "，", "。", "：", "等于", "加", "减"};
    static const char *const code[] = {
        "def add(a, b):\n    return a + b\n", "for (int i = 0; i < n; i++) {\n\tsum += x[i];\n}\n",
        "if x == 3:\n        print(\"ok\")\n"};
    TRng r = {seed};
    Buf b = {0};
    while (b.n < bytes) {
        int kind = trng_int(&r, 10);
        if (kind < 4) { // an English sentence
            int n = 4 + trng_int(&r, 10);
            for (int i = 0; i < n; i++) {
                if (i) buf_puts(&b, " ");
                buf_puts(&b, en[trng_int(&r, (int)(sizeof(en) / sizeof(*en)))]);
                if (trng_int(&r, 8) == 0) buf_printf(&b, " %d", trng_int(&r, 1000));
            }
            buf_puts(&b, trng_int(&r, 3) ? ". " : ".\n");
        } else if (kind < 6) { // Chinese
            int n = 3 + trng_int(&r, 8);
            for (int i = 0; i < n; i++) buf_puts(&b, zh[trng_int(&r, (int)(sizeof(zh) / sizeof(*zh)))]);
            if (trng_int(&r, 2)) buf_printf(&b, " %d+%d=%d", 3, 4, 7);
            buf_puts(&b, "。\n");
        } else if (kind < 9) { // arithmetic in the R1 format
            int x = trng_int(&r, 1000), y = trng_int(&r, 1000);
            buf_printf(&b, "<｜User｜>What is %d+%d?<｜Assistant｜><think>\n%d+%d=%d. Let's check: %d-%d=%d.\n"
                           "</think>\n<answer>%d</answer><｜end▁of▁sentence｜>\n\n",
                       x, y, x, y, x + y, x + y, y, x, x + y);
        } else {
            buf_puts(&b, code[trng_int(&r, 3)]);
        }
    }
    *len = b.n;
    return b.p;
}

// The group state: a 300 kB training corpus, made once.
typedef struct {
    char *p;
    size_t n;
} Corpus;

static int setup_corpus(void **state) {
    Corpus *c = malloc(sizeof(Corpus));
    if (!c) return -1;
    c->p = make_corpus(300000, 7, &c->n);
    *state = c;
    return 0;
}
static int teardown_corpus(void **state) {
    Corpus *c = *state;
    free(c->p);
    free(c);
    return 0;
}

static void train_or_fail(Tokenizer *t, const char *text, size_t len, int vocab) {
    char err[R1_ERR_LEN] = "";
    int rc = tokenizer_train(t, text, len, vocab, err);
    if (rc) fail_msg("tokenizer_train: %s", err);
}

// Encodes with a buffer of len + 16 ids (always enough: at most one id per byte).
static int *encode_all(const Tokenizer *t, const char *text, size_t len, int *n) {
    int cap = (int)len + 16;
    int *ids = malloc(sizeof(int) * (size_t)cap);
    assert_non_null(ids);
    *n = tokenizer_encode(t, text, len, ids, cap);
    assert_true(*n >= 0);
    return ids;
}

// decode(ids) must give back exactly text[0..len) (which may hold NULs).
static void assert_round_trip(const Tokenizer *t, const char *text, size_t len) {
    int n;
    int *ids = encode_all(t, text, len, &n);
    char *back = tokenizer_decode(t, ids, n);
    assert_non_null(back);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)t->len[ids[i]];
    if (total != len || memcmp(back, text, len) != 0)
        fail_msg("round trip failed for a %zu-byte text (%d ids, %zu bytes back)", len, n, total);
    assert_int_equal(back[len], 0);
    free(back);
    free(ids);
}

static void make_temp_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/test_tokenizer_XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_dir(const char *dir) {
    char path[600];
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.json.tmp",
                           "tokenizer_config.json.tmp", "expected.json"};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        remove(path);
    }
    assert_int_equal(rmdir(dir), 0); // fails if something else was left behind
}

// ----------------------------------------------------------------------------------------------
// The reference: the pre-tokenizer regex of tokenizer.json, alternative by alternative, and
// GPT-2's BPE (merge every occurrence of the lowest-rank pair, repeat), both slow and simple.
// ----------------------------------------------------------------------------------------------
//   [0-9] | ' '?L+ | ' '?P+ | ' '+(?![LP]) | W+
//   L = [^\x00-\x40\x5B-\x60\x7B-\x7F]   P = [\x00-\x08\x0E-\x1F\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7F]
//   W = [\x09-\x0D]
static int ref_L(unsigned c) { return !(c <= 0x40 || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7F)); }
static int ref_P(unsigned c) {
    return c <= 0x08 || (c >= 0x0E && c <= 0x1F) || (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
           (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7F);
}
static int ref_W(unsigned c) { return c >= 0x09 && c <= 0x0D; }

// The length of the match at s[i] (i < n), trying the alternatives in order.
static size_t ref_match(const unsigned char *s, size_t i, size_t n) {
    if (s[i] >= '0' && s[i] <= '9') return 1;
    size_t j = i + (s[i] == ' '), k;
    for (k = j; k < n && ref_L(s[k]); k++) {}
    if (k > j) return k - i;
    if (j > i) { // ' '?L+ with the optional space left out
        for (k = i; k < n && ref_L(s[k]); k++) {}
        if (k > i) return k - i;
    }
    for (k = j; k < n && ref_P(s[k]); k++) {}
    if (k > j) return k - i;
    for (k = i; k < n && s[k] == ' '; k++) {}
    for (size_t e = k; e > i; e--) // ' '+ backtracks until the lookahead holds
        if (e == n || !(ref_L(s[e]) || ref_P(s[e]))) return e - i;
    for (k = i; k < n && ref_W(s[k]); k++) {}
    if (k > i) return k - i;
    fail_msg("no alternative matches byte 0x%02x", s[i]);
    return 1;
}

// GPT-2's bpe(): rank[a * V + b] is the merge rank of (a, b) or -1.
static int ref_bpe(const int *rank, int V, const unsigned char *s, size_t n, int *out) {
    int *w = malloc(sizeof(int) * (n ? n : 1)), m = (int)n;
    for (size_t i = 0; i < n; i++) w[i] = TOK_N_SPECIAL + s[i];
    for (;;) {
        int best = -1;
        for (int i = 0; i + 1 < m; i++) {
            int r = rank[w[i] * V + w[i + 1]];
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        int o = 0;
        for (int i = 0; i < m;) {
            if (i + 1 < m && rank[w[i] * V + w[i + 1]] == best) {
                w[o++] = TOK_N_SPECIAL + 256 + best;
                i += 2;
            } else {
                w[o++] = w[i++];
            }
        }
        m = o;
    }
    memcpy(out, w, sizeof(int) * (size_t)m);
    free(w);
    return m;
}

// The whole reference encoder: special tokens (leftmost, then longest), the regex, BPE.
static int ref_encode(const Tokenizer *t, const int *rank, const char *text, size_t len, int *out) {
    const unsigned char *s = (const unsigned char *)text;
    int n = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t at = len, sl = 0;
        int sp = -1;
        for (size_t i = pos; i < len && sp < 0; i++)
            for (int id = 0; id < TOK_N_SPECIAL; id++) {
                size_t l = strlen(SPECIAL[id]);
                if (l <= len - i && memcmp(s + i, SPECIAL[id], l) == 0 && l > sl) {
                    sp = id;
                    at = i;
                    sl = l;
                }
            }
        while (pos < at) {
            size_t m = ref_match(s, pos, at);
            n += ref_bpe(rank, t->vocab_size, s + pos, m, out + n);
            pos += m;
        }
        if (sp >= 0) {
            out[n++] = sp;
            pos = at + sl;
        }
    }
    return n;
}

static int *ref_rank_table(const Tokenizer *t) {
    int V = t->vocab_size;
    int *rank = malloc(sizeof(int) * (size_t)V * (size_t)V);
    assert_non_null(rank);
    for (size_t i = 0; i < (size_t)V * (size_t)V; i++) rank[i] = -1;
    for (int i = 0; i < t->n_merges; i++) rank[t->merges[i][0] * V + t->merges[i][1]] = i;
    return rank;
}

// BPE training done slowly: recount every pair from scratch before each merge, take the most
// frequent (ties: lowest (a, b)), skipping a pair whose bytes some merge already made.
static int ref_train(const char *text, size_t len, int V, int (*merges)[2]) {
    const unsigned char *s = (const unsigned char *)text;
    // the chunks (a chunk seen again is just another word: same counts as a word x frequency)
    int **words = NULL, *wl = NULL, nw = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t at = len, sl = 0;
        for (size_t i = pos; i < len && !sl; i++)
            for (int id = 0; id < TOK_N_SPECIAL; id++) {
                size_t l = strlen(SPECIAL[id]);
                if (l <= len - i && memcmp(s + i, SPECIAL[id], l) == 0 && l > sl) {
                    at = i;
                    sl = l;
                }
            }
        while (pos < at) {
            size_t m = ref_match(s, pos, at);
            words = realloc(words, sizeof(int *) * (size_t)(nw + 1));
            wl = realloc(wl, sizeof(int) * (size_t)(nw + 1));
            words[nw] = malloc(sizeof(int) * m);
            for (size_t k = 0; k < m; k++) words[nw][k] = TOK_N_SPECIAL + s[pos + k];
            wl[nw++] = (int)m;
            pos += m;
        }
        pos = at + sl;
    }
    long *count = malloc(sizeof(long) * (size_t)V * (size_t)V);
    char **made = calloc((size_t)V, sizeof(char *)); // made[id]: bytes of merged token id
    int *made_len = calloc((size_t)V, sizeof(int));
    char *banned = calloc((size_t)V * (size_t)V, 1);
    int n = 0;
    while (TOK_N_SPECIAL + 256 + n < V) {
        memset(count, 0, sizeof(long) * (size_t)V * (size_t)V);
        for (int w = 0; w < nw; w++)
            for (int k = 0; k + 1 < wl[w]; k++) count[(size_t)words[w][k] * (size_t)V + (size_t)words[w][k + 1]]++;
        int a = -1, b = -1;
        for (;;) {
            long best = 0;
            a = -1;
            for (int x = 0; x < V; x++)
                for (int y = 0; y < V; y++)
                    if (count[(size_t)x * V + y] > best && !banned[(size_t)x * V + y]) {
                        best = count[(size_t)x * V + y];
                        a = x;
                        b = y;
                    }
            if (a < 0) break;
            // bytes of the candidate
            char buf[4096];
            int l = 0;
            for (int k = 0; k < 2; k++) {
                int id = k ? b : a;
                if (id < TOK_N_SPECIAL + 256) buf[l++] = (char)(id - TOK_N_SPECIAL);
                else {
                    memcpy(buf + l, made[id], (size_t)made_len[id]);
                    l += made_len[id];
                }
            }
            int dup = 0;
            for (int id = TOK_N_SPECIAL + 256; id < TOK_N_SPECIAL + 256 + n; id++)
                dup |= made_len[id] == l && memcmp(made[id], buf, (size_t)l) == 0;
            if (dup) {
                banned[(size_t)a * V + b] = 1;
                continue;
            }
            int c = TOK_N_SPECIAL + 256 + n;
            made[c] = malloc((size_t)l);
            memcpy(made[c], buf, (size_t)l);
            made_len[c] = l;
            break;
        }
        if (a < 0) break;
        int c = TOK_N_SPECIAL + 256 + n;
        merges[n][0] = a;
        merges[n][1] = b;
        n++;
        for (int w = 0; w < nw; w++) {
            int o = 0;
            for (int k = 0; k < wl[w];) {
                if (k + 1 < wl[w] && words[w][k] == a && words[w][k + 1] == b) {
                    words[w][o++] = c;
                    k += 2;
                } else {
                    words[w][o++] = words[w][k++];
                }
            }
            wl[w] = o;
        }
    }
    for (int w = 0; w < nw; w++) free(words[w]);
    for (int id = 0; id < V; id++) free(made[id]);
    free(words);
    free(wl);
    free(count);
    free(made);
    free(made_len);
    free(banned);
    return n;
}

// Random text made of pieces that stress the rules: digits, runs of spaces, Chinese, emoji,
// punctuation, special tokens and near misses; with `bytes`, also arbitrary bytes.
static size_t random_text(TRng *r, char *out, size_t cap, int bytes) {
    static const char *const pieces[] = {
        " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "\v", "\f", " \n", "0", "1", "2", "3", "4", "5", "6",
        "7", "8", "9", "+", "-", "*", "/", "=", "(", ")", ".", ",", "'", "!?", "...", "\"", "\\", "_",
        "the", "answer", "Let's", " check", "Hello", "World", "x", "A", "z", "计算", "答案", "，", "。",
        "一共", "😀", "🤔", "é", "ñ", "Ω", "<", ">", "</", "<thin", "think>", "<think", "<｜User",
        "<think>", "</think>", "<answer>", "</answer>", "<｜User｜>", "<｜Assistant｜>",
        "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "\x01", "\x1f", "\x7f", "~",
        "`", "{", "}", "[", "]", "@", "#", "$", "%", "^", "&", "|", ":", ";"};
    int np = (int)(sizeof(pieces) / sizeof(*pieces));
    size_t n = 0, want = (size_t)trng_int(r, (int)cap / 2);
    while (n < want) {
        if (bytes && trng_int(r, 6) == 0) {
            out[n++] = (char)trng_int(r, 256); // anything, NUL and invalid UTF-8 included
            continue;
        }
        const char *p = pieces[trng_int(r, np)];
        size_t l = strlen(p);
        if (n + l >= cap) break;
        memcpy(out + n, p, l);
        n += l;
    }
    return n;
}

// ----------------------------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------------------------

// With no merges, every byte is its own token and the specials are recognised.
static void test_bytes_only(void **state) {
    (void)state;
    Tokenizer t;
    train_or_fail(&t, "abc", 3, TOK_N_SPECIAL + 256);
    assert_int_equal(t.vocab_size, 265);
    assert_int_equal(t.n_merges, 0);
    const char text[] = "a\x00\xff<think>";
    int ids[32];
    int n = tokenizer_encode(&t, text, sizeof(text) - 1, ids, 32);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 9 + 'a');
    assert_int_equal(ids[1], 9);
    assert_int_equal(ids[2], 9 + 255);
    assert_int_equal(ids[3], TOK_THINK);
    for (int id = 0; id < TOK_N_SPECIAL; id++) {
        assert_int_equal(t.len[id], (int)strlen(SPECIAL[id]));
        assert_memory_equal(t.bytes[id], SPECIAL[id], strlen(SPECIAL[id]));
    }
    for (int b = 0; b < 256; b++) {
        assert_int_equal(t.len[9 + b], 1);
        assert_int_equal(t.bytes[9 + b][0], b);
    }
    tokenizer_free(&t);
}

// Hand-traced: chunks "aaab" and " aaab" (the space goes with the word after it). Pair counts:
// (a,a) 2+2 = 4, (a,b) 2, (' ',a) 1 -> merge 0 is (a,a) = 265 "aa". Then the words are aa|a|b and
// ' '|aa|a|b: (aa,a) 2, (a,b) 2, (' ',aa) 1; the tie goes to the lower ids: (a,b) = (106,107)
// before (265,106) -> merge 1 is (a,b) = 266 "ab". Asked for more, BPE goes on with
// (aa,ab) = 267 "aaab", (' ',aaab) = 268 " aaab", and then runs out of pairs.
static void test_hand_traced(void **state) {
    (void)state;
    const int a = 9 + 'a', b = 9 + 'b', sp = 9 + ' ';
    Tokenizer t;
    train_or_fail(&t, "aaab aaab", 9, 267);
    assert_int_equal(t.vocab_size, 267);
    assert_int_equal(t.n_merges, 2);
    assert_int_equal(t.merges[0][0], a);
    assert_int_equal(t.merges[0][1], a);
    assert_int_equal(t.merges[1][0], a);
    assert_int_equal(t.merges[1][1], b);
    assert_int_equal(t.len[265], 2);
    assert_memory_equal(t.bytes[265], "aa", 2);
    assert_memory_equal(t.bytes[266], "ab", 2);
    int ids[16];
    assert_int_equal(tokenizer_encode(&t, "aaab aaab", 9, ids, 16), 5);
    int want[] = {265, 266, sp, 265, 266};
    assert_memory_equal(ids, want, sizeof(want));
    assert_int_equal(tokenizer_encode(&t, "aaaa", 4, ids, 16), 2); // aa|aa
    assert_int_equal(ids[0], 265);
    assert_int_equal(ids[1], 265);
    assert_int_equal(tokenizer_encode(&t, "aaa", 3, ids, 16), 2); // leftmost first: aa|a
    assert_int_equal(ids[0], 265);
    assert_int_equal(ids[1], a);
    assert_int_equal(tokenizer_encode(&t, "bab", 3, ids, 16), 2); // b|ab
    assert_int_equal(ids[0], b);
    assert_int_equal(ids[1], 266);
    tokenizer_free(&t);

    train_or_fail(&t, "aaab aaab", 9, 1000);
    assert_int_equal(t.n_merges, 4); // ran out of pairs: fewer merges than asked for
    assert_int_equal(t.vocab_size, 269);
    assert_int_equal(t.merges[2][0], 265);
    assert_int_equal(t.merges[2][1], 266);
    assert_int_equal(t.merges[3][0], sp);
    assert_int_equal(t.merges[3][1], 267);
    assert_int_equal(tokenizer_encode(&t, "aaab aaab", 9, ids, 16), 2);
    assert_int_equal(ids[0], 267);
    assert_int_equal(ids[1], 268);
    tokenizer_free(&t);
}

// With a vocabulary big enough to merge everything, every chunk becomes one token: decoding the
// tokens one by one shows the pre-tokenizer's chunks.
static void test_chunks(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *chunks[24];
    } cases[] = {
        {"计算 123+45=168. Let's  check:\n\n3*5",
         {"计算", " ", "1", "2", "3", "+", "4", "5", "=", "1", "6", "8", ".", " Let", "'", "s", " ", " check",
          ":", "\n\n", "3", "*", "5", NULL}},
        {"a   b \t c  1 \n", {"a", "  ", " b", " ", "\t", " c", "  ", "1", " ", "\n", NULL}},
        {"x<think>  </think>y ", {"x", "<think>", "  ", "</think>", "y", " ", NULL}},
        {" (3+4)*2 == 14?!", {" (", "3", "+", "4", ")*", "2", " ==", " ", "1", "4", "?!", NULL}},
        {"😀😀 é\r\n\tok", {"😀😀", " é", "\r\n\t", "ok", NULL}},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
        const char *text = cases[c].text;
        Tokenizer t;
        train_or_fail(&t, text, strlen(text), 5000);
        int n;
        int *ids = encode_all(&t, text, strlen(text), &n);
        int k = 0;
        while (cases[c].chunks[k]) k++;
        if (n != k) fail_msg("case %zu: %d tokens, expected %d chunks", c, n, k);
        for (int i = 0; i < n; i++) {
            char *s = tokenizer_decode(&t, &ids[i], 1);
            if (strcmp(s, cases[c].chunks[i]) != 0)
                fail_msg("case %zu: chunk %d is \"%s\", expected \"%s\"", c, i, s, cases[c].chunks[i]);
            free(s);
        }
        free(ids);
        tokenizer_free(&t);
    }
}

// tokenizer_encode == the slow reference (regex alternatives + GPT-2 BPE) on random text, with a
// tokenizer trained on the corpus; decode gives the text back.
static void test_matches_reference(void **state) {
    const Corpus *c = *state;
    Tokenizer t;
    train_or_fail(&t, c->p, c->n, 800);
    assert_int_equal(t.vocab_size, 800);
    int *rank = ref_rank_table(&t);
    TRng r = {42};
    char text[4096];
    int ids[4096 + 16], want[4096 + 16];
    for (int it = 0; it < 3000; it++) {
        size_t len = random_text(&r, text, sizeof(text), it % 2);
        int n = tokenizer_encode(&t, text, len, ids, (int)len + 16);
        int m = ref_encode(&t, rank, text, len, want);
        if (n != m || memcmp(ids, want, sizeof(int) * (size_t)n) != 0) {
            int i = 0;
            while (i < n && i < m && ids[i] == want[i]) i++;
            fail_msg("text %d (%zu bytes): %d ids vs %d from the reference, first difference at %d", it, len,
                     n, m, i);
        }
        assert_round_trip(&t, text, len);
    }
    // the corpus itself, in pieces
    for (size_t off = 0; off + 5000 < c->n; off += 50000) {
        int n = tokenizer_encode(&t, c->p + off, 5000, ids, 4096 + 16);
        assert_true(n > 0);
        int m = ref_encode(&t, rank, c->p + off, 5000, want);
        assert_int_equal(n, m);
        assert_memory_equal(ids, want, sizeof(int) * (size_t)n);
    }
    free(rank);
    tokenizer_free(&t);
}

// tokenizer_train (incremental pair counts, lazy heap) == the slow reference trainer, on a
// slice of the corpus, on random text (specials, runs of one byte), and until pairs run out.
static void test_train_matches_reference(void **state) {
    const Corpus *c = *state;
    TRng r = {11};
    for (int it = 0; it < 6; it++) {
        char *text;
        size_t len;
        int V = 300 + 60 * it;
        if (it < 2) {
            len = 20000;
            text = malloc(len);
            memcpy(text, c->p + 1000 * (size_t)it, len);
        } else {
            text = malloc(3000);
            len = random_text(&r, text, 3000, it % 2);
            if (it == 5) { // long runs of a byte: overlapping pairs (a,a)
                for (size_t k = 0; k < len; k++) text[k] = k % 97 < 60 ? 'a' : text[k];
                V = 2000; // more than there are pairs: training stops early
            }
        }
        Tokenizer t;
        train_or_fail(&t, text, len, V);
        int(*want)[2] = malloc(sizeof(int[2]) * (size_t)V);
        int n = ref_train(text, len, V, want);
        if (n != t.n_merges) fail_msg("text %d: %d merges, the reference made %d", it, t.n_merges, n);
        for (int i = 0; i < n; i++)
            if (t.merges[i][0] != want[i][0] || t.merges[i][1] != want[i][1])
                fail_msg("text %d: merge %d is (%d, %d), the reference's (%d, %d)", it, i, t.merges[i][0],
                         t.merges[i][1], want[i][0], want[i][1]);
        free(want);
        free(text);
        tokenizer_free(&t);
    }
}

// Any bytes round-trip: random bytes (NULs and invalid UTF-8 included), Chinese, emoji.
static void test_round_trip_bytes(void **state) {
    const Corpus *c = *state;
    Tokenizer t;
    train_or_fail(&t, c->p, c->n, 1024);
    TRng r = {1};
    char text[2048];
    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)trng_int(&r, (int)sizeof(text));
        for (size_t i = 0; i < len; i++) text[i] = (char)trng_int(&r, 256);
        assert_round_trip(&t, text, len);
    }
    const char *fixed[] = {"", " ", "\n", "计算 123+45=168。我们检查一下：3+5=8", "😀🤔👍🏽 emoji 🇫🇷",
                           "\xe8\xae", "\xff\xfe\x80", "<think", "<｜User｜><｜User｜>"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(*fixed); i++) assert_round_trip(&t, fixed[i], strlen(fixed[i]));
    // one long chunk (Chinese without spaces or ASCII punctuation): many merges in one chunk
    Buf b = {0};
    for (int i = 0; i < 3000; i++) buf_puts(&b, i % 7 ? "计算答案" : "我们，");
    assert_round_trip(&t, b.p, b.n);
    int n;
    int *ids = encode_all(&t, b.p, b.n, &n);
    assert_true((size_t)n < b.n / 3); // the merges built whole characters and words
    free(ids);
    free(b.p);
    tokenizer_free(&t);
}

// Every digit is one token, and no merged token holds a digit.
static void test_digits(void **state) {
    const Corpus *c = *state;
    Tokenizer t;
    train_or_fail(&t, c->p, c->n, 1024);
    for (int id = TOK_N_SPECIAL + 256; id < t.vocab_size; id++)
        for (int k = 0; k < t.len[id]; k++)
            if (t.bytes[id][k] >= '0' && t.bytes[id][k] <= '9') fail_msg("token %d holds a digit", id);
    const char *text = "12345+67890=80235 x1000 3.14159 2024年10月";
    int n;
    int *ids = encode_all(&t, text, strlen(text), &n);
    int digits = 0;
    for (int i = 0; i < n; i++) {
        if (t.len[ids[i]] == 1 && t.bytes[ids[i]][0] >= '0' && t.bytes[ids[i]][0] <= '9') {
            assert_int_equal(ids[i], 9 + t.bytes[ids[i]][0]);
            digits++;
        }
    }
    int want = 0;
    for (const char *p = text; *p; p++) want += *p >= '0' && *p <= '9';
    assert_int_equal(digits, want);
    free(ids);
    tokenizer_free(&t);
}

// Special-token strings become their ids; near misses do not.
static void test_specials(void **state) {
    const Corpus *c = *state;
    Tokenizer t;
    train_or_fail(&t, c->p, c->n, 1024);
    Buf b = {0};
    for (int id = 0; id < TOK_N_SPECIAL; id++) {
        buf_puts(&b, "x");
        buf_puts(&b, SPECIAL[id]);
    }
    int n;
    int *ids = encode_all(&t, b.p, b.n, &n);
    assert_int_equal(n, 2 * TOK_N_SPECIAL);
    for (int id = 0; id < TOK_N_SPECIAL; id++) {
        assert_int_equal(ids[2 * id], 9 + 'x');
        assert_int_equal(ids[2 * id + 1], id);
    }
    free(ids);
    const char *text = "<｜User｜>What is 2+3?<｜Assistant｜><think>2+3=5</think><answer>5</answer><｜end▁of▁sentence｜>";
    ids = encode_all(&t, text, strlen(text), &n);
    int want[] = {TOK_USER, TOK_ASSISTANT, TOK_THINK, TOK_THINK_END, TOK_ANSWER, TOK_ANSWER_END, TOK_EOS};
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] < TOK_N_SPECIAL) {
            assert_true(k < 7);
            assert_int_equal(ids[i], want[k++]);
        }
    assert_int_equal(k, 7);
    assert_int_equal(ids[0], TOK_USER);
    assert_int_equal(ids[n - 1], TOK_EOS);
    free(ids);
    const char *miss = "<thinkk> <think <｜User|> </ think> <Think>";
    ids = encode_all(&t, miss, strlen(miss), &n);
    for (int i = 0; i < n; i++) assert_true(ids[i] >= TOK_N_SPECIAL);
    free(ids);
    free(b.p);
    tokenizer_free(&t);
}

// A trained tokenizer compresses its corpus and similar text.
static void test_compresses(void **state) {
    const Corpus *c = *state;
    Tokenizer t;
    train_or_fail(&t, c->p, c->n, 1024);
    int n;
    int *ids = encode_all(&t, c->p, c->n, &n);
    double ratio = (double)c->n / n;
    if (ratio < 2.5) fail_msg("only %.2f bytes per token on the training text", ratio);
    free(ids);
    size_t len;
    char *other = make_corpus(50000, 99, &len); // held out: another seed
    ids = encode_all(&t, other, len, &n);
    ratio = (double)len / n;
    if (ratio < 2.5) fail_msg("only %.2f bytes per token on held-out text", ratio);
    free(ids);
    free(other);
    tokenizer_free(&t);
}

static void assert_same_tokenizer(const Tokenizer *a, const Tokenizer *b) {
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->n_merges, b->n_merges);
    assert_memory_equal(a->merges, b->merges, sizeof(int[2]) * (size_t)a->n_merges);
    for (int id = 0; id < a->vocab_size; id++) {
        assert_int_equal(a->len[id], b->len[id]);
        assert_memory_equal(a->bytes[id], b->bytes[id], (size_t)a->len[id]);
    }
}

// Training is a function of the text alone.
static void test_deterministic(void **state) {
    const Corpus *co = *state;
    Tokenizer a, b;
    train_or_fail(&a, co->p, co->n, 1024);
    train_or_fail(&b, co->p, co->n, 1024);
    assert_same_tokenizer(&a, &b);
    // a smaller vocabulary learns a prefix of the same merges
    Tokenizer c;
    train_or_fail(&c, co->p, co->n, 500);
    assert_int_equal(c.n_merges, 500 - 265);
    assert_memory_equal(c.merges, a.merges, sizeof(int[2]) * (size_t)c.n_merges);
    tokenizer_free(&a);
    tokenizer_free(&b);
    tokenizer_free(&c);
    char err[R1_ERR_LEN] = "";
    assert_int_equal(tokenizer_train(&a, "abc", 3, 264, err), -1);
    assert_non_null(strstr(err, "vocab_size"));
}

// save -> load gives the same tokenizer and the same ids; the config file is valid JSON with
// the chat template.
static void test_save_load(void **state) {
    const Corpus *c = *state;
    char dir[64], path[600], err[R1_ERR_LEN] = "";
    make_temp_dir(dir, sizeof(dir));
    Tokenizer t, u;
    train_or_fail(&t, c->p, c->n, 1024);
    if (tokenizer_save(&t, dir, err)) fail_msg("save: %s", err);
    if (tokenizer_load(&u, dir, err)) fail_msg("load: %s", err);
    assert_same_tokenizer(&t, &u);
    TRng r = {5};
    char text[4096];
    int ids[4096 + 16], ids2[4096 + 16];
    for (int it = 0; it < 200; it++) {
        size_t len = random_text(&r, text, sizeof(text), 1);
        int n = tokenizer_encode(&t, text, len, ids, 4096 + 16);
        int m = tokenizer_encode(&u, text, len, ids2, 4096 + 16);
        assert_int_equal(n, m);
        assert_memory_equal(ids, ids2, sizeof(int) * (size_t)n);
    }
    // tokenizer_config.json
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    size_t size;
    char *cfg = read_file(path, &size, err);
    assert_non_null(cfg);
    Json *j = json_parse(cfg, size, err);
    if (!j) fail_msg("tokenizer_config.json: %s", err);
    assert_string_equal(json_get(j, "tokenizer_class")->string, "PreTrainedTokenizerFast");
    assert_string_equal(json_get(j, "bos_token")->string, SPECIAL[TOK_BOS]);
    assert_string_equal(json_get(j, "eos_token")->string, SPECIAL[TOK_EOS]);
    assert_string_equal(json_get(j, "pad_token")->string, SPECIAL[TOK_PAD]);
    assert_non_null(strstr(json_get(j, "chat_template")->string, "add_generation_prompt"));
    json_free(j);
    free(cfg);
    // save is atomic: no .tmp left; saving again over the old files works
    snprintf(path, sizeof(path), "%s/tokenizer.json.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);
    if (tokenizer_save(&u, dir, err)) fail_msg("save again: %s", err);
    tokenizer_free(&t);
    tokenizer_free(&u);
    // an untrained tokenizer (no merges) saves and loads too
    train_or_fail(&t, "", 0, 265);
    if (tokenizer_save(&t, dir, err)) fail_msg("save: %s", err);
    if (tokenizer_load(&u, dir, err)) fail_msg("load: %s", err);
    assert_same_tokenizer(&t, &u);
    tokenizer_free(&t);
    tokenizer_free(&u);
    remove_dir(dir);
    // a directory that cannot be made
    assert_int_equal(tokenizer_save(&t, "/nonexistent/dir/tok", err), -1);
}

// Replaces the first occurrence of `from` in s (which must hold it) by `to`: a new string.
static char *replace_once(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) fail_msg("the saved tokenizer.json has no \"%s\"", from);
    size_t a = (size_t)(at - s), lf = strlen(from), lt = strlen(to), ls = strlen(s);
    char *out = malloc(ls - lf + lt + 1);
    memcpy(out, s, a);
    memcpy(out + a, to, lt);
    memcpy(out + a + lt, at + lf, ls - a - lf + 1);
    return out;
}

static void write_text(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

// tokenizer_load rejects broken files with a message naming the file and what is wrong.
static void test_load_rejects(void **state) {
    (void)state;
    char dir[64], path[600], err[R1_ERR_LEN];
    make_temp_dir(dir, sizeof(dir));
    Tokenizer t, u;
    train_or_fail(&t, "aaab aaab abab", 14, 268); // merges: a a, a b, aa ab
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    assert_int_equal(tokenizer_load(&u, dir, err), -1); // missing
    assert_non_null(strstr(err, "tokenizer.json"));
    if (tokenizer_save(&t, dir, err)) fail_msg("save: %s", err);
    size_t size;
    char *good = read_file(path, &size, err);
    assert_non_null(good);
    assert_non_null(strstr(good, "[\"a\", \"a\"]"));
    static const struct {
        const char *from, *to, *expect;
    } bad[] = {
        {"\"model\"", "\"mode1\"", "model: missing"},
        {"\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model.type"},
        {"\"merges\": [", "\"merges\": 3, \"x\": [", "model.merges: missing"},
        {"[\"a\", \"a\"]", "[\"a\", \"qq\"]", "unknown token \"qq\""},
        {"[\"a\", \"a\"]", "[\"aa\", \"ab\"]", "ids out of order"},
        {"[\"a\", \"a\"]", "[\"a\", \"b\"]", "ids out of order"},
        {"[\"a\", \"a\"]", "[\"a\"]", "model.merges[0]: expected a pair"},
        {"[\"a\", \"a\"]", "[\"c\", \"d\"]", "not in model.vocab"},
        {"\"aa\": 265", "\"aa\": 266", "id 266 is given twice"},
        {"\"a\": 106", "\"a\": 107", "expected the byte 0x62"},
        {"\"a\": 106", "\"a\": 1e9", "must be an integer"},
        {"\"a\": 106", "\"a\": 106.5", "must be an integer"},
        {"\"a\": 106", "\"a\": 1e30", "must be an integer"},   // no out-of-range cast (UBSan)
        {"\"a\": 106", "\"a\": -1e30", "must be an integer"},
        {"\"id\": 5", "\"id\": 1e300", "added_tokens[5]"},
        {"\"aa\": 265", "\"aa\": 265, \"zz\": 268", "model.merges: 3 merges for 269 tokens"},
        {"\"<think>\": 5", "\"<thonk>\": 5", "expected the special token"},
        {"\"content\": \"<think>\"", "\"content\": \"<thonk>\"", "added_tokens[5]"},
        {"\"Isolated\"", "\"Removed\"", "pre_tokenizer"},
        {"[0-9]|", "[0-8]|", "pre_tokenizer"},
        {"\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}", "normalizer"},
        {"\"version\"", "\"version\": 1,, \"x\"", "line 2"},
        {"\"b\": 107", "\"\\u4e00\": 107", "not a byte-level token string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char *text = replace_once(good, bad[i].from, bad[i].to);
        write_text(path, text, strlen(text));
        free(text);
        err[0] = 0;
        Tokenizer v;
        if (tokenizer_load(&v, dir, err) != -1) fail_msg("case %zu (%s) was accepted", i, bad[i].expect);
        if (!strstr(err, "tokenizer.json") || !strstr(err, bad[i].expect))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err, bad[i].expect);
        assert_null(v.merges); // a failed load leaves nothing allocated
        assert_null(v.index);
    }
    // every truncation fails cleanly
    for (size_t n = 0; n + 1 < size; n += 1 + n / 50) { // (all but the final newline)
        write_text(path, good, n);
        Tokenizer v;
        assert_int_equal(tokenizer_load(&v, dir, err), -1);
    }
    // the older "a b" form of merges is read too
    char *old = replace_once(good, "[\"a\", \"a\"]", "\"a a\"");
    write_text(path, old, strlen(old));
    free(old);
    if (tokenizer_load(&u, dir, err)) fail_msg("\"a a\" merges: %s", err);
    assert_same_tokenizer(&t, &u);
    tokenizer_free(&u);
    free(good);
    tokenizer_free(&t);
    remove_dir(dir);
}

// Too small a buffer gives -1; decode rejects ids out of range.
static void test_limits(void **state) {
    (void)state;
    Tokenizer t;
    train_or_fail(&t, "aaab aaab", 9, 267);
    int ids[8];
    assert_int_equal(tokenizer_encode(&t, "aaab aaab", 9, ids, 5), 5);
    assert_int_equal(tokenizer_encode(&t, "aaab aaab", 9, ids, 4), -1);
    assert_int_equal(tokenizer_encode(&t, "a<think>", 8, ids, 1), -1);
    assert_int_equal(tokenizer_encode(&t, "a<think>", 8, ids, 2), 2);
    assert_int_equal(tokenizer_encode(&t, "", 0, ids, 0), 0);
    int bad[] = {265, 267};
    assert_null(tokenizer_decode(&t, bad, 2));
    bad[1] = -1;
    assert_null(tokenizer_decode(&t, bad, 2));
    char *s = tokenizer_decode(&t, bad, 0);
    assert_string_equal(s, "");
    free(s);
    tokenizer_free(&t);
    tokenizer_free(&t); // freeing twice is harmless (the struct is zeroed)
}

// ----------------------------------------------------------------------------------------------
// --hf-fixture DIR: a tokenizer and expected ids for tests/check_hf_tokenizer.py
// ----------------------------------------------------------------------------------------------

static void write_case(FILE *f, const Tokenizer *t, const char *text, int first) {
    int n;
    int *ids = encode_all(t, text, strlen(text), &n);
    fprintf(f, "%s\n    {\"text\": ", first ? "" : ",");
    json_write_string(f, text);
    fprintf(f, ", \"ids\": [");
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
    fprintf(f, "]}");
    free(ids);
}

static int hf_fixture(const char *dir) {
    char err[R1_ERR_LEN], path[600];
    size_t len;
    char *corpus = make_corpus(300000, 7, &len);
    Tokenizer t;
    if (tokenizer_train(&t, corpus, len, 1024, err) || tokenizer_save(&t, dir, err)) {
        fprintf(stderr, "r1: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/expected.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    static const char *const fixed[] = {
        "计算 123+45=168. Let's check: 3+5=8 <think>wait</think><answer>168</answer>",
        "Hello, world!", "  leading spaces", "trailing spaces   ", "many     spaces  between",
        "tabs\tand\t\ttabs", "new\nlines\n\n\nand\r\nCRLF", " \n \n  \n", "x = (3 + 4) * 2 - 1 / 5 == 13.8",
        "3.14159 2024年10月1日 1,000,000 -42 +7 1e10", "emoji 😀🤔👍🏽 and flags 🇫🇷🇯🇵",
        "中文：我们首先计算，然后检查。答案是42。", "Ünïcödé àccents — dashes … ellipses “quotes”",
        "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜><think>\n2+3=5\n</think>\n<answer>5</answer><｜end▁of▁sentence｜>",
        "<｜▁pad▁｜><｜▁pad▁｜>", "<think <thinkk> </ think> <｜User|> <Think>", "a<think>b</think>c",
        "def f(x):\n    return x**2  # square\n", "\x01\x02 control \x1f\x7f chars", "", " ", "  ", "\t", "0",
        "The answer is 1234567890.", "under_score snake_case kebab-case CamelCase",
        "apostrophes: don't won't it's 'quoted'", "       indented", "a  b   c    d", "!!!???...,,,",
        "  123  ", " 1", "x  1", "x  \n", "x  <think>"};
    fprintf(f, "{\n  \"cases\": [");
    int first = 1;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(*fixed); i++) {
        write_case(f, &t, fixed[i], first);
        first = 0;
    }
    TRng r = {2024};
    char text[400];
    for (int it = 0; it < 300; it++) { // random valid UTF-8 (HF takes Python str)
        size_t n = random_text(&r, text, sizeof(text), 0);
        text[n] = 0;
        if (strlen(text) != n) continue; // never: random_text with bytes=0 has no NUL
        write_case(f, &t, text, 0);
    }
    for (size_t off = 0; off + 3000 < len; off += 59000) { // pieces of the corpus
        char piece[3001];
        size_t a = off, n = 2000;
        while (((unsigned char)corpus[a] & 0xC0) == 0x80) a++; // start and end at characters
        while (n > 0 && ((unsigned char)corpus[a + n] & 0xC0) == 0x80) n--;
        memcpy(piece, corpus + a, n);
        piece[n] = 0;
        write_case(f, &t, piece, 0);
    }
    fprintf(f, "\n  ],\n  \"chat\": [");
    // apply_chat_template: one turn with the generation prompt, and one whole exchange
    const char *user = "What is 12+30?", *reply = "<think>\n12+30=42\n</think>\n<answer>42</answer>";
    char want1[512], want2[512];
    snprintf(want1, sizeof(want1), "%s%s%s%s", SPECIAL[TOK_BOS], SPECIAL[TOK_USER], user, SPECIAL[TOK_ASSISTANT]);
    snprintf(want2, sizeof(want2), "%s%s%s%s%s%s", SPECIAL[TOK_BOS], SPECIAL[TOK_USER], user,
             SPECIAL[TOK_ASSISTANT], reply, SPECIAL[TOK_EOS]);
    for (int k = 0; k < 2; k++) {
        const char *want = k ? want2 : want1;
        int n;
        int *ids = encode_all(&t, want, strlen(want), &n);
        fprintf(f, "%s\n    {\"messages\": [{\"role\": \"user\", \"content\": ", k ? "," : "");
        json_write_string(f, user);
        fprintf(f, "}");
        if (k) {
            fprintf(f, ", {\"role\": \"assistant\", \"content\": ");
            json_write_string(f, reply);
            fprintf(f, "}");
        }
        fprintf(f, "], \"add_generation_prompt\": %s, \"text\": ", k ? "false" : "true");
        json_write_string(f, want);
        fprintf(f, ", \"ids\": [");
        for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
        fprintf(f, "]}");
        free(ids);
    }
    fprintf(f, "\n  ]\n}\n");
    fclose(f);
    printf("wrote %s/tokenizer.json (%d tokens), tokenizer_config.json and expected.json\n", dir, t.vocab_size);
    tokenizer_free(&t);
    free(corpus);
    return 0;
}

// --bench FILE [V]
static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(const char *file, int V) {
    char err[R1_ERR_LEN];
    size_t len;
    char *text = read_file(file, &len, err);
    if (!text) {
        fprintf(stderr, "r1: %s\n", err);
        return 1;
    }
    Tokenizer t;
    double t0 = seconds();
    if (tokenizer_train(&t, text, len, V, err)) {
        fprintf(stderr, "r1: %s\n", err);
        return 1;
    }
    double t1 = seconds();
    int *ids = malloc(sizeof(int) * (len + 16));
    int n = tokenizer_encode(&t, text, len, ids, (int)len + 16);
    double t2 = seconds();
    // as the corpus loader calls it: one document (blank-line separated) at a time
    long m = 0;
    for (size_t start = 0; start < len;) {
        const char *hit = strstr(text + start, "\n\n");
        size_t end = hit ? (size_t)(hit - text) : len;
        if (end > start) m += tokenizer_encode(&t, text + start, end - start, ids, (int)len + 16);
        start = end + 2;
    }
    double t3 = seconds();
    printf("%.2f MB: trained %d tokens in %.2f s; encoded %d tokens (%.2f bytes/token) at %.1f MB/s "
           "in one call, %.1f MB/s by document (%ld tokens)\n",
           len / 1e6, t.vocab_size, t1 - t0, n, (double)len / n, len / 1e6 / (t2 - t1), len / 1e6 / (t3 - t2), m);
    free(ids);
    free(text);
    tokenizer_free(&t);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--hf-fixture") == 0) return hf_fixture(argv[2]);
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "--bench") == 0)
        return bench(argv[2], argc == 4 ? atoi(argv[3]) : 1024);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_only),
        cmocka_unit_test(test_hand_traced),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_train_matches_reference),
        cmocka_unit_test(test_round_trip_bytes),
        cmocka_unit_test(test_digits),
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_compresses),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_load_rejects),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, setup_corpus, teardown_corpus);
}
