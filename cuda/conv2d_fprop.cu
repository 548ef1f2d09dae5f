// conv2d_fprop.cu — forward 2-D convolution (as in deep learning: a cross-correlation,
// the filter is not flipped), with the bias fused:
//
//   y[n, k, p, q] = b[k] + sum_{c, r, s} x[n, g*C/groups + c, p*stride_h - pad_h + r*dilation_h,
//                                                             q*stride_w - pad_w + s*dilation_w]
//                                        * w[k, c, r, s]
//
//   where g = k / (K/groups) is k's group and c runs over that group's C/groups channels;
//   x elements outside the input (the zero padding) contribute nothing.
//
// Layouts (all C-contiguous): x (N, C, H, W), w (K, C/groups, R, S), b (K,), y (N, K, P, Q).
// pad_h / pad_w are the top / left padding; the bottom / right padding (which may differ, e.g.
// padding='same' with an even kernel) only shows in P and Q, which the caller computes.
// T is float, double or __half; sums are carried in accumulator<T>::type (float for __half).
//
// Kernels:
//   conv2d_fprop_v1_direct<T>  one thread per y element, a grid-stride loop over N*K*P*Q;
//                              each thread walks its group's C/groups x R x S window straight
//                              from global memory. Simple and right for every geometry
//                              (stride, asymmetric padding, dilation, groups, depthwise); no
//                              data reuse through shared memory, so it is memory-bound.
//   conv2d_fprop_v2_implicit_gemm<T, CFG = 0>
//                              implicit GEMM on CUDA cores: GEMM rows m = (n, p, q) (M = N*P*Q),
//                              columns = the group's filters (K/groups), reduction (c, r, s)
//                              (C/groups*R*S); the im2col matrix is never built, its tiles are
//                              gathered from x into shared memory. Block tile BM x BN x BK
//                              (128 x 64 x 8), register tile TM x TN (8 x 4) per thread,
//                              double-buffered shared memory (common.cuh: gemm_mainloop); other
//                              tiles through the CFG template argument (GemmV2Config), one
//                              group per grid z. Every geometry works (partial tiles are
//                              guarded), but a group with few filters wastes most of a BN-wide
//                              tile: kernels.py keeps v1 for depthwise and tiny problems.
//                              Limits: C/groups*R*S < 2^31, groups <= 65535 (grid z).
//   conv2d_fprop_v3_mma<__half>, <__nv_bfloat16>
//                              the same implicit GEMM on tensor cores: 16-bit operands in
//                              shared memory, ldmatrix + mma.sync.m16n8k16 (fp32
//                              accumulation), 128 x 64 x 32 block tiles of 8 warps (32 x 32
//                              each), cp.async for the filter tiles, double buffering, a
//                              coalesced epilogue through shared memory. sm_80+ runs the PTX;
//                              the CPU runtime and sm_75 run mma.cuh's shuffle emulation of the
//                              same per-lane layouts. 16-bit types; same limits as v2.
//   conv2d_fprop_v3_mma<float> the same GEMM on TF32 tensor cores (mma.sync m16n8k8, tiles
//                              128 x 64 x 16): an opt-in precision trade (kernels.allow_tf32).
//   conv2d_fprop_v4_nhwc_mma<T> v3's GEMM on channels-last tensors (x NHWC, w KRSC, y NHWC):
//                              the reduction is channel-innermost, so the x tile is copied by
//                              cp.async in 16-byte pieces like the filter tile. T as v3.
//   conv2d_fprop_v5_nhwc_wgmma<T16, CFG = 0>
//                              v4 on Hopper's wgmma (sm_90a; emulated elsewhere), both
//                              operands from shared memory; CFG 1: 128 x 128 tiles
//                              (m64n128k16). __half and __nv_bfloat16.

#include "common.cuh"
#include "mma.cuh"

// Tile sizes (defaults; -D overrides must keep kernels.py's FPROP_V2 mirror in step).
#ifndef FPROP_V2_BM
#define FPROP_V2_BM 128  // output pixels (GEMM rows) per block
#endif
#ifndef FPROP_V2_BN
#define FPROP_V2_BN 64   // filters (GEMM columns) per block
#endif
#ifndef FPROP_V2_BK
#define FPROP_V2_BK 8    // reduction steps (c, r, s) per shared-memory stage
#endif
#ifndef FPROP_V2_TM
#define FPROP_V2_TM 8    // GEMM rows per thread (register tile)
#endif
#ifndef FPROP_V2_TN
#define FPROP_V2_TN 4    // GEMM columns per thread
#endif
#ifndef FPROP_V2_MIN_BLOCKS
#define FPROP_V2_MIN_BLOCKS 2  // resident blocks per SM the register budget must allow
#endif

template <typename T>
__global__ void conv2d_fprop_v1_direct(const T* __restrict__ x, const T* __restrict__ w,
                                       const T* __restrict__ b, int has_bias, T* __restrict__ y,
                                       int N, int C, int H, int W, int K, int R, int S, int P,
                                       int Q, int pad_h, int pad_w, int stride_h, int stride_w,
                                       int dilation_h, int dilation_w, int groups) {
    typedef typename accumulator<T>::type Acc;
    const int C_per_group = C / groups;
    const int K_per_group = K / groups;
    const long long y_count = (long long)N * K * P * Q;

    // Grid-stride loop: the grid may hold fewer threads than y has elements (kernels.py caps
    // the grid); consecutive threads take consecutive q, so y stores are coalesced.
    for (long long i = grid_first_index(); i < y_count; i += grid_stride()) {
        long long n, k, p, q;
        split4(i, K, P, Q, n, k, p, q);
        const long long c_first = (k / K_per_group) * C_per_group;  // first channel of k's group
        const long long h_first = p * stride_h - pad_h;             // window's top-left in x
        const long long w_first = q * stride_w - pad_w;             //   (may lie in the padding)

        Acc acc = 0;
        for (int c = 0; c < C_per_group; ++c) {
            for (int r = 0; r < R; ++r) {
                const long long h = h_first + (long long)r * dilation_h;
                // Rows above or below the input are zero padding: they add nothing.
                if (h < 0 || h >= H) continue;
                for (int s = 0; s < S; ++s) {
                    const long long wi = w_first + (long long)s * dilation_w;
                    // Columns left or right of the input are zero padding.
                    if (wi < 0 || wi >= W) continue;
                    acc += to_acc(x[offset4(n, c_first + c, h, wi, C, H, W)]) *
                           to_acc(w[offset4(k, c, r, s, C_per_group, R, S)]);
                }
            }
        }
        // b may be a 1-element dummy when there is no bias: read it only when has_bias.
        if (has_bias) acc += to_acc(b[k]);
        y[i] = from_acc<T>(acc);
    }
}

// ---------------------------------------------------------------------------------------
// v2: implicit GEMM.

// Operand A, BK x BM: the im2col matrix of x, A[(c, r, s)][(n, p, q)] =
// x[n, g*Cg + c, p*stride_h - pad_h + r*dilation_h, q*stride_w - pad_w + s*dilation_w].
// Thread t fetches GEMM row m_local = t % BM (fixed for the whole loop) and reduction rows
// t / BM + i*(THREADS/BM): consecutive threads take consecutive output pixels, i.e.
// consecutive q, so with stride 1 a warp reads 32 consecutive x elements (coalesced), and
// writes 32 consecutive shared-memory words (no bank conflict).
template <typename T, typename Acc, int BM, int BK, int THREADS>
struct FpropXLoader {
    enum { LOADS = BM * BK / THREADS, KK_STEP = THREADS / BM };
    static_assert(THREADS % BM == 0 && (BM * BK) % THREADS == 0, "A tile split");
    const T* x_group;  // x + (n*C + g*Cg)*H*W: this thread's image and group
    bool row_valid;    // m < M: rows past the end of the last tile load zeros
    int m_local, kk_local;
    int h_first, w_first;  // top-left of this output pixel's window (may be padding)
    int H, W, R, S, dilation_h, dilation_w, Kgemm;
    int kk[LOADS], c[LOADS], r[LOADS], s[LOADS];  // reduction index per slot, and its digits
    MixedRadix3 step;                             // BK as (c, r, s) digits

    __device__ __forceinline__ void init(const T* x, long long m, long long M, int C, int Cg,
                                         int g, int H_, int W_, int R_, int S_, int P, int Q,
                                         int pad_h, int pad_w, int stride_h, int stride_w,
                                         int dil_h, int dil_w, int tid) {
        H = H_; W = W_; R = R_; S = S_; dilation_h = dil_h; dilation_w = dil_w;
        Kgemm = Cg * R * S;
        m_local = tid % BM;
        kk_local = tid / BM;
        row_valid = m < M;
        const long long mm = row_valid ? m : 0;  // a valid pixel's indices for rows past M
        const long long n = mm / ((long long)P * Q);
        const int pq = (int)(mm - n * P * Q);
        h_first = (pq / Q) * stride_h - pad_h;
        w_first = (pq % Q) * stride_w - pad_w;
        x_group = x + ((long long)n * C + (long long)g * Cg) * H * W;
        step = mixed_radix_step(BK, R, S);
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            kk[i] = kk_local + i * KK_STEP;
            c[i] = kk[i] / (R * S);
            r[i] = (kk[i] / S) % R;
            s[i] = kk[i] % S;
        }
    }
    __device__ __forceinline__ void load(Acc (&regs)[LOADS]) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const int h = h_first + r[i] * dilation_h;
            const int wi = w_first + s[i] * dilation_w;
            // Guards: rows past M, reduction steps past C/groups*R*S (the last partial tile),
            // and taps in the zero padding all contribute zero.
            const bool inside = row_valid && kk[i] < Kgemm && h >= 0 && h < H && wi >= 0 && wi < W;
            regs[i] = inside ? to_acc(x_group[((long long)c[i] * H + h) * W + wi]) : Acc(0);
            kk[i] += BK;
            advance_by_step(step, R, S, c[i], r[i], s[i]);
        }
    }
    __device__ __forceinline__ void store(const Acc (&regs)[LOADS], Acc* tile) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) tile[(kk_local + i * KK_STEP) * (BM + SMEM_PAD) + m_local] = regs[i];
    }
};

// Operand B, BK x BN: the filters, B[(c, r, s)][k] = w[g*Kg + k, c, r, s], i.e. row k of w
// (flattened over c, r, s) is column k of B. Thread t fetches reduction row t % BK and filter
// columns t / BK + i*(THREADS/BK): consecutive threads read consecutive (c, r, s) of one
// filter, contiguous in w (coalesced in groups of BK). The shared rows are padded by SMEM_PAD
// so that the BK threads writing one column hit different banks.
template <typename T, typename Acc, int BN, int BK, int THREADS>
struct FpropWLoader {
    enum { LOADS = BN * BK / THREADS, COL_STEP = THREADS / BK };
    static_assert(THREADS % BK == 0 && (BN * BK) % THREADS == 0, "B tile split");
    const T* w_first;  // w + (g*Kg + first filter of the block)*Kgemm
    int kk, kk_local, col_local, Kgemm, columns;  // columns: filters left in this tile

    __device__ __forceinline__ void init(const T* w, int k_first, int Kg_left, int Kgemm_,
                                         int tid) {
        Kgemm = Kgemm_;
        kk_local = tid % BK;
        col_local = tid / BK;
        kk = kk_local;
        columns = Kg_left;
        w_first = w + (long long)k_first * Kgemm;
    }
    __device__ __forceinline__ void load(Acc (&regs)[LOADS]) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const int col = col_local + i * COL_STEP;
            // Guards: filters past the group's last (partial column tile) and reduction steps
            // past the end (partial last tile) load zero.
            regs[i] = (col < columns && kk < Kgemm) ? to_acc(w_first[(long long)col * Kgemm + kk])
                                                    : Acc(0);
        }
        kk += BK;
    }
    __device__ __forceinline__ void store(const Acc (&regs)[LOADS], Acc* tile) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i)
            tile[kk_local * (BN + SMEM_PAD) + col_local + i * COL_STEP] = regs[i];
    }
};

// Grid: x = GEMM row tiles (ceil(N*P*Q / BM)), y = filter tiles (ceil(K/groups / BN)),
// z = groups. Block: Tiles::THREADS threads (1-D).
// CFG: the tile configuration (common.cuh: GemmV2Config; 0 = the FPROP_V2_* defaults).
template <int CFG>
using FpropV2Tiles = GemmV2Config<CFG, GemmV2Tiles<FPROP_V2_BM, FPROP_V2_BN, FPROP_V2_BK, FPROP_V2_TM,
                                                  FPROP_V2_TN, FPROP_V2_MIN_BLOCKS>>;
template <typename T, int CFG = 0>
__global__ void __launch_bounds__(FpropV2Tiles<CFG>::THREADS, FpropV2Tiles<CFG>::MIN_BLOCKS)
conv2d_fprop_v2_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w,
                              const T* __restrict__ b, int has_bias, T* __restrict__ y, int N,
                              int C, int H, int W, int K, int R, int S, int P, int Q, int pad_h,
                              int pad_w, int stride_h, int stride_w, int dilation_h,
                              int dilation_w, int groups) {
    typedef typename accumulator<T>::type Acc;
    typedef FpropV2Tiles<CFG> Tiles;
    constexpr int BM = Tiles::BM, BN = Tiles::BN, BK = Tiles::BK;
    constexpr int TM = Tiles::TM, TN = Tiles::TN, THREADS = Tiles::THREADS;
    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long PQ = (long long)P * Q;
    const long long M = (long long)N * PQ;
    const int Kgemm = Cg * R * S;
    const long long m_block = (long long)blockIdx.x * BM;
    const int k_block = blockIdx.y * BN;  // first filter of this tile, within the group
    const int tid = threadIdx.x;

    FpropXLoader<T, Acc, BM, BK, THREADS> a;
    a.init(x, m_block + tid % BM, M, C, Cg, g, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
           stride_w, dilation_h, dilation_w, tid);
    FpropWLoader<T, Acc, BN, BK, THREADS> bl;
    bl.init(w, g * Kg + k_block, Kg - k_block, Kgemm, tid);

    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0;
    gemm_mainloop<Acc, BM, BN, BK, TM, TN>(a, bl, 0, div_up(Kgemm, BK), acc);

    // Epilogue: y[n, g*Kg + k, p, q] = acc (+ b[k]). For each filter column, the 16 threads
    // with the same tx write 4 consecutive pixels each: 64 consecutive (p, q) of one plane
    // (coalesced). Guards: rows past M and filters past the group's end are not written.
    const int ty = tid % (BM / TM), tx = tid / (BM / TM);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const long long m = m_block + frag_index(ty, i, BM, TM);
        if (m >= M) continue;
        const long long n = m / PQ, pq = m - n * PQ;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int k = k_block + frag_index(tx, j, BN, TN);
            if (k >= Kg) continue;
            const int k_global = g * Kg + k;
            Acc v = acc[i][j];
            // b may be a 1-element dummy when there is no bias: read it only when has_bias.
            if (has_bias) v += to_acc(b[k_global]);
            y[(n * K + k_global) * PQ + pq] = from_acc<T>(v);
        }
    }
}

// ---------------------------------------------------------------------------------------
// v3: implicit GEMM on tensor cores (fp16 inputs, fp32 accumulation), mma.sync m16n8k16.
//
// The same GEMM as v2 (rows m = (n, p, q), columns = the group's filters, reduction
// kk = (c, r, s)), but the operands stay 16-bit all the way into the tensor cores:
//
//   block tile   BM x BN x BK = 128 x 64 x 32, 8 warps (256 threads) as 4 (along m) x 2
//                (along filters); each warp owns a WM x WN = 32 x 32 tile = 2 x 4 fragments
//                of m16n8, i.e. 8 mma.m16n8k16 per k16 step, 2 k16 steps per BK.
//   shared       A (the im2col tile of x) as a_smem[stage][m][kk] and B (filters) as
//                b_smem[stage][filter][kk]: both reduction-contiguous rows of BK + 8 halves
//                (80 bytes: the 8 rows an ldmatrix phase reads fall in 8 different 16-byte
//                bank groups, so no bank conflicts), two stages.
//   fragments    A: one ldmatrix.x4 per m16 fragment; its four 8x8 quarters (rows 0-7 /
//                8-15 x kk 0-7 / 8-15) land exactly as a[0..3] of the mma A layout (mma.cuh).
//                B: one ldmatrix.x4 per pair of n8 fragments; a filter row of b_smem is a
//                column of B, so the non-transposed load gives the "col" B layout b[0..1].
//   pipeline     double buffering as in v2: the next tile's x gathers are issued into
//                registers before the math and stored after it; the filter tile goes
//                global -> shared with cp.async (16 bytes, zero-filled outside the problem;
//                sm_80+, else a plain copy) when rows of w are 16-byte aligned
//                (C/groups*R*S % 8 == 0), else with guarded 16-bit loads. One barrier per tile.
//   epilogue     fp32 accumulators + bias, rounded to fp16 once, staged through shared
//                memory as [filter][pixel] so that each warp stores 32 consecutive pixels
//                of one output plane (coalesced).
//
// Every geometry works (partial tiles, padding, stride, dilation, groups: the loaders load
// zeros outside the problem, the epilogue writes only inside). Fixed reduction order (no
// split-K): deterministic. T: __half or __nv_bfloat16 (float: TF32 below). On sm_80+ the mma,
// ldmatrix and cp.async are the PTX instructions; on the CPU runtime and sm_75 their shuffle
// emulations (mma.cuh), which keep the per-lane fragment layout, so CI tests this kernel's
// fragment index math.

#ifndef FPROP_V3_BM
#define FPROP_V3_BM 128  // output pixels (GEMM rows) per block
#endif
#ifndef FPROP_V3_BN
#define FPROP_V3_BN 64   // filters (GEMM columns) per block
#endif
#ifndef FPROP_V3_BK
#define FPROP_V3_BK 32   // reduction steps per shared-memory stage (two k16 mma steps)
#endif
#ifndef FPROP_V3_WM
#define FPROP_V3_WM 32   // GEMM rows per warp (WM/16 m16 fragments)
#endif
#ifndef FPROP_V3_WN
#define FPROP_V3_WN 32   // GEMM columns per warp (WN/8 n8 fragments)
#endif
#ifndef FPROP_V3_MIN_BLOCKS
#define FPROP_V3_MIN_BLOCKS 2  // resident blocks per SM the register budget must allow
#endif
#ifndef FPROP_V3_MIN_BLOCKS_EMULATED
#define FPROP_V3_MIN_BLOCKS_EMULATED 1  // sm_75: the shuffle emulation needs more registers
#endif
#if GPUCONV_MMA_PTX
#define FPROP_V3_LAUNCH_MIN_BLOCKS FPROP_V3_MIN_BLOCKS
#else
#define FPROP_V3_LAUNCH_MIN_BLOCKS FPROP_V3_MIN_BLOCKS_EMULATED
#endif
#define FPROP_V3_THREADS ((FPROP_V3_BM / FPROP_V3_WM) * (FPROP_V3_BN / FPROP_V3_WN) * 32)

// float (TF32): the same GEMM, the same 8 warps, on tf32 tensor cores (mma.sync m16n8k8;
// mma.cuh's mma_tf32_gemm_mainloop). BK = 16 (two k8 steps): 32-bit tiles at BK = 32 would
// need more than 48 KB of static shared memory. Every operand is rounded to tf32 (to_tf32:
// nearest, ties away): x as it is gathered, w tiles copied by cp.async as their fragments are
// read (mma_tf32_gemm_mainloop). Each product is then within 2^-9 of exact:
// |error| <= 2^-9 * sum |x * w| plus fp32's summation error (gpuconv.checking.tf32_bound). The
// epilogue writes straight from the fragments: a float tile would not fit the A stages it
// reuses for 16-bit types. An opt-in precision trade (kernels.py: allow_tf32).
#ifndef FPROP_TF32_BK
#define FPROP_TF32_BK 16  // float: reduction steps per shared-memory stage (two k8 mma steps)
#endif

// Operand A of v3: thread t gathers GEMM row m_local = t % BM at the PER_THREAD consecutive
// reduction steps kk_local .. (kk_local = PER_THREAD * (t / BM); 16 halves or 8 floats: 32
// bytes) of every tile: a warp reads 32 consecutive output pixels per step (consecutive q:
// coalesced for stride 1), and each thread writes its words as two 16-byte shared stores.
template <typename T, int BM, int BK, int THREADS>
struct FpropV3XLoader {
    enum { PER_THREAD = BM * BK / THREADS, WORDS = mma_words(PER_THREAD, sizeof(T)),
           PITCH = BK + MmaTile<T>::skew };
    static_assert(BM * BK == THREADS * PER_THREAD && THREADS % BM == 0 && WORDS == 8,
                  "A tile split: 32 bytes per thread");
    const T* x_group;                 // x + (n*C + g*Cg)*H*W
    bool row_valid;
    int m_local, kk_local, kk_first;  // kk_first: reduction index of this thread's first slot
    int h_first, w_first, H, W, R, S, dilation_h, dilation_w, Kgemm;
    int c0, r0, s0;                   // digits (c, r, s) of kk_first
    MixedRadix3 step;                 // BK as (c, r, s) digits

    __device__ __forceinline__ void init(const T* x, long long m, long long M, int C, int Cg,
                                         int g, int H_, int W_, int R_, int S_, int P, int Q,
                                         int pad_h, int pad_w, int stride_h, int stride_w,
                                         int dil_h, int dil_w, int tid) {
        H = H_; W = W_; R = R_; S = S_; dilation_h = dil_h; dilation_w = dil_w;
        Kgemm = Cg * R * S;
        m_local = tid % BM;
        kk_local = (tid / BM) * PER_THREAD;
        kk_first = kk_local;
        row_valid = m < M;
        const long long mm = row_valid ? m : 0;  // rows past M read a valid pixel's indices
        const long long n = mm / ((long long)P * Q);
        const int pq = (int)(mm - n * P * Q);
        h_first = (pq / Q) * stride_h - pad_h;
        w_first = (pq % Q) * stride_w - pad_w;
        x_group = x + ((long long)n * C + (long long)g * Cg) * H * W;
        c0 = kk_first / (R * S);
        r0 = (kk_first / S) % R;
        s0 = kk_first % S;
        step = mixed_radix_step(BK, R, S);
    }
    __device__ __forceinline__ void load(unsigned (&regs)[WORDS]) {
        int c = c0, r = r0, s = s0;
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            const int h = h_first + r * dilation_h;
            const int wi = w_first + s * dilation_w;
            // Guards: rows past M, reduction steps past C/groups*R*S (the last partial tile),
            // and taps in the zero padding load +0.0 (bits 0).
            const bool inside = row_valid && kk_first + i < Kgemm && h >= 0 && h < H &&
                                wi >= 0 && wi < W;
            mma_put(regs, i, inside ? x_group[((long long)c * H + h) * W + wi] : T(), inside);
            if (++s == S) { s = 0; if (++r == R) { r = 0; ++c; } }  // kk + 1 as (c, r, s)
        }
        kk_first += BK;
        advance_by_step(step, R, S, c0, r0, s0);
    }
    __device__ __forceinline__ void store(const unsigned (&regs)[WORDS],
                                          typename MmaTile<T>::type* tile) {
        mma_store_words<PITCH>(regs, tile, m_local, kk_local);
    }
};

// Operand B of v3: the filter rows, (c, r, s)-contiguous: mma.cuh's MmaRowsLoader (cp.async
// 16-byte pieces where C/groups*R*S % (16 / sizeof(T)) == 0 and w is aligned).

// Grid: x = GEMM row tiles (ceil(N*P*Q / BM)), y = filter tiles (ceil(K/groups / BN)),
// z = groups. Block: FPROP_V3_THREADS threads (1-D).
template <typename T>
__global__ void __launch_bounds__(FPROP_V3_THREADS, FPROP_V3_LAUNCH_MIN_BLOCKS)
conv2d_fprop_v3_mma(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                    int has_bias, T* __restrict__ y, int N, int C, int H, int W, int K, int R,
                    int S, int P, int Q, int pad_h, int pad_w, int stride_h, int stride_w,
                    int dilation_h, int dilation_w, int groups) {
    constexpr bool TF32 = sizeof(T) == 4;
    static_assert(sizeof(T) == 2 || TF32, "conv2d_fprop_v3_mma: 16-bit types or float (TF32)");
    typedef typename MmaTile<T>::type E;  // shared-memory element: 16-bit bits or float
    constexpr int BM = FPROP_V3_BM, BN = FPROP_V3_BN, BK = TF32 ? FPROP_TF32_BK : FPROP_V3_BK;
    constexpr int WM = FPROP_V3_WM, WN = FPROP_V3_WN, THREADS = FPROP_V3_THREADS;
    static_assert(THREADS % BM == 0, "epilogue: one fixed pixel per thread");
    __shared__ __align__(16) E a_smem[2][BM][BK + MmaTile<T>::skew];
    __shared__ __align__(16) E b_smem[2][BN][BK + MmaTile<T>::skew];

    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long PQ = (long long)P * Q;
    const long long M = (long long)N * PQ;
    const int Kgemm = Cg * R * S;
    const long long m_block = (long long)blockIdx.x * BM;
    const int k_block = blockIdx.y * BN;  // first filter of this tile, within the group
    const int tid = threadIdx.x;

    FpropV3XLoader<T, BM, BK, THREADS> a;
    a.init(x, m_block + tid % BM, M, C, Cg, g, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
           stride_w, dilation_h, dilation_w, tid);
    MmaRowsLoader<T, BN, BK, THREADS> bl;
    bl.init(w, g * Kg + k_block, Kg - k_block, Kgemm, tid);

    float acc[WM / 16][WN / 8][4];
    mma_tile_product<T, BM, BN, BK, WM, WN>(a, bl, (int)div_up(Kgemm, BK), acc, a_smem,
                                            b_smem);
    if constexpr (TF32) {
        // Epilogue (float) straight from the fragments: y[pixel row][filter col] + bias.
        // Guards: pixels past M and filters past the group's end are not written.
        mma_each_element<BM, WM, WN>(acc, [&](int row, int col, float v) {
            const long long m = m_block + row;
            const int k = k_block + col;
            if (m >= M || k >= Kg) return;
            const long long n_img = m / PQ, pq = m - n_img * PQ;
            y[(n_img * K + g * Kg + k) * PQ + pq] = v + (has_bias ? b[g * Kg + k] : 0.0f);
        });
    } else {
        // Epilogue (16-bit): add the bias, round once, stage the tile as out[filter][pixel]
        // in shared memory (mma.cuh). b may be a 1-element dummy when there is no bias, and a
        // column may be past the group's last filter in a partial tile: b is read only for a
        // real filter.
        const T* out = mma_stage_tile<T, BM, BN, BK, WM, WN>(acc, a_smem, [&](int col) {
            const int k = k_block + col;
            return (has_bias && k < Kg) ? to_acc(b[g * Kg + k]) : 0.0f;
        });
        // Thread t stores pixel m_local = t % BM of filters t / BM, + THREADS / BM, ...: a
        // warp writes 32 consecutive pixels of one filter's plane (coalesced). Guards: pixels
        // past M and filters past the group's end are not written.
        const int m_local = tid % BM;
        const long long m = m_block + m_local;
        if (m < M) {
            const long long n_img = m / PQ, pq = m - n_img * PQ;
            T* y_pixel = y + n_img * K * PQ + pq;
#pragma unroll 4
            for (int n_local = tid / BM; n_local < BN; n_local += THREADS / BM) {
                const int k = k_block + n_local;
                if (k < Kg)
                    y_pixel[(long long)(g * Kg + k) * PQ] =
                        out[n_local * (BM + MMA_SMEM_SKEW) + m_local];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// v4: v3's tensor-core GEMM on channels-last (NHWC) tensors.
//
// Layouts (C-contiguous): x (N, H, W, C), w (K, R, S, C/groups), b (K,), y (N, P, Q, K): the
// order of PyTorch's channels_last tensors. (kernels.py converts NCHW arrays to it and back, a
// cost the benchmark counts; channels-last inputs run with no conversion.)
//
// The reduction runs kk = (r, s, c) with c innermost. 8 consecutive kk of one GEMM row (16
// bytes of halves; 4 floats) are then 8 consecutive channels of one input pixel: one aligned
// 16-byte vector of x. So the A tile is copied global -> shared by cp.async like the filter
// tile, with no register gather (v3 gathers every element: in NCHW, the next channel is H*W
// elements away), and the copies of the next tile overlap the math of this one. A piece in
// the zero padding, past the reduction or past the last pixel is a zero-filled copy.
// The 16-byte path needs C/groups % (16 / sizeof(T)) == 0 (every ResNet/VGG layer but the RGB
// stem) and a 16-byte aligned x; otherwise the same loader loads element by element (right,
// and slower). The filter tile is v3's loader over w's rows, which are (r, s, c)-ordered.
//
//   block tile   v3's: BM x BN x BK = 128 x 64 x 32 (TF32: x 16), 8 warps of 32 x 32.
//   A pieces     thread t copies piece t % (BK/8) of rows t / (BK/8) and + 64: four threads
//                fetch a row's 64 contiguous bytes.
//   epilogue     straight from the fragments (mma_each_element): a pixel's K outputs are
//                contiguous in y, and the 4 lanes of a fragment row write 8 consecutive
//                filters. Bias added in fp32, rounded once.
//
// Deterministic (fixed reduction order); same limits as v3. T: __half, __nv_bfloat16, float
// (TF32, the opt-in of v3).

// Operand A of v4: mma.cuh's MmaNhwcLoader, through this window: GEMM row m = output pixel
// (n, p, q); tap (r, s) reads input pixel (p*stride_h - pad_h + r*dilation_h, q*... s ...) of
// image n, the group's channels, or nothing in the zero padding.
struct FpropV4Window {
    struct Row {
        long long image;  // offset of x[n, 0, 0, g*Cg]; -1: the row is past the last pixel
        int h0, w0;       // the window's top-left input pixel (may be in the padding)
    };
    long long M, PQ;
    int C, H, W, Q, pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w, group_channel;

    __device__ __forceinline__ Row row(long long m) const {
        Row row;
        const long long n = m < M ? m / PQ : 0;
        const int pq = m < M ? (int)(m - n * PQ) : 0;
        row.image = m < M ? n * H * W * C + group_channel : -1;
        row.h0 = (pq / Q) * stride_h - pad_h;
        row.w0 = (pq % Q) * stride_w - pad_w;
        return row;
    }
    // Offset of the input pixel that tap (r, s) of the row reads (channel 0 of the group), or
    // -1 when it is in the padding (or the row is past M).
    __device__ __forceinline__ long long tap(const Row& row, int r, int s) const {
        const int h = row.h0 + r * dilation_h, wi = row.w0 + s * dilation_w;
        if (row.image < 0 || h < 0 || h >= H || wi < 0 || wi >= W) return -1;
        return row.image + ((long long)h * W + wi) * C;
    }
};

// The NHWC kernels' epilogue (v4, v5): y[pixel m][filter] = acc + bias, rounded once, for
// GEMM column col of the tile whose first filter (within group g) is k_block. Guards: pixels
// past M and filters past the group's end are not written (b may be a 1-element dummy: read
// for real filters only).
template <typename T> struct FpropNhwcStore {
    T* y;
    const T* b;
    int has_bias;
    long long M;
    int K, Kg, g, k_block;
    __device__ __forceinline__ void operator()(long long m, int col, float v) const {
        const int k = k_block + col;
        if (m >= M || k >= Kg) return;
        const int filter = g * Kg + k;
        y[m * K + filter] = from_acc<T>(v + (has_bias ? to_acc(b[filter]) : 0.0f));
    }
};

// Grid: x = GEMM row tiles (ceil(N*P*Q / BM)), y = filter tiles (ceil(K/groups / BN)),
// z = groups. Block: FPROP_V3_THREADS threads (1-D).
template <typename T>
__global__ void __launch_bounds__(FPROP_V3_THREADS, FPROP_V3_LAUNCH_MIN_BLOCKS)
conv2d_fprop_v4_nhwc_mma(const T* __restrict__ x, const T* __restrict__ w,
                         const T* __restrict__ b, int has_bias, T* __restrict__ y, int N, int C,
                         int H, int W, int K, int R, int S, int P, int Q, int pad_h, int pad_w,
                         int stride_h, int stride_w, int dilation_h, int dilation_w,
                         int groups) {
    constexpr bool TF32 = sizeof(T) == 4;
    static_assert(sizeof(T) == 2 || TF32, "conv2d_fprop_v4_nhwc_mma: 16-bit types or float");
    typedef typename MmaTile<T>::type E;
    constexpr int BM = FPROP_V3_BM, BN = FPROP_V3_BN, BK = TF32 ? FPROP_TF32_BK : FPROP_V3_BK;
    constexpr int WM = FPROP_V3_WM, WN = FPROP_V3_WN;
    static_assert((BM / WM) * (BN / WN) * 32 == FPROP_V3_THREADS, "v3's warps");
    __shared__ __align__(16) E a_smem[MMA_COPY_STAGES][BM][BK + MmaTile<T>::skew];
    __shared__ __align__(16) E b_smem[MMA_COPY_STAGES][BN][BK + MmaTile<T>::skew];

    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long M = (long long)N * P * Q;
    const int k_block = blockIdx.y * BN;  // first filter of this tile, within the group
    const FpropV4Window window{M, (long long)P * Q, C, H, W, Q, pad_h, pad_w, stride_h,
                               stride_w, dilation_h, dilation_w, g * Cg};
    // x's pixels times the filter rows g*Kg + k_block, ...
    mma_nhwc_gemm<T, BM, BN, BK, WM, WN>(x, window, Cg, R, S, w, g * Kg + k_block, Kg - k_block,
                                         a_smem, b_smem,
                                         FpropNhwcStore<T>{y, b, has_bias, M, K, Kg, g, k_block});
}

// ---------------------------------------------------------------------------------------
// v5: v4 on wgmma, the warpgroup MMA of sm_90a (Hopper): the same NHWC loaders and window,
// and (CFG 0) v4's tiles and grid, with the stages in wgmma's core-matrix layout (mma.cuh: WgmmaTile) and each
// of the two warpgroups multiplying its 64 rows of the 128 x 64 tile straight out of shared
// memory (wgmma.mma_async m64n64k16, both operands through descriptors: no ldmatrix, no A or
// B fragments in registers). CFG 1 (mma.cuh: WgmmaColumns): 128 x 128 tiles, m64n128k16.
// float16 / bfloat16 only. Off sm_90a (the CPU runtime, other GPUs) the wgmma is emulated with
// mma.m16n8k16 over the same shared-memory coordinates.
template <typename T, int CFG = 0>
__global__ void __launch_bounds__(FPROP_V3_THREADS, FPROP_V3_LAUNCH_MIN_BLOCKS)
conv2d_fprop_v5_nhwc_wgmma(const T* __restrict__ x, const T* __restrict__ w,
                           const T* __restrict__ b, int has_bias, T* __restrict__ y, int N,
                           int C, int H, int W, int K, int R, int S, int P, int Q, int pad_h,
                           int pad_w, int stride_h, int stride_w, int dilation_h,
                           int dilation_w, int groups) {
    static_assert(sizeof(T) == 2, "conv2d_fprop_v5_nhwc_wgmma: 16-bit types");
    constexpr int BM = FPROP_V3_BM, BN = WgmmaColumns<CFG, FPROP_V3_BN>::BN;
    constexpr int BK = FPROP_V3_BK;
    static_assert(BM / 64 * 128 == FPROP_V3_THREADS, "two warpgroups: v3's threads");
    __shared__ __align__(128) unsigned short a_smem[MMA_COPY_STAGES][BM * BK];
    __shared__ __align__(128) unsigned short b_smem[MMA_COPY_STAGES][BN * BK];

    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long M = (long long)N * P * Q;
    const int k_block = blockIdx.y * BN;  // first filter of this tile, within the group
    const FpropV4Window window{M, (long long)P * Q, C, H, W, Q, pad_h, pad_w, stride_h,
                               stride_w, dilation_h, dilation_w, g * Cg};
    wgmma_nhwc_gemm<T, BM, BN, BK>(x, window, Cg, R, S, w, g * Kg + k_block, Kg - k_block,
                                   a_smem, b_smem,
                                   FpropNhwcStore<T>{y, b, has_bias, M, K, Kg, g, k_block});
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv2d_fprop.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv2d_fprop_instance(int i) {
    void* const instances[] = {(void*)conv2d_fprop_v1_direct<__half>,
                               (void*)conv2d_fprop_v1_direct<__nv_bfloat16>,
                               (void*)conv2d_fprop_v1_direct<float>,
                               (void*)conv2d_fprop_v1_direct<double>,
                               (void*)conv2d_fprop_v2_implicit_gemm<__half>,
                               (void*)conv2d_fprop_v2_implicit_gemm<__half, 1>,
                               (void*)conv2d_fprop_v2_implicit_gemm<__half, 2>,
                               (void*)conv2d_fprop_v2_implicit_gemm<__nv_bfloat16>,
                               (void*)conv2d_fprop_v2_implicit_gemm<__nv_bfloat16, 1>,
                               (void*)conv2d_fprop_v2_implicit_gemm<__nv_bfloat16, 2>,
                               (void*)conv2d_fprop_v2_implicit_gemm<float>,
                               (void*)conv2d_fprop_v2_implicit_gemm<float, 1>,
                               (void*)conv2d_fprop_v2_implicit_gemm<float, 2>,
                               (void*)conv2d_fprop_v2_implicit_gemm<double>,
                               (void*)conv2d_fprop_v2_implicit_gemm<double, 1>,
                               (void*)conv2d_fprop_v2_implicit_gemm<double, 2>,
                               (void*)conv2d_fprop_v3_mma<__half>,
                               (void*)conv2d_fprop_v3_mma<__nv_bfloat16>,
                               (void*)conv2d_fprop_v3_mma<float>,
                               (void*)conv2d_fprop_v4_nhwc_mma<__half>,
                               (void*)conv2d_fprop_v4_nhwc_mma<__nv_bfloat16>,
                               (void*)conv2d_fprop_v4_nhwc_mma<float>,
                               (void*)conv2d_fprop_v5_nhwc_wgmma<__half>,
                               (void*)conv2d_fprop_v5_nhwc_wgmma<__half, 1>,
                               (void*)conv2d_fprop_v5_nhwc_wgmma<__nv_bfloat16>,
                               (void*)conv2d_fprop_v5_nhwc_wgmma<__nv_bfloat16, 1>};
    return instances[i];
}
#endif
