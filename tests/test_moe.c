// tests/test_moe.c: DeepSeekMoE (moe.c): the router, the routed experts' forward and backward,
// load statistics and the auxiliary-loss-free bias update.
//
// What is checked, and why:
//   1. moe_route_token on hand-made logits, where the right answer can be worked out on paper:
//      exact selection, the bias steering selection but never the weights, ties, top-k = all,
//      group-limited routing, norm_topk_prob on and off; then against a brute-force reference on
//      thousands of random tokens.
//   2. moe_forward / moe_backward by finite differences (input, router, experts), with samples
//      where the routing flips skipped; the bias gets no gradient. The sequence-wise balance
//      loss (moe_balance_loss) against its formula and by finite differences.
//   3. moe_update_bias moves each bias by exactly +gamma / -gamma / 0; moe_reset_load zeroes;
//      repeated updates really even out the load.
//   4. Load statistics: expert_load counts N*K routed pairs per MoE layer, matching topk_idx, and
//      the expert-sorted layout (expert_start, slot_of, slot_pair) is consistent.
//
// Build and run: make build/test_moe && ./build/test_moe
#include "kernels.c"
#include "r1.c"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

// Fails with a message showing the measured values (cmocka's assert_* print only the expression).
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                        \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

// A Config with only the fields the router reads set; everything else zero.
static Config router_config(int E, int K, int G, int topk_group, int norm, float scaling) {
    Config c;
    memset(&c, 0, sizeof(c));
    c.n_routed_experts = E;
    c.num_experts_per_tok = K;
    c.n_group = G;
    c.topk_group = topk_group;
    c.norm_topk_prob = norm;
    c.routed_scaling_factor = scaling;
    return c;
}

// Routes one token and checks the selected experts (in order) and weights (to 1e-6).
static void expect_route(const Config *c, const float *logits, const float *bias,
                         const int *want_idx, const double *want_w, const char *what) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    float s[64], w[64];
    int idx[64];
    moe_route_token(c, logits, bias, s, idx, w);
    for (int e = 0; e < E; e++)
        EXPECT(fabs(s[e] - sigmoid_d(logits[e])) < 1e-6, "%s: s[%d] = %.7g, sigmoid(%g) = %.7g",
               what, e, s[e], logits[e], sigmoid_d(logits[e]));
    for (int k = 0; k < K; k++) {
        EXPECT(idx[k] == want_idx[k], "%s: idx[%d] = %d, expected %d", what, k, idx[k], want_idx[k]);
        EXPECT(fabs(w[k] - want_w[k]) < 1e-6 * (1 + fabs(want_w[k])), "%s: w[%d] = %.7g, expected %.7g",
               what, k, w[k], want_w[k]);
    }
}

// ==============================================================================================
// 1. The router on crafted logits
// ==============================================================================================

// s = sigmoid(logits) = [.50, .88, .27, .73]: top-2 are experts 1 and 3, weights s normalised
// to sum 1 (times routed_scaling_factor 1 here).
static void test_route_exact(void **state) {
    (void)state;
    Config c = router_config(4, 2, 1, 1, 1, 1.0f);
    float logits[4] = {0.0f, 2.0f, -1.0f, 1.0f}, bias[4] = {0};
    double s1 = sigmoid_d(2), s3 = sigmoid_d(1);
    int idx[2] = {1, 3};
    double w[2] = {s1 / (s1 + s3), s3 / (s1 + s3)};
    expect_route(&c, logits, bias, idx, w, "plain top-2");
    // K = 1 with norm_topk_prob: the single weight is 1 * scaling
    Config c1 = router_config(4, 1, 1, 1, 1, 2.5f);
    int idx1[1] = {1};
    double w1[1] = {2.5};
    expect_route(&c1, logits, bias, idx1, w1, "top-1");
}

// The bias b (e_score_correction_bias) is added to s for SELECTION only (DeepSeek-V3 eq. 16):
// with b_2 = 1 expert 2 (s = .27) is chosen first, but its weight is computed from s, not s + b.
static void test_route_bias_selects_not_weights(void **state) {
    (void)state;
    Config c = router_config(4, 2, 1, 1, 1, 2.5f);
    float logits[4] = {0.0f, 2.0f, -1.0f, 1.0f};
    double s[4] = {sigmoid_d(0), sigmoid_d(2), sigmoid_d(-1), sigmoid_d(1)};
    float up[4] = {0.0f, 0.0f, 1.0f, 0.0f};  // choice = s + b = [.50, .88, 1.27, .73]
    int idx[2] = {2, 1};
    double w[2] = {2.5 * s[2] / (s[2] + s[1]), 2.5 * s[1] / (s[2] + s[1])};
    expect_route(&c, logits, up, idx, w, "bias raises expert 2");
    float down[4] = {0.0f, -1.0f, 0.0f, 0.0f};  // choice = [.50, -.12, .27, .73]
    int idx2[2] = {3, 0};
    double w2[2] = {2.5 * s[3] / (s[3] + s[0]), 2.5 * s[0] / (s[3] + s[0])};
    expect_route(&c, logits, down, idx2, w2, "bias lowers expert 1");
}

// Ties go to the lowest index, so that routing is a deterministic function of the scores.
static void test_route_ties(void **state) {
    (void)state;
    Config c = router_config(4, 2, 1, 1, 1, 1.0f);
    float zeros[4] = {0}, bias0[4] = {0};
    int idx[2] = {0, 1};
    double w[2] = {0.5, 0.5};
    expect_route(&c, zeros, bias0, idx, w, "all equal");
    float bias[4] = {0.0f, 0.5f, 0.0f, 0.5f};
    int idx2[2] = {1, 3};
    expect_route(&c, zeros, bias, idx2, w, "tied biased experts");
    // tied groups: 4 groups of 2, all scores equal, keep 2 groups -> groups 0 and 1
    Config g = router_config(8, 4, 4, 2, 1, 1.0f);
    float z8[8] = {0}, b8[8] = {0};
    int idx3[4] = {0, 1, 2, 3};
    double w3[4] = {0.25, 0.25, 0.25, 0.25};
    expect_route(&g, z8, b8, idx3, w3, "tied groups");
}

// top-k = E selects every expert once, in order of s + b; the weights sum to the scaling.
static void test_route_all_experts(void **state) {
    (void)state;
    Config c = router_config(4, 4, 1, 1, 1, 2.5f);
    float logits[4] = {0.3f, -0.2f, 1.5f, 0.0f}, bias[4] = {0};
    double s[4], S = 0;
    for (int e = 0; e < 4; e++) S += (s[e] = sigmoid_d(logits[e]));
    int idx[4] = {2, 0, 3, 1};
    double w[4];
    for (int k = 0; k < 4; k++) w[k] = 2.5 * s[idx[k]] / S;
    expect_route(&c, logits, bias, idx, w, "top-4 of 4");
}

// Group-limited routing (DeepSeek-V3 §2.1.2, "node-limited"): 4 groups of 2 experts, keep 2.
// A group's score is the sum of its two best s + b. Group 0 holds the single best expert
// (s = .993) but its partner is poor (.007): score 1.0. Groups 1 (.73 + .73) and 2 (.62 + .62)
// win, and expert 0 is excluded although it has the highest individual score.
static void test_route_groups(void **state) {
    (void)state;
    Config c = router_config(8, 2, 4, 2, 1, 1.0f);
    float logits[8] = {5.0f, -5.0f, 1.0f, 1.0f, 0.5f, 0.5f, -2.0f, -2.0f}, bias[8] = {0};
    int idx[2] = {2, 3};
    double w[2] = {0.5, 0.5};
    expect_route(&c, logits, bias, idx, w, "group-limited");
    // with K = 3 the third expert comes from group 2, still not expert 0
    Config c3 = router_config(8, 3, 4, 2, 1, 1.0f);
    double s2 = sigmoid_d(1), s4 = sigmoid_d(0.5), S = 2 * s2 + s4;
    int idx3[3] = {2, 3, 4};
    double w3[3] = {s2 / S, s2 / S, s4 / S};
    expect_route(&c3, logits, bias, idx3, w3, "group-limited, K = 3");
    // keeping 1 group: only group 1 (the best) can be used
    Config c1 = router_config(8, 2, 4, 1, 1, 1.0f);
    expect_route(&c1, logits, bias, idx, w, "one group kept");
    // the group score uses s + b: a bias of +1 on group 3 makes it the best group (2 x 1.12);
    // its experts are chosen, and weighted by their unbiased s (equal here: 0.5 each)
    float bias3[8] = {0, 0, 0, 0, 0, 0, 1.0f, 1.0f};
    int idx4[2] = {6, 7};
    expect_route(&c, logits, bias3, idx4, w, "bias moves a group");
}

// norm_topk_prob false: w = s * routed_scaling_factor, not normalised.
static void test_route_no_norm(void **state) {
    (void)state;
    Config c = router_config(4, 2, 1, 1, 0, 2.5f);
    float logits[4] = {0.0f, 2.0f, -1.0f, 1.0f}, bias[4] = {0};
    int idx[2] = {1, 3};
    double w[2] = {2.5 * sigmoid_d(2), 2.5 * sigmoid_d(1)};
    expect_route(&c, logits, bias, idx, w, "norm_topk_prob false");
}

// A brute-force router written straight from the paper, for random tokens: group scores, the
// kept groups, then top-K by s + b among their experts (ties to the lowest index everywhere).
static void reference_route(const Config *c, const float *logits, const float *bias, int *idx) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group, per = E / G;
    // in float, as the router computes them, so that near-ties round the same way
    float choice[64];
    int allowed[64], group_kept[64] = {0};
    for (int e = 0; e < E; e++) choice[e] = 1.0f / (1.0f + expf(-logits[e])) + bias[e];
    if (G > 1) {
        float gs[64];
        for (int g = 0; g < G; g++) {
            // sum of the two largest in the group, by sorting a copy
            float v[64];
            for (int i = 0; i < per; i++) v[i] = choice[g * per + i];
            for (int i = 0; i < per; i++)
                for (int j = i + 1; j < per; j++)
                    if (v[j] > v[i]) { float t = v[i]; v[i] = v[j]; v[j] = t; }
            gs[g] = v[0] + v[1];
        }
        for (int r = 0; r < c->topk_group; r++) {
            int best = -1;
            for (int g = 0; g < G; g++)
                if (!group_kept[g] && (best < 0 || gs[g] > gs[best])) best = g;
            group_kept[best] = 1;
        }
    }
    for (int e = 0; e < E; e++) allowed[e] = G > 1 ? group_kept[e / per] : 1;
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (allowed[e] && (best < 0 || choice[e] > choice[best])) best = e;
        idx[k] = best;
        allowed[best] = 0;
    }
}

// Thousands of random tokens and configs: the selection equals the reference, the experts are
// distinct and in kept groups, and the weights are s / sum(s) * scaling (summing to the scaling).
static void test_route_random(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 3);
    struct { int E, K, G, TG, norm; } shapes[] = {
        {16, 4, 4, 2, 1}, {16, 4, 4, 2, 0}, {8, 2, 2, 1, 1}, {8, 8, 1, 1, 1}, {32, 8, 8, 4, 1},
        {6, 3, 3, 2, 1}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        Config c = router_config(shapes[si].E, shapes[si].K, shapes[si].G, shapes[si].TG,
                                 shapes[si].norm, 2.5f);
        int E = c.n_routed_experts, K = c.num_experts_per_tok;
        for (int trial = 0; trial < 1000; trial++) {
            float logits[64], bias[64], s[64], w[64];
            int idx[64], ref[64];
            for (int e = 0; e < E; e++) {
                logits[e] = 2.0f * rng_normal(&rng);
                bias[e] = trial % 2 ? 0.3f * rng_normal(&rng) : 0.0f;
            }
            moe_route_token(&c, logits, bias, s, idx, w);
            reference_route(&c, logits, bias, ref);
            double S = 0, sumw = 0;
            for (int k = 0; k < K; k++) {
                EXPECT(idx[k] == ref[k], "E=%d K=%d G=%d: trial %d: idx[%d] = %d, reference %d", E, K,
                       c.n_group, trial, k, idx[k], ref[k]);
                S += s[idx[k]];
                sumw += w[k];
            }
            for (int k = 0; k < K; k++) {
                double want = (c.norm_topk_prob ? s[idx[k]] / S : s[idx[k]]) * 2.5;
                EXPECT(fabs(w[k] - want) < 1e-5 * (1 + want), "trial %d: w[%d] = %.7g, expected %.7g",
                       trial, k, w[k], want);
            }
            if (c.norm_topk_prob)
                EXPECT(fabs(sumw - 2.5) < 1e-5, "weights sum to %.7g, not routed_scaling_factor 2.5", sumw);
        }
    }
}

// ==============================================================================================
// 2. moe_forward / moe_backward by finite differences
// ==============================================================================================
// A MoE-only tiny model (first_k_dense_replace 0, one layer) supplies the weights and buffers.
// The loss is L = sum(out * R) (+ the balance loss when its alpha > 0) with out = moe_forward's
// output for a fixed random input, so dL/dout = R. moe_backward's gradients of the input, the
// router weight and the experts' weights are compared with central differences. A sample whose
// +eps or -eps forward routes any token differently is skipped: there L jumps.

typedef struct {
    Model m;
    int N, D, E, K;
    float *inp, *out, *R;
    int *route;  // the base routing (N*K)
} MoeCase;

static void moe_case_init_sized(MoeCase *mc, float alpha, float r_scale, int B, int T) {
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 1;
    c.first_k_dense_replace = 0;
    c.initializer_range = 0.1f;
    EXPECT(model_create(&mc->m, &c, err) == 0, "%s", err);
    model_init_random(&mc->m, 5);
    EXPECT(model_alloc_training(&mc->m, B, T, err) == 0, "%s", err);
    mc->m.balance_alpha = alpha;
    mc->N = B * T;
    mc->D = c.hidden_size;
    mc->E = c.n_routed_experts;
    mc->K = c.num_experts_per_tok;
    Rng rng;
    rng_seed(&rng, 6);
    float *bias = mc->m.p.layers[0].router_bias;
    for (int e = 0; e < mc->E; e++) bias[e] = 0.05f * rng_normal(&rng);
    size_t nd = (size_t)mc->N * mc->D;
    mc->inp = malloc(sizeof(float) * nd);
    mc->out = malloc(sizeof(float) * nd);
    mc->R = malloc(sizeof(float) * nd);
    mc->route = malloc(sizeof(int) * mc->N * mc->K);
    for (size_t i = 0; i < nd; i++) mc->inp[i] = rng_normal(&rng);
    for (size_t i = 0; i < nd; i++) mc->R[i] = r_scale * rng_normal(&rng);
}

static void moe_case_init(MoeCase *mc, float alpha, float r_scale) {
    moe_case_init_sized(mc, alpha, r_scale, 2, 8);
}

static void moe_case_free(MoeCase *mc) {
    free(mc->inp);
    free(mc->out);
    free(mc->R);
    free(mc->route);
    model_free(&mc->m);
}

// L in double; the balance loss is what moe_forward adds to m.balance_loss.
static double moe_loss(MoeCase *mc) {
    size_t nd = (size_t)mc->N * mc->D;
    memset(mc->out, 0, sizeof(float) * nd);
    mc->m.balance_loss = 0.0f;
    moe_forward(&mc->m, 0, &mc->m.acts.layers[0], mc->inp, mc->out, mc->N);
    double L = 0.0;
    for (size_t i = 0; i < nd; i++) L += (double)mc->out[i] * mc->R[i];
    return L + mc->m.balance_loss;
}

static int moe_same_route(const MoeCase *mc) {
    return memcmp(mc->route, mc->m.acts.layers[0].topk_idx, sizeof(int) * mc->N * mc->K) == 0;
}

typedef struct {
    int samples, skipped, nonzero;
    double worst;
    char what[160];
} FdStats;

// Central differences at eps and 2 eps combined (Richardson: the eps^2 error term cancels), on
// entry j of x, against analytic g. Routing flips in any of the four forwards: skipped.
static void moe_fd_sample(MoeCase *mc, float *x, size_t j, double g, const char *name, float eps,
                          double rtol, double atol, double nonzero, FdStats *st) {
    float x0 = x[j], xv[4];
    double lv[4];
    int ok = 1;
    for (int q = 0; q < 4; q++) {
        x[j] = x0 + (q < 2 ? 1.0f : 2.0f) * eps * (q % 2 ? -1.0f : 1.0f);
        xv[q] = x[j];
        lv[q] = moe_loss(mc);
        ok = ok && moe_same_route(mc);
    }
    x[j] = x0;
    st->samples++;
    if (!ok) {
        st->skipped++;
        return;
    }
    double d1 = (lv[0] - lv[1]) / ((double)xv[0] - xv[1]);
    double d2 = (lv[2] - lv[3]) / ((double)xv[2] - xv[3]);
    double fd = (4 * d1 - d2) / 3;
    if (fabs(g) > nonzero) st->nonzero++;
    double ratio = fabs(fd - g) / (atol + rtol * fmax(fabs(fd), fabs(g)));
    if (ratio > st->worst) {
        st->worst = ratio;
        snprintf(st->what, sizeof(st->what), "%s[%zu]: analytic %.7g, fd %.7g", name, j, g, fd);
    }
}

// alpha: the balance loss weight (0 = off). balance_only: R = 0, so that L is the balance loss
// alone and its gradient (small next to that of the outputs) is checked on its own; then only
// the input and the router have gradients.
static void moe_gradcheck(float alpha, int balance_only) {
    MoeCase mc;
    moe_case_init(&mc, alpha, balance_only ? 0.0f : 1.0f);
    Model *m = &mc.m;
    size_t nd = (size_t)mc.N * mc.D;
    // analytic: forward, then backward from dout = R into pre-filled buffers (backward adds)
    model_zero_grad(m);
    double L0 = moe_loss(&mc);
    memcpy(mc.route, m->acts.layers[0].topk_idx, sizeof(int) * mc.N * mc.K);
    float *dinp = malloc(sizeof(float) * nd);
    for (size_t i = 0; i < nd; i++) dinp[i] = 0.5f;
    moe_backward(m, 0, &m->acts.layers[0], mc.inp, mc.R, dinp, mc.N);
    for (size_t i = 0; i < nd; i++) dinp[i] -= 0.5f;
    if (alpha > 0) EXPECT(m->balance_loss > 0, "balance loss %g with alpha %g", m->balance_loss, alpha);
    (void)L0;
    // the bias has no gradient, and no other non-MoE tensor was touched
    const LayerParams *gl = &m->g.layers[0];
    for (int e = 0; e < mc.E; e++)
        EXPECT(gl->router_bias[e] == 0.0f, "e_score_correction_bias[%d] got gradient %g", e,
               gl->router_bias[e]);
    for (int i = 0; i < mc.D; i++)
        EXPECT(gl->input_layernorm[i] == 0.0f, "%s", "moe_backward wrote the gradient of a norm");

    const float eps = 1e-2f;
    const double rtol = 1e-2, atol = balance_only ? 5e-6 : 2e-5;
    const double nonzero = balance_only ? 1e-4 : 1e-3;
    FdStats st = {0};
    Rng rng;
    rng_seed(&rng, 7);
    // every input element
    for (size_t j = 0; j < nd; j++) moe_fd_sample(&mc, mc.inp, j, dinp[j], "dinp", eps, rtol, atol, nonzero, &st);
    // every router weight (this is the gradient that flows through the gate weights g_{k,t})
    size_t ne = (size_t)mc.E * mc.D;
    for (size_t j = 0; j < ne; j++)
        moe_fd_sample(&mc, m->p.layers[0].router, j, gl->router[j], "gate.weight", eps, rtol, atol, nonzero, &st);
    // experts: 8 random entries of each expert's gate, up and down matrices
    size_t mat = (size_t)m->cfg.moe_intermediate_size * mc.D;
    for (int e = 0; e < mc.E && !balance_only; e++) {
        float *P[3] = {m->p.layers[0].experts_gate + e * mat, m->p.layers[0].experts_up + e * mat,
                       m->p.layers[0].experts_down + e * mat};
        float *G[3] = {gl->experts_gate + e * mat, gl->experts_up + e * mat,
                       gl->experts_down + e * mat};
        const char *nm[3] = {"gate_proj", "up_proj", "down_proj"};
        for (int k = 0; k < 3; k++)
            for (int r = 0; r < 8; r++) {
                size_t j = rng_next(&rng) % mat;
                char name[64];
                snprintf(name, sizeof(name), "experts.%d.%s", e, nm[k]);
                moe_fd_sample(&mc, P[k], j, G[k][j], name, eps, rtol, atol, nonzero, &st);
            }
    }
    print_message("    moe gradient check (balance alpha %g%s): %d samples, %d skipped (routing flip), "
                  "worst %.2f x tolerance (%s)\n", alpha, balance_only ? ", balance loss only" : "",
                  st.samples, st.skipped, st.worst, st.what);
    EXPECT(st.skipped * 2 <= st.samples, "%d of %d samples skipped", st.skipped, st.samples);
    EXPECT(st.nonzero * 2 >= st.samples - st.skipped, "only %d of %d samples have |gradient| > %g",
           st.nonzero, st.samples - st.skipped, nonzero);
    EXPECT(st.worst <= 1.0, "gradient mismatch: %s (%.2f x tolerance)", st.what, st.worst);
    free(dinp);
    moe_case_free(&mc);
}

static void test_moe_gradcheck(void **state) { (void)state; moe_gradcheck(0.0f, 0); }

// The routed experts' work is cut finer with more threads (moe.c: pieces of an expert's rows,
// then its weight gradients in slices of their rows): the output, the input gradient and every
// gradient of the layer must be the same floats at 1 thread (whole experts) and at 4 (512 rows in
// pieces of 32: every expert cut).
static void moe_pass(MoeCase *mc, float *dinp) {
    size_t nd = (size_t)mc->N * mc->D;
    model_zero_grad(&mc->m);
    moe_loss(mc);
    memset(dinp, 0, sizeof(float) * nd);
    moe_backward(&mc->m, 0, &mc->m.acts.layers[0], mc->inp, mc->R, dinp, mc->N);
}

static void test_moe_same_floats_cut(void **state) {
    (void)state;
    MoeCase mc;
    moe_case_init_sized(&mc, 0.0f, 1.0f, 4, 64);
    size_t nd = (size_t)mc.N * mc.D;
    float *dinp1 = malloc(sizeof(float) * nd), *dinp4 = malloc(sizeof(float) * nd);
    float *out1 = malloc(sizeof(float) * nd), *grads1 = malloc(sizeof(float) * mc.m.n_params);
    int was = omp_get_max_threads();
    omp_set_num_threads(1);
    moe_pass(&mc, dinp1);
    memcpy(out1, mc.out, sizeof(float) * nd);
    memcpy(grads1, mc.m.grads, sizeof(float) * mc.m.n_params);
    omp_set_num_threads(4);
    moe_pass(&mc, dinp4);
    omp_set_num_threads(was);
    const int *start = mc.m.acts.layers[0].expert_start;
    int largest = 0;
    for (int e = 0; e < mc.E; e++)
        if (start[e + 1] - start[e] > largest) largest = start[e + 1] - start[e];
    EXPECT(largest > 32, "the largest expert has %d rows: no expert is cut at 4 threads", largest);
    EXPECT(memcmp(out1, mc.out, sizeof(float) * nd) == 0, "%s", "outputs differ at 4 threads");
    EXPECT(memcmp(dinp1, dinp4, sizeof(float) * nd) == 0, "%s",
           "input gradients differ at 4 threads");
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < mc.m.n_params; i++)
        if (memcmp(&grads1[i], &mc.m.grads[i], sizeof(float)) != 0 && differ++ == 0) first = i;
    EXPECT(differ == 0, "%zu gradient floats differ at 4 threads (first at %zu: %.9g, %.9g)",
           differ, first, grads1[first], mc.m.grads[first]);
    free(dinp1);
    free(dinp4);
    free(out1);
    free(grads1);
    moe_case_free(&mc);
}
static void test_moe_gradcheck_balance_loss(void **state) {
    (void)state;
    moe_gradcheck(0.3f, 1);  // the balance loss alone
    moe_gradcheck(0.3f, 0);  // together with the outputs
}

// The sequence-wise balance loss (DeepSeek-V3 eqs. 17-20) for one crafted sequence, by hand:
// T = 2 tokens, E = 4 experts, K = 1. f_i = E / (K T) * (tokens choosing i), s' = s / sum(s),
// P_i = mean over t of s'_{i,t}, L = alpha * sum_i f_i P_i.
static void test_balance_loss_by_hand(void **state) {
    (void)state;
    Config c = router_config(4, 1, 1, 1, 1, 1.0f);
    float scores[8] = {0.9f, 0.1f, 0.5f, 0.5f,   // token 0 chose expert 0
                       0.2f, 0.6f, 0.1f, 0.1f};  // token 1 chose expert 1
    int topk[2] = {0, 1};
    LayerActs a;
    memset(&a, 0, sizeof(a));
    a.scores = scores;
    a.topk_idx = topk;
    double f[4] = {2, 2, 0, 0};  // 4 / (1 * 2) * count
    double P[4] = {0};
    for (int t = 0; t < 2; t++) {
        double S = 0;
        for (int e = 0; e < 4; e++) S += scores[t * 4 + e];
        for (int e = 0; e < 4; e++) P[e] += scores[t * 4 + e] / S / 2;
    }
    double want = 0;
    for (int e = 0; e < 4; e++) want += f[e] * P[e];
    want *= 0.1;
    float got = moe_balance_loss(&c, &a, 1, 2, 1, 0.1f, NULL);
    EXPECT(fabs(got - want) < 1e-6, "balance loss %.7g, expected %.7g", got, want);
    // perfectly balanced choices and uniform scores: L = alpha * sum_i 1 * 1/E = alpha... times
    // E/E: f_i = 1 for all i and P_i = 1/E, so L = alpha.
    float flat[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    Config c2 = router_config(4, 2, 1, 1, 1, 1.0f);
    int topk2[4] = {0, 1, 2, 3};
    a.scores = flat;
    a.topk_idx = topk2;
    got = moe_balance_loss(&c2, &a, 1, 2, 1, 0.1f, NULL);
    EXPECT(fabs(got - 0.1) < 1e-6, "balanced: loss %.7g, expected alpha = 0.1", got);
}

// In a whole MoE model, after model_backward the router weight has a gradient and the bias has
// none (it is moved by moe_update_bias, never by the optimizer).
static void test_bias_gets_no_gradient(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 2;
    c.first_k_dense_replace = 0;
    Model m;
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    model_init_random(&m, 8);
    enum { B = 2, T = 8 };
    EXPECT(model_alloc_training(&m, B, T, err) == 0, "%s", err);
    int ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7 + 3) % c.vocab_size;
    float *dl = malloc(sizeof(float) * B * T * c.vocab_size);
    model_forward(&m, ids, B, T);
    cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, c.vocab_size, dl);
    model_zero_grad(&m);
    model_backward(&m, ids, dl);
    for (int l = 0; l < c.num_hidden_layers; l++) {
        double gw = 0;
        for (int i = 0; i < c.n_routed_experts * c.hidden_size; i++) gw += fabs(m.g.layers[l].router[i]);
        EXPECT(gw > 0, "layer %d: the router weight has no gradient", l);
        for (int e = 0; e < c.n_routed_experts; e++)
            EXPECT(m.g.layers[l].router_bias[e] == 0.0f, "layer %d: bias[%d] gradient %g", l, e,
                   m.g.layers[l].router_bias[e]);
    }
    free(dl);
    model_free(&m);
}

// ==============================================================================================
// 3. Auxiliary-loss-free balancing
// ==============================================================================================

// b_i += gamma * sign(mean load - load_i): +gamma for underloaded experts, -gamma for overloaded
// ones, 0 for exactly the mean; dense layers have no bias and are left alone.
static void test_update_bias(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 3;
    c.first_k_dense_replace = 1;  // layer 0 dense, layers 1 and 2 MoE
    Model m;
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    int E = c.n_routed_experts;
    EXPECT(E == 8, "tiny has %d experts, the test assumes 8", E);
    float b1[8] = {0.1f, -0.2f, 0.0f, 0.3f, 0.0f, 0.0f, 0.05f, -0.05f}, b2[8] = {0};
    memcpy(m.p.layers[1].router_bias, b1, sizeof(b1));
    memcpy(m.p.layers[2].router_bias, b2, sizeof(b2));
    long load0[8] = {100, 0, 0, 0, 0, 0, 0, 0};  // dense layer: must be ignored
    long load1[8] = {3, 5, 4, 4, 4, 4, 2, 6};      // mean 4
    long load2[8] = {0, 0, 0, 0, 0, 0, 0, 8};      // mean 1
    memcpy(m.expert_load + 0 * E, load0, sizeof(load0));
    memcpy(m.expert_load + 1 * E, load1, sizeof(load1));
    memcpy(m.expert_load + 2 * E, load2, sizeof(load2));
    float gamma = 0.01f;
    float sign1[8] = {+1, -1, 0, 0, 0, 0, +1, -1}, sign2[8] = {+1, +1, +1, +1, +1, +1, +1, -1};
    moe_update_bias(&m, gamma);
    for (int e = 0; e < E; e++) {
        float want1 = b1[e] + gamma * sign1[e], want2 = b2[e] + gamma * sign2[e];
        EXPECT(m.p.layers[1].router_bias[e] == want1, "layer 1 expert %d (load %ld, mean 4): bias %g, expected %g",
               e, load1[e], m.p.layers[1].router_bias[e], want1);
        EXPECT(m.p.layers[2].router_bias[e] == want2, "layer 2 expert %d (load %ld, mean 1): bias %g, expected %g",
               e, load2[e], m.p.layers[2].router_bias[e], want2);
    }
    // only the bias moved
    for (size_t i = 0; i < m.n_params; i++) {
        int in_bias = 0;
        for (int l = 1; l < 3; l++) {
            size_t off = (size_t)(m.p.layers[l].router_bias - m.params);
            if (i >= off && i < off + (size_t)E) in_bias = 1;
        }
        if (!in_bias) EXPECT(m.params[i] == 0.0f, "parameter %zu changed to %g", i, m.params[i]);
    }
    moe_reset_load(&m);
    for (int i = 0; i < c.num_hidden_layers * E; i++)
        EXPECT(m.expert_load[i] == 0, "expert_load[%d] = %ld after moe_reset_load", i, m.expert_load[i]);
    model_free(&m);
}

// The closed loop: a router that sends most tokens to a few experts, then rounds of
// (forward, moe_update_bias, moe_reset_load) with the weights fixed. The bias alone must even
// out the load: the most loaded expert's share falls.
static void test_bias_balances_load(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 1;
    c.first_k_dense_replace = 0;
    c.n_group = 1;
    c.topk_group = 1;
    Model m;
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    model_init_random(&m, 9);
    int E = c.n_routed_experts, K = c.num_experts_per_tok, D = c.hidden_size;
    // skew: the router rows of experts 0 and 1 point along the mean input direction
    enum { B = 4, T = 16 };
    int N = B * T;
    EXPECT(model_alloc_training(&m, B, T, err) == 0, "%s", err);
    Rng rng;
    rng_seed(&rng, 10);
    float *inp = malloc(sizeof(float) * N * D), *out = malloc(sizeof(float) * N * D);
    for (int t = 0; t < N; t++)
        for (int i = 0; i < D; i++) inp[t * D + i] = 1.0f + rng_normal(&rng);
    float *router = m.p.layers[0].router;
    for (int e = 0; e < 2; e++)
        for (int i = 0; i < D; i++) router[e * D + i] += 0.1f;
    // rounds 0..299; the load of the last 100 rounds is summed per expert. The tokens here are
    // alike, so in any one round a few experts take most of them; what the bias achieves is
    // that over time every expert gets its share.
    long first_max = 0, total[64] = {0};
    for (int round = 0; round < 300; round++) {
        moe_reset_load(&m);
        memset(out, 0, sizeof(float) * N * D);
        moe_forward(&m, 0, &m.acts.layers[0], inp, out, N);
        if (round == 0)
            for (int e = 0; e < E; e++) if (m.expert_load[e] > first_max) first_max = m.expert_load[e];
        if (round >= 200)
            for (int e = 0; e < E; e++) total[e] += m.expert_load[e];
        moe_update_bias(&m, 0.01f);
    }
    long mean = 100L * N * K / E, last_max = 0, last_min = total[0];
    for (int e = 0; e < E; e++) {
        if (total[e] > last_max) last_max = total[e];
        if (total[e] < last_min) last_min = total[e];
    }
    print_message("    balancing: at first the busiest expert took %ld of %d pairs (fair share %d); "
                  "over rounds 200-299 the loads range %ld..%ld (fair share %ld)\n", first_max,
                  N * K, N * K / E, last_min, last_max, mean);
    EXPECT(first_max >= N * 3 / 4, "the skewed router is not skewed: max load %ld of %d", first_max, N * K);
    EXPECT(last_max <= mean * 3 / 2 && last_min >= mean / 2,
           "the bias did not balance the load: loads %ld..%ld, fair share %ld", last_min, last_max, mean);
    free(inp);
    free(out);
    model_free(&m);
}

// ==============================================================================================
// 4. Load statistics and the expert-sorted layout
// ==============================================================================================
// After a forward of N tokens every MoE layer has routed exactly N*K (token, expert) pairs;
// expert_load[l][e] counts those of expert e; the counting sort groups the pairs by expert,
// keeping token order inside each expert.
static void test_load_statistics(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 3;
    c.first_k_dense_replace = 1;
    c.initializer_range = 0.1f;
    Model m;
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    model_init_random(&m, 11);
    enum { B = 3, T = 7 };
    int N = B * T, E = c.n_routed_experts, K = c.num_experts_per_tok;
    EXPECT(model_alloc_training(&m, B, T, err) == 0, "%s", err);
    int ids[B * T];
    for (int i = 0; i < N; i++) ids[i] = (i * 13 + 5) % c.vocab_size;
    moe_reset_load(&m);
    model_forward(&m, ids, B, T);
    for (int l = 0; l < c.num_hidden_layers; l++) {
        long *load = m.expert_load + (size_t)l * E, sum = 0;
        for (int e = 0; e < E; e++) sum += load[e];
        if (l < c.first_k_dense_replace) {
            EXPECT(sum == 0, "dense layer %d has load %ld", l, sum);
            continue;
        }
        EXPECT(sum == (long)N * K, "layer %d: loads sum to %ld, expected N*K = %d", l, sum, N * K);
        LayerActs *a = &m.acts.layers[l];
        long count[64] = {0};
        for (int p = 0; p < N * K; p++) {
            int e = a->topk_idx[p];
            EXPECT(e >= 0 && e < E, "topk_idx[%d] = %d", p, e);
            count[e]++;
        }
        for (int t = 0; t < N; t++)
            for (int k = 1; k < K; k++)
                for (int j = 0; j < k; j++)
                    EXPECT(a->topk_idx[t * K + k] != a->topk_idx[t * K + j], "token %d chose expert %d twice",
                           t, a->topk_idx[t * K + k]);
        for (int e = 0; e < E; e++) {
            EXPECT(load[e] == count[e], "layer %d expert %d: load %ld, topk_idx says %ld", l, e, load[e], count[e]);
            EXPECT(a->expert_start[e + 1] - a->expert_start[e] == count[e], "expert_start of %d", e);
        }
        EXPECT(a->expert_start[0] == 0 && a->expert_start[E] == N * K, "expert_start [%d, %d]",
               a->expert_start[0], a->expert_start[E]);
        for (int p = 0; p < N * K; p++)
            EXPECT(a->slot_pair[a->slot_of[p]] == p, "slot_pair[slot_of[%d]] = %d", p, a->slot_pair[a->slot_of[p]]);
        for (int e = 0; e < E; e++)
            for (int row = a->expert_start[e]; row < a->expert_start[e + 1]; row++) {
                EXPECT(a->topk_idx[a->slot_pair[row]] == e, "row %d of expert %d holds a pair of expert %d",
                       row, e, a->topk_idx[a->slot_pair[row]]);
                if (row > a->expert_start[e])
                    EXPECT(a->slot_pair[row] > a->slot_pair[row - 1], "expert %d: pairs out of token order", e);
            }
    }
    // the counts accumulate until reset
    model_forward(&m, ids, B, T);
    for (int l = c.first_k_dense_replace; l < c.num_hidden_layers; l++) {
        long sum = 0;
        for (int e = 0; e < E; e++) sum += m.expert_load[(size_t)l * E + e];
        EXPECT(sum == 2L * N * K, "layer %d: after two forwards loads sum to %ld, expected %d", l, sum, 2 * N * K);
    }
    moe_reset_load(&m);
    for (int i = 0; i < c.num_hidden_layers * E; i++)
        EXPECT(m.expert_load[i] == 0, "expert_load[%d] = %ld after reset", i, m.expert_load[i]);
    model_free(&m);
}

// ./build/test_moe [PATTERN] runs the matching tests. One thread unless OMP_NUM_THREADS is set:
// see tests/test_r1.c (the thread count cannot change results; test_r1 checks that).
int main(int argc, char **argv) {
#ifdef _OPENMP
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
#endif
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_exact),
        cmocka_unit_test(test_route_bias_selects_not_weights),
        cmocka_unit_test(test_route_ties),
        cmocka_unit_test(test_route_all_experts),
        cmocka_unit_test(test_route_groups),
        cmocka_unit_test(test_route_no_norm),
        cmocka_unit_test(test_route_random),
        cmocka_unit_test(test_moe_gradcheck),
        cmocka_unit_test(test_moe_same_floats_cut),
        cmocka_unit_test(test_moe_gradcheck_balance_loss),
        cmocka_unit_test(test_balance_loss_by_hand),
        cmocka_unit_test(test_bias_gets_no_gradient),
        cmocka_unit_test(test_update_bias),
        cmocka_unit_test(test_bias_balances_load),
        cmocka_unit_test(test_load_statistics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
