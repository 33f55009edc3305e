// pipeline.c: the whole R1 recipe as one command (`./r1 pipeline`): a table of stages, each the
// ./r1 command lines a student would type; the report that evaluates every stage and judges
// R1's findings from the numbers (with standard errors, over one seed or several); and the SVG
// charts the program draws itself (`./r1 plot`). main.c parses the flags and calls
// pipeline_run, pipeline_write_seeds_report and plot_run.
//
// Why a file of its own: main.c passed ~3,000 lines once the report learned to measure the
// findings; the recipe and its report are one concept (what to run, and what it showed), apart
// from the command line and the training loops.
//
// Contents:
//   1. Charts: metrics.jsonl as series, line charts, bar charts
//   2. The pipeline: running a stage, the stage table, the report's tables, the findings, seeds
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "r1.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

// ==============================================================================================
// 1. Charts: SVG line and bar charts, written by the program itself (`./r1 plot`)
// ==============================================================================================
// Every numeric field of metrics.jsonl becomes a series over "step". Fields that belong
// together share a chart (CHART_GROUPS); any other field gets a chart of its own, so new metrics
// (GRPO's rewards, say) are plotted without touching this code.

typedef struct {
    char name[64];
    double *x, *y;  // (n) step, value
    int n, cap;
} Series;

typedef struct {
    Series *s;
    int n;
} SeriesSet;

static Series *series_get(SeriesSet *set, const char *name) {
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->s[i].name, name) == 0) return &set->s[i];
    set->s = realloc(set->s, (size_t)(set->n + 1) * sizeof(Series));
    if (!set->s) die("out of memory");
    Series *s = &set->s[set->n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

static void series_add(Series *s, double x, double y) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->x = realloc(s->x, (size_t)s->cap * sizeof(double));
        s->y = realloc(s->y, (size_t)s->cap * sizeof(double));
        if (!s->x || !s->y) die("out of memory");
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

// Reads metrics.jsonl; a line that is not a JSON object with a numeric "step" is an error.
static void read_metrics(const char *path, SeriesSet *set) {
    char err[R1_ERR_LEN];
    size_t size;
    char *text = read_file(path, &size, err);
    if (!text) die("%s", err);
    int line_no = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        line_no++;
        if (n > 0) {
            Json *j = json_parse(line, n, err);
            if (!j) die("%s:%d: %s", path, line_no, err);
            Json *step = json_get(j, "step");
            if (j->type != JSON_OBJECT || !step || step->type != JSON_NUMBER)
                die("%s:%d: not a JSON object with a numeric \"step\"", path, line_no);
            for (int i = 0; i < j->n; i++)
                if (j->items[i].type == JSON_NUMBER && strcmp(j->keys[i], "step") != 0)
                    series_add(series_get(set, j->keys[i]), step->number, j->items[i].number);
            json_free(j);
        }
        line += n + (nl ? 1 : 0);
    }
    free(text);
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` ticks over span.
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

// Writes one chart of the named series (those present) to path. Returns 0 if none had data.
// The start of an SVG chart: W x H pixels on white, the title at x = title_x.
static void svg_begin(FILE *f, double W, double H, double title_x, const char *title) {
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
            "fill=\"white\"/>\n<text x=\"%.0f\" y=\"24\" font-size=\"15\">%s</text>\n", W, H,
            title_x, title);
}

static int write_chart(const char *path, const char *title, SeriesSet *set,
                       const char *const *names, int n_names) {
    static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                         "#8c564b"};
    const double W = 640, H = 360, L = 70, R = 20, TOP = 40, BOT = 50;
    Series *use[8];
    int k = 0;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n_names && k < 8; i++) {
        for (int j = 0; j < set->n; j++) {
            Series *s = &set->s[j];
            if (strcmp(s->name, names[i]) != 0 || s->n == 0) continue;
            use[k++] = s;
            for (int p = 0; p < s->n; p++) {
                if (!isfinite(s->y[p])) continue;
                x0 = fmin(x0, s->x[p]), x1 = fmax(x1, s->x[p]);
                y0 = fmin(y0, s->y[p]), y1 = fmax(y1, s->y[p]);
            }
        }
    }
    if (k == 0 || !isfinite(y0)) return 0;
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) { y1 += fabs(y1) * 0.05 + 1e-9; y0 -= fabs(y0) * 0.05 + 1e-9; }
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    svg_begin(f, W, H, L, title);
    double pw = W - L - R, ph = H - TOP - BOT;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (TOP + ph - ((y) - y0) / (y1 - y0) * ph)
    double ys = nice_step(y1 - y0, 5), xs = nice_step(x1 - x0, 6);
    for (double y = ceil(y0 / ys) * ys; y <= y1 + 1e-12; y += ys)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L, L + pw, PY(y),
                PY(y), L - 6, PY(y) + 4, fabs(y) < ys * 1e-6 ? 0.0 : y);
    for (double x = ceil(x0 / xs) * xs; x <= x1 + 1e-9; x += xs)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", PX(x),
                TOP + ph + 18, x);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#444\"/>\n<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n",
            L, TOP, pw, ph, L + pw / 2, H - 10);
    for (int i = 0; i < k; i++) {
        Series *s = use[i];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                COLORS[i % 6]);
        for (int p = 0; p < s->n; p++)
            if (isfinite(s->y[p])) fprintf(f, "%.1f,%.1f ", PX(s->x[p]), PY(s->y[p]));
        fprintf(f, "\"/>\n<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n",
                L + pw - 150, TOP + 16 + 15 * i, COLORS[i % 6], s->name);
        if (s->n <= 60)  // sparse series (evaluations): mark the points
            for (int p = 0; p < s->n; p++)
                if (isfinite(s->y[p]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                            PX(s->x[p]), PY(s->y[p]), COLORS[i % 6]);
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    fclose(f);
    return 1;
}

// The charts of one run directory, from its metrics.jsonl: loss and held-out loss together,
// the expert load, and every other numeric field alone, as DIR/<field>.svg. Returns how many.
int plot_run(const char *dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    SeriesSet set = {0};
    read_metrics(path, &set);
    // fields that share a chart; every other numeric field gets its own
    static const char *const GROUPS[][4] = {
        {"loss", "loss", "heldout_loss", NULL},
        {"expert load balance (max/mean tokens per expert)", "load_max_over_mean", NULL},
        {"reward hacking: the reward model's score (sigmoid) and the ground truth", "rm_sigmoid",
         "true_good", NULL},
    };
    int n_groups = (int)(sizeof(GROUPS) / sizeof(GROUPS[0])), charts = 0;
    unsigned char *done = xcalloc((size_t)set.n + 1, 1);
    for (int g = 0; g < n_groups; g++) {
        int n = 0;
        while (n < 3 && GROUPS[g][n + 1]) n++;
        snprintf(path, sizeof(path), "%s/%s.svg", dir, GROUPS[g][1]);
        charts += write_chart(path, GROUPS[g][0], &set, &GROUPS[g][1], n);
        for (int i = 0; i < set.n; i++)
            for (int j = 1; j <= n; j++)
                if (strcmp(set.s[i].name, GROUPS[g][j]) == 0) done[i] = 1;
    }
    for (int i = 0; i < set.n; i++) {
        if (done[i]) continue;
        const char *name = set.s[i].name;
        snprintf(path, sizeof(path), "%s/%s.svg", dir, name);
        charts += write_chart(path, name, &set, &name, 1);
    }
    for (int i = 0; i < set.n; i++) {
        free(set.s[i].x);
        free(set.s[i].y);
    }
    free(set.s);
    free(done);
    return charts;
}


// A horizontal bar chart: one bar per label, values in [0, 1] (a NaN draws no bar).
static void write_bar_chart(const char *path, const char *title, const char *const *labels,
                            const double *v, int n) {
    const double W = 640, L = 130, R = 60, TOP = 40, BAR = 22, GAP = 6;
    double H = TOP + n * (BAR + GAP) + 30, pw = W - L - R;
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    svg_begin(f, W, H, L, title);
    for (int i = 0; i < n; i++) {
        double y = TOP + i * (BAR + GAP), w = isfinite(v[i]) ? fmax(0.0, fmin(1.0, v[i])) * pw : 0;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 8,
                y + BAR * 0.7, labels[i]);
        fprintf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"#1f77b4\"/>\n",
                L, y, w, BAR);
        if (isfinite(v[i]))
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%.3f</text>\n", L + w + 4, y + BAR * 0.7, v[i]);
    }
    double ya = TOP + n * (BAR + GAP);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"black\"/>\n", L,
            TOP - 4, L, ya);
    for (int t = 0; t <= 4; t++)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.2f</text>\n",
                L + pw * t / 4.0, ya + 16, t / 4.0);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) die("%s: %s", path, strerror(errno));
}

// ==============================================================================================
// 2. The pipeline: the whole R1 recipe, stage after stage, and its report (DeepSeek-R1 §2.3-2.4)
// ==============================================================================================
// Each stage is this program run on one command line (so each one is also a command a student
// can paste). A stage whose marker file OUT/<stage>.done exists is skipped, so an interrupted
// pipeline picks up where it stopped. Every model is evaluated on the held-out problems and
// OUT/report.md gathers the table.

// Runs ./r1 with the given arguments (NULL-terminated), echoing the command line. Dies if it fails.
static double run_stage_command(const char *const *args) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) snprintf(self, sizeof(self), "./r1");
    else self[n] = 0;
    printf("\n$ ./r1");
    for (int i = 0; args[i]; i++) printf(" %s", args[i]);
    printf("\n");
    fflush(stdout);
    const char *argv[64] = {self};
    int k = 1;
    for (int i = 0; args[i] && k < 63; i++) argv[k++] = args[i];
    argv[k] = NULL;
    double t0 = now_seconds();
    pid_t pid = fork();
    if (pid < 0) die("pipeline: fork: %s", strerror(errno));
    if (pid == 0) {
        execv(self, (char *const *)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1.0;  // the stage failed
    return now_seconds() - t0;
}

// The recipe as a table: one row per stage, each with the ./r1 command lines it runs, as a
// student would type them. In them, $OUT/NAME is a path under the pipeline's output directory,
// $SEED and $PRESET are the pipeline's --seed and --preset, and $STEPS:N is N training steps
// times --scale. Adding a stage = one row (and a line in the report's comparisons).
typedef struct {
    const char *name;   // the stage, and the directory or file it writes under OUT
    const char *what;   // for the report
    int evaluated;      // 1: the stage makes a model, evaluated on the held-out problems
    const char *commands[2];  // ./r1 command lines (arguments split at spaces); NULL: none
} Stage;


// n * scale as a command-line number (at least 1), written into buf.
static const char *scaled_steps(char buf[32], long n, double scale) {
    long v = (long)(n * scale + 0.5);
    snprintf(buf, 32, "%ld", v > 0 ? v : 1L);
    return buf;
}

static int stage_done(const char *out, const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.done", out, name);
    return access(path, F_OK) == 0;
}

static void stage_mark(const char *out, const char *name, double seconds) {
    char path[4096], err[R1_ERR_LEN], text[64];
    snprintf(path, sizeof(path), "%s/%s.done", out, name);
    snprintf(text, sizeof(text), "%.1f\n", seconds);
    if (write_text_atomic(path, text, err)) die("%s", err);
}

static double stage_seconds(const char *out, const char *name) {
    char path[4096], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/%s.done", out, name);
    char *text = read_file(path, NULL, err);
    double s = text ? atof(text) : 0.0;
    free(text);
    return s;
}

// A stage's evaluation, OUT/eval-<stage>.json, parsed; NULL if it has none.
static Json *eval_json(const char *out, const char *name) {
    char path[4096], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/eval-%s.json", out, name);
    char *text = read_file(path, NULL, err);
    Json *j = text ? json_parse(text, strlen(text), err) : NULL;
    free(text);
    return j;
}

// The columns of the report's stage table: a key of OUT/eval-<stage>.json and its format.
static const struct { const char *key, *title, *format; } REPORT_COLUMNS[] = {
    {"pass@1", "pass@1", " %.3f |"},   {"cons@k", "cons@4", " %.3f |"},
    {"greedy", "greedy", " %.3f |"},   {"format", "format", " %.3f |"},
    {"language", "language", " %.3f |"}, {"mixed", "mixed", " %.3f |"},
    {"reflection", "reflection", " %.3f |"}, {"length", "length", " %.1f |"},
};
#define N_REPORT_COLUMNS ((int)(sizeof(REPORT_COLUMNS) / sizeof(REPORT_COLUMNS[0])))

// The total parameter count of DIR/<stage>/config.json's model (0 if it has none).
static double stage_params(const char *out, const char *stage) {
    char path[4200], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/%s/config.json", out, stage);
    Config c;
    if (config_read_file(path, &c, err)) return 0;
    ParamCount pc;
    count_params(&c, &pc);
    return pc.total;
}

// One row of the report from OUT/eval-<stage>.json (a key it lacks shows as "-").
static void report_row(FILE *f, const char *out, const Stage *s) {
    Json *j = eval_json(out, s->name);
    if (!j) return;
    fprintf(f, "| %s | %s |", s->name, s->what);
    for (int i = 0; i < N_REPORT_COLUMNS; i++) {
        const Json *v = json_get(j, REPORT_COLUMNS[i].key);
        if (v && v->type == JSON_NUMBER) fprintf(f, REPORT_COLUMNS[i].format, v->number);
        else fprintf(f, " - |");
    }
    fprintf(f, " %.2fM |\n", stage_params(out, s->name) / 1e6);
    json_free(j);
}

static void report_table_header(FILE *f, const char *first) {
    fprintf(f, "| %s | what |", first);
    for (int i = 0; i < N_REPORT_COLUMNS; i++) fprintf(f, " %s |", REPORT_COLUMNS[i].title);
    fprintf(f, " parameters |\n|---|---|");
    for (int i = 0; i <= N_REPORT_COLUMNS; i++) fprintf(f, "---|");
    fprintf(f, "\n");
}

// pass@1 of every evaluated stage in each cell of one breakdown of its evaluation: "by_task"
// (columns: the tasks) or "by_level" (columns: the levels), one row per stage.
static void write_cell_table(FILE *f, const char *out, const Stage *stages, int n_stages,
                             const char *breakdown, const char *title,
                             const char *const *cells, int n_cells) {
    fprintf(f, "\n### pass@1 by %s\n\n| stage |", title);
    for (int c = 0; c < n_cells; c++) fprintf(f, " %s |", cells[c]);
    fprintf(f, "\n|---|");
    for (int c = 0; c < n_cells; c++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int i = 0; i < n_stages; i++) {
        if (!stages[i].evaluated) continue;
        Json *j = eval_json(out, stages[i].name);
        const Json *cut = j ? json_get(j, breakdown) : NULL;
        if (cut) {
            fprintf(f, "| %s |", stages[i].name);
            for (int c = 0; c < n_cells; c++) {
                const Json *cell = json_get(cut, cells[c]);
                const Json *v = cell ? json_get(cell, "pass@1") : NULL;
                if (v && v->type == JSON_NUMBER) fprintf(f, " %.3f |", v->number);
                else fprintf(f, " - |");
            }
            fprintf(f, "\n");
        }
        json_free(j);
    }
}

// A number from a stage's evaluation (OUT/eval-<stage>.json), or `missing` if there is none.
static double eval_field(const char *out, const char *name, const char *key, double missing) {
    Json *j = eval_json(out, name);
    Json *v = j ? json_get(j, key) : NULL;
    double x = v && v->type == JSON_NUMBER ? v->number : missing;
    json_free(j);
    return x;
}

// OUT/tts.svg: pass@1 (and cons@k) against the thinking budget, from OUT/eval-tts.json's
// "budgets" (`eval --think-budget`), and its link in the report.
static void write_budget_chart(FILE *f, const char *out) {
    Json *j = eval_json(out, "tts");
    const Json *b = j ? json_get(j, "budgets") : NULL;
    if (!b || b->type != JSON_ARRAY || b->n < 2) {
        json_free(j);
        return;
    }
    SeriesSet set = {0};
    static const char *const names[] = {"pass@1", "cons@k"};
    for (int i = 0; i < b->n; i++) {
        const Json *x = json_get(&b->items[i], "budget");
        for (int k = 0; k < 2 && x && x->type == JSON_NUMBER; k++) {
            const Json *y = json_get(&b->items[i], names[k]);
            if (y && y->type == JSON_NUMBER) series_add(series_get(&set, names[k]), x->number, y->number);
        }
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/tts.svg", out);
    if (write_chart(path, "test-time scaling: accuracy by thinking budget (tokens)", &set, names, 2))
        fprintf(f, "\n![accuracy by thinking budget](tts.svg)\n");
    for (int i = 0; i < set.n; i++) free(set.s[i].x), free(set.s[i].y);
    free(set.s);
    json_free(j);
}

// OUT/pass1.svg and OUT/format.svg (a bar per evaluated stage), each training stage's curves
// (plot_run), and the report's section that links them.
static void write_pipeline_charts(FILE *f, const char *out, const Stage *stages, int n_stages) {
    const char *labels[32];
    double pass1[32], format[32];
    int n = 0;
    for (int i = 0; i < n_stages && n < 32; i++) {
        if (!stages[i].evaluated || !stage_done(out, stages[i].name)) continue;
        labels[n] = stages[i].name;
        pass1[n] = eval_field(out, stages[i].name, "pass@1", NAN);
        format[n] = eval_field(out, stages[i].name, "format", NAN);
        n++;
    }
    if (n == 0) return;
    char path[4200];
    snprintf(path, sizeof(path), "%s/pass1.svg", out);
    write_bar_chart(path, "pass@1 on held-out problems, by stage", labels, pass1, n);
    snprintf(path, sizeof(path), "%s/format.svg", out);
    write_bar_chart(path, "format rate, by stage", labels, format, n);
    fprintf(f, "\n## Charts\n\n![pass@1 by stage](pass1.svg)\n\n![format rate by stage](format.svg)"
            "\n\nTraining curves, one SVG per metric in each stage's directory (`./r1 plot DIR` "
            "redraws them):");
    for (int i = 0; i < n; i++) {
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/%s", out, labels[i]);
        if (plot_run(dir) == 0) continue;
        snprintf(path, sizeof(path), "%s/reward.svg", dir);  // GRPO stages; the others: loss
        if (access(path, F_OK) != 0) {
            fprintf(f, " [%s loss](%s/loss.svg)", labels[i], labels[i]);
            continue;
        }
        static const char *const rl_charts[] = {"reward", "accuracy", "length", "reflection", "language"};
        for (int c = 0; c < 5; c++)
            fprintf(f, " [%s %s](%s/%s.svg)", labels[i], rl_charts[c], labels[i], rl_charts[c]);
    }
    fprintf(f, "\n");
    write_budget_chart(f, out);
}

// ----------------------------------------------------------------------------------------------
// The findings: each of R1's claims that the pipeline can test, measured from the stages'
// evaluations and training curves, with a standard error, and judged from those numbers alone.
// ----------------------------------------------------------------------------------------------
// A measured difference and its standard error. Verdicts (finding_verdict): "holds" when the
// difference is in the claimed direction and more than 2 standard errors from 0, "does not
// hold" when it is more than 2 standard errors the other way, else "not significant".
typedef struct {
    double a, b;     // the two sides (means), for the report
    double diff, se; // a - b and its standard error
    int n;           // how many pairs, steps or seeds it rests on; 0: not measured
} Estimate;

// One stage's per-problem scores: OUT/eval-<stage>.problems.jsonl (`eval --problems`), a field
// of each line, keyed by the problem's id.
typedef struct {
    int n;
    char (*id)[48];
    double *v;
} ProblemColumn;

static void problem_column_free(ProblemColumn *c) {
    free(c->id);
    free(c->v);
    memset(c, 0, sizeof(*c));
}

// 0 with c filled, -1 if the file is missing or a line lacks the field.
static int read_problem_column(const char *dir, const char *stage, const char *field,
                               ProblemColumn *c) {
    char path[4200], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/eval-%s.problems.jsonl", dir, stage);
    memset(c, 0, sizeof(*c));
    int n;
    Json **rows = jsonl_read(path, &n, NULL, err);
    if (!rows) return -1;
    c->id = xcalloc((size_t)n + 1, sizeof(*c->id));
    c->v = xcalloc((size_t)n + 1, sizeof(double));
    for (int i = 0; i < n; i++) {
        const Json *id = json_get(rows[i], "id"), *v = json_get(rows[i], field);
        if (!id || id->type != JSON_STRING || !v || v->type != JSON_NUMBER) continue;
        snprintf(c->id[c->n], sizeof(c->id[0]), "%s", id->string);
        c->v[c->n++] = v->number;
    }
    tasks_free(rows, n);
    return c->n > 0 ? 0 : -1;
}

// Mean and standard error (sample std / sqrt(n)) of n numbers.
static void mean_se(const double *x, int n, double *mean, double *se) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m = n ? m / n : 0;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = n > 1 ? sqrt(v / (n - 1) / n) : INFINITY;
}

// a - b of a per-problem field, paired over the problems both stages were evaluated on (the
// pipeline evaluates every stage on the same held-out problems).
static Estimate paired_difference(const char *dir, const char *stage_a, const char *field_a,
                                  const char *stage_b, const char *field_b) {
    Estimate e = {0};
    ProblemColumn a, b;
    if (read_problem_column(dir, stage_a, field_a, &a)) return e;
    if (read_problem_column(dir, stage_b, field_b, &b)) {
        problem_column_free(&a);
        return e;
    }
    double *d = xcalloc((size_t)a.n, sizeof(double)), sa = 0, sb = 0;
    for (int i = 0; i < a.n; i++)
        for (int j = 0; j < b.n; j++)
            if (strcmp(a.id[i], b.id[j]) == 0) {
                sa += a.v[i], sb += b.v[j];
                d[e.n++] = a.v[i] - b.v[j];
                break;
            }
    if (e.n > 0) {
        e.a = sa / e.n, e.b = sb / e.n;
        mean_se(d, e.n, &e.diff, &e.se);
    }
    free(d);
    problem_column_free(&a);
    problem_column_free(&b);
    return e;
}

// How a metric of a training run moved: the mean over its last fifth of steps minus the mean
// over its first fifth (a = late, b = early), from DIR/<stage>/metrics.jsonl. The standard
// error treats the steps as independent draws, which neighbouring steps are not quite.
static Estimate curve_change(const char *dir, const char *stage, const char *field) {
    Estimate e = {0};
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s/metrics.jsonl", dir, stage);
    if (access(path, F_OK) != 0) return e;
    SeriesSet set = {0};
    read_metrics(path, &set);
    Series *s = NULL;
    for (int i = 0; i < set.n; i++)
        if (strcmp(set.s[i].name, field) == 0) s = &set.s[i];
    int fifth = s ? s->n / 5 : 0;
    if (fifth >= 2) {
        double m0, se0, m1, se1;
        mean_se(s->y, fifth, &m0, &se0);
        mean_se(s->y + s->n - fifth, fifth, &m1, &se1);
        e = (Estimate){.a = m1, .b = m0, .diff = m1 - m0, .se = sqrt(se0 * se0 + se1 * se1),
                       .n = s->n};
    }
    for (int i = 0; i < set.n; i++) free(set.s[i].x), free(set.s[i].y);
    free(set.s);
    return e;
}

// Test-time scaling: pass@1 at the largest thinking budget minus at the smallest, from
// DIR/<file>.json's "budgets" (`eval --think-budget`). The standard error is that of two
// independent proportions over the n problems (pass@1 averages k samples, so it is a little
// smaller in truth: the verdict errs on the side of "not significant").
static Estimate budget_change(const char *dir, const char *file) {
    Estimate e = {0};
    Json *j = eval_json(dir, file);
    const Json *b = j ? json_get(j, "budgets") : NULL;
    if (b && b->type == JSON_ARRAY && b->n >= 2) {
        const Json *lo = json_get(&b->items[0], "pass@1"), *hi = json_get(&b->items[b->n - 1], "pass@1");
        const Json *n = json_get(j, "n");
        if (lo && hi && n && lo->type == JSON_NUMBER && hi->type == JSON_NUMBER && n->number > 0) {
            double p0 = lo->number, p1 = hi->number, N = n->number;
            e = (Estimate){.a = p1, .b = p0, .diff = p1 - p0,
                           .se = sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / N), .n = (int)N};
        }
    }
    json_free(j);
    return e;
}

typedef enum { PAIRED, CURVE, BUDGET } MeasureKind;
typedef struct {
    const char *claim;  // R1's finding, in a few words
    const char *paper;  // where the paper reports it
    MeasureKind kind;
    const char *a, *field_a;  // PAIRED: stage a's per-problem field; CURVE: the run and metric;
    const char *b, *field_b;  // BUDGET: the eval file (a). PAIRED measures a - b
    int sign;           // +1: the claim is that the difference is positive, -1 negative
} Finding;

static const Finding FINDINGS[] = {
    {"R1-Zero's accuracy rises from the base", "R1 §2.2.4, Fig. 2", PAIRED, "r1-zero", "pass1",
     "base", "pass1", +1},
    {"R1-Zero's accuracy rises during RL", "R1 Fig. 2", CURVE, "r1-zero", "accuracy", NULL, NULL,
     +1},
    {"R1-Zero's responses grow longer during RL", "R1 §2.2.4, Fig. 3", CURVE, "r1-zero", "length",
     NULL, NULL, +1},
    {"R1-Zero reflects (re-checks) more during RL", "R1 §2.2.4, the aha moment", CURVE,
     "r1-zero", "reflection", NULL, NULL, +1},
    {"cons@k is above pass@1 (R1-Zero)", "R1 Table 2", PAIRED, "r1-zero", "cons", "r1-zero",
     "pass1", +1},
    {"accuracy grows with the thinking budget (R1-Zero)", "R1 §2.2.4 (test-time scaling)", BUDGET,
     "tts", NULL, NULL, NULL, +1},
    {"R1-Zero mixes languages more than cold start + RL with the language reward", "R1 §2.3.2",
     PAIRED, "r1-zero", "mixed", "rl", "mixed", +1},
    {"the language-consistency reward removes mixing", "R1 §2.3.2", PAIRED, "rl", "mixed",
     "rl-nolang", "mixed", -1},
    {"... at a slight cost in accuracy", "R1 §2.3.2", PAIRED, "rl", "pass1", "rl-nolang", "pass1",
     -1},
    {"cold start + RL beats R1-Zero: format", "R1 §2.3.1", PAIRED, "rl", "format", "r1-zero",
     "format", +1},
    {"cold start + RL beats R1-Zero: language consistency", "R1 §2.3.1", PAIRED, "rl", "language",
     "r1-zero", "language", +1},
    {"cold start + RL beats R1-Zero: accuracy", "R1 §2.3.1", PAIRED, "rl", "pass1", "r1-zero",
     "pass1", +1},
    {"cold start from R1-Zero's outputs + RL beats R1-Zero: format", "R1 §2.3.1", PAIRED, "rl-r0",
     "format", "r1-zero", "format", +1},
    {"cold start from R1-Zero's outputs + RL beats R1-Zero: language", "R1 §2.3.1", PAIRED,
     "rl-r0", "language", "r1-zero", "language", +1},
    {"cold start from R1-Zero's outputs + RL beats R1-Zero: accuracy", "R1 §2.3.1", PAIRED,
     "rl-r0", "pass1", "r1-zero", "pass1", +1},
    {"rejection-sampling SFT + final RL beats the stage before it", "R1 §2.3.3-2.3.4", PAIRED,
     "final", "pass1", "rl", "pass1", +1},
    {"the distilled student beats the RL-only student", "R1 §2.4, Table 6", PAIRED,
     "student-distill", "pass1", "student-rl", "pass1", +1},
    {"RL against a reward model raises its score", "R1 §2.3.4", CURVE, "hack", "rm_sigmoid",
     NULL, NULL, +1},
    {"... while the ground truth falls (reward hacking, why R1 uses rules)", "R1 §2.2.2", CURVE,
     "hack", "true_good", NULL, NULL, -1},
};
#define N_FINDINGS ((int)(sizeof(FINDINGS) / sizeof(FINDINGS[0])))

static Estimate measure_finding(const char *dir, const Finding *f) {
    if (f->kind == CURVE) return curve_change(dir, f->a, f->field_a);
    if (f->kind == BUDGET) return budget_change(dir, f->a);
    return paired_difference(dir, f->a, f->field_a, f->b, f->field_b);
}

// Several seeds: the finding's difference in each run, then their mean and its standard error
// over the runs (the spread between seeds, not within one).
static Estimate measure_over_runs(char (*dirs)[4200], int n_dirs, const Finding *f) {
    if (n_dirs == 1) return measure_finding(dirs[0], f);
    double d[64], a = 0, b = 0;
    int n = 0;
    for (int i = 0; i < n_dirs && n < 64; i++) {
        Estimate e = measure_finding(dirs[i], f);
        if (e.n == 0) continue;
        d[n++] = e.diff, a += e.a, b += e.b;
    }
    Estimate e = {0};
    if (n == 0) return e;
    mean_se(d, n, &e.diff, &e.se);
    e.a = a / n, e.b = b / n, e.n = n;
    return e;
}

static const char *finding_verdict(const Estimate *e, int sign) {
    if (e->n == 0) return "not measured";
    if (!(e->se > 0) || !isfinite(e->se)) {  // every pair differs by the same amount (often 0)
        if (e->diff == 0) return "not significant (no difference)";
        return e->diff * sign > 0 ? "holds (no spread)" : "does not hold (no spread)";
    }
    double z = sign * e->diff / e->se;
    return z > 2 ? "holds" : z < -2 ? "does not hold" : "not significant";
}

// The report's findings section: one row per claim, its numbers and its verdict.
static void write_findings(FILE *f, char (*dirs)[4200], int n_dirs) {
    fprintf(f, "\n## R1's findings, measured\n\nEach row: the paper's claim, the measured difference "
            "(a - b) with its standard error, the two sides, and the verdict computed from them: "
            "holds when the difference is in the claimed direction by more than 2 standard errors, "
            "does not hold when it is more than 2 the other way, else not significant. %s\n\n"
            "| finding | paper | difference ± se | a | b | n | verdict |\n|---|---|---|---|---|---|---|\n",
            n_dirs > 1 ? "Several seeds: the mean of the per-seed differences, and its standard error "
                         "over the seeds (n = seeds)."
                       : "One seed: paired over the held-out problems (n = problems), or early "
                         "against late training steps (n = steps).");
    for (int i = 0; i < N_FINDINGS; i++) {
        const Finding *fd = &FINDINGS[i];
        Estimate e = measure_over_runs(dirs, n_dirs, fd);
        if (e.n == 0) {
            fprintf(f, "| %s | %s | - | - | - | 0 | not measured |\n", fd->claim, fd->paper);
            continue;
        }
        fprintf(f, "| %s | %s | %+.3f ± %.3f | %.3f | %.3f | %d | %s |\n", fd->claim, fd->paper,
                e.diff, e.se, e.a, e.b, e.n, finding_verdict(&e, fd->sign));
    }
}

// ----------------------------------------------------------------------------------------------
// The reward model and reward hacking (R1 §2.3.4; stages pairs, rm, hack, hack-kl)
// ----------------------------------------------------------------------------------------------
// OUT/hacking.svg: the reward model's score (sigmoid) and the ground truth over the steps of
// the two RM-only runs, in one chart.
static void write_hacking_chart(FILE *f, const char *out) {
    static const char *const runs[2] = {"hack", "hack-kl"}, *const fields[2] = {"rm_sigmoid", "true_good"};
    static const char *const names[4] = {"hack: RM sigmoid", "hack: truth (good)",
                                         "hack-kl: RM sigmoid", "hack-kl: truth (good)"};
    SeriesSet all = {0};
    for (int r = 0; r < 2; r++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s/metrics.jsonl", out, runs[r]);
        if (access(path, F_OK) != 0) continue;
        SeriesSet set = {0};
        read_metrics(path, &set);
        for (int i = 0; i < set.n; i++)
            for (int k = 0; k < 2; k++)
                if (strcmp(set.s[i].name, fields[k]) == 0)
                    for (int p = 0; p < set.s[i].n; p++)
                        series_add(series_get(&all, names[2 * r + k]), set.s[i].x[p], set.s[i].y[p]);
        for (int i = 0; i < set.n; i++) free(set.s[i].x), free(set.s[i].y);
        free(set.s);
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/hacking.svg", out);
    if (write_chart(path, "RL against a reward model: its score and the ground truth", &all, names, 4))
        fprintf(f, "\n![RM score and ground truth over the steps](hacking.svg)\n");
    for (int i = 0; i < all.n; i++) free(all.s[i].x), free(all.s[i].y);
    free(all.s);
}

// The report's section: the reward model's held-out pair accuracy (OUT/rm/rm.json), and for each
// RM-only run the first and last fifth of its steps: RM score, ground truth, KL.
static void write_reward_model_section(FILE *f, const char *out) {
    char path[4200], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/rm/rm.json", out);
    char *text = read_file(path, NULL, err);
    Json *j = text ? json_parse(text, strlen(text), err) : NULL;
    free(text);
    if (!j) return;
    const char *keys[4] = {"heldout_accuracy", "helpful", "safety", "n_heldout"};
    double v[4];
    for (int k = 0; k < 4; k++) {
        const Json *x = json_get(j, keys[k]);
        v[k] = x && x->type == JSON_NUMBER ? x->number : NAN;
    }
    json_free(j);
    fprintf(f, "\n## Reward model and reward hacking (R1 §2.3.4)\n\nThe reward model (sft2 + a score "
            "head, Bradley-Terry on OUT/pairs.jsonl): held-out pair accuracy %.3f (helpful pairs "
            "%.3f, safety pairs %.3f; %.0f pairs). Then GRPO on general prompts rewarded by it "
            "alone; the ground truth (tasks.c's general_judge) is measured, never rewarded. Each cell: "
            "the mean over the first fifth of the steps -> the last fifth.\n\n| run | RM score "
            "(sigmoid) | ground truth: good | helpful | safe | KL |\n|---|---|---|---|---|---|\n",
            v[0], v[1], v[2], v[3]);
    static const char *const runs[2] = {"hack", "hack-kl"};
    static const char *const fields[5] = {"rm_sigmoid", "true_good", "true_helpful", "true_safe", "kl"};
    for (int r = 0; r < 2; r++) {
        if (!stage_done(out, runs[r])) continue;
        fprintf(f, "| %s |", runs[r]);
        for (int k = 0; k < 5; k++) {
            Estimate e = curve_change(out, runs[r], fields[k]);
            if (e.n) fprintf(f, k == 4 ? " %.4f -> %.4f |" : " %.3f -> %.3f |", e.b, e.a);
            else fprintf(f, " - |");
        }
        fprintf(f, "\n");
    }
    write_hacking_chart(f, out);
}

// The pipeline's held-out evaluation: problems per stage (each sampled k = 4 times + greedy),
// of every task, at every level.
#define PIPELINE_EVAL_N "128"
#define PIPELINE_EVAL_LEVELS "1-5"

// OUT/report.md: one row per evaluated stage that has finished, then the time of each stage.
// The SFT sets the run wrote, with how many rows each has and where they came from ("source":
// coldstart's r1-zero / one-shot / human; rows without one counted as the file's own kind).
static void write_sft_sets(FILE *f, const char *out) {
    static const struct { const char *file, *what; } SETS[] = {
        {"cold.jsonl", "templated cold start (checked long CoT)"},
        {"cold-r0.jsonl", "cold start from R1-Zero's outputs (`coldstart`)"},
        {"rs.jsonl", "rejection-sampled set (+ non-reasoning)"},
    };
    static const char *const SOURCES[] = {"r1-zero", "one-shot", "human"};
    fprintf(f, "\n## The SFT sets\n\n| file | what | rows | from R1-Zero | one-shot base | "
            "human-curated (templated) | non-reasoning |\n|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof(SETS) / sizeof(SETS[0]); i++) {
        char path[4200], err[R1_ERR_LEN];
        snprintf(path, sizeof(path), "%s/%s", out, SETS[i].file);
        int n;
        Json **rows = jsonl_read(path, &n, NULL, err);
        if (!rows) continue;
        long count[3] = {0}, plain = 0;
        for (int r = 0; r < n; r++) {
            const Json *src = json_get(rows[r], "source");
            if (is_nonreasoning(rows[r])) plain++;
            for (int k = 0; k < 3; k++)
                if (src && src->type == JSON_STRING && strcmp(src->string, SOURCES[k]) == 0) count[k]++;
        }
        fprintf(f, "| %s | %s | %d | %ld | %ld | %ld | %ld |\n", SETS[i].file, SETS[i].what, n,
                count[0], count[1], count[2], plain);
        tasks_free(rows, n);
    }
}

// `pipeline --mtp`: the share of the MTP module's drafts that each stage's evaluation accepted
// (its greedy and sampled completions). The module is trained with the base only, so the later
// stages show how far each moved the model away from it.
static void write_speculation_section(FILE *f, const char *out, const Stage *stages, int n) {
    int any = 0;
    for (int i = 0; i < n; i++) {
        double drafted = eval_field(out, stages[i].name, "mtp_drafted", 0.0);
        if (drafted <= 0) continue;
        if (!any++)
            fprintf(f, "\n## Speculative decoding: the MTP module's drafts accepted\n\n"
                    "The base was pretrained with the MTP module (`--mtp`, DeepSeek-V3 §2.2); "
                    "every later stage keeps it frozen, and every rollout and evaluation decodes "
                    "with its drafts (mtp.c). Each row: the stage's held-out evaluation.\n\n"
                    "| stage | drafts | accepted | share |\n|---|---|---|---|\n");
        double accepted = eval_field(out, stages[i].name, "mtp_accepted", 0.0);
        fprintf(f, "| %s | %.0f | %.0f | %.3f |\n", stages[i].name, drafted, accepted,
                accepted / drafted);
    }
}

static void write_pipeline_report(const PipelineRun *p, const Stage *stages, int n_stages) {
    const char *out = p->out;
    char path[4096], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/report.md", out);
    AtomicFile af;
    if (atomic_open(&af, path, err)) die("%s", err);
    FILE *f = af.f;
    fprintf(f, "# r1.c pipeline report (preset %s, seed %s, scale %g%s)\n\n", p->preset, p->seed,
            p->scale, p->mtp ? ", --mtp" : "");
    fprintf(f, "Held-out problems of every task (levels %s, %d problems, R1-Zero template); "
            "pass@1 = mean correctness of k = 4 samples at T = 0.6, top-p 0.95; cons@k = "
            "majority answer; greedy = temperature 0; mixed = share of samples whose reasoning "
            "is not all in the prompt's language; reflection = share that re-check (\"wait\", "
            "\"check\", \"verify\", ...). The same seed gives the same tables, byte for byte; "
            "the times below vary.\n\n", PIPELINE_EVAL_LEVELS, atoi(PIPELINE_EVAL_N));
    report_table_header(f, "stage");
    for (int i = 0; i < n_stages; i++)
        if (stages[i].evaluated) report_row(f, out, &stages[i]);
    static const char *const tasks[] = {"arithmetic", "countdown", "sort42"};
    static const char *const levels[] = {"1", "2", "3", "4", "5"};
    write_cell_table(f, out, stages, n_stages, "by_task", "task", tasks, 3);
    write_cell_table(f, out, stages, n_stages, "by_level", "difficulty level", levels, 5);
    char dirs[1][4200];
    snprintf(dirs[0], sizeof(dirs[0]), "%s", out);
    write_findings(f, dirs, 1);
    write_sft_sets(f, out);
    write_reward_model_section(f, out);
    write_speculation_section(f, out, stages, n_stages);
    fprintf(f, "\n## Time on this machine\n\n| stage | training (s) | evaluation (s) |\n"
            "|---|---|---|\n");
    double train_total = 0, eval_total = 0;
    for (int i = 0; i < n_stages; i++) {
        if (!stage_done(out, stages[i].name)) continue;
        double t = stage_seconds(out, stages[i].name);
        double e = eval_field(out, stages[i].name, "seconds", 0.0);
        train_total += t;
        eval_total += e;
        fprintf(f, "| %s | %.0f | %.0f |\n", stages[i].name, t, e);
    }
    fprintf(f, "| all | %.0f | %.0f |\n\nTotal %.0f s = %.1f min.\n", train_total, eval_total,
            train_total + eval_total, (train_total + eval_total) / 60.0);
    write_pipeline_charts(f, out, stages, n_stages);
    if (atomic_commit(&af, err)) die("%s", err);
}

// The stages, in the order they run (DeepSeek-R1 §2.3-2.4; the student: §2.4 and Table 6).
// The world: all three tasks at difficulty levels 1-5, a corpus whose R1-Zero-template
// documents reason in three styles (a direct guess, stepwise, a guess that is checked and
// corrected) and sometimes switch language (tasks.c, CORPUS_*_SHARE); RL and evaluation on all
// of it. Half of the template documents use the <think>/<answer> tags (--tagged 0.5), so the
// base already answers in the format now and then: R1-Zero's rewards need something to start
// from (with the default 0.1 the base's format rate was 0.004). Every completion may take up to 200 new tokens.
static const Stage STAGES[] = {
    {"data", "toy corpus (three reasoning styles, some mixing languages) and the cold-start set "
     "(checked long CoT, one language)", 0,
     {"data corpus --task all --levels 1-5 --mb 3 --tagged 0.5 --out $OUT/corpus.txt --seed $SEED",
      "data tasks --task all --n 600 --levels 1-5 --solutions --style checked --seed $SEED "
      "--out $OUT/cold.jsonl"}},
    // 2000 steps: in today's world (all tasks, levels 1-5) the base's held-out pass@1 was 0.000
    // after 1500 steps, 0.020 after 2000 and 0.107 after 4500 (--scale 3), seed 1: 2000 is the
    // fewest measured that leave R1-Zero a base which is sometimes right, and the most that
    // fit `make run`'s 20 minutes (tutorial/05).
    {"base", "pretrained base model", 1,
     {"pretrain --config $PRESET --data $OUT/corpus.txt --out $OUT/base --steps $STEPS:2000 "
      "--batch 8 --seq 320 --eval-every 250 --seed $SEED $MTP"}},
    {"r1-zero", "R1-Zero: GRPO from the base (accuracy + format rewards)", 1,
     {"grpo --model $OUT/base --out $OUT/r1-zero --task all --levels 1-5 --max-new-tokens 200 "
      "--steps $STEPS:32 --seed $SEED $SPEC"}},
    // test-time scaling: R1-Zero's accuracy when its thinking is cut at B tokens
    {"tts", "R1-Zero evaluated with a thinking budget of 8 to 128 tokens", 0,
     {"eval --model $OUT/r1-zero --task all --levels 1-5 --k 4 --n 128 --max-new-tokens 200 "
      "--think-budget 8,16,32,64,128 --seed 7 --out $OUT/eval-tts.json $SPEC"}},
    {"cold", "cold start: SFT of the base on checked long CoT", 1,
     {"sft --model $OUT/base --data $OUT/cold.jsonl --out $OUT/cold --epochs 2 --seq 384 --lr "
      "1e-3 --seed $SEED"}},
    {"rl", "reasoning RL from the cold start (+ language reward)", 1,
     {"grpo --model $OUT/cold --out $OUT/rl --task all --levels 1-5 --max-new-tokens 200 "
      "--w-language 0.5 --lr 5e-5 --steps $STEPS:24 --seed $SEED $SPEC"}},
    // the same RL without the language-consistency reward: what that reward costs and buys
    {"rl-nolang", "the same RL without the language reward (ablation)", 1,
     {"grpo --model $OUT/cold --out $OUT/rl-nolang --task all --levels 1-5 --max-new-tokens 200 "
      "--lr 5e-5 --steps $STEPS:24 --seed $SEED $SPEC"}},
    // the cold start as R1 §2.3.1 builds it: R1-Zero's outputs and the base prompted one-shot
    // with a long CoT, verified, rewritten readable and filtered, half of it (at least 64
    // examples in all) from the templated set, the "human-curated" share; then the same SFT
    // and RL as cold and rl, to compare the two cold starts
    {"r0-data", "cold-start data from R1-Zero's outputs (+ the base one-shot), rewritten, filtered", 0,
     {"coldstart --model $OUT/r1-zero --base $OUT/base --human $OUT/cold.jsonl --human-share 0.5 "
      "--n-prompts 512 --n-per-prompt 2 --cap 1 --levels 1-5 --seed $SEED --out $OUT/cold-r0.jsonl"}},
    {"cold-r0", "cold start from R1-Zero's outputs: SFT of the base", 1,
     {"sft --model $OUT/base --data $OUT/cold-r0.jsonl --out $OUT/cold-r0 --epochs 2 --seq 384 "
      "--lr 1e-3 --seed $SEED"}},
    {"rl-r0", "reasoning RL from that cold start (+ language reward)", 1,
     {"grpo --model $OUT/cold-r0 --out $OUT/rl-r0 --task all --levels 1-5 --max-new-tokens 200 "
      "--w-language 0.5 --lr 5e-5 --steps $STEPS:24 --seed $SEED $SPEC"}},
    {"rs", "rejection sampling from the RL model + non-reasoning data", 0,
     {"reject --model $OUT/rl --out $OUT/rs.jsonl --task all --levels 1-5 --max-new-tokens 200 "
      "--n-prompts 1536 --n-per-prompt 2 --cap 1 --seed $SEED"}},
    {"sft2", "SFT of the base on the rejection-sampled set", 1,
     {"sft --model $OUT/base --data $OUT/rs.jsonl --out $OUT/sft2 --epochs 2 --seq 384 --lr 1e-3 "
      "--seed $SEED"}},
    {"pairs", "preference pairs: helpful vs unhelpful answers, refusal vs compliance", 0,
     {"data pairs --n 400 --seed $SEED --out $OUT/pairs.jsonl"}},
    {"rm", "reward model: sft2 + a score head, Bradley-Terry on the pairs", 0,
     {"rm --model $OUT/sft2 --data $OUT/pairs.jsonl --out $OUT/rm --steps $STEPS:45 --seed $SEED"}},
    // R1 §2.3.4: rule rewards for the reasoning prompts, the reward model for the general ones
    // (one group in 8, on average: helpfulness prompts and toy unsafe requests)
    {"final", "final RL (after the second SFT; + general prompts scored by the reward model)", 1,
     {"grpo --model $OUT/sft2 --out $OUT/final --task all --levels 1-5 --max-new-tokens 200 "
      "--w-language 0.5 --lr 5e-5 --non-reasoning 0.125 --rm $OUT/rm --steps $STEPS:24 --seed $SEED $SPEC"}},
    // The student is a Qwen2 model, as R1's are (§2.4: Qwen2.5 and Llama-3 students): grouped-
    // query attention and a dense SwiGLU MLP (gqa.c), the teacher's tokenizer, 0.60M parameters.
    {"student-base", "Qwen2 student (GQA, dense), pretrained", 1,
     {"pretrain --config qwen-student --tokenizer $OUT/base --data $OUT/corpus.txt --out "
      "$OUT/student-base --steps $STEPS:1500 --batch 8 --eval-every 250 --seq 320 --seed $SEED"}},
    {"student-distill", "Qwen2 student distilled: SFT on the teacher's samples", 1,
     {"distill --teacher $OUT/final --model $OUT/student-base --data $OUT/rs.jsonl --out "
      "$OUT/student-distill --epochs 2 --seq 384 --lr 1e-3 --seed $SEED"}},
    {"student-rl", "Qwen2 student trained with GRPO alone (same steps)", 1,
     {"grpo --model $OUT/student-base --out $OUT/student-rl --task all --levels 1-5 "
      "--max-new-tokens 200 --steps $STEPS:32 --seed $SEED $SPEC"}},
    // What R1 avoids for reasoning prompts (§2.2.2): RL on general prompts alone against the
    // learned reward, with and without the KL penalty (tutorial/10; the report's "Reward model
    // and reward hacking")
    {"hack", "GRPO on general prompts rewarded by the reward model alone, no KL penalty", 0,
     {"grpo --model $OUT/sft2 --rm $OUT/rm --non-reasoning 1 --beta 0 --lr 5e-4 --prompts 8 "
      "--group 4 --max-new-tokens 40 --out $OUT/hack --steps $STEPS:18 --seed $SEED $SPEC"}},
    {"hack-kl", "the same with a KL penalty (beta 0.1)", 0,
     {"grpo --model $OUT/sft2 --rm $OUT/rm --non-reasoning 1 --beta 0.1 --lr 5e-4 --prompts 8 "
      "--group 4 --max-new-tokens 40 --out $OUT/hack-kl --steps $STEPS:18 --seed $SEED $SPEC"}},
};
#define N_STAGES ((int)(sizeof(STAGES) / sizeof(STAGES[0])))

// One argument of a stage's command line with its $-placeholders filled in (into buf).
static const char *expand_arg(const PipelineRun *p, const char *arg, char buf[4200]) {
    if (strncmp(arg, "$OUT/", 5) == 0) snprintf(buf, 4200, "%s/%s", p->out, arg + 5);
    else if (strcmp(arg, "$SEED") == 0) return p->seed;
    else if (strcmp(arg, "$PRESET") == 0) return p->preset;
    else if (strncmp(arg, "$STEPS:", 7) == 0) scaled_steps(buf, atol(arg + 7), p->scale);
    else if (strcmp(arg, "$MTP") == 0) return p->mtp ? "--mtp" : NULL;  // (NULL: no argument)
    else if (strcmp(arg, "$SPEC") == 0) return p->mtp ? "--speculative" : NULL;
    else return arg;
    return buf;
}

// Runs a stage's command lines one after the other: their seconds, or -1 if one failed.
static double run_stage(const PipelineRun *p, const Stage *s) {
    double seconds = 0;
    for (int c = 0; c < 2 && s->commands[c]; c++) {
        char line[1024], bufs[32][4200];
        const char *args[33];
        int n = 0;
        snprintf(line, sizeof(line), "%s", s->commands[c]);
        for (char *tok = strtok(line, " "); tok && n < 32; tok = strtok(NULL, " "))
            if ((args[n] = expand_arg(p, tok, bufs[n])) != NULL) n++;
        args[n] = NULL;
        double t = run_stage_command(args);
        if (t < 0) return -1.0;
        seconds += t;
    }
    return seconds;
}

// The held-out evaluation of a stage's model, into OUT/eval-<stage>.json.
static void evaluate_stage(const PipelineRun *p, const Stage *s) {
    char model[4200], json[4200], problems[4200];
    snprintf(model, sizeof(model), "%s/%s", p->out, s->name);
    snprintf(json, sizeof(json), "%s/eval-%s.json", p->out, s->name);
    snprintf(problems, sizeof(problems), "%s/eval-%s.problems.jsonl", p->out, s->name);
    const char *a[] = {"eval", "--model", model, "--task", "all", "--levels", PIPELINE_EVAL_LEVELS,
                       "--k", "4", "--n", PIPELINE_EVAL_N, "--max-new-tokens", "200", "--seed",
                       "7", "--detail", "--out", json, "--problems", problems,
                       p->mtp ? "--speculative" : NULL, NULL};
    run_stage_command(a);
}

// The index of the last stage to run: p->until's, or the last of STAGES.
static int last_stage(const PipelineRun *p) {
    if (!p->until) return N_STAGES - 1;
    for (int i = 0; i < N_STAGES; i++)
        if (strcmp(STAGES[i].name, p->until) == 0) return i;
    char names[1024] = "";
    for (int i = 0; i < N_STAGES; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "",
                 STAGES[i].name);
    die("pipeline: --until: no stage '%s' (the stages: %s)", p->until, names);
    return -1;  // not reached: die exits
}

// Runs every stage not yet done into p->out (up to p->until's, if given), then writes
// p->out/report.md.
void pipeline_run(const PipelineRun *p) {
    char err[R1_ERR_LEN];
    int last = last_stage(p);
    if (make_dirs(p->out, err)) die("%s", err);
    for (int i = 0; i <= last; i++) {
        const Stage *s = &STAGES[i];
        if (stage_done(p->out, s->name)) {
            printf("stage %-16s done (skipped)\n", s->name);
            continue;
        }
        printf("\n== stage %s: %s\n", s->name, s->what);
        double sec = run_stage(p, s);
        if (sec < 0) {  // keep what was measured: the report of the stages done so far
            write_pipeline_report(p, STAGES, N_STAGES);
            die("pipeline: stage %s failed (see above); the report of the stages before it is in "
                "%s/report.md", s->name, p->out);
        }
        if (s->evaluated) evaluate_stage(p, s);
        stage_mark(p->out, s->name, sec);
    }
    write_pipeline_report(p, STAGES, N_STAGES);
}

// OUT/report.md over several seeds' runs (OUT/seed-S): each stage's numbers as the mean over
// the seeds ± its standard error, then the findings measured in every run.
void pipeline_write_seeds_report(const char *out, char (*dirs)[4200], const char *const *seeds,
                                  int n) {
    char path[4200], err[R1_ERR_LEN];
    snprintf(path, sizeof(path), "%s/report.md", out);
    AtomicFile af;
    if (atomic_open(&af, path, err)) die("%s", err);
    FILE *f = af.f;
    fprintf(f, "# r1.c pipeline report over %d seeds (", n);
    for (int i = 0; i < n; i++) fprintf(f, "%s%s", i ? ", " : "", seeds[i]);
    fprintf(f, ")\n\nEach cell: the mean over the seeds ± its standard error (the spread between "
            "seeds / sqrt(seeds)). One seed's own report: seed-S/report.md.\n\n");
    report_table_header(f, "stage");
    for (int s = 0; s < N_STAGES; s++) {
        if (!STAGES[s].evaluated) continue;
        fprintf(f, "| %s | %s |", STAGES[s].name, STAGES[s].what);
        for (int c = 0; c < N_REPORT_COLUMNS; c++) {
            double x[64], mean, se;
            int k = 0;
            for (int r = 0; r < n && k < 64; r++) {
                double v = eval_field(dirs[r], STAGES[s].name, REPORT_COLUMNS[c].key, NAN);
                if (isfinite(v)) x[k++] = v;
            }
            mean_se(x, k, &mean, &se);
            if (k) fprintf(f, " %.3f ± %.3f |", mean, isfinite(se) ? se : 0.0);
            else fprintf(f, " - |");
        }
        fprintf(f, " %.2fM |\n", stage_params(dirs[0], STAGES[s].name) / 1e6);
    }
    write_findings(f, dirs, n);
    if (atomic_commit(&af, err)) die("%s", err);
}


