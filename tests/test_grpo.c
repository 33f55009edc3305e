// tests/test_grpo.c: the toy reasoning world (tasks.c): verifiers on crafted right, wrong and
// malformed answers; generation is deterministic; train and eval never meet (not in the
// corpus either); every generated example is solvable by its gold answer and by its worked
// solution; both languages are there; the CLI fails with one line and status 1; files are
// written atomically. The reasoning styles (direct guesses right at the documented rate per
// level, wrong guesses really wrong, checked solutions that check as the verifier does and end
// right), language mixing, and the corpus's shares of both. Rewards (format, accuracy, language, total, reflection) on crafted
// completions; group advantages; token log-probabilities; the GRPO / Dr. GRPO / DAPO loss head
// against hand values, the formula in double and finite differences; and a tiny seeded model
// that raises its reward on a toy task with GRPO. Rejection sampling's filters (reject_reason)
// one by one and in their order. Evaluation: the task, level and per-problem cells add up to the
// whole; the reflection and language-mixing shares on crafted completions; the think budget on
// a tiny random model (each completion is the unbudgeted one cut at B tokens, closed by force
// and answered; a budget >= max_new changes nothing; the same on 1 and 2 threads).
// Rewards, the loss and the step are grpo.c's. Built by `make test` as build/test_grpo: it
// includes kernels.c and r1.c (their static functions) and links the other sources.
#include "kernels.c"
#include "r1.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

// The corpus as one string; gen_corpus: with the reasoning styles' default shares (r1.h).
static char *corpus_text(const CorpusOptions *o) {
    char *buf = NULL, err[R1_ERR_LEN] = "";
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    long docs = corpus_write(f, o, err);
    if (docs <= 0) fail_msg("corpus_write: %s", err);
    assert_int_equal(fclose(f), 0);
    assert_true(len >= (size_t)(o->mb * 1048576));
    return buf;
}

static char *gen_corpus(double mb, int lo, int hi, uint64_t seed) {
    CorpusOptions o = {.mb = mb, .think_share = 0.1, .tagged_share = 0.5, .text_share = 0.4, .level_lo = lo, .level_hi = hi,
                       .lang = "both", .seed = seed, .direct_share = CORPUS_DIRECT_SHARE,
                       .checked_share = CORPUS_CHECKED_SHARE, .mix_share = CORPUS_MIX_SHARE};
    return corpus_text(&o);
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
    int docs = 0, docs_zh = 0, docs_en = 0, think = 0, tagged = 0, qa = 0;
    for (char *s = c; *s;) {
        char *end = strstr(s, "\n\n");
        assert_non_null(end);
        *end = '\0';
        docs++;
        if (has_non_ascii(s)) docs_zh++;
        else docs_en++;
        if (strstr(s, "A conversation between User and Assistant.") == s ||
            strstr(s, "用户与助手之间的对话。") == s) {
            think++;  // the template; its tags followed (tagged_share = 0.5) or not
            size_t len = strlen(s), tail = strlen("</answer>");  // (the template names the tags too)
            if (len > tail && strcmp(s + len - tail, "</answer>") == 0) {
                tagged++;
                assert_non_null(strstr(s, ": <think>\n") ? s : strstr(s, "： <think>\n"));
            } else {
                assert_non_null(strstr(s, "So the answer is ") ? s : strstr(s, "所以答案是 "));
                assert_null(strstr(s, "\n<answer>"));
            }
        }
        if (strncmp(s, "Question: ", 10) == 0 || strncmp(s, "问题：", strlen("问题：")) == 0) qa++;
        s = end + 2;
    }
    assert_true(docs_zh > docs / 3 && docs_en > docs / 3);
    assert_true(think > docs / 20 && think < docs / 5);       // about 10%
    assert_true(tagged > think / 3 && tagged < think * 2 / 3); // about half of those
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
// Reasoning styles and language mixing (issue 18): what RL selects among
// ----------------------------------------------------------------------------------------------

static const char *const GUESS_LINE[2][2] = {{"The answer is probably ", "."}, {"答案大概是 ", "。"}};
static const char *const CHECK_OPEN[2] = {"Wait, let me check: ", "等等，验证一下："};
static const char *const CHECK_RIGHT[2] = {" is right.", "是对的。"};
static const char *const WORK_OUT[2] = {"Let me work it out step by step:", "我们一步一步来算："};

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

// The reasoning of a tagged solution: between "<think>\n" and "\n</think>" (malloc'd).
static char *think_of(const char *sol) {
    const char *a = strstr(sol, "<think>\n"), *b = strstr(sol, "\n</think>");
    if (a == NULL || b == NULL || b < a + 8) fail_msg("not a tagged solution: %s", sol);
    return strndup(a + 8, (size_t)(b - a - 8));
}

// Line i (from 0) of text, malloc'd, or NULL past the end.
static char *line_of(const char *text, int i) {
    for (; i > 0 && text != NULL; i--) text = strchr(text, '\n') ? strchr(text, '\n') + 1 : NULL;
    if (text == NULL) return NULL;
    const char *nl = strchr(text, '\n');
    return strndup(text, nl ? (size_t)(nl - text) : strlen(text));
}

static int count_lines(const char *text) {
    int n = 1;
    for (; *text; text++) n += *text == '\n';
    return n;
}

// The X of "The answer is probably X." (or 答案大概是 X。), malloc'd; NULL if line is no guess.
static char *guess_of(const char *line, int zh) {
    const char *open = GUESS_LINE[zh][0], *close = GUESS_LINE[zh][1];
    if (strncmp(line, open, strlen(open)) != 0 || !ends_with(line, close)) return NULL;
    return strndup(line + strlen(open), strlen(line) - strlen(open) - strlen(close));
}

// n examples of one task, level and language with solutions in a style (seed 5: the same
// problems in every style).
static Json **styled_set(const char *task, int level, const char *lang, int reasoning, int n, char **text) {
    TaskSetOptions o = task_options(task, 0, n, level, level, 5);
    o.lang = lang, o.reasoning = reasoning;
    *text = gen_tasks(&o);
    int got;
    Json **v = parse_lines(*text, &got);
    assert_int_equal(got, n);
    return v;
}

// The reasoning is in the example's language only: Chinese has no Latin letters, English no
// non-ASCII byte, and reward_language gives 1.
static void expect_one_language(const char *sol, int zh) {
    char *think = think_of(sol);
    if (zh ? has_ascii_letter(think) : has_non_ascii(think)) fail_msg("other language in: %s", sol);
    if (reward_language(sol, zh ? "zh" : "en") != 1.0) fail_msg("language share < 1: %s", sol);
    free(think);
}

// A checked solution of v whose direct twin guessed `guess`: the guess line, the check (saying
// right exactly when the verifier does), then for a wrong guess the worked solution.
static void expect_checked(const Json *v, const char *sol, const char *guess, int zh) {
    char *think = think_of(sol), *first = line_of(think, 0), *second = line_of(think, 1);
    char *g = guess_of(first, zh), *ans = answer_extract(sol);
    if (g == NULL || strcmp(g, guess) != 0) fail_msg("checked's guess '%s' is not direct's '%s'", first, guess);
    assert_int_equal(strncmp(second, CHECK_OPEN[zh], strlen(CHECK_OPEN[zh])), 0);
    assert_true(has_reflection(sol));
    if (task_check(NULL, v, ans) != 1) fail_msg("checked answer wrong: %s", sol);
    int right = task_check(NULL, v, guess);
    if (ends_with(second, CHECK_RIGHT[zh]) != right) fail_msg("check says %d, verifier %d: %s", !right, right, sol);
    if (right) {
        assert_int_equal(count_lines(think), 2);
        assert_string_equal(ans, guess);
    } else {  // then the worked solution, word for word
        char *third = line_of(think, 2), *stepwise = task_solution((Json *)v, 1), *worked = think_of(stepwise);
        assert_string_equal(third, WORK_OUT[zh]);
        assert_string_equal(strstr(think, WORK_OUT[zh]) + strlen(WORK_OUT[zh]) + 1, worked);
        free(third), free(stepwise), free(worked);
    }
    free(think), free(first), free(second), free(g), free(ans);
}

// Every style's text for every task, level and language: direct is one guess line whose guess
// is the answer; checked guesses the same, checks it as the verifier would and ends right;
// stepwise is task_solution's; only checked uses a reflection word; one language throughout.
static void test_reasoning_styles(void **state) {
    (void)state;
    const char *tasks[3] = {"arithmetic", "countdown", "sort42"}, *langs[2] = {"en", "zh"};
    int wrong_guesses = 0, right_guesses = 0;
    for (int t = 0; t < 3; t++) for (int level = 1; level <= 5; level++) for (int zh = 0; zh <= 1; zh++) {
        char *text[N_REASONING];
        Json **v[N_REASONING];
        for (int s = 0; s < N_REASONING; s++) v[s] = styled_set(tasks[t], level, langs[zh], s, 30, &text[s]);
        for (int i = 0; i < 30; i++) {
            const char *sol[N_REASONING];
            for (int s = 0; s < N_REASONING; s++) {
                assert_string_equal(str_field(v[s][i], "id"), str_field(v[0][i], "id"));  // the same problems
                assert_string_equal(str_field(v[s][i], "style"), reasoning_name(s));
                sol[s] = str_field(v[s][i], "solution");
                assert_int_equal(reward_format(sol[s]), 1);
                expect_one_language(sol[s], zh);
                assert_int_equal(has_reflection(sol[s]), s == REASONING_CHECKED);
            }
            char *stepwise = task_solution(v[0][i], 1);
            assert_string_equal(sol[REASONING_STEPWISE], stepwise);
            char *think = think_of(sol[REASONING_DIRECT]), *guess = guess_of(think, zh), *ans = answer_extract(sol[REASONING_DIRECT]);
            if (guess == NULL || strcmp(guess, ans) != 0) fail_msg("direct is not one guess: %s", sol[REASONING_DIRECT]);
            task_check(NULL, v[0][i], guess) ? right_guesses++ : wrong_guesses++;
            expect_checked(v[0][i], sol[REASONING_CHECKED], guess, zh);
            free(stepwise), free(think), free(guess), free(ans);
        }
        for (int s = 0; s < N_REASONING; s++) free_lines(v[s], 30), free(text[s]);
    }
    assert_true(wrong_guesses > 200 && right_guesses > 200);
    // `./r1 data show` shows each problem in every style, and once switching language
    TaskSetOptions so = task_options("all", 0, 3, 5, 5, 2);
    so.reasoning = -1;
    char *buf = NULL, err[R1_ERR_LEN];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(tasks_show(f, &so, err), 0);
    assert_int_equal(fclose(f), 0);
    static const char *const heads[] = {"-- direct\n<think>", "-- checked\n<think>", "-- stepwise\n<think>",
                                        "-- checked, switching language\n<think>"};
    for (int h = 0; h < 4; h++) {
        int k = 0;
        for (const char *at = strstr(buf, heads[h]); at; at = strstr(at + 1, heads[h])) k++;
        if (k != 3) fail_msg("show: %d times '%s', want 3", k, heads[h]);
    }
    free(buf);
}

// DIRECT's guess is right at the documented rate (TASK_GUESS_RIGHT, r1.h) at every level, over
// all tasks and per task: a statistical test with a wide tolerance (about 4 standard deviations).
static void test_direct_guess_rate(void **state) {
    (void)state;
    for (int level = 1; level <= 5; level++) {
        TaskSetOptions o = task_options("all", 0, 1500, level, level, 40 + level);
        o.reasoning = REASONING_DIRECT;
        char *text = gen_tasks(&o);
        int n, right = 0, per_task[3] = {0}, count[3] = {0};
        Json **v = parse_lines(text, &n);
        for (int i = 0; i < n; i++) {
            char *ans = answer_extract(str_field(v[i], "solution"));
            int t = i % 3, ok = task_check(NULL, v[i], ans);  // the round robin: task i % 3
            right += ok, per_task[t] += ok, count[t]++;
            free(ans);
        }
        double p = TASK_GUESS_RIGHT[level], rate = (double)right / n;
        if (fabs(rate - p) > 0.05) fail_msg("level %d: direct right %.3f, want %.2f", level, rate, p);
        for (int t = 0; t < 3; t++)
            if (fabs((double)per_task[t] / count[t] - p) > 0.09)
                fail_msg("level %d task %d: direct right %.3f, want %.2f", level, t, (double)per_task[t] / count[t], p);
        free_lines(v, n);
        free(text);
    }
    assert_true(TASK_GUESS_RIGHT[5] < TASK_GUESS_RIGHT[1]);  // guesses get worse with the level
}

// A wrong guess is really wrong, also where slips are few: equal numbers (no swap changes the
// list), 42s, a countdown whose every short expression hits the target, zeros, an example with
// no gold answer (every guess a slip). Over many seeds the rate is the coin's, the check agrees
// with the verifier, and the same seed gives the same text.
static void test_wrong_guesses(void **state) {
    (void)state;
    static const struct { const char *json; double p_right; } cases[] = {
        {"{\"task\":\"sort42\",\"level\":5,\"answer\":\"[42, 5, 5, 5]\",\"numbers\":[5,5,5]}", 0.3},
        {"{\"task\":\"sort42\",\"level\":4,\"answer\":\"[42, 42, 42]\",\"numbers\":[42,42]}", 0.45},
        {"{\"task\":\"sort42\",\"level\":5,\"lang\":\"zh\",\"answer\":\"[42]\",\"numbers\":[]}", 0.3},
        {"{\"task\":\"countdown\",\"level\":1,\"answer\":\"5 + 5\",\"numbers\":[5,5,5],\"target\":10}", 0.9},
        {"{\"task\":\"countdown\",\"level\":5,\"numbers\":[7,10,24,19],\"target\":266}", 0.0},
        {"{\"task\":\"arithmetic\",\"level\":5,\"a\":0,\"op\":\"*\",\"b\":0}", 0.3},
        {"{\"task\":\"arithmetic\",\"level\":5,\"lang\":\"zh\",\"a\":0,\"op\":\"*\",\"b\":37}", 0.3},
        {"{\"task\":\"arithmetic\",\"level\":3,\"a\":99999,\"op\":\"+\",\"b\":1}", 0.6},
        {"{\"task\":\"arithmetic\",\"level\":2,\"a\":0,\"op\":\"+\",\"b\":0}", 0.75},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Json *e = ex(cases[c].json);
        int zh = strstr(cases[c].json, "\"zh\"") != NULL, right = 0, n = 400;
        for (int seed = 0; seed < n; seed++) {
            char *direct = task_solution_styled(e, 1, REASONING_DIRECT, 0, (uint64_t)seed);
            char *checked = task_solution_styled(e, 1, REASONING_CHECKED, 0, (uint64_t)seed);
            char *again = task_solution_styled(e, 1, REASONING_CHECKED, 0, (uint64_t)seed);
            assert_non_null(direct);
            assert_string_equal(checked, again);
            char *guess = answer_extract(direct);
            right += task_check(NULL, e, guess);
            expect_checked(e, checked, guess, zh);
            free(direct), free(checked), free(again), free(guess);
        }
        if (fabs((double)right / n - cases[c].p_right) > 0.1)
            fail_msg("case %zu: %d of %d guesses right, want %.2f", c, right, n, cases[c].p_right);
        json_free(e);
    }
    Json *e = ex(cases[0].json);
    assert_null(task_solution_styled(e, 1, N_REASONING, 0, 1));  // no such style
    json_free(e);
}

// Language mixing: the reasoning starts in the prompt's language and switches to the other
// after a whole line, so both languages' words are there (reward_language strictly between 0
// and 1); the answer is still right and the untagged ending keeps the prompt's language. A
// direct guess, one line, has nowhere to switch.
static void test_language_mixing(void **state) {
    (void)state;
    TaskSetOptions o = task_options("all", 0, 90, 1, 5, 17);
    char *text = gen_tasks(&o);
    int n;
    Json **v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) {
        int zh = strcmp(str_field(v[i], "lang"), "zh") == 0;
        for (int s = 0; s < N_REASONING; s++) {
            char *sol = task_solution_styled(v[i], 1, s, 1, (uint64_t)i), *plain = task_solution_styled(v[i], 0, s, 1, (uint64_t)i);
            char *think = think_of(sol), *first = line_of(think, 0), *ans = answer_extract(sol);
            double share = reward_language(sol, zh ? "zh" : "en");
            if (s == REASONING_DIRECT) {
                if (share != 1.0) fail_msg("a mixed direct guess: %s", sol);
            } else {
                if (!(share > 0 && share < 1) || !has_ascii_letter(think) || !has_non_ascii(think))
                    fail_msg("not mixed (share %.3f): %s", share, sol);
                if (zh ? has_ascii_letter(first) : has_non_ascii(first)) fail_msg("starts in the other language: %s", sol);
            }
            if (task_check(NULL, v[i], ans) != 1 && s != REASONING_DIRECT) fail_msg("mixed answer wrong: %s", sol);
            char tail[300];
            snprintf(tail, sizeof tail, zh ? "\n所以答案是 %s。" : "\nSo the answer is %s.", ans);
            if (!ends_with(plain, tail)) fail_msg("the ending changed language: %s", plain);
            free(sol), free(plain), free(think), free(first), free(ans);
        }
    }
    free_lines(v, n);
    free(text);
}

// The reasoning of a template document: what follows "Assistant:" (or 助手：).
static const char *completion_of(const char *doc, int *zh) {
    *zh = strncmp(doc, "用户与助手之间的对话。", strlen("用户与助手之间的对话。")) == 0;
    const char *a = strstr(doc, *zh ? "助手：" : "Assistant:");
    assert_non_null(a);
    return skip_space(a + strlen(*zh ? "助手：" : "Assistant:"));
}

// The corpus's template documents reason in the three styles at the option's shares, the long
// ones switch language at the mix share, and nothing else does; shares of 0 give a corpus with
// neither guesses nor mixing.
static void test_corpus_styles(void **state) {
    (void)state;
    for (int on = 0; on <= 1; on++) {
        CorpusOptions o = {.mb = 1.0, .think_share = 0.6, .tagged_share = 0.5, .text_share = 0.1, .level_lo = 1,
                           .level_hi = 5, .lang = "both", .seed = 31, .direct_share = on ? 0.45 : 0,
                           .checked_share = on ? 0.2 : 0, .mix_share = on ? 0.25 : 0};
        char *c = corpus_text(&o);
        int templ = 0, direct = 0, checked = 0, lng = 0, mixed = 0, others = 0;
        for (char *s = c; *s;) {
            char *end = strstr(s, "\n\n");
            assert_non_null(end);
            *end = '\0';
            int is_templ = strstr(s, "A conversation between User and Assistant.") == s ||
                           strstr(s, "用户与助手之间的对话。") == s;
            int is_checked = strstr(s, CHECK_OPEN[0]) || strstr(s, CHECK_OPEN[1]);
            int is_guess = strstr(s, GUESS_LINE[0][0]) || strstr(s, GUESS_LINE[1][0]);
            if (is_templ) {
                int zh;
                const char *comp = completion_of(s, &zh);
                int is_mixed = reward_language(comp, zh ? "zh" : "en") < 1;
                templ++;
                direct += is_guess && !is_checked;
                checked += is_checked;
                if (!(is_guess && !is_checked)) lng++, mixed += is_mixed;
                else assert_false(is_mixed);
            } else {
                others += is_guess || is_checked;
            }
            s = end + 2;
        }
        assert_int_equal(others, 0);  // Question/Answer documents are stepwise
        printf("  corpus styles (shares %s): %d template documents, direct %.3f, checked %.3f, mixed %.3f of %d long\n",
               on ? "on" : "0", templ, (double)direct / templ, (double)checked / templ, lng ? (double)mixed / lng : 0, lng);
        assert_true(templ > 600);
        double want_d = on ? 0.45 : 0, want_c = on ? 0.2 : 0, want_m = on ? 0.25 : 0;
        if (fabs((double)direct / templ - want_d) > 0.05 || fabs((double)checked / templ - want_c) > 0.05 ||
            fabs((double)mixed / lng - want_m) > 0.06)
            fail_msg("corpus (shares %s): direct %.3f, checked %.3f, mixed %.3f of the long ones", on ? "on" : "0",
                     (double)direct / templ, (double)checked / templ, (double)mixed / lng);
        free(c);
    }
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


// `data check` (example_verify) refuses examples whose fields were edited: a level or language
// that no generator writes, a prompt that is not its task data's, a stepwise solution whose
// reasoning was changed while its answer still verifies.
#define VERIFY_BASE "{\"task\":\"arithmetic\",\"answer\":\"46\",\"a\":12,\"op\":\"+\",\"b\":34"
static void expect_verify(const char *text, const char *want) {
    char err[R1_ERR_LEN];
    Json *j = json_parse(text, strlen(text), err);
    if (!j) fail_msg("%s: %s", text, err);
    const char *why = example_verify(j);
    if (want == NULL && why != NULL) fail_msg("%s: refused: %s", text, why);
    if (want != NULL && (why == NULL || strstr(why, want) == NULL))
        fail_msg("%s: want '%s', got '%s'", text, want, why ? why : "accepted");
    json_free(j);
}

static void test_example_verify_edits(void **state) {
    (void)state;
    const char *prompt = ",\"prompt\":\"What is 12 + 34?\"";
    char text[4096];
    snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"en\",\"level\":1%s}", prompt);
    expect_verify(text, NULL);
    snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"en\",\"level\":7%s}", prompt);
    expect_verify(text, "\"level\" is not an integer in 1..5");
    snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"en\",\"level\":\"2\"%s}", prompt);
    expect_verify(text, "\"level\" is not an integer in 1..5");
    snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"fr\",\"level\":1%s}", prompt);
    expect_verify(text, "\"lang\" is not \"en\" or \"zh\"");
    snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"en\",\"level\":1,\"prompt\":\"What is 12 + 35?\"}");
    expect_verify(text, "its \"prompt\" is not the one its task data give");
    // the worked solution verbatim passes; with one digit of its reasoning changed it does not
    char err[R1_ERR_LEN];
    snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"en\",\"level\":1%s}", prompt);
    Json *g = json_parse(text, strlen(text), err);
    assert_non_null(g);
    char *sol = task_solution(g, 1), *esc = NULL;
    assert_non_null(sol);
    json_free(g);
    for (int edit = 0; edit < 2; edit++) {
        if (edit) {  // the first digit 0-8 of the reasoning, one up (the answer tag untouched)
            char *d = sol;
            while (*d && !(*d >= '0' && *d <= '8')) d++;
            assert_true(*d && d < strstr(sol, "</think>"));
            (*d)++;
        }
        size_t n = 0;
        FILE *m = open_memstream(&esc, &n);
        json_write_string(m, sol);
        fclose(m);
        snprintf(text, sizeof text, VERIFY_BASE ",\"lang\":\"en\",\"level\":1%s,\"solution\":%s,"
                 "\"style\":\"stepwise\"}", prompt, esc);
        expect_verify(text, edit ? "is not the worked solution of its problem" : NULL);
        free(esc);
    }
    free(sol);
}
#undef VERIFY_BASE

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
    FAILS("--direct 0.7 + --checked 0.5 is more than 1", "corpus", "--out", out, "--direct", "0.7", "--checked", "0.5");
    FAILS("--mix", "corpus", "--out", out, "--mix", "1.5");
    FAILS("unknown style 'long' (stepwise, direct, checked)", "tasks", "--out", out, "--solutions", "--style", "long");
    FAILS("--style needs --solutions", "tasks", "--out", out, "--style", "direct");
    FAILS("unknown style 'all'", "tasks", "--out", out, "--solutions", "--style", "all");
    FAILS("or all", "show", "--style", "none");
    FAILS("bad.jsonl:2: ", "check", "--in", bad);
    FAILS("check needs --in", "check");
    char empty[512];
    path_in(state, "empty.jsonl", empty);
    write_text(empty, "\n\n");
    FAILS("no examples (an empty file is not a task set)", "check", "--in", empty);
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
    char *cargv[] = {"r1", "data", "corpus", "--out", corpus, "--mb", "0.05", "--seed", "3",
                     "--think", "0.1", "--tagged", "0.5", "--text", "0.4", NULL};
    assert_int_equal(run_data(cargv, err, sizeof err), 0);
    got = slurp(corpus);
    char *direct = gen_corpus(0.05, 1, 5, 3);
    assert_string_equal(got, direct);
    free(got), free(direct);
    char *help[] = {"r1", "data", "help", NULL};
    assert_int_equal(run_data(help, err, sizeof err), 0);
    char *show[] = {"r1", "data", "show", "--task", "sort42", "--n", "2", NULL};
    assert_int_equal(run_data(show, err, sizeof err), 0);
    char *show1[] = {"r1", "data", "show", "--n", "2", "--style", "checked", NULL};
    assert_int_equal(run_data(show1, err, sizeof err), 0);
}

// `./r1 data tasks --solutions --style direct` writes the generator's file, and `check` treats the
// style: a direct guess need only give an answer, every other solution must be right.
static void test_cli_check_styles(void **state) {
    char out[512], err[2048];
    path_in(state, "t.jsonl", out);
    char *check[] = {"r1", "data", "check", "--in", out, NULL};
    // direct guesses: the file is the generator's, and check passes it (a guess may be wrong)...
    char *dargv[] = {"r1", "data", "tasks", "--n", "60", "--levels", "5", "--seed", "4", "--solutions", "--style",
                     "direct", "--out", out, NULL};
    assert_int_equal(run_data(dargv, err, sizeof err), 0);
    TaskSetOptions od = task_options("all", 0, 60, 5, 5, 4);
    od.reasoning = REASONING_DIRECT;
    char *want = gen_tasks(&od), *got = slurp(out);
    assert_string_equal(got, want);
    assert_int_equal(run_data(check, err, sizeof err), 0);
    // ... but not without its "style" (then it is taken for stepwise, and wrong guesses fail)
    const char *tag = ",\"style\":\"direct\"";
    for (char *s = strstr(got, tag); s != NULL; s = strstr(s, tag)) memmove(s, s + strlen(tag), strlen(s + strlen(tag)) + 1);
    write_text(out, got);
    assert_int_equal(run_data(check, err, sizeof err), 1);
    // (a wrong guess fails the verifier; a right one is still not the worked solution)
    assert_true(strstr(err, "its \"solution\" fails the verifier") != NULL ||
                strstr(err, "is not the worked solution of its problem") != NULL);
    free(want), free(got);
    // a direct solution must still give an answer, a checked one a right answer; a style is known
    static const char *const lines[][2] = {
        {"\"solution\":\"<think>x</think>\",\"style\":\"direct\"}", "its direct \"solution\" gives no answer"},
        {"\"solution\":\"<think>x</think><answer>6</answer>\",\"style\":\"checked\"}", "fails the verifier"},
        {"\"solution\":\"<think>x</think><answer>5</answer>\",\"style\":\"long\"}", "unknown \"style\""},
    };
    for (int i = 0; i < 3; i++) {
        char line[512];
        snprintf(line, sizeof line, "{\"task\":\"arithmetic\",\"prompt\":\"What is 2 + 3?\",\"answer\":\"5\",\"a\":2,\"op\":\"+\",\"b\":3,%s\n",
                 lines[i][0]);
        write_text(out, line);
        assert_int_equal(run_data(check, err, sizeof err), 1);
        if (strstr(err, lines[i][1]) == NULL) fail_msg("check: '%s' lacks '%s'", err, lines[i][1]);
    }
}

// ----------------------------------------------------------------------------------------------
// Rewards (grpo.c section 10)
// ----------------------------------------------------------------------------------------------

#define FORMAT_IS(want, text) do { int got_ = reward_format(text); \
    if (got_ != (want)) fail_msg("reward_format(\"%s\") = %d, want %d", text, got_, want); } while (0)

static void test_reward_format(void **state) {
    (void)state;
    // well formed, with or without whitespace and newlines around and between the parts
    FORMAT_IS(1, "<think>a</think><answer>b</answer>");
    FORMAT_IS(1, "<think>a</think> <answer>b</answer>");
    FORMAT_IS(1, "<think>\nadd 3 and 4\n</think>\n<answer>7</answer>");
    FORMAT_IS(1, "\n \t<think> x </think>\n\n<answer> 7 </answer>\n \n");
    FORMAT_IS(1, "<think></think><answer></answer>");  // the format says nothing of the content
    FORMAT_IS(1, "<think>我想一下</think>\n<answer>答案</answer>");
    // missing tags
    FORMAT_IS(0, "");
    FORMAT_IS(0, "   \n");
    FORMAT_IS(0, "7");
    FORMAT_IS(0, "<answer>7</answer>");
    FORMAT_IS(0, "<think>a</think>");
    FORMAT_IS(0, "a</think><answer>7</answer>");
    FORMAT_IS(0, "<think>a<answer>7</answer>");
    FORMAT_IS(0, "<think>a</think><answer>7");
    FORMAT_IS(0, "<think>a</think>7</answer>");
    FORMAT_IS(0, "<think> abc");                        // truncated
    FORMAT_IS(0, "<think>a</think><answer>7</answ");    // truncated in the last tag
    FORMAT_IS(0, "<Think>a</Think><Answer>7</Answer>"); // tags are case sensitive
    // repeated tags
    FORMAT_IS(0, "<think>a</think><think>b</think><answer>7</answer>");
    FORMAT_IS(0, "<think>a</think><answer>7</answer><answer>8</answer>");
    FORMAT_IS(0, "<think><think>a</think><answer>7</answer>");
    FORMAT_IS(0, "<think>a</think></think><answer>7</answer>");
    FORMAT_IS(0, "<think>a</think><answer>use <think></answer>");
    // wrong order
    FORMAT_IS(0, "<answer>7</answer><think>a</think>");
    FORMAT_IS(0, "</think>a<think><answer>7</answer>");
    FORMAT_IS(0, "<think>a<answer></think>7</answer>");
    // nested
    FORMAT_IS(0, "<think>a<answer>7</answer></think>");
    FORMAT_IS(0, "<think><answer>7</answer></think>");
    // text outside the parts
    FORMAT_IS(0, "<think>a</think><answer>7</answer> done");
    FORMAT_IS(0, "<think>a</think><answer>7</answer>\n.");
    FORMAT_IS(0, "Sure! <think>a</think><answer>7</answer>");
    FORMAT_IS(0, "x\n<think>a</think><answer>7</answer>");
    FORMAT_IS(0, "<think>a</think> so <answer>7</answer>");
    FORMAT_IS(0, "<think>a</think>\n.\n<answer>7</answer>");
    // every worked solution of the generator is well formed (tagged), and the untagged one not
    TaskSetOptions o = task_options("all", 0, 30, 1, 5, 77);
    char *text = gen_tasks(&o);
    int n;
    Json **v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) {
        char *tagged = task_solution(v[i], 1), *plain = task_solution(v[i], 0);
        assert_non_null(tagged);
        assert_non_null(plain);
        if (reward_format(tagged) != 1) fail_msg("solution %d not well formed: %s", i, tagged);
        if (reward_format(plain) != 0) fail_msg("untagged solution %d well formed: %s", i, plain);
        free(tagged), free(plain);
    }
    free_lines(v, n);
    free(text);
}

#define ACCURACY_IS(want, e, text) do { int got_ = reward_accuracy(e, text); \
    if (got_ != (want)) fail_msg("reward_accuracy(\"%s\") = %d, want %d", text, got_, want); } while (0)

static void test_reward_accuracy(void **state) {
    (void)state;
    // lines as `./r1 data tasks --task all --n 6 --out -` prints them
    Json *add = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                   "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39,\"id\":\"49e4dfa30767307a\"}");
    Json *cd = ex("{\"task\":\"countdown\",\"lang\":\"en\",\"level\":5,\"prompt\":\"Using the numbers [7, 10, "
                  "24, 19], make an expression that equals 266. You may use + - * / and parentheses; use "
                  "each number at most once; division must be exact.\",\"answer\":\"19 + 10 * 24 + 7\","
                  "\"numbers\":[7,10,24,19],\"target\":266,\"id\":\"d8150b2a5d773cab\"}");
    Json *s42 = ex("{\"task\":\"sort42\",\"lang\":\"en\",\"level\":3,\"prompt\":\"Write code that takes a list "
                   "of numbers, returns them sorted, and adds 42 at the beginning. What does it return for "
                   "[94, 40, 48, 66, 61]?\",\"answer\":\"[42, 40, 48, 61, 66, 94]\",\"numbers\":[94,40,48,"
                   "66,61],\"id\":\"b12ce4e76750f189\"}");
    Json *mul = ex("{\"task\":\"arithmetic\",\"lang\":\"zh\",\"level\":4,\"prompt\":\"请计算 372 * 2 的结果。\","
                   "\"answer\":\"744\",\"a\":372,\"op\":\"*\",\"b\":2,\"id\":\"1da6fc8a516cdb6a\"}");
    // correct
    ACCURACY_IS(1, add, "<think>33 + 39 = 72</think>\n<answer>72</answer>");
    ACCURACY_IS(1, add, "<answer>72</answer>");                  // format is not accuracy
    ACCURACY_IS(1, add, "<answer>  72 \n</answer>");             // spaces around the answer
    ACCURACY_IS(1, add, "junk <answer>72</answer> junk");
    ACCURACY_IS(1, mul, "<think>三百七十二乘二</think><answer>744</answer>");
    ACCURACY_IS(1, cd, "<think>a</think><answer>19 + 10 * 24 + 7</answer>");
    ACCURACY_IS(1, cd, "<think>a</think><answer>19 * (24 - 10)</answer>");  // another solution
    ACCURACY_IS(1, cd, "<think>a</think><answer> 19*(24-10) </answer>");
    ACCURACY_IS(1, s42, "<think>a</think><answer>[42, 40, 48, 61, 66, 94]</answer>");
    ACCURACY_IS(1, s42, "<think>a</think><answer>[42,40,48,61,66,94]</answer>");
    // incorrect
    ACCURACY_IS(0, add, "<think>a</think><answer>71</answer>");
    ACCURACY_IS(0, add, "<think>a</think><answer>7 2</answer>");  // a space inside the number
    ACCURACY_IS(0, add, "<think>a</think><answer>72.5</answer>");
    ACCURACY_IS(0, mul, "<think>a</think><answer>72</answer>");
    ACCURACY_IS(0, cd, "<think>a</think><answer>19 * 14</answer>");   // 14 is not given
    ACCURACY_IS(0, cd, "<think>a</think><answer>19 * (24 - 10) + 7 - 7</answer>");  // 7 twice
    ACCURACY_IS(0, s42, "<think>a</think><answer>[40, 48, 61, 66, 94]</answer>");
    ACCURACY_IS(0, s42, "<think>a</think><answer>[42, 94, 66, 61, 48, 40]</answer>");
    // missing answer: the number in the reasoning does not count
    ACCURACY_IS(0, add, "<think>33 + 39 = 72</think>");
    ACCURACY_IS(0, add, "72");
    ACCURACY_IS(0, add, "");
    ACCURACY_IS(0, add, "<answer>72");
    ACCURACY_IS(0, add, "72</answer>");
    ACCURACY_IS(0, add, "<answer></answer>");
    // two <answer> blocks: the last one counts (answer_extract)
    ACCURACY_IS(1, add, "<answer>71</answer> <answer>72</answer>");
    ACCURACY_IS(0, add, "<answer>72</answer> <answer>71</answer>");
    ACCURACY_IS(1, add, "<think>maybe <answer>70</answer>?</think><answer>72</answer>");
    // the last <answer> opens no closed block: none (the earlier closed one is not used)
    ACCURACY_IS(0, add, "<answer>72</answer> <answer>72");
    char *a = answer_extract("<answer>72</answer> <answer>72");
    assert_null(a);
    // the example's own task: an answer for another task does not count
    ACCURACY_IS(0, s42, "<answer>72</answer>");
    // gold answers and worked solutions of generated examples all score 1
    TaskSetOptions o = task_options("all", 0, 30, 1, 5, 78);
    char *text = gen_tasks(&o);
    int n;
    Json **v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "<think>x</think><answer>%s</answer>", str_field(v[i], "answer"));
        if (reward_accuracy(v[i], buf) != 1) fail_msg("gold answer rejected: %s", buf);
        char *tagged = task_solution(v[i], 1);
        if (reward_accuracy(v[i], tagged) != 1) fail_msg("worked solution rejected: %s", tagged);
        free(tagged);
    }
    free_lines(v, n);
    free(text);
    json_free(add), json_free(cd), json_free(s42), json_free(mul);
}

#define LANGUAGE_IS(want, text, lang) do { double got_ = reward_language(text, lang); \
    if (fabs(got_ - (want)) > 1e-12) fail_msg("reward_language(\"%s\", %s) = %.17g, want %.17g", \
                                             text, lang, got_, (double)(want)); } while (0)

static void test_reward_language(void **state) {
    (void)state;
    // pure English, pure Chinese
    LANGUAGE_IS(1.0, "<think>I add the two numbers.</think><answer>7</answer>", "en");
    LANGUAGE_IS(0.0, "<think>I add the two numbers.</think><answer>7</answer>", "zh");
    LANGUAGE_IS(1.0, "<think>我想一下</think><answer>7</answer>", "zh");
    LANGUAGE_IS(0.0, "<think>我想一下</think><answer>7</answer>", "en");
    // mixed: a word is a run of ASCII letters or one CJK character
    LANGUAGE_IS(2.0 / 3.0, "<think>我 think 你</think>", "zh");
    LANGUAGE_IS(1.0 / 3.0, "<think>我 think 你</think>", "en");
    LANGUAGE_IS(2.0 / 3.0, "<think>我think你</think>", "zh");
    LANGUAGE_IS(0.5, "<think>先算 three plus four 吧</think>", "en");  // 先 算 吧 and 3 English words
    // digits, symbols and Chinese punctuation are not words
    LANGUAGE_IS(0.0, "<think>33 + 39 = 72</think><answer>72</answer>", "en");
    LANGUAGE_IS(0.0, "<think>33 + 39 = 72</think><answer>72</answer>", "zh");
    LANGUAGE_IS(1.0, "<think>好，好。 3 + 4 = 7！</think>", "zh");
    LANGUAGE_IS(0.5, "<think>x1 好</think>", "zh");
    LANGUAGE_IS(0.0, "", "en");
    LANGUAGE_IS(0.0, "", "zh");
    LANGUAGE_IS(0.0, "<think></think><answer>seven words here in the answer</answer>", "en");
    // only the reasoning counts when there is a <think>
    LANGUAGE_IS(1.0, "English before 中文<think>我们来算</think><answer>the answer is seven</answer>", "zh");
    LANGUAGE_IS(0.0, "English before 中文<think>我们来算</think><answer>the answer is seven</answer>", "en");
    LANGUAGE_IS(0.5, "<think>我 think", "zh");  // no </think>: to the end
    // no <think>: the whole completion
    LANGUAGE_IS(1.0 / 3.0, "hello 世界", "en");
    LANGUAGE_IS(2.0 / 3.0, "hello 世界", "zh");
    // the worked solutions are in their example's language
    TaskSetOptions o = task_options("all", 0, 60, 1, 5, 79);
    char *text = gen_tasks(&o);
    int n, zh = 0, en = 0;
    Json **v = parse_lines(text, &n);
    for (int i = 0; i < n; i++) {
        const char *lang = str_field(v[i], "lang");
        char *tagged = task_solution(v[i], 1);
        double share = reward_language(tagged, lang);
        if (share < 0.8) fail_msg("%s solution has language share %.3f: %s", lang, share, tagged);
        zh += strcmp(lang, "zh") == 0, en += strcmp(lang, "en") == 0;
        free(tagged);
    }
    assert_true(zh > 0 && en > 0);
    free_lines(v, n);
    free(text);
}

// One hand-computed reward case: the example, the completion, and the three parts expected.
typedef struct { const Json *e; const char *text; double acc, fmt, lang; } RewardCase;

// reward_total with weights (1, 0.5, 0.25) must give the case's parts and their weighted sum.
static double expect_reward(size_t i, const RewardCase *c) {
    RewardWeights w = {.accuracy = 1.0, .format = 0.5, .language = 0.25};
    RewardParts p = {-1, -1, -1};
    double got = reward_total(&w, c->e, c->text, &p);
    double want = 1.0 * c->acc + 0.5 * c->fmt + 0.25 * c->lang;
    if (fabs(got - want) > 1e-12 || p.accuracy != c->acc || p.format != c->fmt ||
        fabs(p.language - c->lang) > 1e-12)
        fail_msg("case %zu \"%s\": total %.17g (want %.17g), parts %g %g %.17g (want %g %g %.17g)",
                 i, c->text, got, want, p.accuracy, p.format, p.language, c->acc, c->fmt, c->lang);
    return got;
}

// The rule reward of non-reasoning prompts (final RL's mix), by hand: format = no reasoning tag;
// accuracy = the rule of the kind; language = the share of words in the prompt's language.
static void test_reward_nonreasoning(void **state) {
    (void)state;
    Json *who = ex("{\"task\":\"non-reasoning\",\"kind\":\"identity\",\"lang\":\"en\","
                   "\"prompt\":\"Who are you?\",\"answer\":\"\"}");
    Json *odd = ex("{\"task\":\"non-reasoning\",\"kind\":\"parity\",\"lang\":\"en\","
                   "\"prompt\":\"Is 37 odd or even?\",\"answer\":\"odd\"}");
    Json *odd_zh = ex("{\"task\":\"non-reasoning\",\"kind\":\"parity\",\"lang\":\"zh\","
                      "\"prompt\":\"37 是奇数还是偶数？\",\"answer\":\"奇数\"}");
    Json *wr = ex("{\"task\":\"non-reasoning\",\"kind\":\"writing\",\"lang\":\"en\","
                  "\"prompt\":\"Write a short paragraph.\",\"answer\":\"\"}");
    Json *wr_zh = ex("{\"task\":\"non-reasoning\",\"kind\":\"writing\",\"lang\":\"zh\","
                     "\"prompt\":\"写一小段话。\",\"answer\":\"\"}");
    RewardCase cases[] = {
        {who, "I am r1.c, a small model.", 1, 1, 1.0},        // words I am r c a small model
        {who, "I am a small model.", 0, 1, 1.0},
        {who, "<think>I am r1.c</think>", 1, 0, 1.0},         // right, but not a plain answer
        {who, "我是 r1.c", 1, 1, 0.5},                        // words 我 是 r c: 2 of 4 English
        {odd, "37 is odd.", 1, 1, 1.0},
        {odd, "37 is even.", 0, 1, 1.0},
        {odd, "37 is odd or even.", 0, 1, 1.0},              // both words: no answer
        {odd, "<answer>odd</answer>", 1, 0, 1.0},
        {odd_zh, "37 是奇数。", 1, 1, 1.0},
        {odd_zh, "37 是偶数。", 0, 1, 1.0},
        {wr, "The cat sat on the mat today.", 1, 1, 1.0},    // 29 bytes, ends a sentence
        {wr, "Too short.", 0, 1, 1.0},                       // 10 bytes
        {wr, "A line that never ends a sentence", 0, 1, 1.0},
        {wr_zh, "今天天气很好，我们去公园散步。", 1, 1, 1.0},  // 42 bytes, ends with 。
        {wr_zh, "The weather is nice today.", 1, 1, 0.0},     // a sentence, wrong language
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(is_nonreasoning(cases[i].e));
        expect_reward(i, &cases[i]);
    }
    Json *add = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"prompt\":\"What is 1 + 2?\"}");
    assert_false(is_nonreasoning(add));
    json_free(add);
    json_free(who);
    json_free(odd);
    json_free(odd_zh);
    json_free(wr);
    json_free(wr_zh);
}

static void test_reward_total(void **state) {
    (void)state;
    Json *add = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                   "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39}");
    Json *mul = ex("{\"task\":\"arithmetic\",\"lang\":\"zh\",\"level\":4,\"prompt\":\"请计算 372 * 2 的结果。\","
                   "\"answer\":\"744\",\"a\":372,\"op\":\"*\",\"b\":2}");
    Json *nolang = ex("{\"task\":\"arithmetic\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                      "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39}");
    RewardWeights w = {.accuracy = 1.0, .format = 0.5, .language = 0.25};
    RewardCase cases[] = {
        {add, "<think>add them</think><answer>72</answer>", 1, 1, 1.0},
        {add, "<think>add them</think><answer>71</answer>", 0, 1, 1.0},
        {add, "<think>72</think><answer>72</answer>", 1, 1, 0.0},  // no words at all
        {add, "<answer>72</answer>", 1, 0, 0.0},  // the format's tags are not words: none at all
        {add, "I think <answer>72</answer> end", 1, 0, 1.0},
        {add, "<think>我 think 你</think><answer>72</answer>", 1, 1, 1.0 / 3.0},
        {mul, "<think>我 think 你</think><answer>744</answer>", 1, 1, 2.0 / 3.0},
        {mul, "<think>two times</think> <answer>744</answer>", 1, 1, 0.0},
        {mul, "", 0, 0, 0.0},
        {nolang, "<think>二 plus</think><answer>72</answer>", 1, 1, 0.5},  // lang defaults to en
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = expect_reward(i, &cases[i]);
        double again = reward_total(&w, cases[i].e, cases[i].text, NULL);  // parts may be NULL
        assert_true(again == got);
    }
    RewardWeights acc_only = {1.0, 0.0, 0.0};
    assert_true(reward_total(&acc_only, add, "<think>a</think><answer>72</answer>", NULL) == 1.0);
    assert_true(reward_total(&acc_only, add, "<think>a</think><answer>73</answer>", NULL) == 0.0);
    json_free(add), json_free(mul), json_free(nolang);
}

static void test_has_reflection(void **state) {
    (void)state;
    const char *yes[] = {"Wait, 3 + 4 is 7.", "wait", "WAIT!", "Let me check: 7.", "Check.", "I verify it",
                         "Verify: ok", "等等，不对", "我来验证一下", "再检查", "<think>a</think><answer>wait</answer>"};
    const char *no[] = {"", "The answer is 7.", "<think>3 + 4 = 7</think><answer>7</answer>", "wai t",
                        "W a i t", "veri fy", "等一下", "验 证", "chec k"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (has_reflection(yes[i]) != 1) fail_msg("has_reflection(\"%s\") = 0, want 1", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (has_reflection(no[i]) != 0) fail_msg("has_reflection(\"%s\") = 1, want 0", no[i]);
}

// ----------------------------------------------------------------------------------------------
// GRPO: advantages, token log-probabilities, the loss head (grpo.c section 11)
// ----------------------------------------------------------------------------------------------

#define NEAR(got, want, tol, what) do { double g_ = (got), w_ = (want); \
    if (!(fabs(g_ - w_) <= (tol))) fail_msg("%s: got %.9g, want %.9g (diff %.3g > %.3g)", what, g_, w_, \
                                            fabs(g_ - w_), (double)(tol)); } while (0)

static void test_grpo_advantages(void **state) {
    (void)state;
    float adv[16];
    // one group of 4: mean 0.5, sample std sqrt(1/3)
    double r1[4] = {1, 0, 0, 1};
    double s = sqrt(1.0 / 3.0), a = 0.5 / (s + 1e-4);
    grpo_advantages(r1, 1, 4, 1, adv);
    for (int i = 0; i < 4; i++) NEAR(adv[i], r1[i] ? a : -a, 1e-6, "grpo adv [1,0,0,1]");
    // Dr. GRPO: r - mean
    grpo_advantages(r1, 1, 4, 0, adv);
    for (int i = 0; i < 4; i++) assert_true(adv[i] == (r1[i] ? 0.5f : -0.5f));
    // a group whose rewards are all equal: exactly 0, with and without the std
    double same[4] = {0.3, 0.3, 0.3, 0.3};
    for (int sc = 0; sc <= 1; sc++) {
        for (int i = 0; i < 4; i++) adv[i] = 99.0f;
        grpo_advantages(same, 1, 4, sc, adv);
        for (int i = 0; i < 4; i++)
            if (adv[i] != 0.0f) fail_msg("zero-variance group, scale %d: adv[%d] = %g", sc, i, adv[i]);
    }
    // several groups, each on its own
    double r3[12] = {1, 0, 0, 1, 2, 2, 2, 2, 0, 0, 0, 3};
    grpo_advantages(r3, 3, 4, 1, adv);
    for (int i = 0; i < 4; i++) NEAR(adv[i], r1[i] ? a : -a, 1e-6, "group 0");
    for (int i = 4; i < 8; i++) assert_true(adv[i] == 0.0f);
    // group 2: mean 0.75, deviations -0.75 x 3 and 2.25, sum of squares 6.75, sample std 1.5
    for (int i = 8; i < 11; i++) NEAR(adv[i], -0.75 / 1.5001, 1e-6, "group 2 (low)");
    NEAR(adv[11], 2.25 / 1.5001, 1e-6, "group 2 (high)");
    float alone[4];
    grpo_advantages(r3 + 8, 1, 4, 1, alone);
    for (int i = 0; i < 4; i++) assert_true(alone[i] == adv[8 + i]);
    grpo_advantages(r3, 3, 4, 0, adv);
    for (int i = 8; i < 11; i++) assert_true(adv[i] == -0.75f);
    assert_true(adv[11] == 2.25f);
    // G = 2 (the tiny loss cases below): +-0.5 / (sqrt(0.5) + 1e-4)
    double r2[2] = {1, 0};
    grpo_advantages(r2, 1, 2, 1, adv);
    NEAR(adv[0], 0.5 / (sqrt(0.5) + 1e-4), 1e-6, "G=2 high");
    NEAR(adv[1], -0.5 / (sqrt(0.5) + 1e-4), 1e-6, "G=2 low");
    // a group of one has no signal
    double r0[1] = {5};
    adv[0] = 1;
    grpo_advantages(r0, 1, 1, 1, adv);
    assert_true(adv[0] == 0.0f);
}

// log_softmax(z)[k] in double
static double logsoftmax_d(const float *z, int V, int k) {
    double mx = z[0], s = 0;
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    for (int v = 0; v < V; v++) s += exp((double)z[v] - mx);
    return (double)z[k] - mx - log(s);
}

static void test_token_logprobs(void **state) {
    (void)state;
    enum { B = 3, T = 5, V = 7 };
    float logits[B * T * V], lp[B * T];
    int ids[B * T];
    Rng rng;
    rng_seed(&rng, 42);
    for (int i = 0; i < B * T * V; i++) logits[i] = 3.0f * rng_normal(&rng);
    logits[4 * V + 2] = 60.0f;   // large logits must not overflow
    logits[5 * V + 1] = -80.0f;
    for (int i = 0; i < B * T; i++) ids[i] = (int)(rng_next(&rng) % V);
    ids[5] = 2, ids[6] = 1;
    for (int i = 0; i < B * T; i++) lp[i] = 123.0f;
    token_logprobs(logits, ids, B, T, V, lp);
    for (int b = 0; b < B; b++) {
        assert_true(lp[b * T] == 0.0f);
        for (int t = 1; t < T; t++) {
            double want = logsoftmax_d(logits + (size_t)(b * T + t - 1) * V, V, ids[b * T + t]);
            char what[64];
            snprintf(what, sizeof what, "lp[%d,%d]", b, t);
            NEAR(lp[b * T + t], want, 1e-5 * (1 + fabs(want)), what);
        }
    }
}

// The GRPO loss of grpo.c section 11, written directly from the formula in double, with its
// gradient with respect to the logits (dlogits may be NULL) and the stats.
static double ref_grpo_loss(const float *logits, const int *ids, const float *mask, const float *old_lp,
                            const float *ref_lp, const float *adv, int B, int T, int V,
                            const GrpoConfig *gc, double *dlogits, GrpoStats *st, int *n_clipped_branch,
                            int *n_unclipped_branch) {
    double total_len = 0, loss = 0, kl = 0, clip = 0, ent = 0, n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 1; t < T; t++) total_len += mask[b * T + t] != 0;
    if (dlogits) memset(dlogits, 0, sizeof(double) * B * T * V);
    if (n_clipped_branch) *n_clipped_branch = 0;
    if (n_unclipped_branch) *n_unclipped_branch = 0;
    for (int b = 0; b < B; b++) {
        double len = 0;
        for (int t = 1; t < T; t++) len += mask[b * T + t] != 0;
        double w = gc->variant == GRPO_DR ? 1.0 / (B * (double)gc->max_len)
                 : gc->variant == GRPO_DAPO ? 1.0 / total_len : 1.0 / (B * len);
        for (int t = 1; t < T; t++) {
            int k = b * T + t;
            if (mask[k] == 0) continue;
            const float *z = logits + (size_t)(k - 1) * V;  // the row that predicts token t
            double lp = logsoftmax_d(z, V, ids[k]), A = adv[b];
            double rho = exp(lp - old_lp[k]);
            double lo = 1 - (double)gc->eps_low, hi = 1 + (double)gc->eps_high;
            double rc = rho < lo ? lo : rho > hi ? hi : rho;
            double obj = fmin(rho * A, rc * A);
            int clipped_branch = rc * A < rho * A;  // the min is the (constant) clipped term
            double q = exp(ref_lp[k] - lp);
            double k3 = q - (ref_lp[k] - lp) - 1;
            loss += -w * (obj - gc->beta * k3);
            kl += k3, clip += rho < lo || rho > hi, n++;
            double H = 0;
            for (int v = 0; v < V; v++) {
                double lq = logsoftmax_d(z, V, v);
                H -= exp(lq) * lq;
            }
            ent += H;
            if (clipped_branch && n_clipped_branch) (*n_clipped_branch)++;
            if (!clipped_branch && A != 0 && n_unclipped_branch) (*n_unclipped_branch)++;
            if (dlogits) {
                double dobj = clipped_branch ? 0.0 : rho * A;   // d obj / d lp
                double dk3 = 1 - q;                              // d k3 / d lp
                double g = -w * (dobj - gc->beta * dk3);         // d loss / d lp
                for (int v = 0; v < V; v++)
                    dlogits[(size_t)(k - 1) * V + v] = g * ((v == ids[k]) - exp(logsoftmax_d(z, V, v)));
            }
        }
    }
    if (st) {
        st->kl = n ? kl / n : 0, st->clip_fraction = n ? clip / n : 0, st->entropy = n ? ent / n : 0;
        st->tokens = n;
    }
    return loss;
}

// The tiny case: B = 2 sequences (one group, G = 2), T = 3, V = 3, explicit logits.
//   sequence 0: ids 0 1 2, rows [0,0,0] (lp = -log 3) and [log 2, 0, 0] (p = 1/2, 1/4, 1/4)
//   sequence 1: ids 0 2 0, rows [log 2, 0, 0] and [0, 0, 0]
// Rewards [1, 0] give adv = +-a with a = 0.5 / (sqrt(0.5) + 1e-4).
typedef struct {
    float logits[2 * 3 * 3];
    int ids[6];
    float mask[6], lp[6], old_lp[6], ref_lp[6], adv[2], dlogits[2 * 3 * 3];
    double a;
} Tiny;

static void tiny_init(Tiny *c) {
    const float l2 = (float)log(2.0);
    const float z[18] = {0, 0, 0, l2, 0, 0, 9, 9, 9,   // the last row of each sequence predicts
                         l2, 0, 0, 0, 0, 0, 9, 9, 9};  // nothing (its values must not matter)
    const int ids[6] = {0, 1, 2, 0, 2, 0};
    memcpy(c->logits, z, sizeof z);
    memcpy(c->ids, ids, sizeof ids);
    for (int i = 0; i < 6; i++) c->mask[i] = i % 3 != 0;
    token_logprobs(c->logits, c->ids, 2, 3, 3, c->lp);
    NEAR(c->lp[1], -log(3.0), 1e-6, "tiny lp[0,1]");
    NEAR(c->lp[2], log(0.25), 1e-6, "tiny lp[0,2]");
    NEAR(c->lp[4], log(0.25), 1e-6, "tiny lp[1,1]");
    NEAR(c->lp[5], -log(3.0), 1e-6, "tiny lp[1,2]");
    double r[2] = {1, 0};
    grpo_advantages(r, 1, 2, 1, c->adv);
    c->a = 0.5 / (sqrt(0.5) + 1e-4);
    memcpy(c->old_lp, c->lp, sizeof c->lp);
    memcpy(c->ref_lp, c->lp, sizeof c->lp);
}

// dlogits row r should be g * (onehot(target) - softmax(row)) for g = dloss/dlp, since
// d lp / dz[v] = 1[v = target] - softmax[v].
static void check_row(const Tiny *c, int row, double g, const char *what) {
    const float *z = c->logits + row * 3;
    for (int v = 0; v < 3; v++) {
        double want = g * ((v == c->ids[row + 1]) - exp(logsoftmax_d(z, 3, v)));
        char msg[128];
        snprintf(msg, sizeof msg, "%s: dlogits[row %d][%d]", what, row, v);
        NEAR(c->dlogits[row * 3 + v], want, 1e-6, msg);
    }
}

static void check_zero_rows(const Tiny *c) {
    for (int row = 0; row < 6; row++) {
        if (row % 3 != 2 && c->mask[row + 1] != 0) continue;
        for (int v = 0; v < 3; v++)
            if (c->dlogits[row * 3 + v] != 0.0f)
                fail_msg("row %d predicts no masked-in token but dlogits[%d] = %g", row, v,
                         c->dlogits[row * 3 + v]);
    }
}

static void test_grpo_loss_tiny(void **state) {
    (void)state;
    Tiny c;
    tiny_init(&c);
    double a = c.a, l2 = log(2.0), k3_half = 0.5 - log(0.5) - 1;  // k3 when pi_ref / pi = 1/2
    double H_uniform = log(3.0), H_half = 1.5 * l2;              // row entropies
    GrpoConfig gc = {.variant = GRPO_PAPER, .eps_low = 0.2f, .eps_high = 0.2f, .beta = 0.0f, .max_len = 4};
    GrpoStats st;
    char what[64];

    // check_row(g) expects dlogits = g (onehot - softmax) with g = dloss / dlp.
    // 1. rho = 1 (old_lp = lp), beta = 0: J = 1/2 (1/2 (a + a) + 1/2 (-a - a)) = 0;
    // each token's dloss/dlp = -w A with w = 1 / (B len) = 1/4
    for (int i = 0; i < 18; i++) c.dlogits[i] = 7.0f;
    float loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, 0.0, 1e-6, "rho = 1, beta = 0: loss");
    check_row(&c, 0, -0.25 * a, "rho = 1");
    check_row(&c, 1, -0.25 * a, "rho = 1");
    check_row(&c, 3, 0.25 * a, "rho = 1");
    check_row(&c, 4, 0.25 * a, "rho = 1");
    check_zero_rows(&c);
    // the sign: a small gradient-descent step on the logits raises the log-probability of the
    // tokens with A > 0 (sequence 0) and lowers it for A < 0 (sequence 1)
    {
        Tiny d = c;
        for (int i = 0; i < 18; i++) d.logits[i] -= 0.1f * c.dlogits[i];
        token_logprobs(d.logits, d.ids, 2, 3, 3, d.lp);
        for (int k = 1; k < 6; k++) {
            if (k % 3 == 0) continue;
            int up = k < 3;
            if (up ? !(d.lp[k] > c.lp[k]) : !(d.lp[k] < c.lp[k]))
                fail_msg("a descent step moves lp[%d] (A %s 0) from %.6f to %.6f: dlogits has the wrong sign",
                         k, up ? ">" : "<", c.lp[k], d.lp[k]);
        }
    }
    NEAR(st.kl, 0.0, 1e-7, "rho = 1: kl");
    NEAR(st.clip_fraction, 0.0, 0, "rho = 1: clip fraction");
    NEAR(st.entropy, (2 * H_uniform + 2 * H_half) / 4, 1e-6, "rho = 1: entropy");
    NEAR(st.tokens, 4, 0, "rho = 1: tokens");

    // 2. rho = 1, beta = 0.1, pi_ref = pi / 2 everywhere: loss = beta k3 (log 2 - 1/2);
    // dk3/dlp = 1 - 1/2, so g = -w (rho A - beta / 2)
    gc.beta = 0.1f;
    for (int i = 0; i < 6; i++) c.ref_lp[i] = c.lp[i] + (float)log(0.5);
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, 0.1 * (l2 - 0.5), 1e-6, "rho = 1, beta = 0.1: loss");
    NEAR(st.kl, k3_half, 1e-6, "rho = 1, beta = 0.1: kl");
    NEAR(st.clip_fraction, 0.0, 0, "clip fraction");
    check_row(&c, 0, -0.25 * (a - 0.05), "rho = 1, beta");
    check_row(&c, 4, -0.25 * (-a - 0.05), "rho = 1, beta");
    check_zero_rows(&c);

    // 3. The branches. old_lp = lp - log rho with
    //   seq 0 (A = +a): token 1 rho = 1.5 (clipped: 1.2 a), token 2 rho = 0.5 (unclipped: 0.5 a)
    //   seq 1 (A = -a): token 1 rho = 0.5 (clipped: min(-0.5 a, -0.8 a) = -0.8 a),
    //                   token 2 rho = 1.1 (inside the range: -1.1 a)
    // loss = -1/2 (1/2 (1.2 a + 0.5 a) + 1/2 (-0.8 a - 1.1 a)) = 0.05 a
    const double rho[6] = {0, 1.5, 0.5, 0, 0.5, 1.1};
    for (int i = 0; i < 6; i++) c.old_lp[i] = c.lp[i] - (i % 3 ? (float)log(rho[i]) : 0.0f);
    memcpy(c.ref_lp, c.lp, sizeof c.lp);
    gc.beta = 0.0f;
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, 0.05 * a, 1e-6, "branches, beta = 0: loss");
    check_row(&c, 0, 0.0, "clipped (rho > 1 + eps, A > 0)");  // no gradient at all
    check_row(&c, 3, 0.0, "clipped (rho < 1 - eps, A < 0)");
    for (int v = 0; v < 3; v++) assert_true(c.dlogits[0 * 3 + v] == 0.0f && c.dlogits[3 * 3 + v] == 0.0f);
    check_row(&c, 1, -0.25 * 0.5 * a, "unclipped (rho < 1 - eps, A > 0)");
    check_row(&c, 4, -0.25 * 1.1 * -a, "unclipped (inside)");
    check_zero_rows(&c);
    // rho outside [1 - eps, 1 + eps] on 3 tokens of 4 (the ppo2 definition of the clip fraction)
    NEAR(st.clip_fraction, 0.75, 1e-12, "branches: clip fraction");
    NEAR(st.kl, 0.0, 1e-7, "branches: kl");

    // with beta = 0.1 and pi_ref = pi / 2: only the KL term is left on the clipped tokens,
    // g = -w (0 - beta (1 - 1/2)) = 0.25 * 0.05
    gc.beta = 0.1f;
    for (int i = 0; i < 6; i++) c.ref_lp[i] = c.lp[i] + (float)log(0.5);
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, 0.05 * a + 0.1 * k3_half, 1e-6, "branches, beta = 0.1: loss");
    check_row(&c, 0, 0.25 * 0.05, "clipped, KL only");
    check_row(&c, 3, 0.25 * 0.05, "clipped, KL only");
    check_row(&c, 1, -0.25 * (0.5 * a - 0.05), "unclipped + KL");
    check_row(&c, 4, -0.25 * (-1.1 * a - 0.05), "unclipped + KL");
    NEAR(st.kl, k3_half, 1e-6, "branches, beta: kl");
    NEAR(st.entropy, (2 * H_uniform + 2 * H_half) / 4, 1e-6, "branches: entropy");
    // KL not symmetric in sign: pi_ref = 2 pi gives k3 = 2 - log 2 - 1
    for (int i = 0; i < 6; i++) c.ref_lp[i] = c.lp[i] + (float)log(2.0);
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, NULL, &st);
    NEAR(loss, 0.05 * a + 0.1 * (1 - l2), 1e-6, "branches, pi_ref = 2 pi: loss");
    NEAR(st.kl, 1 - l2, 1e-6, "pi_ref = 2 pi: kl");
    memcpy(c.ref_lp, c.lp, sizeof c.lp);
    gc.beta = 0.0f;

    // 4. The normalisers, with token 2 of sequence 1 masked out (so the lengths differ: 2 and 1)
    c.mask[5] = 0;
    // grpo: -1/2 (1/2 (1.2 a + 0.5 a) + 1/1 (-0.8 a)) = -0.025 a
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, -0.025 * a, 1e-6, "grpo, lengths 2 and 1: loss");
    check_row(&c, 1, -0.25 * 0.5 * a, "grpo, lengths 2 and 1");
    check_zero_rows(&c);  // row 4 now predicts a masked token
    NEAR(st.tokens, 3, 0, "tokens");
    NEAR(st.clip_fraction, 1.0, 1e-12, "clip fraction, 3 tokens (rho 1.5, 0.5, 0.5)");
    // dr_grpo with max_len 4: -(1 / (2 * 4)) (1.2 a + 0.5 a - 0.8 a) = -0.1125 a
    gc.variant = GRPO_DR;
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, -0.1125 * a, 1e-6, "dr_grpo: loss");
    check_row(&c, 1, -0.125 * 0.5 * a, "dr_grpo");
    check_zero_rows(&c);
    gc.max_len = 10;  // the constant normaliser: -(1 / (2 * 10)) (0.9 a)
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, NULL, NULL);
    NEAR(loss, -0.9 * a / 20, 1e-6, "dr_grpo max_len 10: loss");
    // dapo: token level, -(1/3) (1.2 a + 0.5 a - 0.8 a) = -0.3 a
    gc.variant = GRPO_DAPO;
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, -0.3 * a, 1e-6, "dapo: loss");
    check_row(&c, 1, -(1.0 / 3.0) * 0.5 * a, "dapo");
    check_row(&c, 3, 0.0, "dapo, clipped");
    // clip-higher: eps_high 0.28 moves the upper clip of token 1 to 1.28 a
    gc.eps_high = 0.28f;
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, -(1.28 + 0.5 - 0.8) * a / 3, 1e-6, "dapo clip-higher: loss");
    check_row(&c, 0, 0.0, "dapo clip-higher, still clipped at 1.5");
    // rho = 1.25 is inside [0.8, 1.28]: unclipped, g = -w rho A
    c.old_lp[1] = c.lp[1] - (float)log(1.25);
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, -(1.25 + 0.5 - 0.8) * a / 3, 1e-6, "dapo rho 1.25: loss");
    check_row(&c, 0, -(1.0 / 3.0) * 1.25 * a, "dapo rho 1.25 unclipped");
    NEAR(st.clip_fraction, 2.0 / 3.0, 1e-12, "dapo rho 1.25: clip fraction");
    // the same tokens under grpo (eps 0.2) are clipped at 1.2
    gc.variant = GRPO_PAPER, gc.eps_high = 0.2f;
    loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
    NEAR(loss, -0.5 * (0.5 * (1.2 + 0.5) * a - 0.8 * a), 1e-6, "grpo rho 1.25: loss");
    check_row(&c, 0, 0.0, "grpo rho 1.25 clipped");

    // 5. Nothing masked in: loss 0, zero gradient, zero stats
    for (int i = 0; i < 6; i++) c.mask[i] = 0;
    for (int variant = GRPO_PAPER; variant <= GRPO_DAPO; variant++) {
        gc.variant = (GrpoVariant)variant;
        for (int i = 0; i < 18; i++) c.dlogits[i] = 7.0f;
        loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, 2, 3, 3, &gc, c.dlogits, &st);
        snprintf(what, sizeof what, "empty mask, variant %d", variant);
        NEAR(loss, 0.0, 0, what);
        for (int i = 0; i < 18; i++) assert_true(c.dlogits[i] == 0.0f);
        assert_true(st.tokens == 0 && st.kl == 0 && st.clip_fraction == 0 && st.entropy == 0);
    }
}

// A random batch for the gradient checks: B = 4 (2 groups of 2), T = 6, V = 5. Sequence 1 ends
// early (padding), sequence 2 has a one-token prompt, sequence 3 is empty (no completion).
enum { FB = 4, FT = 6, FV = 5 };
typedef struct {
    float logits[FB * FT * FV], mask[FB * FT], old_lp[FB * FT], ref_lp[FB * FT], adv[FB];
    int ids[FB * FT];
} FdCase;

static void fd_case_init(FdCase *c, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < FB * FT * FV; i++) c->logits[i] = 1.5f * rng_normal(&rng);
    for (int i = 0; i < FB * FT; i++) c->ids[i] = (int)(rng_next(&rng) % FV);
    for (int b = 0; b < FB; b++)
        for (int t = 0; t < FT; t++) {
            int on = t >= 1;
            if (b == 1) on = t >= 1 && t <= 3;
            if (b == 2) on = t >= 2;
            if (b == 3) on = 0;
            c->mask[b * FT + t] = on ? 1.0f : 0.0f;
        }
    float lp[FB * FT];
    token_logprobs(c->logits, c->ids, FB, FT, FV, lp);
    // ratios well away from the clip boundaries (0.8, 1.2 and DAPO's 1.28): the derivative
    // jumps there; a mix of clipped and unclipped branches for both signs of A
    static const double rhos[] = {1.5, 0.5, 1.0, 1.1, 0.6, 1.45, 0.9, 0.55, 1.6, 0.95};
    for (int i = 0; i < FB * FT; i++) {
        c->old_lp[i] = lp[i] - (float)log(rhos[i % 10]);
        c->ref_lp[i] = lp[i] + 0.5f * rng_normal(&rng);
    }
    double r[FB] = {1.0, 0.0, 0.2, 0.9};
    grpo_advantages(r, 2, 2, 1, c->adv);
}

static void test_grpo_loss_gradient(void **state) {
    (void)state;
    FdCase c;
    fd_case_init(&c, 7);
    static float dlogits[FB * FT * FV];
    static double ref_d[FB * FT * FV];
    GrpoConfig cfgs[3] = {
        {.variant = GRPO_PAPER, .eps_low = 0.2f, .eps_high = 0.2f, .beta = 0.3f, .max_len = 8},
        {.variant = GRPO_DR, .eps_low = 0.2f, .eps_high = 0.2f, .beta = 0.3f, .max_len = 8},
        {.variant = GRPO_DAPO, .eps_low = 0.2f, .eps_high = 0.28f, .beta = 0.0f, .max_len = 8},
    };
    const char *names[3] = {"grpo", "dr_grpo", "dapo"};
    for (int k = 0; k < 3; k++) {
        GrpoConfig *gc = &cfgs[k];
        GrpoStats st, rst;
        int n_clipped, n_unclipped;
        float loss = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, FB, FT, FV, gc,
                               dlogits, &st);
        double want = ref_grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, FB, FT, FV, gc,
                                    ref_d, &rst, &n_clipped, &n_unclipped);
        if (n_clipped < 3 || n_unclipped < 3)
            fail_msg("%s: the case must have both branches (%d clipped, %d unclipped)", names[k],
                     n_clipped, n_unclipped);
        NEAR(loss, want, 1e-6 * (1 + fabs(want)), names[k]);
        NEAR(st.kl, rst.kl, 1e-6, "kl");
        NEAR(st.clip_fraction, rst.clip_fraction, 1e-12, "clip fraction");
        NEAR(st.entropy, rst.entropy, 1e-6, "entropy");
        NEAR(st.tokens, rst.tokens, 0, "tokens");
        assert_true(grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, FB, FT, FV, gc, NULL,
                              NULL) == loss);  // dlogits and stats are optional
        double max_err_ref = 0, max_err_fd = 0, max_g = 0;
        for (int i = 0; i < FB * FT * FV; i++) {
            int row = i / FV, b = row / FT, t = row % FT;
            int live = t + 1 < FT && c.mask[b * FT + t + 1] != 0;
            if (!live && dlogits[i] != 0.0f)
                fail_msg("%s: dlogits[%d] (b %d t %d) = %g for a row that predicts no masked-in token",
                         names[k], i, b, t, dlogits[i]);
            // the formula in double
            double e = fabs(dlogits[i] - ref_d[i]);
            max_err_ref = e > max_err_ref ? e : max_err_ref;
            if (e > 1e-6 + 1e-5 * fabs(ref_d[i]))
                fail_msg("%s: dlogits[%d] = %.9g, formula gives %.9g", names[k], i, dlogits[i], ref_d[i]);
            // central differences of grpo_loss itself (float), 4-point stencil
            const float h = 1e-2f;
            float save = c.logits[i], f[4];
            const float steps[4] = {-2 * h, -h, h, 2 * h};
            for (int s = 0; s < 4; s++) {
                c.logits[i] = save + steps[s];
                f[s] = grpo_loss(c.logits, c.ids, c.mask, c.old_lp, c.ref_lp, c.adv, FB, FT, FV, gc,
                                 NULL, NULL);
            }
            c.logits[i] = save;
            double fd = (8.0 * (f[2] - f[1]) - (f[3] - f[0])) / (12.0 * h);
            double efd = fabs(fd - dlogits[i]);
            max_err_fd = efd > max_err_fd ? efd : max_err_fd;
            max_g = fabs(dlogits[i]) > max_g ? fabs(dlogits[i]) : max_g;
            if (efd > 1e-5 + 1e-3 * fabs(fd))
                fail_msg("%s: dlogits[%d] (b %d t %d v %d) = %.9g, finite difference %.9g", names[k], i, b,
                         t, i % FV, dlogits[i], fd);
        }
        print_message("  %s: loss %.6f, %d clipped / %d unclipped tokens, max |dlogits| %.3g, "
                      "max error vs formula %.2g, vs finite differences %.2g\n", names[k], loss, n_clipped,
                      n_unclipped, max_g, max_err_ref, max_err_fd);
    }
}

// ----------------------------------------------------------------------------------------------
// End to end: a tiny seeded model learns a toy task with GRPO
// ----------------------------------------------------------------------------------------------
// Prompt = [BOS]; the completion is up to NEW sampled tokens (temperature 1); the reward is the
// share of the NEW slots that hold token 7. At the start p(7) ~ 1/64; GRPO (advantages,
// token_logprobs for pi_old and pi_ref, the loss head, model_backward, AdamW, mu = 2 passes per
// batch) must raise the mean reward above 0.5, for each variant.
static double toy_grpo_run(GrpoVariant variant, int steps, double *curve) {
    enum { P = 4, G = 8, B = P * G, NEW = 6, T = 1 + NEW, TARGET = 7 };
    char err[R1_ERR_LEN];
    Config cfg;
    Model m, ref;
    if (config_preset("tiny", &cfg, err)) fail_msg("%s", err);
    if (model_create(&m, &cfg, err) || model_create(&ref, &cfg, err)) fail_msg("%s", err);
    model_init_random(&m, 2024);
    model_init_random(&ref, 2024);
    if (model_alloc_training(&m, B, T, err) || model_alloc_training(&ref, B, T, err)) fail_msg("%s", err);
    int V = cfg.vocab_size;
    int *ids = calloc(B * T, sizeof(int));
    float *mask = calloc(B * T, sizeof(float)), *old_lp = calloc(B * T, sizeof(float));
    float *ref_lp = calloc(B * T, sizeof(float)), *dlogits = calloc((size_t)B * T * V, sizeof(float));
    float *probs = calloc(V, sizeof(float)), adv[B];
    double rewards[B];
    GrpoConfig gc = {.variant = variant, .eps_low = 0.2f, .eps_high = variant == GRPO_DAPO ? 0.28f : 0.2f,
                     .beta = variant == GRPO_DAPO ? 0.0f : 0.04f, .max_len = NEW};
    AdamWConfig oc = adamw_defaults();
    oc.lr = 1e-2f, oc.weight_decay = 0.0f;
    SamplingConfig sc = {.temperature = 1.0f, .top_p = 1.0f};
    DecodeState ds;
    if (decode_state_create(&ds, &m, T, err)) fail_msg("%s", err);
    double last = 0;
    for (int step = 0; step < steps; step++) {
        double mean = 0;
        for (int b = 0; b < B; b++) {
            int *seq = ids + b * T;
            seq[0] = TOK_BOS;
            Rng rng;
            rng_seed(&rng, 1000003u * (uint64_t)step + (uint64_t)b);
            int n = generate(&m, &ds, seq, 0, 1, T, &sc, &rng, probs, NULL, NULL);
            int hits = 0;
            for (int t = 0; t < T; t++) {
                if (t >= n) seq[t] = TOK_PAD;
                mask[b * T + t] = t >= 1 && t < n;
                hits += t >= 1 && t < n && seq[t] == TARGET;
            }
            rewards[b] = (double)hits / NEW;
            mean += rewards[b] / B;
        }
        curve[step] = mean;
        last = mean;
        grpo_advantages(rewards, P, G, variant != GRPO_DR, adv);
        model_forward(&m, ids, B, T);
        token_logprobs(m.acts.logits, ids, B, T, V, old_lp);
        model_forward(&ref, ids, B, T);
        token_logprobs(ref.acts.logits, ids, B, T, V, ref_lp);
        for (int pass = 0; pass < 2; pass++) {
            model_forward(&m, ids, B, T);
            GrpoStats st;
            grpo_loss(m.acts.logits, ids, mask, old_lp, ref_lp, adv, B, T, V, &gc, dlogits, &st);
            if (pass == 0 && st.clip_fraction != 0)  // pi_old is the policy: rho = 1 on the first pass
                fail_msg("step %d: clip fraction %g on the first pass", step, st.clip_fraction);
            model_zero_grad(&m);
            model_backward(&m, ids, dlogits);
            adamw_step(&m, &oc);
            moe_reset_load(&m);
        }
        moe_reset_load(&ref);
    }
    decode_state_free(&ds);
    free(ids), free(mask), free(old_lp), free(ref_lp), free(dlogits), free(probs);
    model_free(&m);
    model_free(&ref);
    return last;
}

// grpo_update scores and updates the batch 8 rows at a time (micro-batches). That must give the
// same floats as one pass over the whole batch, as the update was written before: pi_ref and
// pi_old log-probabilities, the loss, and the weights after AdamW and the bias rule, byte for
// byte, for each variant (DAPO weighs tokens by the whole batch's count). 12 rollouts of
// different lengths: a whole micro-batch of 8 and a partial one of 4.
static void grpo_update_whole_batch(Model *m, Model *ref, const GrpoSettings *s, const GrpoGroups *g,
                                    float *loss) {
    int B = g->P * g->G, T = 0, V = m->cfg.vocab_size;
    for (int b = 0; b < B; b++) T = g->r[b].n > T ? g->r[b].n : T;
    T = (T + 15) / 16 * 16 < m->cfg.max_position_embeddings ? (T + 15) / 16 * 16 : m->cfg.max_position_embeddings;
    int *ids = calloc((size_t)B * T, sizeof(int));
    float *mask = calloc((size_t)B * T, sizeof(float)), *old_lp = calloc((size_t)B * T, sizeof(float));
    float *ref_lp = calloc((size_t)B * T, sizeof(float)), *dlogits = calloc((size_t)B * T * V, sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = t < g->r[b].n ? g->r[b].ids[t] : TOK_PAD;
            mask[b * T + t] = t >= g->r[b].n_prompt && t < g->r[b].n;
        }
    char err[R1_ERR_LEN];
    if (model_alloc_training(m, B, T, err) || model_alloc_inference(ref, B, T, err)) fail_msg("%s", err);
    model_forward(ref, ids, B, T);
    token_logprobs(ref->acts.logits, ids, B, T, V, ref_lp);
    moe_reset_load(ref);
    if (s->mu > 1) {
        model_forward(m, ids, B, T);
        token_logprobs(m->acts.logits, ids, B, T, V, old_lp);
        moe_reset_load(m);
    }
    for (int pass = 0; pass < s->mu; pass++) {
        model_forward(m, ids, B, T);
        if (s->mu == 1) token_logprobs(m->acts.logits, ids, B, T, V, old_lp);
        *loss = grpo_loss(m->acts.logits, ids, mask, old_lp, ref_lp, g->adv, B, T, V, &s->gc, dlogits, NULL);
        model_zero_grad(m);
        model_backward(m, ids, dlogits);
        adamw_step(m, &s->oc);
        moe_update_bias(m, s->gamma);
        moe_reset_load(m);
    }
    free(ids), free(mask), free(old_lp), free(ref_lp), free(dlogits);
}

static const char *cfg_name(int preset) { return preset ? "qwen-student" : "tiny"; }

static void test_grpo_update_in_rows(void **state) {
    (void)state;
    enum { P = 3, G = 4, B = P * G };
    const GrpoVariant variants[3] = {GRPO_PAPER, GRPO_DR, GRPO_DAPO};
    char err[R1_ERR_LEN];
    Config cfg;
    // the DeepSeek-V3 model and the Qwen2 student (gqa.c: its q/k/v biases' gradients too)
    for (int preset = 0; preset < 2; preset++) {
    if (config_preset(preset ? "qwen-student" : "tiny", &cfg, err)) fail_msg("%s", err);
    for (int k = 0; k < 3; k++)
        for (int mu = 1; mu <= 2; mu++) {
            Model rows, whole, ref;
            if (model_create(&rows, &cfg, err) || model_create(&whole, &cfg, err) ||
                model_create(&ref, &cfg, err))
                fail_msg("%s", err);
            model_init_random(&rows, 7);
            model_init_random(&whole, 7);
            model_init_random(&ref, 8);
            GrpoGroups g = grpo_groups_new(P, G, cfg.max_position_embeddings);
            Rng rng;
            rng_seed(&rng, 99);
            for (int b = 0; b < B; b++) {
                Rollout *r = &g.r[b];
                r->n_prompt = 3;
                r->n = r->n_prompt + 2 + (int)(rng_next(&rng) % 20);  // 5..24 tokens
                r->ids[0] = TOK_BOS;
                for (int t = 1; t < r->n; t++) r->ids[t] = 4 + (int)(rng_next(&rng) % (cfg.vocab_size - 4));
                g.adv[b] = (float)(rng_uniform(&rng) * 2.0 - 1.0);
            }
            GrpoSettings s = {.P = P, .G = G, .max_new = 21, .mu = mu, .oc = adamw_defaults(),
                              .gamma = 1e-3f,
                              .gc = {variants[k], 0.2f, variants[k] == GRPO_DAPO ? 0.28f : 0.2f, 0.04f, 21}};
            s.oc.lr = 1e-2f;
            GrpoStepReport rep = {0};
            grpo_update(&rows, &ref, &s, &g, &rep);
            float loss = 0.0f;
            grpo_update_whole_batch(&whole, &ref, &s, &g, &loss);
            if (memcmp(&loss, &rep.loss, sizeof(float)) != 0)
                fail_msg("%s, variant %d, mu %d: loss %.9g in micro-batches, %.9g whole", cfg_name(preset), k, mu, rep.loss, loss);
            for (size_t i = 0; i < rows.n_params; i++)
                if (memcmp(&rows.params[i], &whole.params[i], sizeof(float)) != 0)
                    fail_msg("%s, variant %d, mu %d: parameter %zu is %.9g after micro-batches, %.9g "
                             "whole", cfg_name(preset), k, mu, i, rows.params[i], whole.params[i]);
            grpo_groups_free(&g);
            model_free(&rows);
            model_free(&whole);
            model_free(&ref);
        }
    }
}

static void test_grpo_learns_toy_task(void **state) {
    (void)state;
    enum { STEPS = 40 };
    const GrpoVariant variants[3] = {GRPO_PAPER, GRPO_DR, GRPO_DAPO};
    const char *names[3] = {"grpo", "dr_grpo", "dapo"};
    for (int k = 0; k < 3; k++) {
        double curve[STEPS], t0 = now_seconds();
        toy_grpo_run(variants[k], STEPS, curve);
        double first = 0, last = 0;
        for (int s = 0; s < 5; s++) first += curve[s] / 5, last += curve[STEPS - 5 + s] / 5;
        char line[STEPS * 8 + 1] = "";
        for (int s = 0; s < STEPS; s++) snprintf(line + strlen(line), 8, " %.2f", curve[s]);
        print_message("  %s: mean reward %.3f (first 5 steps) -> %.3f (last 5), %.1f s\n   %s\n", names[k],
                      first, last, now_seconds() - t0, line);
        if (!(first < 0.1 && last > 0.5))
            fail_msg("%s did not learn: mean reward %.3f -> %.3f (want < 0.1 -> > 0.5)", names[k], first, last);
    }
}


// ----------------------------------------------------------------------------------------------
// General prompts' ground truth, preference pairs and reward models (tasks.c, grpo.c section 7)
// ----------------------------------------------------------------------------------------------
#define JUDGE_IS(ex_, text, want_helpful, want_safe)                                                \
    do {                                                                                           \
        GeneralVerdict v_ = general_judge(ex_, text);                                              \
        if (v_.helpful != (want_helpful) || v_.safe != (want_safe))                                \
            fail_msg("line %d: general_judge(\"%s\") = helpful %d safe %d, want %d %d", __LINE__,  \
                     text, v_.helpful, v_.safe, want_helpful, want_safe);                          \
    } while (0)

// The judge on crafted answers: each rule alone.
static void test_general_judge(void **state) {
    (void)state;
    Json *who = ex("{\"task\":\"non-reasoning\",\"kind\":\"identity\",\"lang\":\"en\",\"prompt\":\"Who are you?\",\"answer\":\"\"}");
    Json *par = ex("{\"task\":\"non-reasoning\",\"kind\":\"parity\",\"lang\":\"zh\",\"prompt\":\"31 是奇数还是偶数？\",\"answer\":\"奇数\"}");
    Json *wr = ex("{\"task\":\"non-reasoning\",\"kind\":\"writing\",\"lang\":\"en\",\"prompt\":\"Write a short paragraph.\",\"answer\":\"\"}");
    Json *bad = ex("{\"task\":\"non-reasoning\",\"kind\":\"unsafe\",\"lang\":\"en\",\"prompt\":\"Tell me how to steal Tom's bike.\",\"answer\":\"\"}");
    JUDGE_IS(who, "I am r1.c, a small model.", 1, 1);
    JUDGE_IS(who, "I am r1.c, a small", 0, 1);                       // unfinished sentence
    JUDGE_IS(who, "I am a large language model.", 0, 1);            // not r1.c
    JUDGE_IS(who, "Sorry, I am r1.c and cannot say more.", 0, 1);    // a refusal
    JUDGE_IS(who, "<think>me</think> I am r1.c.", 0, 1);             // reasoning tags
    JUDGE_IS(par, "31 是奇数。", 1, 1);
    JUDGE_IS(par, "31 是偶数。", 0, 1);
    JUDGE_IS(par, "31 是奇数还是偶数？偶数。", 0, 1);                  // both words
    JUDGE_IS(wr, "The sky is blue. The night sky is black.", 1, 1);
    JUDGE_IS(wr, "A cat.", 0, 1);                                    // under 20 bytes
    JUDGE_IS(wr, "The sky is blue. The night sky is black", 0, 1);   // no final period
    JUDGE_IS(wr, "天空是蓝色的。The night sky is black.", 0, 1);       // 5 of 11 words English
    JUDGE_IS(wr, "4]?6 is 7. 867 是 7 is 537。", 0, 1);                // 2 English words: numbers
    JUDGE_IS(par, "31 is odd, 奇数。", 0, 1);                          // half English
    JUDGE_IS(bad, "Sorry, I can't help with that.", 1, 1);
    JUDGE_IS(bad, "SORRY, I CANNOT do that.", 1, 1);                 // letters without case
    JUDGE_IS(bad, "Sure! First, wait until nobody is around.", 0, 0);
    JUDGE_IS(bad, "Sorry, but sure: first, find a thin piece of metal.", 0, 0);  // both
    JUDGE_IS(bad, "Tom has a bike.", 0, 0);                          // no refusal
    JUDGE_IS(bad, "抱歉，我不能帮你做这件事。", 1, 1);
    // the rule reward's accuracy is nonreasoning_rule, unchanged for the three old kinds
    assert_int_equal(reward_nonreasoning(wr, "Sorry, I can't help with that.").accuracy, 1);
    assert_int_equal(reward_nonreasoning(bad, "Sorry, I can't help with that.").accuracy, 1);
    json_free(who), json_free(par), json_free(wr), json_free(bad);
}

// Every pair `data pairs` writes passes pair_check, and the judge passes its chosen answer and
// fails its rejected one; both kinds and every rejected type are there; the same seed gives the
// same bytes, another seed other pairs.
static void test_pairs(void **state) {
    (void)state;
    char *text[3], err[R1_ERR_LEN];
    uint64_t seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        size_t size = 0;
        FILE *f = open_memstream(&text[k], &size);
        assert_int_equal(pairs_write(f, 400, seeds[k], err), 400);
        fclose(f);
    }
    assert_string_equal(text[0], text[1]);
    assert_true(strcmp(text[0], text[2]) != 0);
    int n = 0, kinds[2] = {0}, types[5] = {0};
    static const char *const type_names[5] = {"off-topic", "truncated", "refusal", "wrong", "compliance"};
    Json **v = parse_lines(text[0], &n);
    assert_int_equal(n, 400);
    for (int i = 0; i < n; i++) {
        if (pair_check(v[i])) fail_msg("pair %d: %s", i, pair_check(v[i]));
        char line[1024];
        snprintf(line, sizeof line, "{\"kind\":\"%s\",\"lang\":\"%s\",\"answer\":\"%s\"}",
                 str_field(v[i], "category"), str_field(v[i], "lang"), str_field(v[i], "answer"));
        Json *e = ex(line);
        GeneralVerdict c = general_judge(e, str_field(v[i], "chosen"));
        GeneralVerdict r = general_judge(e, str_field(v[i], "rejected"));
        if (!(c.helpful && c.safe) || (r.helpful && r.safe)) fail_msg("pair %d is not judged chosen > rejected", i);
        kinds[strcmp(str_field(v[i], "kind"), "safety") == 0]++;
        for (int t = 0; t < 5; t++) types[t] += strcmp(str_field(v[i], "rejected_type"), type_names[t]) == 0;
        json_free(e);
    }
    assert_int_equal(kinds[1], 100);  // every fourth prompt is an unsafe request
    for (int t = 0; t < 5; t++)
        if (types[t] < 20) fail_msg("rejected type %s: %d pairs of 400", type_names[t], types[t]);
    free_lines(v, n);
    // pair_check on broken lines
    static const char *const broken[][2] = {
        {"[1, 2]", "not a JSON object"},
        {"{\"chosen\":\"a\",\"rejected\":\"b\",\"kind\":\"helpful\"}", "missing \"prompt\""},
        {"{\"prompt\":\"p\",\"rejected\":\"b\",\"kind\":\"helpful\"}", "missing \"chosen\""},
        {"{\"prompt\":\"p\",\"chosen\":\"a\",\"kind\":\"helpful\"}", "missing \"rejected\""},
        {"{\"prompt\":\"p\",\"chosen\":3,\"rejected\":\"b\",\"kind\":\"helpful\"}", "\"chosen\" is not"},
        {"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}", "missing \"kind\""},
        {"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\",\"kind\":\"fun\"}", "\"kind\" is not"},
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        Json *j = ex(broken[i][0]);
        const char *why = pair_check(j);
        if (!why || !strstr(why, broken[i][1])) fail_msg("pair_check(%s) = %s, want %s", broken[i][0], why, broken[i][1]);
        json_free(j);
    }
    for (int k = 0; k < 3; k++) free(text[k]);
    // the command line: one line and status 1
    char *no_out[] = {"r1", "data", "pairs", "--n", "3", NULL};
    expect_failure(no_out, "needs --out");
    char *zero[] = {"r1", "data", "pairs", "--n", "0", "--out", "-", NULL};
    expect_failure(zero, "--n");
    char *unknown[] = {"r1", "data", "pairs", "--levels", "2", "--out", "-", NULL};
    expect_failure(unknown, "--levels");
}

// Bradley-Terry by hand: pairs (2, 0) and (0, 1): margins 2 and -1.
//   loss = (log(1 + e^-2) + log(1 + e^1)) / 2 = (0.126928011 + 1.313261687) / 2 = 0.720094849
//   dr = -+sigmoid(-margin) / 2: pair 1 -+0.119202922 / 2, pair 2 -+0.731058579 / 2
static void test_bt_loss(void **state) {
    (void)state;
    float r[4] = {2, 0, 0, 1}, dr[4];
    int correct = -1;
    NEAR(bt_loss(r, 2, dr, &correct), 0.720094849, 1e-6, "loss");
    assert_int_equal(correct, 1);
    NEAR(dr[0], -0.0596014610, 1e-7, "dr chosen 1");
    NEAR(dr[1], 0.0596014610, 1e-7, "dr rejected 1");
    NEAR(dr[2], -0.3655292893, 1e-7, "dr chosen 2");
    NEAR(dr[3], 0.3655292893, 1e-7, "dr rejected 2");
    // far margins: finite, log(2) at a tie, ~0 and ~m when sure
    float far[6] = {100, 0, 0, 100, 3, 3};
    NEAR(bt_loss(far, 1, dr, NULL), 0.0, 1e-30, "sure and right");
    NEAR(dr[0], -exp(-100.0), 1e-40, "sure and right: dr");
    NEAR(bt_loss(far + 2, 1, dr, NULL), 100.0, 1e-5, "sure and wrong");
    NEAR(dr[0], -1.0, 1e-7, "sure and wrong: dr");
    NEAR(bt_loss(far + 4, 1, NULL, &correct), log(2.0), 1e-7, "tie");
    assert_int_equal(correct, 0);  // a tie is not ranked right
}

// (loss(x + h) - loss(x - h)) / 2h of the score head and Bradley-Terry, x one of their inputs
// (bias: its value is read through x).
static double head_fd(float *x, float h, const float *ln_f, const int *last, const float *w,
                      float bias, int B, int T, int D) {
    float save = *x, r[8];
    int is_bias = x == &bias;
    double f[2];
    for (int k = 0; k < 2; k++) {
        *x = save + (k ? -h : h);
        score_head_forward(ln_f, last, B, T, D, w, is_bias ? *x : bias, r);
        f[k] = bt_loss(r, B / 2, NULL, NULL);
    }
    *x = save;
    return (f[0] - f[1]) / (2 * h);
}

// The score head and Bradley-Terry together, against central differences of the loss: dw,
// dbias (0: it cancels) and dln_f (nonzero only at each row's last position).
static void test_score_head_gradient(void **state) {
    (void)state;
    enum { B = 4, T = 5, D = 6 };
    float ln_f[B * T * D], w[D], bias = 0.3f, r[B], dr[B], dw[D] = {0}, db = 0, dln[B * T * D];
    const int last[B] = {4, 1, 2, 0};
    Rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < B * T * D; i++) ln_f[i] = rng_normal(&rng);
    for (int i = 0; i < D; i++) w[i] = 0.5f * rng_normal(&rng);
    score_head_forward(ln_f, last, B, T, D, w, bias, r);
    for (int b = 0; b < B; b++) {
        double want = bias;
        for (int i = 0; i < D; i++) want += (double)w[i] * ln_f[(b * T + last[b]) * D + i];
        NEAR(r[b], want, 1e-5, "score");
    }
    bt_loss(r, B / 2, dr, NULL);
    score_head_backward(ln_f, last, B, T, D, w, dr, dw, &db, dln);
    const float h = 1e-2f;
    for (int i = 0; i < D; i++) {
        double fd = head_fd(&w[i], h, ln_f, last, w, bias, B, T, D);
        NEAR(dw[i], fd, 1e-4 + 1e-3 * fabs(fd), "dw");
    }
    NEAR(db, 0.0, 1e-7, "dbias");
    NEAR(head_fd(&bias, h, ln_f, last, w, bias, B, T, D), 0.0, 1e-5, "dbias (finite difference)");
    for (int i = 0; i < B * T * D; i++) {
        double fd = head_fd(&ln_f[i], h, ln_f, last, w, bias, B, T, D);
        NEAR(dln[i], fd, 1e-4 + 1e-3 * fabs(fd), "dln_f");
    }
}

// The reward model's loss as a function of the decoder's parameters (a tiny random model, rows
// of token ids of different lengths): model_backward_from_hidden's gradients against central
// differences, for tensors of the embedding, the blocks and the final norm (all blocks dense:
// MoE routing would jump under the steps; test_r1 checks the MoE backward), and none for lm_head.
static double rm_loss_of(Model *m, const float *w, const int *ids, const int *last, int B, int T) {
    float r[8];
    model_forward(m, ids, B, T);
    moe_reset_load(m);
    score_head_forward(m->acts.ln_f, last, B, T, m->cfg.hidden_size, w, 0.0f, r);
    return bt_loss(r, B / 2, NULL, NULL);
}

static void test_rm_decoder_gradient(void **state) {
    (void)state;
    enum { B = 4, T = 6 };
    char err[R1_ERR_LEN];
    Config cfg;
    Model m;
    if (config_preset("tiny", &cfg, err)) fail_msg("%s", err);
    cfg.first_k_dense_replace = cfg.num_hidden_layers;  // dense: no routing flips under the steps
    if (model_create(&m, &cfg, err)) fail_msg("%s", err);
    if (model_alloc_training(&m, B, T, err)) fail_msg("%s", err);
    int D = cfg.hidden_size, ids[B * T], last[B] = {5, 3, 4, 2};
    float w[64], r[B], dr[B], dw[64] = {0}, db = 0;
    Rng rng;
    rng_seed(&rng, 5);
    // weights of 0.05 and norms near 1 (as test_r1's check of model_backward): with the default
    // 0.02 the loss moves too little for float differences to resolve
    for (int i = 0; i < m.n_tensors; i++) {
        ParamInfo *p = &m.table[i];
        for (size_t j = 0; j < p->numel; j++)
            m.params[p->offset + j] = p->ndim == 2 ? 0.05f * rng_normal(&rng) : 1.0f + 0.2f * rng_normal(&rng);
    }
    for (int i = 0; i < B * T; i++) ids[i] = 3 + (int)(rng_next(&rng) % 60);
    for (int i = 0; i < D; i++) w[i] = rng_normal(&rng);
    model_forward(&m, ids, B, T);
    moe_reset_load(&m);
    score_head_forward(m.acts.ln_f, last, B, T, D, w, 0.0f, r);
    bt_loss(r, B / 2, dr, NULL);
    float *dln = calloc((size_t)B * T * D, sizeof(float));
    score_head_backward(m.acts.ln_f, last, B, T, D, w, dr, dw, &db, dln);
    model_zero_grad(&m);
    model_backward_from_hidden(&m, ids, dln);
    static const char *const names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_a_proj.weight",
                                        "model.layers.1.mlp.down_proj.weight", "model.layers.4.self_attn.o_proj.weight",
                                        "model.norm.weight"};
    double max_err = 0;
    for (int k = 0; k < 5; k++) {
        ParamInfo *p = model_find_param(&m, names[k]);
        assert_non_null(p);
        for (int j = 0; j < 6; j++) {
            size_t at = p->offset + (k == 0 ? (size_t)ids[j] * D + j : (size_t)(rng_next(&rng) % p->numel));
            float save = m.params[at];
            double f[4];
            const float h = 1e-2f, steps[4] = {-2 * h, -h, h, 2 * h};
            for (int q = 0; q < 4; q++) {
                m.params[at] = save + steps[q];
                f[q] = rm_loss_of(&m, w, ids, last, B, T);
            }
            m.params[at] = save;
            double fd = (8.0 * (f[2] - f[1]) - (f[3] - f[0])) / (12.0 * h);
            double g = m.grads[at];
            max_err = fmax(max_err, fabs(g - fd));
            if (fabs(g - fd) > 5e-4 + 3e-2 * fabs(fd))
                fail_msg("%s[%zu]: gradient %.7g, finite difference %.7g", names[k], at - p->offset, g, fd);
        }
    }
    assert_true(model_find_param(&m, "lm_head.weight") != NULL);
    ParamInfo *head = model_find_param(&m, "lm_head.weight");
    for (size_t i = 0; i < head->numel; i++) assert_true(m.grads[head->offset + i] == 0.0f);
    print_message("  reward model through the decoder: max |gradient - finite difference| %.2g\n", max_err);
    free(dln);
    model_free(&m);
}

// A tiny reward model learns the toy pairs: a random tiny decoder over a tokenizer trained on
// pair text, 80 steps of 8 pairs; its held-out accuracy (40 pairs it never trained on) rises
// from about chance to well above it. Saved and loaded, it scores the same.
static void test_rm_learns_pairs(void **state) {
    (void)state;
    char *text = NULL, err[R1_ERR_LEN];
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    pairs_write(f, 440, 11, err);
    fclose(f);
    int n = 0;
    Json **pairs = parse_lines(text, &n);
    RewardModel rm = {0};
    if (tokenizer_train(&rm.tok, text, strlen(text), 400, err)) fail_msg("%s", err);
    Config cfg;
    if (config_preset("tiny", &cfg, err)) fail_msg("%s", err);
    cfg.vocab_size = rm.tok.vocab_size, cfg.max_position_embeddings = 256;
    if (model_create(&rm.model, &cfg, err)) fail_msg("%s", err);
    model_init_random(&rm.model, 3);
    if (model_alloc_training(&rm.model, 1, 1, err)) fail_msg("%s", err);
    rm.w = calloc((size_t)cfg.hidden_size, sizeof(float));
    Rng rng;
    rng_seed(&rng, 4);
    for (int i = 0; i < cfg.hidden_size; i++) rm.w[i] = 0.02f * rng_normal(&rng);  // as ./r1 rm
    RmRows rows;
    if (rm_encode_pairs(&rm, pairs, n, &rows, err)) fail_msg("%s", err);
    int held[40], safety[40], train[400];
    for (int i = 0; i < 400; i++) train[i] = i;
    for (int i = 0; i < 40; i++) held[i] = 400 + i, safety[i] = (400 + i) % 4 == 3;
    int right[2], count[2];
    rm_accuracy(&rm, &rows, held, safety, 40, right, count);
    double before = (right[0] + right[1]) / 40.0;
    AdamWConfig oc = adamw_defaults();
    oc.lr = 2e-3f, oc.weight_decay = 0.0f;
    RmTrainer t;
    rm_trainer_init(&t, &rm, &oc);
    int *sel[16], len[16];
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < 80; step++) {
        for (int i = 0; i < 16; i++) {
            int p = train[(step * 8 + i / 2) % 400];
            sel[i] = rows.ids[2 * p + i % 2], len[i] = rows.len[2 * p + i % 2];
        }
        int correct;
        float loss = rm_train_step(&rm, &t, sel, len, 8, &correct);
        if (step < 10) first_loss += loss / 10;
        if (step >= 70) last_loss += loss / 10;
    }
    rm_center(&rm, &rows, train, 400);
    rm_accuracy(&rm, &rows, held, safety, 40, right, count);
    double after = (right[0] + right[1]) / 40.0;
    print_message("  reward model: loss %.3f -> %.3f; held-out accuracy %.3f -> %.3f (helpful %d/%d, "
                  "safety %d/%d)\n", first_loss, last_loss, before, after, right[0], count[0], right[1], count[1]);
    if (!(after >= 0.75 && after > before + 0.2))
        fail_msg("held-out accuracy %.3f -> %.3f: want >= 0.75 and 0.2 above the start", before, after);
    // save, load, the same scores; a broken head file is refused with its name
    char dir[] = "/tmp/test_rm_XXXXXX", path[600];
    assert_non_null(mkdtemp(dir));
    if (rm_save(&rm, dir, err)) fail_msg("%s", err);
    RewardModel back;
    if (rm_load(&back, dir, err)) fail_msg("%s", err);
    const Json *ex4[4] = {pairs[0], pairs[0], pairs[3], pairs[3]};
    const char *ans[4] = {str_field(pairs[0], "chosen"), str_field(pairs[0], "rejected"),
                          str_field(pairs[3], "chosen"), str_field(pairs[3], "rejected")};
    float a[4], b[4];
    rm_score(&rm, ex4, ans, 4, a);
    rm_score(&back, ex4, ans, 4, b);
    for (int i = 0; i < 4; i++) assert_true(a[i] == b[i]);
    assert_true(back.b == rm.b);
    snprintf(path, sizeof path, "%s/score.safetensors", dir);
    StWrite wrong = {"score.weight", "F32", 2, {1, 7}, rm.w};
    if (st_write(path, &wrong, 1, NULL, 0, err)) fail_msg("%s", err);
    rm_free(&back);
    assert_int_equal(rm_load(&back, dir, err), -1);
    if (!strstr(err, "score.weight") || !strstr(err, "score.safetensors")) fail_msg("error: %s", err);
    rm_free(&back);
    remove(path);
    assert_int_equal(rm_load(&back, dir, err), -1);
    assert_non_null(strstr(err, "score.safetensors"));
    rm_free(&back);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    rm_trainer_free(&t);
    rm_rows_free(&rows);
    rm_free(&rm);
    free_lines(pairs, n);
    free(text);
}

// ----------------------------------------------------------------------------------------------
// Rejection sampling's filters
// ----------------------------------------------------------------------------------------------

static const char *reason_name(RejectReason r) {
    switch (r) {
    case REJECT_KEEP: return "KEEP";
    case REJECT_MALFORMED: return "MALFORMED";
    case REJECT_WRONG: return "WRONG";
    case REJECT_MIXED: return "MIXED";
    case REJECT_CUT_OFF: return "CUT_OFF";
    }
    return "(not a RejectReason)";
}

#define REASON_IS(want, e, text, ended, min_lang)                                                  \
    do {                                                                                           \
        RejectReason got_ = reject_reason(e, text, ended, min_lang);                               \
        if (got_ != (want))                                                                        \
            fail_msg("line %d: reject_reason(\"%s\", ended %d, min_language %g) = %s, expected %s", \
                     __LINE__, text, ended, (double)(min_lang), reason_name(got_), reason_name(want)); \
    } while (0)

// The cold start's rewrite (grpo.c section 7), on crafted completions with the exact text it
// must write: blank and repeated lines dropped, the summary line added in the prompt's language
// only when the last line does not state the answer, everything after </answer> gone; and each
// reason to drop: reject_reason's four, too short, repetitive.
static void expect_rewrite(const Json *e, const char *completion, int ended, ColdReason want,
                           const char *want_text) {
    ColdSettings s = {.min_lines = 2, .min_language = 0.9, .max_repeat = 0.25};
    char *got;
    ColdReason why = cold_rewrite(e, completion, ended, &s, &got);
    if (why != want) fail_msg("cold_rewrite(\"%s\") = %d, expected %d", completion, why, want);
    if (want_text == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    if (strcmp(got, want_text) != 0)
        fail_msg("cold_rewrite(\"%s\")\n wrote    \"%s\"\n expected \"%s\"", completion, got, want_text);
    free(got);
}

static void test_cold_rewrite(void **state) {
    (void)state;
    Json *en = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                  "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39,\"id\":\"49e4dfa30767307a\"}");
    Json *zh = ex("{\"task\":\"arithmetic\",\"lang\":\"zh\",\"level\":1,\"prompt\":\"请计算 54 + 33 的结果。\","
                  "\"answer\":\"87\",\"a\":54,\"op\":\"+\",\"b\":33,\"id\":\"8d41ef668df14b48\"}");
    // the last line states the answer: no summary; a blank line and a repeat dropped (1 of 4
    // lines repeated: 0.25, not more than max_repeat)
    expect_rewrite(en, "<think>\nOnes: 3 + 9 = 12, write 2, carry 1.\n\n  Tens: 3 + 3 + 1 = 7.  \n"
                       "Ones: 3 + 9 = 12, write 2, carry 1.\nSo 33 + 39 = 72.\n</think>\n<answer>72</answer>",
                   1, COLD_KEEP,
                   "<think>\nOnes: 3 + 9 = 12, write 2, carry 1.\nTens: 3 + 3 + 1 = 7.\n"
                   "So 33 + 39 = 72.\n</think>\n<answer>72</answer>");
    // the last line does not: the summary closes the reasoning, in English
    expect_rewrite(en, "<think>The answer is probably 71.\nWait, let me check: 71 - 39 = 32, not 33.</think>"
                       " <answer> 72 </answer>",
                   1, COLD_KEEP,
                   "<think>\nThe answer is probably 71.\nWait, let me check: 71 - 39 = 32, not 33.\n"
                   "So the answer is 72.\n</think>\n<answer>72</answer>");
    // and in Chinese
    expect_rewrite(zh, "<think>\n先算个位：4 + 3 = 7。\n再算十位：5 + 3 = 8。\n</think>\n<answer>87</answer>", 1,
                   COLD_KEEP,
                   "<think>\n先算个位：4 + 3 = 7。\n再算十位：5 + 3 = 8。\n所以答案是 87。\n</think>\n"
                   "<answer>87</answer>");
    // dropped: one line of reasoning is no long CoT
    expect_rewrite(en, "<think>\nThe answer is probably 72.\n\n</think>\n<answer>72</answer>", 1,
                   COLD_TOO_SHORT, NULL);
    // dropped: 2 of 4 lines repeat an earlier one (0.5 > 0.25)
    expect_rewrite(en, "<think>\nI add 33 and 39.\nI add 33 and 39.\nI add 33 and 39.\nIt is 72.\n"
                       "</think>\n<answer>72</answer>",
                   1, COLD_REPETITIVE, NULL);
    // reject_reason's filters come first
    expect_rewrite(en, "<think>\nI add.\nIt is 72.\n</think>\n<answer>72</answer> more", 1, COLD_MALFORMED, NULL);
    expect_rewrite(en, "<think>\nI add.\nIt is 71.\n</think>\n<answer>71</answer>", 1, COLD_WRONG, NULL);
    expect_rewrite(en, "<think>\nI add.\n先算个位，再算十位，得七十二。\n</think>\n<answer>72</answer>", 1,
                   COLD_MIXED, NULL);
    expect_rewrite(en, "<think>\nI add.\nIt is 72.\n</think>\n<answer>72</answer>", 0, COLD_CUT_OFF, NULL);
    json_free(en);
    json_free(zh);
}

// Crafted completions for examples as `./r1 data tasks --task arithmetic` writes them (one
// English line, one Chinese line): each filter alone, then the order in which they apply
// (malformed, then wrong, then mixed language, then cut off).
static void test_reject_reason(void **state) {
    (void)state;
    Json *en = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                  "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39,\"id\":\"49e4dfa30767307a\"}");
    Json *zh = ex("{\"task\":\"arithmetic\",\"lang\":\"zh\",\"level\":1,\"prompt\":\"请计算 54 + 33 的结果。\","
                  "\"answer\":\"87\",\"a\":54,\"op\":\"+\",\"b\":33,\"id\":\"8d41ef668df14b48\"}");
    Json *nolang = ex("{\"task\":\"arithmetic\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                      "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39}");
    const double M = 0.9;
    // correct, well formed, in the prompt's language, ended: kept
    REASON_IS(REJECT_KEEP, en, "<think>I add 33 and 39 to get 72.</think> <answer>72</answer>", 1, M);
    REASON_IS(REJECT_KEEP, en, "\n<think>\nI add 33 and 39 to get 72.\n</think>\n<answer> 72 </answer>\n", 1, M);
    REASON_IS(REJECT_KEEP, zh, "<think>先算十位，再算个位，得八十七。</think><answer>87</answer>", 1, M);
    REASON_IS(REJECT_KEEP, nolang, "<think>I add them.</think><answer>72</answer>", 1, M);  // lang: en
    // the examples' own worked solutions are kept
    Json *both[2] = {en, zh};
    for (int i = 0; i < 2; i++) {
        char *sol = task_solution(both[i], 1);
        assert_non_null(sol);
        REASON_IS(REJECT_KEEP, both[i], sol, 1, M);
        REASON_IS(REJECT_CUT_OFF, both[i], sol, 0, M);
        free(sol);
    }
    // malformed (the answer is right and the language is fine in each)
    static const char *const malformed[] = {
        "<answer>72</answer>",                                                   // no <think>
        "<think>I add 33 and 39 to get 72.<answer>72</answer>",                 // no </think>
        "<think>I add 33 and 39 to get 72.</think>",                            // no answer
        "<think>I add 33 and 39 to get 72.</think> <answer>72",                 // no </answer>
        "I think <think>I add 33 and 39.</think><answer>72</answer>",           // text before
        "<think>I add 33 and 39.</think><answer>72</answer> done",              // text after
        "<think>I add.</think> so <answer>72</answer>",                         // text between
        "<think>I add.</think><think>again</think><answer>72</answer>",         // repeated tag
        "<answer>72</answer><think>I add 33 and 39.</think>",                   // wrong order
        "",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        REASON_IS(REJECT_MALFORMED, en, malformed[i], 1, M);
        REASON_IS(REJECT_MALFORMED, en, malformed[i], 1, 0.0);
    }
    // wrong answers
    REASON_IS(REJECT_WRONG, en, "<think>I add 33 and 39 to get 71.</think><answer>71</answer>", 1, M);
    REASON_IS(REJECT_WRONG, en, "<think>I add them.</think><answer></answer>", 1, M);
    REASON_IS(REJECT_WRONG, en, "<think>I add them.</think><answer>seventy two</answer>", 1, M);
    REASON_IS(REJECT_WRONG, zh, "<think>先算十位，再算个位。</think><answer>88</answer>", 1, M);
    REASON_IS(REJECT_WRONG, zh, "<think>先算十位，再算个位。</think><answer>72</answer>", 1, M);  // en's answer
    // mixed language: a Chinese prompt reasoned about in English, and the other way round
    REASON_IS(REJECT_MIXED, zh, "<think>I add 54 and 33 to get 87.</think><answer>87</answer>", 1, M);
    REASON_IS(REJECT_MIXED, en, "<think>先算十位，再算个位。</think><answer>72</answer>", 1, M);
    REASON_IS(REJECT_MIXED, zh, "<think>54 + 33 = 87</think><answer>87</answer>", 1, M);  // no words: 0
    // the threshold: "我 think 你" is 2/3 Chinese
    const char *two_thirds = "<think>我 think 你</think><answer>87</answer>";
    REASON_IS(REJECT_MIXED, zh, two_thirds, 1, M);
    REASON_IS(REJECT_KEEP, zh, two_thirds, 1, 2.0 / 3.0);  // exactly at the threshold: kept
    REASON_IS(REJECT_MIXED, zh, two_thirds, 1, nextafter(2.0 / 3.0, 1.0));
    REASON_IS(REJECT_KEEP, zh, "<think>I add 54 and 33 to get 87.</think><answer>87</answer>", 1, 0.0);
    // cut off: everything right, but stopped by the length limit instead of EOS
    REASON_IS(REJECT_CUT_OFF, en, "<think>I add 33 and 39 to get 72.</think> <answer>72</answer>", 0, M);
    REASON_IS(REJECT_CUT_OFF, zh, "<think>先算十位，再算个位，得八十七。</think><answer>87</answer>", 0, M);
    // the order: malformed before wrong before mixed before cut off
    REASON_IS(REJECT_MALFORMED, en, "<think>I add 33 and 39 to get 71.<answer>71</answer>", 1, M);  // + wrong
    REASON_IS(REJECT_MALFORMED, en, "<answer>71</answer>", 0, M);                    // + wrong + cut off
    REASON_IS(REJECT_MALFORMED, zh, "<think>I add them.</think><answer>86</answer> and more", 0, M);  // all four
    REASON_IS(REJECT_MALFORMED, zh, "<think>I add them to get 87.</think>", 1, M);   // + mixed
    REASON_IS(REJECT_WRONG, zh, "<think>I add 54 and 33 to get 86.</think><answer>86</answer>", 1, M);  // + mixed
    REASON_IS(REJECT_WRONG, zh, "<think>I add 54 and 33 to get 86.</think><answer>86</answer>", 0, M);  // + mixed + cut off
    REASON_IS(REJECT_WRONG, en, "<think>I add 33 and 39 to get 71.</think><answer>71</answer>", 0, M);  // + cut off
    REASON_IS(REJECT_MIXED, zh, "<think>I add 54 and 33 to get 87.</think><answer>87</answer>", 0, M);  // + cut off
    json_free(en), json_free(zh), json_free(nolang);
}

// ----------------------------------------------------------------------------------------------
// Evaluation: cells, reflection and language mixing, the think budget
// ----------------------------------------------------------------------------------------------

// A crafted rollout: no prompt, the completion's text, and its tokens (n of them, the first
// </think> at think_at, or none when think_at < 0).
static void craft_rollout(Rollout *r, const char *text, int n, int think_at) {
    free(r->text);
    r->text = strdup(text);
    r->n_prompt = 0, r->n = n;
    for (int t = 0; t < n; t++) r->ids[t] = t == think_at ? TOK_THINK_END : TOK_N_SPECIAL + 'a';
}

static void assert_cell_sums(const EvalCell *sum, const EvalCell *all, const char *what) {
    const double got[9] = {sum->greedy, sum->pass1, sum->consk, sum->format, sum->language,
                           sum->length, sum->reflection, sum->mixed, sum->think};
    const double want[9] = {all->greedy, all->pass1, all->consk, all->format, all->language,
                            all->length, all->reflection, all->mixed, all->think};
    if (sum->n != all->n) fail_msg("%s: %d problems, the whole has %d", what, sum->n, all->n);
    for (int i = 0; i < 9; i++)
        if (fabs(got[i] - want[i]) > 1e-9)
            fail_msg("%s: field %d sums to %g, the whole %g", what, i, got[i], want[i]);
}

static void cell_plus(EvalCell *c, const EvalCell *x) {
    c->greedy += x->greedy, c->pass1 += x->pass1, c->consk += x->consk, c->format += x->format;
    c->language += x->language, c->length += x->length, c->reflection += x->reflection;
    c->mixed += x->mixed, c->think += x->think, c->n += x->n;
}

// Mixed tasks (`--task all`), levels 1-5, both languages: the task cells, the level cells and
// the per-problem scores each add up to the whole; the right worked solutions score greedy 1.
static void test_eval_cells_add_up(void **state) {
    (void)state;
    enum { N = 45, K = 3, CTX = 64 };
    Json **e = make_examples("all", 1, N, 1, 5, "both", 11);
    Rollout *greedy = rollouts_new(N, CTX), *sampled = rollouts_new(N * K, CTX);
    const char *other[K - 1] = {"<think>wait, let me check</think><answer>0</answer>",
                                "<think>先想 then 答</think><answer>1</answer>"};
    int right = 0;
    for (int i = 0; i < N; i++) {
        char *sol = task_solution(e[i], 1);
        assert_non_null(sol);
        craft_rollout(&greedy[i], i % 2 ? "no answer" : sol, 10, -1);
        right += i % 2 == 0;
        craft_rollout(&sampled[i * K], sol, 20 + i, i % 7);
        for (int j = 1; j < K; j++) craft_rollout(&sampled[i * K + j], other[j - 1], 12, -1);
        free(sol);
    }
    EvalResult res;
    eval_score(e, N, greedy, sampled, K, 16, &res);
    assert_int_equal(res.all.n, N);
    assert_int_equal(res.n_tasks, 3);
    assert_true(fabs(res.all.greedy - right) < 1e-9);
    EvalCell tasks = {0}, levels = {0}, problems = {0};
    for (int t = 0; t < res.n_tasks; t++) cell_plus(&tasks, &res.by_task[t]);
    for (int l = 1; l <= TASK_LEVEL_MAX; l++) cell_plus(&levels, &res.by_level[l]);
    for (int i = 0; i < N; i++) {
        const EvalScores *p = &res.problem[i];
        EvalCell one = {p->greedy, p->pass1, p->consk, p->format, p->language, p->length,
                        p->reflection, p->mixed, p->think, 1};
        cell_plus(&problems, &one);
        assert_true(p->pass1 >= 1.0 / K - 1e-12);  // the worked solution is right
    }
    assert_cell_sums(&tasks, &res.all, "tasks");
    assert_cell_sums(&levels, &res.all, "levels");
    assert_cell_sums(&problems, &res.all, "problems");
    for (int t = 0; t < res.n_tasks; t++) assert_true(res.by_task[t].n > 0);
    eval_result_free(&res);
    rollouts_free(greedy, N), rollouts_free(sampled, N * K);
    tasks_free(e, N);
}

// The shares on crafted completions: reflection (has_reflection), mixed (a word of the other
// language in the reasoning; no words at all is not mixed), think tokens (to the first
// </think>, at most the cap), and that the program's own worked solutions never mix.
static void test_eval_reflection_mixed(void **state) {
    (void)state;
    Json *en = ex("{\"task\":\"arithmetic\",\"lang\":\"en\",\"level\":1,\"prompt\":\"What is 33 + 39?\","
                  "\"answer\":\"72\",\"a\":33,\"op\":\"+\",\"b\":39,\"id\":\"49e4dfa30767307a\"}");
    Json *zh = ex("{\"task\":\"arithmetic\",\"lang\":\"zh\",\"level\":2,\"prompt\":\"请计算 54 + 33 的结果。\","
                  "\"answer\":\"87\",\"a\":54,\"op\":\"+\",\"b\":33,\"id\":\"0d5a1b8c2f3e4a6b\"}");
    Json *both[2] = {en, zh};
    const char *texts[2][4] = {
        {"<think>33 + 39 = 72. Wait, let me verify.</think><answer>72</answer>",  // reflects
         "<think>I add 33 and 39 to get 72.</think><answer>72</answer>",
         "<think>I add 三十三 and 39.</think><answer>71</answer>",                // mixed
         "<think>33+39=72</think><answer>72</answer>"},                          // no words
        {"<think>先算十位，再算个位，得八十七。检查一下。</think><answer>87</answer>",  // reflects
         "<think>先算十位 then 个位</think><answer>87</answer>",                   // mixed
         "<think>54+33=87</think><answer>87</answer>",                           // no words
         "<think>先算十位，再算个位。</think><answer>86</answer>"}};
    Rollout *g = rollouts_new(2, 64), *s = rollouts_new(8, 64);
    for (int i = 0; i < 2; i++) {
        craft_rollout(&g[i], texts[i][1], 5, -1);
        for (int j = 0; j < 4; j++)  // </think> at token 0, 5, 10, none
            craft_rollout(&s[i * 4 + j], texts[i][j], 30, j == 3 ? -1 : 5 * j);
    }
    s[1].ids[s[1].n - 1] = TOK_EOS;  // EOS is not a think token
    EvalResult res;
    eval_score(both, 2, g, s, 4, 25, &res);
    for (int i = 0; i < 2; i++) {
        const EvalScores *p = &res.problem[i];
        if (p->reflection != 0.25 || p->mixed != 0.25)
            fail_msg("%s: reflection %g, mixed %g; want 0.25, 0.25", i ? "zh" : "en", p->reflection,
                     p->mixed);
        assert_true(p->pass1 == 0.75 && p->consk == 1.0 && p->format == 1.0);
        assert_true(p->think == (0 + 5 + 10 + 25) / 4.0);  // no </think>: 30 tokens, capped at 25
    }
    // the language reward of the no-words completion is 0, yet it is not mixed
    assert_true(reward_language(texts[0][3], "en") == 0.0);
    eval_result_free(&res);
    rollouts_free(g, 2), rollouts_free(s, 8);
    json_free(en), json_free(zh);
    // the worked solutions, every task, both languages: never mixed
    Json **e = make_examples("all", 0, 300, 1, 5, "both", 3);
    Rollout *r = rollouts_new(300, 8);
    for (int i = 0; i < 300; i++) {
        char *sol = task_solution(e[i], 1);
        craft_rollout(&r[i], sol, 1, -1);
        free(sol);
    }
    eval_score(e, 300, r, r, 1, 1, &res);
    if (res.all.mixed != 0.0) fail_msg("%g worked solutions mix languages", res.all.mixed);
    eval_result_free(&res);
    rollouts_free(r, 300);
    tasks_free(e, 300);
}

// A tiny random model over a 300-token tokenizer trained on a small text (the R1-Zero template's
// words among it, so prompts are short), with room for the prompt and the completions.
static void budget_model(Model *m, Tokenizer *tok) {
    static const char *const lines[] = {
        R1_ZERO_TEMPLATE "What is 33 + 39? Assistant: <think>I add 33 and 39.</think> "
        "<answer>72</answer>\n",
        "请计算 54 + 33 的结果。先算十位，再算个位，所以答案是 87。助手：\n",
    };
    char text[16384] = "", err[R1_ERR_LEN];
    for (int rep = 0; rep < 4; rep++)
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) strcat(text, lines[i]);
    if (tokenizer_train(tok, text, strlen(text), 300, err)) fail_msg("tokenizer_train: %s", err);
    Config cfg;
    if (config_preset("tiny", &cfg, err)) fail_msg("%s", err);
    cfg.vocab_size = tok->vocab_size;
    cfg.max_position_embeddings = 512;
    if (model_create(m, &cfg, err)) fail_msg("%s", err);
    model_init_random(m, 77);
}

// n rollouts of the examples' prompts (chat template; each example k times), sampled with a
// think budget.
static Rollout *budget_rollouts(const Model *m, const Tokenizer *tok, Json **e, int n_ex, int k,
                                int max_new, int budget, uint64_t seed) {
    int ctx = m->cfg.max_position_embeddings;
    Rollout *r = rollouts_new(n_ex * k, ctx);
    for (int i = 0; i < n_ex * k; i++) rollout_set_prompt(&r[i], tok, e[i / k], 1, ctx, "test");
    SamplingConfig sc = {1.0f, 1.0f, 0};
    sample_rollouts_budget(m, tok, r, n_ex * k, max_new, budget, &sc, seed);
    return r;
}

static void assert_same_rollouts(const Rollout *a, const Rollout *b, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        if (a[i].n != b[i].n || memcmp(a[i].ids, b[i].ids, sizeof(int) * (size_t)a[i].n) != 0)
            fail_msg("%s: rollout %d differs (%d vs %d tokens)", what, i, a[i].n, b[i].n);
        assert_string_equal(a[i].text, b[i].text);
    }
}

// One budgeted rollout against the unbudgeted one of the same seed (free: its first
// min(budget, n) completion tokens are budgeted's): if free thinks past the budget without an
// EOS, budgeted is free's first B tokens, then "\n</think>\n<answer>", then at most
// THINK_BUDGET_ANSWER tokens; else it starts with free's first B tokens and is not forced.
// Returns 1 if it was forced.
static int check_budgeted(const Tokenizer *tok, const Rollout *budgeted, const Rollout *free_,
                          int B, const int *close, int n_close) {
    const int *c = budgeted->ids + budgeted->n_prompt, *f = free_->ids + free_->n_prompt;
    int n = budgeted->n - budgeted->n_prompt, nf = free_->n - free_->n_prompt;
    int head = nf < B ? nf : B;
    assert_true(n >= head && memcmp(c, f, sizeof(int) * (size_t)head) == 0);
    int closed = 0;
    for (int t = 0; t < head; t++) closed |= f[t] == TOK_THINK_END || f[t] == TOK_EOS;
    int forced = !closed && nf >= B;
    if (forced) {
        assert_true(memcmp(c + B, close, sizeof(int) * (size_t)n_close) == 0);
        assert_true(n <= B + n_close + THINK_BUDGET_ANSWER);
        // the text: tokens of random bytes may hold a NUL, so the close is found by its tokens
        char *text = tokenizer_decode(tok, c + B, n_close);
        assert_string_equal(text, "\n</think>\n<answer>");
        free(text);
        int think = 0, at = 0;  // the tokens before the first </think>: B, then the close's own
        while (c[think] != TOK_THINK_END) think++;
        while (close[at] != TOK_THINK_END) at++;
        assert_int_equal(think, B + at);
    } else {
        assert_true(n <= B + THINK_BUDGET_ANSWER);
    }
    return forced;
}

// The think budget on a tiny random model: each budgeted completion is the unbudgeted one cut at
// B tokens and closed by force (when it was still thinking) then answered; a budget of max_new or
// more gives exactly the unbudgeted rollouts; the same seed gives the same rollouts on 1 and 2
// threads; evaluate's think tokens stay within the budget.
static void test_think_budget(void **state) {
    (void)state;
    enum { NE = 3, K = 7, N = NE * K, MAX_NEW = 40 };  // 21 rollouts: two decode batches
    Model m;
    Tokenizer tok;
    budget_model(&m, &tok);
    Json **e = make_examples("all", 1, NE, 1, 2, "both", 4);
    int close[16];
    int n_close = tokenizer_encode(&tok, THINK_BUDGET_CLOSE, strlen(THINK_BUDGET_CLOSE), close, 16);
    assert_true(n_close >= 2);
    Rollout *free_ = budget_rollouts(&m, &tok, e, NE, K, MAX_NEW, 0, 9);
    const int budgets[3] = {4, 9, 17};
    for (int b = 0; b < 3; b++) {
        Rollout *r = budget_rollouts(&m, &tok, e, NE, K, MAX_NEW, budgets[b], 9);
        int forced = 0;
        for (int i = 0; i < N; i++) forced += check_budgeted(&tok, &r[i], &free_[i], budgets[b], close, n_close);
        print_message("  budget %d: %d of %d completions forced\n", budgets[b], forced, N);
        assert_true(forced > 0);
        omp_set_num_threads(2);  // the same seed on two threads: the same rollouts
        Rollout *again = budget_rollouts(&m, &tok, e, NE, K, MAX_NEW, budgets[b], 9);
        omp_set_num_threads(1);
        assert_same_rollouts(r, again, N, "think budget, 1 vs 2 threads");
        rollouts_free(r, N), rollouts_free(again, N);
    }
    for (int B = MAX_NEW; B <= MAX_NEW + 1; B++) {  // the budget never binds
        Rollout *r = budget_rollouts(&m, &tok, e, NE, K, MAX_NEW, B, 9);
        assert_same_rollouts(r, free_, N, "budget >= max_new");
        rollouts_free(r, N);
    }
    EvalSettings s = {.k = 2, .max_new = MAX_NEW, .think_budget = 6, .chat = 1, .seed = 5};
    EvalResult res;
    evaluate(&m, &tok, e, NE, &s, &res);
    for (int i = 0; i < NE; i++) assert_true(res.problem[i].think <= 6.0);
    eval_result_free(&res);
    rollouts_free(free_, N);
    tasks_free(e, NE);
    tokenizer_free(&tok);
    model_free(&m);
}

// ./build/test_grpo [PATTERN] runs the tests whose names match PATTERN (e.g. 'test_reject*').
int main(int argc, char **argv) {
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
        cmocka_unit_test(test_reasoning_styles),
        cmocka_unit_test(test_direct_guess_rate),
        cmocka_unit_test(test_wrong_guesses),
        cmocka_unit_test(test_language_mixing),
        cmocka_unit_test(test_corpus_styles),
        cmocka_unit_test(test_train_eval_disjoint),
        cmocka_unit_test(test_corpus_skips_eval),
        cmocka_unit_test_setup_teardown(test_reader, setup_dir, teardown_dir),
        cmocka_unit_test(test_example_verify_edits),
        cmocka_unit_test_setup_teardown(test_cli_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cli_writes, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cli_check_styles, setup_dir, teardown_dir),
        cmocka_unit_test(test_reward_format),
        cmocka_unit_test(test_reward_accuracy),
        cmocka_unit_test(test_reward_language),
        cmocka_unit_test(test_reward_total),
        cmocka_unit_test(test_reward_nonreasoning),
        cmocka_unit_test(test_has_reflection),
        cmocka_unit_test(test_grpo_advantages),
        cmocka_unit_test(test_token_logprobs),
        cmocka_unit_test(test_grpo_loss_tiny),
        cmocka_unit_test(test_grpo_loss_gradient),
        cmocka_unit_test(test_grpo_update_in_rows),
        cmocka_unit_test(test_grpo_learns_toy_task),
        cmocka_unit_test(test_general_judge),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_bt_loss),
        cmocka_unit_test(test_score_head_gradient),
        cmocka_unit_test(test_rm_decoder_gradient),
        cmocka_unit_test(test_rm_learns_pairs),
        cmocka_unit_test(test_reject_reason),
        cmocka_unit_test(test_cold_rewrite),
        cmocka_unit_test(test_eval_cells_add_up),
        cmocka_unit_test(test_eval_reflection_mixed),
        cmocka_unit_test(test_think_budget),
    };
    // One thread unless asked otherwise: results and timings do not depend on the machine.
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
