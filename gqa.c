// gqa.c: grouped-query attention, the attention of the Qwen2 and Llama models that DeepSeek-R1
// distils into (R1 §2.4: Qwen2.5-Math-1.5B ... Llama-3.3-70B-Instruct). Its own file because it
// is a second attention, beside r1.c's MLA, that the block picks by the config's architecture
// (model_type "qwen2" or "llama"); everything else of those models (RMSNorm, the SwiGLU MLP,
// the embedding and lm_head) is what r1.c and kernels.c already have.
//
// Grouped-query attention (Ainslie et al. 2023, "GQA"): H query heads share Hkv key/value heads,
// query head h reading kv head h / (H / Hkv). Hkv = H is ordinary multi-head attention, Hkv = 1
// multi-query attention. The KV cache keeps 2 * Hkv * hd floats per token and layer: the whole
// keys and values, where MLA keeps a latent of dc + dr (r1.c, section 7).
//
//   q (N, H, hd)   = ln1 W_q^T (+ b_q)      then RoPE on every head
//   k (N, Hkv, hd) = ln1 W_k^T (+ b_k)      then RoPE on every head
//   v (N, Hkv, hd) = ln1 W_v^T (+ b_v)
//   o_h = softmax(q_h k_g^T / sqrt(hd), causal) v_g,   g = h / (H / Hkv)
//
// RoPE here is the "rotate half" form of transformers' Qwen2 and Llama: dimension i of a head
// turns with dimension i + hd/2 (kernels.c's rope_rotate with interleave 0) by the angle
// pos * theta^(-2i/hd) (Su et al. 2021, RoFormer eq. 34). The biases (Qwen2 only) sit before
// RoPE, so the rotation sees q + b_q.
//
// Contents: 1. biases and RoPE on rows, 2. forward, 3. backward, 4. decoding with the K/V cache.
// Below it: kernels.c (the products, softmax, rope_rotate), formats.c (xcalloc). Above it: r1.c,
// whose block calls gqa_forward / gqa_backward / gqa_decode_rows when is_gqa(config).
#include "r1.h"

#include <stdlib.h>
#include <string.h>

// ==============================================================================================
// 1. Biases and RoPE on rows
// ==============================================================================================

// x (N, W) += bias (W): the bias of a projection, added to every row.
static void bias_forward(float *x, const float *bias, int N, int W) {
    for (int t = 0; t < N; t++)
        for (int j = 0; j < W; j++) x[(size_t)t * W + j] += bias[j];
}

// dbias (W) += sum over the N rows of dout (N, W), each column summed in row order by one thread,
// going on from what dbias holds: a batch taken in parts (grpo_update's micro-batches) adds the
// same floats in the same order as the whole batch at once.
static void bias_backward(float *dbias, const float *dout, int N, int W) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < W; j++) {
        float sum = dbias[j];
        for (int t = 0; t < N; t++) sum += dout[(size_t)t * W + j];
        dbias[j] = sum;
    }
}

// RoPE (sign +1) or its transpose (sign -1, for the backward) on every head of rows (N, heads,
// hd): token t sits at position t % T.
static void gqa_rope_rows(const Model *m, float *x, int N, int T, int heads, float sign) {
    int hd = m->cfg.head_dim, half = hd / 2;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        int pos = t % T;
        for (int h = 0; h < heads; h++)
            rope_rotate(x + ((size_t)t * heads + h) * hd, hd, m->rope_cos + (size_t)pos * half,
                        m->rope_sin + (size_t)pos * half, sign, 0);
    }
}

// ==============================================================================================
// 2. Forward: the training path, one (batch, query head) at a time on the causal products
// ==============================================================================================

// Room one thread needs for matmul_causal's packed operand: a (hd, T) or a (T, hd).
static size_t gqa_pack_floats(const Config *c, int T) {
    size_t kt = causal_pack_floats(c->head_dim, T), tk = causal_pack_floats(T, c->head_dim);
    return kt > tk ? kt : tk;
}

// Causal attention of query head h of sequence b, read in place:
//   Q (T, hd) rows H*hd apart; K, V (T, hd) of kv head g, rows Hkv*hd apart; O into att_out.
//   S = Q K^T * scale,  P = softmax over j <= i,  O = P V
static void gqa_forward_head(const Model *m, LayerActs *a, int T, int b, int h, float *pack) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    int g = h / (H / Hkv);
    size_t qs = (size_t)H * hd, ks = (size_t)Hkv * hd;  // row strides
    const float *Q = a->q + (size_t)b * T * qs + (size_t)h * hd;
    const float *K = a->k + (size_t)b * T * ks + (size_t)g * hd;
    const float *V = a->v + (size_t)b * T * ks + (size_t)g * hd;
    float *O = a->att_out + (size_t)b * T * qs + (size_t)h * hd;
    float *P = a->att + ((size_t)b * H + h) * T * T;
    // S (T,T) = Q K^T: B = K^T, b(d, j) = K[j*ks + d]
    matmul_causal(P, T, Q, qs, 1, K, 1, ks, T, hd, T, CAUSAL_OUT_LOWER, 0, pack);
    for (int i = 0; i < T; i++) {
        float *p = P + (size_t)i * T;
        for (int j = 0; j <= i; j++) p[j] *= m->attn_scale;
        softmax_inplace(p, i + 1);
        for (int j = i + 1; j < causal_read_end(i, T); j++) p[j] = 0.0f;  // masked: P = 0
    }
    matmul_causal(O, qs, P, T, 1, V, ks, 1, T, T, hd, CAUSAL_K_UPTO_ROW, 0, pack);  // O = P V
}

void gqa_forward(Model *m, const LayerParams *lp, LayerActs *a, int B, int T) {
    const Config *c = &m->cfg;
    int N = B * T, D = c->hidden_size, H = c->num_attention_heads;
    int Hkv = c->num_key_value_heads, hd = c->head_dim;
    double t = now_seconds();  // the projections' time, then the heads' (step_part)
    matmul_forward(a->q, a->ln1, lp->q_b_proj, N, D, H * hd, 0);
    matmul_forward(a->k, a->ln1, lp->k_proj, N, D, Hkv * hd, 0);
    matmul_forward(a->v, a->ln1, lp->v_proj, N, D, Hkv * hd, 0);
    if (c->attention_bias) {
        bias_forward(a->q, lp->q_bias, N, H * hd);
        bias_forward(a->k, lp->k_bias, N, Hkv * hd);
        bias_forward(a->v, lp->v_bias, N, Hkv * hd);
    }
    gqa_rope_rows(m, a->q, N, T, H, 1.0f);
    gqa_rope_rows(m, a->k, N, T, Hkv, 1.0f);
    t = step_part(m, 0, PART_ATTN_PROJ, t);
#pragma omp parallel
    {
        float *pack = xcalloc(gqa_pack_floats(c, T), sizeof(float));  // this thread's
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) gqa_forward_head(m, a, T, b, h, pack);
        free(pack);
    }
    step_part(m, 0, PART_ATTN_HEADS, t);
}

// ==============================================================================================
// 3. Backward
// ==============================================================================================
// Per query head h (kv head g):
//   dP = dO V^T,  dS = P * (dP - rowsum(P * dP)) * scale,  dQ = dS K,
//   dV_g += P^T dO,  dK_g += dS^T Q
// The H / Hkv query heads of one group all add into the same dK_g, dV_g, so one thread takes a
// whole group (b, g) and its heads in order h = g*G .. g*G + G-1: no two threads write the same
// float, and every sum has one order whatever the thread count.
static void gqa_backward_group(const Model *m, const LayerActs *a, const float *datt_out,
                               float *dq, float *dk, float *dv, float *dP, float *pack, int T,
                               int b, int g) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    int G = H / Hkv;
    size_t qs = (size_t)H * hd, ks = (size_t)Hkv * hd;
    const float *K = a->k + (size_t)b * T * ks + (size_t)g * hd;
    const float *V = a->v + (size_t)b * T * ks + (size_t)g * hd;
    float *dK = dk + (size_t)b * T * ks + (size_t)g * hd;
    float *dV = dv + (size_t)b * T * ks + (size_t)g * hd;
    for (int h = g * G; h < (g + 1) * G; h++) {
        int first = h == g * G;  // the group's first head writes dK_g, dV_g; the others add
        const float *P = a->att + ((size_t)b * H + h) * T * T;
        const float *Q = a->q + (size_t)b * T * qs + (size_t)h * hd;
        const float *dO = datt_out + (size_t)b * T * qs + (size_t)h * hd;
        float *dQ = dq + (size_t)b * T * qs + (size_t)h * hd;
        matmul_causal(dP, T, dO, qs, 1, V, 1, ks, T, hd, T, CAUSAL_OUT_LOWER, 0, pack);
        matmul_causal(dV, ks, P, 1, T, dO, qs, 1, T, T, hd, CAUSAL_K_FROM_ROW, !first, pack);
        for (int i = 0; i < T; i++) {  // softmax backward, in place: dP -> dS
            float *dp = dP + (size_t)i * T;
            const float *p = P + (size_t)i * T;
            float dot = dot_lanes(p, dp, i + 1);
            for (int j = 0; j <= i; j++) dp[j] = p[j] * (dp[j] - dot) * m->attn_scale;
            for (int j = i + 1; j < causal_read_end(i, T); j++) dp[j] = 0.0f;
        }
        matmul_causal(dQ, qs, dP, T, 1, K, ks, 1, T, T, hd, CAUSAL_K_UPTO_ROW, 0, pack);
        matmul_causal(dK, ks, dP, 1, T, Q, qs, 1, T, T, hd, CAUSAL_K_FROM_ROW, !first, pack);
    }
}

void gqa_backward(Model *m, const LayerParams *lp, const LayerParams *glp, LayerActs *a,
                  const float *datt_out, float *dln, int B, int T) {
    const Config *c = &m->cfg;
    Grads *s = &m->scratch;
    int N = B * T, D = c->hidden_size, H = c->num_attention_heads;
    int Hkv = c->num_key_value_heads, hd = c->head_dim;
    float *dq = s->t2, *dk = s->t3, *dv = s->t4;  // (N, H*hd), (N, Hkv*hd), (N, Hkv*hd)
    double t = now_seconds();  // the heads' time, then the projections' (step_part)
#pragma omp parallel
    {
        float *dP = xcalloc((size_t)T * T, sizeof(float));  // this thread's
        float *pack = xcalloc(gqa_pack_floats(c, T), sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < Hkv; g++)
                gqa_backward_group(m, a, datt_out, dq, dk, dv, dP, pack, T, b, g);
        free(dP);
        free(pack);
    }
    t = step_part(m, 1, PART_ATTN_HEADS, t);
    // through RoPE (its transpose), then the biases and the projections
    gqa_rope_rows(m, dq, N, T, H, -1.0f);
    gqa_rope_rows(m, dk, N, T, Hkv, -1.0f);
    grad_turn_wait(m);  // (turns: kernels.c, section 6)
    if (c->attention_bias) {
        bias_backward(glp->q_bias, dq, N, H * hd);
        bias_backward(glp->k_bias, dk, N, Hkv * hd);
        bias_backward(glp->v_bias, dv, N, Hkv * hd);
    }
    grad_turn_done(m);
    matmul_backward_turn(m, dln, glp->q_b_proj, dq, a->ln1, lp->q_b_proj, N, D, H * hd, 0);
    matmul_backward_turn(m, dln, glp->k_proj, dk, a->ln1, lp->k_proj, N, D, Hkv * hd, 1);
    matmul_backward_turn(m, dln, glp->v_proj, dv, a->ln1, lp->v_proj, N, D, Hkv * hd, 1);
    step_part(m, 1, PART_ATTN_PROJ, t);
}

// ==============================================================================================
// 4. Decoding with the K/V cache
// ==============================================================================================
// Each layer caches every position's rotated keys and values, Hkv heads of hd each: a new
// token computes its q, k, v, writes k and v at its position, and attends over the cache.

// Query heads g*G .. g*G+G-1 (the G that share key/value head g) of one row at position pos of
// layer l: q (H*hd) with RoPE not yet applied, the results into o (H*hd).
static void gqa_attend_group(const Model *m, struct DecodeState *s, int l, int pos, int g,
                             float *q, float *o) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    int G = H / Hkv, half = hd / 2, n = pos + 1;
    size_t ks = (size_t)Hkv * hd;
    const float *cosr = m->rope_cos + (size_t)pos * half, *sinr = m->rope_sin + (size_t)pos * half;
    const float *kg = s->k + (size_t)l * s->max_T * ks + (size_t)g * hd;  // (n, hd), stride ks
    const float *vg = s->v + (size_t)l * s->max_T * ks + (size_t)g * hd;
    const float scale = m->attn_scale;  // a local: the loop below then needs no reload per j
    for (int h = g * G; h < (g + 1) * G; h++) {
        float *qh = q + (size_t)h * hd, *p = s->att + (size_t)h * s->max_T;
        rope_rotate(qh, hd, cosr, sinr, 1.0f, 0);
        dot_lanes_rows(p, qh, kg, ks, hd, n);  // p[j] = q . k_j (dot_lanes)
        for (int j = 0; j < n; j++) p[j] *= scale;
        softmax_inplace(p, n);
    }
    // o_h = sum_j p_j v_j for the G heads, which read the same values: one pass over them
    weighted_row_sums(o + (size_t)g * G * hd, hd, s->att + (size_t)g * G * s->max_T, s->max_T, G,
                      vg, ks, n, hd);
}

// One row's attention at position pos of layer l: q (H*hd), k and v (Hkv*hd) are its
// projections (biases added, RoPE not yet applied); the result goes to o (H*hd). The key/value
// heads in parallel only when they are worth waking a thread for (TEAM_MIN_WORK, r1.h; never in
// the student presets), otherwise as plain code.
static void gqa_decode_attend(const Model *m, struct DecodeState *s, int l, int pos, float *q,
                              const float *k, const float *v, float *o) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    int half = hd / 2;
    size_t ks = (size_t)Hkv * hd;
    const float *cosr = m->rope_cos + (size_t)pos * half, *sinr = m->rope_sin + (size_t)pos * half;
    float *cache_k = s->k + (size_t)l * s->max_T * ks, *cache_v = s->v + (size_t)l * s->max_T * ks;
    memcpy(cache_k + (size_t)pos * ks, k, ks * sizeof(float));
    memcpy(cache_v + (size_t)pos * ks, v, ks * sizeof(float));
    for (int g = 0; g < Hkv; g++)
        rope_rotate(cache_k + (size_t)pos * ks + (size_t)g * hd, hd, cosr, sinr, 1.0f, 0);
    if ((long)H * (pos + 1) * 2 * hd >= TEAM_MIN_WORK) {
#pragma omp parallel for schedule(static)
        for (int g = 0; g < Hkv; g++) gqa_attend_group(m, s, l, pos, g, q, o);
    } else {
        for (int g = 0; g < Hkv; g++) gqa_attend_group(m, s, l, pos, g, q, o);
    }
}

void gqa_decode_rows(const Model *m, const LayerParams *lp, struct DecodeState *const *s,
                     DecodeBatch *b, int l, const int *pos, int n, int alone) {
    const Config *c = &m->cfg;
    int D = c->hidden_size, H = c->num_attention_heads, hd = c->head_dim;
    int qw = H * hd, kw = c->num_key_value_heads * hd;
    float *k = b->kv_a, *v = b->kv_a + (size_t)n * kw;  // (n, kw) each
    linear_rows(b->q, b->xb, lp->q_b_proj, decode_wt(b, lp->q_b_proj), n, D, qw, alone, b->yt);
    linear_rows(k, b->xb, lp->k_proj, decode_wt(b, lp->k_proj), n, D, kw, alone, b->yt);
    linear_rows(v, b->xb, lp->v_proj, decode_wt(b, lp->v_proj), n, D, kw, alone, b->yt);
    if (c->attention_bias) {
        bias_forward(b->q, lp->q_bias, n, qw);
        bias_forward(k, lp->k_bias, n, kw);
        bias_forward(v, lp->v_bias, n, kw);
    }
    for (int i = 0; i < n; i++)
        gqa_decode_attend(m, s[i], l, pos[i], b->q + (size_t)i * qw, k + (size_t)i * kw,
                          v + (size_t)i * kw, b->o + (size_t)i * qw);
}
