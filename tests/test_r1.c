// tests/test_r1.c: the model (kernels.c, r1.c) and the program's training pieces (main.c).
//
// What is checked, and why:
//   1. Gradients. Every *_backward is compared with central finite differences of its *_forward
//      (matmul, RMSNorm with and without a row stride, SwiGLU), RoPE's backward (sign -1) is
//      checked to be the transpose of its forward, and the whole model (embedding, MLA, dense
//      MLP, DeepSeekMoE, final norm, lm_head, cross-entropy) is checked end to end on a tiny
//      config: in full, then its attention in three variants (q_lora_rank = 0, YaRN, RoPE on
//      halves), then its routers with the sequence-wise balance loss on.
//   2. Cross-entropy against numbers worked out by hand, with and without a mask.
//   3. The generation path (latent KV cache, absorbed attention) gives the same logits as the
//      training path (naive attention), position by position, in the same four variants.
//   4. Determinism: 1 and 2 threads (and 3 on 3+ cores) give bit-identical parameters and logits.
//   5. AdamW: the first steps against the formula, and a few steps lower the loss.
//   6. Bad configs and config.json files are refused with a message naming the field; both
//      config.json layouts are read; the 671B preset is refused before any allocation.
//   7. Checkpoints round-trip bit for bit and survive an interrupted save; bad ones are refused
//      with a message naming the file (and tensor); the CLI turns bad input into one line
//      "r1: ..." and exit status 1.
//   8. Sampling: greedy, reproducible with a seed, top-p, and the right distribution.
//   9. distill_loss against hand values (alpha 0 / 0.5 / 1, tau 1 / 2, with and without a mask) and
//      finite differences; SFT rows (sft_row: BOS + template + response + EOS + PAD, the mask on
//      the response and EOS only, too long -> -1) and cross-entropy under that mask.
//
// Build and run: make build/test_r1 && ./build/test_r1   (run from the repository root: the
// CLI tests call ./r1, built by `make r1`).
#include "kernels.c"
#include "r1.c"
#include "pipeline.c"  // the report's findings (static there)
#include "main.c"  // the training data rows (static there)

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

// ==============================================================================================
// Helpers
// ==============================================================================================

// Fails the test with a formatted message (cmocka's assert_* print only the expression; these
// print the measured values, which is what one needs when a tolerance is missed).
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                        \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

// The variants of the tiny config the model-level tests run on.
typedef enum { V_BASE, V_QNULL, V_YARN, V_HALVES } Variant;
static const char *const VARIANT_NAME[] = {"q_lora_rank 16", "q_lora_rank 0 (q_proj)",
                                           "YaRN (factor 4, mscale 0.707)",
                                           "rope_interleave 0 (rotate halves)"};

// The "tiny" preset, shrunk to 4 blocks (2 dense + 2 MoE), with a larger init std (0.1) so that
// activations and gradients are not tiny (a gradient check on values near 0 proves little).
static Config tiny_config(Variant v) {
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 4;
    c.first_k_dense_replace = 2;
    c.initializer_range = 0.1f;
    if (v == V_QNULL) c.q_lora_rank = 0;
    if (v == V_YARN) {
        c.rope_yarn = 1;
        c.rope_factor = 4.0f;
        c.rope_original_max_position_embeddings = 16;
        c.rope_beta_fast = 32.0f;
        c.rope_beta_slow = 1.0f;
        c.rope_mscale = 0.707f;
        c.rope_mscale_all_dim = 1.0f;
    }
    if (v == V_HALVES) c.rope_interleave = 0;
    return c;
}

// Creates a model with random weights. RMSNorm weights are moved away from 1 and the router
// bias away from 0: with norm weights all 1 a backward that forgot to multiply by w would still
// pass, and with a zero bias "selection uses s + b, weights use s" would go untested.
static void make_model(Model *m, const Config *c, uint64_t seed, int B, int T) {
    char err[R1_ERR_LEN];
    int rc = model_create(m, c, err);
    EXPECT(rc == 0, "model_create: %s", err);
    model_init_random(m, seed);
    Rng rng;
    rng_seed(&rng, seed + 1000);
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->table[i];
        float *w = m->params + p->offset;
        if (strstr(p->name, "e_score_correction_bias"))
            for (size_t j = 0; j < p->numel; j++) w[j] = 0.05f * rng_normal(&rng);
        else if (p->ndim == 1)
            for (size_t j = 0; j < p->numel; j++) w[j] = 1.0f + 0.2f * rng_normal(&rng);
    }
    rc = model_alloc_training(m, B, T, err);
    EXPECT(rc == 0, "model_alloc_training: %s", err);
}

static void random_ids(int *ids, int n, int V, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) ids[i] = (int)(rng_next(&rng) % (uint64_t)V);
}

static void fill_normal(float *x, size_t n, float std, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(rng);
}

// Mean next-token cross-entropy of the logits, accumulated in double (our own scalar for the
// finite differences: float rounding of the loss would swamp differences of ~1e-5).
static double ce_loss_double(const float *logits, const int *ids, int B, int T, int V) {
    double total = 0.0;
    int count = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const float *z = logits + ((size_t)b * T + t) * V;
            double mx = z[0], sum = 0.0;
            for (int v = 1; v < V; v++) if (z[v] > mx) mx = z[v];
            for (int v = 0; v < V; v++) sum += exp((double)z[v] - mx);
            total += log(sum) + mx - z[ids[b * T + t + 1]];
            count++;
        }
    return total / count;
}

// Relative L2 distance ||a - b|| / ||b|| in double.
static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

// Recursively removes a directory the test made (files and subdirectories only).
static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                char sub[1024];
                snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
                rm_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

// ==============================================================================================
// 1. Gradient checks, op by op
// ==============================================================================================
// Each op gets a scalar loss L = sum(out * R) with a fixed random R, so dL/dout = R. The
// analytic gradient (from *_backward with dout = R) is compared with the central difference
// (L(x + eps) - L(x - eps)) / (2 eps) for EVERY input element. Backward must ACCUMULATE: the
// gradient buffers are pre-filled with a constant that is subtracted before the comparison.

typedef double (*LossFn)(void *ctx);

// Checks analytic (n) against central differences of f over every element of x (n). An element
// passes when |fd - analytic| <= atol + rtol * max(|fd|, |analytic|).
static void fd_check(const char *what, float *x, size_t n, const float *analytic, LossFn f,
                     void *ctx, float eps, double rtol, double atol) {
    double worst = 0.0, max_an = 0.0;
    size_t worst_i = 0;
    double worst_fd = 0, worst_an = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + eps;
        float xp = x[i];
        double lp = f(ctx);
        x[i] = x0 - eps;
        float xm = x[i];
        double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);  // the step actually taken
        double an = analytic[i];
        double ratio = fabs(fd - an) / (atol + rtol * fmax(fabs(fd), fabs(an)));
        if (ratio > worst) {
            worst = ratio;
            worst_i = i;
            worst_fd = fd;
            worst_an = an;
        }
        if (fabs(an) > max_an) max_an = fabs(an);
    }
    // a check on an all-zero gradient would pass whatever backward did
    EXPECT(max_an > 1e-3, "%s: analytic gradient is (almost) zero everywhere (max %g)", what,
           max_an);
    EXPECT(worst <= 1.0,
           "%s: element %zu: analytic %.7g vs finite difference %.7g (error %.3g x tolerance)",
           what, worst_i, worst_an, worst_fd, worst);
}

// sum(out * R) in double
static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// ---- matmul ----------------------------------------------------------------------------------
typedef struct {
    float *out, *inp, *W, *R;
    int N, C, OC;
} MatmulCtx;

static double matmul_loss(void *p) {
    MatmulCtx *c = p;
    matmul_forward(c->out, c->inp, c->W, c->N, c->C, c->OC, 0);
    return dot_d(c->out, c->R, (size_t)c->N * c->OC);
}

// matmul_forward against a plain triple loop, accumulate = 1 adding to what is there, and
// matmul_backward's dinp and dW by differences. Shapes with full register tiles and ragged edges.
static void check_matmul(int N, int C, int OC) {
    Rng rng;
    rng_seed(&rng, 1 + N);
    float *inp = malloc(sizeof(float) * N * C), *W = malloc(sizeof(float) * OC * C);
    float *out = malloc(sizeof(float) * N * OC), *R = malloc(sizeof(float) * N * OC);
    float *out2 = malloc(sizeof(float) * N * OC);
    float *dinp = malloc(sizeof(float) * N * C), *dW = malloc(sizeof(float) * OC * C);
    fill_normal(inp, (size_t)N * C, 1.0f, &rng);
    fill_normal(W, (size_t)OC * C, 1.0f, &rng);
    fill_normal(R, (size_t)N * OC, 1.0f, &rng);
    // forward against the definition out[t][o] = sum_c inp[t][c] W[o][c]
    matmul_forward(out, inp, W, N, C, OC, 0);
    for (int t = 0; t < N; t++)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[t * C + c] * W[o * C + c];
            EXPECT(fabs(out[t * OC + o] - s) <= 1e-5 * (1 + fabs(s)),
                   "matmul_forward out[%d][%d] = %.7g, expected %.7g", t, o, out[t * OC + o], s);
        }
    // accumulate = 1: out2 = 1 + inp @ W^T
    for (int i = 0; i < N * OC; i++) out2[i] = 1.0f;
    matmul_forward(out2, inp, W, N, C, OC, 1);
    for (int i = 0; i < N * OC; i++)
        EXPECT(fabs(out2[i] - (1.0f + out[i])) <= 1e-5 * (1 + fabs(out[i])),
               "accumulate: out[%d] = %.7g, expected %.7g", i, out2[i], 1.0f + out[i]);
    // backward accumulates into pre-filled buffers
    for (int i = 0; i < N * C; i++) dinp[i] = 0.25f;
    for (int i = 0; i < OC * C; i++) dW[i] = -0.5f;
    matmul_backward(dinp, dW, R, inp, W, N, C, OC, 1);
    for (int i = 0; i < N * C; i++) dinp[i] -= 0.25f;
    for (int i = 0; i < OC * C; i++) dW[i] += 0.5f;
    MatmulCtx ctx = {out, inp, W, R, N, C, OC};
    fd_check("matmul dinp", inp, (size_t)N * C, dinp, matmul_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    fd_check("matmul dW", W, (size_t)OC * C, dW, matmul_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    // either output may be NULL
    float *dW2 = calloc((size_t)OC * C, sizeof(float));
    matmul_backward(NULL, dW2, R, inp, W, N, C, OC, 1);
    for (int i = 0; i < OC * C; i++)
        EXPECT(fabs(dW2[i] - dW[i]) <= 1e-5 * (1 + fabs(dW[i])), "dW with dinp NULL differs at %d", i);
    free(dW2);
    // accumulate = 0 overwrites whatever dinp held (NaN here) with exactly the floats that
    // adding into a zeroed buffer gives
    float *set = malloc(sizeof(float) * N * C), *added = calloc((size_t)N * C, sizeof(float));
    for (int i = 0; i < N * C; i++) set[i] = NAN;
    matmul_backward(set, NULL, R, inp, W, N, C, OC, 0);
    matmul_backward(added, NULL, R, inp, W, N, C, OC, 1);
    EXPECT(memcmp(set, added, sizeof(float) * N * C) == 0,
           "matmul_backward accumulate 0 is not the floats of += into zeros (%d x %d x %d)", N, OC, C);
    free(set); free(added);
    free(inp); free(W); free(out); free(R); free(out2); free(dinp); free(dW);
}

static void test_matmul(void **state) {
    (void)state;
    check_matmul(13, 7, 40);  // 2 full rows of 6 + 1, 2 full columns of 16 + 8
    check_matmul(5, 3, 70);   // only edges
    check_matmul(1, 32, 16);  // one token (the shape of generation)
}

// matmul_nn and matmul_causal against a double-precision triple loop, with A and B in place or
// as transposed views, edges in every direction, several k blocks (K > MM_KC) and column blocks
// (M > MM_NC), and each causal mode on T smaller and larger than the head width.
static double naive_entry(const float *a, size_t ars, size_t aks, const float *b, size_t bks,
                          size_t bcs, int i, int j, int k0, int k1, double init) {
    double s = init;
    for (int k = k0; k < k1; k++) s += (double)a[i * ars + k * aks] * b[k * bks + j * bcs];
    return s;
}

static void check_matmul_nn(int N, int K, int M, int a_transposed, int b_transposed, int acc) {
    Rng rng;
    rng_seed(&rng, (uint64_t)N * 7919 + K * 31 + M);
    float *a = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * K * M);
    float *out = malloc(sizeof(float) * N * M);
    fill_normal(a, (size_t)N * K, 1.0f, &rng);
    fill_normal(b, (size_t)K * M, 1.0f, &rng);
    for (int i = 0; i < N * M; i++) out[i] = acc ? 0.5f : NAN;  // NAN: must be overwritten
    size_t ars = a_transposed ? 1 : K, aks = a_transposed ? N : 1;
    size_t bks = b_transposed ? 1 : M, bcs = b_transposed ? K : 1;
    matmul_nn(out, a, ars, aks, b, bks, bcs, N, K, M, acc);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < M; j++) {
            double s = naive_entry(a, ars, aks, b, bks, bcs, i, j, 0, K, acc ? 0.5 : 0.0);
            EXPECT(fabs(out[i * M + j] - s) <= 1e-5 * (sqrt(K) + fabs(s)),
                   "matmul_nn %dx%dx%d (A%s, B%s, acc %d) out[%d][%d] = %.7g, expected %.7g", N,
                   K, M, a_transposed ? "^T" : "", b_transposed ? "^T" : "", acc, i, j,
                   out[i * M + j], s);
            // and exactly the float of one fused multiply-add per k, in k order, whatever the
            // tile (whole, edge or narrow), the blocks, the packing and the thread
            float chain = acc ? 0.5f : 0.0f;
            for (int k = 0; k < K; k++)
                chain = fmaf(a[i * ars + k * aks], b[k * bks + j * bcs], chain);
            EXPECT(memcmp(&out[i * M + j], &chain, sizeof(float)) == 0,
                   "matmul_nn %dx%dx%d (A%s, B%s, acc %d) out[%d][%d] = %.9g, not the k-order "
                   "FMA chain's %.9g", N, K, M, a_transposed ? "^T" : "",
                   b_transposed ? "^T" : "", acc, i, j, out[i * M + j], chain);
        }
    free(a); free(b); free(out);
}

static void check_matmul_causal(int T, int d, CausalMode mode, int acc) {
    Rng rng;
    rng_seed(&rng, (uint64_t)T * 13 + d + mode);
    // OUT_LOWER: (T,d) @ (d,T); the others: (T,T) @ (T,d), A causal (lower) or its transpose.
    // out's rows are ldo = M + 3 apart: the 3 floats between rows must stay untouched.
    int K = mode == CAUSAL_OUT_LOWER ? d : T, M = mode == CAUSAL_OUT_LOWER ? T : d, ldo = M + 3;
    float *a = malloc(sizeof(float) * T * K), *b = malloc(sizeof(float) * K * M);
    float *out = malloc(sizeof(float) * T * ldo);
    float *pack = malloc(sizeof(float) * causal_pack_floats(K, M));
    fill_normal(a, (size_t)T * K, 1.0f, &rng);
    fill_normal(b, (size_t)K * M, 1.0f, &rng);
    size_t ars = K, aks = 1;
    if (mode != CAUSAL_OUT_LOWER)  // zero A's masked half, as softmax leaves P
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++) a[i * T + j] = 0.0f;
    if (mode == CAUSAL_K_FROM_ROW) ars = 1, aks = T;  // A = P^T
    for (int i = 0; i < T * ldo; i++) out[i] = i % ldo >= M ? -7.0f : acc ? 0.5f : NAN;
    matmul_causal(out, ldo, a, ars, aks, b, M, 1, T, K, M, mode, acc, pack);
    for (int i = 0; i < T; i++) {
        for (int j = 0; j < (mode == CAUSAL_OUT_LOWER ? i + 1 : M); j++) {
            double s = naive_entry(a, ars, aks, b, M, 1, i, j, 0, K, acc ? 0.5 : 0.0);
            EXPECT(fabs(out[i * ldo + j] - s) <= 1e-5 * (sqrt(K) + fabs(s)),
                   "matmul_causal T %d d %d mode %d acc %d out[%d][%d] = %.7g, expected %.7g", T,
                   d, (int)mode, acc, i, j, out[i * ldo + j], s);
        }
        for (int j = M; j < ldo; j++)
            EXPECT(out[i * ldo + j] == -7.0f, "matmul_causal wrote past row %d's %d columns", i, M);
    }
    free(a); free(b); free(out); free(pack);
}

static void test_matmul_blocks(void **state) {
    (void)state;
    // {24, 20, 48}, {19, 40, 80}: a 16-wide edge after whole panels (a query head's 48)
    // {2, 40, 33}, {10, 17, 64}, {4, 300, 40}, {19, ...}: edge tiles of 2, 4 and 3 rows
    const int shapes[][3] = {{13, 5, 17}, {7, 300, 33}, {37, 513, 150}, {600, 40, 20}, {1, 1, 1},
                             {24, 20, 48}, {19, 40, 80}, {2, 40, 33}, {10, 17, 64}, {4, 300, 40}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++)
                    check_matmul_nn(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, acc);
    // Shared by a team: fewer row tiles than two per thread share (tile, panel) pairs over all
    // k blocks (matmul_tile_panels: 1 and 3 row tiles, 2 and 3 panels, 1 and 4 k blocks), more
    // share row tiles block by block; the same floats at 1, 3 and 4 threads.
    const int team_shapes[][3] = {{8, 300, 64}, {20, 1000, 96}, {64, 600, 128}, {6, 70, 160}};
    int was = omp_get_max_threads();
    for (int threads = 1; threads <= 4; threads += threads == 1 ? 2 : 1) {
        omp_set_num_threads(threads);
        for (int s = 0; s < 4; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    check_matmul_nn(team_shapes[s][0], team_shapes[s][1], team_shapes[s][2],
                                    ta, tb, 1);
    }
    omp_set_num_threads(was);
    // T < d, T > d, T > MM_KC, and d = 48 (a query head's width)
    const int causal[][2] = {{7, 12}, {40, 24}, {300, 20}, {64, 48}};
    for (int c = 0; c < 4; c++)
        for (int mode = 0; mode < 3; mode++)
            for (int acc = 0; acc < 2; acc++)
                check_matmul_causal(causal[c][0], causal[c][1], (CausalMode)mode, acc);
}

// r1_expf against double exp: within 1.5 ulp on [-87, 88] (every 1e-3, plus the ends), and the
// special values.
static void test_r1_expf(void **state) {
    (void)state;
    double worst = 0.0;
    float worst_x = 0.0f;
    for (int i = 0; i <= 175000; i++) {
        float x = -87.0f + (float)i * 1e-3f;
        if (x > 88.0f) x = 88.0f;
        float want = (float)exp((double)x);
        double ulp = nextafterf(want, INFINITY) - want;
        double err = fabs((double)r1_expf(x) - exp((double)x)) / ulp;
        if (err > worst) worst = err, worst_x = x;
    }
    print_message("  r1_expf: worst error %.2f ulp (at x = %g)\n", worst, worst_x);
    EXPECT(worst <= 1.5, "r1_expf is %.2f ulp off at x = %g", worst, worst_x);
    EXPECT(r1_expf(0.0f) == 1.0f, "exp(0) = %.9g", r1_expf(0.0f));
    EXPECT(r1_expf(-INFINITY) == 0.0f && r1_expf(-100.0f) == 0.0f, "exp(-inf), exp(-100) not 0");
    EXPECT(isinf(r1_expf(INFINITY)) && isinf(r1_expf(100.0f)), "exp(inf), exp(100) not inf");
    EXPECT(isnan(r1_expf(NAN)), "exp(NaN) is not NaN");
}

// vec_expf computes r1_expf's operations on a whole vector register: every lane must be the
// very float r1_expf gives, for every input (a sweep over the bit patterns, and the edges).
// sum_exp_lanes must sum the terms in its documented order (8 lanes over the whole groups of 8,
// the rest one by one, then s + the lanes pairwise), whatever the register width.
static float sum_exp_reference(const float *x, int n, float shift, float *e) {
    float lanes[8] = {0}, s = 0.0f;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) lanes[l] += (e[j + l] = r1_expf(x[j + l] - shift));
    for (; j < n; j++) s += (e[j] = r1_expf(x[j] - shift));
    return s + add_lanes(lanes);
}

static void test_vec_expf(void **state) {
    (void)state;
    long checked = 0, differ = 0;
    float edges[] = {0.0f, -0.0f, -87.0f, -87.000008f, 88.0f, 88.000008f, -100.0f, 100.0f,
                     INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 0.5f, -0.5f, 80.0f};
    for (uint64_t u = 0; u < ((uint64_t)1 << 32); u += 65537 * VEC_FLOATS) {
        float x[VEC_FLOATS], y[VEC_FLOATS];
        for (int l = 0; l < VEC_FLOATS; l++) {
            uint32_t bits = (uint32_t)(u + (uint64_t)l * 65537);
            memcpy(&x[l], &bits, sizeof(float));
        }
        if (u == 0) memcpy(x, edges, sizeof(float) * (VEC_FLOATS < 16 ? VEC_FLOATS : 16));
        vec_store(y, vec_expf(vec_load(x)));
        for (int l = 0; l < VEC_FLOATS; l++, checked++) {
            float want = r1_expf(x[l]);
            if (memcmp(&want, &y[l], sizeof(float)) != 0 && !(isnan(want) && isnan(y[l]))) {
                if (differ++ < 3)
                    print_error("vec_expf(%a) = %a, r1_expf gives %a\n", x[l], y[l], want);
            }
        }
    }
    print_message("  vec_expf: %ld inputs, %ld differ from r1_expf\n", checked, differ);
    EXPECT(differ == 0, "vec_expf differs from r1_expf on %ld of %ld inputs", differ, checked);
    Rng rng;
    rng_seed(&rng, 11);
    float x[80], e1[80], e2[80];
    for (int n = 0; n <= 80; n++) {
        for (int i = 0; i < n; i++) x[i] = 20.0f * rng_normal(&rng);
        float shift = n ? max_lanes(x, n) : 0.0f, want = sum_exp_reference(x, n, shift, e1);
        float got = sum_exp_lanes(x, n, shift, e2);
        EXPECT(memcmp(&got, &want, sizeof(float)) == 0, "n = %d: sum_exp_lanes %a, in order %a", n,
               got, want);
        EXPECT(n == 0 || memcmp(e1, e2, sizeof(float) * n) == 0, "n = %d: the stored terms differ",
               n);
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        EXPECT(n == 0 || max_lanes(x, n) == mx, "n = %d: max_lanes %g, max %g", n, max_lanes(x, n),
               mx);
    }
}

// ---- RMSNorm ---------------------------------------------------------------------------------
typedef struct {
    float *out, *rstd, *inp, *w, *R;
    int stride, N, C;
} NormCtx;

static double norm_loss(void *p) {
    NormCtx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->stride, c->w, c->N, c->C, 1e-5f);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

// stride == C is the plain case; stride > C is how MLA normalises c_kv, the first dc floats of
// each (dc + dr) row of kv_a. Backward must then leave the other dr floats of each dinp row
// alone (they hold the gradient of the rope key).
static void check_rmsnorm(int stride) {
    int N = 3, C = 6;
    Rng rng;
    rng_seed(&rng, 2 + stride);
    size_t nin = (size_t)N * stride;
    float *inp = malloc(sizeof(float) * nin), *w = malloc(sizeof(float) * C);
    float *out = malloc(sizeof(float) * N * C), *R = malloc(sizeof(float) * N * C);
    float *rstd = malloc(sizeof(float) * N), *dinp = malloc(sizeof(float) * nin);
    float *dw = malloc(sizeof(float) * C), *dinp_an = calloc(nin, sizeof(float));
    fill_normal(inp, nin, 1.0f, &rng);
    for (int c = 0; c < C; c++) w[c] = 1.0f + 0.5f * rng_normal(&rng);
    fill_normal(R, (size_t)N * C, 1.0f, &rng);
    // forward against the definition
    rmsnorm_forward(out, rstd, inp, stride, w, N, C, 1e-5f);
    for (int t = 0; t < N; t++) {
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)inp[t * stride + c] * inp[t * stride + c];
        double r = 1.0 / sqrt(ss / C + 1e-5);
        EXPECT(fabs(rstd[t] - r) <= 1e-5 * r, "rstd[%d] = %.7g, expected %.7g", t, rstd[t], r);
        for (int c = 0; c < C; c++) {
            double y = w[c] * inp[t * stride + c] * r;
            EXPECT(fabs(out[t * C + c] - y) <= 1e-5 * (1 + fabs(y)), "out[%d][%d] = %.7g vs %.7g",
                   t, c, out[t * C + c], y);
        }
    }
    for (size_t i = 0; i < nin; i++) dinp[i] = 0.75f;  // pre-filled: backward must add
    for (int c = 0; c < C; c++) dw[c] = 0.5f;
    rmsnorm_backward(dinp, dw, R, inp, stride, w, rstd, N, C, 1);
    for (int t = 0; t < N; t++)
        for (int c = 0; c < stride; c++) {
            size_t i = (size_t)t * stride + c;
            if (c >= C) EXPECT(dinp[i] == 0.75f, "stride %d: backward wrote the padding dinp[%d][%d] = %g",
                               stride, t, c, dinp[i]);
            dinp_an[i] = dinp[i] - 0.75f;
        }
    for (int c = 0; c < C; c++) dw[c] -= 0.5f;
    // accumulate = 0 overwrites each row's C floats (NaN here) with the floats of += into zeros
    float *set = malloc(sizeof(float) * nin), *added = calloc(nin, sizeof(float));
    for (size_t i = 0; i < nin; i++) set[i] = NAN;
    rmsnorm_backward(set, NULL, R, inp, stride, w, rstd, N, C, 0);
    rmsnorm_backward(added, NULL, R, inp, stride, w, rstd, N, C, 1);
    for (int t = 0; t < N; t++)
        EXPECT(memcmp(set + (size_t)t * stride, added + (size_t)t * stride, sizeof(float) * C) == 0,
               "stride %d: rmsnorm_backward accumulate 0, row %d is not the floats of += into zeros",
               stride, t);
    free(set); free(added);
    NormCtx ctx = {out, rstd, inp, w, R, stride, N, C};
    char what[64];
    snprintf(what, sizeof(what), "rmsnorm dinp (stride %d)", stride);
    fd_check(what, inp, nin, dinp_an, norm_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    snprintf(what, sizeof(what), "rmsnorm dw (stride %d)", stride);
    fd_check(what, w, (size_t)C, dw, norm_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    free(inp); free(w); free(out); free(R); free(rstd); free(dinp); free(dw); free(dinp_an);
}

// RMS_ROWS rows are summed side by side (sum_squares_rows), the last rows side by side too: both
// must give every row the float it gets alone (N = 1 takes the last-rows path).
static void check_rmsnorm_rows_alone(void) {
    int N = RMS_ROWS + 3, C = 40, stride = 44;
    Rng rng;
    rng_seed(&rng, 5);
    float *inp = malloc(sizeof(float) * N * stride), *w = malloc(sizeof(float) * C);
    float *out = malloc(sizeof(float) * N * C), *rstd = malloc(sizeof(float) * N);
    float *dy = malloc(sizeof(float) * N * C), *dinp = calloc((size_t)N * stride, sizeof(float));
    float out1[40], rstd1, dinp1[44];
    fill_normal(inp, (size_t)N * stride, 1.0f, &rng);
    fill_normal(w, (size_t)C, 1.0f, &rng);
    fill_normal(dy, (size_t)N * C, 1.0f, &rng);
    rmsnorm_forward(out, rstd, inp, stride, w, N, C, 1e-6f);
    rmsnorm_backward(dinp, NULL, dy, inp, stride, w, rstd, N, C, 1);
    for (int t = 0; t < N; t++) {
        const float *x = inp + (size_t)t * stride;
        rmsnorm_forward(out1, &rstd1, x, stride, w, 1, C, 1e-6f);
        memset(dinp1, 0, sizeof(dinp1));
        rmsnorm_backward(dinp1, NULL, dy + (size_t)t * C, x, stride, w, &rstd1, 1, C, 1);
        EXPECT(memcmp(&rstd1, &rstd[t], sizeof(float)) == 0 &&
                   memcmp(out1, out + (size_t)t * C, sizeof(float) * C) == 0,
               "row %d of %d: the forward differs from the row alone", t, N);
        EXPECT(memcmp(dinp1, dinp + (size_t)t * stride, sizeof(float) * C) == 0,
               "row %d of %d: the backward differs from the row alone", t, N);
    }
    free(inp); free(w); free(out); free(rstd); free(dy); free(dinp);
}

static void test_rmsnorm(void **state) {
    (void)state;
    check_rmsnorm(6);   // stride == C
    check_rmsnorm(9);   // stride > C
    check_rmsnorm_rows_alone();
}

// ---- RoPE ------------------------------------------------------------------------------------
// A rotation R is linear, so its backward is its transpose: <R x, y> == <x, R^T y> for all x, y.
// rope_rotate with sign -1 must be that transpose, also under YaRN where cos and sin carry the
// attention factor (R is then a scaled rotation, not orthogonal). Checked with the model's own
// tables at several positions, in both pair layouts. Plus one rotation worked out by hand.
static void test_rope_transpose(void **state) {
    (void)state;
    Variant vs[2] = {V_BASE, V_YARN};
    for (int vi = 0; vi < 2; vi++) {
        Config c = tiny_config(vs[vi]);
        c.qk_rope_head_dim = 8;
        Model m;
        char err[R1_ERR_LEN];
        EXPECT(model_create(&m, &c, err) == 0, "%s", err);
        int dr = c.qk_rope_head_dim, half = dr / 2;
        Rng rng;
        rng_seed(&rng, 3);
        for (int interleave = 0; interleave <= 1; interleave++)
            for (int pos = 0; pos < c.max_position_embeddings; pos += 7) {
                float x[8], y[8], rx[8], rty[8];
                fill_normal(x, 8, 1.0f, &rng);
                fill_normal(y, 8, 1.0f, &rng);
                memcpy(rx, x, sizeof(x));
                memcpy(rty, y, sizeof(y));
                const float *cs = m.rope_cos + (size_t)pos * half, *sn = m.rope_sin + (size_t)pos * half;
                rope_rotate(rx, dr, cs, sn, 1.0f, interleave);
                rope_rotate(rty, dr, cs, sn, -1.0f, interleave);
                double a = 0, b = 0, scale = 0;
                for (int i = 0; i < dr; i++) {
                    a += (double)rx[i] * y[i];
                    b += (double)x[i] * rty[i];
                    scale += fabs((double)rx[i] * y[i]);
                }
                EXPECT(fabs(a - b) <= 1e-6 * scale,
                       "%s, interleave %d, pos %d: <Rx,y> = %.9g but <x,R^T y> = %.9g",
                       VARIANT_NAME[vs[vi]], interleave, pos, a, b);
                if (!c.rope_yarn) {  // a pure rotation keeps the norm
                    double nx = 0, nrx = 0;
                    for (int i = 0; i < dr; i++) {
                        nx += (double)x[i] * x[i];
                        nrx += (double)rx[i] * rx[i];
                    }
                    EXPECT(fabs(nx - nrx) <= 1e-5 * nx, "pos %d: |x|^2 %.7g, |Rx|^2 %.7g", pos, nx, nrx);
                }
            }
        model_free(&m);
    }
    // by hand: dr = 4, pair 0 at angle a0, pair 1 at angle a1
    float cs[2] = {cosf(0.3f), cosf(1.1f)}, sn[2] = {sinf(0.3f), sinf(1.1f)};
    float v[4] = {1, 2, 3, 4};
    rope_rotate(v, 4, cs, sn, 1.0f, 1);  // interleaved: pairs (0,1), (2,3)
    float e[4] = {1 * cs[0] - 2 * sn[0], 2 * cs[0] + 1 * sn[0], 3 * cs[1] - 4 * sn[1],
                  4 * cs[1] + 3 * sn[1]};
    for (int i = 0; i < 4; i++) EXPECT(fabs(v[i] - e[i]) < 1e-6, "interleaved v[%d] = %g, expected %g", i, v[i], e[i]);
    float u[4] = {1, 2, 3, 4};
    rope_rotate(u, 4, cs, sn, 1.0f, 0);  // halves: pairs (0,2), (1,3)
    float f[4] = {1 * cs[0] - 3 * sn[0], 2 * cs[1] - 4 * sn[1], 3 * cs[0] + 1 * sn[0],
                  4 * cs[1] + 2 * sn[1]};
    for (int i = 0; i < 4; i++) EXPECT(fabs(u[i] - f[i]) < 1e-6, "halves u[%d] = %g, expected %g", i, u[i], f[i]);
}

// ---- SwiGLU ----------------------------------------------------------------------------------
typedef struct {
    float *out, *x, *Wg, *Wu, *Wd, *g, *u, *h, *R;
    int N, D, I;
} SwigluCtx;

static double swiglu_loss(void *p) {
    SwigluCtx *c = p;
    swiglu_forward(c->out, c->x, c->Wg, c->Wu, c->Wd, c->g, c->u, c->h, c->N, c->D, c->I, 0);
    return dot_d(c->out, c->R, (size_t)c->N * c->D);
}

static void test_swiglu(void **state) {
    (void)state;
    int N = 3, D = 6, I = 10;
    Rng rng;
    rng_seed(&rng, 4);
    size_t nx = (size_t)N * D, nw = (size_t)I * D, nh = (size_t)N * I;
    float *x = malloc(4 * nx), *Wg = malloc(4 * nw), *Wu = malloc(4 * nw), *Wd = malloc(4 * nw);
    float *g = malloc(4 * nh), *u = malloc(4 * nh), *h = malloc(4 * nh), *out = malloc(4 * nx);
    float *R = malloc(4 * nx), *dh = malloc(4 * nh), *dgu = malloc(4 * nh);
    float *dx = malloc(4 * nx), *dWg = malloc(4 * nw), *dWu = malloc(4 * nw), *dWd = malloc(4 * nw);
    fill_normal(x, nx, 1.0f, &rng);
    fill_normal(Wg, nw, 0.7f, &rng);
    fill_normal(Wu, nw, 0.7f, &rng);
    fill_normal(Wd, nw, 0.7f, &rng);
    fill_normal(R, nx, 1.0f, &rng);
    // forward against the definition: out = Wd (silu(Wg x) * (Wu x))
    swiglu_forward(out, x, Wg, Wu, Wd, g, u, h, N, D, I, 0);
    for (int t = 0; t < N; t++)
        for (int d = 0; d < D; d++) {
            double s = 0.0;
            for (int i = 0; i < I; i++) {
                double a = 0, b = 0;
                for (int k = 0; k < D; k++) {
                    a += (double)Wg[i * D + k] * x[t * D + k];
                    b += (double)Wu[i * D + k] * x[t * D + k];
                }
                s += Wd[d * I + i] * (a / (1 + exp(-a))) * b;
            }
            EXPECT(fabs(out[t * D + d] - s) <= 1e-5 * (1 + fabs(s)), "swiglu out[%d][%d] = %.7g, expected %.7g",
                   t, d, out[t * D + d], s);
        }
    for (size_t i = 0; i < nx; i++) dx[i] = 0.5f;
    for (size_t i = 0; i < nw; i++) dWg[i] = dWu[i] = dWd[i] = -0.25f;
    for (size_t i = 0; i < (size_t)N * I; i++) dh[i] = dgu[i] = NAN;  // scratch: never read first
    swiglu_backward(dx, dWg, dWu, dWd, R, x, Wg, Wu, Wd, g, u, h, N, D, I, dh, dgu, 1);
    // accumulate = 0 overwrites dx (NaN here): the floats of adding into zeros
    float *dx_set = malloc(sizeof(float) * nx), *dx_added = calloc(nx, sizeof(float));
    float *dW_scratch = calloc(nw, sizeof(float));
    for (size_t i = 0; i < nx; i++) dx_set[i] = NAN;
    swiglu_backward(dx_set, dW_scratch, dW_scratch, dW_scratch, R, x, Wg, Wu, Wd, g, u, h, N, D,
                    I, dh, dgu, 0);
    swiglu_backward(dx_added, dW_scratch, dW_scratch, dW_scratch, R, x, Wg, Wu, Wd, g, u, h, N, D,
                    I, dh, dgu, 1);
    EXPECT(memcmp(dx_set, dx_added, sizeof(float) * nx) == 0,
           "swiglu_backward accumulate 0 is not the floats of += into zeros");
    free(dx_set); free(dx_added); free(dW_scratch);
    for (size_t i = 0; i < nx; i++) dx[i] -= 0.5f;
    for (size_t i = 0; i < nw; i++) { dWg[i] += 0.25f; dWu[i] += 0.25f; dWd[i] += 0.25f; }
    SwigluCtx ctx = {out, x, Wg, Wu, Wd, g, u, h, R, N, D, I};
    fd_check("swiglu dx", x, nx, dx, swiglu_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    fd_check("swiglu dWg (gate_proj)", Wg, nw, dWg, swiglu_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    fd_check("swiglu dWu (up_proj)", Wu, nw, dWu, swiglu_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    fd_check("swiglu dWd (down_proj)", Wd, nw, dWd, swiglu_loss, &ctx, 1e-2f, 1e-2, 1e-3);
    free(x); free(Wg); free(Wu); free(Wd); free(g); free(u); free(h); free(out); free(R);
    free(dh); free(dgu); free(dx); free(dWg); free(dWu); free(dWd);
}

// ==============================================================================================
// 1b. The whole model by finite differences
// ==============================================================================================
// L = mean cross-entropy of model_forward's logits; model_backward from
// cross_entropy_forward_backward's dlogits gives dL/dparam for every tensor of the table. For
// each trainable tensor we perturb a few entries (5 random ones and the one with the largest
// gradient) by +-eps and compare (L+ - L-) / 2eps with the analytic value. This one check covers
// MLA forward/backward (the attention, both RoPE directions, the latent path and its norms), the
// dense MLP, the MoE layer, the final norm, lm_head and the embedding.
//
// MoE routing is a discontinuous function of the parameters: if a perturbed forward selects
// different experts somewhere, the difference quotient measures a jump, not a derivative. Such
// samples are skipped (and counted: most must survive, or the check would prove nothing).

#define GC_B 2
#define GC_T 8

typedef struct {
    int samples, skipped, nonzero;
    double worst;
    char worst_what[160];
} GcStats;

// Copies topk_idx of every MoE layer into `route` (L * N * K ints).
static void save_routing(const Model *m, int *route) {
    const Config *c = &m->cfg;
    size_t NK = (size_t)m->acts.B * m->acts.T * c->num_experts_per_tok;
    for (int l = c->first_k_dense_replace; l < c->num_hidden_layers; l++)
        memcpy(route + l * NK, m->acts.layers[l].topk_idx, NK * sizeof(int));
}

static int same_routing(const Model *m, const int *route) {
    const Config *c = &m->cfg;
    size_t NK = (size_t)m->acts.B * m->acts.T * c->num_experts_per_tok;
    for (int l = c->first_k_dense_replace; l < c->num_hidden_layers; l++)
        if (memcmp(route + l * NK, m->acts.layers[l].topk_idx, NK * sizeof(int)) != 0) return 0;
    return 1;
}

// Which tensors to sample: all of them (the base variant); only the attention's and the
// embedding's (for the variants q_lora_rank 0, YaRN and rope halves only the attention's code
// differs, and the FFN and MoE tensors are covered by the base variant); or the routers and the
// norms before them (with the sequence-wise balance loss on).
typedef enum { GC_ALL, GC_ATTENTION, GC_ROUTER } GcWhich;

static int gc_wanted(GcWhich which, const char *name) {
    if (which == GC_ALL) return 1;
    if (which == GC_ATTENTION)
        return strstr(name, "self_attn") || strstr(name, "embed_tokens") ||
               strstr(name, "input_layernorm");
    return strstr(name, "mlp.gate.weight") || strstr(name, "post_attention_layernorm");
}

// L = mean cross-entropy (+ m.balance_loss, the sequence-wise balance loss, when alpha > 0).
static double model_loss(Model *m, const int *ids, int B, int T) {
    model_forward(m, ids, B, T);
    double L = ce_loss_double(m->acts.logits, ids, B, T, m->cfg.vocab_size);
    return m->balance_alpha > 0 ? L + m->balance_loss : L;
}

static void gradcheck_model(Variant v, GcWhich which, float alpha) {
    Config c = tiny_config(v);
    Model m;
    int B = GC_B, T = GC_T, N = B * T, V = c.vocab_size;
    make_model(&m, &c, 7, B, T);
    m.balance_alpha = alpha;
    int ids[GC_B * GC_T];
    random_ids(ids, N, V, 11);
    float *dlogits = malloc(sizeof(float) * N * V);
    model_forward(&m, ids, B, T);
    float loss = cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    double loss_d = ce_loss_double(m.acts.logits, ids, B, T, V);
    EXPECT(fabs(loss - loss_d) < 1e-5 * loss_d, "cross-entropy %.9g vs double %.9g", loss, loss_d);
    model_zero_grad(&m);
    model_backward(&m, ids, dlogits);
    size_t NK = (size_t)N * c.num_experts_per_tok;
    int *route = malloc(sizeof(int) * c.num_hidden_layers * NK);
    save_routing(&m, route);

    // eps: 1e-2 is 10% of a typical weight here. Smaller steps let float32 rounding of the
    // logits dominate (about 3e-5 of error at eps 1e-3, against ~2e-6 at 1e-2); the curvature
    // error of larger steps (up to 2% at 1e-2) is cancelled by Richardson extrapolation below.
    // Routing flips are more frequent with larger steps; they are skipped.
    // The router weights (and, in the GC_ROUTER check, the norms just before the routers) move
    // the router logits directly, so steps of 1e-2 flip the routing of some token most of the
    // time: they get steps of 2e-3 (so more float noise: a larger atol).
    const double rtol = 1e-2;
    const int per_tensor = which == GC_ROUTER ? 24 : 6;
    GcStats st = {0};
    Rng rng;
    rng_seed(&rng, 12);
    for (int ti = 0; ti < m.n_tensors; ti++) {
        ParamInfo *p = &m.table[ti];
        float *w = m.params + p->offset;
        const float *g = m.grads + p->offset;
        if (!p->trainable) {
            // e_score_correction_bias: no gradient (it is moved by the balancing rule only)
            for (size_t j = 0; j < p->numel; j++)
                EXPECT(g[j] == 0.0f, "%s: %s has gradient %g at %zu", VARIANT_NAME[v], p->name, g[j], j);
            continue;
        }
        size_t jmax = 0;
        for (size_t j = 0; j < p->numel; j++) if (fabsf(g[j]) > fabsf(g[jmax])) jmax = j;
        if (!gc_wanted(which, p->name)) continue;
        int small = which == GC_ROUTER || strstr(p->name, "mlp.gate.weight") != NULL;
        const float eps = small ? 2e-3f : 1e-2f;
        const double atol = small ? 5e-5 : 2e-5;
        // every tensor a token passes through has some gradient; a routed expert that no token
        // chose has none (and its FD is zero too, which the samples below confirm)
        if (!p->expert)
            EXPECT(g[jmax] != 0.0f, "%s: %s has an all-zero gradient", VARIANT_NAME[v], p->name);
        for (int k = 0; k < per_tensor; k++) {
            size_t j = k == 0 ? jmax : (size_t)(rng_next(&rng) % p->numel);
            // L at w +- eps and w +- 2 eps; any routing change in the four forwards: skip
            float w0 = w[j], wv[4];
            double lv[4];
            int ok = 1;
            for (int q = 0; q < 4; q++) {
                float step = (q < 2 ? 1.0f : 2.0f) * eps * (q % 2 ? -1.0f : 1.0f);
                w[j] = w0 + step;
                wv[q] = w[j];
                lv[q] = model_loss(&m, ids, B, T);
                ok = ok && same_routing(&m, route);
            }
            w[j] = w0;
            st.samples++;
            if (!ok) {
                st.skipped++;
                continue;
            }
            // central differences at eps and 2 eps, combined (Richardson) so that the eps^2
            // error term cancels: fd = (4 D(eps) - D(2 eps)) / 3, accurate to O(eps^4)
            double d1 = (lv[0] - lv[1]) / ((double)wv[0] - wv[1]);
            double d2 = (lv[2] - lv[3]) / ((double)wv[2] - wv[3]);
            double fd = (4 * d1 - d2) / 3, an = g[j];
            if (fabs(an) > 1e-4) st.nonzero++;
            double ratio = fabs(fd - an) / (atol + rtol * fmax(fabs(fd), fabs(an)));
            if (ratio > st.worst) {
                st.worst = ratio;
                snprintf(st.worst_what, sizeof(st.worst_what), "%s[%zu]: analytic %.6g, fd %.6g",
                         p->name, j, an, fd);
            }
        }
    }
    print_message("    whole-model gradient check, %s%s: %d samples, %d skipped (routing flip), "
                  "%d with |gradient| > 1e-4; worst error %.2f x tolerance (%s)\n",
                  VARIANT_NAME[v], alpha > 0 ? " + balance loss" : "", st.samples, st.skipped,
                  st.nonzero, st.worst, st.worst_what);
    EXPECT(st.skipped * 2 <= st.samples, "%s: %d of %d samples skipped for routing flips",
           VARIANT_NAME[v], st.skipped, st.samples);
    EXPECT(st.nonzero * 2 >= st.samples - st.skipped,
           "%s: only %d of %d checked samples have |gradient| > 1e-4", VARIANT_NAME[v], st.nonzero,
           st.samples - st.skipped);
    EXPECT(st.worst <= 1.0, "%s: gradient mismatch: %s (%.2f x tolerance)", VARIANT_NAME[v],
           st.worst_what, st.worst);
    free(route);
    free(dlogits);
    model_free(&m);
}

static void test_gradcheck_model(void **state) { (void)state; gradcheck_model(V_BASE, GC_ALL, 0); }
static void test_gradcheck_model_qnull(void **state) {
    (void)state;
    gradcheck_model(V_QNULL, GC_ATTENTION, 0);
}
static void test_gradcheck_model_yarn(void **state) {
    (void)state;
    gradcheck_model(V_YARN, GC_ATTENTION, 0);
}
static void test_gradcheck_model_halves(void **state) {
    (void)state;
    gradcheck_model(V_HALVES, GC_ATTENTION, 0);
}
// The sequence-wise balance loss (DeepSeek-V3 eq. 17) as part of the model's loss: model_forward
// leaves its value in m.balance_loss and model_backward adds its gradient to the routers.
static void test_gradcheck_model_balance(void **state) {
    (void)state;
    gradcheck_model(V_BASE, GC_ROUTER, 0.3f);
}

// ==============================================================================================
// 2. Cross-entropy
// ==============================================================================================

// V = 3, logits [1, 2, 3], target 2: loss = log(e^1 + e^2 + e^3) - 3, dlogits = softmax - onehot.
// The last position of a sequence predicts nothing: its dlogits row is zero.
static void test_cross_entropy_by_hand(void **state) {
    (void)state;
    float logits[2 * 3] = {1, 2, 3, 5, -1, 0};  // B = 1, T = 2: position 1 is the last
    int ids[2] = {0, 2};                         // position 0 predicts ids[1] = 2
    float dl[6];
    float loss = cross_entropy_forward_backward(logits, ids, NULL, 1, 2, 3, dl);
    double Z = exp(1.0) + exp(2.0) + exp(3.0);
    double expected = log(Z) - 3.0;  // = 0.40760596...
    EXPECT(fabs(loss - expected) < 1e-6, "loss %.9g, expected %.9g", loss, expected);
    double want[3] = {exp(1.0) / Z, exp(2.0) / Z, exp(3.0) / Z - 1.0};
    for (int v = 0; v < 3; v++)
        EXPECT(fabs(dl[v] - want[v]) < 1e-6, "dlogits[%d] = %.9g, expected %.9g", v, dl[v], want[v]);
    for (int v = 3; v < 6; v++) EXPECT(dl[v] == 0.0f, "last position: dlogits[%d] = %g", v, dl[v]);
    // dlogits may be NULL; same loss
    EXPECT(cross_entropy_forward_backward(logits, ids, NULL, 1, 2, 3, NULL) == loss, "%s",
           "loss differs with dlogits NULL");
}

// One row's loss in double, for the hand checks.
static double row_ce(const float *z, int V, int target) {
    double s = 0.0;
    for (int v = 0; v < V; v++) s += exp((double)z[v]);
    return log(s) - z[target];
}

typedef struct {
    float *logits;
    const int *ids;
    const float *mask;
    int B, T, V;
} CeCtx;

static double ce_loss_fn(void *p) {
    CeCtx *c = p;
    return cross_entropy_forward_backward(c->logits, c->ids, c->mask, c->B, c->T, c->V, NULL);
}

// With a mask only positions whose TARGET is masked in count (mask[b, t+1] for the prediction at
// t), the mean is over those, dlogits is zero on the others, and what a masked-out position holds
// changes nothing. Sequences do not leak into each other (the last position of b = 0 does not
// predict the first token of b = 1).
static void test_cross_entropy_mask(void **state) {
    (void)state;
    enum { B = 2, T = 4, V = 5 };
    Rng rng;
    rng_seed(&rng, 21);
    float logits[B * T * V], dl[B * T * V];
    fill_normal(logits, B * T * V, 2.0f, &rng);
    int ids[B * T] = {1, 4, 0, 2, 3, 3, 1, 0};
    float mask[B * T] = {1, 1, 0, 1, 0, 1, 1, 0};
    // counting predictions: (b0,t0) -> mask[1]=1 yes; (b0,t1) -> mask[2]=0 no; (b0,t2) -> mask[3]
    // = 1 yes; (b1,t0) -> mask[5] = 1 yes; (b1,t1) -> mask[6] = 1 yes; (b1,t2) -> mask[7] = 0 no.
    int counted[B * T] = {1, 0, 1, 0, 1, 1, 0, 0};
    double expected = 0.0;
    int n = 0;
    for (int t = 0; t < B * T; t++)
        if (counted[t]) {
            expected += row_ce(logits + t * V, V, ids[t + 1]);
            n++;
        }
    expected /= n;
    float loss = cross_entropy_forward_backward(logits, ids, mask, B, T, V, dl);
    EXPECT(fabs(loss - expected) < 1e-6 * (1 + expected), "masked loss %.9g, expected %.9g (4 rows)",
           loss, expected);
    for (int t = 0; t < B * T; t++) {
        double rowsum = 0.0;
        for (int v = 0; v < V; v++) rowsum += dl[t * V + v];
        if (!counted[t])
            for (int v = 0; v < V; v++)
                EXPECT(dl[t * V + v] == 0.0f, "masked-out row %d: dlogits[%d] = %g", t, v, dl[t * V + v]);
        else  // softmax - onehot sums to 0
            EXPECT(fabs(rowsum) < 1e-6, "row %d: dlogits sum to %g", t, rowsum);
    }
    // a masked-out position's logits and target change nothing (bit for bit)
    float logits2[B * T * V];
    memcpy(logits2, logits, sizeof(logits));
    for (int v = 0; v < V; v++) logits2[1 * V + v] += 3.0f * v;  // row (b0, t1), not counted
    int ids2[B * T];
    memcpy(ids2, ids, sizeof(ids));
    ids2[2] = 4;  // the target of (b0, t1), masked out
    float loss2 = cross_entropy_forward_backward(logits2, ids2, mask, B, T, V, NULL);
    EXPECT(loss2 == loss, "masked-out position changed the loss: %.9g -> %.9g", loss, loss2);
    // no mask: 6 positions count (T - 1 per sequence)
    double all = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) all += row_ce(logits + (b * T + t) * V, V, ids[b * T + t + 1]);
    all /= B * (T - 1);
    float loss_all = cross_entropy_forward_backward(logits, ids, NULL, B, T, V, NULL);
    EXPECT(fabs(loss_all - all) < 1e-6 * (1 + all), "unmasked loss %.9g, expected %.9g", loss_all, all);
    // all masked out: loss 0, dlogits 0
    float zeros[B * T] = {0};
    float lz = cross_entropy_forward_backward(logits, ids, zeros, B, T, V, dl);
    EXPECT(lz == 0.0f, "all masked out: loss %g", lz);
    for (int i = 0; i < B * T * V; i++) EXPECT(dl[i] == 0.0f, "all masked out: dlogits[%d] = %g", i, dl[i]);
    // dlogits by finite differences (with the mask)
    cross_entropy_forward_backward(logits, ids, mask, B, T, V, dl);
    CeCtx ctx = {logits, ids, mask, B, T, V};
    fd_check("cross-entropy dlogits (masked)", logits, B * T * V, dl, ce_loss_fn, &ctx, 1e-2f, 1e-2, 1e-4);
}

// ==============================================================================================
// 3. Absorbed (generation) vs naive (training) attention
// ==============================================================================================
// decode_step keeps only c_kv and k_pe per position and folds W_UK into the query and W_UV into
// the output; model_forward expands the latent into per-head keys and values. They are the same
// function, so the logits must agree at every position up to float rounding.
static void check_decode_matches(Variant v) {
    Config c = tiny_config(v);
    int T = 24;  // > rope_original_max_position_embeddings (16) of the YaRN variant
    Model m;
    make_model(&m, &c, 31, 1, T);
    int ids[24];
    random_ids(ids, T, c.vocab_size, 32);
    model_forward(&m, ids, 1, T);
    DecodeState s;
    char err[R1_ERR_LEN];
    EXPECT(decode_state_create(&s, &m, T, err) == 0, "%s", err);
    double worst = 0.0;
    int worst_pos = 0;
    for (int pos = 0; pos < T; pos++) {
        decode_step(&m, &s, ids[pos], pos);
        double r = rel_l2(s.logits, m.acts.logits + (size_t)pos * c.vocab_size, c.vocab_size);
        if (r > worst) { worst = r; worst_pos = pos; }
    }
    print_message("    decode vs forward, %s: worst relative L2 %.2e (position %d)\n",
                  VARIANT_NAME[v], worst, worst_pos);
    EXPECT(worst < 1e-5, "%s: absorbed decode differs from the naive forward at position %d: "
           "relative L2 %.3g", VARIANT_NAME[v], worst_pos, worst);
    decode_state_free(&s);
    model_free(&m);
}

// The plain-loop attention of the debug path (R1_PLAIN_ATTENTION=1) is the same function as the
// tiled one: the logits agree up to float rounding (the sums run in another order), and so do
// the gradients, since the backward reads the same P.
static void test_plain_attention(void **state) {
    (void)state;
    Config c = tiny_config(V_BASE);
    enum { B = 2, T = 19 };  // 19: rows past whole tiles
    Model m;
    make_model(&m, &c, 53, B, T);
    int ids[B * T];
    random_ids(ids, B * T, c.vocab_size, 54);
    size_t n = (size_t)B * T * c.vocab_size;
    float *tiled = xcalloc(n, sizeof(float));
    model_forward(&m, ids, B, T);
    memcpy(tiled, m.acts.logits, n * sizeof(float));
    attention_plain_loops = 1;
    model_forward(&m, ids, B, T);
    attention_plain_loops = 0;
    double r = rel_l2(m.acts.logits, tiled, n);
    print_message("    plain-loop attention vs tiled: logits relative L2 %.2e\n", r);
    EXPECT(r < 1e-5, "plain-loop attention differs from the tiled one: relative L2 %.3g", r);
    free(tiled);
    model_free(&m);
}

static void test_decode_matches_forward(void **state) {
    (void)state;
    check_decode_matches(V_BASE);
    check_decode_matches(V_QNULL);
    check_decode_matches(V_YARN);
    check_decode_matches(V_HALVES);
}

// Batched decoding (generation, rollouts, evaluation): 5 sequences with prompts of different
// lengths step together. Each row's logits must equal the naive forward of that sequence up to
// rounding, and be bit-identical to the same sequence decoded in a batch of its own: a
// sequence's numbers may not depend on its batch-mates (else rollouts would depend on how they
// were grouped). The batch read from the transposed copy of the weights (as rollouts run it:
// decode_weights_transposed) must give the same floats as the batch that reads W. Then
// generate_batch, greedy, must give the same ids as that batch of one.
static void check_decode_batch(Variant v) {
    Config c = tiny_config(v);
    enum { NS = 5, T = 20 };
    int V = c.vocab_size;
    Model m;
    make_model(&m, &c, 37, 1, T);
    char err[R1_ERR_LEN];
    int ids[NS][T], prompt_len[NS] = {1, 3, 7, 2, 5};
    DecodeState st[NS], alone, *sp[NS], st_t[NS], *sp_t[NS];
    DecodeBatch b, b1, bt;
    decode_batch_create(&b, &m);
    decode_batch_create(&b1, &m);
    decode_batch_create(&bt, &m);
    float *wt = decode_weights_transposed(&m);
    decode_batch_use_transposed(&bt, &m, wt);
    double worst = 0.0;
    for (int i = 0; i < NS; i++) {
        random_ids(ids[i], T, V, 40 + i);
        EXPECT(decode_state_create(&st[i], &m, T, err) == 0, "%s", err);
        EXPECT(decode_state_create(&st_t[i], &m, T, err) == 0, "%s", err);
        sp[i] = &st[i];
        sp_t[i] = &st_t[i];
    }
    float *want = malloc(sizeof(float) * (size_t)NS * T * V);
    for (int i = 0; i < NS; i++) {  // the naive forward of each sequence
        model_forward(&m, ids[i], 1, T);
        memcpy(want + (size_t)i * T * V, m.acts.logits, sizeof(float) * (size_t)T * V);
    }
    EXPECT(decode_state_create(&alone, &m, T, err) == 0, "%s", err);
    DecodeState *ap = &alone;
    for (int pos = 0; pos < T; pos++) {
        int tokens[NS], p[NS];
        for (int i = 0; i < NS; i++) { tokens[i] = ids[i][pos]; p[i] = pos; }
        decode_step_batch(&m, sp, &b, tokens, p, NS);
        decode_step_batch(&m, &ap, &b1, &tokens[2], &p[2], 1);  // sequence 2 on its own
        EXPECT(memcmp(b1.logits, b.logits + 2 * V, sizeof(float) * V) == 0,
               "%s: position %d: sequence 2's logits depend on its batch-mates",
               VARIANT_NAME[v], pos);
        decode_step_batch(&m, sp_t, &bt, tokens, p, NS);  // reading the transposed weights
        EXPECT(memcmp(bt.logits, b.logits, sizeof(float) * (size_t)NS * V) == 0,
               "%s: position %d: the transposed weights give other logits", VARIANT_NAME[v], pos);
        for (int i = 0; i < NS; i++) {
            double r = rel_l2(b.logits + (size_t)i * V, want + ((size_t)i * T + pos) * V, V);
            if (r > worst) worst = r;
        }
    }
    print_message("    batched decode vs forward, %s: worst relative L2 %.2e\n", VARIANT_NAME[v],
                  worst);
    EXPECT(worst < 1e-5, "%s: batched decode differs from the forward: %.3g", VARIANT_NAME[v],
           worst);
    // generate_batch, greedy: the same ids for sequence 2 in the batch and alone
    int gen[NS][T], *gp[NS], len[NS], max_len[NS], gen1[T], *g1 = gen1, len1, max1 = T;
    Rng rng[NS], rng1;
    SamplingConfig greedy = {0.0f, 1.0f, 0};
    float *probs = malloc(sizeof(float) * V);
    for (int i = 0; i < NS; i++) {
        memcpy(gen[i], ids[i], sizeof(int) * T);
        gp[i] = gen[i];
        len[i] = prompt_len[i];
        max_len[i] = T;
        rng_seed(&rng[i], 1);
    }
    memcpy(gen1, ids[2], sizeof(int) * T);
    len1 = prompt_len[2];
    rng_seed(&rng1, 1);
    generate_batch(&m, sp, &b, gp, len, max_len, NS, &greedy, rng, probs);
    generate_batch(&m, &ap, &b1, &g1, &len1, &max1, 1, &greedy, &rng1, probs);
    EXPECT(len1 == len[2] && memcmp(gen1, gen[2], sizeof(int) * len1) == 0,
           "%s: generate_batch gives sequence 2 other ids in a batch than alone", VARIANT_NAME[v]);
    for (int i = 0; i < NS; i++) {
        EXPECT(len[i] > prompt_len[i] && len[i] <= T, "%s: sequence %d: length %d",
               VARIANT_NAME[v], i, len[i]);
        decode_state_free(&st[i]);
        decode_state_free(&st_t[i]);
    }
    decode_batch_free(&bt);
    free(wt);
    free(probs);
    free(want);
    decode_state_free(&alone);
    decode_batch_free(&b);
    decode_batch_free(&b1);
    model_free(&m);
}

// `bench --parts`: one forward and backward time every part of the step, and no more than the
// step. The tiny model (2 dense + 2 MoE blocks) has every part, so each must have some time;
// together they are at most the wall-clock time of the pass (a part timed twice, or a clock left
// running across a part, would add more). Time is read, never compared with a fixed figure.
static void test_step_parts(void **state) {
    (void)state;
    Config c = tiny_config(V_BASE);
    int B = 2, T = 16, N = B * T, V = c.vocab_size;
    Model m;
    make_model(&m, &c, 11, B, T);
    int *ids = malloc(sizeof(int) * N);
    float *dlogits = malloc(sizeof(float) * N * V);
    random_ids(ids, N, V, 12);
    memset(m.part_seconds, 0, sizeof(m.part_seconds));
    double t0 = now_seconds();
    model_forward(&m, ids, B, T);
    double forward = now_seconds() - t0;
    cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    model_zero_grad(&m);
    double t1 = now_seconds();
    model_backward(&m, ids, dlogits);
    double backward = now_seconds() - t1;
    double sums[2] = {0, 0}, walls[2] = {forward, backward};
    for (int pass = 0; pass < 2; pass++) {
        for (int p = 0; p < PART_COUNT; p++) {
            EXPECT(m.part_seconds[pass][p] > 0.0, "%s: part '%s' has no time",
                   pass ? "backward" : "forward", step_part_names[p]);
            sums[pass] += m.part_seconds[pass][p];
        }
        EXPECT(sums[pass] <= walls[pass], "%s: the parts add up to %.6f s, the pass took %.6f s",
               pass ? "backward" : "forward", sums[pass], walls[pass]);
    }
    free(ids);
    free(dlogits);
    model_free(&m);
}

// How many sequences are cut into batches for the threads: every sequence in exactly one batch,
// in order, no batch empty or larger than DECODE_BATCH, and at least one batch per thread when
// there are enough sequences (1 and 2 threads; 64 rollouts on 16 threads go 4 to a batch).
static void test_decode_batch_cut(void **state) {
    (void)state;
    int was = omp_get_max_threads();
    for (int threads = 1; threads <= 16; threads *= 2) {
        omp_set_num_threads(threads);
        for (int n = 1; n <= 70; n++) {
            int nb = decode_batch_count(n), next = 0;
            EXPECT(nb >= (n < threads ? n : threads), "%d sequences, %d threads: %d batches", n,
                   threads, nb);
            for (int bi = 0; bi < nb; bi++) {
                int first, count;
                decode_batch_range(n, nb, bi, &first, &count);
                EXPECT(first == next && count >= 1 && count <= DECODE_BATCH,
                       "%d sequences in %d batches: batch %d is %d..+%d", n, nb, bi, first, count);
                next = first + count;
            }
            EXPECT(next == n, "%d sequences: the batches hold %d", n, next);
        }
    }
    int first, count;
    omp_set_num_threads(16);
    decode_batch_range(64, decode_batch_count(64), 0, &first, &count);
    EXPECT(decode_batch_count(64) == 16 && count == 4, "64 on 16 threads: %d batches of %d",
           decode_batch_count(64), count);
    omp_set_num_threads(was);
}

// weighted_row_sums (the decode attention's q_abs and o_lat) is the plain loop out_h[i] +=
// w_h[j] * row_j[i], j in order from 0, float for float: for 1 to 6 weight vectors (a group of 4
// side by side, then the rest one by one), through the 32-wide blocks and the last columns
// (n = 45 = 32 + 13), rows with a stride wider than n.
static void test_weighted_row_sums_is_the_plain_loop(void **state) {
    (void)state;
    enum { M = 37, N = 45, STRIDE = 50, NW = 6, LDW = 40, LDO = 47 };
    float w[NW * LDW], rows[M * STRIDE], got[NW * LDO], want[NW * LDO];
    Rng rng;
    rng_seed(&rng, 11);
    for (int j = 0; j < NW * LDW; j++) w[j] = rng_normal(&rng);
    for (int i = 0; i < M * STRIDE; i++) rows[i] = rng_normal(&rng);
    for (int nw = 1; nw <= NW; nw++)
        for (int m = 0; m <= M; m += 12) {  // also an empty sum (m = 0): zeros
            for (int i = 0; i < NW * LDO; i++) got[i] = want[i] = 99.0f;
            for (int h = 0; h < nw; h++) {
                for (int i = 0; i < N; i++) want[h * LDO + i] = 0.0f;
                for (int j = 0; j < m; j++)
                    for (int i = 0; i < N; i++)
                        want[h * LDO + i] += w[h * LDW + j] * rows[j * STRIDE + i];
            }
            weighted_row_sums(got, LDO, w, LDW, nw, rows, STRIDE, m, N);
            EXPECT(memcmp(got, want, sizeof(got)) == 0,
                   "nw = %d, m = %d: not the plain loop's floats (or a float outside out_h)", nw,
                   m);
        }
}

// dot_lanes_rows is dot_lanes row by row, float for float: for n a multiple of 8 (8 rows at a
// time, then the rest) and not (every row by dot_lanes), m from 0 to 21 rows.
static void test_dot_lanes_rows_is_dot_lanes(void **state) {
    (void)state;
    enum { M = 21, STRIDE = 40 };
    float x[STRIDE], rows[M * STRIDE], got[M + 1];
    Rng rng;
    rng_seed(&rng, 12);
    for (int c = 0; c < STRIDE; c++) x[c] = rng_normal(&rng);
    for (int i = 0; i < M * STRIDE; i++) rows[i] = rng_normal(&rng);
    int ns[] = {32, 16, 8, 12, 40};
    for (int k = 0; k < 5; k++)
        for (int m = 0; m <= M; m++) {
            got[m] = 99.0f;  // the float past the last row stays
            dot_lanes_rows(got, x, rows, STRIDE, ns[k], m);
            for (int j = 0; j < m; j++) {
                float want = dot_lanes(x, rows + j * STRIDE, ns[k]);
                EXPECT(memcmp(&got[j], &want, sizeof(float)) == 0,
                       "n = %d, m = %d, row %d: %.9g, dot_lanes %.9g", ns[k], m, j, got[j], want);
            }
            EXPECT(got[m] == 99.0f, "n = %d, m = %d: wrote past the last row", ns[k], m);
        }
}

// use_idle_cores' parts (main.c): the CPU list of /proc/self/status, one thread per idle core,
// and the CPU times it reads. (The choice itself depends on the machine's load, so the test
// checks the rule, not a count.)
static void test_threads_for_idle_cores(void **state) {
    (void)state;
    EXPECT(cpu_in_list("0-3,8,10-11", 0) && cpu_in_list("0-3,8,10-11", 3) &&
               cpu_in_list("0-3,8,10-11", 8) && cpu_in_list("0-3,8,10-11", 11),
           "CPUs in the list not found");
    EXPECT(!cpu_in_list("0-3,8,10-11", 4) && !cpu_in_list("0-3,8,10-11", 9) &&
               !cpu_in_list("0-3,8,10-11", 12) && !cpu_in_list("", 0) && !cpu_in_list("5", 4),
           "CPUs outside the list found");
    EXPECT(cpu_in_list("5", 5) && cpu_in_list("0-1", 1), "a single CPU or a range's end missed");
    // {max threads, cores, busy cores, threads}
    const double cases[][4] = {{2, 2, 0.02, 2}, {2, 2, 0.4, 2}, {2, 2, 0.6, 1}, {2, 2, 1.0, 1},
                               {2, 2, 2.0, 1},  {16, 16, 3.4, 13}, {4, 16, 0.0, 4},
                               {16, 16, 15.9, 1}, {8, 8, 9.0, 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = threads_for_idle_cores((int)cases[i][0], (int)cases[i][1], cases[i][2]);
        EXPECT(got == (int)cases[i][3], "%g threads, %g cores, %g busy: %d threads, want %g",
               cases[i][0], cases[i][1], cases[i][2], got, cases[i][3]);
    }
#ifdef __linux__
    long long busy, total;
    int cores = cpu_times(&busy, &total);
    EXPECT(cores >= 1 && busy >= 0 && busy <= total && total > 0,
           "cpu_times: %d CPUs, busy %lld of %lld ticks", cores, busy, total);
#endif
}

// Sequences that begin with the same prompt read it once (read_shared_prompts): the first of
// each prompt reads all but its last token and the others get a copy of that cache. Sampling at
// temperature 1, every sequence's tokens are those it samples decoding alone (a batch of one,
// where nothing is shared), bit for bit; and the sharing happened: after read_shared_prompts,
// the sequences with a twin have len - 1 positions cached, the one without has none.
static void test_generate_batch_shared_prompts(void **state) {
    (void)state;
    Config c = tiny_config(V_BASE);
    enum { NS = 6, T = 24 };
    int V = c.vocab_size;
    Model m;
    make_model(&m, &c, 41, 1, T);
    char err[R1_ERR_LEN];
    int prompt[3][8], prompt_len[3] = {7, 4, 5}, which[NS] = {0, 1, 0, 2, 1, 0};
    for (int p = 0; p < 3; p++) random_ids(prompt[p], 8, V, 60 + p);
    SamplingConfig sc = {1.0f, 1.0f, 0};
    float *probs = malloc(sizeof(float) * V);
    DecodeBatch b;
    decode_batch_create(&b, &m);
    int gen[NS][T], *gp[NS], len[NS], max_len[NS], fed[NS];
    DecodeState st[NS], *sp[NS];
    Rng rng[NS];
    for (int i = 0; i < NS; i++) {
        memcpy(gen[i], prompt[which[i]], sizeof(prompt[0]));
        gp[i] = gen[i], len[i] = prompt_len[which[i]], max_len[i] = T, fed[i] = 0;
        EXPECT(decode_state_create(&st[i], &m, T, err) == 0, "%s", err);
        sp[i] = &st[i];
        rng_seed(&rng[i], 500 + i);
    }
    int cap[NS];
    for (int i = 0; i < NS; i++) cap[i] = T;
    read_shared_prompts(&m, sp, &b, gp, len, fed, cap, NS);
    for (int i = 0; i < NS; i++)
        EXPECT(fed[i] == (which[i] == 2 ? 0 : len[i] - 1), "sequence %d: %d positions cached", i,
               fed[i]);
    generate_batch_cached(&m, sp, &b, gp, len, fed, max_len, NS, &sc, rng, probs);
    for (int i = 0; i < NS; i++) {  // each alone
        int one[T], *op = one, len1 = prompt_len[which[i]], max1 = T;
        memcpy(one, prompt[which[i]], sizeof(prompt[0]));
        DecodeState s1, *s1p = &s1;
        EXPECT(decode_state_create(&s1, &m, T, err) == 0, "%s", err);
        Rng r1;
        rng_seed(&r1, 500 + i);
        generate_batch(&m, &s1p, &b, &op, &len1, &max1, 1, &sc, &r1, probs);
        EXPECT(len1 == len[i] && memcmp(one, gen[i], sizeof(int) * len1) == 0,
               "sequence %d: other tokens with its prompt shared than alone", i);
        EXPECT(len[i] > prompt_len[which[i]], "sequence %d sampled nothing", i);
        decode_state_free(&s1);
        decode_state_free(&st[i]);
    }
    decode_batch_free(&b);
    free(probs);
    model_free(&m);
}

static void test_decode_batch(void **state) {
    (void)state;
    check_decode_batch(V_BASE);
    check_decode_batch(V_QNULL);
    check_decode_batch(V_YARN);
}

// A context longer than max_position_embeddings is refused with a message.
static void test_decode_state_limits(void **state) {
    (void)state;
    Config c = tiny_config(V_BASE);
    Model m;
    char err[R1_ERR_LEN] = "";
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    DecodeState s;
    EXPECT(decode_state_create(&s, &m, c.max_position_embeddings + 1, err) == -1, "%s",
           "decode_state_create accepted a context past max_position_embeddings");
    EXPECT(strstr(err, "max_position_embeddings") != NULL, "message: %s", err);
    EXPECT(decode_state_create(&s, &m, 0, err) == -1, "%s", "decode_state_create accepted 0");
    EXPECT(model_alloc_training(&m, 1, c.max_position_embeddings + 1, err) == -1, "%s",
           "model_alloc_training accepted T > max_position_embeddings");
    EXPECT(strstr(err, "max_position_embeddings") != NULL, "message: %s", err);
    model_free(&m);
}

// ==============================================================================================
// 4. Determinism across thread counts
// ==============================================================================================
// Every output element is computed by one thread in a fixed order, so the thread count must not
// change a single bit. The vocabulary is widened to 512 so that the size-gated parallel loops
// (AdamW over large tensors, matvec with >= 256 outputs) really run in parallel.
typedef struct {
    float *params, *logits, *decode_logits, *batch_logits;
    size_t n_params, n_logits;
    int V;
} RunResult;

static void train_run(int threads, RunResult *r) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    Config c = tiny_config(V_BASE);
    c.vocab_size = 512;
    enum { B = 2, T = 16 };
    Model m;
    make_model(&m, &c, 41, B, T);
    int ids[B * T];
    random_ids(ids, B * T, c.vocab_size, 42);
    float *dlogits = malloc(sizeof(float) * B * T * c.vocab_size);
    AdamWConfig oc = adamw_defaults();
    oc.lr = 1e-2f;
    for (int step = 0; step < 3; step++) {
        model_forward(&m, ids, B, T);
        cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, c.vocab_size, dlogits);
        model_zero_grad(&m);
        model_backward(&m, ids, dlogits);
        adamw_step(&m, &oc);
        moe_update_bias(&m, 1e-3f);
    }
    model_forward(&m, ids, B, T);
    r->n_params = m.n_params;
    r->n_logits = (size_t)B * T * c.vocab_size;
    r->V = c.vocab_size;
    r->params = malloc(sizeof(float) * m.n_params);
    memcpy(r->params, m.params, sizeof(float) * m.n_params);
    r->logits = malloc(sizeof(float) * r->n_logits);
    memcpy(r->logits, m.acts.logits, sizeof(float) * r->n_logits);
    DecodeState s;
    char err[R1_ERR_LEN];
    EXPECT(decode_state_create(&s, &m, T, err) == 0, "%s", err);
    for (int pos = 0; pos < T; pos++) decode_step(&m, &s, ids[pos], pos);
    r->decode_logits = malloc(sizeof(float) * c.vocab_size);
    memcpy(r->decode_logits, s.logits, sizeof(float) * c.vocab_size);
    decode_state_free(&s);
    // batched decoding: the B sequences step together (the lm_head product runs in parallel)
    DecodeState bs[B], *bp[B];
    DecodeBatch batch;
    decode_batch_create(&batch, &m);
    for (int b = 0; b < B; b++) {
        EXPECT(decode_state_create(&bs[b], &m, T, err) == 0, "%s", err);
        bp[b] = &bs[b];
    }
    for (int pos = 0; pos < T; pos++) {
        int tokens[B], p[B];
        for (int b = 0; b < B; b++) { tokens[b] = ids[b * T + pos]; p[b] = pos; }
        decode_step_batch(&m, bp, &batch, tokens, p, B);
    }
    r->batch_logits = malloc(sizeof(float) * B * c.vocab_size);
    memcpy(r->batch_logits, batch.logits, sizeof(float) * B * c.vocab_size);
    for (int b = 0; b < B; b++) decode_state_free(&bs[b]);
    decode_batch_free(&batch);
    free(dlogits);
    model_free(&m);
}

static void test_determinism_threads(void **state) {
    (void)state;
#ifndef _OPENMP
    skip();
#else
    int saved = omp_get_max_threads();
    // 1 and 2 threads, and 3 where there are 3 cores (more threads than cores only makes the
    // barriers slow, it tests nothing more)
    int n_runs = omp_get_num_procs() >= 3 ? 3 : 2;
    RunResult r[3];
    for (int i = 0; i < n_runs; i++) train_run(i + 1, &r[i]);
    omp_set_num_threads(saved);
    for (int i = 1; i < n_runs; i++) {
        EXPECT(memcmp(r[0].params, r[i].params, sizeof(float) * r[0].n_params) == 0,
               "params after 3 training steps differ between 1 and %d threads", i + 1);
        EXPECT(memcmp(r[0].logits, r[i].logits, sizeof(float) * r[0].n_logits) == 0,
               "logits differ between 1 and %d threads", i + 1);
        EXPECT(memcmp(r[0].decode_logits, r[i].decode_logits, sizeof(float) * r[0].V) == 0,
               "decode logits differ between 1 and %d threads", i + 1);
        EXPECT(memcmp(r[0].batch_logits, r[i].batch_logits, sizeof(float) * 2 * r[0].V) == 0,
               "batched decode logits differ between 1 and %d threads", i + 1);
    }
    for (int i = 0; i < n_runs; i++) {
        free(r[i].params);
        free(r[i].logits);
        free(r[i].decode_logits);
        free(r[i].batch_logits);
    }
#endif
}

// Sequences side by side (r1.c, section 4): each thread takes a share of the batch through the
// whole forward and backward, and the shares add to the weight gradients in turns. The floats
// must be the ones layer by layer gives at 1 thread, bit for bit: parameters after two training
// steps, the last logits, the expert loads and the balance loss. B = 9 sequences, so that 2, 3
// and 4 threads cut the batch into shares of 2 sequences or more, unequal at 2 and 4; a MoE model with the balance loss on, the
// same with the MTP module, a Qwen2 (GQA) model, and one with tied embeddings (which must fall
// back to layer by layer).
typedef struct {
    float *params, *logits;
    long *load;
    float balance;
    size_t n_params, n_logits, n_load;
    int shares;  // Acts.shares after the first forward
} SideRun;

static void side_run(const Config *c, int threads, int side_by_side, SideRun *r) {
    omp_set_num_threads(threads);
    sequences_side_by_side = side_by_side;
    enum { B = 9, T = 12 };
    Model m;
    make_model(&m, c, 7, B, T);
    m.balance_alpha = c->n_routed_experts > 0 ? 0.05f : 0.0f;
    int mtp = c->num_nextn_predict_layers > 0;
    if (mtp) mtp_set_training(&m, 0.3f);
    int ids[B * T];
    random_ids(ids, B * T, c->vocab_size, 8);
    float *dlogits = malloc(sizeof(float) * B * T * c->vocab_size);
    AdamWConfig oc = adamw_defaults();
    oc.lr = 1e-2f;
    for (int step = 0; step < 2; step++) {
        model_forward(&m, ids, B, T);
        if (step == 0) r->shares = m.acts.shares;
        cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, c->vocab_size, dlogits);
        if (mtp) mtp_forward(&m, ids, NULL);
        model_zero_grad(&m);
        if (mtp) mtp_backward(&m);
        model_backward_plus(&m, ids, dlogits, mtp ? m.acts.mtp_dh : NULL);
        adamw_step(&m, &oc);
        moe_update_bias(&m, 1e-3f);
    }
    model_forward(&m, ids, B, T);
    r->balance = m.balance_loss;
    r->n_params = m.n_params;
    r->params = malloc(sizeof(float) * m.n_params);
    memcpy(r->params, m.params, sizeof(float) * m.n_params);
    r->n_logits = (size_t)B * T * c->vocab_size;
    r->logits = malloc(sizeof(float) * r->n_logits);
    memcpy(r->logits, m.acts.logits, sizeof(float) * r->n_logits);
    r->n_load = (size_t)model_blocks(c) * c->n_routed_experts;
    r->load = malloc(sizeof(long) * (r->n_load + 1));
    memcpy(r->load, m.expert_load, sizeof(long) * r->n_load);
    free(dlogits);
    model_free(&m);
    sequences_side_by_side = 1;
}

static void side_run_free(SideRun *r) {
    free(r->params);
    free(r->logits);
    free(r->load);
}

static void test_side_by_side_same_floats(void **state) {
    (void)state;
#ifndef _OPENMP
    skip();
#else
    int saved = omp_get_max_threads();
    char err[R1_ERR_LEN];
    Config cs[4];
    const char *names[4] = {"MoE", "MoE + MTP", "Qwen2 (GQA)", "tied embeddings"};
    cs[0] = tiny_config(V_BASE);
    cs[1] = tiny_config(V_BASE);
    cs[1].num_nextn_predict_layers = 1;
    assert_int_equal(config_preset("qwen-student", &cs[2], err), 0);
    cs[3] = tiny_config(V_BASE);
    cs[3].tie_word_embeddings = 1;
    for (int i = 0; i < 4; i++) {
        SideRun ref, run;
        side_run(&cs[i], 1, 0, &ref);
        // 4 threads three times: a missing wait shows as a race, which a run may not hit
        int counts[5] = {2, 3, 4, 4, 4};
        for (int k = 0; k < 5; k++) {
            int threads = counts[k];
            side_run(&cs[i], threads, 1, &run);
            int want = i == 3 ? 1 : threads;
            EXPECT(run.shares == want, "%s, %d threads: %d shares, want %d", names[i], threads,
                   run.shares, want);
            EXPECT(memcmp(ref.params, run.params, sizeof(float) * ref.n_params) == 0,
                   "%s: parameters after 2 steps differ at %d threads", names[i], threads);
            EXPECT(memcmp(ref.logits, run.logits, sizeof(float) * ref.n_logits) == 0,
                   "%s: logits differ at %d threads", names[i], threads);
            EXPECT(memcmp(ref.load, run.load, sizeof(long) * ref.n_load) == 0,
                   "%s: expert loads differ at %d threads", names[i], threads);
            EXPECT(memcmp(&ref.balance, &run.balance, sizeof(float)) == 0,
                   "%s: balance loss %.9g at %d threads, %.9g at 1", names[i], run.balance,
                   threads, ref.balance);
            side_run_free(&run);
        }
        side_run_free(&ref);
    }
    omp_set_num_threads(saved);
#endif
}

// ==============================================================================================
// 5. AdamW
// ==============================================================================================

// The first three steps (the third one clipped) against the formula, computed here in double:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  m^ = m / (1 - b1^t);  v^ = v / (1 - b2^t)
//   w -= lr (m^ / (sqrt(v^) + eps) + wd w)    with wd = 0 on 1-D tensors (norm weights)
// with g scaled by clip / ||g|| when the global norm exceeds grad_clip. The router bias
// (e_score_correction_bias) is not trainable: planted gradients on it are ignored, it does not
// move, and it does not count in the global norm.
static void test_adamw_formula(void **state) {
    (void)state;
    Config c = tiny_config(V_BASE);
    Model m;
    make_model(&m, &c, 51, 1, 4);
    size_t P = m.n_params;
    double *w = malloc(sizeof(double) * P), *mm = calloc(P, sizeof(double)), *vv = calloc(P, sizeof(double));
    for (size_t i = 0; i < P; i++) w[i] = m.params[i];
    // table attributes: decay exactly on matrices, the bias neither trainable nor decayed
    for (int i = 0; i < m.n_tensors; i++) {
        ParamInfo *p = &m.table[i];
        int is_bias = strstr(p->name, "e_score_correction_bias") != NULL;
        EXPECT(p->decay == (p->ndim == 2), "%s: decay %d with ndim %d", p->name, p->decay, p->ndim);
        EXPECT(p->trainable == !is_bias, "%s: trainable %d", p->name, p->trainable);
    }
    AdamWConfig oc = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .grad_clip = 0.0f};
    Rng rng;
    rng_seed(&rng, 52);
    for (int step = 1; step <= 3; step++) {
        // planted gradients (on every entry, the bias included)
        for (size_t i = 0; i < P; i++) m.grads[i] = 0.01f * rng_normal(&rng);
        double sumsq = 0.0;
        for (int i = 0; i < m.n_tensors; i++) {
            ParamInfo *p = &m.table[i];
            if (!p->trainable) continue;
            for (size_t j = 0; j < p->numel; j++) sumsq += (double)m.grads[p->offset + j] * m.grads[p->offset + j];
        }
        double norm = sqrt(sumsq);
        // step 3 clips: the threshold is half the norm
        oc.grad_clip = step == 3 ? (float)(norm / 2) : 0.0f;
        double clip = step == 3 ? oc.grad_clip / norm : 1.0;
        float got = adamw_step(&m, &oc);
        EXPECT(fabs(got - norm) <= 1e-5 * norm, "step %d: returned norm %.7g, expected %.7g", step, got, norm);
        EXPECT(m.adam_step == step, "adam_step %ld after %d steps", m.adam_step, step);
        double bc1 = 1 - pow(oc.beta1, step), bc2 = 1 - pow(oc.beta2, step);
        double worst = 0.0;
        const char *worst_name = "";
        for (int i = 0; i < m.n_tensors; i++) {
            ParamInfo *p = &m.table[i];
            for (size_t j = 0; j < p->numel; j++) {
                size_t k = p->offset + j;
                if (p->trainable) {
                    double g = m.grads[k] * clip;
                    mm[k] = oc.beta1 * mm[k] + (1 - oc.beta1) * g;
                    vv[k] = oc.beta2 * vv[k] + (1 - oc.beta2) * g * g;
                    double wd = p->ndim == 2 ? oc.weight_decay : 0.0;
                    w[k] -= oc.lr * ((mm[k] / bc1) / (sqrt(vv[k] / bc2) + oc.eps) + wd * w[k]);
                }
                double err = fabs(m.params[k] - w[k]) / (1e-6 * fabs(w[k]) + 1e-8);
                if (err > worst) { worst = err; worst_name = p->name; }
            }
        }
        EXPECT(worst <= 1.0, "step %d: AdamW differs from the formula on %s (%.2f x tolerance)",
               step, worst_name, worst);
    }
    // the bias never moved (exact)
    for (int l = c.first_k_dense_replace; l < c.num_hidden_layers; l++) {
        char name[96];
        snprintf(name, sizeof(name), "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        ParamInfo *p = model_find_param(&m, name);
        assert_non_null(p);
        for (size_t j = 0; j < p->numel; j++)
            EXPECT(m.params[p->offset + j] == (float)w[p->offset + j], "%s[%zu] moved", name, j);
    }
    free(w); free(mm); free(vv);
    model_free(&m);
}

// 20 AdamW steps on one fixed batch must fit it: the loss falls clearly (below 0.7 x the start).
static void test_adamw_lowers_loss(void **state) {
    (void)state;
    Config c = tiny_config(V_BASE);
    c.initializer_range = 0.02f;
    enum { B = 2, T = 16 };
    Model m;
    make_model(&m, &c, 61, B, T);
    int ids[B * T];
    random_ids(ids, B * T, c.vocab_size, 62);
    float *dlogits = malloc(sizeof(float) * B * T * c.vocab_size);
    AdamWConfig oc = adamw_defaults();
    oc.lr = 1e-2f;
    float first = 0, last = 0;
    for (int step = 0; step <= 20; step++) {
        model_forward(&m, ids, B, T);
        float loss = cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, c.vocab_size, dlogits);
        if (step == 0) first = loss;
        last = loss;
        if (step == 20) break;
        model_zero_grad(&m);
        model_backward(&m, ids, dlogits);
        adamw_step(&m, &oc);
    }
    print_message("    AdamW on a fixed batch: loss %.4f -> %.4f after 20 steps\n", first, last);
    EXPECT(first > 3.5f && first < 4.8f, "initial loss %.4f, expected about ln(64) = 4.16", first);
    EXPECT(last < 0.7f * first, "loss %.4f -> %.4f after 20 steps: not below 0.7 x the start", first, last);
    free(dlogits);
    model_free(&m);
}

// ==============================================================================================
// 6. Bad configs
// ==============================================================================================

// config_validate must return -1 with a message that names the offending field.
static void expect_invalid(Config c, const char *field) {
    char err[R1_ERR_LEN] = "";
    int rc = config_validate(&c, err);
    EXPECT(rc == -1, "config_validate accepted a config with a bad %s", field);
    EXPECT(strstr(err, field) != NULL, "message for bad %s does not name it: \"%s\"", field, err);
}

static void test_config_validate(void **state) {
    (void)state;
    char err[R1_ERR_LEN];
    const char *presets[] = {"deepseek-v3", "r1-61", "small", "tiny"};
    for (int i = 0; i < 4; i++) {
        Config c;
        EXPECT(config_preset(presets[i], &c, err) == 0, "%s", err);
        EXPECT(config_validate(&c, err) == 0, "preset %s: %s", presets[i], err);
    }
    Config c;
    EXPECT(config_preset("no-such-preset", &c, err) == -1, "%s", "unknown preset accepted");
    Config base = tiny_config(V_BASE), x;  // E = 8, K = 2, n_group 2, topk_group 1
    x = base; x.num_experts_per_tok = 9;          expect_invalid(x, "num_experts_per_tok");
    x = base; x.n_group = 3;                      expect_invalid(x, "n_group");
    x = base; x.topk_group = 3;                   expect_invalid(x, "topk_group");
    x = base; x.hidden_size = 0;                  expect_invalid(x, "hidden_size");
    x = base; x.qk_rope_head_dim = 5;             expect_invalid(x, "qk_rope_head_dim");
    // 4 groups of 2 experts, keep 1 group: 2 experts cannot hold top-3
    x = base; x.n_group = 4; x.topk_group = 1; x.num_experts_per_tok = 3;
    expect_invalid(x, "topk_group");
    x = base; x.vocab_size = -5;                  expect_invalid(x, "vocab_size");
    x = base; x.kv_lora_rank = 0;                 expect_invalid(x, "kv_lora_rank");
    x = base; x.num_experts_per_tok = 0;          expect_invalid(x, "num_experts_per_tok");
    x = base; x.rope_yarn = 1; x.rope_factor = 0.5f; x.rope_original_max_position_embeddings = 16;
    x.rope_beta_fast = 32; x.rope_beta_slow = 1;  expect_invalid(x, "factor");
    // a config without MoE layers needs no experts at all
    x = base; x.first_k_dense_replace = x.num_hidden_layers; x.n_routed_experts = 0;
    EXPECT(config_validate(&x, err) == 0, "all-dense config refused: %s", err);
}

// model_create on the real 671B shape must refuse before allocating 2.6 TB (this test would be
// killed by the OOM killer, or ASan would abort, if it tried).
static void test_model_create_too_large(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN] = "";
    assert_int_equal(config_preset("deepseek-v3", &c, err), 0);
    Model m;
    int rc = model_create(&m, &c, err);
    EXPECT(rc == -1, "%s", "model_create accepted the 671B deepseek-v3 preset");
    EXPECT(strstr(err, "too large") != NULL, "message: \"%s\"", err);
    EXPECT(m.params == NULL && m.table == NULL, "%s", "model_create left allocations behind");
    model_free(&m);  // harmless on a refused model
    // the parameter count still works for it (no allocation): about 671B total, 37B activated
    ParamCount pc;
    count_params(&c, &pc);
    EXPECT(pc.total > 6.6e11 && pc.total < 6.9e11, "deepseek-v3 total %.4g, expected ~671B", pc.total);
    EXPECT(pc.activated > 3.6e10 && pc.activated < 3.9e10, "activated %.4g, expected ~37B", pc.activated);
    // the audit's reproducers, each refused with a message before the table is built: a head
    // width whose int product overflows (H * (dn + dr) > INT_MAX), and a shape of few parameters
    // but ~2e8 tensors (1000 layers x 65536 experts x 3), run in a child under a 2 GB address
    // limit (building its table would need ~27 GB)
    Config w = tiny_config(V_BASE);
    w.num_attention_heads = 65536;
    w.qk_nope_head_dim = 1 << 30;
    EXPECT(model_create(&m, &w, err) == -1 && strstr(err, "int"), "huge head dims: \"%s\"", err);
    EXPECT(m.params == NULL && m.table == NULL, "%s", "model_create left allocations behind");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {2ul << 30, 2ul << 30};
        setrlimit(RLIMIT_AS, &lim);
        Config h = tiny_config(V_BASE);
        h.hidden_size = 2; h.num_hidden_layers = 1000; h.first_k_dense_replace = 0;
        h.n_routed_experts = 65536; h.n_group = 1; h.topk_group = 1; h.num_experts_per_tok = 1;
        h.moe_intermediate_size = 1; h.n_shared_experts = 0;
        Model hm;
        int rc = model_create(&hm, &h, err);
        _exit(rc == -1 && strstr(err, "tensors") && hm.table == NULL ? 0 : 2);
    }
    int status;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "1000 layers x 65536 experts: child status %d (not refused before the table)", status);
    // and for tiny, the count equals the table's size
    Config t = tiny_config(V_BASE);
    EXPECT(model_create(&m, &t, err) == 0, "%s", err);
    count_params(&t, &pc);
    EXPECT(pc.total == (double)m.n_params, "count_params %.0f vs table %zu", pc.total, m.n_params);
    model_free(&m);
}

// A valid config.json in transformers' layout (rope_parameters); %s is spliced in at the end of
// the object, and since the parser keeps the LAST duplicate key, a spliced key overrides.
static const char *const JSON_TRANSFORMERS =
    "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\", "
    "\"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 64, "
    "\"moe_intermediate_size\": 16, \"num_hidden_layers\": 5, \"first_k_dense_replace\": 3, "
    "\"n_routed_experts\": 8, \"num_experts_per_tok\": 2, \"n_shared_experts\": 1, "
    "\"n_group\": 2, \"topk_group\": 1, \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"q_lora_rank\": 16, "
    "\"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 4, \"v_head_dim\": 8, "
    "\"rms_norm_eps\": 1e-06, \"rope_interleave\": true, \"max_position_embeddings\": 64, "
    "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 20000.0, \"factor\": 4.0, "
    "\"original_max_position_embeddings\": 16, \"beta_fast\": 32, \"beta_slow\": 1, "
    "\"mscale\": 0.707, \"mscale_all_dim\": 1.0}, \"tie_word_embeddings\": false, "
    "\"hidden_act\": \"silu\", \"attention_bias\": false, \"initializer_range\": 0.02, "
    "\"bos_token_id\": 0, \"eos_token_id\": 1%s}";

// The hub layout (DeepSeek-V3's own config.json): rope_theta at the top, rope_scaling with
// "type", q_lora_rank null.
static const char *const JSON_HUB =
    "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\", "
    "\"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 64, "
    "\"moe_intermediate_size\": 16, \"moe_layer_freq\": 1, \"num_hidden_layers\": 5, "
    "\"first_k_dense_replace\": 3, \"n_routed_experts\": 8, \"num_experts_per_tok\": 2, "
    "\"n_shared_experts\": 1, \"n_group\": 2, \"topk_group\": 1, \"norm_topk_prob\": true, "
    "\"routed_scaling_factor\": 2.5, \"scoring_func\": \"sigmoid\", \"topk_method\": \"noaux_tc\", "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"q_lora_rank\": null, "
    "\"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 16, \"v_head_dim\": 8, "
    "\"rms_norm_eps\": 1e-06, \"max_position_embeddings\": 64, \"rope_theta\": 50.0, "
    "\"rope_scaling\": {\"beta_fast\": 16, \"beta_slow\": 2, \"factor\": 2, \"mscale\": 1.0, "
    "\"mscale_all_dim\": 1.0, \"original_max_position_embeddings\": 32, \"type\": \"yarn\"}, "
    "\"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"pad_token_id\": null, "
    "\"num_nextn_predict_layers\": 1, \"torch_dtype\": \"bfloat16\", \"bos_token_id\": 0, "
    "\"eos_token_id\": 1}";

static int parse_with(const char *extra, Config *c, char *err) {
    char text[4096];
    snprintf(text, sizeof(text), JSON_TRANSFORMERS, extra);
    return config_from_json(text, c, err);
}

static void expect_json_rejected(const char *extra, const char *needle) {
    Config c;
    char err[R1_ERR_LEN] = "";
    int rc = parse_with(extra, &c, err);
    EXPECT(rc == -1, "config_from_json accepted: ...%s}", extra);
    EXPECT(strstr(err, needle) != NULL, "for ...%s}: message \"%s\" does not mention \"%s\"", extra,
           err, needle);
    EXPECT(strstr(err, "config") != NULL, "message \"%s\" does not say config", err);
}

static void test_config_from_json(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN] = "";
    // the transformers layout
    EXPECT(parse_with("", &c, err) == 0, "transformers layout refused: %s", err);
    EXPECT(c.vocab_size == 64 && c.hidden_size == 32 && c.num_hidden_layers == 5 &&
           c.first_k_dense_replace == 3 && c.n_routed_experts == 8 && c.num_experts_per_tok == 2 &&
           c.n_group == 2 && c.topk_group == 1 && c.norm_topk_prob == 1 && c.q_lora_rank == 16 &&
           c.qk_rope_head_dim == 4 && c.rope_interleave == 1,
           "fields misread (vocab %d hidden %d layers %d q_lora_rank %d)", c.vocab_size,
           c.hidden_size, c.num_hidden_layers, c.q_lora_rank);
    EXPECT(c.rope_yarn == 1 && c.rope_factor == 4.0f && c.rope_theta == 20000.0f &&
           c.rope_original_max_position_embeddings == 16 && c.rope_mscale == 0.707f &&
           c.rope_mscale_all_dim == 1.0f && c.routed_scaling_factor == 2.5f,
           "rope fields misread: yarn %d factor %g theta %g orig %d mscale %g", c.rope_yarn,
           c.rope_factor, c.rope_theta, c.rope_original_max_position_embeddings, c.rope_mscale);
    // the hub layout
    EXPECT(config_from_json(JSON_HUB, &c, err) == 0, "hub layout refused: %s", err);
    EXPECT(c.q_lora_rank == 0, "q_lora_rank null read as %d", c.q_lora_rank);
    EXPECT(c.rope_theta == 50.0f && c.rope_yarn == 1 && c.rope_factor == 2.0f &&
           c.rope_beta_fast == 16.0f && c.rope_beta_slow == 2.0f &&
           c.rope_original_max_position_embeddings == 32 && c.qk_rope_head_dim == 16,
           "hub rope misread: theta %g yarn %d factor %g betas %g %g orig %d", c.rope_theta,
           c.rope_yarn, c.rope_factor, c.rope_beta_fast, c.rope_beta_slow,
           c.rope_original_max_position_embeddings);
    // default rope: no YaRN
    EXPECT(parse_with(", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500.0}",
                      &c, err) == 0, "default rope refused: %s", err);
    EXPECT(c.rope_yarn == 0 && c.rope_theta == 500.0f, "default rope: yarn %d theta %g", c.rope_yarn,
           c.rope_theta);
    // rejections, each naming what is wrong
    expect_json_rejected(", \"hidden_size\": 32,", "config.json");       // trailing comma
    expect_json_rejected(", \"hidden_size\": [32", "config.json");       // unterminated
    expect_json_rejected(", \"hidden_size\": \"32\"", "hidden_size");    // string for an int
    expect_json_rejected(", \"num_hidden_layers\": 2.5", "num_hidden_layers");  // not an integer
    expect_json_rejected(", \"num_attention_heads\": true", "num_attention_heads");  // a boolean
    expect_json_rejected(", \"hidden_act\": \"gelu\"", "hidden_act");
    expect_json_rejected(", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", "linear");
    expect_json_rejected(", \"model_type\": \"mistral\"", "model_type");
    expect_json_rejected(", \"hidden_size\": -32", "hidden_size");
    expect_json_rejected(", \"vocab_size\": -1", "vocab_size");
    expect_json_rejected(", \"num_experts_per_tok\": 9", "num_experts_per_tok");  // validate runs
    expect_json_rejected(", \"norm_topk_prob\": 1", "norm_topk_prob");   // bool expected
    // the audit's reproducers: out-of-range numbers (no UB cast), values that overflow a float,
    // a non-string rope type, token ids outside the vocabulary
    expect_json_rejected(", \"bos_token_id\": 1e20", "bos_token_id");
    expect_json_rejected(", \"eos_token_id\": -1e300", "eos_token_id");
    expect_json_rejected(", \"bos_token_id\": 64", "bos_token_id");   // vocab_size is 64
    expect_json_rejected(", \"eos_token_id\": 1.5", "eos_token_id");
    expect_json_rejected(", \"bos_token_id\": \"0\"", "bos_token_id");
    expect_json_rejected(", \"rms_norm_eps\": 1e39", "rms_norm_eps");
    expect_json_rejected(", \"rope_theta\": 1e39", "rope_theta");
    expect_json_rejected(", \"routed_scaling_factor\": 1e39", "routed_scaling_factor");
    expect_json_rejected(", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 1e39}", "factor");
    expect_json_rejected(", \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 2, \"mscale\": -1e39}", "mscale");
    expect_json_rejected(", \"rope_parameters\": {\"rope_type\": 5, \"factor\": 2}", "rope_type");
    expect_json_rejected(", \"rope_scaling\": {\"type\": null, \"factor\": 2}", "type");
    expect_json_rejected(", \"initializer_range\": 1e39", "initializer_range");
    expect_json_rejected(", \"max_position_embeddings\": 1e30", "max_position_embeddings");
    // sizes whose products overflow an int (H * (dn + dr), Im * n_shared, ...) are refused
    // before any table is built
    expect_json_rejected(", \"num_attention_heads\": 65536, \"qk_nope_head_dim\": 1073741824", "int");
    expect_json_rejected(", \"moe_intermediate_size\": 1073741824, \"n_shared_experts\": 4", "int");
    // null bos/eos (as some hub configs write) keep the defaults
    EXPECT(parse_with(", \"bos_token_id\": null, \"eos_token_id\": null", &c, err) == 0,
           "null token ids refused: %s", err);
    // not an object at all
    EXPECT(config_from_json("[1, 2, 3]", &c, err) == -1, "%s", "a JSON array accepted as config");
    EXPECT(config_from_json("", &c, err) == -1, "%s", "empty text accepted as config");
}

// config_write_json writes what config_from_json reads back to the same config.
static void test_config_json_round_trip(void **state) {
    (void)state;
    char dir[] = "/tmp/test_r1_XXXXXX";
    assert_non_null(mkdtemp(dir));
    Variant vs[3] = {V_BASE, V_QNULL, V_YARN};
    for (int i = 0; i < 3; i++) {
        Config a = tiny_config(vs[i]), b;
        char path[512], err[R1_ERR_LEN];
        snprintf(path, sizeof(path), "%s/config.json", dir);
        EXPECT(config_write_json(&a, path, err) == 0, "%s", err);
        char *text = read_file(path, NULL, err);
        EXPECT(text != NULL, "%s", err);
        EXPECT(config_from_json(text, &b, err) == 0, "%s: %s", VARIANT_NAME[vs[i]], err);
        free(text);
#define SAME(f) EXPECT(a.f == b.f, "%s: " #f " %g written, %g read", VARIANT_NAME[vs[i]], (double)a.f, (double)b.f)
        SAME(vocab_size); SAME(hidden_size); SAME(intermediate_size); SAME(moe_intermediate_size);
        SAME(num_hidden_layers); SAME(first_k_dense_replace); SAME(n_routed_experts);
        SAME(num_experts_per_tok); SAME(n_shared_experts); SAME(n_group); SAME(topk_group);
        SAME(norm_topk_prob); SAME(routed_scaling_factor); SAME(num_attention_heads);
        SAME(q_lora_rank); SAME(kv_lora_rank); SAME(qk_nope_head_dim); SAME(qk_rope_head_dim);
        SAME(v_head_dim); SAME(rms_norm_eps); SAME(rope_theta); SAME(rope_interleave);
        SAME(rope_yarn); SAME(max_position_embeddings); SAME(tie_word_embeddings);
        SAME(initializer_range); SAME(bos_token_id); SAME(eos_token_id);
        if (a.rope_yarn) {
            SAME(rope_factor); SAME(rope_original_max_position_embeddings); SAME(rope_beta_fast);
            SAME(rope_beta_slow); SAME(rope_mscale); SAME(rope_mscale_all_dim);
        }
#undef SAME
    }
    rm_tree(dir);
}

// ==============================================================================================
// 7. Bad checkpoints and the CLI
// ==============================================================================================

// Writes dir/config.json and dir/model.safetensors from m's tensors, with one tensor changed
// (dtype, shape [r0, r1]) or left out (omit).
static void write_checkpoint_variant(const Model *m, const char *dir, const char *target,
                                     int omit, const char *dtype, int64_t r0, int64_t r1) {
    char err[R1_ERR_LEN], path[512];
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    EXPECT(config_write_json(&m->cfg, path, err) == 0, "%s", err);
    StWrite *w = calloc((size_t)m->n_tensors, sizeof(StWrite));
    int n = 0;
    float *extra = NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->table[i];
        StWrite t = {p->name, "F32", p->ndim, {p->shape[0], p->shape[1]}, m->params + p->offset};
        if (target && strcmp(p->name, target) == 0) {
            if (omit) continue;
            if (dtype) t.dtype = dtype;
            if (r0 > 0) {
                t.shape[0] = r0;
                if (p->ndim == 2) t.shape[1] = r1;
                size_t need = (size_t)r0 * (p->ndim == 2 ? (size_t)r1 : 1);
                if (need > p->numel) {  // a bigger tensor needs its own data
                    extra = calloc(need, sizeof(float));
                    t.data = extra;
                }
            }
        }
        w[n++] = t;
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    EXPECT(st_write(path, w, n, NULL, 0, err) == 0, "%s", err);
    free(extra);
    free(w);
}

// checkpoint_load of dir must fail with a one-line message naming the file (dir/file) and
// containing the needle (a tensor name, what is wrong), if any.
static void expect_load_fails(const char *dir, const char *file, const char *needle1,
                              const char *needle2) {
    Model m;
    memset(&m, 0, sizeof(m));  // (a load that fails before model_create leaves m untouched)
    char err[R1_ERR_LEN] = "", path[600];
    int rc = checkpoint_load(&m, dir, err);
    EXPECT(rc == -1, "checkpoint_load accepted %s", dir);
    EXPECT(strchr(err, '\n') == NULL, "message is more than one line: \"%s\"", err);
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    EXPECT(strstr(err, path) != NULL, "load %s: message \"%s\" does not name %s", dir, err, path);
    if (needle1)
        EXPECT(strstr(err, needle1) != NULL, "load %s: message \"%s\" lacks \"%s\"", dir, err, needle1);
    if (needle2)
        EXPECT(strstr(err, needle2) != NULL, "load %s: message \"%s\" lacks \"%s\"", dir, err, needle2);
    EXPECT(m.params == NULL, "%s", "a failed load left the model allocated");
}

// The message for a wrong shape gives both shapes as written: [33] and [32] for a 1-D tensor.
static void test_checkpoint_shape_message_1d(void **state) {
    (void)state;
    char root[] = "/tmp/test_r1_XXXXXX";
    assert_non_null(mkdtemp(root));
    Config c = tiny_config(V_BASE);
    Model m;
    make_model(&m, &c, 75, 1, 4);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/shape1d", root);
    write_checkpoint_variant(&m, dir, "model.norm.weight", 0, NULL, 33, 0);
    model_free(&m);
    Model m2;
    char err[R1_ERR_LEN] = "";
    EXPECT(checkpoint_load(&m2, dir, err) == -1, "%s", "a wrong 1-D shape was accepted");
    rm_tree(root);
    EXPECT(strstr(err, "shape [33]") != NULL && strstr(err, "expected [32]") != NULL,
           "message \"%s\" should say \"shape [33], expected [32]\"", err);
}

// The audit's checkpoint reproducers: a config that uses a subset of the file's tensors (fewer
// layers, no shared experts) is refused naming an unused tensor; a NaN or Inf weight is refused
// naming its tensor; a read-only copy with a leftover uncommitted .staging loads (loading does not
// need to write).
static void test_checkpoint_audit(void **state) {
    (void)state;
    char root[] = "/tmp/test_r1_XXXXXX";
    assert_non_null(mkdtemp(root));
    char dir[512], path[600], err[R1_ERR_LEN];
    Config c = tiny_config(V_BASE);
    Model m;
    make_model(&m, &c, 61, 1, 4);
    snprintf(dir, sizeof(dir), "%s/ck", root);
    EXPECT(checkpoint_save(&m, NULL, NULL, dir, err) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    // fewer layers than the file holds
    Config fewer = c;
    fewer.num_hidden_layers = c.num_hidden_layers - 1;
    EXPECT(config_write_json(&fewer, path, err) == 0, "%s", err);
    char last[64];
    snprintf(last, sizeof(last), "model.layers.%d.", c.num_hidden_layers - 1);
    expect_load_fails(dir, "model.safetensors", last, "not used");
    // no shared experts
    Config unshared = c;
    unshared.n_shared_experts = 0;
    EXPECT(config_write_json(&unshared, path, err) == 0, "%s", err);
    expect_load_fails(dir, "model.safetensors", "shared_experts", "not used");
    // a NaN, then an Inf, weight
    const char *victims[2] = {"model.norm.weight", "model.layers.1.self_attn.o_proj.weight"};
    for (int k = 0; k < 2; k++) {
        ParamInfo *p = model_find_param(&m, victims[k]);
        assert_non_null(p);
        float keep = m.params[p->offset + p->numel - 1];
        m.params[p->offset + p->numel - 1] = k ? INFINITY : NAN;
        EXPECT(checkpoint_save(&m, NULL, NULL, dir, err) == 0, "%s", err);
        m.params[p->offset + p->numel - 1] = keep;
        expect_load_fails(dir, "model.safetensors", victims[k], "not finite");
    }
    // read-only copy with an uncommitted .staging: loads the committed weights (as a user who
    // cannot write there: a child drops root's rights)
    EXPECT(checkpoint_save(&m, NULL, NULL, dir, err) == 0, "%s", err);
    char staged[600];
    snprintf(staged, sizeof(staged), "%s/.staging", dir);
    mkdir(staged, 0755);
    snprintf(path, sizeof(path), "%s/model.safetensors", staged);
    write_text(path, "half a file");
    chmod(root, 0755);
    chmod(staged, 0555);
    chmod(dir, 0555);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (getuid() == 0 && setuid(65534) != 0) _exit(3);
        Model r;
        char e[R1_ERR_LEN];
        if (checkpoint_load(&r, dir, e) != 0) {
            fprintf(stderr, "read-only load: %s\n", e);
            _exit(1);
        }
        _exit(memcmp(r.params, m.params, sizeof(float) * m.n_params) == 0 ? 0 : 2);
    }
    int status;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "a read-only checkpoint with an uncommitted .staging: child status %d", status);
    EXPECT(access(path, F_OK) == 0, "%s", "the read-only load changed the directory");
    chmod(dir, 0755);
    chmod(staged, 0755);
    model_free(&m);
    rm_tree(root);
}

// A checkpoint's commit is the rename of its files from DIR/.staging into DIR: durable only once
// DIR itself is synced. Traced with strace (skipped without it): after the last rename into DIR,
// DIR is opened as a directory and that descriptor fsync'd; and .staging is synced (its COMMIT
// marker on the disk) before the first file moves.
static void test_checkpoint_dir_fsync(void **state) {
    (void)state;
    if (access("./r1", X_OK) != 0 || system("strace -V >/dev/null 2>&1") != 0) {
        print_message("    ./r1 or strace not found: skipped\n");
        skip();
    }
    char root[] = "/tmp/test_r1_XXXXXX";
    assert_non_null(mkdtemp(root));
    char cmd[2048], log[600], err[R1_ERR_LEN];
    snprintf(log, sizeof(log), "%s/strace.log", root);
    snprintf(cmd, sizeof(cmd), "strace -f -e trace=openat,rename,fsync -o %s ./r1 train --config "
             "tiny --steps 1 --batch 1 --seq 8 --out %s/run >/dev/null 2>&1", log, root);
    if (system(cmd) != 0) {  // e.g. ptrace not permitted here
        rm_tree(root);
        print_message("    strace could not run ./r1: skipped\n");
        skip();
    }
    char *text = read_file(log, NULL, err);
    assert_non_null(text);
    char dir[600], staging[600], open_dir[700], open_staging[700], rename_in[700];
    snprintf(dir, sizeof(dir), "%s/run", root);
    snprintf(staging, sizeof(staging), "%s/run/.staging", root);
    snprintf(open_dir, sizeof(open_dir), "\"%s\", O_RDONLY|O_DIRECTORY) = ", dir);
    snprintf(open_staging, sizeof(open_staging), "\"%s\", O_RDONLY|O_DIRECTORY) = ", staging);
    snprintf(rename_in, sizeof(rename_in), "\"%s/model.safetensors\", \"%s/model.safetensors\")",
             staging, dir);
    const char *moved = strstr(text, rename_in);
    EXPECT(moved != NULL, "no rename of the staged model into %s in the trace", dir);
    // .staging synced before the move
    const char *os = strstr(text, open_staging);
    EXPECT(os && os < moved, "%s", ".staging was not opened to be synced before the files moved");
    char want[64];
    snprintf(want, sizeof(want), "fsync(%d)", atoi(os + strlen(open_staging)));
    const char *fs = strstr(os, want);
    EXPECT(fs && fs < moved, "%s", ".staging was not fsync'd before the files moved");
    // DIR synced after the last move
    const char *od = strstr(moved, open_dir);
    EXPECT(od != NULL, "%s was not opened as a directory after the commit's renames", dir);
    snprintf(want, sizeof(want), "fsync(%d)", atoi(od + strlen(open_dir)));
    EXPECT(strstr(od, want) != NULL, "%s was not fsync'd after the commit's renames", dir);
    free(text);
    rm_tree(root);
}

static void test_checkpoints(void **state) {
    (void)state;
    char root[] = "/tmp/test_r1_XXXXXX";
    assert_non_null(mkdtemp(root));
    char dir[512], path[512], err[R1_ERR_LEN];
    // round trip, for the YaRN variant and then the base one (kept in m for the rest): bit-exact
    // parameters, the same tensor table, the same RoPE tables
    Variant vs[2] = {V_YARN, V_BASE};
    Model m;
    for (int vi = 0; vi < 2; vi++) {
        Config c = tiny_config(vs[vi]);
        make_model(&m, &c, 71 + vi, 1, 8);
        snprintf(dir, sizeof(dir), "%s/ok%d", root, vi);
        EXPECT(checkpoint_save(&m, NULL, NULL, dir, err) == 0, "checkpoint_save: %s", err);
        Model m2;
        EXPECT(checkpoint_load(&m2, dir, err) == 0, "checkpoint_load: %s", err);
        EXPECT(m2.n_params == m.n_params && m2.n_tensors == m.n_tensors, "%zu vs %zu params",
               m2.n_params, m.n_params);
        EXPECT(memcmp(m2.params, m.params, sizeof(float) * m.n_params) == 0, "%s",
               "parameters changed in a save/load round trip");
        for (int i = 0; i < m.n_tensors; i++)
            EXPECT(strcmp(m.table[i].name, m2.table[i].name) == 0, "tensor %d: %s vs %s", i,
                   m.table[i].name, m2.table[i].name);
        EXPECT(m2.attn_scale == m.attn_scale, "attn_scale %g vs %g", m2.attn_scale, m.attn_scale);
        size_t half = (size_t)c.max_position_embeddings * c.qk_rope_head_dim / 2;
        EXPECT(memcmp(m2.rope_cos, m.rope_cos, half * sizeof(float)) == 0 &&
               memcmp(m2.rope_sin, m.rope_sin, half * sizeof(float)) == 0, "%s: RoPE tables differ",
               VARIANT_NAME[vs[vi]]);
        model_free(&m2);
        if (vi == 0) model_free(&m);
    }
    // the save went through DIR/.staging (files, then a COMMIT marker, then moved in): nothing
    // of it is left behind
    snprintf(path, sizeof(path), "%s/ok1/.staging", root);
    EXPECT(access(path, F_OK) != 0, "%s left behind", path);

    // an interrupted save: .staging holds a new model.safetensors but no COMMIT marker. Loading
    // must discard it and give the previous weights.
    Model m2;
    char staged[512];
    snprintf(dir, sizeof(dir), "%s/ok1", root);
    snprintf(staged, sizeof(staged), "%s/ok1/.staging", root);
    mkdir(staged, 0755);
    snprintf(path, sizeof(path), "%s/model.safetensors", staged);
    write_text(path, "half a file");
    EXPECT(checkpoint_load(&m2, dir, err) == 0, "load after an uncommitted save: %s", err);
    EXPECT(memcmp(m2.params, m.params, sizeof(float) * m.n_params) == 0, "%s",
           "an uncommitted save changed the weights");
    EXPECT(access(staged, F_OK) != 0, "%s", "the uncommitted .staging was not removed");
    model_free(&m2);
    // a save interrupted after its COMMIT marker: loading finishes it (the new weights win)
    Model m3;
    Config c3 = m.cfg;
    make_model(&m3, &c3, 99, 1, 8);
    snprintf(path, sizeof(path), "%s/newer", root);
    EXPECT(checkpoint_save(&m3, NULL, NULL, path, err) == 0, "%s", err);
    mkdir(staged, 0755);
    char from[600], to[600];
    snprintf(from, sizeof(from), "%s/newer/model.safetensors", root);
    snprintf(to, sizeof(to), "%s/model.safetensors", staged);
    assert_int_equal(rename(from, to), 0);
    snprintf(path, sizeof(path), "%s/COMMIT", staged);
    write_text(path, "complete\n");
    EXPECT(checkpoint_load(&m2, dir, err) == 0, "load after a committed save: %s", err);
    EXPECT(memcmp(m2.params, m3.params, sizeof(float) * m.n_params) == 0, "%s",
           "a committed save was not rolled forward");
    EXPECT(access(staged, F_OK) != 0, "%s", "the committed .staging was not removed");
    model_free(&m2);
    model_free(&m3);

    // truncated model.safetensors
    snprintf(dir, sizeof(dir), "%s/truncated", root);
    write_checkpoint_variant(&m, dir, NULL, 0, NULL, 0, 0);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_load_fails(dir, "model.safetensors", NULL, NULL);
    // missing tensor
    const char *victim = "model.layers.1.self_attn.kv_b_proj.weight";
    snprintf(dir, sizeof(dir), "%s/missing", root);
    write_checkpoint_variant(&m, dir, victim, 1, NULL, 0, 0);
    expect_load_fails(dir, "model.safetensors", victim, "missing");
    // wrong shape: q_a_proj (16, 32) written as (32, 16): same bytes, transposed shape
    victim = "model.layers.0.self_attn.q_a_proj.weight";
    snprintf(dir, sizeof(dir), "%s/shape", root);
    write_checkpoint_variant(&m, dir, victim, 0, NULL, 32, 16);
    expect_load_fails(dir, "model.safetensors", victim, "shape");
    expect_load_fails(dir, "model.safetensors", "[32, 16]", "[16, 32]");
    // wrong shape of a 1-D tensor: model.norm.weight (32) written as (33)
    victim = "model.norm.weight";
    snprintf(dir, sizeof(dir), "%s/shape1d", root);
    write_checkpoint_variant(&m, dir, victim, 0, NULL, 33, 0);
    expect_load_fails(dir, "model.safetensors", victim, "shape");
    // wrong dtype: I32 (same size, so only the dtype check can catch it)
    victim = "model.embed_tokens.weight";
    snprintf(dir, sizeof(dir), "%s/dtype", root);
    write_checkpoint_variant(&m, dir, victim, 0, "I32", 0, 0);
    expect_load_fails(dir, "model.safetensors", victim, "I32");
    // config.json that is not JSON
    snprintf(dir, sizeof(dir), "%s/badjson", root);
    write_checkpoint_variant(&m, dir, NULL, 0, NULL, 0, 0);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    write_text(path, "{\"vocab_size\": 64,, }");
    expect_load_fails(dir, "config.json", NULL, NULL);
    // config.json that is JSON but an unusable config
    write_text(path, "{\"model_type\": \"mistral\"}");
    expect_load_fails(dir, "config.json", "model_type", NULL);
    // no config.json, no directory
    unlink(path);
    expect_load_fails(dir, "config.json", NULL, NULL);
    snprintf(dir, sizeof(dir), "%s/does-not-exist", root);
    expect_load_fails(dir, "config.json", NULL, NULL);
    model_free(&m);
    rm_tree(root);
}

// Runs "./r1 ARGS" with stdout and stderr to files in dir; expects exit status 1 and stderr of
// exactly one line "r1: ..." containing `needle`.
static void expect_cli_error(const char *dir, const char *args, const char *needle) {
    char cmd[4096], errpath[512];
    snprintf(errpath, sizeof(errpath), "%s/stderr.txt", dir);
    snprintf(cmd, sizeof(cmd), "./r1 %s >%s/stdout.txt 2>%s", args, dir, errpath);
    int st = system(cmd);
    EXPECT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "`./r1 %s`: exit status %d, expected 1",
           args, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    char e[R1_ERR_LEN];
    char *text = read_file(errpath, NULL, e);
    EXPECT(text != NULL, "%s", e);
    size_t len = strlen(text);
    EXPECT(strncmp(text, "r1: ", 4) == 0, "`./r1 %s`: stderr does not start with \"r1: \": \"%s\"", args, text);
    EXPECT(len > 0 && text[len - 1] == '\n' && strchr(text, '\n') == text + len - 1,
           "`./r1 %s`: stderr is not exactly one line: \"%s\"", args, text);
    if (needle)
        EXPECT(strstr(text, needle) != NULL, "`./r1 %s`: stderr \"%s\" lacks \"%s\"", args, text, needle);
    free(text);
}

static void write_ids(const char *path, int B, int T, int value_at_end, int V) {
    int32_t *ids = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) ids[i] = i % V;
    ids[B * T - 1] = value_at_end;
    StWrite w = {"input_ids", "I32", 2, {B, T}, ids};
    char err[R1_ERR_LEN];
    EXPECT(st_write(path, &w, 1, NULL, 0, err) == 0, "%s", err);
    free(ids);
}

// A seeded tiny MoE model (vocab 64, context 64) saved as ROOT/model; its path goes to dir.
static void save_tiny_checkpoint(const char *root, uint64_t seed, char *dir, size_t dir_len) {
    char err[R1_ERR_LEN];
    Config c = tiny_config(V_BASE);
    Model m;
    make_model(&m, &c, seed, 1, 4);
    snprintf(dir, dir_len, "%s/model", root);
    EXPECT(checkpoint_save(&m, NULL, NULL, dir, err) == 0, "%s", err);
    model_free(&m);
}

// `make debug` builds ./r1-debug at -O0, without OpenMP and without -march (so the matmul kernel's
// fused multiply-add is libm's fmaf, not the FMA instruction). It must compute the same floats
// as ./r1: the forward and backward of a small MoE model, byte for byte (tutorial/01 section 1.5).
static void test_debug_build_same_floats(void **state) {
    (void)state;
    if (access("./r1", X_OK) != 0 || access("./r1-debug", X_OK) != 0) {
        print_message("    ./r1 or ./r1-debug not found (run `make r1 debug` first): skipped\n");
        skip();
    }
    char root[] = "/tmp/test_r1_XXXXXX";
    assert_non_null(mkdtemp(root));
    char dir[512], in[512], cmd[2048], err[R1_ERR_LEN];
    save_tiny_checkpoint(root, 82, dir, sizeof(dir));
    snprintf(in, sizeof(in), "%s/ids.safetensors", root);
    write_ids(in, 3, 29, 7, 64);  // 29: rows and columns past whole 6x16 tiles
    const char *bins[2] = {"./r1", "./r1-debug"};
    size_t len[2] = {0, 0};
    char *bytes[2];
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd), "%s forward --model %s --input %s --out %s/out%d.safetensors "
                 "--backward >/dev/null 2>&1", bins[i], dir, in, root, i);
        int st = system(cmd);
        EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "`%s forward` failed (status %d)", bins[i], st);
        char path[600];
        snprintf(path, sizeof(path), "%s/out%d.safetensors", root, i);
        bytes[i] = read_file(path, &len[i], err);
        EXPECT(bytes[i] != NULL, "%s", err);
    }
    EXPECT(len[0] == len[1] && memcmp(bytes[0], bytes[1], len[0]) == 0,
           "./r1 and ./r1-debug wrote different logits/gradients (%zu and %zu bytes)", len[0], len[1]);
    free(bytes[0]);
    free(bytes[1]);
    rm_tree(root);
}

// The CLI tests run ./r1 (skipped when it is not built) in a fresh directory root.
static void cli_test_root(char *root) {
    if (access("./r1", X_OK) != 0) {
        print_message("    ./r1 not found (run `make r1` first, from the repository root): skipped\n");
        skip();
    }
    assert_non_null(mkdtemp(root));
}

static void test_cli_errors(void **state) {
    (void)state;
    char root[] = "/tmp/test_r1_XXXXXX";
    cli_test_root(root);
    char dir[512], in[512], args[2048], a600[600];
    save_tiny_checkpoint(root, 81, dir, sizeof(dir));
    // a well-formed forward works (status 0), so the failures below are about the input
    snprintf(in, sizeof(in), "%s/ok.safetensors", root);
    write_ids(in, 2, 8, 5, 64);
    snprintf(args, sizeof(args), "./r1 forward --model %s --input %s --out %s/out.safetensors >/dev/null 2>&1",
             dir, in, root);
    int st = system(args);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a valid `./r1 forward` failed (status %d)", st);
    // forward: an input id out of range
    snprintf(in, sizeof(in), "%s/bad_id.safetensors", root);
    write_ids(in, 1, 4, 64, 64);
    snprintf(args, sizeof(args), "forward --model %s --input %s --out %s/o.safetensors", dir, in, root);
    expect_cli_error(root, args, "out of range");
    // forward: T > max_position_embeddings
    snprintf(in, sizeof(in), "%s/long.safetensors", root);
    write_ids(in, 1, 65, 3, 64);
    snprintf(args, sizeof(args), "forward --model %s --input %s --out %s/o.safetensors", dir, in, root);
    expect_cli_error(root, args, "max_position_embeddings");
    // forward: a checkpoint that is not there
    snprintf(args, sizeof(args), "forward --model %s/nope --input %s --out %s/o.safetensors", root, in, root);
    expect_cli_error(root, args, "config.json");
    // --config FILE.json: a config that cannot work, and one that is not there, both by name
    char bad_cfg[600];
    snprintf(bad_cfg, sizeof(bad_cfg), "%s/bad.json", root);
    FILE *cf = fopen(bad_cfg, "w");
    assert_non_null(cf);
    fputs("{\"hidden_size\": 0}\n", cf);
    fclose(cf);
    snprintf(args, sizeof(args), "info --config %s", bad_cfg);
    expect_cli_error(root, args, "hidden_size");
    snprintf(args, sizeof(args), "info --config %s/none.json", root);
    expect_cli_error(root, args, "none.json");
    // sample: a prompt id out of range
    snprintf(args, sizeof(args), "sample --model %s --prompt-ids '1 2 999'", dir);
    expect_cli_error(root, args, "999");
    // sample: a prompt longer than the context (65 ids, context 64)
    int n = snprintf(args, sizeof(args), "sample --model %s --prompt-ids '", dir);
    for (int i = 0; i < 65; i++) n += snprintf(args + n, sizeof(args) - n, "%d ", i % 64);
    snprintf(args + n, sizeof(args) - n, "'");
    expect_cli_error(root, args, "context");
    // sample: not a number
    snprintf(args, sizeof(args), "sample --model %s --prompt-ids '1 two 3'", dir);
    expect_cli_error(root, args, "two");
    // pipeline --until: a stage that does not exist names the stages, and nothing is run
    snprintf(args, sizeof(args), "pipeline --out %s/pp --until nosuch", root);
    expect_cli_error(root, args, "student-rl");
    snprintf(a600, sizeof(a600), "%s/pp", root);
    EXPECT(access(a600, F_OK) != 0, "%s", "pipeline --until nosuch created its --out");
    // info: an unknown preset
    expect_cli_error(root, "info --config nonsense", "nonsense");
    // an unknown flag, a flag without its value, an unknown command
    expect_cli_error(root, "info --config tiny --bogus", "--bogus");
    expect_cli_error(root, "info --config", "--config");
    expect_cli_error(root, "frobnicate", "frobnicate");
    rm_tree(root);
}

// Runs `./r1 ARGS` in dir (quiet); its exit status.
static int run_r1(const char *root, const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "cd %s && %s/r1 %s >/dev/null 2>&1", root, getenv("PWD"), args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int files_equal(const char *a, const char *b) {
    char err[R1_ERR_LEN];
    size_t na, nb;
    char *x = read_file(a, &na, err), *y = read_file(b, &nb, err);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// The audit's faults, through the command line, on a small student model pretrained for 2 steps:
// grpo --resume continues bit for bit (across a pi_ref refresh); a second run on a locked --out
// is refused (a stale lock is taken over); duplicate flags and over-long paths are refused; a
// tokenizer larger than the model's vocabulary is refused; a non-finite loss stops the run
// without saving or logging it; a resumed run's data position is checked against the data.
static void test_cli_faults(void **state) {
    (void)state;
    char root[] = "/tmp/test_r1_XXXXXX";
    cli_test_root(root);
    char args[8192], a[600], b[600], err[R1_ERR_LEN];
    EXPECT(run_r1(root, "data corpus --out c.txt --mb 0.05") == 0, "%s", "data corpus failed");
    EXPECT(run_r1(root, "pretrain --config student --data c.txt --out base --steps 2 --seq 32 "
                        "--batch 2") == 0, "%s", "pretrain failed");
    // grpo --resume: 2 steps then 3 more, and 4 then 1 (pi_ref refreshed at step 3), give the
    // model of 5 uninterrupted steps, and the same metrics
    const char *g = "grpo --model base --prompts 2 --group 4 --max-new-tokens 8 --save-every 2 "
                    "--ref-every 3 --w-language 1 --lang en --lr 1e-3";
    snprintf(args, sizeof(args), "%s --out full --steps 5", g);
    EXPECT(run_r1(root, args) == 0, "%s", "grpo failed");
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof(args), "%s --out part%d --steps %d", g, k, k ? 4 : 2);
        EXPECT(run_r1(root, args) == 0, "%s", "grpo (first part) failed");
        snprintf(args, sizeof(args), "%s --out part%d --steps 5 --resume", g, k);
        EXPECT(run_r1(root, args) == 0, "%s", "grpo --resume failed");
        snprintf(a, sizeof(a), "%s/full/model.safetensors", root);
        snprintf(b, sizeof(b), "%s/part%d/model.safetensors", root, k);
        EXPECT(files_equal(a, b), "grpo resumed at step %d: not the uninterrupted model", k ? 4 : 2);
    }
    snprintf(a, sizeof(a), "%s/full/.lock", root);
    EXPECT(access(a, F_OK) != 0, "%s", "the lock was left behind");
    // a locked --out: refused while its pid lives (ours), taken over once it is gone
    snprintf(a, sizeof(a), "%s/part0/.lock", root);
    snprintf(b, sizeof(b), "%ld\n", (long)getpid());
    write_text(a, b);
    snprintf(args, sizeof(args), "%s --out %s/part0 --steps 6 --resume", g, root);
    char *base_abs = strstr(args, "--model base");
    char shifted[8192];
    snprintf(shifted, sizeof(shifted), "%.*s--model %s/base%s", (int)(base_abs - args), args, root,
             base_abs + strlen("--model base"));
    expect_cli_error(root, shifted, "in use by another run");
    write_text(a, "999999999\n");  // no such process
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "cd %s && %s/r1 %s >/dev/null 2>&1", root, getenv("PWD"), args);
    int st = system(cmd);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a stale lock blocked the run (status %d)", st);
    // duplicate flags, over-long paths
    expect_cli_error(root, "info --config tiny --config small", "given twice");
    char *longp = malloc(5000);
    memset(longp, 'a', 4999);
    longp[4999] = 0;
    snprintf(cmd, sizeof(cmd), "cd %s && %s/r1 grpo --model base --out %s >/dev/null 2>err.txt",
             root, getenv("PWD"), longp);
    st = system(cmd);
    free(longp);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "an over-long --out: status %d", st);
    snprintf(a, sizeof(a), "%s/err.txt", root);
    char *said = read_file(a, NULL, err);
    EXPECT(said && strstr(said, "path is 4999 bytes") && strncmp(said, "r1: ", 4) == 0,
           "an over-long --out: stderr \"%s\"", said ? said : "");
    free(said);
    // a tokenizer larger than the model's vocabulary (a tiny model, 64 tokens, with base's)
    Model m;
    Tokenizer tok;
    snprintf(a, sizeof(a), "%s/base", root);
    EXPECT(tokenizer_load(&tok, a, err) == 0, "%s", err);
    Config c = tiny_config(V_BASE);
    make_model(&m, &c, 5, 1, 4);
    snprintf(b, sizeof(b), "%s/small_vocab", root);
    EXPECT(checkpoint_save(&m, &tok, NULL, b, err) == 0, "%s", err);
    model_free(&m);
    snprintf(args, sizeof(args), "sample --model %s --prompt hello", b);
    expect_cli_error(root, args, "more than the model's vocab_size");
    snprintf(args, sizeof(args), "grpo --model %s --out %s/g2 --steps 1", b, root);
    expect_cli_error(root, args, "more than the model's vocab_size");
    // a resumed pretraining run whose saved data position is past this data's rows, then one
    // whose weights overflow (model.norm.weight 3e38: the logits are inf - inf)
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof(args), "cp -r %s/base %s/run%d", root, root, k);
        assert_int_equal(system(args), 0);
        snprintf(b, sizeof(b), "%s/run%d", root, k);
        TrainState ts;
        EXPECT(checkpoint_load(&m, b, err) == 0, "%s", err);
        EXPECT(model_alloc_training(&m, 1, 1, err) == 0 && checkpoint_load_train_state(&m, &ts, b, err) == 0,
               "%s", err);
        if (k == 0) ts.cursor = 1000000000L;
        else for (int i = 0; i < m.cfg.hidden_size; i++) m.p.norm[i] = 3e38f;
        EXPECT(checkpoint_save(&m, &tok, &ts, b, err) == 0, "%s", err);
        model_free(&m);
        char model_path[700], keep[700], metrics[700];
        snprintf(model_path, sizeof(model_path), "%s/model.safetensors", b);
        snprintf(keep, sizeof(keep), "%s/kept.safetensors", root);
        snprintf(args, sizeof(args), "cp %s %s", model_path, keep);
        assert_int_equal(system(args), 0);
        snprintf(args, sizeof(args), "pretrain --config student --data %s/c.txt --out %s "
                 "--steps 4 --seq 32 --batch 2 --save-every 1 --resume", root, b);
        expect_cli_error(root, args, k ? "the loss is" : "not in this data");
        EXPECT(files_equal(model_path, keep), "run%d: the checkpoint changed", k);
        snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", b);
        char *text = read_file(metrics, NULL, err);
        EXPECT(!text || (!strstr(text, "nan") && !strstr(text, "inf")),
               "run%d: metrics.jsonl holds a non-finite number", k);
        free(text);
    }
    tokenizer_free(&tok);
    // coldstart (R1 §2.3.1): a model too weak to be right gives no usable sample, so the set is
    // the human-curated rows, topped up to --min-total; its bad inputs each get one line
    EXPECT(run_r1(root, "data tasks --n 8 --solutions --style checked --out human.jsonl") == 0,
           "%s", "data tasks failed");
    snprintf(args, sizeof(args), "coldstart --model base --base base --human human.jsonl "
             "--n-prompts 2 --max-new-tokens 4 --min-total 5 --out cold.jsonl");
    EXPECT(run_r1(root, args) == 0, "%s", "coldstart failed");
    snprintf(a, sizeof(a), "%s/cold.jsonl", root);
    int rows;
    Json **cold = jsonl_read(a, &rows, NULL, err);
    EXPECT(cold != NULL, "%s", err);
    EXPECT(rows >= 5, "coldstart wrote %d rows, fewer than --min-total 5", rows);
    tasks_free(cold, rows);
    snprintf(args, sizeof(args), "coldstart --model %s/base", root);
    expect_cli_error(root, args, "needs --model");
    snprintf(args, sizeof(args), "cp -r %s/base %s/other && echo ' ' >> %s/other/tokenizer.json",
             root, root, root);
    assert_int_equal(system(args), 0);
    snprintf(args, sizeof(args), "coldstart --model %s/base --base %s/other --out %s/x.jsonl", root,
             root, root);
    expect_cli_error(root, args, "another tokenizer");
    snprintf(a, sizeof(a), "%s/bad.jsonl", root);
    write_text(a, "{\"task\": \"arithmetic\", \"prompt\": \"What is 1 + 1?\"}\n");
    snprintf(args, sizeof(args), "coldstart --model %s/base --human %s --n-prompts 1 "
             "--max-new-tokens 2 --out %s/x.jsonl", root, a, root);
    expect_cli_error(root, args, "solution");
    rm_tree(root);
}

// ==============================================================================================
// 8. Sampling
// ==============================================================================================

static void test_sampling(void **state) {
    (void)state;
    enum { V = 6 };
    float logits[V] = {0.5f, 2.0f, -1.0f, 1.2f, 0.0f, 1.9f};
    float probs[V];
    Rng rng;
    rng_seed(&rng, 91);
    // greedy: the argmax, and no random numbers drawn
    Rng before = rng;
    EXPECT(sample_token(logits, V, 0.0f, 1.0f, &rng, probs) == 1, "%s", "greedy did not return the argmax");
    EXPECT(rng.state == before.state, "%s", "greedy consumed random numbers");
    // a fixed seed reproduces the same sequence
    Rng a, b;
    rng_seed(&a, 5);
    rng_seed(&b, 5);
    for (int i = 0; i < 100; i++) {
        int x = sample_token(logits, V, 0.8f, 0.9f, &a, probs);
        int y = sample_token(logits, V, 0.8f, 0.9f, &b, probs);
        EXPECT(x == y, "draw %d: %d vs %d with the same seed", i, x, y);
    }
    // a tiny top_p keeps only the most likely token
    for (int i = 0; i < 200; i++) {
        int x = sample_token(logits, V, 1.0f, 1e-6f, &rng, probs);
        EXPECT(x == 1, "top_p 1e-6 returned %d, not the argmax 1", x);
    }
    // empirical frequencies match softmax(logits / temperature) (n = 40000: standard error of a
    // frequency <= 0.0025, tolerance 0.015)
    float temps[2] = {1.0f, 0.5f};
    for (int ti = 0; ti < 2; ti++) {
        float temp = temps[ti];
        double p[V], Z = 0.0;
        for (int v = 0; v < V; v++) Z += (p[v] = exp(logits[v] / temp));
        int count[V] = {0}, n = 40000;
        for (int i = 0; i < n; i++) count[sample_token(logits, V, temp, 1.0f, &rng, probs)]++;
        for (int v = 0; v < V; v++)
            EXPECT(fabs((double)count[v] / n - p[v] / Z) < 0.015,
                   "temperature %g: token %d drawn %.4f of the time, softmax says %.4f", temp, v,
                   (double)count[v] / n, p[v] / Z);
    }
    // top-p: probabilities 0.5, 0.3, 0.15, 0.05 with top_p 0.7 keep {0, 1} (mass 0.8, the smallest
    // set reaching 0.7), renormalised to 0.625 / 0.375
    float l2[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    int count[4] = {0}, n = 40000;
    for (int i = 0; i < n; i++) count[sample_token(l2, 4, 1.0f, 0.7f, &rng, probs)]++;
    EXPECT(count[2] == 0 && count[3] == 0, "top_p 0.7 drew tokens outside the nucleus: %d, %d",
           count[2], count[3]);
    EXPECT(fabs((double)count[0] / n - 0.625) < 0.015, "top_p 0.7: token 0 %.4f, expected 0.625",
           (double)count[0] / n);
}

// ==============================================================================================
// 9. Distillation loss and SFT rows
// ==============================================================================================
// distill_loss = (1 - a) CE + a tau^2 KL(softmax(teacher / tau) || softmax(student / tau)), both
// terms averaged over the positions cross-entropy counts.

// The tiny case: B = 1, T = 3, V = 3. Position 0 predicts ids[1] = 2, position 1 predicts
// ids[2] = 1, position 2 predicts nothing.
static const float KD_S[9] = {1.0f, 2.0f, 0.5f, 0.0f, -1.0f, 1.5f, 3.0f, 0.0f, 0.0f};
static const float KD_T[9] = {2.0f, 0.0f, 1.0f, 0.5f, 0.5f, -1.0f, 0.0f, 2.0f, 1.0f};
static const int KD_IDS[3] = {0, 2, 1};

// log softmax(z / tau)[k] in double
static double kd_lsm(const float *z, int V, double tau, int k) {
    double mx = z[0] / tau, s = 0.0;
    for (int v = 1; v < V; v++) mx = fmax(mx, z[v] / tau);
    for (int v = 0; v < V; v++) s += exp(z[v] / tau - mx);
    return z[k] / tau - mx - log(s);
}

// The loss and its gradient from the formula, in double (the reference for every case below).
static double kd_reference(const float *s, const float *t, const int *ids, const float *mask, int B,
                           int T, int V, double alpha, double tau, double *grad) {
    int count = 0;
    for (int i = 0; i < B * T; i++) count += i % T != T - 1 && (!mask || mask[i + 1] != 0.0f);
    double ce = 0.0, kl = 0.0;
    for (int i = 0; i < B * T * V; i++) grad[i] = 0.0;
    for (int i = 0; i < B * T; i++) {
        if (i % T == T - 1 || (mask && mask[i + 1] == 0.0f)) continue;
        const float *zs = s + (size_t)i * V, *zt = t + (size_t)i * V;
        ce -= kd_lsm(zs, V, 1.0, ids[i + 1]);
        for (int v = 0; v < V; v++) {
            double lpt = kd_lsm(zt, V, tau, v), lps = kd_lsm(zs, V, tau, v);
            kl += exp(lpt) * (lpt - lps);
            double g_ce = exp(kd_lsm(zs, V, 1.0, v)) - (v == ids[i + 1]);
            grad[(size_t)i * V + v] = ((1 - alpha) * g_ce + alpha * tau * (exp(lps) - exp(lpt))) / count;
        }
    }
    return count ? ((1 - alpha) * ce + alpha * tau * tau * kl) / count : 0.0;
}

// Against values worked out by hand (Python, double precision) for alpha 0, 0.5, 1 and tau 1, 2,
// without a mask (positions 0 and 1 count) and with mask {1, 0, 1} (only position 1 counts).
static void test_distill_loss_by_hand(void **state) {
    (void)state;
    enum { T = 3, V = 3 };
    static const float mask101[T] = {1, 0, 1};
    static const struct {
        int masked;
        float tau, alpha;
        double want;
    } cases[] = {
        {0, 1, 0.0f, 2.3653683420}, {0, 1, 0.5f, 1.6278021968}, {0, 1, 1.0f, 0.8902360516},
        {0, 2, 0.0f, 2.3653683420}, {0, 2, 0.5f, 1.7031117154}, {0, 2, 1.0f, 1.0408550889},
        {1, 1, 0.0f, 2.7663678998}, {1, 1, 0.5f, 1.9412665692}, {1, 1, 1.0f, 1.1161652386},
        {1, 2, 0.0f, 2.7663678998}, {1, 2, 0.5f, 2.0334723590}, {1, 2, 1.0f, 1.3005768183},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const float *mask = cases[c].masked ? mask101 : NULL;
        float alpha = cases[c].alpha, tau = cases[c].tau;
        float dl[T * V];
        for (int i = 0; i < T * V; i++) dl[i] = 1234.5f;  // everything must be written
        float loss = distill_loss(KD_S, KD_T, KD_IDS, mask, 1, T, V, alpha, tau, dl);
        EXPECT(fabs(loss - cases[c].want) < 2e-6 * (1 + cases[c].want),
               "mask %s, alpha %g, tau %g: loss %.9g, by hand %.9g", mask ? "101" : "NULL", alpha,
               tau, loss, cases[c].want);
        // the gradient against the formula
        double g[T * V];
        double ref = kd_reference(KD_S, KD_T, KD_IDS, mask, 1, T, V, alpha, tau, g);
        EXPECT(fabs(ref - cases[c].want) < 1e-9, "reference %.12g vs by hand %.12g", ref, cases[c].want);
        for (int i = 0; i < T * V; i++)
            EXPECT(fabs(dl[i] - g[i]) < 1e-6, "mask %s, alpha %g, tau %g: dlogits[%d] = %.9g, formula %.9g",
                   mask ? "101" : "NULL", alpha, tau, i, dl[i], g[i]);
        // positions that do not count: zero (the last position; position 0 under the mask)
        for (int v = 0; v < V; v++) {
            EXPECT(dl[2 * V + v] == 0.0f, "alpha %g tau %g: last position dlogits[%d] = %g", alpha, tau, v, dl[2 * V + v]);
            if (mask)
                EXPECT(dl[v] == 0.0f, "alpha %g tau %g: masked position 0: dlogits[%d] = %g", alpha, tau, v, dl[v]);
        }
        // dlogits NULL: the same loss, bit for bit
        float loss2 = distill_loss(KD_S, KD_T, KD_IDS, mask, 1, T, V, alpha, tau, NULL);
        EXPECT(loss2 == loss, "alpha %g tau %g: loss %.9g with dlogits NULL, %.9g with", alpha, tau, loss2, loss);
        // alpha 0 is cross-entropy exactly (loss and gradient, bit for bit), whatever tau
        if (alpha == 0.0f) {
            float dce[T * V];
            float ce = cross_entropy_forward_backward(KD_S, KD_IDS, mask, 1, T, V, dce);
            EXPECT(loss == ce, "alpha 0: loss %.9g, cross-entropy %.9g", loss, ce);
            EXPECT(memcmp(dl, dce, sizeof(dl)) == 0, "%s", "alpha 0: dlogits differ from cross-entropy's");
        }
    }
    // a teacher equal to the student: alpha 1 gives loss 0 and gradient 0
    float dl[T * V];
    float loss = distill_loss(KD_S, KD_S, KD_IDS, NULL, 1, T, V, 1.0f, 2.0f, dl);
    EXPECT(fabs(loss) < 1e-6, "teacher == student, alpha 1: loss %g", loss);
    for (int i = 0; i < T * V; i++) EXPECT(fabs(dl[i]) < 1e-7, "teacher == student: dlogits[%d] = %g", i, dl[i]);
    // a masked-out position's teacher logits change nothing
    float t2[T * V];
    memcpy(t2, KD_T, sizeof(t2));
    for (int v = 0; v < V; v++) t2[v] = 50.0f * (v + 1), t2[2 * V + v] = -30.0f * v;
    float dl2[T * V];
    float a = distill_loss(KD_S, KD_T, KD_IDS, mask101, 1, T, V, 0.5f, 2.0f, dl);
    float b = distill_loss(KD_S, t2, KD_IDS, mask101, 1, T, V, 0.5f, 2.0f, dl2);
    EXPECT(a == b && memcmp(dl, dl2, sizeof(dl)) == 0,
           "teacher logits of positions that do not count changed the loss (%.9g vs %.9g) or dlogits", a, b);
}

typedef struct {
    float *logits;
    const float *teacher, *mask;
    const int *ids;
    int B, T, V;
    float alpha, tau;
} KdCtx;

static double kd_loss_fn(void *p) {
    KdCtx *c = p;
    return distill_loss(c->logits, c->teacher, c->ids, c->mask, c->B, c->T, c->V, c->alpha, c->tau, NULL);
}

// dlogits against central differences of the returned loss, on the tiny case and on a random
// B = 2, T = 5, V = 7 case with a mask, for several (alpha, tau).
static void test_distill_loss_gradient(void **state) {
    (void)state;
    static const float at[][2] = {{0.0f, 1.0f}, {0.5f, 1.0f}, {1.0f, 1.0f}, {0.5f, 2.0f},
                                  {1.0f, 2.0f}, {0.3f, 0.5f}, {0.8f, 4.0f}};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        char what[128];
        // tiny case, no mask
        float s[9], dl[9];
        memcpy(s, KD_S, sizeof(s));
        KdCtx c = {s, KD_T, NULL, KD_IDS, 1, 3, 3, at[k][0], at[k][1]};
        distill_loss(s, KD_T, KD_IDS, NULL, 1, 3, 3, c.alpha, c.tau, dl);
        snprintf(what, sizeof(what), "distill tiny alpha %g tau %g", c.alpha, c.tau);
        fd_check(what, s, 9, dl, kd_loss_fn, &c, 1e-2f, 1e-2, 2e-4);
        // random case with a mask (sequences of 5; the second starts at 5)
        enum { B = 2, T = 5, V = 7 };
        Rng rng;
        rng_seed(&rng, 300 + k);
        float zs[B * T * V], zt[B * T * V], g[B * T * V];
        fill_normal(zs, B * T * V, 1.5f, &rng);
        fill_normal(zt, B * T * V, 1.5f, &rng);
        int ids[B * T];
        random_ids(ids, B * T, V, 400 + k);
        float mask[B * T] = {1, 1, 0, 1, 1, 0, 0, 1, 1, 0};
        KdCtx r = {zs, zt, mask, ids, B, T, V, at[k][0], at[k][1]};
        float loss = distill_loss(zs, zt, ids, mask, B, T, V, r.alpha, r.tau, g);
        double ref_g[B * T * V];
        double ref = kd_reference(zs, zt, ids, mask, B, T, V, r.alpha, r.tau, ref_g);
        EXPECT(fabs(loss - ref) < 2e-6 * (1 + fabs(ref)), "random case alpha %g tau %g: loss %.9g, formula %.9g",
               r.alpha, r.tau, loss, ref);
        snprintf(what, sizeof(what), "distill random alpha %g tau %g", r.alpha, r.tau);
        fd_check(what, zs, B * T * V, g, kd_loss_fn, &r, 1e-2f, 1e-2, 2e-4);
        // rows whose target is masked out (and the last row of each sequence) are exactly zero:
        // counted rows are (0,0) (0,2) (0,3) [mask 1 at t+1] and (1,1) (1,2); zero: 1, 4, 5, 8, 9
        static const int zero_rows[] = {1, 4, 5, 8, 9};
        for (int i = 0; i < 5; i++)
            for (int v = 0; v < V; v++)
                EXPECT(g[zero_rows[i] * V + v] == 0.0f, "alpha %g tau %g: row %d (not counted) dlogits[%d] = %g",
                       r.alpha, r.tau, zero_rows[i], v, g[zero_rows[i] * V + v]);
    }
}

// A small text for a 300-token tokenizer: English, Chinese, digits, the template's words.
static void sft_tokenizer(Tokenizer *tok) {
    static const char *const lines[] = {
        "A conversation between User and Assistant. The user asks a question, and the Assistant "
        "solves it. The reasoning process and answer are enclosed within tags.\n",
        "What is 33 + 39? I add the tens and the ones, so the answer is 72.\n",
        "请计算 54 + 33 的结果。先算十位，再算个位，所以答案是 87。\n",
        "The cat sat on the mat. The answer is the number after the reasoning.\n",
    };
    char text[8192] = "";
    for (int rep = 0; rep < 6; rep++)
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) strcat(text, lines[i]);
    char err[R1_ERR_LEN];
    if (tokenizer_train(tok, text, strlen(text), 300, err)) fail_msg("tokenizer_train: %s", err);
    EXPECT(tok->vocab_size == 300, "tokenizer has %d tokens, wanted 300", tok->vocab_size);
}

// The text of ids[0..n) as the tokenizer decodes it (malloc'd).
static char *sft_decode(const Tokenizer *tok, const int *ids, int n) {
    char *s = tokenizer_decode(tok, ids, n);
    assert_non_null(s);
    return s;
}

// One sft_row case: the row is BOS + template(prompt) + response + EOS + PAD..., and the mask is 1
// exactly on the response tokens and the EOS. Returns the number of prompt tokens (BOS included)
// in *n_prompt and the response tokens in *n_resp.
static void check_sft_row(const Tokenizer *tok, const char *template, const char *prompt,
                          const char *response, int T, int *ids, float *mask, int *n_prompt,
                          int *n_resp) {
    // the expected tokens, built piece by piece
    int *want = xcalloc((size_t)T + 1024, sizeof(int));
    int n = 0;
    want[n++] = TOK_BOS;
    char *text = NULL;
    const char *p = prompt;
    if (strcmp(template, "chat") == 0) {
        want[n++] = TOK_USER;
    } else if (strcmp(template, "r1-zero") == 0) {
        int ascii = 1;
        for (const char *q = prompt; *q; q++) ascii &= (unsigned char)*q < 0x80;
        p = text = r1_zero_prompt(prompt, ascii ? "en" : "zh");
    }
    int k = tokenizer_encode(tok, p, strlen(p), want + n, T + 1000 - n);
    assert_true(k > 0);
    n += k;
    if (strcmp(template, "chat") == 0) want[n++] = TOK_ASSISTANT;
    int np = n;
    int kr = tokenizer_encode(tok, response, strlen(response), want + n, T + 1000 - n);
    assert_true(kr >= 0);
    n += kr;
    want[n++] = TOK_EOS;
    EXPECT(n <= T, "%s: test case too long for T = %d (%d tokens)", template, T, n);
    for (int t = n; t < T; t++) want[t] = TOK_PAD;

    for (int t = 0; t < T; t++) ids[t] = -7, mask[t] = -7.0f;
    int r = sft_row(tok, template, prompt, response, T, ids, mask);
    EXPECT(r == n, "%s: sft_row returned %d, expected %d tokens", template, r, n);
    for (int t = 0; t < T; t++) {
        EXPECT(ids[t] == want[t], "%s: ids[%d] = %d, expected %d (prompt ends at %d, EOS at %d)",
               template, t, ids[t], want[t], np, n - 1);
        float m = t >= np && t < n ? 1.0f : 0.0f;
        EXPECT(mask[t] == m, "%s: mask[%d] = %g, expected %g (prompt ends at %d, EOS at %d)", template,
               t, mask[t], m, np, n - 1);
    }
    // the pieces decode to what went in
    char *dp = sft_decode(tok, ids + 1, np - 1);
    char *want_p = xcalloc(strlen(p) + 64, 1);
    if (strcmp(template, "chat") == 0)
        snprintf(want_p, strlen(p) + 64, "%.*s%s%.*s", tok->len[TOK_USER], (const char *)tok->bytes[TOK_USER],
                 p, tok->len[TOK_ASSISTANT], (const char *)tok->bytes[TOK_ASSISTANT]);
    else
        strcpy(want_p, p);
    EXPECT(strcmp(dp, want_p) == 0, "%s: prompt part decodes to '%s', expected '%s'", template, dp, want_p);
    char *dr = sft_decode(tok, ids + np, kr);
    EXPECT(strcmp(dr, response) == 0, "%s: response part decodes to '%s', expected '%s'", template, dr, response);
    free(dp);
    free(dr);
    free(want_p);
    free(text);
    free(want);
    *n_prompt = np;
    *n_resp = kr;
}

// sft's held-out rows are the last --heldout of the rows after sft_shuffle_rows: a permutation
// fixed by the data alone (a second call from the same order gives the same order), which moves
// rows and their masks together, and which mixes a file whose last rows are all of one kind
// (rejection sampling writes the non-reasoning rows last) into the held-out tail.
static void test_sft_shuffle_rows(void **state) {
    (void)state;
    enum { N = 100, T = 3 };
    SeqData d = {.T = T, .n_seq = N};
    d.ids = xcalloc(N * T, sizeof(int));
    d.mask = xcalloc(N * T, sizeof(float));
    for (int i = 0; i < N; i++)
        for (int t = 0; t < T; t++) d.ids[i * T + t] = i, d.mask[i * T + t] = (float)i;
    sft_shuffle_rows(&d);
    int seen[N] = {0}, tail_late = 0, moved = 0;
    for (int i = 0; i < N; i++) {
        int r = d.ids[i * T];
        for (int t = 0; t < T; t++)
            EXPECT(d.ids[i * T + t] == r && d.mask[i * T + t] == (float)r, "row %d was torn apart", i);
        seen[r]++;
        moved += r != i;
        if (i >= 95) tail_late += r >= 80;  // the held-out 5%: rows from the file's last fifth?
    }
    for (int r = 0; r < N; r++) EXPECT(seen[r] == 1, "row %d appears %d times", r, seen[r]);
    EXPECT(moved > 80, "only %d of %d rows moved", moved, N);
    EXPECT(tail_late < 5, "the held-out rows all come from the file's tail");
    int first[N];
    for (int i = 0; i < N; i++) first[i] = d.ids[i * T];
    for (int i = 0; i < N; i++)
        for (int t = 0; t < T; t++) d.ids[i * T + t] = i, d.mask[i * T + t] = (float)i;
    sft_shuffle_rows(&d);
    for (int i = 0; i < N; i++) EXPECT(d.ids[i * T] == first[i], "%s", "the order is not fixed");
    free(d.ids);
    free(d.mask);
}

static void test_sft_row_mask(void **state) {
    (void)state;
    Tokenizer tok;
    sft_tokenizer(&tok);
    enum { T = 400 };
    int ids[T + 1], np, nr;
    float mask[T + 1];
    const char *en = "What is 33 + 39?", *zh = "请计算 54 + 33 的结果。";
    const char *resp_en = "<think>\nI add 33 and 39: the answer is 72.\n</think>\n<answer>72</answer>";
    const char *resp_zh = "<think>\n先算 54 + 33 = 87。\n</think>\n<answer>87</answer>";
    static const char *const templates[] = {"chat", "r1-zero", "none"};
    for (int i = 0; i < 3; i++) {
        check_sft_row(&tok, templates[i], en, resp_en, T, ids, mask, &np, &nr);
        // the response's special tokens are single ids inside the masked part
        EXPECT(ids[np] == TOK_THINK, "%s: first response token %d, expected <think> (%d)", templates[i], ids[np], TOK_THINK);
        EXPECT(ids[np + nr - 1] == TOK_ANSWER_END, "%s: last response token %d, expected </answer>", templates[i], ids[np + nr - 1]);
        check_sft_row(&tok, templates[i], zh, resp_zh, T, ids, mask, &np, &nr);
        // an empty response: the mask covers the EOS alone
        check_sft_row(&tok, templates[i], en, "", T, ids, mask, &np, &nr);
        EXPECT(nr == 0 && mask[np] == 1.0f && ids[np] == TOK_EOS, "%s: empty response: %d tokens, mask %g, id %d",
               templates[i], nr, mask[np], ids[np]);
    }
    // the r1-zero template follows the prompt's language
    {
        check_sft_row(&tok, "r1-zero", zh, resp_zh, T, ids, mask, &np, &nr);
        char *d = sft_decode(&tok, ids + 1, np - 1);
        char *want = r1_zero_prompt(zh, "zh");
        EXPECT(strcmp(d, want) == 0, "r1-zero with a Chinese prompt decodes to '%s', expected '%s'", d, want);
        free(d);
        free(want);
    }
    // lengths: exactly T fits (no padding), T - 1 does not; a prompt alone too long: -1
    for (int i = 0; i < 3; i++) {
        int full = sft_row(&tok, templates[i], en, resp_en, T, ids, mask);
        assert_true(full > 0);
        int *ids2 = xcalloc((size_t)full + 1, sizeof(int));
        float *mask2 = xcalloc((size_t)full + 1, sizeof(float));
        ids2[full] = -99, mask2[full] = -99.0f;
        int r = sft_row(&tok, templates[i], en, resp_en, full, ids2, mask2);
        EXPECT(r == full && ids2[full - 1] == TOK_EOS && mask2[full - 1] == 1.0f,
               "%s: T = %d (exact fit): returned %d, last id %d, last mask %g", templates[i], full, r,
               ids2[full - 1], mask2[full - 1]);
        EXPECT(ids2[full] == -99 && mask2[full] == -99.0f, "%s: T = %d: wrote past the row", templates[i], full);
        r = sft_row(&tok, templates[i], en, resp_en, full - 1, ids2, mask2);
        EXPECT(r == -1, "%s: T = %d, one short of the %d needed: returned %d, expected -1", templates[i],
               full - 1, full, r);
        EXPECT(ids2[full] == -99 && mask2[full] == -99.0f, "%s: T = %d: wrote past the row", templates[i], full - 1);
        r = sft_row(&tok, templates[i], en, resp_en, 8, ids2, mask2);
        EXPECT(r == -1, "%s: T = 8 (the prompt alone does not fit): returned %d, expected -1", templates[i], r);
        free(ids2);
        free(mask2);
    }
    tokenizer_free(&tok);
}

// A prompt that fills all T tokens leaves no room for the EOS: -1 for an empty response and for a
// real one (which starts with the special token <think>), and nothing written past ids[T - 1].
// (The rows in cmd_sft lie back to back in one buffer: a write past a row lands in the next one,
// or past the buffer's end on the last.)
static void test_sft_row_prompt_fills_row(void **state) {
    (void)state;
    Tokenizer tok;
    sft_tokenizer(&tok);
    enum { SLACK = 256 };
    const char *en = "What is 33 + 39?";
    const char *responses[] = {"", "<think>\nI add 33 and 39: the answer is 72.\n</think>\n<answer>72</answer>",
                               "I add them."};
    static const char *const templates[] = {"chat", "r1-zero", "none"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int big[512];
            float bm[512];
            int with_empty = sft_row(&tok, templates[i], en, "", 512, big, bm);  // prompt + EOS
            assert_true(with_empty > 1);
            int T = with_empty - 1;  // exactly the prompt
            int *ids = xcalloc((size_t)T + SLACK, sizeof(int));
            float *mask = xcalloc((size_t)T + SLACK, sizeof(float));
            for (int t = T; t < T + SLACK; t++) ids[t] = -99, mask[t] = -99.0f;
            int r = sft_row(&tok, templates[i], en, responses[j], T, ids, mask);
            int past = 0;
            for (int t = T; t < T + SLACK; t++) past += ids[t] != -99 || mask[t] != -99.0f;
            EXPECT(past == 0, "%s: T = %d (the prompt's length), response \"%s\": wrote %d entries past "
                   "the row (ids[T] = %d), returned %d", templates[i], T, responses[j], past, ids[T], r);
            EXPECT(r == -1, "%s: T = %d, prompt of %d tokens, response \"%s\": returned %d, expected -1",
                   templates[i], T, T, responses[j], r);
            free(ids);
            free(mask);
        }
    tokenizer_free(&tok);
}

// Cross-entropy with an SFT mask: zero dlogits on every position that predicts a prompt or
// padding token, and the loss is the mean over the positions predicting the response and EOS.
// Pretraining rows start at a document: B=0, E=1, other ids are text. Documents of 3, 4 and 9
// tokens (with BOS/EOS), then 3, into rows of T = 6: row 0 holds doc 0 whole and the first 3
// tokens of doc 1, which starts row 1 again whole; doc 2 (longer than T) starts row 2 and
// continues into row 3, which ends with doc 3 whole.
static void test_document_rows(void **state) {
    (void)state;
    int stream[] = {0, 10, 1,  0, 20, 21, 1,  0, 30, 31, 32, 33, 34, 35, 36, 1,  0, 40, 1};
    long n = (long)(sizeof stream / sizeof stream[0]), n_rows;
    int *rows = document_rows(stream, n, 6, &n_rows);
    int want[4][6] = {{0, 10, 1, 0, 20, 21}, {0, 20, 21, 1, 0, 30}, {0, 30, 31, 32, 33, 34},
                      {35, 36, 1, 0, 40, 1}};
    EXPECT(n_rows == 4, "%ld rows, want 4", n_rows);
    for (int r = 0; r < 4; r++)
        for (int t = 0; t < 6; t++)
            EXPECT(rows[r * 6 + t] == want[r][t], "row %d token %d: %d, want %d", r, t,
                   rows[r * 6 + t], want[r][t]);
    free(rows);
}

static void test_sft_mask_cross_entropy(void **state) {
    (void)state;
    Tokenizer tok;
    sft_tokenizer(&tok);
    enum { B = 2, T = 320 };
    int V = tok.vocab_size;
    int ids[B * T], np[B], nr[B];
    float mask[B * T];
    check_sft_row(&tok, "chat", "What is 33 + 39?",
                  "<think>\nI add 33 and 39: the answer is 72.\n</think>\n<answer>72</answer>", T, ids,
                  mask, &np[0], &nr[0]);
    check_sft_row(&tok, "r1-zero", "请计算 54 + 33 的结果。", "<think>\n先算 54 + 33 = 87。\n</think>\n<answer>87</answer>",
                  T, ids + T, mask + T, &np[1], &nr[1]);
    float *logits = xcalloc((size_t)B * T * V, sizeof(float));
    float *dl = xcalloc((size_t)B * T * V, sizeof(float));
    Rng rng;
    rng_seed(&rng, 77);
    fill_normal(logits, (size_t)B * T * V, 2.0f, &rng);
    for (size_t i = 0; i < (size_t)B * T * V; i++) dl[i] = 1e9f;
    float loss = cross_entropy_forward_backward(logits, ids, mask, B, T, V, dl);
    // by hand: position t of row b counts iff it predicts a response token or the EOS, i.e.
    // t in [np - 1, np + nr - 1]
    double want = 0.0;
    int count = 0;
    for (int b = 0; b < B; b++)
        for (int t = np[b] - 1; t <= np[b] + nr[b] - 1; t++) {
            want += row_ce(logits + ((size_t)b * T + t) * V, V, ids[b * T + t + 1]);
            count++;
        }
    want /= count;
    EXPECT(count == nr[0] + nr[1] + 2, "counted %d positions", count);
    EXPECT(fabs(loss - want) < 1e-5 * (1 + want), "masked SFT loss %.9g, hand loop %.9g over %d positions",
           loss, want, count);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int counts = t >= np[b] - 1 && t <= np[b] + nr[b] - 1;
            const float *d = dl + ((size_t)b * T + t) * V;
            double sum = 0.0, mx = 0.0;
            for (int v = 0; v < V; v++) sum += d[v], mx = fmax(mx, fabs(d[v]));
            if (!counts)
                EXPECT(mx == 0.0, "row %d position %d (a prompt/padding target): max |dlogits| %g", b,
                       t, mx);
            else
                EXPECT(mx > 0.0 && fabs(sum) < 1e-6, "row %d position %d (response): max |dlogits| %g, sum %g",
                       b, t, mx, sum);
        }
    free(logits);
    free(dl);
    tokenizer_free(&tok);
}

// pipeline --mtp: the base's command gets --mtp and every rollout and evaluation --speculative;
// without the flag no stage's command line holds either (the placeholders leave no argument).
static void test_pipeline_mtp_args(void **state) {
    (void)state;
    for (int mtp = 0; mtp < 2; mtp++) {
        PipelineRun p = {.out = "o", .preset = "small", .seed = "1", .scale = 1.0, .mtp = mtp};
        int n_mtp = 0, n_spec = 0, n_grpo = 0;
        for (int i = 0; i < N_STAGES; i++)
            for (int c = 0; c < 2 && STAGES[i].commands[c]; c++) {
                char line[1024], buf[4200];
                snprintf(line, sizeof(line), "%s", STAGES[i].commands[c]);
                n_grpo += strncmp(line, "grpo ", 5) == 0;
                for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
                    const char *a = expand_arg(&p, tok, buf);
                    EXPECT(!a || a[0] != '$', "%s: %s left unexpanded", STAGES[i].name, a);
                    n_mtp += a && strcmp(a, "--mtp") == 0;
                    if (a && strcmp(a, "--speculative") == 0) {
                        n_spec++;
                        EXPECT(strncmp(STAGES[i].commands[c], "grpo ", 5) == 0 ||
                               strncmp(STAGES[i].commands[c], "eval ", 5) == 0,
                               "%s: --speculative on a command that has no such flag", STAGES[i].name);
                    }
                }
            }
        EXPECT(n_mtp == mtp, "mtp %d: %d stages pretrain with --mtp", mtp, n_mtp);
        EXPECT(n_spec == (mtp ? n_grpo + 1 : 0), "mtp %d: %d speculative commands, %d grpo ones",
               mtp, n_spec, n_grpo);
    }
}

// ./build/test_r1 [PATTERN] runs the tests whose names match PATTERN (e.g. 'test_gradcheck*').
// The tests run on one thread unless OMP_NUM_THREADS says otherwise: the tiny shapes here make
// OpenMP's per-loop start-up and barriers cost more than the work, and on a machine whose cores
// are busy with something else a spinning barrier can make a 5 s run take minutes. The thread
// count cannot change results (test_determinism_threads checks that, with 1, 2 (and 3) threads).

// The report's findings (main.c): a paired difference between two stages' per-problem scores,
// its standard error and the verdict, against numbers worked out by hand.
//   stage a pass1: p1 1.0, p2 0.5, p3 0.75, p4 0.0 (p4 only in a: left out of the pairs)
//   stage b pass1: p1 0.5, p2 0.5, p3 0.5, p5 1.0 (p5 only in b)
//   pairs p1-p3: d = 0.5, 0, 0.25; mean 0.25; sample var (0.25^2 + 0.25^2 + 0) / 2 = 1/16;
//   se = sqrt(1/16 / 3) = 0.1443; mean a = 0.75, mean b = 0.5; z = 1.73 -> "not significant".
static void write_problem_lines(const char *dir, const char *stage, const char *const *ids,
                           const double *pass1, int n) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/eval-%s.problems.jsonl", dir, stage);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) fprintf(f, "{\"id\": \"%s\", \"pass1\": %g}\n", ids[i], pass1[i]);
    fclose(f);
}

static void test_report_findings(void **state) {
    (void)state;
    char dir[] = "/tmp/r1_findings_XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *ia[] = {"p1", "p2", "p3", "p4"}, *ib[] = {"p1", "p2", "p3", "p5"};
    const double a[] = {1.0, 0.5, 0.75, 0.0}, b[] = {0.5, 0.5, 0.5, 1.0};
    write_problem_lines(dir, "sa", ia, a, 4);
    write_problem_lines(dir, "sb", ib, b, 4);
    Estimate e = paired_difference(dir, "sa", "pass1", "sb", "pass1");
    assert_int_equal(e.n, 3);
    assert_true(fabs(e.diff - 0.25) < 1e-12);
    assert_true(fabs(e.se - sqrt(1.0 / 48.0)) < 1e-12);
    assert_true(fabs(e.a - 0.75) < 1e-12 && fabs(e.b - 0.5) < 1e-12);
    assert_string_equal(finding_verdict(&e, +1), "not significant");  // z = 1.73
    Estimate strong = {.diff = 0.3, .se = 0.1, .n = 10};
    assert_string_equal(finding_verdict(&strong, +1), "holds");
    assert_string_equal(finding_verdict(&strong, -1), "does not hold");
    Estimate none = {0};
    assert_string_equal(finding_verdict(&none, +1), "not measured");
    Estimate missing = paired_difference(dir, "sa", "pass1", "absent", "pass1");
    assert_int_equal(missing.n, 0);
    rm_tree(dir);
}

int main(int argc, char **argv) {
#ifdef _OPENMP
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
#endif
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_blocks),
        cmocka_unit_test(test_step_parts),
        cmocka_unit_test(test_r1_expf),
        cmocka_unit_test(test_vec_expf),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope_transpose),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_gradcheck_model),
        cmocka_unit_test(test_gradcheck_model_qnull),
        cmocka_unit_test(test_gradcheck_model_yarn),
        cmocka_unit_test(test_gradcheck_model_halves),
        cmocka_unit_test(test_gradcheck_model_balance),
        cmocka_unit_test(test_cross_entropy_by_hand),
        cmocka_unit_test(test_cross_entropy_mask),
        cmocka_unit_test(test_decode_matches_forward),
        cmocka_unit_test(test_weighted_row_sums_is_the_plain_loop),
        cmocka_unit_test(test_dot_lanes_rows_is_dot_lanes),
        cmocka_unit_test(test_threads_for_idle_cores),
        cmocka_unit_test(test_generate_batch_shared_prompts),
        cmocka_unit_test(test_decode_batch),
        cmocka_unit_test(test_decode_batch_cut),
        cmocka_unit_test(test_decode_state_limits),
        cmocka_unit_test(test_determinism_threads),
        cmocka_unit_test(test_side_by_side_same_floats),
        cmocka_unit_test(test_adamw_formula),
        cmocka_unit_test(test_adamw_lowers_loss),
        cmocka_unit_test(test_config_validate),
        cmocka_unit_test(test_model_create_too_large),
        cmocka_unit_test(test_config_from_json),
        cmocka_unit_test(test_config_json_round_trip),
        cmocka_unit_test(test_checkpoints),
        cmocka_unit_test(test_cli_faults),
        cmocka_unit_test(test_pipeline_mtp_args),
        cmocka_unit_test(test_checkpoint_dir_fsync),
        cmocka_unit_test(test_checkpoint_audit),
        cmocka_unit_test(test_checkpoint_shape_message_1d),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_debug_build_same_floats),
        cmocka_unit_test(test_plain_attention),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_distill_loss_by_hand),
        cmocka_unit_test(test_distill_loss_gradient),
        cmocka_unit_test(test_sft_shuffle_rows),
        cmocka_unit_test(test_sft_row_mask),
        cmocka_unit_test(test_sft_row_prompt_fills_row),
        cmocka_unit_test(test_sft_mask_cross_entropy),
        cmocka_unit_test(test_document_rows),
        cmocka_unit_test(test_report_findings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
