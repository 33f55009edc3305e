// moe.c: DeepSeekMoE (DeepSeek-V3 §2.1.2, eqs. 12-16; transformers' DeepseekV3MoE).
//
//   h'_t = h_t + sum_{i<N_s} FFN_i^(s)(h_t) + sum_{i<N_r} g_{i,t} FFN_i^(r)(h_t)      (eq. 12)
//   s_{i,t} = sigmoid(u_t . e_i)                                                       (eq. 15)
//   g'_{i,t} = s_{i,t} if s_{i,t} + b_i is in the top K_r (within the kept groups), else 0 (16)
//   g_{i,t} = g'_{i,t} / sum_j g'_{j,t}   (norm_topk_prob), then * routed_scaling_factor (13)
//
// The shared experts are an ordinary SwiGLU MLP and are run by block_forward in r1.c; this file
// holds the router and the routed experts. Tokens are sorted by expert (a counting sort in token
// order) so that each expert runs one matmul over exactly the tokens routed to it: cost follows
// the activated parameters, not the total.
#include "r1.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------------------------
// Router
// ----------------------------------------------------------------------------------------------

// Index of the largest value among allowed entries; ties go to the lowest index.
static int argmax_allowed(const float *v, const unsigned char *allowed, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

// logits (E) -> s (E) sigmoid scores; idx (K), w (K): the chosen experts and their weights.
// The bias b_i (e_score_correction_bias) is added for SELECTION only; w uses the unbiased s.
void moe_route_token(const Config *c, const float *logits, const float *bias, float *s,
                     int *idx, float *w) {
    // BEGIN ASSIGNMENT moe_router
    // handout: for (int e = 0; e < c->n_routed_experts; e++) s[e] = 0.0f;
    // handout: for (int k = 0; k < c->num_experts_per_tok; k++) idx[k] = k, w[k] = 0.0f;
    // handout: (void)logits, (void)bias, (void)argmax_allowed;
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    int G = c->n_group, per_group = E / G;
    float choice[E];            // s + b: the selection score
    unsigned char allowed[E];   // experts still eligible
    for (int e = 0; e < E; e++) {
        s[e] = sigmoidf(logits[e]);
        choice[e] = s[e] + bias[e];
        allowed[e] = 1;
    }
    if (G > 1) {
        // group-limited routing: score each group by the sum of its two best choices, keep the
        // topk_group best groups. Experts of the other groups are excluded outright (filled
        // with -inf before the top-k, as in DeepSeek's inference code and transformers 5.17;
        // some older transformers versions filled 0.0, which differs when a kept expert's
        // biased score is negative: tests/fixtures/negbias checks this).
        float group_score[G];
        unsigned char group_ok[G], kept[G];
        for (int g = 0; g < G; g++) {
            const float *cg = choice + g * per_group;
            float best = -INFINITY, second = -INFINITY;
            for (int i = 0; i < per_group; i++) {
                if (cg[i] > best) { second = best; best = cg[i]; }
                else if (cg[i] > second) second = cg[i];
            }
            group_score[g] = best + second;
            group_ok[g] = 1;
            kept[g] = 0;
        }
        for (int r = 0; r < c->topk_group; r++) {
            int g = argmax_allowed(group_score, group_ok, G);
            kept[g] = 1;
            group_ok[g] = 0;
        }
        for (int e = 0; e < E; e++) allowed[e] = kept[e / per_group];
    }
    // top-K experts by choice among the allowed ones
    float sum = 0.0f;
    for (int k = 0; k < K; k++) {
        int e = argmax_allowed(choice, allowed, E);
        allowed[e] = 0;
        idx[k] = e;
        w[k] = s[e];
        sum += s[e];
    }
    for (int k = 0; k < K; k++) {
        if (c->norm_topk_prob) w[k] /= sum + 1e-20f;
        w[k] *= c->routed_scaling_factor;
    }
    // END ASSIGNMENT moe_router
}

// ----------------------------------------------------------------------------------------------
// Forward
// ----------------------------------------------------------------------------------------------

// Sorts the (token, k) pairs by expert, keeping token order inside each expert (counting sort).
static void sort_by_expert(const Config *c, LayerActs *a, int N) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    int *start = a->expert_start;
    memset(start, 0, (size_t)(E + 1) * sizeof(int));
    for (int p = 0; p < N * K; p++) start[a->topk_idx[p] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    int fill[E];
    for (int e = 0; e < E; e++) fill[e] = start[e];
    for (int p = 0; p < N * K; p++) {
        int row = fill[a->topk_idx[p]]++;
        a->slot_of[p] = row;
        a->slot_pair[row] = p;
    }
}

// The experts in the order the threads take them: most rows first (ties in index order), so
// the last ones handed out are the smallest and the threads finish close together (longest
// processing time first; with two threads and experts of 300 to 900 rows, taking them in index
// order could leave one thread idle for a whole large expert).
static void experts_by_rows(const LayerActs *a, int E, int *order) {
    const int *start = a->expert_start;
    for (int i = 0; i < E; i++) {  // insertion sort: E is small
        int e = i, rows = start[e + 1] - start[e], j = i;
        for (; j > 0 && start[order[j - 1] + 1] - start[order[j - 1]] < rows; j--)
            order[j] = order[j - 1];
        order[j] = e;
    }
}

// ----------------------------------------------------------------------------------------------
// The routed experts' work, shared among the threads
// ----------------------------------------------------------------------------------------------
// Whole experts, one per thread at a time, keep at most E threads busy, and the largest expert
// sets the time: on the device's 16 threads the routed experts of the small preset (8 experts)
// ran only 2.4x (forward) and 3.7x (backward) faster than on 1 thread, 30% of the training step
// (tests/BENCH.md, stop 29). So the work is cut finer when there are threads to fill:
//   - forward, and the backward's input gradient: pieces of an expert's rows (each row's numbers
//     depend on its own row and the expert's weights only, so a piece computes the same floats);
//   - the backward's weight gradients: slices of a gradient's rows, each summing all the
//     expert's rows in order in one product, the same floats as the whole gradient at once.
// Each piece or slice runs on one thread (the products inside get a team of one). With few
// threads the cut is coarse: at 1 thread every piece is a whole expert, as before.

typedef struct { int e, r0, n; } ExpertPiece;  // rows [r0, r0+n) of expert e's (sorted) rows

// Rows per piece: about a quarter of one thread's share of all the rows, in whole row tiles of
// the product kernel (8), at least 32.
static int expert_piece_rows(int total_rows) {
    int rows = total_rows / (4 * openmp_threads());
    rows = (rows + 7) / 8 * 8;
    return rows < 32 ? 32 : rows;
}

// The experts' rows as pieces of at most `rows` rows, the most-rows expert first (its pieces
// handed out first). At most E + total/rows pieces. Returns the count; *cut (when not NULL):
// whether an expert was cut in more than one piece.
static int expert_pieces(const LayerActs *a, int E, int rows, ExpertPiece *pieces, int *cut) {
    int order[E], count = 0;
    experts_by_rows(a, E, order);
    int any_cut = 0;
    for (int i = 0; i < E; i++) {
        int e = order[i], r0 = a->expert_start[e], n = a->expert_start[e + 1] - r0;
        for (int done = 0; done < n; done += rows)
            pieces[count++] = (ExpertPiece){e, r0 + done, n - done < rows ? n - done : rows};
        if (n > rows) any_cut = 1;
    }
    if (cut) *cut = any_cut;
    return count;
}

// out (N,D) += sum_k w[t,k] Expert_{idx[t,k]}(inp[t]).  inp (N,D) is RMSNorm(x_mid).
void moe_forward(Model *m, int layer, LayerActs *a, const float *inp, float *out, int N) {
    const Config *c = &m->cfg;
    const LayerParams *lp = &m->p.layers[layer];
    int E = c->n_routed_experts, K = c->num_experts_per_tok, D = c->hidden_size;
    int Im = c->moe_intermediate_size;
    // 1. router: logits (N,E) = inp @ gate.weight^T, then per-token selection
    matmul_forward(a->scores, inp, lp->router, N, D, E, 0);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float logits[E];
        memcpy(logits, a->scores + (size_t)t * E, (size_t)E * sizeof(float));
        moe_route_token(c, logits, lp->router_bias, a->scores + (size_t)t * E,
                        a->topk_idx + (size_t)t * K, a->topk_w + (size_t)t * K);
    }
    if (m->balance_alpha > 0 && N == m->acts.B * m->acts.T)
        m->balance_loss +=
            moe_balance_loss(c, a, m->acts.B, m->acts.T, m->acts.B, m->balance_alpha, NULL);
    // 2. group the (token, k) pairs by expert and gather their inputs
    sort_by_expert(c, a, N);
    long *load = m->expert_load + (size_t)layer * E;
    for (int e = 0; e < E; e++) load[e] += a->expert_start[e + 1] - a->expert_start[e];
#pragma omp parallel for schedule(static)
    for (int row = 0; row < N * K; row++)
        memcpy(a->ex_in + (size_t)row * D, inp + (size_t)(a->slot_pair[row] / K) * D,
               (size_t)D * sizeof(float));
    // 3. each expert over its own rows, in pieces the threads share (above): the products of a
    // piece run on its thread alone, so a few hundred rows need no barriers. Every piece writes
    // only its own rows, and a product's floats never depend on the thread.
    int piece_rows = expert_piece_rows(N * K);
    ExpertPiece pieces[E + N * K / piece_rows + 1];
    int n_pieces = expert_pieces(a, E, piece_rows, pieces, NULL);
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n_pieces; i++) {
        int e = pieces[i].e, r0 = pieces[i].r0, n = pieces[i].n;
        size_t mat = (size_t)Im * D;
        swiglu_forward(a->ex_out + (size_t)r0 * D, a->ex_in + (size_t)r0 * D,
                       lp->experts_gate + e * mat, lp->experts_up + e * mat,
                       lp->experts_down + e * mat, a->ex_g + (size_t)r0 * Im,
                       a->ex_u + (size_t)r0 * Im, a->ex_h + (size_t)r0 * Im, n, D, Im, 0);
    }
    // 4. combine: out[t] += sum_k g_{k,t} * expert output, in k order
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float *o = out + (size_t)t * D;
        for (int k = 0; k < K; k++) {
            float g = a->topk_w[(size_t)t * K + k];
            const float *y = a->ex_out + (size_t)a->slot_of[(size_t)t * K + k] * D;
            for (int i = 0; i < D; i++) o[i] += g * y[i];
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Backward
// ----------------------------------------------------------------------------------------------
// The selection (which experts) is not differentiated; the gradient reaches the router through
// the weights g_{k,t} of the selected experts. The bias gets no gradient.

// dw (K): gradient of the final weights of one token -> dlogits (E) of its router row.
static void router_backward_token(const Config *c, const float *s, const int *idx,
                                  const float *dw, float *dlogits) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    float rsf = c->routed_scaling_factor;
    float ds[K];
    if (c->norm_topk_prob) {
        // w_k = rsf * s_k / S, S = sum_j s_j (+1e-20):  dL/ds_j = rsf (dw_j - sum_k dw_k w'_k) / S
        float S = 1e-20f, dot = 0.0f;
        for (int k = 0; k < K; k++) S += s[idx[k]];
        for (int k = 0; k < K; k++) dot += dw[k] * s[idx[k]];
        for (int k = 0; k < K; k++) ds[k] = rsf * (dw[k] / S - dot / (S * S));
    } else {
        for (int k = 0; k < K; k++) ds[k] = rsf * dw[k];
    }
    for (int e = 0; e < E; e++) dlogits[e] = 0.0f;
    for (int k = 0; k < K; k++) {
        float se = s[idx[k]];
        dlogits[idx[k]] += ds[k] * se * (1.0f - se);  // sigmoid'
    }
}

// The routed experts' weight gradients, each expert's from all its rows in token order:
//   d gate_e (Im,D) += dg^T x,   d up_e (Im,D) += du^T x,   d down_e (D,Im) += dy^T h
// with x = ex_in, h = ex_h, dy = dex_out (the gradient of the expert's output), dg and du the
// gradients of its gate and up outputs (left by swiglu_backward in dex3, dex4). A task is one
// slice of a gradient's rows (`slice` rows, whole row tiles): a product over all the expert's
// rows, the same floats as the whole gradient's product.
static void expert_weight_grads(const Config *c, const LayerActs *a, const LayerParams *glp,
                                const float *dy, const float *dg, const float *du) {
    int E = c->n_routed_experts, D = c->hidden_size, Im = c->moe_intermediate_size;
    int widest = D > Im ? D : Im;
    // slices per gradient: enough tasks (3 gradients per expert) for two per thread
    int per = (2 * openmp_threads() + 3 * E - 1) / (3 * E);
    int slice = ((widest + per - 1) / per + 7) / 8 * 8;
    int slices = (widest + slice - 1) / slice, tasks = E * 3 * slices;
    size_t mat = (size_t)Im * D;
    // the three gradients: (rows OC, columns C) += grad (n, OC)^T inp (n, C)
    float *const dWs[3] = {glp->experts_gate, glp->experts_up, glp->experts_down};
    const float *const grads[3] = {dg, du, dy}, *const inps[3] = {a->ex_in, a->ex_in, a->ex_h};
    const int OCs[3] = {Im, Im, D}, Cs[3] = {D, D, Im};
#pragma omp parallel for schedule(dynamic)
    for (int task = 0; task < tasks; task++) {
        int e = task / (3 * slices), which = task / slices % 3, o0 = task % slices * slice;
        int r0 = a->expert_start[e], n = a->expert_start[e + 1] - r0;
        int OC = OCs[which], C = Cs[which];
        if (o0 >= OC || n == 0) continue;
        int rows = OC - o0 < slice ? OC - o0 : slice;
        // dW rows o0.. += grad[:, o0..]^T inp   (grad^T read in place: a(i,k) = grad[k*OC + i])
        matmul_nn(dWs[which] + e * mat + (size_t)o0 * C, grads[which] + (size_t)r0 * OC + o0, 1,
                  OC, inps[which] + (size_t)r0 * C, C, 1, rows, n, C, 1);
    }
}

void moe_backward(Model *m, int layer, LayerActs *a, const float *inp, const float *dout,
                  float *dinp, int N) {
    const Config *c = &m->cfg;
    const LayerParams *lp = &m->p.layers[layer], *glp = &m->g.layers[layer];
    Grads *s = &m->scratch;
    int E = c->n_routed_experts, K = c->num_experts_per_tok, D = c->hidden_size;
    int Im = c->moe_intermediate_size;
    float *dw = s->t3;        // (N, K)  gradient of the gate weights
    float *dlogits = s->t4;   // (N, E)
    float *dex_out = s->dex, *dex_in = s->dex2;
    // 1. through the weighted sum: dw[t,k] = dout[t] . y ; dy = w[t,k] * dout[t]
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        const float *d = dout + (size_t)t * D;
        for (int k = 0; k < K; k++) {
            int row = a->slot_of[(size_t)t * K + k];
            const float *y = a->ex_out + (size_t)row * D;
            float g = a->topk_w[(size_t)t * K + k], acc = 0.0f;
            float *dy = dex_out + (size_t)row * D;
            for (int i = 0; i < D; i++) {
                acc += d[i] * y[i];
                dy[i] = g * d[i];
            }
            dw[(size_t)t * K + k] = acc;
        }
    }
    // 2. each expert, in the pieces of moe_forward: the input gradients dex_in of its rows,
    // leaving dg in dex3 and du in dex4. When no expert is cut (few threads), a piece is a
    // whole expert and computes its weight gradients too, while its rows are in cache; else
    // 2b. the weight gradients follow, in slices (expert_weight_grads).
    int piece_rows = expert_piece_rows(N * K), cut;
    ExpertPiece pieces[E + N * K / piece_rows + 1];
    int n_pieces = expert_pieces(a, E, piece_rows, pieces, &cut);
    cut = cut || m->grad_order;  // a share's view: the weight gradients in its turn, below
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n_pieces; i++) {
        int e = pieces[i].e, r0 = pieces[i].r0, n = pieces[i].n;
        size_t mat = (size_t)Im * D;
        swiglu_backward(dex_in + (size_t)r0 * D, cut ? NULL : glp->experts_gate + e * mat,
                        cut ? NULL : glp->experts_up + e * mat,
                        cut ? NULL : glp->experts_down + e * mat, dex_out + (size_t)r0 * D,
                        a->ex_in + (size_t)r0 * D, lp->experts_gate + e * mat,
                        lp->experts_up + e * mat, lp->experts_down + e * mat,
                        a->ex_g + (size_t)r0 * Im, a->ex_u + (size_t)r0 * Im,
                        a->ex_h + (size_t)r0 * Im, n, D, Im, s->dex3 + (size_t)r0 * Im,
                        s->dex4 + (size_t)r0 * Im, 0);
    }
    grad_turn_wait(m);
    if (cut) expert_weight_grads(c, a, glp, dex_out, s->dex3, s->dex4);
    grad_turn_done(m);
    // 3. scatter back to tokens (k order) and route the weight gradient into the router
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float *di = dinp + (size_t)t * D;
        for (int k = 0; k < K; k++) {
            const float *src = dex_in + (size_t)a->slot_of[(size_t)t * K + k] * D;
            for (int i = 0; i < D; i++) di[i] += src[i];
        }
        router_backward_token(c, a->scores + (size_t)t * E, a->topk_idx + (size_t)t * K,
                              dw + (size_t)t * K, dlogits + (size_t)t * E);
    }
    if (m->balance_alpha > 0)
        moe_balance_loss(c, a, m->acts.B, m->acts.T, m->acts.batch, m->balance_alpha, dlogits);
    matmul_backward_turn(m, dinp, glp->router, dlogits, inp, lp->router, N, D, E, 1);
}

// ----------------------------------------------------------------------------------------------
// Sequence-wise balance loss (DeepSeek-V3 eqs. 17-20), a small complement to the bias rule
// ----------------------------------------------------------------------------------------------
//   f_i = N_r / (K_r T) * sum_t 1[expert i selected for token t]      (a count: no gradient)
//   s'_{i,t} = s_{i,t} / sum_j s_{j,t},   P_i = (1/T) sum_t s'_{i,t}
//   L_bal = alpha * sum_i f_i P_i          per sequence; we average over the batch's sequences.
// dL/ds_{j,t} = alpha/B * (1/T) * (f_j - sum_i f_i s'_{i,t}) / S_t, then through the sigmoid.
float moe_balance_loss(const Config *c, const LayerActs *a, int B, int T, int batch,
                       float alpha, float *dlogits) {
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    double total = 0.0;
    float f[E];
    for (int b = 0; b < B; b++) {
        for (int e = 0; e < E; e++) f[e] = 0.0f;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) f[a->topk_idx[((size_t)b * T + t) * K + k]] += 1.0f;
        for (int e = 0; e < E; e++) f[e] *= (float)E / ((float)K * T);
        double seq = 0.0;
        for (int t = 0; t < T; t++) {
            const float *s = a->scores + ((size_t)b * T + t) * E;
            float S = 0.0f, fs = 0.0f;
            for (int e = 0; e < E; e++) S += s[e];
            for (int e = 0; e < E; e++) {
                seq += (double)f[e] * s[e] / S / T;
                fs += f[e] * s[e] / S;
            }
            if (!dlogits) continue;
            float *dl = dlogits + ((size_t)b * T + t) * E;
            for (int e = 0; e < E; e++) {
                float ds = alpha / batch / T * (f[e] - fs) / S;
                dl[e] += ds * s[e] * (1.0f - s[e]);
            }
        }
        total += seq;
    }
    return (float)(alpha * total / batch);
}

// ----------------------------------------------------------------------------------------------
// Auxiliary-loss-free load balancing (DeepSeek-V3 §2.1.2)
// ----------------------------------------------------------------------------------------------

// After a training step: b_i += gamma * sign(mean_j c_j - c_i), with c_i the tokens routed to
// expert i since the last reset. Overloaded experts become less attractive to the selection.
void moe_update_bias(Model *m, float gamma) {
    // BEGIN ASSIGNMENT moe_router
    // handout: (void)m, (void)gamma;
    const Config *c = &m->cfg;
    int E = c->n_routed_experts;
    for (int l = 0; l < model_blocks(c); l++) {  // the MTP module's block too
        if (!layer_is_moe(c, l)) continue;
        const long *load = m->expert_load + (size_t)l * E;
        double mean = 0.0;
        for (int e = 0; e < E; e++) mean += load[e];
        mean /= E;
        float *b = m->p.layers[l].router_bias;
        for (int e = 0; e < E; e++) {
            float sign = load[e] < mean ? 1.0f : load[e] > mean ? -1.0f : 0.0f;
            b[e] += gamma * sign;
        }
    }
    // END ASSIGNMENT moe_router
}

void moe_reset_load(Model *m) {
    memset(m->expert_load, 0,
           (size_t)model_blocks(&m->cfg) * m->cfg.n_routed_experts * sizeof(long));
}

// ----------------------------------------------------------------------------------------------
// Decoding: the routed experts of one step, for one token alone or for a batch of rows
// ----------------------------------------------------------------------------------------------
// Both add sum_k w_k Expert_k(xb) to x (after the shared experts); they differ in the order of
// the additions (r1.c's decode_block says why both stay): one token alone adds its K experts in
// routing order; a batch goes expert by expert over the rows that chose it, so that each
// expert's weights are read once for the whole batch.

// b->x (D) += the routed experts of b->xb (D), one token, experts in routing order.
void moe_decode_token(const Config *c, const LayerParams *lp, DecodeBatch *b) {
    int D = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    int Im = c->moe_intermediate_size;
    matvec(b->router, b->xb, lp->router, D, E);
    moe_route_token(c, b->router, lp->router_bias, b->scores, b->route_idx, b->route_w);
    size_t mat = (size_t)Im * D;
    for (int k = 0; k < K; k++) {
        size_t e = (size_t)b->route_idx[k];
        const float *no_wt[3] = {NULL, NULL, NULL};  // (one row: matvec, which reads W)
        swiglu_rows(b->y, b->xb, lp->experts_gate + e * mat, lp->experts_up + e * mat,
                    lp->experts_down + e * mat, no_wt, 1, D, Im, 1, b->g, b->u, b->yt);
        for (int i = 0; i < D; i++) b->x[i] += b->route_w[k] * b->y[i];
    }
}

// b->x (n, D) += the routed experts of b->xb (n, D): every row is routed, then each expert runs
// once on the rows that chose it (gathered into b->gx), added back with the row's gate weight.
void moe_decode_rows(const Config *c, const LayerParams *lp, DecodeBatch *b, int n) {
    int D = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    int Im = c->moe_intermediate_size;
    linear_rows(b->router, b->xb, lp->router, decode_wt(b, lp->router), n, D, E, 0, b->yt);
    for (int i = 0; i < n; i++)
        moe_route_token(c, b->router + (size_t)i * E, lp->router_bias, b->scores,
                        b->route_idx + (size_t)i * K, b->route_w + (size_t)i * K);
    size_t mat = (size_t)Im * D;
    for (int e = 0; e < E; e++) {
        int rows[DECODE_ROWS];
        float w[DECODE_ROWS];
        int ne = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++)
                if (b->route_idx[(size_t)i * K + k] == e) {
                    rows[ne] = i;
                    w[ne] = b->route_w[(size_t)i * K + k];
                    memcpy(b->gx + (size_t)ne * D, b->xb + (size_t)i * D, (size_t)D * sizeof(float));
                    ne++;
                }
        if (ne == 0) continue;
        const float *Wg = lp->experts_gate + e * mat, *Wu = lp->experts_up + e * mat;
        const float *Wd = lp->experts_down + e * mat;
        const float *Wt[3] = {decode_wt(b, Wg), decode_wt(b, Wu), decode_wt(b, Wd)};
        swiglu_rows(b->y, b->gx, Wg, Wu, Wd, Wt, ne, D, Im, 0, b->g, b->u, b->yt);
        for (int r = 0; r < ne; r++)
            for (int d = 0; d < D; d++)
                b->x[(size_t)rows[r] * D + d] += w[r] * b->y[(size_t)r * D + d];
    }
}
