// formats.c: the files r1.c reads and writes, bytes on disk <-> the program's structs:
//   - whole files: read_file, and the atomic writer (AtomicFile: atomic_open / atomic_commit /
//     atomic_abort, write_bytes_atomic, write_text_atomic) that every file the program writes
//     goes through, so a crash leaves the old file or the new one whole;
//   - a strict JSON parser (and json_write_string);
//   - safetensors, read with every field validated and written atomically;
//   - config.json in both of its layouts (transformers 5 and the hub), with the presets and
//     config_validate;
//   - the checkpoint directory's staged commit: checkpoint_recover finishes or discards a save
//     that was interrupted between DIR/.staging and DIR.
// The model's checkpoint load and save (which tensors, in which order, the optimizer state) are
// in r1.c, which builds them from these pieces.
//
// Why a file of its own: the file formats are one concept, independent of how the network
// computes; nothing here knows a parameter or a kernel. formats.c is the bottom of the import
// order that r1.h lists (formats.c, tokenizer.c -> kernels.c -> moe.c -> r1.c -> tasks.c ->
// grpo.c -> pipeline.c -> main.c: a file calls only functions of the files before it), so it
// calls into none of the others, and it holds the functions every file uses to give up
// (section 0).
//
// Sections:
//   0. How the program fails: die, xcalloc, xrealloc
//   1. Files, JSON and safetensors: errors and a byte buffer, whole files and atomic files, JSON,
//      safetensors
//   2. Configs: the presets, validation, config.json; the checkpoint directory's staged commit
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE  // madvise (Linux, the BSDs)
#include "r1.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

// ==============================================================================================
// 0. How the program fails: die on bad input, exit on out of memory
// ==============================================================================================
// formats.c is the bottom of the import order (r1.h), so the three functions every file uses to
// give up live here: one message line "r1: ...", exit status 1.

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "r1: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Out of memory is not bad input: the program gives up with one line.
void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        fprintf(stderr, "r1: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return q;
}

// A large buffer (8 MB or more: the parameters, gradients, activations, which every step walks
// through) asks the kernel for 2 MB pages: one TLB entry then maps 512 times as much memory as
// with 4 KB pages, so the products that stream through activations miss the TLB far less.
// The train step was ~5% faster with them on this project's sandbox (tests/BENCH.md). Only
// the 2 MB-aligned middle of the block is advised; the memory is still calloc's (zero until
// written, freed with free). Values are unchanged; where madvise or transparent huge pages
// are missing, or the system says no, nothing happens.
static void ask_huge_pages(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (bytes < 4 * huge) return;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);  // first 2 MB boundary in the block
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(huge - 1);     // last one
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "r1: out of memory (%zu x %zu bytes)\n", n, size);
        exit(1);
    }
    ask_huge_pages(p, n * size);
    return p;
}

// ==============================================================================================
// 1. Files, JSON and safetensors
// ==============================================================================================

// ----------------------------------------------------------------------------------------------
// Errors and a growable byte buffer
// ----------------------------------------------------------------------------------------------

// Formats one line into err (R1_ERR_LEN bytes) and returns -1, so that callers can write
// `return io_fail(err, "...")`. err may be NULL when the caller does not want the message.
static int io_fail(char *err, const char *fmt, ...) {
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, R1_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// Bytes appended one piece at a time (JSON strings, the safetensors header). On allocation
// failure `oom` is set and further appends do nothing; check it once at the end.
typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} ByteBuf;

static void bytebuf_append(ByteBuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (n > SIZE_MAX - b->len - 1) { b->oom = 1; return; }
    if (b->len + n + 1 > b->cap) { // +1 keeps room for a terminating NUL
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        char *data = realloc(b->data, cap);
        if (data == NULL) { b->oom = 1; return; }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void bytebuf_putc(ByteBuf *b, char c) { bytebuf_append(b, &c, 1); }
static void bytebuf_puts(ByteBuf *b, const char *s) { bytebuf_append(b, s, strlen(s)); }

static void bytebuf_printf(ByteBuf *b, const char *fmt, ...) {
    char tmp[128]; // only used for numbers
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) { b->oom = 1; return; }
    bytebuf_append(b, tmp, (size_t)n);
}

// ----------------------------------------------------------------------------------------------
// Whole files
// ----------------------------------------------------------------------------------------------

// Reads in growing chunks rather than asking for the size first, so that pipes and /dev/stdin
// work too, and a directory fails on the read with EISDIR.
char *read_file(const char *path, size_t *size, char *err) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) { io_fail(err, "%s: %s", path, strerror(errno)); return NULL; }
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (len + 1 >= cap) { // grow, keeping one byte for the terminating NUL
            char *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) { free(buf); buf = NULL; break; }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, fp);
        len += got;
        if (got == 0) break;
    }
    if (buf == NULL) { fclose(fp); io_fail(err, "%s: out of memory", path); return NULL; }
    if (ferror(fp)) {
        int e = errno;
        free(buf);
        fclose(fp);
        io_fail(err, "%s: %s", path, strerror(e));
        return NULL;
    }
    fclose(fp);
    buf[len] = '\0';
    if (size != NULL) *size = len;
    return buf;
}

// ----------------------------------------------------------------------------------------------
// Atomic files: every file the program writes goes through these three functions, so a reader
// (or a run that is killed) sees the old file or the new one whole, never a part of either.
// The bytes go to PATH.tmp, which is flushed, synced to the disk and renamed over PATH (a rename
// within one directory is atomic in POSIX) only once it is complete.
// ----------------------------------------------------------------------------------------------

int atomic_open(AtomicFile *a, const char *path, char *err) {
    memset(a, 0, sizeof(*a));
    if (strlen(path) + 5 > sizeof(a->tmp))
        return io_fail(err, "%.200s...: path too long (%zu bytes)", path, strlen(path));
    snprintf(a->path, sizeof(a->path), "%s", path);
    snprintf(a->tmp, sizeof(a->tmp), "%s.tmp", path);
    a->f = fopen(a->tmp, "wb");
    if (!a->f) return io_fail(err, "%s: %s", a->tmp, strerror(errno));
    return 0;
}

int atomic_commit(AtomicFile *a, char *err) {
    int ok = !ferror(a->f);
    ok = fflush(a->f) == 0 && ok;
    ok = fsync(fileno(a->f)) == 0 && ok;
    int e = ok ? 0 : (errno ? errno : EIO);
    if (fclose(a->f) != 0 && ok) ok = 0, e = errno;
    a->f = NULL;
    if (ok && rename(a->tmp, a->path) != 0) ok = 0, e = errno, a->failed_at_rename = 1;
    if (!ok) {
        a->failed_errno = e;
        remove(a->tmp);
        return io_fail(err, "%s: %s", a->path, strerror(e));
    }
    return 0;
}

void atomic_abort(AtomicFile *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    remove(a->tmp);
}

int write_bytes_atomic(const char *path, const void *data, size_t n, char *err) {
    AtomicFile a;
    if (atomic_open(&a, path, err)) return -1;
    if (fwrite(data, 1, n, a.f) != n) {
        int e = errno ? errno : EIO;
        atomic_abort(&a);
        return io_fail(err, "%s: %s", path, strerror(e));
    }
    return atomic_commit(&a, err);
}

int write_text_atomic(const char *path, const char *text, char *err) {
    return write_bytes_atomic(path, text, strlen(text), err);
}

// ----------------------------------------------------------------------------------------------
// JSON (RFC 8259), parsed into a tree of Json nodes (the struct is in r1.h)
// ----------------------------------------------------------------------------------------------
// A recursive-descent parser: one function per kind of value, each called with the position on
// the value's first byte and leaving it just past the value's last byte. Strict:
//   - no comments, no trailing commas, no NaN/Infinity, no leading zeros or '+' in numbers;
//   - strings must be valid UTF-8 without raw control characters; escapes are decoded, \uXXXX
//     (with UTF-16 surrogate pairs for code points above U+FFFF) into UTF-8;
//   - "\u0000" is rejected because our strings are NUL-terminated;
//   - numbers too large for a double (1e999) are rejected;
//   - duplicate keys are kept in order; json_get returns the LAST one (as Python's json does).
// Errors say where: "line L col C: what", with lines and columns counted from 1 and columns
// counted in bytes.

#define JSON_MAX_DEPTH 64

typedef struct {
    const char *text;
    size_t len;
    size_t pos; // the next byte to read
    int depth;  // arrays and objects open around the current position
    char *err;
} JsonParser;

static int json_fail(JsonParser *p, size_t at, const char *fmt, ...) {
    if (p->err == NULL) return -1;
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->text[i] == '\n') { line++; line_start = i + 1; }
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(p->err, R1_ERR_LEN, "line %zu col %zu: %s", line, at - line_start + 1, what);
    return -1;
}

// "'x'" for printable ASCII, "byte 0xNN" otherwise, for messages about unexpected input.
static const char *json_describe_byte(unsigned char c, char out[16]) {
    if (c >= 0x20 && c < 0x7f) snprintf(out, 16, "'%c'", c);
    else snprintf(out, 16, "byte 0x%02x", c);
    return out;
}

static int json_fail_unexpected(JsonParser *p, const char *expected) {
    char what[16];
    if (p->pos >= p->len) return json_fail(p, p->pos, "unexpected end of input, expected %s", expected);
    return json_fail(p, p->pos, "unexpected %s, expected %s",
                     json_describe_byte((unsigned char)p->text[p->pos], what), expected);
}

static int json_is_digit(char c) { return c >= '0' && c <= '9'; }

static void json_skip_whitespace(JsonParser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

// Frees what a node owns (not the node itself: nodes live inside their parent's items array).
static void json_free_contents(Json *j) {
    free(j->string);
    for (int i = 0; i < j->n; i++) {
        json_free_contents(&j->items[i]);
        if (j->keys != NULL) free(j->keys[i]);
    }
    free(j->keys);
    free(j->items);
    memset(j, 0, sizeof *j);
}

void json_free(Json *j) {
    if (j == NULL) return;
    json_free_contents(j);
    free(j);
}

static int json_parse_value(JsonParser *p, Json *out);

// Literals: true, false, null.
static int json_parse_literal(JsonParser *p, const char *word, Json *out, JsonType type,
                              double number) {
    size_t start = p->pos, n = strlen(word);
    for (size_t i = 0; i < n; i++) {
        if (start + i >= p->len) return json_fail(p, p->len, "unexpected end of input in '%s'", word);
        if (p->text[start + i] != word[i]) return json_fail(p, start, "invalid literal, expected '%s'", word);
    }
    p->pos = start + n;
    out->type = type;
    out->number = number;
    return 0;
}

// number = [ "-" ] ( "0" | [1-9][0-9]* ) [ "." [0-9]+ ] [ ( "e" | "E" ) [ "+" | "-" ] [0-9]+ ]
// The grammar is checked here; the value is then computed by strtod (which is stricter about
// nothing we allow, and uses '.' as long as nobody calls setlocale()).
static int json_parse_number(JsonParser *p, Json *out) {
    const char *t = p->text;
    size_t start = p->pos, i = p->pos, len = p->len;
    if (t[i] == '-') i++;
    if (i >= len) return json_fail(p, i, "unexpected end of input in number");
    if (!json_is_digit(t[i])) return json_fail(p, i, "invalid number: digit expected after '-'");
    if (t[i] == '0') {
        i++;
        if (i < len && json_is_digit(t[i])) return json_fail(p, start, "invalid number: leading zero");
    } else {
        while (i < len && json_is_digit(t[i])) i++;
    }
    if (i < len && t[i] == '.') {
        i++;
        if (i >= len) return json_fail(p, i, "unexpected end of input in number");
        if (!json_is_digit(t[i])) return json_fail(p, i, "invalid number: digit expected after '.'");
        while (i < len && json_is_digit(t[i])) i++;
    }
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < len && (t[i] == '+' || t[i] == '-')) i++;
        if (i >= len) return json_fail(p, i, "unexpected end of input in number");
        if (!json_is_digit(t[i])) return json_fail(p, i, "invalid number: digit expected in exponent");
        while (i < len && json_is_digit(t[i])) i++;
    }
    // strtod needs a NUL-terminated copy: the text need not be terminated at len
    size_t n = i - start;
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (copy == NULL) return json_fail(p, start, "out of memory");
    memcpy(copy, t + start, n);
    copy[n] = '\0';
    double value = strtod(copy, NULL);
    if (copy != small) free(copy);
    if (!isfinite(value)) return json_fail(p, start, "number out of range");
    out->type = JSON_NUMBER;
    out->number = value;
    p->pos = i;
    return 0;
}

// Length of the valid UTF-8 sequence at s (at most avail bytes), or 0 if it is invalid:
// overlong forms, UTF-16 surrogates (U+D800..DFFF) and code points above U+10FFFF are invalid.
static size_t utf8_sequence_length(const unsigned char *s, size_t avail) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF; // allowed range of the second byte
    size_t n;
    if (c < 0x80) return 1;
    else if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (avail < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
    }
    return n;
}

static void utf8_encode(ByteBuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    bytebuf_append(b, u, n);
}

// Four hex digits at p->pos (after "\u").
static int json_parse_hex4(JsonParser *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (p->pos >= p->len) return json_fail(p, p->pos, "unexpected end of input in \\u escape");
        char c = p->text[p->pos], what[16];
        int d = json_is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return json_fail(p, p->pos, "invalid hex digit %s in \\u escape",
                                    json_describe_byte((unsigned char)c, what));
        v = v * 16 + (uint32_t)d;
        p->pos++;
    }
    *out = v;
    return 0;
}

// \uXXXX, or a UTF-16 surrogate pair \uD8xx\uDCxx for a code point above U+FFFF:
// cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00). `at` is the backslash.
static int json_parse_unicode_escape(JsonParser *p, ByteBuf *b, size_t at) {
    uint32_t cp;
    if (json_parse_hex4(p, &cp) != 0) return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(p, at, "unpaired low surrogate \\u%04X", (unsigned)cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        size_t at_low = p->pos;
        if (p->pos + 1 >= p->len || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u')
            return json_fail(p, at, "unpaired high surrogate \\u%04X", (unsigned)cp);
        p->pos += 2;
        uint32_t low;
        if (json_parse_hex4(p, &low) != 0) return -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return json_fail(p, at_low, "expected a low surrogate after \\u%04X", (unsigned)cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (cp == 0) return json_fail(p, at, "\\u0000 is not supported (strings are NUL-terminated)");
    utf8_encode(b, cp);
    return 0;
}

// One escape sequence at p->pos (on the backslash).
static int json_parse_escape(JsonParser *p, ByteBuf *b) {
    size_t at = p->pos;
    if (at + 1 >= p->len) return json_fail(p, p->len, "unexpected end of input in string");
    char e = p->text[at + 1], what[16];
    p->pos = at + 2;
    switch (e) {
    case '"': bytebuf_putc(b, '"'); return 0;
    case '\\': bytebuf_putc(b, '\\'); return 0;
    case '/': bytebuf_putc(b, '/'); return 0;
    case 'b': bytebuf_putc(b, '\b'); return 0;
    case 'f': bytebuf_putc(b, '\f'); return 0;
    case 'n': bytebuf_putc(b, '\n'); return 0;
    case 'r': bytebuf_putc(b, '\r'); return 0;
    case 't': bytebuf_putc(b, '\t'); return 0;
    case 'u': return json_parse_unicode_escape(p, b, at);
    default: return json_fail(p, at, "invalid escape: backslash followed by %s",
                              json_describe_byte((unsigned char)e, what));
    }
}

// A string literal at p->pos (on the opening quote) -> a malloc'd, NUL-terminated UTF-8 string.
static int json_parse_string(JsonParser *p, char **out) {
    ByteBuf b = {0};
    p->pos++; // the opening quote
    for (;;) {
        if (p->pos >= p->len) { free(b.data); return json_fail(p, p->pos, "unexpected end of input in string"); }
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) {
            free(b.data);
            return json_fail(p, p->pos, "control character 0x%02x in string (must be escaped)", c);
        }
        if (c == '\\') {
            if (json_parse_escape(p, &b) != 0) { free(b.data); return -1; }
            continue;
        }
        size_t n = utf8_sequence_length((const unsigned char *)p->text + p->pos, p->len - p->pos);
        if (n == 0) { free(b.data); return json_fail(p, p->pos, "invalid UTF-8 in string"); }
        bytebuf_append(&b, p->text + p->pos, n);
        p->pos += n;
    }
    bytebuf_append(&b, "", 0); // makes sure even "" gets an allocation (and its NUL)
    if (b.oom) { free(b.data); return json_fail(p, p->pos, "out of memory"); }
    *out = b.data;
    return 0;
}

// Makes room for one more item (and key, for objects) in a container with capacity *cap.
static int json_grow(JsonParser *p, Json *j, int *cap) {
    if (j->n < *cap) return 0;
    if (*cap > INT_MAX / 2) return json_fail(p, p->pos, "too many items");
    int new_cap = *cap ? *cap * 2 : 4;
    Json *items = realloc(j->items, (size_t)new_cap * sizeof *items);
    if (items == NULL) return json_fail(p, p->pos, "out of memory");
    j->items = items;
    if (j->type == JSON_OBJECT) {
        char **keys = realloc(j->keys, (size_t)new_cap * sizeof *keys);
        if (keys == NULL) return json_fail(p, p->pos, "out of memory");
        j->keys = keys;
    }
    *cap = new_cap;
    return 0;
}

// After an item: ',' (more to come, returns 1) or the closing bracket (returns 0), else -1.
static int json_after_item(JsonParser *p, char close) {
    json_skip_whitespace(p);
    if (p->pos < p->len && p->text[p->pos] == ',') { p->pos++; return 1; }
    if (p->pos < p->len && p->text[p->pos] == close) { p->pos++; return 0; }
    return json_fail_unexpected(p, close == ']' ? "',' or ']'" : "',' or '}'");
}

// array = "[" [ value *( "," value ) ] "]"
static int json_parse_array(JsonParser *p, Json *out) {
    out->type = JSON_ARRAY;
    p->pos++; // '['
    json_skip_whitespace(p);
    if (p->pos < p->len && p->text[p->pos] == ']') { p->pos++; return 0; }
    int cap = 0, more = 1;
    while (more) {
        if (json_grow(p, out, &cap) != 0) goto fail;
        if (json_parse_value(p, &out->items[out->n]) != 0) goto fail;
        out->n++;
        more = json_after_item(p, ']');
        if (more < 0) goto fail;
    }
    return 0;
fail:
    json_free_contents(out);
    return -1;
}

// object = "{" [ string ":" value *( "," string ":" value ) ] "}"
static int json_parse_object(JsonParser *p, Json *out) {
    out->type = JSON_OBJECT;
    p->pos++; // '{'
    json_skip_whitespace(p);
    if (p->pos < p->len && p->text[p->pos] == '}') { p->pos++; return 0; }
    int cap = 0, more = 1;
    while (more) {
        char *key = NULL;
        if (json_grow(p, out, &cap) != 0) goto fail;
        json_skip_whitespace(p);
        if (p->pos >= p->len || p->text[p->pos] != '"') { json_fail_unexpected(p, "a string key"); goto fail; }
        if (json_parse_string(p, &key) != 0) goto fail;
        json_skip_whitespace(p);
        if (p->pos >= p->len || p->text[p->pos] != ':') {
            json_fail_unexpected(p, "':'");
            free(key);
            goto fail;
        }
        p->pos++;
        if (json_parse_value(p, &out->items[out->n]) != 0) { free(key); goto fail; }
        out->keys[out->n++] = key;
        more = json_after_item(p, '}');
        if (more < 0) goto fail;
    }
    return 0;
fail:
    json_free_contents(out);
    return -1;
}

// value = object | array | string | number | "true" | "false" | "null", with whitespace around.
static int json_parse_value(JsonParser *p, Json *out) {
    memset(out, 0, sizeof *out); // JSON_NULL, nothing owned
    json_skip_whitespace(p);
    if (p->pos >= p->len) return json_fail(p, p->pos, "unexpected end of input, expected a value");
    char c = p->text[p->pos];
    if (c == '{' || c == '[') {
        if (p->depth >= JSON_MAX_DEPTH) return json_fail(p, p->pos, "nesting deeper than %d", JSON_MAX_DEPTH);
        p->depth++;
        int rc = c == '{' ? json_parse_object(p, out) : json_parse_array(p, out);
        p->depth--;
        return rc;
    }
    if (c == '"') {
        if (json_parse_string(p, &out->string) != 0) return -1;
        out->type = JSON_STRING;
        return 0;
    }
    if (c == 't') return json_parse_literal(p, "true", out, JSON_BOOL, 1);
    if (c == 'f') return json_parse_literal(p, "false", out, JSON_BOOL, 0);
    if (c == 'n') return json_parse_literal(p, "null", out, JSON_NULL, 0);
    if (c == '-' || json_is_digit(c)) return json_parse_number(p, out);
    return json_fail_unexpected(p, "a value");
}

Json *json_parse(const char *text, size_t len, char *err) {
    JsonParser p = {.text = text, .len = text != NULL ? len : 0, .err = err};
    Json *root = malloc(sizeof *root);
    if (root == NULL) { json_fail(&p, 0, "out of memory"); return NULL; }
    if (json_parse_value(&p, root) != 0) { free(root); return NULL; }
    json_skip_whitespace(&p);
    if (p.pos < p.len) {
        char what[16];
        json_fail(&p, p.pos, "unexpected %s after the JSON value",
                  json_describe_byte((unsigned char)p.text[p.pos], what));
        json_free(root);
        return NULL;
    }
    return root;
}

Json *json_get(const Json *obj, const char *key) {
    if (obj == NULL || obj->type != JSON_OBJECT || key == NULL) return NULL;
    for (int i = obj->n - 1; i >= 0; i--) { // from the end: the last duplicate wins
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    }
    return NULL;
}

// The JSON spelling of one byte inside a string literal ("\\n", "\\u0001", or the byte itself).
// Bytes >= 0x80 are passed through: the string is assumed to be UTF-8 already.
static const char *json_escape_byte(unsigned char c, char out[8]) {
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default:
        if (c < 0x20) snprintf(out, 8, "\\u%04x", c);
        else { out[0] = (char)c; out[1] = '\0'; }
        return out;
    }
}

void json_write_string(FILE *f, const char *s) {
    char tmp[8];
    fputc('"', f);
    for (const char *c = s != NULL ? s : ""; *c; c++) fputs(json_escape_byte((unsigned char)*c, tmp), f);
    fputc('"', f);
}

static void bytebuf_append_json_string(ByteBuf *b, const char *s) {
    char tmp[8];
    bytebuf_putc(b, '"');
    for (const char *c = s; *c; c++) bytebuf_puts(b, json_escape_byte((unsigned char)*c, tmp));
    bytebuf_putc(b, '"');
}

// ----------------------------------------------------------------------------------------------
// safetensors (https://github.com/huggingface/safetensors), the Hugging Face checkpoint format
// ----------------------------------------------------------------------------------------------
//   bytes [0, 8)       N, the length of the header, unsigned 64-bit little-endian
//   bytes [8, 8+N)     the header: a UTF-8 JSON object, which may be padded with trailing spaces
//                        {"__metadata__": {"format": "pt"},                        (optional)
//                         "model.norm.weight": {"dtype": "F32", "shape": [64],
//                                               "data_offsets": [0, 256]}, ...}
//   bytes [8+N, EOF)   the data section. A tensor's bytes are [begin, end) of it, row-major,
//                      little-endian, and end - begin = product(shape) * sizeof(dtype).
// We read whole files into memory (ours are small) and keep only the data section.
// The writer pads N to a multiple of 8 so the data section starts 8-byte aligned in the file.

#define ST_MAX_HEADER (100u * 1000u * 1000u) // a header beyond 100 MB is corrupt, not big
#define ST_MAX_DIMS 4

static const struct {
    const char *name;
    int size;
} st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1},
};

// Bytes per element of a dtype name, 0 if we do not know it.
static int st_dtype_size(const char *dtype) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(dtype, st_dtypes[i].name) == 0) return st_dtypes[i].size;
    }
    return 0;
}

static uint64_t read_le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static void write_le64(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

// Bytes of a tensor with this shape and element size, or UINT64_MAX if that overflows.
static uint64_t st_nbytes(const int64_t *shape, int ndim, int elem_size) {
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) return 0;
    }
    uint64_t n = (uint64_t)elem_size;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (n > UINT64_MAX / d) return UINT64_MAX;
        n *= d;
    }
    return n;
}

// A JSON number that is a whole number in [0, 2^53] (all exact in a double), else -1.
static int64_t json_as_count(const Json *j) {
    if (j == NULL || j->type != JSON_NUMBER) return -1;
    double v = j->number;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return -1;
    return (int64_t)v;
}

// "<path>: tensor "<name>": what" into err; returns -1.
static int st_fail_tensor(char *err, const char *path, const char *name, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return io_fail(err, "%s: tensor \"%.100s\": %s", path, name, what);
}

// "2, 3" for messages.
static const char *st_format_shape(const StTensor *t, char out[128]) {
    out[0] = '\0';
    for (int i = 0; i < t->ndim; i++) {
        size_t used = strlen(out);
        snprintf(out + used, 128 - used, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    }
    return out;
}

// Checks one header entry {"dtype": .., "shape": [..], "data_offsets": [begin, end]} and fills t.
static int st_parse_tensor(const char *path, const char *name, const Json *info,
                           size_t data_size, StTensor *t, char *err) {
    if (strlen(name) >= sizeof t->name)
        return st_fail_tensor(err, path, name, "name is longer than %zu bytes", sizeof t->name - 1);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (info->type != JSON_OBJECT) return st_fail_tensor(err, path, name, "entry is not a JSON object");

    const Json *dtype = json_get(info, "dtype");
    if (dtype == NULL) return st_fail_tensor(err, path, name, "missing \"dtype\"");
    if (dtype->type != JSON_STRING) return st_fail_tensor(err, path, name, "\"dtype\" is not a string");
    int elem_size = st_dtype_size(dtype->string);
    if (elem_size == 0) return st_fail_tensor(err, path, name, "unknown dtype \"%.16s\"", dtype->string);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype->string);

    const Json *shape = json_get(info, "shape");
    if (shape == NULL) return st_fail_tensor(err, path, name, "missing \"shape\"");
    if (shape->type != JSON_ARRAY) return st_fail_tensor(err, path, name, "\"shape\" is not an array");
    if (shape->n > ST_MAX_DIMS)
        return st_fail_tensor(err, path, name, "shape has %d dims, at most %d are supported", shape->n, ST_MAX_DIMS);
    t->ndim = shape->n;
    for (int i = 0; i < shape->n; i++) {
        t->shape[i] = json_as_count(&shape->items[i]);
        if (t->shape[i] < 0) return st_fail_tensor(err, path, name, "shape[%d] is not an integer in [0, 2^53]", i);
    }

    const Json *offsets = json_get(info, "data_offsets");
    if (offsets == NULL) return st_fail_tensor(err, path, name, "missing \"data_offsets\"");
    if (offsets->type != JSON_ARRAY || offsets->n != 2)
        return st_fail_tensor(err, path, name, "\"data_offsets\" is not an array [begin, end]");
    int64_t begin = json_as_count(&offsets->items[0]), end = json_as_count(&offsets->items[1]);
    if (begin < 0 || end < 0)
        return st_fail_tensor(err, path, name, "\"data_offsets\" are not integers in [0, 2^53]");
    if (begin > end)
        return st_fail_tensor(err, path, name, "data_offsets [%" PRId64 ", %" PRId64 "]: begin > end", begin, end);
    if ((uint64_t)end > data_size)
        return st_fail_tensor(err, path, name, "data_offsets end %" PRId64 " is past the data section (%zu bytes)",
                              end, data_size);
    t->begin = (size_t)begin;
    t->end = (size_t)end;

    uint64_t expected = st_nbytes(t->shape, t->ndim, elem_size);
    if (expected != (uint64_t)(end - begin)) {
        char dims[128], need[32] = "more than 2^64";
        if (expected != UINT64_MAX) snprintf(need, sizeof need, "%" PRIu64, expected);
        return st_fail_tensor(err, path, name, "shape [%s] of %s needs %s bytes but data_offsets hold %" PRId64,
                              st_format_shape(t, dims), t->dtype, need, end - begin);
    }
    return 0;
}

static int st_compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_compare_by_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static int st_compare_by_begin(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

// No two tensors may share a name, or a byte of the data section.
static int st_check_names_and_overlaps(const char *path, const StFile *f, char *err) {
    if (f->n < 2) return 0;
    const StTensor **order = malloc((size_t)f->n * sizeof *order);
    if (order == NULL) return io_fail(err, "%s: out of memory", path);
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    int rc = 0;
    qsort(order, (size_t)f->n, sizeof *order, st_compare_by_name);
    for (int i = 1; i < f->n && rc == 0; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            rc = st_fail_tensor(err, path, order[i]->name, "appears twice in the header");
    }
    qsort(order, (size_t)f->n, sizeof *order, st_compare_by_begin);
    const StTensor *prev = NULL; // the non-empty tensor that ends last so far
    for (int i = 0; i < f->n && rc == 0; i++) {
        const StTensor *t = order[i];
        if (t->begin == t->end) continue;
        if (prev != NULL && t->begin < prev->end)
            rc = st_fail_tensor(err, path, t->name, "data_offsets overlap those of \"%.100s\"", prev->name);
        if (prev == NULL || t->end > prev->end) prev = t;
    }
    free(order);
    return rc;
}

// "__metadata__" must map strings to strings.
static int st_check_metadata(const char *path, const Json *meta, char *err) {
    if (meta->type != JSON_OBJECT) return io_fail(err, "%s: \"__metadata__\" is not a JSON object", path);
    for (int i = 0; i < meta->n; i++) {
        if (meta->items[i].type != JSON_STRING)
            return io_fail(err, "%s: \"__metadata__\" value of \"%.100s\" is not a string", path, meta->keys[i]);
    }
    return 0;
}

// Fills f->t from a parsed header; data_size is the size of the data section.
static int st_parse_header(const char *path, const Json *header, size_t data_size, StFile *f,
                           char *err) {
    if (header->type != JSON_OBJECT) return io_fail(err, "%s: header is not a JSON object", path);
    int n_tensors = 0;
    for (int i = 0; i < header->n; i++) {
        if (strcmp(header->keys[i], "__metadata__") == 0) {
            if (st_check_metadata(path, &header->items[i], err) != 0) return -1;
        } else {
            n_tensors++;
        }
    }
    f->t = calloc(n_tensors > 0 ? (size_t)n_tensors : 1, sizeof *f->t);
    if (f->t == NULL) return io_fail(err, "%s: out of memory", path);
    for (int i = 0; i < header->n; i++) {
        if (strcmp(header->keys[i], "__metadata__") == 0) continue;
        if (st_parse_tensor(path, header->keys[i], &header->items[i], data_size, &f->t[f->n], err) != 0)
            return -1;
        f->n++;
    }
    return st_check_names_and_overlaps(path, f, err);
}

int st_read(const char *path, StFile *f, char *err) {
    memset(f, 0, sizeof *f);
    size_t size;
    unsigned char *buf = (unsigned char *)read_file(path, &size, err);
    if (buf == NULL) return -1;
    Json *header = NULL;
    if (size < 8) {
        io_fail(err, "%s: file is %zu bytes, too short for the 8-byte header length", path, size);
        goto fail;
    }
    uint64_t header_len = read_le64(buf);
    if (header_len > ST_MAX_HEADER) {
        io_fail(err, "%s: header length %" PRIu64 " is absurd (more than 100 MB)", path, header_len);
        goto fail;
    }
    if (header_len > size - 8) {
        io_fail(err, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)", path,
             header_len, size);
        goto fail;
    }
    char json_err[R1_ERR_LEN];
    header = json_parse((const char *)buf + 8, (size_t)header_len, json_err);
    if (header == NULL) {
        io_fail(err, "%s: header is not valid JSON: %s", path, json_err);
        goto fail;
    }
    size_t data_start = 8 + (size_t)header_len, data_size = size - data_start;
    if (st_parse_header(path, header, data_size, f, err) != 0) goto fail;
    json_free(header);
    // keep only the data section: move it to the front of the buffer
    memmove(buf, buf + data_start, data_size);
    f->data = buf;
    f->data_size = data_size;
    return 0;
fail:
    json_free(header);
    free(buf);
    free(f->t);
    memset(f, 0, sizeof *f);
    return -1;
}

void st_free(StFile *f) {
    if (f == NULL) return;
    free(f->t);
    free(f->data);
    memset(f, 0, sizeof *f);
}

StTensor *st_find(StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++) {
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    }
    return NULL;
}

// Checks what st_write is asked to write (so that st_read will accept the file) and computes
// each tensor's byte size.
static int st_check_writes(const char *path, const StWrite *tensors, int n, const char **metadata,
                           int n_meta, uint64_t *nbytes, char *err) {
    if (n < 0 || n_meta < 0 || (n > 0 && tensors == NULL) || (n_meta > 0 && metadata == NULL))
        return io_fail(err, "%s: bad arguments to st_write", path);
    for (int i = 0; i < 2 * n_meta; i++) {
        if (metadata[i] == NULL) return io_fail(err, "%s: metadata string %d is NULL", path, i);
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const StWrite *t = &tensors[i];
        if (t->name == NULL) return io_fail(err, "%s: tensor %d has no name", path, i);
        if (strlen(t->name) >= sizeof ((StTensor *)0)->name)
            return st_fail_tensor(err, path, t->name, "name is longer than %zu bytes", sizeof ((StTensor *)0)->name - 1);
        if (strcmp(t->name, "__metadata__") == 0) return st_fail_tensor(err, path, t->name, "reserved name");
        int elem_size = t->dtype != NULL ? st_dtype_size(t->dtype) : 0;
        if (elem_size == 0) return st_fail_tensor(err, path, t->name, "unknown dtype \"%.16s\"", t->dtype ? t->dtype : "");
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) return st_fail_tensor(err, path, t->name, "ndim %d is not in [0, 4]", t->ndim);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) return st_fail_tensor(err, path, t->name, "shape[%d] is negative", d);
        }
        nbytes[i] = st_nbytes(t->shape, t->ndim, elem_size);
        if (nbytes[i] > SIZE_MAX / 2 || total + nbytes[i] > SIZE_MAX / 2)
            return st_fail_tensor(err, path, t->name, "too large");
        if (nbytes[i] > 0 && t->data == NULL) return st_fail_tensor(err, path, t->name, "data is NULL");
        total += nbytes[i];
    }
    if (n < 2) return 0;
    const char **names = malloc((size_t)n * sizeof *names);
    if (names == NULL) return io_fail(err, "%s: out of memory", path);
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    int rc = 0;
    qsort(names, (size_t)n, sizeof *names, st_compare_strings);
    for (int i = 1; i < n && rc == 0; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) rc = st_fail_tensor(err, path, names[i], "appears twice");
    }
    free(names);
    return rc;
}

// The header: {"__metadata__":{...},"<name>":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...}
// with tensors in the given order and their data contiguous, padded with spaces to a multiple
// of 8 bytes.
static void st_build_header(ByteBuf *b, const StWrite *tensors, int n, const char **metadata,
                            int n_meta, const uint64_t *nbytes) {
    bytebuf_putc(b, '{');
    if (n_meta > 0) {
        bytebuf_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i > 0) bytebuf_putc(b, ',');
            bytebuf_append_json_string(b, metadata[2 * i]);
            bytebuf_putc(b, ':');
            bytebuf_append_json_string(b, metadata[2 * i + 1]);
        }
        bytebuf_putc(b, '}');
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const StWrite *t = &tensors[i];
        if (i > 0 || n_meta > 0) bytebuf_putc(b, ',');
        bytebuf_append_json_string(b, t->name);
        bytebuf_puts(b, ":{\"dtype\":");
        bytebuf_append_json_string(b, t->dtype);
        bytebuf_puts(b, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) bytebuf_printf(b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        bytebuf_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + nbytes[i]);
        offset += nbytes[i];
    }
    bytebuf_putc(b, '}');
    while (b->len % 8 != 0) bytebuf_putc(b, ' ');
}

// Writes the length, header and data to fp (atomic_commit then syncs them to the disk).
// Returns 0, or -1 with errno set.
static int st_write_stream(FILE *fp, const ByteBuf *header, const StWrite *tensors, int n,
                           const uint64_t *nbytes) {
    unsigned char len[8];
    write_le64(len, header->len);
    if (fwrite(len, 1, 8, fp) != 8) return -1;
    if (fwrite(header->data, 1, header->len, fp) != header->len) return -1;
    for (int i = 0; i < n; i++) {
        if (nbytes[i] > 0 && fwrite(tensors[i].data, 1, (size_t)nbytes[i], fp) != (size_t)nbytes[i]) return -1;
    }
    return 0;
}

// The file through an atomic file (above): "<path>.tmp" is written, synced and renamed onto
// path, so a crash or a full disk leaves either the old file or the new one, never half of one.
// The message names the step that failed: create, write or rename "<path>.tmp".
static int st_write_atomic(const char *path, const ByteBuf *header, const StWrite *tensors, int n,
                           const uint64_t *nbytes, char *err) {
    AtomicFile a;
    char why[R1_ERR_LEN];  // "<path>.tmp: why"
    if (atomic_open(&a, path, why) != 0) return io_fail(err, "%s: cannot create %s", path, why);
    if (st_write_stream(a.f, header, tensors, n, nbytes) != 0) {
        int e = errno;
        atomic_abort(&a);
        return io_fail(err, "%s: cannot write %s: %s", path, a.tmp, strerror(e));
    }
    if (atomic_commit(&a, NULL) == 0) return 0;
    if (a.failed_at_rename)
        return io_fail(err, "%s: cannot rename %s onto it: %s", path, a.tmp, strerror(a.failed_errno));
    return io_fail(err, "%s: cannot write %s: %s", path, a.tmp, strerror(a.failed_errno));
}

// Checks the tensors, builds the header, and writes the file atomically.
int st_write(const char *path, const StWrite *tensors, int n, const char **metadata, int n_meta,
             char *err) {
    uint64_t *nbytes = calloc(n > 0 ? (size_t)n : 1, sizeof *nbytes);
    if (nbytes == NULL) return io_fail(err, "%s: out of memory", path);
    if (st_check_writes(path, tensors, n, metadata, n_meta, nbytes, err) != 0) { free(nbytes); return -1; }
    ByteBuf header = {0};
    st_build_header(&header, tensors, n, metadata, n_meta, nbytes);
    int rc = header.oom ? io_fail(err, "%s: out of memory", path)
                        : st_write_atomic(path, &header, tensors, n, nbytes, err);
    free(header.data);
    free(nbytes);
    return rc;
}

// ==============================================================================================
// 2. Configs: the presets, validation, config.json (Hugging Face hub layout); checkpoint commits
// ==============================================================================================

// The presets are plain tables: copy one, change a number, and run `./r1 info --config NAME`.
// initializer_range: 0.006 is DeepSeek-V3's value at width 7168; the laptop presets (width 96-128)
// use 0.02, transformers' default, because there attention learns to copy digits from the
// question about twice as soon (held-out loss 0.32 against 0.65 after 750 pretraining steps on
// the arithmetic corpus; tutorial/03-pretraining.md).
typedef struct {
    const char *name;
    const char *what;
    Config c;
} Preset;

static const Preset PRESETS[] = {
    {"deepseek-v3", "the real 671B DeepSeek-V3 shape (for `info` only: it does not fit a laptop)",
     {.vocab_size = 129280, .hidden_size = 7168, .intermediate_size = 18432,
      .moe_intermediate_size = 2048, .num_hidden_layers = 61, .first_k_dense_replace = 3,
      .n_routed_experts = 256, .num_experts_per_tok = 8, .n_shared_experts = 1, .n_group = 8,
      .topk_group = 4, .norm_topk_prob = 1, .routed_scaling_factor = 2.5f,
      .num_attention_heads = 128, .q_lora_rank = 1536, .kv_lora_rank = 512,
      .qk_nope_head_dim = 128, .qk_rope_head_dim = 64, .v_head_dim = 128, .rms_norm_eps = 1e-6f, .rope_interleave = 1,
      .rope_theta = 10000.0f, .rope_yarn = 1, .rope_factor = 40.0f,
      .rope_original_max_position_embeddings = 4096, .rope_beta_fast = 32.0f,
      .rope_beta_slow = 1.0f, .rope_mscale = 1.0f, .rope_mscale_all_dim = 1.0f,
      .max_position_embeddings = 163840, .tie_word_embeddings = 0, .initializer_range = 0.006f,
      .bos_token_id = 0, .eos_token_id = 1, .num_nextn_predict_layers = 1}},
    {"r1-61", "the true 61-block structure (3 dense + 58 MoE) at widths a laptop trains",
     {.vocab_size = 1024, .hidden_size = 128, .intermediate_size = 384,
      .moe_intermediate_size = 64, .num_hidden_layers = 61, .first_k_dense_replace = 3,
      .n_routed_experts = 16, .num_experts_per_tok = 2, .n_shared_experts = 1, .n_group = 4,
      .topk_group = 2, .norm_topk_prob = 1, .routed_scaling_factor = 2.5f,
      .num_attention_heads = 4, .q_lora_rank = 64, .kv_lora_rank = 32, .qk_nope_head_dim = 32,
      .qk_rope_head_dim = 16, .v_head_dim = 32, .rms_norm_eps = 1e-6f, .rope_interleave = 1, .rope_theta = 10000.0f,
      .max_position_embeddings = 512, .initializer_range = 0.02f, .bos_token_id = 0,
      .eos_token_id = 1}},
    {"small", "the default for experiments: 6 blocks (1 dense + 5 MoE), trains in minutes",
     {.vocab_size = 1024, .hidden_size = 128, .intermediate_size = 384,
      .moe_intermediate_size = 96, .num_hidden_layers = 6, .first_k_dense_replace = 1,
      .n_routed_experts = 8, .num_experts_per_tok = 2, .n_shared_experts = 1, .n_group = 2,
      .topk_group = 1, .norm_topk_prob = 1, .routed_scaling_factor = 2.5f,
      .num_attention_heads = 4, .q_lora_rank = 64, .kv_lora_rank = 32, .qk_nope_head_dim = 32,
      .qk_rope_head_dim = 16, .v_head_dim = 32, .rms_norm_eps = 1e-6f, .rope_interleave = 1, .rope_theta = 10000.0f,
      .max_position_embeddings = 512, .initializer_range = 0.02f, .bos_token_id = 0,
      .eos_token_id = 1}},
    {"student", "the distillation student: 4 dense blocks, narrower, no MoE (R1 §2.4)",
     {.vocab_size = 1024, .hidden_size = 96, .intermediate_size = 256,
      .moe_intermediate_size = 0, .num_hidden_layers = 4, .first_k_dense_replace = 4,
      .n_routed_experts = 0, .num_experts_per_tok = 0, .n_shared_experts = 0, .n_group = 1,
      .topk_group = 1, .norm_topk_prob = 1, .routed_scaling_factor = 1.0f,
      .num_attention_heads = 4, .q_lora_rank = 48, .kv_lora_rank = 32, .qk_nope_head_dim = 16,
      .qk_rope_head_dim = 16, .v_head_dim = 16, .rms_norm_eps = 1e-6f, .rope_interleave = 1,
      .rope_theta = 10000.0f, .max_position_embeddings = 512, .initializer_range = 0.02f,
      .bos_token_id = 0, .eos_token_id = 1}},
    // R1 §2.4 distils into Qwen2.5 and Llama-3 models: the same student size in their family
    // (grouped-query attention, gqa.c): 4 query heads of 24 share 2 key/value heads
    {"qwen-student", "the distillation student as R1 has it: a Qwen2 model (GQA, q/k/v bias), "
     "the student's size",
     {.arch = ARCH_QWEN2, .vocab_size = 1024, .hidden_size = 96, .intermediate_size = 256,
      .num_hidden_layers = 4, .first_k_dense_replace = 4, .n_group = 1, .topk_group = 1,
      .norm_topk_prob = 1, .routed_scaling_factor = 1.0f, .num_attention_heads = 4,
      .num_key_value_heads = 2, .head_dim = 24, .attention_bias = 1, .rms_norm_eps = 1e-6f,
      .rope_theta = 10000.0f, .max_position_embeddings = 512, .initializer_range = 0.02f,
      .bos_token_id = 0, .eos_token_id = 1}},
    {"llama-student", "qwen-student as a Llama model (no q/k/v bias)",
     {.arch = ARCH_LLAMA, .vocab_size = 1024, .hidden_size = 96, .intermediate_size = 256,
      .num_hidden_layers = 4, .first_k_dense_replace = 4, .n_group = 1, .topk_group = 1,
      .norm_topk_prob = 1, .routed_scaling_factor = 1.0f, .num_attention_heads = 4,
      .num_key_value_heads = 2, .head_dim = 24, .attention_bias = 0, .rms_norm_eps = 1e-6f,
      .rope_theta = 10000.0f, .max_position_embeddings = 512, .initializer_range = 0.02f,
      .bos_token_id = 0, .eos_token_id = 1}},
    {"tiny", "for tests and gdb: the shape of tests/fixtures/hf-tiny",
     {.vocab_size = 64, .hidden_size = 32, .intermediate_size = 64, .moe_intermediate_size = 16,
      .num_hidden_layers = 5, .first_k_dense_replace = 3, .n_routed_experts = 8,
      .num_experts_per_tok = 2, .n_shared_experts = 1, .n_group = 2, .topk_group = 1,
      .norm_topk_prob = 1, .routed_scaling_factor = 2.5f, .num_attention_heads = 4,
      .q_lora_rank = 16, .kv_lora_rank = 16, .qk_nope_head_dim = 8, .qk_rope_head_dim = 4,
      .v_head_dim = 8, .rms_norm_eps = 1e-6f, .rope_interleave = 1, .rope_theta = 10000.0f,
      .max_position_embeddings = 64, .initializer_range = 0.02f, .bos_token_id = 0,
      .eos_token_id = 1}},
};
#define N_PRESETS ((int)(sizeof(PRESETS) / sizeof(PRESETS[0])))

// A preset by name, or a config.json file (any name ending in ".json"), so a student can copy
// a preset's config.json, edit it, and train that shape: --config my.json
int config_preset(const char *name, Config *c, char *err) {
    size_t len = strlen(name);
    if (len > 5 && strcmp(name + len - 5, ".json") == 0) return config_read_file(name, c, err);
    for (int i = 0; i < N_PRESETS; i++) {
        if (strcmp(PRESETS[i].name, name) == 0) {
            *c = PRESETS[i].c;
            return 0;
        }
    }
    snprintf(err, R1_ERR_LEN, "unknown preset '%s' (try: deepseek-v3, r1-61, small, student, qwen-student, llama-student, tiny, or a FILE.json)", name);
    return -1;
}

void config_list_presets(FILE *f) {
    for (int i = 0; i < N_PRESETS; i++) fprintf(f, "  %-13s %s\n", PRESETS[i].name, PRESETS[i].what);
}

const char *arch_model_type(int arch) {
    return arch == ARCH_QWEN2 ? "qwen2" : arch == ARCH_LLAMA ? "llama" : "deepseek_v3";
}

// A check of config_validate: when cond fails, err gets "config: " + the message and the
// function returns -1.
#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(err, R1_ERR_LEN, "config: " __VA_ARGS__);                                     \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

// The limits of a config that is otherwise well formed: finite floats, token ids inside the
// vocabulary, row widths that fit an int.
static int config_validate_limits(const Config *c, char *err) {
    // every float finite (inf passes the comparisons above), the token ids in the vocabulary
    const float floats[] = {c->routed_scaling_factor, c->rms_norm_eps, c->rope_theta,
                            c->rope_factor, c->rope_beta_fast, c->rope_beta_slow, c->rope_mscale,
                            c->rope_mscale_all_dim, c->rope_attention_factor,
                            c->initializer_range};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        NEED(isfinite(floats[i]), "a float field is not finite (%g)", floats[i]);
    NEED(c->bos_token_id >= 0 && c->bos_token_id < c->vocab_size,
         "bos_token_id %d is outside the vocabulary (0..%d)", c->bos_token_id, c->vocab_size - 1);
    NEED(c->eos_token_id >= 0 && c->eos_token_id < c->vocab_size,
         "eos_token_id %d is outside the vocabulary (0..%d)", c->eos_token_id, c->vocab_size - 1);
    // the row widths the model computes in int (r1.c's table, its scratch buffers) must fit one:
    // checked in 64 bits, before any of them is formed
    int64_t H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int64_t dv = c->v_head_dim, Im = c->moe_intermediate_size;
    struct { const char *what; int64_t v; } widths[] = {
        {"num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim)", H * (dn + dr)},
        {"num_attention_heads * (qk_nope_head_dim + v_head_dim)", H * (dn + dv)},
        {"kv_lora_rank + qk_rope_head_dim", (int64_t)c->kv_lora_rank + dr},
        {"moe_intermediate_size * n_shared_experts", Im * c->n_shared_experts},
        {"moe_intermediate_size * num_experts_per_tok", Im * c->num_experts_per_tok},
        {"hidden_size * num_experts_per_tok", (int64_t)c->hidden_size * c->num_experts_per_tok},
    };
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++)
        NEED(widths[i].v <= INT_MAX, "%s = %" PRId64 " does not fit an int", widths[i].what,
             widths[i].v);
    return 0;
}

// The attention of a Qwen2 / Llama config (gqa.c): H query heads in Hkv groups, heads of an even
// width (RoPE turns pairs), every block dense, standard RoPE without YaRN, and the biases each
// family has: Qwen2 on q, k, v; Llama none (its attention_bias would bias o_proj as well).
static int config_validate_gqa(const Config *c, char *err) {
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads;
    const char *family = arch_model_type(c->arch);
    NEED(H > 0, "num_attention_heads must be > 0");
    NEED(Hkv > 0 && Hkv <= H, "num_key_value_heads must be in 1..num_attention_heads (%d), "
         "got %d", H, Hkv);
    NEED(H % Hkv == 0, "num_attention_heads (%d) must be divisible by num_key_value_heads (%d): "
         "each key/value head serves a whole group of query heads", H, Hkv);
    NEED(c->head_dim > 0 && c->head_dim % 2 == 0, "head_dim must be even and > 0 (got %d)",
         c->head_dim);
    NEED((int64_t)H * c->head_dim <= INT_MAX, "num_attention_heads * head_dim does not fit an int");
    NEED(c->first_k_dense_replace >= c->num_hidden_layers, "a %s model has no MoE layers: "
         "first_k_dense_replace (%d) must be num_hidden_layers (%d)", family,
         c->first_k_dense_replace, c->num_hidden_layers);
    NEED(!c->rope_yarn, "%s with YaRN rope scaling is not supported (rope_type default)", family);
    NEED(!c->rope_interleave, "%s rotates halves (rope_interleave must be false)", family);
    NEED(c->arch != ARCH_QWEN2 || c->attention_bias, "qwen2 always has q/k/v biases "
         "(attention_bias 1)");
    NEED(c->arch != ARCH_LLAMA || !c->attention_bias, "llama with attention_bias true (biases "
         "on q, k, v and o_proj) is not supported");
    return 0;
}

int config_validate(const Config *c, char *err) {
    NEED(c->arch >= ARCH_DEEPSEEK_V3 && c->arch <= ARCH_LLAMA, "unknown architecture %d", c->arch);
    // multi-token prediction (mtp.c): DeepSeek-V3's depth 1, or none
    NEED(c->num_nextn_predict_layers == 0 || c->num_nextn_predict_layers == 1,
         "num_nextn_predict_layers must be 0 or 1 (one MTP module, DeepSeek-V3's depth), got %d",
         c->num_nextn_predict_layers);
    NEED(!is_gqa(c) || c->num_nextn_predict_layers == 0, "a %s model has no MTP module "
         "(num_nextn_predict_layers must be 0)", arch_model_type(c->arch));
    NEED(c->vocab_size > 0, "vocab_size must be > 0 (got %d)", c->vocab_size);
    NEED(c->hidden_size > 0, "hidden_size must be > 0 (got %d)", c->hidden_size);
    NEED(c->num_hidden_layers > 0, "num_hidden_layers must be > 0 (got %d)", c->num_hidden_layers);
    if (is_gqa(c) && config_validate_gqa(c, err)) return -1;  // Qwen2 / Llama: their attention
    NEED(c->first_k_dense_replace >= 0, "first_k_dense_replace must be >= 0");
    int has_dense = c->first_k_dense_replace > 0;
    int has_moe = c->first_k_dense_replace < c->num_hidden_layers;
    NEED(!has_dense || c->intermediate_size > 0, "intermediate_size must be > 0 (got %d)",
         c->intermediate_size);
    if (has_moe) {
        NEED(c->n_routed_experts > 0, "n_routed_experts must be > 0 (got %d)", c->n_routed_experts);
        NEED(c->moe_intermediate_size > 0, "moe_intermediate_size must be > 0 (got %d)",
             c->moe_intermediate_size);
        NEED(c->num_experts_per_tok > 0 && c->num_experts_per_tok <= c->n_routed_experts,
             "num_experts_per_tok (%d) must be in 1..n_routed_experts (%d)",
             c->num_experts_per_tok, c->n_routed_experts);
        NEED(c->n_shared_experts >= 0, "n_shared_experts must be >= 0");
        NEED(c->n_group > 0 && c->n_routed_experts % c->n_group == 0,
             "n_routed_experts (%d) must be divisible by n_group (%d)", c->n_routed_experts,
             c->n_group);
        NEED(c->topk_group > 0 && c->topk_group <= c->n_group,
             "topk_group (%d) must be in 1..n_group (%d)", c->topk_group, c->n_group);
        int per_group = c->n_routed_experts / c->n_group;
        NEED(per_group * c->topk_group >= c->num_experts_per_tok,
             "topk_group (%d) groups of %d experts cannot hold num_experts_per_tok (%d)",
             c->topk_group, per_group, c->num_experts_per_tok);
        NEED(c->n_group == 1 || per_group >= 2,
             "each group needs >= 2 experts (group score = sum of its top-2), got %d", per_group);
        NEED(c->routed_scaling_factor > 0, "routed_scaling_factor must be > 0");
    }
    NEED(c->num_attention_heads > 0, "num_attention_heads must be > 0");
    if (!is_gqa(c)) {  // MLA's sizes
        NEED(c->q_lora_rank >= 0, "q_lora_rank must be >= 0 (0 = null)");
        NEED(c->kv_lora_rank > 0, "kv_lora_rank must be > 0 (got %d)", c->kv_lora_rank);
        NEED(c->qk_nope_head_dim > 0, "qk_nope_head_dim must be > 0");
        NEED(c->qk_rope_head_dim > 0 && c->qk_rope_head_dim % 2 == 0,
             "qk_rope_head_dim must be even and > 0 (got %d)", c->qk_rope_head_dim);
        NEED(c->v_head_dim > 0, "v_head_dim must be > 0");
    }
    NEED(c->rms_norm_eps > 0, "rms_norm_eps must be > 0");
    NEED(c->rope_theta > 1, "rope_theta must be > 1");
    NEED(c->max_position_embeddings > 0, "max_position_embeddings must be > 0");
    if (c->rope_yarn) {
        NEED(c->rope_factor >= 1, "rope_scaling.factor must be >= 1 (got %g)", c->rope_factor);
        NEED(c->rope_original_max_position_embeddings > 0,
             "rope_scaling.original_max_position_embeddings must be > 0");
        NEED(c->rope_beta_fast > 0 && c->rope_beta_slow > 0, "YaRN betas must be > 0");
    }
    NEED(c->initializer_range >= 0, "initializer_range must be >= 0");
    return config_validate_limits(c, err);
}
#undef NEED


// Reads an optional integer field; -1 on a value that is not an integer in [lo, hi].
static int json_int_field(const Json *obj, const char *key, int *out, int lo, int hi, char *err) {
    const Json *v = json_get(obj, key);
    if (!v) return 0;
    if (v->type == JSON_BOOL) {  // true/false where an integer is expected: reject
        snprintf(err, R1_ERR_LEN, "config.json: %s must be an integer, got a boolean", key);
        return -1;
    }
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < lo ||
        v->number > hi) {
        snprintf(err, R1_ERR_LEN, "config.json: %s must be an integer in %d..%d", key, lo, hi);
        return -1;
    }
    *out = (int)v->number;
    return 0;
}

static int json_float_field(const Json *obj, const char *key, float *out, char *err) {
    const Json *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_NUMBER || !isfinite(v->number)) {
        snprintf(err, R1_ERR_LEN, "config.json: %s must be a number", key);
        return -1;
    }
    if (fabs(v->number) > FLT_MAX) {  // would be inf as a float
        snprintf(err, R1_ERR_LEN, "config.json: %s = %g does not fit a float", key, v->number);
        return -1;
    }
    *out = (float)v->number;
    return 0;
}

static int json_bool_field(const Json *obj, const char *key, int *out, char *err) {
    const Json *v = json_get(obj, key);
    if (!v) return 0;
    if (v->type != JSON_BOOL) {
        snprintf(err, R1_ERR_LEN, "config.json: %s must be true or false", key);
        return -1;
    }
    *out = v->number != 0;
    return 0;
}

// rope parameters: transformers 5 writes {"rope_type": "yarn"|"default", "rope_theta": ...,
// "factor": ...}; the hub writes "rope_theta" at the top level and "rope_scaling": {"type": ...}.
// As in transformers, a non-null rope_scaling wins over rope_parameters, and rope_theta comes
// from the rope dict, else the top level, else 10000.
static int parse_rope(const Json *root, Config *c, char *err) {
    const Json *rp = json_get(root, "rope_scaling");
    if (!rp || rp->type == JSON_NULL) rp = json_get(root, "rope_parameters");
    c->rope_theta = 10000.0f;
    if (json_float_field(root, "rope_theta", &c->rope_theta, err)) return -1;
    c->rope_yarn = 0;
    if (!rp || rp->type == JSON_NULL) return 0;
    if (rp->type != JSON_OBJECT) {
        snprintf(err, R1_ERR_LEN, "config.json: rope_parameters / rope_scaling must be an object");
        return -1;
    }
    if (json_float_field(rp, "rope_theta", &c->rope_theta, err)) return -1;
    const Json *type = json_get(rp, "rope_type");
    if (!type) type = json_get(rp, "type");
    if (type && type->type != JSON_STRING) {
        snprintf(err, R1_ERR_LEN, "config.json: rope_parameters.rope_type / rope_scaling.type "
                 "must be a string");
        return -1;
    }
    const char *kind = type ? type->string : "default";
    if (strcmp(kind, "default") == 0) return 0;
    if (strcmp(kind, "yarn") != 0) {
        snprintf(err, R1_ERR_LEN, "config.json: rope type '%s' is not supported (default, yarn)",
                 kind);
        return -1;
    }
    c->rope_yarn = 1;
    c->rope_factor = 1.0f;
    c->rope_original_max_position_embeddings = 0;
    c->rope_beta_fast = 32.0f;
    c->rope_beta_slow = 1.0f;
    c->rope_mscale = 0.0f;        // 0 = absent
    c->rope_mscale_all_dim = 0.0f;
    c->rope_attention_factor = 0.0f;
    if (!json_get(rp, "factor")) {
        snprintf(err, R1_ERR_LEN, "config.json: YaRN rope scaling needs a factor");
        return -1;
    }
    if (json_float_field(rp, "factor", &c->rope_factor, err) ||
        json_int_field(rp, "original_max_position_embeddings",
                       &c->rope_original_max_position_embeddings, 1, 1 << 30, err) ||
        json_float_field(rp, "beta_fast", &c->rope_beta_fast, err) ||
        json_float_field(rp, "beta_slow", &c->rope_beta_slow, err) ||
        json_float_field(rp, "mscale", &c->rope_mscale, err) ||
        json_float_field(rp, "mscale_all_dim", &c->rope_mscale_all_dim, err) ||
        json_float_field(rp, "attention_factor", &c->rope_attention_factor, err))
        return -1;
    if (c->rope_beta_fast == 0) c->rope_beta_fast = 32.0f;  // transformers: `or 32`, `or 1`
    if (c->rope_beta_slow == 0) c->rope_beta_slow = 1.0f;
    if (c->rope_original_max_position_embeddings == 0)
        c->rope_original_max_position_embeddings = c->max_position_embeddings;
    return 0;
}

// The keys whose value r1.c cannot change: absent is fine, another value is not (model_type,
// the activation, the router's scoring and top-k method, an MoE layer after every dense prefix).
// *arch: the family model_type names (absent: deepseek_v3).
static int config_check_fixed_keys(const Json *root, int *arch, char *err) {
    const Json *mt = json_get(root, "model_type");
    *arch = ARCH_DEEPSEEK_V3;
    if (mt && mt->type == JSON_STRING && strcmp(mt->string, "qwen2") == 0) *arch = ARCH_QWEN2;
    else if (mt && mt->type == JSON_STRING && strcmp(mt->string, "llama") == 0) *arch = ARCH_LLAMA;
    else if (mt && (mt->type != JSON_STRING || strcmp(mt->string, "deepseek_v3") != 0)) {
        snprintf(err, R1_ERR_LEN, "config.json: model_type must be \"deepseek_v3\", \"qwen2\" "
                 "or \"llama\"");
        return -1;
    }
    // Qwen2's sliding-window attention and Llama's MLP biases are not implemented
    const Json *sw = json_get(root, "use_sliding_window"), *mb = json_get(root, "mlp_bias");
    if ((sw && sw->type == JSON_BOOL && sw->number) || (mb && mb->type == JSON_BOOL && mb->number)) {
        snprintf(err, R1_ERR_LEN, "config.json: %s true is not supported",
                 sw && sw->number ? "use_sliding_window" : "mlp_bias");
        return -1;
    }
    static const char *const fixed[][2] = {{"hidden_act", "silu"}, {"scoring_func", "sigmoid"},
                                           {"topk_method", "noaux_tc"}};
    for (int i = 0; i < 3; i++) {
        const Json *v = json_get(root, fixed[i][0]);
        if (v && (v->type != JSON_STRING || strcmp(v->string, fixed[i][1]) != 0)) {
            snprintf(err, R1_ERR_LEN, "config.json: %s must be \"%s\"", fixed[i][0], fixed[i][1]);
            return -1;
        }
    }
    const Json *freq = json_get(root, "moe_layer_freq");
    if (freq && (freq->type != JSON_NUMBER || freq->number != 1)) {
        snprintf(err, R1_ERR_LEN, "config.json: moe_layer_freq must be 1");
        return -1;
    }
    return 0;
}

// transformers' DeepseekV3Config defaults, for the keys a config.json leaves out: the
// deepseek-v3 preset without YaRN, with initializer_range 0.02 and untied embeddings. For
// qwen2 and llama, Qwen2Config's / LlamaConfig's defaults (7B shapes); num_key_value_heads and
// head_dim (0 here) default to num_attention_heads and hidden_size / num_attention_heads.
static void config_json_defaults(Config *c, int arch, char *err) {
    Config d = {0};
    config_preset("deepseek-v3", &d, err);
    d.rope_yarn = 0;
    d.initializer_range = 0.02f;
    d.tie_word_embeddings = 0;
    if (arch != ARCH_DEEPSEEK_V3) {
        int qwen = arch == ARCH_QWEN2;
        d = (Config){.arch = arch, .vocab_size = qwen ? 151936 : 32000, .hidden_size = 4096,
                     .intermediate_size = qwen ? 22016 : 11008, .num_hidden_layers = 32,
                     .n_group = 1, .topk_group = 1, .norm_topk_prob = 1,
                     .routed_scaling_factor = 1.0f, .num_attention_heads = 32,
                     .rms_norm_eps = 1e-6f, .rope_theta = 10000.0f,
                     .max_position_embeddings = qwen ? 32768 : 2048, .initializer_range = 0.02f,
                     .bos_token_id = qwen ? 151643 : 1, .eos_token_id = qwen ? 151643 : 2,
                     .attention_bias = qwen};
    }
    *c = d;
}

// The fields of a qwen2 / llama config.json that DeepSeek-V3 has not (read after the common
// ones): the key/value heads and head width, llama's attention_bias (qwen2's biases are
// implicit); every block is dense and RoPE rotates halves.
static int config_read_gqa(const Json *root, Config *c, char *err) {
    c->num_key_value_heads = c->num_attention_heads;
    c->head_dim = c->hidden_size / c->num_attention_heads;
    const Json *kvh = json_get(root, "num_key_value_heads"), *hd = json_get(root, "head_dim");
    if ((kvh && kvh->type != JSON_NULL &&
         json_int_field(root, "num_key_value_heads", &c->num_key_value_heads, 1, 1 << 16, err)) ||
        (hd && hd->type != JSON_NULL &&
         json_int_field(root, "head_dim", &c->head_dim, 1, 1 << 20, err)))
        return -1;
    if (c->arch == ARCH_LLAMA && json_bool_field(root, "attention_bias", &c->attention_bias, err))
        return -1;
    c->first_k_dense_replace = c->num_hidden_layers;
    c->rope_interleave = 0;
    return 0;
}

// The sizes, counts and flags of config.json into c (a key that is absent keeps c's value),
// each checked for its type and range. "q_lora_rank": null means no query compression (0);
// "attention_bias": true is refused (DeepSeek-V3 has none).
static int config_read_fields(const Json *root, Config *c, char *err) {
    const int BIG = 1 << 30;
    int q_null = 0;
    const Json *q = json_get(root, "q_lora_rank");
    if (q && q->type == JSON_NULL) q_null = 1;
    int attention_bias = 0, interleave = 1;
    if (json_int_field(root, "vocab_size", &c->vocab_size, 1, BIG, err) ||
        json_int_field(root, "hidden_size", &c->hidden_size, 1, BIG, err) ||
        json_int_field(root, "intermediate_size", &c->intermediate_size, 0, BIG, err) ||
        json_int_field(root, "moe_intermediate_size", &c->moe_intermediate_size, 0, BIG, err) ||
        json_int_field(root, "num_hidden_layers", &c->num_hidden_layers, 1, 100000, err) ||
        json_int_field(root, "first_k_dense_replace", &c->first_k_dense_replace, 0, BIG, err) ||
        json_int_field(root, "n_routed_experts", &c->n_routed_experts, 0, 1 << 16, err) ||
        json_int_field(root, "num_experts_per_tok", &c->num_experts_per_tok, 0, 1 << 16, err) ||
        json_int_field(root, "n_shared_experts", &c->n_shared_experts, 0, 1 << 16, err) ||
        json_int_field(root, "n_group", &c->n_group, 1, 1 << 16, err) ||
        json_int_field(root, "topk_group", &c->topk_group, 1, 1 << 16, err) ||
        json_bool_field(root, "norm_topk_prob", &c->norm_topk_prob, err) ||
        json_float_field(root, "routed_scaling_factor", &c->routed_scaling_factor, err) ||
        json_int_field(root, "num_attention_heads", &c->num_attention_heads, 1, 1 << 16, err) ||
        (!q_null && json_int_field(root, "q_lora_rank", &c->q_lora_rank, 1, BIG, err)) ||
        json_int_field(root, "kv_lora_rank", &c->kv_lora_rank, 1, BIG, err) ||
        json_int_field(root, "qk_nope_head_dim", &c->qk_nope_head_dim, 1, BIG, err) ||
        json_int_field(root, "qk_rope_head_dim", &c->qk_rope_head_dim, 1, BIG, err) ||
        json_int_field(root, "v_head_dim", &c->v_head_dim, 1, BIG, err) ||
        json_float_field(root, "rms_norm_eps", &c->rms_norm_eps, err) ||
        json_int_field(root, "max_position_embeddings", &c->max_position_embeddings, 1, BIG,
                       err) ||
        json_bool_field(root, "tie_word_embeddings", &c->tie_word_embeddings, err) ||
        json_float_field(root, "initializer_range", &c->initializer_range, err) ||
        json_bool_field(root, "attention_bias", &attention_bias, err) ||
        json_bool_field(root, "rope_interleave", &interleave, err) ||
        json_int_field(root, "num_nextn_predict_layers", &c->num_nextn_predict_layers, 0,
                       1 << 16, err))
        return -1;
    if (q_null) c->q_lora_rank = 0;
    c->rope_interleave = interleave;
    // token ids: null (some hub configs) keeps the default; else integers (config_validate
    // checks them against vocab_size)
    const Json *bos = json_get(root, "bos_token_id"), *eos = json_get(root, "eos_token_id");
    if ((bos && bos->type != JSON_NULL &&
         json_int_field(root, "bos_token_id", &c->bos_token_id, 0, BIG, err)) ||
        (eos && eos->type != JSON_NULL &&
         json_int_field(root, "eos_token_id", &c->eos_token_id, 0, BIG, err)))
        return -1;
    if (is_gqa(c)) return config_read_gqa(root, c, err);
    if (attention_bias) {
        snprintf(err, R1_ERR_LEN, "config.json: attention_bias true is not supported");
        return -1;
    }
    return 0;
}

// config.json text -> c, in steps: parse the JSON, check the keys with a fixed value, start from
// transformers' defaults, read the fields, then the rope parameters, and validate the whole.
// *c is untouched when the JSON or a fixed key is wrong.
int config_from_json(const char *text, Config *c, char *err) {
    char jerr[R1_ERR_LEN];
    Json *root = json_parse(text, strlen(text), jerr);
    if (!root) {
        snprintf(err, R1_ERR_LEN, "config.json: %s", jerr);
        return -1;
    }
    int rc = -1, arch;
    if (root->type != JSON_OBJECT) {
        snprintf(err, R1_ERR_LEN, "config.json: not a JSON object");
    } else if (config_check_fixed_keys(root, &arch, err) == 0) {
        config_json_defaults(c, arch, err);
        if (config_read_fields(root, c, err) == 0 && parse_rope(root, c, err) == 0)
            rc = config_validate(c, err);
    }
    json_free(root);
    return rc;
}

// The shortest decimal that reads back as the same float (0.707, not 0.707000017).
static const char *float_text(float v, char buf[32]) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, 32, "%.*g", digits, v);
        if (strtof(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");  // keep it a JSON float: 1.0, not 1
    return buf;
}

// config.json of a qwen2 / llama model, which transformers' Qwen2ForCausalLM /
// LlamaForCausalLM loads (the keys their configs have; none of DeepSeek-V3's).
static int config_write_gqa_json(const Config *c, const char *path, char *err) {
    char buf[4096], f1[32], f2[32], f3[32];
    int qwen = c->arch == ARCH_QWEN2;
    char family[160];  // the keys only one of the two has
    if (qwen) snprintf(family, sizeof(family), "  \"use_sliding_window\": false,\n");
    else snprintf(family, sizeof(family), "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n");
    snprintf(buf, sizeof(buf),
             "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
             "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
             "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n%s"
             "  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": %s,\n"
             "  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": %s},\n"
             "  \"max_position_embeddings\": %d,\n  \"tie_word_embeddings\": %s,\n"
             "  \"initializer_range\": %s,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
             "  \"torch_dtype\": \"float32\"\n}\n",
             qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", arch_model_type(c->arch),
             c->vocab_size, c->hidden_size, c->intermediate_size, c->num_hidden_layers,
             c->num_attention_heads, c->num_key_value_heads, c->head_dim, family,
             float_text(c->rms_norm_eps, f1), float_text(c->rope_theta, f2),
             c->max_position_embeddings, c->tie_word_embeddings ? "true" : "false",
             float_text(c->initializer_range, f3), c->bos_token_id, c->eos_token_id);
    return write_text_atomic(path, buf, err);
}

// config.json in the transformers-5 layout (rope_parameters), which DeepseekV3ForCausalLM loads.
int config_write_json(const Config *c, const char *path, char *err) {
    if (is_gqa(c)) return config_write_gqa_json(c, path, err);
    char buf[8192];
    char q[32], rope[1024];
    if (c->q_lora_rank > 0) snprintf(q, sizeof(q), "%d", c->q_lora_rank);
    else snprintf(q, sizeof(q), "null");
    char f1[32], f2[32], f3[32], f4[32], f5[32], f6[32], f7[32];
    if (c->rope_yarn) {
        int n = snprintf(rope, sizeof(rope),
                 "{\"rope_type\": \"yarn\", \"rope_theta\": %s, \"factor\": %s, "
                 "\"original_max_position_embeddings\": %d, \"beta_fast\": %s, "
                 "\"beta_slow\": %s, \"mscale\": %s, \"mscale_all_dim\": %s",
                 float_text(c->rope_theta, f1), float_text(c->rope_factor, f2),
                 c->rope_original_max_position_embeddings, float_text(c->rope_beta_fast, f3),
                 float_text(c->rope_beta_slow, f4), float_text(c->rope_mscale, f5),
                 float_text(c->rope_mscale_all_dim, f6));
        if (c->rope_attention_factor > 0)
            n += snprintf(rope + n, sizeof(rope) - n, ", \"attention_factor\": %s",
                          float_text(c->rope_attention_factor, f7));
        snprintf(rope + n, sizeof(rope) - n, "}");
    } else {
        snprintf(rope, sizeof(rope), "{\"rope_type\": \"default\", \"rope_theta\": %s}",
                 float_text(c->rope_theta, f1));
    }
    snprintf(buf, sizeof(buf),
             "{\n  \"architectures\": [\"DeepseekV3ForCausalLM\"],\n"
             "  \"model_type\": \"deepseek_v3\",\n  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n"
             "  \"intermediate_size\": %d,\n  \"moe_intermediate_size\": %d,\n"
             "  \"num_hidden_layers\": %d,\n  \"first_k_dense_replace\": %d,\n"
             "  \"n_routed_experts\": %d,\n  \"num_experts_per_tok\": %d,\n"
             "  \"n_shared_experts\": %d,\n  \"n_group\": %d,\n  \"topk_group\": %d,\n"
             "  \"norm_topk_prob\": %s,\n  \"routed_scaling_factor\": %s,\n"
             "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
             "  \"q_lora_rank\": %s,\n  \"kv_lora_rank\": %d,\n  \"qk_nope_head_dim\": %d,\n"
             "  \"qk_rope_head_dim\": %d,\n  \"v_head_dim\": %d,\n  \"head_dim\": %d,\n"
             "  \"rms_norm_eps\": %s,\n  \"rope_interleave\": %s,\n  \"rope_parameters\": %s,\n"
             "  \"max_position_embeddings\": %d,\n  \"tie_word_embeddings\": %s,\n"
             "  \"initializer_range\": %s,\n  \"hidden_act\": \"silu\",\n"
             "  \"attention_bias\": false,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
             "  \"num_nextn_predict_layers\": %d,\n  \"torch_dtype\": \"float32\"\n}\n",
             c->vocab_size, c->hidden_size, c->intermediate_size, c->moe_intermediate_size,
             c->num_hidden_layers, c->first_k_dense_replace, c->n_routed_experts,
             c->num_experts_per_tok, c->n_shared_experts, c->n_group, c->topk_group,
             c->norm_topk_prob ? "true" : "false", float_text(c->routed_scaling_factor, f2),
             c->num_attention_heads, c->num_attention_heads, q, c->kv_lora_rank,
             c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim, c->qk_rope_head_dim,
             float_text(c->rms_norm_eps, f3), c->rope_interleave ? "true" : "false", rope,
             c->max_position_embeddings, c->tie_word_embeddings ? "true" : "false",
             float_text(c->initializer_range, f4), c->bos_token_id, c->eos_token_id,
             c->num_nextn_predict_layers);
    return write_text_atomic(path, buf, err);
}

// mkdir -p: creates dir and any missing parents.
int make_dirs(const char *dir, char *err) {
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            snprintf(err, R1_ERR_LEN, "%s: %s", path, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        snprintf(err, R1_ERR_LEN, "%s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int config_read_file(const char *path, Config *c, char *err) {
    char *text = read_file(path, NULL, err);
    if (!text) return -1;
    char why[R1_ERR_LEN];
    int rc = config_from_json(text, c, why);
    free(text);
    if (rc) snprintf(err, R1_ERR_LEN, "%s: %.400s", path, why);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// The checkpoint directory's staged commit
// ----------------------------------------------------------------------------------------------
// A checkpoint is saved as one atomic set of files (r1.c's checkpoint save, r1.h): every file
// goes to DIR/.staging/ first, then DIR/.staging/COMMIT (written atomically, listing the files)
// marks the set complete, and the files are moved into DIR. checkpoint_recover, run before every
// load and save, finishes whichever of these steps a killed run left undone.

// A rename or remove is durable only once its directory is synced: fsync(2) of the directory
// itself. (A file system that cannot sync a directory says EINVAL: nothing more to do there.)
static int fsync_dir(const char *dir, char *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return io_fail(err, "%s: %s", dir, strerror(errno));
    int rc = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
    int e = errno;
    close(fd);
    if (rc) return io_fail(err, "%s: cannot sync the directory: %s", dir, strerror(e));
    return 0;
}

// Finishes or discards an interrupted save (see r1.h). Safe to call on any directory.
int checkpoint_recover(const char *dir, char *err) {
    char staging[4096], path[4200], dest[4200];
    snprintf(staging, sizeof(staging), "%s/.staging", dir);
    DIR *d = opendir(staging);
    if (!d) return 0;  // nothing interrupted
    snprintf(path, sizeof(path), "%s/COMMIT", staging);
    int committed = access(path, F_OK) == 0;
    // the COMMIT marker must be on the disk before the first file moves: else a crash could
    // leave moved files beside a set that recovery then discards as uncommitted
    if (committed && fsync_dir(staging, err)) {
        closedir(d);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, "COMMIT") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", staging, e->d_name);
        snprintf(dest, sizeof(dest), "%s/%s", dir, e->d_name);
        // roll forward a committed set; drop the files of an uncommitted one
        if (committed ? rename(path, dest) != 0 : remove(path) != 0) {
            snprintf(err, R1_ERR_LEN, "%s: %s", path, strerror(errno));
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    snprintf(path, sizeof(path), "%s/COMMIT", staging);
    if (committed) {
        // a set saved without optimizer state must not leave an older one beside new weights
        char *listed = read_file(path, NULL, err);
        if (listed && !strstr(listed, "optimizer.safetensors")) {
            snprintf(dest, sizeof(dest), "%s/optimizer.safetensors", dir);
            remove(dest);
        }
        free(listed);
    }
    remove(path);
    if (rmdir(staging) != 0) {
        snprintf(err, R1_ERR_LEN, "%s: %s", staging, strerror(errno));
        return -1;
    }
    return fsync_dir(dir, err);  // the renames into DIR (the commit itself) made durable
}

