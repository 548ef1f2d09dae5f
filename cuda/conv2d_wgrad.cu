// conv2d_wgrad.cu — gradients of conv2d (a cross-correlation) with respect to its filter
// and its bias:
//
//   dw[k, c, r, s] = sum_{n, p, q} dy[n, k, p, q]
//                                  * x[n, g*C/groups + c, p*stride_h - pad_h + r*dilation_h,
//                                                         q*stride_w - pad_w + s*dilation_w]
//   db[k]          = sum_{n, p, q} dy[n, k, p, q]
//
//   where g = k / (K/groups) is k's group; x elements in the zero padding contribute nothing.
//
// Layouts (all C-contiguous): x (N, C, H, W), dy (N, K, P, Q), dw (K, C/groups, R, S), db (K,).
// (bgrad v3 takes channels-last dy: (N, P, Q, K).)
// pad_h / pad_w are the top / left padding of the forward pass.
// T is float, double or __half; sums are carried in accumulator<T>::type (float for __half).
//
// Every reduction here is deterministic: each dw / db element is summed in an order fixed by
// the geometry alone (never by timing, never by atomics), so results are bit-identical from
// run to run and, since kernels.py's split count does not depend on the device, from device to
// device.
//
// Kernels:
//   conv2d_wgrad_v1_direct<T>  one thread per dw element, a grid-stride loop over
//                              K*(C/groups)*R*S; each thread runs the whole N*P*Q reduction
//                              serially. Right for every geometry, but the parallelism is only
//                              the filter's size and each thread's loop is N*P*Q long: slow for
//                              large batches and images (a later version splits the reduction
//                              over a block with a fixed-order tree).
//   conv2d_bgrad_v1_direct<T>  one thread per db element, a serial N*P*Q reduction.
//   conv2d_wgrad_v2_implicit_gemm<T>
//                              implicit GEMM with split-K: GEMM rows = the group's filters
//                              (K/groups), columns (c, r, s) (C/groups*R*S), reduction (n, p, q)
//                              (N*P*Q, long). Tiles 64 x 64 x 16, 4 x 4 per thread, double-
//                              buffered (common.cuh: gemm_mainloop). Grid z = groups x splits:
//                              each split sums a fixed, contiguous range of reduction tiles and
//                              writes its partial dw to a workspace (accumulator type); with a
//                              single split it writes dw directly.
//   conv2d_wgrad_v2_sum_splits<T>
//                              second pass: dw[i] = sum of the splits' partials in split order
//                              (a fixed order: deterministic), rounded to T once.
//   conv2d_bgrad_v2_tree<T>    one block per filter: each thread sums a fixed strided subset of
//                              the N*P*Q values (coalesced), then a shared-memory tree adds the
//                              partial sums in a fixed pairing.
//   conv2d_bgrad_v3_nhwc<T>    the bias gradient of channels-last dy (N, P, Q, K), read as it
//                              is: 32 consecutive filters x 8 warps per block (coalesced rows),
//                              rows split into fixed chunks (grid y) with v2's second pass.
//   conv2d_wgrad_v3_mma<T>     (T = __half or __nv_bfloat16)
//                              the split-K implicit GEMM on tensor cores (mma.sync m16n8k16,
//                              fp32 accumulation; mma.cuh), transposed so that the gathered
//                              operand (x's im2col) is the register-staged A: GEMM rows =
//                              (c, r, s), columns = the group's filters, reduction (n, p, q).
//                              Same split rule and second pass as v2 (partials in float).
//   conv2d_wgrad_v4_nhwc_mma<T> (T = __half, __nv_bfloat16, or float as TF32)
//                              v3 on channels-last tensors: x (N, H, W, C), dy (N, P, Q, K),
//                              dw (K, R, S, C/groups); rows (r, s, c), c innermost. Both
//                              operands are copied by cp.async into reduction-major stages
//                              and transposed by ldmatrix.trans as fragments are read.
//   conv2d_wgrad_v5_nhwc_wgmma<T> (T = __half or __nv_bfloat16)
//                              v4 on wgmma (sm_90a): the stages in the MN-major core-matrix
//                              layout, both operands read by wgmma through descriptors.

#include "common.cuh"
#include "mma.cuh"

// Tile sizes (defaults; -D overrides must keep kernels.py's WGRAD_V2 mirror in step).
#ifndef WGRAD_V2_BM
#define WGRAD_V2_BM 64   // filters (GEMM rows) per block
#endif
#ifndef WGRAD_V2_BN
#define WGRAD_V2_BN 64   // (c, r, s) columns per block
#endif
#ifndef WGRAD_V2_BK
#define WGRAD_V2_BK 16   // reduction steps (n, p, q) per shared-memory stage
#endif
#ifndef WGRAD_V2_TM
#define WGRAD_V2_TM 4    // GEMM rows per thread (register tile)
#endif
#ifndef WGRAD_V2_TN
#define WGRAD_V2_TN 4    // GEMM columns per thread
#endif
#ifndef WGRAD_V2_MIN_BLOCKS
#define WGRAD_V2_MIN_BLOCKS 2  // resident blocks per SM the register budget must allow
#endif
#ifndef WGRAD_V2_MIN_BLOCKS_FP64
#define WGRAD_V2_MIN_BLOCKS_FP64 1  // double: 2 blocks' 128-register cap spills on sm_75
#endif
#define WGRAD_V2_THREADS ((WGRAD_V2_BM / WGRAD_V2_TM) * (WGRAD_V2_BN / WGRAD_V2_TN))
#ifndef BGRAD_V2_THREADS
#define BGRAD_V2_THREADS 256  // a power of two (the tree halves it)
#endif

template <typename T>
__global__ void conv2d_wgrad_v1_direct(const T* __restrict__ x, const T* __restrict__ dy,
                                       T* __restrict__ dw, int N, int C, int H, int W, int K,
                                       int R, int S, int P, int Q, int pad_h, int pad_w,
                                       int stride_h, int stride_w, int dilation_h,
                                       int dilation_w, int groups) {
    typedef typename accumulator<T>::type Acc;
    const int C_per_group = C / groups;
    const int K_per_group = K / groups;
    const long long dw_count = (long long)K * C_per_group * R * S;

    // Grid-stride loop over dw; consecutive threads take consecutive s, so dw stores are
    // coalesced (and neighbouring threads read neighbouring x columns).
    for (long long i = grid_first_index(); i < dw_count; i += grid_stride()) {
        long long k, c, r, s;
        split4(i, C_per_group, R, S, k, c, r, s);
        const long long x_channel = (k / K_per_group) * C_per_group + c;  // c within k's group

        Acc acc = 0;
        for (int n = 0; n < N; ++n) {
            for (int p = 0; p < P; ++p) {
                const long long h = (long long)p * stride_h - pad_h + r * dilation_h;
                // Tap r of window row p lies in the top or bottom zero padding: adds nothing.
                if (h < 0 || h >= H) continue;
                for (int q = 0; q < Q; ++q) {
                    // wi: the width coordinate in x (w is the filter).
                    const long long wi = (long long)q * stride_w - pad_w + s * dilation_w;
                    // Tap s of window column q lies in the left or right zero padding.
                    if (wi < 0 || wi >= W) continue;
                    acc += to_acc(dy[offset4(n, k, p, q, K, P, Q)]) *
                           to_acc(x[offset4(n, x_channel, h, wi, C, H, W)]);
                }
            }
        }
        dw[i] = from_acc<T>(acc);
    }
}

template <typename T>
__global__ void conv2d_bgrad_v1_direct(const T* __restrict__ dy, T* __restrict__ db, int N,
                                       int K, int P, int Q) {
    typedef typename accumulator<T>::type Acc;
    const long long plane = (long long)P * Q;  // one (n, k) plane of dy

    // Grid-stride loop over db (K elements; K may be smaller than one block: extra threads
    // skip the loop).
    for (long long k = grid_first_index(); k < K; k += grid_stride()) {
        Acc acc = 0;
        for (int n = 0; n < N; ++n) {
            const T* dy_plane = dy + offset4(n, k, 0, 0, K, P, Q);
            for (long long j = 0; j < plane; ++j) acc += to_acc(dy_plane[j]);
        }
        db[k] = from_acc<T>(acc);
    }
}

// ---------------------------------------------------------------------------------------
// v2: implicit GEMM with split-K, and the block-tree bias gradient.
//
// Both loaders walk the reduction index j = (n, p, q) of their thread: j_local = t % BK is
// fixed, so consecutive threads take consecutive q - contiguous in dy and (with stride 1) in x,
// i.e. coalesced loads of BK consecutive elements - and the digits (n, p, q) advance by BK per
// tile without a division (common.cuh: advance_by_step).

// split_range: the pieces [begin, end) of split `split` of `splits` over `count` pieces (wgrad's
// BK-tiles, bgrad v3's rows): fixed, contiguous ranges of div_up(count, splits) (the last may
// be shorter; kernels.py never makes one empty, but an empty range would just write zeros).
__device__ __forceinline__ void split_range(long long count, int splits, int split,
                                            long long& begin, long long& end) {
    const long long per_split = div_up(count, splits);
    begin = split * per_split;
    end = begin + per_split < count ? begin + per_split : count;
}

// Operand A, BK x BM: A[(n, p, q)][k] = dy[n, g*Kg + k, p, q].
template <typename T, typename Acc, int BM, int BK, int THREADS>
struct WgradDyLoader {
    enum { LOADS = BM * BK / THREADS, ROW_STEP = THREADS / BK };
    static_assert(THREADS % BK == 0 && (BM * BK) % THREADS == 0, "A tile split");
    const T* dy_first;  // dy + (g*Kg + first filter of the block)*P*Q
    int j_local, row_local, rows;  // rows: filters left in this tile
    int N, K, P, Q, n, p, q;
    MixedRadix3 step;

    __device__ __forceinline__ void init(const T* dy, long long j, int N_, int K_, int P_, int Q_,
                                         int k_first, int rows_left, int tid) {
        N = N_; K = K_; P = P_; Q = Q_;
        j_local = tid % BK;
        row_local = tid / BK;
        rows = rows_left;
        dy_first = dy + (long long)k_first * P * Q;
        const long long PQ = (long long)P * Q;
        n = (int)(j / PQ);
        p = (int)((j - n * PQ) / Q);
        q = (int)(j % Q);
        step = mixed_radix_step(BK, P, Q);
    }
    __device__ __forceinline__ void load(Acc (&regs)[LOADS]) {
        const long long pq = (long long)p * Q + q;
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const int row = row_local + i * ROW_STEP;
            // Guards: filters past the group's last (partial row tile) and reduction steps past
            // N*P*Q (n reaches N in the partial last tile) load zero.
            regs[i] = (row < rows && n < N)
                          ? to_acc(dy_first[((long long)n * K + row) * P * Q + pq])
                          : Acc(0);
        }
        advance_by_step(step, P, Q, n, p, q);
    }
    __device__ __forceinline__ void store(const Acc (&regs)[LOADS], Acc* tile) {
        // Consecutive threads write consecutive reduction rows of one column: padded rows
        // (SMEM_PAD) leave a 2-way bank conflict for BK = 16 (rows j and j+8).
#pragma unroll
        for (int i = 0; i < LOADS; ++i)
            tile[j_local * (BM + SMEM_PAD) + row_local + i * ROW_STEP] = regs[i];
    }
};

// Operand B, BK x BN: B[(n, p, q)][(c, r, s)] =
// x[n, g*Cg + c, p*stride_h - pad_h + r*dilation_h, q*stride_w - pad_w + s*dilation_w].
template <typename T, typename Acc, int BN, int BK, int THREADS>
struct WgradXLoader {
    enum { LOADS = BN * BK / THREADS, COL_STEP = THREADS / BK };
    static_assert(THREADS % BK == 0 && (BN * BK) % THREADS == 0, "B tile split");
    const T* x;
    int j_local, col_local;
    int N, C, H, W, P, Q, pad_h, pad_w, stride_h, stride_w, n, p, q;
    long long col_offset[LOADS];  // (g*Cg + c)*H*W of each column slot
    int tap_h[LOADS], tap_w[LOADS];  // r*dilation_h, s*dilation_w of each column slot
    bool col_valid[LOADS];           // column inside C/groups*R*S (partial column tile)
    MixedRadix3 step;

    __device__ __forceinline__ void init(const T* x_, long long j, int N_, int C_, int H_, int W_,
                                         int R, int S, int P_, int Q_, int pad_h_, int pad_w_,
                                         int stride_h_, int stride_w_, int dilation_h,
                                         int dilation_w, int g, int Cg, int col_first, int tid) {
        x = x_; N = N_; C = C_; H = H_; W = W_; P = P_; Q = Q_; pad_h = pad_h_; pad_w = pad_w_;
        stride_h = stride_h_; stride_w = stride_w_;
        j_local = tid % BK;
        col_local = tid / BK;
        const long long PQ = (long long)P * Q;
        n = (int)(j / PQ);
        p = (int)((j - n * PQ) / Q);
        q = (int)(j % Q);
        step = mixed_radix_step(BK, P, Q);
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const int col = col_first + col_local + i * COL_STEP;
            col_valid[i] = col < Cg * R * S;
            const int c = col_valid[i] ? col / (R * S) : 0;
            tap_h[i] = ((col / S) % R) * dilation_h;
            tap_w[i] = (col % S) * dilation_w;
            col_offset[i] = ((long long)g * Cg + c) * H * W;
        }
    }
    __device__ __forceinline__ void load(Acc (&regs)[LOADS]) {
        const int h_first = p * stride_h - pad_h, w_first = q * stride_w - pad_w;
        const long long image = (long long)n * C * H * W;
#pragma unroll
        for (int i = 0; i < LOADS; ++i) {
            const int h = h_first + tap_h[i], wi = w_first + tap_w[i];
            // Guards: columns past C/groups*R*S, reduction steps past N*P*Q (n == N), and taps
            // in the zero padding load zero.
            const bool inside = col_valid[i] && n < N && h >= 0 && h < H && wi >= 0 && wi < W;
            regs[i] = inside ? to_acc(x[image + col_offset[i] + (long long)h * W + wi]) : Acc(0);
        }
        advance_by_step(step, P, Q, n, p, q);
    }
    __device__ __forceinline__ void store(const Acc (&regs)[LOADS], Acc* tile) {
#pragma unroll
        for (int i = 0; i < LOADS; ++i)
            tile[j_local * (BN + SMEM_PAD) + col_local + i * COL_STEP] = regs[i];
    }
};

// The register budget per dtype: __launch_bounds__'s minimum resident blocks.
template <typename T> struct wgrad_v2_min_blocks { enum { value = WGRAD_V2_MIN_BLOCKS }; };
template <> struct wgrad_v2_min_blocks<double> { enum { value = WGRAD_V2_MIN_BLOCKS_FP64 }; };

// Grid: x = filter tiles (ceil(K/groups / BM)), y = column tiles (ceil(C/groups*R*S / BN)),
// z = groups * splits (z = g*splits + split). Block: WGRAD_V2_THREADS threads (1-D).
// workspace: splits * K*(C/groups)*R*S accumulators when splits > 1 (unused otherwise).
template <typename T>
__global__ void __launch_bounds__(WGRAD_V2_THREADS, wgrad_v2_min_blocks<T>::value)
conv2d_wgrad_v2_implicit_gemm(const T* __restrict__ x, const T* __restrict__ dy,
                              T* __restrict__ dw,
                              typename accumulator<T>::type* __restrict__ workspace, int splits,
                              int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                              int pad_h, int pad_w, int stride_h, int stride_w, int dilation_h,
                              int dilation_w, int groups) {
    typedef typename accumulator<T>::type Acc;
    constexpr int BM = WGRAD_V2_BM, BN = WGRAD_V2_BN, BK = WGRAD_V2_BK;
    constexpr int TM = WGRAD_V2_TM, TN = WGRAD_V2_TN, THREADS = WGRAD_V2_THREADS;
    const int Cg = C / groups, Kg = K / groups, CRS = Cg * R * S;
    const int g = blockIdx.z / splits, split = blockIdx.z % splits;
    const int k_block = blockIdx.x * BM;    // first filter of this tile, within the group
    const int col_block = blockIdx.y * BN;  // first (c, r, s) column of this tile
    const int tid = threadIdx.x;

    long long tile_begin, tile_end;  // this split's reduction tiles
    split_range(div_up((long long)N * P * Q, BK), splits, split, tile_begin, tile_end);

    WgradDyLoader<T, Acc, BM, BK, THREADS> a;
    a.init(dy, tile_begin * BK + tid % BK, N, K, P, Q, g * Kg + k_block, Kg - k_block, tid);
    WgradXLoader<T, Acc, BN, BK, THREADS> bl;
    bl.init(x, tile_begin * BK + tid % BK, N, C, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
            stride_w, dilation_h, dilation_w, g, Cg, col_block, tid);

    Acc acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0;
    gemm_mainloop<Acc, BM, BN, BK, TM, TN>(a, bl, tile_begin, tile_end, acc);

    // Epilogue: dw[g*Kg + k, (c, r, s)] (one split) or the split's workspace slice. dw is small
    // next to the reduction that produced it, so these stores (4 consecutive columns per
    // thread, rows varying fastest across threads) are not worth a shared-memory transpose.
    // Guards: filters past the group's end and columns past C/groups*R*S are not written.
    const int ty = tid % (BM / TM), tx = tid / (BM / TM);
    const long long dw_count = (long long)K * CRS;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int k = k_block + frag_index(ty, i, BM, TM);
        if (k >= Kg) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int col = col_block + frag_index(tx, j, BN, TN);
            if (col >= CRS) continue;
            const long long at = (long long)(g * Kg + k) * CRS + col;
            if (splits == 1)
                dw[at] = from_acc<T>(acc[i][j]);
            else
                workspace[split * dw_count + at] = acc[i][j];
        }
    }
}

// dw[i] = sum over s = 0, 1, ..., splits-1 of workspace[s*count + i], in that order.
// Grid-stride over count; consecutive threads take consecutive i (coalesced).
template <typename T>
__global__ void conv2d_wgrad_v2_sum_splits(const typename accumulator<T>::type* __restrict__ workspace,
                                           T* __restrict__ dw, long long count, int splits) {
    typedef typename accumulator<T>::type Acc;
    for (long long i = grid_first_index(); i < count; i += grid_stride()) {
        Acc acc = 0;
        for (int s = 0; s < splits; ++s) acc += workspace[s * count + i];
        dw[i] = from_acc<T>(acc);
    }
}

// db[k] = sum_{n, p, q} dy[n, k, p, q]: block b handles filters k = b, b + gridDim.x, ...
// (uniform over the block, so every thread reaches the same barriers).
template <typename T>
__global__ void __launch_bounds__(BGRAD_V2_THREADS)
conv2d_bgrad_v2_tree(const T* __restrict__ dy, T* __restrict__ db, int N, int K, int P, int Q) {
    typedef typename accumulator<T>::type Acc;
    static_assert((BGRAD_V2_THREADS & (BGRAD_V2_THREADS - 1)) == 0, "tree needs a power of 2");
    __shared__ Acc partial[BGRAD_V2_THREADS];
    const int tid = threadIdx.x;
    const long long PQ = (long long)P * Q;
    for (long long k = blockIdx.x; k < K; k += gridDim.x) {
        // Thread t sums elements t, t + THREADS, ... of each (n, k) plane, n in order:
        // consecutive threads read consecutive elements (coalesced).
        Acc acc = 0;
        for (int n = 0; n < N; ++n) {
            const T* plane = dy + ((long long)n * K + k) * PQ;
            for (long long j = tid; j < PQ; j += BGRAD_V2_THREADS) acc += to_acc(plane[j]);
        }
        partial[tid] = acc;
        // Barrier 3: every thread's partial sum is stored before the tree reads its partner's.
        block_sync(3);
        for (int half = BGRAD_V2_THREADS / 2; half > 0; half /= 2) {
            if (tid < half) partial[tid] += partial[tid + half];
            // Barrier 4: this level's sums are stored before the next level reads them (and,
            // after the last level, before thread 0 reads partial[0]).
            block_sync(4);
        }
        // Thread 0 alone reads partial[0], and only thread 0 writes partial[0] in the next
        // filter's round, so no barrier is needed before the next round's stores.
        if (tid == 0) db[k] = from_acc<T>(partial[0]);
    }
}

// ---------------------------------------------------------------------------------------
// v3: the bias gradient of channels-last dy, read as it is.
//
// dy is (N, P, Q, K) C-contiguous: N*P*Q rows of K filters, so db[k] = sum over rows j of
// dy[j*K + k] is a column sum of a row-major matrix. v1 / v2 would need an NCHW copy of dy
// first (a full read and write of it) to sum each filter's plane.
//
//   block    BGRAD_V3_BLOCK_X consecutive filters x BGRAD_V3_BLOCK_Y warps: lane x reads
//            filter k_block + x, so a warp's loads of one row are consecutive (coalesced).
//   rows     grid y = splits: split s sums a fixed, contiguous chunk of rows (kernels.py:
//            bgrad_splits, a function of the geometry only); warp y of the block sums rows
//            chunk_begin + y, + BLOCK_Y, ... in order, then the BLOCK_Y partial sums are added
//            in warp order through shared memory.
//   output   one split writes db; several write their accumulator-type partials to
//            workspace[split*K + k], and conv2d_wgrad_v2_sum_splits adds them in split order.
//   filters  grid x = filter blocks, capped (kernels.py): a block-stride loop covers the rest.
//
// Deterministic (every sum in an order fixed by the geometry, no atomics); row indices in
// 64 bits (N*P*Q*K may pass 2^31).
#ifndef BGRAD_V3_BLOCK_X
#define BGRAD_V3_BLOCK_X 32  // consecutive filters per block (one warp's lanes)
#endif
#ifndef BGRAD_V3_BLOCK_Y
#define BGRAD_V3_BLOCK_Y 8   // warps per block, each summing every BLOCK_Y-th row of the chunk
#endif

template <typename T>
__global__ void __launch_bounds__(BGRAD_V3_BLOCK_X * BGRAD_V3_BLOCK_Y)
conv2d_bgrad_v3_nhwc(const T* __restrict__ dy, T* __restrict__ db,
                     typename accumulator<T>::type* __restrict__ workspace, int splits, int N,
                     int K, int P, int Q) {
    typedef typename accumulator<T>::type Acc;
    __shared__ Acc partial[BGRAD_V3_BLOCK_Y][BGRAD_V3_BLOCK_X];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int split = blockIdx.y;

    long long row_begin, row_end;  // this split's rows (the rule of kernels.bgrad_splits)
    split_range((long long)N * P * Q, splits, split, row_begin, row_end);

    // Block-stride over filter blocks (uniform over the block: every thread reaches the same
    // barriers).
    for (long long k_block = (long long)blockIdx.x * BGRAD_V3_BLOCK_X; k_block < K;
         k_block += (long long)gridDim.x * BGRAD_V3_BLOCK_X) {
        const long long k = k_block + tx;
        Acc acc = 0;
        // Lanes past the last filter (K not a multiple of BLOCK_X) read nothing, but still
        // store a partial and reach the barriers.
        if (k < K)
            for (long long j = row_begin + ty; j < row_end; j += BGRAD_V3_BLOCK_Y)
                acc += to_acc(dy[j * K + k]);
        partial[ty][tx] = acc;
        // Barrier 8: every warp's partial sums are stored before warp 0 reads them.
        block_sync(8);
        if (ty == 0 && k < K) {
            Acc sum = partial[0][tx];
            for (int y = 1; y < BGRAD_V3_BLOCK_Y; ++y) sum += partial[y][tx];  // warp order
            if (splits == 1)
                db[k] = from_acc<T>(sum);
            else
                workspace[(long long)split * K + k] = sum;
        }
        // Barrier 9: warp 0 has read every partial before the next filter block's stores
        // overwrite them.
        block_sync(9);
    }
}

// ---------------------------------------------------------------------------------------
// v3: the weight gradient on tensor cores (fp16 or bf16 inputs, fp32 accumulation),
// mma.sync m16n8k16.
//
// dw[k][(c, r, s)] is the GEMM dw^T = X_col^T * dy^T over the reduction j = (n, p, q):
//
//   GEMM rows m = (c, r, s) of one group (M = C/groups*R*S), columns = the group's filters
//   (K/groups), reduction j (N*P*Q, split-K as v2). Written this way round, the operand that
//   needs a gather (x, through the convolution's taps) is mma.cuh's A, which the mainloop
//   stages through registers, and dy — plain rows of consecutive pixels per filter — is B,
//   which it copies straight into shared memory (cp.async when 8 pixels are always one
//   aligned 16-byte piece of one image: P*Q % 8 == 0).
//
//   block tile   BM x BN x BK = 128 (c, r, s) x 64 filters x 32 pixels, 8 warps of 32 x 32
//                (mma.cuh: mma_gemm_mainloop, ldmatrix.x4 fragments, two stages).
//   split-K      grid z = groups x splits; split s sums a fixed, contiguous range of
//                reduction tiles (kernels.py: wgrad_splits with v3's tiles, a function of the
//                geometry only) and writes float partials to the workspace; v2's
//                conv2d_wgrad_v2_sum_splits adds them in split order. One split writes dw.
//   epilogue     straight from the accumulator fragments: dw is small next to the reduction
//                that produced it, so its stores are not worth a shared-memory transpose.
//
// Deterministic (fixed tiles, fixed split order, no atomics). T: __half or __nv_bfloat16 (float:
// TF32 below). Limits: as v2 (pixel indices within a plane in 64 bits).

#ifndef WGRAD_V3_BM
#define WGRAD_V3_BM 128  // (c, r, s) GEMM rows per block
#endif
#ifndef WGRAD_V3_BN
#define WGRAD_V3_BN 64   // filters (GEMM columns) per block
#endif
#ifndef WGRAD_V3_BK
#define WGRAD_V3_BK 32   // reduction steps (n, p, q) per shared-memory stage
#endif
#ifndef WGRAD_V3_WM
#define WGRAD_V3_WM 32   // GEMM rows per warp
#endif
#ifndef WGRAD_V3_WN
#define WGRAD_V3_WN 32   // GEMM columns per warp
#endif
#ifndef WGRAD_V3_MIN_BLOCKS
#define WGRAD_V3_MIN_BLOCKS 2  // resident blocks per SM the register budget must allow
#endif
#ifndef WGRAD_V3_MIN_BLOCKS_EMULATED
#define WGRAD_V3_MIN_BLOCKS_EMULATED 1  // sm_75: the shuffle emulation needs more registers
#endif
#if GPUCONV_MMA_PTX
#define WGRAD_V3_LAUNCH_MIN_BLOCKS WGRAD_V3_MIN_BLOCKS
#else
#define WGRAD_V3_LAUNCH_MIN_BLOCKS WGRAD_V3_MIN_BLOCKS_EMULATED
#endif
#define WGRAD_V3_THREADS ((WGRAD_V3_BM / WGRAD_V3_WM) * (WGRAD_V3_BN / WGRAD_V3_WN) * 32)

// float (TF32): the same GEMM on tf32 tensor cores (mma.sync m16n8k8, mma_tf32_gemm_mainloop),
// BK = 16 pixels (32-bit tiles at BK = 32 would not fit 48 KB of static shared memory); x is
// rounded to tf32 as it is gathered, dy tiles copied by cp.async as their fragments are read
// (mma_tf32_gemm_mainloop). Each product within 2^-9 of exact: |error| <= 2^-9 * sum |x*dy|.
// An opt-in (kernels.allow_tf32).
#ifndef WGRAD_TF32_BK
#define WGRAD_TF32_BK 16  // float: pixels per shared-memory stage (two k8 mma steps)
#endif

// Operand A of v3: thread t gathers GEMM row m_local = t % BM (one tap (c, r, s)) at the
// PER_THREAD consecutive pixels jj_local .. (jj_local = PER_THREAD * (t / BM); 16 halves or 8
// floats: 32 bytes) of every tile, as two 16-byte shared stores. A warp's 32 rows are 32
// neighbouring taps of one pixel (mostly neighbouring columns s of one image row).
template <typename T, int BM, int BK, int THREADS>
struct WgradV3XLoader {
    enum { PER_THREAD = BM * BK / THREADS, WORDS = mma_words(PER_THREAD, sizeof(T)),
           PITCH = BK + MmaTile<T>::skew };
    static_assert(BM * BK == THREADS * PER_THREAD && THREADS % BM == 0 && WORDS == 8,
                  "A tile split: 32 bytes per thread");
    const T* x_tap;               // x + (g*Cg + c)*H*W: this row's channel plane in image 0
    bool row_valid;
    int m_local, jj_local;
    int tap_h, tap_w;             // r*dilation_h - pad_h, s*dilation_w - pad_w
    int N, H, W, P, Q, stride_h, stride_w;
    long long image_stride;       // C*H*W
    int n, p, q;                  // pixel of this thread's first slot in the next tile
    MixedRadix3 step;             // BK as (n, p, q) digits

    __device__ __forceinline__ void init(const T* x, long long j_first, int m, int CRS,
                                         int C, int Cg, int g, int N_, int H_, int W_, int R,
                                         int S, int P_, int Q_, int pad_h, int pad_w,
                                         int stride_h_, int stride_w_, int dilation_h,
                                         int dilation_w, int tid) {
        N = N_; H = H_; W = W_; P = P_; Q = Q_; stride_h = stride_h_; stride_w = stride_w_;
        m_local = tid % BM;
        jj_local = (tid / BM) * PER_THREAD;
        row_valid = m < CRS;
        const int mm = row_valid ? m : 0;  // rows past C/groups*R*S read a valid tap's indices
        const int c = mm / (R * S);
        tap_h = ((mm / S) % R) * dilation_h - pad_h;
        tap_w = (mm % S) * dilation_w - pad_w;
        image_stride = (long long)C * H * W;
        x_tap = x + ((long long)g * Cg + c) * H * W;
        const long long j = j_first + jj_local;
        const long long PQ = (long long)P * Q;
        n = (int)(j / PQ);
        p = (int)((j - n * PQ) / Q);
        q = (int)(j % Q);
        step = mixed_radix_step(BK, P, Q);
    }
    __device__ __forceinline__ void load(unsigned (&regs)[WORDS]) {
        int nn = n, pp = p, qq = q;
#pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            const int h = pp * stride_h + tap_h;
            const int wi = qq * stride_w + tap_w;
            // Guards: rows past C/groups*R*S, pixels past N*P*Q (n reaches N in the last
            // partial tile) and taps in the zero padding load +0.0 (bits 0).
            const bool inside = row_valid && nn < N && h >= 0 && h < H && wi >= 0 && wi < W;
            mma_put(regs, i, inside ? x_tap[nn * image_stride + (long long)h * W + wi] : T(),
                    inside);
            if (++qq == Q) { qq = 0; if (++pp == P) { pp = 0; ++nn; } }  // j + 1 as (n, p, q)
        }
        advance_by_step(step, P, Q, n, p, q);
    }
    __device__ __forceinline__ void store(const unsigned (&regs)[WORDS],
                                          typename MmaTile<T>::type* tile) {
        mma_store_words<PITCH>(regs, tile, m_local, jj_local);
    }
};

// Operand B of v3: thread t copies one 16-byte piece (8 halves or 4 floats: PER_THREAD
// consecutive pixels) of filter n_local = t / (BK/PER_THREAD) of dy: four threads cover one
// filter's BK pixels. With P*Q % PER_THREAD == 0 and dy 16-byte aligned, PER_THREAD pixels
// starting at a multiple of PER_THREAD are one aligned 16-byte piece of one (n, k) plane (or
// wholly past N*P*Q), copied by cp.async; otherwise guarded loads that walk across image
// boundaries (float: rounded to tf32).
template <typename T, int BN, int BK, int THREADS>
struct WgradV3DyLoader {
    enum { PER_THREAD = 16 / sizeof(T), PITCH = BK + MmaTile<T>::skew };
    static_assert(BN * BK == THREADS * PER_THREAD, "B tile split");
    const T* dy;                     // dy itself (a valid address for zero-byte copies)
    const T* dy_filter;              // dy + k*P*Q for this thread's filter (image 0)
    bool col_valid, vector_ok;
    int n_local, jj_local, N;
    long long PQ, image_stride;      // P*Q (a plane may hold more than 2^31 pixels), K*P*Q
    int n;                           // image and in-plane pixel of this thread's first slot
    long long pq;                    // in the next tile

    __device__ __forceinline__ void init(const T* dy_, long long j_first, int k_first,
                                         int Kg_left, int N_, int K, int P, int Q, int tid) {
        dy = dy_;
        N = N_;
        PQ = (long long)P * Q;
        n_local = tid / (BK / PER_THREAD);
        jj_local = (tid % (BK / PER_THREAD)) * PER_THREAD;
        col_valid = n_local < Kg_left;
        image_stride = (long long)K * PQ;
        dy_filter = dy + (long long)(col_valid ? k_first + n_local : 0) * PQ;
        const long long j = j_first + jj_local;
        n = (int)(j / PQ);
        pq = j - (long long)n * PQ;
        vector_ok = PQ % PER_THREAD == 0 &&
                    (reinterpret_cast<unsigned long long>(dy) & 15ull) == 0;
    }
    // Fetch the next tile into `tile` (a free stage): asynchronously where possible.
    __device__ __forceinline__ void load(typename MmaTile<T>::type* tile) {
        auto* dst = tile + n_local * PITCH + jj_local;
        if (vector_ok) {
            const bool inside = col_valid && n < N;  // the whole piece or none of it
            cp_async_16(dst, inside ? dy_filter + n * image_stride + pq : dy, inside ? 16 : 0);
        } else {
            unsigned words[4];
            int nn = n;
            long long pp = pq;
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i) {
                const bool inside = col_valid && nn < N;
                mma_put(words, i, inside ? dy_filter[nn * image_stride + pp] : T(), inside);
                if (++pp == PQ) { pp = 0; ++nn; }
            }
            *reinterpret_cast<uint4*>(dst) = make_uint4(words[0], words[1], words[2], words[3]);
        }
        // On by BK pixels: pq stays below P*Q (BK may span several small images).
        pq += BK;
        while (pq >= PQ) { pq -= PQ; ++n; }
    }
};

// wgrad_mma_store: the tensor-core kernels' epilogue (v3, v4), straight from the fragments:
// D[row][col] = dw[filter k_block + col of group g][tap m_block + row], the taps counted in
// dw's own order ((c, r, s) for v3, (r, s, c) for v4), into dw (one split) or the split's
// workspace slice. dw is small next to the reduction that produced it, so its stores are not
// worth a shared-memory transpose. Guards: taps past CRS and filters past the group's end are
// not written.
template <int BM, int WM, int WN, typename T>
__device__ __forceinline__ void wgrad_mma_store(const float (&acc)[WM / 16][WN / 8][4], T* dw,
                                                float* workspace, int splits, int split, int g,
                                                int Kg, int K, int CRS, int m_block,
                                                int k_block) {
    const long long dw_count = (long long)K * CRS;
    mma_each_element<BM, WM, WN>(acc, [&](int row, int col, float v) {
        const int m = m_block + row, k = k_block + col;
        if (m >= CRS || k >= Kg) return;
        const long long at = (long long)(g * Kg + k) * CRS + m;
        if (splits == 1)
            dw[at] = from_acc<T>(v);
        else
            workspace[split * dw_count + at] = v;
    });
}

// WgradMmaBlock: where a block of the tensor-core kernels (v3, v4, v5) sits in their grid:
// x = tap-row tiles of BM, y = filter tiles of BN, z = groups * splits (z = g*splits + split),
// and which reduction tiles of BK its split sums (split_range).
struct WgradMmaBlock {
    int Cg, Kg, CRS;                      // channels, filters and taps per group
    int g, split;                         // the block's group and split
    int m_block, k_block;                 // its first tap row, first filter within the group
    long long NPQ, tile_begin, tile_end;  // pixels; the split's tiles [tile_begin, tile_end)

    __device__ __forceinline__ WgradMmaBlock(int splits, int N, int C, int K, int R, int S,
                                             int P, int Q, int groups, int BM, int BN,
                                             int BK) {
        Cg = C / groups; Kg = K / groups; CRS = Cg * R * S;
        g = blockIdx.z / splits; split = blockIdx.z % splits;
        m_block = blockIdx.x * BM;
        k_block = blockIdx.y * BN;
        NPQ = (long long)N * P * Q;
        split_range(div_up(NPQ, BK), splits, split, tile_begin, tile_end);
    }
    __device__ __forceinline__ int tiles() const {
        return tile_end > tile_begin ? (int)(tile_end - tile_begin) : 0;
    }
};

// Grid: x = (c, r, s) row tiles (ceil(C/groups*R*S / BM)), y = filter tiles
// (ceil(K/groups / BN)), z = groups * splits (z = g*splits + split). Block: WGRAD_V3_THREADS.
// workspace: splits * K*(C/groups)*R*S floats when splits > 1 (unused otherwise).
template <typename T>
__global__ void __launch_bounds__(WGRAD_V3_THREADS, WGRAD_V3_LAUNCH_MIN_BLOCKS)
conv2d_wgrad_v3_mma(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dw,
                    float* __restrict__ workspace, int splits, int N, int C, int H, int W, int K,
                    int R, int S, int P, int Q, int pad_h, int pad_w, int stride_h,
                    int stride_w, int dilation_h, int dilation_w, int groups) {
    constexpr bool TF32 = sizeof(T) == 4;
    static_assert(sizeof(T) == 2 || TF32, "conv2d_wgrad_v3_mma: 16-bit types or float (TF32)");
    typedef typename MmaTile<T>::type E;  // shared-memory element: 16-bit bits or float
    constexpr int BM = WGRAD_V3_BM, BN = WGRAD_V3_BN, BK = TF32 ? WGRAD_TF32_BK : WGRAD_V3_BK;
    constexpr int WM = WGRAD_V3_WM, WN = WGRAD_V3_WN, THREADS = WGRAD_V3_THREADS;
    __shared__ __align__(16) E a_smem[2][BM][BK + MmaTile<T>::skew];
    __shared__ __align__(16) E b_smem[2][BN][BK + MmaTile<T>::skew];

    const WgradMmaBlock blk(splits, N, C, K, R, S, P, Q, groups, BM, BN, BK);  // rows (c, r, s)
    const int tid = threadIdx.x;

    WgradV3XLoader<T, BM, BK, THREADS> a;
    a.init(x, blk.tile_begin * BK, blk.m_block + tid % BM, blk.CRS, C, blk.Cg, blk.g, N, H, W,
           R, S, P, Q, pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w, tid);
    WgradV3DyLoader<T, BN, BK, THREADS> bl;
    bl.init(dy, blk.tile_begin * BK, blk.g * blk.Kg + blk.k_block, blk.Kg - blk.k_block, N, K,
            P, Q, tid);

    float acc[WM / 16][WN / 8][4];
    mma_tile_product<T, BM, BN, BK, WM, WN>(a, bl, blk.tiles(), acc, a_smem, b_smem);

    wgrad_mma_store<BM, WM, WN>(acc, dw, workspace, splits, blk.split, blk.g, blk.Kg, K, blk.CRS,
                                blk.m_block, blk.k_block);
}

// ---------------------------------------------------------------------------------------
// v4: the weight gradient on tensor cores from channels-last tensors: x (N, H, W, C),
// dy (N, P, Q, K), dw (K, R, S, C/groups) (PyTorch's channels_last filters), all C-contiguous.
//
//   GEMM rows m = (r, s, c) of one group, c innermost (M = R*S*C/groups: dw's own order),
//   columns = the group's filters, reduction j = (n, p, q) (split-K as v3; kernels.py:
//   wgrad_splits with v3's tiles). Here both operands run along the GEMM sides in memory, a
//   pixel's channels (x) or filters (dy) side by side, so a 16-byte piece is 8 consecutive
//   rows (columns) of one reduction step: the stages are reduction-major (mma.cuh:
//   mma_kmajor_tile_product, ldmatrix.trans fragments) and both loaders copy their pieces with
//   cp.async, no register gather. Tiles, warps, epilogue, split rule and second pass: v3's.
//   Element-by-element loads (the same tiles, each element guarded) where a piece would not be
//   one aligned 16-byte vector: channels per group (x) or filters per group (dy) not a multiple
//   of the piece (8 halves, 4 floats), or an operand not 16-byte aligned.
//
// T: __half, __nv_bfloat16, or float (TF32, BK = WGRAD_TF32_BK). Deterministic as v3.

// Operand A of v4 and v5, reduction-major (the BK pixels of a stage each hold BM taps):
// A[j][m] = x[n, p*stride_h - pad_h + r*dilation_h, q*stride_w - pad_w + s*dilation_w, g*Cg + c]
// for j = (n, p, q), m = (r, s, c), element (m, j) of a stage at Layout::at(m, j) (v4:
// MmaKMajorRows; v5: WgmmaMnTile). Thread t copies piece t % PIECES_PER_ROW (PIECE
// consecutive taps: a fixed (r, s, c..c+PIECE-1)) of the stage's pixels t / PIECES_PER_ROW +
// i * ROWS_PER_PASS: neighbouring threads fetch neighbouring channels of one pixel.
template <typename T, int BM, int BK, int THREADS, class Layout = MmaKMajorRows<T, BM>>
struct WgradV4XLoader {
    enum { COPIES = 1, PIECE = 16 / sizeof(T), PIECES_PER_ROW = BM / PIECE,
           ROWS_PER_PASS = THREADS / PIECES_PER_ROW, PASSES = BK / ROWS_PER_PASS };
    static_assert(BM % PIECE == 0 && THREADS % PIECES_PER_ROW == 0 && BK % ROWS_PER_PASS == 0,
                  "A stage split into 16-byte pieces");
    static_assert(Layout::MN_MAJOR, "a piece is 8 (4) consecutive rows at one pixel");
    const T* x;
    int row_local, m_local;
    int m_first, CRS;             // the piece's first tap (GEMM row) and the taps per group
    int r, s, c;                  // digits of m_first
    int channel0;                 // g*Cg: the group's first channel
    int N, C, H, W, S, Cg, P, Q, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int n[PASSES], p[PASSES], q[PASSES];  // pixel of each pass's row in the next tile
    MixedRadix3 step;                     // BK as (n, p, q) digits
    bool vector_ok;

    __device__ __forceinline__ void init(const T* x_, long long j_first, int m_block, int N_,
                                         int C_, int H_, int W_, int R, int S_, int P_, int Q_,
                                         int pad_h_, int pad_w_, int stride_h_, int stride_w_,
                                         int dilation_h_, int dilation_w_, int g, int Cg_,
                                         int tid) {
        x = x_; N = N_; C = C_; H = H_; W = W_; S = S_; Cg = Cg_; P = P_; Q = Q_;
        pad_h = pad_h_; pad_w = pad_w_; stride_h = stride_h_; stride_w = stride_w_;
        dilation_h = dilation_h_; dilation_w = dilation_w_;
        row_local = tid / PIECES_PER_ROW;
        m_local = (tid % PIECES_PER_ROW) * PIECE;
        m_first = m_block + m_local;
        CRS = R * S * Cg;
        c = m_first % Cg;
        s = (m_first / Cg) % S;
        r = m_first / (Cg * S);
        channel0 = g * Cg;
        const long long PQ = (long long)P * Q;
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            const long long j = j_first + row_local + i * ROWS_PER_PASS;
            n[i] = (int)(j / PQ);
            p[i] = (int)((j - n[i] * PQ) / Q);
            q[i] = (int)(j % Q);
        }
        step = mixed_radix_step(BK, P, Q);
        vector_ok = Cg % PIECE == 0 && (reinterpret_cast<unsigned long long>(x) & 15ull) == 0;
    }
    // Offset in x of tap (rr, ss, cc) at pass i's pixel, or -1: past the batch, or the tap
    // lies in the zero padding.
    __device__ __forceinline__ long long tap(int i, int rr, int ss, int cc) const {
        const int h = p[i] * stride_h - pad_h + rr * dilation_h;
        const int w = q[i] * stride_w - pad_w + ss * dilation_w;
        if (n[i] >= N || h < 0 || h >= H || w < 0 || w >= W) return -1;
        return (((long long)n[i] * H + h) * W + w) * C + channel0 + cc;
    }
    // Fetch the next tile into `tile` (a free stage): asynchronously where possible.
    __device__ __forceinline__ void load(typename MmaKMajorTile<T>::type* tile) {
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            auto* dst = tile + Layout::at(m_local, row_local + i * ROWS_PER_PASS);
            if (vector_ok) {
                // PIECE channels of one tap, wholly inside the taps (CRS % PIECE == 0) or out.
                const long long at = m_first < CRS ? tap(i, r, s, c) : -1;
                cp_async_16(dst, at >= 0 ? x + at : x, at >= 0 ? 16 : 0);
            } else {
                unsigned words[4];
                int rr = r, ss = s, cc = c;
#pragma unroll
                for (int e = 0; e < PIECE; ++e) {
                    const long long at = m_first + e < CRS ? tap(i, rr, ss, cc) : -1;
                    mma_put(words, e, at >= 0 ? x[at] : T(), at >= 0);
                    if (++cc == Cg) { cc = 0; if (++ss == S) { ss = 0; ++rr; } }  // m + 1
                }
                *reinterpret_cast<uint4*>(dst) =
                    make_uint4(words[0], words[1], words[2], words[3]);
            }
            advance_by_step(step, P, Q, n[i], p[i], q[i]);
        }
    }
};

// Operand B of v4 and v5, reduction-major (BK pixels of BN filters): B[j][k] = dy[j, g*Kg + k]
// (pixel j = (n, p, q) is row j of dy seen as (N*P*Q, K)), element (k, j) of a stage at
// Layout::at(k, j). Thread t copies piece t % PIECES_PER_ROW (PIECE consecutive filters) of
// the stage's pixels t / PIECES_PER_ROW + i * ROWS_PER_PASS.
template <typename T, int BN, int BK, int THREADS, class Layout = MmaKMajorRows<T, BN>>
struct WgradV4DyLoader {
    enum { COPIES = 1, PIECE = 16 / sizeof(T), PIECES_PER_ROW = BN / PIECE,
           ROWS_PER_PASS = THREADS / PIECES_PER_ROW, PASSES = BK / ROWS_PER_PASS };
    static_assert(BN % PIECE == 0 && THREADS % PIECES_PER_ROW == 0 && BK % ROWS_PER_PASS == 0,
                  "B stage split into 16-byte pieces");
    static_assert(Layout::MN_MAJOR, "a piece is 8 (4) consecutive filters at one pixel");
    const T* dy;
    const T* dy_piece;     // dy + the piece's first filter (pixel 0)
    int row_local, k_local, K;
    int filters_left;      // filters of the group from the piece's first on (<= 0: none)
    long long j, NPQ;      // pixel of pass 0's row in the next tile; pixels in all
    bool vector_ok;

    __device__ __forceinline__ void init(const T* dy_, long long j_first, int k_first,
                                         int Kg_left, int Kg, int K_, long long NPQ_, int tid) {
        dy = dy_; K = K_; NPQ = NPQ_;
        row_local = tid / PIECES_PER_ROW;
        k_local = (tid % PIECES_PER_ROW) * PIECE;
        filters_left = Kg_left - k_local;
        dy_piece = dy + (filters_left > 0 ? k_first + k_local : 0);
        j = j_first + row_local;
        vector_ok = Kg % PIECE == 0 && (reinterpret_cast<unsigned long long>(dy) & 15ull) == 0;
    }
    // Fetch the next tile into `tile` (a free stage): asynchronously where possible.
    __device__ __forceinline__ void load(typename MmaKMajorTile<T>::type* tile) {
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            auto* dst = tile + Layout::at(k_local, row_local + i * ROWS_PER_PASS);
            const long long jj = j + i * ROWS_PER_PASS;
            const T* row = dy_piece + jj * K;
            if (vector_ok) {
                // Kg % PIECE == 0: the piece is wholly among the group's filters or past them.
                const bool inside = jj < NPQ && filters_left > 0;
                cp_async_16(dst, inside ? row : dy, inside ? 16 : 0);
            } else {
                unsigned words[4];
#pragma unroll
                for (int e = 0; e < PIECE; ++e) {
                    const bool inside = jj < NPQ && e < filters_left;
                    mma_put(words, e, inside ? row[e] : T(), inside);
                }
                *reinterpret_cast<uint4*>(dst) =
                    make_uint4(words[0], words[1], words[2], words[3]);
            }
        }
        j += BK;
    }
};

// Grid and block: v3's (x = (r, s, c) row tiles, y = filter tiles, z = groups * splits;
// WGRAD_V3_THREADS). workspace: splits * K*(C/groups)*R*S floats when splits > 1.
template <typename T>
__global__ void __launch_bounds__(WGRAD_V3_THREADS, WGRAD_V3_LAUNCH_MIN_BLOCKS)
conv2d_wgrad_v4_nhwc_mma(const T* __restrict__ x, const T* __restrict__ dy,
                         T* __restrict__ dw, float* __restrict__ workspace, int splits, int N,
                         int C, int H, int W, int K, int R, int S, int P, int Q, int pad_h,
                         int pad_w, int stride_h, int stride_w, int dilation_h, int dilation_w,
                         int groups) {
    constexpr bool TF32 = sizeof(T) == 4;
    static_assert(sizeof(T) == 2 || TF32, "conv2d_wgrad_v4_nhwc_mma: 16-bit types or float (TF32)");
    typedef typename MmaKMajorTile<T>::type E;  // shared-memory element: 16-bit bits or float
    constexpr int BM = WGRAD_V3_BM, BN = WGRAD_V3_BN, BK = TF32 ? WGRAD_TF32_BK : WGRAD_V3_BK;
    constexpr int WM = WGRAD_V3_WM, WN = WGRAD_V3_WN, THREADS = WGRAD_V3_THREADS;
    __shared__ __align__(16) E a_smem[MMA_COPY_STAGES][BK][BM + MmaKMajorTile<T>::skew];
    __shared__ __align__(16) E b_smem[MMA_COPY_STAGES][BK][BN + MmaKMajorTile<T>::skew];

    const WgradMmaBlock blk(splits, N, C, K, R, S, P, Q, groups, BM, BN, BK);  // rows (r, s, c)

    WgradV4XLoader<T, BM, BK, THREADS> a;
    a.init(x, blk.tile_begin * BK, blk.m_block, N, C, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
           stride_w, dilation_h, dilation_w, blk.g, blk.Cg, threadIdx.x);
    WgradV4DyLoader<T, BN, BK, THREADS> b;
    b.init(dy, blk.tile_begin * BK, blk.g * blk.Kg + blk.k_block, blk.Kg - blk.k_block, blk.Kg,
           K, blk.NPQ, threadIdx.x);

    float acc[WM / 16][WN / 8][4];
    mma_kmajor_tile_product<T, BM, BN, BK, WM, WN>(a, b, blk.tiles(), acc, a_smem, b_smem);
    wgrad_mma_store<BM, WM, WN>(acc, dw, workspace, splits, blk.split, blk.g, blk.Kg, K, blk.CRS,
                                blk.m_block, blk.k_block);
}

// ---------------------------------------------------------------------------------------
// v5: v4 on wgmma, the warpgroup MMA of sm_90a (Hopper): the same loaders, tiles, grid, split
// rule and second pass, with both stages in the PTX ISA's MN-major core-matrix layout
// (mma.cuh: WgmmaMnTile: a 16-byte piece of 8 channels or 8 filters of one pixel is one row of
// a core matrix) and each of the two warpgroups multiplying its 64 taps of the 128 x 64 tile
// straight out of shared memory (wgmma.mma_async m64n64k16 with both operands transposed,
// imm-trans 1: no ldmatrix, no fragments in registers). float16 / bfloat16 only (the ISA
// transposes 16-bit operands only). Off sm_90a the wgmma is emulated with mma.m16n8k16 over
// the same shared-memory coordinates. Deterministic as v3.
template <typename T>
__global__ void __launch_bounds__(WGRAD_V3_THREADS, WGRAD_V3_LAUNCH_MIN_BLOCKS)
conv2d_wgrad_v5_nhwc_wgmma(const T* __restrict__ x, const T* __restrict__ dy,
                           T* __restrict__ dw, float* __restrict__ workspace, int splits, int N,
                           int C, int H, int W, int K, int R, int S, int P, int Q, int pad_h,
                           int pad_w, int stride_h, int stride_w, int dilation_h,
                           int dilation_w, int groups) {
    static_assert(sizeof(T) == 2, "conv2d_wgrad_v5_nhwc_wgmma: 16-bit types");
    constexpr int BM = WGRAD_V3_BM, BN = WGRAD_V3_BN, BK = WGRAD_V3_BK;
    static_assert(BM / 64 * 128 == WGRAD_V3_THREADS, "two warpgroups: v3's threads");
    typedef WgmmaMnTile<BM, BK> ATile;
    typedef WgmmaMnTile<BN, BK> BTile;
    __shared__ __align__(128) unsigned short a_smem[MMA_COPY_STAGES][ATile::ELEMENTS];
    __shared__ __align__(128) unsigned short b_smem[MMA_COPY_STAGES][BTile::ELEMENTS];

    const WgradMmaBlock blk(splits, N, C, K, R, S, P, Q, groups, BM, BN, BK);  // rows (r, s, c)

    WgradV4XLoader<T, BM, BK, WGRAD_V3_THREADS, ATile> a;
    a.init(x, blk.tile_begin * BK, blk.m_block, N, C, H, W, R, S, P, Q, pad_h, pad_w, stride_h,
           stride_w, dilation_h, dilation_w, blk.g, blk.Cg, threadIdx.x);
    WgradV4DyLoader<T, BN, BK, WGRAD_V3_THREADS, BTile> b;
    b.init(dy, blk.tile_begin * BK, blk.g * blk.Kg + blk.k_block, blk.Kg - blk.k_block, blk.Kg,
           K, blk.NPQ, threadIdx.x);

    float acc[1][BN / 8][4];  // this warp's 16 taps x BN filters
    wgmma_tile_product<T, BM, BN, BK, ATile, BTile>(a, b, blk.tiles(), acc, a_smem, b_smem);
    wgrad_mma_store<BM, 16, BN>(acc, dw, workspace, splits, blk.split, blk.g, blk.Kg, K, blk.CRS,
                                blk.m_block, blk.k_block);
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv2d_wgrad.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv2d_wgrad_instance(int i) {
    void* const instances[] = {(void*)conv2d_wgrad_v1_direct<__half>,
                               (void*)conv2d_wgrad_v1_direct<__nv_bfloat16>,
                               (void*)conv2d_wgrad_v1_direct<float>,
                               (void*)conv2d_wgrad_v1_direct<double>,
                               (void*)conv2d_bgrad_v1_direct<__half>,
                               (void*)conv2d_bgrad_v1_direct<__nv_bfloat16>,
                               (void*)conv2d_bgrad_v1_direct<float>,
                               (void*)conv2d_bgrad_v1_direct<double>,
                               (void*)conv2d_wgrad_v2_implicit_gemm<__half>,
                               (void*)conv2d_wgrad_v2_implicit_gemm<__nv_bfloat16>,
                               (void*)conv2d_wgrad_v2_implicit_gemm<float>,
                               (void*)conv2d_wgrad_v2_implicit_gemm<double>,
                               (void*)conv2d_wgrad_v2_sum_splits<__half>,
                               (void*)conv2d_wgrad_v2_sum_splits<__nv_bfloat16>,
                               (void*)conv2d_wgrad_v2_sum_splits<float>,
                               (void*)conv2d_wgrad_v2_sum_splits<double>,
                               (void*)conv2d_bgrad_v2_tree<__half>,
                               (void*)conv2d_bgrad_v2_tree<__nv_bfloat16>,
                               (void*)conv2d_bgrad_v2_tree<float>,
                               (void*)conv2d_bgrad_v2_tree<double>,
                               (void*)conv2d_bgrad_v3_nhwc<__half>,
                               (void*)conv2d_bgrad_v3_nhwc<__nv_bfloat16>,
                               (void*)conv2d_bgrad_v3_nhwc<float>,
                               (void*)conv2d_bgrad_v3_nhwc<double>,
                               (void*)conv2d_wgrad_v3_mma<__half>,
                               (void*)conv2d_wgrad_v3_mma<__nv_bfloat16>,
                               (void*)conv2d_wgrad_v3_mma<float>,
                               (void*)conv2d_wgrad_v4_nhwc_mma<__half>,
                               (void*)conv2d_wgrad_v4_nhwc_mma<__nv_bfloat16>,
                               (void*)conv2d_wgrad_v4_nhwc_mma<float>,
                               (void*)conv2d_wgrad_v5_nhwc_wgmma<__half>,
                               (void*)conv2d_wgrad_v5_nhwc_wgmma<__nv_bfloat16>};
    return instances[i];
}
#endif
