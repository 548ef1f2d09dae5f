// conv2d_dgrad.cu — gradient of conv2d (a cross-correlation) with respect to its input:
//
//   dx[n, c, h, w] = sum over (k, r, s) with  h = p*stride_h - pad_h + r*dilation_h  and
//                                             w = q*stride_w - pad_w + s*dilation_w
//                    for some output position 0 <= p < P, 0 <= q < Q of
//                        dy[n, k, p, q] * w[k, c - g*C/groups, r, s]
//
//   where g = c / (C/groups) is c's group and k runs over that group's K/groups filters.
//   With stride 1 this is the "full convolution of dy with the filter rotated 180 degrees"
//   of the source documents; with stride > 1 only the (r, s) taps for which
//   (h + pad_h - r*dilation_h) is a multiple of stride_h contribute.
//
// Layouts (all C-contiguous): dy (N, K, P, Q), w (K, C/groups, R, S), dx (N, C, H, W).
// pad_h / pad_w are the top / left padding of the forward pass; H and W are given (several
// input sizes give the same P, Q when stride > 1, which is why the caller passes them).
// T is float, double or __half; sums are carried in accumulator<T>::type (float for __half).
//
// Kernels:
//   conv2d_dgrad_v1_direct<T>  one thread per dx element, a grid-stride loop over N*C*H*W;
//                              each thread gathers every (k, r, s) term that reaches its
//                              element, in a fixed order: deterministic, no atomics. Right for
//                              every geometry; no shared-memory reuse, so it is memory-bound
//                              and with stride > 1 most (r, s) taps are skipped.
//   conv2d_dgrad_v2_implicit_gemm<T, CFG = 0>
//                              implicit GEMM on CUDA cores, as a gather: GEMM rows m = (n, h, w)
//                              (M = N*H*W), columns = the group's channels (C/groups), reduction
//                              (k, r, s) (K/groups*R*S). A tile element is dy[n, k, p, q] for the
//                              output position p = (h + pad_h - r*dilation_h) / stride_h (and q
//                              likewise) when that division is exact and in range, else zero; so
//                              every dx element is one thread's fixed-order sum: deterministic,
//                              no atomics. Tiles as fprop v2 (128 x 64 x 8, 8 x 4 per thread,
//                              double-buffered; common.cuh: gemm_mainloop; other tiles through
//                              the CFG template argument, GemmV2Config), one group per grid z.
//                              Limits: with stride s > 1 about (1 - 1/s^2) of the reduction
//                              multiplies zeros (no per-phase decomposition yet); kernels.py
//                              keeps v1 for depthwise and tiny problems; K/groups*R*S < 2^31,
//                              groups <= 65535.
//   conv2d_dgrad_v3_mma<__half>
//                              v2's gather on tensor cores: ldmatrix + mma.sync.m16n8k16
//                              (fp32 accumulation) through mma.cuh's mainloop, the tiles of
//                              conv2d_fprop_v3_mma (128 x 64 x 32, 8 warps of 32 x 32); w
//                              by guarded 16-bit loads (not contiguous along (k, r, s)).
//                              sm_80+ runs the PTX, the CPU runtime and sm_75 the shuffle
//                              emulation. __half, __nv_bfloat16 and float (TF32, an
//                              opt-in); same limits as v2.
//   conv2d_dgrad_v4_nhwc_mma<T> v3's GEMM on channels-last tensors (dy NHWC, dx NHWC, the
//                              filters transposed to (C, R, S, K/groups)): both tiles copied
//                              by cp.async in 16-byte pieces (MmaNhwcLoader, MmaRowsLoader).
//   conv2d_dgrad_v5_nhwc_wgmma<T16, CFG = 0>
//                              v4 on Hopper's wgmma (sm_90a; emulated elsewhere), as fprop v5;
//                              CFG 1: 128 x 128 tiles (m64n128k16). __half and __nv_bfloat16.

#include "common.cuh"
#include "mma.cuh"

// Tile sizes (defaults; -D overrides must keep kernels.py's DGRAD_V2 mirror in step).
#ifndef DGRAD_V2_BM
#define DGRAD_V2_BM 128  // input pixels (GEMM rows) per block
#endif
#ifndef DGRAD_V2_BN
#define DGRAD_V2_BN 64   // channels (GEMM columns) per block
#endif
#ifndef DGRAD_V2_BK
#define DGRAD_V2_BK 8    // reduction steps (k, r, s) per shared-memory stage
#endif
#ifndef DGRAD_V2_TM
#define DGRAD_V2_TM 8    // GEMM rows per thread (register tile)
#endif
#ifndef DGRAD_V2_TN
#define DGRAD_V2_TN 4    // GEMM columns per thread
#endif
#ifndef DGRAD_V2_MIN_BLOCKS
#define DGRAD_V2_MIN_BLOCKS 2  // resident blocks per SM the register budget must allow
#endif

template <typename T>
__global__ void conv2d_dgrad_v1_direct(const T* __restrict__ dy, const T* __restrict__ w,
                                       T* __restrict__ dx, int N, int C, int H, int W, int K,
                                       int R, int S, int P, int Q, int pad_h, int pad_w,
                                       int stride_h, int stride_w, int dilation_h,
                                       int dilation_w, int groups) {
    typedef typename accumulator<T>::type Acc;
    const int C_per_group = C / groups;
    const int K_per_group = K / groups;
    const long long dx_count = (long long)N * C * H * W;

    // Grid-stride loop over dx; consecutive threads take consecutive w, so dx stores are
    // coalesced.
    for (long long i = grid_first_index(); i < dx_count; i += grid_stride()) {
        long long n, c, h, wi;
        split4(i, C, H, W, n, c, h, wi);
        const long long group = c / C_per_group;
        const long long c_in_group = c - group * C_per_group;
        const long long k_first = group * K_per_group;  // first filter of c's group

        Acc acc = 0;
        for (int k = 0; k < K_per_group; ++k) {
            for (int r = 0; r < R; ++r) {
                // Output row p whose window tap r lands on row h: p*stride_h = h + pad_h - r*dil.
                const long long p_times_stride = h + pad_h - (long long)r * dilation_h;
                // Negative: tap r of every window lies above h. Not a multiple of the stride:
                // no window puts tap r on h. p >= P: that window does not exist.
                if (p_times_stride < 0 || p_times_stride % stride_h != 0) continue;
                const long long p = p_times_stride / stride_h;
                if (p >= P) continue;
                for (int s = 0; s < S; ++s) {
                    // The same three guards along the width.
                    const long long q_times_stride = wi + pad_w - (long long)s * dilation_w;
                    if (q_times_stride < 0 || q_times_stride % stride_w != 0) continue;
                    const long long q = q_times_stride / stride_w;
                    if (q >= Q) continue;
                    acc += to_acc(dy[offset4(n, k_first + k, p, q, K, P, Q)]) *
                           to_acc(w[offset4(k_first + k, c_in_group, r, s, C_per_group, R, S)]);
                }
            }
        }
        dx[i] = from_acc<T>(acc);
    }
}

// ---------------------------------------------------------------------------------------
// v2: implicit GEMM (gather form).

// Operand A, BK x BM: A[(k, r, s)][(n, h, w)] = dy[n, g*Kg + k, p, q] where tap (r, s) of
// output (p, q)'s window lands on (h, w), else 0. Thread t fetches GEMM row m_local = t % BM
// (fixed) and reduction rows t / BM + i*(THREADS/BM): consecutive threads take consecutive w,
// so with stride 1 a warp reads consecutive q of dy (coalesced) and writes consecutive
// shared-memory words.
template <typename T, typename Acc, int BM, int BK, int THREADS>
struct DgradDyLoader {
    enum { LOADS = BM * BK / THREADS, KK_STEP = THREADS / BM };
    static_assert(THREADS % BM == 0 && (BM * BK) % THREADS == 0, "A tile split");
    const T* dy_group;  // dy + (n*K + g*Kg)*P*Q: this thread's image and group
    bool row_valid;     // m < M: rows past the end of the last tile load zeros
    int m_local, kk_local;
    int h_padded, w_padded;  // h + pad_h, w + pad_w
    int P, Q, R, S, stride_h, stride_w, dilation_h, dilation_w, Kgemm;
    int kk[LOADS], k[LOADS], r[LOADS], s[LOADS];  // reduction index per slot, and its digits
    MixedRadix3 step;                             // BK as (k, r, s) digits

    __device__ __forceinline__ void init(const T* dy, long long m, long long M, int K, int Kg,
                                         int g, int H, int W, int R_, int S_, int P_, int Q_,
                                         int pad_h, int pad_w, int str_h, int str_w,
                                         int dil_h, int dil_w, int tid) {
        P = P_; Q = Q_; R = R_; S = S_; stride_h = str_h; stride_w = str_w;
        dilation_h = dil_h; dilation_w = dil_w;
        Kgemm = Kg * R * S;
        m_local = tid % BM;
        kk_local = tid / BM;
        row_valid = m < M;
        const long long mm = row_valid ? m : 0;  // a valid pixel's indices for rows past M
        const long long n = mm / ((long long)H * W);
        const int hw = (int)(mm - n * H * W);
        h_padded = hw / W + pad_h;
        w_padded = hw % W + pad_w;
        dy_group = dy + ((long long)n * K + (long long)g * Kg) * P * Q;
        step = mixed_radix_step(BK, R, S);
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            kk[i] = kk_local + i * KK_STEP;
            k[i] = kk[i] / (R * S);
            r[i] = (kk[i] / S) % R;
            s[i] = kk[i] % S;
        }
    }
    __device__ __forceinline__ void load(Acc (&regs)[LOADS]) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            // Output row p whose window puts tap r on row h: p*stride_h = h + pad_h - r*dil.
            const int p_times_stride = h_padded - r[i] * dilation_h;
            const int q_times_stride = w_padded - s[i] * dilation_w;
            const int p = p_times_stride / stride_h, q = q_times_stride / stride_w;
            // Guards: rows past M; reduction steps past K/groups*R*S (partial last tile);
            // negative: every window's tap lies above/left of (h, w); not a multiple of the
            // stride: no window puts this tap on (h, w); p >= P / q >= Q: no such window.
            const bool inside = row_valid && kk[i] < Kgemm && p_times_stride >= 0 &&
                                q_times_stride >= 0 && p * stride_h == p_times_stride &&
                                q * stride_w == q_times_stride && p < P && q < Q;
            regs[i] = inside ? to_acc(dy_group[((long long)k[i] * P + p) * Q + q]) : Acc(0);
            kk[i] += BK;
            advance_by_step(step, R, S, k[i], r[i], s[i]);
        }
    }
    __device__ __forceinline__ void store(const Acc (&regs)[LOADS], Acc* tile) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i) tile[(kk_local + i * KK_STEP) * (BM + SMEM_PAD) + m_local] = regs[i];
    }
};

// Operand B, BK x BN: B[(k, r, s)][c] = w[g*Kg + k, c, r, s]. Thread t fetches reduction row
// t % BK and channel columns t / BK + i*(THREADS/BK): consecutive threads read consecutive
// (r, s) of one (k, c) filter slice, contiguous in w. The shared rows are padded (SMEM_PAD) so
// the BK threads writing one column hit different banks.
template <typename T, typename Acc, int BN, int BK, int THREADS>
struct DgradWLoader {
    enum { LOADS = BN * BK / THREADS, COL_STEP = THREADS / BK };
    static_assert(THREADS % BK == 0 && (BN * BK) % THREADS == 0, "B tile split");
    const T* w_group;  // w + (g*Kg*Cg + first channel of the block)*R*S
    int kk, kk_local, col_local, Kgemm, RS, Cg, columns;  // columns: channels left in the tile

    __device__ __forceinline__ void init(const T* w, int g, int Kg, int Cg_, int c_first, int RS_,
                                         int tid) {
        RS = RS_; Cg = Cg_;
        Kgemm = Kg * RS;
        kk_local = tid % BK;
        col_local = tid / BK;
        kk = kk_local;
        columns = Cg - c_first;
        w_group = w + ((long long)g * Kg * Cg + c_first) * RS;
    }
    __device__ __forceinline__ void load(Acc (&regs)[LOADS]) {
        const int k = kk / RS, rs = kk - (kk / RS) * RS;
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const int col = col_local + i * COL_STEP;
            // Guards: channels past the group's last (partial column tile) and reduction steps
            // past the end (partial last tile) load zero.
            regs[i] = (col < columns && kk < Kgemm)
                          ? to_acc(w_group[((long long)k * Cg + col) * RS + rs])
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

// Grid: x = GEMM row tiles (ceil(N*H*W / BM)), y = channel tiles (ceil(C/groups / BN)),
// z = groups. Block: Tiles::THREADS threads (1-D).
// CFG: the tile configuration (common.cuh: GemmV2Config; 0 = the DGRAD_V2_* defaults).
template <int CFG>
using DgradV2Tiles = GemmV2Config<CFG, GemmV2Tiles<DGRAD_V2_BM, DGRAD_V2_BN, DGRAD_V2_BK, DGRAD_V2_TM,
                                                  DGRAD_V2_TN, DGRAD_V2_MIN_BLOCKS>>;
template <typename T, int CFG = 0>
__global__ void __launch_bounds__(DgradV2Tiles<CFG>::THREADS, DgradV2Tiles<CFG>::MIN_BLOCKS)
conv2d_dgrad_v2_implicit_gemm(const T* __restrict__ dy, const T* __restrict__ w,
                              T* __restrict__ dx, int N, int C, int H, int W, int K, int R,
                              int S, int P, int Q, int pad_h, int pad_w, int stride_h,
                              int stride_w, int dilation_h, int dilation_w, int groups) {
    typedef typename accumulator<T>::type Acc;
    typedef DgradV2Tiles<CFG> Tiles;
    constexpr int BM = Tiles::BM, BN = Tiles::BN, BK = Tiles::BK;
    constexpr int TM = Tiles::TM, TN = Tiles::TN, THREADS = Tiles::THREADS;
    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long HW = (long long)H * W;
    const long long M = (long long)N * HW;
    const int Kgemm = Kg * R * S;
    const long long m_block = (long long)blockIdx.x * BM;
    const int c_block = blockIdx.y * BN;  // first channel of this tile, within the group
    const int tid = threadIdx.x;

    DgradDyLoader<T, Acc, BM, BK, THREADS> a;
    a.init(dy, m_block + tid % BM, M, K, Kg, g, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
           stride_w, dilation_h, dilation_w, tid);
    DgradWLoader<T, Acc, BN, BK, THREADS> bl;
    bl.init(w, g, Kg, Cg, c_block, R * S, tid);

    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0;
    gemm_mainloop<Acc, BM, BN, BK, TM, TN>(a, bl, 0, div_up(Kgemm, BK), acc);

    // Epilogue: dx[n, g*Cg + c, h, w] = acc. The 16 threads sharing tx write 64 consecutive
    // (h, w) of one channel plane (coalesced). Guards: rows past M and channels past the
    // group's end are not written.
    const int ty = tid % (BM / TM), tx = tid / (BM / TM);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const long long m = m_block + frag_index(ty, i, BM, TM);
        if (m >= M) continue;
        const long long n = m / HW, hw = m - n * HW;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = c_block + frag_index(tx, j, BN, TN);
            if (c >= Cg) continue;
            dx[(n * C + (long long)g * Cg + c) * HW + hw] = from_acc<T>(acc[i][j]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// v3: the gather-form implicit GEMM of v2 on tensor cores (16-bit inputs, fp32 accumulation):
// mma.sync m16n8k16 through mma.cuh's mma_gemm_mainloop, exactly as conv2d_fprop_v3_mma
// (128 x 64 x 32 block tiles, 8 warps of 32 x 32, ldmatrix.x4 fragments, double-buffered
// shared memory, an epilogue staged through shared memory so each warp stores 32
// consecutive dx pixels of one channel plane). Operand A is v2's dy gather (zero where no
// window puts tap (r, s) on (h, w)); operand B, w[g*Kg + k, c, r, s] for reduction
// (k, r, s) and column c, is not contiguous along (k, r, s) for a fixed c in w's
// (K, C/groups, R, S) layout, so it is loaded with guarded loads (no cp.async).
// Same limits as v2; T: __half or __nv_bfloat16 (float: TF32 below).

#ifndef DGRAD_V3_BM
#define DGRAD_V3_BM 128  // input pixels (GEMM rows) per block
#endif
#ifndef DGRAD_V3_BN
#define DGRAD_V3_BN 64   // channels (GEMM columns) per block
#endif
#ifndef DGRAD_V3_BK
#define DGRAD_V3_BK 32   // reduction steps (k, r, s) per shared-memory stage
#endif
#ifndef DGRAD_V3_WM
#define DGRAD_V3_WM 32   // GEMM rows per warp
#endif
#ifndef DGRAD_V3_WN
#define DGRAD_V3_WN 32   // GEMM columns per warp
#endif
#ifndef DGRAD_V3_MIN_BLOCKS
#define DGRAD_V3_MIN_BLOCKS 2  // resident blocks per SM the register budget must allow
#endif
#ifndef DGRAD_V3_MIN_BLOCKS_EMULATED
#define DGRAD_V3_MIN_BLOCKS_EMULATED 1  // sm_75: the shuffle emulation needs more registers
#endif
#if GPUCONV_MMA_PTX
#define DGRAD_V3_LAUNCH_MIN_BLOCKS DGRAD_V3_MIN_BLOCKS
#else
#define DGRAD_V3_LAUNCH_MIN_BLOCKS DGRAD_V3_MIN_BLOCKS_EMULATED
#endif
#define DGRAD_V3_THREADS ((DGRAD_V3_BM / DGRAD_V3_WM) * (DGRAD_V3_BN / DGRAD_V3_WN) * 32)

// float (TF32): the same GEMM on tf32 tensor cores (mma.sync m16n8k8, mma_tf32_gemm_mainloop),
// BK = 16 (32-bit tiles at BK = 32 would not fit 48 KB of static shared memory), both operands
// rounded to tf32 as they are loaded; the epilogue writes straight from the fragments. Each
// product within 2^-9 of exact: |error| <= 2^-9 * sum |dy * w|. An opt-in (kernels.allow_tf32).
#ifndef DGRAD_TF32_BK
#define DGRAD_TF32_BK 16  // float: reduction steps per shared-memory stage (two k8 mma steps)
#endif

// Operand A of v3: thread t gathers GEMM row m_local = t % BM (one dx pixel) at the PER_THREAD
// consecutive reduction steps kk_local .. (kk_local = PER_THREAD * (t / BM); 16 halves or 8
// floats: 32 bytes) of every tile, then writes them as two 16-byte shared stores into row
// m_local of the stage.
template <typename T, int BM, int BK, int THREADS>
struct DgradV3DyLoader {
    enum { PER_THREAD = BM * BK / THREADS, WORDS = mma_words(PER_THREAD, sizeof(T)),
           PITCH = BK + MmaTile<T>::skew };
    static_assert(BM * BK == THREADS * PER_THREAD && THREADS % BM == 0 && WORDS == 8,
                  "A tile split: 32 bytes per thread");
    const T* dy_group;       // dy + (n*K + g*Kg)*P*Q
    bool row_valid;
    int m_local, kk_local, kk_first;
    int h_padded, w_padded;  // h + pad_h, w + pad_w
    int P, Q, R, S, stride_h, stride_w, dilation_h, dilation_w, Kgemm;
    int k0, r0, s0;          // digits (k, r, s) of kk_first
    MixedRadix3 step;        // BK as (k, r, s) digits

    __device__ __forceinline__ void init(const T* dy, long long m, long long M, int K, int Kg,
                                         int g, int H, int W, int R_, int S_, int P_, int Q_,
                                         int pad_h, int pad_w, int str_h, int str_w, int dil_h,
                                         int dil_w, int tid) {
        P = P_; Q = Q_; R = R_; S = S_; stride_h = str_h; stride_w = str_w;
        dilation_h = dil_h; dilation_w = dil_w;
        Kgemm = Kg * R * S;
        m_local = tid % BM;
        kk_local = (tid / BM) * PER_THREAD;
        kk_first = kk_local;
        row_valid = m < M;
        const long long mm = row_valid ? m : 0;  // rows past M read a valid pixel's indices
        const long long n = mm / ((long long)H * W);
        const int hw = (int)(mm - n * H * W);
        h_padded = hw / W + pad_h;
        w_padded = hw % W + pad_w;
        dy_group = dy + ((long long)n * K + (long long)g * Kg) * P * Q;
        k0 = kk_first / (R * S);
        r0 = (kk_first / S) % R;
        s0 = kk_first % S;
        step = mixed_radix_step(BK, R, S);
    }
    __device__ __forceinline__ void load(unsigned (&regs)[WORDS]) {
        int k = k0, r = r0, s = s0;
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            // Output (p, q) whose window puts tap (r, s) on (h, w): p*stride_h = h + pad_h -
            // r*dilation_h (q likewise).
            const int p_times_stride = h_padded - r * dilation_h;
            const int q_times_stride = w_padded - s * dilation_w;
            const int p = p_times_stride / stride_h, q = q_times_stride / stride_w;
            // Guards (as v2): rows past M; reduction steps past K/groups*R*S; negative (every
            // window's tap lies above/left); not a multiple of the stride (no window puts
            // this tap here); p >= P / q >= Q (no such window). All load +0.0.
            const bool inside = row_valid && kk_first + i < Kgemm && p_times_stride >= 0 &&
                                q_times_stride >= 0 && p * stride_h == p_times_stride &&
                                q * stride_w == q_times_stride && p < P && q < Q;
            mma_put(regs, i, inside ? dy_group[((long long)k * P + p) * Q + q] : T(), inside);
            if (++s == S) { s = 0; if (++r == R) { r = 0; ++k; } }  // kk + 1 as (k, r, s)
        }
        kk_first += BK;
        advance_by_step(step, R, S, k0, r0, s0);
    }
    __device__ __forceinline__ void store(const unsigned (&regs)[WORDS],
                                          typename MmaTile<T>::type* tile) {
        mma_store_words<PITCH>(regs, tile, m_local, kk_local);
    }
};

// Operand B of v3: thread t fills one 16-byte piece (8 halves or 4 floats: PER_THREAD
// consecutive reduction steps kk = (k, rs)) of channel column c_local = t / (BK/PER_THREAD):
// w[g*Kg + k, c, rs], contiguous in rs for one k. Guarded loads (channels past the group's
// last, steps past the end: zero; float: rounded to tf32), one 16-byte shared store.
template <typename T, int BN, int BK, int THREADS>
struct DgradV3WLoader {
    enum { PER_THREAD = 16 / sizeof(T), PITCH = BK + MmaTile<T>::skew };
    static_assert(BN * BK == THREADS * PER_THREAD, "B tile split");
    const T* w_column;  // w + (g*Kg*Cg + c)*RS: this thread's channel, k = 0
    bool col_valid;
    int c_local, kk_local, kk_first, Kgemm, RS, k_stride;  // k_stride = Cg*RS

    __device__ __forceinline__ void init(const T* w, int g, int Kg, int Cg, int c_first, int RS_,
                                         int tid) {
        RS = RS_;
        Kgemm = Kg * RS;
        k_stride = Cg * RS;
        c_local = tid / (BK / PER_THREAD);
        kk_local = (tid % (BK / PER_THREAD)) * PER_THREAD;
        kk_first = kk_local;
        col_valid = c_first + c_local < Cg;
        w_column = w + ((long long)g * Kg * Cg + (col_valid ? c_first + c_local : 0)) * RS;
    }
    __device__ __forceinline__ void load(typename MmaTile<T>::type* tile) {
        int k = kk_first / RS, rs = kk_first - (kk_first / RS) * RS;
        unsigned words[4];
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            const bool inside = col_valid && kk_first + i < Kgemm;
            mma_put(words, i, inside ? w_column[(long long)k * k_stride + rs] : T(), inside);
            if (++rs == RS) { rs = 0; ++k; }
        }
        *reinterpret_cast<uint4*>(tile + c_local * PITCH + kk_local) =
            make_uint4(words[0], words[1], words[2], words[3]);
        kk_first += BK;
    }
};

// Grid: x = GEMM row tiles (ceil(N*H*W / BM)), y = channel tiles (ceil(C/groups / BN)),
// z = groups. Block: DGRAD_V3_THREADS threads (1-D).
template <typename T>
__global__ void __launch_bounds__(DGRAD_V3_THREADS, DGRAD_V3_LAUNCH_MIN_BLOCKS)
conv2d_dgrad_v3_mma(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                    int N, int C, int H, int W, int K, int R, int S, int P, int Q, int pad_h,
                    int pad_w, int stride_h, int stride_w, int dilation_h, int dilation_w,
                    int groups) {
    constexpr bool TF32 = sizeof(T) == 4;
    static_assert(sizeof(T) == 2 || TF32, "conv2d_dgrad_v3_mma: 16-bit types or float (TF32)");
    typedef typename MmaTile<T>::type E;  // shared-memory element: 16-bit bits or float
    constexpr int BM = DGRAD_V3_BM, BN = DGRAD_V3_BN, BK = TF32 ? DGRAD_TF32_BK : DGRAD_V3_BK;
    constexpr int WM = DGRAD_V3_WM, WN = DGRAD_V3_WN, THREADS = DGRAD_V3_THREADS;
    static_assert(THREADS % BM == 0, "epilogue: one fixed pixel per thread");
    __shared__ __align__(16) E a_smem[2][BM][BK + MmaTile<T>::skew];
    __shared__ __align__(16) E b_smem[2][BN][BK + MmaTile<T>::skew];

    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long HW = (long long)H * W;
    const long long M = (long long)N * HW;
    const int Kgemm = Kg * R * S;
    const long long m_block = (long long)blockIdx.x * BM;
    const int c_block = blockIdx.y * BN;  // first channel of this tile, within the group
    const int tid = threadIdx.x;

    DgradV3DyLoader<T, BM, BK, THREADS> a;
    a.init(dy, m_block + tid % BM, M, K, Kg, g, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
           stride_w, dilation_h, dilation_w, tid);
    DgradV3WLoader<T, BN, BK, THREADS> bl;
    bl.init(w, g, Kg, Cg, c_block, R * S, tid);

    float acc[WM / 16][WN / 8][4];
    mma_tile_product<T, BM, BN, BK, WM, WN>(a, bl, (int)div_up(Kgemm, BK), acc, a_smem,
                                            b_smem);
    if constexpr (TF32) {
        // Epilogue (float) straight from the fragments: dx[pixel row][channel col]. Guards:
        // pixels past M and channels past the group's end are not written.
        mma_each_element<BM, WM, WN>(acc, [&](int row, int col, float v) {
            const long long m = m_block + row;
            const int c = c_block + col;
            if (m >= M || c >= Cg) return;
            const long long n_img = m / HW, hw = m - n_img * HW;
            dx[(n_img * C + (long long)g * Cg + c) * HW + hw] = v;
        });
    } else {
        // Epilogue (16-bit): round once, stage as out[channel][pixel] (mma.cuh; no bias in
        // dgrad), then a warp stores 32 consecutive pixels of one channel plane. Guards:
        // pixels past M and channels past the group's end are not written.
        const T* out =
            mma_stage_tile<T, BM, BN, BK, WM, WN>(acc, a_smem, [](int) { return 0.0f; });
        const int m_local = tid % BM;
        const long long m = m_block + m_local;
        if (m < M) {
            const long long n_img = m / HW, hw = m - n_img * HW;
            T* dx_pixel = dx + (n_img * C + (long long)g * Cg) * HW + hw;
#pragma unroll 4
            for (int c_local = tid / BM; c_local < BN; c_local += THREADS / BM) {
                const int c = c_block + c_local;
                if (c < Cg)
                    dx_pixel[(long long)c * HW] = out[c_local * (BM + MMA_SMEM_SKEW) + m_local];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// v4: v3's tensor-core GEMM on channels-last (NHWC) tensors.
//
// Layouts (C-contiguous): dy (N, P, Q, K), dx (N, H, W, C), and the filters as
// w_t (C, R, S, K/groups): channel c's (r, s, k) taps of its group, k innermost — kernels.py
// transposes w (a small copy, counted in the time) so that B, like A, is copied by cp.async.
// GEMM row m = dx pixel (n, h, w), column = channel c of the group, reduction kk = (r, s, k)
// with k innermost: 8 consecutive kk (16 bytes of halves; 4 floats) are 8 consecutive
// filters' dy at the one output pixel whose window puts tap (r, s) on (h, w) — one 16-byte
// vector of dy, or none (no window: a zero-filled copy). mma.cuh's MmaNhwcLoader copies them
// (element by element when K/groups is not a multiple of the piece or dy is misaligned);
// MmaRowsLoader copies the w_t rows. Epilogue straight from the fragments: a pixel's C
// channels are contiguous in dx. Deterministic; same limits as v3; T as v3.

// Operand A of v4: GEMM row m = dx pixel (n, h, w); tap (r, s) reads dy at the output pixel
// (p, q) with p*stride_h = h + pad_h - r*dilation_h (q likewise), when it exists.
struct DgradV4Window {
    struct Row {
        long long image;  // offset of dy[n, 0, 0, g*Kg]; -1: the row is past the last pixel
        int h_padded, w_padded;  // h + pad_h, w + pad_w
    };
    long long M, HW;
    int K, W, P, Q, pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w, group_filter;

    __device__ __forceinline__ Row row(long long m) const {
        Row row;
        const long long n = m < M ? m / HW : 0;
        const int hw = m < M ? (int)(m - n * HW) : 0;
        row.image = m < M ? n * P * Q * K + group_filter : -1;
        row.h_padded = hw / W + pad_h;
        row.w_padded = hw % W + pad_w;
        return row;
    }
    // Offset of dy's pixel whose window puts tap (r, s) on the row's pixel (filter 0 of the
    // group), or -1: above / left of every window, between strides, or past the output.
    __device__ __forceinline__ long long tap(const Row& row, int r, int s) const {
        const int p_times_stride = row.h_padded - r * dilation_h;
        const int q_times_stride = row.w_padded - s * dilation_w;
        if (row.image < 0 || p_times_stride < 0 || q_times_stride < 0) return -1;
        const int p = p_times_stride / stride_h, q = q_times_stride / stride_w;
        if (p * stride_h != p_times_stride || q * stride_w != q_times_stride || p >= P || q >= Q)
            return -1;
        return row.image + ((long long)p * Q + q) * K;
    }
};

// The NHWC kernels' epilogue (v4, v5): dx[pixel m][channel] = acc, rounded once, for GEMM
// column col of the tile whose first channel (within group g) is c_block. Guards: pixels past
// M and channels past the group's end are not written.
template <typename T> struct DgradNhwcStore {
    T* dx;
    long long M;
    int C, Cg, g, c_block;
    __device__ __forceinline__ void operator()(long long m, int col, float v) const {
        const int c = c_block + col;
        if (m >= M || c >= Cg) return;
        dx[m * C + g * Cg + c] = from_acc<T>(v);
    }
};

// Grid: x = GEMM row tiles (ceil(N*H*W / BM)), y = channel tiles (ceil(C/groups / BN)),
// z = groups. Block: DGRAD_V3_THREADS threads (1-D).
template <typename T>
__global__ void __launch_bounds__(DGRAD_V3_THREADS, DGRAD_V3_LAUNCH_MIN_BLOCKS)
conv2d_dgrad_v4_nhwc_mma(const T* __restrict__ dy, const T* __restrict__ w_t,
                         T* __restrict__ dx, int N, int C, int H, int W, int K, int R, int S,
                         int P, int Q, int pad_h, int pad_w, int stride_h, int stride_w,
                         int dilation_h, int dilation_w, int groups) {
    constexpr bool TF32 = sizeof(T) == 4;
    static_assert(sizeof(T) == 2 || TF32, "conv2d_dgrad_v4_nhwc_mma: 16-bit types or float");
    typedef typename MmaTile<T>::type E;
    constexpr int BM = DGRAD_V3_BM, BN = DGRAD_V3_BN, BK = TF32 ? DGRAD_TF32_BK : DGRAD_V3_BK;
    constexpr int WM = DGRAD_V3_WM, WN = DGRAD_V3_WN;
    static_assert((BM / WM) * (BN / WN) * 32 == DGRAD_V3_THREADS, "v3's warps");
    __shared__ __align__(16) E a_smem[MMA_COPY_STAGES][BM][BK + MmaTile<T>::skew];
    __shared__ __align__(16) E b_smem[MMA_COPY_STAGES][BN][BK + MmaTile<T>::skew];

    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long M = (long long)N * H * W;
    const int c_block = blockIdx.y * BN;  // first channel of this tile, within the group
    const DgradV4Window window{M, (long long)H * W, K, W, P, Q, pad_h, pad_w, stride_h,
                               stride_w, dilation_h, dilation_w, g * Kg};
    // dy's pixels times the rows of w_t (channels g*Cg + c_block, ...)
    mma_nhwc_gemm<T, BM, BN, BK, WM, WN>(dy, window, Kg, R, S, w_t, g * Cg + c_block,
                                         Cg - c_block, a_smem, b_smem,
                                         DgradNhwcStore<T>{dx, M, C, Cg, g, c_block});
}

// ---------------------------------------------------------------------------------------
// v5: v4 on wgmma (sm_90a), as fprop v5: the same loaders and window, (CFG 0) v4's tiles and
// grid; stages in
// wgmma's core-matrix layout, each warpgroup's 64 x 64 product (64 x 128 with CFG 1, mma.cuh:
// WgmmaColumns) straight from shared memory. float16 / bfloat16 only; emulated with
// mma.m16n8k16 off sm_90a.
template <typename T, int CFG = 0>
__global__ void __launch_bounds__(DGRAD_V3_THREADS, DGRAD_V3_LAUNCH_MIN_BLOCKS)
conv2d_dgrad_v5_nhwc_wgmma(const T* __restrict__ dy, const T* __restrict__ w_t,
                           T* __restrict__ dx, int N, int C, int H, int W, int K, int R, int S,
                           int P, int Q, int pad_h, int pad_w, int stride_h, int stride_w,
                           int dilation_h, int dilation_w, int groups) {
    static_assert(sizeof(T) == 2, "conv2d_dgrad_v5_nhwc_wgmma: 16-bit types");
    constexpr int BM = DGRAD_V3_BM, BN = WgmmaColumns<CFG, DGRAD_V3_BN>::BN;
    constexpr int BK = DGRAD_V3_BK;
    static_assert(BM / 64 * 128 == DGRAD_V3_THREADS, "two warpgroups: v3's threads");
    __shared__ __align__(128) unsigned short a_smem[MMA_COPY_STAGES][BM * BK];
    __shared__ __align__(128) unsigned short b_smem[MMA_COPY_STAGES][BN * BK];

    const int Cg = C / groups, Kg = K / groups, g = blockIdx.z;
    const long long M = (long long)N * H * W;
    const int c_block = blockIdx.y * BN;  // first channel of this tile, within the group
    const DgradV4Window window{M, (long long)H * W, K, W, P, Q, pad_h, pad_w, stride_h,
                               stride_w, dilation_h, dilation_w, g * Kg};
    wgmma_nhwc_gemm<T, BM, BN, BK>(dy, window, Kg, R, S, w_t, g * Cg + c_block, Cg - c_block,
                                   a_smem, b_smem, DgradNhwcStore<T>{dx, M, C, Cg, g, c_block});
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv2d_dgrad.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv2d_dgrad_instance(int i) {
    void* const instances[] = {(void*)conv2d_dgrad_v1_direct<__half>,
                               (void*)conv2d_dgrad_v1_direct<__nv_bfloat16>,
                               (void*)conv2d_dgrad_v1_direct<float>,
                               (void*)conv2d_dgrad_v1_direct<double>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<__half>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<__half, 1>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<__half, 2>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<__nv_bfloat16>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<__nv_bfloat16, 1>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<__nv_bfloat16, 2>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<float>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<float, 1>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<float, 2>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<double>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<double, 1>,
                               (void*)conv2d_dgrad_v2_implicit_gemm<double, 2>,
                               (void*)conv2d_dgrad_v3_mma<__half>,
                               (void*)conv2d_dgrad_v3_mma<__nv_bfloat16>,
                               (void*)conv2d_dgrad_v3_mma<float>,
                               (void*)conv2d_dgrad_v4_nhwc_mma<__half>,
                               (void*)conv2d_dgrad_v4_nhwc_mma<__nv_bfloat16>,
                               (void*)conv2d_dgrad_v4_nhwc_mma<float>,
                               (void*)conv2d_dgrad_v5_nhwc_wgmma<__half>,
                               (void*)conv2d_dgrad_v5_nhwc_wgmma<__half, 1>,
                               (void*)conv2d_dgrad_v5_nhwc_wgmma<__nv_bfloat16>,
                               (void*)conv2d_dgrad_v5_nhwc_wgmma<__nv_bfloat16, 1>};
    return instances[i];
}
#endif
