// r1.c: the DeepSeek-V3 model in plain C, and nothing but the model.
//
// Contents, in the order a token travels:
//    1. The parameter table (Hugging Face names -> one float buffer), activations, init
//    2. Random numbers
//    3. MLA: Multi-head Latent Attention, forward and backward (the naive, training form)
//    4. The block and the whole model (embedding, blocks, final norm, lm_head); a Qwen2 / Llama
//       config (is_gqa) takes gqa.c's attention instead of MLA, here and in section 7
//    5. Loss heads (cross-entropy, distillation)
//    6. AdamW
//    7. Generation: latent KV cache, absorbed attention, batched decoding, sampling
//    8. Parameter counting
//    9. Checkpoints: the model on disk (config.json, model.safetensors, optimizer state)
// Below it: kernels.c (the arithmetic), moe.c (DeepSeekMoE), gqa.c (grouped-query attention),
// formats.c, tokenizer.c. Above it:
// tasks.c, grpo.c, pipeline.c and main.c (the program). r1.h has the map.
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE  // madvise (Linux, the BSDs)
#include "r1.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

// ==============================================================================================
// 1. The parameter table: one ParamInfo per Hugging Face tensor, all in one buffer
// ==============================================================================================

typedef struct {
    ParamInfo *t;
    int n, cap;
    size_t offset;
} TableBuilder;

static void table_add(TableBuilder *tb, const char *name, int rows, int cols, int trainable,
                      int expert) {
    if (tb->n == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        tb->t = realloc(tb->t, (size_t)tb->cap * sizeof(ParamInfo));
        if (!tb->t) { fprintf(stderr, "r1: out of memory\n"); exit(1); }
    }
    ParamInfo *p = &tb->t[tb->n++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = cols ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols;
    p->numel = (size_t)rows * (cols ? (size_t)cols : 1);
    p->offset = tb->offset;
    p->trainable = trainable;
    p->decay = cols ? 1 : 0;   // weight decay on matrices only
    p->expert = expert;
    tb->offset += p->numel;
}

// The attention tensors of a DeepSeek-V3 block (MLA, section 3).
static void mla_table_add(const Config *c, TableBuilder *tb, int l) {
    int D = c->hidden_size, H = c->num_attention_heads;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int dq = c->q_lora_rank, dc = c->kv_lora_rank;
    char nm[96];
#define NAME(fmt) (snprintf(nm, sizeof(nm), "model.layers.%d." fmt, l), nm)
    if (dq > 0) {
        table_add(tb, NAME("self_attn.q_a_proj.weight"), dq, D, 1, 0);
        table_add(tb, NAME("self_attn.q_a_layernorm.weight"), dq, 0, 1, 0);
        table_add(tb, NAME("self_attn.q_b_proj.weight"), H * (dn + dr), dq, 1, 0);
    } else {
        table_add(tb, NAME("self_attn.q_proj.weight"), H * (dn + dr), D, 1, 0);
    }
    table_add(tb, NAME("self_attn.kv_a_proj_with_mqa.weight"), dc + dr, D, 1, 0);
    table_add(tb, NAME("self_attn.kv_a_layernorm.weight"), dc, 0, 1, 0);
    table_add(tb, NAME("self_attn.kv_b_proj.weight"), H * (dn + dv), dc, 1, 0);
    table_add(tb, NAME("self_attn.o_proj.weight"), D, H * dv, 1, 0);
#undef NAME
}

// The attention tensors of a Qwen2 / Llama block (gqa.c), in transformers' order: q, k, v (each
// weight, then its bias where the config has them), o_proj.
static void gqa_table_add(const Config *c, TableBuilder *tb, int l) {
    int D = c->hidden_size, qw = c->num_attention_heads * c->head_dim;
    int kw = c->num_key_value_heads * c->head_dim;
    const char *proj[3] = {"q_proj", "k_proj", "v_proj"};
    int rows[3] = {qw, kw, kw};
    char nm[96];
    for (int i = 0; i < 3; i++) {
        snprintf(nm, sizeof(nm), "model.layers.%d.self_attn.%s.weight", l, proj[i]);
        table_add(tb, nm, rows[i], D, 1, 0);
        if (!c->attention_bias) continue;
        snprintf(nm, sizeof(nm), "model.layers.%d.self_attn.%s.bias", l, proj[i]);
        table_add(tb, nm, rows[i], 0, 1, 0);
    }
    snprintf(nm, sizeof(nm), "model.layers.%d.self_attn.o_proj.weight", l);
    table_add(tb, nm, D, qw, 1, 0);
}

// Builds the table in a fixed order. The routed experts of a layer are laid out as
// [gate_proj of experts 0..E-1][up_proj of 0..E-1][down_proj of 0..E-1], so that expert e's
// gate matrix is simply experts_gate + e * Im * D.
static void build_table(const Config *c, TableBuilder *tb) {
    int D = c->hidden_size, E = c->n_routed_experts;
    int Im = c->moe_intermediate_size, Is = c->moe_intermediate_size * c->n_shared_experts;
    char nm[96];
    table_add(tb, "model.embed_tokens.weight", c->vocab_size, D, 1, 0);
    for (int l = 0; l < model_blocks(c); l++) {
        int first = tb->n;  // this block's first tensor (to mark the MTP module's)
#define NAME(fmt) (snprintf(nm, sizeof(nm), "model.layers.%d." fmt, l), nm)
        if (l == c->num_hidden_layers) {  // the MTP module's own tensors (hub names, V3 layout)
            table_add(tb, NAME("enorm.weight"), D, 0, 1, 0);
            table_add(tb, NAME("hnorm.weight"), D, 0, 1, 0);
            table_add(tb, NAME("eh_proj.weight"), D, 2 * D, 1, 0);
        }
        table_add(tb, NAME("input_layernorm.weight"), D, 0, 1, 0);
        if (is_gqa(c)) gqa_table_add(c, tb, l);
        else mla_table_add(c, tb, l);
        table_add(tb, NAME("post_attention_layernorm.weight"), D, 0, 1, 0);
        if (!layer_is_moe(c, l)) {
            table_add(tb, NAME("mlp.gate_proj.weight"), c->intermediate_size, D, 1, 0);
            table_add(tb, NAME("mlp.up_proj.weight"), c->intermediate_size, D, 1, 0);
            table_add(tb, NAME("mlp.down_proj.weight"), D, c->intermediate_size, 1, 0);
        } else {
            table_add(tb, NAME("mlp.gate.weight"), E, D, 1, 0);
            table_add(tb, NAME("mlp.gate.e_score_correction_bias"), E, 0, 0, 0);
            tb->t[tb->n - 1].decay = 0;
            if (Is > 0) {
                table_add(tb, NAME("mlp.shared_experts.gate_proj.weight"), Is, D, 1, 0);
                table_add(tb, NAME("mlp.shared_experts.up_proj.weight"), Is, D, 1, 0);
                table_add(tb, NAME("mlp.shared_experts.down_proj.weight"), D, Is, 1, 0);
            }
            const char *kinds[3] = {"gate_proj", "up_proj", "down_proj"};
            for (int k = 0; k < 3; k++) {
                for (int e = 0; e < E; e++) {
                    snprintf(nm, sizeof(nm), "model.layers.%d.mlp.experts.%d.%s.weight", l, e,
                             kinds[k]);
                    if (k < 2) table_add(tb, nm, Im, D, 1, 1);
                    else table_add(tb, nm, D, Im, 1, 1);
                }
            }
        }
        if (l == c->num_hidden_layers) {
            table_add(tb, NAME("shared_head.norm.weight"), D, 0, 1, 0);
            // frozen until a run trains it (mtp_set_training), so that AdamW's weight decay
            // never shrinks a module no loss is training
            for (int i = first; i < tb->n; i++) {
                tb->t[i].mtp = 1;
                tb->t[i].trainable = 0;
            }
        }
#undef NAME
    }
    table_add(tb, "model.norm.weight", D, 0, 1, 0);
    if (!c->tie_word_embeddings) table_add(tb, "lm_head.weight", c->vocab_size, D, 1, 0);
}

static float *find_in(float *base, ParamInfo *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return base + t[i].offset;
    return NULL;
}

ParamInfo *model_find_param(Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->table[i].name, name) == 0) return &m->table[i];
    return NULL;
}

// Points the per-layer views at a buffer laid out by the table (params or grads).
static void point_views(Model *m, float *base, ParamPointers *pp) {
    const Config *c = &m->cfg;
    char nm[96];
    ParamInfo *t = m->table;
    int n = m->n_tensors;
    pp->embed_tokens = find_in(base, t, n, "model.embed_tokens.weight");
    pp->norm = find_in(base, t, n, "model.norm.weight");
    pp->lm_head = c->tie_word_embeddings ? pp->embed_tokens : find_in(base, t, n, "lm_head.weight");
    memset(&pp->mtp, 0, sizeof(pp->mtp));
    for (int l = 0; l < model_blocks(c); l++) {
        LayerParams *lp = &pp->layers[l];
        memset(lp, 0, sizeof(*lp));
#define AT(fmt) (snprintf(nm, sizeof(nm), "model.layers.%d." fmt, l), find_in(base, t, n, nm))
        lp->input_layernorm = AT("input_layernorm.weight");
        lp->q_a_proj = AT("self_attn.q_a_proj.weight");
        lp->q_a_layernorm = AT("self_attn.q_a_layernorm.weight");
        lp->q_b_proj = c->q_lora_rank > 0 ? AT("self_attn.q_b_proj.weight")
                                          : AT("self_attn.q_proj.weight");
        lp->k_proj = AT("self_attn.k_proj.weight");  // GQA only (NULL for MLA)
        lp->v_proj = AT("self_attn.v_proj.weight");
        lp->q_bias = AT("self_attn.q_proj.bias");    // GQA with attention_bias only
        lp->k_bias = AT("self_attn.k_proj.bias");
        lp->v_bias = AT("self_attn.v_proj.bias");
        lp->kv_a_proj_with_mqa = AT("self_attn.kv_a_proj_with_mqa.weight");
        lp->kv_a_layernorm = AT("self_attn.kv_a_layernorm.weight");
        lp->kv_b_proj = AT("self_attn.kv_b_proj.weight");
        lp->o_proj = AT("self_attn.o_proj.weight");
        lp->post_attention_layernorm = AT("post_attention_layernorm.weight");
        if (l == c->num_hidden_layers) {  // the MTP module
            pp->mtp.enorm = AT("enorm.weight");
            pp->mtp.hnorm = AT("hnorm.weight");
            pp->mtp.eh_proj = AT("eh_proj.weight");
            pp->mtp.head_norm = AT("shared_head.norm.weight");
        }
        if (!layer_is_moe(c, l)) {
            lp->mlp_gate = AT("mlp.gate_proj.weight");
            lp->mlp_up = AT("mlp.up_proj.weight");
            lp->mlp_down = AT("mlp.down_proj.weight");
        } else {
            lp->mlp_gate = AT("mlp.shared_experts.gate_proj.weight");
            lp->mlp_up = AT("mlp.shared_experts.up_proj.weight");
            lp->mlp_down = AT("mlp.shared_experts.down_proj.weight");
            lp->router = AT("mlp.gate.weight");
            lp->router_bias = AT("mlp.gate.e_score_correction_bias");
            lp->experts_gate = AT("mlp.experts.0.gate_proj.weight");
            lp->experts_up = AT("mlp.experts.0.up_proj.weight");
            lp->experts_down = AT("mlp.experts.0.down_proj.weight");
        }
#undef AT
    }
}

// YaRN (Peng et al. 2023) as transformers computes it for DeepSeek-V3:
// m(s, mscale) = 0.1 * mscale * ln(s) + 1 for s > 1, else 1.
static double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

// cos and sin are multiplied by the attention factor: the configured one if given, else
// m(s, mscale) / m(s, mscale_all_dim) when both are set (1 for DeepSeek-V3), else m(s, 1).
static double yarn_attention_factor(const Config *c) {
    double f = c->rope_factor;
    if (c->rope_attention_factor > 0) return c->rope_attention_factor;
    if (c->rope_mscale > 0 && c->rope_mscale_all_dim > 0)
        return yarn_mscale(f, c->rope_mscale) / yarn_mscale(f, c->rope_mscale_all_dim);
    return yarn_mscale(f, 1.0);
}

// RoPE tables with YaRN (transformers' _compute_yarn_parameters; YaRN paper §3).
static void rope_init(Model *m) {
    const Config *c = &m->cfg;
    int dims = is_gqa(c) ? c->head_dim : c->qk_rope_head_dim;  // GQA rotates whole heads
    int half = dims / 2, P = c->max_position_embeddings;
    double d = dims, theta = c->rope_theta;
    double *inv_freq = xcalloc((size_t)half, sizeof(double));
    double attention_factor = 1.0;
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0 / pow(theta, (2.0 * i) / d);
    if (c->rope_yarn) {
        double f = c->rope_factor;  // used as given (transformers 5.17 only warns on a mismatch
        // with max_position_embeddings / original_max_position_embeddings)
        double L0 = c->rope_original_max_position_embeddings;
        // the dimension index at which a frequency makes n full turns over L0 positions
        double lo = floor(d * log(L0 / (c->rope_beta_fast * 2 * M_PI)) / (2 * log(theta)));
        double hi = ceil(d * log(L0 / (c->rope_beta_slow * 2 * M_PI)) / (2 * log(theta)));
        if (lo < 0) lo = 0;
        if (hi > d - 1) hi = d - 1;
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            double ramp = (i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            // ramp = 0: high frequency, kept (extrapolation); ramp = 1: divided by f
            inv_freq[i] = inv_freq[i] / f * ramp + inv_freq[i] * (1 - ramp);
        }
        attention_factor = yarn_attention_factor(c);
    }
    m->rope_cos = xcalloc((size_t)P * half, sizeof(float));
    m->rope_sin = xcalloc((size_t)P * half, sizeof(float));
    for (int p = 0; p < P; p++)
        for (int i = 0; i < half; i++) {
            float angle = (float)p * (float)inv_freq[i];   // float32 as transformers computes it
            m->rope_cos[(size_t)p * half + i] = (float)(cosf(angle) * attention_factor);
            m->rope_sin[(size_t)p * half + i] = (float)(sinf(angle) * attention_factor);
        }
    free(inv_freq);
    int qk = is_gqa(c) ? c->head_dim : c->qk_nope_head_dim + c->qk_rope_head_dim;
    m->attn_scale = (float)(1.0 / sqrt((double)qk));
    if (c->rope_yarn) {  // the softmax scale reads mscale_all_dim only (0 = absent: no change)
        double ms = yarn_mscale(c->rope_factor, c->rope_mscale_all_dim);
        m->attn_scale = (float)(m->attn_scale * ms * ms);
    }
}

int model_create(Model *m, const Config *c, char *err) {
    memset(m, 0, sizeof(*m));
    if (config_validate(c, err)) return -1;
    m->cfg = *c;
    // the size guards come before the table is built (count_params computes in doubles, so
    // nothing here overflows): the parameters, and the tensors (1 + 9 per layer + 3 per routed
    // expert of each MoE layer, ...), each entry of the table ~140 bytes
    ParamCount pc;
    count_params(c, &pc);
    double bytes = (pc.total + pc.mtp) * sizeof(float);  // the MTP module is in the buffer too
    if (bytes > 64e9) {
        snprintf(err, R1_ERR_LEN, "config: %.1fB parameters (%.0f GB) is too large to allocate; "
                 "use `./r1 info` for this shape", (pc.total + pc.mtp) / 1e9, bytes / 1e9);
        return -1;
    }
    int L = model_blocks(c), moe_layers = 0;
    for (int l = 0; l < L; l++) moe_layers += layer_is_moe(c, l);
    double tensors = 7.0 + 12.0 * L + (double)moe_layers * (2.0 + 3.0 * c->n_routed_experts);
    if (tensors > (double)(1 << 22)) {
        snprintf(err, R1_ERR_LEN, "config: %.3g tensors (%d layers x %d routed experts) are too "
                 "many for the parameter table (at most %d)", tensors, L, c->n_routed_experts,
                 1 << 22);
        return -1;
    }
    TableBuilder tb = {0};
    build_table(c, &tb);
    m->table = tb.t;
    m->n_tensors = tb.n;
    m->n_params = tb.offset;
    m->params = xcalloc(m->n_params, sizeof(float));
    m->p.layers = xcalloc((size_t)model_blocks(c), sizeof(LayerParams));
    point_views(m, m->params, &m->p);
    m->expert_load = xcalloc((size_t)model_blocks(c) * (size_t)c->n_routed_experts, sizeof(long));
    rope_init(m);
    return 0;
}

void model_init_random(Model *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->table[i];
        float *w = m->params + p->offset;
        if (strstr(p->name, "e_score_correction_bias") || strstr(p->name, ".bias")) {
            for (size_t j = 0; j < p->numel; j++) w[j] = 0.0f;
        } else if (p->ndim == 1) {
            for (size_t j = 0; j < p->numel; j++) w[j] = 1.0f;   // RMSNorm weights
        } else {
            for (size_t j = 0; j < p->numel; j++) w[j] = m->cfg.initializer_range * rng_normal(&rng);
        }
    }
}

// Widest per-token row any scratch buffer must hold.
static int max_width(const Config *c) {
    int H = c->num_attention_heads;
    int w = c->hidden_size;
    int cand[] = {H * (c->qk_nope_head_dim + c->qk_rope_head_dim),
                  H * (c->qk_nope_head_dim + c->qk_rope_head_dim),
                  H * (c->qk_nope_head_dim + c->v_head_dim), H * c->v_head_dim,
                  c->intermediate_size, c->moe_intermediate_size * c->n_shared_experts,
                  c->moe_intermediate_size, c->q_lora_rank, c->kv_lora_rank + c->qk_rope_head_dim,
                  c->n_routed_experts, c->num_attention_heads * c->head_dim};
    for (size_t i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
        if (cand[i] > w) w = cand[i];
    return w;
}

// Carves a (rows, width) array out of a running pointer (the one-allocation-per-kind layout)
// and points at its row `first`: 0 for the whole batch, a sequence's first row for the view of
// a slice of the batch (share_view). With base == NULL nothing is pointed at: only *used is
// counted (to size the allocation).
static float *carve(float *base, size_t *used, size_t rows, size_t width, size_t first) {
    float *p = base ? base + *used + first * width : NULL;
    *used += rows * width;
    return p;
}
static int *carve_int(int *base, size_t *used, size_t rows, size_t width, size_t first) {
    int *p = base ? base + *used + first * width : NULL;
    *used += rows * width;
    return p;
}

// Lays out (or, with base == NULL, just counts) the activations for B x T tokens, and points
// `a` at those of sequences b0.. (0: the whole batch). Every array holds a row per token (N
// rows, token b*T + t of sequence b), or a block per sequence (att; expert_start, which a slice
// of the batch fills for its own rows), so a slice's arrays are the batch's from its first
// row or block on.
static size_t layout_acts(const Config *c, Acts *a, int B, int T, int b0, float *base,
                          int *ibase, size_t *n_int) {
    size_t N = (size_t)B * T, D = c->hidden_size, H = c->num_attention_heads;
    size_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    size_t dq = c->q_lora_rank, dc = c->kv_lora_rank, E = c->n_routed_experts;
    size_t K = c->num_experts_per_tok, Im = c->moe_intermediate_size;
    size_t Hkv = c->num_key_value_heads, hd = c->head_dim;
    int gqa = is_gqa(c);  // MLA's sizes are 0 then
    size_t used = 0, iused = 0, r0 = (size_t)b0 * T;  // the first row pointed at
    a->B = B;
    a->T = T;
    a->batch = B;
    a->shares = 1;
    a->x_final = carve(base, &used, N, D, r0);
    a->ln_f = carve(base, &used, N, D, r0);
    a->ln_f_rstd = carve(base, &used, N, 1, r0);
    a->logits = carve(base, &used, N, c->vocab_size, r0);
    size_t mtp_N = c->num_nextn_predict_layers ? N : 0;  // the MTP module's rows (mtp.c)
    a->mtp_next = carve_int(ibase, &iused, mtp_N, 1, r0);
    a->mtp_mask = carve(base, &used, mtp_N, 1, r0);
    a->mtp_emb = carve(base, &used, mtp_N, D, r0);
    a->mtp_tmp = carve(base, &used, mtp_N, D, r0);
    a->mtp_cat = carve(base, &used, mtp_N, 2 * D, r0);
    a->mtp_e_rstd = carve(base, &used, mtp_N, 1, r0);
    a->mtp_h_rstd = carve(base, &used, mtp_N, 1, r0);
    a->mtp_x_final = carve(base, &used, mtp_N, D, r0);
    a->mtp_ln = carve(base, &used, mtp_N, D, r0);
    a->mtp_ln_rstd = carve(base, &used, mtp_N, 1, r0);
    a->mtp_logits = carve(base, &used, mtp_N, c->vocab_size, r0);
    a->mtp_dlogits = carve(base, &used, mtp_N, c->vocab_size, r0);
    a->mtp_dcat = carve(base, &used, mtp_N, 2 * D, r0);
    a->mtp_dh = carve(base, &used, mtp_N, D, r0);
    for (int l = 0; l < model_blocks(c); l++) {
        LayerActs *la = &a->layers[l];
        int moe = layer_is_moe(c, l);
        size_t I = moe ? Im * c->n_shared_experts : (size_t)c->intermediate_size;
        la->x_in = carve(base, &used, N, D, r0);
        la->ln1 = carve(base, &used, N, D, r0);
        la->ln1_rstd = carve(base, &used, N, 1, r0);
        la->q_a = carve(base, &used, N, dq, r0);
        la->q_a_ln = carve(base, &used, N, dq, r0);
        la->q_a_rstd = carve(base, &used, N, 1, r0);
        la->q = carve(base, &used, N, H * (gqa ? hd : dn + dr), r0);
        la->kv_a = carve(base, &used, N, dc + dr, r0);
        la->c_kv = carve(base, &used, N, dc, r0);
        la->c_kv_rstd = carve(base, &used, N, 1, r0);
        la->kv = carve(base, &used, N, H * (dn + dv), r0);
        la->k = carve(base, &used, N, gqa ? Hkv * hd : 0, r0);  // GQA's keys and values
        la->v = carve(base, &used, N, gqa ? Hkv * hd : 0, r0);
        la->att = carve(base, &used, B, H * T * T, b0);
        la->att_out = carve(base, &used, N, H * (gqa ? hd : dv), r0);
        la->x_mid = carve(base, &used, N, D, r0);
        la->ln2 = carve(base, &used, N, D, r0);
        la->ln2_rstd = carve(base, &used, N, 1, r0);
        la->mlp_g = carve(base, &used, N, I, r0);
        la->mlp_u = carve(base, &used, N, I, r0);
        la->mlp_h = carve(base, &used, N, I, r0);
        if (moe) {
            la->scores = carve(base, &used, N, E, r0);
            la->topk_w = carve(base, &used, N, K, r0);
            la->ex_in = carve(base, &used, N, K * D, r0);
            la->ex_g = carve(base, &used, N, K * Im, r0);
            la->ex_u = carve(base, &used, N, K * Im, r0);
            la->ex_h = carve(base, &used, N, K * Im, r0);
            la->ex_out = carve(base, &used, N, K * D, r0);
            la->topk_idx = carve_int(ibase, &iused, N, K, r0);
            la->slot_of = carve_int(ibase, &iused, N, K, r0);
            la->slot_pair = carve_int(ibase, &iused, N, K, r0);
            la->expert_start = carve_int(ibase, &iused, B, E + 1, b0);
        }
    }
    *n_int = iused;
    return used;
}

// Lays out (or, with base == NULL, just counts) the backward's scratch for B x T tokens, and
// points `s` at that of sequences b0.. (as layout_acts does). Returns the floats it takes.
static size_t layout_scratch(const Config *c, Grads *s, int B, int T, int b0, float *base) {
    size_t N = (size_t)B * T, W = (size_t)max_width(c), D = c->hidden_size;
    size_t H = c->num_attention_heads, K = c->num_experts_per_tok;
    size_t Im = c->moe_intermediate_size, exw = D > Im ? D : Im;
    size_t used = 0, r0 = (size_t)b0 * T;
    s->dx = carve(base, &used, N, D, r0);
    s->dln = carve(base, &used, N, D, r0);
    s->t1 = carve(base, &used, N, W, r0);
    s->t2 = carve(base, &used, N, W, r0);
    s->t3 = carve(base, &used, N, W, r0);
    s->t4 = carve(base, &used, N, W, r0);
    s->dk_pe_h = carve(base, &used, B, H * T * c->qk_rope_head_dim, b0);
    s->dex = carve(base, &used, N, K * exw, r0);
    s->dex2 = carve(base, &used, N, K * exw, r0);
    s->dex3 = carve(base, &used, N, K * exw, r0);
    s->dex4 = carve(base, &used, N, K * exw, r0);
    return used;
}

// buf if it holds n elements already (*capacity of them), else a new zeroed allocation of n.
// A buffer kept this way holds the last batch's numbers, which is harmless: every activation
// and every float of the backward's scratch is written before it is read (training reuses the
// buffers from step to step the same way).
static void *buffer_with_room(void *buf, size_t *capacity, size_t n, size_t size) {
    if (buf && *capacity >= n) return buf;
    free(buf);
    *capacity = n;
    return xcalloc(n ? n : 1, size);
}

// Activations for batches of B x T tokens (and, with backward, gradients, AdamW state and the
// backward scratch): one allocation per kind. A batch no larger than one allocated before
// (GRPO's micro-batches, whose length changes from step to step) is laid out in the same memory,
// so it does not fault fresh pages in again. A frozen model that only scores batches (GRPO's
// reference policy) needs no backward.
static int alloc_batch(Model *m, int B, int T, int backward, char *err) {
    const Config *c = &m->cfg;
    if (B <= 0 || T <= 0) {
        snprintf(err, R1_ERR_LEN, "batch %d x %d: both must be > 0", B, T);
        return -1;
    }
    if (T > c->max_position_embeddings) {
        snprintf(err, R1_ERR_LEN, "sequence length %d exceeds max_position_embeddings %d", T,
                 c->max_position_embeddings);
        return -1;
    }
    if (backward && !m->grads) {
        m->grads = xcalloc(m->n_params, sizeof(float));
        m->adam_m = xcalloc(m->n_params, sizeof(float));
        m->adam_v = xcalloc(m->n_params, sizeof(float));
        m->g.layers = xcalloc((size_t)model_blocks(c), sizeof(LayerParams));
        point_views(m, m->grads, &m->g);
    }
    // activations: count, then lay out in the buffer, allocated anew only when it is too small
    free(m->acts.layers);
    m->acts.layers = xcalloc((size_t)model_blocks(c), sizeof(LayerActs));
    size_t n_int = 0;
    Acts probe = m->acts;
    size_t n_float = layout_acts(c, &probe, B, T, 0, NULL, NULL, &n_int);
    m->acts.buffer = buffer_with_room(m->acts.buffer, &m->acts.capacity, n_float, sizeof(float));
    m->acts.ibuffer = buffer_with_room(m->acts.ibuffer, &m->acts.icapacity, n_int, sizeof(int));
    layout_acts(c, &m->acts, B, T, 0, m->acts.buffer, m->acts.ibuffer, &n_int);
    // scratch for the backward (the attention's per-head scratch is per thread: mla_forward)
    Grads *s = &m->scratch;
    float *kept = s->buffer;
    size_t kept_capacity = s->capacity;
    memset(s, 0, sizeof(*s));  // a forward-only model keeps the backward pointers NULL
    if (!backward) {
        free(kept);
        return 0;
    }
    s->capacity = kept_capacity;
    s->buffer = buffer_with_room(kept, &s->capacity, layout_scratch(c, s, B, T, 0, NULL),
                                 sizeof(float));
    layout_scratch(c, s, B, T, 0, s->buffer);
    return 0;
}

int model_alloc_training(Model *m, int B, int T, char *err) { return alloc_batch(m, B, T, 1, err); }
int model_alloc_inference(Model *m, int B, int T, char *err) { return alloc_batch(m, B, T, 0, err); }

void model_free(Model *m) {
    free(m->table);
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->p.layers);
    free(m->g.layers);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->acts.buffer);
    free(m->acts.ibuffer);
    free(m->acts.layers);
    free(m->scratch.buffer);
    free(m->expert_load);
    memset(m, 0, sizeof(*m));
}

// memset and memcpy of float buffers, in 256 KB pieces shared among the threads. The step
// zeroes or copies activation-sized buffers (1-3 MB) between its products; on the calling
// thread alone, the other threads would wait for it at the next product. (src NULL: zero.)
static void fill_floats(float *dst, const float *src, size_t n) {
    size_t chunk = (size_t)1 << 16, chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t i = 0; i < chunks; i++) {
        size_t len = n - i * chunk < chunk ? n - i * chunk : chunk;
        if (src)
            memcpy(dst + i * chunk, src + i * chunk, len * sizeof(float));
        else
            memset(dst + i * chunk, 0, len * sizeof(float));
    }
}
void zero_floats(float *x, size_t n) { fill_floats(x, NULL, n); }
void copy_floats(float *dst, const float *src, size_t n) { fill_floats(dst, src, n); }

void model_zero_grad(Model *m) {
    if (m->grads) zero_floats(m->grads, m->n_params);
}
// ==============================================================================================
// 2. Random numbers: one RNG type with explicit state (xorshift64*, Box-Muller normals)
// ==============================================================================================

void rng_seed(Rng *r, uint64_t seed) {
    // splitmix64 of the seed, so that seeds 0, 1, 2 ... give unrelated streams
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    r->state = (z ^ (z >> 31)) | 1;
}

uint64_t rng_next(Rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545F4914F6CDD1Dull;
}

float rng_uniform(Rng *r) { return (float)((rng_next(r) >> 40) * (1.0 / 16777216.0)); }

float rng_normal(Rng *r) {
    double u1 = ((rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0, 1]
    double u2 = (rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

// ==============================================================================================
// 3. MLA: Multi-head Latent Attention (DeepSeek-V2 §2.1, eqs. 37-47; DeepSeek-V3 eqs. 1-11)
// ==============================================================================================
// Training path, "naive" form: the latent c_kv is expanded by kv_b_proj into per-head k_nope and
// v, then ordinary causal softmax attention. Generation uses the absorbed form (section 9).

// Causal attention for one (batch, head), written as matrix products so that it runs on the
// matmul kernel (one thread per (b, h): the products inside run serially, in a fixed order).
// Scores (DeepSeek-V3 eq. 10), with Q = [q_nope | q_pe] and K = [k_nope | k_pe] (T, dn+dr):
//   S = Q K^T * scale,  P = softmax over j <= i (causal),  O = P V
// q (N, H, dn+dr); kv (N, H, dn+dv); kv_a (N, dc+dr) holds the shared k_pe in its last dr.
// Only the causal triangle j <= i is computed (matmul_causal); of the masked j > i, P holds 0
// where the products read it (causal_read_end), and the rest is never read.

// Scratch of the thread that computes a head: the head's K and, in the backward, its dK (two
// (T, dn+dr) matrices), then room for one packed operand of matmul_causal. Each thread
// allocates its own for the heads it takes, so it stays in that core's cache; every float of
// it is written before it is read, so which buffer a head gets never changes its numbers.
static size_t head_scratch_floats(const Config *c, int T) {
    int qk = c->qk_nope_head_dim + c->qk_rope_head_dim, dv = c->v_head_dim;
    int widest = qk > dv ? qk : dv;
    // the products below pack a (K, M) of (widest or less, T) or (T, widest or less)
    size_t pack_kt = causal_pack_floats(widest, T), pack_tk = causal_pack_floats(T, widest);
    return 2 * (size_t)T * qk + (pack_kt > pack_tk ? pack_kt : pack_tk);
}

// K (T, dn+dr) of head h: its k_nope from kv and the shared k_pe from kv_a.
static void gather_keys(const Model *m, const LayerActs *a, int T, int b, int h, float *K) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, dc = c->kv_lora_rank;
    for (int j = 0; j < T; j++) {  // loops, not memcpy: a call per 32 floats costs more
        const float *k_nope = a->kv + ((size_t)(b * T + j) * H + h) * (dn + dv);
        const float *k_pe = a->kv_a + (size_t)(b * T + j) * (dc + dr) + dc;
        float *row = K + (size_t)j * (dn + dr);
        for (int d = 0; d < dn; d++) row[d] = k_nope[d];
        for (int d = 0; d < dr; d++) row[dn + d] = k_pe[d];
    }
}

// Where head h's rows start, and their strides, in the layer's (N, H, width) buffers: row i of
// Q is q[(b*T + i)*H*qk + h*qk ...], so Q is a (T, qk) matrix with row stride H*qk, read in
// place (V, dO and the dQ being written likewise).
static const float *head_rows(const float *base, int b, int T, int H, int h, int width,
                              int offset) {
    return base + ((size_t)b * T * H + h) * width + offset;
}

static void attention_forward_head(const Model *m, LayerActs *a, int T, int b, int h,
                                   float *scratch) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, qk = dn + dr;
    float *K = scratch, *pack = K + 2 * (size_t)T * qk;
    float *P = a->att + ((size_t)b * H + h) * T * T;
    const float *Q = head_rows(a->q, b, T, H, h, qk, 0);        // (T, qk), row stride H*qk
    const float *V = head_rows(a->kv, b, T, H, h, dn + dv, dn);  // (T, dv), row stride H*(dn+dv)
    float *O = a->att_out + ((size_t)b * T * H + h) * dv;       // (T, dv), row stride H*dv
    gather_keys(m, a, T, b, h, K);
    // S (T,T) = Q K^T: B = K^T is K read by columns (b(k,j) = K[j*qk + k])
    matmul_causal(P, T, Q, (size_t)H * qk, 1, K, 1, qk, T, qk, T, CAUSAL_OUT_LOWER, 0, pack);
    for (int i = 0; i < T; i++) {
        float *p = P + (size_t)i * T;
        for (int j = 0; j <= i; j++) p[j] *= m->attn_scale;
        softmax_inplace(p, i + 1);
        for (int j = i + 1; j < causal_read_end(i, T); j++) p[j] = 0.0f;  // masked: P = 0
    }
    // O (T, dv) = P V, written straight into att_out (N, H*dv) at head h
    matmul_causal(O, (size_t)H * dv, P, T, 1, V, (size_t)H * (dn + dv), 1, T, T, dv,
                  CAUSAL_K_UPTO_ROW, 0, pack);
}

// Backward of one (batch, head):
//   dP = dO V^T,  dV = P^T dO,  dS = P * (dP - rowsum(P * dP)) * scale,  dQ = dS K,  dK = dS^T Q
// Writes this head's slices of dq (N,H,dn+dr) and dkv (N,H,dn+dv), which no other head
// touches, and its own k_pe contribution dk_pe_h (B,H,T,dr); the heads' k_pe parts are summed
// afterwards in a fixed order, so no two threads ever write the same float.
// Q, V and dO are read in place; dP (T,T) is the calling thread's scratch.
static void attention_backward_head(const Model *m, LayerActs *a, const float *datt_out,
                                    float *dq, float *dkv, float *dk_pe_h, float *dP,
                                    float *scratch, int T, int b, int h) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, qk = dn + dr;
    float *K = scratch, *dK = K + (size_t)T * qk, *pack = dK + (size_t)T * qk;
    const float *P = a->att + ((size_t)b * H + h) * T * T;
    const float *Q = head_rows(a->q, b, T, H, h, qk, 0);
    const float *V = head_rows(a->kv, b, T, H, h, dn + dv, dn);
    const float *dO = head_rows(datt_out, b, T, H, h, dv, 0);
    float *dQ = dq + ((size_t)b * T * H + h) * qk;              // (T, qk), row stride H*qk
    float *dV = dkv + ((size_t)b * T * H + h) * (dn + dv) + dn;  // (T, dv), row stride H*(dn+dv)
    size_t qs = (size_t)H * qk, vs = (size_t)H * (dn + dv), os = (size_t)H * dv;  // row strides
    matmul_causal(dP, T, dO, os, 1, V, 1, vs, T, dv, T, CAUSAL_OUT_LOWER, 0, pack);  // dO V^T
    matmul_causal(dV, vs, P, 1, T, dO, os, 1, T, T, dv, CAUSAL_K_FROM_ROW, 0, pack); // P^T dO
    for (int i = 0; i < T; i++) {                 // softmax backward, in place: dP -> dS
        float *dp = dP + (size_t)i * T;
        const float *p = P + (size_t)i * T;
        float dot = dot_lanes(p, dp, i + 1);
        for (int j = 0; j <= i; j++) dp[j] = p[j] * (dp[j] - dot) * m->attn_scale;
        for (int j = i + 1; j < causal_read_end(i, T); j++) dp[j] = 0.0f;
    }
    gather_keys(m, a, T, b, h, K);
    matmul_causal(dQ, qs, dP, T, 1, K, qk, 1, T, T, qk, CAUSAL_K_UPTO_ROW, 0, pack);  // dS K
    matmul_causal(dK, qk, dP, 1, T, Q, qs, 1, T, T, qk, CAUSAL_K_FROM_ROW, 0, pack);  // dS^T Q
    float *dkpe = dk_pe_h + ((size_t)b * H + h) * T * dr;
    for (int i = 0; i < T; i++) {  // dK's two parts: k_nope into dkv, k_pe into dkpe
        float *dkvi = dkv + ((size_t)(b * T + i) * H + h) * (dn + dv);
        for (int d = 0; d < dn; d++) dkvi[d] = dK[(size_t)i * qk + d];
        for (int d = 0; d < dr; d++) dkpe[(size_t)i * dr + d] = dK[(size_t)i * qk + dn + d];
    }
}

// The same attention as attention_forward_head, written as plain loops for stepping in gdb:
// row i of the scores, its softmax, then row i of O = P V. Used when attention_plain_loops is
// set (R1_PLAIN_ATTENTION=1 in the environment, read by main); off by default, because each
// score here is one dot product summed d = 0, 1, ... in order, while the tiled kernel sums in
// blocks and vector lanes: the floats may differ in the last bits (test_plain_attention), and
// ./r1 and ./r1-debug must compute the same floats (test_debug_build_same_floats). It fills P
// (the layer's att) and att_out as the tiled form does, so the backward is the same.
int attention_plain_loops = 0;

static void attention_forward_head_loops(const Model *m, LayerActs *a, int T, int b, int h) {
    // BEGIN ASSIGNMENT naive_mla_attention
    // handout: (void)m, (void)a, (void)T, (void)b, (void)h;
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    int dv = c->v_head_dim, dc = c->kv_lora_rank, qk = dn + dr;
    float *P = a->att + ((size_t)b * H + h) * T * T;  // (T, T) of this (b, h)
    for (int i = 0; i < T; i++) {
        const float *q = a->q + ((size_t)(b * T + i) * H + h) * qk;  // [q_nope | q_pe] (qk)
        float *p = P + (size_t)i * T;
        for (int j = 0; j <= i; j++) {  // score = (q_nope . k_nope + q_pe . k_pe) * scale
            const float *k_nope = a->kv + ((size_t)(b * T + j) * H + h) * (dn + dv);
            const float *k_pe = a->kv_a + (size_t)(b * T + j) * (dc + dr) + dc;
            float score = 0.0f;
            for (int d = 0; d < dn; d++) score += q[d] * k_nope[d];
            for (int d = 0; d < dr; d++) score += q[dn + d] * k_pe[d];
            p[j] = score * m->attn_scale;
        }
        softmax_inplace(p, i + 1);
        for (int j = i + 1; j < T; j++) p[j] = 0.0f;  // masked: P = 0
        float *o = a->att_out + ((size_t)(b * T + i) * H + h) * dv;  // o (dv) = sum_j p_j v_j
        const float *v = a->kv + ((size_t)b * T * H + h) * (dn + dv) + dn;  // v_j: v[j * vs]
        size_t vs = (size_t)H * (dn + dv);
        for (int e = 0; e < dv; e++) {
            float sum = 0.0f;
            for (int j = 0; j <= i; j++) sum += p[j] * v[j * vs + e];
            o[e] = sum;
        }
    }
    // END ASSIGNMENT naive_mla_attention
}

// Applies RoPE (sign +1) or its transpose (sign -1) to the rope part of every head of q-like
// rows (N, H, w) where the rope dims are the last dr of each head's w.
static void rope_rows(const Model *m, float *x, int N, int T, int heads, int w, int off,
                      float sign) {
    int dr = m->cfg.qk_rope_head_dim, half = dr / 2;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        int pos = t % T;
        for (int h = 0; h < heads; h++)
            rope_rotate(x + ((size_t)t * heads + h) * w + off, dr, m->rope_cos + (size_t)pos * half,
                        m->rope_sin + (size_t)pos * half, sign,
                        m->cfg.rope_interleave);
    }
}

// ln1 (N,D) -> a->att_out (N, H*dv); the caller applies o_proj.
static void mla_forward(Model *m, const LayerParams *lp, LayerActs *a, int B, int T) {
    const Config *c = &m->cfg;
    int N = B * T, D = c->hidden_size, H = c->num_attention_heads;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int dq = c->q_lora_rank, dc = c->kv_lora_rank;
    double t = now_seconds();  // the projections' time, then the heads' (step_part)
    // queries: q = q_b_proj(RMSNorm(q_a_proj(h)))   (V3 eqs. 6-8), or q_proj(h) when dq is 0
    if (dq > 0) {
        matmul_forward(a->q_a, a->ln1, lp->q_a_proj, N, D, dq, 0);
        rmsnorm_forward(a->q_a_ln, a->q_a_rstd, a->q_a, dq, lp->q_a_layernorm, N, dq,
                        c->rms_norm_eps);
        matmul_forward(a->q, a->q_a_ln, lp->q_b_proj, N, dq, H * (dn + dr), 0);
    } else {
        matmul_forward(a->q, a->ln1, lp->q_b_proj, N, D, H * (dn + dr), 0);
    }
    // keys and values: [c_kv | k_pe] = kv_a_proj_with_mqa(h)   (V3 eqs. 1, 3)
    matmul_forward(a->kv_a, a->ln1, lp->kv_a_proj_with_mqa, N, D, dc + dr, 0);
    rmsnorm_forward(a->c_kv, a->c_kv_rstd, a->kv_a, dc + dr, lp->kv_a_layernorm, N, dc,
                    c->rms_norm_eps);
    // [k_nope | v] per head = kv_b_proj(c_kv)   (V3 eqs. 2, 5: W^UK and W^UV stacked)
    matmul_forward(a->kv, a->c_kv, lp->kv_b_proj, N, dc, H * (dn + dv), 0);
    // decoupled RoPE: q_pe per head, k_pe shared by all heads (V3 eqs. 3, 8)
    rope_rows(m, a->q, N, T, H, dn + dr, dn, 1.0f);
    rope_rows(m, a->kv_a, N, T, 1, dc + dr, dc, 1.0f);
    t = step_part(m, 0, PART_ATTN_PROJ, t);
    if (attention_plain_loops) {  // R1_PLAIN_ATTENTION=1: the plain loops, one head at a time
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) attention_forward_head_loops(m, a, T, b, h);
    } else {
#pragma omp parallel
        {
            float *scratch = xcalloc(head_scratch_floats(c, T), sizeof(float));  // this thread's
#pragma omp for collapse(2) schedule(dynamic)
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) attention_forward_head(m, a, T, b, h, scratch);
            free(scratch);
        }
    }
    step_part(m, 0, PART_ATTN_HEADS, t);
}

// Gradient of the MLA input: dln (N,D) = ... (overwritten); datt_out (N,H*dv) is the gradient
// of att_out.
static void mla_backward(Model *m, const LayerParams *lp, const LayerParams *glp, LayerActs *a,
                         const float *datt_out, float *dln, int B, int T) {
    const Config *c = &m->cfg;
    Grads *s = &m->scratch;
    int N = B * T, D = c->hidden_size, H = c->num_attention_heads;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int dq = c->q_lora_rank, dc = c->kv_lora_rank;
    float *dqv = s->t2, *dkv = s->t3, *dkv_a = s->t4;
    double t = now_seconds();  // the heads' time, then the projections' (step_part)
    // Each thread keeps one (T,T) dP and one head scratch for the heads it takes: buffers
    // that stay in its cache instead of B*H of them (which buffer a head uses does not change
    // its numbers).
#pragma omp parallel
    {
        float *dP = xcalloc((size_t)T * T, sizeof(float));
        float *scratch = xcalloc(head_scratch_floats(c, T), sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                attention_backward_head(m, a, datt_out, dqv, dkv, s->dk_pe_h, dP, scratch, T,
                                        b, h);
        free(dP);
        free(scratch);
    }
    t = step_part(m, 1, PART_ATTN_HEADS, t);
    // the shared rope key: sum the heads' contributions in order h = 0..H-1 into the last dr
    // columns of dkv_a (its first dc are kv_a_layernorm's, below)
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        int b = t / T, j = t % T;
        float *dst = dkv_a + (size_t)t * (dc + dr) + dc;
        for (int d = 0; d < dr; d++) dst[d] = 0.0f;
        for (int h = 0; h < H; h++) {
            const float *src = s->dk_pe_h + (((size_t)b * H + h) * T + j) * dr;
            for (int d = 0; d < dr; d++) dst[d] += src[d];
        }
    }
    rope_rows(m, dkv_a, N, T, 1, dc + dr, dc, -1.0f);
    rope_rows(m, dqv, N, T, H, dn + dr, dn, -1.0f);
    // kv path: kv_b_proj, kv_a_layernorm, kv_a_proj_with_mqa
    float *dc_kv = s->t1;  // t1 held datt_out, which the attention backward has consumed
    matmul_backward_turn(m, dc_kv, glp->kv_b_proj, dkv, a->c_kv, lp->kv_b_proj, N, dc,
                         H * (dn + dv), 0);
    rmsnorm_backward_turn(m, dkv_a, glp->kv_a_layernorm, dc_kv, a->kv_a, dc + dr,
                          lp->kv_a_layernorm, a->c_kv_rstd, N, dc, 0);  // dkv_a's first dc
    matmul_backward_turn(m, dln, glp->kv_a_proj_with_mqa, dkv_a, a->ln1,
                         lp->kv_a_proj_with_mqa, N, D, dc + dr, 0);  // dln's first writer
    // q path
    if (dq > 0) {
        float *dq_a_ln = s->t1, *dq_a = s->t4;
        matmul_backward_turn(m, dq_a_ln, glp->q_b_proj, dqv, a->q_a_ln, lp->q_b_proj, N, dq,
                             H * (dn + dr), 0);
        rmsnorm_backward_turn(m, dq_a, glp->q_a_layernorm, dq_a_ln, a->q_a, dq,
                              lp->q_a_layernorm, a->q_a_rstd, N, dq, 0);
        matmul_backward_turn(m, dln, glp->q_a_proj, dq_a, a->ln1, lp->q_a_proj, N, D, dq, 1);
    } else {
        matmul_backward_turn(m, dln, glp->q_b_proj, dqv, a->ln1, lp->q_b_proj, N, D,
                             H * (dn + dr), 1);
    }
    step_part(m, 1, PART_ATTN_PROJ, t);
}

// ==============================================================================================
// 4. The block and the whole model
// ==============================================================================================
// x_out = x_mid + FFN(RMSNorm(x_mid)),  x_mid = x_in + o_proj(MLA(RMSNorm(x_in)))

// The width of the attention's output, o_proj's input: H*dv (MLA) or H*hd (GQA).
static int attn_out_width(const Config *c) {
    return c->num_attention_heads * (is_gqa(c) ? c->head_dim : c->v_head_dim);
}

const char *const step_part_names[PART_COUNT] = {
    "embedding, final norm, lm_head", "RMSNorms of the blocks", "attention projections, RoPE",
    "attention heads (causal)", "o_proj", "dense MLP, shared experts", "MoE: router, experts"};

static int ffn_width(const Config *c, int l) {
    return layer_is_moe(c, l) ? c->moe_intermediate_size * c->n_shared_experts
                              : c->intermediate_size;
}

void block_forward(Model *m, int l, float *x_out, int B, int T) {
    const Config *c = &m->cfg;
    const LayerParams *lp = &m->p.layers[l];
    LayerActs *a = &m->acts.layers[l];
    int N = B * T, D = c->hidden_size, I = ffn_width(c, l);
    double t = now_seconds();  // each part's time goes to step_part (bench --parts)
    rmsnorm_forward(a->ln1, a->ln1_rstd, a->x_in, D, lp->input_layernorm, N, D, c->rms_norm_eps);
    step_part(m, 0, PART_NORMS, t);
    if (is_gqa(c)) gqa_forward(m, lp, a, B, T);  // Qwen2 / Llama (gqa.c)
    else mla_forward(m, lp, a, B, T);            // (both time their own parts)
    t = now_seconds();
    copy_floats(a->x_mid, a->x_in, (size_t)N * D);  // residual: x_mid = x_in + o_proj(att_out)
    matmul_forward(a->x_mid, a->att_out, lp->o_proj, N, attn_out_width(c), D, 1);
    t = step_part(m, 0, PART_O_PROJ, t);
    rmsnorm_forward(a->ln2, a->ln2_rstd, a->x_mid, D, lp->post_attention_layernorm, N, D,
                    c->rms_norm_eps);
    t = step_part(m, 0, PART_NORMS, t);
    copy_floats(x_out, a->x_mid, (size_t)N * D);    // residual: x_out = x_mid + FFN(ln2)
    if (I > 0)  // dense MLP, or the shared experts of a MoE layer
        swiglu_forward(x_out, a->ln2, lp->mlp_gate, lp->mlp_up, lp->mlp_down, a->mlp_g, a->mlp_u,
                       a->mlp_h, N, D, I, 1);
    t = step_part(m, 0, PART_MLP, t);
    if (layer_is_moe(c, l)) moe_forward(m, l, a, a->ln2, x_out, N);
    step_part(m, 0, PART_MOE, t);
}

// dx (N,D) holds the gradient of x_out on entry and of x_in on return.
void block_backward(Model *m, int l, int B, int T) {
    const Config *c = &m->cfg;
    const LayerParams *lp = &m->p.layers[l], *glp = &m->g.layers[l];
    LayerActs *a = &m->acts.layers[l];
    Grads *s = &m->scratch;
    int N = B * T, D = c->hidden_size, I = ffn_width(c, l);
    double t = now_seconds();  // each part's time goes to step_part (bench --parts)
    // FFN: the dense MLP or shared experts write dln first; the routed experts add to it
    if (I > 0)
        swiglu_backward_turn(m, s->dln, glp->mlp_gate, glp->mlp_up, glp->mlp_down, s->dx, a->ln2,
                             lp->mlp_gate, lp->mlp_up, lp->mlp_down, a->mlp_g, a->mlp_u,
                             a->mlp_h, N, D, I, s->t1, s->t2, 0);
    else
        zero_floats(s->dln, (size_t)N * D);
    t = step_part(m, 1, PART_MLP, t);
    if (layer_is_moe(c, l)) moe_backward(m, l, a, a->ln2, s->dx, s->dln, N);
    t = step_part(m, 1, PART_MOE, t);
    rmsnorm_backward_turn(m, s->dx, glp->post_attention_layernorm, s->dln, a->x_mid, D,
                          lp->post_attention_layernorm, a->ln2_rstd, N, D, 1);  // + residual
    t = step_part(m, 1, PART_NORMS, t);
    // attention: o_proj, then MLA
    float *datt_out = s->t1;
    matmul_backward_turn(m, datt_out, glp->o_proj, s->dx, a->att_out, lp->o_proj, N,
                         attn_out_width(c), D, 0);
    step_part(m, 1, PART_O_PROJ, t);
    if (is_gqa(c)) gqa_backward(m, lp, glp, a, datt_out, s->dln, B, T);
    else mla_backward(m, lp, glp, a, datt_out, s->dln, B, T);  // (both time their own parts)
    t = now_seconds();
    rmsnorm_backward_turn(m, s->dx, glp->input_layernorm, s->dln, a->x_in, D,
                          lp->input_layernorm, a->ln1_rstd, N, D, 1);  // + the residual
    step_part(m, 1, PART_NORMS, t);
}

// The whole model layer by layer over B sequences of T tokens: every product over all B*T rows,
// shared among the threads. (model_forward runs this on the whole batch, or on each thread's
// share of the sequences, side by side: below.)
static void forward_layer_by_layer(Model *m, const int *ids, int B, int T) {
    const Config *c = &m->cfg;
    int N = B * T, D = c->hidden_size, L = c->num_hidden_layers;
    Acts *a = &m->acts;
    m->balance_loss = 0.0f;
    double since = now_seconds();
    // embedding: x[t] = embed_tokens[ids[t]]
    float *x0 = a->layers[0].x_in;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++)
        memcpy(x0 + (size_t)t * D, m->p.embed_tokens + (size_t)ids[t] * D, D * sizeof(float));
    step_part(m, 0, PART_EMBED_HEAD, since);
    for (int l = 0; l < L; l++) {
        float *x_out = l + 1 < L ? a->layers[l + 1].x_in : a->x_final;
        block_forward(m, l, x_out, B, T);
    }
    since = now_seconds();
    rmsnorm_forward(a->ln_f, a->ln_f_rstd, a->x_final, D, m->p.norm, N, D, c->rms_norm_eps);
    matmul_forward(a->logits, a->ln_f, m->p.lm_head, N, D, c->vocab_size, 0);
    step_part(m, 0, PART_EMBED_HEAD, since);
}

// The backward from the logits' gradient dlogits (plus dln_f_plus, the gradient of ln_f from
// another head that reads it, or NULL), or, when dlogits is NULL, from dln_f, the gradient of
// the final norm's output itself: the head, the blocks from the last, the embedding. Adds to
// every weight gradient. A share of the batch (m->grad_order set: below) adds lm_head's weight
// gradient last, so that its first turn is not the largest product of the backward.
static void backward_layer_by_layer(Model *m, const int *ids, const float *dlogits,
                                    const float *dln_f_plus, const float *dln_f) {
    const Config *c = &m->cfg;
    Acts *a = &m->acts;
    Grads *s = &m->scratch;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size, V = c->vocab_size;
    int head_last = m->grad_order != NULL;
    double t = now_seconds();
    if (dlogits) {  // LM head: dln_f = dlogits @ lm_head (+ dln_f_plus); lm_head's gradient
        matmul_backward(s->dln, head_last ? NULL : m->g.lm_head, dlogits, a->ln_f, m->p.lm_head,
                        N, D, V, 0);
        if (dln_f_plus)
            for (size_t i = 0; i < (size_t)N * D; i++) s->dln[i] += dln_f_plus[i];
    } else {
        copy_floats(s->dln, dln_f, (size_t)N * D);
    }
    rmsnorm_backward_turn(m, s->dx, m->g.norm, s->dln, a->x_final, D, m->p.norm, a->ln_f_rstd,
                          N, D, 0);
    step_part(m, 1, PART_EMBED_HEAD, t);
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) block_backward(m, l, B, T);
    t = now_seconds();
    grad_turn_wait(m);
    embedding_backward(m->g.embed_tokens, ids, s->dx, N, D);
    grad_turn_done(m);
    if (dlogits && head_last)
        matmul_backward_turn(m, NULL, m->g.lm_head, dlogits, a->ln_f, m->p.lm_head, N, D, V, 0);
    step_part(m, 1, PART_EMBED_HEAD, t);
}

void embedding_backward(float *dembed, const int *ids, const float *dx, int N, int D) {
    // rows of repeated tokens add up, in token order (the threads share the columns in blocks
    // of 32, each walking the tokens in order)
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < D; c0 += 32) {
        int c1 = c0 + 32 < D ? c0 + 32 : D;
        for (int t = 0; t < N; t++) {
            if (ids[t] < 0) continue;
            float *g = dembed + (size_t)ids[t] * D;
            const float *d = dx + (size_t)t * D;
            for (int i = c0; i < c1; i++) g[i] += d[i];
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Sequences side by side
// ----------------------------------------------------------------------------------------------
// Layer by layer, the threads share every product of the batch and wait for each other inside
// and between the products (a block opens ~50 parallel regions). On the project's 2-core
// sandbox the step ran 1.73-1.77x faster on 2 threads than on 1, while two 1-thread runs side by
// side did 1.9-2x the work of one (tests/BENCH.md, stop 30). So when the batch has two
// sequences or more per thread, each thread takes a share of the sequences (P shares of B/P, in
// order) through the whole model, every product of its share on its own thread: 1.82-1.95x.
//
// The same floats as layer by layer, at any thread count:
//   - forward: a row's numbers depend only on its own row (and the expert rows it chose).
//     The MoE layers group their rows by expert within each share, so the backward goes by
//     the same shares (Acts.shares).
//   - backward: a row's input gradients depend only on its own row too. A weight gradient is a
//     sum over all the batch's rows, one chain of additions in token order, and a product that
//     adds to a gradient continues its chain exactly (matmul_nn with accumulate loads the
//     partial sums and goes on; rmsnorm_backward, embedding_backward and the biases go on from
//     what the gradient holds likewise). So each call that adds to weight gradients is a turn
//     (grad_turn_wait, grad_turn_done: kernels.c, section 6): share p takes it after share p-1
//     has, and the shares add to every gradient in token order. Share 0 never waits; share p
//     runs about one turn behind share p-1. Input gradients go first, outside the turns
//     (matmul_backward_turn, swiglu_backward_turn), and a share adds lm_head's gradient last,
//     so that the turns are short.
//   - the sequence-wise balance loss (moe.c) is summed over the whole batch after the forward.
// A share's view (Model, share_view) is the batch's model with its activations and scratch
// pointed at the share's rows: the same buffers, the same weights and gradients.

int sequences_side_by_side = 1;

// Shares for the forward of a batch of B x T: one per thread, or 0 (layer by layer) unless
// there are at least 2 threads and 2 sequences per thread (shares of one sequence ran no faster
// than layer by layer on the sandbox: a product over more rows reads its weights once for all
// of them), the batch is laid out as allocated (the views follow that layout), and the
// embeddings are not tied (lm_head's gradient would be the embedding's, which two turns would
// add to out of order). Inside a parallel region openmp_threads() is 1: no shares.
static int side_by_side_shares(const Model *m, int B, int T) {
    int P = openmp_threads();
    if (!sequences_side_by_side || P < 2 || B < 2 * P) return 0;
    if (B != m->acts.B || T != m->acts.T || m->cfg.tie_word_embeddings) return 0;
    return P;
}

// The first sequence of share p of P, for a batch of B (share p is [first(p), first(p+1))).
static int share_first(int B, int P, int p) { return (int)((long)B * p / P); }

// View v of share p of P of m's batch: m itself but for its activations and scratch (pointed at
// the share's rows; acts: room for the blocks' pointers) and the counts it adds to (load: expert
// loads; part_seconds), which share_views_end adds up.
static void share_view(const Model *m, Model *v, LayerActs *acts, long *load, int p, int P) {
    const Config *c = &m->cfg;
    int B = m->acts.B, T = m->acts.T, b0 = share_first(B, P, p);
    size_t n_int;
    *v = *m;
    v->acts.layers = acts;
    layout_acts(c, &v->acts, B, T, b0, m->acts.buffer, m->acts.ibuffer, &n_int);
    v->acts.B = share_first(B, P, p + 1) - b0;
    if (m->scratch.buffer) layout_scratch(c, &v->scratch, B, T, b0, m->scratch.buffer);
    v->expert_load = load;
    memset(v->part_seconds, 0, sizeof(v->part_seconds));
}

typedef struct {
    Model *views;     // (P)
    LayerActs *acts;  // (P, blocks) the views' per-block activation pointers
    long *load;       // (P, blocks, E) tokens each view routed to each expert
} ShareViews;

static void share_views_begin(const Model *m, ShareViews *sv, int P) {
    size_t blocks = model_blocks(&m->cfg), E = m->cfg.n_routed_experts;
    sv->views = xcalloc((size_t)P, sizeof(Model));
    sv->acts = xcalloc((size_t)P * blocks, sizeof(LayerActs));
    sv->load = xcalloc((size_t)P * blocks * E + 1, sizeof(long));
    for (int p = 0; p < P; p++)
        share_view(m, &sv->views[p], sv->acts + p * blocks, sv->load + p * blocks * E, p, P);
}

// What the views counted goes back to the model: the expert loads (whole numbers: any order),
// and each part's seconds over the P threads (bench --parts: the time of an average thread).
static void share_views_end(Model *m, ShareViews *sv, int P) {
    size_t loads = (size_t)model_blocks(&m->cfg) * m->cfg.n_routed_experts;
    for (int p = 0; p < P; p++) {
        for (size_t i = 0; i < loads; i++) m->expert_load[i] += sv->views[p].expert_load[i];
        for (int pass = 0; pass < 2; pass++)
            for (int part = 0; part < PART_COUNT; part++)
                m->part_seconds[pass][part] += sv->views[p].part_seconds[pass][part] / P;
    }
    free(sv->views);
    free(sv->acts);
    free(sv->load);
}

void model_forward(Model *m, const int *ids, int B, int T) {
    const Config *c = &m->cfg;
    int P = side_by_side_shares(m, B, T);
    m->acts.shares = P > 1 ? P : 1;
    if (!P) {
        forward_layer_by_layer(m, ids, B, T);
        return;
    }
    ShareViews sv;
    share_views_begin(m, &sv, P);
#pragma omp parallel for schedule(static, 1) num_threads(P)
    for (int p = 0; p < P; p++) {
        sv.views[p].balance_alpha = 0.0f;  // summed over the whole batch below
        forward_layer_by_layer(&sv.views[p], ids + (size_t)share_first(B, P, p) * T,
                               sv.views[p].acts.B, T);
    }
    share_views_end(m, &sv, P);
    // the balance loss, layer after layer over the whole batch, as moe_forward adds it
    m->balance_loss = 0.0f;
    for (int l = 0; l < c->num_hidden_layers && m->balance_alpha > 0; l++)
        if (layer_is_moe(c, l))
            m->balance_loss += moe_balance_loss(c, &m->acts.layers[l], B, T, B, m->balance_alpha,
                                                NULL);
}

// The backward from dlogits or from dln_f (backward_layer_by_layer), by the shares of the
// forward before it: the whole batch, or each share on its thread, turn after turn.
static void backward_batch(Model *m, const int *ids, const float *dlogits,
                           const float *dln_f_plus, const float *dln_f) {
    const Config *c = &m->cfg;
    int B = m->acts.B, T = m->acts.T, P = m->acts.shares;
    if (P <= 1) {
        backward_layer_by_layer(m, ids, dlogits, dln_f_plus, dln_f);
        return;
    }
    size_t D = c->hidden_size, V = c->vocab_size;
    ShareViews sv;
    share_views_begin(m, &sv, P);
    int turns = 8 + 16 * c->num_hidden_layers;  // more than a backward takes (grad_turn_done)
    atomic_int *done = xcalloc((size_t)turns, sizeof(atomic_int));
    for (int i = 0; i < turns; i++) atomic_init(&done[i], 0);
    GradOrder *orders = xcalloc((size_t)P, sizeof(GradOrder));
#pragma omp parallel for schedule(static, 1) num_threads(P)
    for (int p = 0; p < P; p++) {
        size_t r0 = (size_t)share_first(B, P, p) * T;  // the share's first row
        orders[p] = (GradOrder){done, turns, p, 0};
        sv.views[p].grad_order = &orders[p];
        backward_layer_by_layer(&sv.views[p], ids + r0, dlogits ? dlogits + r0 * V : NULL,
                                dln_f_plus ? dln_f_plus + r0 * D : NULL,
                                dln_f ? dln_f + r0 * D : NULL);
    }
    // every share must have made the same turns (a turn taken only by some shares would let
    // the others' turns run out of order): a bug in the code, never in the input
    for (int p = 1; p < P; p++)
        if (orders[p].next != orders[0].next)
            die("backward: share %d made %d turns, share 0 %d", p, orders[p].next,
                orders[0].next);
    free(orders);
    free(done);
    share_views_end(m, &sv, P);
}

void model_backward(Model *m, const int *ids, const float *dlogits) {
    model_backward_plus(m, ids, dlogits, NULL);
}

void model_backward_plus(Model *m, const int *ids, const float *dlogits, const float *dln_f_plus) {
    backward_batch(m, ids, dlogits, dln_f_plus, NULL);
}

// The same from dln_f (B,T,D), the gradient of the final norm's output: for a head other than
// lm_head (the reward model's score head, grpo.c section 8).
void model_backward_from_hidden(Model *m, const int *ids, const float *dln_f) {
    backward_batch(m, ids, NULL, NULL, dln_f);
}

// ==============================================================================================
// 5. Loss heads
// ==============================================================================================

// Mean next-token cross-entropy. Position t of sequence b predicts ids[b, t+1]; it counts when
// mask is NULL or mask[b, t+1] != 0. dlogits (B,T,V) = (softmax - onehot) / count, 0 elsewhere.
float cross_entropy_forward_backward(const float *logits, const int *ids, const float *mask,
                                     int B, int T, int V, float *dlogits) {
    // BEGIN ASSIGNMENT cross_entropy
    // handout: if (dlogits) memset(dlogits, 0, (size_t)B * T * V * sizeof(float));
    // handout: (void)logits, (void)ids, (void)mask;
    // handout: return 0.0f;
    int N = B * T;
    float *row_loss = xcalloc((size_t)N, sizeof(float));
    int count = 0;
    for (int t = 0; t < N; t++)
        if (t % T != T - 1 && (!mask || mask[t + 1] != 0.0f)) count++;
    float inv = count ? 1.0f / count : 0.0f;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        const float *z = logits + (size_t)t * V;
        float *dz = dlogits ? dlogits + (size_t)t * V : NULL;
        int counts = t % T != T - 1 && (!mask || mask[t + 1] != 0.0f);
        if (!counts) {
            if (dz) memset(dz, 0, (size_t)V * sizeof(float));
            continue;
        }
        int target = ids[t + 1];
        double logsum = log_sum_exp(z, V);
        row_loss[t] = (float)(logsum - z[target]);
        if (dz) {
            float shift = (float)logsum;
            for (int v = 0; v < V; v++) dz[v] = r1_expf(z[v] - shift) * inv;
            dz[target] -= inv;
        }
    }
    double total = 0.0;
    for (int t = 0; t < N; t++) total += row_loss[t];  // fixed order
    free(row_loss);
    return count ? (float)(total / count) : 0.0f;
    // END ASSIGNMENT cross_entropy
}

// Distillation against a teacher's logits (Hinton et al. 2015; R1 §2.4 uses plain SFT on the
// teacher's samples, which is kd_alpha = 0): on the positions cross-entropy counts,
//   loss = (1 - alpha) CE(student, next token) + alpha KL(p_teacher || p_student)
// with p = softmax(logits / tau) and the KL scaled by tau^2 (so that its gradient does not fade
// as tau grows); d KL / d student_logits = tau (p_student - p_teacher) / count, times tau^2 / tau^2.
// dlogits (B,T,V) holds the combined gradient. Returns the combined loss.
float distill_loss(const float *logits, const float *teacher_logits, const int *ids,
                   const float *mask, int B, int T, int V, float alpha, float tau,
                   float *dlogits) {
    float ce = cross_entropy_forward_backward(logits, ids, mask, B, T, V, dlogits);
    if (alpha <= 0.0f) return ce;
    int N = B * T, count = 0;
    for (int t = 0; t < N; t++) count += t % T != T - 1 && (!mask || mask[t + 1] != 0.0f);
    float *row_kl = xcalloc((size_t)N, sizeof(float));
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; t++) {
        float *dz = dlogits ? dlogits + (size_t)t * V : NULL;
        for (int v = 0; dz && v < V; v++) dz[v] *= 1.0f - alpha;
        if (t % T == T - 1 || (mask && mask[t + 1] == 0.0f)) continue;
        const float *zs = logits + (size_t)t * V, *zt = teacher_logits + (size_t)t * V;
        float ms = zs[0], mt = zt[0];
        for (int v = 1; v < V; v++) {
            ms = zs[v] > ms ? zs[v] : ms;
            mt = zt[v] > mt ? zt[v] : mt;
        }
        double ss = 0.0, st = 0.0;
        for (int v = 0; v < V; v++) {
            ss += r1_expf((zs[v] - ms) / tau);
            st += r1_expf((zt[v] - mt) / tau);
        }
        double kl = 0.0;
        for (int v = 0; v < V; v++) {
            double lps = (zs[v] - ms) / tau - log(ss), lpt = (zt[v] - mt) / tau - log(st);
            double pt = exp(lpt), ps = exp(lps);
            kl += pt * (lpt - lps);
            if (dz) dz[v] += alpha * tau * (float)(ps - pt) / count;  // tau^2 (1/tau) (ps - pt)
        }
        row_kl[t] = (float)(kl * tau * tau);
    }
    double kl_sum = 0.0;
    for (int t = 0; t < N; t++) kl_sum += row_kl[t];
    free(row_kl);
    return (1.0f - alpha) * ce + alpha * (float)(count ? kl_sum / count : 0.0);
}

// ==============================================================================================
// 6. AdamW (Loshchilov & Hutter 2019) with global-norm clipping; DeepSeek-V3 §4.2 settings
// ==============================================================================================

AdamWConfig adamw_defaults(void) {
    AdamWConfig oc = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .grad_clip = 1.0f};
    return oc;
}

// sum_j x[j]^2 in double, in 8 lanes (lane l takes j = l, l+8, ...) so that it vectorises;
// the order is fixed.
static double sum_squares(const float *x, size_t n) {
    double lanes[8] = {0}, s = 0.0;
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) lanes[l] += (double)x[j + l] * x[j + l];
    for (; j < n; j++) s += (double)x[j] * x[j];
    return s + (((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])));
}

float adamw_step(Model *m, const AdamWConfig *oc) {
    // BEGIN ASSIGNMENT adamw
    // handout: (void)m, (void)oc, (void)sum_squares;
    // handout: return 0.0f;
    // the global norm: the tensors' sums of squares are shared among the threads, then added
    // in table order (the same double whatever thread computed each)
    double *tensor_sumsq = xcalloc((size_t)m->n_tensors, sizeof(double)), sumsq = 0.0;
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->table[i];
        if (p->trainable) tensor_sumsq[i] = sum_squares(m->grads + p->offset, p->numel);
    }
    for (int i = 0; i < m->n_tensors; i++) sumsq += tensor_sumsq[i];
    free(tensor_sumsq);
    float norm = (float)sqrt(sumsq);
    float clip = (oc->grad_clip > 0 && norm > oc->grad_clip) ? oc->grad_clip / norm : 1.0f;
    m->adam_step++;
    float bc1 = 1.0f - powf(oc->beta1, (float)m->adam_step);
    float bc2 = 1.0f - powf(oc->beta2, (float)m->adam_step);
    // the settings as locals: read through oc inside the loop, the compiler would have to
    // reload them after every store (a float store might change *oc), and would not vectorise
    const float beta1 = oc->beta1, beta2 = oc->beta2, lr = oc->lr, eps = oc->eps;
    // One parallel region for all tensors: each tensor's elements are shared among the threads
    // and nobody waits between tensors (nowait: the updates are independent of each other).
#pragma omp parallel
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->table[i];
        if (!p->trainable) continue;
        float wd = p->decay ? oc->weight_decay : 0.0f;
        float *w = m->params + p->offset, *g = m->grads + p->offset;
        float *mm = m->adam_m + p->offset, *vv = m->adam_v + p->offset;
#pragma omp for schedule(static) nowait
        for (size_t j = 0; j < p->numel; j++) {
            float gj = g[j] * clip;
            mm[j] = beta1 * mm[j] + (1.0f - beta1) * gj;
            vv[j] = beta2 * vv[j] + (1.0f - beta2) * gj * gj;
            float mhat = mm[j] / bc1, vhat = vv[j] / bc2;
            w[j] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * w[j]);
        }
    }
    return norm;
    // END ASSIGNMENT adamw
}
// ==============================================================================================
// 7. Generation: one token at a time with the latent KV cache and absorbed attention
// ==============================================================================================
// DeepSeek-V2 §2.1.2: since k_nope[h,j] = W_UK[h] c_kv[j] and v[h,j] = W_UV[h] c_kv[j],
//   q_nope[h] . k_nope[h,j] = (W_UK[h]^T q_nope[h]) . c_kv[j]         (W_UK absorbed into q)
//   o[h] = sum_j p_j v[h,j] = W_UV[h] (sum_j p_j c_kv[j])               (W_UV absorbed into out)
// so the cache keeps only c_kv (dc floats) and the shared rotated k_pe (dr floats) per position
// and layer: (dc + dr) floats against 2 * H * dn for standard multi-head attention.

int decode_state_create(DecodeState *s, const Model *m, int max_T, char *err) {
    const Config *c = &m->cfg;
    memset(s, 0, sizeof(*s));
    if (max_T <= 0 || max_T > c->max_position_embeddings) {
        snprintf(err, R1_ERR_LEN, "context of %d tokens: must be in 1..%d (max_position_embeddings)",
                 max_T, c->max_position_embeddings);
        return -1;
    }
    size_t L = model_blocks(c), H = c->num_attention_heads;  // the MTP block has its cache too
    size_t dr = c->qk_rope_head_dim, dc = c->kv_lora_rank;
    size_t kv = is_gqa(c) ? (size_t)c->num_key_value_heads * c->head_dim : 0;  // GQA's cache
    s->max_T = max_T;
    s->c_kv = xcalloc(L * max_T * dc, sizeof(float));
    s->k_pe = xcalloc(L * max_T * dr, sizeof(float));
    s->k = xcalloc(L * max_T * kv, sizeof(float));
    s->v = xcalloc(L * max_T * kv, sizeof(float));
    s->q_abs = xcalloc(H * dc, sizeof(float));
    s->att = xcalloc(H * (size_t)max_T, sizeof(float));
    s->att_rope = xcalloc(H * (size_t)max_T, sizeof(float));
    s->o_lat = xcalloc(H * dc, sizeof(float));
    s->logits = xcalloc((size_t)c->vocab_size, sizeof(float));
    return 0;
}

void decode_state_free(DecodeState *s) {
    float *bufs[] = {s->c_kv, s->k_pe, s->k, s->v, s->q_abs, s->att, s->att_rope, s->o_lat,
                     s->logits};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    if (s->alone) decode_batch_free(s->alone);
    free(s->alone);
    memset(s, 0, sizeof(*s));
}

void decode_batch_create(DecodeBatch *b, const Model *m) {
    const Config *c = &m->cfg;
    size_t n = DECODE_ROWS, D = c->hidden_size, H = c->num_attention_heads;
    size_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    size_t dc = c->kv_lora_rank, W = (size_t)max_width(c), V = c->vocab_size;
    size_t E = c->n_routed_experts, K = c->num_experts_per_tok;
    size_t wide = W;  // the widest row any product writes
    size_t q_w = H * (dn + dr), kv_w = dc + dr, o_w = H * dv;  // MLA's rows, or GQA's:
    if (is_gqa(c)) {
        q_w = o_w = H * c->head_dim;
        kv_w = 2 * (size_t)c->num_key_value_heads * c->head_dim;  // k | v
    }
    if (q_w > wide) wide = q_w;
    if (kv_w > wide) wide = kv_w;
    if (V > wide) wide = V;
    if (D > wide) wide = D;
    memset(b, 0, sizeof(*b));
    b->x = xcalloc(n * D, sizeof(float));
    b->xb = xcalloc(n * D, sizeof(float));
    b->rstd = xcalloc(n, sizeof(float));
    b->yt = xcalloc(n * wide, sizeof(float));
    b->q_a = xcalloc(n * W, sizeof(float));
    b->q = xcalloc(n * q_w, sizeof(float));
    b->kv_a = xcalloc(n * kv_w, sizeof(float));
    b->o = xcalloc(n * o_w, sizeof(float));
    b->y = xcalloc(n * D, sizeof(float));
    b->g = xcalloc(n * W, sizeof(float));
    b->u = xcalloc(n * W, sizeof(float));
    b->gx = xcalloc(n * D, sizeof(float));
    b->router = xcalloc(n * (E + 1), sizeof(float));
    b->scores = xcalloc(E + 1, sizeof(float));
    b->route_w = xcalloc(n * (K + 1), sizeof(float));
    b->route_idx = xcalloc(n * (K + 1), sizeof(int));
    b->logits = xcalloc(n * V, sizeof(float));
    b->cat = xcalloc(c->num_nextn_predict_layers ? n * 2 * D : 1, sizeof(float));
}

// Every matrix (OC, C) of the table as its transpose (C, OC), at its own offset; vectors are
// left 0 (decoding reads them from the model). One pass over the weights: ~10 ms for the small
// preset, against seconds of rollouts that read the copy at every step.
float *decode_weights_transposed(const Model *m) {
    float *wt = xcalloc(m->n_params, sizeof(float));
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->table[i];
        if (p->ndim != 2) continue;
        const float *W = m->params + p->offset;
        float *T = wt + p->offset;
        int rows = p->shape[0], cols = p->shape[1];
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < cols; k++) T[(size_t)k * rows + r] = W[(size_t)r * cols + k];
    }
    return wt;
}

void decode_batch_use_transposed(DecodeBatch *b, const Model *m, const float *params_t) {
    b->params = m->params;
    b->params_t = params_t;
}

void decode_batch_free(DecodeBatch *b) {
    float *bufs[] = {b->x, b->xb, b->rstd, b->yt, b->q_a, b->q, b->kv_a, b->o, b->y, b->g,
                     b->u, b->gx, b->router, b->scores, b->route_w, b->logits, b->cat};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
    free(b->route_idx);
    memset(b, 0, sizeof(*b));
}

// Heads attended together: the weighted sums over the cache of ATTEND_HEADS heads run side by
// side, reading each cached row once (weighted_row_sums takes up to 4 at a time).
#define ATTEND_HEADS 4

// The group of ATTEND_HEADS heads from h0 (fewer at the end) of mla_decode_attend: one token at
// position pos attends over the n = pos + 1 cached positions of layer l, with the absorbed
// weights. q (H, dn+dr): the queries (RoPE not yet applied); the results go to o (H*dv).
static void mla_attend_heads(const Model *m, const LayerParams *lp, DecodeState *s, int l, int pos,
                             int h0, float *q, float *o) {
    const Config *c = &m->cfg;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int dc = c->kv_lora_rank, half = dr / 2, n = pos + 1, H = c->num_attention_heads;
    int hn = H - h0 < ATTEND_HEADS ? H - h0 : ATTEND_HEADS;
    const float scale = m->attn_scale;  // a local: the loop below then needs no reload per j
    const float *cosr = m->rope_cos + (size_t)pos * half, *sinr = m->rope_sin + (size_t)pos * half;
    const float *cache_c = s->c_kv + (size_t)l * s->max_T * dc;
    const float *cache_k = s->k_pe + (size_t)l * s->max_T * dr;
    for (int h = h0; h < h0 + hn; h++) {
        float *qh = q + (size_t)h * (dn + dr);
        rope_rotate(qh + dn, dr, cosr, sinr, 1.0f, c->rope_interleave);
        // q_abs (dc) = W_UK[h]^T q_nope[h]; W_UK[h] is rows h*(dn+dv) .. +dn of kv_b_proj
        float *qa = s->q_abs + (size_t)h * dc;
        const float *W_UK = lp->kv_b_proj + (size_t)h * (dn + dv) * dc;
        weighted_row_sums(qa, 0, qh, 0, 1, W_UK, dc, dn, dc);
        // scores over the cache: p[j] = (q_abs . c_kv[j] + q_pe . k_pe[j]) * scale, softmax
        float *p = s->att + (size_t)h * s->max_T, *p_rope = s->att_rope + (size_t)h * s->max_T;
        dot_lanes_rows(p, qa, cache_c, dc, dc, n);
        dot_lanes_rows(p_rope, qh + dn, cache_k, dr, dr, n);
        for (int j = 0; j < n; j++) p[j] = (p[j] + p_rope[j]) * scale;
        softmax_inplace(p, n);
    }
    // o_lat (dc) = sum_j p_j c_kv[j] for the hn heads, in one pass over the cache
    weighted_row_sums(s->o_lat + (size_t)h0 * dc, dc, s->att + (size_t)h0 * s->max_T, s->max_T,
                      hn, cache_c, dc, n, dc);
    for (int h = h0; h < h0 + hn; h++) {  // o (dv) = W_UV[h] o_lat: dv dot products
        const float *W_UV = lp->kv_b_proj + ((size_t)h * (dn + dv) + dn) * dc;
        dot_lanes_rows(o + (size_t)h * dv, s->o_lat + (size_t)h * dc, W_UV, dc, dc, dv);
    }
}

// The attention of one token at position pos of layer l, once its projections are done:
// kv_a (dc+dr) = kv_a_proj_with_mqa(xb) and q (H, dn+dr) = the queries (RoPE not yet applied).
// Writes this position's cache entry, then attends over positions 0..pos of the cache with the
// absorbed weights, ATTEND_HEADS heads at a time; the result (before o_proj) goes to o (H*dv).
static void mla_decode_attend(const Model *m, const LayerParams *lp, DecodeState *s, int l,
                              int pos, const float *kv_a, float *q, float *o) {
    const Config *c = &m->cfg;
    int H = c->num_attention_heads, dr = c->qk_rope_head_dim, dc = c->kv_lora_rank;
    int half = dr / 2;
    const float *cosr = m->rope_cos + (size_t)pos * half, *sinr = m->rope_sin + (size_t)pos * half;
    float rstd;
    // the cache entry of this position: normalised c_kv and the rotated shared k_pe
    float *c_kv = s->c_kv + ((size_t)l * s->max_T + pos) * dc;
    float *k_pe = s->k_pe + ((size_t)l * s->max_T + pos) * dr;
    rmsnorm_forward(c_kv, &rstd, kv_a, dc + dr, lp->kv_a_layernorm, 1, dc, c->rms_norm_eps);
    memcpy(k_pe, kv_a + dc, (size_t)dr * sizeof(float));
    rope_rotate(k_pe, dr, cosr, sinr, 1.0f, c->rope_interleave);
    // The groups of heads in parallel only when they are worth waking a thread for
    // (TEAM_MIN_WORK; never in the small presets, where one head attends over <= 512 positions
    // of 80 floats), otherwise as plain code.
    if ((long)H * (pos + 1) * (2 * dc + dr) >= TEAM_MIN_WORK) {
#pragma omp parallel for schedule(static)
        for (int h0 = 0; h0 < H; h0 += ATTEND_HEADS) mla_attend_heads(m, lp, s, l, pos, h0, q, o);
    } else {
        for (int h0 = 0; h0 < H; h0 += ATTEND_HEADS) mla_attend_heads(m, lp, s, l, pos, h0, q, o);
    }
}

// MLA for the n rows of b: the query and kv projections of xb (n, D), then each row's
// attention over its own sequence's cache; the results (before o_proj) go to b->o (n, H*dv).
static void mla_decode_rows(const Model *m, const LayerParams *lp, DecodeState *const *s,
                            DecodeBatch *b, int l, const int *pos, int n, int alone) {
    const Config *c = &m->cfg;
    int D = c->hidden_size, H = c->num_attention_heads, dv = c->v_head_dim;
    int dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dq = c->q_lora_rank;
    int dc = c->kv_lora_rank, qw = H * (dn + dr);
    if (dq > 0) {
        linear_rows(b->q_a, b->xb, lp->q_a_proj, decode_wt(b, lp->q_a_proj), n, D, dq, alone,
                    b->yt);
        rmsnorm_forward(b->q_a, b->rstd, b->q_a, dq, lp->q_a_layernorm, n, dq, c->rms_norm_eps);
        linear_rows(b->q, b->q_a, lp->q_b_proj, decode_wt(b, lp->q_b_proj), n, dq, qw, alone,
                    b->yt);
    } else {
        linear_rows(b->q, b->xb, lp->q_b_proj, decode_wt(b, lp->q_b_proj), n, D, qw, alone,
                    b->yt);
    }
    linear_rows(b->kv_a, b->xb, lp->kv_a_proj_with_mqa, decode_wt(b, lp->kv_a_proj_with_mqa), n,
                D, dc + dr, alone, b->yt);
    for (int i = 0; i < n; i++)
        mla_decode_attend(m, lp, s[i], l, pos[i], b->kv_a + (size_t)i * (dc + dr),
                          b->q + (size_t)i * qw, b->o + (size_t)i * H * dv);
}

// x (n, D) += FFN(xb) of layer l for the n rows: the dense MLP, or a MoE layer's shared experts
// and then its routed ones (moe.c: one token alone adds its experts in routing order; a batch
// goes expert by expert, so that each expert's weights are read once for all its rows).
static void ffn_decode_rows(const Model *m, const LayerParams *lp, DecodeBatch *b, int l, int n,
                            int alone) {
    const Config *c = &m->cfg;
    int D = c->hidden_size, I = ffn_width(c, l);
    if (I > 0) {
        const float *Wt[3] = {decode_wt(b, lp->mlp_gate), decode_wt(b, lp->mlp_up),
                              decode_wt(b, lp->mlp_down)};
        swiglu_rows(b->y, b->xb, lp->mlp_gate, lp->mlp_up, lp->mlp_down, Wt, n, D, I, alone, b->g,
                    b->u, b->yt);
        for (size_t i = 0; i < (size_t)n * D; i++) b->x[i] += b->y[i];
    }
    if (!layer_is_moe(c, l)) return;
    if (alone) moe_decode_token(c, lp, b);
    else moe_decode_rows(c, lp, b, n);
}

// The decoder block, for decoding: x_out = x_mid + FFN(RMSNorm(x_mid)), x_mid = x_in +
// o_proj(MLA(RMSNorm(x_in))), on the n rows of b->x (one per sequence), in place. The same
// block serves one sequence decoding alone (decode_step: alone = 1) and a batch
// (decode_step_batch: alone = 0); they differ only in how the products run (linear_rows): one
// vector by matvec (sums in 8 lanes, the fastest for a single row), a batch by the matmul
// kernel (each weight read once for all rows; one fused chain per output). The two sum in
// different orders, so a sequence's logits alone and in a batch differ in the last bits; each
// path on its own gives the same floats at any thread count and for any batch-mates.
void decode_block(const Model *m, int l, DecodeState *const *s, DecodeBatch *b, const int *pos,
                  int n, int alone) {
    const Config *c = &m->cfg;
    const LayerParams *lp = &m->p.layers[l];
    int D = c->hidden_size;
    float eps = c->rms_norm_eps;
    rmsnorm_forward(b->xb, b->rstd, b->x, D, lp->input_layernorm, n, D, eps);
    if (is_gqa(c)) gqa_decode_rows(m, lp, s, b, l, pos, n, alone);  // Qwen2 / Llama (gqa.c)
    else mla_decode_rows(m, lp, s, b, l, pos, n, alone);
    linear_rows(b->y, b->o, lp->o_proj, decode_wt(b, lp->o_proj), n, attn_out_width(c), D, alone, b->yt);
    for (size_t i = 0; i < (size_t)n * D; i++) b->x[i] += b->y[i];
    rmsnorm_forward(b->xb, b->rstd, b->x, D, lp->post_attention_layernorm, n, D, eps);
    ffn_decode_rows(m, lp, b, l, n, alone);
}

// Embedding, the blocks, the final norm and lm_head for n rows; logits to b->logits (n, V).
static void decode_rows(const Model *m, DecodeState *const *s, DecodeBatch *b, const int *tokens,
                        const int *pos, int n, int alone) {
    const Config *c = &m->cfg;
    int D = c->hidden_size;
    for (int i = 0; i < n; i++)
        memcpy(b->x + (size_t)i * D, m->p.embed_tokens + (size_t)tokens[i] * D,
               (size_t)D * sizeof(float));
    for (int l = 0; l < c->num_hidden_layers; l++) decode_block(m, l, s, b, pos, n, alone);
    rmsnorm_forward(b->xb, b->rstd, b->x, D, m->p.norm, n, D, c->rms_norm_eps);
    linear_rows(b->logits, b->xb, m->p.lm_head, decode_wt(b, m->p.lm_head), n, D, c->vocab_size,
                alone, b->yt);
}

void decode_step(const Model *m, DecodeState *s, int token, int pos) {
    if (!s->alone) {  // the rows of a batch of one, made on the first step
        s->alone = xcalloc(1, sizeof(DecodeBatch));
        decode_batch_create(s->alone, m);
    }
    decode_rows(m, &s, s->alone, &token, &pos, 1, 1);
    memcpy(s->logits, s->alone->logits, (size_t)m->cfg.vocab_size * sizeof(float));
}

// Continues ids: feeds ids[n_cached..n) into the cache (positions n_cached..n-1), then samples
// until EOS, or until the sequence holds max_len tokens. Calls on_token (if given) for each new
// token. Returns the new length; the cache then holds every position but the last token's.
int generate(const Model *m, DecodeState *s, int *ids, int n_cached, int n, int max_len,
             const SamplingConfig *sc, Rng *rng, float *probs,
             void (*on_token)(int id, void *ctx), void *ctx) {
    if (max_len > s->max_T) max_len = s->max_T;
    int len = n;
    for (int pos = n_cached; len < max_len; pos++) {
        decode_step(m, s, ids[pos], pos);   // feeds ids[pos]; s->logits predict position pos+1
        if (pos + 1 < len) continue;         // still reading the prompt
        int next = sample_token(s->logits, m->cfg.vocab_size, sc->temperature, sc->top_p, rng,
                                probs);
        ids[len++] = next;
        if (on_token) on_token(next, ctx);
        if (next == m->cfg.eos_token_id) break;
    }
    return len;
}

// ----------------------------------------------------------------------------------------------
// Batched generation: up to DECODE_BATCH sequences take one step together. One sequence's step
// reads every weight matrix to multiply it by one vector; with n sequences the same read serves
// n vectors (a matrix product on the matmul kernel), which is what makes rollouts, evaluation
// and rejection sampling several times faster. Each sequence keeps its own cache, position and
// RNG. Row i of every product is a sum over k in a fixed order that does not involve the other
// rows, so a sequence's numbers do not depend on which sequences share its batch (or on the
// thread count).
// ----------------------------------------------------------------------------------------------

void decode_step_batch(const Model *m, DecodeState *const *s, DecodeBatch *b, const int *tokens,
                       const int *pos, int n) {
    decode_rows(m, s, b, tokens, pos, n, 0);
}

// Prompt tokens are fed several to a step: a sequence's rows at consecutive positions, in order
// (each row writes its cache entry before it attends, so the next row sees it), which is the
// matmul kernel's work on more rows for the same weight reads. The rows' floats are those of
// one token a step (no row depends on the rows beside it). A sequence of n reads up to
// DECODE_ROWS / n prompt tokens a step.
int prompt_rows_per_sequence(int n) { return n > 0 ? DECODE_ROWS / n : DECODE_ROWS; }

int add_sequence_rows(DecodeState *s, const int *ids, int from, int upto, int share,
                      DecodeState **rs, int *tokens, int *pos, int *rows) {
    int k = upto - from < share ? upto - from : share;
    for (int j = 0; j < k; j++, (*rows)++)
        rs[*rows] = s, tokens[*rows] = ids[from + j], pos[*rows] = from + j;
    return k;
}

// Positions 0..n_pos-1 of src's cache, every block (and GQA's keys and values), into dst's.
static void decode_state_copy_prefix(DecodeState *dst, const DecodeState *src, const Model *m,
                                     int n_pos) {
    const Config *c = &m->cfg;
    size_t dc = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    size_t kv = is_gqa(c) ? (size_t)c->num_key_value_heads * c->head_dim : 0;
    for (size_t l = 0; l < (size_t)model_blocks(c); l++) {
        size_t at_dst = l * dst->max_T, at_src = l * src->max_T, n = (size_t)n_pos;
        memcpy(dst->c_kv + at_dst * dc, src->c_kv + at_src * dc, n * dc * sizeof(float));
        memcpy(dst->k_pe + at_dst * dr, src->k_pe + at_src * dr, n * dr * sizeof(float));
        memcpy(dst->k + at_dst * kv, src->k + at_src * kv, n * kv * sizeof(float));
        memcpy(dst->v + at_dst * kv, src->v + at_src * kv, n * kv * sizeof(float));
    }
}

// Shared prompts. GRPO's G rollouts of a question, evaluation's k samples of a problem and
// rejection sampling's candidates begin with the same prompt, and each used to read it into its
// own cache. Here, among the n sequences with nothing cached yet, the first of each prompt (its
// leader) reads all of its prompt but the last token; that part of its cache is copied to the
// others with the same prompt, and every sequence goes on from there (its last prompt token is
// fed with the first step that samples). The copied entries are the floats each sequence would
// have computed itself (a cache entry depends on the tokens before it, never on batch-mates), so
// nothing sampled changes; the prompt is read once instead of G times.
static void read_shared_prompts(const Model *m, DecodeState *const *s, DecodeBatch *b,
                                int *const *ids, const int *len, int *fed, const int *cap, int n) {
    int leader[DECODE_BATCH], followed[DECODE_BATCH] = {0}, n_leaders = 0;
    for (int i = 0; i < n; i++) {
        leader[i] = -1;
        if (fed[i] != 0 || len[i] < 2 || len[i] >= cap[i]) continue;  // nothing to read or sample
        for (int j = 0; j < i && leader[i] < 0; j++)
            if (leader[j] == j && len[j] == len[i] &&
                memcmp(ids[j], ids[i], (size_t)len[i] * sizeof(int)) == 0)
                leader[i] = j;
        if (leader[i] < 0) leader[i] = i;  // the first with this prompt
        else n_leaders += followed[leader[i]]++ == 0;
    }
    if (n_leaders == 0) return;  // no prompt to share: the sequences read their own
    // the leaders with followers read their prompts but the last token, several tokens a step
    int share = prompt_rows_per_sequence(n_leaders);
    int tokens[DECODE_ROWS], pos[DECODE_ROWS];
    DecodeState *rs[DECODE_ROWS];
    for (;;) {
        int rows = 0;
        for (int i = 0; i < n; i++)
            if (leader[i] == i && followed[i])
                fed[i] += add_sequence_rows(s[i], ids[i], fed[i], len[i] - 1, share, rs, tokens,
                                            pos, &rows);
        if (rows == 0) break;
        decode_step_batch(m, rs, b, tokens, pos, rows);
    }
    for (int i = 0; i < n; i++)
        if (leader[i] >= 0 && leader[i] != i) {
            decode_state_copy_prefix(s[i], s[leader[i]], m, len[i] - 1);
            fed[i] = len[i] - 1;
        }
}

// generate() for n <= DECODE_BATCH sequences at once. Sequence i holds len[i] tokens in ids[i]
// of which the first fed[i] are already in s[i]'s cache (0: nothing cached), and grows until
// EOS or max_len[i] tokens (at most s[i]'s context), sampling with rng[i]; len[i] is updated,
// and fed[i] becomes the number of positions in the cache (len[i] - 1 once it has sampled: the
// last token is not fed). Calling it again with more tokens appended after ids[i][len[i]]
// continues from the cache, as generate() does with n_cached. probs: V floats of scratch.
void generate_batch_cached(const Model *m, DecodeState *const *s, DecodeBatch *b,
                           int *const *ids, int *len, int *fed, const int *max_len, int n,
                           const SamplingConfig *sc, Rng *rng, float *probs) {
    int *pos = fed, cap[DECODE_BATCH], last[DECODE_BATCH];  // per sequence: tokens fed, length
                                                            // limit, its last row of this step
    int tokens[DECODE_ROWS], rpos[DECODE_ROWS];             // per row
    DecodeState *rs[DECODE_ROWS];
    int share = prompt_rows_per_sequence(n);
    for (int i = 0; i < n; i++) cap[i] = max_len[i] < s[i]->max_T ? max_len[i] : s[i]->max_T;
    read_shared_prompts(m, s, b, ids, len, fed, cap, n);
    for (;;) {
        int rows = 0;  // the sequences still growing take this step together
        for (int i = 0; i < n; i++) {
            last[i] = -1;
            if (len[i] >= cap[i]) continue;  // then pos[i] < len[i]: ids[i][pos[i]] is fed next
            pos[i] += add_sequence_rows(s[i], ids[i], pos[i], len[i], share, rs, tokens, rpos,
                                        &rows);  // the prompt: up to `share` tokens
            last[i] = rows - 1;
        }
        if (rows == 0) return;
        decode_step_batch(m, rs, b, tokens, rpos, rows);
        for (int i = 0; i < n; i++) {
            if (last[i] < 0 || pos[i] < len[i]) continue;  // done, or still reading the prompt
            int next = sample_token(b->logits + (size_t)last[i] * m->cfg.vocab_size,
                                    m->cfg.vocab_size, sc->temperature, sc->top_p, &rng[i],
                                    probs);
            ids[i][len[i]++] = next;
            if (next == m->cfg.eos_token_id) cap[i] = len[i];  // finished: no more steps
        }
    }
}

void generate_batch(const Model *m, DecodeState *const *s, DecodeBatch *b, int *const *ids,
                    int *len, const int *max_len, int n, const SamplingConfig *sc, Rng *rng,
                    float *probs) {
    int fed[DECODE_BATCH] = {0};  // nothing cached yet
    generate_batch_cached(m, s, b, ids, len, fed, max_len, n, sc, rng, probs);
}

// Many sequences decoding at once are shared among the threads a batch at a time: threads over
// sequences, each batch on one thread, so that the products and heads inside a step run on that
// thread alone (a parallel region inside another gets a team of one) and a step pays for no
// wake-ups and no barriers. One batch per thread at least (64 rollouts on 16 threads go 4 to a
// batch), so that no thread idles, and at most DECODE_BATCH sequences per batch; sizes as even
// as possible. A sequence's numbers do not depend on its batch-mates (decode_step_batch), so the
// cut, like the thread count, never changes what is sampled.
int decode_batch_count(int n) {
    if (n <= 0) return 0;  // nothing to decode: no batch
    int batches = (n + DECODE_BATCH - 1) / DECODE_BATCH;
    int threads = openmp_threads();
    if (batches < threads) batches = threads < n ? threads : n;
    return batches;
}

void decode_batch_range(int n, int n_batches, int bi, int *first, int *count) {
    *first = (int)((long)n * bi / n_batches);
    *count = (int)((long)n * (bi + 1) / n_batches) - *first;
}

// ----------------------------------------------------------------------------------------------
// Sampling: greedy, temperature, top-p (Holtzman et al. 2020)
// ----------------------------------------------------------------------------------------------

typedef struct { float p; int id; } TokenProb;
static int by_prob_desc(const void *a, const void *b) {
    const TokenProb *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;  // ties: lower id first, so the order is total and deterministic
}

// probs (V) = softmax(logits / temperature) when temperature > 0 (untouched otherwise);
// returns the argmax, the lowest id among equals.
static int softmax_at_temperature(const float *logits, int V, float temperature, float *probs) {
    int best = 0;
    for (int v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    if (temperature <= 0.0f) return best;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += (probs[v] = r1_expf((logits[v] - logits[best]) / temperature));
    for (int v = 0; v < V; v++) probs[v] = (float)(probs[v] / sum);
    return best;
}

// The nucleus of probs (V): the smallest set of most likely tokens whose mass reaches top_p, into
// order[0 .. *n) (most likely first, the lower id first among equals; order has room for V);
// returns its mass. The tokens below floor_p = (1 - top_p) / 2V hold less than 1 - top_p
// together, so the nucleus is among the others and only those are sorted (they are the head of
// the full sorted order); should rounding leave their mass short of top_p, all V tokens are
// sorted after all.
static float nucleus(const float *probs, int V, float top_p, TokenProb *order, int *n) {
    float floor_p = (1.0f - top_p) / (2.0f * (float)V), mass = 0.0f;
    int n_sorted = 0;
    for (int v = 0; v < V; v++)
        if (probs[v] >= floor_p) order[n_sorted++] = (TokenProb){probs[v], v};
    for (int pass = 0; pass < 2; pass++) {
        qsort(order, (size_t)n_sorted, sizeof(TokenProb), by_prob_desc);
        mass = 0.0f;
        *n = 0;
        while (*n < n_sorted && (*n == 0 || mass < top_p)) mass += order[(*n)++].p;
        if (mass >= top_p || n_sorted == V) break;
        for (int v = 0; v < V; v++) order[v] = (TokenProb){probs[v], v};  // the fallback
        n_sorted = V;
    }
    return mass;
}

int sample_token(const float *logits, int V, float temperature, float top_p, Rng *rng,
                 float *probs) {
    int best = softmax_at_temperature(logits, V, temperature, probs);
    if (temperature <= 0.0f) return best;
    float r = rng_uniform(rng);
    if (top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int v = 0; v < V; v++) if (r < (cdf += probs[v])) return v;
        return best;
    }
    TokenProb *order = xcalloc((size_t)V, sizeof(TokenProb));
    int n;
    float mass = nucleus(probs, V, top_p, order, &n), cdf = 0.0f;
    int pick = order[0].id;
    for (int i = 0; i < n; i++) {
        if (r * mass < (cdf += order[i].p)) { pick = order[i].id; break; }
    }
    free(order);
    return pick;
}

void sampling_distribution(const float *logits, int V, const SamplingConfig *sc, float *probs) {
    int best = softmax_at_temperature(logits, V, sc->temperature, probs);
    if (sc->temperature <= 0.0f) {  // greedy: all the mass on the argmax
        for (int v = 0; v < V; v++) probs[v] = v == best ? 1.0f : 0.0f;
        return;
    }
    if (sc->top_p >= 1.0f) return;
    TokenProb *order = xcalloc((size_t)V, sizeof(TokenProb));  // the nucleus, renormalised
    int n;
    float mass = nucleus(probs, V, sc->top_p, order, &n);
    for (int v = 0; v < V; v++) probs[v] = 0.0f;
    for (int i = 0; i < n; i++) probs[order[i].id] = order[i].p / mass;
    free(order);
}
// ==============================================================================================
// 8. Parameter counting
// ==============================================================================================

void count_params(const Config *c, ParamCount *pc) {
    memset(pc, 0, sizeof(*pc));
    double D = c->hidden_size, V = c->vocab_size, H = c->num_attention_heads;
    double dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    double dq = c->q_lora_rank, dc = c->kv_lora_rank, E = c->n_routed_experts;
    double K = c->num_experts_per_tok, Im = c->moe_intermediate_size;
    double Is = Im * c->n_shared_experts;
    int L = c->num_hidden_layers;
    int dense = c->first_k_dense_replace < L ? c->first_k_dense_replace : L, moe = L - dense;
    pc->embed = V * D;
    pc->head = c->tie_word_embeddings ? 0 : V * D;
    double q = dq > 0 ? D * dq + dq + dq * H * (dn + dr) : D * H * (dn + dr);
    double attn = q + D * (dc + dr) + dc + dc * H * (dn + dv) + H * dv * D;
    if (is_gqa(c)) {  // q, k, v, o and the q/k/v biases
        double qw = H * c->head_dim, kw = (double)c->num_key_value_heads * c->head_dim;
        attn = D * (qw + 2 * kw) + qw * D + (c->attention_bias ? qw + 2 * kw : 0);
    }
    pc->attention = L * attn;
    pc->norms = 2.0 * D * L + D;
    pc->dense_mlp = dense * 3.0 * D * c->intermediate_size;
    pc->router = moe * (E * D + E);
    pc->shared = moe * 3.0 * D * Is;
    pc->routed = moe * E * 3.0 * D * Im;
    pc->total = pc->embed + pc->head + pc->attention + pc->norms + pc->dense_mlp + pc->router +
                pc->shared + pc->routed;
    pc->activated = pc->total - pc->routed + (E > 0 ? pc->routed * K / E : 0);
    // the MTP module: its norms and eh_proj, then one more block (a MoE one when the decoder has
    // MoE blocks); embedding and head are shared. (For the deepseek-v3 preset with
    // num_nextn_predict_layers 1: the 14B that make V3's 685B.)
    if (c->num_nextn_predict_layers) {
        double ffn = moe > 0 ? E * D + E + 3.0 * D * Is + E * 3.0 * D * Im
                             : 3.0 * D * c->intermediate_size;
        pc->mtp = 3.0 * D + 2.0 * D * D + attn + 2.0 * D + ffn;
    }
}

// ==============================================================================================
// 9. Checkpoints: the model on disk (Hugging Face hub layout), saved as one atomic set
// ==============================================================================================

// Where a checkpoint's file is to be read: in a directory this process may write, the
// recovery (checkpoint_recover) has already finished or dropped any interrupted save, so DIR/name;
// in a read-only one (a copy, a shared model) nothing is changed: a committed set still in
// DIR/.staging is read from there, an uncommitted one ignored.
static void checkpoint_file(const char *dir, const char *name, char *path, size_t n) {
    snprintf(path, n, "%s/.staging/COMMIT", dir);
    if (access(path, F_OK) == 0) {
        snprintf(path, n, "%s/.staging/%s", dir, name);
        if (access(path, R_OK) == 0) return;
    }
    snprintf(path, n, "%s/%s", dir, name);
}

// Copies the checkpoint's tensor for p into the model, after checking it: present, F32, the
// shape the config gives, every value finite. -1 with "PATH: tensor NAME: what" otherwise.
static int load_tensor(Model *m, const ParamInfo *p, StFile *f, const char *path, char *err) {
    StTensor *t = st_find(f, p->name);
    char detail[256] = "";
    if (!t) {
        snprintf(detail, sizeof(detail), "missing");
    } else if (strcmp(t->dtype, "F32") != 0) {
        snprintf(detail, sizeof(detail), "dtype %s, expected F32", t->dtype);
    } else if (t->ndim != p->ndim || t->shape[0] != p->shape[0] ||
               (p->ndim == 2 && t->shape[1] != p->shape[1])) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)t->shape[d]);
        for (int d = 0; d < p->ndim; d++)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%d", d ? ", " : "",
                     p->shape[d]);
        snprintf(detail, sizeof(detail), "shape [%s], expected [%s]", got, want);
    }
    if (detail[0]) {
        snprintf(err, R1_ERR_LEN, "%s: tensor %s: %s", path, p->name, detail);
        return -1;
    }
    float *w = m->params + p->offset;
    memcpy(w, f->data + t->begin, p->numel * sizeof(float));
    for (size_t j = 0; j < p->numel; j++)
        if (!isfinite(w[j])) {
            snprintf(err, R1_ERR_LEN, "%s: tensor %s: element %zu is not finite (%g)", path,
                     p->name, j, w[j]);
            return -1;
        }
    return 0;
}

// Every tensor of the table from f (read from path), then the check that f holds nothing else.
// The MTP module's shared tensors may be in f as the released V3 checkpoints store them
// (model_save_weights): each must equal the main model's.
static int load_weights_from(Model *m, StFile *f, const char *path, char *err) {
    int rc = 0, n_shared = 0;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) rc = load_tensor(m, &m->table[i], f, path, err);
    for (int k = 0; k < 2 && rc == 0 && m->cfg.num_nextn_predict_layers; k++) {
        char name[96];
        const float *own = mtp_shared_tensor(m, k, name, sizeof(name));
        StTensor *t = st_find(f, name);
        if (!t) continue;
        n_shared++;
        size_t numel = (size_t)m->cfg.vocab_size * m->cfg.hidden_size;
        if (strcmp(t->dtype, "F32") != 0 || t->ndim != 2 || t->shape[0] != m->cfg.vocab_size ||
            t->shape[1] != m->cfg.hidden_size ||
            memcmp(f->data + t->begin, own, numel * sizeof(float)) != 0) {
            snprintf(err, R1_ERR_LEN, "%s: tensor %s differs from the main model's (r1 shares the "
                     "MTP module's embedding and head with it)", path, name);
            rc = -1;
        }
    }
    // every tensor of the file is one the config uses (a config of fewer layers, or without
    // shared experts, must not silently drop trained weights): st_read refused duplicate names,
    // so the file holds exactly the table when it holds as many tensors
    if (rc == 0 && f->n != m->n_tensors + n_shared) {
        rc = -1;
        for (int i = 0; i < f->n; i++)
            if (!model_find_param(m, f->t[i].name)) {
                snprintf(err, R1_ERR_LEN, "%s: tensor %s is not used by the config.json beside it "
                         "(%d tensors in the file, %d in the model)", path, f->t[i].name, f->n,
                         m->n_tensors);
                break;
            }
    }
    return rc;
}

int model_load_weights(Model *m, const char *path, char *err) {
    StFile f;
    if (st_read(path, &f, err)) return -1;
    int rc = load_weights_from(m, &f, path, err);
    st_free(&f);
    return rc;
}

int checkpoint_load(Model *m, const char *dir, char *err) {
    char path[4096];
    memset(m, 0, sizeof(*m));  // model_free is safe after any failure below
    // loading never needs to write: recover an interrupted save only where we may
    if (access(dir, W_OK) == 0 && checkpoint_recover(dir, err)) return -1;
    checkpoint_file(dir, "config.json", path, sizeof(path));
    char *text = read_file(path, NULL, err);
    if (!text) return -1;
    Config c;
    char cerr[R1_ERR_LEN];
    int rc = config_from_json(text, &c, cerr);
    free(text);
    if (rc) {
        snprintf(err, R1_ERR_LEN, "%s/%s", dir, cerr);
        return -1;
    }
    checkpoint_file(dir, "model.safetensors", path, sizeof(path));
    StFile f;
    if (st_read(path, &f, err)) return -1;
    // the MTP module is there when its weights are (transformers writes
    // num_nextn_predict_layers 1 without them: then the main model alone, as transformers loads)
    if (c.num_nextn_predict_layers) {
        char name[96];
        snprintf(name, sizeof(name), "model.layers.%d.eh_proj.weight", c.num_hidden_layers);
        if (!st_find(&f, name)) c.num_nextn_predict_layers = 0;
    }
    rc = model_create(m, &c, err) || load_weights_from(m, &f, path, err) ? -1 : 0;
    st_free(&f);
    if (rc) model_free(m);
    return rc;
}

// optimizer.safetensors: adam_m.<name>, adam_v.<name> for every trainable tensor, and
// train_state (I64): [step, rng state bits, epoch, cursor, adam_step].
static int save_train_state(const Model *m, const TrainState *ts, const char *path, char *err) {
    int n = 0;
    StWrite *w = xcalloc(2 * (size_t)m->n_tensors + 1, sizeof(StWrite));
    char (*names)[128] = xcalloc(2 * (size_t)m->n_tensors, 128);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->table[i];
        if (!p->trainable) continue;
        for (int k = 0; k < 2; k++) {
            snprintf(names[n], 128, "%s.%s", k ? "adam_v" : "adam_m", p->name);
            w[n] = (StWrite){names[n], "F32", p->ndim, {p->shape[0], p->shape[1]},
                             (k ? m->adam_v : m->adam_m) + p->offset};
            n++;
        }
    }
    int64_t state[5] = {ts->step, (int64_t)ts->rng, ts->epoch, ts->cursor, m->adam_step};
    w[n++] = (StWrite){"train_state", "I64", 1, {5}, state};
    const char *meta[] = {"format", "r1.c optimizer state"};
    int rc = st_write(path, w, n, meta, 1, err);
    free(w);
    free(names);
    return rc;
}

int checkpoint_load_train_state(Model *m, TrainState *ts, const char *dir, char *err) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/optimizer.safetensors", dir);
    StFile f;
    if (st_read(path, &f, err)) return -1;
    int rc = -1;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->table[i];
        if (!p->trainable) continue;
        for (int k = 0; k < 2; k++) {
            char name[128];
            snprintf(name, sizeof(name), "%s.%s", k ? "adam_v" : "adam_m", p->name);
            StTensor *t = st_find(&f, name);
            if (!t || strcmp(t->dtype, "F32") != 0 || t->end - t->begin != p->numel * 4) {
                snprintf(err, R1_ERR_LEN, "%s: tensor %s is missing or has the wrong shape", path,
                         name);
                goto done;
            }
            memcpy((k ? m->adam_v : m->adam_m) + p->offset, f.data + t->begin, p->numel * 4);
        }
    }
    StTensor *t = st_find(&f, "train_state");
    if (!t || strcmp(t->dtype, "I64") != 0 || t->end - t->begin != 5 * 8) {
        snprintf(err, R1_ERR_LEN, "%s: train_state is missing or malformed", path);
        goto done;
    }
    int64_t state[5];
    memcpy(state, f.data + t->begin, sizeof(state));
    ts->step = state[0];
    ts->rng = (uint64_t)state[1];
    ts->epoch = state[2];
    ts->cursor = state[3];
    m->adam_step = state[4];
    rc = 0;
done:
    st_free(&f);
    return rc;
}

// The MTP module's copies of shared tensors as the released V3 checkpoints store them: k = 0
// model.layers.L.embed_tokens.weight (the embedding), k = 1 model.layers.L.shared_head.head.weight
// (lm_head). Returns the main model's tensor; name gets the copy's hub name.
const float *mtp_shared_tensor(const Model *m, int k, char *name, size_t n) {
    snprintf(name, n, "model.layers.%d.%s", m->cfg.num_hidden_layers,
             k == 0 ? "embed_tokens.weight" : "shared_head.head.weight");
    return k == 0 ? m->p.embed_tokens : m->p.lm_head;
}

int model_save_weights(const Model *m, const char *path, char *err) {
    StWrite *w = xcalloc((size_t)m->n_tensors + 2, sizeof(StWrite));
    char shared_names[2][96];
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamInfo *p = &m->table[i];
        w[n++] = (StWrite){.name = p->name, .dtype = "F32", .ndim = p->ndim,
                           .shape = {p->shape[0], p->shape[1]},
                           .data = m->params + p->offset};
    }
    for (int k = 0; k < 2 && m->cfg.num_nextn_predict_layers; k++) {  // the MTP's shared copies
        const float *own = mtp_shared_tensor(m, k, shared_names[k], sizeof(shared_names[k]));
        w[n++] = (StWrite){.name = shared_names[k], .dtype = "F32", .ndim = 2,
                           .shape = {m->cfg.vocab_size, m->cfg.hidden_size}, .data = own};
    }
    const char *meta[] = {"format", "pt"};
    int rc = st_write(path, w, n, meta, 1, err);
    free(w);
    return rc;
}

int checkpoint_save(const Model *m, const Tokenizer *tok, const TrainState *ts, const char *dir,
                    char *err) {
    char staging[4096], path[4200];
    if (make_dirs(dir, err) || checkpoint_recover(dir, err)) return -1;
    snprintf(staging, sizeof(staging), "%s/.staging", dir);
    if (make_dirs(staging, err)) return -1;
    snprintf(path, sizeof(path), "%s/config.json", staging);
    if (config_write_json(&m->cfg, path, err)) return -1;
    snprintf(path, sizeof(path), "%s/model.safetensors", staging);
    if (model_save_weights(m, path, err)) return -1;
    if (tok && tokenizer_save(tok, staging, err)) return -1;
    snprintf(path, sizeof(path), "%s/optimizer.safetensors", staging);
    if (ts && m->adam_m && save_train_state(m, ts, path, err)) return -1;
    // the set is complete: commit it (COMMIT lists its files), then move it in
    snprintf(path, sizeof(path), "%s/COMMIT", staging);
    char listing[256];
    snprintf(listing, sizeof(listing), "config.json\nmodel.safetensors\n%s%s",
             tok ? "tokenizer.json\ntokenizer_config.json\n" : "",
             ts && m->adam_m ? "optimizer.safetensors\n" : "");
    if (write_text_atomic(path, listing, err)) return -1;
    return checkpoint_recover(dir, err);
}

