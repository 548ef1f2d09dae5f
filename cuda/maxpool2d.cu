// maxpool2d.cu — 2-D max-pooling with argmax indices, forward and backward, with PyTorch's
// exact rules (torch.nn.functional.max_pool2d(..., return_indices=True)):
//
//   forward:   y[n, c, p, q]   = max over the window's in-bounds taps
//                                x[n, c, p*stride_h - pad_h + r*dilation_h,
//                                        q*stride_w - pad_w + s*dilation_w],  0 <= r < R, 0 <= s < S
//              idx[n, c, p, q] = h*W + w of the chosen tap, within the (n, c) plane (int64)
//   backward:  dx[n, c, h, w]  = sum of dy[n, c, p, q] over the outputs with
//                                idx[n, c, p, q] == h*W + w
//
//   Window scan: row-major, a tap replaces the running maximum when `val > max || isnan(val)`,
//   so ties keep the first maximum, and a NaN anywhere gives y = NaN with the index of the
//   LAST NaN. The padding acts as -inf and never becomes an index: the first in-bounds tap
//   is always taken, so an all -inf window returns -inf and that first tap's index.
//   ceil_mode windows are clipped to the input the same way (P, Q come from the caller).
//
// Layouts (all C-contiguous): x, dx (N, C, H, W); y, dy, idx (N, C, P, Q), idx int64.
// T is float, double or __half; comparisons and the backward sums use accumulator<T>::type
// (float for __half: converting a __half to float and back is exact, so y is unchanged).
//
// Kernels:
//   maxpool2d_fwd_v1_direct<T>  one thread per y element, a grid-stride loop over N*C*P*Q;
//                               each thread scans its R x S window from global memory.
//   maxpool2d_bwd_v1_gather<T>  one thread per dx element, a grid-stride loop over N*C*H*W;
//                               each thread visits, in row-major order, the outputs whose
//                               window span covers its element and sums dy where idx points at
//                               it. Deterministic, no atomics; overlapping windows accumulate.
//   maxpool2d_fwd_v2_plane<T>   the v1 rules and scan, launched 2-D: a 32 x 8 block of outputs
//                               of one (n, c) plane, grid (Q tiles, P tiles, planes), the grid's
//                               z looping over N*C planes past 65535. No division per element
//                               (v1 splits a 64-bit flat index with three 64-bit div/mods, which
//                               the GPU emulates in dozens of instructions: at HBM speed a
//                               pooling kernel is that integer work, not its loads), and
//                               in-plane offsets in 32 bits. Limit: H*W and P*Q < 2^31.
//   maxpool2d_bwd_v2_plane<T>   the v1 gather, launched the same way over dx (W, H tiles).
//   maxpool2d_fwd_v3_vec<T>     v2 with POOL_V3_VEC (4) consecutive outputs of one row per
//                               thread, stored as vectors: y in one 16-byte store (float; 8
//                               bytes for the 16-bit types, two 16-byte stores for double), idx
//                               in two, where a v2 thread stores one value and one index. Each
//                               output still follows v1's scan, tap by tap; x is read through
//                               the read-only path (__ldg).
//   maxpool2d_bwd_v3_vec<T>     the v2 gather with POOL_V3_VEC consecutive dx elements of one row
//                               per thread: the outputs that can reach any of them are visited
//                               once (idx read once per (p, q), dy only where idx names one of
//                               the thread's elements), and dx is stored as one vector.
//   v3 stores vectors only where every row of the output holds whole vectors (Q, resp. W, a
//   multiple of POOL_V3_VEC) and the array is aligned: otherwise it stores element by element.
//   Results are bitwise v1's in every case.
//   Not done: sharing the loaded window columns between a thread's outputs in registers (the
//   k3 s2 overlap is served by L1 anyway), shared-memory staging of the input rows.

#include "common.cuh"

// Block shape of the v2 kernels (kernels.py's POOL_V2_BLOCK mirrors it): 32 consecutive
// columns (one warp: coalesced 128-byte rows of y, idx, dy and dx) x 8 rows.
#ifndef POOL_V2_BLOCK_X
#define POOL_V2_BLOCK_X 32
#endif
#ifndef POOL_V2_BLOCK_Y
#define POOL_V2_BLOCK_Y 8
#endif

// Block shape and outputs per thread of the v3 kernels (kernels.py's POOL_V3_BLOCK and
// POOL_V3_VEC mirror them): 32 threads x POOL_V3_VEC columns (a warp stores 32 consecutive
// vectors: 512 bytes of float y) x 8 rows. POOL_V3_VEC is a power of two.
#ifndef POOL_V3_BLOCK_X
#define POOL_V3_BLOCK_X 32
#endif
#ifndef POOL_V3_BLOCK_Y
#define POOL_V3_BLOCK_Y 8
#endif
#ifndef POOL_V3_VEC
#define POOL_V3_VEC 4
#endif

template <typename T>
__global__ void maxpool2d_fwd_v1_direct(const T* __restrict__ x, T* __restrict__ y,
                                        long long* __restrict__ idx, int N, int C, int H,
                                        int W, int R, int S, int P, int Q, int pad_h, int pad_w,
                                        int stride_h, int stride_w, int dilation_h,
                                        int dilation_w) {
    typedef typename accumulator<T>::type Acc;
    const long long y_count = (long long)N * C * P * Q;

    // Grid-stride loop over y; consecutive threads take consecutive q, so y and idx stores
    // are coalesced.
    for (long long i = grid_first_index(); i < y_count; i += grid_stride()) {
        long long n, c, p, q;
        split4(i, C, P, Q, n, c, p, q);
        const T* x_plane = x + offset4(n, c, 0, 0, C, H, W);
        const long long h_first = p * stride_h - pad_h;  // window's top-left (may be padding)
        const long long w_first = q * stride_w - pad_w;

        Acc max_val = -INFINITY;
        long long max_idx = -1;  // -1: no in-bounds tap seen yet
        for (int r = 0; r < R; ++r) {
            const long long h = h_first + (long long)r * dilation_h;
            // Rows in the padding (or past a ceil_mode edge) are -inf: never chosen.
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < S; ++s) {
                // wi: the width coordinate (w is the filter's name elsewhere).
                const long long wi = w_first + (long long)s * dilation_w;
                // Columns in the padding (or past a ceil_mode edge) are -inf: never chosen.
                if (wi < 0 || wi >= W) continue;
                const Acc val = to_acc(x_plane[h * W + wi]);
                // First in-bounds tap always (PyTorch starts from it even when it is -inf),
                // then PyTorch's rule: strictly greater, or NaN (so the last NaN wins).
                if (max_idx < 0 || val > max_val || is_nan(val)) {
                    max_val = val;
                    max_idx = h * W + wi;
                }
            }
        }
        y[i] = from_acc<T>(max_val);
        idx[i] = max_idx;
    }
}

template <typename T>
__global__ void maxpool2d_bwd_v1_gather(const T* __restrict__ dy,
                                        const long long* __restrict__ idx, T* __restrict__ dx,
                                        int N, int C, int H, int W, int R, int S, int P, int Q,
                                        int pad_h, int pad_w, int stride_h, int stride_w,
                                        int dilation_h, int dilation_w) {
    typedef typename accumulator<T>::type Acc;
    const long long dx_count = (long long)N * C * H * W;
    const long long span_h = (long long)(R - 1) * dilation_h;  // window extent minus one
    const long long span_w = (long long)(S - 1) * dilation_w;

    // Grid-stride loop over dx; consecutive threads take consecutive w, so dx stores are
    // coalesced.
    for (long long i = grid_first_index(); i < dx_count; i += grid_stride()) {
        long long n, c, h, wi;  // wi: the width coordinate
        split4(i, C, H, W, n, c, h, wi);
        const long long plane_offset = offset4(n, c, 0, 0, C, P, Q);  // (n, c) plane of dy/idx
        const long long target = h * W + wi;                          // what idx must say

        // Output rows p whose window span [p*stride_h - pad_h, ... + span_h] covers h:
        //   p*stride_h <= h + pad_h  and  p*stride_h >= h + pad_h - span_h.
        // Clamped to [0, P): windows outside the output do not exist.
        const long long h_padded = h + pad_h;
        const long long p_begin = h_padded > span_h ? div_up(h_padded - span_h, stride_h) : 0;
        const long long p_end = h_padded / stride_h + 1 < P ? h_padded / stride_h + 1 : P;
        const long long w_padded = wi + pad_w;
        const long long q_begin = w_padded > span_w ? div_up(w_padded - span_w, stride_w) : 0;
        const long long q_end = w_padded / stride_w + 1 < Q ? w_padded / stride_w + 1 : Q;

        Acc acc = 0;
        for (long long p = p_begin; p < p_end; ++p) {
            for (long long q = q_begin; q < q_end; ++q) {
                const long long j = plane_offset + p * Q + q;
                // Only the output whose argmax is this element passes its gradient here.
                if (idx[j] == target) acc += to_acc(dy[j]);
            }
        }
        dx[i] = from_acc<T>(acc);
    }
}

// ---------------------------------------------------------------------------------------
// v2: 2-D launches, 32-bit in-plane index math.

// Grid: x = ceil(Q / 32), y = ceil(P / 8), z = min(N*C, 65535) (planes z, z + gridDim.z, ...).
template <typename T>
__global__ void __launch_bounds__(POOL_V2_BLOCK_X * POOL_V2_BLOCK_Y)
maxpool2d_fwd_v2_plane(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx,
                       int N, int C, int H, int W, int R, int S, int P, int Q, int pad_h,
                       int pad_w, int stride_h, int stride_w, int dilation_h, int dilation_w) {
    typedef typename accumulator<T>::type Acc;
    const int q = blockIdx.x * POOL_V2_BLOCK_X + threadIdx.x;
    const int p = blockIdx.y * POOL_V2_BLOCK_Y + threadIdx.y;
    // Guard: the last block column / row overhangs the plane (no barriers below, so these
    // threads may leave at once).
    if (p >= P || q >= Q) return;
    const int h_first = p * stride_h - pad_h;  // window's top-left (may be padding)
    const int w_first = q * stride_w - pad_w;
    const long long planes = (long long)N * C;
    const long long in_plane = (long long)H * W, out_plane = (long long)P * Q;
    for (long long plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const T* x_plane = x + plane * in_plane;
        Acc max_val = -INFINITY;
        int max_idx = -1;  // -1: no in-bounds tap seen yet
        for (int r = 0; r < R; ++r) {
            const int h = h_first + r * dilation_h;
            // Rows in the padding (or past a ceil_mode edge) are -inf: never chosen.
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < S; ++s) {
                const int wi = w_first + s * dilation_w;
                // Columns in the padding (or past a ceil_mode edge) are -inf: never chosen.
                if (wi < 0 || wi >= W) continue;
                const Acc val = to_acc(x_plane[h * W + wi]);
                // v1's rule: first in-bounds tap, then strictly greater or NaN.
                if (max_idx < 0 || val > max_val || is_nan(val)) {
                    max_val = val;
                    max_idx = h * W + wi;
                }
            }
        }
        // Consecutive threads (threadIdx.x) write consecutive q: coalesced.
        const long long out = plane * out_plane + p * Q + q;
        y[out] = from_acc<T>(max_val);
        idx[out] = max_idx;
    }
}

// Grid: x = ceil(W / 32), y = ceil(H / 8), z = min(N*C, 65535).
template <typename T>
__global__ void __launch_bounds__(POOL_V2_BLOCK_X * POOL_V2_BLOCK_Y)
maxpool2d_bwd_v2_plane(const T* __restrict__ dy, const long long* __restrict__ idx,
                       T* __restrict__ dx, int N, int C, int H, int W, int R, int S, int P,
                       int Q, int pad_h, int pad_w, int stride_h, int stride_w, int dilation_h,
                       int dilation_w) {
    typedef typename accumulator<T>::type Acc;
    const int wi = blockIdx.x * POOL_V2_BLOCK_X + threadIdx.x;  // the width coordinate
    const int h = blockIdx.y * POOL_V2_BLOCK_Y + threadIdx.y;
    // Guard: the last block column / row overhangs the plane (no barriers below).
    if (h >= H || wi >= W) return;
    const int span_h = (R - 1) * dilation_h, span_w = (S - 1) * dilation_w;
    // The outputs whose window span covers (h, wi), clamped to the output (as in v1).
    const int h_padded = h + pad_h, w_padded = wi + pad_w;
    const int p_begin = h_padded > span_h ? (h_padded - span_h + stride_h - 1) / stride_h : 0;
    const int p_end = h_padded / stride_h + 1 < P ? h_padded / stride_h + 1 : P;
    const int q_begin = w_padded > span_w ? (w_padded - span_w + stride_w - 1) / stride_w : 0;
    const int q_end = w_padded / stride_w + 1 < Q ? w_padded / stride_w + 1 : Q;
    const long long target = (long long)h * W + wi;  // what idx must say
    const long long planes = (long long)N * C;
    const long long in_plane = (long long)H * W, out_plane = (long long)P * Q;
    for (long long plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const long long* idx_plane = idx + plane * out_plane;
        const T* dy_plane = dy + plane * out_plane;
        Acc acc = 0;
        for (int p = p_begin; p < p_end; ++p) {
            for (int q = q_begin; q < q_end; ++q) {
                // Only the output whose argmax is this element passes its gradient here.
                if (idx_plane[p * Q + q] == target) acc += to_acc(dy_plane[p * Q + q]);
            }
        }
        // Consecutive threads write consecutive w: coalesced.
        dx[plane * in_plane + target] = from_acc<T>(acc);
    }
}

// ---------------------------------------------------------------------------------------
// v3: v2's launch with POOL_V3_VEC consecutive elements of one row per thread, vector stores.

// N consecutive E's as one object aligned to their whole size: a copy of one is a single
// N*sizeof(E)-byte store (st.global.v4.b32 / v2.b64: STG.E.128) when that is at most 16 bytes.
template <typename E, int N>
struct alignas(N * sizeof(E)) PoolPack {
    E v[N];
};

// Whether rows of `row_length` elements of E at `base` can be stored as whole V-element
// vectors: every row starts a vector (row_length % V == 0, so every q0 = V*k is one) and
// base is aligned to the vectors' pieces (min(16, V*sizeof(E)) bytes, see pool_store).
template <int V, typename E>
__device__ __forceinline__ bool pool_vector_ok(const E* base, int row_length) {
    constexpr unsigned long long PIECE = V * sizeof(E) < 16 ? V * sizeof(E) : 16;
    return row_length % V == 0 && (reinterpret_cast<unsigned long long>(base) % PIECE) == 0;
}

// dst[0..count) = v[0..count): V elements in pieces of at most 16 bytes when `vector` says
// dst holds a whole aligned vector (count == V), else one guarded store per element.
template <int V, typename E>
__device__ __forceinline__ void pool_store(E* dst, const E (&v)[V], int count, bool vector) {
    static_assert(V > 0 && (V & (V - 1)) == 0, "POOL_V3_VEC must be a power of two");
    constexpr int PIECE = V * sizeof(E) < 16 ? V : 16 / sizeof(E);  // elements per store
    if (vector) {
#pragma unroll
        for (int i = 0; i < V; i += PIECE) {
            PoolPack<E, PIECE> piece;
#pragma unroll
            for (int j = 0; j < PIECE; ++j) piece.v[j] = v[i + j];
            *reinterpret_cast<PoolPack<E, PIECE>*>(dst + i) = piece;
        }
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i)
            if (i < count) dst[i] = v[i];
    }
}

// Grid: x = ceil(Q / (32*POOL_V3_VEC)), y = ceil(P / 8), z = min(N*C, 65535).
// Thread (tx, ty) computes outputs q0 .. q0 + V - 1 of row p, q0 = V * (column of the thread).
template <typename T>
__global__ void __launch_bounds__(POOL_V3_BLOCK_X * POOL_V3_BLOCK_Y)
maxpool2d_fwd_v3_vec(const T* __restrict__ x, T* __restrict__ y, long long* __restrict__ idx,
                     int N, int C, int H, int W, int R, int S, int P, int Q, int pad_h,
                     int pad_w, int stride_h, int stride_w, int dilation_h, int dilation_w) {
    typedef typename accumulator<T>::type Acc;
    constexpr int V = POOL_V3_VEC;
    const int q0 = (int)((blockIdx.x * POOL_V3_BLOCK_X + threadIdx.x) * V);
    const int p = blockIdx.y * POOL_V3_BLOCK_Y + threadIdx.y;
    // Guard: the last block column / row overhangs the plane (no barriers below).
    if (p >= P || q0 >= Q) return;
    const int count = Q - q0 < V ? Q - q0 : V;  // this thread's outputs inside the row
    const int h_first = p * stride_h - pad_h;   // the windows' top row (may be padding)
    const int w_first = q0 * stride_w - pad_w;  // output q0's left column (may be padding)
    // One flag for the whole grid per array (alignment and Q are uniform).
    const bool y_vector = pool_vector_ok<V>(y, Q), idx_vector = pool_vector_ok<V>(idx, Q);
    const long long planes = (long long)N * C;
    const long long in_plane = (long long)H * W, out_plane = (long long)P * Q;
    for (long long plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const T* x_plane = x + plane * in_plane;
        Acc max_val[V];
        int max_idx[V];
#pragma unroll
        for (int v = 0; v < V; ++v) {
            max_val[v] = -INFINITY;
            max_idx[v] = -1;  // -1: no in-bounds tap seen yet
        }
        // The V windows share their rows: row r is checked once, then each output scans its
        // taps of that row. Each output sees its taps in v1's row-major order.
        for (int r = 0; r < R; ++r) {
            const int h = h_first + r * dilation_h;
            // Rows in the padding (or past a ceil_mode edge) are -inf: never chosen.
            if (h < 0 || h >= H) continue;
            const T* x_row = x_plane + h * W;
#pragma unroll
            for (int v = 0; v < V; ++v) {
                if (v >= count) continue;  // past the row's end: no such output
                for (int s = 0; s < S; ++s) {
                    const int wi = w_first + v * stride_w + s * dilation_w;
                    // Columns in the padding (or past a ceil_mode edge) are -inf: never chosen.
                    if (wi < 0 || wi >= W) continue;
                    const Acc val = to_acc(load_readonly(x_row + wi));
                    // v1's rule: first in-bounds tap, then strictly greater or NaN.
                    if (max_idx[v] < 0 || val > max_val[v] || is_nan(val)) {
                        max_val[v] = val;
                        max_idx[v] = h * W + wi;
                    }
                }
            }
        }
        T y_out[V];
        long long idx_out[V];
#pragma unroll
        for (int v = 0; v < V; ++v) {
            y_out[v] = from_acc<T>(max_val[v]);
            idx_out[v] = max_idx[v];
        }
        // Consecutive threads store consecutive vectors: coalesced.
        const long long out = plane * out_plane + p * Q + q0;
        pool_store(y + out, y_out, count, y_vector);
        pool_store(idx + out, idx_out, count, idx_vector);
    }
}

// Grid: x = ceil(W / (32*POOL_V3_VEC)), y = ceil(H / 8), z = min(N*C, 65535).
// Thread (tx, ty) computes dx elements w0 .. w0 + V - 1 of row h.
template <typename T>
__global__ void __launch_bounds__(POOL_V3_BLOCK_X * POOL_V3_BLOCK_Y)
maxpool2d_bwd_v3_vec(const T* __restrict__ dy, const long long* __restrict__ idx,
                     T* __restrict__ dx, int N, int C, int H, int W, int R, int S, int P, int Q,
                     int pad_h, int pad_w, int stride_h, int stride_w, int dilation_h,
                     int dilation_w) {
    typedef typename accumulator<T>::type Acc;
    constexpr int V = POOL_V3_VEC;
    const int w0 = (int)((blockIdx.x * POOL_V3_BLOCK_X + threadIdx.x) * V);
    const int h = blockIdx.y * POOL_V3_BLOCK_Y + threadIdx.y;
    // Guard: the last block column / row overhangs the plane (no barriers below).
    if (h >= H || w0 >= W) return;
    const int count = W - w0 < V ? W - w0 : V;  // this thread's elements inside the row
    const int span_h = (R - 1) * dilation_h, span_w = (S - 1) * dilation_w;
    // The output rows whose window span covers row h, clamped to the output (as in v1): the
    // same for the V elements.
    const int h_padded = h + pad_h;
    const int p_begin = h_padded > span_h ? (h_padded - span_h + stride_h - 1) / stride_h : 0;
    const int p_end = h_padded / stride_h + 1 < P ? h_padded / stride_h + 1 : P;
    // The output columns whose window span covers any of the V elements: from the first
    // element's first (as in v1) to the last element's last, clamped to the output.
    const int first_padded = w0 + pad_w, last_padded = w0 + count - 1 + pad_w;
    const int q_first =
        first_padded > span_w ? (first_padded - span_w + stride_w - 1) / stride_w : 0;
    const int q_last = last_padded / stride_w + 1 < Q ? last_padded / stride_w + 1 : Q;  // one past
    const long long target = (long long)h * W + w0;  // what idx must say for element 0
    const bool dx_vector = pool_vector_ok<V>(dx, W);  // uniform over the grid
    const long long planes = (long long)N * C;
    const long long in_plane = (long long)H * W, out_plane = (long long)P * Q;
    for (long long plane = blockIdx.z; plane < planes; plane += gridDim.z) {
        const long long* idx_plane = idx + plane * out_plane;
        const T* dy_plane = dy + plane * out_plane;
        Acc acc[V];
#pragma unroll
        for (int v = 0; v < V; ++v) acc[v] = 0;
        // Row-major (p, q), as v1: every accumulator receives its terms in v1's order.
        for (int p = p_begin; p < p_end; ++p) {
            // About (V - 1 + span_w) / stride_w + 1 columns per row: not unrolled, which
            // would buy little and cost registers (ptxas spilled one for sm_80).
#pragma unroll 1
            for (int q = q_first; q < q_last; ++q) {
                // idx names at most one element: element d of this thread if 0 <= d < count.
                const long long d = load_readonly(idx_plane + p * Q + q) - target;
                if (d < 0 || d >= count) continue;
                // v1's range: only an output whose window span covers element d passes its
                // gradient there (an index pointing elsewhere is ignored).
                const int window = q * stride_w - pad_w;  // output q's first column
                if (w0 + (int)d < window || w0 + (int)d > window + span_w) continue;
                const Acc g = to_acc(load_readonly(dy_plane + p * Q + q));
#pragma unroll
                for (int v = 0; v < V; ++v)
                    if (d == v) acc[v] += g;
            }
        }
        T dx_out[V];
#pragma unroll
        for (int v = 0; v < V; ++v) dx_out[v] = from_acc<T>(acc[v]);
        // Consecutive threads store consecutive vectors: coalesced.
        pool_store(dx + plane * in_plane + target, dx_out, count, dx_vector);
    }
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/maxpool2d.cu`: taking each instance's
// address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU runtime
// get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* maxpool2d_instance(int i) {
    void* const instances[] = {(void*)maxpool2d_fwd_v1_direct<__half>,
                               (void*)maxpool2d_fwd_v1_direct<__nv_bfloat16>,
                               (void*)maxpool2d_fwd_v1_direct<float>,
                               (void*)maxpool2d_fwd_v1_direct<double>,
                               (void*)maxpool2d_bwd_v1_gather<__half>,
                               (void*)maxpool2d_bwd_v1_gather<__nv_bfloat16>,
                               (void*)maxpool2d_bwd_v1_gather<float>,
                               (void*)maxpool2d_bwd_v1_gather<double>,
                               (void*)maxpool2d_fwd_v2_plane<__half>,
                               (void*)maxpool2d_fwd_v2_plane<__nv_bfloat16>,
                               (void*)maxpool2d_fwd_v2_plane<float>,
                               (void*)maxpool2d_fwd_v2_plane<double>,
                               (void*)maxpool2d_bwd_v2_plane<__half>,
                               (void*)maxpool2d_bwd_v2_plane<__nv_bfloat16>,
                               (void*)maxpool2d_bwd_v2_plane<float>,
                               (void*)maxpool2d_bwd_v2_plane<double>,
                               (void*)maxpool2d_fwd_v3_vec<__half>,
                               (void*)maxpool2d_fwd_v3_vec<__nv_bfloat16>,
                               (void*)maxpool2d_fwd_v3_vec<float>,
                               (void*)maxpool2d_fwd_v3_vec<double>,
                               (void*)maxpool2d_bwd_v3_vec<__half>,
                               (void*)maxpool2d_bwd_v3_vec<__nv_bfloat16>,
                               (void*)maxpool2d_bwd_v3_vec<float>,
                               (void*)maxpool2d_bwd_v3_vec<double>};
    return instances[i];
}
#endif
