// mtp.c: multi-token prediction (DeepSeek-V3 §2.2) and self-speculative decoding with it.
//
// DeepSeek-V3 trains one module more than the decoder: for each position i it predicts the
// token after next, t_{i+2}, from the main model's representation h_i of position i and the
// embedding of the next token t_{i+1} (depth D = 1; "Emb" and "OutHead" are the main model's,
// shared):
//   h'_i  = M [RMSNorm(h_i) ; RMSNorm(Emb(t_{i+1}))]                               (eq. 21)
//   h^1   = TRM(h'_{1:T-1})          one more decoder block, causal as the others    (eq. 22)
//   P_i+2 = OutHead(h^1_i)           softmax(lm_head(RMSNorm(h^1_i)))               (eq. 23)
//   L_MTP = -1/T sum_i log P_{i+2}[t_{i+2}]                                          (eq. 24)
//   L     = L_main + lambda L_MTP                                                   (eq. 25)
// Layout as the released V3 checkpoints and the inference engines that read them (vLLM,
// SGLang) have it, the module being model.layers.<num_hidden_layers>:
//   enorm, hnorm (D)          the two RMSNorms
//   eh_proj (D, 2D)           M, which reads [enorm(emb) ; hnorm(h)]: the embedding first, as
//                             its name says (the paper writes the two the other way round)
//   input_layernorm, self_attn.*, post_attention_layernorm, mlp.*   the block (MoE when the
//                             decoder has MoE blocks: V3's layer 61 is one)
//   shared_head.norm (D)      OutHead's own RMSNorm; shared_head.head and embed_tokens are
//                             copies of lm_head and the embedding (r1.c's model_save_weights)
// h_i is the main model's output after its final RMSNorm (acts.ln_f), what those engines pass.
//
// Training (section 1) is a second loss head on the same forward pass: its gradient reaches the
// main model through h (dln_f) and through the shared embedding and lm_head. Decoding (section
// 2) uses the module as a draft model for the model itself: one draft token per step, checked
// by the main model in the same pass that produces the next token (Leviathan et al. 2023, Chen
// et al. 2023; DeepSeek-V3 §5.4.3 reports 85-90% of second tokens accepted, 1.8x tokens/s).
#include "r1.h"

#include <stdlib.h>

// ==============================================================================================
// 1. Training: the MTP loss head
// ==============================================================================================

void mtp_set_training(Model *m, float lambda) {
    m->mtp_lambda = m->cfg.num_nextn_predict_layers ? lambda : 0.0f;
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->table[i];
        if (p->mtp)  // the routing bias is never trained by a gradient (moe_update_bias moves it)
            p->trainable = m->mtp_lambda > 0.0f && !strstr(p->name, "e_score_correction_bias");
    }
}

// Writes rows (N, D) into columns [half*D, half*D + D) of cat (N, 2D), or (to_rows = 1) the
// other way round: cat's half into rows.
static void cat_half(float *cat, float *rows, int N, int D, int half, int to_rows) {
    for (int t = 0; t < N; t++) {
        float *c = cat + (size_t)t * 2 * D + (size_t)half * D, *r = rows + (size_t)t * D;
        if (to_rows) memcpy(r, c, (size_t)D * sizeof(float));
        else memcpy(c, r, (size_t)D * sizeof(float));
    }
}

float mtp_forward(Model *m, const int *ids, const float *mask) {
    const Config *c = &m->cfg;
    Acts *a = &m->acts;
    const MtpParams *mp = &m->p.mtp;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size, V = c->vocab_size;
    int L = c->num_hidden_layers;
    float eps = c->rms_norm_eps;
    // 1. row t reads the next token t+1 (none at a sequence's last position); the target of row
    //    t is token t+2, which cross_entropy_forward_backward reads as mtp_next[t+1]
    for (int t = 0; t < N; t++) {
        int last = t % T == T - 1;
        a->mtp_next[t] = last ? -1 : ids[t + 1];
        a->mtp_mask[t] = last ? 0.0f : mask ? mask[t + 1] : 1.0f;
        float *e = a->mtp_emb + (size_t)t * D;
        if (last) memset(e, 0, (size_t)D * sizeof(float));
        else memcpy(e, m->p.embed_tokens + (size_t)ids[t + 1] * D, (size_t)D * sizeof(float));
    }
    // 2. eh_proj's input (eq. 21): [enorm(Emb(t_{i+1})) | hnorm(h_i)]   (N, 2D)
    rmsnorm_forward(a->mtp_tmp, a->mtp_e_rstd, a->mtp_emb, D, mp->enorm, N, D, eps);
    cat_half(a->mtp_cat, a->mtp_tmp, N, D, 0, 0);
    rmsnorm_forward(a->mtp_tmp, a->mtp_h_rstd, a->ln_f, D, mp->hnorm, N, D, eps);
    cat_half(a->mtp_cat, a->mtp_tmp, N, D, 1, 0);
    // 3. the block (eq. 22) on h' = eh_proj(cat), at the same positions
    matmul_forward(a->layers[L].x_in, a->mtp_cat, mp->eh_proj, N, 2 * D, D, 0);
    block_forward(m, L, a->mtp_x_final, B, T);
    // 4. the shared output head (eq. 23) and the loss (eq. 24), its gradient times lambda
    rmsnorm_forward(a->mtp_ln, a->mtp_ln_rstd, a->mtp_x_final, D, mp->head_norm, N, D, eps);
    matmul_forward(a->mtp_logits, a->mtp_ln, m->p.lm_head, N, D, V, 0);
    float loss = cross_entropy_forward_backward(a->mtp_logits, a->mtp_next, a->mtp_mask, B, T, V,
                                                a->mtp_dlogits);
    for (size_t i = 0; i < (size_t)N * V; i++) a->mtp_dlogits[i] *= m->mtp_lambda;
    return loss;
}

void mtp_backward(Model *m) {
    const Config *c = &m->cfg;
    Acts *a = &m->acts;
    Grads *s = &m->scratch;
    const MtpParams *mp = &m->p.mtp, *gp = &m->g.mtp;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size, V = c->vocab_size;
    // 4. the head: d mtp_ln (N,D) = dlogits @ lm_head, lm_head's gradient; its norm
    matmul_backward(a->mtp_tmp, m->g.lm_head, a->mtp_dlogits, a->mtp_ln, m->p.lm_head, N, D, V, 0);
    rmsnorm_backward(s->dx, gp->head_norm, a->mtp_tmp, a->mtp_x_final, D, mp->head_norm,
                     a->mtp_ln_rstd, N, D, 0);
    // 3. the block: s->dx becomes d h' (N,D); then eh_proj: d cat (N,2D)
    block_backward(m, c->num_hidden_layers, B, T);
    matmul_backward(a->mtp_dcat, gp->eh_proj, s->dx, a->mtp_cat, mp->eh_proj, N, 2 * D, D, 0);
    // 2. the embedding's half through enorm into the embedding rows; h's through hnorm into
    //    mtp_dh, which model_backward_plus adds to what lm_head sends back to ln_f
    cat_half(a->mtp_dcat, a->mtp_tmp, N, D, 0, 1);
    rmsnorm_backward(s->dln, gp->enorm, a->mtp_tmp, a->mtp_emb, D, mp->enorm, a->mtp_e_rstd, N,
                     D, 0);
    embedding_backward(m->g.embed_tokens, a->mtp_next, s->dln, N, D);
    cat_half(a->mtp_dcat, a->mtp_tmp, N, D, 1, 1);
    rmsnorm_backward(a->mtp_dh, gp->hnorm, a->mtp_tmp, a->ln_f, D, mp->hnorm, a->mtp_h_rstd, N,
                     D, 0);
}

// ==============================================================================================
// 2. Decoding: the MTP module as a draft model, and self-speculative decoding
// ==============================================================================================

void mtp_decode_rows(const Model *m, DecodeState *const *s, DecodeBatch *b, const int *tokens,
                     const float *hidden, const int *pos, int n) {
    const Config *c = &m->cfg;
    const MtpParams *mp = &m->p.mtp;
    int D = c->hidden_size;
    float eps = c->rms_norm_eps, rstd;
    for (int i = 0; i < n; i++) {  // cat row i: [enorm(Emb(tokens[i])) | hnorm(hidden[i])]
        float *row = b->cat + (size_t)i * 2 * D;
        rmsnorm_forward(row, &rstd, m->p.embed_tokens + (size_t)tokens[i] * D, D, mp->enorm, 1,
                        D, eps);
        rmsnorm_forward(row + D, &rstd, hidden + (size_t)i * D, D, mp->hnorm, 1, D, eps);
    }
    linear_rows(b->x, b->cat, mp->eh_proj, decode_wt(b, mp->eh_proj), n, 2 * D, D, 0, b->yt);
    decode_block(m, c->num_hidden_layers, s, b, pos, n, 0);
    rmsnorm_forward(b->xb, b->rstd, b->x, D, mp->head_norm, n, D, eps);
    linear_rows(b->logits, b->xb, m->p.lm_head, decode_wt(b, m->p.lm_head), n, D, c->vocab_size, 0,
                b->yt);
}

// ----------------------------------------------------------------------------------------------
// The acceptance rule (the distributions it compares: r1.c's sampling_distribution)
// ----------------------------------------------------------------------------------------------

// A draw from a distribution p (V) by its CDF (the last token with mass if rounding leaves r
// above the total).
static int sample_from(const float *p, int V, Rng *rng) {
    float r = rng_uniform(rng), cdf = 0.0f;
    int last = 0;
    for (int v = 0; v < V; v++) {
        if (p[v] <= 0.0f) continue;
        last = v;
        if (r < (cdf += p[v])) return v;
    }
    return last;
}

int speculative_accept(const float *p, const float *q, int draft, Rng *rng, float *residual,
                       int V, int *accepted) {
    // accept the draft with probability min(1, p(d) / q(d))
    if (q[draft] > 0.0f && rng_uniform(rng) * q[draft] < p[draft]) {
        *accepted = 1;
        return draft;
    }
    // else a draw from the residual max(0, p - q), renormalised: what the draft under-proposes
    *accepted = 0;
    double total = 0.0;
    for (int v = 0; v < V; v++) total += (residual[v] = p[v] > q[v] ? p[v] - q[v] : 0.0f);
    if (total <= 0.0) return sample_from(p, V, rng);  // p == q: rejection cannot happen
    for (int v = 0; v < V; v++) residual[v] = (float)(residual[v] / total);
    return sample_from(residual, V, rng);
}

// ----------------------------------------------------------------------------------------------
// Self-speculative decoding
// ----------------------------------------------------------------------------------------------
// A sequence of len tokens has its main cache filled for positions 0..fed-1, and the MTP
// module's cache (block L of the same DecodeState) for the same positions. Its prompt goes in
// as generate_batch_cached's does, several tokens a step (prompt_rows_per_sequence), and the
// module reads the same positions (no prompt sharing here: each sequence reads its own, so the
// module's cache fills with it). Once the prompt is in, each step feeds the main model two rows
// together: its last token (position len-1) and the module's draft d for position len. The
// first row's logits give p, the distribution of the
// token at len; the second's, computed with d in place, give the token at len+1 if d stands:
//   accepted (temperature 0: d is p's argmax; else with probability min(1, p(d) / q(d)), q the
//     draft's distribution): d and, from the second row, one token more: two tokens for a step;
//   rejected: the token at len is drawn from the residual max(0, p - q) (temperature 0: p's
//     argmax), and the second row is void: the next step writes its cache entry again.
// Either way the token at len has distribution p exactly (Leviathan et al. 2023, Theorem 1:
// P(x) = q(x) min(1, p(x)/q(x)) + (1 - sum_y min(p(y), q(y))) residual(x) = p(x)), so the
// samples are drawn from the model's own distribution, and at temperature 0 they are its
// greedy tokens. Then the module runs on each position whose next token is now known (1 or 2
// rows after the prompt: the main model's h at that position and the token after it), and the
// last row's logits give the next draft. Each row's floats do not depend on the rows beside it
// (decode_rows), so at temperature 0 the tokens are generate_batch's, bit for bit.

// The state of one sequence between steps.
typedef struct {
    int cap;        // stop at this length
    int draft;      // the draft for position len, or -1
    int main_row;   // this step: its first row (-1: none), and how many (positions fed, fed+1, ...)
    int n_main;
    int draft_row;  // the row of the draft (-1: none)
    int mtp_pos;    // this step: the module reads positions mtp_pos .. mtp_pos + n_mtp - 1 (the h of
    int n_mtp;      // main rows main_row, main_row + 1, ... and the tokens after them)
    int decided;    // this step decided the token at len: the prompt has been read
} SpecSeq;

// The main model's step: rows for the n sequences (prompt tokens, up to `share` a sequence; or
// the last token and the draft after it); their logits and final hidden states are copied to
// logits (rows, V) and hidden (rows, D). Returns the rows, 0 when every sequence is done.
static int spec_main_step(const Model *m, DecodeState *const *s, DecodeBatch *b, int *const *ids,
                          const int *len, const int *fed, int n, int share, SpecSeq *sq,
                          float *logits, float *hidden) {
    DecodeState *rs[DECODE_ROWS];
    int tokens[DECODE_ROWS], pos[DECODE_ROWS], rows = 0;
    for (int i = 0; i < n; i++) {
        SpecSeq *q = &sq[i];
        q->main_row = q->draft_row = -1;
        q->n_main = 0;
        if (len[i] >= q->cap) continue;
        q->main_row = rows;  // the known tokens not fed yet, up to `share` of them
        int k = add_sequence_rows(s[i], ids[i], fed[i], len[i], share, rs, tokens, pos, &rows);
        if (fed[i] + k == len[i] && q->draft >= 0) {  // the last token, then the draft after it
            q->draft_row = rows;
            rs[rows] = s[i], tokens[rows] = q->draft, pos[rows] = len[i], rows++;
        }
        q->n_main = rows - q->main_row;
    }
    if (rows == 0) return 0;
    decode_step_batch(m, rs, b, tokens, pos, rows);
    size_t V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    memcpy(logits, b->logits, rows * V * sizeof(float));
    memcpy(hidden, b->xb, rows * D * sizeof(float));  // the final RMSNorm's output: h
    return rows;
}

// Sequence i after the main step: prompt tokens read, or the token at len decided (the draft
// accepted or not) and, when accepted, one more; then which positions the module reads.
static void spec_advance(const Model *m, int *ids, int *len, int *fed, SpecSeq *q,
                         const float *logits, const SamplingConfig *sc, Rng *rng,
                         const float *draft_q, float *p, float *scratch, SpecCount *count) {
    int V = m->cfg.vocab_size, eos = m->cfg.eos_token_id;
    int known = q->n_main - (q->draft_row >= 0);  // rows of tokens already in ids
    q->mtp_pos = *fed;
    *fed += known;
    q->n_mtp = known;  // the module reads each fed position whose next token is known ...
    q->decided = *fed == *len;
    if (!q->decided) return;  // ... all of them while the prompt is still being read
    // the last known token's row predicts the token at position len
    int token, accepted = 0;
    const float *za = logits + (size_t)(q->main_row + known - 1) * V;
    if (q->draft_row >= 0) {
        sampling_distribution(za, V, sc, p);
        token = speculative_accept(p, draft_q, q->draft, rng, scratch, V, &accepted);
        count->drafted++;
        count->accepted += accepted;
    } else {
        token = sample_token(za, V, sc->temperature, sc->top_p, rng, scratch);
    }
    ids[(*len)++] = token;  // (a rejected draft's cache entry is written again next step)
    if (token == eos) q->cap = *len;
    if (!accepted || *len >= q->cap) return;
    // the draft stood: its row is in the cache, and its logits give the token after it
    int bonus = sample_token(logits + (size_t)q->draft_row * V, V, sc->temperature, sc->top_p,
                             rng, scratch);
    ids[(*len)++] = bonus;
    (*fed)++;
    q->n_mtp++;
    if (bonus == eos) q->cap = *len;
}

void generate_batch_speculative(const Model *m, DecodeState *const *s, DecodeBatch *b,
                                int *const *ids, int *len, int *fed, const int *max_len, int n,
                                const SamplingConfig *sc, Rng *rng, float *probs,
                                SpecCount *count) {
    int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    int share = prompt_rows_per_sequence(n);  // >= 2: the last token and a draft
    SpecSeq sq[DECODE_BATCH];
    float *logits = xcalloc((size_t)DECODE_ROWS * V, sizeof(float));  // the main model's rows
    float *hidden = xcalloc((size_t)DECODE_ROWS * D, sizeof(float));
    float *h = xcalloc((size_t)DECODE_ROWS * D, sizeof(float));  // the module's rows' h
    float *draft_q = xcalloc((size_t)n * V, sizeof(float)), *p = xcalloc((size_t)V, sizeof(float));
    for (int i = 0; i < n; i++) {
        sq[i].cap = max_len[i] < s[i]->max_T ? max_len[i] : s[i]->max_T;
        sq[i].draft = -1;
    }
    while (spec_main_step(m, s, b, ids, len, fed, n, share, sq, logits, hidden)) {
        // decide each sequence's tokens, then run the module on the positions now known: row
        // (position p, the main model's h at p, the token at p + 1)
        DecodeState *rs[DECODE_ROWS];
        int tokens[DECODE_ROWS], pos[DECODE_ROWS], rows = 0;
        for (int i = 0; i < n; i++) {
            SpecSeq *q = &sq[i];
            if (q->main_row < 0) continue;
            spec_advance(m, ids[i], &len[i], &fed[i], q, logits, sc, &rng[i],
                         draft_q + (size_t)i * V, p, probs, &count[i]);
            for (int k = 0; k < q->n_mtp; k++, rows++) {
                rs[rows] = s[i], pos[rows] = q->mtp_pos + k, tokens[rows] = ids[i][pos[rows] + 1];
                memcpy(h + (size_t)rows * D, hidden + (size_t)(q->main_row + k) * D,
                       (size_t)D * sizeof(float));
            }
        }
        mtp_decode_rows(m, rs, b, tokens, h, pos, rows);
        // the next drafts: from each sequence's last module row, when it predicts position len
        for (int i = 0, row = 0; i < n; i++) {
            SpecSeq *q = &sq[i];
            if (q->main_row < 0) continue;
            row += q->n_mtp;
            q->draft = -1;
            // No draft while the prompt is being read, even when its last token alone is left
            // (the module's last row would predict it): the draws of each sequence's RNG must
            // not depend on how its prompt was cut, which depends on its batch-mates.
            if (!q->decided || q->n_mtp == 0 || q->mtp_pos + q->n_mtp + 1 != len[i] ||
                len[i] >= q->cap)
                continue;
            float *qi = draft_q + (size_t)i * V;
            sampling_distribution(b->logits + (size_t)(row - 1) * V, V, sc, qi);
            q->draft = sample_from(qi, V, &rng[i]);
        }
    }
    free(h);
    free(logits);
    free(hidden);
    free(draft_q);
    free(p);
}
