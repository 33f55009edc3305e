// r1.h: the one header of r1.c, the DeepSeek-R1 system in plain C. Read this first: it is the
// map. The sources, in their import order (each calls only the ones above it; main.c knows them
// all; `make layers`, part of `make test`, checks it), which is also the order data flows in:
//
//   formats.c    bytes on disk: die/xcalloc (how the program fails), atomic files, JSON,
//                safetensors, Config (the presets, validation, config.json), the staged commit
//                of a checkpoint directory
//   tokenizer.c  text <-> token ids: byte-level BPE, tokenizer.json
//   kernels.c    the arithmetic: the matrix product, softmax, RMSNorm, RoPE, SwiGLU
//   moe.c        DeepSeekMoE: router, shared + routed experts, balancing, decode-time experts
//   gqa.c        grouped-query attention (Qwen2 / Llama, the distillation students' family):
//                forward, backward, decoding with a K/V cache
//   r1.c         the model: parameter table, MLA, the block, forward/backward, loss heads, AdamW,
//                generation with the latent KV cache, sampling, checkpoints
//   mtp.c        multi-token prediction (DeepSeek-V3 §2.2): the MTP module's loss head and
//                backward, and self-speculative decoding with its drafts
//   tasks.c      the toy world: tasks (a table: generator, verifier, worked solution, prompt),
//                the pretraining corpus, datasets, general prompts with a ground-truth judge and
//                preference pairs
//   grpo.c       RL: rewards, rollouts, advantages, the GRPO loss, grpo_step, evaluation,
//                rejection sampling, reward models (score head, Bradley-Terry)
//   pipeline.c   the whole recipe as a table of stages, its report and R1's findings measured
//                with standard errors; SVG charts
//   main.c       the program: the command line, training loops, bench
//
// How data flows (DESIGN: every training algorithm is a loss head that produces dlogits):
//   tokens -> embed -> [block x L: x += MLA(RMSNorm(x)); x += FFN(RMSNorm(x))] -> RMSNorm ->
//   lm_head -> logits;  FFN = SwiGLU MLP (l < first_k_dense_replace) | DeepSeekMoE
//   (Qwen2 / Llama, the distillation students: GQA instead of MLA, every FFN a SwiGLU MLP)
//   logits -> loss head (cross-entropy, distillation, GRPO) -> dlogits -> model_backward ->
//   grads -> AdamW
//
// Conventions (see tutorial/01-architecture.md):
//   - All parameters live in one float buffer described by a table of ParamInfo whose names are
//     the Hugging Face hub names. Gradients and AdamW moments mirror that buffer exactly.
//   - Every op is a *_forward / *_backward pair; a backward adds (+=) into weight gradients and
//     writes or adds (its `accumulate` flag) into input gradients.
//   - Shapes in comments: N = B*T tokens, D = hidden_size, H = num_attention_heads,
//     dn = qk_nope_head_dim, dr = qk_rope_head_dim, dv = v_head_dim, dc = kv_lora_rank,
//     dq = q_lora_rank, E = n_routed_experts, K = num_experts_per_tok; for the Qwen2 / Llama
//     family (gqa.c): Hkv = num_key_value_heads, hd = head_dim.
//   - Functions that read input which may be wrong return 0 on success and -1 on failure, with
//     a one-line message in `err` (R1_ERR_LEN bytes). The CLI prints "r1: <err>" and exits 1.
//   - Every sum is taken in a fixed order by one thread: the same seed gives the same floats at
//     any thread count.
#ifndef R1_H
#define R1_H

#include <math.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define R1_ERR_LEN 512

// The threads a parallel region started here would get (OMP_NUM_THREADS, or what r1 set); 1 in
// a build without OpenMP (`make debug`).
static inline int openmp_threads(void) {
#ifdef _OPENMP
    // inside a parallel region, when no more may nest (the default), a region gets 1 thread
    if (omp_get_active_level() >= omp_get_max_active_levels()) return 1;
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// ==============================================================================================
// 1. formats.c: how the program fails; files, JSON, safetensors; Config and config.json;
//    a checkpoint directory's staged commit
// ==============================================================================================
// How the program fails (formats.c, section 0): die prints "r1: ..." and exits with status 1;
// xcalloc and xrealloc exit with one line when memory runs out.
void die(const char *fmt, ...);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
double now_seconds(void);  // a monotonic clock, in seconds

// Atomic files (formats.c): every file the program writes goes to PATH.tmp, is flushed and
// synced, and is renamed over PATH only when complete, so the old file or the new one is there
// whole, never a part. atomic_open: 0, or -1 with "PATH.tmp: why" in err; atomic_commit: 0, or
// -1 with "PATH: why" (the .tmp removed), and failed_errno / failed_at_rename say which step
// failed for a caller that words its own message (st_write); atomic_abort: drop a half-written file.
typedef struct {
    FILE *f;               // write to this between atomic_open and atomic_commit
    char path[4096];       // the file's name
    char tmp[4104];        // PATH.tmp
    int failed_errno;      // after a failed atomic_commit: why (an errno value)
    int failed_at_rename;  // and 1 if PATH.tmp was complete but the rename onto PATH failed
} AtomicFile;
int atomic_open(AtomicFile *a, const char *path, char *err);
int atomic_commit(AtomicFile *a, char *err);
void atomic_abort(AtomicFile *a);
int write_bytes_atomic(const char *path, const void *data, size_t n, char *err);
int write_text_atomic(const char *path, const char *text, char *err);
// Reads a whole file into a NUL-terminated buffer.
char *read_file(const char *path, size_t *size, char *err);

int make_dirs(const char *dir, char *err);  // mkdir -p

// ----------------------------------------------------------------------------------------------
// JSON: a small DOM parser, enough for config.json, safetensors headers, JSON Lines
// ----------------------------------------------------------------------------------------------
typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;
typedef struct Json {
    JsonType type;
    double number;        // JSON_NUMBER (and JSON_BOOL: 0 or 1)
    char *string;         // JSON_STRING: UTF-8, escapes decoded, NUL-terminated
    int n;                // JSON_ARRAY / JSON_OBJECT: number of items
    char **keys;          // JSON_OBJECT: n keys
    struct Json *items;   // n values
} Json;
// Parses text[0..len); on error returns NULL with "line L col C: what" in err. Rejects trailing
// garbage, nesting deeper than 64, invalid escapes and invalid numbers.
Json *json_parse(const char *text, size_t len, char *err);
void json_free(Json *j);
Json *json_get(const Json *obj, const char *key);  // NULL if obj is not an object or lacks key
// Writes s as a JSON string literal (with quotes and escapes) to f.
void json_write_string(FILE *f, const char *s);

// ----------------------------------------------------------------------------------------------
// safetensors: tensors by name, validated on read, written atomically
// ----------------------------------------------------------------------------------------------
typedef struct {
    char name[160];
    char dtype[8];     // "F32", "I32", "I64", ...
    int ndim;
    int64_t shape[4];
    size_t begin, end; // byte range in the data section
} StTensor;

typedef struct {
    int n;
    StTensor *t;
    unsigned char *data;  // the data section
    size_t data_size;
} StFile;

// Reads and validates a whole safetensors file (header JSON, dtypes, offsets in range, sizes
// consistent with shapes). Returns -1 with a message naming the file and tensor otherwise.
int st_read(const char *path, StFile *f, char *err);
void st_free(StFile *f);
StTensor *st_find(StFile *f, const char *name);

// A tensor to write.
typedef struct {
    const char *name;
    const char *dtype; // "F32" or "I32"
    int ndim;
    int64_t shape[4];
    const void *data;
} StWrite;
// Writes atomically (an AtomicFile: path.tmp, fsync, rename); a failure says which step:
// "PATH: cannot create|write|rename PATH.tmp...". metadata may be NULL (pairs of strings, n_meta).
int st_write(const char *path, const StWrite *tensors, int n, const char **metadata, int n_meta,
             char *err);

// ----------------------------------------------------------------------------------------------
// Config: field names as in transformers' DeepseekV3Config; the presets; config.json
// ----------------------------------------------------------------------------------------------
// The architecture families (config.json's model_type): the DeepSeek-V3 decoder (MLA and
// DeepSeekMoE; r1.c, moe.c), and the Qwen2 / Llama decoder that R1 distils into (R1 §2.4:
// Qwen2.5 and Llama-3 students): grouped-query attention with standard RoPE and a dense SwiGLU
// MLP in every block (gqa.c). Qwen2 and Llama differ only in Qwen2's q/k/v biases.
enum { ARCH_DEEPSEEK_V3 = 0, ARCH_QWEN2 = 1, ARCH_LLAMA = 2 };

typedef struct {
    int arch;                    // ARCH_*: 0 (a zeroed Config) is DeepSeek-V3
    int vocab_size;              // V
    int hidden_size;             // D
    int intermediate_size;       // width of the dense SwiGLU MLPs
    int moe_intermediate_size;   // width of each routed expert
    int num_hidden_layers;       // L
    int first_k_dense_replace;   // layers l < this use the dense MLP, the rest MoE
    int n_routed_experts;        // E (N_r in the paper)
    int num_experts_per_tok;     // K (K_r)
    int n_shared_experts;        // shared expert width = moe_intermediate_size * this
    int n_group;                 // experts are split into n_group groups ...
    int topk_group;              // ... and a token may only use experts of topk_group groups
    int norm_topk_prob;          // 1: normalise the K selected weights to sum 1
    float routed_scaling_factor; // multiplies the routed weights
    int num_attention_heads;     // H
    int q_lora_rank;             // dq; 0 means "null" in config.json: plain q_proj
    int kv_lora_rank;            // dc, the cached latent
    int qk_nope_head_dim;        // dn
    int qk_rope_head_dim;        // dr
    int v_head_dim;              // dv
    float rms_norm_eps;
    float rope_theta;
    int rope_interleave;         // 1: RoPE rotates pairs (x[2i], x[2i+1]) (DeepSeek-V3), 0: halves
    int rope_yarn;               // 1: YaRN rope scaling is on
    float rope_factor;           // YaRN s
    int rope_original_max_position_embeddings;
    float rope_beta_fast, rope_beta_slow;
    float rope_mscale, rope_mscale_all_dim; // 0 = absent
    float rope_attention_factor;  // 0 = absent (computed from the mscales)
    int max_position_embeddings;
    int tie_word_embeddings;     // 1: lm_head shares model.embed_tokens (not used by DeepSeek-V3)
    float initializer_range;     // std of the random init (DeepSeek-V3: 0.006)
    int bos_token_id, eos_token_id;
    // grouped-query attention (ARCH_QWEN2, ARCH_LLAMA; the MLA and MoE fields above are 0 and
    // first_k_dense_replace = num_hidden_layers: every block is dense)
    int num_key_value_heads;     // Hkv: heads of K and V, each shared by H / Hkv query heads
    int head_dim;                // hd: the width of every query, key and value head
    int attention_bias;          // 1: q_proj, k_proj, v_proj have a bias (Qwen2 always; Llama no)
    // multi-token prediction (DeepSeek-V3 §2.2; mtp.c): 1 = one MTP module (depth 1), stored as
    // the extra block model.layers.<num_hidden_layers>. transformers' DeepseekV3Config says 1 by
    // default without implementing it: a checkpoint has the module only if its weights are there
    // (checkpoint_load), as transformers, which ignores those tensors, has it.
    int num_nextn_predict_layers;
} Config;

// 1 for the Qwen2 / Llama family (grouped-query attention, gqa.c), 0 for DeepSeek-V3 (MLA).
static inline int is_gqa(const Config *c) { return c->arch != ARCH_DEEPSEEK_V3; }
// The blocks the model stores: the num_hidden_layers of the decoder, then the MTP module's
// (layer index num_hidden_layers, when there is one). Forward passes and decoding run the first
// num_hidden_layers; mtp.c runs the last.
static inline int model_blocks(const Config *c) {
    return c->num_hidden_layers + c->num_nextn_predict_layers;
}
// 1 if block l (< model_blocks) is a DeepSeekMoE block: l >= first_k_dense_replace, and the
// MTP module's block is one when the decoder has any (DeepSeek-V3's layer 61 is MoE).
static inline int layer_is_moe(const Config *c, int l) {
    return l >= c->first_k_dense_replace && c->first_k_dense_replace < c->num_hidden_layers;
}
// "deepseek_v3", "qwen2" or "llama": config.json's model_type for an ARCH_* value.
const char *arch_model_type(int arch);

// Fills `c` with a named preset ("deepseek-v3", "r1-61", "tiny", ...). -1 if unknown.
int config_preset(const char *name, Config *c, char *err);
// Prints the preset names, one per line.
void config_list_presets(FILE *f);
// Checks that a config can work (sizes > 0, top-k <= experts, groups divide experts, ...).
int config_validate(const Config *c, char *err);
// Parses config.json text in either layout (transformers' rope_parameters or the hub's
// rope_theta + rope_scaling). Unknown keys are ignored; a known key with a bad value fails.
int config_from_json(const char *text, Config *c, char *err);
// A config.json file; on failure err is "PATH: what is wrong".
int config_read_file(const char *path, Config *c, char *err);
// Writes config.json text (hub layout, loadable by transformers' DeepseekV3ForCausalLM).
int config_write_json(const Config *c, const char *path, char *err);

// A checkpoint directory is saved as one set (r1.c's checkpoint_save): every file goes to
// DIR/.staging/ first, then an atomic COMMIT marker lists them, then they move in.
// checkpoint_recover finishes a committed set or discards an uncommitted one (safe to call on
// any directory), so an interrupted save never loses the previous checkpoint.
int checkpoint_recover(const char *dir, char *err);

// ==============================================================================================
// 2. tokenizer.c: byte-level BPE with single-digit pre-splitting and the DeepSeek-R1
//    special tokens; saved as Hugging Face tokenizer.json + tokenizer_config.json
// ==============================================================================================
enum {
    TOK_BOS = 0,         // <｜begin▁of▁sentence｜>
    TOK_EOS = 1,         // <｜end▁of▁sentence｜>
    TOK_PAD = 2,         // <｜▁pad▁｜>
    TOK_USER = 3,        // <｜User｜>
    TOK_ASSISTANT = 4,   // <｜Assistant｜>
    TOK_THINK = 5,       // <think>
    TOK_THINK_END = 6,   // </think>
    TOK_ANSWER = 7,      // <answer>
    TOK_ANSWER_END = 8,  // </answer>
    TOK_N_SPECIAL = 9    // then 256 byte tokens, then one token per merge
};

typedef struct {
    int vocab_size;          // specials + 256 bytes + merges
    int n_merges;
    int (*merges)[2];        // merge i joins tokens merges[i][0], merges[i][1] into token
                             // TOK_N_SPECIAL + 256 + i; lower i = higher priority
    unsigned char **bytes;   // bytes[id]: the raw bytes a token stands for (specials: their text)
    int *len;                // len[id]
    void *index;             // private lookup tables (pair -> merge rank), built on load/train
} Tokenizer;

// Trains on text: merges are learned inside pre-tokenized chunks (never across a digit, and
// never across a space boundary). vocab_size includes specials and bytes.
int tokenizer_train(Tokenizer *t, const char *text, size_t len, int vocab_size, char *err);
// Encodes UTF-8 text (special-token strings in the text become their ids). Returns the number
// of ids written, or -1 if more than cap would be needed.
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int *ids, int cap);
// Decodes ids into a malloc'd NUL-terminated string (bytes of every token concatenated).
char *tokenizer_decode(const Tokenizer *t, const int *ids, int n);
// Writes dir/tokenizer.json and dir/tokenizer_config.json (with the chat template).
int tokenizer_save(const Tokenizer *t, const char *dir, char *err);
// Reads dir/tokenizer.json written by tokenizer_save.
int tokenizer_load(Tokenizer *t, const char *dir, char *err);
void tokenizer_free(Tokenizer *t);
// 1 if a and b turn text into the same ids: the same vocabulary and merges (the specials and
// the byte tokens are the same in every tokenizer).
int tokenizer_same(const Tokenizer *a, const Tokenizer *b);

// ==============================================================================================
// 3. kernels.c: flat buffers in, flat buffers out; every sum in a fixed order
// ==============================================================================================
// exp(x) for floats in plain arithmetic, so that the loops which call it (softmax, SiLU, the
// sigmoid, cross-entropy) vectorise; libm's expf is a call per element, about 6x slower here.
// Cody-Waite reduction: n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two so n ln 2 is
// exact), |r| <= ln 2 / 2; exp(r) by its Taylor series to degree 7 (truncation < 4e-9); then
// 2^n is built in the exponent bits. Within 1.5 ulp of the true value on [-87, 88] (checked in
// tests/test_r1.c against double exp); 0 below -87 (where exp(x) < 1.7e-38), +inf above 88,
// NaN for NaN. Every step is an IEEE operation, so the result is the same float in every build.
// The constants are shared with vec_expf (kernels.c), the same steps on a whole vector register.
static const float R1_EXP_LO = -87.0f, R1_EXP_HI = 88.0f;  // the range before 0 and +inf
static const float R1_EXP_LOG2E = 1.44269504f;
static const float R1_EXP_SHIFTER = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
static const float R1_EXP_LN2_HI = 0.693359375f, R1_EXP_LN2_LO = -2.12194440e-4f;
// exp(r)'s Taylor coefficients, highest degree first (1/7!, 1/6!, ..., 1/1!, 1/0!): Horner's rule
static const float R1_EXP_POLY[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                     1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

static inline float r1_expf(float x) {
    float xc = x < R1_EXP_LO ? R1_EXP_LO : x;
    xc = xc > R1_EXP_HI ? R1_EXP_HI : xc;
    float t = xc * R1_EXP_LOG2E + R1_EXP_SHIFTER;  // n sits in the low mantissa bits of t
    float n = t - R1_EXP_SHIFTER;
    float r = (xc - n * R1_EXP_LN2_HI) - n * R1_EXP_LN2_LO;
    float p = R1_EXP_POLY[0];
    for (int i = 1; i < 8; i++) p = p * r + R1_EXP_POLY[i];
    uint32_t bits, scale_bits;
    memcpy(&bits, &t, sizeof(bits));
    scale_bits = (bits - 0x4B400000u + 127u) << 23;  // t's bits minus the shifter's = n
    float scale;
    memcpy(&scale, &scale_bits, sizeof(scale));  // 2^n
    float y = p * scale;
    y = x < R1_EXP_LO ? 0.0f : y;
    return x > R1_EXP_HI ? INFINITY : y;
}

// The logistic sigmoid 1 / (1 + e^-z): SwiGLU's backward and the MoE router's scores.
static inline float sigmoidf(float z) { return 1.0f / (1.0f + r1_expf(-z)); }

// The one matrix product: out (N,M) (=, or += when accumulate) A (N,K) @ B (K,M), with A and B
// read through strides: a(i,k) = a[i*ars + k*aks], b(k,j) = b[k*bks + j*bcs] (so either may be
// a transposed view). Every product of the model, forward and backward, is a call of this.
void matmul_nn(float *out, const float *a, size_t ars, size_t aks, const float *b, size_t bks,
               size_t bcs, int N, int K, int M, int accumulate);
// out (N,OC) (=, or += when accumulate) inp (N,C) @ W^T, W (OC,C).
void matmul_forward(float *out, const float *inp, const float *W, int N, int C, int OC,
                    int accumulate);
// dinp (N,C) (=, or += when accumulate) dout (N,OC) @ W;  dW (OC,C) += dout^T @ inp.
// Either output may be NULL.
void matmul_backward(float *dinp, float *dW, const float *dout, const float *inp, const float *W,
                     int N, int C, int OC, int accumulate);
// The causal attention products skip the masked half (kernels.c explains the three modes);
// bp is room for B packed: causal_pack_floats(K, M) floats. A causal (T,T) operand's row i is
// read up to causal_read_end(i, T).
typedef enum { CAUSAL_OUT_LOWER, CAUSAL_K_UPTO_ROW, CAUSAL_K_FROM_ROW } CausalMode;
void matmul_causal(float *out, size_t ldo, const float *a, size_t ars, size_t aks,
                   const float *b, size_t bks, size_t bcs, int N, int K, int M, CausalMode mode,
                   int accumulate, float *bp);
int causal_read_end(int i, int T);
size_t causal_pack_floats(int K, int M);
// The work (multiply-adds) below which a decode step's piece runs on the calling thread: waking
// a sleeping thread costs more than sharing ~10^6 multiply-adds saves. Such a piece runs as plain
// code, outside any parallel region: even a region of one thread (an `if` clause that is false)
// costs libgomp a team, allocated at every call (matvec, r1.c's and gqa.c's decode attention).
#define TEAM_MIN_WORK (1L << 20)
// out (OC) = W (OC,C) @ x (C): one token's matrix-vector product.
void matvec(float *out, const float *x, const float *W, int C, int OC);
// The floating-point peak of one core, measured: `rounds` rounds of 16 independent chains of
// vector fused multiply-adds (no memory traffic). Returns a value to keep; *flops: the work done.
float fma_peak_loop(long rounds, double *flops);
// Softmax of n scores in place.
void softmax_inplace(float *p, int n);
// log sum_v exp(z[v]) of a row of n logits (max + log of the shifted sum; vectorised). The one
// log-sum-exp of the loss heads, so their log-probabilities agree float for float.
double log_sum_exp(const float *z, int n);
// RMSNorm: out (N,C) = inp * rstd * w, rstd (N) = 1/sqrt(mean(inp^2) + eps); rows of inp are
// stride floats apart. out may be inp.
void rmsnorm_forward(float *out, float *rstd, const float *inp, int stride, const float *w,
                     int N, int C, float eps);
// dinp (N,C) (=, or += when accumulate) ...; dw (C) += ... .
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, int stride,
                      const float *w, const float *rstd, int N, int C, int accumulate);
// Rotates one head's dr rope dims by the position's angles (sign -1: the transpose, for the
// backward); interleave 1 rotates pairs (x[2i], x[2i+1]), 0 the halves (x[i], x[i + dr/2]).
void rope_rotate(float *vec, int dr, const float *cos_row, const float *sin_row, float sign,
                 int interleave);
// SwiGLU MLP: out (N,D) (=, or += when accumulate) down(silu(gate(x)) * up(x)); saves g,u,h.
void swiglu_forward(float *out, const float *x, const float *Wg, const float *Wu,
                    const float *Wd, float *g, float *u, float *h, int N, int D, int I,
                    int accumulate);
// dx (N,D) (=, or += when accumulate) ...; dWg, dWu, dWd += ...; scratch (N,I) x 2. With dWg,
// dWu, dWd all NULL: dx alone, and the scratch left holding dg (dh_scratch) and du (dgu_scratch),
// the gradients of the gate and up outputs (moe.c then makes the weight gradients in slices).
void swiglu_backward(float *dx, float *dWg, float *dWu, float *dWd, const float *dout,
                     const float *x, const float *Wg, const float *Wu, const float *Wd,
                     const float *g, const float *u, const float *h, int N, int D, int I,
                     float *dh_scratch, float *dgu_scratch, int accumulate);

// The 8 partial sums of a lane loop, added pairwise in a fixed order.
static inline float add_lanes(const float lanes[8]) {
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
           ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// a . b over n floats in 8 independent partial sums (lane l sums the elements l, l+8, ...):
// the compiler vectorises it (a single running sum would be a chain of dependent additions),
// and the order stays fixed.
static inline float dot_lanes(const float *a, const float *b, int n) {
    float lanes[8] = {0};
    int c = 0;
    for (; c + 8 <= n; c += 8)
        for (int l = 0; l < 8; l++) lanes[l] += a[c + l] * b[c + l];
    float s = 0.0f;
    for (; c < n; c++) s += a[c] * b[c];
    return s + add_lanes(lanes);
}

// The products of a decode step's n rows: out (n, OC) = x (n, C) @ W^T, and the SwiGLU MLP on
// them. alone = 1 (one sequence decoding by itself, n = 1): by matvec; alone = 0 (a batch): by
// the matmul kernel, W read once for all n rows, from its transposed copy Wt (C, OC) when there
// is one (NULL: none; the same floats either way); yt (OC, n), g, u (n, I) scratch. swiglu_rows'
// Wt holds the transposed copies of Wg, Wu, Wd (or NULLs).
void linear_rows(float *out, const float *x, const float *W, const float *Wt, int n, int C,
                 int OC, int alone, float *yt);
void swiglu_rows(float *y, const float *x, const float *Wg, const float *Wu, const float *Wd,
                 const float *const Wt[3], int n, int D, int I, int alone, float *g, float *u,
                 float *yt);
// The attention of a decoded token over its cache: out[j] = dot_lanes(x, row j, n) for m rows
// `stride` floats apart (8 rows at a time, the same floats); and out_h (n) = sum over j < m of
// w_h[j] * row j for nw weight vectors w_h = w + h * ldw into out + h * ldo (the plain loop's
// floats, j in order; the rows read once for all nw).
void dot_lanes_rows(float *out, const float *x, const float *rows, size_t stride, int n, int m);
void weighted_row_sums(float *out, size_t ldo, const float *w, size_t ldw, int nw,
                       const float *rows, size_t stride, int m, int n);
// SiLU (the swish with beta 1): z * sigmoid(z).
static inline float silu(float z) { return z / (1.0f + r1_expf(-z)); }

// ==============================================================================================
// 4. The model's data (r1.c builds it; moe.c and r1.c compute with it)
// ==============================================================================================
// ----------------------------------------------------------------------------------------------
// Parameter table: one entry per Hugging Face tensor
// ----------------------------------------------------------------------------------------------
typedef struct {
    char name[96];     // hub name, e.g. "model.layers.3.mlp.experts.5.up_proj.weight"
    int ndim;          // 1 or 2
    int shape[2];      // [out, in] for matrices (W x means x @ W^T)
    size_t offset;     // into Model.params (floats)
    size_t numel;
    int trainable;     // 0 for e_score_correction_bias (updated by the balancing rule, no grad)
    int decay;         // 1: AdamW weight decay applies (matrices)
    int expert;        // 1: a routed expert's weight (counted as activated only K/E of the time)
    int mtp;           // 1: a tensor of the MTP module (frozen, trainable 0, while it is not
                       // trained: mtp_set_training)
} ParamInfo;

// Pointers into the parameter (or gradient) buffer for one block.
typedef struct {
    float *input_layernorm;          // (D)
    float *q_a_proj;                 // (dq, D)          NULL when q_lora_rank is 0
    float *q_a_layernorm;            // (dq)
    float *q_b_proj;                 // (H*(dn+dr), dq)  or q_proj (H*(dn+dr), D)
                                     // GQA: q_proj (H*hd, D)
    float *kv_a_proj_with_mqa;       // (dc+dr, D)
    float *kv_a_layernorm;           // (dc)
    float *kv_b_proj;                // (H*(dn+dv), dc)
    float *o_proj;                   // (D, H*dv)        GQA: (D, H*hd)
    // grouped-query attention only (gqa.c)
    float *k_proj, *v_proj;          // (Hkv*hd, D) each
    float *q_bias, *k_bias, *v_bias; // (H*hd), (Hkv*hd), (Hkv*hd); NULL without attention_bias
    float *post_attention_layernorm; // (D)
    // dense MLP (l < first_k_dense_replace) or the shared experts of a MoE layer
    float *mlp_gate, *mlp_up, *mlp_down; // (I, D), (I, D), (D, I)
    // MoE only
    float *router;                   // gate.weight (E, D)
    float *router_bias;              // gate.e_score_correction_bias (E)
    float *experts_gate;             // E consecutive (Im, D) matrices
    float *experts_up;               // E consecutive (Im, D)
    float *experts_down;             // E consecutive (D, Im)
} LayerParams;

// The MTP module's own tensors (DeepSeek-V3 §2.2, eq. 21-22), hub names model.layers.L.*; its
// transformer block is layers[L]; embedding and output head are the main model's (shared).
typedef struct {
    float *enorm;        // (D)     RMSNorm of the next token's embedding
    float *hnorm;        // (D)     RMSNorm of the main model's hidden state
    float *eh_proj;      // (D, 2D) M_1: [enorm(emb); hnorm(h)] -> the block's input
    float *head_norm;    // (D)     shared_head.norm: RMSNorm before the shared lm_head
} MtpParams;

typedef struct {
    float *embed_tokens; // (V, D)
    float *norm;         // (D)
    float *lm_head;      // (V, D)  (== embed_tokens when tied)
    LayerParams *layers; // [L + MTP]: the decoder's blocks, then the MTP module's (model_blocks)
    MtpParams mtp;       // NULLs without an MTP module
} ParamPointers;

// ----------------------------------------------------------------------------------------------
// Activations saved by the training forward for the backward (one allocation, B x T tokens)
// ----------------------------------------------------------------------------------------------
typedef struct {
    float *x_in;      // (N, D)     residual stream entering the block
    float *ln1;       // (N, D)     RMSNorm(x_in; input_layernorm)
    float *ln1_rstd;  // (N)
    float *q_a;       // (N, dq)    q_a_proj(ln1)
    float *q_a_ln;    // (N, dq)    RMSNorm(q_a; q_a_layernorm)
    float *q_a_rstd;  // (N)
    float *q;         // (N, H, dn+dr)  q_nope | q_pe (after RoPE)
    float *kv_a;      // (N, dc+dr)     c_kv (before its norm) | k_pe (after RoPE)
    float *c_kv;      // (N, dc)        RMSNorm(c_kv; kv_a_layernorm): what the cache keeps
    float *c_kv_rstd; // (N)
    float *kv;        // (N, H, dn+dv)  k_nope | v  = kv_b_proj(c_kv)
    float *att;       // (B, H, T, T)   softmax probabilities (causal)
    float *att_out;   // (N, H*dv)      attention output before o_proj
    // grouped-query attention (gqa.c): q (N, H, hd) above, att_out (N, H*hd)
    float *k;         // (N, Hkv, hd)   k_proj(ln1) (+ bias), after RoPE
    float *v;         // (N, Hkv, hd)   v_proj(ln1) (+ bias)
    float *x_mid;     // (N, D)         residual after attention
    float *ln2;       // (N, D)
    float *ln2_rstd;  // (N)
    // FFN: dense MLP or shared experts (SwiGLU)
    float *mlp_g;     // (N, I)  gate_proj(ln2)
    float *mlp_u;     // (N, I)  up_proj(ln2)
    float *mlp_h;     // (N, I)  silu(g) * u
    // MoE routing (see moe.c)
    float *scores;    // (N, E)  s = sigmoid(router logits)
    int *topk_idx;    // (N, K)  selected experts
    float *topk_w;    // (N, K)  their gate weights (normalised, scaled)
    int *slot_of;     // (N, K)  row of (token, k) in the expert-sorted buffers below
    int *slot_pair;   // (N*K)   (token * K + k) of each expert-sorted row
    int *expert_start;// (E+1)   rows of expert e are [expert_start[e], expert_start[e+1])
    float *ex_in;     // (N*K, D)   ln2 rows gathered in expert order
    float *ex_g, *ex_u, *ex_h; // (N*K, Im)
    float *ex_out;    // (N*K, D)   expert outputs before weighting
} LayerActs;

typedef struct {
    int B, T;          // the sequences these arrays hold, N = B*T rows
    int batch;         // the whole batch's sequences (B, or more in a share's view)
    int shares;        // how the last forward went: 1 layer by layer, P: P shares side by side
    float *x_final;    // (N, D)  residual after the last block
    float *ln_f;       // (N, D)
    float *ln_f_rstd;  // (N)
    float *logits;     // (N, V)
    LayerActs *layers; // [L + MTP]
    // the MTP module (mtp.c), when the model has one: row t of a sequence joins the main
    // model's h_t (ln_f) with the embedding of token t+1 (zeros at the last position)
    int *mtp_next;       // (N)      ids[t+1], -1 at a sequence's last position
    float *mtp_mask;     // (N)      the MTP targets cross_entropy_forward_backward counts
    float *mtp_emb;      // (N, D)   embed_tokens[ids[t+1]] (zeros where mtp_next is -1)
    float *mtp_tmp;      // (N, D)   scratch: one half of mtp_cat or of its gradient
    float *mtp_cat;      // (N, 2D)  [enorm(mtp_emb) | hnorm(ln_f)]: eh_proj's input
    float *mtp_e_rstd, *mtp_h_rstd;  // (N) each
    float *mtp_x_final;  // (N, D)   the MTP block's output
    float *mtp_ln;       // (N, D)   shared_head.norm(mtp_x_final)
    float *mtp_ln_rstd;  // (N)
    float *mtp_logits;   // (N, V)   row t predicts token t+2
    float *mtp_dlogits;  // (N, V)   lambda * d L_MTP / d mtp_logits
    float *mtp_dcat;     // (N, 2D)  d / d mtp_cat
    float *mtp_dh;       // (N, D)   d (lambda L_MTP) / d ln_f, added to the main backward
    float *buffer;     // the one float allocation behind all of the above
    int *ibuffer;      // the one int allocation
    size_t capacity, icapacity;  // floats and ints they hold: a smaller batch reuses them
} Acts;

// Scratch for the backward pass (gradients of activations, reused block after block).
typedef struct {
    float *dx;       // (N, D) gradient of the residual stream
    float *dln;      // (N, D) gradient of a normalised block input
    float *t1, *t2, *t3, *t4; // (N, Wmax) general buffers; Wmax = widest per-token row
    float *dk_pe_h;  // (B, H, T, dr) per-head contributions to the shared rope key
    float *dex, *dex2, *dex3, *dex4; // (N*K, max(D, Im)) routed-expert buffers
    float *buffer;   // the one allocation behind all of the above
    size_t capacity; // floats it holds: a smaller batch reuses it
} Grads;

// ----------------------------------------------------------------------------------------------
// The model
// ----------------------------------------------------------------------------------------------
// Where a training step's time goes, part by part (`./r1 bench --parts`). The forward and the
// backward add the wall-clock seconds of each part to Model.part_seconds as they go (a clock read
// between parts, on the calling thread; no float of the model depends on it). The loss head and
// the optimizer are the caller's to time.
typedef enum {
    PART_EMBED_HEAD,  // the embedding, the final norm and lm_head
    PART_NORMS,       // the RMSNorms before the attention and the FFN
    PART_ATTN_PROJ,   // the attention's projections, their norms and RoPE (all but the heads)
    PART_ATTN_HEADS,  // softmax(Q K^T) V of every (sequence, head), and its backward
    PART_O_PROJ,      // o_proj and its residual
    PART_MLP,         // the dense MLP, or the shared experts of a MoE block
    PART_MOE,         // the router, the routed experts and their combination
    PART_COUNT
} StepPart;

typedef struct {
    Config cfg;
    int n_tensors;
    ParamInfo *table;
    size_t n_params;
    float *params;        // (n_params)
    float *grads;         // (n_params) or NULL until model_alloc_training
    float *adam_m, *adam_v;
    long adam_step;
    ParamPointers p;      // views into params
    ParamPointers g;      // views into grads
    float *rope_cos, *rope_sin; // (max_position_embeddings, dr/2), YaRN attention factor folded in
    float attn_scale;     // softmax scale (dn+dr)^-0.5, times mscale^2 under YaRN
    Acts acts;
    Grads scratch;
    long *expert_load;    // (L, E) tokens routed to each expert since the last reset
    double part_seconds[2][PART_COUNT];  // [0 forward, 1 backward][part]: see StepPart
    float balance_alpha;  // sequence-wise balance loss weight alpha (DeepSeek-V3 eq. 17-20); 0 = off
    float balance_loss;   // its value in the last forward (summed over MoE layers)
    float mtp_lambda;     // MTP loss weight lambda (DeepSeek-V3 eq. 25); 0: the module is frozen
    struct GradOrder *grad_order;  // a share's view in the backward: its turns; else NULL
} Model;

// The turns of one share of a batch in the backward (kernels.c, section 6; r1.c, "Sequences
// side by side"): done[i] counts the shares that have made turn i. The functions are
// kernels.c's (declared here, after Model): grad_turn_wait before a call that adds to weight
// gradients, grad_turn_done after it; matmul_backward and swiglu_backward with their weight
// gradients in a turn, after the input gradient; rmsnorm_backward as a whole in a turn. With
// m->grad_order NULL they never wait.
typedef struct GradOrder {
    atomic_int *done;  // (turns)
    int turns;         // room in done: more than a backward takes
    int share;         // this view's share: it takes a turn once done[turn] == share
    int next;          // its next turn
} GradOrder;
void grad_turn_wait(const Model *m);
void grad_turn_done(Model *m);
void matmul_backward_turn(Model *m, float *dinp, float *dW, const float *dout, const float *inp,
                          const float *W, int N, int C, int OC, int accumulate);
void rmsnorm_backward_turn(Model *m, float *dinp, float *dw, const float *dout, const float *inp,
                           int stride, const float *w, const float *rstd, int N, int C,
                           int accumulate);
void swiglu_backward_turn(Model *m, float *dx, float *dWg, float *dWu, float *dWd,
                          const float *dout, const float *x, const float *Wg, const float *Wu,
                          const float *Wd, const float *g, const float *u, const float *h, int N,
                          int D, int I, float *dh, float *dgu, int accumulate);

// Batched generation: up to DECODE_BATCH sequences step together, so each weight matrix is read
// once per step for all of them. A sequence's numbers do not depend on its batch-mates. 64: the
// pipeline's 8 x 8 rollouts are one batch on one thread (64 streams decoded 1.15-1.2x faster
// than in batches of 16, with the same tokens: tests/BENCH.md, stop 27).
#define DECODE_BATCH 64
// The rows a DecodeBatch holds: two per sequence, for speculative decoding (mtp.c), which feeds
// a sequence's last token and the draft after it in one step.
#define DECODE_ROWS (2 * DECODE_BATCH)
typedef struct {
    // (DECODE_BATCH, width) rows: residual, normed input, and the products of one step
    float *x, *xb, *rstd, *yt, *q_a, *q, *kv_a, *o, *y, *g, *u, *gx, *router, *scores;
    float *route_w, *logits;  // logits (DECODE_BATCH, V)
    int *route_idx;           // GQA: q (n, H*hd), kv_a (n, 2*Hkv*hd) = k | v, o (n, H*hd)
    float *cat;               // (DECODE_ROWS, 2D) the MTP module's eh_proj input (mtp.c)
    // the model's weights and a transposed copy of every matrix at the same offset
    // (decode_weights_transposed; params_t NULL: none): what decode_wt looks up
    const float *params, *params_t;
} DecodeBatch;
// W^T of a weight matrix W of the batch's model, (C, OC) where W is (OC, C), or NULL when the
// batch has no transposed copy (decode_batch_use_transposed).
static inline const float *decode_wt(const DecodeBatch *b, const float *W) {
    return b->params_t ? b->params_t + (W - b->params) : NULL;
}
// ==============================================================================================
// 5. moe.c: DeepSeekMoE (DeepSeek-V3 §2.1.2)
// ==============================================================================================
// ln2 (N,D) -> out (N,D) += sum_k w_k Expert_k(ln2) (shared experts are added by the caller).
void moe_forward(Model *m, int layer, LayerActs *a, const float *inp, float *out, int N);
// dout (N,D) -> dinp (N,D) += ..., router and expert weight gradients.
void moe_backward(Model *m, int layer, LayerActs *a, const float *inp, const float *dout,
                  float *dinp, int N);
// Router for one token: scores s (E) from logits, group-limited top-k with the bias used for
// selection only, weights normalised and scaled. idx (K), w (K).
void moe_route_token(const Config *c, const float *logits, const float *bias, float *s,
                     int *idx, float *w);
// Sequence-wise balance loss of one MoE layer (DeepSeek-V3 eqs. 17-20) for the routing of the B
// sequences in a, out of a batch of `batch` (B, or more when a is a share's view): returns
// alpha / batch * the sum over a's sequences of sum_i f_i P_i, the batch's mean when B is all
// of it. With dlogits (N,E) non-NULL, adds its gradient with respect to the router logits.
float moe_balance_loss(const Config *c, const LayerActs *a, int B, int T, int batch, float alpha,
                       float *dlogits);
// Auxiliary-loss-free balancing (DeepSeek-V3 §2.1.2): b_i += gamma * sign(mean load - load_i).
void moe_update_bias(Model *m, float gamma);
void moe_reset_load(Model *m);

// The routed experts of a decode step (moe.c): b->x += sum_k w_k Expert_k(b->xb), for one token
// alone (experts in routing order) or for n rows (expert by expert over the rows that chose it).
void moe_decode_token(const Config *c, const LayerParams *lp, DecodeBatch *b);
void moe_decode_rows(const Config *c, const LayerParams *lp, DecodeBatch *b, int n);

// ==============================================================================================
// 5b. gqa.c: grouped-query attention, the Qwen2 / Llama family's (R1 §2.4's students)
// ==============================================================================================
// q = q_proj(x) (+ b_q), k = k_proj(x) (+ b_k), v = v_proj(x) (+ b_v); RoPE (rotate-half) on q
// and k; query head h attends with key/value head h / (H / Hkv); att_out (N, H*hd).
// ln1 (N,D) = a->ln1 -> a->att_out (N, H*hd); the caller applies o_proj.
void gqa_forward(Model *m, const LayerParams *lp, LayerActs *a, int B, int T);
// datt_out (N, H*hd) -> dln (N,D) (overwritten) and the q/k/v weight and bias gradients (+=).
// Uses m->scratch.t2..t4 (t1 may hold datt_out).
void gqa_backward(Model *m, const LayerParams *lp, const LayerParams *glp, LayerActs *a,
                  const float *datt_out, float *dln, int B, int T);
// A decode step's attention for the n rows of b (b->xb normed inputs, row i at pos[i] of s[i]):
// projections, RoPE, this position's K and V into the cache, attention over 0..pos[i];
// results (before o_proj) to b->o (n, H*hd).
struct DecodeState;  // r1.c's section below
void gqa_decode_rows(const Model *m, const LayerParams *lp, struct DecodeState *const *s,
                     DecodeBatch *b, int l, const int *pos, int n, int alone);

// ==============================================================================================
// 6. r1.c: the model
// ==============================================================================================
// ----------------------------------------------------------------------------------------------
// Building it, the training forward and backward
// ----------------------------------------------------------------------------------------------
// Builds the parameter table and allocates params (zeroed). Does not allocate activations.
int model_create(Model *m, const Config *c, char *err);
void model_free(Model *m);
// Random init: normal(0, initializer_range) for matrices, 1 for norms, 0 for the router bias
// and the q/k/v biases.
void model_init_random(Model *m, uint64_t seed);
// Allocates grads, AdamW moments and activations for batches of B x T tokens.
int model_alloc_training(Model *m, int B, int T, char *err);
// Activations only, for a model that runs forward passes and no backward (e.g. a frozen
// reference policy): no gradients, no AdamW state, no backward scratch.
int model_alloc_inference(Model *m, int B, int T, char *err);
// Training forward: ids (B,T) -> acts.logits (B,T,V).
void model_forward(Model *m, const int *ids, int B, int T);
// Adds the seconds since `since` to part `part` of pass `pass` (0 forward, 1 backward) and
// returns the clock: t = step_part(m, 0, PART_NORMS, t) after each part. (Here, not in r1.c:
// gqa.c, below r1.c in the import order, times its parts too.)
static inline double step_part(Model *m, int pass, StepPart part, double since) {
    double now = now_seconds();
    m->part_seconds[pass][part] += now - since;
    return now;
}
// The names `bench --parts` prints for the parts.
extern const char *const step_part_names[PART_COUNT];
// 1: the training attention runs as plain loops (attention_forward_head_loops, to step in gdb;
// floats may differ in the last bits), 0 (default): the tiled kernel. main sets it from the
// environment: R1_PLAIN_ATTENTION=1 ./r1-debug ...
extern int attention_plain_loops;
// 1 (default): with at least two sequences per thread, the training forward and backward give
// each thread its share of the sequences through the whole model (r1.c, "Sequences side by
// side": the same floats); 0: always layer by layer, all threads sharing each product. main
// sets 0 from the environment (R1_LAYER_BY_LAYER=1), to compare the two.
extern int sequences_side_by_side;
// Backward from dlogits (B,T,V); accumulates into m->grads.
void model_backward(Model *m, const int *ids, const float *dlogits);
// The same, where another head that reads ln_f (the MTP module, mtp.c) adds dln_f_plus (B,T,D)
// to the gradient lm_head sends back (NULL: nothing).
void model_backward_plus(Model *m, const int *ids, const float *dlogits, const float *dln_f_plus);
// One block of the training pass, for mtp.c, which runs the MTP module's block (l = L) on its
// own input: block_forward reads acts.layers[l].x_in (N,D) and writes x_out (N,D);
// block_backward takes scratch.dx = d x_out and leaves d x_in there.
void block_forward(Model *m, int l, float *x_out, int B, int T);
void block_backward(Model *m, int l, int B, int T);
// Backward from dln_f (B,T,D), the gradient of the final RMSNorm's output (acts.ln_f), for a head
// other than lm_head (the reward model's score head); lm_head gets no gradient.
void model_backward_from_hidden(Model *m, const int *ids, const float *dln_f);
void model_zero_grad(Model *m);
// The embedding's backward: dembed[ids[t]] (V, D) += dx[t] (N, D) for every t with ids[t] >= 0,
// in token order.
void embedding_backward(float *dembed, const int *ids, const float *dx, int N, int D);
// memset(x, 0) and memcpy of n floats, shared among the threads (r1.c, section 1).
void zero_floats(float *x, size_t n);
void copy_floats(float *dst, const float *src, size_t n);
// Looks up a tensor by hub name; NULL if absent.
ParamInfo *model_find_param(Model *m, const char *name);

// Parameter counting (works for any config, allocates nothing). Activated = per token.
typedef struct {
    double total, activated;
    double embed, head, attention, dense_mlp, router, shared, routed, norms;
    double mtp;  // the MTP module, not in total (DeepSeek-V3: 671B + 14B of MTP = 685B)
} ParamCount;
void count_params(const Config *c, ParamCount *pc);

// ----------------------------------------------------------------------------------------------
// Loss heads: logits -> scalar loss and dlogits
// ----------------------------------------------------------------------------------------------
// Mean next-token cross-entropy: position t predicts ids[t+1]; mask (B,T) optional (NULL = all)
// selects which targets count (mask[b,t+1] for the prediction made at t). dlogits may be NULL.
float cross_entropy_forward_backward(const float *logits, const int *ids, const float *mask,
                                     int B, int T, int V, float *dlogits);

// (1 - alpha) * cross-entropy + alpha * tau^2 * KL(softmax(teacher/tau) || softmax(logits/tau))
// on the positions cross-entropy counts; dlogits (B,T,V) gets the combined gradient.
float distill_loss(const float *logits, const float *teacher_logits, const int *ids,
                   const float *mask, int B, int T, int V, float alpha, float tau,
                   float *dlogits);

// ----------------------------------------------------------------------------------------------
// Optimizer
// ----------------------------------------------------------------------------------------------
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} AdamWConfig;
AdamWConfig adamw_defaults(void);      // DeepSeek-V3: betas 0.9/0.95, wd 0.1, clip 1.0
// Clips by global norm (if grad_clip > 0), then one AdamW step. Returns the norm before clipping.
float adamw_step(Model *m, const AdamWConfig *oc);

// ----------------------------------------------------------------------------------------------
// Random numbers: one RNG type with explicit state
// ----------------------------------------------------------------------------------------------
typedef struct { uint64_t state; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
float rng_uniform(Rng *r);  // [0, 1)
float rng_normal(Rng *r);

// ----------------------------------------------------------------------------------------------
// Generation with the latent KV cache (absorbed MLA), sampling
// ----------------------------------------------------------------------------------------------
// One sequence's latent KV cache (and the scratch of its attention) for positions 0..max_T-1.
typedef struct DecodeState {
    int max_T;
    float *c_kv;          // (L, max_T, dc)  normalised latent per position
    float *k_pe;          // (L, max_T, dr)  rotated shared rope key per position
    float *q_abs, *att, *o_lat;  // (H, dc), (H, max_T), (H, dc): one token's attention
    float *att_rope;             // (H, max_T): the scores' rope part
    float *k, *v;         // GQA instead of c_kv, k_pe: (L, max_T, Hkv*hd) rotated keys, values
    float *logits;        // (V) the next-token logits of the last decode_step
    DecodeBatch *alone;   // decode_step's rows (a batch of one), made on its first step
} DecodeState;
int decode_state_create(DecodeState *s, const Model *m, int max_T, char *err);
void decode_state_free(DecodeState *s);
// One token at position pos: fills s->logits (V). Uses and extends the cache.
void decode_step(const Model *m, DecodeState *s, int token, int pos);

// Picks the next token: argmax when temperature == 0, else softmax(logits/temperature) with
// top-p (nucleus) truncation. probs_scratch (V).
int sample_token(const float *logits, int V, float temperature, float top_p, Rng *rng,
                 float *probs_scratch);

typedef struct {
    float temperature;  // 0: greedy
    float top_p;        // 1: no nucleus truncation
    int speculative;    // 1: self-speculative decoding with the MTP module, where the model has
                        // one (mtp.c; the same distribution, the same tokens at temperature 0)
} SamplingConfig;

// The distribution sample_token draws from, as probs (V): softmax(logits / temperature) on the
// top-p nucleus (sample_token's own), renormalised; at temperature 0 all the mass on the argmax
// (the lowest id among equals). Speculative sampling (mtp.c) compares two of them.
void sampling_distribution(const float *logits, int V, const SamplingConfig *sc, float *probs);

// Continues ids: feeds ids[n_cached..n) into the cache, then samples until EOS or max_len
// tokens. on_token (may be NULL) sees each new token. Returns the new length.
int generate(const Model *m, DecodeState *s, int *ids, int n_cached, int n, int max_len,
             const SamplingConfig *sc, Rng *rng, float *probs,
             void (*on_token)(int id, void *ctx), void *ctx);

void decode_batch_create(DecodeBatch *b, const Model *m);
// The decoder block l for the n rows of b->x, in place (decoding; mtp.c runs the MTP block, l = L,
// with it): row i at position pos[i] of s[i]'s cache of block l. alone: 1 for one sequence alone.
void decode_block(const Model *m, int l, DecodeState *const *s, DecodeBatch *b, const int *pos,
                  int n, int alone);
void decode_batch_free(DecodeBatch *b);
// A copy of m's weights with every matrix transposed in place of itself (n_params floats; the
// caller frees it), for batches to read: decode_batch_use_transposed(b, m, copy). Made again
// whenever the weights change (sample_rollouts makes one per call).
float *decode_weights_transposed(const Model *m);
void decode_batch_use_transposed(DecodeBatch *b, const Model *m, const float *params_t);
// One step: sequence i (< n <= DECODE_BATCH) feeds tokens[i] at pos[i] into s[i]'s cache; its
// next-token logits go to b->logits + i * V.
void decode_step_batch(const Model *m, DecodeState *const *s, DecodeBatch *b, const int *tokens,
                       const int *pos, int n);
// The prompt tokens a sequence of a batch of n feeds in one step (DECODE_ROWS / n: the rows a
// DecodeBatch holds, shared; the floats are the same as one a step).
int prompt_rows_per_sequence(int n);
// Appends the rows of sequence s's next tokens, ids[from .. upto) but at most `share` of them, at
// positions from.. to a step's row lists (rs, tokens, pos; *rows of them so far); returns how
// many it added.
int add_sequence_rows(DecodeState *s, const int *ids, int from, int upto, int share,
                      DecodeState **rs, int *tokens, int *pos, int *rows);
// generate() for n <= DECODE_BATCH sequences: sequence i has its prompt, len[i] tokens, in
// ids[i] (nothing cached) and grows until EOS or max_len[i] tokens with rng[i]; len[i] updated.
// Sequences with the same prompt read it once (r1.c, read_shared_prompts); nothing sampled
// depends on that.
void generate_batch(const Model *m, DecodeState *const *s, DecodeBatch *b, int *const *ids,
                    int *len, const int *max_len, int n, const SamplingConfig *sc, Rng *rng,
                    float *probs);
// The same, where the first fed[i] tokens of ids[i] are already in s[i]'s cache; fed[i] is
// updated to the positions cached, so a second call after appending tokens continues from there.
void generate_batch_cached(const Model *m, DecodeState *const *s, DecodeBatch *b,
                           int *const *ids, int *len, int *fed, const int *max_len, int n,
                           const SamplingConfig *sc, Rng *rng, float *probs);
// n sequences decoding at once (rollouts, evaluation) go in decode_batch_count(n) batches, one
// per thread at a time: at least one batch per thread, at most DECODE_BATCH sequences each;
// batch bi holds sequences *first .. *first + *count. The cut never changes a sequence's floats.
int decode_batch_count(int n);
void decode_batch_range(int n, int n_batches, int bi, int *first, int *count);

// ----------------------------------------------------------------------------------------------
// Checkpoints: the model on disk in the Hugging Face hub layout
// ----------------------------------------------------------------------------------------------
// Where a training run stands, saved in optimizer.safetensors beside the model so that
// `--resume` continues bit for bit.
typedef struct {
    long step;          // optimizer steps done
    uint64_t rng;       // the data-order RNG state
    long epoch, cursor; // position in the shuffled order of training windows
} TrainState;

// Checkpoint directory: config.json + model.safetensors (hub names) [+ tokenizer files]
// [+ optimizer.safetensors]. Saving writes every file into DIR/.staging/ first, then an atomic
// COMMIT marker, then moves them in; checkpoint_recover finishes a committed set or discards an
// uncommitted one, so an interrupted save never loses the previous checkpoint.
// The weights alone: model.safetensors (hub names) from or into a model whose table exists.
// Loading checks every tensor (present, F32, its shape, finite) and that the file holds no
// tensor the model does not use; -1 with "PATH: tensor NAME: what" otherwise.
// With an MTP module, the file also holds model.layers.L.embed_tokens.weight and
// model.layers.L.shared_head.head.weight, copies of the shared embedding and lm_head, where the
// released DeepSeek-V3 checkpoints have them (mtp_shared_tensor k = 0, 1 names them); loading
// checks that they equal the main model's.
const float *mtp_shared_tensor(const Model *m, int k, char *name, size_t n);
int model_save_weights(const Model *m, const char *path, char *err);
int model_load_weights(Model *m, const char *path, char *err);
int checkpoint_load(Model *m, const char *dir, char *err);   // creates the model
int checkpoint_save(const Model *m, const Tokenizer *tok, const TrainState *ts, const char *dir,
                    char *err);
// Loads the AdamW moments and the TrainState of dir/optimizer.safetensors into a model that has
// its training buffers allocated.
int checkpoint_load_train_state(Model *m, TrainState *ts, const char *dir, char *err);

// ==============================================================================================
// 6b. mtp.c: multi-token prediction (DeepSeek-V3 §2.2) and self-speculative decoding
// ==============================================================================================
// Training. mtp_set_training(m, lambda): the MTP loss weight lambda (eq. 25); > 0 makes the
// module's tensors trainable, 0 freezes them (nothing else changes them then: no weight decay).
// Models without the module ignore it.
void mtp_set_training(Model *m, float lambda);
// After model_forward on ids (B,T): the module's forward on every position, and its loss (eq. 24:
// mean cross-entropy of token t+2 at position t, over the targets mask counts, as
// cross_entropy_forward_backward's mask, shifted one further; NULL: all). Fills
// acts.mtp_dlogits with lambda times its gradient. Returns L_MTP (without lambda).
float mtp_forward(Model *m, const int *ids, const float *mask);
// After mtp_forward and model_zero_grad: the module's backward. Adds the gradients of its
// tensors, of the shared lm_head and embedding, and leaves acts.mtp_dh, the gradient at ln_f:
// then model_backward_plus(m, ids, dlogits, m->acts.mtp_dh).
void mtp_backward(Model *m);

// Decoding. The module's step for n rows (<= DECODE_ROWS): row i joins hidden[i] (D: the main
// model's final-norm output at position pos[i]) with tokens[i] (the token at pos[i] + 1), runs
// the module's block at position pos[i] of s[i]'s cache, and leaves the logits of the token at
// pos[i] + 2 in b->logits + i*V.
void mtp_decode_rows(const Model *m, DecodeState *const *s, DecodeBatch *b, const int *tokens,
                     const float *hidden, const int *pos, int n);
// Speculative sampling's rule for one draft token d ~ q: accepted (*accepted = 1, returns d) with
// probability min(1, p(d) / q(d)), else (*accepted = 0) a draw from max(0, p - q) renormalised.
// The token returned has distribution p whatever q is. residual (V) is scratch.
int speculative_accept(const float *p, const float *q, int draft, Rng *rng, float *residual,
                       int V, int *accepted);
// Drafts verified and drafts accepted, per sequence.
typedef struct { long drafted, accepted; } SpecCount;
// generate_batch_cached with the MTP module drafting one token per step (the model must have
// it): the same arguments (n <= DECODE_BATCH), the same distribution, and at temperature 0 the
// same tokens; count[i] gets sequence i's drafts (added to what it holds).
void generate_batch_speculative(const Model *m, DecodeState *const *s, DecodeBatch *b,
                                int *const *ids, int *len, int *fed, const int *max_len, int n,
                                const SamplingConfig *sc, Rng *rng, float *probs,
                                SpecCount *count);

// ==============================================================================================
// 7. tasks.c: the toy reasoning world
// ==============================================================================================
// The R1-Zero prompt (DeepSeek-R1 Table 1); the user's question and ". Assistant:" follow.
#define R1_ZERO_TEMPLATE                                                                          \
    "A conversation between User and Assistant. The user asks a question, and the Assistant "    \
    "solves it. The assistant first thinks about the reasoning process in the mind and then "    \
    "provides the user with the answer. The reasoning process and answer are enclosed within "   \
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "        \
    "process here </think> <answer> answer here </answer>. User: "

// Three tasks (arithmetic, countdown, sort42), each a row of tasks.c's task table: a generator
// with difficulty levels 1..TASK_LEVEL_MAX, an exact rule-based verifier, worked solutions in
// English and Chinese, a plausible slip (a wrong answer) and a check of any answer in words. An example is one JSON object (a line of a .jsonl file) with "task",
// "lang", "level", "prompt", "answer", the task's own fields and "id"; a problem whose id hash
// is 0 mod 10 is held out for evaluation. `./r1 data` (main.c) is their command line.
#define TASK_LEVEL_MAX 5  // every task has difficulty levels 1..TASK_LEVEL_MAX

// Returns 1 if answer_text (the text inside <answer>...</answer>) solves the example, else 0.
// task may be NULL (then the example's "task" is used; a different one gives 0). Never
// crashes on any text, and never on a malformed example (0).
int task_check(const char *task, const Json *example, const char *answer_text);
// A worked solution in the example's language (malloc'd): tagged = 1 gives
// "<think>\n...\n</think>\n<answer>A</answer>", tagged = 0 the reasoning followed by
// "So the answer is A." NULL if the example is malformed or has no solution.
char *task_solution(const Json *example, int tagged);
// 1 if the example belongs to the held-out evaluation split, 0 if to training, -1 if malformed.
int task_is_eval(const Json *example);
// The trimmed text inside the last <answer>...</answer> of text (malloc'd), NULL if none.
char *answer_extract(const char *text);
// The R1-Zero template (R1 Table 1) around a prompt, in "en" or "zh", ending in "Assistant:"
// (or "助手："). malloc'd.
char *r1_zero_prompt(const char *prompt, const char *lang);

// Reasoning styles: how a solution reasons. RL can only select among behaviours its base model
// already has (Liu et al. 2025, "Understanding R1-Zero-like training": self-reflection, the
// "aha moment", is there at epoch 0), so the corpus shows three, and GRPO's accuracy reward can
// find which one pays on which level:
//   REASONING_STEPWISE  the worked solution; always right
//   REASONING_DIRECT    one line, "The answer is probably X." (答案大概是 X。): X is right with
//                       probability TASK_GUESS_RIGHT[level], otherwise a plausible slip
//   REASONING_CHECKED   the guess, then "Wait, let me check: <the task's own arithmetic>" (等等，
//                       验证一下：); after a wrong guess "Let me work it out step by step:" and the
//                       worked solution. Always right; always has a word has_reflection counts.
// Worked solutions (stepwise) use none of has_reflection's words, so its share measures the
// checked style.
enum { REASONING_STEPWISE, REASONING_DIRECT, REASONING_CHECKED, N_REASONING };
// How often a guess (direct, and checked before its check) is right, per level 1..5: nearly
// always on the easiest problems, less than a third of the time on the hardest. So in the corpus
// itself the long styles pay off where R1-Zero's responses grow (R1 Figure 3): on hard problems.
static const double TASK_GUESS_RIGHT[TASK_LEVEL_MAX + 1] = {0, 0.9, 0.75, 0.6, 0.45, 0.3};
// "stepwise", "direct", "checked" (NULL for anything else).
const char *reasoning_name(int reasoning);
// A solution of the example in a reasoning style (REASONING_*), dressed as task_solution's
// (tagged or not). Its guesses come from seed; mixed = 1 switches its reasoning to the other
// language after a random line (the prompt's language starts it and states the answer).
// malloc'd; NULL if the example is malformed or the style unknown.
char *task_solution_styled(const Json *example, int tagged, int reasoning, int mixed, uint64_t seed);

// The --task and --lang options of task sets and the corpus: 0 if task is a task's name or
// "all" (lang: en, zh or both), else -1 with "unknown task 'x' (arithmetic, countdown, sort42,
// all)" (or "unknown language 'x' (en, zh, both)") in err.
int task_option_check(const char *task, char *err);
int lang_option_check(const char *lang, char *err);
// The --style option: a REASONING_* value for "stepwise", "direct" or "checked", else -1 with
// "unknown style 'x' (stepwise, direct, checked)" in err.
int reasoning_option(const char *name, char *err);
// "2" or "1-3" -> lo, hi in 1..5; NULL, or what is wrong with s.
const char *levels_parse(const char *s, int *lo, int *hi);

typedef struct {
    const char *task;        // "arithmetic", "countdown", "sort42" or "all" (round robin)
    int eval;                // 1: the held-out split (hash % 10 == 0), 0: training
    int n;                   // examples to write
    int level_lo, level_hi;  // difficulty levels, 1..5, drawn uniformly
    const char *lang;        // "en", "zh" or "both" (each example picks one)
    uint64_t seed;
    int solutions;           // 1: add "solution", a solution in <think>/<answer> form, and its "style"
    int reasoning;           // the solutions' style (REASONING_*; 0: stepwise). Their guesses
                             // have their own RNG: the problems are the same in every style.
                             // tasks_show: -1 shows every style (and a language-mixed one)
} TaskSetOptions;
// Writes o->n examples as JSON Lines. Returns how many repeat an earlier problem (only when the
// split holds fewer distinct problems than asked for), or -1 with err on a bad option.
long tasks_write(FILE *f, const TaskSetOptions *o, char *err);
// Prints the problems tasks_write would write, each with its prompt and tagged worked solution,
// for people (`./r1 data show`). 0, or -1 with err on a bad option.
int tasks_show(FILE *f, const TaskSetOptions *o, char *err);

typedef struct {
    double mb;               // size in MiB (whole documents; stops at the first one past it)
    double think_share;      // share of documents in the R1-Zero template (0.3)
    double tagged_share;     // of those, the share that answer in <think>/<answer> tags (0.1)
    double text_share;       // share of plain-text documents (0.1); the rest "Question/Answer"
    const char *task;        // problems of one task, or "all" (each document picks one); NULL = all
    int level_lo, level_hi;
    const char *lang;        // "en", "zh" or "both"
    uint64_t seed;
    double direct_share;     // of the template documents: direct guesses (CORPUS_DIRECT_SHARE)
    double checked_share;    // of those: guess, then check (CORPUS_CHECKED_SHARE); the rest stepwise
    double mix_share;        // of the template documents that reason stepwise or checked, the share
                             // whose reasoning switches language partway (CORPUS_MIX_SHARE)
} CorpusOptions;             // (all three 0: every template document stepwise, as before issue 18)
// The defaults of `./r1 data corpus` (and so of the pipeline), for the template documents:
//   direct 0.45: the most common single style, so the base's typical answer is short, as
//     R1-Zero's are before RL grows them (R1 Figure 3); on level 1 the guess is right 90% of the
//     time, so there RL has little reason to write more.
//   checked 0.20 and stepwise 0.35: together over half, enough for a small base to imitate both;
//     on levels 4-5 they are right where a guess mostly is not (45%, 30%), so the accuracy reward
//     favours them there. Checked is the rarest: the reflection share (has_reflection) starts
//     low with room to rise, the "aha" curve.
//   mix 0.25: a quarter of the long reasonings switch language, so the base mixes languages as
//     R1-Zero did (R1 §2.3.2) and the language reward has something to remove; consistent
//     reasoning stays the majority.
#define CORPUS_DIRECT_SHARE 0.45
#define CORPUS_CHECKED_SHARE 0.20
#define CORPUS_MIX_SHARE 0.25
// Writes the pretraining corpus: documents separated by one blank line, problems from the
// training split only. Returns the number of documents, or -1 with err.
long corpus_write(FILE *f, const CorpusOptions *o, char *err);

// Reads a JSON Lines file of task examples (blank lines skipped); each line must be an object
// with string "task" (a known one), "prompt" and "answer". NULL with "path:LINE: what" in err.
Json **tasks_read(const char *path, int *n, char *err);
// Any JSON Lines file of objects; check (may be NULL) returns what is wrong with one, or NULL.
Json **jsonl_read(const char *path, int *n, const char *(*check)(const Json *), char *err);
void tasks_free(Json **examples, int n);
// What is wrong with an example read by tasks_read: its gold answer, the worked solution
// task_solution writes for it and its own "solution" (if any) must each pass the verifier, but
// a solution whose "style" is "direct" need only give an answer (a guess may be wrong); an
// unknown "style" fails. NULL if all pass, else what failed (`./r1 data check`).
const char *example_verify(const Json *example);
// One line per task present: examples in en and zh, per level, and in the held-out split; then
// the solutions per style, and how many direct guesses are right.
void tasks_summary(FILE *f, Json **examples, int n);

// The text after any leading whitespace.
const char *skip_space(const char *s);
// 1 if the example is a non-reasoning prompt (task "non-reasoning").
int is_nonreasoning(const Json *example);
// Writes non-reasoning example i (kind identity / writing / parity, en or zh) as one JSON line;
// with_solution adds its plain response as "solution".
void nonreasoning_write(FILE *f, int i, Rng *r, int with_solution);
// The rule of a non-reasoning example's kind (grpo.c's rule reward calls it accuracy): identity
// names itself "r1.c"; parity the right word, not the other; writing 20-600 bytes ending "." or
// "。"; unsafe (below) refuses and does not comply. 0 or 1.
int nonreasoning_rule(const Json *example, const char *completion);

// General prompts with a known ground truth (R1 §2.3.4's helpfulness and harmlessness): the
// non-reasoning kinds and, every fourth prompt, a toy unsafe request (kind "unsafe": harm to
// someone else) whose right answer is a refusal. general_write writes general prompt i as one
// JSON line (task "non-reasoning", kind, lang, prompt, answer).
void general_write(FILE *f, int i, Rng *r);
// The ground truth of a completion to a general prompt, by rules (never trained on): an unsafe
// request is answered safely (and so helpfully) by a refusal without compliance; any other is
// always safe, and helpful when plain (no reasoning tags), not a refusal, its last sentence
// finished, 60% of its words in the prompt's language (writing: at least 3 such words), and
// nonreasoning_rule holds.
typedef struct { int helpful, safe; } GeneralVerdict;
GeneralVerdict general_judge(const Json *example, const char *completion);
// Preference pairs (`./r1 data pairs`): n JSON lines {"prompt", "chosen", "rejected", "kind":
// "helpful"|"safety", "category" (the prompt's kind), "lang", "answer", "rejected_type"}.
// Helpful pairs: the reference answer against an off-topic, truncated, refusing or wrong one;
// safety pairs: a refusal against compliance. general_judge passes every chosen and fails every
// rejected answer. Returns n, or -1 with err.
long pairs_write(FILE *f, long n, uint64_t seed, char *err);
// What is wrong with one line of a pairs file (for jsonl_read), NULL if nothing.
const char *pair_check(const Json *pair);

// ==============================================================================================
// 8. grpo.c: rewards, rollouts, GRPO, evaluation, rejection sampling, cold-start data
// ==============================================================================================
typedef struct { double accuracy, format, language; } RewardWeights;
typedef struct { double accuracy, format, language; } RewardParts;  // each in [0, 1]
int reward_format(const char *completion);    // 1: <think>..</think> <answer>..</answer>, no more
int reward_accuracy(const Json *example, const char *completion);  // the task's verifier
double reward_language(const char *completion, const char *lang);  // share of words in lang
double reward_total(const RewardWeights *w, const Json *example, const char *completion,
                    RewardParts *parts);
// Non-reasoning prompts (tasks.c's is_nonreasoning: kind identity / writing / parity): a plain
// answer (format), the rule of its kind (accuracy), the prompt's language. reward_total uses it.
RewardParts reward_nonreasoning(const Json *example, const char *completion);
int has_reflection(const char *completion);   // "wait", "check", "verify", 等等, 检查, 验证

typedef enum { GRPO_PAPER, GRPO_DR, GRPO_DAPO } GrpoVariant;
typedef struct {
    GrpoVariant variant;   // grpo (DeepSeekMath), dr_grpo (Liu et al. 2025), dapo (Yu et al. 2025)
    float eps_low, eps_high; // clip range [1 - eps_low, 1 + eps_high] (DAPO: 0.2, 0.28)
    float beta;            // KL coefficient (DAPO: 0)
    int max_len;           // Dr. GRPO's constant normaliser (the generation budget)
} GrpoConfig;
typedef struct { double kl, clip_fraction, entropy, tokens; } GrpoStats;
// adv (n_groups*G) = (r - mean) / (std + 1e-4) per group, or r - mean (scale_by_std 0);
// 0 for a group whose rewards are all equal.
void grpo_advantages(const double *rewards, int n_groups, int G, int scale_by_std, float *adv);
// lp (B,T): log p(ids[b,t] | ids[b,<t]) from logits (B,T,V); lp[b,0] = 0.
void token_logprobs(const float *logits, const int *ids, int B, int T, int V, float *lp);
// The GRPO objective as a loss head (see grpo.c section 2). mask, old_lp, ref_lp (B,T) are
// aligned with the tokens; adv (B). Returns the loss; dlogits (B,T,V) may be NULL.
float grpo_loss(const float *logits, const int *ids, const float *mask, const float *old_lp,
                const float *ref_lp, const float *adv, int B, int T, int V,
                const GrpoConfig *gc, float *dlogits, GrpoStats *stats);
// Rejection sampling's filters for one completion (ended: it stopped with EOS).
typedef enum { REJECT_KEEP, REJECT_MALFORMED, REJECT_WRONG, REJECT_MIXED, REJECT_CUT_OFF } RejectReason;
RejectReason reject_reason(const Json *example, const char *completion, int ended,
                           double min_language);

// Rollouts: a prompt and the completion sampled after it.
typedef struct {
    int *ids;         // (n_prompt + n_completion), room for a whole context
    int n_prompt, n;  // prompt length, total length
    char *text;       // the completion decoded (EOS left out)
    int drafted, accepted;  // speculative decoding (mtp.c): MTP drafts verified, and accepted
} Rollout;
Rollout *rollouts_new(int n, int ctx);   // n rollouts with room for ctx tokens each
void rollouts_free(Rollout *r, int n);
// Adds n rollouts' speculative drafts (mtp.c) to *drafted (verified) and *accepted.
void rollouts_count_drafts(const Rollout *r, int n, long *drafted, long *accepted);
// Puts the example's prompt (R1-Zero template, or chat when chat = 1) into r; dies with "WHO: a
// prompt does not fit the context" when it leaves no room for a completion.
void rollout_set_prompt(Rollout *r, const Tokenizer *tok, const Json *example, int chat, int ctx,
                        const char *who);
// Samples a completion of up to max_new tokens for each of the n rollouts, DECODE_BATCH at a
// time at most (decode_batch_count); rollout i draws from its own RNG seeded by (seed, i), so no
// result depends on threads. tok NULL: the completions are not decoded to text (bench).
void sample_rollouts(const Model *m, const Tokenizer *tok, Rollout *r, int n, int max_new,
                     const SamplingConfig *sc, uint64_t seed);
// The same with a think budget (test-time scaling): a completion still inside its think block
// (no TOK_THINK_END, no EOS) after `budget` tokens gets THINK_BUDGET_CLOSE appended, and every
// completion that has not ended gets at most THINK_BUDGET_ANSWER tokens more to answer: enough
// for any toy task's answer and the EOS, so that the budget bounds the thinking, not the answer.
// budget <= 0 or >= max_new: exactly sample_rollouts.
#define THINK_BUDGET_CLOSE "\n</think>\n<answer>"
#define THINK_BUDGET_ANSWER 32
void sample_rollouts_budget(const Model *m, const Tokenizer *tok, Rollout *r, int n, int max_new,
                            int budget, const SamplingConfig *sc, uint64_t seed);
// Prompt sets in memory: n examples of a task's split (`./r1 data tasks`'s generator), and n
// non-reasoning prompts. Free with tasks_free.
Json **make_examples(const char *task, int eval, int n, int level_lo, int level_hi,
                     const char *lang, uint64_t seed);
Json **nonreasoning_examples(int n, uint64_t seed);
Json **general_examples(int n, uint64_t seed);  // the same with the unsafe requests (general_write)

// Reward models for general prompts (grpo.c section 8; R1 §2.3.4): the decoder with a scalar
// head on the last token's final hidden state, r = w . h_last + b (h_last: acts.ln_f at the EOS
// after the answer), trained on preference pairs with the Bradley-Terry loss. It reads the chat
// template: BOS <｜User｜> prompt <｜Assistant｜> answer EOS.
typedef struct {
    Model model;     // the decoder, from a checkpoint (its lm_head is not used)
    Tokenizer tok;   // its tokenizer
    float *w;        // (D) score.weight
    float b;         // score.bias (no gradient under Bradley-Terry: rm_center sets it)
} RewardModel;
// Rows of token ids: pair i's chosen answer is row 2i, its rejected one row 2i+1.
typedef struct {
    int n;
    int **ids, *len;
} RmRows;
typedef struct {           // what training the head needs beside the decoder's own AdamW state
    float *dw, db;         // (D), the head's gradients
    float *mw, *vw, mb, vb;  // its AdamW moments
    long step;
    float grad_norm;       // the decoder's, before clipping (adamw_step)
    AdamWConfig oc;
} RmTrainer;
// -log sigmoid(r[2i] - r[2i+1]) averaged over n pairs; dr (2n) may be NULL; correct: pairs
// with r[2i] > r[2i+1].
float bt_loss(const float *r, int n_pairs, float *dr, int *correct);
// r (B) = w . ln_f[b, last[b]] + bias, ln_f (B,T,D); the backward adds into dw (D) and dbias and
// writes dln_f (B,T,D): dr[b] w at (b, last[b]), 0 elsewhere.
void score_head_forward(const float *ln_f, const int *last, int B, int T, int D, const float *w,
                        float bias, float *r);
void score_head_backward(const float *ln_f, const int *last, int B, int T, int D, const float *w,
                         const float *dr, float *dw, float *dbias, float *dln_f);
// The reward model's tokens for (example's "prompt", answer) into ids (cap): the length, or -1
// if the prompt does not fit (a too long answer is cut, its EOS kept).
int rm_encode(const Tokenizer *tok, const Json *example, const char *answer, int *ids, int cap);
// The scores r (n) of answers[i] to examples[i].
void rm_score(RewardModel *rm, const Json *const *examples, const char *const *answers, int n,
              float *r);
// Pairs (lines checked by pair_check) as rows; -1 with "pair N: ..." in err.
int rm_encode_pairs(const RewardModel *rm, Json *const *pairs, int n, RmRows *out, char *err);
void rm_rows_free(RmRows *r);
void rm_trainer_init(RmTrainer *t, const RewardModel *rm, const AdamWConfig *oc);
void rm_trainer_free(RmTrainer *t);
// One step of Bradley-Terry on n_pairs pairs (rows 2i, 2i+1 of rows/len): returns the loss.
float rm_train_step(RewardModel *rm, RmTrainer *t, int *const *rows, const int *len, int n_pairs,
                    int *correct);
// The pairs of rows listed in which (n) that the model ranks right, [0] helpful, [1] safety
// (is_safety (n) may be NULL: all helpful), and how many of each.
void rm_accuracy(RewardModel *rm, const RmRows *rows, const int *which, const int *is_safety,
                 int n, int right[2], int count[2]);
// Sets b so that the scores of the answers of the listed pairs average 0.
void rm_center(RewardModel *rm, const RmRows *rows, const int *which, int n);
// DIR: a checkpoint (the decoder, tokenizer) + score.safetensors (score.weight (1,D), score.bias
// (1)). Load: -1 with "PATH: what" for a missing or malformed head.
int rm_save(const RewardModel *rm, const char *dir, char *err);
int rm_load(RewardModel *rm, const char *dir, char *err);
void rm_free(RewardModel *rm);

// One GRPO step (grpo.c section 4).
typedef struct {
    int P, G;           // questions per step, completions per question (the group)
    int max_new;        // the generation budget of a completion, in tokens
    int mu;             // passes of the objective over each batch of rollouts (GRPO's mu)
    int chat;           // 1: chat template, 0: the R1-Zero template
    float gamma;        // the expert-bias update speed (auxiliary-loss-free balancing)
    SamplingConfig sc;  // how rollouts are sampled
    GrpoConfig gc;      // the objective
    RewardWeights w;    // the reward
    AdamWConfig oc;     // the update
    RewardModel *rm;    // NULL: rules for every prompt; else the general prompts' reward is its score
} GrpoSettings;
typedef struct {
    int P, G;
    const Json **example;  // (P)    the question of each group (the caller picks them)
    Rollout *r;            // (P*G)  group p is r[p*G .. p*G + G)
    double *rewards;       // (P*G)
    RewardParts *parts;    // (P*G)
    float *adv;            // (P*G)
    int *flat;             // (P)    1: the group's rewards are all equal (no signal)
} GrpoGroups;
typedef struct {  // what a step measured: the means over its P*G completions, and the update
    double reward, accuracy, format, language, length, reflection;
    // the general prompts' completions (only with a reward model): their mean score and
    // sigmoid(score), and the ground truth (general_judge): helpful among the harmless prompts,
    // safe among the unsafe ones, both (good) among all; general, unsafe: how many
    double rm_score, rm_sigmoid, true_helpful, true_safe, true_good;
    int general, unsafe;
    int zero_variance_groups;
    float loss, grad_norm;
    GrpoStats stats;
    double generate_s, learn_s;
    double score_s;  // of learn_s: pi_ref's (and with mu > 1 pi_old's) log-probabilities
    long drafted, accepted;  // speculative rollouts (mtp.c): drafts verified and accepted
} GrpoStepReport;
GrpoGroups grpo_groups_new(int P, int G, int ctx);
void grpo_groups_free(GrpoGroups *g);
// Samples the groups of g->example, rewards them, computes advantages and updates policy (mu
// passes) against the frozen ref. seed: the step's sampling seed.
void grpo_step(Model *policy, Model *ref, const Tokenizer *tok, const GrpoSettings *s,
               GrpoGroups *g, uint64_t seed, GrpoStepReport *rep);
// Step 4 alone, on rollouts already sampled and advantages already in g->adv (rep's
// zero_variance_groups read, its loss, grad_norm, stats and score_s written): pi_ref's
// log-probabilities, then mu passes of forward, GRPO loss, backward and AdamW.
void grpo_update(Model *policy, Model *ref, const GrpoSettings *s, const GrpoGroups *g,
                 GrpoStepReport *rep);

// Evaluation (grpo.c section 5): per problem one greedy completion and k samples (T 0.6,
// top-p 0.95): greedy accuracy, pass@1 (mean over the k), cons@k (majority answer), format,
// language, length, reflection share, language-mixing share, think tokens; per problem, over
// all problems, per level 1-5 and per task.
typedef struct {
    int k;             // samples per problem
    int max_new;       // the generation budget of a completion, in tokens
    int think_budget;  // 0: none; B: sample_rollouts_budget's think budget
    int chat;          // 1: chat template, 0: the R1-Zero template
    uint64_t seed;
    int speculative;   // 1: decode with the MTP module's drafts (mtp.c), where the model has it
} EvalSettings;
typedef struct {  // one problem: greedy and consk 0 or 1, the others means over its k samples
    double greedy, pass1, consk, format, language, length;
    double reflection, mixed;  // shares of the samples: has_reflection, mixing two languages
    double think;              // tokens before </think> (at most the think budget)
} EvalScores;
typedef struct {
    double greedy, pass1, consk, format, language, length;  // sums over the n problems
    double reflection, mixed, think;                        // (each problem's EvalScores)
    int n;
} EvalCell;
#define EVAL_MAX_TASKS 8
typedef struct {
    EvalCell all, by_level[TASK_LEVEL_MAX + 1];  // by_level[l], l = 1..5
    int n_tasks;                                 // by_task[t]: the problems of task_name[t],
    char task_name[EVAL_MAX_TASKS][32];          // in the order the tasks first appear
    EvalCell by_task[EVAL_MAX_TASKS];
    int n_problems;
    EvalScores *problem;  // (n_problems) in the examples' order; eval_result_free frees it
    double seconds;       // the sampling's time
    long drafted, accepted;  // speculative decoding: drafts verified and accepted
} EvalResult;
void evaluate(const Model *m, const Tokenizer *tok, Json *const *ex, int n,
              const EvalSettings *s, EvalResult *res);
// The scoring half of evaluate: greedy (n) and sampled (n * k: problem i's are i*k .. i*k+k-1)
// rollouts into res (allocated; seconds = 0). think_cap: the most think tokens counted.
void eval_score(Json *const *ex, int n, const Rollout *greedy, const Rollout *sampled, int k,
                int think_cap, EvalResult *res);
void eval_result_free(EvalResult *res);

// Rejection sampling (grpo.c section 6): per_prompt samples of each prompt through the
// filters; at most cap kept per prompt, written to f as SFT examples, then nonreasoning x kept
// non-reasoning examples.
typedef struct {
    int per_prompt, cap, max_new, chat;
    double min_language, nonreasoning;
    SamplingConfig sc;
    uint64_t seed;
} RejectSettings;
typedef struct {
    long malformed, wrong, mixed, overlong, duplicate, capped, kept, plain;
    double seconds;
} RejectCounts;
void reject_sample(const Model *m, const Tokenizer *tok, Json *const *ex, int n,
                   const RejectSettings *s, FILE *f, RejectCounts *c);
// One SFT example as a JSON line: the example's task, lang and prompt, then solution, and
// "source" unless it is NULL (what reject, coldstart and its human-curated share write).
void sft_example_write(FILE *f, const Json *ex, const char *solution, const char *source);

// Cold-start data from R1-Zero's outputs (grpo.c section 7, R1 §2.3.1): sample, verify
// (reject_reason's filters), rewrite by rules into the readable form (blank and repeated lines
// dropped, a summary line closing the reasoning), drop the too short and the repetitive.
typedef enum {
    COLD_KEEP, COLD_MALFORMED, COLD_WRONG, COLD_MIXED, COLD_CUT_OFF,  // as reject_reason's
    COLD_TOO_SHORT,   // fewer than min_lines lines of reasoning
    COLD_REPETITIVE,  // more than max_repeat of its lines repeat an earlier one
    COLD_DUPLICATE, COLD_CAPPED, N_COLD_REASONS
} ColdReason;
typedef struct {
    int per_prompt, cap, max_new, min_lines;
    double min_language, max_repeat;
    SamplingConfig sc;
    uint64_t seed;
} ColdSettings;
typedef struct {
    long sampled, kept, dropped[N_COLD_REASONS];
    double seconds;
} ColdCounts;
// The readable rewrite of one completion (malloc'd into *out) and COLD_KEEP, or why it is
// dropped (*out NULL). ended: the completion stopped with EOS.
ColdReason cold_rewrite(const Json *example, const char *completion, int ended,
                        const ColdSettings *s, char **out);
// per_prompt samples of each prompt (the R1-Zero template, or one_shot = 1: a one-shot prompt
// whose example is a checked long CoT of another prompt of the same task and language), kept
// ones written to f as SFT examples with "source" "r1-zero" or "one-shot"; c accumulates.
void cold_sample(const Model *m, const Tokenizer *tok, Json *const *ex, int n, int one_shot,
                 const ColdSettings *s, FILE *f, ColdCounts *c);

// ==============================================================================================
// 9. pipeline.c: the R1 recipe as one command, its report and findings; the SVG charts
// ==============================================================================================
// The pipeline's settings (`./r1 pipeline`'s flags).
typedef struct {
    const char *out;     // the run's directory (every stage writes under it)
    const char *preset;  // the base model's config preset
    const char *seed;    // as it goes on the stages' command lines
    double scale;        // multiplies every stage's training steps
    const char *until;   // NULL, or the name of the last stage to run (`--until rl`)
    int mtp;             // 1: the base gets the MTP module (pretrain --mtp) and every rollout
                         // and evaluation decodes speculatively with it (mtp.c)
} PipelineRun;
// Runs every stage not yet done (OUT/<stage>.done marks the finished ones), evaluating each
// model, then writes OUT/report.md; with p->until, stops after that stage. Dies, after writing
// the report so far, if a stage fails, and at once if p->until names no stage.
void pipeline_run(const PipelineRun *p);
// OUT/report.md over n runs of the pipeline (one per seed, in dirs): every number as the mean
// over the seeds ± its standard error, and the findings measured in every run.
void pipeline_write_seeds_report(const char *out, char (*dirs)[4200], const char *const *seeds,
                                 int n);
// SVG charts of DIR/metrics.jsonl (one per metric, some grouped); returns how many.
int plot_run(const char *dir);

// ==============================================================================================
// 10. main.c: the program
// ==============================================================================================
// `./r1 data ...` (the tests run it in-process).
int cmd_data(int argc, char **argv);

#endif
