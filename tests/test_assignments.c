// tests/test_assignments.c: the tests `make grade` runs, one group per assignment (the blocks
// between "// BEGIN ASSIGNMENT name" and "// END ASSIGNMENT name" in the sources, which
// `make handout` takes out). Each group checks its assignment on inputs of its own, against
// values computed by hand or by a plain double-precision formula written here, never through
// another assignment's code: a student who has done RoPE but not RMSNorm gets RoPE's points.
// tutorial/assignments.md states the conventions these tests expect.
//
// usage: build/test_assignments --list          the assignments and their points
//        build/test_assignments NAME            runs NAME's tests; prints "NAME: passed X of Y"
// An instructor's extra tests: make grade HIDDEN=path/to/extra_tests.c, a file that defines
// static tests and a table `static const GradedTest HIDDEN_TESTS[]` (the same shape as TESTS
// below), #included at the end of this file.
#include "tokenizer.c"
#include "r1.c"
#include "tasks.c"
#include "grpo.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                        \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

// |got - want| <= tol * max(1, |want|)
static void expect_close(double got, double want, double tol, const char *what) {
    double err = fabs(got - want), scale = fabs(want) > 1 ? fabs(want) : 1;
    EXPECT(err <= tol * scale, "%s: got %.9g, want %.9g", what, got, want);
}

// Deterministic "random" numbers in [-1, 1) (a small LCG: the tests need no RNG of the code).
static double lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / (double)(1ULL << 52) - 1.0;
}

static void fill(float *x, int n, uint64_t seed, double scale) {
    for (int i = 0; i < n; i++) x[i] = (float)(scale * lcg(&seed));
}

// ==============================================================================================
// rmsnorm_backward (kernels.c): finite differences of rmsnorm_forward (which is not an assignment)
// ==============================================================================================
// loss = sum(dout * rmsnorm(x)); its gradients with respect to x and w, by central differences
// in float with a step of 1e-2 on inputs of order 1.
static double rms_loss(const float *x, const float *w, const float *dout, int N, int C) {
    float out[64], rstd[8];
    rmsnorm_forward(out, rstd, x, C, w, N, C, 1e-6f);
    double l = 0.0;
    for (int i = 0; i < N * C; i++) l += (double)dout[i] * out[i];
    return l;
}

static void test_rmsnorm_backward_fd(void **state) {
    (void)state;
    enum { N = 3, C = 7 };
    float x[N * C], w[C], dout[N * C], out[N * C], rstd[N], dx[N * C], dw[C] = {0};
    fill(x, N * C, 1, 1.5), fill(w, C, 2, 1.0), fill(dout, N * C, 3, 1.0);
    for (int c = 0; c < C; c++) w[c] += 1.0f;
    rmsnorm_forward(out, rstd, x, C, w, N, C, 1e-6f);
    rmsnorm_backward(dx, dw, dout, x, C, w, rstd, N, C, 0);
    const float h = 1e-2f;
    for (int i = 0; i < N * C; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double up = rms_loss(x, w, dout, N, C);
        x[i] = keep - h;
        double down = rms_loss(x, w, dout, N, C);
        x[i] = keep;
        expect_close(dx[i], (up - down) / (2 * h), 2e-3, "dinp");
    }
    for (int c = 0; c < C; c++) {
        float keep = w[c];
        w[c] = keep + h;
        double up = rms_loss(x, w, dout, N, C);
        w[c] = keep - h;
        double down = rms_loss(x, w, dout, N, C);
        w[c] = keep;
        expect_close(dw[c], (up - down) / (2 * h), 2e-3, "dw");
    }
}

// By hand: one row x = (3, 4), w = (1, 1), eps 0: rms = sqrt(12.5), rstd = 1/sqrt(12.5);
// n = x rstd; with dout = (1, 0): dx = rstd (w dout - n mean(w dout n)) = rstd ((1,0) - n n_0/2).
// Also: accumulate = 1 adds to dinp, and dw adds to what it holds.
static void test_rmsnorm_backward_by_hand(void **state) {
    (void)state;
    float x[2] = {3, 4}, w[2] = {1, 1}, dout[2] = {1, 0}, out[2], rstd[1];
    rmsnorm_forward(out, rstd, x, 2, w, 1, 2, 0.0f);
    float dx[2] = {10, 20}, dw[2] = {1, 1};
    rmsnorm_backward(dx, dw, dout, x, 2, w, rstd, 1, 2, 1);
    double r = 1.0 / sqrt(12.5), n0 = 3 * r, n1 = 4 * r;
    expect_close(dx[0], 10 + r * (1 - n0 * n0 / 2), 1e-5, "dx[0] (accumulate)");
    expect_close(dx[1], 20 + r * (0 - n1 * n0 / 2), 1e-5, "dx[1] (accumulate)");
    expect_close(dw[0], 1 + n0, 1e-5, "dw[0] (adds)");
    expect_close(dw[1], 1 + 0, 1e-5, "dw[1] (adds)");
}

// ==============================================================================================
// rope (kernels.c): rope_rotate against the rotation written out
// ==============================================================================================
static void test_rope_interleaved(void **state) {
    (void)state;
    float v[4] = {1, 2, 3, 4}, cs[2] = {(float)cos(0.5), (float)cos(0.25)},
          sn[2] = {(float)sin(0.5), (float)sin(0.25)};
    rope_rotate(v, 4, cs, sn, 1.0f, 1);  // pairs (0,1) by 0.5 rad, (2,3) by 0.25 rad
    expect_close(v[0], 1 * cos(0.5) - 2 * sin(0.5), 1e-6, "v[0]");
    expect_close(v[1], 2 * cos(0.5) + 1 * sin(0.5), 1e-6, "v[1]");
    expect_close(v[2], 3 * cos(0.25) - 4 * sin(0.25), 1e-6, "v[2]");
    expect_close(v[3], 4 * cos(0.25) + 3 * sin(0.25), 1e-6, "v[3]");
    rope_rotate(v, 4, cs, sn, -1.0f, 1);  // the transpose undoes it
    for (int i = 0; i < 4; i++) expect_close(v[i], i + 1, 1e-6, "inverse");
}

static void test_rope_halves(void **state) {
    (void)state;
    float v[4] = {1, 2, 3, 4}, cs[2] = {0.0f, 1.0f}, sn[2] = {1.0f, 0.0f};
    rope_rotate(v, 4, cs, sn, 1.0f, 0);  // pairs (0,2) by 90 degrees, (1,3) by 0
    expect_close(v[0], -3, 1e-7, "v[0]");
    expect_close(v[2], 1, 1e-7, "v[2]");
    expect_close(v[1], 2, 1e-7, "v[1]");
    expect_close(v[3], 4, 1e-7, "v[3]");
    float s2[2] = {2.0f, 2.0f}, z[2] = {0.0f, 0.0f}, u[4] = {1, 1, 1, 1};
    rope_rotate(u, 4, s2, z, 1.0f, 0);  // cos/sin carry YaRN's attention factor: it scales
    for (int i = 0; i < 4; i++) expect_close(u[i], 2, 1e-7, "scaled");
}

// ==============================================================================================
// swiglu_backward (kernels.c): against the chain rule written out in double
// ==============================================================================================
static double silu_d(double z) { return z / (1 + exp(-z)); }

static void test_swiglu_backward(void **state) {
    (void)state;
    enum { N = 2, D = 3, I = 4 };
    float x[N * D], Wg[I * D], Wu[I * D], Wd[D * I], dout[N * D];
    fill(x, N * D, 11, 1.0), fill(Wg, I * D, 12, 0.7), fill(Wu, I * D, 13, 0.7);
    fill(Wd, D * I, 14, 0.7), fill(dout, N * D, 15, 1.0);
    float out[N * D], g[N * I], u[N * I], h[N * I], dh[N * I], dgu[N * I];
    float dx[N * D], dWg[I * D] = {0}, dWu[I * D] = {0}, dWd[D * I] = {0};
    swiglu_forward(out, x, Wg, Wu, Wd, g, u, h, N, D, I, 0);
    swiglu_backward(dx, dWg, dWu, dWd, dout, x, Wg, Wu, Wd, g, u, h, N, D, I, dh, dgu, 0);
    double rdx[N * D] = {0}, rWg[I * D] = {0}, rWu[I * D] = {0}, rWd[D * I] = {0};
    double rdg[N * I], rdu[N * I];
    for (int t = 0; t < N; t++)
        for (int i = 0; i < I; i++) {
            double gi = 0, ui = 0, dhi = 0;
            for (int d = 0; d < D; d++) {
                gi += (double)x[t * D + d] * Wg[i * D + d];
                ui += (double)x[t * D + d] * Wu[i * D + d];
                dhi += (double)dout[t * D + d] * Wd[d * I + i];
            }
            double sg = 1 / (1 + exp(-gi)), hi = silu_d(gi) * ui;
            double dgi = dhi * ui * sg * (1 + gi * (1 - sg)), dui = dhi * silu_d(gi);
            rdg[t * I + i] = dgi, rdu[t * I + i] = dui;
            for (int d = 0; d < D; d++) {
                rdx[t * D + d] += dgi * Wg[i * D + d] + dui * Wu[i * D + d];
                rWg[i * D + d] += dgi * x[t * D + d];
                rWu[i * D + d] += dui * x[t * D + d];
                rWd[d * I + i] += dout[t * D + d] * hi;
            }
        }
    for (int i = 0; i < N * D; i++) expect_close(dx[i], rdx[i], 1e-5, "dx");
    for (int i = 0; i < I * D; i++) expect_close(dWg[i], rWg[i], 1e-5, "dWg");
    for (int i = 0; i < I * D; i++) expect_close(dWu[i], rWu[i], 1e-5, "dWu");
    for (int i = 0; i < D * I; i++) expect_close(dWd[i], rWd[i], 1e-5, "dWd");
    // Without weight gradients (all three NULL, as moe.c passes for the pieces of an expert it
    // has cut): the same dx, and the scratch left holding dg (dh_scratch) and du (dgu_scratch),
    // from which moe.c computes the weight gradients afterwards.
    float dx2[N * D], dg2[N * I], du2[N * I];
    swiglu_backward(dx2, NULL, NULL, NULL, dout, x, Wg, Wu, Wd, g, u, h, N, D, I, dg2, du2, 0);
    for (int i = 0; i < N * D; i++) expect_close(dx2[i], rdx[i], 1e-5, "dx (no dW)");
    for (int i = 0; i < N * I; i++) expect_close(dg2[i], rdg[i], 1e-5, "dg left in dh_scratch");
    for (int i = 0; i < N * I; i++) expect_close(du2[i], rdu[i], 1e-5, "du left in dgu_scratch");
}

// ==============================================================================================
// naive_mla_attention (r1.c): attention_forward_head_loops on a hand-made layer
// ==============================================================================================
// H = 2 heads, dn = 2, dr = 2, dv = 2, dc = 2, B = 1, T = 3; the reference in double:
// score_ij = (q_nope_i . k_nope_j + q_pe_i . k_pe_j) * scale for j <= i, softmax, O = P V.
static void test_naive_attention(void **state) {
    (void)state;
    enum { H = 2, dn = 2, dr = 2, dv = 2, dc = 2, T = 3 };
    Model m;
    memset(&m, 0, sizeof(m));
    m.cfg.num_attention_heads = H, m.cfg.qk_nope_head_dim = dn, m.cfg.qk_rope_head_dim = dr;
    m.cfg.v_head_dim = dv, m.cfg.kv_lora_rank = dc;
    m.attn_scale = 0.5f;
    float q[T * H * (dn + dr)], kv[T * H * (dn + dv)], kv_a[T * (dc + dr)];
    float att[H * T * T], att_out[T * H * dv];
    fill(q, T * H * (dn + dr), 21, 1.5), fill(kv, T * H * (dn + dv), 22, 1.5);
    fill(kv_a, T * (dc + dr), 23, 1.5);
    memset(att, 0, sizeof(att)), memset(att_out, 0, sizeof(att_out));
    LayerActs a;
    memset(&a, 0, sizeof(a));
    a.q = q, a.kv = kv, a.kv_a = kv_a, a.att = att, a.att_out = att_out;
    for (int h = 0; h < H; h++) attention_forward_head_loops(&m, &a, T, 0, h);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            double s[T], mx = -1e30, sum = 0;
            for (int j = 0; j <= i; j++) {
                const float *qi = q + (i * H + h) * (dn + dr), *kj = kv + (j * H + h) * (dn + dv);
                const float *pe = kv_a + j * (dc + dr) + dc;
                s[j] = 0;
                for (int d = 0; d < dn; d++) s[j] += (double)qi[d] * kj[d];
                for (int d = 0; d < dr; d++) s[j] += (double)qi[dn + d] * pe[d];
                s[j] *= 0.5;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j <= i; j++) sum += exp(s[j] - mx);
            for (int j = 0; j < T; j++) {
                double p = j <= i ? exp(s[j] - mx) / sum : 0.0;
                expect_close(att[(h * T + i) * T + j], p, 1e-5, "P (causal softmax)");
            }
            for (int e = 0; e < dv; e++) {
                double o = 0;
                for (int j = 0; j <= i; j++) o += exp(s[j] - mx) / sum * kv[(j * H + h) * (dn + dv) + dn + e];
                expect_close(att_out[(i * H + h) * dv + e], o, 1e-5, "att_out");
            }
        }
}

// ==============================================================================================
// moe_router (moe.c): moe_route_token and moe_update_bias by hand
// ==============================================================================================
static Config router_config(int E, int K, int G, int topk_group, int norm) {
    Config c;
    memset(&c, 0, sizeof(c));
    c.n_routed_experts = E, c.num_experts_per_tok = K, c.n_group = G, c.topk_group = topk_group;
    c.norm_topk_prob = norm, c.routed_scaling_factor = 2.5f;
    return c;
}

static double sigm(double z) { return 1 / (1 + exp(-z)); }

// 8 experts in 2 groups, keep 1, top-2. s = sigmoid(logits). Group 0's two best choices sum to
// less than group 1's, although expert 2 (group 0) has the second-best score of all: it is
// excluded, and the token goes to the best two of group 1. Weights use the unbiased s.
static void test_router_groups(void **state) {
    (void)state;
    Config c = router_config(8, 2, 2, 1, 1);
    float logits[8] = {0.10f, -0.20f, 0.90f, -0.10f, 0.80f, 0.00f, 1.00f, -0.30f};
    float bias[8] = {0}, s[8], w[2];
    int idx[2];
    moe_route_token(&c, logits, bias, s, idx, w);
    for (int e = 0; e < 8; e++) expect_close(s[e], sigm(logits[e]), 1e-6, "s = sigmoid(logit)");
    EXPECT(idx[0] == 6 && idx[1] == 4, "chose {%d, %d}, want {6, 4} (group 1: 1.00+0.80 > 0.90+0.10)",
           idx[0], idx[1]);
    double s6 = sigm(1.0), s4 = sigm(0.8);
    expect_close(w[0], 2.5 * s6 / (s6 + s4), 1e-5, "w[0]");
    expect_close(w[1], 2.5 * s4 / (s6 + s4), 1e-5, "w[1]");
}

// The bias moves the selection, not the weights; no groups (G = 1), no normalisation.
static void test_router_bias(void **state) {
    (void)state;
    Config c = router_config(4, 2, 1, 1, 0);
    float logits[4] = {0.5f, 0.4f, 0.3f, -2.0f}, bias[4] = {0.0f, -0.3f, 0.0f, 0.0f}, s[4], w[2];
    int idx[2];
    moe_route_token(&c, logits, bias, s, idx, w);
    EXPECT(idx[0] == 0 && idx[1] == 2, "chose {%d, %d}, want {0, 2}: expert 1's bias -0.3 drops it",
           idx[0], idx[1]);
    expect_close(w[0], 2.5 * sigm(0.5), 1e-5, "w[0] = scale * s (unbiased, not normalised)");
    expect_close(w[1], 2.5 * sigm(0.3), 1e-5, "w[1]");
}

// moe_update_bias: b_i += gamma * sign(mean load - load_i), for the MoE layers only.
static void test_bias_update(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    Model m;
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    int E = c.n_routed_experts, l = c.first_k_dense_replace;
    EXPECT(E == 8, "tiny has %d experts", E);
    long load[8] = {1, 0, 2, 3, 2, 2, 3, 3};  // mean 2
    for (int e = 0; e < E; e++) m.expert_load[(size_t)l * E + e] = load[e];
    for (int e = 0; e < E; e++) m.p.layers[l].router_bias[e] = 0.5f;
    moe_update_bias(&m, 0.01f);
    float want[8] = {0.51f, 0.51f, 0.5f, 0.49f, 0.5f, 0.5f, 0.49f, 0.49f};
    for (int e = 0; e < E; e++) expect_close(m.p.layers[l].router_bias[e], want[e], 1e-6, "bias");
    model_free(&m);
}

// ==============================================================================================
// cross_entropy (r1.c): cross_entropy_forward_backward by hand
// ==============================================================================================
// B = 1, T = 3, V = 2: positions 0 and 1 predict ids[1], ids[2]; position 2 predicts nothing.
// With logits (0, 0) at position 0 and (ln 3, 0) at position 1: losses ln 2 and ln(4/1) for
// target 1 of p = (3/4, 1/4). dlogits = (softmax - onehot) / count.
static void test_cross_entropy(void **state) {
    (void)state;
    float logits[6] = {0.0f, 0.0f, (float)log(3.0), 0.0f, 5.0f, -5.0f};
    int ids[3] = {0, 0, 1};
    float d[6];
    float loss = cross_entropy_forward_backward(logits, ids, NULL, 1, 3, 2, d);
    expect_close(loss, (log(2.0) + log(4.0)) / 2, 1e-6, "loss (mean over 2 positions)");
    expect_close(d[0], (0.5 - 1) / 2, 1e-6, "dlogits[0][0]");
    expect_close(d[1], 0.5 / 2, 1e-6, "dlogits[0][1]");
    expect_close(d[2], 0.75 / 2, 1e-6, "dlogits[1][0]");
    expect_close(d[3], (0.25 - 1) / 2, 1e-6, "dlogits[1][1]");
    expect_close(d[4], 0, 0, "last position: no target");
    expect_close(d[5], 0, 0, "last position: no target");
    float mask[3] = {1, 0, 1};  // mask[t+1]: position 0's target (ids[1]) does not count
    loss = cross_entropy_forward_backward(logits, ids, mask, 1, 3, 2, d);
    expect_close(loss, log(4.0), 1e-6, "masked loss");
    expect_close(d[0], 0, 0, "masked position");
    expect_close(d[3], 0.25 - 1, 1e-6, "dlogits[1][1], count 1");
}

// ==============================================================================================
// adamw (r1.c): adamw_step on the tiny model, two steps by hand
// ==============================================================================================
static void test_adamw(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    Model m;
    EXPECT(model_create(&m, &c, err) == 0, "%s", err);
    EXPECT(model_alloc_training(&m, 1, 2, err) == 0, "%s", err);
    int decayed = -1, plain = -1;  // a matrix (weight decay) and a norm weight (none)
    for (int i = 0; i < m.n_tensors; i++) {
        if (m.table[i].trainable && m.table[i].decay && decayed < 0) decayed = i;
        if (m.table[i].trainable && !m.table[i].decay && plain < 0) plain = i;
    }
    EXPECT(decayed >= 0 && plain >= 0, "no decayed/undecayed tensor in tiny");
    memset(m.grads, 0, m.n_params * sizeof(float));
    float *w1 = m.params + m.table[decayed].offset, *g1 = m.grads + m.table[decayed].offset;
    float *w2 = m.params + m.table[plain].offset, *g2 = m.grads + m.table[plain].offset;
    w1[0] = 0.5f, g1[0] = 3.0f, w2[0] = -1.0f, g2[0] = 4.0f;  // global norm 5
    AdamWConfig oc = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .grad_clip = 1.0f};
    float norm = adamw_step(&m, &oc);
    expect_close(norm, 5.0, 1e-6, "returned norm (before clipping)");
    // step 1: g clipped to g/5; m = 0.1 g, v = 0.05 g^2; mhat = g, vhat = g^2: update = sign(g)
    expect_close(w1[0], 0.5 - 0.1 * (1.0 + 0.1 * 0.5), 1e-5, "decayed weight, step 1");
    expect_close(w2[0], -1.0 - 0.1 * 1.0, 1e-5, "undecayed weight, step 1");
    double W1 = w1[0];
    g1[0] = 0.3f, g2[0] = 0.0f;  // norm 0.3 < 1: no clipping
    adamw_step(&m, &oc);
    double m1 = 0.9 * (0.1 * 0.6) + 0.1 * 0.3, v1 = 0.95 * (0.05 * 0.36) + 0.05 * 0.09;
    double mhat = m1 / (1 - 0.81), vhat = v1 / (1 - 0.9025);
    expect_close(w1[0], W1 - 0.1 * (mhat / (sqrt(vhat) + 1e-8) + 0.1 * W1), 1e-5, "step 2");
    EXPECT(m.adam_step == 2, "adam_step %ld, want 2", m.adam_step);
    model_free(&m);
}

// ==============================================================================================
// bpe_merge (tokenizer.c): training on chapter 2's text gives the merges traced there by hand
// ==============================================================================================
static void test_bpe_merges(void **state) {
    (void)state;
    const char *text = "low lower lowest low 42+42=84";
    Tokenizer t;
    char err[R1_ERR_LEN];
    EXPECT(tokenizer_train(&t, text, strlen(text), 1000, err) == 0, "%s", err);
    int want[7][2] = {{117, 120}, {265, 128}, {41, 266}, {267, 110}, {124, 125}, {268, 123}, {268, 269}};
    EXPECT(t.n_merges == 7, "%d merges, want 7", t.n_merges);
    for (int i = 0; i < 7; i++)
        EXPECT(t.merges[i][0] == want[i][0] && t.merges[i][1] == want[i][1],
               "merge %d: (%d, %d), want (%d, %d)", i, t.merges[i][0], t.merges[i][1], want[i][0],
               want[i][1]);
    tokenizer_free(&t);
}

// "aaaa": (a,a) occurs 3 times by position but a merge replaces left to right: "aa aa", count 3
// before, then (aa,aa) once. And "abab": (a,b) twice, then (ab,ab).
static void test_bpe_overlaps(void **state) {
    (void)state;
    Tokenizer t;
    char err[R1_ERR_LEN];
    EXPECT(tokenizer_train(&t, "aaaa", 4, 300, err) == 0, "%s", err);
    int a = TOK_N_SPECIAL + 'a';
    EXPECT(t.n_merges == 2, "aaaa: %d merges, want 2", t.n_merges);
    EXPECT(t.merges[0][0] == a && t.merges[0][1] == a, "aaaa: first merge (a,a)");
    EXPECT(t.merges[1][0] == TOK_FIRST_MERGE && t.merges[1][1] == TOK_FIRST_MERGE,
           "aaaa: second merge (aa,aa)");
    tokenizer_free(&t);
}

// ==============================================================================================
// grpo_advantages (grpo.c): by hand
// ==============================================================================================
static void test_advantages(void **state) {
    (void)state;
    double r[8] = {1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5};  // two groups of 4; the second all equal
    float adv[8];
    grpo_advantages(r, 2, 4, 1, adv);
    double sd = sqrt((4 * 0.25) / 3.0);  // sample std (divide by G - 1): 0.57735
    expect_close(adv[0], 0.5 / (sd + 1e-4), 1e-5, "A_0 = (1 - 0.5) / (std + 1e-4)");
    expect_close(adv[1], -0.5 / (sd + 1e-4), 1e-5, "A_1");
    for (int i = 4; i < 8; i++) expect_close(adv[i], 0, 0, "an all-equal group: 0");
    grpo_advantages(r, 2, 4, 0, adv);  // Dr. GRPO: r - mean, no std
    expect_close(adv[0], 0.5, 1e-6, "Dr. GRPO A_0");
    expect_close(adv[2], -0.5, 1e-6, "Dr. GRPO A_2");
}

// ==============================================================================================
// grpo_loss_k3 (grpo.c): one completion token, by hand
// ==============================================================================================
// B = 1, T = 2, V = 2: row 0's logits predict ids[1] = 0. logits (0, 0): pi = 1/2.
static float one_token_loss(float old_p, float ref_p, float A, float beta, float *dlogits,
                            GrpoStats *st) {
    float logits[4] = {0, 0, 0, 0}, mask[2] = {0, 1};
    int ids[2] = {1, 0};
    float old_lp[2] = {0, logf(old_p)}, ref_lp[2] = {0, logf(ref_p)}, adv[1] = {A};
    GrpoConfig gc;
    memset(&gc, 0, sizeof(gc));
    gc.variant = GRPO_PAPER, gc.beta = beta, gc.eps_low = 0.2f, gc.eps_high = 0.2f, gc.max_len = 1;
    return grpo_loss(logits, ids, mask, old_lp, ref_lp, adv, 1, 2, 2, &gc, dlogits, st);
}

static void test_grpo_loss_k3(void **state) {
    (void)state;
    float d[4];
    GrpoStats st;
    // rho = 1, pi_ref = pi/2: k3 = r - log r - 1 with r = 1/2 -> 1/2 + log 2 - 1
    float loss = one_token_loss(0.5f, 0.25f, 1.0f, 0.1f, d, &st);
    double k3 = 0.5 + log(2.0) - 1;
    expect_close(st.kl, k3, 1e-6, "k3 at r = 1/2");
    expect_close(loss, -(1.0 - 0.1 * k3), 1e-6, "loss = -(rho A - beta k3)");
    // g = w (dobj - beta dk3) = 1 - 0.1 (1 - 1/2); dloss/dz = g (softmax - onehot)
    double g = 1.0 - 0.1 * 0.5;
    expect_close(d[0], g * (0.5 - 1), 1e-6, "dlogits[target]");
    expect_close(d[1], g * 0.5, 1e-6, "dlogits[other]");
    // pi_ref = 2 pi: r = 2, k3 = 2 - log 2 - 1
    one_token_loss(0.5f, 1.0f, 0.0f, 0.1f, d, &st);
    expect_close(st.kl, 1 - log(2.0), 1e-6, "k3 at r = 2");
    // the clip: pi_old = 1/4 -> rho = 2 > 1.2; A > 0: the clipped branch, no policy gradient
    loss = one_token_loss(0.25f, 0.5f, 1.0f, 0.0f, d, &st);
    expect_close(loss, -1.2, 1e-6, "clipped objective 1.2 A");
    expect_close(d[0], 0, 1e-7, "clipped: no gradient");
    expect_close(st.clip_fraction, 1, 0, "clip_fraction");
    // A < 0 with rho = 2: min(2 A, 1.2 A) = 2 A, unclipped: the gradient flows (dobj = rho A)
    loss = one_token_loss(0.25f, 0.5f, -1.0f, 0.0f, d, &st);
    expect_close(loss, 2.0, 1e-6, "unclipped objective rho A");
    expect_close(d[0], -2.0 * (0.5 - 1), 1e-6, "unclipped gradient");
    // k3 is never negative, even when r is within rounding of 1
    one_token_loss(0.5f, 0.50000006f, 0.0f, 0.1f, d, &st);
    EXPECT(st.kl >= 0, "k3 = %g < 0 near r = 1", st.kl);
}

// ==============================================================================================
// verifier (tasks.c): arithmetic's exact check, through task_check
// ==============================================================================================
static int check(const char *example, const char *answer) {
    char err[R1_ERR_LEN];
    Json *ex = json_parse(example, strlen(example), err);
    EXPECT(ex != NULL, "%s", err);
    int ok = task_check(NULL, ex, answer);
    json_free(ex);
    return ok;
}

static void test_verifier(void **state) {
    (void)state;
    const char *add = "{\"task\":\"arithmetic\",\"a\":33,\"op\":\"+\",\"b\":39}";
    const char *mul = "{\"task\":\"arithmetic\",\"a\":531,\"op\":\"*\",\"b\":8}";
    const char *yes[] = {"72", " 0072 ", "\t72\n"}, *no[] = {"+72", "72.", "72 apples", "", "71",
                                                           "7 2", "72 72", "0x48", NULL};
    for (int i = 0; i < 3; i++) EXPECT(check(add, yes[i]) == 1, "'%s' should be right", yes[i]);
    for (int i = 0; no[i]; i++) EXPECT(check(add, no[i]) == 0, "'%s' should be wrong", no[i]);
    EXPECT(check(mul, "4248") == 1, "531 * 8 = 4248");
    EXPECT(check(mul, "4249") == 0, "531 * 8 != 4249");
}

// ==============================================================================================
// cons_at_k (grpo.c): majority_answer
// ==============================================================================================
static void test_majority(void **state) {
    (void)state;
    char a[] = "3", b[] = "5", c[] = "3", d[] = "5", e[] = "7";
    char *three[] = {a, b, c};
    EXPECT(majority_answer(three, 3) == 0, "{3, 5, 3}: index %d, want 0", majority_answer(three, 3));
    char *none_first[] = {NULL, b, d, e};
    EXPECT(majority_answer(none_first, 4) == 1, "{-, 5, 5, 7}: index %d, want 1",
           majority_answer(none_first, 4));
    char *tie[] = {e, b, a};
    EXPECT(majority_answer(tie, 3) == 0, "a tie goes to the answer seen first");
    char *nothing[] = {NULL, NULL};
    EXPECT(majority_answer(nothing, 2) == -1, "no answer: -1");
}

// ==============================================================================================
// The table: which tests grade which assignment, and its points
// ==============================================================================================
typedef struct {
    const char *assignment;
    struct CMUnitTest test;
} GradedTest;

static const struct {
    const char *name;
    int points;
} ASSIGNMENTS[] = {
    {"rmsnorm_backward", 10}, {"rope", 5},           {"naive_mla_attention", 10},
    {"moe_router", 10},       {"swiglu_backward", 10}, {"cross_entropy", 10},
    {"adamw", 10},            {"bpe_merge", 10},     {"grpo_advantages", 5},
    {"grpo_loss_k3", 10},     {"verifier", 5},       {"cons_at_k", 5},
};
#define N_ASSIGNMENTS ((int)(sizeof(ASSIGNMENTS) / sizeof(ASSIGNMENTS[0])))

static const GradedTest TESTS[] = {
    {"rmsnorm_backward", cmocka_unit_test(test_rmsnorm_backward_fd)},
    {"rmsnorm_backward", cmocka_unit_test(test_rmsnorm_backward_by_hand)},
    {"rope", cmocka_unit_test(test_rope_interleaved)},
    {"rope", cmocka_unit_test(test_rope_halves)},
    {"swiglu_backward", cmocka_unit_test(test_swiglu_backward)},
    {"naive_mla_attention", cmocka_unit_test(test_naive_attention)},
    {"moe_router", cmocka_unit_test(test_router_groups)},
    {"moe_router", cmocka_unit_test(test_router_bias)},
    {"moe_router", cmocka_unit_test(test_bias_update)},
    {"cross_entropy", cmocka_unit_test(test_cross_entropy)},
    {"adamw", cmocka_unit_test(test_adamw)},
    {"bpe_merge", cmocka_unit_test(test_bpe_merges)},
    {"bpe_merge", cmocka_unit_test(test_bpe_overlaps)},
    {"grpo_advantages", cmocka_unit_test(test_advantages)},
    {"grpo_loss_k3", cmocka_unit_test(test_grpo_loss_k3)},
    {"verifier", cmocka_unit_test(test_verifier)},
    {"cons_at_k", cmocka_unit_test(test_majority)},
};

#ifdef HIDDEN
#include HIDDEN  // the instructor's tests: static const GradedTest HIDDEN_TESTS[] = {...};
#define N_HIDDEN ((int)(sizeof(HIDDEN_TESTS) / sizeof(HIDDEN_TESTS[0])))
#else
static const GradedTest *HIDDEN_TESTS = NULL;
#define N_HIDDEN 0
#endif

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < N_ASSIGNMENTS; i++)
            printf("%s %d\n", ASSIGNMENTS[i].name, ASSIGNMENTS[i].points);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_assignments --list | NAME\n");
        return 2;
    }
    int n = (int)(sizeof(TESTS) / sizeof(TESTS[0]));
    struct CMUnitTest *group = calloc((size_t)(n + N_HIDDEN), sizeof(*group));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(TESTS[i].assignment, argv[1]) == 0) group[k++] = TESTS[i].test;
    for (int i = 0; i < N_HIDDEN; i++)
        if (strcmp(HIDDEN_TESTS[i].assignment, argv[1]) == 0) group[k++] = HIDDEN_TESTS[i].test;
    if (k == 0) {
        fprintf(stderr, "test_assignments: no tests for '%s' (--list lists them)\n", argv[1]);
        return 2;
    }
    int failed = _cmocka_run_group_tests(argv[1], group, (size_t)k, NULL, NULL);
    printf("%s: passed %d of %d\n", argv[1], k - failed, k);
    free(group);
    return 0;
}
