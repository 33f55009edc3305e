// tokenizer.c: byte-level BPE for r1.c (training, encoding, decoding, tokenizer.json I/O).
//
// Why a file of its own: the tokenizer is a concept of its own (text <-> ids, nothing about the
// network). It sits at the bottom of the import order (r1.h) beside formats.c, whose JSON parser,
// read_file and atomic writer it uses, and calls nothing else; r1.c (checkpoints), grpo.c and
// main.c use it through r1.h.
//
// Sections: the encoding rules (below), small helpers (memory, hashing, hash maps), the
// tokenizer's private tables, pre-tokenization (special tokens, then chunks), training
// (tokenizer_train: count the words, count the pairs, learn the merges), encoding and decoding,
// tokenizer.json and tokenizer_config.json (tokenizer_save: one function per part of the file),
// tokenizer_load (check the model and the added tokens, read the vocab, read the merges).
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L // open_memstream, mkdir, strdup
#endif
#include "r1.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ==============================================================================================
// Tokenizer: byte-level BPE (as GPT-2 and DeepSeek-V3) with single-digit numbers (as LLaMA)
// ==============================================================================================
// Ids:   0..8     the special tokens of r1.h (TOK_BOS ... TOK_ANSWER_END), matched as whole strings
//        9..264   one token per byte value: id = 9 + byte
//        265..    one token per merge, in the order the merges were learned (= their priority)
//
// Encoding text has three steps, the same in tokenizer_encode and in Hugging Face `tokenizers`
// (tokenizer.json says exactly these steps; tests/check_hf_tokenizer.py checks it):
//   1. Special tokens: every occurrence of a special token's text becomes its id (leftmost, then
//      longest), and the text between them is encoded on its own (HF: added_tokens, special,
//      normalized false).
//   2. Pre-tokenization cuts that text into chunks; BPE never merges across a chunk boundary.
//      Bytes fall in five classes:
//        D  digit      0-9
//        S  space      ' '
//        W  other whitespace  \t \n \v \f \r
//        P  punctuation       the rest of ASCII: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~ and controls
//        L  letter     A-Z a-z and every byte >= 0x80 (so every non-ASCII character: Chinese,
//                      emoji, accented letters; invalid UTF-8 too)
//      A chunk, tried in this order at each position, is
//        a digit alone                        [0-9]
//        an optional space + a run of L       ' '? L+
//        an optional space + a run of P       ' '? P+
//        a run of spaces not followed by L/P  ' '+ (?![LP])  (so the last space of a run goes
//                                             to the word after it, as in GPT-2)
//        a run of W                           [\t\n\v\f\r]+
//      As one regular expression with HF's Split(behavior Isolated) (TOK_PATTERN below):
//        [0-9]| ?[^\x00-\x40\x5B-\x60\x7B-\x7F]+| ?[\x00-\x08\x0E-\x1F\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7F]+| +(?![^0-9\x09-\x0D\x20])|[\x09-\x0D]+
//      Non-ASCII characters are runs of bytes >= 0x80 here and runs of non-ASCII code points in
//      the regex, so both cut valid UTF-8 at the same places. Example:
//        "计算 123+45=168. Let's  check:\n\n3*5"
//        -> "计算" " " "1" "2" "3" "+" "4" "5" "=" "1" "6" "8" "." " Let" "'" "s" " " " check"
//           ":" "\n\n" "3" "*" "5"
//      Digits are always single tokens (no merge can contain one: a digit is a chunk by itself),
//      which is what arithmetic needs (as in LLaMA and DeepSeek LLM v1; DeepSeek-V3 groups up
//      to three digits).
//   3. BPE inside each chunk: start from one token per byte, then repeatedly apply the merge of
//      lowest rank present in the chunk (leftmost occurrence first) until none applies (GPT-2).
//
// Training (tokenizer_train) is standard BPE: count the distinct chunks of the text, then
// repeatedly merge the most frequent adjacent pair of tokens (ties: the lowest (a, b) ids),
// updating the pair counts incrementally from the words that contain the merged pair.
//
// Saved as tokenizer.json (the HF `tokenizers` format: BPE model, vocab strings through GPT-2's
// bytes_to_unicode, the pre-tokenizer above, decoder ByteLevel) and tokenizer_config.json (a
// PreTrainedTokenizerFast with the DeepSeek-R1 chat template).

#define TOK_FIRST_MERGE (TOK_N_SPECIAL + 256)  // id of the token made by merge 0
#define TOK_MAX_VOCAB (1 << 24)                // sanity bound on vocab_size

// The texts of the special tokens, indexed by id (U+FF5C FULLWIDTH VERTICAL LINE and U+2581 LOWER
// ONE EIGHTH BLOCK, as in DeepSeek's tokenizer).
static const char *const TOK_SPECIAL_TEXT[TOK_N_SPECIAL] = {
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>",
    "<｜Assistant｜>", "<think>", "</think>", "<answer>", "</answer>"};

// The pre-tokenizer above as a regular expression (Oniguruma / Python re syntax).
static const char TOK_PATTERN[] =
    "[0-9]"
    "| ?[^\\x00-\\x40\\x5B-\\x60\\x7B-\\x7F]+"
    "| ?[\\x00-\\x08\\x0E-\\x1F\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7F]+"
    "| +(?![^0-9\\x09-\\x0D\\x20])"
    "|[\\x09-\\x0D]+";

// DeepSeek-R1's chat template (Jinja, as transformers' apply_chat_template runs it): BOS, then
// each message (a system message as plain text), and "<｜Assistant｜>" to ask for a reply.
static const char TOK_CHAT_TEMPLATE[] =
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}";

// ----------------------------------------------------------------------------------------------
// Small helpers: memory, hashing, hash maps
// ----------------------------------------------------------------------------------------------

static void *tok_alloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "r1: out of memory (%zu x %zu bytes)\n", n, size);
        exit(1);
    }
    return p;
}

static void *tok_grow(void *p, size_t n, size_t size) {
    void *q = realloc(p, (n ? n : 1) * size);
    if (!q) {
        fprintf(stderr, "r1: out of memory (%zu x %zu bytes)\n", n, size);
        exit(1);
    }
    return q;
}

static uint64_t tok_hash_bytes(const unsigned char *s, size_t n) { // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static uint64_t tok_pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t tok_hash_key(uint64_t k) { // the murmur3 finalizer: every key bit reaches every low bit
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ull;
    return (size_t)(k ^ (k >> 33));
}

// uint64 key -> int value, open addressing with linear probing; capacity a power of two.
typedef struct {
    uint64_t *keys; // UINT64_MAX = empty
    int *vals;
    size_t cap, n;
} TokMap;

static void tok_map_init(TokMap *m, size_t expect) {
    m->cap = 64;
    while (m->cap < 2 * expect + 2) m->cap *= 2;
    m->n = 0;
    m->keys = tok_alloc(m->cap, sizeof(uint64_t));
    m->vals = tok_alloc(m->cap, sizeof(int));
    memset(m->keys, 0xff, m->cap * sizeof(uint64_t));
}

static void tok_map_free(TokMap *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

// Returns a pointer to the value of key; NULL if absent.
static int *tok_map_get(const TokMap *m, uint64_t key) {
    for (size_t i = tok_hash_key(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
    }
}

// Returns a pointer to the value of key, inserting it with value `init` if absent.
static int *tok_map_put(TokMap *m, uint64_t key, int init) {
    if (2 * (m->n + 1) > m->cap) { // keep the load under 1/2
        TokMap bigger;
        tok_map_init(&bigger, m->cap);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i] != UINT64_MAX) *tok_map_put(&bigger, m->keys[i], 0) = m->vals[i];
        tok_map_free(m);
        *m = bigger;
    }
    size_t i = tok_hash_key(key) & (m->cap - 1);
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (m->keys[i] == UINT64_MAX) {
        m->keys[i] = key;
        m->vals[i] = init;
        m->n++;
    }
    return &m->vals[i];
}

// Byte string -> index of its first insertion (0, 1, 2, ...). The strings are not copied.
typedef struct {
    const unsigned char **ptr;
    uint32_t *len;
    uint64_t *hash;
    int n, cap_entries;
    int *slots; // -1 = empty
    size_t cap; // power of two
} TokStrMap;

static void tok_strmap_init(TokStrMap *m) {
    memset(m, 0, sizeof(*m));
    m->cap = 1024;
    m->slots = tok_alloc(m->cap, sizeof(int));
    memset(m->slots, 0xff, m->cap * sizeof(int));
}

static void tok_strmap_free(TokStrMap *m) {
    free(m->ptr);
    free(m->len);
    free(m->hash);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static int tok_strmap_find(const TokStrMap *m, const unsigned char *s, size_t n, uint64_t h) {
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int e = m->slots[i];
        if (e < 0) return -1;
        if (m->hash[e] == h && m->len[e] == n && memcmp(m->ptr[e], s, n) == 0) return e;
    }
}

// Returns the index of s, adding it if absent (*added says which).
static int tok_strmap_add(TokStrMap *m, const unsigned char *s, size_t n, int *added) {
    uint64_t h = tok_hash_bytes(s, n);
    int e = tok_strmap_find(m, s, n, h);
    *added = e < 0;
    if (e >= 0) return e;
    if (m->n == m->cap_entries) {
        m->cap_entries = m->cap_entries ? 2 * m->cap_entries : 256;
        m->ptr = tok_grow(m->ptr, (size_t)m->cap_entries, sizeof(*m->ptr));
        m->len = tok_grow(m->len, (size_t)m->cap_entries, sizeof(*m->len));
        m->hash = tok_grow(m->hash, (size_t)m->cap_entries, sizeof(*m->hash));
    }
    e = m->n++;
    m->ptr[e] = s;
    m->len[e] = (uint32_t)n;
    m->hash[e] = h;
    if (2 * (size_t)m->n > m->cap) { // rehash at load 1/2
        free(m->slots);
        m->cap *= 2;
        m->slots = tok_alloc(m->cap, sizeof(int));
        memset(m->slots, 0xff, m->cap * sizeof(int));
        for (int k = 0; k < m->n; k++) {
            size_t i = m->hash[k] & (m->cap - 1);
            while (m->slots[i] >= 0) i = (i + 1) & (m->cap - 1);
            m->slots[i] = k;
        }
    } else {
        size_t i = h & (m->cap - 1);
        while (m->slots[i] >= 0) i = (i + 1) & (m->cap - 1);
        m->slots[i] = e;
    }
    return e;
}

// ----------------------------------------------------------------------------------------------
// The tokenizer's private tables (Tokenizer.index)
// ----------------------------------------------------------------------------------------------
typedef struct {
    unsigned char *blob; // every token's bytes, each NUL-terminated; Tokenizer.bytes points here
    TokMap rank;         // pair (a, b) -> merge rank i (the merged token is TOK_FIRST_MERGE + i)
} TokIndex;

int tokenizer_same(const Tokenizer *a, const Tokenizer *b) {
    if (a->vocab_size != b->vocab_size || a->n_merges != b->n_merges) return 0;
    for (int i = 0; i < a->n_merges; i++)
        if (a->merges[i][0] != b->merges[i][0] || a->merges[i][1] != b->merges[i][1]) return 0;
    return 1;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    TokIndex *x = t->index;
    if (x) {
        free(x->blob);
        tok_map_free(&x->rank);
        free(x);
    }
    free(t->merges);
    free(t->bytes);
    free(t->len);
    memset(t, 0, sizeof(*t));
}

// Fills bytes, len and the pair -> rank map from t->merges (n_merges of them, already checked).
static void tok_build(Tokenizer *t) {
    int V = TOK_FIRST_MERGE + t->n_merges;
    t->vocab_size = V;
    t->len = tok_alloc((size_t)V, sizeof(int));
    t->bytes = tok_alloc((size_t)V, sizeof(unsigned char *));
    size_t total = 0;
    for (int id = 0; id < V; id++) {
        if (id < TOK_N_SPECIAL) t->len[id] = (int)strlen(TOK_SPECIAL_TEXT[id]);
        else if (id < TOK_FIRST_MERGE) t->len[id] = 1;
        else {
            const int *m = t->merges[id - TOK_FIRST_MERGE];
            t->len[id] = t->len[m[0]] + t->len[m[1]];
        }
        total += (size_t)t->len[id] + 1;
    }
    TokIndex *x = tok_alloc(1, sizeof(TokIndex));
    x->blob = tok_alloc(total, 1);
    unsigned char *p = x->blob;
    for (int id = 0; id < V; id++) {
        t->bytes[id] = p;
        if (id < TOK_N_SPECIAL) memcpy(p, TOK_SPECIAL_TEXT[id], (size_t)t->len[id]);
        else if (id < TOK_FIRST_MERGE) p[0] = (unsigned char)(id - TOK_N_SPECIAL);
        else {
            const int *m = t->merges[id - TOK_FIRST_MERGE];
            memcpy(p, t->bytes[m[0]], (size_t)t->len[m[0]]);
            memcpy(p + t->len[m[0]], t->bytes[m[1]], (size_t)t->len[m[1]]);
        }
        p[t->len[id]] = 0;
        p += t->len[id] + 1;
    }
    tok_map_init(&x->rank, (size_t)t->n_merges);
    for (int i = 0; i < t->n_merges; i++)
        *tok_map_put(&x->rank, tok_pair_key(t->merges[i][0], t->merges[i][1]), i) = i;
    t->index = x;
}

// ----------------------------------------------------------------------------------------------
// Pre-tokenization: special tokens, then chunks
// ----------------------------------------------------------------------------------------------

// The first special token at or after s[from] (leftmost, then longest): returns its id and sets
// *at; -1 if none.
static int tok_find_special(const unsigned char *s, size_t n, size_t from, size_t *at) {
    for (size_t i = from; i < n; i++) {
        if (s[i] != '<') continue; // every special token starts with '<'
        int best = -1;
        size_t best_len = 0;
        for (int id = 0; id < TOK_N_SPECIAL; id++) {
            size_t l = strlen(TOK_SPECIAL_TEXT[id]);
            if (l > best_len && l <= n - i && memcmp(s + i, TOK_SPECIAL_TEXT[id], l) == 0) {
                best = id;
                best_len = l;
            }
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

enum { TOK_C_DIGIT, TOK_C_LETTER, TOK_C_PUNCT, TOK_C_SPACE, TOK_C_WS };

static int tok_class(unsigned char c) {
    if (c >= '0' && c <= '9') return TOK_C_DIGIT;
    if (c == ' ') return TOK_C_SPACE;
    if (c >= 0x09 && c <= 0x0D) return TOK_C_WS;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80) return TOK_C_LETTER;
    return TOK_C_PUNCT;
}

// The end of the chunk that starts at s[i] (i < n); see the rule at the top of the section.
static size_t tok_chunk_end(const unsigned char *s, size_t i, size_t n) {
    size_t j = i;
    if (s[j] == ' ') {
        while (j < n && s[j] == ' ') j++;
        int next = j < n ? tok_class(s[j]) : TOK_C_SPACE;
        if (next != TOK_C_LETTER && next != TOK_C_PUNCT) return j; // ' '+ before 0-9, W or the end
        if (j - i >= 2) return j - 1;                              // the last space goes with the word
        // one space, then a word: ' ' L+ or ' ' P+
    }
    int k = tok_class(s[j]);
    if (k == TOK_C_DIGIT) return j + 1;
    while (j < n && tok_class(s[j]) == k) j++;
    return j;
}

// ----------------------------------------------------------------------------------------------
// Training
// ----------------------------------------------------------------------------------------------

// A pair of adjacent tokens during training, with its count over the corpus and the words it
// may occur in (a word can be listed when it no longer holds the pair: the merge then skips it).
typedef struct {
    int a, b;
    int64_t count;
    int *words, n_words, cap_words;
} TokPair;

typedef struct { // a heap entry. Training: pair number p = (a, b) had `count` when pushed.
    int64_t count;   //                Encoding: merge rank `count` of the tokens (a, b) at
    int a, b, p;     //                position p.
} TokHeapItem;

typedef struct {
    TokPair *pairs;
    int n_pairs, cap_pairs;
    TokMap index;        // (a, b) -> pair number
    TokHeapItem *heap;
    size_t n_heap, cap_heap;
    int *fresh;          // pairs created by the merge in progress (to push afterwards)
    int n_fresh, cap_fresh;
} TokTrainer;

// Heap order: larger count first, then smaller (a, b): the order in which pairs are merged.
static int tok_heap_before(const TokHeapItem *x, const TokHeapItem *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void tok_heap_push(TokTrainer *tr, TokHeapItem it) {
    if (tr->n_heap == tr->cap_heap) {
        tr->cap_heap = tr->cap_heap ? 2 * tr->cap_heap : 1024;
        tr->heap = tok_grow(tr->heap, tr->cap_heap, sizeof(TokHeapItem));
    }
    size_t i = tr->n_heap++;
    while (i > 0 && tok_heap_before(&it, &tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = it;
}

static TokHeapItem tok_heap_pop(TokTrainer *tr) {
    TokHeapItem top = tr->heap[0], last = tr->heap[--tr->n_heap];
    size_t i = 0, n = tr->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tok_heap_before(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!tok_heap_before(&tr->heap[c], &last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n > 0) tr->heap[i] = last;
    return top;
}

// Adds delta to the count of pair (a, b) and notes that word w holds it (when delta > 0). A pair
// seen for the first time is remembered in `fresh`, to be pushed on the heap after the merge.
static void tok_pair_add(TokTrainer *tr, int a, int b, int64_t delta, int w) {
    int *pp = tok_map_put(&tr->index, tok_pair_key(a, b), -1);
    if (*pp < 0) {
        if (tr->n_pairs == tr->cap_pairs) {
            tr->cap_pairs = tr->cap_pairs ? 2 * tr->cap_pairs : 4096;
            tr->pairs = tok_grow(tr->pairs, (size_t)tr->cap_pairs, sizeof(TokPair));
        }
        *pp = tr->n_pairs;
        tr->pairs[tr->n_pairs++] = (TokPair){.a = a, .b = b};
        if (tr->n_fresh == tr->cap_fresh) {
            tr->cap_fresh = tr->cap_fresh ? 2 * tr->cap_fresh : 1024;
            tr->fresh = tok_grow(tr->fresh, (size_t)tr->cap_fresh, sizeof(int));
        }
        tr->fresh[tr->n_fresh++] = *pp;
    }
    TokPair *p = &tr->pairs[*pp];
    p->count += delta;
    if (delta > 0 && (p->n_words == 0 || p->words[p->n_words - 1] != w)) {
        if (p->n_words == p->cap_words) {
            p->cap_words = p->cap_words ? 2 * p->cap_words : 4;
            p->words = tok_grow(p->words, (size_t)p->cap_words, sizeof(int));
        }
        p->words[p->n_words++] = w;
    }
}

static void tok_push_fresh(TokTrainer *tr) {
    for (int i = 0; i < tr->n_fresh; i++) {
        TokPair *p = &tr->pairs[tr->fresh[i]];
        if (p->count > 0) tok_heap_push(tr, (TokHeapItem){p->count, p->a, p->b, tr->fresh[i]});
    }
    tr->n_fresh = 0;
}

static void tok_trainer_free(TokTrainer *tr) {
    for (int i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].words);
    free(tr->pairs);
    free(tr->heap);
    free(tr->fresh);
    tok_map_free(&tr->index);
}

// The training text as its distinct chunks ("words", step 2 of encoding): word w occurs freq[w]
// times and is, at each point of training, the tokens sym[start[w] .. start[w] + len[w]) (all
// words in one buffer; a merge shrinks a word in place).
typedef struct {
    TokStrMap chunks;  // word w's bytes (pointers into the text), in order of first appearance
    int64_t *freq;     // [n]
    int n;
    int *sym;          // [total bytes of all words]
    size_t *start;     // [n]
    int *len;          // [n]
} TokWords;

// The pre-tokenization of a text, piece by piece, as training and encoding both read it: the
// chunks of ordinary text (tok_chunk_end) up to the next special token's text, then that
// special token, and so on. Start with {s, len} and the rest zero; each call gives the next
// piece [*begin, *end) with *special = its id, or -1 for a chunk; 0 at the end of the text.
typedef struct {
    const unsigned char *s;
    size_t len;
    size_t pos, at;  // next byte to read; where the next special token's text starts
    int sp, started; // that special token (-1: none before the end)
} TokPieces;

static int tok_next_piece(TokPieces *p, size_t *begin, size_t *end, int *special) {
    for (;;) {
        if (p->started && p->pos < p->at) {  // ordinary text before the special token
            *begin = p->pos;
            *end = p->pos = tok_chunk_end(p->s, p->pos, p->at);
            *special = -1;
            return 1;
        }
        if (p->started && p->sp >= 0) {  // the special token itself
            *begin = p->at;
            *end = p->pos = p->at + strlen(TOK_SPECIAL_TEXT[p->sp]);
            *special = p->sp;
            p->sp = -1;
            p->at = p->pos;
            return 1;
        }
        if (p->pos >= p->len) return 0;
        p->at = p->len;  // look for the next special token
        p->sp = tok_find_special(p->s, p->len, p->pos, &p->at);
        p->started = 1;
    }
}

// Step 1 of training: the distinct chunks of the text and how often each occurs, in order of
// first appearance (so that everything after is a function of the text alone). Special tokens
// are cut out, as in encoding.
static void tok_count_words(TokWords *wd, const unsigned char *s, size_t len) {
    tok_strmap_init(&wd->chunks);
    wd->freq = NULL;
    int cap_freq = 0;
    TokPieces pieces = {.s = s, .len = len};
    size_t begin, end;
    int special;
    while (tok_next_piece(&pieces, &begin, &end, &special)) {
        if (special >= 0) continue;  // special tokens are not learned from
        int added;
        int w = tok_strmap_add(&wd->chunks, s + begin, end - begin, &added);
        if (added) {
            if (w >= cap_freq) {
                cap_freq = cap_freq ? 2 * cap_freq : 1024;
                wd->freq = tok_grow(wd->freq, (size_t)cap_freq, sizeof(int64_t));
            }
            wd->freq[w] = 0;
        }
        wd->freq[w]++;
    }
    wd->n = wd->chunks.n;
}

// Step 2: each word as a sequence of token ids, one per byte (id = TOK_N_SPECIAL + byte).
static void tok_words_to_byte_tokens(TokWords *wd) {
    size_t total = 0;
    for (int w = 0; w < wd->n; w++) total += wd->chunks.len[w];
    wd->sym = tok_alloc(total, sizeof(int));
    wd->start = tok_alloc((size_t)wd->n, sizeof(size_t));
    wd->len = tok_alloc((size_t)wd->n, sizeof(int));
    total = 0;
    for (int w = 0; w < wd->n; w++) {
        wd->start[w] = total;
        wd->len[w] = (int)wd->chunks.len[w];
        for (uint32_t k = 0; k < wd->chunks.len[w]; k++) wd->sym[total++] = TOK_N_SPECIAL + wd->chunks.ptr[w][k];
    }
}

static void tok_words_free(TokWords *wd) {
    free(wd->sym);
    free(wd->start);
    free(wd->len);
    free(wd->freq);
    tok_strmap_free(&wd->chunks);
}

// Step 3: count every adjacent pair of every word (times the word's frequency); push them all
// on the heap.
static void tok_count_pairs(TokTrainer *tr, const TokWords *wd) {
    tok_map_init(&tr->index, 1 << 16);
    for (int w = 0; w < wd->n; w++) {
        const int *q = wd->sym + wd->start[w];
        for (int k = 0; k + 1 < wd->len[w]; k++) tok_pair_add(tr, q[k], q[k + 1], wd->freq[w], w);
    }
    tok_push_fresh(tr);
}

// The heap holds each live pair once, with a count that is >= its true count: counts of existing
// pairs only fall (a merge removes occurrences of pairs touching a or b), and the only new pairs
// are those holding the new token, pushed right after their merge. So when the top's count is
// current, it is the most frequent pair; otherwise it is pushed back with its true count (the
// lazy update of HF's BpeTrainer). Returns the pair number of the most frequent pair, or -1 when
// the top was stale (pushed back: pop again).
static int tok_pop_best_pair(TokTrainer *tr) {
    TokHeapItem top = tok_heap_pop(tr);
    TokPair *p = &tr->pairs[top.p];
    if (top.count == p->count) return top.p;
    if (p->count > 0) tok_heap_push(tr, (TokHeapItem){p->count, p->a, p->b, top.p});
    return -1;
}

// The bytes of every merged token, so that a pair whose bytes another merge already made is
// skipped: HF's vocab is keyed by the string, so there is one token per string (a guard, as in
// HF's trainer; we have not seen it happen).
typedef struct {
    TokStrMap strings;     // the merged tokens' bytes -> merge number
    unsigned char **bytes; // bytes[i], len[i]: the bytes of token TOK_FIRST_MERGE + i
    int *len;
    int n;
} TokMadeTokens;

static void tok_made_init(TokMadeTokens *made, int cap_merges) {
    tok_strmap_init(&made->strings);
    made->bytes = tok_alloc((size_t)(cap_merges ? cap_merges : 1), sizeof(unsigned char *));
    made->len = tok_alloc((size_t)(cap_merges ? cap_merges : 1), sizeof(int));
    made->n = 0;
}

static void tok_made_free(TokMadeTokens *made) {
    for (int i = 0; i < made->n; i++) free(made->bytes[i]);
    free(made->bytes);
    free(made->len);
    tok_strmap_free(&made->strings);
}

// Records the bytes of the token a + b as the next merged token; returns 0 (and records nothing)
// when another merge already made these bytes.
static int tok_made_add(TokMadeTokens *made, int a, int b) {
    int la = a < TOK_FIRST_MERGE ? 1 : made->len[a - TOK_FIRST_MERGE];
    int lb = b < TOK_FIRST_MERGE ? 1 : made->len[b - TOK_FIRST_MERGE];
    unsigned char *mb = tok_alloc((size_t)(la + lb), 1);
    if (a < TOK_FIRST_MERGE) mb[0] = (unsigned char)(a - TOK_N_SPECIAL);
    else memcpy(mb, made->bytes[a - TOK_FIRST_MERGE], (size_t)la);
    if (b < TOK_FIRST_MERGE) mb[la] = (unsigned char)(b - TOK_N_SPECIAL);
    else memcpy(mb + la, made->bytes[b - TOK_FIRST_MERGE], (size_t)lb);
    int added;
    tok_strmap_add(&made->strings, mb, (size_t)(la + lb), &added);
    if (!added) {
        free(mb);
        return 0;
    }
    made->bytes[made->n] = mb;
    made->len[made->n] = la + lb;
    made->n++;
    return 1;
}

// Replaces every (a, b) of pair number p by c in the words that hold it, left to right, and
// updates the counts of the neighbouring pairs: x a b y -> x c y takes one (x,a) and one (b,y)
// away and adds (x,c) and (c,y). x is read after the previous replacement, so "a b a b"
// correctly turns (b,a) into (c,c). The word list is taken out of the pair first, since
// tok_pair_add may reallocate tr->pairs while we walk it. Then pair p has count 0, and the pairs
// the merge created go on the heap.
static void tok_merge_pair_in_words(TokTrainer *tr, TokWords *wd, int p, int c) {
    // BEGIN ASSIGNMENT bpe_merge
    // handout: tr->pairs[p].count = 0;
    // handout: (void)wd, (void)c;
    TokPair *pair = &tr->pairs[p];
    int a = pair->a, b = pair->b;
    int n_list = pair->n_words;
    int *list = pair->words;
    pair->words = NULL;
    pair->n_words = pair->cap_words = 0;
    for (int li = 0; li < n_list; li++) {
        int w = list[li];
        int *q = wd->sym + wd->start[w], n = wd->len[w], o = 0;
        int64_t f = wd->freq[w];
        for (int i = 0; i < n;) {
            if (i + 1 < n && q[i] == a && q[i + 1] == b) {
                if (o > 0) {
                    tok_pair_add(tr, q[o - 1], a, -f, w);
                    tok_pair_add(tr, q[o - 1], c, f, w);
                }
                if (i + 2 < n) {
                    tok_pair_add(tr, b, q[i + 2], -f, w);
                    tok_pair_add(tr, c, q[i + 2], f, w);
                }
                q[o++] = c;
                i += 2;
            } else {
                q[o++] = q[i++];
            }
        }
        wd->len[w] = o;
    }
    free(list);
    tr->pairs[p].count = 0; // every occurrence is gone
    tok_push_fresh(tr);
    // END ASSIGNMENT bpe_merge
}

// Step 4: merge the most frequent pair, again and again, until cap_merges merges are learned or
// no pair is left. Fills t->merges; returns how many.
static int tok_learn_merges(Tokenizer *t, TokTrainer *tr, TokWords *wd, int cap_merges) {
    t->merges = tok_alloc((size_t)(cap_merges ? cap_merges : 1), sizeof(int[2]));
    TokMadeTokens made;
    tok_made_init(&made, cap_merges);
    int n_merges = 0;
    while (n_merges < cap_merges && tr->n_heap > 0) {
        int p = tok_pop_best_pair(tr);
        if (p < 0) continue;
        int a = tr->pairs[p].a, b = tr->pairs[p].b;
        if (!tok_made_add(&made, a, b)) continue; // these bytes are a token already: never merged
        t->merges[n_merges][0] = a;
        t->merges[n_merges][1] = b;
        tok_merge_pair_in_words(tr, wd, p, TOK_FIRST_MERGE + n_merges);
        n_merges++;
    }
    tok_made_free(&made);
    return n_merges;
}

int tokenizer_train(Tokenizer *t, const char *text, size_t len, int vocab_size, char *err) {
    memset(t, 0, sizeof(*t));
    if (vocab_size < TOK_FIRST_MERGE || vocab_size > TOK_MAX_VOCAB) {
        snprintf(err, R1_ERR_LEN, "tokenizer: vocab_size %d must be in [%d, %d] (%d specials + 256 bytes + merges)",
                 vocab_size, TOK_FIRST_MERGE, TOK_MAX_VOCAB, TOK_N_SPECIAL);
        return -1;
    }
    TokWords words;
    tok_count_words(&words, (const unsigned char *)text, len);
    tok_words_to_byte_tokens(&words);
    TokTrainer tr = {0};
    tok_count_pairs(&tr, &words);
    // Fewer merges than asked for when the text runs out of pairs: vocab_size says how many.
    t->n_merges = tok_learn_merges(t, &tr, &words, vocab_size - TOK_FIRST_MERGE);
    tok_trainer_free(&tr);
    tok_words_free(&words);
    tok_build(t);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// Encoding and decoding
// ----------------------------------------------------------------------------------------------

// Scratch space for BPE on one chunk (grown as needed, per call: encode may run on many threads).
typedef struct {
    int *sym, *prev, *next; // the chunk's tokens as a doubly linked list over byte positions
    TokHeapItem *heap;      // min-heap of (rank, position), see tok_min_before
    size_t cap;
} TokScratch;

static int tok_min_before(const TokHeapItem *x, const TokHeapItem *y) {
    return x->count != y->count ? x->count < y->count : x->p < y->p;
}

static void tok_min_push(TokHeapItem *h, size_t *n, TokHeapItem it) {
    size_t i = (*n)++;
    while (i > 0 && tok_min_before(&it, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = it;
}

static TokHeapItem tok_min_pop(TokHeapItem *h, size_t *n) {
    TokHeapItem top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && tok_min_before(&h[c + 1], &h[c])) c++;
        if (!tok_min_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

// Pushes the pair that starts at position i (if it is a merge) on the heap.
static void tok_push_pair(const TokMap *rank, TokScratch *sc, size_t *nh, int i) {
    int j = sc->next[i];
    if (j < 0) return;
    const int *r = tok_map_get(rank, tok_pair_key(sc->sym[i], sc->sym[j]));
    if (r) tok_min_push(sc->heap, nh, (TokHeapItem){.count = *r, .a = sc->sym[i], .b = sc->sym[j], .p = i});
}

// BPE on one chunk s[0..n): repeatedly merges the lowest-rank pair present, leftmost first (as
// GPT-2 and HF do). A heap of (rank, position) makes a long chunk O(n log n); an entry whose
// pair has changed since it was pushed (merged into a neighbour: the tokens differ) is skipped. Returns the number of ids.
static int tok_bpe(const Tokenizer *t, const unsigned char *s, int n, TokScratch *sc, int *out,
                   int cap) {
    const TokMap *rank = &((const TokIndex *)t->index)->rank;
    if ((size_t)n > sc->cap) {
        sc->cap = (size_t)n * 2;
        sc->sym = tok_grow(sc->sym, sc->cap, sizeof(int));
        sc->prev = tok_grow(sc->prev, sc->cap, sizeof(int));
        sc->next = tok_grow(sc->next, sc->cap, sizeof(int));
        // the heap gets n-1 pairs, then at most 2 per merge, and there are at most n-1 merges
        sc->heap = tok_grow(sc->heap, 3 * sc->cap, sizeof(TokHeapItem));
    }
    for (int i = 0; i < n; i++) {
        sc->sym[i] = TOK_N_SPECIAL + s[i];
        sc->prev[i] = i - 1;
        sc->next[i] = i + 1 < n ? i + 1 : -1;
    }
    size_t nh = 0;
    if (rank->n > 0) {
        for (int i = 0; i + 1 < n; i++) tok_push_pair(rank, sc, &nh, i);
        while (nh > 0) {
            TokHeapItem top = tok_min_pop(sc->heap, &nh);
            int i = top.p, j = sc->next[i];
            if (sc->sym[i] != top.a || j < 0 || sc->sym[j] != top.b) continue; // changed since
            sc->sym[i] = TOK_FIRST_MERGE + (int)top.count; // i absorbs j
            sc->sym[j] = -1;
            sc->next[i] = sc->next[j];
            if (sc->next[j] >= 0) sc->prev[sc->next[j]] = i;
            if (sc->prev[i] >= 0) tok_push_pair(rank, sc, &nh, sc->prev[i]);
            tok_push_pair(rank, sc, &nh, i);
        }
    }
    int k = 0;
    for (int i = 0; i >= 0; i = sc->next[i]) {
        if (k == cap) return -1;
        out[k++] = sc->sym[i];
    }
    return k;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int *ids, int cap) {
    if (cap < 0) return -1;  // no room at all (the checks below test for == cap)
    const unsigned char *s = (const unsigned char *)text;
    TokScratch sc = {0};
    int n = 0;
    TokPieces pieces = {.s = s, .len = len};
    size_t begin, end;
    int special;
    while (tok_next_piece(&pieces, &begin, &end, &special)) {
        if (special >= 0) {
            if (n == cap) { n = -1; goto done; }
            ids[n++] = special;
            continue;
        }
        if (end - begin > (size_t)INT32_MAX) { n = -1; goto done; }
        int k = tok_bpe(t, s + begin, (int)(end - begin), &sc, ids + n, cap - n);
        if (k < 0) { n = -1; goto done; }
        n += k;
    }
done:
    free(sc.sym);
    free(sc.prev);
    free(sc.next);
    free(sc.heap);
    return n;
}

// Returns NULL if an id is outside [0, vocab_size) (a caller error) or n < 0. A token holding a
// NUL byte (id 9) puts a NUL inside the string: the byte count is the sum of len[id].
char *tokenizer_decode(const Tokenizer *t, const int *ids, int n) {
    if (n < 0) return NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) return NULL;
        total += (size_t)t->len[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + o, t->bytes[ids[i]], (size_t)t->len[ids[i]]);
        o += (size_t)t->len[ids[i]];
    }
    out[o] = 0;
    return out;
}

// ----------------------------------------------------------------------------------------------
// tokenizer.json and tokenizer_config.json
// ----------------------------------------------------------------------------------------------

// GPT-2's bytes_to_unicode: byte b is spelled as the character U+b when b is printable
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF), else as U+0100 + (its rank among the others), so
// that every token is a printable string without spaces. Space (0x20) is 'Ġ' (U+0120).
static int tok_byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int rank = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) rank++;
    return 0x100 + rank;
}

// Appends token bytes as their bytes_to_unicode string (UTF-8) to out; returns the new length.
static size_t tok_spell(const unsigned char *bytes, int n, char *out) {
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        int cp = tok_byte_to_cp(bytes[i]);
        if (cp < 0x80) out[o++] = (char)cp;
        else {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[o] = 0;
    return o;
}

// The inverse: a bytes_to_unicode string -> bytes (out holds strlen(s) bytes at most). Returns
// the byte count, or -1 if s holds a character outside the 256 of the byte alphabet.
static int tok_unspell(const char *s, unsigned char *out) {
    int inverse[0x144];
    for (int i = 0; i < 0x144; i++) inverse[i] = -1;
    for (int b = 0; b < 256; b++) inverse[tok_byte_to_cp(b)] = b;
    const unsigned char *p = (const unsigned char *)s;
    int o = 0;
    while (*p) {
        int cp;
        if (p[0] < 0x80) cp = *p++;
        else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            cp = ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            p += 2;
        } else return -1;
        if (cp >= 0x144 || inverse[cp] < 0) return -1;
        out[o++] = (unsigned char)inverse[cp];
    }
    return o;
}

// tokenizer.json, part 1: "added_tokens", the special tokens, each matched as a whole string
// and never normalized (encoding step 1).
static void tok_write_added_tokens(FILE *f) {
    fprintf(f, "  \"added_tokens\": [");
    for (int id = 0; id < TOK_N_SPECIAL; id++) {
        fprintf(f, "%s\n    {\"id\": %d, \"content\": ", id ? "," : "", id);
        json_write_string(f, TOK_SPECIAL_TEXT[id]);
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}");
    }
    fprintf(f, "\n  ],\n");
}

// Part 2: the pipeline around the model: no normalizer, the pre-tokenizer (TOK_PATTERN, then
// ByteLevel without a regex of its own: encoding step 2), no post-processor, the ByteLevel decoder.
static void tok_write_pipeline(FILE *f) {
    fprintf(f, "  \"normalizer\": null,\n");
    fprintf(f, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n");
    fprintf(f, "    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    json_write_string(f, TOK_PATTERN);
    fprintf(f, "}, \"behavior\": \"Isolated\", \"invert\": false},\n");
    fprintf(f, "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
               "\"use_regex\": false}\n  ]},\n");
    fprintf(f, "  \"post_processor\": null,\n");
    fprintf(f, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
               "\"trim_offsets\": false, \"use_regex\": false},\n");
}

// Part 3, "model.vocab": every token's string -> its id, in id order; a special token as its
// text, every other token spelled through bytes_to_unicode. sp holds the longest spelling.
static void tok_write_vocab(FILE *f, const Tokenizer *t, char *sp) {
    fprintf(f, "    \"vocab\": {");
    for (int id = 0; id < t->vocab_size; id++) {
        fprintf(f, "%s\n      ", id ? "," : "");
        if (id < TOK_N_SPECIAL) json_write_string(f, TOK_SPECIAL_TEXT[id]);
        else {
            tok_spell(t->bytes[id], t->len[id], sp);
            json_write_string(f, sp);
        }
        fprintf(f, ": %d", id);
    }
    fprintf(f, "\n    },\n");
}

// Part 4, "model.merges": each merge as the pair of its parts' spellings ["a", "b"], in rank
// order (merge i makes token TOK_FIRST_MERGE + i).
static void tok_write_merges(FILE *f, const Tokenizer *t, char *sp) {
    fprintf(f, "    \"merges\": [");
    for (int i = 0; i < t->n_merges; i++) {
        fprintf(f, "%s\n      [", i ? "," : "");
        for (int k = 0; k < 2; k++) {
            int id = t->merges[i][k];
            tok_spell(t->bytes[id], t->len[id], sp);
            if (k) fprintf(f, ", ");
            json_write_string(f, sp);
        }
        fprintf(f, "]");
    }
    fprintf(f, "\n    ]\n");
}

// tokenizer.json: the HF `tokenizers` file, the four parts above inside the BPE model's settings.
static void tok_write_tokenizer_json(FILE *f, const Tokenizer *t) {
    // token strings: the longest token's spelling takes 2 bytes per byte
    int maxlen = 1;
    for (int id = TOK_N_SPECIAL; id < t->vocab_size; id++) maxlen = t->len[id] > maxlen ? t->len[id] : maxlen;
    char *sp = tok_alloc((size_t)maxlen * 2 + 1, 1);
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    tok_write_added_tokens(f);
    tok_write_pipeline(f);
    fprintf(f, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
               "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n");
    tok_write_vocab(f, t, sp);
    tok_write_merges(f, t, sp);
    fprintf(f, "  }\n}\n");
    free(sp);
}

// tokenizer_config.json: transformers' PreTrainedTokenizerFast with the special tokens it needs
// by name and DeepSeek-R1's chat template.
static void tok_write_tokenizer_config(FILE *f, const Tokenizer *t) {
    (void)t;
    fprintf(f, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"bos_token\": ");
    json_write_string(f, TOK_SPECIAL_TEXT[TOK_BOS]);
    fprintf(f, ",\n  \"eos_token\": ");
    json_write_string(f, TOK_SPECIAL_TEXT[TOK_EOS]);
    fprintf(f, ",\n  \"pad_token\": ");
    json_write_string(f, TOK_SPECIAL_TEXT[TOK_PAD]);
    fprintf(f, ",\n  \"add_bos_token\": false,\n  \"add_eos_token\": false,\n"
               "  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": 16384,\n"
               "  \"chat_template\": ");
    json_write_string(f, TOK_CHAT_TEMPLATE);
    fprintf(f, "\n}\n");
}

// Renders one file with `write` into memory, then writes it to dir/name atomically (formats.c's
// atomic files), so a half-rendered file never reaches the disk.
static int tok_save_file(const char *dir, const char *name, void (*write)(FILE *, const Tokenizer *),
                         const Tokenizer *t, char *err) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) {
        snprintf(err, R1_ERR_LEN, "%s: out of memory", dir);
        return -1;
    }
    write(f, t);
    if (fclose(f) != 0) {
        free(buf);
        snprintf(err, R1_ERR_LEN, "%s: out of memory", dir);
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int rc = write_bytes_atomic(path, buf, size, err);
    free(buf);
    return rc;
}

int tokenizer_save(const Tokenizer *t, const char *dir, char *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, R1_ERR_LEN, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (tok_save_file(dir, "tokenizer.json", tok_write_tokenizer_json, t, err)) return -1;
    return tok_save_file(dir, "tokenizer_config.json", tok_write_tokenizer_config, t, err);
}

// ----------------------------------------------------------------------------------------------
// tokenizer_load: reads tokenizer.json back, checking that it is one tokenizer_save could write
// ----------------------------------------------------------------------------------------------

static int tok_is_string(const Json *j, const char *want) {
    return j && j->type == JSON_STRING && (!want || strcmp(j->string, want) == 0);
}

static int tok_is_false(const Json *j) { return j && j->type == JSON_BOOL && j->number == 0; }

// The pre-tokenizer must be exactly ours: Sequence[Split(TOK_PATTERN, Isolated), ByteLevel].
static const char *tok_check_pretokenizer(const Json *pt) {
    if (!pt || pt->type != JSON_OBJECT) return "pre_tokenizer: missing";
    const Json *list = json_get(pt, "pretokenizers");
    if (!tok_is_string(json_get(pt, "type"), "Sequence") || !list || list->type != JSON_ARRAY || list->n != 2)
        return "pre_tokenizer: expected a Sequence of Split and ByteLevel";
    const Json *split = &list->items[0], *bl = &list->items[1];
    const Json *pat = json_get(split, "pattern");
    if (!tok_is_string(json_get(split, "type"), "Split") || !tok_is_string(json_get(pat, "Regex"), TOK_PATTERN) ||
        !tok_is_string(json_get(split, "behavior"), "Isolated") || !tok_is_false(json_get(split, "invert")))
        return "pre_tokenizer: the Split is not r1.c's (pattern, behavior Isolated, invert false)";
    if (!tok_is_string(json_get(bl, "type"), "ByteLevel") || !tok_is_false(json_get(bl, "add_prefix_space")) ||
        !tok_is_false(json_get(bl, "use_regex")))
        return "pre_tokenizer: expected ByteLevel with add_prefix_space false and use_regex false";
    return NULL;
}

// An integer-valued JSON number in [lo, hi]?
static int tok_int(const Json *j, int lo, int hi, int *out) {
    // the range first: casting a double outside long long's (1e30) is undefined behaviour
    if (!j || j->type != JSON_NUMBER || !(j->number >= lo && j->number <= hi) || j->number != floor(j->number))
        return -1;
    *out = (int)j->number;
    return 0;
}

// Formats "PATH: what" into err and returns -1: every message of tokenizer_load names the file.
static int tok_load_fail(char *err, const char *path, const char *fmt, ...) {
    int at = snprintf(err, R1_ERR_LEN, "%s: ", path);
    if (at >= 0 && at < R1_ERR_LEN) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + at, (size_t)(R1_ERR_LEN - at), fmt, ap);
        va_end(ap);
    }
    return -1;
}

// Step 1: the file around the vocab is what tokenizer_save writes: a JSON object, no
// normalizer, our pre-tokenizer, a BPE model with a "vocab" object (*vocab) and a "merges" array
// (*merges) of the matching sizes: V = 9 specials + 256 bytes + one token per merge.
static int tok_check_model(const Json *root, const Json **vocab, const Json **merges, const char *path,
                           char *err) {
    if (root->type != JSON_OBJECT) return tok_load_fail(err, path, "expected a JSON object");
    const Json *norm = json_get(root, "normalizer");
    if (norm && norm->type != JSON_NULL) return tok_load_fail(err, path, "normalizer: r1.c supports none (null)");
    const char *what = tok_check_pretokenizer(json_get(root, "pre_tokenizer"));
    if (what) return tok_load_fail(err, path, "%s", what);
    const Json *model = json_get(root, "model");
    if (!model || model->type != JSON_OBJECT) return tok_load_fail(err, path, "model: missing");
    if (!tok_is_string(json_get(model, "type"), "BPE")) return tok_load_fail(err, path, "model.type: expected \"BPE\"");
    *vocab = json_get(model, "vocab");
    *merges = json_get(model, "merges");
    if (!*vocab || (*vocab)->type != JSON_OBJECT) return tok_load_fail(err, path, "model.vocab: missing (an object)");
    if (!*merges || (*merges)->type != JSON_ARRAY) return tok_load_fail(err, path, "model.merges: missing (an array)");
    int V = (*vocab)->n;
    if (V < TOK_FIRST_MERGE || V > TOK_MAX_VOCAB)
        return tok_load_fail(err, path, "model.vocab: %d tokens; expected %d specials + 256 bytes + merges", V,
                             TOK_N_SPECIAL);
    if ((*merges)->n != V - TOK_FIRST_MERGE)
        return tok_load_fail(err, path, "model.merges: %d merges for %d tokens; expected %d (one per token after id %d)",
                             (*merges)->n, V, V - TOK_FIRST_MERGE, TOK_FIRST_MERGE - 1);
    return 0;
}

// Step 2: "added_tokens" is exactly our specials, with their ids.
static int tok_check_added_tokens(const Json *root, const char *path, char *err) {
    const Json *added = json_get(root, "added_tokens");
    if (!added || added->type != JSON_ARRAY) return tok_load_fail(err, path, "added_tokens: missing (an array)");
    if (added->n != TOK_N_SPECIAL)
        return tok_load_fail(err, path, "added_tokens: %d entries; expected the %d special tokens", added->n,
                             TOK_N_SPECIAL);
    for (int i = 0; i < added->n; i++) {
        const Json *a = &added->items[i];
        int id;
        if (tok_int(json_get(a, "id"), 0, TOK_N_SPECIAL - 1, &id) || id != i ||
            !tok_is_string(json_get(a, "content"), TOK_SPECIAL_TEXT[i]))
            return tok_load_fail(err, path, "added_tokens[%d]: expected {\"id\": %d, \"content\": \"%s\"}", i, i,
                                 TOK_SPECIAL_TEXT[i]);
    }
    return 0;
}

// The vocab as read from "model.vocab": every token's bytes, and the way back from bytes to id.
typedef struct {
    unsigned char *raw; // every non-special token's bytes, back to back
    size_t raw_size;    // their total (the sum of the vocab keys' lengths bounds it)
    unsigned char **tb; // tb[id]: its bytes in raw
    int *tl;            // tl[id]: their count (0 for a special token; -1 while id is unseen)
    TokStrMap ids;      // non-special token bytes -> strmap entry
    int *entry_id;      // strmap entry -> id
} TokReadVocab;

static void tok_read_vocab_free(TokReadVocab *rv) {
    tok_strmap_free(&rv->ids);
    free(rv->raw);
    free(rv->tb);
    free(rv->tl);
    free(rv->entry_id);
}

// One "string": id entry of the vocab (V entries): the id in range and new; a special token at
// its id; byte b at 9 + b; a merged token (2 bytes or more) from TOK_FIRST_MERGE on; every
// string once. Its bytes go to raw at *used.
static int tok_read_vocab_entry(TokReadVocab *rv, const char *key, const Json *value, int V, size_t *used,
                                const char *path, char *err) {
    int id, fresh;
    if (tok_int(value, 0, V - 1, &id))
        return tok_load_fail(err, path, "model.vocab[\"%.80s\"]: the id must be an integer in [0, %d]", key, V - 1);
    if (rv->tl[id] >= 0) return tok_load_fail(err, path, "model.vocab: id %d is given twice", id);
    if (id < TOK_N_SPECIAL) {
        if (strcmp(key, TOK_SPECIAL_TEXT[id]) != 0)
            return tok_load_fail(err, path, "model.vocab: id %d is \"%.80s\"; expected the special token \"%s\"", id,
                                 key, TOK_SPECIAL_TEXT[id]);
        rv->tl[id] = 0;
        return 0;
    }
    unsigned char *bytes = rv->raw + *used;
    int n = tok_unspell(key, bytes);
    if (n <= 0) return tok_load_fail(err, path, "model.vocab[\"%.80s\"]: not a byte-level token string", key);
    if (id < TOK_FIRST_MERGE && (n != 1 || bytes[0] != id - TOK_N_SPECIAL))
        return tok_load_fail(err, path, "model.vocab: id %d is \"%.80s\"; expected the byte 0x%02x", id, key,
                             id - TOK_N_SPECIAL);
    if (id >= TOK_FIRST_MERGE && n < 2)
        return tok_load_fail(err, path, "model.vocab: id %d is the single byte \"%.80s\"; ids from %d on are merges",
                             id, key, TOK_FIRST_MERGE);
    tok_strmap_add(&rv->ids, bytes, (size_t)n, &fresh);
    if (!fresh) return tok_load_fail(err, path, "model.vocab: \"%.80s\" appears twice", key);
    rv->tb[id] = bytes;
    rv->tl[id] = n;
    *used += (size_t)n;
    return 0;
}

// Step 3: "model.vocab" into rv. V keys, each id in range and none twice, so every id in [0, V)
// appears exactly once.
static int tok_read_vocab(const Json *vocab, TokReadVocab *rv, const char *path, char *err) {
    int V = vocab->n;
    for (int k = 0; k < V; k++) rv->raw_size += strlen(vocab->keys[k]);
    rv->raw = tok_alloc(rv->raw_size + 1, 1);
    rv->tb = tok_alloc((size_t)V, sizeof(unsigned char *));
    rv->tl = tok_alloc((size_t)V, sizeof(int));
    for (int id = 0; id < V; id++) rv->tl[id] = -1;
    size_t used = 0;
    for (int k = 0; k < V; k++) {
        if (tok_read_vocab_entry(rv, vocab->keys[k], &vocab->items[k], V, &used, path, err)) return -1;
    }
    rv->entry_id = tok_alloc((size_t)V, sizeof(int));
    for (int id = TOK_N_SPECIAL; id < V; id++) {
        size_t n = (size_t)rv->tl[id];
        rv->entry_id[tok_strmap_find(&rv->ids, rv->tb[id], n, tok_hash_bytes(rv->tb[id], n))] = id;
    }
    return 0;
}

// A merge's two token strings: ["a", "b"], or the older "a b" form (split into *scratch, which
// the caller frees). Returns 0, 1 when m is neither form, or -1 when out of memory.
static int tok_merge_parts(const Json *m, char **scratch, const char *part[2]) {
    if (m->type == JSON_ARRAY && m->n == 2 && m->items[0].type == JSON_STRING && m->items[1].type == JSON_STRING) {
        part[0] = m->items[0].string;
        part[1] = m->items[1].string;
        return 0;
    }
    if (m->type != JSON_STRING || !strchr(m->string, ' ') || strchr(strchr(m->string, ' ') + 1, ' ')) return 1;
    free(*scratch);
    *scratch = strdup(m->string);
    if (!*scratch) return -1;
    *strchr(*scratch, ' ') = 0;
    part[0] = *scratch;
    part[1] = *scratch + strlen(*scratch) + 1;
    return 0;
}

// The strmap entry of the n bytes at s, or -1 when no token has them.
static int tok_read_vocab_find(const TokReadVocab *rv, const unsigned char *s, int n) {
    return tok_strmap_find(&rv->ids, s, (size_t)n, tok_hash_bytes(s, (size_t)n));
}

// Merge i, m: its two parts are tokens made before token TOK_FIRST_MERGE + i, and their bytes
// together are the vocab's token of exactly that id. cat: scratch for a part's or the result's
// bytes; *split: scratch for the "a b" form.
static int tok_read_merge(int i, const Json *m, const TokReadVocab *rv, unsigned char *cat, char **split,
                          Tokenizer *t, const char *path, char *err) {
    const char *part[2];
    int form = tok_merge_parts(m, split, part);
    if (form < 0) return tok_load_fail(err, path, "out of memory");
    if (form > 0) return tok_load_fail(err, path, "model.merges[%d]: expected a pair of token strings", i);
    int pid[2];
    for (int k = 0; k < 2; k++) {
        int n = strlen(part[k]) <= rv->raw_size ? tok_unspell(part[k], cat) : -1;
        int e = n > 0 ? tok_read_vocab_find(rv, cat, n) : -1;
        if (e < 0) return tok_load_fail(err, path, "model.merges[%d]: unknown token \"%.80s\"", i, part[k]);
        pid[k] = rv->entry_id[e];
    }
    int want = TOK_FIRST_MERGE + i;
    if (pid[0] >= want || pid[1] >= want)
        return tok_load_fail(err, path, "model.merges[%d]: uses token %d, which a later merge makes (ids out of order)",
                             i, pid[0] > pid[1] ? pid[0] : pid[1]);
    int la = rv->tl[pid[0]], lb = rv->tl[pid[1]];
    memcpy(cat, rv->tb[pid[0]], (size_t)la);
    memcpy(cat + la, rv->tb[pid[1]], (size_t)lb);
    int e = tok_read_vocab_find(rv, cat, la + lb);
    if (e < 0) return tok_load_fail(err, path, "model.merges[%d]: the merged token is not in model.vocab", i);
    if (rv->entry_id[e] != want)
        return tok_load_fail(err, path, "model.merges[%d]: makes token %d; expected id %d (ids out of order)", i,
                             rv->entry_id[e], want);
    t->merges[i][0] = pid[0];
    t->merges[i][1] = pid[1];
    return 0;
}

// Step 4: "model.merges" into t->merges, in rank order.
static int tok_read_merges(const Json *merges, const TokReadVocab *rv, Tokenizer *t, const char *path,
                           char *err) {
    t->merges = tok_alloc((size_t)(merges->n ? merges->n : 1), sizeof(int[2]));
    unsigned char *cat = tok_alloc(2 * rv->raw_size + 2, 1); // fits any part (<= raw_size bytes) and any two tokens
    char *split = NULL;
    int rc = 0;
    for (int i = 0; i < merges->n && rc == 0; i++)
        rc = tok_read_merge(i, &merges->items[i], rv, cat, &split, t, path, err);
    free(cat);
    free(split);
    return rc;
}

// Reads dir/tokenizer.json in steps: the model around the vocab, the added tokens, the vocab, the
// merges; then builds the tables encoding needs. On failure *t is empty and err says why.
int tokenizer_load(Tokenizer *t, const char *dir, char *err) {
    memset(t, 0, sizeof(*t));
    char path[4096], jerr[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    size_t size;
    char *text = read_file(path, &size, err);
    if (!text) return -1;
    Json *root = json_parse(text, size, jerr);
    free(text);
    const Json *vocab = NULL, *merges = NULL;
    TokReadVocab rv = {0};
    tok_strmap_init(&rv.ids);
    int rc = -1;
    if (!root) {
        tok_load_fail(err, path, "%s", jerr);
    } else if (tok_check_model(root, &vocab, &merges, path, err) == 0 &&
               tok_check_added_tokens(root, path, err) == 0 && tok_read_vocab(vocab, &rv, path, err) == 0 &&
               tok_read_merges(merges, &rv, t, path, err) == 0) {
        t->n_merges = merges->n;
        tok_build(t);
        rc = 0;
    }
    json_free(root);
    tok_read_vocab_free(&rv);
    if (rc) tokenizer_free(t); // a failure also empties *t
    return rc;
}
