// tests/test_grpo.c: the toy reasoning world (grpo.c): verifiers on crafted right, wrong and
// malformed answers; generation is deterministic; train and eval never meet (not in the
// corpus either); every generated example is solvable by its gold answer and by its worked
// solution; both languages are there; the CLI fails with one line and status 1; files are
// written atomically.
//   gcc -std=c11 -O2 -g -Wall -Wextra -Wno-format-truncation -Wno-unused-function -fopenmp -I.
//       -DR1_TEST -o build/test_grpo tests/test_grpo.c moe.c grpo.c -lcmocka -lm
#include "r1.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

static TaskSetOptions task_options(const char *task, int eval, int n, int lo, int hi, uint64_t seed) {
    TaskSetOptions o = {.task = task, .eval = eval, .n = n, .level_lo = lo, .level_hi = hi,
                        .lang = "both", .seed = seed, .solutions = 1};
    return o;
}

// A task set as one string (JSON Lines).
static char *gen_tasks(const TaskSetOptions *o) {
    char *buf = NULL, err[R1_ERR_LEN] = "";
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    long r = tasks_write(f, o, err);
    if (r < 0) fail_msg("tasks_write: %s", err);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static char *gen_corpus(double mb, int lo, int hi, uint64_t seed) {
    CorpusOptions o = {.mb = mb, .think_share = 0.1, .text_share = 0.4, .level_lo = lo, .level_hi = hi,
                       .lang = "both", .seed = seed};
    char *buf = NULL, err[R1_ERR_LEN] = "";
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    long docs = corpus_write(f, &o, err);
    if (docs <= 0) fail_msg("corpus_write: %s", err);
    assert_int_equal(fclose(f), 0);
    assert_true(len >= (size_t)(mb * 1048576));
    return buf;
}

// Parses every line of a JSON Lines text; each must parse.
static Json **parse_lines(const char *text, int *n) {
    int cap = 16, count = 0;
    Json **v = malloc(sizeof(Json *) * cap);
    for (const char *s = text; *s;) {
        const char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        char err[R1_ERR_LEN];
        Json *j = json_parse(s, l, err);
        if (j == NULL) fail_msg("line %d does not parse: %s", count + 1, err);
        if (count == cap) v = realloc(v, sizeof(Json *) * (cap *= 2));
        v[count++] = j;
        s += l + (nl != NULL);
    }
    *n = count;
    return v;
}

static void free_lines(Json **v, int n) {
    for (int i = 0; i < n; i++) json_free(v[i]);
    free(v);
}

static Json *ex(const char *json) {
    char err[R1_ERR_LEN];
    Json *j = json_parse(json, strlen(json), err);
    if (j == NULL) fail_msg("bad test JSON %s: %s", json, err);
    return j;
}

static const char *str_field(const Json *j, const char *key) {
    const Json *v = json_get(j, key);
    assert_non_null(v);
    assert_int_equal(v->type, JSON_STRING);
    return v->string;
}

static int has_non_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 1;
    return 0;
}

static int has_ascii_letter(const char *s) {
    for (; *s; s++)
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) return 1;
    return 0;
}

#define ACCEPT(e, text) do { if (task_check(NULL, e, text) != 1) fail_msg("rejected: '%s'", text); } while (0)
#define REJECT(e, text) do { if (task_check(NULL, e, text) != 0) fail_msg("accepted: '%s'", text); } while (0)

// ----------------------------------------------------------------------------------------------
// Verifiers
// ----------------------------------------------------------------------------------------------

static void test_arithmetic_verifier(void **state) {
    (void)state;
    Json *add = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"level\":2,\"prompt\":\"What is 347 + 581?\","
                   "\"answer\":\"928\",\"a\":347,\"op\":\"+\",\"b\":581}");
    ACCEPT(add, "928");
    ACCEPT(add, "  928 \n");
    ACCEPT(add, "0928");
    REJECT(add, "929");
    REJECT(add, "");
    REJECT(add, "   ");
    REJECT(add, "928.0");
    REJECT(add, "9 28");
    REJECT(add, "+928");
    REJECT(add, "-928");
    REJECT(add, "928abc");
    REJECT(add, "347 + 581 = 928");
    REJECT(add, "((((");
    REJECT(add, "1/0");
    REJECT(add, "99999999999999999999999999999999999999");
    REJECT(add, "-99999999999999999999999999999999999999");
    REJECT(add, "\xef\xbc\x99\xef\xbc\x92\xef\xbc\x98");  // full-width 928
    REJECT(add, "\xff\xfe\x80 928");
    assert_int_equal(task_check("arithmetic", add, "928"), 1);
    assert_int_equal(task_check("countdown", add, "928"), 0);  // the example says arithmetic
    assert_int_equal(task_check(NULL, add, NULL), 0);
    assert_int_equal(task_check(NULL, NULL, "928"), 0);
    assert_int_equal(task_check("nonsense", add, "928"), 0);
    json_free(add);

    Json *mul = ex("{\"task\":\"arithmetic\",\"a\":347,\"op\":\"*\",\"b\":58}");
    ACCEPT(mul, "20126");
    REJECT(mul, "20127");
    REJECT(mul, "405");
    json_free(mul);

    // malformed examples: never accepted, never a crash
    const char *bad[] = {
        "{\"task\":\"arithmetic\",\"a\":347,\"op\":\"-\",\"b\":58}",
        "{\"task\":\"arithmetic\",\"op\":\"+\",\"b\":58}",
        "{\"task\":\"arithmetic\",\"a\":1e300,\"op\":\"*\",\"b\":1e300}",
        "{\"task\":\"arithmetic\",\"a\":2.5,\"op\":\"+\",\"b\":1}",
        "{\"task\":\"arithmetic\",\"a\":\"347\",\"op\":\"+\",\"b\":1}",
        "{\"task\":\"arithmetic\",\"a\":-3,\"op\":\"+\",\"b\":1}",
        "{\"task\":7,\"a\":1,\"op\":\"+\",\"b\":1}",
        "[1, 2, 3]",
        "\"arithmetic\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Json *j = ex(bad[i]);
        assert_int_equal(task_check(NULL, j, "2"), 0);
        assert_int_equal(task_check("arithmetic", j, "2"), 0);
        assert_null(task_solution(j, 1));
        assert_int_equal(task_is_eval(j), -1);
        json_free(j);
    }
}

static void test_countdown_verifier(void **state) {
    (void)state;
    Json *e = ex("{\"task\":\"countdown\",\"lang\":\"en\",\"level\":5,\"numbers\":[19,36,55,7],\"target\":65,"
                 "\"prompt\":\"...\",\"answer\":\"55 + 36 - 19 - 7\"}");
    ACCEPT(e, "55 + 36 - 19 - 7");
    ACCEPT(e, "55+36-19-7");
    ACCEPT(e, " \t(55 + (36 - 19)) - 7\n");
    ACCEPT(e, "55 + 36 - 19 - 7 = 65");
    ACCEPT(e, "36 - 19 + 55 - 7");
    ACCEPT(e, "(36 - 19) + (55 - 7)");
    REJECT(e, "55 + 36 - 19 - 7 = 64");        // states a wrong value
    REJECT(e, "55 + 36 - 19 - 7 =");
    REJECT(e, "55 + 36 - 19 - 7 = 65 = 65");
    REJECT(e, "55 + 7 + 7 - 4");               // 7 twice, 4 not given
    REJECT(e, "55 + 10");                      // 10 not given
    REJECT(e, "55 + 36 - 19 - 7 - 7 + 7");     // 7 used three times
    REJECT(e, "36 + 36 - 7");                  // 36 twice (= 65)
    REJECT(e, "55 + 36 - 19 - 8");
    REJECT(e, "");
    REJECT(e, "   ");
    REJECT(e, "((((");
    REJECT(e, "))))");
    REJECT(e, "(55 + 7");
    REJECT(e, "55 + 7)");
    REJECT(e, "1/0");
    REJECT(e, "55 / 0");
    REJECT(e, "55 / (7 - 7)");
    REJECT(e, "-55 + 120");                    // no unary minus
    REJECT(e, "+65");
    REJECT(e, "65");                           // not a given number
    REJECT(e, "55 + 36 - 19 - 7 extra");
    REJECT(e, "55 ++ 7");
    REJECT(e, "55 7");
    REJECT(e, "55 + 36 - 19 - 7 ;");
    REJECT(e, "99999999999999999999999999 - 99999999999999999999999934");
    REJECT(e, "0000000000000000000000000000055 + 10");
    REJECT(e, "\xef\xbc\x95\xef\xbc\x95 + 10");  // full-width digits
    REJECT(e, "\xe2\x80\x8b" "55 + 10");             // zero-width space
    REJECT(e, "\xff\xfe\xfd");
    REJECT(e, "55 \xc3 36");                      // half of a UTF-8 "×"
    // ASCII and the usual typographic operators and parentheses
    Json *e62 = ex("{\"task\":\"countdown\",\"numbers\":[55,7,3],\"target\":62}");
    ACCEPT(e62, "55 + 7");                        // a subset of the numbers is fine
    ACCEPT(e62, "（55 + 7）");                    // full-width parentheses
    REJECT(e62, "55 + 7 + 3 - 3");                // 3 twice
    json_free(e62);
    Json *e14 = ex("{\"task\":\"countdown\",\"numbers\":[7,2,4],\"target\":14}");
    ACCEPT(e14, "7 * 4 / 2");                     // 28 / 2: exact
    ACCEPT(e14, "7 × 4 ÷ 2");
    ACCEPT(e14, "7 * (4 / 2)");
    REJECT(e14, "7 / 2 * 4");                     // 7 / 2 leaves a remainder
    REJECT(e14, "4 / 7 * 2");
    json_free(e14);
    // deep nesting: 20 levels is fine, 40 is refused (no stack to exhaust)
    char deep[512];
    for (int depth = 20; depth <= 40; depth += 20) {
        int k = 0;
        for (int i = 0; i < depth; i++) deep[k++] = '(';
        k += sprintf(deep + k, "55 + 36 - 19 - 7");
        for (int i = 0; i < depth; i++) deep[k++] = ')';
        deep[k] = '\0';
        assert_int_equal(task_check(NULL, e, deep), depth == 20);
    }
    char *many = malloc(200001);
    memset(many, '(', 200000);
    many[200000] = '\0';
    REJECT(e, many);
    memset(many, '7', 200000);
    REJECT(e, many);
    free(many);
    json_free(e);

    // huge given numbers: products overflow 64 bits; the verifier refuses instead
    Json *big = ex("{\"task\":\"countdown\",\"numbers\":[10000000,10000000,10000000,10000000],\"target\":1}");
    REJECT(big, "10000000 * 10000000 * 10000000 * 10000000");
    REJECT(big, "10000000 * 10000000 * 10000000 / 10000000");
    ACCEPT(big, "10000000 / 10000000");
    json_free(big);

    const char *bad[] = {
        "{\"task\":\"countdown\",\"numbers\":[1,2,3,4,5,6],\"target\":21}", // more than 5 numbers
        "{\"task\":\"countdown\",\"numbers\":[],\"target\":1}",
        "{\"task\":\"countdown\",\"numbers\":[1,2],\"target\":2.5}",
        "{\"task\":\"countdown\",\"numbers\":[1,-2],\"target\":3}",
        "{\"task\":\"countdown\",\"numbers\":[1,2]}",
        "{\"task\":\"countdown\",\"numbers\":\"1,2\",\"target\":3}",
        "{\"task\":\"countdown\",\"numbers\":[1e30,2],\"target\":3}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Json *j = ex(bad[i]);
        assert_int_equal(task_check(NULL, j, "1 + 2"), 0);
        assert_null(task_solution(j, 1));
        json_free(j);
    }
    // unsolvable hand-made example: no worked solution, no crash
    Json *none = ex("{\"task\":\"countdown\",\"numbers\":[2,2,2],\"target\":97}");
    assert_null(task_solution(none, 1));
    json_free(none);
}

static void test_sort42_verifier(void **state) {
    (void)state;
    Json *e = ex("{\"task\":\"sort42\",\"lang\":\"zh\",\"numbers\":[7,1,3]}");
    ACCEPT(e, "[42, 1, 3, 7]");
    ACCEPT(e, "[42,1,3,7]");
    ACCEPT(e, " [ 42 ,1,\n3 ,\t7 ] \n");
    ACCEPT(e, "[42，1，3，7]");                  // full-width commas
    REJECT(e, "[1, 3, 7, 42]");
    REJECT(e, "[42, 1, 3]");
    REJECT(e, "[42, 1, 3, 7, 9]");
    REJECT(e, "[42, 1, 7, 3]");
    REJECT(e, "42, 1, 3, 7");
    REJECT(e, "[42, 1, 3, 7");
    REJECT(e, "[42, 1, 3, 7]]");
    REJECT(e, "[42, 1, 3, 7],");
    REJECT(e, "[42, 1, 3, 7] [42]");
    REJECT(e, "[42, 1, 3, 7.0]");
    REJECT(e, "[42, 1, 3, , 7]");
    REJECT(e, "[42 1 3 7]");
    REJECT(e, "[]");
    REJECT(e, "");
    REJECT(e, "[");
    REJECT(e, "((((");
    REJECT(e, "1/0");
    REJECT(e, "[42, 1, 3, 99999999999999999999999]");
    REJECT(e, "[\xe4\xb8\x80, 1, 3, 7]");
    // a very long list is refused quickly
    size_t n = 100000;
    char *lst = malloc(3 * n + 3);
    size_t k = 0;
    lst[k++] = '[';
    for (size_t i = 0; i < n; i++) lst[k++] = '1', lst[k++] = ',', lst[k++] = ' ';
    lst[k - 2] = ']', lst[k - 1] = '\0';
    REJECT(e, lst);
    free(lst);
    json_free(e);

    Json *neg = ex("{\"task\":\"sort42\",\"numbers\":[3,-5,42,3]}");
    ACCEPT(neg, "[42, -5, 3, 3, 42]");
    REJECT(neg, "[42, 5, 3, 3, 42]");
    json_free(neg);
    Json *empty = ex("{\"task\":\"sort42\",\"numbers\":[]}");
    ACCEPT(empty, "[42]");
    json_free(empty);
    Json *bad = ex("{\"task\":\"sort42\",\"numbers\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}");
    REJECT(bad, "[42, 1]");
    json_free(bad);
}

// Random bytes and near-misses from each task's alphabet: never a crash (run under ASan too).
static void test_verifiers_fuzz(void **state) {
    (void)state;
    Json *e[3] = {ex("{\"task\":\"arithmetic\",\"a\":12,\"op\":\"+\",\"b\":30}"),
                  ex("{\"task\":\"countdown\",\"numbers\":[2,3,7],\"target\":42}"),
                  ex("{\"task\":\"sort42\",\"numbers\":[2,0]}")};
    static const char *const parts[] = {"0", "1", "2", "3", "7", "12", "30", "42", "99999999999999999999", " ",
                                        "+", "-", "*", "/", "(", ")", "[", "]", ",", "=", "×", "÷", "（",
                                        "）", "，", "\xff", "\xc3", "\n", "<answer>", "e", "."};
    int np = (int)(sizeof parts / sizeof parts[0]), accepted[3] = {0};
    Rng r;
    rng_seed(&r, 5);
    char buf[512];
    for (int it = 0; it < 30000; it++) {
        int len = 0, n = (int)(rng_next(&r) % 16);
        buf[0] = '\0';
        for (int i = 0; i < n; i++) {
            const char *p = parts[rng_next(&r) % np];
            if (len + strlen(p) + 1 >= sizeof buf) break;
            strcpy(buf + len, p);
            len += (int)strlen(p);
        }
        for (int t = 0; t < 3; t++) accepted[t] += task_check(NULL, e[t], buf);
    }
    for (int it = 0; it < 10000; it++) { // raw bytes
        int n = (int)(rng_next(&r) % 40);
        for (int i = 0; i < n; i++) buf[i] = (char)(1 + rng_next(&r) % 255);
        buf[n] = '\0';
        for (int t = 0; t < 3; t++) accepted[t] += task_check(NULL, e[t], buf);
    }
    // the known answers still pass after all that
    ACCEPT(e[0], "42");
    ACCEPT(e[1], "2 * 3 * 7");
    ACCEPT(e[2], "[42, 0, 2]");
    for (int t = 0; t < 3; t++) json_free(e[t]);
}

static void test_answer_extract(void **state) {
    (void)state;
    char *a = answer_extract("<think>\nfirst <answer>1</answer>?\n</think>\n<answer> 7 + 8 \n</answer>");
    assert_string_equal(a, "7 + 8");
    free(a);
    a = answer_extract("<answer></answer>");
    assert_string_equal(a, "");
    free(a);
    assert_null(answer_extract("no tags"));
    assert_null(answer_extract("<answer>7"));
    assert_null(answer_extract("7</answer>"));
    assert_null(answer_extract(""));
    assert_null(answer_extract(NULL));
}

static void test_r1_zero_prompt(void **state) {
    (void)state;
    char *p = r1_zero_prompt("What is 3 + 4?", "en");
    assert_non_null(strstr(p, "A conversation between User and Assistant. "));
    assert_non_null(strstr(p, "<think> reasoning process here </think> <answer> answer here </answer>"));
    assert_non_null(strstr(p, "User: What is 3 + 4? Assistant:"));
    assert_string_equal(p + strlen(p) - strlen("Assistant:"), "Assistant:");
    free(p);
    p = r1_zero_prompt("Sort them", "en");
    assert_non_null(strstr(p, "User: Sort them. Assistant:"));
    free(p);
    p = r1_zero_prompt("请计算 3 + 4 的结果。", "zh");
    assert_non_null(strstr(p, "用户：请计算 3 + 4 的结果。助手："));
    assert_string_equal(p + strlen(p) - strlen("助手："), "助手：");
    free(p);
}

// ----------------------------------------------------------------------------------------------
// Generation
// ----------------------------------------------------------------------------------------------

static void test_generation_is_deterministic(void **state) {
    (void)state;
    TaskSetOptions o = task_options("all", 0, 300, 1, 5, 7);
    char *a = gen_tasks(&o), *b = gen_tasks(&o);
    assert_string_equal(a, b);
    o.seed = 8;
    char *c = gen_tasks(&o);
    assert_string_not_equal(a, c);
    free(a), free(b), free(c);
    char *d = gen_corpus(0.25, 1, 5, 3), *e = gen_corpus(0.25, 1, 5, 3), *f = gen_corpus(0.25, 1, 5, 4);
    assert_string_equal(d, e);
    assert_string_not_equal(d, f);
    free(d), free(e), free(f);
}

// Every example: the gold answer passes, the "solution" field and task_solution (both styles)
// are well formed, in the example's language, and their answers pass.
static void check_solvable(Json **v, int n) {
    for (int i = 0; i < n; i++) {
        const char *gold = str_field(v[i], "answer"), *lang = str_field(v[i], "lang");
        if (task_check(NULL, v[i], gold) != 1) fail_msg("example %d: gold '%s' rejected", i + 1, gold);
        const char *own = str_field(v[i], "solution");
        char *tagged = task_solution(v[i], 1), *plain = task_solution(v[i], 0);
        assert_non_null(tagged);
        assert_non_null(plain);
        assert_string_equal(own, tagged);
        assert_int_equal(strncmp(tagged, "<think>\n", 8), 0);
        assert_non_null(strstr(tagged, "\n</think>\n<answer>"));
        assert_string_equal(tagged + strlen(tagged) - strlen("</answer>"), "</answer>");
        char *ans = answer_extract(tagged);
        if (task_check(NULL, v[i], ans) != 1) fail_msg("example %d: solution answer '%s' rejected", i + 1, ans);
        // the plain style ends with the same answer
        char tail[300];
        snprintf(tail, sizeof tail, strcmp(lang, "zh") == 0 ? "\n所以答案是 %s。" : "\nSo the answer is %s.", ans);
        assert_string_equal(plain + strlen(plain) - strlen(tail), tail);
        // language consistency: Chinese reasoning has no Latin letters, English no non-ASCII
        const char *prompt = str_field(v[i], "prompt");
        if (strcmp(lang, "zh") == 0) {
            assert_true(has_non_ascii(tagged) && has_non_ascii(prompt));
            char *think_end = strstr(tagged, "</think>");
            *think_end = '\0';
            if (has_ascii_letter(tagged + strlen("<think>"))) fail_msg("Latin letters in: %s", tagged);
        } else {
            assert_string_equal(lang, "en");
            assert_false(has_non_ascii(tagged) || has_non_ascii(prompt));
        }
        free(ans), free(tagged), free(plain);
    }
}

static void test_every_example_is_solvable(void **state) {
    (void)state;
    for (int eval = 0; eval <= 1; eval++) {
        for (int level = 1; level <= 5; level++) {
            TaskSetOptions o = task_options("all", eval, 150, level, level, 11 + level);
            char *text = gen_tasks(&o);
            int n;
            Json **v = parse_lines(text, &n);
            assert_int_equal(n, 150);
            check_solvable(v, n);
            for (int i = 0; i < n; i++) {
                assert_int_equal((int)json_get(v[i], "level")->number, level);
                assert_int_equal(task_is_eval(v[i]), eval);
            }
            free_lines(v, n);
            free(text);
        }
    }
}

// The difficulty knob does what the header of each task says.
static void test_levels(void **state) {
    (void)state;
    static const int cd_given[6] = {0, 3, 3, 3, 4, 4}, s42_len[6] = {0, 3, 4, 5, 6, 7};
    for (int level = 1; level <= 5; level++) {
        const char *tasks[3] = {"arithmetic", "countdown", "sort42"};
        for (int t = 0; t < 3; t++) {
            TaskSetOptions o = task_options(tasks[t], 0, 60, level, level, 3);
            char *text = gen_tasks(&o);
            int n;
            Json **v = parse_lines(text, &n);
            for (int i = 0; i < n; i++) {
                assert_string_equal(str_field(v[i], "task"), tasks[t]);
                if (t == 0) {
                    double a = json_get(v[i], "a")->number, b = json_get(v[i], "b")->number;
                    const char *op = str_field(v[i], "op");
                    assert_string_equal(op, level <= 3 ? "+" : "*");
                    if (level == 1) assert_true(a <= 99 && b <= 99);
                    if (level == 2) assert_true(a >= 100 && a <= 999 && b >= 100 && b <= 999);
                    if (level == 3) assert_true(a >= 1000 && a <= 999999 && b >= 1000);
                    if (level == 4) assert_true(b >= 2 && b <= 9);
                    if (level == 5) assert_true(a >= 10 && a <= 99 && b >= 11 && b <= 99);
                } else if (t == 1) {
                    assert_int_equal(json_get(v[i], "numbers")->n, cd_given[level]);
                    double target = json_get(v[i], "target")->number;
                    assert_true(target >= 1 && target <= 999);
                } else {
                    assert_int_equal(json_get(v[i], "numbers")->n, s42_len[level]);
                }
            }
            free_lines(v, n);
            free(text);
        }
    }
}

// Countdown solutions at higher levels show some dead ends before the way that works.
static void test_countdown_solutions_search(void **state) {
    (void)state;
    TaskSetOptions o = task_options("countdown", 0, 300, 3, 5, 9);
    char *text = gen_tasks(&o);
    int n, with_dead_end = 0;
    Json **v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) {
        const char *s = str_field(v[i], "solution");
        if (strstr(s, ", not ") || strstr(s, "，不是 ")) with_dead_end++;
    }
    assert_true(with_dead_end > n / 5);
    assert_true(with_dead_end < n);
    free_lines(v, n);
    free(text);
}

static void test_both_languages(void **state) {
    (void)state;
    TaskSetOptions o = task_options("all", 0, 600, 1, 5, 21);
    char *text = gen_tasks(&o);
    int n, en = 0, zh = 0, per_task[3][2] = {{0}};
    Json **v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) {
        int is_zh = strcmp(str_field(v[i], "lang"), "zh") == 0;
        const char *task = str_field(v[i], "task");
        int t = strcmp(task, "arithmetic") == 0 ? 0 : strcmp(task, "countdown") == 0 ? 1 : 2;
        per_task[t][is_zh]++;
        is_zh ? zh++ : en++;
    }
    assert_true(en > 200 && zh > 200);
    for (int t = 0; t < 3; t++) assert_true(per_task[t][0] > 50 && per_task[t][1] > 50);
    free_lines(v, n);
    free(text);
    o.lang = "zh";
    text = gen_tasks(&o);
    v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) assert_string_equal(str_field(v[i], "lang"), "zh");
    free_lines(v, n);
    free(text);

    // the corpus: documents in both languages, of all three kinds
    char *c = gen_corpus(0.5, 1, 5, 2);
    int docs = 0, docs_zh = 0, docs_en = 0, think = 0, qa = 0;
    for (char *s = c; *s;) {
        char *end = strstr(s, "\n\n");
        assert_non_null(end);
        *end = '\0';
        docs++;
        if (has_non_ascii(s)) docs_zh++;
        else docs_en++;
        if (strstr(s, "A conversation between User and Assistant.") == s ||
            strstr(s, "用户与助手之间的对话。") == s) {
            think++;
            assert_non_null(strstr(s, "<think>\n"));
            assert_non_null(strstr(s, "</answer>"));
        }
        if (strncmp(s, "Question: ", 10) == 0 || strncmp(s, "问题：", strlen("问题：")) == 0) qa++;
        s = end + 2;
    }
    assert_true(docs_zh > docs / 3 && docs_en > docs / 3);
    assert_true(think > docs / 20 && think < docs / 5);       // about 10%
    assert_true(qa > docs * 2 / 5 && qa < docs * 3 / 5);     // about 50%
    free(c);
}

// The arithmetic the plain text states is true.
static void test_text_is_true(void **state) {
    (void)state;
    char *c = gen_corpus(0.3, 1, 5, 6);
    static const char *const pats[][2] = {{" plus ", " is "}, {" times ", " is "}, {" 加 ", " 等于 "},
                                          {" 乘 ", " 等于 "}};
    int checked = 0;
    for (int k = 0; k < 4; k++) {
        for (char *s = strstr(c, pats[k][0]); s != NULL; s = strstr(s + 1, pats[k][0])) {
            char *start = s;
            while (start > c && start[-1] >= '0' && start[-1] <= '9') start--;
            long long x, y, z;
            char *p = s + strlen(pats[k][0]), *q;
            if (start == s) continue;
            x = strtoll(start, NULL, 10);
            y = strtoll(p, &q, 10);
            if (q == p || strncmp(q, pats[k][1], strlen(pats[k][1])) != 0) continue;
            z = strtoll(q + strlen(pats[k][1]), NULL, 10);
            if ((k % 2 == 0 ? x + y : x * y) != z) fail_msg("false: %.40s", start);
            checked++;
        }
    }
    assert_true(checked > 40);
    free(c);
}

// ----------------------------------------------------------------------------------------------
// The held-out split
// ----------------------------------------------------------------------------------------------

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_train_eval_disjoint(void **state) {
    (void)state;
    TaskSetOptions tr = task_options("all", 0, 6000, 1, 5, 1), ev = task_options("all", 1, 600, 1, 5, 1);
    tr.solutions = ev.solutions = 0;
    char *ttext = gen_tasks(&tr), *etext = gen_tasks(&ev);
    int nt, ne;
    Json **t = parse_lines(ttext, &nt), **e = parse_lines(etext, &ne);
    const char **ids = malloc(sizeof(char *) * (nt + ne));
    for (int i = 0; i < nt; i++) ids[i] = str_field(t[i], "id"), assert_int_equal(task_is_eval(t[i]), 0);
    for (int i = 0; i < ne; i++) ids[nt + i] = str_field(e[i], "id"), assert_int_equal(task_is_eval(e[i]), 1);
    qsort(ids, nt, sizeof(char *), cmp_str);
    for (int i = 0; i < ne; i++) {
        const char *id = ids[nt + i];
        if (bsearch(&id, ids, nt, sizeof(char *), cmp_str) != NULL) fail_msg("eval id %s is in train", id);
    }
    free(ids);
    free_lines(t, nt), free_lines(e, ne);
    free(ttext), free(etext);

    // the split is a property of the problem: language, level, number order do not move it
    const char *same[][2] = {
        {"{\"task\":\"countdown\",\"lang\":\"en\",\"level\":2,\"numbers\":[19,36,55,7],\"target\":65}",
         "{\"task\":\"countdown\",\"lang\":\"zh\",\"level\":5,\"numbers\":[7,55,36,19],\"target\":65}"},
        {"{\"task\":\"arithmetic\",\"lang\":\"en\",\"a\":347,\"op\":\"+\",\"b\":581}",
         "{\"task\":\"arithmetic\",\"lang\":\"zh\",\"a\":581,\"op\":\"+\",\"b\":347}"},
        {"{\"task\":\"sort42\",\"lang\":\"en\",\"numbers\":[3,1,2]}",
         "{\"task\":\"sort42\",\"lang\":\"zh\",\"numbers\":[1,2,3]}"},
    };
    for (int i = 0; i < 3; i++) {
        Json *a = ex(same[i][0]), *b = ex(same[i][1]);
        assert_int_equal(task_is_eval(a), task_is_eval(b));
        assert_true(task_is_eval(a) >= 0);
        json_free(a), json_free(b);
    }
    // and about one problem in ten is held out
    int eval = 0;
    char buf[128];
    for (int a = 1; a <= 100; a++) {
        snprintf(buf, sizeof buf, "{\"task\":\"arithmetic\",\"a\":%d,\"op\":\"*\",\"b\":1000}", a);
        Json *j = ex(buf);
        eval += task_is_eval(j);
        json_free(j);
    }
    assert_true(eval >= 3 && eval <= 20);
}

// No held-out problem reaches the corpus. Level 1 has the smallest pools, so there the control
// shows the test can see a leak: many training prompts do appear in the corpus.
static void test_corpus_skips_eval(void **state) {
    (void)state;
    for (int all = 0; all <= 1; all++) {
        int hi = all ? 5 : 1;
        char *c = gen_corpus(1.0, 1, hi, 13);
        TaskSetOptions ev = task_options("all", 1, 600, 1, hi, 2), tr = task_options("all", 0, 2000, 1, hi, 2);
        ev.solutions = tr.solutions = 0;
        char *etext = gen_tasks(&ev), *ttext = gen_tasks(&tr);
        int ne, nt, train_hits = 0;
        Json **e = parse_lines(etext, &ne), **t = parse_lines(ttext, &nt);
        for (int i = 0; i < ne; i++) {
            const char *p = str_field(e[i], "prompt");
            if (strstr(c, p) != NULL) fail_msg("held-out prompt in the corpus: %s", p);
        }
        for (int i = 0; i < nt; i++) train_hits += strstr(c, str_field(t[i], "prompt")) != NULL;
        if (!all) assert_true(train_hits > 20);
        free_lines(e, ne), free_lines(t, nt);
        free(etext), free(ttext), free(c);
    }
}

// ----------------------------------------------------------------------------------------------
// Reading task files
// ----------------------------------------------------------------------------------------------

typedef struct {
    char dir[256];
} TestDir;

static int setup_dir(void **state) {
    TestDir *td = calloc(1, sizeof *td);
    if (td == NULL) return -1;
    snprintf(td->dir, sizeof td->dir, "/tmp/test_grpo_XXXXXX");
    if (mkdtemp(td->dir) == NULL) {
        free(td);
        return -1;
    }
    *state = td;
    return 0;
}

static int teardown_dir(void **state) {
    TestDir *td = *state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", td->dir);
    int rc = system(cmd);
    free(td);
    return rc;
}

static void path_in(void **state, const char *name, char out[512]) {
    snprintf(out, 512, "%s/%s", ((TestDir *)*state)->dir, name);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_reader(void **state) {
    char path[512], err[R1_ERR_LEN];
    int n = -1;
    path_in(state, "ok.jsonl", path);
    TaskSetOptions o = task_options("all", 0, 50, 1, 5, 4);
    char *text = gen_tasks(&o);
    write_text(path, text);
    Json **v = tasks_read(path, &n, err);
    assert_non_null(v);
    assert_int_equal(n, 50);
    check_solvable(v, n);
    tasks_free(v, n);
    free(text);

    static const char *const cases[][2] = { // file, the error it must give
        {"{\"task\":\"sort42\",\"prompt\":\"p\",\"answer\":\"[42]\",\"numbers\":[]}\n\n{\"task\": oops}\n", ":3: "},
        {"{\"task\":\"sort42\",\"prompt\":\"p\",\"answer\":\"a\"}\n{\"prompt\":\"p\",\"answer\":\"a\"}\n", ":2: no \"task\""},
        {"{\"task\":\"chess\",\"prompt\":\"p\",\"answer\":\"a\"}\n", ":1: unknown \"task\""},
        {"{\"task\":\"sort42\",\"answer\":\"a\"}\n", ":1: no \"prompt\""},
        {"{\"task\":\"sort42\",\"prompt\":\"p\",\"answer\":3}\n", ":1: no \"answer\""},
        {"[1,2]\n", ":1: not a JSON object"},
        {"{\"task\":\"sort42\",\"prompt\":\"p\",\"answer\":\"a\"} trailing\n", ":1: "},
        {"\n\n\n{\"task\":\"sort42\",\"prompt\":\"p\",\"answer\":\"a\"\n", ":4: "},
    };
    path_in(state, "bad.jsonl", path);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i][0]);
        err[0] = '\0';
        assert_null(tasks_read(path, &n, err));
        if (strstr(err, path) == NULL || strstr(err, cases[i][1]) == NULL)
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, cases[i][1]);
    }
    path_in(state, "missing.jsonl", path);
    assert_null(tasks_read(path, &n, err));
    assert_non_null(strstr(err, "missing.jsonl"));
    path_in(state, "empty.jsonl", path);
    write_text(path, "\n  \n");
    v = tasks_read(path, &n, err);
    assert_non_null(v);
    assert_int_equal(n, 0);
    tasks_free(v, n);
}

// ----------------------------------------------------------------------------------------------
// The command line (run in a child: errors exit)
// ----------------------------------------------------------------------------------------------

// Runs cmd_data(argv) in a child; returns its exit status and its stderr in err_out.
static int run_data(char **argv, char *err_out, size_t cap) {
    int argc = 0;
    while (argv[argc]) argc++;
    char errfile[] = "/tmp/test_grpo_stderr_XXXXXX";
    int fd = mkstemp(errfile);
    assert_true(fd >= 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 2);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        _exit(cmd_data(argc, argv));
    }
    int status;
    waitpid(pid, &status, 0);
    ssize_t got = pread(fd, err_out, cap - 1, 0);
    err_out[got > 0 ? got : 0] = '\0';
    close(fd);
    unlink(errfile);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void expect_failure(char **argv, const char *what) {
    char err[2048];
    int rc = run_data(argv, err, sizeof err);
    if (rc != 1) fail_msg("'%s %s': exit %d, want 1", argv[2] ? argv[2] : "", what, rc);
    if (strncmp(err, "r1: data: ", 10) != 0 || strchr(err, '\n') != err + strlen(err) - 1)
        fail_msg("'%s': want one line 'r1: data: ...', got '%s'", what, err);
    if (strstr(err, what) == NULL) fail_msg("error '%s' does not mention '%s'", err, what);
}

static void test_cli_errors(void **state) {
    char out[512], bad[512];
    path_in(state, "x.jsonl", out);
    path_in(state, "bad.jsonl", bad);
    write_text(bad, "{\"task\":\"sort42\",\"prompt\":\"p\",\"answer\":\"a\"}\nnot json\n");
#define FAILS(what, ...) do { char *argv[] = {"r1", "data", __VA_ARGS__, NULL}; expect_failure(argv, what); } while (0)
    FAILS("unknown task 'chess'", "tasks", "--task", "chess", "--out", out);
    FAILS("--n", "tasks", "--n", "0", "--out", out);
    FAILS("--n", "tasks", "--n", "-3", "--out", out);
    FAILS("--n", "tasks", "--n", "ten", "--out", out);
    FAILS("--levels", "tasks", "--levels", "0-2", "--out", out);
    FAILS("--levels", "tasks", "--levels", "3-1", "--out", out);
    FAILS("--levels", "tasks", "--levels", "6", "--out", out);
    FAILS("--levels", "tasks", "--levels", "1-", "--out", out);
    FAILS("unknown language 'fr'", "tasks", "--lang", "fr", "--out", out);
    FAILS("--split", "tasks", "--split", "test", "--out", out);
    FAILS("--seed", "tasks", "--seed", "-1", "--out", out);
    FAILS("--out", "tasks");
    FAILS("--n needs a value", "tasks", "--out", out, "--n");
    FAILS("unknown argument '--bogus'", "tasks", "--bogus", "--out", out);
    FAILS("cannot write /nonexistent_dir_r1/x.jsonl", "tasks", "--out", "/nonexistent_dir_r1/x.jsonl");
    FAILS("cannot write", "corpus", "--out", ((TestDir *)*state)->dir, "--mb", "0.01");
    FAILS("--mb", "corpus", "--out", out, "--mb", "0");
    FAILS("more than 1", "corpus", "--out", out, "--think", "0.7", "--text", "0.5");
    FAILS("--levels", "corpus", "--out", out, "--levels", "2-9");
    FAILS("bad.jsonl:2: ", "check", "--in", bad);
    FAILS("check needs --in", "check");
    FAILS("unknown data command 'frobnicate'", "frobnicate");
#undef FAILS
    char *none[] = {"r1", "data", NULL};
    expect_failure(none, "what data?");
    // nothing was left behind by the failures
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    assert_int_not_equal(stat(tmp, &st), 0);
}

static char *slurp(const char *path) {
    char err[R1_ERR_LEN];
    size_t len;
    char *s = read_file(path, &len, err);
    if (s == NULL) fail_msg("%s", err);
    return s;
}

static void test_cli_writes(void **state) {
    char out[512], corpus[512], tmp[600], err[2048];
    path_in(state, "t.jsonl", out);
    char *argv[] = {"r1", "data", "tasks", "--task", "countdown", "--split", "eval", "--n", "40", "--levels",
                    "2-4", "--lang", "zh", "--seed", "9", "--solutions", "--out", out, NULL};
    assert_int_equal(run_data(argv, err, sizeof err), 0);
    TaskSetOptions o = {.task = "countdown", .eval = 1, .n = 40, .level_lo = 2, .level_hi = 4, .lang = "zh",
                        .seed = 9, .solutions = 1};
    char *want = gen_tasks(&o), *got = slurp(out);
    assert_string_equal(got, want);
    free(want), free(got);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    struct stat st;
    assert_int_not_equal(stat(tmp, &st), 0);
    char *check[] = {"r1", "data", "check", "--in", out, NULL};
    assert_int_equal(run_data(check, err, sizeof err), 0);

    // a failed write leaves the old file as it was
    char *fail[] = {"r1", "data", "tasks", "--n", "0", "--out", out, NULL};
    assert_int_equal(run_data(fail, err, sizeof err), 1);
    got = slurp(out);
    assert_true(strlen(got) > 0 && strstr(got, "\"task\":\"countdown\"") != NULL);
    free(got);

    path_in(state, "c.txt", corpus);
    char *cargv[] = {"r1", "data", "corpus", "--out", corpus, "--mb", "0.05", "--seed", "3", NULL};
    assert_int_equal(run_data(cargv, err, sizeof err), 0);
    got = slurp(corpus);
    char *direct = gen_corpus(0.05, 1, 5, 3);
    assert_string_equal(got, direct);
    free(got), free(direct);
    char *help[] = {"r1", "data", "help", NULL};
    assert_int_equal(run_data(help, err, sizeof err), 0);
    char *show[] = {"r1", "data", "show", "--task", "sort42", "--n", "2", NULL};
    assert_int_equal(run_data(show, err, sizeof err), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arithmetic_verifier),
        cmocka_unit_test(test_countdown_verifier),
        cmocka_unit_test(test_sort42_verifier),
        cmocka_unit_test(test_verifiers_fuzz),
        cmocka_unit_test(test_answer_extract),
        cmocka_unit_test(test_r1_zero_prompt),
        cmocka_unit_test(test_generation_is_deterministic),
        cmocka_unit_test(test_every_example_is_solvable),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_countdown_solutions_search),
        cmocka_unit_test(test_both_languages),
        cmocka_unit_test(test_text_is_true),
        cmocka_unit_test(test_train_eval_disjoint),
        cmocka_unit_test(test_corpus_skips_eval),
        cmocka_unit_test_setup_teardown(test_reader, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cli_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cli_writes, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
