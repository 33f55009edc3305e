// tests/test_gqa.c: the Qwen2 / Llama family (gqa.c and its dispatch in r1.c and formats.c).
// (Its forward, every gradient and greedy decoding against transformers: tests/test_reference.c
// on tests/fixtures/qwen2-tiny and llama-tiny, made by tests/make_qwen_reference.py.)
//
// What is checked, and why:
//   1. Every gradient of a whole tiny model by central finite differences: every element of
//      every tensor (embedding, q/k/v weights and biases, o_proj, norms, MLP, lm_head), for a
//      Qwen2 config (biases, 2 query heads per kv head) and a Llama one (no biases, one kv head
//      for 4 query heads, head_dim != hidden / heads). The bias backward sums over tokens and the
//      grouped dK/dV add over the heads of a group: both are exercised.
//   2. Decoding with the K/V cache gives the training forward's logits, position by position,
//      alone and in a batch, and a sequence's logits do not depend on its batch-mates.
//   3. 1 and 3 threads give bit-identical logits and gradients (the groups' sums have one order).
//   4. Impossible configs are refused with a message naming the field; qwen2 and llama
//      config.json files are read (transformers' own, as save_pretrained writes them) and
//      written back the same; a checkpoint round-trips bit for bit.
#define _POSIX_C_SOURCE 200809L  // mkdtemp
#include "gqa.c"  // bias_forward / bias_backward (static there)

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

// Tiny configs: V 32, D 16, 2 blocks, 4 query heads.
//   qwen2: 2 kv heads of 4 (q/k/v biases);  llama: 1 kv head of 6 (q width 24 != D)
static Config tiny_gqa(int arch) {
    Config c = {.arch = arch, .vocab_size = 32, .hidden_size = 16, .intermediate_size = 24,
                .num_hidden_layers = 2, .first_k_dense_replace = 2, .n_group = 1,
                .topk_group = 1, .norm_topk_prob = 1, .routed_scaling_factor = 1.0f,
                .num_attention_heads = 4, .rms_norm_eps = 1e-6f, .rope_theta = 100.0f,
                .max_position_embeddings = 32, .initializer_range = 0.3f, .bos_token_id = 0,
                .eos_token_id = 1};
    c.num_key_value_heads = arch == ARCH_QWEN2 ? 2 : 1;
    c.head_dim = arch == ARCH_QWEN2 ? 4 : 6;
    c.attention_bias = arch == ARCH_QWEN2;
    return c;
}

static const char *arch_name(int arch) { return arch_model_type(arch); }

// A model with random weights; norm weights moved away from 1 and biases away from 0 (a backward
// that forgot either would still pass at 1 and 0).
static void make_model(Model *m, const Config *c, uint64_t seed, int B, int T) {
    char err[R1_ERR_LEN];
    EXPECT(model_create(m, c, err) == 0, "model_create: %s", err);
    model_init_random(m, seed);
    Rng rng;
    rng_seed(&rng, seed + 1000);
    for (int i = 0; i < m->n_tensors; i++) {
        ParamInfo *p = &m->table[i];
        float *w = m->params + p->offset;
        int bias = strstr(p->name, ".bias") != NULL;
        if (p->ndim == 1)
            for (size_t j = 0; j < p->numel; j++) w[j] = (bias ? 0 : 1) + 0.2f * rng_normal(&rng);
    }
    EXPECT(model_alloc_training(m, B, T, err) == 0, "%s", err);
}

static void random_ids(int *ids, int n, int V, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) ids[i] = (int)(rng_next(&rng) % (uint64_t)V);
}

// Mean next-token cross-entropy in double (float rounding would swamp the differences).
static double loss_double(Model *m, const int *ids, int B, int T) {
    model_forward(m, ids, B, T);
    int V = m->cfg.vocab_size, count = 0;
    double total = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const float *z = m->acts.logits + ((size_t)b * T + t) * V;
            double mx = z[0], sum = 0.0;
            for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            for (int v = 0; v < V; v++) sum += exp((double)z[v] - mx);
            total += log(sum) + mx - z[ids[b * T + t + 1]];
            count++;
        }
    return total / count;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

// ==============================================================================================
// 1. Every gradient by finite differences
// ==============================================================================================
// Central differences at eps and 2 eps combined (Richardson: (4 D(eps) - D(2 eps)) / 3, the eps^2
// term cancels); an element passes when |fd - analytic| <= 5e-5 + 1e-2 max(|fd|, |analytic|).
// eps = 1e-2 (3% of a weight here). What remains is the float32 rounding of the loss (~3.5,
// rounded to ~2e-7 relative: ~7e-7) divided by the step: ~4e-5 after Richardson's weights, the
// atol. (At eps 2e-2 the eps^4 term of the embedding's RMSNorm curvature shows instead.) Checked: every element of the attention's tensors (q, k, v, their
// biases, o_proj) and of the embedding; 8 elements of each other tensor (the largest gradient
// and 7 random ones), whose backward r1.c's DeepSeek tests check already. On one thread: the
// forwards are too small to share.
static int every_element(const char *name) {
    return strstr(name, "self_attn") || strstr(name, "embed_tokens");
}

static void gradcheck_gqa(int arch) {
    Config c = tiny_gqa(arch);
    enum { B = 2, T = 7 };
    int V = c.vocab_size, ids[B * T];
    Model m;
    make_model(&m, &c, 5, B, T);
    random_ids(ids, B * T, V, 9);
    float *dlogits = malloc(sizeof(float) * B * T * V);
    model_forward(&m, ids, B, T);
    cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    model_zero_grad(&m);
    model_backward(&m, ids, dlogits);
    double worst = 0.0;
    char worst_what[200] = "";
    int checked = 0, n_bias = 0;
#ifdef _OPENMP
    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    Rng rng;
    rng_seed(&rng, 77);
    for (int ti = 0; ti < m.n_tensors; ti++) {
        ParamInfo *p = &m.table[ti];
        float *w = m.params + p->offset;
        const float *g = m.grads + p->offset;
        double gmax = 0.0;
        size_t jmax = 0;
        n_bias += strstr(p->name, ".bias") != NULL;
        for (size_t j = 0; j < p->numel; j++) {
            gmax = fmax(gmax, fabs(g[j]));
            if (fabsf(g[j]) > fabsf(g[jmax])) jmax = j;
        }
        // a tensor whose gradient is all zero would pass whatever its backward did
        EXPECT(gmax > 1e-4, "%s: %s has an all-zero gradient", arch_name(arch), p->name);
        int all = every_element(p->name);
        size_t n = all ? p->numel : 8;
        for (size_t k = 0; k < n; k++) {
            size_t j = all ? k : k == 0 ? jmax : (size_t)(rng_next(&rng) % p->numel);
            float w0 = w[j], wv[4];
            double lv[4];
            for (int q = 0; q < 4; q++) {
                w[j] = w0 + (q < 2 ? 1.0f : 2.0f) * 1e-2f * (q % 2 ? -1.0f : 1.0f);
                wv[q] = w[j];
                lv[q] = loss_double(&m, ids, B, T);
            }
            w[j] = w0;
            double d1 = (lv[0] - lv[1]) / ((double)wv[0] - wv[1]);
            double d2 = (lv[2] - lv[3]) / ((double)wv[2] - wv[3]);
            double fd = (4 * d1 - d2) / 3, an = g[j];
            double ratio = fabs(fd - an) / (5e-5 + 1e-2 * fmax(fabs(fd), fabs(an)));
            if (ratio > worst) {
                worst = ratio;
                snprintf(worst_what, sizeof(worst_what), "%s[%zu]: analytic %.6g, fd %.6g",
                         p->name, j, an, fd);
            }
            checked++;
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(saved_threads);
#endif
    print_message("    %s: %d tensors (%d biases), %d elements by finite differences; worst "
                  "error %.2f x tolerance (%s)\n", arch_name(arch), m.n_tensors, n_bias, checked,
                  worst, worst_what);
    EXPECT(n_bias == (c.attention_bias ? 3 * c.num_hidden_layers : 0), "%s: %d bias tensors",
           arch_name(arch), n_bias);
    EXPECT(worst <= 1.0, "%s: gradient mismatch: %s (%.2f x tolerance)", arch_name(arch),
           worst_what, worst);
    free(dlogits);
    model_free(&m);
}

static void test_gradcheck_qwen2(void **state) { (void)state; gradcheck_gqa(ARCH_QWEN2); }
static void test_gradcheck_llama(void **state) { (void)state; gradcheck_gqa(ARCH_LLAMA); }

// The bias pair on its own: bias_backward is the transpose of bias_forward (sum_t dout[t, j]).
static void test_bias_by_hand(void **state) {
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, b[3] = {0.5f, -1, 2}, db[3] = {1, 1, 1};
    bias_forward(x, b, 2, 3);
    const float want[6] = {1.5f, 1, 5, 4.5f, 4, 8};
    for (int i = 0; i < 6; i++) EXPECT(x[i] == want[i], "x[%d] = %g", i, x[i]);
    const float dout[6] = {1, 2, 3, 10, 20, 30};
    bias_backward(db, dout, 2, 3);  // adds onto the 1s
    EXPECT(db[0] == 12 && db[1] == 23 && db[2] == 34, "db = %g %g %g", db[0], db[1], db[2]);
}

// ==============================================================================================
// 2. Decoding with the K/V cache against the training forward
// ==============================================================================================
static void check_decode(int arch) {
    Config c = tiny_gqa(arch);
    enum { NS = 3, T = 12 };
    int V = c.vocab_size, ids[NS][T];
    Model m;
    make_model(&m, &c, 21, 1, T);
    char err[R1_ERR_LEN];
    float *want = malloc(sizeof(float) * (size_t)NS * T * V);
    for (int i = 0; i < NS; i++) {
        random_ids(ids[i], T, V, 30 + i);
        model_forward(&m, ids[i], 1, T);
        memcpy(want + (size_t)i * T * V, m.acts.logits, sizeof(float) * (size_t)T * V);
    }
    DecodeState st[NS], alone, *sp[NS], *ap = &alone;
    DecodeBatch b, b1;
    decode_batch_create(&b, &m);
    decode_batch_create(&b1, &m);
    for (int i = 0; i < NS; i++) {
        EXPECT(decode_state_create(&st[i], &m, T, err) == 0, "%s", err);
        sp[i] = &st[i];
    }
    EXPECT(decode_state_create(&alone, &m, T, err) == 0, "%s", err);
    DecodeState one;
    EXPECT(decode_state_create(&one, &m, T, err) == 0, "%s", err);
    double worst_batch = 0.0, worst_one = 0.0;
    for (int pos = 0; pos < T; pos++) {
        int tokens[NS], p[NS];
        for (int i = 0; i < NS; i++) { tokens[i] = ids[i][pos]; p[i] = pos; }
        decode_step_batch(&m, sp, &b, tokens, p, NS);
        decode_step_batch(&m, &ap, &b1, &tokens[1], &p[1], 1);  // sequence 1 in a batch of one
        EXPECT(memcmp(b1.logits, b.logits + V, sizeof(float) * V) == 0,
               "%s: position %d: sequence 1's logits depend on its batch-mates", arch_name(arch),
               pos);
        decode_step(&m, &one, ids[0][pos], pos);  // sequence 0 alone (matvec path)
        worst_one = fmax(worst_one, rel_l2(one.logits, want + (size_t)pos * V, V));
        for (int i = 0; i < NS; i++)
            worst_batch = fmax(worst_batch, rel_l2(b.logits + (size_t)i * V,
                                                   want + ((size_t)i * T + pos) * V, V));
    }
    print_message("    %s: decode vs forward, relative L2: alone %.2e, batched %.2e\n",
                  arch_name(arch), worst_one, worst_batch);
    EXPECT(worst_one < 1e-5 && worst_batch < 1e-5, "%s: decoding differs from the forward",
           arch_name(arch));
    for (int i = 0; i < NS; i++) decode_state_free(&st[i]);
    decode_state_free(&alone);
    decode_state_free(&one);
    decode_batch_free(&b);
    decode_batch_free(&b1);
    free(want);
    model_free(&m);
}

static void test_decode_matches_forward(void **state) {
    (void)state;
    check_decode(ARCH_QWEN2);
    check_decode(ARCH_LLAMA);
}

// ==============================================================================================
// 3. Determinism across thread counts
// ==============================================================================================
static void test_threads_bit_identical(void **state) {
    (void)state;
#ifdef _OPENMP
    Config c = tiny_gqa(ARCH_QWEN2);
    c.num_attention_heads = 8;  // 4 groups of 2: more groups than threads
    c.num_key_value_heads = 4;
    enum { B = 3, T = 9 };
    int V = c.vocab_size, ids[B * T];
    random_ids(ids, B * T, V, 4);
    float *logits[2], *grads[2];
    int threads[2] = {1, 3}, saved = omp_get_max_threads();
    size_t n_params = 0;
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(threads[k]);
        Model m;
        make_model(&m, &c, 8, B, T);
        float *dlogits = malloc(sizeof(float) * B * T * V);
        model_forward(&m, ids, B, T);
        cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
        model_zero_grad(&m);
        model_backward(&m, ids, dlogits);
        n_params = m.n_params;
        logits[k] = malloc(sizeof(float) * B * T * V);
        grads[k] = malloc(sizeof(float) * n_params);
        memcpy(logits[k], m.acts.logits, sizeof(float) * B * T * V);
        memcpy(grads[k], m.grads, sizeof(float) * n_params);
        free(dlogits);
        model_free(&m);
    }
    omp_set_num_threads(saved);
    EXPECT(memcmp(logits[0], logits[1], sizeof(float) * B * T * V) == 0,
           "logits differ between 1 and 3 threads");
    EXPECT(memcmp(grads[0], grads[1], sizeof(float) * n_params) == 0,
           "gradients differ between 1 and 3 threads");
    for (int k = 0; k < 2; k++) {
        free(logits[k]);
        free(grads[k]);
    }
#else
    skip();
#endif
}

// ==============================================================================================
// 4. Configs, config.json and checkpoints
// ==============================================================================================
static void expect_invalid(Config c, const char *needle) {
    char err[R1_ERR_LEN] = "";
    EXPECT(config_validate(&c, err) == -1, "config accepted; expected an error about %s", needle);
    EXPECT(strstr(err, needle) != NULL, "error '%s' does not mention %s", err, needle);
}

static void test_config_validate(void **state) {
    (void)state;
    char err[R1_ERR_LEN];
    const char *presets[] = {"qwen-student", "llama-student"};
    for (int i = 0; i < 2; i++) {
        Config c;
        EXPECT(config_preset(presets[i], &c, err) == 0, "%s", err);
        EXPECT(config_validate(&c, err) == 0, "preset %s: %s", presets[i], err);
    }
    Config q = tiny_gqa(ARCH_QWEN2), l = tiny_gqa(ARCH_LLAMA), x;
    EXPECT(config_validate(&q, err) == 0 && config_validate(&l, err) == 0, "%s", err);
    x = q; x.num_key_value_heads = 3;     expect_invalid(x, "divisible by num_key_value_heads");
    x = q; x.num_key_value_heads = 8;     expect_invalid(x, "num_key_value_heads");
    x = q; x.num_key_value_heads = 0;     expect_invalid(x, "num_key_value_heads");
    x = q; x.head_dim = 5;                expect_invalid(x, "head_dim");
    x = q; x.head_dim = 0;                expect_invalid(x, "head_dim");
    x = q; x.attention_bias = 0;          expect_invalid(x, "qwen2 always has q/k/v biases");
    x = l; x.attention_bias = 1;          expect_invalid(x, "attention_bias");
    x = q; x.first_k_dense_replace = 1;   expect_invalid(x, "no MoE layers");
    x = q; x.rope_interleave = 1;         expect_invalid(x, "rope_interleave");
    x = q; x.rope_yarn = 1; x.rope_factor = 2; x.rope_original_max_position_embeddings = 16;
    x.rope_beta_fast = 32; x.rope_beta_slow = 1;  expect_invalid(x, "YaRN");
    x = q; x.intermediate_size = 0;       expect_invalid(x, "intermediate_size");
    x = q; x.arch = 7;                    expect_invalid(x, "architecture");
}

// config.json files as transformers 5.17's save_pretrained writes them (abridged to the keys
// that matter; unknown keys such as layer_types are ignored).
static const char *QWEN2_JSON =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"vocab_size\": 64, "
    "\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"hidden_act\": \"silu\", "
    "\"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-06, \"use_sliding_window\": false, "
    "\"sliding_window\": null, \"max_window_layers\": 28, "
    "\"layer_types\": [\"full_attention\", \"full_attention\"], "
    "\"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\"}, "
    "\"tie_word_embeddings\": false, \"bos_token_id\": 0, \"eos_token_id\": 1, \"dtype\": \"float32\"}";
static const char *LLAMA_JSON =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 64, "
    "\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 3, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 12, "
    "\"attention_bias\": false, \"mlp_bias\": false, \"pretraining_tp\": 1, "
    "\"rope_theta\": 500.0, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-06, "
    "\"tie_word_embeddings\": false, \"bos_token_id\": 0, \"eos_token_id\": 1}";

// text with the first `from` replaced by `to` (malloc'd)
static char *replaced(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    assert_non_null(at);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    size_t pre = (size_t)(at - text);
    memcpy(out, text, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

static void expect_json_fails(const char *text, const char *from, const char *to,
                              const char *needle) {
    char *bad = replaced(text, from, to), err[R1_ERR_LEN] = "";
    Config c;
    EXPECT(config_from_json(bad, &c, err) == -1, "accepted: %s", bad);
    EXPECT(strstr(err, needle) != NULL, "error '%s' does not mention %s", err, needle);
    free(bad);
}

static void test_config_json(void **state) {
    (void)state;
    char err[R1_ERR_LEN];
    Config q, l;
    EXPECT(config_from_json(QWEN2_JSON, &q, err) == 0, "%s", err);
    EXPECT(q.arch == ARCH_QWEN2 && q.num_key_value_heads == 2 && q.head_dim == 8 &&
           q.attention_bias == 1 && q.first_k_dense_replace == 2 && q.rope_interleave == 0 &&
           q.rope_theta == 10000.0f, "qwen2 read as arch %d, Hkv %d, hd %d, bias %d",
           q.arch, q.num_key_value_heads, q.head_dim, q.attention_bias);
    EXPECT(config_from_json(LLAMA_JSON, &l, err) == 0, "%s", err);
    EXPECT(l.arch == ARCH_LLAMA && l.num_key_value_heads == 1 && l.head_dim == 12 &&
           l.attention_bias == 0 && l.rope_theta == 500.0f, "llama read as arch %d, hd %d",
           l.arch, l.head_dim);
    expect_json_fails(QWEN2_JSON, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3",
                      "divisible");
    expect_json_fails(QWEN2_JSON, "\"use_sliding_window\": false", "\"use_sliding_window\": true",
                      "use_sliding_window");
    expect_json_fails(QWEN2_JSON, "\"qwen2\"", "\"qwen3\"", "model_type");
    expect_json_fails(LLAMA_JSON, "\"attention_bias\": false", "\"attention_bias\": true",
                      "attention_bias");
    expect_json_fails(LLAMA_JSON, "\"mlp_bias\": false", "\"mlp_bias\": true", "mlp_bias");
    expect_json_fails(LLAMA_JSON, "\"head_dim\": 12", "\"head_dim\": 7", "head_dim");
    expect_json_fails(LLAMA_JSON, "\"rope_theta\": 500.0",
                      "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "llama3");
    // written and read back: the same config
    char dir[] = "/tmp/test_gqa_XXXXXX", path[600];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    Config both[2] = {q, l};
    for (int i = 0; i < 2; i++) {
        Config a = both[i], b;
        EXPECT(config_write_json(&a, path, err) == 0, "%s", err);
        char *text = read_file(path, NULL, err);
        EXPECT(text && config_from_json(text, &b, err) == 0, "%s", err);
        EXPECT(strstr(text, a.arch == ARCH_QWEN2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
               "%s", text);
        free(text);
#define SAME(f) EXPECT(a.f == b.f, "%s: " #f " %g written, %g read", arch_name(a.arch), (double)a.f, (double)b.f)
        SAME(arch); SAME(vocab_size); SAME(hidden_size); SAME(intermediate_size);
        SAME(num_hidden_layers); SAME(first_k_dense_replace); SAME(num_attention_heads);
        SAME(num_key_value_heads); SAME(head_dim); SAME(attention_bias); SAME(rms_norm_eps);
        SAME(rope_theta); SAME(rope_interleave); SAME(max_position_embeddings);
        SAME(tie_word_embeddings); SAME(bos_token_id); SAME(eos_token_id);
#undef SAME
    }
    unlink(path);
    rmdir(dir);
}

// checkpoint_save then checkpoint_load: the same tensors (HF names) and the same logits.
static void test_checkpoint_round_trip(void **state) {
    (void)state;
    char dir[] = "/tmp/test_gqa_ckpt_XXXXXX", err[R1_ERR_LEN];
    assert_non_null(mkdtemp(dir));
    Config c = tiny_gqa(ARCH_QWEN2);
    Model a, b;
    make_model(&a, &c, 3, 1, 8);
    EXPECT(model_find_param(&a, "model.layers.1.self_attn.k_proj.bias") != NULL &&
           model_find_param(&a, "model.layers.0.self_attn.v_proj.weight") != NULL &&
           model_find_param(&a, "model.layers.0.mlp.gate_proj.weight") != NULL &&
           model_find_param(&a, "lm_head.weight") != NULL &&
           model_find_param(&a, "model.layers.0.self_attn.kv_b_proj.weight") == NULL,
           "%s", "the table lacks a Hugging Face name or has an MLA one");
    EXPECT(checkpoint_save(&a, NULL, NULL, dir, err) == 0, "%s", err);
    EXPECT(checkpoint_load(&b, dir, err) == 0, "%s", err);
    EXPECT(b.cfg.arch == ARCH_QWEN2 && b.n_params == a.n_params &&
           memcmp(a.params, b.params, sizeof(float) * a.n_params) == 0, "%s",
           "the weights did not round-trip");
    int ids[8];
    random_ids(ids, 8, c.vocab_size, 2);
    EXPECT(model_alloc_inference(&b, 1, 8, err) == 0, "%s", err);
    model_forward(&a, ids, 1, 8);
    model_forward(&b, ids, 1, 8);
    EXPECT(memcmp(a.acts.logits, b.acts.logits, sizeof(float) * 8 * c.vocab_size) == 0, "%s",
           "logits differ after the round trip");
    model_free(&a);
    model_free(&b);
    char path[600];
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/.staging", dir);
    rmdir(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_qwen2),
        cmocka_unit_test(test_gradcheck_llama),
        cmocka_unit_test(test_bias_by_hand),
        cmocka_unit_test(test_decode_matches_forward),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_config_validate),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_checkpoint_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
