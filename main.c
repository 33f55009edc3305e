// main.c: the r1 program. The command line, the training loops (pretraining, SFT,
// distillation, GRPO), `bench`, `plot`, and the pipeline that runs the whole R1 recipe stage
// after stage and writes its report. The only file that knows every other one (r1.h: the map).
//
// Contents:
//   1. The command line: flags, `info`, `forward`, `sample`, `chat`
//   2. `train`: a short run on a synthetic stream, and one training step
//   3. `pretrain`, `sft`, `distill`: one training loop, the LR schedule, resumable
//   4. `data`: task sets, the corpus and preference pairs (tasks.c)
//   5. `grpo`, `eval`, `reject`, `rm` (grpo.c)
//   6. `bench`
//   7. `plot`, `pipeline` (pipeline.c)
//   8. main
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "r1.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>  // mallopt: keep_freed_memory
#endif

static void print_count(const char *what, double n, double total) {
    printf("  %-28s %16.0f  %8.3fB  %5.1f%%\n", what, n, n / 1e9, 100.0 * n / total);
}

// The KV-cache lines of a Qwen2 / Llama config (gqa.c): whole keys and values per kv head.
static void print_gqa_cache(const Config *c) {
    int H = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    double L = c->num_hidden_layers, per_layer = 2.0 * Hkv * hd;
    printf("KV cache per token: K and V of %d kv heads = 2*%d*%d = %.0f floats per layer = %.0f "
           "floats (%.0f bytes f32, %.0f bytes bf16)\n", Hkv, Hkv, hd, per_layer, per_layer * L,
           4 * per_layer * L, 2 * per_layer * L);
    printf("  multi-head attention with %d kv heads would keep %.0f per layer: GQA is %.1fx "
           "smaller\n", H, 2.0 * H * hd, (double)H / Hkv);
}

static void print_info(const Config *c, const char *name) {
    char q_rank[16] = "null (q_proj)";
    if (c->q_lora_rank) snprintf(q_rank, sizeof(q_rank), "%d", c->q_lora_rank);
    ParamCount pc;
    count_params(c, &pc);
    int L = c->num_hidden_layers;
    int dense = c->first_k_dense_replace < L ? c->first_k_dense_replace : L;
    printf("model: %s\n", name);
    if (is_gqa(c))
        printf("architecture: %s decoder (%s), %d dense SwiGLU blocks, hidden %d, vocab %d\n",
               c->arch == ARCH_QWEN2 ? "Qwen2" : "Llama", arch_model_type(c->arch), L,
               c->hidden_size, c->vocab_size);
    else
        printf("architecture: DeepSeek-V3 decoder, %d blocks (%d dense SwiGLU + %d DeepSeekMoE), "
               "hidden %d, vocab %d\n", L, dense, L - dense, c->hidden_size, c->vocab_size);
    if (is_gqa(c))
        printf("  GQA: %d query heads share %d key/value heads (groups of %d), head_dim %d, "
               "q/k/v bias %s, rope theta %g (rotate-half)\n", c->num_attention_heads,
               c->num_key_value_heads, c->num_attention_heads / c->num_key_value_heads,
               c->head_dim, c->attention_bias ? "yes" : "no", c->rope_theta);
    else printf("  MLA: %d heads, q_lora_rank %s, kv_lora_rank %d, qk_nope %d + qk_rope %d, v %d, "
           "rope theta %g%s\n", c->num_attention_heads, q_rank, c->kv_lora_rank,
           c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim, c->rope_theta, c->rope_yarn ? " with YaRN" : "");
    if (c->rope_yarn)
        printf("  YaRN: factor %g, original context %d -> %d\n", c->rope_factor,
               c->rope_original_max_position_embeddings, c->max_position_embeddings);
    if (L > dense)
        printf("  MoE: %d routed experts (width %d), top-%d, %d shared, %d groups keep %d, "
               "norm_topk_prob %s, routed scaling %g\n", c->n_routed_experts,
               c->moe_intermediate_size, c->num_experts_per_tok, c->n_shared_experts, c->n_group,
               c->topk_group, c->norm_topk_prob ? "true" : "false", c->routed_scaling_factor);
    printf("parameters: total %.0f (%.2fB), activated per token %.0f (%.2fB, %.1f%%)\n",
           pc.total, pc.total / 1e9, pc.activated, pc.activated / 1e9,
           100.0 * pc.activated / pc.total);
    print_count("embedding", pc.embed, pc.total);
    print_count("lm_head", pc.head, pc.total);
    print_count(is_gqa(c) ? "attention (GQA)" : "attention (MLA)", pc.attention, pc.total);
    print_count("RMSNorm weights", pc.norms, pc.total);
    print_count("dense MLPs", pc.dense_mlp, pc.total);
    print_count("MoE routers", pc.router, pc.total);
    print_count("MoE shared experts", pc.shared, pc.total);
    print_count("MoE routed experts", pc.routed, pc.total);
    if (c->num_nextn_predict_layers) {  // not in the total: DeepSeek-V3 counts 671B + 14B
        double copies = 2.0 * c->vocab_size * c->hidden_size;  // its files' embedding and head
        printf("MTP module (block %d), not in the total: %.0f (%.2fB); %.2fB with the copies of "
               "the embedding and lm_head its checkpoint stores; model and module %.2fB\n", L,
               pc.mtp, pc.mtp / 1e9, (pc.mtp + copies) / 1e9, (pc.total + pc.mtp + copies) / 1e9);
    }
    if (is_gqa(c)) {
        print_gqa_cache(c);
        return;
    }
    // KV cache per token (float32 here; DeepSeek-V3 stores it in FP8/BF16)
    double H = c->num_attention_heads, dc = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    double mla = (dc + dr) * L;
    double mha = H * (c->qk_nope_head_dim + dr + c->v_head_dim) * L;
    printf("KV cache per token: MLA keeps c_kv + k_pe = %.0f + %.0f floats per layer = %.0f "
           "floats (%.0f bytes f32, %.0f bytes bf16)\n", dc, dr, mla, 4 * mla, 2 * mla);
    printf("  standard multi-head attention with these heads: H*(dn+dr+dv) = %.0f per layer = "
           "%.0f floats; MLA is %.1fx smaller\n", mha / L, mha, mha / mla);
    double paper = 2.0 * H * c->qk_nope_head_dim;
    printf("  in DeepSeek-V2's accounting (2 * n_h * d_h = %.0f per layer): %.1fx smaller\n",
           paper, paper * L / mla);
}

// ==============================================================================================
// 1. The command line: flags, `info`, `forward`, `sample`, `chat`
// ==============================================================================================

// The flags of a command: argv[1] is the command's name and argv[2..] its flags. Every error
// names the command ("r1: pretrain: --steps: 'x' is not an integer in 1..1000000000").

// Finds "--name value" in argv; NULL if absent. A flag at the end with no value is an error.
static const char *arg_str(int argc, char **argv, const char *name, const char *fallback) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) {
            if (i + 1 >= argc) die("%s: %s needs a value", argv[1], name);
            return argv[i + 1];
        }
    return fallback;
}

static int arg_flag(int argc, char **argv, const char *name) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static long arg_long(int argc, char **argv, const char *name, long fallback, long lo, long hi) {
    const char *s = arg_str(argc, argv, name, NULL);
    if (!s) return fallback;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        die("%s: %s: '%s' is not an integer in %ld..%ld", argv[1], name, s, lo, hi);
    return v;
}

static double arg_double(int argc, char **argv, const char *name, double fallback, double lo,
                         double hi) {
    const char *s = arg_str(argc, argv, name, NULL);
    if (!s) return fallback;
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= lo && v <= hi))
        die("%s: %s: '%s' is not a number in %g..%g", argv[1], name, s, lo, hi);
    return v;
}

// --levels "2" or "1-3" (difficulty levels of the toy tasks) into lo, hi; with the flag absent
// and fallback NULL, lo and hi stay as they are.
static void arg_levels(int argc, char **argv, const char *fallback, int *lo, int *hi) {
    const char *s = arg_str(argc, argv, "--levels", fallback);
    const char *why = s ? levels_parse(s, lo, hi) : NULL;
    if (why) die("%s: --levels: '%s' %s", argv[1], s, why);
}

// The flags whose value is a file or directory: it must leave room, in the program's 4096-byte
// path buffers, for what is put after it ("/.staging/optimizer.safetensors.tmp", ...).
#define R1_PATH_MAX 4000
static const char *const path_flags[] = {"--out", "--model", "--init", "--teacher", "--tokenizer",
                                         "--data", "--input", "--config", NULL};

// Checks that every flag given is one the command knows (so typos fail loudly), that none is
// given twice (which one would win is a guess), and that paths fit.
static void check_flags(int argc, char **argv, const char *const *known, const char *const *bools) {
    int *is_flag = xcalloc((size_t)argc, sizeof(int));  // 1 at the flags (not their values)
    for (int i = 2; i < argc; i++) {
        is_flag[i] = 1;
        int ok = 0, with_value = 0;
        for (const char *const *k = known; *k; k++)
            if (strcmp(argv[i], *k) == 0) { ok = 1, with_value = 1; break; }
        for (const char *const *k = bools; !ok && *k; k++)
            if (strcmp(argv[i], *k) == 0) ok = 1;
        if (!ok) die("%s: unknown argument '%s' (see ./r1 help)", argv[1], argv[i]);
        for (int j = 2; j < i; j++)
            if (is_flag[j] && strcmp(argv[j], argv[i]) == 0)
                die("%s: %s is given twice", argv[1], argv[i]);
        if (!with_value) continue;
        if (i + 1 >= argc) die("%s: %s needs a value", argv[1], argv[i]);
        for (const char *const *k = path_flags; *k; k++)
            if (strcmp(argv[i], *k) == 0 && strlen(argv[i + 1]) > R1_PATH_MAX)
                die("%s: %s: the path is %zu bytes long, at most %d fit", argv[1], argv[i],
                    strlen(argv[i + 1]), R1_PATH_MAX);
        i++;  // the value (not a flag, even if it looks like one)
    }
    free(is_flag);
}

// One run at a time per output directory: DIR/.lock, created with O_EXCL, holds the owner's pid
// and is removed when the process exits (die included). A lock whose process is gone (a killed
// run) is stale: it is taken over. who: the command, for the message.
static char lock_path[4200];
static void lock_release(void) {
    if (lock_path[0]) unlink(lock_path);
    lock_path[0] = 0;
}
static void out_lock(const char *who, const char *dir) {
    char err[R1_ERR_LEN], path[4200], text[32];
    if (make_dirs(dir, err)) die("%s", err);
    snprintf(path, sizeof(path), "%s/.lock", dir);
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
            int wrote = write(fd, text, (size_t)n) == n;
            close(fd);
            if (!wrote) {
                unlink(path);
                die("%s: %s: cannot write the lock", who, path);
            }
            snprintf(lock_path, sizeof(lock_path), "%s", path);
            atexit(lock_release);
            return;
        }
        if (errno != EEXIST) die("%s: %s: %s", who, path, strerror(errno));
        char *held = read_file(path, NULL, err);
        long pid = held ? atol(held) : 0;
        free(held);
        if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            die("%s: %s is in use by another run (pid %ld, %s); wait for it or use another --out",
                who, dir, pid, path);
        unlink(path);  // stale (its process is gone) or unreadable: take it over
    }
    die("%s: %s: cannot take the lock", who, path);
}

// The tokenizer of dir for model m: every id it can produce must be a row of the model's
// embedding (a larger tokenizer would index past it).
static void load_tokenizer_for(Tokenizer *tok, const char *dir, const Model *m, const char *who) {
    char err[R1_ERR_LEN];
    if (tokenizer_load(tok, dir, err)) die("%s", err);
    if (tok->vocab_size > m->cfg.vocab_size)
        die("%s: %s/tokenizer.json has %d tokens, more than the model's vocab_size %d", who, dir,
            tok->vocab_size, m->cfg.vocab_size);
}

static void load_model_or_die(Model *m, const char *dir) {
    char err[R1_ERR_LEN];
    if (checkpoint_load(m, dir, err)) die("%s", err);
}


static int cmd_info(int argc, char **argv) {
    static const char *const known[] = {"--config", "--model", NULL}, *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *preset = arg_str(argc, argv, "--config", NULL);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    char err[R1_ERR_LEN];
    Config c;
    if (dir) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/config.json", dir);
        char *text = read_file(path, NULL, err);
        if (!text) die("%s", err);
        if (config_from_json(text, &c, err)) die("%s/%s", dir, err);
        free(text);
        print_info(&c, dir);
        return 0;
    }
    if (!preset) preset = "small";
    if (config_preset(preset, &c, err) || config_validate(&c, err)) die("%s", err);
    print_info(&c, preset);
    return 0;
}

// Reads input_ids [B,T] (int32 or int64) from a safetensors file and checks every id.
static int *read_input_ids(const char *path, const Config *c, int *B, int *T) {
    char err[R1_ERR_LEN];
    StFile f;
    if (st_read(path, &f, err)) die("%s", err);
    StTensor *t = st_find(&f, "input_ids");
    if (!t) die("%s: no tensor 'input_ids'", path);
    if (t->ndim != 2 || t->shape[0] <= 0 || t->shape[1] <= 0)
        die("%s: input_ids must have shape [B, T] with B, T > 0", path);
    int is64 = strcmp(t->dtype, "I64") == 0;
    if (!is64 && strcmp(t->dtype, "I32") != 0)
        die("%s: input_ids has dtype %s, expected I32 or I64", path, t->dtype);
    if (t->shape[1] > c->max_position_embeddings)
        die("%s: %lld tokens per sequence exceed max_position_embeddings %d", path,
            (long long)t->shape[1], c->max_position_embeddings);
    if (t->shape[0] * t->shape[1] > (1 << 24)) die("%s: input_ids too large", path);
    *B = (int)t->shape[0];
    *T = (int)t->shape[1];
    int n = *B * *T, *ids = xcalloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        int64_t v;
        if (is64) memcpy(&v, f.data + t->begin + 8 * (size_t)i, 8);
        else {
            int32_t v32;
            memcpy(&v32, f.data + t->begin + 4 * (size_t)i, 4);
            v = v32;
        }
        if (v < 0 || v >= c->vocab_size)
            die("%s: input_ids[%d] = %lld is out of range 0..%d", path, i, (long long)v,
                c->vocab_size - 1);
        ids[i] = (int)v;
    }
    st_free(&f);
    return ids;
}

static int cmd_forward(int argc, char **argv) {
    static const char *const known[] = {"--model", "--input", "--out", NULL};
    static const char *const bools[] = {"--backward", NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    const char *in = arg_str(argc, argv, "--input", NULL);
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (!dir || !in || !out) die("forward: needs --model DIR --input IN --out OUT");
    int backward = arg_flag(argc, argv, "--backward");
    Model m;
    load_model_or_die(&m, dir);
    int B, T;
    int *ids = read_input_ids(in, &m.cfg, &B, &T);
    char err[R1_ERR_LEN];
    if (model_alloc_training(&m, B, T, err)) die("%s", err);
    model_forward(&m, ids, B, T);
    int V = m.cfg.vocab_size;
    float *dlogits = backward ? xcalloc((size_t)B * T * V, sizeof(float)) : NULL;
    float loss = cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, V, dlogits);
    if (backward) {
        model_zero_grad(&m);
        model_backward(&m, ids, dlogits);
    }
    // outputs: logits, loss, and grad.<name> for every trainable tensor
    int n = 2 + (backward ? m.n_tensors : 0), k = 0;
    StWrite *w = xcalloc((size_t)n, sizeof(StWrite));
    char (*names)[128] = xcalloc((size_t)n, 128);
    w[k++] = (StWrite){"logits", "F32", 3, {B, T, V}, m.acts.logits};
    w[k++] = (StWrite){"loss", "F32", 1, {1}, &loss};
    for (int i = 0; backward && i < m.n_tensors; i++) {
        ParamInfo *p = &m.table[i];
        if (!p->trainable) continue;
        snprintf(names[k], 128, "grad.%s", p->name);
        w[k] = (StWrite){names[k], "F32", p->ndim, {p->shape[0], p->shape[1]},
                         m.grads + p->offset};
        k++;
    }
    if (st_write(out, w, k, NULL, 0, err)) die("%s", err);
    printf("loss %.6f (B=%d, T=%d)%s -> %s\n", loss, B, T, backward ? " with gradients" : "", out);
    free(w);
    free(names);
    free(dlogits);
    free(ids);
    model_free(&m);
    return 0;
}

// Parses "37 43 12" (spaces or commas) into ids, each checked against the vocabulary.
static int parse_ids(const char *s, int V, int *ids, int cap) {
    int n = 0;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno) die("--prompt-ids: '%s' is not a list of integers", s);
        if (v < 0 || v >= V) die("--prompt-ids: token id %ld is out of range 0..%d", v, V - 1);
        if (n == cap) die("--prompt-ids: the prompt is longer than the context (%d tokens)", cap);
        ids[n++] = (int)v;
        s = end;
    }
    if (n == 0) die("--prompt-ids: empty prompt");
    return n;
}

// Streams decoded text token by token.
static void print_token(int id, void *ctx) {
    const Tokenizer *tok = ctx;
    if (id == TOK_EOS) return;
    char *text = tokenizer_decode(tok, &id, 1);
    if (text) fputs(text, stdout);
    free(text);
    fflush(stdout);
}

// The chat template of tokenizer_config.json: BOS <｜User｜>prompt<｜Assistant｜>, or the
// R1-Zero template (DeepSeek-R1 Table 1), or the raw text.
static int encode_prompt(const Tokenizer *tok, const char *template, const char *prompt, int *ids,
                         int cap) {
    char *text = NULL;
    size_t len = strlen(prompt);
    int n = 0;
    if (cap < 4) return -1;
    ids[n++] = TOK_BOS;
    if (strcmp(template, "chat") == 0) {
        ids[n++] = TOK_USER;
        int k = tokenizer_encode(tok, prompt, len, ids + n, cap - n - 1);
        if (k < 0) return -1;
        n += k;
        ids[n++] = TOK_ASSISTANT;
        return n;
    }
    if (strcmp(template, "r1-zero") == 0) {
        int ascii = 1;  // the template's language follows the prompt's: any non-ASCII -> Chinese
        for (const char *p = prompt; *p; p++) ascii &= (unsigned char)*p < 0x80;
        text = r1_zero_prompt(prompt, ascii ? "en" : "zh");
        prompt = text;
        len = strlen(text);
    } else if (strcmp(template, "none") != 0) {
        die("--template: '%s' is not chat, r1-zero or none", template);
    }
    int k = tokenizer_encode(tok, prompt, len, ids + n, cap - n);
    free(text);
    return k < 0 ? -1 : n + k;
}

static int cmd_sample(int argc, char **argv) {
    static const char *const known[] = {"--model", "--prompt-ids", "--prompt", "--template",
                                        "--max-new-tokens", "--temperature", "--top-p", "--seed",
                                        NULL};
    static const char *const bools[] = {"--print-ids", "--speculative", NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    const char *prompt_ids = arg_str(argc, argv, "--prompt-ids", NULL);
    const char *prompt = arg_str(argc, argv, "--prompt", NULL);
    const char *template = arg_str(argc, argv, "--template", "chat");
    if (!dir || (!prompt_ids == !prompt))
        die("sample: needs --model DIR and one of --prompt-ids \"1 2 3\" or --prompt TEXT");
    // by default, until the end-of-sequence token or the context is full (-1)
    int max_new = (int)arg_long(argc, argv, "--max-new-tokens", -1, 0, 1 << 20);
    SamplingConfig sc = {(float)arg_double(argc, argv, "--temperature", 0.0, 0.0, 100.0),
                         (float)arg_double(argc, argv, "--top-p", 1.0, 1e-6, 1.0),
                         arg_flag(argc, argv, "--speculative")};
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    int print_ids = arg_flag(argc, argv, "--print-ids") || prompt_ids;
    char err[R1_ERR_LEN];
    Model m;
    load_model_or_die(&m, dir);
    int ctx = m.cfg.max_position_embeddings;
    int *ids = xcalloc((size_t)ctx + 1, sizeof(int));
    Tokenizer tok;
    int have_tok = 0, n;
    if (prompt) {
        load_tokenizer_for(&tok, dir, &m, "sample");
        have_tok = 1;
        n = encode_prompt(&tok, template, prompt, ids, ctx);
        if (n < 0) die("the prompt is longer than the context (%d tokens)", ctx);
    } else {
        n = parse_ids(prompt_ids, m.cfg.vocab_size, ids, ctx);
    }
    int total = max_new < 0 ? ctx : n + max_new;
    if (total > ctx) {
        fprintf(stderr, "r1: note: stopping at the context length %d\n", ctx);
        total = ctx;
    }
    DecodeState s;
    if (decode_state_create(&s, &m, total, err)) die("%s", err);
    Rng rng;
    rng_seed(&rng, seed);
    float *probs = xcalloc((size_t)m.cfg.vocab_size, sizeof(float));
    int len;
    if (sc.speculative && m.cfg.num_nextn_predict_layers) {  // mtp.c: a batch of one, printed at the end
        DecodeBatch b;
        decode_batch_create(&b, &m);
        DecodeState *sp = &s;
        int fed = 0;
        SpecCount count = {0, 0};
        len = n;
        generate_batch_speculative(&m, &sp, &b, &ids, &len, &fed, &total, 1, &sc, &rng, probs,
                                   &count);
        decode_batch_free(&b);
        for (int i = n; i < len && !print_ids; i++) print_token(ids[i], have_tok ? &tok : NULL);
        fprintf(stderr, "r1: speculative: %ld of %ld MTP drafts accepted\n", count.accepted,
                count.drafted);
    } else {
        if (sc.speculative) fprintf(stderr, "r1: note: the model has no MTP module\n");
        len = generate(&m, &s, ids, 0, n, total, &sc, &rng, probs,
                       print_ids ? NULL : print_token, have_tok ? &tok : NULL);
    }
    if (print_ids) {
        for (int i = 0; i < len; i++) printf(i ? " %d" : "%d", ids[i]);
    }
    printf("\n");
    if (have_tok) tokenizer_free(&tok);
    free(probs);
    free(ids);
    decode_state_free(&s);
    model_free(&m);
    return 0;
}

// An interactive conversation: each turn is appended to the same latent KV cache.
static int cmd_chat(int argc, char **argv) {
    static const char *const known[] = {"--model", "--max-new-tokens", "--temperature", "--top-p",
                                        "--seed", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    if (!dir) die("chat: needs --model DIR");
    int max_new = (int)arg_long(argc, argv, "--max-new-tokens", 256, 1, 1 << 20);
    SamplingConfig sc = {(float)arg_double(argc, argv, "--temperature", 0.6, 0.0, 100.0),
                         (float)arg_double(argc, argv, "--top-p", 0.95, 1e-6, 1.0), 0};
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    char err[R1_ERR_LEN], line[4096];
    Model m;
    Tokenizer tok;
    load_model_or_die(&m, dir);
    load_tokenizer_for(&tok, dir, &m, "chat");
    int ctx = m.cfg.max_position_embeddings, len = 0, cached = 0;
    int *ids = xcalloc((size_t)ctx + 1, sizeof(int));
    DecodeState s;
    if (decode_state_create(&s, &m, ctx, err)) die("%s", err);
    Rng rng;
    rng_seed(&rng, seed);
    float *probs = xcalloc((size_t)m.cfg.vocab_size, sizeof(float));
    ids[len++] = TOK_BOS;
    printf("chat with %s (context %d tokens; an empty line or Ctrl-D ends)\n", dir, ctx);
    while (printf("> "), fflush(stdout), fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) break;
        int room = ctx - len - 2;
        int k = room > 0 ? tokenizer_encode(&tok, line, strlen(line), ids + len + 1, room) : -1;
        if (k < 0) {
            printf("(the context is full)\n");
            break;
        }
        ids[len] = TOK_USER;
        len += 1 + k;
        ids[len++] = TOK_ASSISTANT;
        int end = len + max_new < ctx ? len + max_new : ctx;
        len = generate(&m, &s, ids, cached, len, end, &sc, &rng, probs, print_token, &tok);
        cached = len - 1;
        printf("\n");
    }
    tokenizer_free(&tok);
    free(probs);
    free(ids);
    decode_state_free(&s);
    model_free(&m);
    return 0;
}

// ----------------------------------------------------------------------------------------------
// Threads on a busy machine: run on the idle cores
// ----------------------------------------------------------------------------------------------
// A thread whose core another program keeps busy gets about half of it, and every parallel
// region waits for its slowest thread. On the device's CPU, 2 threads pinned to 2 cores, one of
// them running a busy loop, lost 4-10% to 1 thread with r1's short spin (short_spin_wait_policy,
// at the end of this file) and 16-33% when sleeping at once (tests/BENCH.md, stop 27): no wait
// policy helps there, fewer threads do. So before a command's long work, r1 looks at how busy
// the CPUs it may run on are, for 0.1 s while it does nothing itself, and runs one thread per
// idle core: the allowed CPUs minus the busy ones, rounded, at least 1. Only when
// OMP_NUM_THREADS is not set: a count you choose is used as it is. No float depends on the
// thread count (tests/test_r1.c checks it), so no result does.

// Whether CPU `cpu` is in a list such as "0-3,8,10-11" (/proc/self/status' Cpus_allowed_list).
static int cpu_in_list(const char *list, int cpu) {
    const char *p = list;
    for (;;) {
        char *end;
        long first = strtol(p, &end, 10), last = first;
        if (end == p) return 0;
        if (*end == '-') last = strtol(end + 1, &end, 10);
        if (cpu >= first && cpu <= last) return 1;
        if (*end != ',') return 0;
        p = end + 1;
    }
}

// The busy and total time so far of the CPUs this process may run on (clock ticks from
// /proc/stat, summed over them; busy = all but idle and iowait). Returns how many CPUs that
// is, 0 when it cannot tell (no /proc).
static int cpu_times(long long *busy, long long *total) {
    char allowed[4096] = "", line[4096];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Cpus_allowed_list: %4095s", allowed) == 1) break;
    fclose(f);
    if (!allowed[0] || !(f = fopen("/proc/stat", "r"))) return 0;
    int n = 0;
    *busy = *total = 0;
    while (fgets(line, sizeof(line), f)) {
        int cpu;
        long long t[8] = {0};  // user nice system idle iowait irq softirq steal
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
        if (sscanf(line + 3, "%d %lld %lld %lld %lld %lld %lld %lld %lld", &cpu, &t[0], &t[1],
                   &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]) < 5 || !cpu_in_list(allowed, cpu))
            continue;
        long long all = 0;
        for (int i = 0; i < 8; i++) all += t[i];
        *busy += all - t[3] - t[4];
        *total += all;
        n++;
    }
    fclose(f);
    return n;
}

// The CPU time this process has used so far, its threads' together (user and system), in seconds.
static double own_cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

// One thread per idle core: `cores` CPUs, of which other programs keep `busy` cores' worth
// busy; at least 1 thread, at most max_threads.
static int threads_for_idle_cores(int max_threads, int cores, double busy) {
    int idle = cores - (int)(busy + 0.5);
    if (idle > max_threads) idle = max_threads;
    return idle < 1 ? 1 : idle;
}

// Called by a command before its long work (who: its name, for the message). When
// OMP_NUM_THREADS is not set and more than one thread would run, measures the other programs'
// load for 0.1 s and runs on the idle cores; says so when that is fewer threads.
static void use_idle_cores(const char *who) {
    int max_threads = openmp_threads();
    if (getenv("OMP_NUM_THREADS") || max_threads < 2) return;
    long long busy0, total0, busy1, total1;
    double own0 = own_cpu_seconds();
    int cores = cpu_times(&busy0, &total0);
    struct timespec pause = {0, 100 * 1000 * 1000};  // 0.1 s: ~10 clock ticks per CPU
    if (cores == 0 || nanosleep(&pause, NULL) != 0) return;
    if (cpu_times(&busy1, &total1) != cores || total1 <= total0) return;
    // this process's own ticks are not another program's: OpenMP threads that still spin after
    // a parallel region (OMP_WAIT_POLICY=active) would otherwise count as a busy core
    double own = (own_cpu_seconds() - own0) * (double)sysconf(_SC_CLK_TCK);
    double others = (double)(busy1 - busy0) - own;
    double busy = (others > 0 ? others : 0.0) / (double)(total1 - total0) * cores;
    int threads = threads_for_idle_cores(max_threads, cores, busy);
    if (threads == max_threads) return;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    printf("%s: other programs keep %.1f of %d cores busy: %d thread%s instead of %d "
           "(OMP_NUM_THREADS sets the count)\n", who, busy, cores, threads,
           threads == 1 ? "" : "s", max_threads);
    fflush(stdout);
}

// ==============================================================================================
// 2. `train`: a short pretraining run on a synthetic stream (loss must fall)
// ==============================================================================================
// Each sequence is an arithmetic progression modulo V: a random start s and step d, then
// s, s+d, s+2d, ... The first two tokens fix d, so the model must learn to attend back to them:
// the loss falls from ln(V) towards 0 as it does.

static void synthetic_batch(Rng *rng, int *ids, int B, int T, int V) {
    int span = V < 64 ? V : 64;  // a smaller alphabet keeps the task learnable in few steps
    for (int b = 0; b < B; b++) {
        int s = (int)(rng_next(rng) % (uint64_t)span), d = 1 + (int)(rng_next(rng) % 7);
        for (int t = 0; t < T; t++) ids[b * T + t] = (s + t * d) % span;
    }
}

typedef struct {
    float loss;          // the loss head's value (mean cross-entropy)
    float balance_loss;  // the sequence-wise balance loss (0 when alpha is 0)
    float grad_norm;     // global gradient norm before clipping
    float load_ratio;    // max / mean tokens per expert, averaged over the MoE layers (1 = even)
    float mtp_loss;      // the MTP module's loss (mtp.c, before lambda); NAN when not trained
} StepStats;

// max/mean expert load of each MoE layer since the last reset, averaged over layers.
static float expert_load_ratio(const Model *m) {
    const Config *c = &m->cfg;
    int E = c->n_routed_experts, n = 0;
    double sum = 0.0;
    for (int l = c->first_k_dense_replace; l < c->num_hidden_layers; l++) {
        const long *load = m->expert_load + (size_t)l * E;
        double mean = 0.0, max = 0.0;
        for (int e = 0; e < E; e++) {
            mean += load[e];
            if (load[e] > max) max = load[e];
        }
        mean /= E;
        if (mean > 0) { sum += max / mean; n++; }
    }
    return n ? (float)(sum / n) : 1.0f;
}

// The teacher of a distillation step (NULL: plain cross-entropy).
typedef struct {
    Model *teacher;  // its forward buffers allocated for the same (B, T)
    float alpha, tau;
} Distill;

// One optimisation step: forward, loss head, backward, AdamW, then DeepSeek-V3's
// auxiliary-loss-free bias update from this batch's expert loads.
static StepStats train_step(Model *m, const int *ids, const float *mask, float *dlogits,
                            const AdamWConfig *oc, float gamma, const Distill *kd) {
    int B = m->acts.B, T = m->acts.T, V = m->cfg.vocab_size;
    StepStats st;
    model_forward(m, ids, B, T);
    if (kd && kd->teacher) {
        model_forward(kd->teacher, ids, B, T);
        moe_reset_load(kd->teacher);
        st.loss = distill_loss(m->acts.logits, kd->teacher->acts.logits, ids, mask, B, T, V,
                               kd->alpha, kd->tau, dlogits);
    } else {
        st.loss = cross_entropy_forward_backward(m->acts.logits, ids, mask, B, T, V, dlogits);
    }
    // the MTP module's loss head (DeepSeek-V3 eq. 25: L_main + lambda L_MTP), on the same pass
    int mtp = m->mtp_lambda > 0.0f;
    st.mtp_loss = mtp ? mtp_forward(m, ids, mask) : NAN;
    st.balance_loss = m->balance_loss;
    model_zero_grad(m);
    if (mtp) mtp_backward(m);
    model_backward_plus(m, ids, dlogits, mtp ? m->acts.mtp_dh : NULL);
    st.grad_norm = adamw_step(m, oc);
    st.load_ratio = expert_load_ratio(m);
    moe_update_bias(m, gamma);
    moe_reset_load(m);
    return st;
}

static int cmd_train(int argc, char **argv) {
    static const char *const known[] = {"--config", "--steps", "--batch", "--seq", "--lr",
                                        "--seed", "--out", "--gamma", "--init", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *preset = arg_str(argc, argv, "--config", "small");
    const char *init = arg_str(argc, argv, "--init", NULL);  // start from a checkpoint
    int steps = (int)arg_long(argc, argv, "--steps", 60, 1, 1000000);
    int B = (int)arg_long(argc, argv, "--batch", 8, 1, 4096);
    int T = (int)arg_long(argc, argv, "--seq", 64, 2, 1 << 20);
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    const char *out = arg_str(argc, argv, "--out", NULL);
    AdamWConfig oc = adamw_defaults();
    oc.lr = (float)arg_double(argc, argv, "--lr", 3e-3, 0.0, 10.0);
    float gamma = (float)arg_double(argc, argv, "--gamma", 1e-3, 0.0, 1.0);
    char err[R1_ERR_LEN];
    Config c;
    Model m;
    if (init) {
        load_model_or_die(&m, init);
        c = m.cfg;
        preset = init;
    } else {
        if (config_preset(preset, &c, err) || model_create(&m, &c, err)) die("%s", err);
        model_init_random(&m, seed);
    }
    if (model_alloc_training(&m, B, T, err)) die("%s", err);
    Rng rng;
    rng_seed(&rng, seed + 1);
    int *ids = xcalloc((size_t)B * T, sizeof(int));
    float *dlogits = xcalloc((size_t)B * T * c.vocab_size, sizeof(float));
    printf("training preset '%s' (%.2fM parameters) on %d x %d tokens per step, seed %llu\n",
           preset, m.n_params / 1e6, B, T, (unsigned long long)seed);
    double t0 = now_seconds();
    for (int step = 1; step <= steps; step++) {
        synthetic_batch(&rng, ids, B, T, c.vocab_size);
        StepStats st = train_step(&m, ids, NULL, dlogits, &oc, gamma, NULL);
        if (step == 1 || step % 10 == 0 || step == steps)
            printf("step %4d  loss %.4f  grad norm %.3f  %.0f tokens/s\n", step, st.loss,
                   st.grad_norm, (double)step * B * T / (now_seconds() - t0));
    }
    if (out) {
        if (checkpoint_save(&m, NULL, NULL, out, err)) die("%s", err);
        printf("saved %s\n", out);
    }
    free(ids);
    free(dlogits);
    model_free(&m);
    return 0;
}

// ==============================================================================================
// 3. Pretraining, SFT, distillation: one training loop, the DeepSeek-V3 LR schedule, resumable
// ==============================================================================================
// DeepSeek-V3 §4.2: linear warmup (2K steps) to the peak LR, constant for ~2/3 of training,
// cosine decay to 10% of the peak, and a short stretch at the end at the low rate. Scaled down:
// warmup, constant until decay_start, cosine down to lr_min by the last step.

typedef struct {
    float lr_max, lr_min;
    long warmup, decay_start, total;
} LrSchedule;

static float lr_at(const LrSchedule *s, long step) {  // step counts from 0
    if (step < s->warmup) return s->lr_max * (float)(step + 1) / (float)s->warmup;
    if (step < s->decay_start || s->total <= s->decay_start) return s->lr_max;
    double progress = (double)(step - s->decay_start) / (double)(s->total - s->decay_start);
    if (progress > 1) progress = 1;
    return (float)(s->lr_min + 0.5 * (s->lr_max - s->lr_min) * (1 + cos(M_PI * progress)));
}

// Training data for every supervised stage: rows of T tokens, with an optional loss mask
// aligned with the tokens (mask[b, t] = 1: predicting token t counts). Pretraining cuts the
// encoded corpus into windows (no mask); SFT pads one example per row and masks its response.
// The last rows (n_train..n_seq) are held out: never trained on, used for the held-out loss.
typedef struct {
    int *ids;                // (n_seq, T)
    float *mask;             // (n_seq, T), or NULL: every prediction counts
    long n_seq, n_train;
    int T;
    long *order;             // (n_train) the shuffled row order of epoch order_epoch
    long order_epoch;
} SeqData;

// Encodes text, one document (blank-line separated) at a time, with EOS after each.
static int *encode_corpus(const Tokenizer *tok, const char *text, size_t len, long *n_out) {
    size_t cap = 2 * len + 16;  // every byte one token at most, plus BOS/EOS per document
    int *ids = xcalloc(cap, sizeof(int));
    long n = 0;
    size_t start = 0;
    while (start < len) {
        const char *hit = strstr(text + start, "\n\n");
        size_t end = hit ? (size_t)(hit - text) : len;
        if (end > start) {
            ids[n++] = TOK_BOS;
            int k = tokenizer_encode(tok, text + start, end - start, ids + n, (int)(cap - n - 1));
            if (k < 0) die("corpus: a document did not fit the token buffer");
            n += k;
            ids[n++] = TOK_EOS;
        }
        start = end + 2;
    }
    *n_out = n;
    return ids;
}

// Cuts the encoded corpus (BOS doc EOS BOS doc EOS ...) into rows of T tokens that begin at a
// document's BOS. A row takes whole documents while they fit; the room left is filled with the
// beginning of the next document, which then starts the next row again whole. So every document
// of at most T tokens is seen in one piece, with its question in the same window as the worked
// solution that copies from it (a solution cut from its question cannot be learnt: its digits
// are unpredictable), and no position is padding. A document longer than T continues row by
// row. Returns the rows (n_rows, T); the stream is not changed.
static int *document_rows(const int *stream, long n, int T, long *n_rows_out) {
    long cap = 16, n_rows = 0;
    int *rows = xcalloc((size_t)cap * T, sizeof(int));
    long start = 0;  // the first token of the next row
    while (start + T <= n) {  // (a tail of fewer than T tokens is dropped)
        if (n_rows == cap) {
            cap *= 2;
            int *grown = realloc(rows, (size_t)cap * T * sizeof(int));
            if (!grown) die("out of memory");
            rows = grown;
        }
        memcpy(rows + (size_t)n_rows * T, stream + start, (size_t)T * sizeof(int));
        n_rows++;
        // the next row starts at the last document that began in this row but did not end in
        // it; if it is the one the row began with (longer than T), it continues mid-document
        long last_bos = start;
        for (long i = start; i < start + T; i++)
            if (stream[i] == TOK_BOS) last_bos = i;
        int cut = stream[start + T - 1] != TOK_EOS;
        start = cut && last_bos > start ? last_bos : start + T;
    }
    *n_rows_out = n_rows;
    return rows;
}

// The window order of an epoch is a function of (seed, epoch) alone, so a resumed run rebuilds
// it from the TrainState without saving the permutation.
static void shuffle_rows(SeqData *d, uint64_t seed, long epoch) {
    Rng rng;
    rng_seed(&rng, seed + 0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1));
    for (long i = 0; i < d->n_train; i++) d->order[i] = i;
    for (long i = d->n_train - 1; i > 0; i--) {  // Fisher-Yates
        long j = (long)(rng_next(&rng) % (uint64_t)(i + 1));
        long t = d->order[i];
        d->order[i] = d->order[j];
        d->order[j] = t;
    }
    d->order_epoch = epoch;
}

// Fills ids (B,T) (and mask) with the next B training rows, moving to the next epoch at the end.
static void next_batch(SeqData *d, TrainState *ts, int *ids, float *mask, int B) {
    for (int b = 0; b < B; b++) {
        if (d->order_epoch != ts->epoch) shuffle_rows(d, ts->rng, ts->epoch);
        long w = d->order[ts->cursor];
        memcpy(ids + (size_t)b * d->T, d->ids + w * d->T, (size_t)d->T * sizeof(int));
        if (d->mask)
            memcpy(mask + (size_t)b * d->T, d->mask + w * d->T, (size_t)d->T * sizeof(float));
        if (++ts->cursor == d->n_train) {
            ts->cursor = 0;
            ts->epoch++;
        }
    }
}

// Mean loss over (up to max_batches of) the held-out rows.
static float heldout_loss(Model *m, const SeqData *d, int *ids, float *mask, int B,
                          int max_batches) {
    double sum = 0.0;
    int batches = 0;
    for (long w = d->n_train; w + B <= d->n_seq && batches < max_batches; w += B) {
        memcpy(ids, d->ids + w * d->T, (size_t)B * d->T * sizeof(int));
        if (d->mask) memcpy(mask, d->mask + w * d->T, (size_t)B * d->T * sizeof(float));
        model_forward(m, ids, B, d->T);
        sum += cross_entropy_forward_backward(m->acts.logits, ids, d->mask ? mask : NULL, B,
                                              d->T, m->cfg.vocab_size, NULL);
        batches++;
    }
    moe_reset_load(m);  // evaluation does not count towards the balancing statistics
    return batches ? (float)(sum / batches) : NAN;
}

// A progress line: redrawn in place in a terminal, one plain line per report in a pipe.
static void progress(int tty, long step, long total, const StepStats *st, float lr, double tps,
                     double eta) {
    char line[256];
    snprintf(line, sizeof(line), "step %ld/%ld | loss %.4f | lr %.2e | %.0f tok/s | load max/mean "
             "%.2f | ETA %dm%02ds", step, total, st->loss, lr, tps, st->load_ratio,
             (int)eta / 60, (int)eta % 60);
    if (tty) printf("\r%-100s", line);
    else printf("%s\n", line);
    fflush(stdout);
}

// Keeps the lines of metrics.jsonl whose "step" is <= step (used on resume), so that the file
// reads as if the run had never stopped.
static void truncate_metrics(const char *path, long step) {
    char err[R1_ERR_LEN];
    size_t size;
    char *text = read_file(path, &size, err);
    if (!text) return;
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        const char *at = strstr(line, "\"step\": ");
        if (at && at < line + n && atol(at + 8) <= step) fwrite(line, 1, n, f);
        line += n;
    }
    fclose(f);
    free(text);
}

// The options every supervised stage shares (pretraining, SFT, distillation).
typedef struct {
    const char *kind;      // "pretraining", "SFT", ...: for the messages
    const char *out;       // the run directory
    long steps;
    int B;
    LrSchedule sched;
    float gamma, alpha;    // bias update speed, sequence-wise balance loss weight
    float mtp_lambda;      // the MTP loss weight (models with the module; 0: frozen)
    int mtp;               // a new model gets the MTP module (--mtp)
    long eval_every, save_every;
    int resume;
    const Distill *kd;     // distillation: the teacher's logits join the loss head (or NULL)
} TrainArgs;

// Parses the flags of a supervised stage; total steps must be known for the LR schedule.
static void parse_train_args(int argc, char **argv, TrainArgs *a, long default_steps,
                             float default_lr, float default_mtp_lambda) {
    a->mtp_lambda = (float)arg_double(argc, argv, "--mtp-lambda", default_mtp_lambda, 0, 10);
    a->out = arg_str(argc, argv, "--out", NULL);
    a->resume = arg_flag(argc, argv, "--resume");
    a->steps = arg_long(argc, argv, "--steps", default_steps, 1, 100000000);
    a->B = (int)arg_long(argc, argv, "--batch", 16, 1, 4096);
    a->sched.lr_max = (float)arg_double(argc, argv, "--lr", default_lr, 0, 10);
    a->sched.total = a->steps;
    a->sched.lr_min = (float)arg_double(argc, argv, "--lr-min", a->sched.lr_max * 0.1, 0, 10);
    a->sched.warmup = arg_long(argc, argv, "--warmup", a->steps / 50 + 1, 1, a->steps);
    a->sched.decay_start = arg_long(argc, argv, "--decay-start", a->steps * 2 / 3, 0, a->steps);
    a->gamma = (float)arg_double(argc, argv, "--gamma", 1e-3, 0, 1);
    a->alpha = (float)arg_double(argc, argv, "--alpha", 1e-4, 0, 1);
    a->eval_every = arg_long(argc, argv, "--eval-every", 100, 1, 100000000);
    a->save_every = arg_long(argc, argv, "--save-every", 250, 1, 100000000);
}

// The loop of every supervised stage: batches from d, the LR schedule, the loss head
// (masked cross-entropy), AdamW, bias update, held-out loss, metrics.jsonl, progress,
// journaled checkpoints with the optimizer state. With a->resume, continues bit for bit from
// the run directory's TrainState.
// --resume: the AdamW moments and where the run stood, from OUT/optimizer.safetensors, checked
// against this run (the saved position must be one of this data: a different corpus or
// --heldout gives other rows, and next_batch reads row order[cursor]).
static void train_resume_state(Model *m, const SeqData *d, const TrainArgs *a, TrainState *ts) {
    char err[R1_ERR_LEN], path[4200];
    if (checkpoint_load_train_state(m, ts, a->out, err)) die("%s", err);
    snprintf(path, sizeof(path), "%s/optimizer.safetensors", a->out);
    if (ts->step < 0 || ts->epoch < 0 || ts->epoch > (long)1e12 || m->adam_step < 0 ||
        m->adam_step > ts->step)
        die("%s: %s: train_state out of range (step %ld, epoch %ld, adam_step %ld)", a->kind,
            path, ts->step, ts->epoch, m->adam_step);
    if (ts->cursor < 0 || ts->cursor >= d->n_train)
        die("%s: %s: the saved data position (row %ld of epoch %ld) is not in this data's "
            "%ld training rows: resume with the data and --heldout of the run", a->kind, path,
            ts->cursor, ts->epoch, d->n_train);
}

static void train_loop(Model *m, Tokenizer *tok, SeqData *d, const TrainArgs *a, uint64_t seed) {
    char err[R1_ERR_LEN], path[4096];
    int B = a->B, T = d->T;
    if (d->n_train < B) die("%s: %ld training rows: too few for a batch of %d", a->kind, d->n_train, B);
    d->order = xcalloc((size_t)d->n_train, sizeof(long));
    d->order_epoch = -1;
    if (model_alloc_training(m, B, T, err)) die("%s", err);
    if (a->kd && a->kd->teacher && model_alloc_inference(a->kd->teacher, B, T, err)) die("%s", err);
    m->balance_alpha = a->alpha;
    mtp_set_training(m, a->mtp_lambda);  // before the resume: it reads the trainable tensors
    out_lock(a->kind, a->out);  // before anything in it is written
    TrainState ts = {0};
    if (a->resume) train_resume_state(m, d, a, &ts);
    else ts.rng = seed;  // the data-order seed: epoch e is shuffled by rng_seed(seed + f(e))
    snprintf(path, sizeof(path), "%s/metrics.jsonl", a->out);
    if (a->resume) truncate_metrics(path, ts.step);
    else remove(path);
    FILE *metrics = fopen(path, "ab");
    if (!metrics) die("%s: %s", path, strerror(errno));
    AdamWConfig oc = adamw_defaults();
    int *ids = xcalloc((size_t)B * T, sizeof(int));
    float *mask = xcalloc((size_t)B * T, sizeof(float));
    float *dlogits = xcalloc((size_t)B * T * m->cfg.vocab_size, sizeof(float));
    int tty = isatty(fileno(stdout));
    ParamCount pc;
    count_params(&m->cfg, &pc);
    printf("%s: %.2fM parameters (%.2fM activated), %ld rows of %d tokens (%ld held out), "
           "batch %d x %d, steps %ld -> %ld\n", a->kind, pc.total / 1e6, pc.activated / 1e6,
           d->n_seq, T, d->n_seq - d->n_train, B, T, ts.step, a->steps);
    if (m->cfg.num_nextn_predict_layers)
        printf("%s: the MTP module (%.2fM parameters) %s\n", a->kind, pc.mtp / 1e6,
               m->mtp_lambda > 0 ? "trains with lambda" : "is frozen (--mtp-lambda 0)");
    if (m->mtp_lambda > 0) printf("%s: MTP loss weight lambda %g\n", a->kind, m->mtp_lambda);
    use_idle_cores(a->kind);
    double t0 = now_seconds();
    long first = ts.step;
    while (ts.step < a->steps) {
        oc.lr = lr_at(&a->sched, ts.step);
        next_batch(d, &ts, ids, mask, B);
        StepStats st = train_step(m, ids, d->mask ? mask : NULL, dlogits, &oc, a->gamma, a->kd);
        // a non-finite loss or gradient has already reached the weights (AdamW ran): stop
        // before anything is logged or saved, so the last checkpoint stays the last good one
        if (!isfinite(st.loss) || !isfinite(st.grad_norm))
            die("%s: step %ld: the loss is %g and the gradient norm %g: stopping (try a lower "
                "--lr); %s keeps the last checkpoint saved", a->kind, ts.step + 1, st.loss,
                st.grad_norm, a->out);
        ts.step++;
        double elapsed = now_seconds() - t0, tps = (ts.step - first) * (double)B * T / elapsed;
        double eta = elapsed / (ts.step - first) * (a->steps - ts.step);
        float eval = NAN;
        if (ts.step % a->eval_every == 0 || ts.step == a->steps)
            eval = heldout_loss(m, d, ids, mask, B, 8);
        fprintf(metrics, "{\"step\": %ld, \"loss\": %.6f, \"balance_loss\": %.6g, \"lr\": %.6g, "
                "\"grad_norm\": %.6g, \"tokens_per_s\": %.1f, \"load_max_over_mean\": %.4f, "
                "\"epoch\": %ld", ts.step, st.loss, st.balance_loss, oc.lr, st.grad_norm, tps,
                st.load_ratio, ts.epoch);
        if (!isnan(eval)) fprintf(metrics, ", \"heldout_loss\": %.6f", eval);
        if (!isnan(st.mtp_loss)) fprintf(metrics, ", \"mtp_loss\": %.6f", st.mtp_loss);
        fprintf(metrics, "}\n");
        fflush(metrics);
        if (tty || ts.step % 10 == 0 || ts.step == a->steps || !isnan(eval))
            progress(tty, ts.step, a->steps, &st, oc.lr, tps, eta);
        if (!isnan(eval)) {
            if (tty) printf("\n");
            printf("step %ld: held-out loss %.4f\n", ts.step, eval);
        }
        if (ts.step % a->save_every == 0 || ts.step == a->steps)
            if (checkpoint_save(m, tok, &ts, a->out, err)) die("%s", err);
    }
    if (tty) printf("\n");
    fclose(metrics);
    free(ids);
    free(mask);
    free(dlogits);
    free(d->order);
}

// Loads the run directory (--resume), or a checkpoint (init), or makes a model from a preset.
static void start_model(Model *m, Tokenizer *tok, int *have_tok, const TrainArgs *a,
                        const char *init, const char *preset, uint64_t seed) {
    char err[R1_ERR_LEN];
    const char *dir = a->resume ? a->out : init;
    *have_tok = 0;
    if (dir) {
        load_model_or_die(m, dir);
        if (a->mtp && !m->cfg.num_nextn_predict_layers)
            die("%s: --mtp adds the MTP module to a new model only; %s has none", a->kind, dir);
        snprintf(err, sizeof(err), "%s/tokenizer.json", dir);
        if (access(err, F_OK) == 0) {  // (a checkpoint without one: the caller finds one)
            load_tokenizer_for(tok, dir, m, a->kind);
            *have_tok = 1;
        }
        return;
    }
    Config c;
    if (config_preset(preset, &c, err)) die("%s", err);
    c.num_nextn_predict_layers = a->mtp;  // --mtp: with DeepSeek-V3's MTP module
    if (model_create(m, &c, err)) die("%s", err);
    model_init_random(m, seed);
}

static int cmd_pretrain(int argc, char **argv) {
    static const char *const known[] = {
        "--config", "--data", "--tokenizer", "--out", "--steps", "--batch", "--seq", "--lr",
        "--lr-min", "--warmup", "--decay-start", "--gamma", "--alpha", "--eval-every",
        "--save-every", "--heldout", "--seed", "--mtp-lambda", NULL};
    static const char *const bools[] = {"--resume", "--mtp", NULL};
    check_flags(argc, argv, known, bools);
    TrainArgs a = {.kind = "pretraining", .mtp = arg_flag(argc, argv, "--mtp")};
    parse_train_args(argc, argv, &a, 1000, 3e-3f, 0.3f);  // lambda 0.3: V3's first 10T tokens
    const char *preset = arg_str(argc, argv, "--config", "small");
    const char *data_path = arg_str(argc, argv, "--data", NULL);
    const char *tok_dir = arg_str(argc, argv, "--tokenizer", NULL);
    if (!data_path || !a.out) die("pretrain: needs --data FILE --out DIR");
    int T = (int)arg_long(argc, argv, "--seq", 128, 2, 1 << 20);
    double heldout = arg_double(argc, argv, "--heldout", 0.05, 0.0, 0.5);
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    char err[R1_ERR_LEN];
    Model m;
    Tokenizer tok;
    int have_tok;
    start_model(&m, &tok, &have_tok, &a, NULL, preset, seed);
    if (!have_tok && tok_dir) {
        if (tokenizer_load(&tok, tok_dir, err)) die("%s", err);
        have_tok = 1;
    }
    if (T > m.cfg.max_position_embeddings)
        die("pretrain: --seq %d exceeds max_position_embeddings %d", T,
            m.cfg.max_position_embeddings);
    size_t len;
    char *text = read_file(data_path, &len, err);
    if (!text) die("%s", err);
    if (!have_tok) {
        double t0 = now_seconds();
        if (tokenizer_train(&tok, text, len, m.cfg.vocab_size, err)) die("%s", err);
        printf("trained a %d-token BPE tokenizer on %s in %.1f s\n", tok.vocab_size, data_path,
               now_seconds() - t0);
    }
    if (tok.vocab_size > m.cfg.vocab_size)
        die("pretrain: tokenizer has %d tokens, the model's vocab_size is %d", tok.vocab_size,
            m.cfg.vocab_size);
    long n;
    int *stream = encode_corpus(&tok, text, len, &n);
    free(text);
    long n_rows;
    int *rows = document_rows(stream, n, T, &n_rows);
    free(stream);
    printf("corpus: %ld tokens in %ld rows of %d (each row starts a document)\n", n, n_rows, T);
    if (n_rows < 2) die("pretrain: %s holds too little text for rows of %d tokens", data_path, T);
    SeqData d = {.ids = rows, .T = T, .n_seq = n_rows};
    d.n_train = d.n_seq - (long)(d.n_seq * heldout);
    train_loop(&m, &tok, &d, &a, seed);
    printf("base model saved in %s (config.json, model.safetensors, tokenizer.json, "
           "optimizer.safetensors, metrics.jsonl)\n", a.out);
    free(rows);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}

// SFT rows: BOS + prompt template + response + EOS, right-padded; the mask covers the response
// and its EOS, so the loss is on what the assistant writes and nothing else.
static int sft_row(const Tokenizer *tok, const char *template, const char *prompt,
                   const char *response, int T, int *ids, float *mask) {
    int n = encode_prompt(tok, template, prompt, ids, T);
    if (n < 0 || n + 1 >= T) return -1;  // no room for a response and its EOS
    int k = tokenizer_encode(tok, response, strlen(response), ids + n, T - n - 1);
    if (k < 0) return -1;
    for (int t = 0; t < T; t++) mask[t] = t >= n && t <= n + k ? 1.0f : 0.0f;
    ids[n + k] = TOK_EOS;
    for (int t = n + k + 1; t < T; t++) ids[t] = TOK_PAD;
    return n + k + 1;
}

// The SFT set as training rows of T tokens: prompt and response in the template, the loss mask
// on the response (sft_row); examples that do not fit are left out (and counted).
static SeqData sft_rows(const Tokenizer *tok, Json *const *ex, int n_ex, const char *data_path,
                        const char *field, const char *template, int T) {
    SeqData d = {.T = T};
    d.ids = xcalloc((size_t)n_ex * T, sizeof(int));
    d.mask = xcalloc((size_t)n_ex * T, sizeof(float));
    long too_long = 0;
    for (int i = 0; i < n_ex; i++) {
        const Json *p = json_get(ex[i], "prompt"), *r = json_get(ex[i], field);
        if (!p || p->type != JSON_STRING || !r || r->type != JSON_STRING)
            die("%s: example %d lacks a string \"prompt\" or \"%s\"", data_path, i + 1, field);
        int *row = d.ids + (size_t)d.n_seq * T;
        if (sft_row(tok, template, p->string, r->string, T, row, d.mask + (size_t)d.n_seq * T) < 0)
            too_long++;
        else
            d.n_seq++;
    }
    if (too_long) printf("sft: %ld of %d examples do not fit %d tokens and are left out\n", too_long, n_ex, T);
    return d;
}

// Puts the rows in an order fixed by the data alone (a Fisher-Yates shuffle with a constant
// seed), so that the held-out rows, the last --heldout of them, are a sample of the whole file
// and not its tail: rejection sampling writes the non-reasoning rows last, and a tail split was
// all of them. The same rows are held out whatever --seed is, and the same on --resume.
static void sft_shuffle_rows(SeqData *d) {
    Rng rng;
    rng_seed(&rng, 0x5f74u);
    int T = d->T;
    for (long i = d->n_seq - 1; i > 0; i--) {  // swap row i with a row j <= i
        long j = (long)(rng_next(&rng) % (uint64_t)(i + 1));
        int *a = d->ids + (size_t)i * T, *b = d->ids + (size_t)j * T;
        float *ma = d->mask + (size_t)i * T, *mb = d->mask + (size_t)j * T;
        for (int t = 0; t < T; t++) {
            int id = a[t];
            a[t] = b[t], b[t] = id;
            float m = ma[t];
            ma[t] = mb[t], mb[t] = m;
        }
    }
}

static int cmd_sft(int argc, char **argv) {
    static const char *const known[] = {
        "--model", "--data", "--field", "--template", "--out", "--steps", "--epochs", "--batch",
        "--seq", "--lr", "--lr-min", "--warmup", "--decay-start", "--gamma", "--alpha",
        "--eval-every", "--save-every", "--heldout", "--seed", "--teacher", "--student-config",
        "--kd-alpha", "--kd-tau", "--mtp-lambda", NULL};
    static const char *const bools[] = {"--resume", NULL};
    check_flags(argc, argv, known, bools);
    int distill = strcmp(argv[1], "distill") == 0;
    const char *init = arg_str(argc, argv, "--model", NULL);
    const char *teacher_dir = arg_str(argc, argv, "--teacher", NULL);
    const char *student = arg_str(argc, argv, "--student-config", "student");
    const char *data_path = arg_str(argc, argv, "--data", NULL);
    const char *field = arg_str(argc, argv, "--field", "solution");
    const char *template = arg_str(argc, argv, "--template", "r1-zero");
    int T = (int)arg_long(argc, argv, "--seq", 256, 2, 1 << 20);
    double heldout = arg_double(argc, argv, "--heldout", 0.05, 0.0, 0.5);
    double epochs = arg_double(argc, argv, "--epochs", 2.0, 0.01, 1000);
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    char err[R1_ERR_LEN];
    int n_ex = 0;
    Json **ex = data_path ? jsonl_read(data_path, &n_ex, NULL, err) : NULL;
    if ((!init && !distill) || (distill && !teacher_dir) || !data_path ||
        !arg_str(argc, argv, "--out", NULL))
        die(distill ? "distill: needs --teacher DIR --data FILE.jsonl --out DIR"
                    : "sft: needs --model DIR --data FILE.jsonl --out DIR");
    if (!ex) die("%s", err);
    TrainArgs a = {.kind = distill ? "distillation" : "SFT"};
    int B = (int)arg_long(argc, argv, "--batch", 16, 1, 4096);
    long steps = (long)(epochs * n_ex * (1.0 - heldout) / B + 0.999);
    parse_train_args(argc, argv, &a, steps > 0 ? steps : 1, 1e-3f, 0.0f);  // MTP frozen
    Model m, teacher;
    Tokenizer tok;
    int have_tok;
    Distill kd = {NULL, (float)arg_double(argc, argv, "--kd-alpha", 0.0, 0.0, 1.0),
                  (float)arg_double(argc, argv, "--kd-tau", 1.0, 0.05, 100.0)};
    // distillation: a fresh student from a preset (or --model) speaking the teacher's tokens
    start_model(&m, &tok, &have_tok, &a, init, student, seed);
    snprintf(err, sizeof(err), "%s/tokenizer.json", teacher_dir ? teacher_dir : ".");
    if (distill && !have_tok && access(err, F_OK) == 0) {
        load_tokenizer_for(&tok, teacher_dir, &m, argv[1]);
        have_tok = 1;
    }
    if (!have_tok) die("%s: no tokenizer.json in %s", argv[1], a.resume ? a.out : init ? init : teacher_dir);
    if (distill && kd.alpha > 0) {
        load_model_or_die(&teacher, teacher_dir);
        if (teacher.cfg.vocab_size != m.cfg.vocab_size)
            die("distill: teacher vocab %d != student vocab %d", teacher.cfg.vocab_size,
                m.cfg.vocab_size);
        kd.teacher = &teacher;
        a.kd = &kd;
    }
    if (T > m.cfg.max_position_embeddings)
        die("sft: --seq %d exceeds max_position_embeddings %d", T, m.cfg.max_position_embeddings);
    SeqData d = sft_rows(&tok, ex, n_ex, data_path, field, template, T);
    sft_shuffle_rows(&d);
    d.n_train = d.n_seq - (long)(d.n_seq * heldout);
    if (d.n_train == 0) die("%s: no usable training example in %s", argv[1], data_path);
    if (d.n_train < a.B) {  // a small set (rejection sampling may keep few): smaller batches
        printf("%s: %ld training examples: batch size %d -> %ld\n", argv[1], d.n_train, a.B, d.n_train);
        a.B = (int)d.n_train;
    }
    train_loop(&m, &tok, &d, &a, seed);
    printf("%s model saved in %s\n", distill ? "distilled" : "SFT", a.out);
    if (kd.teacher) model_free(&teacher);
    free(d.ids);
    free(d.mask);
    tasks_free(ex, n_ex);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}

// ==============================================================================================
// 4. `./r1 data`: task sets, the pretraining corpus, and checking or showing them
// ==============================================================================================
// The command line of tasks.c, which makes (and verifies) every example and document. Errors
// print one line "r1: data: <what>" and exit with status 1: the subcommand's flags are read as
// those of a command named "data" (cmd_data drops the subcommand's word), so the flag helpers
// of section 1 say "r1: data: --n needs a value" too.

static void data_usage(FILE *f) {
    fprintf(f,
            "./r1 data tasks  --out FILE [--task arithmetic|countdown|sort42|all] [--split train|eval]\n"
            "                 [--n N] [--levels 1-3] [--lang en|zh|both] [--seed S]\n"
            "                 [--solutions [--style stepwise|checked|direct]]\n"
            "                 task examples as JSON Lines (defaults: all, train, 1000, 1-5, both, 1, stepwise);\n"
            "                 --solutions adds a solution in the reasoning style and its \"style\":\n"
            "                   stepwise  the worked solution (the cold-start set's long CoT)\n"
            "                   checked   a guess, \"Wait, let me check: ...\", the worked solution if wrong\n"
            "                   direct    \"The answer is probably X.\": X right 90%% (level 1) .. 30%% (level 5)\n"
            "./r1 data corpus --out FILE [--mb 4] [--task all] [--levels 1-5] [--think 0.3] [--tagged 0.1]\n"
            "                 [--text 0.1] [--direct 0.45] [--checked 0.2] [--mix 0.25] [--lang both] [--seed S]\n"
            "                 the pretraining text (training split only): --think of the documents in the\n"
            "                 R1-Zero template (--tagged of them with the tags), --text plain text, the rest\n"
            "                 Question/Answer (stepwise); the template's reasoning: --direct guesses,\n"
            "                 --checked guess-then-check, the rest stepwise; --mix of the checked and\n"
            "                 stepwise ones switch language partway\n"
            "./r1 data check  --in FILE          verifies every example's gold answer and worked solution,\n"
            "                 and its own solution (a direct guess need only give an answer)\n"
            "./r1 data show   [--task T] [--levels L] [--lang L] [--n 3] [--seed S] [--split S] [--style all]\n"
            "                 prints problems with their solutions in each reasoning style (or --style S)\n"
            "./r1 data pairs  --out FILE [--n 1000] [--seed S]\n"
            "                 preference pairs for ./r1 rm: {prompt, chosen, rejected, kind helpful|safety}:\n"
            "                 helpful answers against off-topic, truncated, refusing or wrong ones; for toy\n"
            "                 unsafe requests (1 in 4) a refusal against compliance\n");
}

static const char *data_task(int argc, char **argv) {
    char err[R1_ERR_LEN];
    const char *task = arg_str(argc, argv, "--task", "all");
    if (task_option_check(task, err)) die("data: --task: %s", err);
    return task;
}

static const char *data_lang(int argc, char **argv) {
    char err[R1_ERR_LEN];
    const char *lang = arg_str(argc, argv, "--lang", "both");
    if (lang_option_check(lang, err)) die("data: --lang: %s", err);
    return lang;
}

// --style: a reasoning style (REASONING_*), or -1 for "all" where all is allowed (show).
static int data_style(int argc, char **argv, const char *fallback, int all_allowed) {
    char err[R1_ERR_LEN];
    const char *style = arg_str(argc, argv, "--style", fallback);
    if (all_allowed && strcmp(style, "all") == 0) return -1;
    int r = reasoning_option(style, err);
    if (r < 0) die("data: --style: %s%s", err, all_allowed ? " or all" : "");
    return r;
}

// The flags of `tasks` and `show`, checked in this order (the first bad one is reported).
static TaskSetOptions data_task_set(int argc, char **argv, long n_default, long n_max) {
    TaskSetOptions o = {.level_lo = 1, .level_hi = TASK_LEVEL_MAX};
    o.task = data_task(argc, argv);
    const char *split = arg_str(argc, argv, "--split", "train");
    if (strcmp(split, "train") != 0 && strcmp(split, "eval") != 0) die("data: --split: '%s' is not train or eval", split);
    o.eval = strcmp(split, "eval") == 0;
    o.n = (int)arg_long(argc, argv, "--n", n_default, 1, n_max);
    o.lang = data_lang(argc, argv);
    o.seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    o.solutions = arg_flag(argc, argv, "--solutions");
    arg_levels(argc, argv, NULL, &o.level_lo, &o.level_hi);
    return o;
}

// Writes a task set or the corpus through writer into path, atomically, or to stdout for "-".
// Returns what the writer returns; bytes: the file's size.
typedef long (*DataWriter)(FILE *f, const void *options, char *err);
static long tasks_writer(FILE *f, const void *o, char *err) { return tasks_write(f, o, err); }
static long corpus_writer(FILE *f, const void *o, char *err) { return corpus_write(f, o, err); }

static long data_write(const char *path, DataWriter writer, const void *options, size_t *bytes) {
    char err[R1_ERR_LEN] = "";
    if (strcmp(path, "-") == 0) {
        long r = writer(stdout, options, err);
        if (r < 0) die("data: %s", err);
        if (fflush(stdout) != 0) die("data: stdout: %s", strerror(errno));
        return r;
    }
    AtomicFile a;
    if (atomic_open(&a, path, err)) die("data: cannot write %s", err);
    long r = writer(a.f, options, err);
    if (r < 0) {
        atomic_abort(&a);
        die("data: %s", err);
    }
    *bytes = (size_t)ftell(a.f);
    if (atomic_commit(&a, err)) die("data: cannot write %s", err);
    return r;
}

static int data_tasks(int argc, char **argv) {
    static const char *const known[] = {"--task", "--split", "--n", "--levels", "--lang", "--seed", "--out",
                                        "--style", NULL};
    static const char *const bools[] = {"--solutions", NULL};
    check_flags(argc, argv, known, bools);
    TaskSetOptions o = data_task_set(argc, argv, 1000, 10000000);
    o.reasoning = data_style(argc, argv, "stepwise", 0);
    if (!o.solutions && arg_str(argc, argv, "--style", NULL) != NULL) die("data: --style needs --solutions");
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (out == NULL) die("data: tasks needs --out FILE (or --out - for stdout)");
    double t0 = now_seconds();
    size_t bytes = 0;
    long repeats = data_write(out, tasks_writer, &o, &bytes);
    if (repeats > 0)
        fprintf(stderr, "r1: data: note: %ld examples repeat a problem: the %s split of levels %d-%d holds "
                        "fewer distinct problems than asked for\n", repeats, o.eval ? "eval" : "train",
                o.level_lo, o.level_hi);
    if (strcmp(out, "-") != 0)
        printf("wrote %s: %d %s examples (task %s, levels %d-%d, lang %s, seed %llu%s%s), %.1f KiB in %.2f s\n",
               out, o.n, o.eval ? "eval" : "train", o.task, o.level_lo, o.level_hi, o.lang,
               (unsigned long long)o.seed, o.solutions ? ", solutions " : "",
               o.solutions ? reasoning_name(o.reasoning) : "", bytes / 1024.0, now_seconds() - t0);
    return 0;
}

typedef struct { long n; uint64_t seed; } PairsOptions;
static long pairs_writer(FILE *f, const void *o, char *err) {
    const PairsOptions *p = o;
    return pairs_write(f, p->n, p->seed, err);
}

// `./r1 data pairs`: preference pairs for the reward model (tasks.c's pairs_write).
static int data_pairs(int argc, char **argv) {
    static const char *const known[] = {"--n", "--seed", "--out", NULL}, *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    PairsOptions o = {arg_long(argc, argv, "--n", 1000, 1, 10000000),
                      (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX)};
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (out == NULL) die("data: pairs needs --out FILE (or --out - for stdout)");
    size_t bytes = 0;
    data_write(out, pairs_writer, &o, &bytes);
    if (strcmp(out, "-") != 0)
        printf("wrote %s: %ld preference pairs (helpful 3 in 4, safety 1 in 4; seed %llu), %.1f KiB\n",
               out, o.n, (unsigned long long)o.seed, bytes / 1024.0);
    return 0;
}

static int data_corpus(int argc, char **argv) {
    static const char *const known[] = {"--out", "--mb", "--seed", "--think", "--tagged", "--text", "--levels",
                                        "--lang", "--task", "--direct", "--checked", "--mix", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    CorpusOptions o = {.level_lo = 1, .level_hi = TASK_LEVEL_MAX};
    o.mb = arg_double(argc, argv, "--mb", 4, 1e-6, 4096);
    o.think_share = arg_double(argc, argv, "--think", 0.3, 0, 1);
    o.tagged_share = arg_double(argc, argv, "--tagged", 0.1, 0, 1);
    o.text_share = arg_double(argc, argv, "--text", 0.1, 0, 1);
    o.direct_share = arg_double(argc, argv, "--direct", CORPUS_DIRECT_SHARE, 0, 1);  // r1.h says why
    o.checked_share = arg_double(argc, argv, "--checked", CORPUS_CHECKED_SHARE, 0, 1);
    o.mix_share = arg_double(argc, argv, "--mix", CORPUS_MIX_SHARE, 0, 1);
    o.task = data_task(argc, argv);
    o.lang = data_lang(argc, argv);
    o.seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    arg_levels(argc, argv, NULL, &o.level_lo, &o.level_hi);
    if (o.think_share + o.text_share > 1) die("data: --think %g + --text %g is more than 1", o.think_share, o.text_share);
    if (o.direct_share + o.checked_share > 1)
        die("data: --direct %g + --checked %g is more than 1", o.direct_share, o.checked_share);
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (out == NULL) die("data: corpus needs --out FILE (or --out - for stdout)");
    double t0 = now_seconds();
    size_t bytes = 0;
    long docs = data_write(out, corpus_writer, &o, &bytes);
    if (strcmp(out, "-") != 0)
        printf("wrote %s: %.2f MiB, %ld documents (text %.0f%%, R1-Zero template %.0f%% of which %.0f%% "
               "tagged and reasoning direct %.0f%% / checked %.0f%% / stepwise %.0f%%, %.0f%% of the long ones "
               "switching language, question/answer %.0f%%; task %s, levels %d-%d, lang %s, seed %llu) in %.2f s\n",
               out, bytes / 1048576.0, docs, 100 * o.text_share, 100 * o.think_share, 100 * o.tagged_share,
               100 * o.direct_share, 100 * o.checked_share, 100 * (1 - o.direct_share - o.checked_share),
               100 * o.mix_share, 100 * (1 - o.text_share - o.think_share), o.task, o.level_lo, o.level_hi,
               o.lang, (unsigned long long)o.seed, now_seconds() - t0);
    return 0;
}

static int data_check(int argc, char **argv) {
    static const char *const known[] = {"--in", NULL}, *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *path = arg_str(argc, argv, "--in", NULL);
    if (path == NULL) die("data: check needs --in FILE");
    char err[R1_ERR_LEN];
    int n;
    Json **ex = tasks_read(path, &n, err);
    if (ex == NULL) die("data: %s", err);
    if (n == 0) die("data: %s: no examples (an empty file is not a task set)", path);
    for (int i = 0; i < n; i++) {
        const char *bad = example_verify(ex[i]);
        if (bad != NULL) die("data: %s: example %d: %s", path, i + 1, bad);
    }
    printf("%s: %d examples; every gold answer, worked solution and own solution (but a direct guess) passes "
           "its verifier\n", path, n);
    tasks_summary(stdout, ex, n);
    tasks_free(ex, n);
    return 0;
}

static int data_show(int argc, char **argv) {
    static const char *const known[] = {"--task", "--split", "--n", "--levels", "--lang", "--seed", "--style", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    TaskSetOptions o = data_task_set(argc, argv, 3, 1000);
    o.reasoning = data_style(argc, argv, "all", 1);
    char err[R1_ERR_LEN];
    if (tasks_show(stdout, &o, err)) die("data: %s", err);
    return 0;
}

int cmd_data(int argc, char **argv) {
    const char *what = argc > 2 ? argv[2] : NULL;
    if (what != NULL && (strcmp(what, "help") == 0 || strcmp(what, "--help") == 0)) {
        data_usage(stdout);
        return 0;
    }
    if (what == NULL) die("data: what data? tasks, corpus, check, show or pairs (see ./r1 data help)");
    // the subcommand's flags are read as those of one command named "data" (so that every
    // error says "r1: data: ..."): argv without the subcommand word
    char **flags = xcalloc((size_t)argc, sizeof(char *));
    flags[0] = argv[0], flags[1] = argv[1];
    for (int i = 3; i < argc; i++) flags[i - 1] = argv[i];
    int rc = -1;
    if (strcmp(what, "tasks") == 0) rc = data_tasks(argc - 1, flags);
    else if (strcmp(what, "corpus") == 0) rc = data_corpus(argc - 1, flags);
    else if (strcmp(what, "check") == 0) rc = data_check(argc - 1, flags);
    else if (strcmp(what, "show") == 0) rc = data_show(argc - 1, flags);
    else if (strcmp(what, "pairs") == 0) rc = data_pairs(argc - 1, flags);
    else die("data: unknown data command '%s' (tasks, corpus, check, show, pairs)", what);
    free(flags);
    return rc;
}


// ==============================================================================================
// 5. `grpo`, `eval`, `reject`, `rm`: the command lines of grpo.c's RL, evaluation, rejection
//    sampling and reward models
// ==============================================================================================

static int parse_template(const char *template) {  // 1: chat, 0: r1-zero
    int chat = strcmp(template, "chat") == 0;
    if (!chat && strcmp(template, "r1-zero") != 0)
        die("--template: '%s' is not r1-zero or chat", template);
    return chat;
}

static GrpoVariant parse_variant(const char *variant) {
    if (strcmp(variant, "grpo") == 0) return GRPO_PAPER;
    if (strcmp(variant, "dr_grpo") == 0) return GRPO_DR;
    if (strcmp(variant, "dapo") == 0) return GRPO_DAPO;
    die("--variant: '%s' is not grpo, dr_grpo or dapo", variant);
    return GRPO_PAPER;
}

// `./r1 grpo`'s settings from its flags (the defaults are the pipeline's R1-Zero stage's).
static GrpoSettings grpo_settings_from_args(int argc, char **argv) {
    GrpoSettings s = {0};
    s.P = (int)arg_long(argc, argv, "--prompts", 8, 1, 4096);
    s.G = (int)arg_long(argc, argv, "--group", 8, 2, 1024);
    s.max_new = (int)arg_long(argc, argv, "--max-new-tokens", 160, 1, 1 << 20);
    s.mu = (int)arg_long(argc, argv, "--mu", 1, 1, 100);
    s.sc.temperature = (float)arg_double(argc, argv, "--temperature", 1.0, 0.0, 10.0);
    s.sc.top_p = (float)arg_double(argc, argv, "--top-p", 1.0, 1e-6, 1.0);
    s.sc.speculative = arg_flag(argc, argv, "--speculative");  // rollouts with the MTP's drafts
    s.oc = adamw_defaults();
    // 2e-4 for RL from a base (R1-Zero: the format has to be found); after SFT, 5e-5 (the
    // pipeline's rl and final stages): 2e-4 there undoes part of what SFT taught (tutorial/05)
    s.oc.lr = (float)arg_double(argc, argv, "--lr", 2e-4, 0.0, 1.0);
    s.oc.weight_decay = 0.0f;  // RL fine-tuning: no decay towards 0 of the pretrained weights
    s.gamma = (float)arg_double(argc, argv, "--gamma", 1e-3, 0.0, 1.0);
    s.chat = parse_template(arg_str(argc, argv, "--template", "r1-zero"));
    s.gc.variant = parse_variant(arg_str(argc, argv, "--variant", "grpo"));
    int dapo = s.gc.variant == GRPO_DAPO;
    s.gc.eps_low = (float)arg_double(argc, argv, "--eps", 0.2, 0.0, 1.0);
    s.gc.eps_high = (float)arg_double(argc, argv, "--eps-high", dapo ? 0.28 : s.gc.eps_low, 0.0, 10.0);
    s.gc.beta = (float)arg_double(argc, argv, "--beta", dapo ? 0.0 : 0.04, 0.0, 10.0);
    s.gc.max_len = s.max_new;
    s.w.accuracy = arg_double(argc, argv, "--w-accuracy", 1.0, 0.0, 100.0);
    s.w.format = arg_double(argc, argv, "--w-format", 0.5, 0.0, 100.0);
    s.w.language = arg_double(argc, argv, "--w-language", 0.0, 0.0, 100.0);
    return s;
}

// With a reward model: the general prompts' mean score and the ground truth, added to the
// step's line of metrics.jsonl (and its closing brace).
static void grpo_log_general(FILE *metrics, const GrpoStepReport *rep) {
    if (rep->general == 0) {
        fprintf(metrics, "}\n");
        return;
    }
    fprintf(metrics, ", \"rm_score\": %.4f, \"rm_sigmoid\": %.4f, \"true_good\": %.4f",
            rep->rm_score, rep->rm_sigmoid, rep->true_good);
    if (rep->general > rep->unsafe) fprintf(metrics, ", \"true_helpful\": %.4f", rep->true_helpful);
    if (rep->unsafe) fprintf(metrics, ", \"true_safe\": %.4f", rep->true_safe);
    fprintf(metrics, "}\n");
}

// One line of metrics.jsonl and one line of progress for a GRPO step.
static void grpo_log_step(FILE *metrics, long step, long steps, const GrpoSettings *s,
                          const GrpoStepReport *rep, double elapsed) {
    fprintf(metrics, "{\"step\": %ld, \"reward\": %.4f, \"accuracy\": %.4f, \"format\": %.4f, "
            "\"language\": %.4f, \"length\": %.1f, \"reflection\": %.4f, \"kl\": %.6f, "
            "\"clip_fraction\": %.4f, \"entropy\": %.4f, \"zero_variance_groups\": %.4f, "
            "\"loss\": %.6f, \"grad_norm\": %.4f, \"generate_s\": %.2f, \"learn_s\": %.2f",
            step, rep->reward, rep->accuracy, rep->format, rep->language, rep->length,
            rep->reflection, rep->stats.kl, rep->stats.clip_fraction, rep->stats.entropy,
            (double)rep->zero_variance_groups / s->P, rep->loss, rep->grad_norm,
            rep->generate_s, rep->learn_s);
    if (rep->drafted)
        fprintf(metrics, ", \"mtp_drafted\": %ld, \"mtp_accepted\": %ld", rep->drafted,
                rep->accepted);
    grpo_log_general(metrics, rep);
    fflush(metrics);
    printf("step %ld/%ld | reward %.3f | acc %.3f | format %.3f | len %.0f | kl %.4f | "
           "zero-var %d/%d | gen %.1fs learn %.1fs | %.0fs\n", step, steps, rep->reward,
           rep->accuracy, rep->format, rep->length, rep->stats.kl, rep->zero_variance_groups,
           s->P, rep->generate_s, rep->learn_s, elapsed);
    if (rep->general)
        printf("  general prompts: %d completions | RM score %.3f (sigmoid %.3f) | ground truth: "
               "good %.3f, helpful %.3f, safe %.3f\n", rep->general, rep->rm_score,
               rep->rm_sigmoid, rep->true_good, rep->true_helpful, rep->true_safe);
}

// --ref-every: pi_ref after its refresh at `step` is saved as OUT/ref-STEP.safetensors (a resumed
// run needs the one of its last refresh; the model's own tensor names). The one before is removed
// only when the checkpoint of a later step commits: a run killed in between resumes from the
// earlier checkpoint, which still needs it.
static void grpo_ref_path(char *path, size_t n, const char *out, long step) {
    snprintf(path, n, "%s/ref-%ld.safetensors", out, step);
}
static void grpo_ref_save(const Model *ref, const char *out, long step) {
    char path[4200], err[R1_ERR_LEN];
    grpo_ref_path(path, sizeof(path), out, step);
    if (model_save_weights(ref, path, err)) die("%s", err);
}
// After the checkpoint of step `saved` commits: the refreshes before its own are not needed.
static void grpo_ref_prune(const char *out, long saved, long ref_every) {
    char path[4200];
    for (long q = saved / ref_every * ref_every - ref_every; q > 0; q -= ref_every) {
        grpo_ref_path(path, sizeof(path), out, q);
        if (remove(path) != 0) break;  // (the older ones went at an earlier save)
    }
}
static void grpo_ref_load(Model *ref, const char *out, long step) {
    char path[4200], err[R1_ERR_LEN];
    grpo_ref_path(path, sizeof(path), out, step);
    if (model_load_weights(ref, path, err)) die("grpo: pi_ref of step %ld: %s", step, err);
}

// The questions of a step: P training problems drawn at random, and with probability
// `nonreasoning` a non-reasoning prompt in a problem's place (final RL: R1 §2.3.4).
static void pick_questions(GrpoGroups *g, Json *const *train, int n_train, Json *const *plain,
                           int n_plain, double nonreasoning, Rng *rng) {
    for (int p = 0; p < g->P; p++) {
        const Json *ex = train[rng_next(rng) % (uint64_t)n_train];
        if (n_plain && rng_uniform(rng) < nonreasoning)  // (no draw at all when 0)
            ex = plain[rng_next(rng) % (uint64_t)n_plain];
        g->example[p] = ex;
    }
}

// What `./r1 grpo` keeps from step to step.
typedef struct {
    Model policy, ref;           // pi_theta and the frozen reference pi_ref
    Tokenizer tok;
    GrpoSettings s;
    GrpoGroups g;
    const char *out;
    long steps, sample_every, save_every, ref_every;
    uint64_t seed;
    Rng rng;                     // draws the questions
    TrainState ts;               // step (and the RNG) as saved in OUT's checkpoint
    FILE *metrics;
} GrpoRun;

// --resume: the policy, its AdamW moments, the step and the question RNG come from OUT's last
// checkpoint (loaded by the caller); pi_ref is --model's weights, or the policy saved at the
// last refresh.
static void grpo_resume(GrpoRun *r) {
    char err[R1_ERR_LEN];
    if (model_alloc_training(&r->policy, 1, 1, err) ||
        checkpoint_load_train_state(&r->policy, &r->ts, r->out, err))
        die("%s", err);
    if (r->ts.step < 0 || r->ts.step > r->steps || r->policy.adam_step < 0 ||
        r->policy.adam_step > r->ts.step * r->s.mu || r->ts.epoch != 0 || r->ts.cursor != 0)
        die("grpo: %s/optimizer.safetensors: train_state out of range for this run (step %ld "
            "of %ld, adam_step %ld)", r->out, r->ts.step, r->steps, r->policy.adam_step);
    long refreshed = r->ref_every ? r->ts.step / r->ref_every * r->ref_every : 0;
    if (refreshed > 0) grpo_ref_load(&r->ref, r->out, refreshed);
    r->rng.state = r->ts.rng;
}

// What follows a step: stop on a non-finite loss, refresh pi_ref, log, show a sample, save.
static void grpo_after_step(GrpoRun *r, long step, const GrpoStepReport *rep, double elapsed) {
    char err[R1_ERR_LEN];
    // a non-finite loss or gradient has reached the policy: stop before it is logged or saved
    // (the last checkpoint in OUT stays the last good one)
    if (!isfinite(rep->loss) || !isfinite(rep->grad_norm))
        die("grpo: step %ld: the loss is %g and the gradient norm %g: stopping (try a lower "
            "--lr); %s keeps the last checkpoint saved", step, rep->loss, rep->grad_norm, r->out);
    if (r->ref_every && step % r->ref_every == 0) {  // R1-Zero refreshes pi_ref periodically
        memcpy(r->ref.params, r->policy.params, r->policy.n_params * sizeof(float));
        grpo_ref_save(&r->ref, r->out, step);
    }
    grpo_log_step(r->metrics, step, r->steps, &r->s, rep, elapsed);
    if (step % r->sample_every == 0 || step == 1) {
        const Json *pr = json_get(r->g.example[0], "prompt");
        printf("  prompt: %s\n  sample (reward %.2f): %s\n", pr ? pr->string : "?",
               r->g.rewards[0], r->g.r[0].text);
    }
    fflush(stdout);
    if (step % r->save_every == 0 || step == r->steps) {
        r->ts.step = step;
        r->ts.rng = r->rng.state;
        if (checkpoint_save(&r->policy, &r->tok, &r->ts, r->out, err)) die("%s", err);
        if (r->ref_every) grpo_ref_prune(r->out, step, r->ref_every);
    }
}

// --rm DIR: the reward model that scores the general prompts' completions (R1 §2.3.4).
static void grpo_load_rm(GrpoRun *r, const char *rm_dir, double nonreasoning) {
    char err[R1_ERR_LEN];
    if (!(nonreasoning > 0))
        die("grpo: --rm needs --non-reasoning F > 0: the share of general prompts it scores");
    r->s.rm = xcalloc(1, sizeof(RewardModel));
    if (rm_load(r->s.rm, rm_dir, err)) die("grpo: --rm: %s", err);
    const Tokenizer *a = &r->s.rm->tok, *b = &r->tok;
    if (!tokenizer_same(a, b))
        die("grpo: --rm: %s/tokenizer.json is not the policy's tokenizer (%d and %d tokens): the "
            "reward model was trained from another model", rm_dir, a->vocab_size, b->vocab_size);
}

static int cmd_grpo(int argc, char **argv) {
    static const char *const known[] = {
        "--model", "--task", "--out", "--template", "--steps", "--prompts", "--group",
        "--max-new-tokens", "--temperature", "--top-p", "--lr", "--beta", "--eps", "--eps-high",
        "--mu", "--variant", "--w-accuracy", "--w-format", "--w-language", "--levels", "--lang",
        "--seed", "--sample-every", "--save-every", "--ref-every", "--gamma", "--non-reasoning",
        "--rm", NULL};
    static const char *const bools[] = {"--resume", "--speculative", NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL), *out = arg_str(argc, argv, "--out", NULL);
    if (!dir || !out) die("grpo: needs --model DIR --out DIR");
    int resume = arg_flag(argc, argv, "--resume");
    double nonreasoning = arg_double(argc, argv, "--non-reasoning", 0.0, 0.0, 1.0);
    const char *task = arg_str(argc, argv, "--task", "arithmetic");
    int level_lo, level_hi;
    arg_levels(argc, argv, "1-2", &level_lo, &level_hi);
    GrpoRun *r = xcalloc(1, sizeof(GrpoRun));
    r->s = grpo_settings_from_args(argc, argv);
    r->out = out;
    r->steps = arg_long(argc, argv, "--steps", 60, 1, 1000000);
    r->seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    r->sample_every = arg_long(argc, argv, "--sample-every", 10, 1, 1000000);
    r->save_every = arg_long(argc, argv, "--save-every", 50, 1, 1000000);
    r->ref_every = arg_long(argc, argv, "--ref-every", 0, 0, 1000000);
    out_lock("grpo", out);  // before anything in it is written
    load_model_or_die(&r->policy, resume ? out : dir);
    load_model_or_die(&r->ref, dir);  // the frozen reference policy pi_ref
    load_tokenizer_for(&r->tok, resume ? out : dir, &r->policy, "grpo");
    if (r->ref.n_params != r->policy.n_params) die("grpo: %s and %s are not the same model", out, dir);
    const char *rm_dir = arg_str(argc, argv, "--rm", NULL);
    if (rm_dir) grpo_load_rm(r, rm_dir, nonreasoning);
    rng_seed(&r->rng, r->seed ^ 0x6770u);
    if (resume) grpo_resume(r);
    int n_train = 4096, n_plain = nonreasoning > 0 ? 600 : 0;
    Json **train = make_examples(task, 0, n_train, level_lo, level_hi,
                                 arg_str(argc, argv, "--lang", "both"), r->seed);
    // without a reward model the general prompts are the non-reasoning kinds with their rule
    // reward; with one, the unsafe requests join them (what a harmlessness reward is for)
    Json **plain = !n_plain ? NULL : rm_dir ? general_examples(n_plain, r->seed)
                                            : nonreasoning_examples(n_plain, r->seed);
    r->g = grpo_groups_new(r->s.P, r->s.G, r->policy.cfg.max_position_embeddings);
    char path[4096];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", out);
    if (resume) truncate_metrics(path, r->ts.step);  // as if the run had never stopped
    r->metrics = fopen(path, resume ? "ab" : "wb");
    if (!r->metrics) die("%s: %s", path, strerror(errno));
    char on[160];  // what the groups' prompts are (with --non-reasoning 1: general ones only)
    if (nonreasoning >= 1.0) snprintf(on, sizeof(on), "general prompts only");
    else snprintf(on, sizeof(on), "%s levels %d-%d", task, level_lo, level_hi);
    printf("GRPO (%s) on %s: %d prompts x %d rollouts per step, %ld steps, "
           "template %s, beta %g, eps [%g, %g], mu %d, lr %g\n",
           arg_str(argc, argv, "--variant", "grpo"), on, r->s.P, r->s.G,
           r->steps, r->s.chat ? "chat" : "r1-zero", r->s.gc.beta, r->s.gc.eps_low,
           r->s.gc.eps_high, r->s.mu, r->s.oc.lr);
    if (n_plain && !rm_dir)
        printf("non-reasoning prompts in %.0f%% of the groups (rule reward: plain answer, "
               "kind's rule, language)\n", 100.0 * nonreasoning);
    if (rm_dir)
        printf("general prompts (one in four an unsafe request) in %.0f%% of the groups, rewarded "
               "by the reward model %s\n", 100.0 * nonreasoning, rm_dir);
    use_idle_cores("grpo");
    double t_start = now_seconds();
    for (long step = r->ts.step + 1; step <= r->steps; step++) {
        pick_questions(&r->g, train, n_train, plain, n_plain, nonreasoning, &r->rng);
        GrpoStepReport rep;
        grpo_step(&r->policy, &r->ref, &r->tok, &r->s, &r->g, r->seed * 7919u + (uint64_t)step, &rep);
        grpo_after_step(r, step, &rep, now_seconds() - t_start);
    }
    fclose(r->metrics);
    printf("policy saved in %s\n", out);
    grpo_groups_free(&r->g);
    tasks_free(train, n_train);
    if (plain) tasks_free(plain, n_plain);
    tokenizer_free(&r->tok);
    model_free(&r->policy);
    model_free(&r->ref);
    if (r->s.rm) rm_free(r->s.rm);
    free(r->s.rm);
    free(r);
    return 0;
}

// The model and tokenizer of DIR, and n problems of a task's split (eval 1: held out) to
// prompt them with: what `eval` and `reject` start from.
static Json **load_for_prompts(Model *m, Tokenizer *tok, const char *dir, const char *who,
                               const char *task, int eval, int n, int level_lo, int level_hi,
                               const char *lang, uint64_t seed) {
    load_model_or_die(m, dir);
    load_tokenizer_for(tok, dir, m, who);
    return make_examples(task, eval, n, level_lo, level_hi, lang, seed);
}

static void print_eval_table(const EvalResult *res) {
    printf("  %-6s %5s %8s %8s %8s %8s %8s %8s\n", "level", "n", "greedy", "pass@1", "cons@k",
           "format", "language", "length");
    for (int l = 0; l <= 5; l++) {
        const EvalCell *c = l ? &res->by_level[l] : &res->all;
        if (!c->n) continue;
        char name[16];
        snprintf(name, sizeof(name), l ? "%d" : "all", l);
        printf("  %-6s %5d %8.3f %8.3f %8.3f %8.3f %8.3f %8.1f\n", name, c->n, c->greedy / c->n,
               c->pass1 / c->n, c->consk / c->n, c->format / c->n, c->language / c->n,
               c->length / c->n);
    }
}

// `eval --detail`: every cell (the whole, each task, each level) with the reflection and
// language-mixing shares of the samples (grpo.c section 5 defines them).
static void print_eval_detail(const EvalResult *res) {
    printf("  %-12s %5s %8s %8s %8s %8s %8s %8s %8s %8s\n", "cell", "n", "greedy", "pass@1",
           "cons@k", "format", "language", "length", "reflect", "mixed");
    for (int i = -1; i < res->n_tasks + TASK_LEVEL_MAX; i++) {
        const EvalCell *c = i < 0 ? &res->all : i < res->n_tasks ? &res->by_task[i]
                                              : &res->by_level[i - res->n_tasks + 1];
        char name[48];
        if (i < 0) snprintf(name, sizeof(name), "all");
        else if (i < res->n_tasks) snprintf(name, sizeof(name), "%s", res->task_name[i]);
        else snprintf(name, sizeof(name), "level %d", i - res->n_tasks + 1);
        if (!c->n) continue;
        printf("  %-12s %5d %8.3f %8.3f %8.3f %8.3f %8.3f %8.1f %8.3f %8.3f\n", name, c->n,
               c->greedy / c->n, c->pass1 / c->n, c->consk / c->n, c->format / c->n,
               c->language / c->n, c->length / c->n, c->reflection / c->n, c->mixed / c->n);
    }
}

// `eval --think-budget`: one row per budget.
static void print_budget_table(const int *budget, const EvalResult *br, int n_budgets) {
    printf("think budgets: a completion still thinking after B tokens gets \"</think><answer>\" "
           "and at most %d tokens to answer (B >= --max-new-tokens: no budget)\n",
           THINK_BUDGET_ANSWER);
    printf("  %-6s %8s %8s %8s %8s %8s %8s %8s\n", "budget", "greedy", "pass@1", "cons@k",
           "format", "think", "length", "seconds");
    for (int b = 0; b < n_budgets; b++) {
        const EvalCell *c = &br[b].all;
        printf("  %-6d %8.3f %8.3f %8.3f %8.3f %8.1f %8.1f %8.1f\n", budget[b], c->greedy / c->n,
               c->pass1 / c->n, c->consk / c->n, c->format / c->n, c->think / c->n,
               c->length / c->n, br[b].seconds);
    }
}

// A cell's means as a JSON object.
static void write_cell_json(FILE *f, const EvalCell *c) {
    fprintf(f, "{\"n\": %d, \"greedy\": %.4f, \"pass@1\": %.4f, \"cons@k\": %.4f, \"format\": "
            "%.4f, \"language\": %.4f, \"length\": %.2f, \"reflection\": %.4f, \"mixed\": %.4f}",
            c->n, c->greedy / c->n, c->pass1 / c->n, c->consk / c->n, c->format / c->n,
            c->language / c->n, c->length / c->n, c->reflection / c->n, c->mixed / c->n);
}

// --detail: "by_task": {"arithmetic": CELL, ...}, "by_level": {"1": CELL, ...} (cells with
// problems only).
static void write_cells_json(FILE *f, const EvalResult *res) {
    fprintf(f, ", \"by_task\": {");
    for (int t = 0; t < res->n_tasks; t++) {
        fprintf(f, t ? ", " : "");
        json_write_string(f, res->task_name[t]);
        fprintf(f, ": ");
        write_cell_json(f, &res->by_task[t]);
    }
    fprintf(f, "}, \"by_level\": {");
    for (int l = 1, first = 1; l <= TASK_LEVEL_MAX; l++) {
        if (!res->by_level[l].n) continue;
        fprintf(f, "%s\"%d\": ", first ? "" : ", ", l);
        write_cell_json(f, &res->by_level[l]);
        first = 0;
    }
    fprintf(f, "}");
}

// --think-budget: "budgets": [{"budget": B, "greedy", "pass@1", "cons@k", "format", "think",
// "length", "seconds"}, ...].
static void write_budgets_json(FILE *f, const int *budget, const EvalResult *br, int n_budgets) {
    fprintf(f, ", \"budgets\": [");
    for (int b = 0; b < n_budgets; b++) {
        const EvalCell *c = &br[b].all;
        fprintf(f, "%s{\"budget\": %d, \"greedy\": %.4f, \"pass@1\": %.4f, \"cons@k\": %.4f, "
                "\"format\": %.4f, \"think\": %.2f, \"length\": %.2f, \"seconds\": %.2f}",
                b ? ", " : "", budget[b], c->greedy / c->n, c->pass1 / c->n, c->consk / c->n,
                c->format / c->n, c->think / c->n, c->length / c->n, br[b].seconds);
    }
    fprintf(f, "]");
}

// The budgets of a sweep, one result each (eval's --think-budget).
typedef struct {
    int n, budget[16];
    EvalResult res[16];
} BudgetSweep;

// `eval --out FILE`: the whole's numbers as one JSON object (the pipeline's report reads it);
// --detail adds "by_task" and "by_level", --think-budget "budgets". Without them, the same
// bytes as before they existed.
static void write_eval_json(const char *out, const char *dir, const char *task, int k,
                            const EvalResult *res, int detail, const BudgetSweep *sweep) {
    char err[R1_ERR_LEN];
    AtomicFile af;
    if (atomic_open(&af, out, err)) die("%s", err);
    const EvalCell *a = &res->all;
    fprintf(af.f, "{\"model\": ");
    json_write_string(af.f, dir);
    fprintf(af.f, ", \"task\": ");
    json_write_string(af.f, task);
    fprintf(af.f, ", \"n\": %d, \"k\": %d, \"greedy\": %.4f, \"pass@1\": %.4f, \"cons@k\": %.4f, "
            "\"format\": %.4f, \"language\": %.4f, \"length\": %.2f, \"seconds\": %.2f",
            a->n, k, a->greedy / a->n, a->pass1 / a->n, a->consk / a->n, a->format / a->n,
            a->language / a->n, a->length / a->n, res->seconds);
    if (detail) {  // the whole's shares that the plain summary leaves out, then the cells
        fprintf(af.f, ", \"reflection\": %.4f, \"mixed\": %.4f", a->reflection / a->n,
                a->mixed / a->n);
        write_cells_json(af.f, res);
    }
    if (sweep->n) write_budgets_json(af.f, sweep->budget, sweep->res, sweep->n);
    if (res->drafted)
        fprintf(af.f, ", \"mtp_drafted\": %ld, \"mtp_accepted\": %ld", res->drafted, res->accepted);
    fprintf(af.f, "}\n");
    if (atomic_commit(&af, err)) die("%s", err);
}

// One problem's line of --problems (budget < 0: the plain evaluation, without "budget" and
// "think").
static void write_problem_line(FILE *f, const Json *ex, const EvalScores *p, int budget) {
    const Json *id = json_get(ex, "id"), *task = json_get(ex, "task"), *lang = json_get(ex, "lang");
    const Json *level = json_get(ex, "level");
    fprintf(f, "{\"id\": ");
    json_write_string(f, id && id->type == JSON_STRING ? id->string : "");
    fprintf(f, ", \"task\": ");
    json_write_string(f, task && task->type == JSON_STRING ? task->string : "");
    int lv = level && level->type == JSON_NUMBER ? (int)level->number : 0;
    fprintf(f, ", \"level\": %d, \"lang\": ", lv);
    json_write_string(f, lang && lang->type == JSON_STRING ? lang->string : "en");
    if (budget >= 0) fprintf(f, ", \"budget\": %d", budget);
    fprintf(f, ", \"greedy\": %.0f, \"pass1\": %.6g, \"cons\": %.0f, \"format\": %.6g, "
            "\"language\": %.6g, \"length\": %.6g, \"reflection\": %.6g, \"mixed\": %.6g",
            p->greedy, p->pass1, p->consk, p->format, p->language, p->length, p->reflection,
            p->mixed);
    if (budget >= 0) fprintf(f, ", \"think\": %.6g", p->think);
    fprintf(f, "}\n");
}

// `eval --problems FILE.jsonl`: one line per problem (for paired standard errors between
// stages), then, with --think-budget, one per problem and budget (with "budget" and "think").
static void write_problems(const char *path, Json *const *ex, int n, const EvalResult *res,
                           const BudgetSweep *sweep) {
    char err[R1_ERR_LEN];
    AtomicFile af;
    if (atomic_open(&af, path, err)) die("%s", err);
    for (int i = 0; i < n; i++) write_problem_line(af.f, ex[i], &res->problem[i], -1);
    for (int b = 0; b < sweep->n; b++)
        for (int i = 0; i < n; i++)
            write_problem_line(af.f, ex[i], &sweep->res[b].problem[i], sweep->budget[b]);
    if (atomic_commit(&af, err)) die("%s", err);
}

// --think-budget 16,32,64: up to 16 budgets, each in 1..1048576.
static void parse_budgets(const char *list, BudgetSweep *sweep) {
    sweep->n = 0;
    if (!list) return;
    for (const char *p = list;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > (1 << 20) || (*end && *end != ',') || sweep->n == 16)
            die("eval: --think-budget: '%s' is not a comma list of at most 16 token counts in "
                "1..1048576", list);
        sweep->budget[sweep->n++] = (int)v;
        if (!*end) return;
        p = end + 1;
    }
}

// Evaluates the model once per budget of the sweep (after the plain evaluation).
static void run_budgets(const Model *m, const Tokenizer *tok, Json *const *ex, int n,
                        EvalSettings s, BudgetSweep *sweep) {
    for (int b = 0; b < sweep->n; b++) {
        s.think_budget = sweep->budget[b];
        evaluate(m, tok, ex, n, &s, &sweep->res[b]);
    }
    if (sweep->n) print_budget_table(sweep->budget, sweep->res, sweep->n);
}

// Speculative decoding's count: drafts verified and accepted (or why there were none).
static void print_speculation(const Model *m, long drafted, long accepted) {
    if (!m->cfg.num_nextn_predict_layers)
        printf("speculative: the model has no MTP module (pretrain --mtp): decoded plainly\n");
    else
        printf("speculative: %ld of %ld MTP drafts accepted (%.1f%%)\n", accepted, drafted,
               drafted ? 100.0 * accepted / drafted : 0.0);
}

static int cmd_eval(int argc, char **argv) {
    static const char *const known[] = {"--model", "--task", "--k", "--n", "--levels", "--lang",
                                        "--template", "--max-new-tokens", "--seed", "--out",
                                        "--problems", "--think-budget", NULL};
    static const char *const bools[] = {"--detail", "--speculative", NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL);
    if (!dir) die("eval: needs --model DIR");
    const char *task = arg_str(argc, argv, "--task", "arithmetic");
    const char *out = arg_str(argc, argv, "--out", NULL);
    const char *problems = arg_str(argc, argv, "--problems", NULL);
    int detail = arg_flag(argc, argv, "--detail");
    BudgetSweep sweep;
    parse_budgets(arg_str(argc, argv, "--think-budget", NULL), &sweep);
    EvalSettings s = {.k = (int)arg_long(argc, argv, "--k", 4, 1, 256)};
    int n = (int)arg_long(argc, argv, "--n", 64, 1, 100000);
    s.max_new = (int)arg_long(argc, argv, "--max-new-tokens", 160, 1, 1 << 20);
    s.seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    s.speculative = arg_flag(argc, argv, "--speculative");
    int level_lo, level_hi;
    arg_levels(argc, argv, "1-2", &level_lo, &level_hi);
    s.chat = parse_template(arg_str(argc, argv, "--template", "r1-zero"));
    Model m;
    Tokenizer tok;
    Json **ex = load_for_prompts(&m, &tok, dir, "eval", task, 1, n, level_lo, level_hi,
                                 arg_str(argc, argv, "--lang", "both"), s.seed);
    EvalResult res;
    use_idle_cores("eval");
    evaluate(&m, &tok, ex, n, &s, &res);
    printf("eval of %s on %d held-out %s problems (levels %d-%d), k = %d at T=0.6 top-p 0.95, "
           "%.1f s\n", dir, n, task, level_lo, level_hi, s.k, res.seconds);
    print_eval_table(&res);
    if (s.speculative) print_speculation(&m, res.drafted, res.accepted);
    if (detail) print_eval_detail(&res);
    run_budgets(&m, &tok, ex, n, s, &sweep);
    if (out) write_eval_json(out, dir, task, s.k, &res, detail, &sweep);
    if (problems) write_problems(problems, ex, n, &res, &sweep);
    for (int b = 0; b < sweep.n; b++) eval_result_free(&sweep.res[b]);
    eval_result_free(&res);
    tasks_free(ex, n);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}

static int cmd_reject(int argc, char **argv) {
    static const char *const known[] = {"--model", "--task", "--n-prompts", "--n-per-prompt",
                                        "--cap", "--levels", "--lang", "--template",
                                        "--max-new-tokens", "--temperature", "--min-language",
                                        "--non-reasoning", "--seed", "--out", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL), *out = arg_str(argc, argv, "--out", NULL);
    if (!dir || !out) die("reject: needs --model DIR --out FILE.jsonl");
    const char *task = arg_str(argc, argv, "--task", "all");
    int n = (int)arg_long(argc, argv, "--n-prompts", 256, 1, 1000000);
    RejectSettings s = {0};
    s.per_prompt = (int)arg_long(argc, argv, "--n-per-prompt", 4, 1, 256);
    s.cap = (int)arg_long(argc, argv, "--cap", 2, 1, 256);
    s.max_new = (int)arg_long(argc, argv, "--max-new-tokens", 200, 1, 1 << 20);
    s.min_language = arg_double(argc, argv, "--min-language", 0.9, 0.0, 1.0);
    s.nonreasoning = arg_double(argc, argv, "--non-reasoning", 0.2, 0.0, 10.0);
    s.sc = (SamplingConfig){(float)arg_double(argc, argv, "--temperature", 0.7, 0.0, 10.0), 0.95f, 0};
    s.seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    s.chat = parse_template(arg_str(argc, argv, "--template", "r1-zero"));
    int level_lo, level_hi;
    arg_levels(argc, argv, "1-3", &level_lo, &level_hi);
    char err[R1_ERR_LEN];
    Model m;
    Tokenizer tok;
    Json **ex = load_for_prompts(&m, &tok, dir, "reject", task, 0, n, level_lo, level_hi,
                                 arg_str(argc, argv, "--lang", "both"), s.seed);
    AtomicFile af;
    if (atomic_open(&af, out, err)) die("%s", err);
    RejectCounts c;
    use_idle_cores("reject");
    reject_sample(&m, &tok, ex, n, &s, af.f, &c);
    if (atomic_commit(&af, err)) die("%s", err);
    long total = (long)n * s.per_prompt;
    printf("rejection sampling from %s: %d prompts x %d samples = %ld in %.1f s\n", dir, n,
           s.per_prompt, total, c.seconds);
    printf("  malformed %ld, wrong %ld, mixed language %ld, cut off %ld, duplicate %ld, over the "
           "cap of %d %ld\n  kept %ld (%.1f%%), plus %ld non-reasoning examples -> %s\n",
           c.malformed, c.wrong, c.mixed, c.overlong, c.duplicate, s.cap, c.capped, c.kept,
           100.0 * c.kept / total, c.plain, out);
    tasks_free(ex, n);
    tokenizer_free(&tok);
    model_free(&m);
    return 0;
}

// `coldstart`: the cold-start set built from R1-Zero's outputs (grpo.c section 7, R1 §2.3.1).

// The two models' tokenizer.json must be the same file: the one-shot samples are decoded with
// R1-Zero's tokenizer.
static void same_tokenizer_or_die(const char *dir_a, const char *dir_b) {
    char pa[4200], pb[4200], err[R1_ERR_LEN];
    snprintf(pa, sizeof(pa), "%s/tokenizer.json", dir_a);
    snprintf(pb, sizeof(pb), "%s/tokenizer.json", dir_b);
    size_t na, nb;
    char *a = read_file(pa, &na, err), *b = a ? read_file(pb, &nb, err) : NULL;
    if (!a || !b) die("coldstart: %s", err);
    if (na != nb || memcmp(a, b, na) != 0)
        die("coldstart: --base %s has another tokenizer than --model %s", dir_b, dir_a);
    free(a);
    free(b);
}

// What is wrong with a line of the human-curated set, or NULL.
static const char *human_row_problem(const Json *j) {
    const Json *p = json_get(j, "prompt"), *s = json_get(j, "solution"), *t = json_get(j, "task");
    if (j->type != JSON_OBJECT) return "not a JSON object";
    if (!t || t->type != JSON_STRING) return "no \"task\" string";
    if (!p || p->type != JSON_STRING) return "no \"prompt\" string";
    if (!s || s->type != JSON_STRING) return "no \"solution\" string";
    return NULL;
}

// The human-curated share: the first rows of FILE, enough that they are `share` of the whole,
// and at least enough for min_total examples in all (so that a weak R1-Zero, which gives few
// usable samples, still leaves a set to fine-tune on; the counts printed say how it went).
static long write_human_share(FILE *f, const char *path, double share, long generated,
                              long min_total) {
    char err[R1_ERR_LEN];
    int n;
    Json **rows = jsonl_read(path, &n, human_row_problem, err);
    if (!rows) die("coldstart: --human: %s", err);
    long want = (long)(generated * share / (1.0 - share) + 0.5);
    if (generated + want < min_total) want = min_total - generated;
    if (want > n) want = n;
    for (long i = 0; i < want; i++)
        sft_example_write(f, rows[i], json_get(rows[i], "solution")->string, "human");
    tasks_free(rows, n);
    return want;
}

static void print_cold_counts(const char *source, const ColdCounts *c) {
    static const char *const names[N_COLD_REASONS] = {
        "kept", "malformed", "wrong", "mixed language", "cut off", "too short", "repetitive",
        "duplicate", "over the cap"};
    printf("  %-8s %5ld samples:", source, c->sampled);
    for (int r = 1; r < N_COLD_REASONS; r++) printf(" %s %ld,", names[r], c->dropped[r]);
    printf(" kept %ld (%.1f%%)\n", c->kept, c->sampled ? 100.0 * c->kept / c->sampled : 0.0);
}

static int cmd_coldstart(int argc, char **argv) {
    static const char *const known[] = {
        "--model", "--base", "--human", "--human-share", "--task", "--n-prompts", "--n-per-prompt",
        "--cap", "--levels", "--lang", "--max-new-tokens", "--temperature", "--min-language",
        "--min-lines", "--max-repeat", "--min-total", "--seed", "--out", NULL};
    static const char *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    const char *dir = arg_str(argc, argv, "--model", NULL), *out = arg_str(argc, argv, "--out", NULL);
    const char *base = arg_str(argc, argv, "--base", NULL), *human = arg_str(argc, argv, "--human", NULL);
    if (!dir || !out) die("coldstart: needs --model DIR (R1-Zero) --out FILE.jsonl");
    int n = (int)arg_long(argc, argv, "--n-prompts", 512, 1, 1000000);
    double share = arg_double(argc, argv, "--human-share", 0.25, 0.0, 0.9);
    long min_total = arg_long(argc, argv, "--min-total", 64, 0, 100000000);
    ColdSettings s = {0};
    s.per_prompt = (int)arg_long(argc, argv, "--n-per-prompt", 2, 1, 256);
    s.cap = (int)arg_long(argc, argv, "--cap", 1, 1, 256);
    s.max_new = (int)arg_long(argc, argv, "--max-new-tokens", 200, 1, 1 << 20);
    s.min_lines = (int)arg_long(argc, argv, "--min-lines", 2, 0, 1000);
    s.min_language = arg_double(argc, argv, "--min-language", 0.99, 0.0, 1.0);
    s.max_repeat = arg_double(argc, argv, "--max-repeat", 0.25, 0.0, 1.0);
    s.sc = (SamplingConfig){(float)arg_double(argc, argv, "--temperature", 0.7, 0.0, 10.0), 0.95f, 0};
    s.seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    int level_lo, level_hi;
    arg_levels(argc, argv, "1-5", &level_lo, &level_hi);
    if (base) same_tokenizer_or_die(dir, base);
    char err[R1_ERR_LEN];
    Model m;
    Tokenizer tok;
    Json **ex = load_for_prompts(&m, &tok, dir, "coldstart", arg_str(argc, argv, "--task", "all"),
                                 0, n, level_lo, level_hi, arg_str(argc, argv, "--lang", "both"),
                                 s.seed);
    AtomicFile af;
    if (atomic_open(&af, out, err)) die("%s", err);
    ColdCounts zero = {0}, one_shot = {0};
    cold_sample(&m, &tok, ex, n, 0, &s, af.f, &zero);
    model_free(&m);
    if (base) {
        load_model_or_die(&m, base);
        if (m.cfg.vocab_size < tok.vocab_size)
            die("coldstart: --base %s: vocab_size %d is smaller than the tokenizer's %d", base,
                m.cfg.vocab_size, tok.vocab_size);
        cold_sample(&m, &tok, ex, n, 1, &s, af.f, &one_shot);
        model_free(&m);
    }
    long generated = zero.kept + one_shot.kept;
    long humans = human ? write_human_share(af.f, human, share, generated, min_total) : 0;
    if (atomic_commit(&af, err)) die("%s", err);
    printf("cold-start data: %d prompts x %d samples from %s%s%s in %.1f s\n", n, s.per_prompt,
           dir, base ? " and one-shot from " : "", base ? base : "",
           zero.seconds + one_shot.seconds);
    print_cold_counts("r1-zero", &zero);
    if (base) print_cold_counts("one-shot", &one_shot);
    printf("  %ld generated + %ld human-curated (%s) -> %s\n", generated, humans,
           human ? human : "none", out);
    tasks_free(ex, n);
    tokenizer_free(&tok);
    return 0;
}

// `./r1 rm`: a reward model trained on preference pairs (grpo.c section 8). The pairs whose
// index is 9 mod 10 are held out (the last pair, if there are fewer than 10).
typedef struct {
    RewardModel rm;
    RmRows rows;
    int n_pairs, n_train, n_held, *train, *held, *held_safety;
} RmRun;

static void rm_split(RmRun *r, Json *const *pairs) {
    r->train = xcalloc((size_t)r->n_pairs, sizeof(int));
    r->held = xcalloc((size_t)r->n_pairs, sizeof(int));
    r->held_safety = xcalloc((size_t)r->n_pairs, sizeof(int));
    for (int i = 0; i < r->n_pairs; i++) {
        int held = r->n_pairs < 10 ? i == r->n_pairs - 1 : i % 10 == 9;
        if (!held) {
            r->train[r->n_train++] = i;
            continue;
        }
        r->held_safety[r->n_held] = strcmp(json_get(pairs[i], "kind")->string, "safety") == 0;
        r->held[r->n_held++] = i;
    }
}

// Held-out accuracy: all, helpful pairs, safety pairs (NAN where there are none).
static void rm_heldout(RmRun *r, double acc[3]) {
    int right[2], count[2];
    rm_accuracy(&r->rm, &r->rows, r->held, r->held_safety, r->n_held, right, count);
    acc[0] = (double)(right[0] + right[1]) / (count[0] + count[1]);
    acc[1] = count[0] ? (double)right[0] / count[0] : NAN;
    acc[2] = count[1] ? (double)right[1] / count[1] : NAN;
}

// Training: `steps` steps of `batch` pairs from the training split, shuffled each epoch.
static void rm_train_loop(RmRun *r, RmTrainer *t, long steps, int batch, long eval_every,
                          uint64_t seed, FILE *metrics) {
    Rng rng;
    rng_seed(&rng, seed ^ 0x726du);
    int *order = xcalloc((size_t)r->n_train, sizeof(int)), cursor = r->n_train;
    int **rows = xcalloc((size_t)2 * batch, sizeof(int *)), *len = xcalloc((size_t)2 * batch, sizeof(int));
    double t0 = now_seconds();
    for (long step = 1; step <= steps; step++) {
        for (int i = 0; i < batch; i++) {
            if (cursor == r->n_train) {  // a new epoch: a new order
                for (int k = 0; k < r->n_train; k++) order[k] = r->train[k];
                for (int k = r->n_train - 1; k > 0; k--) {
                    int j = (int)(rng_next(&rng) % (uint64_t)(k + 1)), tmp = order[k];
                    order[k] = order[j], order[j] = tmp;
                }
                cursor = 0;
            }
            int p = order[cursor++];
            rows[2 * i] = r->rows.ids[2 * p], len[2 * i] = r->rows.len[2 * p];
            rows[2 * i + 1] = r->rows.ids[2 * p + 1], len[2 * i + 1] = r->rows.len[2 * p + 1];
        }
        int correct;
        float loss = rm_train_step(&r->rm, t, rows, len, batch, &correct);
        if (!isfinite(loss)) die("rm: step %ld: the loss is %g: stopping (try a lower --lr)", step, loss);
        fprintf(metrics, "{\"step\": %ld, \"loss\": %.6f, \"accuracy\": %.4f, \"grad_norm\": %.4f",
                step, loss, (double)correct / batch, t->grad_norm);
        if (step % eval_every == 0 || step == steps) {
            double acc[3];
            rm_heldout(r, acc);
            fprintf(metrics, ", \"heldout_accuracy\": %.4f", acc[0]);
            printf("step %ld/%ld | loss %.4f | batch accuracy %.3f | held-out accuracy %.3f | %.0fs\n",
                   step, steps, loss, (double)correct / batch, acc[0], now_seconds() - t0);
        }
        fprintf(metrics, "}\n");
        fflush(metrics);
    }
    free(order), free(rows), free(len);
}

// OUT/rm.json: the held-out accuracy (all, helpful, safety), for the pipeline's report.
static void rm_write_summary(const char *out, const RmRun *r, const double acc[3], long steps) {
    char path[4200], err[R1_ERR_LEN], text[512];
    snprintf(path, sizeof(path), "%s/rm.json", out);
    snprintf(text, sizeof(text), "{\"heldout_accuracy\": %.4f, \"helpful\": %.4f, \"safety\": %.4f, "
             "\"n_heldout\": %d, \"n_train\": %d, \"steps\": %ld, \"bias\": %.6f}\n", acc[0],
             isfinite(acc[1]) ? acc[1] : 0.0, isfinite(acc[2]) ? acc[2] : 0.0, r->n_held,
             r->n_train, steps, r->rm.b);
    if (write_text_atomic(path, text, err)) die("rm: %s", err);
}

static int cmd_rm(int argc, char **argv) {
    static const char *const known[] = {"--model", "--data", "--out", "--steps", "--epochs", "--batch",
                                        "--lr", "--seed", "--eval-every", NULL}, *const bools[] = {NULL};
    check_flags(argc, argv, known, bools);
    char err[R1_ERR_LEN], path[4200];
    const char *dir = arg_str(argc, argv, "--model", NULL), *data = arg_str(argc, argv, "--data", NULL);
    const char *out = arg_str(argc, argv, "--out", NULL);
    if (!dir || !data || !out) die("rm: needs --model DIR --data PAIRS.jsonl --out DIR");
    if (arg_str(argc, argv, "--steps", NULL) && arg_str(argc, argv, "--epochs", NULL))
        die("rm: give --steps or --epochs, not both");
    int batch = (int)arg_long(argc, argv, "--batch", 8, 1, 1024);
    uint64_t seed = (uint64_t)arg_long(argc, argv, "--seed", 1, 0, LONG_MAX);
    RmRun *r = xcalloc(1, sizeof(RmRun));
    int n;
    Json **pairs = jsonl_read(data, &n, pair_check, err);
    if (!pairs) die("rm: %s", err);
    if (n < 2) die("rm: %s: %d pair%s: at least 2 are needed (one to train on, one held out)", data, n, n == 1 ? "" : "s");
    out_lock("rm", out);
    load_model_or_die(&r->rm.model, dir);
    load_tokenizer_for(&r->rm.tok, dir, &r->rm.model, "rm");
    if (model_alloc_training(&r->rm.model, 1, 1, err)) die("rm: %s", err);  // before any scoring
    if (rm_encode_pairs(&r->rm, pairs, n, &r->rows, err)) die("rm: %s: %s", data, err);
    r->n_pairs = n;
    rm_split(r, pairs);
    long epochs = arg_long(argc, argv, "--epochs", 1, 1, 100000);
    long steps = arg_long(argc, argv, "--steps", (epochs * r->n_train + batch - 1) / batch, 1, 10000000);
    long eval_every = arg_long(argc, argv, "--eval-every", steps / 4 > 0 ? steps / 4 : 1, 1, 10000000);
    // the head: w ~ normal(0, initializer_range), b = 0 (as transformers initialises a Linear)
    int D = r->rm.model.cfg.hidden_size;
    r->rm.w = xcalloc((size_t)D, sizeof(float));
    Rng rng;
    rng_seed(&rng, seed ^ 0x73636fu);
    for (int i = 0; i < D; i++) r->rm.w[i] = r->rm.model.cfg.initializer_range * rng_normal(&rng);
    AdamWConfig oc = adamw_defaults();
    oc.lr = (float)arg_double(argc, argv, "--lr", 5e-5, 0.0, 1.0);
    oc.weight_decay = 0.0f;  // lm_head gets no gradient: no decay may shrink it either
    RmTrainer t;
    rm_trainer_init(&t, &r->rm, &oc);
    if (make_dirs(out, err)) die("rm: %s", err);
    snprintf(path, sizeof(path), "%s/metrics.jsonl", out);
    FILE *metrics = fopen(path, "wb");
    if (!metrics) die("rm: %s: %s", path, strerror(errno));
    double acc[3];
    rm_heldout(r, acc);
    printf("reward model from %s: %d pairs (%d to train on, %d held out), %ld steps of %d pairs, "
           "lr %g; held-out accuracy before training %.3f\n", dir, n, r->n_train, r->n_held, steps,
           batch, oc.lr, acc[0]);
    rm_train_loop(r, &t, steps, batch, eval_every, seed, metrics);
    fclose(metrics);
    rm_center(&r->rm, &r->rows, r->train, r->n_train < 128 ? r->n_train : 128);  // a sample is enough
    rm_heldout(r, acc);
    printf("held-out pair accuracy %.3f (helpful %.3f, safety %.3f) on %d pairs; score bias %.4f\n",
           acc[0], acc[1], acc[2], r->n_held, r->rm.b);
    if (rm_save(&r->rm, out, err)) die("rm: %s", err);
    rm_write_summary(out, r, acc, steps);
    printf("reward model saved in %s (score.safetensors: score.weight, score.bias)\n", out);
    rm_trainer_free(&t);
    rm_rows_free(&r->rows);
    tasks_free(pairs, n);
    rm_free(&r->rm);
    free(r->train), free(r->held), free(r->held_safety), free(r);
    return 0;
}

// ==============================================================================================
// 6. `bench`: forward, backward, training step, generation; tokens/s and GFLOP/s
// ==============================================================================================

// Matmul FLOPs per token of one forward: 2 per activated weight (not the embedding lookup),
// plus attention: 2 * H * (dn + dr + dv) per attended position, (T+1)/2 positions on average.
static double forward_flops_per_token(const Config *c, int T) {
    ParamCount pc;
    count_params(c, &pc);
    double weights = pc.activated - pc.embed - pc.norms + (c->tie_word_embeddings ? pc.embed : 0);
    double att = 2.0 * c->num_attention_heads *
                 (c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim) * (T + 1) / 2.0;
    if (is_gqa(c)) att = 2.0 * c->num_attention_heads * 2.0 * c->head_dim * (T + 1) / 2.0;
    return 2.0 * weights + att * c->num_hidden_layers;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;  // kilobytes on Linux
}

// The FMA peak of `threads` threads running fma_peak_loop (kernels.c) side by side: GFLOP/s of
// them all, best of 3 tries of ~0.1 s each.
static double fma_peak_gflops(int threads) {
    (void)threads;  // (unused in a build without OpenMP, where the region runs once)
    double best = 0.0;
    for (int attempt = 0; attempt < 3; attempt++) {
        double flops = 0.0, t0 = now_seconds();
        float keep = 0.0f;
#pragma omp parallel num_threads(threads)
        {
            double f;
            float k = fma_peak_loop(20000000L, &f);
#pragma omp critical
            {
                flops += f;
                keep += k;
            }
        }
        double rate = flops / (now_seconds() - t0) / 1e9;
        if (rate > best && keep != 0.0f) best = rate;  // (keep: the loop's result is used)
    }
    return best;
}

// `bench --parts`: the step's time part by part (Model.part_seconds; the loss and AdamW timed
// here), ms per step, forward and backward, and each part's share of the whole step.
static void print_step_parts(const Model *m, double loss_s, double adamw_s, double step_s,
                             int steps) {
    printf("  %-32s %9s %9s %6s\n", "part (ms per step)", "forward", "backward", "share");
    double counted = loss_s + adamw_s;
    for (int p = 0; p < PART_COUNT; p++) {
        double f = m->part_seconds[0][p], b = m->part_seconds[1][p];
        counted += f + b;
        printf("  %-32s %9.2f %9.2f %5.1f%%\n", step_part_names[p], 1e3 * f / steps,
               1e3 * b / steps, 100 * (f + b) / step_s);
    }
    printf("  %-32s %9.2f %9s %5.1f%%\n", "loss (cross-entropy, dlogits)", 1e3 * loss_s / steps,
           "", 100 * loss_s / step_s);
    printf("  %-32s %9s %9.2f %5.1f%%\n", "AdamW, bias update", "", 1e3 * adamw_s / steps,
           100 * adamw_s / step_s);
    printf("  %-32s %9.2f %9s %5.1f%%\n", "the rest (zeroing grads, gaps)",
           1e3 * (step_s - counted) / steps, "", 100 * (step_s - counted) / step_s);
}

// Times training phases for one config; prints one line per phase, the train step's with its
// share of the FMA peak (peak, GFLOP/s, 0: not printed), and with parts its time part by part.
// Returns the forward's tokens/s.
static double bench_training(const char *label, const Config *c, int B, int T, int steps,
                             double peak, int parts) {
    char err[R1_ERR_LEN];
    Model m;
    if (model_create(&m, c, err) || model_alloc_training(&m, B, T, err)) die("%s", err);
    model_init_random(&m, 1);
    Rng rng;
    rng_seed(&rng, 2);
    int *ids = xcalloc((size_t)B * T, sizeof(int));
    float *dlogits = xcalloc((size_t)B * T * c->vocab_size, sizeof(float));
    synthetic_batch(&rng, ids, B, T, c->vocab_size);
    AdamWConfig oc = adamw_defaults();
    train_step(&m, ids, NULL, dlogits, &oc, 1e-3f, NULL);  // warm-up
    memset(m.part_seconds, 0, sizeof(m.part_seconds));
    double fwd = 0, bwd = 0, step_time = 0, loss_time = 0, adamw_time = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = now_seconds();
        model_forward(&m, ids, B, T);
        double t_loss = now_seconds();
        cross_entropy_forward_backward(m.acts.logits, ids, NULL, B, T, c->vocab_size, dlogits);
        double t1 = now_seconds();
        model_zero_grad(&m);
        model_backward(&m, ids, dlogits);
        double t2 = now_seconds();
        adamw_step(&m, &oc);
        moe_update_bias(&m, 1e-3f);
        moe_reset_load(&m);
        double t3 = now_seconds();
        loss_time += t1 - t_loss;
        adamw_time += t3 - t2;
        fwd += t1 - t0;
        bwd += t2 - t1;
        step_time += t3 - t0;
    }
    double tokens = (double)B * T * steps, f = forward_flops_per_token(c, T);
    double step_gflops = 3 * f * tokens / step_time / 1e9;
    printf("%-22s forward   %9.0f tokens/s  %6.2f GFLOP/s\n", label, tokens / fwd,
           f * tokens / fwd / 1e9);
    printf("%-22s backward  %9.0f tokens/s  %6.2f GFLOP/s\n", label, tokens / bwd,
           2 * f * tokens / bwd / 1e9);
    printf("%-22s train step %8.0f tokens/s  %6.2f GFLOP/s  %.3f s/step  peak memory %.0f MB\n",
           label, tokens / step_time, step_gflops, step_time / steps, peak_rss_mb());
    if (peak > 0)
        printf("%-22s train step at %.0f%% of the FMA peak (%.1f of %.1f GFLOP/s)\n", label,
               100 * step_gflops / peak, step_gflops, peak);
    if (parts) print_step_parts(&m, loss_time, adamw_time, step_time, steps);
    fflush(stdout);
    free(ids);
    free(dlogits);
    model_free(&m);
    return tokens / fwd;
}

// n streams decode n_new tokens each after a 1-token prompt (stream i starts with token i),
// greedy, every stream all n_new steps (an EOS does not stop it), cut into batches as rollouts
// are (decode_batch_count: one per thread at least, each batch on one thread). Returns seconds.
static double bench_streams(const Model *m, int n, int n_new) {
    int n_batches = decode_batch_count(n), V = m->cfg.vocab_size;
    double t0 = now_seconds();
    float *wt = decode_weights_transposed(m);  // (as sample_rollouts does: its time counts)
#pragma omp parallel for schedule(dynamic)
    for (int bi = 0; bi < n_batches; bi++) {
        char err[R1_ERR_LEN];
        int first, nb, tokens[DECODE_BATCH], pos[DECODE_BATCH];
        decode_batch_range(n, n_batches, bi, &first, &nb);
        DecodeState s[DECODE_BATCH], *sp[DECODE_BATCH];
        DecodeBatch batch;
        decode_batch_create(&batch, m);
        decode_batch_use_transposed(&batch, m, wt);
        for (int i = 0; i < nb; i++) {
            if (decode_state_create(&s[i], m, n_new, err)) die("%s", err);
            sp[i] = &s[i];
            tokens[i] = (first + i) % V;
        }
        for (int p = 0; p < n_new; p++) {
            for (int i = 0; i < nb; i++) pos[i] = p;
            decode_step_batch(m, sp, &batch, tokens, pos, nb);
            for (int i = 0; i < nb; i++)
                tokens[i] = sample_token(batch.logits + (size_t)i * V, V, 0.0f, 1.0f, NULL, NULL);
        }
        for (int i = 0; i < nb; i++) decode_state_free(&s[i]);
        decode_batch_free(&batch);
    }
    free(wt);
    return now_seconds() - t0;
}

// Generation of n_new tokens after a 1-token prompt: one stream, 16 streams and the 64 of a
// GRPO step's rollouts (8 x 8) batched, against the training forward's tokens/s (fwd, 0: not
// known); then recomputing the prefix instead of the latent cache.
static void bench_generation(const char *label, const Config *c, int n_new, int recompute,
                             double fwd) {
    char err[R1_ERR_LEN];
    Model m;
    if (model_create(&m, c, err)) die("%s", err);
    model_init_random(&m, 1);
    DecodeState s;
    if (decode_state_create(&s, &m, n_new + 1, err)) die("%s", err);
    int *ids = xcalloc((size_t)n_new + 1, sizeof(int));
    double t0 = now_seconds();
    for (int pos = 0; pos < n_new; pos++) {
        decode_step(&m, &s, ids[pos], pos);
        ids[pos + 1] = sample_token(s.logits, c->vocab_size, 0.0f, 1.0f, NULL, NULL);
    }
    double cached = now_seconds() - t0;
    printf("%-22s generate  %9.0f tokens/s  (1 stream x %d tokens, latent KV cache, absorbed "
           "MLA)\n", label, n_new / cached, n_new);
    // streams stepping together (rollouts, evaluation): each weight read once per batch
    int counts[] = {16, 64};
    for (int k = 0; k < 2; k++) {
        int n = counts[k];
        double t = bench_streams(&m, n, n_new), rate = n * n_new / t;
        printf("%-22s generate  %9.0f tokens/s  (%d streams x %d tokens in %d batch(es): %.1fx "
               "one stream", label, rate, n, n_new, decode_batch_count(n), n * cached / t);
        if (fwd > 0) printf(", %.0f%% of the training forward's tokens/s", 100 * rate / fwd);
        printf(")\n");
    }
    if (recompute) {
        // the same tokens, recomputing the whole prefix with the training forward every time
        if (model_alloc_training(&m, 1, n_new, err)) die("%s", err);
        t0 = now_seconds();
        for (int len = 1; len <= n_new; len++) {
            m.acts.T = len;
            model_forward(&m, ids, 1, len);
        }
        double naive = now_seconds() - t0;
        printf("%-22s generate  %9.0f tokens/s  without a cache (full prefix each token): "
               "cache is %.1fx faster\n", label, n_new / naive, naive / cached);
    }
    fflush(stdout);
    free(ids);
    decode_state_free(&s);
    model_free(&m);
}

// GRPO steps as `./r1 grpo` runs them with the pipeline's settings (P x G = 8 x 8 rollouts of
// up to n_new = 200 tokens, temperature 1, mu 1), on a random model and random prompts of
// n_prompt tokens: sample_rollouts, then grpo_update (pi_ref's log-probabilities, then forward,
// GRPO loss, backward and AdamW, 8 rows at a time). The rewards are left out (rules on text:
// milliseconds); the advantages are +1 and -1 by turns. Step 1 also allocates (and faults in)
// the buffers that later steps reuse; step 2 is the one a long run repeats.
static void bench_grpo_step(const char *label, const Config *c, int P, int G, int n_prompt,
                            int n_new) {
    char err[R1_ERR_LEN];
    Model m, ref;
    if (model_create(&m, c, err) || model_create(&ref, c, err)) die("%s", err);
    model_init_random(&m, 1);
    model_init_random(&ref, 1);
    int B = P * G, ctx = c->max_position_embeddings;
    if (n_prompt + n_new > ctx) n_new = ctx - n_prompt;
    GrpoGroups g = grpo_groups_new(P, G, ctx);
    Rng rng;
    rng_seed(&rng, 3);
    for (int p = 0; p < P; p++) {
        int prompt[512];
        prompt[0] = TOK_BOS;
        for (int t = 1; t < n_prompt && t < 512; t++)
            prompt[t] = 4 + (int)(rng_next(&rng) % (uint64_t)(c->vocab_size - 4));
        for (int i = 0; i < G; i++) {
            Rollout *r = &g.r[p * G + i];
            memcpy(r->ids, prompt, (size_t)n_prompt * sizeof(int));
            r->n_prompt = r->n = n_prompt;
        }
    }
    for (int b = 0; b < B; b++) g.adv[b] = b % 2 ? 1.0f : -1.0f;
    GrpoSettings s = {.P = P, .G = G, .max_new = n_new, .mu = 1, .sc = {1.0f, 1.0f},
                      .oc = adamw_defaults(), .gamma = 1e-3f,
                      .gc = {GRPO_PAPER, 0.2f, 0.2f, 0.04f, n_new}};
    s.oc.lr = 2e-4f;
    s.oc.weight_decay = 0.0f;
    for (int step = 1; step <= 2; step++) {
        for (int b = 0; b < B; b++) g.r[b].n = n_prompt;
        GrpoStepReport rep = {0};
        double t0 = now_seconds();
        sample_rollouts(&m, NULL, g.r, B, n_new, &s.sc, (uint64_t)step);
        double t_gen = now_seconds() - t0, t1 = now_seconds();
        grpo_update(&m, &ref, &s, &g, &rep);
        double t_learn = now_seconds() - t1, total = t_gen + t_learn;
        long tokens = 0;
        for (int b = 0; b < B; b++) tokens += g.r[b].n - n_prompt;
        printf("%-22s grpo step %d  %.2f s: rollouts %.2f s (%.0f%%, %d x %d of %.0f tokens "
               "on average, %.0f tokens/s), pi_ref %.2f s (%.0f%%), update %.2f s (%.0f%%)\n",
               label, step, total, t_gen, 100 * t_gen / total, P, G, (double)tokens / B,
               tokens / t_gen, rep.score_s, 100 * rep.score_s / total, t_learn - rep.score_s,
               100 * (t_learn - rep.score_s) / total);
        fflush(stdout);
    }
    grpo_groups_free(&g);
    model_free(&m);
    model_free(&ref);
}

// Runs fn in a child process so that each case's peak memory is its own.
static void in_child(void (*fn)(void *), void *arg) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("bench: fork: %s", strerror(errno));
    if (pid == 0) {
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("bench: a case failed");
}

typedef struct {
    const char *label;
    Config c;
    int B, T, steps, gen, recompute, grpo;
    int peak;   // 1: measure the FMA peak first, and give the train step's share of it
    int parts;  // 1: the train step's time part by part (--parts)
} BenchCase;

// (in the case's child process: a parent that has run a parallel region must not fork, since
// libgomp's threads do not survive into the child, which would wait for them forever)
static void run_bench_case(void *arg) {
    BenchCase *bc = arg;
    double fwd = 0, peak = 0;
    if (bc->peak) {
        int threads = openmp_threads();
        double peak1 = fma_peak_gflops(1);
        peak = threads > 1 ? fma_peak_gflops(threads) : peak1;
        printf("FMA peak (16 chains of vector multiply-adds, no loads): %.1f GFLOP/s on 1 "
               "thread, %.1f on %d (%.2fx)\n", peak1, peak, threads, peak / peak1);
    }
    if (bc->steps > 0)
        fwd = bench_training(bc->label, &bc->c, bc->B, bc->T, bc->steps, peak, bc->parts);
    if (bc->gen > 0) bench_generation(bc->label, &bc->c, bc->gen, bc->recompute, fwd);
    if (bc->grpo) bench_grpo_step(bc->label, &bc->c, 8, 8, 64, 200);
}

// `bench --speculative DIR`: rollouts of 64 held-out problems (all tasks, levels 1-5, the R1-Zero
// template, up to max_new tokens: the pipeline's RL settings) from a checkpoint with the MTP
// module, plainly and speculatively (mtp.c), for 1 stream and for 64; at temperature 0, where
// the tokens must be the same (checked), and at 1, GRPO's. Each is timed twice, alternating
// with the other; the faster run counts.
static void bench_speculative(const char *dir, int max_new) {
    Model m;
    Tokenizer tok;
    enum { N = 64 };
    Json **ex = load_for_prompts(&m, &tok, dir, "bench", "all", 1, N, 1, 5, "both", 1);
    if (!m.cfg.num_nextn_predict_layers)
        die("bench --speculative: %s has no MTP module (pretrain --mtp makes one)", dir);
    int ctx = m.cfg.max_position_embeddings;
    printf("speculative decoding with the MTP module of %s (%d new tokens at most):\n", dir,
           max_new);
    for (int ti = 0; ti < 2; ti++) {
        for (int n = 1; n <= N; n *= N) {
            Rollout *r[2] = {rollouts_new(n, ctx), rollouts_new(n, ctx)};
            double best[2] = {1e30, 1e30};
            long tokens[2] = {0, 0}, drafted = 0, accepted = 0;
            for (int round = 0; round < 2; round++)
                for (int spec = 0; spec < 2; spec++) {
                    for (int i = 0; i < n; i++) rollout_set_prompt(&r[spec][i], &tok, ex[i], 0, ctx, "bench");
                    SamplingConfig sc = {(float)ti, 1.0f, spec};
                    double t0 = now_seconds();
                    sample_rollouts(&m, &tok, r[spec], n, max_new, &sc, 1);
                    double t = now_seconds() - t0;
                    best[spec] = t < best[spec] ? t : best[spec];
                    tokens[spec] = drafted = accepted = 0;
                    for (int i = 0; i < n; i++) tokens[spec] += r[spec][i].n - r[spec][i].n_prompt;
                    rollouts_count_drafts(r[spec], n, &drafted, &accepted);
                }
            int same = 1;
            for (int i = 0; i < n && ti == 0; i++)
                same = same && r[0][i].n == r[1][i].n &&
                       memcmp(r[0][i].ids, r[1][i].ids, (size_t)r[0][i].n * sizeof(int)) == 0;
            if (!same) die("bench --speculative: greedy tokens differ from plain decoding");
            double plain = tokens[0] / best[0], fast = tokens[1] / best[1];
            printf("  T=%d, %2d stream%s: plain %7.0f tok/s, speculative %7.0f tok/s (%.2fx); "
                   "%ld of %ld drafts accepted (%.1f%%)%s\n", ti, n, n > 1 ? "s" : " ", plain,
                   fast, fast / plain, accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0,
                   ti == 0 ? "; the same tokens" : "");
            rollouts_free(r[0], n);
            rollouts_free(r[1], n);
        }
    }
    tasks_free(ex, N);
    tokenizer_free(&tok);
    model_free(&m);
}

static int cmd_bench(int argc, char **argv) {
    static const char *const known[] = {"--preset", "--batch", "--seq", "--steps",
                                        "--speculative", "--max-new-tokens", NULL};
    static const char *const bools[] = {"--quick", "--train-only", "--parts", NULL};
    check_flags(argc, argv, known, bools);
    const char *preset = arg_str(argc, argv, "--preset", "small");
    int B = (int)arg_long(argc, argv, "--batch", 8, 1, 4096);
    int T = (int)arg_long(argc, argv, "--seq", 256, 2, 1 << 20);
    int steps = (int)arg_long(argc, argv, "--steps", 3, 1, 1000);
    int quick = arg_flag(argc, argv, "--quick");
    int train_only = arg_flag(argc, argv, "--train-only");  // the training step of the preset alone
    const char *spec_dir = arg_str(argc, argv, "--speculative", NULL);
    if (spec_dir) {  // a trained checkpoint's MTP drafts (the random weights below accept none)
        bench_speculative(spec_dir, (int)arg_long(argc, argv, "--max-new-tokens", 200, 1, 1 << 20));
        return 0;
    }
    char err[R1_ERR_LEN];
    int threads = openmp_threads();
    printf("r1 bench: %d thread(s), batch %d x %d tokens, %d timed steps after 1 warm-up\n",
           threads, B, T, steps);
    BenchCase bc = {.label = preset, .B = B, .T = T, .steps = steps, .gen = train_only ? 0 : 256,
                    .recompute = 1, .grpo = !train_only, .peak = 1,
                    .parts = arg_flag(argc, argv, "--parts")};
    if (config_preset(preset, &bc.c, err)) die("%s", err);
    in_child(run_bench_case, &bc);
    if (quick || train_only) return 0;
    // cost follows activated parameters: twice the routed experts at the same top-k
    BenchCase wide = bc;
    char wide_label[64];
    snprintf(wide_label, sizeof(wide_label), "%s, 2x experts", preset);
    wide.label = wide_label;
    wide.gen = 0;
    wide.grpo = 0;
    wide.peak = 0;
    wide.c.n_routed_experts *= 2;
    in_child(run_bench_case, &wide);
    // the 61-block structure at the issue's batch: memory must stay under 4 GB
    BenchCase deep = {.label = "r1-61", .B = 8, .T = 256, .steps = 1, .gen = 64};
    if (config_preset("r1-61", &deep.c, err)) die("%s", err);
    in_child(run_bench_case, &deep);
    return 0;
}
// ==============================================================================================
// 7. `plot` and `pipeline`: the command lines of pipeline.c
// ==============================================================================================

static int cmd_plot(int argc, char **argv) {
    if (argc < 3 || argv[2][0] == '-') die("plot: usage: ./r1 plot RUN_DIR");
    printf("wrote %d charts (*.svg) in %s\n", plot_run(argv[2]), argv[2]);
    return 0;
}

static int cmd_pipeline(int argc, char **argv) {
    static const char *const known[] = {"--preset", "--out", "--seed", "--seeds", "--scale",
                                        "--until", NULL};
    static const char *const bools[] = {"--mtp", NULL};
    check_flags(argc, argv, known, bools);
    PipelineRun p;
    p.mtp = arg_flag(argc, argv, "--mtp");  // the base with the MTP module, decoding with drafts
    p.preset = arg_str(argc, argv, "--preset", "small");
    p.out = arg_str(argc, argv, "--out", "runs/pipeline");
    p.seed = arg_str(argc, argv, "--seed", "1");
    p.scale = arg_double(argc, argv, "--scale", 1.0, 0.01, 100.0);  // multiplies the steps
    p.until = arg_str(argc, argv, "--until", NULL);  // the last stage to run ("rl")
    const char *seeds = arg_str(argc, argv, "--seeds", NULL);  // "1,2,3": a run per seed
    char err[R1_ERR_LEN];
    Config check;
    if (config_preset(p.preset, &check, err)) die("pipeline: --preset: %s", err);
    double t_start = now_seconds();
    if (!seeds) {
        pipeline_run(&p);
        printf("\npipeline %s%s in %.0f s; report: %s/report.md\n", p.until ? "stopped after " : "finished",
               p.until ? p.until : "", now_seconds() - t_start, p.out);
        return 0;
    }
    if (arg_str(argc, argv, "--seed", NULL)) die("pipeline: give --seed or --seeds, not both");
    char list[256], dirs[64][4200];
    const char *seed_of[64];
    snprintf(list, sizeof(list), "%s", seeds);
    int n = 0;
    for (char *s = strtok(list, ","); s && n < 64; s = strtok(NULL, ","), n++) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end || end == s || v < 0) die("pipeline: --seeds: '%s' is not a seed", s);
        seed_of[n] = s;
        snprintf(dirs[n], sizeof(dirs[n]), "%s/seed-%s", p.out, s);
    }
    for (int i = 0; i < n; i++) {
        PipelineRun r = p;
        r.out = dirs[i], r.seed = seed_of[i];
        printf("\n==== seed %s -> %s\n", r.seed, r.out);
        pipeline_run(&r);
    }
    pipeline_write_seeds_report(p.out, dirs, seed_of, n);
    printf("\npipeline (%d seeds) finished in %.0f s; report: %s/report.md\n", n,
           now_seconds() - t_start, p.out);
    return 0;
}

// ==============================================================================================
// 8. main (left out when a test includes this file with R1_TEST)
// ==============================================================================================

#ifndef R1_TEST
static void usage(void) {
    printf("r1: the DeepSeek-R1 system in plain C\n\n"
           "  ./r1 info    --config NAME | --model DIR    architecture, parameter counts, KV cache\n"
           "  ./r1 forward --model DIR --input IN.safetensors --out OUT.safetensors [--backward]\n"
           "  ./r1 sample  --model DIR (--prompt TEXT [--template chat|r1-zero|none] |\n"
           "               --prompt-ids \"37 43 12\") [--max-new-tokens N (default: to the end)]\n"
           "               [--temperature T] [--top-p P] [--seed S] [--print-ids]\n"
           "  ./r1 chat    --model DIR [--temperature T] [--top-p P]\n"
           "  ./r1 train   [--config small | --init DIR] [--steps N] [--batch B] [--seq T] [--lr LR]\n"
           "               [--gamma G] [--seed S] [--out DIR]\n"
           "  ./r1 pretrain --data FILE --out DIR [--config small] [--tokenizer DIR] [--steps N]\n"
           "               [--batch B] [--seq T] [--lr LR] [--warmup N] [--gamma G] [--alpha A]\n"
           "               [--lr-min LR] [--decay-start N] [--heldout SHARE] [--eval-every N]\n"
           "               [--save-every N] [--seed S] [--resume]\n"
           "  ./r1 sft     --model DIR --data FILE.jsonl --out DIR [--field solution]\n"
           "               [--template r1-zero|chat] [--epochs E | --steps N] [--batch B] [--seq T]\n"
           "               [--lr LR] [--lr-min LR] [--warmup N] [--decay-start N] [--gamma G]\n"
           "               [--alpha A] [--heldout SHARE] [--eval-every N] [--save-every N]\n"
           "               [--seed S] [--resume]\n"
           "  ./r1 distill --teacher DIR --data FILE.jsonl --out DIR [--student-config student]\n"
           "               [--kd-alpha A] [--kd-tau T] (and the sft flags)\n"
           "  ./r1 data    tasks|corpus|check|show|pairs ...  the toy world (./r1 data help)\n"
           "  ./r1 grpo    --model DIR --out DIR [--task arithmetic] [--levels 1-2] [--lang both]\n"
           "               [--template r1-zero|chat] [--steps N] [--prompts P] [--group G]\n"
           "               [--max-new-tokens N] [--temperature T] [--top-p P]\n"
           "               [--variant grpo|dr_grpo|dapo] [--beta B] [--eps E] [--eps-high E]\n"
           "               [--mu M] [--lr LR] [--gamma G] [--w-accuracy/format/language W]\n"
           "               [--non-reasoning SHARE [--rm DIR]] [--ref-every N] [--sample-every N]\n"
           "               [--save-every N] [--seed S] [--resume]\n"
           "  ./r1 rm      --model DIR --data PAIRS.jsonl --out DIR [--steps N | --epochs E]\n"
           "               [--batch 8] [--lr LR] [--eval-every N] [--seed S]\n"
           "               a reward model (the decoder + a score head) trained on preference pairs\n"
           "  ./r1 eval    --model DIR [--task arithmetic] [--levels 1-2] [--lang both] [--k K]\n"
           "               [--n N] [--template r1-zero|chat] [--max-new-tokens N] [--seed S]\n"
           "               [--out F.json] [--detail] [--problems F.jsonl] [--think-budget 16,32,64]\n"
           "  ./r1 reject  --model DIR --out FILE.jsonl [--task all] [--levels 1-3] [--lang both]\n"
           "               [--n-prompts N] [--n-per-prompt K] [--cap C] [--template r1-zero|chat]\n"
           "               [--max-new-tokens N] [--temperature T] [--min-language L]\n"
           "               [--non-reasoning SHARE] [--seed S]\n"
           "  ./r1 coldstart --model R1ZERO_DIR --out FILE.jsonl [--base DIR] [--human FILE.jsonl]\n"
           "               [--human-share 0.25] [--n-prompts N] [--n-per-prompt K] [--cap C]\n"
           "               [--levels 1-5] [--min-lines 2] [--max-repeat 0.25] [--min-language L]\n"
           "               [--min-total 64]\n"
           "               the cold start from R1-Zero's outputs (and the base, one-shot): verified,\n"
           "               rewritten readable, filtered; plus a share of FILE (human-curated)\n"
           "  ./r1 pipeline [--preset small] [--out runs/pipeline] [--scale S] [--seed N | --seeds 1,2,3]\n"
           "               [--until STAGE]  stop after STAGE (`--until list` prints the stages)\n"
           "               every stage of the R1 recipe, evaluated, with report.md\n"
           "  ./r1 plot    RUN_DIR                      SVG charts of RUN_DIR/metrics.jsonl\n"
           "  ./r1 bench   [--preset small] [--batch B] [--seq T] [--steps N] [--quick]\n"
           "               [--train-only] [--parts]  (--parts: the train step part by part)\n\n"
           "presets:\n");
    config_list_presets(stdout);
}

// A training step frees and allocates again a few scratch buffers (matmul_nn's packed B block,
// the attention's per-thread scratch, layer after layer). By default glibc gives the freed top of
// its heap back to the kernel, and maps buffers of 128 KB or more afresh, so the next allocation
// faults the same memory in again, zeroed by the kernel: ~430 page faults per step of the small
// preset, some of them 2 MB pages (xcalloc asks for those, and the heap then keeps the request).
// Telling glibc to keep freed memory for the next allocation makes the step's memory fault in
// once, on the first step (tests/BENCH.md). The memory held is what the peak needed anyway.
static void keep_freed_memory(void) {
#if defined(__GLIBC__) && defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // blocks under 32 MB come from the heap, and return to it
    mallopt(M_TRIM_THRESHOLD, INT_MAX);   // never hand the heap's free top back to the kernel
#endif
}

// OpenMP's threads wait for work between parallel regions. libgomp's default is to spin (burn
// the core, up to ~300,000 checks) before it sleeps: fast when every thread has a core, but on a
// laptop where another program holds a core, the spinning thread steals the time slices the
// working one needs, and each parallel region waits for a thread that is not running. Measured
// on the 2-core sandbox with a busy loop on one core: a training step 8x slower on 2 threads
// than on 1, and batched decoding 90x slower (tests/BENCH.md, "OpenMP's wait policy"). Sleeping
// at once (OMP_WAIT_POLICY=passive) never lost to 1 thread there, but waking a sleeping thread
// costs 13-60 us per parallel region (a VM's idle core must be woken), and a training step has
// ~345 regions: 2 threads trained only 1.5x faster than 1 on a quiet machine. So the threads
// spin a little first (GOMP_SPINCOUNT=1000 checks, ~1-3 us: regions that follow each other
// closely find them awake) and then sleep: 2 threads 1.7x, and with the busy loop still level
// with 1 thread (tests/BENCH.md, stop 27). OMP_WAIT_POLICY=passive is set too, for OpenMP
// runtimes that do not read GOMP_SPINCOUNT (libgomp lets GOMP_SPINCOUNT override it).
// libgomp reads its environment before main runs, so the setting takes effect by starting the
// program again with it (execv of /proc/self/exe; runtimes that read it at their first parallel
// region, such as LLVM's libomp, see the setenv alone). A user's own OMP_WAIT_POLICY or
// GOMP_SPINCOUNT is left alone: OMP_WAIT_POLICY=active brings back the long spinning.
static void short_spin_wait_policy(char **argv) {
#ifdef _OPENMP
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("GOMP_SPINCOUNT", "1000", 1);
#ifdef __linux__
    execv("/proc/self/exe", argv);  // returns only if it failed: then go on as we are
#endif
#endif
    (void)argv;
}

int main(int argc, char **argv) {
    short_spin_wait_policy(argv);
    keep_freed_memory();
    // R1_PLAIN_ATTENTION=1: the training attention as plain loops, to step in gdb (r1.c)
    const char *plain = getenv("R1_PLAIN_ATTENTION");
    attention_plain_loops = plain && strcmp(plain, "1") == 0;
    // R1_LAYER_BY_LAYER=1: the training step layer by layer even where sequences could go side
    // by side (r1.c): the same floats, to time the two
    const char *layers = getenv("R1_LAYER_BY_LAYER");
    if (layers && strcmp(layers, "1") == 0) sequences_side_by_side = 0;
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage();
        return argc < 2 ? 1 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "info") == 0) return cmd_info(argc, argv);
    if (strcmp(cmd, "forward") == 0) return cmd_forward(argc, argv);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc, argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(argc, argv);
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "pretrain") == 0) return cmd_pretrain(argc, argv);
    if (strcmp(cmd, "sft") == 0 || strcmp(cmd, "distill") == 0) return cmd_sft(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "plot") == 0) return cmd_plot(argc, argv);
    if (strcmp(cmd, "data") == 0) return cmd_data(argc, argv);
    if (strcmp(cmd, "pipeline") == 0) return cmd_pipeline(argc, argv);
    if (strcmp(cmd, "grpo") == 0) return cmd_grpo(argc, argv);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(cmd, "reject") == 0) return cmd_reject(argc, argv);
    if (strcmp(cmd, "coldstart") == 0) return cmd_coldstart(argc, argv);
    if (strcmp(cmd, "rm") == 0) return cmd_rm(argc, argv);
    die("unknown command '%s' (see ./r1 help)", cmd);
    return 1;
}
#endif

