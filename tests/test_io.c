// tests/test_io.c: the I/O layer: read_file, the JSON parser, safetensors reading and writing.
//   built by `make test` as build/test_io: includes kernels.c, r1.c and pipeline.c (their static
//   functions) and links the other sources (Makefile; main.c with R1_TEST, which leaves out main)
#include "kernels.c"
#include "r1.c"
#include "pipeline.c"  // the charts (static there)

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

// The group state: a fresh temporary directory for the files the tests write.
typedef struct {
    char dir[256];
} TestDir;

static int setup_dir(void **state) {
    TestDir *td = calloc(1, sizeof *td);
    if (td == NULL) return -1;
    snprintf(td->dir, sizeof td->dir, "/tmp/test_io_XXXXXX");
    if (mkdtemp(td->dir) == NULL) { free(td); return -1; }
    *state = td;
    return 0;
}

static int teardown_dir(void **state) {
    TestDir *td = *state;
    int rc = rmdir(td->dir); // fails if a test left a file behind
    free(td);
    return rc;
}

static void path_in(void **state, const char *name, char out[512]) {
    snprintf(out, 512, "%s/%s", ((TestDir *)*state)->dir, name);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Small deterministic RNG for the fuzz-style tests (xorshift64*).
static uint64_t next_random(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

// ----------------------------------------------------------------------------------------------
// JSON: valid documents
// ----------------------------------------------------------------------------------------------

static Json *parse_ok(const char *text) {
    char err[R1_ERR_LEN] = "";
    Json *j = json_parse(text, strlen(text), err);
    if (j == NULL) fail_msg("failed to parse %s: %s", text, err);
    return j;
}

static void test_json_nested(void **state) {
    (void)state;
    Json *j = parse_ok(" {\"a\": [1, 2, {\"b\": null}], \"c\": {\"d\": true, \"e\": false},\n"
                       "  \"s\": \"x\", \"empty\": [], \"none\": {}} \r\n\t");
    assert_int_equal(j->type, JSON_OBJECT);
    assert_int_equal(j->n, 5);
    assert_string_equal(j->keys[0], "a");
    Json *a = json_get(j, "a");
    assert_non_null(a);
    assert_int_equal(a->type, JSON_ARRAY);
    assert_int_equal(a->n, 3);
    assert_int_equal(a->items[0].type, JSON_NUMBER);
    assert_true(a->items[0].number == 1.0);
    assert_true(a->items[1].number == 2.0);
    Json *b = json_get(&a->items[2], "b");
    assert_non_null(b);
    assert_int_equal(b->type, JSON_NULL);
    Json *c = json_get(j, "c");
    assert_int_equal(json_get(c, "d")->type, JSON_BOOL);
    assert_true(json_get(c, "d")->number == 1.0);
    assert_true(json_get(c, "e")->number == 0.0);
    assert_string_equal(json_get(j, "s")->string, "x");
    assert_int_equal(json_get(j, "empty")->type, JSON_ARRAY);
    assert_int_equal(json_get(j, "empty")->n, 0);
    assert_int_equal(json_get(j, "none")->type, JSON_OBJECT);
    assert_int_equal(json_get(j, "none")->n, 0);
    json_free(j);
}

static void test_json_top_level_scalars(void **state) {
    (void)state;
    Json *j = parse_ok("  42  ");
    assert_int_equal(j->type, JSON_NUMBER);
    assert_true(j->number == 42.0);
    json_free(j);
    j = parse_ok("true");
    assert_int_equal(j->type, JSON_BOOL);
    assert_true(j->number == 1.0);
    json_free(j);
    j = parse_ok("null");
    assert_int_equal(j->type, JSON_NULL);
    json_free(j);
    j = parse_ok("\"\"");
    assert_int_equal(j->type, JSON_STRING);
    assert_string_equal(j->string, "");
    json_free(j);
    // len is honoured: the text after it is not looked at
    char err[R1_ERR_LEN];
    j = json_parse("[1]garbage", 3, err);
    assert_non_null(j);
    assert_int_equal(j->n, 1);
    json_free(j);
}

static void test_json_numbers(void **state) {
    (void)state;
    struct { const char *text; double value; } cases[] = {
        {"0", 0.0}, {"-0.5e-3", -0.5e-3}, {"1E+2", 100.0}, {"1e2", 100.0}, {"2.5E-1", 0.25},
        {"123456789012", 123456789012.0}, {"0.1", 0.1}, {"-17", -17.0}, {"1.5", 1.5},
        {"9007199254740993", 9007199254740992.0}, {"1e-400", 0.0}, {"1.7976931348623157e308", 1.7976931348623157e308},
        {"0e0", 0.0}, {"-0.0", 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Json *j = parse_ok(cases[i].text);
        assert_int_equal(j->type, JSON_NUMBER);
        if (j->number != cases[i].value) fail_msg("%s parsed as %.17g", cases[i].text, j->number);
        json_free(j);
    }
    Json *j = parse_ok("-0");
    assert_true(j->number == 0.0 && signbit(j->number));
    json_free(j);
    j = parse_ok("[-1,0.25,3e1]");
    assert_int_equal(j->n, 3);
    assert_true(j->items[0].number == -1.0 && j->items[1].number == 0.25 && j->items[2].number == 30.0);
    json_free(j);
}

static void test_json_escapes(void **state) {
    (void)state;
    Json *j = parse_ok("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t end\"");
    assert_string_equal(j->string, "q\" b\\ s/ \b\f\n\r\t end");
    json_free(j);
    j = parse_ok("{\"k\\n\": 1}");
    assert_string_equal(j->keys[0], "k\n");
    json_free(j);
}

static void test_json_unicode(void **state) {
    (void)state;
    struct { const char *text, *utf8; } cases[] = {
        {"\"\\u0041\"", "A"},
        {"\"\\u00e9\"", "\xc3\xa9"},                 // é, 2 bytes
        {"\"\\u20AC\"", "\xe2\x82\xac"},             // €, 3 bytes
        {"\"\\uFFFF\"", "\xef\xbf\xbf"},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},  // 😀 from a surrogate pair
        {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf"},  // U+10FFFF, the last code point
        {"\"\\u0001\"", "\x01"},
        {"\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"}, // raw UTF-8
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Json *j = parse_ok(cases[i].text);
        assert_int_equal(j->type, JSON_STRING);
        assert_string_equal(j->string, cases[i].utf8);
        json_free(j);
    }
}

static void test_json_depth_limit(void **state) {
    (void)state;
    char text[200], err[R1_ERR_LEN] = "";
    for (int depth = 63; depth <= 65; depth++) {
        for (int i = 0; i < depth; i++) { text[i] = '['; text[depth + i] = ']'; }
        Json *j = json_parse(text, 2 * (size_t)depth, err);
        if (depth <= 64) {
            assert_non_null(j);
            json_free(j);
        } else {
            assert_null(j);
            assert_string_equal(err, "line 1 col 65: nesting deeper than 64");
        }
    }
    // very deep input must not recurse deeply
    size_t n = 1000000;
    char *deep = malloc(n);
    assert_non_null(deep);
    memset(deep, '[', n);
    assert_null(json_parse(deep, n, err));
    assert_non_null(strstr(err, "nesting deeper than 64"));
    free(deep);
}

static void test_json_duplicate_keys_last_wins(void **state) {
    (void)state;
    Json *j = parse_ok("{\"a\": 1, \"b\": 2, \"a\": 3}");
    assert_int_equal(j->n, 3);
    assert_true(json_get(j, "a")->number == 3.0);
    assert_true(json_get(j, "b")->number == 2.0);
    json_free(j);
}

static void test_json_get(void **state) {
    (void)state;
    Json *j = parse_ok("{\"a\": [1], \"\": 2}");
    assert_null(json_get(j, "missing"));
    assert_null(json_get(j, "A"));
    assert_null(json_get(NULL, "a"));
    assert_null(json_get(json_get(j, "a"), "a")); // not an object
    assert_true(json_get(j, "")->number == 2.0);
    json_free(j);
    json_free(NULL); // allowed, like free
}

static void test_json_large_containers(void **state) {
    (void)state;
    size_t n = 100000;
    char *text = malloc(4 * n + 16);
    assert_non_null(text);
    size_t len = 0;
    text[len++] = '[';
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(text + len, "%s%zu", i ? "," : "", i % 10);
    text[len++] = ']';
    char err[R1_ERR_LEN];
    Json *j = json_parse(text, len, err);
    assert_non_null(j);
    assert_int_equal(j->n, (int)n);
    assert_true(j->items[n - 1].number == (double)((n - 1) % 10));
    json_free(j);
    free(text);
}

// ----------------------------------------------------------------------------------------------
// JSON: every error gives NULL and "line L col C: what"
// ----------------------------------------------------------------------------------------------

typedef struct {
    const char *text;
    size_t len; // 0: strlen(text)
    int line, col;
    const char *what;
} JsonErrorCase;

static void expect_json_error(const JsonErrorCase *c) {
    char err[R1_ERR_LEN] = "", prefix[64];
    size_t len = c->len ? c->len : strlen(c->text);
    Json *j = json_parse(c->text, len, err);
    if (j != NULL) { json_free(j); fail_msg("parsed but should not have: %s", c->text); }
    snprintf(prefix, sizeof prefix, "line %d col %d: ", c->line, c->col);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, c->what) == NULL)
        fail_msg("for %s: got \"%s\", want \"%s...%s\"", c->text, err, prefix, c->what);
}

static void test_json_errors(void **state) {
    (void)state;
    static const JsonErrorCase cases[] = {
        // unexpected end
        {"", 0, 1, 1, "unexpected end"},
        {"   ", 0, 1, 4, "unexpected end"},
        {"[1, 2", 0, 1, 6, "unexpected end"},
        {"{\"a\": ", 0, 1, 7, "unexpected end"},
        {"{\"a\"", 0, 1, 5, "unexpected end"},
        {"\"abc", 0, 1, 5, "unexpected end"},
        {"\"abc\\", 0, 1, 6, "unexpected end"},
        {"\"\\u12", 0, 1, 6, "unexpected end"},
        {"tru", 0, 1, 4, "unexpected end"},
        {"[\n1,\n2\n", 0, 4, 1, "unexpected end"},
        // trailing garbage
        {"{\"a\": 1} x", 0, 1, 10, "after the JSON value"},
        {"[1] ]", 0, 1, 5, "after the JSON value"},
        {"1 2", 0, 1, 3, "after the JSON value"},
        {"truex", 0, 1, 5, "after the JSON value"},
        {"\"a\"\"b\"", 0, 1, 4, "after the JSON value"},
        // bad escapes
        {"\"\\x\"", 0, 1, 2, "invalid escape"},
        {"\"ab\\'\"", 0, 1, 4, "invalid escape"},
        {"\"\\U0041\"", 0, 1, 2, "invalid escape"},
        {"\"\\u12G4\"", 0, 1, 6, "invalid hex digit 'G'"},
        {"\"\\u12\"", 0, 1, 6, "invalid hex digit"},
        {"\"\\ud800\"", 0, 1, 2, "unpaired high surrogate"},
        {"\"\\ud800x\"", 0, 1, 2, "unpaired high surrogate"},
        {"\"\\udc00\"", 0, 1, 2, "unpaired low surrogate"},
        {"\"\\ud800\\u0041\"", 0, 1, 8, "expected a low surrogate"},
        {"\"\\u0000\"", 0, 1, 2, "\\u0000 is not supported"},
        // invalid numbers
        {"01", 0, 1, 1, "leading zero"},
        {"-012", 0, 1, 1, "leading zero"},
        {"1.", 0, 1, 3, "unexpected end"},
        {"[1.]", 0, 1, 4, "digit expected after '.'"},
        {"[1.e5]", 0, 1, 4, "digit expected after '.'"},
        {"[1e]", 0, 1, 4, "digit expected in exponent"},
        {"[1e+]", 0, 1, 5, "digit expected in exponent"},
        {"-", 0, 1, 2, "unexpected end"},
        {"[-]", 0, 1, 3, "digit expected after '-'"},
        {"--1", 0, 1, 2, "digit expected after '-'"},
        {"-Infinity", 0, 1, 2, "digit expected after '-'"},
        {"+1", 0, 1, 1, "unexpected '+'"},
        {".5", 0, 1, 1, "unexpected '.'"},
        {"NaN", 0, 1, 1, "unexpected 'N'"},
        {"Infinity", 0, 1, 1, "unexpected 'I'"},
        {"0x10", 0, 1, 2, "after the JSON value"},
        {"1e999", 0, 1, 1, "number out of range"},
        {"[0, -1e400]", 0, 1, 5, "number out of range"},
        // control characters and NUL bytes
        {"\"a\tb\"", 0, 1, 3, "control character 0x09"},
        {"\"a\nb\"", 0, 1, 3, "control character 0x0a"},
        {"\"a\0b\"", 5, 1, 3, "control character 0x00"},
        {"[1,\0]", 5, 1, 4, "byte 0x00"},
        {"\0", 1, 1, 1, "byte 0x00"},
        {"[1]\0", 4, 1, 4, "byte 0x00 after the JSON value"},
        // invalid UTF-8 in strings
        {"\"\xff\"", 0, 1, 2, "invalid UTF-8"},
        {"\"ok\xc0\xaf\"", 0, 1, 4, "invalid UTF-8"},      // overlong '/'
        {"\"\xed\xa0\x80\"", 0, 1, 2, "invalid UTF-8"},    // an encoded surrogate
        {"\"\xf4\x90\x80\x80\"", 0, 1, 2, "invalid UTF-8"}, // above U+10FFFF
        {"\"\xe2\x82\"", 0, 1, 2, "invalid UTF-8"},        // truncated sequence
        {"\"\x80\"", 0, 1, 2, "invalid UTF-8"},            // lone continuation byte
        // structure
        {"[1 2]", 0, 1, 4, "expected ',' or ']'"},
        {"{\"a\" 1}", 0, 1, 6, "expected ':'"},
        {"{\"a\":1 \"b\":2}", 0, 1, 8, "expected ',' or '}'"},
        {"{1: 2}", 0, 1, 2, "expected a string key"},
        {"{'a': 2}", 0, 1, 2, "expected a string key"},
        {"{\"a\":1,}", 0, 1, 8, "expected a string key"},
        {"[1,]", 0, 1, 4, "unexpected ']'"},
        {"[,]", 0, 1, 2, "unexpected ','"},
        {"{\"a\":}", 0, 1, 6, "expected a value"},
        {"{\n  \"a\": 1,\n  \"b\": trux\n}", 0, 3, 8, "expected 'true'"},
        {"nul", 0, 1, 4, "unexpected end"},
        {"nulL", 0, 1, 1, "expected 'null'"},
        {"[true, fals]", 0, 1, 8, "expected 'false'"},
        {"// comment\n1", 0, 1, 1, "unexpected '/'"},
        {"]", 0, 1, 1, "unexpected ']'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_json_error(&cases[i]);
    // err may be NULL: the parse still fails cleanly
    assert_null(json_parse("[1,", 3, NULL));
    assert_null(json_parse(NULL, 0, NULL));
}

// Every strict prefix of a document whose top level is an object is incomplete.
static void test_json_every_prefix_fails(void **state) {
    (void)state;
    const char *doc = "{\"a\": [1, -2.5e3, {\"b\": null}], \"c\\u00e9\": \"x\\ud83d\\ude00y\", \"d\": [true, false]}";
    size_t len = strlen(doc);
    char err[R1_ERR_LEN];
    for (size_t n = 0; n < len; n++) {
        err[0] = '\0';
        Json *j = json_parse(doc, n, err);
        if (j != NULL) { json_free(j); fail_msg("prefix of length %zu parsed", n); }
        if (strncmp(err, "line 1 col ", 11) != 0) fail_msg("prefix %zu: bad message \"%s\"", n, err);
    }
    Json *j = json_parse(doc, len, err);
    assert_non_null(j);
    json_free(j);
}

// ----------------------------------------------------------------------------------------------
// JSON: writing strings, and a round trip through a test-only serializer
// ----------------------------------------------------------------------------------------------

static char *string_written(const char *s) {
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    assert_non_null(f);
    json_write_string(f, s);
    assert_int_equal(fclose(f), 0);
    return out;
}

static void test_json_write_string(void **state) {
    (void)state;
    struct { const char *in, *out; } cases[] = {
        {"plain", "\"plain\""},
        {"", "\"\""},
        {"q\"b\\s/", "\"q\\\"b\\\\s/\""},
        {"\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\""},
        {"caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""}, // UTF-8 as is
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *written = string_written(cases[i].in);
        assert_string_equal(written, cases[i].out);
        // and it parses back to the same bytes
        char err[R1_ERR_LEN];
        Json *j = json_parse(written, strlen(written), err);
        assert_non_null(j);
        assert_string_equal(j->string, cases[i].in);
        json_free(j);
        free(written);
    }
}

static void write_json(FILE *f, const Json *j) {
    switch (j->type) {
    case JSON_NULL: fputs("null", f); break;
    case JSON_BOOL: fputs(j->number != 0 ? "true" : "false", f); break;
    case JSON_NUMBER: fprintf(f, "%.17g", j->number); break;
    case JSON_STRING: json_write_string(f, j->string); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        fputc(j->type == JSON_ARRAY ? '[' : '{', f);
        for (int i = 0; i < j->n; i++) {
            if (i > 0) fputc(',', f);
            if (j->type == JSON_OBJECT) { json_write_string(f, j->keys[i]); fputc(':', f); }
            write_json(f, &j->items[i]);
        }
        fputc(j->type == JSON_ARRAY ? ']' : '}', f);
        break;
    }
}

static int json_equal(const Json *a, const Json *b) {
    if (a->type != b->type || a->n != b->n) return 0;
    if ((a->type == JSON_NUMBER || a->type == JSON_BOOL) && a->number != b->number) return 0;
    if (a->type == JSON_STRING && strcmp(a->string, b->string) != 0) return 0;
    for (int i = 0; i < a->n; i++) {
        if (a->type == JSON_OBJECT && strcmp(a->keys[i], b->keys[i]) != 0) return 0;
        if (!json_equal(&a->items[i], &b->items[i])) return 0;
    }
    return 1;
}

// A parsed tree, written out and parsed again, is the same tree.
static void check_round_trip(const Json *j) {
    char *text = NULL, err[R1_ERR_LEN];
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    write_json(f, j);
    assert_int_equal(fclose(f), 0);
    Json *again = json_parse(text, size, err);
    if (again == NULL) fail_msg("re-parse of %s failed: %s", text, err);
    if (!json_equal(j, again)) fail_msg("round trip changed %s", text);
    json_free(again);
    free(text);
}

// Random mutations of valid documents never crash; they parse to a tree that round-trips, or
// fail with a located message. Run under -fsanitize=address,undefined for the memory checks.
static void test_json_fuzz(void **state) {
    (void)state;
    static const char *seeds[] = {
        "{\"a\": [1, -2.5e3, {\"b\": null}], \"c\\u00e9\": \"x\\ud83d\\ude00y\", \"d\": [true, false]}",
        "[0, 1e5, -0.5E-3, \"\\\\\\\"\\/\\b\\f\\n\\r\\t\", [[[[]]]], {}]",
        "{\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"mscale\": 1.0}, \"q_lora_rank\": null}",
        "\"caf\xc3\xa9 \xe4\xb8\xad\"",
    };
    static const char interesting[] = "{}[]\":,\\u0123456789-+.eE tfn\n\t\x00\xff\xc3\xa9\xed\xf0";
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char buf[256], err[R1_ERR_LEN];
    int parsed = 0, failed = 0;
    for (int iter = 0; iter < 50000; iter++) {
        const char *seed = seeds[next_random(&rng) % (sizeof seeds / sizeof seeds[0])];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int n_mutations = 1 + (int)(next_random(&rng) % 4);
        for (int m = 0; m < n_mutations && len > 0; m++) {
            size_t at = next_random(&rng) % len;
            char c = interesting[next_random(&rng) % (sizeof interesting - 1)];
            switch (next_random(&rng) % 4) {
            case 0: buf[at] = c; break;                                               // replace
            case 1: if (len < sizeof buf) { memmove(buf + at + 1, buf + at, len - at); buf[at] = c; len++; } break; // insert
            case 2: memmove(buf + at, buf + at + 1, len - at - 1); len--; break;       // delete
            case 3: len = at; break;                                                   // truncate
            }
        }
        err[0] = '\0';
        Json *j = json_parse(buf, len, err);
        if (j != NULL) {
            check_round_trip(j);
            json_free(j);
            parsed++;
        } else {
            if (strncmp(err, "line ", 5) != 0 || strstr(err, " col ") == NULL) fail_msg("bad message \"%s\"", err);
            failed++;
        }
    }
    assert_true(parsed > 1000 && failed > 1000); // the mutations explored both sides
}

// ----------------------------------------------------------------------------------------------
// read_file
// ----------------------------------------------------------------------------------------------

static void test_read_file(void **state) {
    char path[512], err[R1_ERR_LEN];
    path_in(state, "bytes.bin", path);
    const char data[] = "ab\0cd\n\xff";
    write_bytes(path, data, sizeof data - 1);
    size_t size = 0;
    char *buf = read_file(path, &size, err);
    assert_non_null(buf);
    assert_int_equal(size, sizeof data - 1);
    assert_memory_equal(buf, data, size);
    assert_int_equal(buf[size], '\0');
    free(buf);

    // empty file: a valid, empty string
    write_bytes(path, "", 0);
    buf = read_file(path, &size, err);
    assert_non_null(buf);
    assert_int_equal(size, 0);
    assert_int_equal(buf[0], '\0');
    free(buf);

    // a file bigger than the first read chunk
    size_t big = 300000;
    char *content = malloc(big);
    assert_non_null(content);
    for (size_t i = 0; i < big; i++) content[i] = (char)(i * 7);
    write_bytes(path, content, big);
    buf = read_file(path, &size, err);
    assert_non_null(buf);
    assert_int_equal(size, big);
    assert_memory_equal(buf, content, big);
    free(buf);
    free(content);
    assert_int_equal(remove(path), 0);
}

static void test_read_file_errors(void **state) {
    char path[512], err[R1_ERR_LEN], want[600];
    path_in(state, "missing.json", path);
    size_t size = 123;
    assert_null(read_file(path, &size, err));
    snprintf(want, sizeof want, "%s: %s", path, strerror(ENOENT));
    assert_string_equal(err, want);
    // a directory opens but cannot be read
    assert_null(read_file(((TestDir *)*state)->dir, &size, err));
    snprintf(want, sizeof want, "%s: %s", ((TestDir *)*state)->dir, strerror(EISDIR));
    assert_string_equal(err, want);
}

// ----------------------------------------------------------------------------------------------
// safetensors: round trip
// ----------------------------------------------------------------------------------------------

static const float w_data[6] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.14159f};
static const int32_t ids_data[4] = {1, -2, 3, 2147483647};
static const float scalar_data[1] = {3.25f};

// Writes the round-trip file: F32 (2,3), I32 (4), a F32 scalar, an empty F32 (0,5), metadata.
static void write_example(const char *path) {
    StWrite tensors[] = {
        {.name = "model.layers.0.w", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = w_data},
        {.name = "ids", .dtype = "I32", .ndim = 1, .shape = {4}, .data = ids_data},
        {.name = "scalar", .dtype = "F32", .ndim = 0, .data = scalar_data},
        {.name = "empty", .dtype = "F32", .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    const char *meta[] = {"format", "pt", "step", "12", "quote \" key", "line\nvalue"};
    char err[R1_ERR_LEN] = "";
    if (st_write(path, tensors, 4, meta, 3, err) != 0) fail_msg("st_write: %s", err);
}

static void test_st_round_trip(void **state) {
    char path[512], tmp[600], err[R1_ERR_LEN] = "";
    path_in(state, "example.safetensors", path);
    write_example(path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(file_exists(tmp));

    StFile f;
    if (st_read(path, &f, err) != 0) fail_msg("st_read: %s", err);
    assert_int_equal(f.n, 4);
    assert_int_equal(f.data_size, sizeof w_data + sizeof ids_data + sizeof scalar_data);

    StTensor *w = st_find(&f, "model.layers.0.w");
    assert_non_null(w);
    assert_string_equal(w->dtype, "F32");
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 3);
    assert_int_equal(w->end - w->begin, sizeof w_data);
    assert_memory_equal(f.data + w->begin, w_data, sizeof w_data);

    StTensor *ids = st_find(&f, "ids");
    assert_non_null(ids);
    assert_string_equal(ids->dtype, "I32");
    assert_int_equal(ids->ndim, 1);
    assert_int_equal(ids->shape[0], 4);
    assert_int_equal(ids->end - ids->begin, sizeof ids_data);
    assert_memory_equal(f.data + ids->begin, ids_data, sizeof ids_data);

    StTensor *scalar = st_find(&f, "scalar");
    assert_non_null(scalar);
    assert_int_equal(scalar->ndim, 0);
    assert_int_equal(scalar->end - scalar->begin, 4);
    assert_memory_equal(f.data + scalar->begin, scalar_data, 4);

    StTensor *empty = st_find(&f, "empty");
    assert_non_null(empty);
    assert_int_equal(empty->ndim, 2);
    assert_int_equal(empty->shape[0], 0);
    assert_int_equal(empty->shape[1], 5);
    assert_int_equal(empty->begin, empty->end);

    assert_null(st_find(&f, "missing"));
    assert_null(st_find(&f, "ids "));
    st_free(&f);
    assert_null(f.t);
    assert_null(f.data);
    st_free(&f); // twice is harmless

    // the layout on disk: aligned header, metadata as written, data right after the header
    size_t size;
    unsigned char *bytes = (unsigned char *)read_file(path, &size, err);
    assert_non_null(bytes);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | bytes[i];
    assert_int_equal(header_len % 8, 0);
    assert_int_equal(size, 8 + header_len + sizeof w_data + sizeof ids_data + sizeof scalar_data);
    assert_int_equal(bytes[8], '{');
    Json *header = json_parse((const char *)bytes + 8, header_len, err);
    assert_non_null(header);
    Json *meta = json_get(header, "__metadata__");
    assert_non_null(meta);
    assert_string_equal(json_get(meta, "format")->string, "pt");
    assert_string_equal(json_get(meta, "step")->string, "12");
    assert_string_equal(json_get(meta, "quote \" key")->string, "line\nvalue");
    Json *offsets = json_get(json_get(header, "ids"), "data_offsets");
    assert_true(offsets->items[0].number == 24.0 && offsets->items[1].number == 40.0);
    json_free(header);
    free(bytes);
    assert_int_equal(remove(path), 0);
}

static void test_st_overwrite_and_empty(void **state) {
    char path[512], err[R1_ERR_LEN] = "";
    path_in(state, "over.safetensors", path);
    write_example(path);
    // a second write replaces the first, here with no tensors and no metadata at all
    assert_int_equal(st_write(path, NULL, 0, NULL, 0, err), 0);
    StFile f;
    assert_int_equal(st_read(path, &f, err), 0);
    assert_int_equal(f.n, 0);
    assert_int_equal(f.data_size, 0);
    assert_null(st_find(&f, "ids"));
    st_free(&f);
    assert_int_equal(remove(path), 0);
}

static void test_st_write_errors(void **state) {
    char path[512], dir_target[512], tmp[600], err[R1_ERR_LEN];
    path_in(state, "bad.safetensors", path);
    float x[2] = {1, 2};
    char long_name[200];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    struct { StWrite t[2]; int n; const char *what; } cases[] = {
        {{{"a", "F8", 1, {2}, x}}, 1, "unknown dtype"},
        {{{"a", NULL, 1, {2}, x}}, 1, "unknown dtype"},
        {{{"a", "F32", 5, {1, 1, 1, 1}, x}}, 1, "ndim"},
        {{{"a", "F32", 1, {-2}, x}}, 1, "negative"},
        {{{"a", "F32", 1, {2}, NULL}}, 1, "data is NULL"},
        {{{long_name, "F32", 1, {2}, x}}, 1, "longer than 159"},
        {{{"__metadata__", "F32", 1, {2}, x}}, 1, "reserved"},
        {{{"a", "F32", 1, {2}, x}, {"a", "F32", 1, {1}, x}}, 2, "appears twice"},
        {{{"a", "F32", 3, {INT64_MAX, INT64_MAX, 2}, x}}, 1, "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        assert_int_equal(st_write(path, cases[i].t, cases[i].n, NULL, 0, err), -1);
        if (strstr(err, path) == NULL || strstr(err, cases[i].what) == NULL)
            fail_msg("case %zu: \"%s\" lacks the path or \"%s\"", i, err, cases[i].what);
        assert_false(file_exists(path));
    }
    const char *bad_meta[] = {"k", NULL};
    StWrite one = {"a", "F32", 1, {2}, x};
    assert_int_equal(st_write(path, &one, 1, bad_meta, 1, err), -1);
    assert_non_null(strstr(err, "metadata"));

    // a directory that does not exist: creating the tmp file fails
    path_in(state, "no/such/dir.safetensors", dir_target);
    assert_int_equal(st_write(dir_target, &one, 1, NULL, 0, err), -1);
    assert_non_null(strstr(err, dir_target));
    assert_non_null(strstr(err, strerror(ENOENT)));

    // the target is a non-empty directory: writing works, the rename fails, the tmp is removed
    path_in(state, "target.safetensors", dir_target);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/keep", dir_target);
    assert_int_equal(mkdir(dir_target, 0700), 0);
    write_bytes(inner, "x", 1);
    assert_int_equal(st_write(dir_target, &one, 1, NULL, 0, err), -1);
    assert_non_null(strstr(err, dir_target));
    assert_non_null(strstr(err, "rename"));
    snprintf(tmp, sizeof tmp, "%s.tmp", dir_target);
    assert_false(file_exists(tmp));
    assert_int_equal(remove(inner), 0);
    assert_int_equal(rmdir(dir_target), 0);
}

// ----------------------------------------------------------------------------------------------
// safetensors: corrupted files give -1 and a message naming the file (and the tensor)
// ----------------------------------------------------------------------------------------------

static void expect_st_error(const char *path, const char *what, const char *tensor) {
    char err[R1_ERR_LEN] = "";
    StFile f;
    memset(&f, 0xAB, sizeof f);
    int rc = st_read(path, &f, err);
    if (rc != -1) { st_free(&f); fail_msg("st_read accepted a bad file, want \"%s\"", what); }
    if (strncmp(err, path, strlen(path)) != 0 || strstr(err, what) == NULL)
        fail_msg("got \"%s\", want \"%s: ...%s\"", err, path, what);
    if (tensor != NULL) {
        char quoted[256];
        snprintf(quoted, sizeof quoted, "tensor \"%s\"", tensor);
        if (strstr(err, quoted) == NULL) fail_msg("\"%s\" does not name %s", err, quoted);
    }
    assert_int_equal(f.n, 0); // left empty: st_free is safe
    assert_null(f.t);
    assert_null(f.data);
}

// A file made of a given header (length field = its length, or `claimed` if >= 0) and data.
static void write_raw_st(const char *path, const char *header, int64_t claimed, const void *data,
                         size_t n_data) {
    size_t header_len = strlen(header);
    uint64_t len_field = claimed >= 0 ? (uint64_t)claimed : header_len;
    unsigned char *bytes = malloc(8 + header_len + n_data);
    assert_non_null(bytes);
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)(len_field >> (8 * i));
    memcpy(bytes + 8, header, header_len);
    if (n_data > 0) memcpy(bytes + 8 + header_len, data, n_data);
    write_bytes(path, bytes, 8 + header_len + n_data);
    free(bytes);
}

static void test_st_truncated(void **state) {
    char path[512], bad[512], err[R1_ERR_LEN];
    path_in(state, "good.safetensors", path);
    path_in(state, "truncated.safetensors", bad);
    write_example(path);
    size_t size;
    char *bytes = read_file(path, &size, err);
    assert_non_null(bytes);
    size_t header_end = 8;
    for (int i = 7; i >= 0; i--) header_end += (size_t)((unsigned char)bytes[i]) << (8 * i);
    struct { size_t len; const char *what; } cuts[] = {
        {0, "too short"}, {1, "too short"}, {7, "too short"},
        {8, "runs past the end"}, {9, "runs past the end"}, {header_end / 2, "runs past the end"},
        {header_end - 1, "runs past the end"},
        {header_end, "past the data section"}, {header_end + 1, "past the data section"},
        {size - 1, "past the data section"},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(bad, bytes, cuts[i].len);
        expect_st_error(bad, cuts[i].what, NULL);
    }
    // every truncation fails, whatever the message
    for (size_t len = 0; len < size; len++) {
        write_bytes(bad, bytes, len);
        expect_st_error(bad, "", NULL);
    }
    free(bytes);
    assert_int_equal(remove(bad), 0);
    assert_int_equal(remove(path), 0);
}

static void test_st_lying_header_length(void **state) {
    char path[512];
    path_in(state, "lying.safetensors", path);
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    float data[2] = {1, 2};
    int64_t len = (int64_t)strlen(header);
    write_raw_st(path, header, len + 8 + 1, data, sizeof data); // one byte past the end
    expect_st_error(path, "runs past the end of the file", NULL);
    write_raw_st(path, header, 200000000, data, sizeof data);
    expect_st_error(path, "absurd", NULL);
    write_raw_st(path, header, INT64_MAX, data, sizeof data);
    expect_st_error(path, "absurd", NULL);
    write_raw_st(path, header, len - 5, data, sizeof data); // cuts the JSON
    expect_st_error(path, "header is not valid JSON: line 1 col", NULL);
    write_raw_st(path, header, len + 4, data, sizeof data); // swallows data bytes into the JSON
    expect_st_error(path, "header is not valid JSON", NULL);
    // but trailing spaces in the header are padding, and the right length reads fine
    write_raw_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}      ", -1, data, sizeof data);
    char err[R1_ERR_LEN] = "";
    StFile f;
    if (st_read(path, &f, err) != 0) fail_msg("%s", err);
    assert_int_equal(f.n, 1);
    assert_memory_equal(f.data, data, sizeof data);
    st_free(&f);
    assert_int_equal(remove(path), 0);
}

static void test_st_bad_headers(void **state) {
    char path[512];
    path_in(state, "bad_header.safetensors", path);
    char long_header[512];
    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    snprintf(long_header, sizeof long_header, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", long_name);
#define T(name, rest) "{\"" name "\":{" rest "}}"
    struct { const char *header, *what, *tensor; } cases[] = {
        // header not JSON / not an object
        {"{not json}", "header is not valid JSON: line 1 col 2", NULL},
        {"", "header is not valid JSON", NULL},
        {"[]", "header is not a JSON object", NULL},
        {"\"str\"", "header is not a JSON object", NULL},
        {"{\"a\": 1}", "entry is not a JSON object", "a"},
        // offsets
        {T("a", "\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]"), "past the data section (16 bytes)", "a"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,8]"), "begin > end", "b"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]"), "[begin, end]", "b"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), "[begin, end]", "b"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\""), "[begin, end]", "b"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), "integers", "b"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]"), "integers", "b"},
        {T("b", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]"), "integers", "b"},
        // shape vs size
        {T("c", "\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]"), "shape [3] of F32 needs 12 bytes but data_offsets hold 8", "c"},
        {T("c", "\"dtype\":\"I64\",\"shape\":[2,1],\"data_offsets\":[0,8]"), "needs 16 bytes", "c"},
        {T("c", "\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,8]"), "needs 4 bytes", "c"},
        {T("c", "\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]"), "more than 2^64", "c"},
        {T("c", "\"dtype\":\"F32\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]"), "more than 2^64", "c"},
        // dtype
        {T("d", "\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]"), "unknown dtype \"F128\"", "d"},
        {T("d", "\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), "unknown dtype", "d"},
        {T("d", "\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]"), "unknown dtype", "d"},
        {T("d", "\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]"), "\"dtype\" is not a string", "d"},
        // missing fields, wrong types
        {T("e", "\"shape\":[1],\"data_offsets\":[0,4]"), "missing \"dtype\"", "e"},
        {T("e", "\"dtype\":\"F32\",\"data_offsets\":[0,4]"), "missing \"shape\"", "e"},
        {T("e", "\"dtype\":\"F32\",\"shape\":[1]"), "missing \"data_offsets\"", "e"},
        {T("e", "\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]"), "\"shape\" is not an array", "e"},
        {T("e", "\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), "shape[0] is not an integer", "e"},
        {T("e", "\"dtype\":\"F32\",\"shape\":[1, 1.5],\"data_offsets\":[0,4]"), "shape[1] is not an integer", "e"},
        {T("e", "\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]"), "shape[0] is not an integer", "e"},
        {T("e", "\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]"), "5 dims, at most 4", "e"},
        // names, overlaps, metadata
        {long_header, "longer than 159 bytes", NULL},
        {"{\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"g\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "overlap", "g"},
        {"{\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "appears twice", "f"},
        {"{\"__metadata__\":{\"k\":1}}", "\"__metadata__\" value of \"k\" is not a string", NULL},
        {"{\"__metadata__\":[]}", "\"__metadata__\" is not a JSON object", NULL},
    };
#undef T
    unsigned char data[16] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw_st(path, cases[i].header, -1, data, sizeof data);
        expect_st_error(path, cases[i].what, cases[i].tensor);
    }
    assert_int_equal(remove(path), 0);
}

static void test_st_all_dtypes_and_missing_file(void **state) {
    char path[512], err[R1_ERR_LEN] = "";
    path_in(state, "dtypes.safetensors", path);
    const char *header =
        "  {\"__metadata__\":{\"format\":\"pt\"},"
        "\"f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
        "\"i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]},"
        "\"f16\":{\"dtype\":\"F16\",\"shape\":[1,1],\"data_offsets\":[16,18]},"
        "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[1,1,1],\"data_offsets\":[18,20]},"
        "\"i16\":{\"dtype\":\"I16\",\"shape\":[1,1,1,1],\"data_offsets\":[20,22]},"
        "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[22,23]},"
        "\"u8\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[23,24]},"
        "\"bool\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[24,26]},"
        "\"zero\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[26,26]},"
        "\"i32\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[28,32]}}  ";
    unsigned char data[32];
    for (int i = 0; i < 32; i++) data[i] = (unsigned char)i;
    write_raw_st(path, header, -1, data, sizeof data);
    StFile f;
    if (st_read(path, &f, err) != 0) fail_msg("%s", err);
    assert_int_equal(f.n, 10);
    const char *names[] = {"f64", "i64", "f16", "bf16", "i16", "i8", "u8", "bool", "zero", "i32"};
    const char *dtypes[] = {"F64", "I64", "F16", "BF16", "I16", "I8", "U8", "BOOL", "F32", "I32"};
    for (int i = 0; i < 10; i++) {
        StTensor *t = st_find(&f, names[i]);
        assert_non_null(t);
        assert_string_equal(t->dtype, dtypes[i]);
    }
    StTensor *i16 = st_find(&f, "i16");
    assert_int_equal(i16->ndim, 4);
    assert_int_equal(i16->begin, 20);
    assert_int_equal(f.data[i16->begin], 20); // data points at the data section
    st_free(&f);
    assert_int_equal(remove(path), 0);

    // a file that is not there
    expect_st_error(path, strerror(ENOENT), NULL);
}

// Random byte changes to a valid file: st_read either accepts a consistent file or says why.
static void test_st_fuzz(void **state) {
    char path[512], bad[512], err[R1_ERR_LEN];
    path_in(state, "fuzz_good.safetensors", path);
    path_in(state, "fuzz_bad.safetensors", bad);
    write_example(path);
    size_t size;
    char *good = read_file(path, &size, err);
    assert_non_null(good);
    char *bytes = malloc(size);
    assert_non_null(bytes);
    uint64_t rng = 12345;
    int accepted = 0, rejected = 0;
    static const char interesting[] = "0123456789[]{},:\"- eFI";
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(bytes, good, size);
        size_t len = size;
        int n_mutations = 1 + (int)(next_random(&rng) % 3);
        for (int m = 0; m < n_mutations; m++) {
            size_t at = next_random(&rng) % len;
            uint64_t r = next_random(&rng);
            if (r % 10 == 0) len = at > 0 ? at : 1;            // truncate
            else if (r % 10 < 3) bytes[at] = (char)(r >> 8);    // any byte
            else bytes[at] = interesting[(r >> 8) % (sizeof interesting - 1)];
        }
        write_bytes(bad, bytes, len);
        StFile f;
        err[0] = '\0';
        if (st_read(bad, &f, err) == 0) {
            for (int i = 0; i < f.n; i++) assert_true(f.t[i].begin <= f.t[i].end && f.t[i].end <= f.data_size);
            st_free(&f);
            accepted++;
        } else {
            if (strncmp(err, bad, strlen(bad)) != 0) fail_msg("message does not name the file: %s", err);
            rejected++;
        }
    }
    assert_true(accepted > 10 && rejected > 1000);
    free(bytes);
    free(good);
    assert_int_equal(remove(bad), 0);
    assert_int_equal(remove(path), 0);
}

// The report's bar chart: one labelled bar per stage, its width the value's share of the plot
// width (450 px for values in [0, 1]), the value printed beside it, and no bar for a NaN.
static void test_bar_chart(void **state) {
    char path[512];
    path_in(state, "bars.svg", path);
    const char *labels[] = {"base", "rl", "final"};
    double v[] = {0.5, 1.0, NAN};
    write_bar_chart(path, "pass@1", labels, v, 3);
    char err[R1_ERR_LEN];
    char *svg = read_file(path, NULL, err);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg "));
    assert_non_null(strstr(svg, "</svg>"));
    assert_non_null(strstr(svg, ">pass@1</text>"));
    assert_non_null(strstr(svg, ">base</text>"));
    assert_non_null(strstr(svg, ">final</text>"));
    assert_non_null(strstr(svg, "width=\"225.0\""));  // 0.5 of the plot: 640 - 130 - 60 px
    assert_non_null(strstr(svg, "width=\"450.0\""));  // 1.0: the whole plot width
    assert_non_null(strstr(svg, ">0.500</text>"));
    assert_null(strstr(svg, "nan"));                 // the NaN bar: width 0, no value
    free(svg);
    assert_int_equal(unlink(path), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bar_chart),
        cmocka_unit_test(test_json_nested),
        cmocka_unit_test(test_json_top_level_scalars),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_unicode),
        cmocka_unit_test(test_json_depth_limit),
        cmocka_unit_test(test_json_duplicate_keys_last_wins),
        cmocka_unit_test(test_json_get),
        cmocka_unit_test(test_json_large_containers),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_json_every_prefix_fails),
        cmocka_unit_test(test_json_write_string),
        cmocka_unit_test(test_json_fuzz),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_read_file_errors),
        cmocka_unit_test(test_st_round_trip),
        cmocka_unit_test(test_st_overwrite_and_empty),
        cmocka_unit_test(test_st_write_errors),
        cmocka_unit_test(test_st_truncated),
        cmocka_unit_test(test_st_lying_header_length),
        cmocka_unit_test(test_st_bad_headers),
        cmocka_unit_test(test_st_all_dtypes_and_missing_file),
        cmocka_unit_test(test_st_fuzz),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
