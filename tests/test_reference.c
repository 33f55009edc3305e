// test_reference.c: r1.c against Hugging Face transformers 5.17's DeepseekV3ForCausalLM (and
// Qwen2ForCausalLM / LlamaForCausalLM for gqa.c).
//
// Each directory under tests/fixtures/ is a checkpoint written by transformers
// (tests/make_reference.py; qwen2-tiny and llama-tiny, the second family of gqa.c, by
// tests/make_qwen_reference.py) plus reference.safetensors with what transformers computed on it:
// input_ids, logits, the loss, grad.<name> for every trainable tensor, and a greedy continuation.
// We load the checkpoint with our own loader, run our forward and backward, and compare.
//   logits:         relative L2 error < 1e-4
//   every gradient: relative L2 error < 1e-3   (float32 rounding; we measure ~1e-6)
//   greedy ids:     identical, decoded with the latent KV cache and absorbed attention
#include "kernels.c"
#include "r1.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const char *CASES[] = {"hf-tiny", "base",   "qnull",         "yarn",    "yarn_hub",
                              "groups",  "deep",   "nonorm",        "negbias", "yarn_mismatch",
                              // the second family (gqa.c): Qwen2ForCausalLM and LlamaForCausalLM,
                              // written by tests/make_qwen_reference.py
                              "qwen2-tiny", "llama-tiny"};
#define N_CASES ((int)(sizeof(CASES) / sizeof(CASES[0])))

// sqrt(sum (a-b)^2) / sqrt(sum b^2), in double
static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

static const float *tensor_f32(StFile *f, const char *name, size_t numel) {
    StTensor *t = st_find(f, name);
    if (!t) fail_msg("reference lacks tensor %s", name);
    assert_string_equal(t->dtype, "F32");
    assert_int_equal((t->end - t->begin) / 4, numel);
    return (const float *)(f->data + t->begin);
}

static int *tensor_ids(StFile *f, const char *name, int *n) {
    StTensor *t = st_find(f, name);
    if (!t) fail_msg("reference lacks tensor %s", name);
    assert_string_equal(t->dtype, "I32");
    *n = (int)((t->end - t->begin) / 4);
    int *ids = malloc((size_t)*n * sizeof(int));
    memcpy(ids, f->data + t->begin, (size_t)*n * sizeof(int));
    return ids;
}

static void check_case(const char *name) {
    char dir[256], path[512], err[R1_ERR_LEN];
    snprintf(dir, sizeof(dir), "tests/fixtures/%s", name);
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    Model m;
    if (checkpoint_load(&m, dir, err)) fail_msg("%s", err);
    StFile ref;
    if (st_read(path, &ref, err)) fail_msg("%s", err);
    StTensor *in = st_find(&ref, "input_ids");
    assert_non_null(in);
    int B = (int)in->shape[0], T = (int)in->shape[1], V = m.cfg.vocab_size, n_ids;
    int *ids = tensor_ids(&ref, "input_ids", &n_ids);
    assert_int_equal(n_ids, B * T);
    assert_int_equal(model_alloc_training(&m, B, T, err), 0);

    // forward, loss, backward
    model_forward(&m, ids, B, T);
    float *dlogits = calloc((size_t)B * T * V, sizeof(float));
    float loss = cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    model_zero_grad(&m);
    model_backward(&m, ids, dlogits);
    double e_logits = rel_l2(m.acts.logits, tensor_f32(&ref, "logits", (size_t)B * T * V),
                             (size_t)B * T * V);
    float ref_loss = *tensor_f32(&ref, "loss", 1);
    double worst = 0;
    const char *worst_name = "";
    int n_grads = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        ParamInfo *p = &m.table[i];
        if (!p->trainable) continue;
        char gname[160];
        snprintf(gname, sizeof(gname), "grad.%s", p->name);
        double e = rel_l2(m.grads + p->offset, tensor_f32(&ref, gname, p->numel), p->numel);
        if (e > worst) { worst = e; worst_name = p->name; }
        n_grads++;
    }
    printf("  %-14s B=%d T=%-3d logits rel %.1e  loss %.6f vs %.6f  %d grads, worst rel %.1e (%s)\n",
           name, B, T, e_logits, loss, ref_loss, n_grads, worst, worst_name);
    assert_true(e_logits < 1e-4);
    assert_true(fabsf(loss - ref_loss) < 1e-4f * fabsf(ref_loss));
    assert_true(worst < 1e-3);

    // greedy decoding with the latent cache
    int n_prompt, n_expect;
    int *prompt = tensor_ids(&ref, "greedy_prompt", &n_prompt);
    int *expect = tensor_ids(&ref, "greedy_ids", &n_expect);
    DecodeState s;
    assert_int_equal(decode_state_create(&s, &m, n_expect, err), 0);
    int *got = calloc((size_t)n_expect, sizeof(int));
    memcpy(got, prompt, (size_t)n_prompt * sizeof(int));
    int len = n_prompt;
    for (int pos = 0; len < n_expect; pos++) {
        decode_step(&m, &s, got[pos], pos);
        if (pos + 1 < len) continue;
        got[len] = sample_token(s.logits, V, 0.0f, 1.0f, NULL, NULL);
        if (got[len++] == m.cfg.eos_token_id) break;
    }
    assert_int_equal(len, n_expect);
    for (int i = 0; i < n_expect; i++) {
        if (got[i] != expect[i]) fail_msg("%s: greedy id %d is %d, transformers %d", name, i, got[i], expect[i]);
    }
    free(got);
    free(prompt);
    free(expect);
    decode_state_free(&s);
    free(dlogits);
    free(ids);
    st_free(&ref);
    model_free(&m);
}

static void test_all_fixtures(void **state) {
    (void)state;
    for (int i = 0; i < N_CASES; i++) check_case(CASES[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_all_fixtures)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
