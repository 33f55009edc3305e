// grpo.c: reinforcement learning for r1.c: the rule-based rewards (accuracy, format, language
// consistency), group rollouts with the latent KV cache, group-relative advantages, the GRPO
// objective as a loss head, evaluation (pass@1, cons@k) and rejection sampling.
#define _POSIX_C_SOURCE 200809L
#include "r1.h"

#include <errno.h>
#include <limits.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ==============================================================================================
// 10. Rule-based rewards (DeepSeek-R1 §2.2.2): accuracy, format, language consistency
// ==============================================================================================
// One verifier serves RL, rejection sampling and evaluation alike. A completion is the text the
// policy wrote after the prompt. Every function here scores any text, however malformed.

// Format: "<think> ... </think> <answer> ... </answer>" with only whitespace around the tags,
// each tag exactly once, in this order, and nothing but whitespace after </answer>.
int reward_format(const char *completion) {
    static const char *const tags[4] = {"<think>", "</think>", "<answer>", "</answer>"};
    const char *at[4];
    for (int i = 0; i < 4; i++) {
        at[i] = strstr(completion, tags[i]);
        if (!at[i] || strstr(at[i] + 1, tags[i])) return 0;  // missing or repeated
    }
    if (*skip_space(completion) != '<' || skip_space(completion) != at[0]) return 0;
    if (!(at[0] < at[1] && at[1] < at[2] && at[2] < at[3])) return 0;
    if (skip_space(at[1] + strlen(tags[1])) != at[2]) return 0;  // only space between the parts
    return *skip_space(at[3] + strlen(tags[3])) == '\0';
}

// Accuracy: the task's exact verifier on the content of the last <answer>...</answer>.
int reward_accuracy(const Json *example, const char *completion) {
    char *answer = answer_extract(completion);
    int ok = answer && task_check(NULL, example, answer);
    free(answer);
    return ok;
}

// Language consistency (R1 §2.3.2): the share of the reasoning's words that are in the prompt's
// language. The reasoning is the text inside <think>...</think> (the whole completion if there
// is none). A word is a run of ASCII letters (English) or one CJK character (Chinese); digits
// and symbols are neither. No words at all scores 0.
double reward_language(const char *completion, const char *lang) {
    const char *start = strstr(completion, "<think>"), *end = NULL;
    start = start ? start + strlen("<think>") : completion;
    end = strstr(start, "</think>");
    if (!end) end = start + strlen(start);
    long english = 0, chinese = 0;
    static const char *const tags[4] = {"<think>", "</think>", "<answer>", "</answer>"};
    for (const unsigned char *p = (const unsigned char *)start; p < (const unsigned char *)end;) {
        int tag = 0;  // the format's own tags are not words of either language
        for (int i = 0; i < 4 && !tag; i++)
            if (strncmp((const char *)p, tags[i], strlen(tags[i])) == 0) tag = (int)strlen(tags[i]);
        if (tag) {
            p += tag;
        } else if ((*p | 32) >= 'a' && (*p | 32) <= 'z') {
            english++;
            while (p < (const unsigned char *)end && (*p | 32) >= 'a' && (*p | 32) <= 'z') p++;
        } else if (*p >= 0xE4 && *p <= 0xE9 && p + 2 < (const unsigned char *)end) {
            chinese++;  // a 3-byte UTF-8 character in U+4000..U+9FFF: the CJK ideographs
            p += 3;
        } else {
            p++;
        }
    }
    long total = english + chinese;
    if (total == 0) return 0.0;
    return (double)(strcmp(lang, "zh") == 0 ? chinese : english) / (double)total;
}

// The rule reward of a non-reasoning answer (each part 0 or 1, language in [0, 1]):
//   format    plain text: none of the four reasoning tags (the SFT data answers these plainly)
//   accuracy  identity: names itself "r1.c"; parity: the right word and not the other one;
//             writing: 20 to 600 bytes ending a sentence ("." or "。")
//   language  reward_language against the prompt's language, as for reasoning prompts
RewardParts reward_nonreasoning(const Json *example, const char *completion) {
    const Json *kind = json_get(example, "kind"), *answer = json_get(example, "answer");
    const Json *lang = json_get(example, "lang");
    const char *k = kind && kind->type == JSON_STRING ? kind->string : "";
    RewardParts p = {0, 1, 0};
    static const char *const tags[] = {"<think>", "</think>", "<answer>", "</answer>"};
    for (int i = 0; i < 4; i++)
        if (strstr(completion, tags[i])) p.format = 0;
    if (strcmp(k, "identity") == 0) {
        p.accuracy = strstr(completion, "r1.c") != NULL;
    } else if (strcmp(k, "parity") == 0 && answer && answer->type == JSON_STRING) {
        const char *right = answer->string;
        const char *wrong = strcmp(right, "odd") == 0    ? "even"
                            : strcmp(right, "even") == 0 ? "odd"
                            : strcmp(right, "奇数") == 0 ? "偶数"
                                                         : "奇数";
        p.accuracy = strstr(completion, right) != NULL && strstr(completion, wrong) == NULL;
    } else if (strcmp(k, "writing") == 0) {
        size_t n = strlen(completion);
        while (n > 0 && isspace((unsigned char)completion[n - 1])) n--;
        int ends = (n >= 1 && completion[n - 1] == '.') ||
                   (n >= 3 && memcmp(completion + n - 3, "。", 3) == 0);
        p.accuracy = n >= 20 && n <= 600 && ends;
    }
    p.language = reward_language(completion, lang && lang->type == JSON_STRING ? lang->string : "en");
    return p;
}

// The combined reward: w_acc * accuracy + w_format * format + w_lang * language consistency.
double reward_total(const RewardWeights *w, const Json *example, const char *completion,
                    RewardParts *parts) {
    const Json *lang = json_get(example, "lang");
    RewardParts p;
    if (is_nonreasoning(example)) {
        p = reward_nonreasoning(example, completion);
    } else {
        p.accuracy = reward_accuracy(example, completion);
        p.format = reward_format(completion);
        p.language = reward_language(completion, lang && lang->type == JSON_STRING ? lang->string : "en");
    }
    if (parts) *parts = p;
    return w->accuracy * p.accuracy + w->format * p.format + w->language * p.language;
}

static int lower_ascii(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// Does the completion contain a reflection word ("wait", "check", "verify", or their Chinese
// equivalents)? R1-Zero's "aha moment" shows up as a rising share of these.
int has_reflection(const char *completion) {
    static const char *const words[] = {"wait", "check", "verify", "等等", "检查", "验证"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        for (const char *p = completion; *p; p++) {
            size_t k = 0;
            while (k < n && p[k] && lower_ascii((unsigned char)p[k]) == (unsigned char)words[i][k])
                k++;
            if (k == n) return 1;
        }
    }
    return 0;
}

// ==============================================================================================
// 11. GRPO: group-relative advantages and the clipped, KL-regularised objective as a loss head
// ==============================================================================================
// DeepSeekMath eqs. 3-4, DeepSeek-R1 eqs. 1-3. For a group of G completions o_1..o_G of one
// prompt with rewards r_i:
//   A_i = (r_i - mean(r)) / std(r)          every token of o_i gets A_i (outcome supervision)
//   rho_{i,t} = pi_theta(o_t | ...) / pi_old(o_t | ...)
//   J = 1/G sum_i 1/|o_i| sum_t [ min(rho A_i, clip(rho, 1-eps, 1+eps) A_i) - beta KL_{i,t} ]
//   KL_{i,t} = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1          (Schulman's k3 estimator)
//   loss = -J
// With lp = log pi_theta(o_t): d(rho A)/d lp = rho A on the unclipped branch (0 when the clipped
// one is the min), dKL/d lp = 1 - pi_ref/pi_theta, and dloss/dlogits[v] = g (softmax[v] -
// 1[v = o_t]) with g = dJ/d lp (= -dloss/d lp; cross-entropy is the case g = 1). So GRPO is
// one more loss head producing dlogits.

// adv (n_groups * G) from rewards; scale_by_std 0 gives Dr. GRPO's r - mean. A group whose
// rewards are all equal gets 0: no signal. std is the sample std (as TRL), plus 1e-4.
void grpo_advantages(const double *rewards, int n_groups, int G, int scale_by_std, float *adv) {
    for (int g = 0; g < n_groups; g++) {
        const double *r = rewards + (size_t)g * G;
        double mean = 0.0, var = 0.0, lo = r[0], hi = r[0];
        for (int i = 0; i < G; i++) {
            mean += r[i];
            lo = r[i] < lo ? r[i] : lo;
            hi = r[i] > hi ? r[i] : hi;
        }
        mean /= G;
        for (int i = 0; i < G; i++) var += (r[i] - mean) * (r[i] - mean);
        double std = G > 1 ? sqrt(var / (G - 1)) : 0.0;
        for (int i = 0; i < G; i++) {
            double a = hi - lo < 1e-12 ? 0.0 : r[i] - mean;
            if (scale_by_std && a != 0.0) a /= std + 1e-4;
            adv[(size_t)g * G + i] = (float)a;
        }
    }
}

// lp (B,T): log-softmax(logits[b, t-1])[ids[b, t]] for t >= 1 (lp[b, 0] = 0): the log-probability
// of each token given its prefix, aligned with the token.
void token_logprobs(const float *logits, const int *ids, int B, int T, int V, float *lp) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * T; r++) {
        int t = r % T;
        if (t == 0) {
            lp[r] = 0.0f;
            continue;
        }
        const float *z = logits + (size_t)(r - 1) * V;
        lp[r] = (float)(z[ids[r]] - log_sum_exp(z, V));
    }
}

// The GRPO loss head. Sequence b is completion i = b % G of group b / G. mask (B,T) marks the
// completion tokens (by their own position, as lp); old_lp, ref_lp (B,T) are their
// log-probabilities under the sampling policy and the frozen reference; adv (B).
// Writes dlogits (B,T,V) and returns the loss; stats (may be NULL) gets KL, clipping, entropy.
float grpo_loss(const float *logits, const int *ids, const float *mask, const float *old_lp,
                const float *ref_lp, const float *adv, int B, int T, int V,
                const GrpoConfig *gc, float *dlogits, GrpoStats *stats) {
    double loss = 0.0, kl = 0.0, clipped = 0.0, entropy = 0.0, n_tokens = 0.0;
    float *weight = xcalloc((size_t)B, sizeof(float));  // per-token weight of each sequence
    double all_tokens = 0.0;
    for (int b = 0; b < B; b++) {
        double len = 0.0;
        for (int t = 1; t < T; t++) len += mask[(size_t)b * T + t] != 0.0f;
        all_tokens += len;
        if (len == 0) continue;
        if (gc->variant == GRPO_DR) weight[b] = (float)(1.0 / ((double)B * gc->max_len));
        else weight[b] = (float)(1.0 / ((double)B * len));  // GRPO: per-sequence mean, then mean
    }
    if (gc->variant == GRPO_DAPO)  // token level: every token of the batch counts the same
        for (int b = 0; b < B; b++) weight[b] = all_tokens > 0 ? (float)(1.0 / all_tokens) : 0.0f;
    float *row_loss = xcalloc((size_t)B * T, sizeof(float));
    float *row_kl = xcalloc((size_t)B * T, sizeof(float)), *row_ent = xcalloc((size_t)B * T, sizeof(float));
    unsigned char *row_clip = xcalloc((size_t)B * T, 1);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * T; r++) {
        int b = r / T, t = r % T;
        float *dz = dlogits ? dlogits + (size_t)r * V : NULL;
        // the logits at t predict the token at t+1
        int target = t + 1 < T ? r + 1 : -1;
        if (dz) memset(dz, 0, (size_t)V * sizeof(float));
        if (target < 0 || mask[target] == 0.0f) continue;
        const float *z = logits + (size_t)r * V;
        double lse = log_sum_exp(z, V);
        float logsum = (float)lse;
        double ent = 0.0;
        for (int v = 0; v < V; v++) {
            double p = r1_expf(z[v] - logsum);
            ent -= p > 0 ? p * (z[v] - logsum) : 0.0;
        }
        // the same arithmetic as token_logprobs, so that rho is exactly 1 on the first pass
        float lp = (float)(z[ids[target]] - lse);
        float A = adv[b];
        float rho = expf(lp - old_lp[target]);
        float lo = 1.0f - gc->eps_low, hi = 1.0f + gc->eps_high;
        float rho_clip = rho < lo ? lo : rho > hi ? hi : rho;
        float unclipped = rho * A, clip = rho_clip * A;
        float objective = unclipped < clip ? unclipped : clip;
        float dobj = unclipped <= clip ? rho * A : 0.0f;  // the clipped branch is constant
        float ratio_ref = expf(ref_lp[target] - lp);      // pi_ref / pi_theta
        // k3 = r - log r - 1 with r = pi_ref/pi_theta, written as expm1(d) - d (d = log r) so
        // that it never rounds below 0 when r is close to 1
        float k3 = expm1f(ref_lp[target] - lp) - (ref_lp[target] - lp);
        float dk3 = 1.0f - ratio_ref;
        float w = weight[b];
        row_loss[r] = -w * (objective - gc->beta * k3);
        row_kl[r] = k3;
        row_ent[r] = (float)ent;
        row_clip[r] = rho != rho_clip;
        if (dz) {
            // dloss/d lp = -w (dobj - beta dk3) and d lp/dz = onehot - softmax, so
            // dloss/dz = g (softmax - onehot) with g = w (dobj - beta dk3) = -dloss/d lp
            float g = w * (dobj - gc->beta * dk3);
            for (int v = 0; v < V; v++) dz[v] = g * r1_expf(z[v] - logsum);
            dz[ids[target]] -= g;
        }
    }
    for (int r = 0; r < B * T; r++) {  // sums in a fixed order
        int target = r % T + 1 < T ? r + 1 : -1;
        if (target < 0 || mask[target] == 0.0f) continue;
        loss += row_loss[r];
        kl += row_kl[r];
        entropy += row_ent[r];
        clipped += row_clip[r];
        n_tokens += 1.0;
    }
    if (stats) {
        stats->kl = n_tokens ? kl / n_tokens : 0.0;
        stats->clip_fraction = n_tokens ? clipped / n_tokens : 0.0;
        stats->entropy = n_tokens ? entropy / n_tokens : 0.0;
        stats->tokens = n_tokens;
    }
    free(weight);
    free(row_loss);
    free(row_kl);
    free(row_ent);
    free(row_clip);
    return (float)loss;
}

// ==============================================================================================
// 12. Rollouts: G completions per prompt, sampled with the latent KV cache, in parallel
// ==============================================================================================

// A prompt in token ids: BOS + the R1-Zero template (R1 Table 1) or the chat template.
static int encode_task_prompt(const Tokenizer *tok, const Json *example, int chat, int *ids,
                              int cap) {
    const Json *prompt = json_get(example, "prompt"), *lang = json_get(example, "lang");
    if (!prompt || prompt->type != JSON_STRING || cap < 4) return -1;
    int n = 0;
    ids[n++] = TOK_BOS;
    if (chat) {
        ids[n++] = TOK_USER;
        int k = tokenizer_encode(tok, prompt->string, strlen(prompt->string), ids + n, cap - n - 1);
        if (k < 0) return -1;
        n += k;
        ids[n++] = TOK_ASSISTANT;
        return n;
    }
    char *text = r1_zero_prompt(prompt->string, lang && lang->type == JSON_STRING ? lang->string : "en");
    int k = tokenizer_encode(tok, text, strlen(text), ids + n, cap - n);
    free(text);
    return k < 0 ? -1 : n + k;
}

// One rollout: the prompt, then the sampled completion (EOS included when sampled).
typedef struct {
    int *ids;         // (n_prompt + n_completion)
    int n_prompt, n;  // prompt length, total length
    char *text;       // the completion decoded (EOS left out)
} Rollout;

// Samples rollouts[i] for i in [0, n): sequence i continues its prompt. The sequences go in
// batches of DECODE_BATCH (i = 0..15, 16..31, ...; one batch per thread at a time), which read
// each weight once per step for the whole batch. Each sequence has its own RNG, seeded from
// (seed, i), and its numbers do not depend on its batch-mates: the samples do not depend on the
// number of threads.
static void sample_rollouts(const Model *m, const Tokenizer *tok, Rollout *r, int n, int max_new,
                            const SamplingConfig *sc, uint64_t seed) {
    int ctx = m->cfg.max_position_embeddings, V = m->cfg.vocab_size;
    int n_batches = (n + DECODE_BATCH - 1) / DECODE_BATCH;
#pragma omp parallel for schedule(dynamic)
    for (int bi = 0; bi < n_batches; bi++) {
        int first = bi * DECODE_BATCH, nb = n - first < DECODE_BATCH ? n - first : DECODE_BATCH;
        DecodeState states[DECODE_BATCH], *sp[DECODE_BATCH];
        Rng rng[DECODE_BATCH];
        int *ids[DECODE_BATCH], len[DECODE_BATCH], max_len[DECODE_BATCH];
        for (int j = 0; j < nb; j++) {
            Rollout *ro = &r[first + j];
            char err[R1_ERR_LEN];
            max_len[j] = ro->n_prompt + max_new < ctx ? ro->n_prompt + max_new : ctx;
            if (decode_state_create(&states[j], m, max_len[j], err)) die("%s", err);
            sp[j] = &states[j];
            rng_seed(&rng[j], seed * 1000003u + (uint64_t)(first + j));
            ids[j] = ro->ids;
            len[j] = ro->n_prompt;
        }
        DecodeBatch batch;
        decode_batch_create(&batch, m);
        float *probs = xcalloc((size_t)V, sizeof(float));
        generate_batch(m, sp, &batch, ids, len, max_len, nb, sc, rng, probs);
        for (int j = 0; j < nb; j++) {
            Rollout *ro = &r[first + j];
            ro->n = len[j];
            int end = ro->n;
            if (end > ro->n_prompt && ro->ids[end - 1] == TOK_EOS) end--;
            ro->text = tokenizer_decode(tok, ro->ids + ro->n_prompt, end - ro->n_prompt);
            if (!ro->text) ro->text = xcalloc(1, 1);
            decode_state_free(&states[j]);
        }
        free(probs);
        decode_batch_free(&batch);
    }
}

// n JSON objects from n lines of text (the program's own output); frees the text.
static Json **parse_lines(char *buf, int n) {
    char err[R1_ERR_LEN];
    Json **ex = xcalloc((size_t)n, sizeof(Json *));
    char *line = buf;
    for (int i = 0; i < n; i++) {
        char *nl = strchr(line, '\n');
        ex[i] = json_parse(line, nl ? (size_t)(nl - line) : strlen(line), err);
        if (!ex[i]) die("example generator: %s", err);
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(buf);
    return ex;
}

// Makes n examples of a task split in memory (the generator of `./r1 data tasks`).
static Json **make_examples(const char *task, int eval, int n, int level_lo, int level_hi,
                            const char *lang, uint64_t seed) {
    char err[R1_ERR_LEN], *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) die("out of memory");
    TaskSetOptions o = {.task = task, .eval = eval, .n = n, .level_lo = level_lo,
                        .level_hi = level_hi, .lang = lang, .seed = seed};
    if (tasks_write(f, &o, err) < 0) die("%s", err);
    fclose(f);
    return parse_lines(buf, n);
}

// n non-reasoning prompts (kind, lang, prompt, answer) for the final RL stage's mix.
static Json **nonreasoning_examples(int n, uint64_t seed) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) die("out of memory");
    Rng rng;
    rng_seed(&rng, seed ^ 0x6e72u);
    for (int i = 0; i < n; i++) nonreasoning_write(f, i, &rng, 0);
    fclose(f);
    return parse_lines(buf, n);
}

static void parse_levels(const char *s, int *lo, int *hi) {
    const char *why = levels_parse(s, lo, hi);
    if (why) die("--levels: '%s' %s", s, why);
}

// ==============================================================================================
// 13. `./r1 grpo`: reinforcement learning with GRPO (R1-Zero from a base model, or after SFT)
// ==============================================================================================
// One step: P prompts, G rollouts each from the current policy; rewards; group advantages; the
// log-probabilities of the rollouts under the sampling policy (pi_old) and the frozen reference;
// then mu passes of the GRPO loss head, backward and AdamW over the batch. The auxiliary-loss-
// free expert balancing stays on.

typedef struct {
    int P, G, max_new, mu, chat, sample_every, save_every, ref_every;
    long steps;
    SamplingConfig sc;
    GrpoConfig gc;
    RewardWeights w;
    AdamWConfig oc;
    float gamma;
    uint64_t seed;
} GrpoRun;

// The batch of a step: all rollouts right-padded to T; mask marks completion tokens.
static int build_batch(const Rollout *r, int B, int *ids, float *mask, int T) {
    memset(mask, 0, (size_t)B * T * sizeof(float));
    int tokens = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) ids[(size_t)b * T + t] = t < r[b].n ? r[b].ids[t] : TOK_PAD;
        for (int t = r[b].n_prompt; t < r[b].n; t++) mask[(size_t)b * T + t] = 1.0f;
        tokens += r[b].n - r[b].n_prompt;
    }
    return tokens;
}

// Forward of model over ids, then lp (B,T) of the tokens.
static void policy_logprobs(Model *m, const int *ids, int B, int T, float *lp) {
    model_forward(m, ids, B, T);
    token_logprobs(m->acts.logits, ids, B, T, m->cfg.vocab_size, lp);
    moe_reset_load(m);  // scoring is not training: the balancing counts only the update passes
}

// Buffers for a B x T batch, reallocated only when the shape changes; the frozen reference
// policy gets activations only (it never runs backward).
static void ensure_batch(Model *m, int B, int T, int backward) {
    char err[R1_ERR_LEN];
    if (m->acts.B == B && m->acts.T == T && m->acts.buffer) return;
    int rc = backward ? model_alloc_training(m, B, T, err) : model_alloc_inference(m, B, T, err);
    if (rc) die("%s", err);
}

// The frozen reference scores the batch REF_ROWS rows at a time. A row's numbers do not depend
// on the other rows of its batch (every product sums each row in its own fixed order), so this
// gives the same log-probabilities as one pass with 1/8 of the activations: 64 rollouts of ~270
// tokens hold over a gigabyte of them in the small preset.
#define REF_ROWS 8
static void ref_logprobs(Model *ref, const int *ids, int B, int T, float *lp) {
    for (int b0 = 0; b0 < B; b0 += REF_ROWS) {
        int nb = B - b0 < REF_ROWS ? B - b0 : REF_ROWS;
        ensure_batch(ref, nb, T, 0);
        policy_logprobs(ref, ids + (size_t)b0 * T, nb, T, lp + (size_t)b0 * T);
    }
}

int cmd_grpo(int argc, char **argv) {
    static const char *const known[] = {
        "--model", "--task", "--out", "--template", "--steps", "--prompts", "--group",
        "--max-new-tokens", "--temperature", "--top-p", "--lr", "--beta", "--eps", "--eps-high",
        "--mu", "--variant", "--w-accuracy", "--w-format", "--w-language", "--levels", "--lang",
        "--seed", "--sample-every", "--save-every", "--ref-every", "--gamma", "--non-reasoning",
        NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (!dir || !out) die("grpo: needs --model DIR --out DIR");
    // the share of groups whose prompt is a non-reasoning one (final RL: R1 §2.3.4)
    double nonreasoning = arg_double(argc, argv, "--non-reasoning", 0.0, 0.0, 1.0);
    const char *task = arg_str(argc, argv, "--task", "arithmetic");
    const char *template = arg_str(argc, argv, "--template", "r1-zero");
    const char *variant = arg_str(argc, argv, "--variant", "grpo");
    const char *lang = arg_str(argc, argv, "--lang", "both");
    int level_lo, level_hi;
    parse_levels(arg_str(argc, argv, "--levels", "1-2"), &level_lo, &level_hi);
    GrpoRun run = {0};
    run.steps = arg_long(argc, argv, "--steps", 60, 1, 1000000);
    run.P = (int)arg_long(argc, argv, "--prompts", 8, 1, 4096);
    run.G = (int)arg_long(argc, argv, "--group", 8, 2, 1024);
    run.max_new = (int)arg_long(argc, argv, "--max-new-tokens", 160, 1, 1 << 20);
    run.mu = (int)arg_long(argc, argv, "--mu", 1, 1, 100);
    run.sc.temperature = (float)arg_double(argc, argv, "--temperature", 1.0, 0.0, 10.0);
    run.sc.top_p = (float)arg_double(argc, argv, "--top-p", 1.0, 1e-6, 1.0);
    run.oc = adamw_defaults();
    // 2e-4 for RL from a base (R1-Zero: the format has to be found); after SFT, 5e-5 (the
    // pipeline's rl and final stages): 2e-4 there undoes part of what SFT taught (tutorial/05)
    run.oc.lr = (float)arg_double(argc, argv, "--lr", 2e-4, 0.0, 1.0);
    run.oc.weight_decay = 0.0f;  // RL fine-tuning: no decay towards 0 of the pretrained weights
    run.gamma = (float)arg_double(argc, argv, "--gamma", 1e-3, 0.0, 1.0);
    run.chat = strcmp(template, "chat") == 0;
    if (!run.chat && strcmp(template, "r1-zero") != 0)
        die("--template: '%s' is not r1-zero or chat", template);
    if (strcmp(variant, "grpo") == 0) run.gc.variant = GRPO_PAPER;
    else if (strcmp(variant, "dr_grpo") == 0) run.gc.variant = GRPO_DR;
    else if (strcmp(variant, "dapo") == 0) run.gc.variant = GRPO_DAPO;
    else die("--variant: '%s' is not grpo, dr_grpo or dapo", variant);
    int dapo = run.gc.variant == GRPO_DAPO;
    run.gc.eps_low = (float)arg_double(argc, argv, "--eps", 0.2, 0.0, 1.0);
    run.gc.eps_high = (float)arg_double(argc, argv, "--eps-high", dapo ? 0.28 : run.gc.eps_low, 0.0, 10.0);
    run.gc.beta = (float)arg_double(argc, argv, "--beta", dapo ? 0.0 : 0.04, 0.0, 10.0);
    run.gc.max_len = run.max_new;
    run.w.accuracy = arg_double(argc, argv, "--w-accuracy", 1.0, 0.0, 100.0);
    run.w.format = arg_double(argc, argv, "--w-format", 0.5, 0.0, 100.0);
    run.w.language = arg_double(argc, argv, "--w-language", 0.0, 0.0, 100.0);
    run.seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    run.sample_every = (int)arg_long(argc, argv, "--sample-every", 10, 1, 1000000);
    run.save_every = (int)arg_long(argc, argv, "--save-every", 50, 1, 1000000);
    run.ref_every = (int)arg_long(argc, argv, "--ref-every", 0, 0, 1000000);
    char err[R1_ERR_LEN], path[4096];
    Model policy, ref;
    Tokenizer tok;
    load_model_or_die(&policy, dir);
    load_model_or_die(&ref, dir);  // the frozen reference policy pi_ref
    if (tokenizer_load(&tok, dir, err)) die("%s", err);
    int n_train = 4096, n_plain = nonreasoning > 0 ? 600 : 0;
    Json **train = make_examples(task, 0, n_train, level_lo, level_hi, lang, run.seed);
    Json **plain = n_plain ? nonreasoning_examples(n_plain, run.seed) : NULL;
    int B = run.P * run.G, ctx = policy.cfg.max_position_embeddings, V = policy.cfg.vocab_size;
    Rollout *r = xcalloc((size_t)B, sizeof(Rollout));
    for (int b = 0; b < B; b++) r[b].ids = xcalloc((size_t)ctx + 1, sizeof(int));
    double *rewards = xcalloc((size_t)B, sizeof(double));
    float *adv = xcalloc((size_t)B, sizeof(float));
    RewardParts *parts = xcalloc((size_t)B, sizeof(RewardParts));
    int *flat = xcalloc((size_t)run.P, sizeof(int));
    if (make_dirs(out, err)) die("%s", err);
    snprintf(path, sizeof(path), "%s/metrics.jsonl", out);
    FILE *metrics = fopen(path, "wb");
    if (!metrics) die("%s: %s", path, strerror(errno));
    Rng rng;
    rng_seed(&rng, run.seed ^ 0x6770u);
    printf("GRPO (%s) on %s levels %d-%d: %d prompts x %d rollouts per step, %ld steps, "
           "template %s, beta %g, eps [%g, %g], mu %d, lr %g\n", variant, task, level_lo,
           level_hi, run.P, run.G, run.steps, template, run.gc.beta, run.gc.eps_low,
           run.gc.eps_high, run.mu, run.oc.lr);
    if (n_plain) printf("non-reasoning prompts in %.0f%% of the groups (rule reward: plain answer, "
                        "kind's rule, language)\n", 100.0 * nonreasoning);
    double t_start = now_seconds();
    for (long step = 1; step <= run.steps; step++) {
        // 1. rollouts
        double t0 = now_seconds();
        Json *group_example[4096];
        for (int p = 0; p < run.P; p++) {
            const Json *ex = train[rng_next(&rng) % (uint64_t)n_train];
            if (n_plain && rng_uniform(&rng) < nonreasoning)  // (no draw at all when 0)
                ex = plain[rng_next(&rng) % (uint64_t)n_plain];
            group_example[p] = (Json *)ex;
            for (int i = 0; i < run.G; i++) {
                Rollout *ri = &r[p * run.G + i];
                free(ri->text);
                ri->text = NULL;
                ri->n_prompt = encode_task_prompt(&tok, ex, run.chat, ri->ids, ctx);
                if (ri->n_prompt < 0 || ri->n_prompt >= ctx) die("grpo: a prompt does not fit the context (%d)", ctx);
            }
        }
        sample_rollouts(&policy, &tok, r, B, run.max_new, &run.sc, run.seed * 7919u + (uint64_t)step);
        double t_gen = now_seconds() - t0;
        // 2. rewards and advantages
        double sum_r = 0, acc = 0, fmt = 0, lng = 0, len = 0, refl = 0;
        for (int b = 0; b < B; b++) {
            rewards[b] = reward_total(&run.w, group_example[b / run.G], r[b].text, &parts[b]);
            sum_r += rewards[b];
            acc += parts[b].accuracy;
            fmt += parts[b].format;
            lng += parts[b].language;
            len += r[b].n - r[b].n_prompt;
            refl += has_reflection(r[b].text);
        }
        grpo_advantages(rewards, run.P, run.G, run.gc.variant != GRPO_DR, adv);
        int zero_var = 0;  // groups whose rewards are all equal: no signal
        for (int p = 0; p < run.P; p++) {
            flat[p] = 1;
            for (int i = 1; i < run.G; i++) flat[p] &= rewards[p * run.G + i] == rewards[p * run.G];
            zero_var += flat[p];
        }
        // 3. the batch, pi_old and pi_ref log-probabilities, then mu passes of the loss head
        double t1 = now_seconds();
        int T = 0;
        for (int b = 0; b < B; b++) T = r[b].n > T ? r[b].n : T;
        T = (T + 15) / 16 * 16 < ctx ? (T + 15) / 16 * 16 : ctx;
        ensure_batch(&policy, B, T, 1);
        int *ids = xcalloc((size_t)B * T, sizeof(int));
        float *mask = xcalloc((size_t)B * T, sizeof(float));
        float *old_lp = xcalloc((size_t)B * T, sizeof(float)), *ref_lp = xcalloc((size_t)B * T, sizeof(float));
        float *dlogits = xcalloc((size_t)B * T * V, sizeof(float));
        build_batch(r, B, ids, mask, T);
        // pi_old: with one pass (mu = 1) it is the policy of the update's own first forward, so
        // that forward serves twice; with mu > 1 it must be frozen before the first update
        int old_from_update = run.mu == 1;
        if (!old_from_update) policy_logprobs(&policy, ids, B, T, old_lp);
        ref_logprobs(&ref, ids, B, T, ref_lp);
        GrpoStats st = {0};
        float loss = 0.0f, norm = 0.0f;
        int skip = dapo && zero_var == run.P;  // DAPO's dynamic sampling: no group has signal
        if (dapo)  // drop the groups whose rewards are all equal from the loss
            for (int p = 0; p < run.P; p++)
                if (flat[p])
                    for (int i = 0; i < run.G; i++)
                        memset(mask + (size_t)(p * run.G + i) * T, 0, (size_t)T * sizeof(float));
        for (int pass = 0; pass < run.mu && !skip; pass++) {
            model_forward(&policy, ids, B, T);
            if (old_from_update && pass == 0)
                token_logprobs(policy.acts.logits, ids, B, T, V, old_lp);
            loss = grpo_loss(policy.acts.logits, ids, mask, old_lp, ref_lp, adv, B, T, V, &run.gc,
                             dlogits, &st);
            model_zero_grad(&policy);
            model_backward(&policy, ids, dlogits);
            norm = adamw_step(&policy, &run.oc);
            moe_update_bias(&policy, run.gamma);
            moe_reset_load(&policy);
        }
        double t_learn = now_seconds() - t1;
        if (run.ref_every && step % run.ref_every == 0)  // R1-Zero refreshes pi_ref periodically
            memcpy(ref.params, policy.params, policy.n_params * sizeof(float));
        // 4. report
        fprintf(metrics, "{\"step\": %ld, \"reward\": %.4f, \"accuracy\": %.4f, \"format\": %.4f, "
                "\"language\": %.4f, \"length\": %.1f, \"reflection\": %.4f, \"kl\": %.6f, "
                "\"clip_fraction\": %.4f, \"entropy\": %.4f, \"zero_variance_groups\": %.4f, "
                "\"loss\": %.6f, \"grad_norm\": %.4f, \"generate_s\": %.2f, \"learn_s\": %.2f}\n",
                step, sum_r / B, acc / B, fmt / B, lng / B, len / B, refl / B, st.kl,
                st.clip_fraction, st.entropy, (double)zero_var / run.P, loss, norm, t_gen, t_learn);
        fflush(metrics);
        printf("step %ld/%ld | reward %.3f | acc %.3f | format %.3f | len %.0f | kl %.4f | "
               "zero-var %d/%d | gen %.1fs learn %.1fs | %.0fs\n", step, run.steps, sum_r / B,
               acc / B, fmt / B, len / B, st.kl, zero_var, run.P, t_gen, t_learn,
               now_seconds() - t_start);
        if (step % run.sample_every == 0 || step == 1) {
            const Json *pr = json_get(group_example[0], "prompt");
            printf("  prompt: %s\n  sample (reward %.2f): %s\n", pr ? pr->string : "?", rewards[0],
                   r[0].text);
        }
        fflush(stdout);
        if (step % run.save_every == 0 || step == run.steps)
            if (checkpoint_save(&policy, &tok, NULL, out, err)) die("%s", err);
        free(ids);
        free(mask);
        free(old_lp);
        free(ref_lp);
        free(dlogits);
    }
    fclose(metrics);
    printf("policy saved in %s\n", out);
    for (int b = 0; b < B; b++) {
        free(r[b].ids);
        free(r[b].text);
    }
    free(r);
    free(rewards);
    free(adv);
    free(parts);
    free(flat);
    tasks_free(train, n_train);
    if (plain) tasks_free(plain, n_plain);
    tokenizer_free(&tok);
    model_free(&policy);
    model_free(&ref);
    return 0;
}

// ==============================================================================================
// 14. `./r1 eval`: pass@1 over k samples, cons@k, greedy accuracy (the R1 protocol, §3)
// ==============================================================================================
// For each held-out problem: one greedy completion, and k samples at temperature 0.6, top-p
// 0.95. pass@1 is the mean correctness of the k samples; cons@k is the correctness of the
// majority answer (ties: the answer seen first); format and length are over the samples.

typedef struct {
    double greedy, pass1, consk, format, language, length;
    int n;
} EvalCell;

static void eval_add(EvalCell *c, double greedy, double pass1, double consk, double format,
                     double language, double length) {
    c->greedy += greedy, c->pass1 += pass1, c->consk += consk, c->format += format;
    c->language += language, c->length += length, c->n++;
}

// The answer most of the k completions give (NULL answers do not vote): its index, or -1.
static int majority_answer(char **answers, int k) {
    int best = -1, best_count = 0;
    for (int i = 0; i < k; i++) {
        if (!answers[i]) continue;
        int count = 0;
        for (int j = 0; j < k; j++) count += answers[j] && strcmp(answers[i], answers[j]) == 0;
        if (count > best_count) best = i, best_count = count;
    }
    return best;
}

int cmd_eval(int argc, char **argv) {
    static const char *const known[] = {"--model", "--task", "--k", "--n", "--levels", "--lang",
                                        "--template", "--max-new-tokens", "--seed", "--out",
                                        NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    if (!dir) die("eval: needs --model DIR");
    const char *task = arg_str(argc, argv, "--task", "arithmetic");
    const char *lang = arg_str(argc, argv, "--lang", "both");
    const char *template = arg_str(argc, argv, "--template", "r1-zero");
    const char *out = arg_str(argc, argv, "--out", NULL);
    int k = (int)arg_long(argc, argv, "--k", 4, 1, 256);
    int n = (int)arg_long(argc, argv, "--n", 64, 1, 100000);
    int max_new = (int)arg_long(argc, argv, "--max-new-tokens", 160, 1, 1 << 20);
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    int level_lo, level_hi, chat = strcmp(template, "chat") == 0;
    parse_levels(arg_str(argc, argv, "--levels", "1-2"), &level_lo, &level_hi);
    if (!chat && strcmp(template, "r1-zero") != 0) die("--template: '%s' is not r1-zero or chat", template);
    char err[R1_ERR_LEN];
    Model m;
    Tokenizer tok;
    load_model_or_die(&m, dir);
    if (tokenizer_load(&tok, dir, err)) die("%s", err);
    Json **ex = make_examples(task, 1, n, level_lo, level_hi, lang, seed);
    int per = k + 1, ctx = m.cfg.max_position_embeddings;  // rollout 0: greedy; 1..k: samples
    Rollout *r = xcalloc((size_t)n * per, sizeof(Rollout));
    for (int i = 0; i < n * per; i++) {
        r[i].ids = xcalloc((size_t)ctx + 1, sizeof(int));
        r[i].n_prompt = encode_task_prompt(&tok, ex[i / per], chat, r[i].ids, ctx);
        if (r[i].n_prompt < 0) die("eval: a prompt does not fit the context (%d)", ctx);
    }
    // greedy and sampled rollouts: two calls, one per sampling setting
    Rollout *greedy = xcalloc((size_t)n, sizeof(Rollout)), *sampled = xcalloc((size_t)n * k, sizeof(Rollout));
    for (int i = 0; i < n; i++) {
        greedy[i] = r[i * per];
        for (int j = 0; j < k; j++) sampled[i * k + j] = r[i * per + 1 + j];
    }
    double t0 = now_seconds();
    SamplingConfig g = {0.0f, 1.0f}, s = {0.6f, 0.95f};
    sample_rollouts(&m, &tok, greedy, n, max_new, &g, seed);
    sample_rollouts(&m, &tok, sampled, n * k, max_new, &s, seed + 1);
    double seconds = now_seconds() - t0;
    EvalCell all = {0}, by_level[6] = {{0}};
    char **answers = xcalloc((size_t)k, sizeof(char *));
    for (int i = 0; i < n; i++) {
        double pass = 0, fmt = 0, lng = 0, len = 0;
        const Json *lv = json_get(ex[i], "level"), *lg = json_get(ex[i], "lang");
        const char *pl = lg && lg->type == JSON_STRING ? lg->string : "en";
        for (int j = 0; j < k; j++) {
            const char *text = sampled[i * k + j].text;
            pass += reward_accuracy(ex[i], text);
            fmt += reward_format(text);
            lng += reward_language(text, pl);
            len += sampled[i * k + j].n - sampled[i * k + j].n_prompt;
            answers[j] = answer_extract(text);
        }
        int maj = majority_answer(answers, k);
        double cons = maj >= 0 && task_check(NULL, ex[i], answers[maj]);
        for (int j = 0; j < k; j++) free(answers[j]);
        double gr = reward_accuracy(ex[i], greedy[i].text);
        eval_add(&all, gr, pass / k, cons, fmt / k, lng / k, len / k);
        int level = lv && lv->type == JSON_NUMBER ? (int)lv->number : 0;
        if (level >= 1 && level <= 5) eval_add(&by_level[level], gr, pass / k, cons, fmt / k, lng / k, len / k);
    }
    printf("eval of %s on %d held-out %s problems (levels %d-%d), k = %d at T=0.6 top-p 0.95, "
           "%.1f s\n", dir, n, task, level_lo, level_hi, k, seconds);
    printf("  %-6s %5s %8s %8s %8s %8s %8s %8s\n", "level", "n", "greedy", "pass@1", "cons@k",
           "format", "language", "length");
    for (int l = 0; l <= 5; l++) {
        EvalCell *c = l ? &by_level[l] : &all;
        if (!c->n) continue;
        char name[16];
        snprintf(name, sizeof(name), l ? "%d" : "all", l);
        printf("  %-6s %5d %8.3f %8.3f %8.3f %8.3f %8.3f %8.1f\n", name, c->n, c->greedy / c->n,
               c->pass1 / c->n, c->consk / c->n, c->format / c->n, c->language / c->n,
               c->length / c->n);
    }
    if (out) {
        FILE *f = fopen(out, "wb");
        if (!f) die("%s: %s", out, strerror(errno));
        fprintf(f, "{\"model\": ");
        json_write_string(f, dir);
        fprintf(f, ", \"task\": ");
        json_write_string(f, task);
        fprintf(f, ", \"n\": %d, \"k\": %d, \"greedy\": %.4f, \"pass@1\": %.4f, \"cons@k\": %.4f, "
                "\"format\": %.4f, \"language\": %.4f, \"length\": %.2f, \"seconds\": %.2f}\n",
                all.n, k, all.greedy / all.n, all.pass1 / all.n, all.consk / all.n,
                all.format / all.n, all.language / all.n, all.length / all.n, seconds);
        fclose(f);
    }
    for (int i = 0; i < n * per; i++) {
        free(r[i].ids);
    }
    for (int i = 0; i < n; i++) free(greedy[i].text);
    for (int i = 0; i < n * k; i++) free(sampled[i].text);
    free(r);
    free(greedy);
    free(sampled);
    free(answers);
    tasks_free(ex, n);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}

// ==============================================================================================
// 15. `./r1 reject`: rejection sampling to build the next SFT set (DeepSeek-R1 §2.3.3)
// ==============================================================================================
// Sample K completions per training prompt; keep those that are correct, well formed,
// language-consistent and not cut off by the length limit; drop duplicates; keep at most `cap`
// per prompt. Then add non-reasoning examples (writing, factual QA, self-cognition: R1's 200k
// "non-reasoning" samples, here generated by the program) so the next model keeps those skills.

// Why a completion is rejected (the filters in the order they apply), or REJECT_KEEP.
RejectReason reject_reason(const Json *example, const char *completion, int ended,
                           double min_language) {
    const Json *lg = json_get(example, "lang");
    if (!reward_format(completion)) return REJECT_MALFORMED;
    if (!reward_accuracy(example, completion)) return REJECT_WRONG;
    if (reward_language(completion, lg && lg->type == JSON_STRING ? lg->string : "en") < min_language)
        return REJECT_MIXED;
    if (!ended) return REJECT_CUT_OFF;  // stopped by the length limit, not by EOS
    return REJECT_KEEP;
}

int cmd_reject(int argc, char **argv) {
    static const char *const known[] = {"--model", "--task", "--n-prompts", "--n-per-prompt",
                                        "--cap", "--levels", "--lang", "--template",
                                        "--max-new-tokens", "--temperature", "--min-language",
                                        "--non-reasoning", "--seed", "--out", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (!dir || !out) die("reject: needs --model DIR --out FILE.jsonl");
    const char *task = arg_str(argc, argv, "--task", "all");
    const char *lang = arg_str(argc, argv, "--lang", "both");
    const char *template = arg_str(argc, argv, "--template", "r1-zero");
    int n = (int)arg_long(argc, argv, "--n-prompts", 256, 1, 1000000);
    int k = (int)arg_long(argc, argv, "--n-per-prompt", 4, 1, 256);
    int cap = (int)arg_long(argc, argv, "--cap", 2, 1, 256);
    int max_new = (int)arg_long(argc, argv, "--max-new-tokens", 200, 1, 1 << 20);
    double min_lang = arg_double(argc, argv, "--min-language", 0.9, 0.0, 1.0);
    double nonreasoning = arg_double(argc, argv, "--non-reasoning", 0.2, 0.0, 10.0);
    SamplingConfig sc = {(float)arg_double(argc, argv, "--temperature", 0.7, 0.0, 10.0), 0.95f};
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    int level_lo, level_hi, chat = strcmp(template, "chat") == 0;
    parse_levels(arg_str(argc, argv, "--levels", "1-3"), &level_lo, &level_hi);
    char err[R1_ERR_LEN];
    Model m;
    Tokenizer tok;
    load_model_or_die(&m, dir);
    if (tokenizer_load(&tok, dir, err)) die("%s", err);
    Json **ex = make_examples(task, 0, n, level_lo, level_hi, lang, seed);
    int ctx = m.cfg.max_position_embeddings;
    Rollout *r = xcalloc((size_t)n * k, sizeof(Rollout));
    for (int i = 0; i < n * k; i++) {
        r[i].ids = xcalloc((size_t)ctx + 1, sizeof(int));
        r[i].n_prompt = encode_task_prompt(&tok, ex[i / k], chat, r[i].ids, ctx);
        if (r[i].n_prompt < 0) die("reject: a prompt does not fit the context (%d)", ctx);
    }
    double t0 = now_seconds();
    sample_rollouts(&m, &tok, r, n * k, max_new, &sc, seed);
    // the filters, counted one by one in the order they apply
    long wrong = 0, malformed = 0, mixed = 0, overlong = 0, duplicate = 0, capped = 0, kept = 0;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", out);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("%s: %s", tmp, strerror(errno));
    for (int i = 0; i < n; i++) {
        const Json *lg = json_get(ex[i], "lang"), *pr = json_get(ex[i], "prompt");
        const char *pl = lg && lg->type == JSON_STRING ? lg->string : "en";
        int kept_here = 0;
        for (int j = 0; j < k; j++) {
            Rollout *x = &r[i * k + j];
            int ended = x->n > x->n_prompt && x->ids[x->n - 1] == TOK_EOS;
            RejectReason why = reject_reason(ex[i], x->text, ended, min_lang);
            if (why == REJECT_MALFORMED) { malformed++; continue; }
            if (why == REJECT_WRONG) { wrong++; continue; }
            if (why == REJECT_MIXED) { mixed++; continue; }
            if (why == REJECT_CUT_OFF) { overlong++; continue; }
            int dup = 0;
            for (int q = 0; q < j && !dup; q++) dup = strcmp(r[i * k + q].text, x->text) == 0;
            if (dup) { duplicate++; continue; }
            if (kept_here == cap) { capped++; continue; }
            kept_here++;
            kept++;
            const Json *tk = json_get(ex[i], "task");
            fprintf(f, "{\"task\": ");
            json_write_string(f, tk && tk->type == JSON_STRING ? tk->string : "?");
            fprintf(f, ", \"lang\": ");
            json_write_string(f, pl);
            fprintf(f, ", \"prompt\": ");
            json_write_string(f, pr->string);
            fprintf(f, ", \"solution\": ");
            json_write_string(f, x->text);
            fprintf(f, "}\n");
        }
    }
    long n_plain = (long)(kept * nonreasoning);
    Rng rng;
    rng_seed(&rng, seed ^ 0x6e72u);
    for (long i = 0; i < n_plain; i++) nonreasoning_write(f, (int)i, &rng, 1);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, out) != 0)
        die("%s: %s", out, strerror(errno));
    long total = (long)n * k;
    printf("rejection sampling from %s: %d prompts x %d samples = %ld in %.1f s\n", dir, n, k,
           total, now_seconds() - t0);
    printf("  malformed %ld, wrong %ld, mixed language %ld, cut off %ld, duplicate %ld, over the "
           "cap of %d %ld\n  kept %ld (%.1f%%), plus %ld non-reasoning examples -> %s\n",
           malformed, wrong, mixed, overlong, duplicate, cap, capped, kept, 100.0 * kept / total,
           n_plain, out);
    for (int i = 0; i < n * k; i++) {
        free(r[i].ids);
        free(r[i].text);
    }
    free(r);
    tasks_free(ex, n);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}

