// tests/test_mtp.c: multi-token prediction and self-speculative decoding (mtp.c).
//
// What is checked, and why:
//   1. The MTP loss by hand (its targets are token t+2, its mask the SFT mask shifted once more),
//      and every gradient of L_main + lambda L_MTP by finite differences: the module's own
//      tensors, its block, and the paths by which it reaches the main model (h = ln_f, the shared
//      embedding and lm_head). The MTP block is a MoE block here, as DeepSeek-V3's layer 61.
//   2. Freezing: with lambda 0 a training step leaves the module bit for bit (no weight decay on
//      a module no loss trains); with lambda > 0 it moves.
//   3. Checkpoints: the hub layout (model.layers.L.*, with the shared copies), a round trip,
//      transformers' "num_nextn_predict_layers": 1 without the weights (the main model alone), a
//      shared copy that differs (refused), impossible configs.
//   4. Speculative decoding at temperature 0 gives generate_batch's tokens exactly, in one call
//      and in two (a cache continued), with the drafts of a trained module mostly accepted.
//   5. At temperature > 0 it samples the model's own distribution: the acceptance rule alone
//      (chi-square against p over 200000 draws; a rule that always accepts fails the same test),
//      and the first two sampled tokens of a trained model against their exact joint
//      distribution, with and without top-p.
#define _POSIX_C_SOURCE 200809L  // mkdtemp
#include "r1.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                        \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

// The tiny preset with 2 blocks (1 dense + 1 MoE) and the MTP module (a MoE block: block 2).
static Config mtp_config(void) {
    Config c;
    char err[R1_ERR_LEN];
    assert_int_equal(config_preset("tiny", &c, err), 0);
    c.num_hidden_layers = 2;
    c.first_k_dense_replace = 1;
    c.num_nextn_predict_layers = 1;
    c.initializer_range = 0.1f;
    return c;
}

// Random weights, norms away from 1 and the routing bias away from 0 (as tests/test_r1.c does).
static void make_model(Model *m, const Config *c, uint64_t seed, int B, int T) {
    char err[R1_ERR_LEN];
    EXPECT(model_create(m, c, err) == 0, "model_create: %s", err);
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
    EXPECT(model_alloc_training(m, B, T, err) == 0, "%s", err);
}

static void random_ids(int *ids, int n, int V, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) ids[i] = (int)(rng_next(&rng) % (uint64_t)V);
}

// Mean cross-entropy, in double, of rows t of logits (B*T, V) against ids[t + shift] over the
// positions with t + shift < T within the sequence and mask[t + shift] != 0 (mask NULL: all).
static double ce_double(const float *logits, const int *ids, const float *mask, int B, int T,
                        int V, int shift) {
    double total = 0.0;
    int count = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + shift < T; t++) {
            int at = b * T + t + shift;
            if (mask && mask[at] == 0.0f) continue;
            const float *z = logits + (size_t)(b * T + t) * V;
            double mx = z[0], sum = 0.0;
            for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            for (int v = 0; v < V; v++) sum += exp((double)z[v] - mx);
            total += log(sum) + mx - z[ids[at]];
            count++;
        }
    return count ? total / count : 0.0;
}

// ==============================================================================================
// 1. The loss by hand, every gradient by finite differences
// ==============================================================================================

static void test_mtp_loss_by_hand(void **state) {
    (void)state;
    Config c = mtp_config();
    enum { B = 2, T = 9 };
    int V = c.vocab_size, ids[B * T];
    float mask[B * T];
    Model m;
    make_model(&m, &c, 3, B, T);
    mtp_set_training(&m, 0.5f);
    random_ids(ids, B * T, V, 4);
    for (int i = 0; i < B * T; i++) mask[i] = (i % T) >= 3 && i % 5 != 0;  // an SFT-like mask
    model_forward(&m, ids, B, T);
    float loss = mtp_forward(&m, ids, mask);
    double want = ce_double(m.acts.mtp_logits, ids, mask, B, T, V, 2);  // row t -> token t+2
    EXPECT(fabs(loss - want) < 1e-5 * want, "MTP loss %.9g, by hand %.9g", loss, want);
    // its gradient is lambda (softmax - onehot(t+2)) / count on the counted rows, 0 elsewhere
    int count = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 2 < T; t++) count += mask[b * T + t + 2] != 0.0f;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *z = m.acts.mtp_logits + (size_t)(b * T + t) * V;
            const float *dz = m.acts.mtp_dlogits + (size_t)(b * T + t) * V;
            int counted = t + 2 < T && mask[b * T + t + 2] != 0.0f;
            double mx = z[0], sum = 0.0;
            for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            for (int v = 0; v < V; v++) sum += exp((double)z[v] - mx);
            for (int v = 0; v < V; v++) {
                double g = counted ? 0.5 * (exp((double)z[v] - mx) / sum -
                                            (v == ids[b * T + t + 2])) / count : 0.0;
                EXPECT(fabs(dz[v] - g) < 1e-6, "mtp_dlogits[%d,%d,%d] = %g, by hand %g", b, t, v,
                       dz[v], g);
            }
        }
    model_free(&m);
}

// Copies the routing of every MoE block (the MTP's too) into route.
static void save_routing(const Model *m, int *route, size_t NK) {
    for (int l = 0, k = 0; l < model_blocks(&m->cfg); l++)
        if (layer_is_moe(&m->cfg, l))
            memcpy(route + NK * k++, m->acts.layers[l].topk_idx, NK * sizeof(int));
}
static int same_routing(const Model *m, const int *route, size_t NK) {
    for (int l = 0, k = 0; l < model_blocks(&m->cfg); l++)
        if (layer_is_moe(&m->cfg, l) &&
            memcmp(route + NK * k++, m->acts.layers[l].topk_idx, NK * sizeof(int)) != 0)
            return 0;
    return 1;
}

// L = CE_main + lambda CE_MTP, in double.
static double total_loss(Model *m, const int *ids, int B, int T, float lambda) {
    model_forward(m, ids, B, T);
    mtp_forward(m, ids, NULL);
    int V = m->cfg.vocab_size;
    return ce_double(m->acts.logits, ids, NULL, B, T, V, 1) +
           lambda * ce_double(m->acts.mtp_logits, ids, NULL, B, T, V, 2);
}

// The module's own tensors, its block's attention, and the shared ones: every element; 6
// elements (the largest gradient and 5 random ones) of every other tensor. Central differences
// at eps and 2 eps with Richardson's combination, as tests/test_r1.c's whole-model check; a
// sample whose perturbed forwards route some token differently measures a jump and is skipped.
static int every_element(const ParamInfo *p) {
    return (p->mtp && (p->ndim == 1 || strstr(p->name, "eh_proj") || strstr(p->name, "self_attn"))) ||
           strstr(p->name, "model.norm") != NULL;
}

static void test_gradcheck_mtp(void **state) {
    (void)state;
    Config c = mtp_config();
    enum { B = 2, T = 7 };
    const float lambda = 0.5f;
    int V = c.vocab_size, ids[B * T];
    Model m;
    make_model(&m, &c, 5, B, T);
    mtp_set_training(&m, lambda);
    random_ids(ids, B * T, V, 9);
    float *dlogits = malloc(sizeof(float) * B * T * V);
    model_forward(&m, ids, B, T);
    cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    mtp_forward(&m, ids, NULL);
    model_zero_grad(&m);
    mtp_backward(&m);
    model_backward_plus(&m, ids, dlogits, m.acts.mtp_dh);
    size_t NK = (size_t)B * T * c.num_experts_per_tok;
    int *route = malloc(sizeof(int) * model_blocks(&c) * NK);
    save_routing(&m, route, NK);
#ifdef _OPENMP
    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    double worst = 0.0;
    char worst_what[200] = "";
    int samples = 0, skipped = 0, mtp_tensors = 0;
    Rng rng;
    rng_seed(&rng, 77);
    for (int ti = 0; ti < m.n_tensors; ti++) {
        ParamInfo *p = &m.table[ti];
        float *w = m.params + p->offset;
        const float *g = m.grads + p->offset;
        mtp_tensors += p->mtp;
        if (!p->trainable) continue;
        size_t jmax = 0;
        for (size_t j = 0; j < p->numel; j++) if (fabsf(g[j]) > fabsf(g[jmax])) jmax = j;
        if (!p->expert)
            EXPECT(fabsf(g[jmax]) > 1e-5f, "%s has an all-zero gradient", p->name);
        int small = strstr(p->name, "mlp.gate.weight") != NULL;  // router: flips at 1e-2
        const float eps = small ? 2e-3f : 1e-2f;
        const double atol = small ? 5e-5 : 3e-5;
        int all = every_element(p);
        size_t n = all ? p->numel : 6;
        for (size_t k = 0; k < n; k++) {
            size_t j = all ? k : k == 0 ? jmax : (size_t)(rng_next(&rng) % p->numel);
            float w0 = w[j], wv[4];
            double lv[4];
            int same = 1;
            for (int q = 0; q < 4; q++) {
                w[j] = w0 + (q < 2 ? 1.0f : 2.0f) * eps * (q % 2 ? -1.0f : 1.0f);
                wv[q] = w[j];
                lv[q] = total_loss(&m, ids, B, T, lambda);
                same = same && same_routing(&m, route, NK);
            }
            w[j] = w0;
            samples++;
            if (!same) {
                skipped++;
                continue;
            }
            double d1 = (lv[0] - lv[1]) / ((double)wv[0] - wv[1]);
            double d2 = (lv[2] - lv[3]) / ((double)wv[2] - wv[3]);
            double fd = (4 * d1 - d2) / 3, an = g[j];
            double ratio = fabs(fd - an) / (atol + 1e-2 * fmax(fabs(fd), fabs(an)));
            if (ratio > worst) {
                worst = ratio;
                snprintf(worst_what, sizeof(worst_what), "%s[%zu]: analytic %.6g, fd %.6g",
                         p->name, j, an, fd);
            }
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(saved_threads);
#endif
    print_message("    MTP gradient check (lambda %.1f): %d tensors of the module, %d samples, %d "
                  "skipped (routing flip); worst error %.2f x tolerance (%s)\n", lambda,
                  mtp_tensors, samples, skipped, worst, worst_what);
    EXPECT(mtp_tensors > 10, "only %d tensors are the module's", mtp_tensors);
    EXPECT(skipped * 4 <= samples, "%d of %d samples skipped", skipped, samples);
    EXPECT(worst <= 1.0, "gradient mismatch: %s (%.2f x tolerance)", worst_what, worst);
    free(route);
    free(dlogits);
    model_free(&m);
}

// ==============================================================================================
// 2. Frozen unless trained
// ==============================================================================================

// One AdamW step on L_main (+ lambda L_MTP); returns 1 if any tensor of the module changed.
static int module_moves(float lambda) {
    Config c = mtp_config();
    enum { B = 2, T = 8 };
    int V = c.vocab_size, ids[B * T];
    Model m;
    make_model(&m, &c, 6, B, T);
    mtp_set_training(&m, lambda);
    random_ids(ids, B * T, V, 10);
    float *before = malloc(sizeof(float) * m.n_params);
    memcpy(before, m.params, sizeof(float) * m.n_params);
    float *dlogits = malloc(sizeof(float) * B * T * V);
    model_forward(&m, ids, B, T);
    cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    if (lambda > 0) mtp_forward(&m, ids, NULL);
    model_zero_grad(&m);
    if (lambda > 0) mtp_backward(&m);
    model_backward_plus(&m, ids, dlogits, lambda > 0 ? m.acts.mtp_dh : NULL);
    AdamWConfig oc = adamw_defaults();  // weight decay 0.1: would shrink a frozen module
    adamw_step(&m, &oc);
    int moved = 0, main_moved = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamInfo *p = &m.table[i];
        int diff = memcmp(before + p->offset, m.params + p->offset, p->numel * sizeof(float)) != 0;
        if (p->mtp) moved |= diff;
        else main_moved |= diff;
    }
    EXPECT(main_moved, "%s", "the main model did not move");
    free(before);
    free(dlogits);
    model_free(&m);
    return moved;
}

static void test_mtp_frozen_unless_trained(void **state) {
    (void)state;
    EXPECT(!module_moves(0.0f), "%s", "lambda 0: a tensor of the frozen module changed");
    EXPECT(module_moves(0.3f), "%s", "lambda 0.3: the module did not train");
}

// ==============================================================================================
// 3. Checkpoints and configs
// ==============================================================================================

static void test_mtp_checkpoint(void **state) {
    (void)state;
    char dir[] = "/tmp/r1_mtp_XXXXXX", path[256], err[R1_ERR_LEN];
    EXPECT(mkdtemp(dir) != NULL, "%s", "mkdtemp");
    Config c = mtp_config();
    Model m, back;
    make_model(&m, &c, 8, 1, 4);
    EXPECT(checkpoint_save(&m, NULL, NULL, dir, err) == 0, "%s", err);
    // the hub layout: block L's tensors, and the shared copies V3's files have
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    StFile f;
    EXPECT(st_read(path, &f, err) == 0, "%s", err);
    const char *names[] = {"model.layers.2.enorm.weight", "model.layers.2.hnorm.weight",
                           "model.layers.2.eh_proj.weight", "model.layers.2.shared_head.norm.weight",
                           "model.layers.2.shared_head.head.weight",
                           "model.layers.2.embed_tokens.weight",
                           "model.layers.2.self_attn.kv_b_proj.weight",
                           "model.layers.2.mlp.experts.7.down_proj.weight"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        EXPECT(st_find(&f, names[i]) != NULL, "%s is not in the file", names[i]);
    EXPECT(st_find(&f, "model.layers.2.eh_proj.weight")->shape[1] == 2 * c.hidden_size, "%s",
           "eh_proj is (D, 2D)");
    st_free(&f);
    EXPECT(checkpoint_load(&back, dir, err) == 0, "%s", err);
    EXPECT(back.cfg.num_nextn_predict_layers == 1, "%s", "the module was not loaded");
    EXPECT(back.n_params == m.n_params &&
           memcmp(back.params, m.params, m.n_params * sizeof(float)) == 0, "%s",
           "the weights did not round-trip");
    model_free(&back);
    // a shared copy that is not the main model's tensor: refused, naming it
    float *head = m.p.lm_head;
    head[3] += 1.0f;  // the copy follows lm_head; write lm_head back, the copy stays changed
    EXPECT(model_save_weights(&m, path, err) == 0, "%s", err);
    head[3] -= 1.0f;
    StFile g;
    EXPECT(st_read(path, &g, err) == 0, "%s", err);
    StWrite *w = calloc((size_t)g.n, sizeof(StWrite));
    for (int i = 0; i < g.n; i++) {
        StTensor *t = &g.t[i];
        w[i] = (StWrite){.name = t->name, .dtype = t->dtype, .ndim = t->ndim,
                         .shape = {t->shape[0], t->shape[1]}, .data = g.data + t->begin};
        if (strcmp(t->name, "lm_head.weight") == 0) w[i].data = m.p.lm_head;
    }
    EXPECT(st_write(path, w, g.n, NULL, 0, err) == 0, "%s", err);
    free(w);
    st_free(&g);
    EXPECT(checkpoint_load(&back, dir, err) == -1, "%s", "a differing shared copy was accepted");
    EXPECT(strstr(err, "shared_head.head.weight") && strstr(err, "differs"), "message: %s", err);
    // transformers' "num_nextn_predict_layers": 1 without the module's weights: the main model
    Config plain = c;
    plain.num_nextn_predict_layers = 0;
    Model p;
    make_model(&p, &plain, 9, 1, 4);
    EXPECT(checkpoint_save(&p, NULL, NULL, dir, err) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    EXPECT(config_write_json(&c, path, err) == 0, "%s", err);  // says 1
    EXPECT(checkpoint_load(&back, dir, err) == 0, "%s", err);
    EXPECT(back.cfg.num_nextn_predict_layers == 0, "%s", "a module without weights was made");
    model_free(&back);
    model_free(&p);
    model_free(&m);
    // impossible configs
    Config bad = c;
    bad.num_nextn_predict_layers = 2;
    EXPECT(config_validate(&bad, err) == -1 && strstr(err, "num_nextn_predict_layers"), "%s",
           "depth 2 accepted");
    EXPECT(config_preset("qwen-student", &bad, err) == 0, "%s", err);
    bad.num_nextn_predict_layers = 1;
    EXPECT(config_validate(&bad, err) == -1 && strstr(err, "MTP"), "%s",
           "a Qwen2 model with an MTP module accepted");
}

// ==============================================================================================
// 4-5. Speculative decoding: the model's tokens at temperature 0, its distribution above
// ==============================================================================================
// A module worth drafting with: the tiny model trained on arithmetic progressions mod V (each
// sequence t_{i+1} = t_i + d, d in 1..4), which the main model and the module both learn after a
// few hundred steps, then with 10% of tokens random (so that some drafts fail).
static void progression_batch(int *ids, int B, int T, int V, Rng *rng) {
    for (int b = 0; b < B; b++) {
        int d = 1 + (int)(rng_next(rng) % 4), t0 = (int)(rng_next(rng) % (uint64_t)V);
        for (int t = 0; t < T; t++) {
            int x = (t0 + d * t) % V;
            if (rng_uniform(rng) < 0.1f) x = (int)(rng_next(rng) % (uint64_t)V);
            ids[b * T + t] = x == 1 ? 2 : x;  // never EOS inside
        }
    }
}

static Model trained;  // made once by the first test that needs it
static int trained_ready;

static Model *trained_model(void) {
    if (trained_ready) return &trained;
    Config c = mtp_config();
    c.max_position_embeddings = 64;
    enum { B = 16, T = 24 };
    int V = c.vocab_size, ids[B * T];
    make_model(&trained, &c, 21, B, T);
    mtp_set_training(&trained, 0.5f);
    float *dlogits = malloc(sizeof(float) * B * T * V);
    AdamWConfig oc = adamw_defaults();
    oc.lr = 1e-2f;
    Rng rng;
    rng_seed(&rng, 22);
    float l_main = 0, l_mtp = 0;
    for (int step = 0; step < 300; step++) {
        progression_batch(ids, B, T, V, &rng);
        model_forward(&trained, ids, B, T);
        l_main = cross_entropy_forward_backward(trained.acts.logits, ids, NULL, B, T, V, dlogits);
        l_mtp = mtp_forward(&trained, ids, NULL);
        model_zero_grad(&trained);
        mtp_backward(&trained);
        model_backward_plus(&trained, ids, dlogits, trained.acts.mtp_dh);
        adamw_step(&trained, &oc);
        moe_update_bias(&trained, 1e-3f);
        moe_reset_load(&trained);
    }
    print_message("    trained on progressions: main loss %.3f, MTP loss %.3f\n", l_main, l_mtp);
    EXPECT(l_main < 1.5f && l_mtp < 2.0f, "training failed: %g %g", l_main, l_mtp);
    free(dlogits);
    trained_ready = 1;
    return &trained;
}

// n prompts (progressions of 5 tokens), continued to max_len[i] tokens: plainly (spec 0, with
// generate_batch_cached) or speculatively, in one call or in two (the first to max_len - 7).
static void continue_prompts(Model *m, int n, const int *max_len, const SamplingConfig *sc,
                             int spec, int two_calls, int *out, SpecCount *count) {
    DecodeState st[DECODE_BATCH], *sp[DECODE_BATCH];
    DecodeBatch b;
    decode_batch_create(&b, m);
    int *ids[DECODE_BATCH], len[DECODE_BATCH], fed[DECODE_BATCH], lim[DECODE_BATCH];
    Rng rng[DECODE_BATCH];
    float *probs = calloc((size_t)m->cfg.vocab_size, sizeof(float));
    char err[R1_ERR_LEN];
    for (int i = 0; i < n; i++) {
        EXPECT(decode_state_create(&st[i], m, 64, err) == 0, "%s", err);
        sp[i] = &st[i];
        ids[i] = out + (size_t)i * 64;
        for (int t = 0; t < 5; t++) ids[i][t] = (3 + 7 * i + (1 + i % 3) * t) % m->cfg.vocab_size;
        len[i] = 5, fed[i] = 0;
        rng_seed(&rng[i], 100 + i);
        count[i] = (SpecCount){0, 0};
    }
    for (int call = two_calls ? 0 : 1; call < 2; call++) {
        for (int i = 0; i < n; i++) lim[i] = call == 0 ? max_len[i] - 7 : max_len[i];
        if (spec)
            generate_batch_speculative(m, sp, &b, ids, len, fed, lim, n, sc, rng, probs, count);
        else
            generate_batch_cached(m, sp, &b, ids, len, fed, lim, n, sc, rng, probs);
    }
    for (int i = 0; i < n; i++) {
        for (int t = len[i]; t < 64; t++) ids[i][t] = -1;
        decode_state_free(&st[i]);
    }
    decode_batch_free(&b);
    free(probs);
}

static void test_speculative_greedy_exact(void **state) {
    (void)state;
    Model *m = trained_model();
    enum { N = 6 };
    int max_len[N] = {40, 33, 64, 20, 51, 64}, plain[N * 64], spec[N * 64];
    SamplingConfig greedy = {0.0f, 1.0f, 1};
    SpecCount count[N], none[N];
    long drafted = 0, accepted = 0;
    for (int two = 0; two < 2; two++) {
        continue_prompts(m, N, max_len, &greedy, 0, two, plain, none);
        continue_prompts(m, N, max_len, &greedy, 1, two, spec, count);
        for (int i = 0; i < N; i++) {
            for (int t = 0; t < 64; t++)
                EXPECT(plain[i * 64 + t] == spec[i * 64 + t], "sequence %d (%s): token %d is %d "
                       "speculatively, %d plainly", i, two ? "two calls" : "one call", t,
                       spec[i * 64 + t], plain[i * 64 + t]);
            drafted += count[i].drafted;
            accepted += count[i].accepted;
        }
    }
    print_message("    greedy: the same tokens; %ld of %ld drafts accepted (%.0f%%)\n", accepted,
                  drafted, 100.0 * accepted / drafted);
    // both branches ran: most drafts stand (the module learned), some fall (the random tokens)
    EXPECT(accepted * 2 > drafted && accepted < drafted, "%ld of %ld accepted", accepted, drafted);
}

// Speculative rollouts (sample_rollouts, batches shared among the threads) are the same at 1 and
// 3 threads: each sequence's draws come from its own RNG and its floats from its own rows.
static void test_speculative_rollouts_threads(void **state) {
    (void)state;
    Model *m = trained_model();
    enum { N = 24, CTX = 64 };
    int out[2][N][CTX], lens[2][N];
    long drafted = 0;
    SamplingConfig sc = {1.0f, 1.0f, 1};
#ifdef _OPENMP
    int saved = omp_get_max_threads();
#endif
    for (int run = 0; run < 2; run++) {
#ifdef _OPENMP
        omp_set_num_threads(run ? 3 : 1);
#endif
        Rollout *r = rollouts_new(N, CTX);
        for (int i = 0; i < N; i++) {  // prompts of 5 to 11 tokens: read in chunks of several sizes
            int n_prompt = 5 + i % 7;
            for (int t = 0; t < n_prompt; t++)
                r[i].ids[t] = (2 + 5 * i + (1 + i % 4) * t) % m->cfg.vocab_size;
            r[i].n_prompt = r[i].n = n_prompt;
        }
        sample_rollouts(m, NULL, r, N, 30, &sc, 9);
        for (int i = 0; i < N; i++) {
            lens[run][i] = r[i].n;
            memcpy(out[run][i], r[i].ids, sizeof(int) * CTX);
            for (int t = r[i].n; t < CTX; t++) out[run][i][t] = 0;
            drafted += r[i].drafted;
        }
        rollouts_free(r, N);
    }
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    EXPECT(drafted > 0, "%s", "no drafts: the rollouts were not speculative");
    for (int i = 0; i < N; i++)
        EXPECT(lens[0][i] == lens[1][i] && memcmp(out[0][i], out[1][i], sizeof(out[0][i])) == 0,
               "rollout %d differs between 1 and 3 threads", i);
}

// Pearson's chi-square of counts against probabilities over V cells, the cells expected below
// 5 merged into one; *df gets the degrees of freedom. The critical value at p = 1e-5 (Wilson-
// Hilferty): a test with fixed seeds that passes says the two agree to this power.
static double chi_square(const long *counts, const double *p, int V, long n, int *df) {
    double chi = 0.0, rest_e = 0.0;
    long rest_o = 0;
    int cells = 0;
    for (int v = 0; v < V; v++) {
        double e = p[v] * n;
        if (e < 5.0) {
            rest_e += e, rest_o += counts[v];
            continue;
        }
        chi += (counts[v] - e) * (counts[v] - e) / e;
        cells++;
    }
    if (rest_e > 0) {
        chi += (rest_o - rest_e) * (rest_o - rest_e) / fmax(rest_e, 1e-9);
        cells++;
    }
    *df = cells - 1;
    return chi;
}
static double chi_critical(int df) {
    double z = 4.265, k = 2.0 / (9.0 * df);  // z: the normal's 1 - 1e-5 quantile
    return df * pow(1.0 - k + z * sqrt(k), 3.0);
}

static void test_speculative_accept_distribution(void **state) {
    (void)state;
    enum { V = 6, DRAWS = 200000 };
    const float p[V] = {0.05f, 0.30f, 0.10f, 0.25f, 0.20f, 0.10f};  // the target
    const float q[V] = {0.30f, 0.05f, 0.25f, 0.10f, 0.20f, 0.10f};  // a poor draft
    double pd[V];
    for (int v = 0; v < V; v++) pd[v] = p[v];
    long got[V] = {0}, always[V] = {0}, acc = 0;
    float residual[V];
    Rng rng;
    rng_seed(&rng, 5);
    for (int i = 0; i < DRAWS; i++) {
        float r = rng_uniform(&rng), cdf = 0.0f;
        int d = V - 1;
        for (int v = 0; v < V; v++) if (r < (cdf += q[v])) { d = v; break; }
        int accepted;
        got[speculative_accept(p, q, d, &rng, residual, V, &accepted)]++;
        acc += accepted;
        always[d]++;  // the control: a rule that keeps every draft samples q
    }
    int df, df2;
    double chi = chi_square(got, pd, V, DRAWS, &df), chi2 = chi_square(always, pd, V, DRAWS, &df2);
    // acceptance: sum_v min(p, q) = 0.05 + 0.05 + 0.10 + 0.10 + 0.20 + 0.10 = 0.60
    double rate = (double)acc / DRAWS;
    print_message("    acceptance rule: chi-square %.1f (df %d, critical %.1f); always accepting: "
                  "%.0f; accepted %.4f (sum min(p, q) = 0.60)\n", chi, df, chi_critical(df), chi2,
                  rate);
    EXPECT(chi < chi_critical(df), "the accepted tokens are not distributed as p: chi %.1f", chi);
    EXPECT(chi2 > chi_critical(df2), "%s", "the control passed: the test has no power");
    EXPECT(fabs(rate - 0.60) < 0.005, "acceptance rate %.4f, expected 0.60", rate);
}

// Tokens 2 and 3 sampled after a prompt, speculatively, against their exact distribution
// p(t2, t3) = sum_t1 p(t1) p(t2 | t1) p(t3 | t1, t2) (sampling_distribution of the model's
// logits, a batch of one). The first token comes from the main model (the module drafts nothing
// before the prompt is read); the second is the module's draft, accepted or not, and the third
// is then the bonus token of an accepted draft (drawn from the draft's own row) or the main
// model's after a rejected one (itself drafted): every branch of spec_advance. An EOS ends the
// sequence: t1 = EOS is cell V*V, t2 = EOS cell V*V + 1.
static void joint_check(Model *m, float temperature, float top_p) {
    enum { RUNS = 6000, P = 5 };
    int V = m->cfg.vocab_size, prompt[P] = {9, 12, 15, 18, 21};
    SamplingConfig sc = {temperature, top_p, 1};
    char err[R1_ERR_LEN];
    int eos = m->cfg.eos_token_id, cells = V * V + 2;
    // exact: p1 after the prompt, p2 after each t1, p3 after each (t1, t2)
    double *joint = calloc((size_t)cells, sizeof(double));
    float *p1 = calloc((size_t)V, sizeof(float)), *p2 = calloc((size_t)V, sizeof(float));
    float *p3 = calloc((size_t)V, sizeof(float));
    DecodeBatch b;
    decode_batch_create(&b, m);
    DecodeState s, *sp = &s;
    EXPECT(decode_state_create(&s, m, 16, err) == 0, "%s", err);
    for (int t = 0; t < P; t++) decode_step_batch(m, &sp, &b, &prompt[t], &t, 1);
    sampling_distribution(b.logits, V, &sc, p1);
    joint[V * V] = p1[eos];
    for (int t1 = 0; t1 < V; t1++) {
        if (p1[t1] == 0.0f || t1 == eos) continue;
        int pos1 = P, pos2 = P + 1;
        decode_step_batch(m, &sp, &b, &t1, &pos1, 1);
        sampling_distribution(b.logits, V, &sc, p2);
        joint[V * V + 1] += (double)p1[t1] * p2[eos];
        for (int t2 = 0; t2 < V; t2++) {
            if (p2[t2] == 0.0f || t2 == eos) continue;
            decode_step_batch(m, &sp, &b, &t2, &pos2, 1);  // the cache at P still holds t1
            sampling_distribution(b.logits, V, &sc, p3);
            for (int t3 = 0; t3 < V; t3++) joint[t2 * V + t3] += (double)p1[t1] * p2[t2] * p3[t3];
        }
    }
    decode_state_free(&s);
    // sampled: RUNS sequences, 8 to a batch, each with its own seed
    long *counts = calloc((size_t)cells, sizeof(long)), drafted = 0, accepted = 0, went_on = 0;
    float *probs = calloc((size_t)V, sizeof(float));
    for (int r0 = 0; r0 < RUNS; r0 += 8) {
        DecodeState st[8], *sps[8];
        int buf[8][16], *ids[8], len[8], fed[8], lim[8];
        Rng rng[8];
        SpecCount count[8] = {{0, 0}};
        for (int i = 0; i < 8; i++) {
            EXPECT(decode_state_create(&st[i], m, 16, err) == 0, "%s", err);
            sps[i] = &st[i];
            memcpy(buf[i], prompt, sizeof(prompt));
            ids[i] = buf[i], len[i] = P, fed[i] = 0, lim[i] = P + 3;
            rng_seed(&rng[i], 7000 + r0 + i);
        }
        generate_batch_speculative(m, sps, &b, ids, len, fed, lim, 8, &sc, rng, probs, count);
        for (int i = 0; i < 8; i++) {
            int cell, want;
            if (buf[i][P] == eos) cell = V * V, want = P + 1;
            else if (buf[i][P + 1] == eos) cell = V * V + 1, want = P + 2;
            else cell = buf[i][P + 1] * V + buf[i][P + 2], want = P + 3;
            EXPECT(len[i] == want, "run %d: length %d, expected %d", r0 + i, len[i], want);
            counts[cell]++;
            went_on += buf[i][P] != eos;
            drafted += count[i].drafted, accepted += count[i].accepted;
            decode_state_free(&st[i]);
        }
    }
    int df;
    double chi = chi_square(counts, joint, cells, RUNS, &df);
    print_message("    T %.1f top-p %.2f: tokens 2 and 3 vs sum_t1 p(t1) p(t2|t1) p(t3|t1,t2): "
                  "chi-square %.1f (df %d, critical %.1f); %ld of %ld drafts accepted\n",
                  temperature, top_p, chi, df, chi_critical(df), accepted, drafted);
    EXPECT(df >= 3, "only %d degrees of freedom: the test says little", df);
    // every run that went on past t1 drafted t2; some drafted t3 too (after a rejection)
    EXPECT(drafted > went_on, "%ld drafts in %ld runs that went on", drafted, went_on);
    EXPECT(accepted > 0 && accepted < drafted, "%ld of %ld accepted", accepted, drafted);
    EXPECT(chi < chi_critical(df), "speculative samples are not the model's distribution: chi %.1f "
           "(df %d)", chi, df);
    decode_batch_free(&b);
    free(counts);
    free(probs);
    free(joint);
    free(p1);
    free(p2);
    free(p3);
}

static void test_speculative_joint_distribution(void **state) {
    (void)state;
    Model *m = trained_model();
    joint_check(m, 1.5f, 1.0f);
    joint_check(m, 1.5f, 0.9f);
}

// The counts DeepSeek-V3 publishes: 671B in the model, 685B with the MTP module, whose 14B include
// the copies of the embedding and the output head its checkpoint stores.
static void test_mtp_count_deepseek_v3(void **state) {
    (void)state;
    Config c;
    char err[R1_ERR_LEN];
    EXPECT(config_preset("deepseek-v3", &c, err) == 0, "%s", err);
    ParamCount pc;
    count_params(&c, &pc);
    double copies = 2.0 * c.vocab_size * c.hidden_size;
    print_message("    deepseek-v3: %.2fB + MTP %.2fB (%.2fB with the copies) = %.2fB\n",
                  pc.total / 1e9, pc.mtp / 1e9, (pc.mtp + copies) / 1e9,
                  (pc.total + pc.mtp + copies) / 1e9);
    EXPECT(fabs(pc.total / 1e9 - 671.0) < 0.5, "main model %.2fB, V3 says 671B", pc.total / 1e9);
    EXPECT(fabs((pc.mtp + copies) / 1e9 - 14.0) < 0.6, "MTP %.2fB, V3 says 14B",
           (pc.mtp + copies) / 1e9);
    EXPECT(fabs((pc.total + pc.mtp + copies) / 1e9 - 685.0) < 0.6, "%.2fB, V3 says 685B",
           (pc.total + pc.mtp + copies) / 1e9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtp_loss_by_hand),
        cmocka_unit_test(test_gradcheck_mtp),
        cmocka_unit_test(test_mtp_frozen_unless_trained),
        cmocka_unit_test(test_mtp_checkpoint),
        cmocka_unit_test(test_mtp_count_deepseek_v3),
        cmocka_unit_test(test_speculative_accept_distribution),
        cmocka_unit_test(test_speculative_greedy_exact),
        cmocka_unit_test(test_speculative_joint_distribution),
        cmocka_unit_test(test_speculative_rollouts_threads),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (trained_ready) model_free(&trained);
    return failed;
}
