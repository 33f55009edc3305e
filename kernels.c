// kernels.c: the arithmetic every layer of r1.c is built from, and nothing else: the matrix
// product (one cache-blocked, register-tiled kernel for every product, forward and backward),
// dot products, softmax and log-sum-exp, RMSNorm, RoPE's rotation, SiLU and the SwiGLU MLP.
// Each takes flat float buffers and sizes; none knows what a model, a layer or a token is.
//
// Why a file of its own: both the model (r1.c) and DeepSeekMoE (moe.c) multiply matrices, and
// the model calls the MoE layer. With the kernels in r1.c the two files would call each other;
// here they sit below both, and the imports run one way (r1.h states the order).
//
// Contents:
//   1. The matrix product: matmul_nn and its entry points matmul_forward / matmul_backward
//   2. Reductions in a fixed order: dot products, max, exp sums, softmax, log-sum-exp
//   3. RMSNorm, RoPE, SwiGLU
//   4. The products of a decode step: a few rows at a time (linear_rows, swiglu_rows), and the
//      sums of one token's attention over its cache (dot_lanes_rows, weighted_row_sums)
//   5. The machine's peak: fma_peak_loop (what `./r1 bench` measures the training step against)
//   6. Turns: the order in which the shares of a batch add to the weight gradients
#define _POSIX_C_SOURCE 200809L
#include "r1.h"

#include <sched.h>  // sched_yield: a share waiting for its turn (section 6)
#include <stdlib.h>
#include <string.h>
#if defined(__FMA__) || defined(__AVX512F__)
#include <immintrin.h>  // _mm256_fmadd_ps, _mm512_fmadd_ps: the matmul kernel's multiply-add
#endif

// ==============================================================================================
// 1. The matrix product
// ==============================================================================================
// Determinism: every output element is computed by exactly one thread, summing in a fixed
// order, so results are bit-identical for any OMP_NUM_THREADS.

// Every matrix product of the model, forward and backward, runs on one kernel:
//   out (N,M) (=, or += when accumulate) A (N,K) @ B (K,M)
// A and B are read through strides, a(i,k) = a[i*ars + k*aks] and b(k,j) = b[k*bks + j*bcs],
// so either may be a transposed view (W^T for a forward, dout^T for a weight gradient) and
// nothing is transposed in memory first.
//
// The structure is Goto and van de Geijn's ("Anatomy of high-performance matrix
// multiplication", 2008), as in BLIS and OpenBLAS:
//   - B is cut into blocks of MM_KC rows x MM_NC columns and each block into panels of MM_COLS
//     columns; a block stays in the L2 cache while every row tile of A passes over it. A panel
//     whose rows are contiguous in B (B's rows are, bcs == 1: W in dinp = dout W, the input in
//     a weight gradient, V in P V) is read in place, MM_COLS floats per k, bks apart. A
//     transposed view (W^T in a forward, K^T in Q K^T) and a partial last panel are copied
//     ("packed") first into panels whose rows lie one after another.
//   - A is read in place when the MM_ROWS values the kernel takes for one k sit at fixed
//     distances: its rows are contiguous (aks == 1: a forward's input) or it is a transposed
//     view whose rows of one k are adjacent (ars == 1: dout^T in a weight gradient). Anything
//     else and the last, partial row tile are packed one sliver of MM_ROWS rows x MM_KC at a
//     time (k-major: the values of one k side by side), on the stack, and reused for every
//     panel of the block.
//   - the kernel keeps an MM_ROWS x MM_COLS tile of out in vector registers and adds
//     a(i,k) * b(k,j) for k in order, with fused multiply-adds.
// Packing pads partial tiles with zeros, so one kernel serves every tile; at the bottom and
// right edges only the valid part of the tile is stored, and only as many rows (1, 2, 4) and
// registers as the valid part needs are computed.
//
// The tile's shape follows the vector registers. With AVX-512 (32 registers of 16 floats) it
// is 8 x 32, two registers a row: 16 independent sums in flight, enough to hide the fused
// multiply-add's latency on two pipes, and each value of A, broadcast once, feeds two of them.
// With AVX2 (16 registers of 8 floats) it is 6 x 16, in 12 registers. (On this project's Zen 5
// sandbox the AVX-512 kernel made the training step ~1.4x faster: tests/BENCH.md.)
//
// Determinism: every output element is one sum, started from out (or 0) and taking k = 0, 1,
// ..., K-1 in order. A k block's partial sum waits in out and the next block goes on from it
// (a float stored and reloaded is unchanged), so the blocking never changes a result, and
// neither does which thread computes a tile, nor the tile's shape: results are bit-identical
// for any OMP_NUM_THREADS, and the AVX2, AVX-512 and `make debug` builds compute the same
// floats (test_debug_build_same_floats).
#ifdef __AVX512F__
#define MM_ROWS 8
#define MM_COLS 32
#define VEC_FLOATS 16
#else
#define MM_ROWS 6
#define MM_COLS 16
#define VEC_FLOATS 8
#endif
#define MM_KC 256  // k block: an A sliver (MM_ROWS x 256) and a B panel (256 x MM_COLS) fit L1
#define MM_NC 128  // column block: one packed B block (256 x 128 floats, 128 KB) fits L2;
                   // a multiple of MM_COLS

// A vector register's worth of floats (GCC/Clang vector extension: `vec` acts lane by lane);
// a row of the tile is MM_VECS of them.
#define MM_VECS (MM_COLS / VEC_FLOATS)
typedef float vec __attribute__((vector_size(VEC_FLOATS * sizeof(float))));
static inline vec vec_load(const float *p) {
    vec v;
    memcpy(&v, p, sizeof(v));  // an unaligned load
    return v;
}
static inline void vec_store(float *p, vec v) { memcpy(p, &v, sizeof(v)); }

// acc + x * b in every lane, rounded once (a fused multiply-add): one instruction with AVX-512
// or FMA; without them (e.g. `make debug`, built for any x86-64) libm's fmaf gives the same
// floats.
static inline vec vec_fma(float x, vec b, vec acc) {
#if defined(__AVX512F__)
    return (vec)_mm512_fmadd_ps(_mm512_set1_ps(x), (__m512)b, (__m512)acc);
#elif defined(__FMA__)
    return (vec)_mm256_fmadd_ps(_mm256_set1_ps(x), (__m256)b, (__m256)acc);
#else
    for (int l = 0; l < VEC_FLOATS; l++) acc[l] = fmaf(x, b[l], acc[l]);
    return acc;
#endif
}

// ap (kn, MM_ROWS) = rows r0.. of A for k in [k0, k0+kn): ap[k*MM_ROWS + i] = a(r0+i, k0+k),
// and 0 for rows past N. The packed sliver is itself an A view, with ars = 1, aks = MM_ROWS.
static void pack_a(float *ap, const float *a, size_t ars, size_t aks, int r0, int N, int k0,
                   int kn) {
    int rows = N - r0 < MM_ROWS ? N - r0 : MM_ROWS;
    memset(ap, 0, (size_t)kn * MM_ROWS * sizeof(float));
    for (int i = 0; i < rows; i++) {
        const float *src = a + (size_t)(r0 + i) * ars + (size_t)k0 * aks;
        for (int k = 0; k < kn; k++) ap[k * MM_ROWS + i] = src[(size_t)k * aks];
    }
}

// Whether the kernel reads the panel of columns c0.. of B (K, M) in place: B's rows are
// contiguous and the panel is whole (a partial one is packed, padded with zeros).
static int panel_in_place(size_t bcs, int c0, int M) { return bcs == 1 && M - c0 >= MM_COLS; }

// One panel: bp (kn, MM_COLS) = columns c0.. of B for k in [k0, k0+kn), 0 for columns past M.
static void pack_b_panel(float *bp, const float *b, size_t bks, size_t bcs, int k0, int kn,
                         int c0, int M) {
    int cols = M - c0 < MM_COLS ? M - c0 : MM_COLS;
    if (cols < MM_COLS) memset(bp, 0, (size_t)kn * MM_COLS * sizeof(float));
    for (int j = 0; j < cols; j++) {  // column by column: a W^T view (bks = 1) reads W's rows
        const float *src = b + (size_t)k0 * bks + (size_t)(c0 + j) * bcs;
        for (int k = 0; k < kn; k++) bp[k * MM_COLS + j] = src[(size_t)k * bks];
    }
}

// tile (=, or += when accumulate) sum over k < kn of a(i,k) * bp[k*bps + j], k in order, for
// the first `rows` rows (MM_ROWS: the whole tile; fewer: an edge tile, below) and the first
// `vecs` registers of columns (MM_VECS: the whole tile; 1: a narrow last panel, e.g. the 16
// columns left of 48), with a(i,k) = a[i*ars + k*aks] (A in place, or a packed sliver: ars = 1,
// aks = MM_ROWS) and bp a panel of B: packed (bps = MM_COLS) or in place (bps = bks, B's row
// stride).
// The accumulators acc[i][v] (row i, the v-th register of its columns) stay in registers: called
// with constant rows and vecs, the function is inlined and the loops over i and v have constant
// bounds, so the compiler unrolls them. Per k: vecs loads of the B panel's row and `rows`
// values of A, each broadcast to all lanes.
static inline void tile_product(float *out, size_t ldo, const float *a, size_t ars, size_t aks,
                                const float *bp, size_t bps, int kn, int accumulate,
                                const int rows, const int vecs) {
    vec acc[MM_ROWS][MM_VECS];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < vecs; v++)
            acc[i][v] = accumulate ? vec_load(out + i * ldo + v * VEC_FLOATS) : (vec){0};
    for (int k = 0; k < kn; k++, a += aks, bp += bps) {
        vec b[MM_VECS];
        for (int v = 0; v < vecs; v++) b[v] = vec_load(bp + v * VEC_FLOATS);
        for (int i = 0; i < rows; i++)
            for (int v = 0; v < vecs; v++) acc[i][v] = vec_fma(a[i * ars], b[v], acc[i][v]);
    }
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < vecs; v++) vec_store(out + i * ldo + v * VEC_FLOATS, acc[i][v]);
}

// An edge tile's product into the local tile (row stride MM_COLS, added to), for its first
// `rows` rows rounded up to 1, 2, 4 or MM_ROWS: a decode batch of 4 sequences, or a routed
// expert that 1-3 rows of a batch chose, then costs 4 or fewer rows' work, not MM_ROWS' (the
// rows past the real ones are the packed sliver's zeros, computed and never stored).
static inline void edge_tile_product(float *tile, const float *a, size_t ars, size_t aks,
                                     const float *bp, size_t bps, int kn, int rows,
                                     const int vecs) {
    if (rows <= 1)
        tile_product(tile, MM_COLS, a, ars, aks, bp, bps, kn, 1, 1, vecs);
    else if (rows <= 2)
        tile_product(tile, MM_COLS, a, ars, aks, bp, bps, kn, 1, 2, vecs);
    else if (rows <= 4)
        tile_product(tile, MM_COLS, a, ars, aks, bp, bps, kn, 1, 4, vecs);
    else
        tile_product(tile, MM_COLS, a, ars, aks, bp, bps, kn, 1, MM_ROWS, vecs);
}

// The MM_ROWS x MM_COLS tile at out (row stride ldo), of which the top-left rows x cols are
// real (tile_product's terms). An edge tile is computed in a local copy, only as many rows
// (edge_tile_product) and registers as its real part needs. Its shape never changes a float:
// each sum still takes k in order, one fused multiply-add at a time.
static void matmul_kernel(float *out, size_t ldo, const float *a, size_t ars, size_t aks,
                          const float *bp, size_t bps, int kn, int rows, int cols,
                          int accumulate) {
    if (rows == MM_ROWS && cols == MM_COLS) {
        tile_product(out, ldo, a, ars, aks, bp, bps, kn, accumulate, MM_ROWS, MM_VECS);
        return;
    }
    float tile[MM_ROWS * MM_COLS] = {0};
    for (int i = 0; i < rows && accumulate; i++)
        memcpy(tile + i * MM_COLS, out + i * ldo, (size_t)cols * sizeof(float));
    if (cols <= VEC_FLOATS)
        edge_tile_product(tile, a, ars, aks, bp, bps, kn, rows, 1);
    else
        edge_tile_product(tile, a, ars, aks, bp, bps, kn, rows, MM_VECS);
    for (int i = 0; i < rows; i++)
        memcpy(out + i * ldo, tile + i * MM_COLS, (size_t)cols * sizeof(float));
}

// The row tile at r0 of out (N,M; rows ldo floats apart), columns [c0, c1), summed over k in
// [k0, k0+kn). B's panels are read in place (panel_in_place) or from the packed block: bp
// points at row k0 of the packed panel of columns c0.., the next panels following every
// panel_rows rows. A is read in place when the tile is whole and its values for one k sit at
// fixed distances (aks == 1 or ars == 1); otherwise its sliver is packed first, into ap
// (MM_KC x MM_ROWS).
static void matmul_row_tile(float *out, size_t ldo, const float *a, size_t ars, size_t aks,
                            const float *b, size_t bks, size_t bcs, const float *bp,
                            int panel_rows, int N, int M, int r0, int c0, int c1, int k0, int kn,
                            int accumulate, float *ap) {
    int rows = N - r0 < MM_ROWS ? N - r0 : MM_ROWS;
    const float *at = a + (size_t)r0 * ars + (size_t)k0 * aks;
    size_t trs = ars, tks = aks;
    if ((aks != 1 && ars != 1) || rows < MM_ROWS) {
        pack_a(ap, a, ars, aks, r0, N, k0, kn);
        at = ap, trs = 1, tks = MM_ROWS;
    }
    for (int j0 = c0; j0 < c1; j0 += MM_COLS) {
        int cols = M - j0 < MM_COLS ? M - j0 : MM_COLS;
        // (bp is NULL when nothing is packed: no pointer arithmetic on it then, not even + 0)
        const float *panel;
        size_t bps;
        if (panel_in_place(bcs, j0, M)) panel = b + (size_t)k0 * bks + j0, bps = bks;
        else panel = bp + (size_t)(j0 - c0) * panel_rows, bps = MM_COLS;
        matmul_kernel(out + (size_t)r0 * ldo + j0, ldo, at, trs, tks, panel, bps, kn, rows, cols,
                      accumulate);
    }
}

// The threads of the team running this code (1 outside a parallel region).
static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// matmul_nn with B in place and fewer row tiles than two per thread (a weight gradient of a few
// dozen rows: 6-16 row tiles against 16 threads, where sharing row tiles left most threads
// idle). The team shares (row tile, column panel) pairs instead, each summed over the whole k
// range, block after block in order: the same floats. Panel-major, so that the row tiles that
// follow each other on a thread read the same panel of B.
static void matmul_tile_panels(float *out, const float *a, size_t ars, size_t aks,
                               const float *b, size_t bks, int N, int K, int M, int accumulate) {
    int row_tiles = (N + MM_ROWS - 1) / MM_ROWS, panels = M / MM_COLS;  // M % MM_COLS == 0
    float ap[MM_KC * MM_ROWS];  // this thread's packed A sliver, when needed
#pragma omp for schedule(static)
    for (int item = 0; item < row_tiles * panels; item++) {
        int r0 = item % row_tiles * MM_ROWS, j0 = item / row_tiles * MM_COLS;
        for (int k0 = 0; k0 < K; k0 += MM_KC) {
            int kn = K - k0 < MM_KC ? K - k0 : MM_KC;
            matmul_row_tile(out, M, a, ars, aks, b, bks, 1, NULL, kn, N, M, r0, j0,
                            j0 + MM_COLS, k0, kn, accumulate || k0 > 0, ap);
        }
    }
}

// The blocks of matmul_nn, walked by the whole team (each thread runs this; the loops marked
// omp for are shared): k blocks of MM_KC, column blocks of MM_NC, and in each the row tiles.
static void matmul_blocks(float *out, const float *a, size_t ars, size_t aks, const float *b,
                          size_t bks, size_t bcs, float *bp, int N, int K, int M,
                          int accumulate) {
    int row_tiles = (N + MM_ROWS - 1) / MM_ROWS, packs = bp != NULL;
    for (int k0 = 0; k0 < K; k0 += MM_KC) {
        int kn = K - k0 < MM_KC ? K - k0 : MM_KC;
        for (int c0 = 0; c0 < M; c0 += MM_NC) {
            int c1 = M - c0 < MM_NC ? M : c0 + MM_NC;
            float ap[MM_KC * MM_ROWS];  // this thread's packed A sliver, when needed
            if (packs) {
#pragma omp for schedule(static)
                for (int j0 = c0; j0 < c1; j0 += MM_COLS)
                    if (!panel_in_place(bcs, j0, M))
                        pack_b_panel(bp + (size_t)(j0 - c0) * kn, b, bks, bcs, k0, kn, j0, M);
#pragma omp for schedule(guided)
                for (int rt = 0; rt < row_tiles; rt++)
                    matmul_row_tile(out, M, a, ars, aks, b, bks, bcs, bp, kn, N, M, rt * MM_ROWS,
                                    c0, c1, k0, kn, accumulate || k0 > 0, ap);
            } else {
#pragma omp for schedule(static) nowait
                for (int rt = 0; rt < row_tiles; rt++)
                    matmul_row_tile(out, M, a, ars, aks, b, bks, bcs, bp, kn, N, M, rt * MM_ROWS,
                                    c0, c1, k0, kn, accumulate || k0 > 0, ap);
            }
        }
    }
}

void matmul_nn(float *out, const float *a, size_t ars, size_t aks, const float *b,
                      size_t bks, size_t bcs, int N, int K, int M, int accumulate) {
    if (N == 0 || M == 0) return;
    if (K == 0) {  // an empty sum
        if (!accumulate) memset(out, 0, (size_t)N * M * sizeof(float));
        return;
    }
    int row_tiles = (N + MM_ROWS - 1) / MM_ROWS;
    int block_cols = (M < MM_NC ? M : MM_NC) + MM_COLS - 1;  // rounded up to whole panels below
    block_cols -= block_cols % MM_COLS;
    // B needs packing when it is a transposed view or its last panel is partial.
    int packs = bcs != 1 || M % MM_COLS != 0;
    float *bp = packs ? xcalloc((size_t)(K < MM_KC ? K : MM_KC) * block_cols, sizeof(float))
                      : NULL;  // the packed B block
    // All threads walk the blocks together. When B is packed, they pack a block's panels
    // between them, wait, then share its row tiles, and wait again before the next block
    // overwrites the packed one. The tiles go out in shrinking chunks (guided: each request
    // takes a share of what is left, down to one tile), so the threads reach the wait together
    // and a thread that has the core to itself takes more (2 threads: ~4% faster per step than
    // fixed chunks of four). When B is read in place (an input gradient's W, a weight
    // gradient's input), nothing is shared but B, which nobody writes: each thread keeps the
    // same rows in every block (schedule(static): the same iterations go to the same thread in
    // every loop of this count, so a row's k blocks still follow each other in one thread) and
    // goes on to the next block without waiting (nowait). That matters for the weight
    // gradients: 12-16 row tiles per block over 8 k blocks, where each wait cost up to a tile.
    // With fewer row tiles than two per thread, the team shares tiles and panels instead
    // (matmul_tile_panels). Which thread computes a tile never changes its value. Small
    // products run on the calling thread: waking threads would cost more than it saves.
#pragma omp parallel if ((double)N * K * M > 65536)
    {
        if (!packs && M > MM_COLS && row_tiles < 2 * team_size())
            matmul_tile_panels(out, a, ars, aks, b, bks, N, K, M, accumulate);
        else
            matmul_blocks(out, a, ars, aks, b, bks, bcs, bp, N, K, M, accumulate);
    }
    free(bp);
}

// The six products of causal attention, (T,T) by (T,d), need only the lower triangle i >= j of
// the score matrix. Which part a product needs sets its mode:
//   CAUSAL_OUT_LOWER  out is (T,T) scores: the row tile of rows i0..i0+R-1 (R = MM_ROWS)
//                     computes columns j < i0+R only
//                     (S = Q K^T, dP = dO V^T); tiles wholly above the diagonal are not
//                     written, and the caller zeroes the stray j > i of the diagonal tiles.
//   CAUSAL_K_UPTO_ROW a is (T,T) causal, row i sums k = j <= i:  out row tile i0 sums k < i0+R
//                     (O = P V, dQ = dS K).
//   CAUSAL_K_FROM_ROW a is a transposed view of a causal (T,T), row j sums k = i >= j:
//                     row tile j0 sums k >= j0 (dV = P^T dO, dK = dS^T Q).
// The terms skipped are exactly 0 * b (the masked probabilities), so each sum is the same float
// as the full product's; the work is about half. Runs on the calling thread (the attention
// heads are already shared among the threads); bp is room for all of B packed, K x M rounded
// up to whole panels. out's rows are ldo floats apart (M, or a head's slice of a wider row), and
// accumulate adds to what is there.
void matmul_causal(float *out, size_t ldo, const float *a, size_t ars, size_t aks,
                          const float *b, size_t bks, size_t bcs, int N, int K, int M,
                          CausalMode mode, int accumulate, float *bp) {
    for (int j0 = 0; j0 < M; j0 += MM_COLS)
        if (!panel_in_place(bcs, j0, M))
            pack_b_panel(bp + (size_t)j0 * K, b, bks, bcs, 0, K, j0, M);
    for (int r0 = 0; r0 < N; r0 += MM_ROWS) {
        int rows = N - r0 < MM_ROWS ? N - r0 : MM_ROWS;
        int k_begin = 0, k_end = K, col_end = M;
        if (mode == CAUSAL_OUT_LOWER) col_end = r0 + rows < M ? r0 + rows : M;
        if (mode == CAUSAL_K_UPTO_ROW) k_end = r0 + rows < K ? r0 + rows : K;
        if (mode == CAUSAL_K_FROM_ROW) k_begin = r0 < K ? r0 : K;
        for (int k0 = k_begin; k0 < k_end; k0 += MM_KC) {  // k blocks as in matmul_nn
            int kn = k_end - k0 < MM_KC ? k_end - k0 : MM_KC;
            float ap[MM_KC * MM_ROWS];
            matmul_row_tile(out, ldo, a, ars, aks, b, bks, bcs, bp + (size_t)k0 * MM_COLS, K, N,
                            M, r0, 0, col_end, k0, kn, accumulate || k0 > k_begin, ap);
        }
    }
}

// The causal products read a (T,T) causal operand's row i up to the end of the MM_ROWS tile
// that holds i (the diagonal tile: its rows share one k range, or one column range); entries
// from there to T are never read. So the masked entries j > i that must hold 0 are only
// those before this end.
int causal_read_end(int i, int T) {
    int end = (i / MM_ROWS + 1) * MM_ROWS;
    return end < T ? end : T;
}

// Room matmul_causal needs for a packed (K, M): K rows of M rounded up to whole panels.
size_t causal_pack_floats(int K, int M) {
    return (size_t)K * (size_t)((M + MM_COLS - 1) / MM_COLS * MM_COLS);
}

// out (N,OC) (=, or += when accumulate) inp (N,C) @ W^T with W (OC,C) as stored by PyTorch:
// B = W^T is read in place through strides (b(k,j) = W[j*C + k]).
void matmul_forward(float *out, const float *inp, const float *W, int N, int C, int OC,
                    int accumulate) {
    matmul_nn(out, inp, C, 1, W, 1, C, N, C, OC, accumulate);
}

// dinp (N,C) (=, or += when accumulate) dout (N,OC) @ W   (sum over o in order)
// dW (OC,C)  += dout^T @ inp            (sum over t in order; dout^T is a strided view)
// Weight gradients always add (model_zero_grad clears them once per step). An input gradient
// that a product writes first is overwritten (accumulate 0): the same floats as adding to a
// zeroed buffer (each sum starts from +0 either way), without a pass that zeroes it.
void matmul_backward(float *dinp, float *dW, const float *dout, const float *inp, const float *W,
                     int N, int C, int OC, int accumulate) {
    if (N == 0) return;
    if (dinp) matmul_nn(dinp, dout, OC, 1, W, C, 1, N, OC, C, accumulate);
    if (dW) matmul_nn(dW, dout, 1, OC, inp, C, 1, OC, N, C, 1);
}



// ==============================================================================================
// 2. Reductions in a fixed order: max, sums of exponentials, softmax, log-sum-exp, matvec
// ==============================================================================================

// A vector register's lanes as 32-bit integers: what a comparison of two vecs gives (-1 where
// it holds, 0 where not), and the bits of a float.
typedef int32_t vec_int __attribute__((vector_size(VEC_FLOATS * sizeof(float))));

// Lane by lane: a where mask is -1, b where it is 0.
static inline vec vec_select(vec_int mask, vec a, vec b) {
    return (vec)(((vec_int)a & mask) | ((vec_int)b & ~mask));
}

// r1_expf (r1.h) in every lane, step by step the same operations, so every lane is the float
// r1_expf gives. Written for the vector registers: inside sum_exp_lanes' loop the compiler had
// vectorised r1_expf only 8 lanes wide, one register at a time (the causal softmax is 1.27x
// faster with this).
static inline vec vec_expf(vec x) {
    const vec zero = {0};
    vec xc = vec_select(x < R1_EXP_LO, zero + R1_EXP_LO, x);
    xc = vec_select(xc > R1_EXP_HI, zero + R1_EXP_HI, xc);
    vec t = xc * R1_EXP_LOG2E + R1_EXP_SHIFTER;
    vec n = t - R1_EXP_SHIFTER;
    vec r = (xc - n * R1_EXP_LN2_HI) - n * R1_EXP_LN2_LO;
    vec p = zero + R1_EXP_POLY[0];
    for (int i = 1; i < 8; i++) p = p * r + R1_EXP_POLY[i];
    vec_int scale = ((vec_int)t - 0x4B400000 + 127) << 23;  // 2^n, from n in t's low bits
    vec y = p * (vec)scale;
    y = vec_select(x < R1_EXP_LO, zero, y);
    return vec_select(x > R1_EXP_HI, zero + INFINITY, y);
}

// The largest of n floats, taken a vector register at a time (the maximum is exact in any
// order, so the lanes' count is free).
static float max_lanes(const float *x, int n) {
    vec lanes = (vec){0} - INFINITY;
    float best = -INFINITY;
    int j = 0;
    for (; j + VEC_FLOATS <= n; j += VEC_FLOATS) {
        vec v = vec_load(x + j);
        lanes = vec_select(v > lanes, v, lanes);
    }
    for (; j < n; j++) best = x[j] > best ? x[j] : best;
    for (int l = 0; l < VEC_FLOATS; l++) best = lanes[l] > best ? lanes[l] : best;
    return best;
}

// The 8 lanes of sum_exp_lanes, and the terms of one vector register added to them: the terms
// 0..7 to lanes 0..7, then (with 16-float registers) the terms 8..15.
typedef float lanes8 __attribute__((vector_size(8 * sizeof(float))));
static inline lanes8 add_to_lanes(lanes8 sums, vec terms) {
    for (int h = 0; h < VEC_FLOATS; h += 8) {
        lanes8 part;
        memcpy(&part, (const float *)&terms + h, sizeof(part));
        sums += part;
    }
    return sums;
}

// sum_j exp(x[j] - shift) over n floats, in 8 lanes as in dot_lanes: lane l sums the terms l,
// l+8, ... of the whole groups of 8, and the last n % 8 terms are added one by one to a
// separate sum s. The terms are computed a vector register at a time (vec_expf), two
// registers side by side (a chain of dependent multiplies and adds each: two keep the core's
// units busier), the last register padded; the order of the sums does not depend on the
// register's width. When e is not NULL the terms are also stored in e[j] (e may be x itself).
static float sum_exp_lanes(const float *x, int n, float shift, float *e) {
    lanes8 sums = {0};
    int j = 0;
    for (; j + 2 * VEC_FLOATS <= n; j += 2 * VEC_FLOATS) {
        vec t0 = vec_expf(vec_load(x + j) - shift);
        vec t1 = vec_expf(vec_load(x + j + VEC_FLOATS) - shift);
        if (e) vec_store(e + j, t0), vec_store(e + j + VEC_FLOATS, t1);
        sums = add_to_lanes(add_to_lanes(sums, t0), t1);
    }
    if (j + VEC_FLOATS <= n) {  // one whole register left
        vec t = vec_expf(vec_load(x + j) - shift);
        if (e) vec_store(e + j, t);
        sums = add_to_lanes(sums, t);
        j += VEC_FLOATS;
    }
    float s = 0.0f;
    if (j < n) {  // the last, partial register, padded with zeros (their terms are not used)
        int r = n - j, whole = r / 8 * 8;  // a group of 8 goes to the lanes, the rest to s
        float xs[VEC_FLOATS] = {0}, term[VEC_FLOATS];
        for (int l = 0; l < r; l++) xs[l] = x[j + l];
        vec_store(term, vec_expf(vec_load(xs) - shift));
        for (int l = 0; l < r && e; l++) e[j + l] = term[l];
        if (whole) {
            lanes8 part;
            memcpy(&part, term, sizeof(part));
            sums += part;
        }
        for (int l = whole; l < r; l++) s += term[l];
    }
    float lanes[8];
    memcpy(lanes, &sums, sizeof(lanes));
    return s + add_lanes(lanes);
}

// Softmax of n scores in place: p[j] = exp(p[j] - max) / sum_j exp(p[j] - max).
void softmax_inplace(float *p, int n) {
    float maxs = max_lanes(p, n), sum = sum_exp_lanes(p, n, maxs, p);
    for (int j = 0; j < n; j++) p[j] /= sum;
}

// log sum_v exp(z[v]) of a row of n logits, as max + log(sum_v exp(z[v] - max)). Cross-entropy,
// token_logprobs and the GRPO loss all take it from here, so their log-probabilities are the
// same floats (GRPO's ratio is exactly 1 on its first pass).
double log_sum_exp(const float *z, int n) {
    float maxz = max_lanes(z, n);
    return maxz + log((double)sum_exp_lanes(z, n, maxz, NULL));
}

// out (OC) = W (OC,C) @ x (C): the one-token matrix-vector product used by generation. Threads
// share the outputs only when the product is large (TEAM_MIN_WORK, r1.h): below that, waking a
// sleeping thread (OMP_WAIT_POLICY=passive, main.c) costs more than it saves, and a decode step
// of the small preset would run slower on 2 threads than on 1.
void matvec(float *out, const float *x, const float *W, int C, int OC) {
    if ((long)OC * C >= TEAM_MIN_WORK) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) out[o] = dot_lanes(W + (size_t)o * C, x, C);
    } else {
        for (int o = 0; o < OC; o++) out[o] = dot_lanes(W + (size_t)o * C, x, C);
    }
}

// ==============================================================================================
// 3. RMSNorm, RoPE, SwiGLU
// ==============================================================================================

// RMSNorm (Zhang & Sennrich 2019): out (N,C) = inp * rstd * w,  rstd = 1/sqrt(mean(inp^2) + eps)
// Rows of inp are `stride` floats apart (C, or more when normalising the head of a wider row).
//
// A row's sum of squares is a chain of additions, each waiting for the one before (taking c in
// order fixes the float). RMS_ROWS rows are summed side by side: the chains are independent, so
// the core overlaps them, and each row's sum is the same float as alone (~3x faster here).
#define RMS_ROWS 8
// ss[l] = sum_c x[l][c]^2 for `rows` (at most RMS_ROWS) rows side by side, each in c order.
// Called with the constant RMS_ROWS for whole groups (inlined, the row loop unrolls into
// independent chains) and with the count of the last rows.
static inline void sum_squares_rows(const float *x, int stride, int C, const int rows,
                                    float ss[RMS_ROWS]) {
    for (int l = 0; l < rows; l++) ss[l] = 0.0f;
    for (int c = 0; c < C; c++)
        for (int l = 0; l < rows; l++) {
            float v = x[(size_t)l * stride + c];
            ss[l] += v * v;
        }
}

// Rows t0 .. t0+RMS_ROWS-1 of rmsnorm_forward (fewer at the end of the N rows).
static void rmsnorm_forward_block(float *out, float *rstd, const float *inp, int stride,
                                  const float *w, int N, int C, float eps, int t0) {
    int rows = N - t0 < RMS_ROWS ? N - t0 : RMS_ROWS;
    const float *x0 = inp + (size_t)t0 * stride;
    float ss[RMS_ROWS];
    if (rows == RMS_ROWS)
        sum_squares_rows(x0, stride, C, RMS_ROWS, ss);
    else
        sum_squares_rows(x0, stride, C, rows, ss);
    for (int l = 0; l < rows; l++) {
        int t = t0 + l;
        const float *x = inp + (size_t)t * stride;
        float r = 1.0f / sqrtf(ss[l] / C + eps);
        rstd[t] = r;
        float *y = out + (size_t)t * C;
        for (int c = 0; c < C; c++) y[c] = w[c] * (x[c] * r);
    }
}

// The blocks of rows are shared among the threads; a single block (a decoded token's c_kv, a
// small decode batch) runs as plain code: even a parallel region of one thread costs libgomp a
// team, and this runs for every sequence, layer and token of a decode.
void rmsnorm_forward(float *out, float *rstd, const float *inp, int stride,
                            const float *w, int N, int C, float eps) {
    int blocks = (N + RMS_ROWS - 1) / RMS_ROWS;
    if (blocks == 1) {
        rmsnorm_forward_block(out, rstd, inp, stride, w, N, C, eps, 0);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks; blk++)
        rmsnorm_forward_block(out, rstd, inp, stride, w, N, C, eps, blk * RMS_ROWS);
}

// dot[l] = sum_c w[c] * dout[l][c] * inp[l][c] * rstd[l] for `rows` rows side by side, each in
// c order (as sum_squares_rows); dout and rstd start at the first of the rows, inp too.
static inline void weighted_dots_rows(const float *dout, const float *inp, int stride,
                                      const float *w, const float *rstd, int C, const int rows,
                                      float dot[RMS_ROWS]) {
    for (int l = 0; l < rows; l++) dot[l] = 0.0f;
    for (int c = 0; c < C; c++)
        for (int l = 0; l < rows; l++)
            dot[l] += w[c] * dout[(size_t)l * C + c] * inp[(size_t)l * stride + c] * rstd[l];
}

// With n = inp * rstd: dinp (=, or += when accumulate) rstd * (w*dout - n * mean(w*dout*n)),
// dw += sum_t dout * n (t in order, going on from dw's value). dinp and inp rows are `stride`
// floats apart, dout rows C. The rows' dot products are summed RMS_ROWS side by side, as in the
// forward.
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                             int stride, const float *w, const float *rstd, int N, int C,
                             int accumulate) {
    // BEGIN ASSIGNMENT rmsnorm_backward
    // handout: for (int t = 0; t < N && !accumulate; t++) memset(dinp + (size_t)t * stride, 0, (size_t)C * sizeof(float));
    // handout: (void)dw, (void)dout, (void)inp, (void)w, (void)rstd;
    int blocks = (N + RMS_ROWS - 1) / RMS_ROWS;
#pragma omp parallel for schedule(static) if (blocks > 1)  // one block (a decode step): no team
    for (int blk = 0; blk < blocks; blk++) {
        int t0 = blk * RMS_ROWS, rows = N - t0 < RMS_ROWS ? N - t0 : RMS_ROWS;
        const float *dy0 = dout + (size_t)t0 * C, *x0 = inp + (size_t)t0 * stride;
        float dot[RMS_ROWS];
        if (rows == RMS_ROWS)
            weighted_dots_rows(dy0, x0, stride, w, rstd + t0, C, RMS_ROWS, dot);
        else
            weighted_dots_rows(dy0, x0, stride, w, rstd + t0, C, rows, dot);
        for (int l = 0; l < rows; l++) {
            size_t t = (size_t)t0 + l;
            const float *x = inp + t * stride, *dy = dout + t * C;
            float r = rstd[t], mean = dot[l] / C;
            float *dx = dinp + t * stride;
            for (int c = 0; c < C; c++)
                dx[c] = (accumulate ? dx[c] : 0.0f) + r * (w[c] * dy[c] - x[c] * r * mean);
        }
    }
    if (dw) {
        // dw[c] sums over t in order, going on from what dw holds (as a weight gradient of
        // matmul_backward does): a batch's rows given in parts, one call per part, add up to
        // the same floats as one call over all of them (GRPO's micro-batches). The threads
        // share the columns in blocks of 32 (two blocks or more for most norms here, so both
        // threads work), and each walks the rows once, adding a row's 32 terms side by side
        // (they vectorise).
        int col_blocks = (C + 31) / 32;
#pragma omp parallel for schedule(static)
        for (int cb = 0; cb < col_blocks; cb++) {
            int c0 = cb * 32, c1 = c0 + 32 < C ? c0 + 32 : C;
            float s[32];
            for (int c = c0; c < c1; c++) s[c - c0] = dw[c];
            for (int t = 0; t < N; t++) {
                const float *dy = dout + (size_t)t * C, *x = inp + (size_t)t * stride;
                for (int c = c0; c < c1; c++) s[c - c0] += dy[c] * x[c] * rstd[t];
            }
            for (int c = c0; c < c1; c++) dw[c] = s[c - c0];
        }
    }
    // END ASSIGNMENT rmsnorm_backward
}

// Interleaved RoPE (rope_interleave, DeepSeek-V3's layout): the pairs (x[2i], x[2i+1]) of the
// dr rope dims rotate by angle pos * inv_freq[i]. transformers first permutes to [evens | odds]
// and rotates halves; q and k get the same permutation, so the dot products (all attention sees)
// are identical. With interleave = 0 the pairs are (x[i], x[i + dr/2]) (LLaMA's rotate_half).
// vec (dr) at position pos; sign = +1 forward, -1 backward (rotation by -angle = transpose).
void rope_rotate(float *vec, int dr, const float *cos_row, const float *sin_row,
                        float sign, int interleave) {
    // BEGIN ASSIGNMENT rope
    // handout: (void)vec, (void)dr, (void)cos_row, (void)sin_row, (void)sign, (void)interleave;
    int half = dr / 2;
    for (int i = 0; i < half; i++) {
        int a = interleave ? 2 * i : i, b = interleave ? 2 * i + 1 : i + half;
        float c = cos_row[i], s = sign * sin_row[i];
        float x0 = vec[a], x1 = vec[b];
        vec[a] = x0 * c - x1 * s;
        vec[b] = x1 * c + x0 * s;
    }
    // END ASSIGNMENT rope
}
// The YaRN attention factor is folded into cos/sin, so a rotation can scale: the transpose of
// [c -s; s c] is [c s; -s c], which is what sign = -1 gives, with the same scale.


// SwiGLU (Shazeer 2020): out (N,D) = down(silu(gate(x)) * up(x)); g,u,h (N,I) saved.
void swiglu_forward(float *out, const float *x, const float *Wg, const float *Wu,
                    const float *Wd, float *g, float *u, float *h, int N, int D, int I,
                    int accumulate) {
    if (N == 0) return;
    matmul_forward(g, x, Wg, N, D, I, 0);
    matmul_forward(u, x, Wu, N, D, I, 0);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)N * I; i++) h[i] = silu(g[i]) * u[i];
    matmul_forward(out, h, Wd, N, I, D, accumulate);
}

// silu'(z) = s(z) * (1 + z * (1 - s(z))) with s the logistic sigmoid.
void swiglu_backward(float *dx, float *dWg, float *dWu, float *dWd, const float *dout,
                     const float *x, const float *Wg, const float *Wu, const float *Wd,
                     const float *g, const float *u, const float *h, int N, int D, int I,
                     float *dh, float *dgu, int accumulate) {
    // BEGIN ASSIGNMENT swiglu_backward
    // handout: for (size_t i = 0; i < (size_t)N * D && !accumulate; i++) dx[i] = 0.0f;
    // handout: (void)dWg, (void)dWu, (void)dWd, (void)dout, (void)x, (void)Wg, (void)Wu, (void)Wd;
    // handout: (void)g, (void)u, (void)h, (void)I, (void)dh, (void)dgu;
    if (N == 0) return;
    matmul_backward(dh, dWd, dout, h, Wd, N, I, D, 0);    // dh = dout @ Wd
    float *dg = dh, *du = dgu;                             // dg overwrites dh in place
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)N * I; i++) {
        float s = sigmoidf(g[i]);
        du[i] = dh[i] * g[i] * s;
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
    matmul_backward(dx, dWg, dg, x, Wg, N, D, I, accumulate);  // dx (=, +=) dg @ Wg
    matmul_backward(dx, dWu, du, x, Wu, N, D, I, 1);           // dx += du @ Wu
    // END ASSIGNMENT swiglu_backward
}

// ==============================================================================================
// 4. The products of a decode step: a few rows at a time; the attention over the cache
// ==============================================================================================

// out (n, OC) = x (n, C) @ W^T for the rows of a decode step. One sequence decoding alone
// (alone = 1, n = 1): matvec. A batch (alone = 0): the matmul kernel, W read once for all n rows.
// With W's transposed copy Wt (C, OC) it is a forward's product, out = x Wt: x is A, Wt is B
// read in place, and the tiles are whole (8 rows x 32 columns with AVX-512) as soon as n >= 8.
// Without it, out^T (OC, n) = W x^T: W (OC, C) is A, read in place, and x^T is B, packed, a
// single panel when n <= MM_COLS, of which only n columns are real (n = 16 fills half the tile:
// half the work of each multiply-add is padding); yt (OC, n) is scratch, then transposed. Both
// sum out[i][o] = sum_k x[i][k] W[o][k] over k in order from 0, one fused multiply-add per k:
// the same floats. Alone and batched sum in different orders (r1.c's decode_block says why
// both stay).
void linear_rows(float *out, const float *x, const float *W, const float *Wt, int n, int C,
                 int OC, int alone, float *yt) {
    if (alone) {
        matvec(out, x, W, C, OC);
        return;
    }
    if (Wt) {
        matmul_nn(out, x, C, 1, Wt, OC, 1, n, C, OC, 0);  // out (n, OC) = x (n, C) @ Wt (C, OC)
        return;
    }
    matmul_nn(yt, W, C, 1, x, 1, C, OC, C, n, 0);  // yt (OC, n)
    for (int i = 0; i < n; i++)
        for (int o = 0; o < OC; o++) out[(size_t)i * OC + o] = yt[(size_t)o * n + i];
}

// y (n, D) = SwiGLU(x) = down(silu(gate(x)) * up(x)) for n rows, hidden width I, the products
// by linear_rows; g, u (n, I) and yt scratch.
void swiglu_rows(float *y, const float *x, const float *Wg, const float *Wu, const float *Wd,
                 const float *const Wt[3], int n, int D, int I, int alone, float *g, float *u,
                 float *yt) {
    linear_rows(g, x, Wg, Wt[0], n, D, I, alone, yt);
    linear_rows(u, x, Wu, Wt[1], n, D, I, alone, yt);
    for (size_t i = 0; i < (size_t)n * I; i++) g[i] = silu(g[i]) * u[i];
    linear_rows(y, g, Wd, Wt[2], n, I, D, alone, yt);
}

// The attention of a decoded token over its sequence's cache (r1.c, mla_decode_attend) is two
// kinds of short sums per cached position: a score, a dot product of dot_lanes' order, and the
// position's share of the weighted sum of cache rows. Position by position, each ends in a
// reduction or a chain of dependent adds that keeps the core waiting. The two kernels below do
// the same arithmetic, in the same order, for several positions or several heads side by side.

// A vector of 8 floats: the 8 lanes of dot_lanes.
static inline lanes8 lanes8_load(const float *p) {
    lanes8 v;
    memcpy(&v, p, sizeof(v));
    return v;
}

// The 8 lanes of dot_lanes(x, row r, n) before their final additions, for 8 rows r `stride`
// floats apart (n a multiple of 8): lane l of row r sums x[c] row_r[c] over c = l, l+8, ... in
// order, a multiply and an add per term. The 8 rows' lanes stay in registers, and each 8 floats
// of x are loaded once for all of them.
static inline void dot_lane_sums_8(lanes8 lanes[8], const float *x, const float *rows,
                                   size_t stride, int n) {
    for (int r = 0; r < 8; r++) lanes[r] = (lanes8){0};
    for (int c = 0; c < n; c += 8) {
        lanes8 xc = lanes8_load(x + c);
        for (int r = 0; r < 8; r++) lanes[r] += xc * lanes8_load(rows + (size_t)r * stride + c);
    }
}

// The first level of add_lanes' tree for two rows' lanes a and b, in one vector:
// (a0+a1, a2+a3, b0+b1, b2+b3, a4+a5, a6+a7, b4+b5, b6+b7) (the order of the x86 `vhaddps`).
static inline lanes8 pair_sums(lanes8 a, lanes8 b) {
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}

// add_lanes of 8 rows' lanes at once: lane r of the result is add_lanes(v[r]), the same tree
// ((l0+l1) + (l2+l3)) + ((l4+l5) + (l6+l7)), run for 8 rows by 7 vector additions and their
// shuffles instead of 8 x 7 scalar ones.
static inline lanes8 add_lanes_of_8(const lanes8 v[8]) {
    // q0123 = (r0 l0123, r1 l0123, r2 l0123, r3 l0123, r0 l4567, r1 l4567, r2 l4567, r3 l4567)
    lanes8 q0123 = pair_sums(pair_sums(v[0], v[1]), pair_sums(v[2], v[3]));
    lanes8 q4567 = pair_sums(pair_sums(v[4], v[5]), pair_sums(v[6], v[7]));
    return __builtin_shufflevector(q0123, q4567, 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(q0123, q4567, 4, 5, 6, 7, 12, 13, 14, 15);
}

// out[j] = dot_lanes(x, row j, n) for the m rows, `stride` floats apart, as the same floats
// (test_dot_lanes_rows_is_dot_lanes). When n is a multiple of 8 (dot_lanes then has no lone
// terms: its result is 0 + the tree), 8 rows go together: their lanes side by side, then the
// tree for all 8 (add_lanes_of_8). The rest, one by one with dot_lanes.
void dot_lanes_rows(float *out, const float *x, const float *rows, size_t stride, int n, int m) {
    int j = 0;
    if (n % 8 == 0)
        for (; j + 8 <= m; j += 8) {
            lanes8 lanes[8];
            dot_lane_sums_8(lanes, x, rows + (size_t)j * stride, stride, n);
            lanes8 dots = (lanes8){0} + add_lanes_of_8(lanes);  // dot_lanes' 0 + tree
            memcpy(out + j, &dots, sizeof(dots));
        }
    for (; j < m; j++) out[j] = dot_lanes(x, rows + (size_t)j * stride, n);
}

// How many weight vectors weighted_row_sums takes in one pass over the rows: with 32 columns,
// 4 x 32 sums (8 AVX-512 registers, 16 AVX2 ones) in flight.
#define ROW_SUM_WEIGHTS 4
#define ROW_SUM_VECS (32 / VEC_FLOATS)  // 32 columns as vector registers

// Columns i0 .. i0+31 of weighted_row_sums for nw (<= ROW_SUM_WEIGHTS) weight vectors. Called
// with a constant nw, the accumulators stay in registers for the whole sum over j.
static inline void weighted_row_sums_32(float *out, size_t ldo, const float *w, size_t ldw,
                                        const int nw, const float *rows, size_t stride, int m) {
    vec acc[ROW_SUM_WEIGHTS][ROW_SUM_VECS];
    for (int h = 0; h < nw; h++)
        for (int v = 0; v < ROW_SUM_VECS; v++) acc[h][v] = (vec){0};
    for (int j = 0; j < m; j++) {
        vec row[ROW_SUM_VECS];  // row j's 32 columns, read once for every weight vector
        for (int v = 0; v < ROW_SUM_VECS; v++)
            row[v] = vec_load(rows + (size_t)j * stride + v * VEC_FLOATS);
        for (int h = 0; h < nw; h++)
            for (int v = 0; v < ROW_SUM_VECS; v++) acc[h][v] += w[(size_t)h * ldw + j] * row[v];
    }
    for (int h = 0; h < nw; h++)
        for (int v = 0; v < ROW_SUM_VECS; v++)
            vec_store(out + (size_t)h * ldo + v * VEC_FLOATS, acc[h][v]);
}

// Columns i0 .. i0+7 of weighted_row_sums for one weight vector w (the columns past the last
// whole 32), in one 8-float vector; and a last column alone.
static void weighted_row_sums_8(float *out, const float *w, const float *rows, size_t stride,
                                int m) {
    lanes8 acc = {0};
    for (int j = 0; j < m; j++) acc += w[j] * lanes8_load(rows + (size_t)j * stride);
    memcpy(out, &acc, sizeof(acc));
}
static float weighted_row_sums_1(const float *w, const float *rows, size_t stride, int m) {
    float acc = 0.0f;
    for (int j = 0; j < m; j++) acc += w[j] * rows[(size_t)j * stride];
    return acc;
}

// out_h (n) = sum over j < m of w_h[j] * row j, for nw weight vectors w_h = w + h * ldw, into
// out_h = out + h * ldo; the rows are n floats long, `stride` apart. Each out_h[i] is
// 0 + w_h[0] row0[i] + w_h[1] row1[i] + ..., j in order, a multiply and an add per term: the
// plain loop's floats (test_weighted_row_sums_is_the_plain_loop). A column's sum is a chain of
// dependent additions, so the speed comes from running many chains side by side: 32 columns of
// ROW_SUM_WEIGHTS weight vectors at a time (the heads of one token attend over the same cache
// rows, which are then read once for all of them). The columns past the last 32: 8, then 1 at
// a time, for each weight vector.
void weighted_row_sums(float *out, size_t ldo, const float *w, size_t ldw, int nw,
                       const float *rows, size_t stride, int m, int n) {
    for (int h0 = 0; h0 < nw; h0 += ROW_SUM_WEIGHTS) {
        int hn = nw - h0 < ROW_SUM_WEIGHTS ? nw - h0 : ROW_SUM_WEIGHTS;
        int i0 = 0;
        for (; i0 + 32 <= n; i0 += 32) {
            float *o = out + (size_t)h0 * ldo + i0;
            const float *wh = w + (size_t)h0 * ldw;
            if (hn == ROW_SUM_WEIGHTS)
                weighted_row_sums_32(o, ldo, wh, ldw, ROW_SUM_WEIGHTS, rows + i0, stride, m);
            else
                for (int h = 0; h < hn; h++)
                    weighted_row_sums_32(o + (size_t)h * ldo, ldo, wh + (size_t)h * ldw, ldw, 1,
                                         rows + i0, stride, m);
        }
        for (int h = h0; h < h0 + hn; h++) {
            float *o = out + (size_t)h * ldo;
            const float *wh = w + (size_t)h * ldw;
            int i = i0;
            for (; i + 8 <= n; i += 8) weighted_row_sums_8(o + i, wh, rows + i, stride, m);
            for (; i < n; i++) o[i] = weighted_row_sums_1(wh, rows + i, stride, m);
        }
    }
}

// ==============================================================================================
// 5. The machine's peak: what `./r1 bench` measures the training step against
// ==============================================================================================

// FMA_CHAINS independent chains acc = c + x * acc, each a whole vector register, advanced once
// per round: every instruction of the loop is a fused multiply-add on registers, with no loads,
// and there are enough independent chains (16) to cover the instruction's latency (4 cycles)
// on two pipes. So one thread running it does the most arithmetic its core can do in float32.
#define FMA_CHAINS 16
// Runs `rounds` rounds on the calling thread; *flops gets the floating-point operations done (2
// per lane and multiply-add). Returns a sum of the chains, for the caller to keep (so that the
// compiler cannot drop the loop).
float fma_peak_loop(long rounds, double *flops) {
    vec acc[FMA_CHAINS], c;
    for (int l = 0; l < VEC_FLOATS; l++) c[l] = 1e-3f;
    for (int j = 0; j < FMA_CHAINS; j++)
        for (int l = 0; l < VEC_FLOATS; l++) acc[j][l] = 1.0f + 0.01f * (float)j;
    for (long i = 0; i < rounds; i++)
        for (int j = 0; j < FMA_CHAINS; j++) acc[j] = vec_fma(0.999f, acc[j], c);
    float sum = 0.0f;
    for (int j = 0; j < FMA_CHAINS; j++)
        for (int l = 0; l < VEC_FLOATS; l++) sum += acc[j][l];
    *flops = 2.0 * (double)rounds * FMA_CHAINS * VEC_FLOATS;
    return sum;
}

// ==============================================================================================
// 6. Turns: the order in which the shares of a batch add to the weight gradients
// ==============================================================================================
// With sequences side by side (r1.c, section 4), each thread takes a share of the batch through
// the whole backward. The calls that add to weight gradients are its turns: the same ones in the
// same order for every share, and share p takes turn i only after share p-1 has finished it, so
// every gradient still sums its rows in token order. Layer by layer (m->grad_order NULL) there
// is nothing to wait for.

// Before a call that adds to weight gradients: wait until the share before has made this turn.
// Spins briefly, then gives the core away (the share before may be on a descheduled thread).
// A share that waits a minute has met a bug (shares that made different turns would wait
// forever): it stops the program with a line rather than hang.
void grad_turn_wait(const Model *m) {
    const GradOrder *o = m->grad_order;
    if (!o) return;
    double since = 0.0;
    for (int spins = 0;
         atomic_load_explicit(&o->done[o->next], memory_order_acquire) < o->share; spins++) {
        if (spins < 1000) continue;
        sched_yield();
        if (spins % 100000 != 0) continue;
        if (since == 0.0) since = now_seconds();
        else if (now_seconds() - since > 60.0)
            die("backward: share %d waited a minute for turn %d (shares made different turns)",
                o->share, o->next);
    }
}

// After it: the turn is made, and the share after may take it.
void grad_turn_done(Model *m) {
    GradOrder *o = m->grad_order;
    if (!o) return;
    if (o->next + 1 >= o->turns) die("grad_turn_done: more turns than the %d counted", o->turns);
    atomic_store_explicit(&o->done[o->next], o->share + 1, memory_order_release);
    o->next++;
}

// matmul_backward with the weight gradient in a turn: the input gradient first (the share's own
// rows: no wait), then dW. The same floats as matmul_backward.
void matmul_backward_turn(Model *m, float *dinp, float *dW, const float *dout, const float *inp,
                          const float *W, int N, int C, int OC, int accumulate) {
    matmul_backward(dinp, NULL, dout, inp, W, N, C, OC, accumulate);
    grad_turn_wait(m);
    matmul_backward(NULL, dW, dout, inp, W, N, C, OC, accumulate);
    grad_turn_done(m);
}

// rmsnorm_backward in a turn: its input gradient and dw come out of the same passes, so the
// whole call is the turn (a norm is small).
void rmsnorm_backward_turn(Model *m, float *dinp, float *dw, const float *dout, const float *inp,
                           int stride, const float *w, const float *rstd, int N, int C,
                           int accumulate) {
    grad_turn_wait(m);
    rmsnorm_backward(dinp, dw, dout, inp, stride, w, rstd, N, C, accumulate);
    grad_turn_done(m);
}

// swiglu_backward with the three weight gradients in one turn, after the input gradient (which
// leaves dg in dh and du in dgu: swiglu_backward's contract with NULL weight gradients).
void swiglu_backward_turn(Model *m, float *dx, float *dWg, float *dWu, float *dWd,
                          const float *dout, const float *x, const float *Wg, const float *Wu,
                          const float *Wd, const float *g, const float *u, const float *h, int N,
                          int D, int I, float *dh, float *dgu, int accumulate) {
    swiglu_backward(dx, NULL, NULL, NULL, dout, x, Wg, Wu, Wd, g, u, h, N, D, I, dh, dgu,
                    accumulate);
    grad_turn_wait(m);
    matmul_backward(NULL, dWd, dout, h, Wd, N, I, D, 0);  // dWd += dout^T h
    matmul_backward(NULL, dWg, dh, x, Wg, N, D, I, 0);    // dWg += dg^T x
    matmul_backward(NULL, dWu, dgu, x, Wu, N, D, I, 0);   // dWu += du^T x
    grad_turn_done(m);
}
