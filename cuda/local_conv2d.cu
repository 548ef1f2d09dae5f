// local_conv2d.cu — tiled and locally connected (unshared) 2-D convolution (seed 002 §9.5,
// the deep-learning book's 9.5: "tiled convolution ... a set of kernels that we rotate through
// as we move through space"; "unshared convolution ... locally connected layers"):
//
//   y[n, k, p, q] = bias + sum_{c, r, s} x[n, c, p*stride_h - pad_h + r*dilation_h,
//                                               q*stride_w - pad_w + s*dilation_w]
//                                       * w[p % TH, q % TW, k, c, r, s]
//
//   A cross-correlation like conv2d, except that output position (p, q) uses filter bank
//   (p % TH, q % TW) of a TH x TW grid of banks: tile (1, 1) is ordinary convolution (one bank
//   shared by every position), tile (P, Q) is a locally connected layer (every position has
//   its own bank, nothing shared). Both public ops (gpuconv.tiled_conv2d and
//   gpuconv.local_conv2d) run these kernels. x elements outside the input (the zero padding)
//   contribute nothing.
//
//   bias (has_bias): 0 none; 1 per filter, b[k] (K,); 2 per filter and bank, b[k, p%TH, q%TW]
//   (K, TH, TW) — for a locally connected layer (K, P, Q), one bias per output unit.
//
// Layouts (all C-contiguous): x (N, C, H, W), w (TH, TW, K, C, R, S) — bank (th, tw) is an
// ordinary conv2d weight (K, C, R, S) —, y (N, K, P, Q); the gradients dx, dw, db have the
// shapes of x, w, b. pad_h / pad_w are the top / left padding (the bottom / right padding only
// shows in P and Q). T is float, double or __half; sums are carried in accumulator<T>::type
// (float for __half). No groups.
//
// Kernels (every one a grid-stride loop over 64-bit flat indices, one thread per output
// element, a fixed summation order and no atomics: bit-for-bit deterministic):
//   tiled_conv2d_fprop_v1_direct<T>  one thread per y element: its bank's C x R x S window,
//                              straight from global memory (as conv2d_fprop_v1_direct).
//                              Memory-bound: for a locally connected layer every weight is
//                              used only N times, and neighbouring threads (neighbouring q)
//                              read different banks, K*C*R*S elements apart.
//   tiled_conv2d_dgrad_v1_direct<T>  one thread per dx element: a gather over (k, r, s) of
//                              every output (p, q) whose window tap reaches it, each with the
//                              bank that output uses.
//   tiled_conv2d_wgrad_v1_direct<T>  one thread per dw element (th, tw, k, c, r, s): a serial
//                              sum over n and the output positions p = th, th+TH, ... and
//                              q = tw, tw+TW, ... that use the bank. Parallelism is the weight's
//                              size; each thread's loop is N*ceil(P/TH)*ceil(Q/TW) long (N for
//                              a locally connected layer, N*P*Q for tile (1, 1)).
//   tiled_conv2d_bgrad_v1_direct<T>  one thread per db element (k, th, tw) of a (K, TH, TW)
//                              bias: dy summed over n and the positions that use the bank.
//                              (A (K,) bias's gradient is conv2d_bias's.)

#include "common.cuh"

template <typename T>
__global__ void tiled_conv2d_fprop_v1_direct(const T* __restrict__ x, const T* __restrict__ w,
                                             const T* __restrict__ b, int has_bias,
                                             T* __restrict__ y, int N, int C, int H, int W,
                                             int K, int R, int S, int P, int Q, int pad_h,
                                             int pad_w, int stride_h, int stride_w,
                                             int dilation_h, int dilation_w, int TH, int TW) {
    typedef typename accumulator<T>::type Acc;
    const long long y_count = (long long)N * K * P * Q;
    const long long bank_size = (long long)K * C * R * S;  // elements of one (K, C, R, S) bank

    // Grid-stride loop: the grid may hold fewer threads than y has elements (kernels.py caps
    // the grid); consecutive threads take consecutive q, so y stores are coalesced.
    for (long long i = grid_first_index(); i < y_count; i += grid_stride()) {
        long long n, k, p, q;
        split4(i, K, P, Q, n, k, p, q);
        const long long th = p % TH, tw = q % TW;                   // this position's bank
        const T* w_bank = w + (th * TW + tw) * bank_size;           // w[th, tw] as (K, C, R, S)
        const long long h_first = p * stride_h - pad_h;             // window's top-left in x
        const long long w_first = q * stride_w - pad_w;             //   (may lie in the padding)

        Acc acc = 0;
        for (int c = 0; c < C; ++c) {
            for (int r = 0; r < R; ++r) {
                const long long h = h_first + (long long)r * dilation_h;
                // Rows above or below the input are zero padding: they add nothing.
                if (h < 0 || h >= H) continue;
                for (int s = 0; s < S; ++s) {
                    const long long wi = w_first + (long long)s * dilation_w;
                    // Columns left or right of the input are zero padding.
                    if (wi < 0 || wi >= W) continue;
                    acc += to_acc(x[offset4(n, c, h, wi, C, H, W)]) *
                           to_acc(w_bank[offset4(k, c, r, s, C, R, S)]);
                }
            }
        }
        // b may be a 1-element dummy when there is no bias: read it only when has_bias.
        if (has_bias == 1) acc += to_acc(b[k]);
        if (has_bias == 2) acc += to_acc(b[(k * TH + th) * TW + tw]);
        y[i] = from_acc<T>(acc);
    }
}

template <typename T>
__global__ void tiled_conv2d_dgrad_v1_direct(const T* __restrict__ dy, const T* __restrict__ w,
                                             T* __restrict__ dx, int N, int C, int H, int W,
                                             int K, int R, int S, int P, int Q, int pad_h,
                                             int pad_w, int stride_h, int stride_w,
                                             int dilation_h, int dilation_w, int TH, int TW) {
    typedef typename accumulator<T>::type Acc;
    const long long dx_count = (long long)N * C * H * W;
    const long long bank_size = (long long)K * C * R * S;

    // Grid-stride loop over dx; consecutive threads take consecutive w, so dx stores are
    // coalesced.
    for (long long i = grid_first_index(); i < dx_count; i += grid_stride()) {
        long long n, c, h, wi;
        split4(i, C, H, W, n, c, h, wi);

        Acc acc = 0;
        for (int k = 0; k < K; ++k) {
            for (int r = 0; r < R; ++r) {
                // Output row p whose window tap r lands on row h: p*stride_h = h + pad_h - r*dil.
                const long long p_times_stride = h + pad_h - (long long)r * dilation_h;
                // Negative: tap r of every window lies above h. Not a multiple of the stride:
                // no window puts tap r on h. p >= P: that window does not exist.
                if (p_times_stride < 0 || p_times_stride % stride_h != 0) continue;
                const long long p = p_times_stride / stride_h;
                if (p >= P) continue;
                const long long th = p % TH;
                for (int s = 0; s < S; ++s) {
                    // The same three guards along the width.
                    const long long q_times_stride = wi + pad_w - (long long)s * dilation_w;
                    if (q_times_stride < 0 || q_times_stride % stride_w != 0) continue;
                    const long long q = q_times_stride / stride_w;
                    if (q >= Q) continue;
                    const T* w_bank = w + (th * TW + q % TW) * bank_size;  // output (p, q)'s bank
                    acc += to_acc(dy[offset4(n, k, p, q, K, P, Q)]) *
                           to_acc(w_bank[offset4(k, c, r, s, C, R, S)]);
                }
            }
        }
        dx[i] = from_acc<T>(acc);
    }
}

template <typename T>
__global__ void tiled_conv2d_wgrad_v1_direct(const T* __restrict__ x, const T* __restrict__ dy,
                                             T* __restrict__ dw, int N, int C, int H, int W,
                                             int K, int R, int S, int P, int Q, int pad_h,
                                             int pad_w, int stride_h, int stride_w,
                                             int dilation_h, int dilation_w, int TH, int TW) {
    typedef typename accumulator<T>::type Acc;
    const long long bank_size = (long long)K * C * R * S;
    const long long dw_count = (long long)TH * TW * bank_size;

    // Grid-stride loop over dw; consecutive threads take consecutive s, so dw stores are
    // coalesced (and neighbouring threads read neighbouring x columns).
    for (long long i = grid_first_index(); i < dw_count; i += grid_stride()) {
        const long long bank = i / bank_size;        // th * TW + tw
        const long long th = bank / TW, tw = bank % TW;
        long long k, c, r, s;
        split4(i - bank * bank_size, C, R, S, k, c, r, s);

        Acc acc = 0;
        for (int n = 0; n < N; ++n) {
            // Only the output positions that use bank (th, tw): p = th, th + TH, ... < P.
            // A bank with th >= P (a tile taller than the output) is used by none: dw = 0.
            for (long long p = th; p < P; p += TH) {
                const long long h = p * stride_h - pad_h + r * dilation_h;
                // Tap r of window row p lies in the top or bottom zero padding: adds nothing.
                if (h < 0 || h >= H) continue;
                for (long long q = tw; q < Q; q += TW) {
                    // wi: the width coordinate in x (w is the filter).
                    const long long wi = q * stride_w - pad_w + s * dilation_w;
                    // Tap s of window column q lies in the left or right zero padding.
                    if (wi < 0 || wi >= W) continue;
                    acc += to_acc(dy[offset4(n, k, p, q, K, P, Q)]) *
                           to_acc(x[offset4(n, c, h, wi, C, H, W)]);
                }
            }
        }
        dw[i] = from_acc<T>(acc);
    }
}

template <typename T>
__global__ void tiled_conv2d_bgrad_v1_direct(const T* __restrict__ dy, T* __restrict__ db,
                                             int N, int K, int P, int Q, int TH, int TW) {
    typedef typename accumulator<T>::type Acc;
    const long long db_count = (long long)K * TH * TW;

    // Grid-stride loop over db (K, TH, TW).
    for (long long i = grid_first_index(); i < db_count; i += grid_stride()) {
        const long long tw = i % TW, th = (i / TW) % TH, k = i / ((long long)TH * TW);
        Acc acc = 0;
        for (int n = 0; n < N; ++n)
            // The positions that use bank (th, tw); none when the tile exceeds the output.
            for (long long p = th; p < P; p += TH)
                for (long long q = tw; q < Q; q += TW)
                    acc += to_acc(dy[offset4(n, k, p, q, K, P, Q)]);
        db[i] = from_acc<T>(acc);
    }
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/local_conv2d.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* local_conv2d_instance(int i) {
    void* const instances[] = {(void*)tiled_conv2d_fprop_v1_direct<__half>,
                               (void*)tiled_conv2d_fprop_v1_direct<__nv_bfloat16>,
                               (void*)tiled_conv2d_fprop_v1_direct<float>,
                               (void*)tiled_conv2d_fprop_v1_direct<double>,
                               (void*)tiled_conv2d_dgrad_v1_direct<__half>,
                               (void*)tiled_conv2d_dgrad_v1_direct<__nv_bfloat16>,
                               (void*)tiled_conv2d_dgrad_v1_direct<float>,
                               (void*)tiled_conv2d_dgrad_v1_direct<double>,
                               (void*)tiled_conv2d_wgrad_v1_direct<__half>,
                               (void*)tiled_conv2d_wgrad_v1_direct<__nv_bfloat16>,
                               (void*)tiled_conv2d_wgrad_v1_direct<float>,
                               (void*)tiled_conv2d_wgrad_v1_direct<double>,
                               (void*)tiled_conv2d_bgrad_v1_direct<__half>,
                               (void*)tiled_conv2d_bgrad_v1_direct<__nv_bfloat16>,
                               (void*)tiled_conv2d_bgrad_v1_direct<float>,
                               (void*)tiled_conv2d_bgrad_v1_direct<double>};
    return instances[i];
}
#endif
