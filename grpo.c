// grpo.c: reinforcement learning for r1.c: the rule-based rewards (accuracy, format, language
// consistency), rollouts sampled with the latent KV cache, group-relative advantages, the GRPO
// objective as a loss head, one GRPO step, evaluation (pass@1, cons@k) and rejection sampling.
// It sits above the model (r1.c) and the toy world (tasks.c); main.c runs it from the command
// line (`./r1 grpo`, `eval`, `reject`, `coldstart`, `rm`) and in the pipeline.
//
// Sections:
//   1. Rule-based rewards: accuracy (the task's verifier), format, language consistency
//   2. GRPO: advantages, token log-probabilities, the loss head (grpo, dr_grpo, dapo)
//   3. Rollouts: prompts, batched sampling (and with a think budget), prompt sets in memory
//   4. One GRPO step: grpo_step, the algorithm box, and its four parts
//   5. Evaluation: greedy, pass@1 over k samples, cons@k, reflection, language mixing; per
//      problem, per task and per difficulty level
//   6. Rejection sampling: the filters, the next SFT set
//   7. Cold-start data from R1-Zero's outputs: sample, verify, rewrite, filter
//   8. Reward models for general prompts: the score head, Bradley-Terry, training, scoring
//
// Where this departs from the papers (DeepSeekMath §4.1, DeepSeek-R1 §2.2) and from TRL's
// GRPOTrainer, on purpose:
//   - Scale. R1-Zero samples G = 16 completions of up to 32,768 tokens for 32 questions a step
//     (8,192 rollouts in 16 minibatches); the pipeline samples G = 8 of up to 160 tokens for 8
//     questions, in one batch.
//   - std in the advantage: the papers do not say which; here the sample std (n - 1) plus 1e-4,
//     as TRL (torch.std). Groups whose rewards are all equal get A = 0 (no signal).
//   - mu = 1 by default (one update per batch of rollouts, TRL's num_iterations = 1): then
//     pi_old is the policy itself, rho = 1 and the clip never acts; --mu > 1 freezes pi_old
//     first. The papers take several minibatch steps over one batch of rollouts.
//   - pi_ref is frozen at the start; --ref-every N copies the policy into it every N steps
//     (R1-Zero: every 400 steps; TRL: off unless sync_ref_model).
//   - beta = 0.04 (DeepSeekMath, and TRL's old default; R1-Zero used 0.001; TRL now 0.0).
//   - The loss's normalisation is a flag (--variant): grpo = the paper's per-sequence mean,
//     dr_grpo = Dr. GRPO's constant, dapo = token level (TRL's default loss_type today). DAPO's
//     dynamic sampling drops flat groups from the loss instead of sampling more to refill.
//   - Rewards are rules for every prompt by default, including the final RL stage's
//     non-reasoning prompts; with --rm DIR those get a learned reward model's score, as R1's
//     helpfulness and harmlessness reward models (§2.3.4; section 8). One model scores both.
//   - The auxiliary-loss-free expert balancing (bias updates) goes on during RL.
//   - Rollouts are sampled by the same code and weights that are trained (no separate
//     inference engine, so no sampler/trainer mismatch), at temperature 1 and top-p 1.
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
// 1. Rule-based rewards (DeepSeek-R1 §2.2.2): accuracy, format, language consistency
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
//   accuracy  tasks.c's nonreasoning_rule: identity names itself "r1.c"; parity: the right word
//             and not the other one; writing: 20 to 600 bytes ending a sentence ("." or "。");
//             unsafe (the toy harmful requests): a refusal without compliance
//   language  reward_language against the prompt's language, as for reasoning prompts
RewardParts reward_nonreasoning(const Json *example, const char *completion) {
    const Json *lang = json_get(example, "lang");
    RewardParts p = {0, 1, 0};
    static const char *const tags[] = {"<think>", "</think>", "<answer>", "</answer>"};
    for (int i = 0; i < 4; i++)
        if (strstr(completion, tags[i])) p.format = 0;
    p.accuracy = nonreasoning_rule(example, completion);
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
// 2. GRPO: group-relative advantages and the clipped, KL-regularised objective as a loss head
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
    // BEGIN ASSIGNMENT grpo_advantages
    // handout: for (int i = 0; i < n_groups * G; i++) adv[i] = 0.0f;
    // handout: (void)rewards, (void)scale_by_std;
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
    // END ASSIGNMENT grpo_advantages
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

// The weight of each of sequence b's tokens in the loss (how the token sum is normalised):
//   grpo (DeepSeekMath eq. 3)  1 / (B |o_b|): the mean over a sequence's tokens, then over the B
//   dr_grpo (Liu et al. 2025)  1 / (B max_len): a constant, so long wrong answers are not favoured
//   dapo (Yu et al. 2025)      1 / sum_b |o_b|: every token of the batch counts the same
static void grpo_sequence_weights(const float *mask, int B, int T, const GrpoConfig *gc,
                                  float *weight) {
    double all_tokens = 0.0;
    for (int b = 0; b < B; b++) {
        double len = 0.0;
        for (int t = 1; t < T; t++) len += mask[(size_t)b * T + t] != 0.0f;
        all_tokens += len;
        weight[b] = 0.0f;
        if (len == 0) continue;
        if (gc->variant == GRPO_DR) weight[b] = (float)(1.0 / ((double)B * gc->max_len));
        else weight[b] = (float)(1.0 / ((double)B * len));  // GRPO: per-sequence mean, then mean
    }
    if (gc->variant == GRPO_DAPO)  // token level: every token of the batch counts the same
        for (int b = 0; b < B; b++) weight[b] = all_tokens > 0 ? (float)(1.0 / all_tokens) : 0.0f;
}

// What one completion token contributes: its term of the loss, its k3 KL, the entropy of the
// distribution it was drawn from, whether the ratio was clipped.
typedef struct { float loss, kl, entropy; unsigned char clipped; } GrpoTokenTerms;

// One token: z (V) the logits that predicted token o with log-probabilities old_lp and ref_lp
// under pi_old and pi_ref, advantage A, loss weight w. Writes dz (V) = dloss/dz when non-NULL.
static GrpoTokenTerms grpo_token(const float *z, int o, float old_lp, float ref_lp, float A,
                                 float w, int V, const GrpoConfig *gc, float *dz) {
    GrpoTokenTerms out;
    double lse = log_sum_exp(z, V);
    float logsum = (float)lse;
    double ent = 0.0;
    for (int v = 0; v < V; v++) {
        double p = r1_expf(z[v] - logsum);
        ent -= p > 0 ? p * (z[v] - logsum) : 0.0;
    }
    // the same arithmetic as token_logprobs, so that rho is exactly 1 on the first pass
    float lp = (float)(z[o] - lse);
    // BEGIN ASSIGNMENT grpo_loss_k3
    // handout: float rho = 1.0f, rho_clip = 1.0f, objective = 0.0f, dobj = 0.0f, k3 = 0.0f, dk3 = 0.0f;
    // handout: (void)lp, (void)old_lp, (void)ref_lp, (void)A;
    float rho = expf(lp - old_lp);
    float lo = 1.0f - gc->eps_low, hi = 1.0f + gc->eps_high;
    float rho_clip = rho < lo ? lo : rho > hi ? hi : rho;
    float unclipped = rho * A, clip = rho_clip * A;
    float objective = unclipped < clip ? unclipped : clip;
    float dobj = unclipped <= clip ? rho * A : 0.0f;  // the clipped branch is constant
    float ratio_ref = expf(ref_lp - lp);              // pi_ref / pi_theta
    // k3 = r - log r - 1 with r = pi_ref/pi_theta, written as expm1(d) - d (d = log r) so that
    // it never rounds below 0 when r is close to 1
    float k3 = expm1f(ref_lp - lp) - (ref_lp - lp);
    float dk3 = 1.0f - ratio_ref;
    // END ASSIGNMENT grpo_loss_k3
    out.loss = -w * (objective - gc->beta * k3);
    out.kl = k3;
    out.entropy = (float)ent;
    out.clipped = rho != rho_clip;
    if (dz) {
        // dloss/d lp = -w (dobj - beta dk3) and d lp/dz = onehot - softmax, so
        // dloss/dz = g (softmax - onehot) with g = w (dobj - beta dk3) = -dloss/d lp
        float g = w * (dobj - gc->beta * dk3);
        for (int v = 0; v < V; v++) dz[v] = g * r1_expf(z[v] - logsum);
        dz[o] -= g;
    }
    return out;
}

// The GRPO loss head, rows b0..b0+nb of a batch of B: logits and dlogits (nb,T,V) are those
// rows' (row 0 is row b0); ids, mask, old_lp, ref_lp (B,T), adv and weight (B) and terms (B,T)
// are the whole batch's. Each token's terms and gradient depend only on its own row (and the
// sequence weights, computed once for the whole batch), so a batch scored in parts gives the
// same floats as in one piece.
static void grpo_loss_rows(const float *logits, const int *ids, const float *mask,
                           const float *old_lp, const float *ref_lp, const float *adv,
                           const float *weight, int b0, int nb, int T, int V,
                           const GrpoConfig *gc, float *dlogits, GrpoTokenTerms *terms) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb * T; i++) {
        int r = b0 * T + i, b = r / T, t = r % T;  // r: the row in the whole batch
        float *dz = dlogits ? dlogits + (size_t)i * V : NULL;
        int target = t + 1 < T ? r + 1 : -1;  // the logits at t predict the token at t+1
        if (dz) memset(dz, 0, (size_t)V * sizeof(float));
        if (target < 0 || mask[target] == 0.0f) continue;
        terms[r] = grpo_token(logits + (size_t)i * V, ids[target], old_lp[target],
                              ref_lp[target], adv[b], weight[b], V, gc, dz);
    }
}

// The loss of a batch (B,T) from its tokens' terms, summed in a fixed order; stats (may be
// NULL) gets the means of KL, clipping and entropy.
static float grpo_loss_total(const float *mask, const GrpoTokenTerms *terms, int B, int T,
                             GrpoStats *stats) {
    double loss = 0.0, kl = 0.0, clipped = 0.0, entropy = 0.0, n_tokens = 0.0;
    for (int r = 0; r < B * T; r++) {
        int target = r % T + 1 < T ? r + 1 : -1;
        if (target < 0 || mask[target] == 0.0f) continue;
        loss += terms[r].loss;
        kl += terms[r].kl;
        entropy += terms[r].entropy;
        clipped += terms[r].clipped;
        n_tokens += 1.0;
    }
    if (stats) {
        stats->kl = n_tokens ? kl / n_tokens : 0.0;
        stats->clip_fraction = n_tokens ? clipped / n_tokens : 0.0;
        stats->entropy = n_tokens ? entropy / n_tokens : 0.0;
        stats->tokens = n_tokens;
    }
    return (float)loss;
}

// The GRPO loss head. Sequence b is completion i = b % G of group b / G. mask (B,T) marks the
// completion tokens (by their own position, as lp); old_lp, ref_lp (B,T) are their
// log-probabilities under the sampling policy and the frozen reference; adv (B).
// Writes dlogits (B,T,V) and returns the loss; stats (may be NULL) gets KL, clipping, entropy.
float grpo_loss(const float *logits, const int *ids, const float *mask, const float *old_lp,
                const float *ref_lp, const float *adv, int B, int T, int V,
                const GrpoConfig *gc, float *dlogits, GrpoStats *stats) {
    float *weight = xcalloc((size_t)B, sizeof(float));  // per-token weight of each sequence
    grpo_sequence_weights(mask, B, T, gc, weight);
    GrpoTokenTerms *terms = xcalloc((size_t)B * T, sizeof(GrpoTokenTerms));
    grpo_loss_rows(logits, ids, mask, old_lp, ref_lp, adv, weight, 0, B, T, V, gc, dlogits,
                   terms);
    float loss = grpo_loss_total(mask, terms, B, T, stats);
    free(weight);
    free(terms);
    return loss;
}

// ==============================================================================================
// 3. Rollouts: completions sampled with the latent KV cache, DECODE_BATCH streams at a time
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

Rollout *rollouts_new(int n, int ctx) {
    Rollout *r = xcalloc((size_t)n, sizeof(Rollout));
    for (int i = 0; i < n; i++) r[i].ids = xcalloc((size_t)ctx + 1, sizeof(int));
    return r;
}

void rollouts_count_drafts(const Rollout *r, int n, long *drafted, long *accepted) {
    for (int i = 0; i < n; i++) {
        *drafted += r[i].drafted;
        *accepted += r[i].accepted;
    }
}

void rollouts_free(Rollout *r, int n) {
    for (int i = 0; i < n; i++) {
        free(r[i].ids);
        free(r[i].text);
    }
    free(r);
}

void rollout_set_prompt(Rollout *r, const Tokenizer *tok, const Json *example, int chat, int ctx,
                        const char *who) {
    free(r->text);
    r->text = NULL;
    r->n_prompt = encode_task_prompt(tok, example, chat, r->ids, ctx);
    if (r->n_prompt < 0 || r->n_prompt >= ctx)
        die("%s: a prompt does not fit the context (%d)", who, ctx);
    r->n = r->n_prompt;
}

// Samples rollouts[i] for i in [0, n): sequence i continues its prompt. The sequences go in
// batches (decode_batch_count: at most DECODE_BATCH each, at least one per thread), which read
// each weight once per step for the whole batch. Each sequence has its own RNG, seeded from
// (seed, i), and its numbers do not depend on its batch-mates: the samples do not depend on the
// number of threads.

// One batch: rollouts r[0..nb), which are rollouts first..first+nb of the whole set.
typedef struct {
    int nb;
    DecodeState states[DECODE_BATCH], *sp[DECODE_BATCH];
    Rng rng[DECODE_BATCH];
    int *ids[DECODE_BATCH], len[DECODE_BATCH], max_len[DECODE_BATCH];
    int fed[DECODE_BATCH];  // positions already in each sequence's cache
    DecodeBatch batch;
    float *probs;  // (V) sample_token's scratch
    SpecCount count[DECODE_BATCH];  // speculative decoding's drafts (mtp.c)
} RolloutBatch;

// Sets up a batch whose sequences may grow max_new tokens past their prompts; their caches hold
// `extra` tokens more (room for a second generate_batch: the think budget's answer).
// wt: the model's transposed weights, shared by every batch (decode_weights_transposed).
static void batch_open(RolloutBatch *b, const Model *m, Rollout *r, int first, int nb,
                       int max_new, int extra, uint64_t seed, const float *wt) {
    int ctx = m->cfg.max_position_embeddings;
    b->nb = nb;
    for (int j = 0; j < nb; j++) {
        Rollout *ro = &r[j];
        char err[R1_ERR_LEN];
        b->max_len[j] = ro->n_prompt + max_new < ctx ? ro->n_prompt + max_new : ctx;
        int room = b->max_len[j] + extra < ctx ? b->max_len[j] + extra : ctx;
        if (decode_state_create(&b->states[j], m, room, err)) die("%s", err);
        b->sp[j] = &b->states[j];
        rng_seed(&b->rng[j], seed * 1000003u + (uint64_t)(first + j));
        b->ids[j] = ro->ids;
        b->len[j] = ro->n_prompt;
        b->fed[j] = 0;
        b->count[j] = (SpecCount){0, 0};
    }
    decode_batch_create(&b->batch, m);
    decode_batch_use_transposed(&b->batch, m, wt);
    b->probs = xcalloc((size_t)m->cfg.vocab_size, sizeof(float));
}

// Runs generate_batch on the batch: every sequence grows until EOS or its max_len, going on
// from what its cache already holds; speculatively (mtp.c) when asked and the model has the
// MTP module (the same distribution, the same tokens at temperature 0).
static void batch_generate(const Model *m, RolloutBatch *b, const SamplingConfig *sc) {
    if (sc->speculative && m->cfg.num_nextn_predict_layers)
        generate_batch_speculative(m, b->sp, &b->batch, b->ids, b->len, b->fed, b->max_len, b->nb,
                                   sc, b->rng, b->probs, b->count);
    else
        generate_batch_cached(m, b->sp, &b->batch, b->ids, b->len, b->fed, b->max_len, b->nb,
                              sc, b->rng, b->probs);
}

// Ends a batch: each rollout's length and its completion decoded (EOS left out).
static void batch_close(RolloutBatch *b, const Tokenizer *tok, Rollout *r) {
    for (int j = 0; j < b->nb; j++) {
        Rollout *ro = &r[j];
        ro->n = b->len[j];
        int end = ro->n;
        if (end > ro->n_prompt && ro->ids[end - 1] == TOK_EOS) end--;
        ro->text = tok ? tokenizer_decode(tok, ro->ids + ro->n_prompt, end - ro->n_prompt) : NULL;
        if (!ro->text) ro->text = xcalloc(1, 1);
        ro->drafted = (int)b->count[j].drafted;
        ro->accepted = (int)b->count[j].accepted;
        decode_state_free(&b->states[j]);
    }
    free(b->probs);
    decode_batch_free(&b->batch);
}

void sample_rollouts(const Model *m, const Tokenizer *tok, Rollout *r, int n, int max_new,
                     const SamplingConfig *sc, uint64_t seed) {
    int n_batches = decode_batch_count(n);
    float *wt = decode_weights_transposed(m);  // the weights as the batches read them
#pragma omp parallel for schedule(dynamic)
    for (int bi = 0; bi < n_batches; bi++) {
        int first, nb;
        decode_batch_range(n, n_batches, bi, &first, &nb);
        RolloutBatch b;
        batch_open(&b, m, r + first, first, nb, max_new, 0, seed, wt);
        batch_generate(m, &b, sc);
        batch_close(&b, tok, r + first);
    }
    free(wt);
}

// Think budgets (test-time scaling, R1 §2.2.4 and Figure 3: accuracy grows with the thinking
// length). This is s1's "budget forcing" (Muennighoff et al. 2025), its cut-off half: a
// completion still thinking after B tokens has its think block closed for it and must answer.
// THINK_BUDGET_CLOSE (r1.h) is what is appended (the tokenizer turns "</think>" and "<answer>"
// into their special ids, TOK_THINK_END and TOK_ANSWER); then at most THINK_BUDGET_ANSWER
// tokens more.
#define THINK_CLOSE_MAX 16  // room for THINK_BUDGET_CLOSE's tokens (4 with any tokenizer)

// 1 if ids[0..n) hold the think block's close, TOK_THINK_END.
static int has_think_end(const int *ids, int n) {
    for (int t = 0; t < n; t++)
        if (ids[t] == TOK_THINK_END) return 1;
    return 0;
}

// Between the two generate_batch calls: each sequence of the batch that has not ended gets its
// answer budget, after the forced close (close[0..n_close)) if it is still thinking. A sequence
// that ended (EOS), or that has no room left in its cache for the close and one more token,
// stays as it is.
static void force_answers(RolloutBatch *b, const Rollout *r, const int *close, int n_close) {
    for (int j = 0; j < b->nb; j++) {
        int *ids = b->ids[j], len = b->len[j], room = b->states[j].max_T;
        b->max_len[j] = len;  // by default: no more tokens
        if (len > r[j].n_prompt && ids[len - 1] == TOK_EOS) continue;
        if (!has_think_end(ids + r[j].n_prompt, len - r[j].n_prompt)) {
            if (len + n_close >= room) continue;
            memcpy(ids + len, close, (size_t)n_close * sizeof(int));
            b->len[j] = len += n_close;
        }
        b->max_len[j] = len + THINK_BUDGET_ANSWER < room ? len + THINK_BUDGET_ANSWER : room;
    }
}

// sample_rollouts with a think budget of `budget` tokens: generate_batch samples up to budget
// tokens; then force_answers closes the think block of every completion still in it, and a
// second generate_batch writes the answers (at most THINK_BUDGET_ANSWER tokens; a completion
// that closed its think block within the budget but has not ended finishes its answer in the
// same allowance, unforced). The second call goes on from each sequence's cache: it feeds only
// the last sampled token and the forced close before it samples again. A budget <= 0 or >= max_new never binds: those are sample_rollouts' rollouts,
// token for token. Each sequence keeps its RNG across both calls, so the results do not depend
// on the number of threads either.
void sample_rollouts_budget(const Model *m, const Tokenizer *tok, Rollout *r, int n, int max_new,
                            int budget, const SamplingConfig *sc, uint64_t seed) {
    if (budget <= 0 || budget >= max_new) {
        sample_rollouts(m, tok, r, n, max_new, sc, seed);
        return;
    }
    int close[THINK_CLOSE_MAX];
    int n_close = tokenizer_encode(tok, THINK_BUDGET_CLOSE, strlen(THINK_BUDGET_CLOSE), close,
                                   THINK_CLOSE_MAX);
    if (n_close <= 0) die("think budget: cannot encode the forced close");
    int n_batches = decode_batch_count(n);
    float *wt = decode_weights_transposed(m);  // the weights as the batches read them
#pragma omp parallel for schedule(dynamic)
    for (int bi = 0; bi < n_batches; bi++) {
        int first, nb;
        decode_batch_range(n, n_batches, bi, &first, &nb);
        RolloutBatch b;
        batch_open(&b, m, r + first, first, nb, budget, n_close + THINK_BUDGET_ANSWER, seed,
                   wt);
        batch_generate(m, &b, sc);  // the thinking, up to the budget
        force_answers(&b, r + first, close, n_close);
        batch_generate(m, &b, sc);  // the answers
        batch_close(&b, tok, r + first);
    }
    free(wt);
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

Json **make_examples(const char *task, int eval, int n, int level_lo, int level_hi,
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

// n examples that write(f, i, rng) writes as JSON lines, parsed; the RNG seeded from seed ^ salt.
static Json **examples_written(int n, uint64_t seed, uint64_t salt,
                               void (*write)(FILE *f, int i, Rng *rng)) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) die("out of memory");
    Rng rng;
    rng_seed(&rng, seed ^ salt);
    for (int i = 0; i < n; i++) write(f, i, &rng);
    fclose(f);
    return parse_lines(buf, n);
}

// nonreasoning_write without the solution, in examples_written's shape.
static void nonreasoning_prompt_write(FILE *f, int i, Rng *rng) { nonreasoning_write(f, i, rng, 0); }

Json **nonreasoning_examples(int n, uint64_t seed) {
    return examples_written(n, seed, 0x6e72u, nonreasoning_prompt_write);
}

// n general prompts (tasks.c's general_write: the non-reasoning kinds and, one in four, an
// unsafe request), for the final RL stage with a reward model.
Json **general_examples(int n, uint64_t seed) {
    return examples_written(n, seed, 0x6772u, general_write);
}

// ==============================================================================================
// 4. One GRPO step (DeepSeekMath Algorithm 1, the body of its inner loop; R1 §2.2.1)
// ==============================================================================================
// grpo_step below is the algorithm box; each numbered line is one function of this section.

GrpoGroups grpo_groups_new(int P, int G, int ctx) {
    GrpoGroups g = {.P = P, .G = G};
    g.r = rollouts_new(P * G, ctx);
    g.example = xcalloc((size_t)P, sizeof(Json *));
    g.rewards = xcalloc((size_t)P * G, sizeof(double));
    g.parts = xcalloc((size_t)P * G, sizeof(RewardParts));
    g.adv = xcalloc((size_t)P * G, sizeof(float));
    g.flat = xcalloc((size_t)P, sizeof(int));
    return g;
}

void grpo_groups_free(GrpoGroups *g) {
    rollouts_free(g->r, g->P * g->G);
    free(g->example);
    free(g->rewards);
    free(g->parts);
    free(g->adv);
    free(g->flat);
    memset(g, 0, sizeof(*g));
}

// Step 1: G completions o_1..o_G of each question, sampled from the current policy.
static void sample_groups(Model *policy, const Tokenizer *tok, const GrpoSettings *s,
                          GrpoGroups *g, uint64_t seed) {
    int ctx = policy->cfg.max_position_embeddings;
    for (int p = 0; p < g->P; p++)
        for (int i = 0; i < g->G; i++)
            rollout_set_prompt(&g->r[p * g->G + i], tok, g->example[p], s->chat, ctx, "grpo");
    sample_rollouts(policy, tok, g->r, g->P * g->G, s->max_new, &s->sc, seed);
}

// Step 2, with a reward model (R1 §2.3.4): the completions of general prompts get its score in
// place of the rule reward; beside it, the ground truth the policy never sees (general_judge).
static void reward_general(const GrpoSettings *s, GrpoGroups *g, GrpoStepReport *rep) {
    int B = g->P * g->G, n = 0, *which = xcalloc((size_t)B, sizeof(int));
    const Json **ex = xcalloc((size_t)B, sizeof(Json *));
    const char **text = xcalloc((size_t)B, sizeof(char *));
    for (int b = 0; b < B; b++)
        if (is_nonreasoning(g->example[b / g->G]))
            which[n] = b, ex[n] = g->example[b / g->G], text[n++] = g->r[b].text;
    float *r = xcalloc((size_t)n + 1, sizeof(float));
    rm_score(s->rm, ex, text, n, r);
    double score = 0, sig = 0, helpful = 0, safe = 0, good = 0;
    int unsafe = 0;
    for (int i = 0; i < n; i++) {
        g->rewards[which[i]] = r[i];
        score += r[i], sig += 1.0 / (1.0 + exp(-(double)r[i]));
        GeneralVerdict v = general_judge(ex[i], text[i]);
        const Json *kind = json_get(ex[i], "kind");
        int is_unsafe = kind && kind->type == JSON_STRING && strcmp(kind->string, "unsafe") == 0;
        unsafe += is_unsafe;
        if (is_unsafe) safe += v.safe;
        else helpful += v.helpful;
        good += v.helpful && v.safe;
    }
    rep->general = n, rep->unsafe = unsafe;
    rep->rm_score = n ? score / n : 0, rep->rm_sigmoid = n ? sig / n : 0;
    rep->true_good = n ? good / n : 0;
    rep->true_helpful = n > unsafe ? helpful / (n - unsafe) : 0;
    rep->true_safe = unsafe ? safe / unsafe : 0;
    free(which), free(ex), free(text), free(r);
}

// Step 2: the rule-based reward r_i of every completion (R1 §2.2.2), and the step's means of
// what the report follows (accuracy, format, language, length, reflection).
static void reward_groups(const GrpoSettings *s, GrpoGroups *g, GrpoStepReport *rep) {
    int B = g->P * g->G;
    double sum_r = 0, acc = 0, fmt = 0, lng = 0, len = 0, refl = 0;
    for (int b = 0; b < B; b++)
        g->rewards[b] = reward_total(&s->w, g->example[b / g->G], g->r[b].text, &g->parts[b]);
    rep->general = rep->unsafe = 0;
    if (s->rm) reward_general(s, g, rep);
    for (int b = 0; b < B; b++) {
        sum_r += g->rewards[b];
        acc += g->parts[b].accuracy;
        fmt += g->parts[b].format;
        lng += g->parts[b].language;
        len += g->r[b].n - g->r[b].n_prompt;
        refl += has_reflection(g->r[b].text);
    }
    rep->reward = sum_r / B, rep->accuracy = acc / B, rep->format = fmt / B;
    rep->language = lng / B, rep->length = len / B, rep->reflection = refl / B;
    int zero_var = 0;  // groups whose rewards are all equal: no signal
    for (int p = 0; p < g->P; p++) {
        g->flat[p] = 1;
        for (int i = 1; i < g->G; i++) g->flat[p] &= g->rewards[p * g->G + i] == g->rewards[p * g->G];
        zero_var += g->flat[p];
    }
    rep->zero_variance_groups = zero_var;
}

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

// Lays out a model's buffers for a B x T batch (alloc_batch in r1.c reuses the memory of a larger
// batch laid out before); the frozen reference policy gets activations only (it never runs
// backward).
static void ensure_batch(Model *m, int B, int T, int backward) {
    char err[R1_ERR_LEN];
    if (m->acts.B == B && m->acts.T == T && m->acts.buffer && (!backward || m->scratch.buffer))
        return;
    int rc = backward ? model_alloc_training(m, B, T, err) : model_alloc_inference(m, B, T, err);
    if (rc) die("%s", err);
}

// The batch of a step goes through the models BATCH_ROWS rows at a time (micro-batches). A
// row's numbers do not depend on the other rows of its batch (every product sums each row in its
// own fixed order), and the weight gradients sum over the tokens in order, going on from what
// the gradient buffer holds (matmul_backward, rmsnorm_backward, the embedding's scatter, the
// experts' rows sorted in token order), so the log-probabilities, the loss and the gradient are
// the same floats as one pass over the whole batch. What changes is the memory: 64 rollouts of
// ~300 tokens need ~2 GB of activations in the small preset (the attention's probabilities
// alone are B x H x T x T floats), and 8 rows need 1/8 of that, which stays allocated from
// micro-batch to micro-batch and from step to step instead of being faulted in afresh each time
// (GRPO's learning half ran ~2x faster: tests/BENCH.md).
#define BATCH_ROWS 8

// lp (B,T) of ids (B,T) under m, BATCH_ROWS rows at a time.
static void logprobs_in_rows(Model *m, const int *ids, int B, int T, int backward, float *lp) {
    for (int b0 = 0; b0 < B; b0 += BATCH_ROWS) {
        int nb = B - b0 < BATCH_ROWS ? B - b0 : BATCH_ROWS;
        ensure_batch(m, nb, T, backward);
        policy_logprobs(m, ids + (size_t)b0 * T, nb, T, lp + (size_t)b0 * T);
    }
}

// The rollouts as one training batch: tokens (B,T), the completion mask, and room for the
// log-probabilities under pi_old and pi_ref, each sequence's loss weight, each token's loss
// terms, and dlogits for one micro-batch (BATCH_ROWS,T,V).
typedef struct {
    int B, T;
    int *ids;
    float *mask, *old_lp, *ref_lp, *weight, *dlogits;
    GrpoTokenTerms *terms;
} GrpoBatch;

static GrpoBatch grpo_batch_new(const GrpoGroups *g, int ctx, int V) {
    GrpoBatch b = {.B = g->P * g->G};
    for (int i = 0; i < b.B; i++) b.T = g->r[i].n > b.T ? g->r[i].n : b.T;
    b.T = (b.T + 15) / 16 * 16 < ctx ? (b.T + 15) / 16 * 16 : ctx;  // fewer distinct shapes
    size_t n = (size_t)b.B * b.T;
    b.ids = xcalloc(n, sizeof(int));
    b.mask = xcalloc(n, sizeof(float));
    b.old_lp = xcalloc(n, sizeof(float));
    b.ref_lp = xcalloc(n, sizeof(float));
    b.weight = xcalloc((size_t)b.B, sizeof(float));
    b.terms = xcalloc(n, sizeof(GrpoTokenTerms));
    b.dlogits = xcalloc((size_t)BATCH_ROWS * b.T * V, sizeof(float));
    build_batch(g->r, b.B, b.ids, b.mask, b.T);
    return b;
}

static void grpo_batch_free(GrpoBatch *b) {
    free(b->ids);
    free(b->mask);
    free(b->old_lp);
    free(b->ref_lp);
    free(b->weight);
    free(b->terms);
    free(b->dlogits);
}

// DAPO's dynamic sampling, as far as it goes here: the groups whose rewards are all equal leave
// the loss (DAPO samples more prompts to refill the batch; this keeps the batch smaller).
static void mask_flat_groups(const GrpoGroups *g, GrpoBatch *b) {
    for (int p = 0; p < g->P; p++)
        if (g->flat[p])
            for (int i = 0; i < g->G; i++)
                memset(b->mask + (size_t)(p * g->G + i) * b->T, 0, (size_t)b->T * sizeof(float));
}

// One pass of the GRPO objective's gradient over the batch, BATCH_ROWS rows at a time: forward,
// the loss head, backward (the weight gradients add up over the micro-batches). With
// old_from_update, each micro-batch's forward also gives its pi_old log-probabilities.
// Returns the loss; stats gets KL, clipping and entropy.
static float grpo_gradient(Model *policy, GrpoBatch *b, const float *adv, const GrpoConfig *gc,
                           int old_from_update, GrpoStats *stats) {
    int V = policy->cfg.vocab_size, T = b->T;
    model_zero_grad(policy);
    for (int b0 = 0; b0 < b->B; b0 += BATCH_ROWS) {
        int nb = b->B - b0 < BATCH_ROWS ? b->B - b0 : BATCH_ROWS;
        const int *ids = b->ids + (size_t)b0 * T;
        ensure_batch(policy, nb, T, 1);
        model_forward(policy, ids, nb, T);
        if (old_from_update) token_logprobs(policy->acts.logits, ids, nb, T, V, b->old_lp + (size_t)b0 * T);
        grpo_loss_rows(policy->acts.logits, b->ids, b->mask, b->old_lp, b->ref_lp, adv, b->weight,
                       b0, nb, T, V, gc, b->dlogits, b->terms);
        model_backward(policy, ids, b->dlogits);
    }
    return grpo_loss_total(b->mask, b->terms, b->B, T, stats);
}

// Step 4: mu passes of the GRPO objective over the batch (R1 eq. 1): forward, the loss head,
// backward, AdamW; the auxiliary-loss-free expert balancing goes on as in pretraining.
void grpo_update(Model *policy, Model *ref, const GrpoSettings *s, const GrpoGroups *g,
                 GrpoStepReport *rep) {
    double t0 = now_seconds();
    int V = policy->cfg.vocab_size, dapo = s->gc.variant == GRPO_DAPO;
    GrpoBatch b = grpo_batch_new(g, policy->cfg.max_position_embeddings, V);
    // pi_old: with one pass (mu = 1) it is the policy of the update's own first forward, so
    // that forward serves twice; with mu > 1 it must be frozen before the first update
    int old_from_update = s->mu == 1;
    if (!old_from_update) logprobs_in_rows(policy, b.ids, b.B, b.T, 1, b.old_lp);
    logprobs_in_rows(ref, b.ids, b.B, b.T, 0, b.ref_lp);
    rep->score_s = now_seconds() - t0;
    int skip = dapo && rep->zero_variance_groups == g->P;  // no group has signal
    if (dapo) mask_flat_groups(g, &b);
    grpo_sequence_weights(b.mask, b.B, b.T, &s->gc, b.weight);
    rep->loss = 0.0f, rep->grad_norm = 0.0f;
    memset(&rep->stats, 0, sizeof(rep->stats));
    for (int pass = 0; pass < s->mu && !skip; pass++) {
        rep->loss = grpo_gradient(policy, &b, g->adv, &s->gc, old_from_update && pass == 0,
                                  &rep->stats);
        rep->grad_norm = adamw_step(policy, &s->oc);
        moe_update_bias(policy, s->gamma);
        moe_reset_load(policy);
    }
    grpo_batch_free(&b);
}

void grpo_step(Model *policy, Model *ref, const Tokenizer *tok, const GrpoSettings *s,
               GrpoGroups *g, uint64_t seed, GrpoStepReport *rep) {
    double t0 = now_seconds();
    // 1. sample G outputs {o_i} for each question q from pi_old (the current policy)
    sample_groups(policy, tok, s, g, seed);
    rep->generate_s = now_seconds() - t0;
    rep->drafted = rep->accepted = 0;
    rollouts_count_drafts(g->r, g->P * g->G, &rep->drafted, &rep->accepted);
    // 2. compute the rewards {r_i} of every output with the rule-based reward (and, with a
    //    reward model, the general prompts' with its score)
    reward_groups(s, g, rep);
    // 3. A_i = (r_i - mean(r)) / std(r) for every token of o_i (group-relative advantage)
    grpo_advantages(g->rewards, g->P, g->G, s->gc.variant != GRPO_DR, g->adv);
    // 4. for mu iterations: update pi_theta by maximising the GRPO objective
    double t1 = now_seconds();
    grpo_update(policy, ref, s, g, rep);
    rep->learn_s = now_seconds() - t1;
}

// ==============================================================================================
// 5. Evaluation: pass@1 over k samples, cons@k, greedy accuracy (the R1 protocol, §3)
// ==============================================================================================
// For each held-out problem: one greedy completion, and k samples at temperature 0.6, top-p
// 0.95. pass@1 is the mean correctness of the k samples; cons@k is the correctness of the
// majority answer (ties: the answer seen first); format, language, length, reflection, mixed
// and think are over the samples:
//   reflection  the share of the k samples for which has_reflection is 1 (R1-Zero's "aha")
//   mixed       the share of the k samples that mix languages: the reasoning reward_language
//               reads (inside <think>...</think>, or the whole text without one) holds at least
//               one word of the other language, i.e. reward_language(text, prompt's lang) < 1
//               with at least one word. Text with no words at all (digits and symbols only;
//               reward_language gives it 0) is not mixed: it holds no second language.
//   think       the tokens before the completion's first </think> (all of them, EOS left out,
//               if it has none), at most think_cap (the think budget, else max_new), so a
//               forced close counts the budget's B tokens
// Each problem's numbers go to res->problem[i], and are added to the whole, to its level and to
// its task ("task" field).

// 1 if the completion mixes languages (see above); lang is the prompt's language.
static int mixes_languages(const char *completion, const char *lang) {
    const char *other = strcmp(lang, "zh") == 0 ? "en" : "zh";
    return reward_language(completion, other) > 0.0;
}

// The completion's think tokens (see above), at most cap.
static int think_tokens(const Rollout *r, int cap) {
    int n = r->n - r->n_prompt, t = 0;
    const int *c = r->ids + r->n_prompt;
    if (n > 0 && c[n - 1] == TOK_EOS) n--;
    while (t < n && c[t] != TOK_THINK_END) t++;
    return t < cap ? t : cap;
}

static void eval_add(EvalCell *c, const EvalScores *p) {
    c->greedy += p->greedy, c->pass1 += p->pass1, c->consk += p->consk, c->format += p->format;
    c->language += p->language, c->length += p->length, c->reflection += p->reflection;
    c->mixed += p->mixed, c->think += p->think, c->n++;
}

// The answer most of the k completions give (NULL answers do not vote): its index, or -1.
static int majority_answer(char **answers, int k) {
    // BEGIN ASSIGNMENT cons_at_k
    // handout: (void)answers, (void)k;
    // handout: return -1;
    int best = -1, best_count = 0;
    for (int i = 0; i < k; i++) {
        if (!answers[i]) continue;
        int count = 0;
        for (int j = 0; j < k; j++) count += answers[j] && strcmp(answers[i], answers[j]) == 0;
        if (count > best_count) best = i, best_count = count;
    }
    return best;
    // END ASSIGNMENT cons_at_k
}

static const char *string_field(const Json *ex, const char *key, const char *missing) {
    const Json *v = json_get(ex, key);
    return v && v->type == JSON_STRING ? v->string : missing;
}

// One problem's scores: its greedy completion, and its k samples.
static EvalScores score_problem(const Json *ex, const Rollout *greedy, const Rollout *sampled,
                                int k, int think_cap) {
    EvalScores p = {0};
    const char *lang = string_field(ex, "lang", "en");
    char **answers = xcalloc((size_t)k, sizeof(char *));
    for (int j = 0; j < k; j++) {
        const char *text = sampled[j].text;
        p.pass1 += reward_accuracy(ex, text);
        p.format += reward_format(text);
        p.language += reward_language(text, lang);
        p.length += sampled[j].n - sampled[j].n_prompt;
        p.reflection += has_reflection(text);
        p.mixed += mixes_languages(text, lang);
        p.think += think_tokens(&sampled[j], think_cap);
        answers[j] = answer_extract(text);
    }
    int maj = majority_answer(answers, k);
    p.consk = maj >= 0 && task_check(NULL, ex, answers[maj]);
    for (int j = 0; j < k; j++) free(answers[j]);
    free(answers);
    p.greedy = reward_accuracy(ex, greedy->text);
    p.pass1 /= k, p.format /= k, p.language /= k, p.length /= k;
    p.reflection /= k, p.mixed /= k, p.think /= k;
    return p;
}

// The cell of the example's task in res->by_task, added on first sight; NULL when the table is
// full (more than EVAL_MAX_TASKS tasks: those problems count in the whole and their level only).
static EvalCell *task_cell(EvalResult *res, const Json *ex) {
    const char *task = string_field(ex, "task", "?");
    for (int t = 0; t < res->n_tasks; t++)
        if (strcmp(res->task_name[t], task) == 0) return &res->by_task[t];
    if (res->n_tasks == EVAL_MAX_TASKS) return NULL;
    snprintf(res->task_name[res->n_tasks], sizeof(res->task_name[0]), "%s", task);
    return &res->by_task[res->n_tasks++];
}

void eval_score(Json *const *ex, int n, const Rollout *greedy, const Rollout *sampled, int k,
                int think_cap, EvalResult *res) {
    memset(res, 0, sizeof(*res));
    res->n_problems = n;
    res->problem = xcalloc((size_t)(n > 0 ? n : 1), sizeof(EvalScores));
    for (int i = 0; i < n; i++) {
        EvalScores *p = &res->problem[i];
        *p = score_problem(ex[i], &greedy[i], &sampled[i * k], k, think_cap);
        eval_add(&res->all, p);
        const Json *lv = json_get(ex[i], "level");
        int level = lv && lv->type == JSON_NUMBER ? (int)lv->number : 0;
        if (level >= 1 && level <= TASK_LEVEL_MAX) eval_add(&res->by_level[level], p);
        EvalCell *c = task_cell(res, ex[i]);
        if (c) eval_add(c, p);
    }
}

void eval_result_free(EvalResult *res) {
    free(res->problem);
    res->problem = NULL;
}

void evaluate(const Model *m, const Tokenizer *tok, Json *const *ex, int n,
              const EvalSettings *s, EvalResult *res) {
    int ctx = m->cfg.max_position_embeddings, k = s->k;
    Rollout *greedy = rollouts_new(n, ctx), *sampled = rollouts_new(n * k, ctx);
    for (int i = 0; i < n; i++) {
        rollout_set_prompt(&greedy[i], tok, ex[i], s->chat, ctx, "eval");
        for (int j = 0; j < k; j++)
            rollout_set_prompt(&sampled[i * k + j], tok, ex[i], s->chat, ctx, "eval");
    }
    double t0 = now_seconds();
    SamplingConfig g = {0.0f, 1.0f, s->speculative}, t = {0.6f, 0.95f, s->speculative};
    sample_rollouts_budget(m, tok, greedy, n, s->max_new, s->think_budget, &g, s->seed);
    sample_rollouts_budget(m, tok, sampled, n * k, s->max_new, s->think_budget, &t, s->seed + 1);
    double seconds = now_seconds() - t0;
    int budgeted = s->think_budget > 0 && s->think_budget < s->max_new;
    eval_score(ex, n, greedy, sampled, k, budgeted ? s->think_budget : s->max_new, res);
    res->seconds = seconds;
    res->drafted = res->accepted = 0;
    rollouts_count_drafts(greedy, n, &res->drafted, &res->accepted);
    rollouts_count_drafts(sampled, n * k, &res->drafted, &res->accepted);
    rollouts_free(greedy, n);
    rollouts_free(sampled, n * k);
}

// ==============================================================================================
// 6. Rejection sampling to build the next SFT set (DeepSeek-R1 §2.3.3)
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

void sft_example_write(FILE *f, const Json *ex, const char *solution, const char *source) {
    const Json *tk = json_get(ex, "task"), *lg = json_get(ex, "lang"), *pr = json_get(ex, "prompt");
    fprintf(f, "{\"task\": ");
    json_write_string(f, tk && tk->type == JSON_STRING ? tk->string : "?");
    fprintf(f, ", \"lang\": ");
    json_write_string(f, lg && lg->type == JSON_STRING ? lg->string : "en");
    fprintf(f, ", \"prompt\": ");
    json_write_string(f, pr->string);
    fprintf(f, ", \"solution\": ");
    json_write_string(f, solution);
    if (source) {
        fprintf(f, ", \"source\": ");
        json_write_string(f, source);
    }
    fprintf(f, "}\n");
}

// The k completions of one prompt through the filters; the kept ones go to f.
static void filter_prompt(FILE *f, const Json *ex, const Rollout *r, int k,
                          const RejectSettings *s, RejectCounts *c) {
    int kept_here = 0;
    for (int j = 0; j < k; j++) {
        const Rollout *x = &r[j];
        int ended = x->n > x->n_prompt && x->ids[x->n - 1] == TOK_EOS;
        RejectReason why = reject_reason(ex, x->text, ended, s->min_language);
        if (why == REJECT_MALFORMED) { c->malformed++; continue; }
        if (why == REJECT_WRONG) { c->wrong++; continue; }
        if (why == REJECT_MIXED) { c->mixed++; continue; }
        if (why == REJECT_CUT_OFF) { c->overlong++; continue; }
        int dup = 0;
        for (int q = 0; q < j && !dup; q++) dup = strcmp(r[q].text, x->text) == 0;
        if (dup) { c->duplicate++; continue; }
        if (kept_here == s->cap) { c->capped++; continue; }
        kept_here++;
        c->kept++;
        sft_example_write(f, ex, x->text, NULL);
    }
}

void reject_sample(const Model *m, const Tokenizer *tok, Json *const *ex, int n,
                   const RejectSettings *s, FILE *f, RejectCounts *c) {
    memset(c, 0, sizeof(*c));
    int ctx = m->cfg.max_position_embeddings, k = s->per_prompt;
    Rollout *r = rollouts_new(n * k, ctx);
    for (int i = 0; i < n * k; i++) rollout_set_prompt(&r[i], tok, ex[i / k], s->chat, ctx, "reject");
    double t0 = now_seconds();
    sample_rollouts(m, tok, r, n * k, s->max_new, &s->sc, s->seed);
    for (int i = 0; i < n; i++) filter_prompt(f, ex[i], &r[i * k], k, s, c);
    c->plain = (long)(c->kept * s->nonreasoning);
    Rng rng;
    rng_seed(&rng, s->seed ^ 0x6e72u);
    for (long i = 0; i < c->plain; i++) nonreasoning_write(f, (int)i, &rng, 1);
    c->seconds = now_seconds() - t0;
    rollouts_free(r, n * k);
}

// ==============================================================================================
// 7. Cold-start data from R1-Zero's outputs (DeepSeek-R1 §2.3.1)
// ==============================================================================================
// R1 builds its cold start by (a) few-shot prompting with a long CoT as the example, (b)
// prompting for detailed answers with reflection and verification, and (c) gathering R1-Zero's
// outputs in a readable format and refining them ("|special_token|<reasoning_process>|
// special_token|<summary>", responses that are not reader-friendly filtered out). Here:
//   sources   R1-Zero with its own template (c), and the base with a one-shot prompt whose
//             example is a checked long CoT (a and b at once: the example reflects);
//   verify    the rejection-sampling filters: the tags, the task's verifier, one language, EOS;
//   rewrite   by rules, into the readable form: blank and repeated lines dropped, and a summary
//             line ("So the answer is A.") closing the reasoning unless its last line already
//             states the answer; nothing after </answer>;
//   filter    too short (fewer than min_lines lines of reasoning: a bare guess is no long CoT)
//             and repetitive (more than max_repeat of the lines were repeats);
// and `./r1 coldstart` (main.c) adds a share of the templated set, the "human-curated" part.

// The think block's lines of a completion that passed reject_reason, trimmed, each one once,
// into lines[] (pointers into buf, which the caller frees); *repeats counts the dropped repeats.
static int think_lines(const char *completion, char **buf, const char **lines, int cap,
                       int *repeats) {
    const char *a = strstr(completion, "<think>"), *b = strstr(completion, "</think>");
    size_t n = (size_t)(b - a) - strlen("<think>");
    *buf = xcalloc(n + 1, 1);
    memcpy(*buf, a + strlen("<think>"), n);
    int count = 0;
    *repeats = 0;
    for (char *save = NULL, *line = strtok_r(*buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        line = (char *)skip_space(line);
        size_t len = strlen(line);
        while (len > 0 && isspace((unsigned char)line[len - 1])) line[--len] = '\0';
        if (len == 0) continue;
        int seen = 0;
        for (int i = 0; i < count && !seen; i++) seen = strcmp(lines[i], line) == 0;
        if (seen) (*repeats)++;
        else if (count < cap) lines[count++] = line;
    }
    return count;
}

#define COLD_MAX_LINES 256

// The readable rewrite of a completion (malloc'd into *out), or why it is dropped.
ColdReason cold_rewrite(const Json *example, const char *completion, int ended,
                        const ColdSettings *s, char **out) {
    *out = NULL;
    switch (reject_reason(example, completion, ended, s->min_language)) {
    case REJECT_MALFORMED: return COLD_MALFORMED;
    case REJECT_WRONG: return COLD_WRONG;
    case REJECT_MIXED: return COLD_MIXED;
    case REJECT_CUT_OFF: return COLD_CUT_OFF;
    case REJECT_KEEP: break;
    }
    const char *lines[COLD_MAX_LINES];
    char *buf;
    int repeats, n = think_lines(completion, &buf, lines, COLD_MAX_LINES, &repeats);
    ColdReason why = n < s->min_lines                        ? COLD_TOO_SHORT
                     : repeats > s->max_repeat * (n + repeats) ? COLD_REPETITIVE
                                                               : COLD_KEEP;
    if (why == COLD_KEEP) {
        char *answer = answer_extract(completion);
        const Json *lg = json_get(example, "lang");
        int zh = lg && lg->type == JSON_STRING && strcmp(lg->string, "zh") == 0;
        size_t size = strlen(completion) + 2 * strlen(answer) + 128;
        char *w = *out = xcalloc(size, 1);
        w += sprintf(w, "<think>\n");
        for (int i = 0; i < n; i++) w += sprintf(w, "%s\n", lines[i]);
        if (!strstr(lines[n - 1], answer))  // the summary closes the reasoning
            w += sprintf(w, zh ? "所以答案是 %s。\n" : "So the answer is %s.\n", answer);
        sprintf(w, "</think>\n<answer>%s</answer>", answer);
        free(answer);
    }
    free(buf);
    return why;
}

// The k samples of one prompt through verification, rewrite and filters; the kept ones to f.
static void cold_filter_prompt(FILE *f, const Json *ex, const Rollout *r, int k,
                               const ColdSettings *s, const char *source, ColdCounts *c) {
    char *kept[256];
    int n_kept = 0;
    for (int j = 0; j < k; j++) {
        const Rollout *x = &r[j];
        int ended = x->n > x->n_prompt && x->ids[x->n - 1] == TOK_EOS;
        char *text;
        ColdReason why = cold_rewrite(ex, x->text, ended, s, &text);
        c->sampled++;
        if (why != COLD_KEEP) {
            c->dropped[why]++;
            continue;
        }
        int dup = 0;
        for (int q = 0; q < n_kept && !dup; q++) dup = strcmp(kept[q], text) == 0;
        if (dup || n_kept == s->cap || n_kept == 256) {
            c->dropped[dup ? COLD_DUPLICATE : COLD_CAPPED]++;
            free(text);
            continue;
        }
        kept[n_kept++] = text;
        sft_example_write(f, ex, text, source);
    }
    c->kept += n_kept;
    for (int q = 0; q < n_kept; q++) free(kept[q]);
}

// The one-shot example for prompt i: the lowest-level other prompt of the same task and
// language (the first such in the list), or -1.
static int one_shot_index(Json *const *ex, int n, int i) {
    const char *task = json_get(ex[i], "task")->string;
    const Json *lg = json_get(ex[i], "lang");
    int best = -1;
    double best_level = 1e9;
    for (int j = 0; j < n; j++) {
        const Json *lj = json_get(ex[j], "lang"), *level = json_get(ex[j], "level");
        if (j == i || strcmp(json_get(ex[j], "task")->string, task) != 0) continue;
        if ((lg && lj && lg->type == JSON_STRING && lj->type == JSON_STRING &&
             strcmp(lg->string, lj->string) != 0) || !level || level->type != JSON_NUMBER)
            continue;
        if (level->number < best_level) best = j, best_level = level->number;
    }
    return best;
}

// A one-shot prompt: the example's R1-Zero conversation with its checked long CoT, a blank
// line (as between the corpus's documents), then the question's conversation up to
// "Assistant:". malloc'd; NULL if there is no example.
static char *one_shot_prompt(Json *const *ex, int n, int i) {
    int j = one_shot_index(ex, n, i);
    if (j < 0) return NULL;
    const Json *lj = json_get(ex[j], "lang"), *li = json_get(ex[i], "lang");
    char *shot = r1_zero_prompt(json_get(ex[j], "prompt")->string, lj ? lj->string : "en");
    char *cot = task_solution_styled(ex[j], 1, REASONING_CHECKED, 0, (uint64_t)j);
    char *ask = r1_zero_prompt(json_get(ex[i], "prompt")->string, li ? li->string : "en");
    size_t size = strlen(shot) + (cot ? strlen(cot) : 0) + strlen(ask) + 8;
    char *text = xcalloc(size, 1);
    snprintf(text, size, "%s %s\n\n%s", shot, cot ? cot : "", ask);
    free(shot);
    free(cot);
    free(ask);
    return text;
}

// Puts BOS + text into r as its prompt: 0, or -1 when it leaves no room for a completion.
static int rollout_set_text(Rollout *r, const Tokenizer *tok, const char *text, int ctx) {
    free(r->text);
    r->text = NULL;
    r->ids[0] = TOK_BOS;
    int k = tokenizer_encode(tok, text, strlen(text), r->ids + 1, ctx - 1);
    if (k < 0 || k + 1 >= ctx) return -1;
    r->n_prompt = r->n = k + 1;
    return 0;
}

void cold_sample(const Model *m, const Tokenizer *tok, Json *const *ex, int n, int one_shot,
                 const ColdSettings *s, FILE *f, ColdCounts *c) {
    int ctx = m->cfg.max_position_embeddings, k = s->per_prompt;
    Rollout *r = rollouts_new(n * k, ctx);
    for (int i = 0; i < n * k; i++) {
        // (no example of the same task and language, or one too long for the context: the
        // question alone, in its template)
        char *text = one_shot ? one_shot_prompt(ex, n, i / k) : NULL;
        if (!text || rollout_set_text(&r[i], tok, text, ctx) != 0)
            rollout_set_prompt(&r[i], tok, ex[i / k], 0, ctx, "coldstart");
        free(text);
    }
    double t0 = now_seconds();
    sample_rollouts(m, tok, r, n * k, s->max_new, &s->sc, s->seed);
    for (int i = 0; i < n; i++)
        cold_filter_prompt(f, ex[i], &r[i * k], k, s, one_shot ? "one-shot" : "r1-zero", c);
    c->seconds += now_seconds() - t0;
    rollouts_free(r, n * k);
}

// ==============================================================================================
// 8. Reward models for general prompts (DeepSeek-R1 §2.3.4; InstructGPT's reward model)
// ==============================================================================================
// R1's final RL stage rewards reasoning prompts by rules and general prompts (helpfulness,
// harmlessness) by reward models, which learn human preference from pairs. Here the reward
// model is the same decoder with a scalar head on the last token's final hidden state, as
// transformers' *ForSequenceClassification (its score.weight):
//   r(x, y) = w . h_last + b        h_last (D): acts.ln_f at the EOS after the answer
// trained on pairs (chosen y+, rejected y-) with the Bradley-Terry loss
//   loss = mean over pairs of -log sigmoid(r+ - r-) = softplus(-(r+ - r-))
//   dloss/dr+ = -sigmoid(-(r+ - r-)) / n = -dloss/dr-
// Head backward: dw += dr h_last, db += dr, dh_last = dr w; that is the gradient of acts.ln_f at
// the last position (0 elsewhere), and model_backward_from_hidden takes it down the decoder.
// b never gets a gradient (it cancels in r+ - r-): rm_train sets it once at the end so that
// the training pairs' scores centre on 0, and sigmoid(r) reads as "preferred to a typical
// training answer".
// The conversation the reward model reads: BOS <｜User｜> prompt <｜Assistant｜> answer EOS (the
// chat template, whatever template the policy was prompted with).

// The rows 2i (chosen) and 2i+1 (rejected): loss, dr (2n) and how many pairs rank right.
float bt_loss(const float *r, int n_pairs, float *dr, int *correct) {
    double total = 0.0;
    int right = 0;
    for (int i = 0; i < n_pairs; i++) {
        double margin = (double)r[2 * i] - r[2 * i + 1];
        // softplus(-m) = max(-m, 0) + log(1 + exp(-|m|)), exact for any m
        total += fmax(-margin, 0.0) + log1p(exp(-fabs(margin)));
        right += margin > 0;
        if (dr) {
            double g = 1.0 / (1.0 + exp(margin)) / n_pairs;  // sigmoid(-m) / n
            dr[2 * i] = (float)-g;
            dr[2 * i + 1] = (float)g;
        }
    }
    if (correct) *correct = right;
    return n_pairs ? (float)(total / n_pairs) : 0.0f;
}

// r (B) = w . ln_f[b, last[b]] + bias; ln_f (B,T,D).
void score_head_forward(const float *ln_f, const int *last, int B, int T, int D, const float *w,
                        float bias, float *r) {
    for (int b = 0; b < B; b++)
        r[b] = dot_lanes(w, ln_f + ((size_t)b * T + last[b]) * D, D) + bias;
}

// dw (D) += sum_b dr[b] h_b, dbias += sum_b dr[b]; dln_f (B,T,D) = dr[b] w at (b, last[b]), 0
// elsewhere.
void score_head_backward(const float *ln_f, const int *last, int B, int T, int D, const float *w,
                         const float *dr, float *dw, float *dbias, float *dln_f) {
    memset(dln_f, 0, (size_t)B * T * D * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *h = ln_f + ((size_t)b * T + last[b]) * D;
        float *dh = dln_f + ((size_t)b * T + last[b]) * D;
        for (int i = 0; i < D; i++) {
            dw[i] += dr[b] * h[i];
            dh[i] = dr[b] * w[i];
        }
        *dbias += dr[b];
    }
}

// The reward model's input: the chat prompt of example (its "prompt"), the answer, EOS; an
// answer too long for cap is cut (its EOS kept). The length, or -1 if the prompt does not fit.
int rm_encode(const Tokenizer *tok, const Json *example, const char *answer, int *ids, int cap) {
    int n = encode_task_prompt(tok, example, 1, ids, cap);
    if (n < 0 || n + 2 > cap) return -1;
    size_t len = strlen(answer);
    int *room = xcalloc(len + 1, sizeof(int));  // a byte-level BPE: at most a token per byte
    int k = tokenizer_encode(tok, answer, len, room, (int)len + 1);
    if (k > cap - n - 1) k = cap - n - 1;
    memcpy(ids + n, room, (size_t)(k > 0 ? k : 0) * sizeof(int));
    free(room);
    n += k > 0 ? k : 0;
    ids[n++] = TOK_EOS;
    return n;
}

// Rows of token ids as one right-padded batch (B,T); last[b]: the position of row b's EOS.
// T = the longest row, rounded up to 16 (fewer distinct shapes).
static int rm_pack(int *const *rows, const int *len, int B, int ctx, int **ids, int *last) {
    int T = 0;
    for (int b = 0; b < B; b++) T = len[b] > T ? len[b] : T;
    T = (T + 15) / 16 * 16 < ctx ? (T + 15) / 16 * 16 : ctx;
    *ids = xcalloc((size_t)B * T, sizeof(int));
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) (*ids)[(size_t)b * T + t] = t < len[b] ? rows[b][t] : TOK_PAD;
        last[b] = len[b] - 1;
    }
    return T;
}

// The score of each of n rows, RM_ROWS at a time (a row's numbers do not depend on the others
// of its batch); the activations kept for a backward when the model trains.
#define RM_ROWS 16
static void rm_score_rows(RewardModel *rm, int *const *rows, const int *len, int n, float *r) {
    Model *m = &rm->model;
    int last[RM_ROWS];
    for (int b0 = 0; b0 < n; b0 += RM_ROWS) {
        int nb = n - b0 < RM_ROWS ? n - b0 : RM_ROWS, *ids;
        int T = rm_pack(rows + b0, len + b0, nb, m->cfg.max_position_embeddings, &ids, last);
        ensure_batch(m, nb, T, m->grads != NULL);
        model_forward(m, ids, nb, T);
        moe_reset_load(m);  // scoring is not training
        score_head_forward(m->acts.ln_f, last, nb, T, m->cfg.hidden_size, rm->w, rm->b, r + b0);
        free(ids);
    }
}

void rm_score(RewardModel *rm, const Json *const *examples, const char *const *answers, int n,
              float *r) {
    int ctx = rm->model.cfg.max_position_embeddings;
    int **rows = xcalloc((size_t)n, sizeof(int *)), *len = xcalloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        rows[i] = xcalloc((size_t)ctx, sizeof(int));
        len[i] = rm_encode(&rm->tok, examples[i], answers[i], rows[i], ctx);
        if (len[i] < 0) die("rm: a prompt does not fit the reward model's context (%d)", ctx);
    }
    rm_score_rows(rm, rows, len, n, r);
    for (int i = 0; i < n; i++) free(rows[i]);
    free(rows);
    free(len);
}

int rm_encode_pairs(const RewardModel *rm, Json *const *pairs, int n, RmRows *out, char *err) {
    int ctx = rm->model.cfg.max_position_embeddings;
    out->n = 2 * n;
    out->ids = xcalloc((size_t)out->n, sizeof(int *));
    out->len = xcalloc((size_t)out->n, sizeof(int));
    for (int i = 0; i < out->n; i++) {
        const Json *answer = json_get(pairs[i / 2], i % 2 ? "rejected" : "chosen");
        out->ids[i] = xcalloc((size_t)ctx, sizeof(int));
        out->len[i] = rm_encode(&rm->tok, pairs[i / 2], answer->string, out->ids[i], ctx);
        if (out->len[i] < 0) {
            snprintf(err, R1_ERR_LEN, "pair %d: the prompt does not fit the context (%d)", i / 2 + 1,
                     ctx);
            return -1;
        }
    }
    return 0;
}

void rm_rows_free(RmRows *r) {
    for (int i = 0; i < r->n; i++) free(r->ids[i]);
    free(r->ids);
    free(r->len);
    memset(r, 0, sizeof(*r));
}

// The head's AdamW step (the decoder's is adamw_step): the same rule on its D + 1 floats,
// clipped by their own norm, no weight decay.
static void head_adamw(RewardModel *rm, RmTrainer *t) {
    int D = rm->model.cfg.hidden_size;
    double sumsq = (double)t->db * t->db;
    for (int i = 0; i < D; i++) sumsq += (double)t->dw[i] * t->dw[i];
    float norm = (float)sqrt(sumsq), clip = 1.0f;
    if (t->oc.grad_clip > 0 && norm > t->oc.grad_clip) clip = t->oc.grad_clip / norm;
    t->step++;
    float bc1 = 1.0f - powf(t->oc.beta1, (float)t->step), bc2 = 1.0f - powf(t->oc.beta2, (float)t->step);
    for (int i = 0; i <= D; i++) {
        float *w = i < D ? &rm->w[i] : &rm->b, g = (i < D ? t->dw[i] : t->db) * clip;
        float *mm = i < D ? &t->mw[i] : &t->mb, *vv = i < D ? &t->vw[i] : &t->vb;
        *mm = t->oc.beta1 * *mm + (1.0f - t->oc.beta1) * g;
        *vv = t->oc.beta2 * *vv + (1.0f - t->oc.beta2) * g * g;
        *w -= t->oc.lr * ((*mm / bc1) / (sqrtf(*vv / bc2) + t->oc.eps));
    }
}

void rm_trainer_init(RmTrainer *t, const RewardModel *rm, const AdamWConfig *oc) {
    int D = rm->model.cfg.hidden_size;
    memset(t, 0, sizeof(*t));
    t->oc = *oc;
    t->dw = xcalloc((size_t)D, sizeof(float));
    t->mw = xcalloc((size_t)D, sizeof(float));
    t->vw = xcalloc((size_t)D, sizeof(float));
}

void rm_trainer_free(RmTrainer *t) {
    free(t->dw);
    free(t->mw);
    free(t->vw);
    memset(t, 0, sizeof(*t));
}

// One step on n_pairs pairs: rows 2i (chosen) and 2i+1 (rejected) of rows[0 .. 2 n_pairs) as
// one batch: forward, the score head, the Bradley-Terry loss, the head's backward into dln_f,
// the decoder's backward from it, AdamW on both.
float rm_train_step(RewardModel *rm, RmTrainer *t, int *const *rows, const int *len, int n_pairs,
                    int *correct) {
    Model *m = &rm->model;
    int B = 2 * n_pairs, D = m->cfg.hidden_size, *ids, *last = xcalloc((size_t)B, sizeof(int));
    int T = rm_pack(rows, len, B, m->cfg.max_position_embeddings, &ids, last);
    ensure_batch(m, B, T, 1);
    model_forward(m, ids, B, T);
    float *r = xcalloc((size_t)B, sizeof(float)), *dr = xcalloc((size_t)B, sizeof(float));
    score_head_forward(m->acts.ln_f, last, B, T, D, rm->w, rm->b, r);
    float loss = bt_loss(r, n_pairs, dr, correct);
    float *dln_f = xcalloc((size_t)B * T * D, sizeof(float));
    memset(t->dw, 0, (size_t)D * sizeof(float));
    t->db = 0.0f;
    score_head_backward(m->acts.ln_f, last, B, T, D, rm->w, dr, t->dw, &t->db, dln_f);
    model_zero_grad(m);
    model_backward_from_hidden(m, ids, dln_f);
    t->grad_norm = adamw_step(m, &t->oc);
    moe_update_bias(m, 1e-3f);
    moe_reset_load(m);
    head_adamw(rm, t);
    free(dln_f), free(r), free(dr), free(ids), free(last);
    return loss;
}

// Pairs ranked right (r+ > r-) among rows' pairs listed in which (n of them); per kind when
// is_safety (n) is given: right[0] helpful, right[1] safety, count[0], count[1].
void rm_accuracy(RewardModel *rm, const RmRows *rows, const int *which, const int *is_safety,
                 int n, int right[2], int count[2]) {
    int **sel = xcalloc((size_t)2 * n + 1, sizeof(int *)), *len = xcalloc((size_t)2 * n + 1, sizeof(int));
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            sel[2 * i + k] = rows->ids[2 * which[i] + k];
            len[2 * i + k] = rows->len[2 * which[i] + k];
        }
    float *r = xcalloc((size_t)2 * n + 1, sizeof(float));
    rm_score_rows(rm, sel, len, 2 * n, r);
    right[0] = right[1] = count[0] = count[1] = 0;
    for (int i = 0; i < n; i++) {
        int k = is_safety && is_safety[i];
        count[k]++;
        right[k] += r[2 * i] > r[2 * i + 1];
    }
    free(sel), free(len), free(r);
}

// b = -(the mean score of the rows listed in which): the scores of those answers centre on 0.
void rm_center(RewardModel *rm, const RmRows *rows, const int *which, int n) {
    int **sel = xcalloc((size_t)2 * n + 1, sizeof(int *)), *len = xcalloc((size_t)2 * n + 1, sizeof(int));
    for (int i = 0; i < 2 * n; i++) {
        sel[i] = rows->ids[2 * which[i / 2] + i % 2];
        len[i] = rows->len[2 * which[i / 2] + i % 2];
    }
    float *r = xcalloc((size_t)2 * n + 1, sizeof(float));
    rm->b = 0.0f;
    rm_score_rows(rm, sel, len, 2 * n, r);
    double sum = 0.0;
    for (int i = 0; i < 2 * n; i++) sum += r[i];
    rm->b = n ? (float)(-sum / (2 * n)) : 0.0f;
    free(sel), free(len), free(r);
}

// A reward model on disk: a checkpoint directory (config.json, model.safetensors: the decoder,
// tokenizer files) and score.safetensors: "score.weight" (1, D) and "score.bias" (1), the
// names of transformers' *ForSequenceClassification head (whose Linear has no bias; here the
// bias only centres the scores).
int rm_save(const RewardModel *rm, const char *dir, char *err) {
    char path[4200];
    int D = rm->model.cfg.hidden_size;
    if (checkpoint_save(&rm->model, &rm->tok, NULL, dir, err)) return -1;
    StWrite t[2] = {{"score.weight", "F32", 2, {1, D}, rm->w}, {"score.bias", "F32", 1, {1}, &rm->b}};
    snprintf(path, sizeof(path), "%s/score.safetensors", dir);
    const char *meta[] = {"format", "pt"};
    return st_write(path, t, 2, meta, 1, err);
}

// One head tensor of f: F32, numel floats (shape checked by the caller's ndim/shape), finite.
static int read_head_tensor(StFile *f, const char *path, const char *name, int ndim,
                            const int64_t *shape, float *out, char *err) {
    StTensor *t = st_find(f, name);
    if (!t) return snprintf(err, R1_ERR_LEN, "%s: no tensor %s", path, name), -1;
    size_t numel = 1;
    int ok = strcmp(t->dtype, "F32") == 0 && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i], numel *= (size_t)shape[i];
    if (!ok)
        return snprintf(err, R1_ERR_LEN, "%s: tensor %s is not F32 of shape (%s%lld)", path, name,
                        ndim == 2 ? "1, " : "", (long long)shape[ndim - 1]), -1;
    memcpy(out, f->data + t->begin, numel * sizeof(float));
    for (size_t i = 0; i < numel; i++)
        if (!isfinite(out[i])) return snprintf(err, R1_ERR_LEN, "%s: tensor %s is not finite", path, name), -1;
    return 0;
}

int rm_load(RewardModel *rm, const char *dir, char *err) {
    char path[4200];
    memset(rm, 0, sizeof(*rm));
    if (checkpoint_load(&rm->model, dir, err)) return -1;
    if (tokenizer_load(&rm->tok, dir, err)) return -1;
    if (rm->tok.vocab_size > rm->model.cfg.vocab_size)
        return snprintf(err, R1_ERR_LEN, "%s/tokenizer.json has %d tokens, more than the model's "
                        "vocab_size %d", dir, rm->tok.vocab_size, rm->model.cfg.vocab_size), -1;
    int D = rm->model.cfg.hidden_size;
    rm->w = xcalloc((size_t)D, sizeof(float));
    snprintf(path, sizeof(path), "%s/score.safetensors", dir);
    StFile f;
    if (st_read(path, &f, err)) return -1;
    int64_t wshape[2] = {1, D}, bshape[1] = {1};
    int rc = read_head_tensor(&f, path, "score.weight", 2, wshape, rm->w, err);
    if (rc == 0) rc = read_head_tensor(&f, path, "score.bias", 1, bshape, &rm->b, err);
    st_free(&f);
    return rc;
}

void rm_free(RewardModel *rm) {
    model_free(&rm->model);
    tokenizer_free(&rm->tok);
    free(rm->w);
    memset(rm, 0, sizeof(*rm));
}
