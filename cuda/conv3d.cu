// conv3d.cu — 3-D convolution (volumes: CT scans; video: time x height x width; seed 002 §9.7)
// as in deep learning, a cross-correlation (the filter is not flipped), and its gradients:
//
//   y[n, k, o, p, q]  = b[k] + sum_{c, t, r, s} x[n, g*C/groups + c, o*stride_d - pad_d + t*dilation_d,
//                                                                   p*stride_h - pad_h + r*dilation_h,
//                                                                   q*stride_w - pad_w + s*dilation_w]
//                                               * w[k, c, t, r, s]
//   dx[n, c, d, h, w] = sum over (k, t, r, s) and output positions (o, p, q) whose window tap
//                       (t, r, s) reads (d, h, w) of  dy[n, k, o, p, q] * w[k, c - g*C/groups, t, r, s]
//   dw[k, c, t, r, s] = sum_{n, o, p, q} dy[n, k, o, p, q] * x[n, g*C/groups + c, (the same tap)]
//   (db[k] = sum_{n, o, p, q} dy[n, k, o, p, q] needs no kernel of its own: gpuconv.grad views dy
//    as (N, K, O, P*Q) and runs conv2d_wgrad.cu's bias kernels.)
//
//   g is the group of filter k (fprop, wgrad) or of channel c (dgrad); x elements outside the
//   input (the zero padding) contribute nothing.
//
// Vocabulary: input depth D, height H, width W; filter depth T, height R, width S; output depth
// O, height P, width Q. Because T is the filter depth, the element type template parameter is
// called Elem in this file (float, double or __half); sums are carried in
// accumulator<Elem>::type (float for __half), rounded to Elem once at the end.
//
// Layouts (all C-contiguous): x, dx (N, C, D, H, W); w, dw (K, C/groups, T, R, S); b (K,);
// y, dy (N, K, O, P, Q). pad_d / pad_h / pad_w are the front / top / left padding; the back /
// bottom / right padding (which may differ, e.g. padding='same' with an even kernel) only shows
// in O, P and Q, which the caller computes (gpuconv/geometry.py).
//
// Kernels (one version each so far; every one a grid-stride loop over 64-bit flat indices with
// one thread per output element, so each element is one thread's fixed-order sum:
// deterministic, no atomics):
//   conv3d_fprop_v1_direct<Elem>  one thread per y element (N*K*O*P*Q); walks its group's
//                                 C/groups x T x R x S window straight from global memory.
//                                 Right for every geometry (stride, asymmetric padding,
//                                 dilation, groups, depthwise); no shared-memory reuse, so it
//                                 is memory-bound.
//   conv3d_dgrad_v1_direct<Elem>  one thread per dx element (N*C*D*H*W), a gather: for each
//                                 (k, t, r, s) the output position along each axis is
//                                 o = (d + pad_d - t*dilation_d) / stride_d when that division is
//                                 exact and in range. With stride > 1 most taps are skipped.
//   conv3d_wgrad_v1_direct<Elem>  one thread per dw element (K*C/groups*T*R*S), a serial
//                                 reduction over (n, o, p, q) in that order. The parallelism is
//                                 only the filter's size and each loop is N*O*P*Q long: slow for
//                                 large batches and volumes (a split reduction is future work).

#include "common.cuh"

template <typename Elem>
__global__ void conv3d_fprop_v1_direct(const Elem* __restrict__ x, const Elem* __restrict__ w,
                                       const Elem* __restrict__ b, int has_bias,
                                       Elem* __restrict__ y, int N, int C, int D, int H, int W,
                                       int K, int T, int R, int S, int O, int P, int Q,
                                       int pad_d, int pad_h, int pad_w, int stride_d,
                                       int stride_h, int stride_w, int dilation_d,
                                       int dilation_h, int dilation_w, int groups) {
    typedef typename accumulator<Elem>::type Acc;
    const int C_per_group = C / groups;
    const int K_per_group = K / groups;
    const long long y_count = (long long)N * K * O * P * Q;

    // Grid-stride loop: the grid may hold fewer threads than y has elements (kernels.py caps
    // the grid); consecutive threads take consecutive q, so y stores are coalesced.
    for (long long i = grid_first_index(); i < y_count; i += grid_stride()) {
        long long n, k, o, p, q;
        split5(i, K, O, P, Q, n, k, o, p, q);
        const long long c_first = (k / K_per_group) * C_per_group;  // first channel of k's group
        const long long d_first = o * stride_d - pad_d;  // window's front-top-left corner in x
        const long long h_first = p * stride_h - pad_h;  //   (may lie in the padding)
        const long long w_first = q * stride_w - pad_w;

        Acc acc = 0;
        for (int c = 0; c < C_per_group; ++c) {
            for (int t = 0; t < T; ++t) {
                const long long d = d_first + (long long)t * dilation_d;
                // Frames before the first or after the last input frame are zero padding.
                if (d < 0 || d >= D) continue;
                for (int r = 0; r < R; ++r) {
                    const long long h = h_first + (long long)r * dilation_h;
                    // Rows above or below the input are zero padding: they add nothing.
                    if (h < 0 || h >= H) continue;
                    for (int s = 0; s < S; ++s) {
                        // wi: the width coordinate in x (w is the filter).
                        const long long wi = w_first + (long long)s * dilation_w;
                        // Columns left or right of the input are zero padding.
                        if (wi < 0 || wi >= W) continue;
                        acc += to_acc(x[offset5(n, c_first + c, d, h, wi, C, D, H, W)]) *
                               to_acc(w[offset5(k, c, t, r, s, C_per_group, T, R, S)]);
                    }
                }
            }
        }
        // b may be a 1-element dummy when there is no bias: read it only when has_bias.
        if (has_bias) acc += to_acc(b[k]);
        y[i] = from_acc<Elem>(acc);
    }
}

template <typename Elem>
__global__ void conv3d_dgrad_v1_direct(const Elem* __restrict__ dy, const Elem* __restrict__ w,
                                       Elem* __restrict__ dx, int N, int C, int D, int H, int W,
                                       int K, int T, int R, int S, int O, int P, int Q,
                                       int pad_d, int pad_h, int pad_w, int stride_d,
                                       int stride_h, int stride_w, int dilation_d,
                                       int dilation_h, int dilation_w, int groups) {
    typedef typename accumulator<Elem>::type Acc;
    const int C_per_group = C / groups;
    const int K_per_group = K / groups;
    const long long dx_count = (long long)N * C * D * H * W;

    // Grid-stride loop over dx; consecutive threads take consecutive w, so dx stores are
    // coalesced.
    for (long long i = grid_first_index(); i < dx_count; i += grid_stride()) {
        long long n, c, d, h, wi;
        split5(i, C, D, H, W, n, c, d, h, wi);
        const long long group = c / C_per_group;
        const long long c_in_group = c - group * C_per_group;
        const long long k_first = group * K_per_group;  // first filter of c's group

        Acc acc = 0;
        for (int k = 0; k < K_per_group; ++k) {
            for (int t = 0; t < T; ++t) {
                // Output frame o whose window tap t lands on frame d: o*stride_d = d + pad_d - t*dil.
                const long long o_times_stride = d + pad_d - (long long)t * dilation_d;
                // Negative: tap t of every window lies before d. Not a multiple of the stride:
                // no window puts tap t on d. o >= O: that window does not exist.
                if (o_times_stride < 0 || o_times_stride % stride_d != 0) continue;
                const long long o = o_times_stride / stride_d;
                if (o >= O) continue;
                for (int r = 0; r < R; ++r) {
                    // The same three guards along the height.
                    const long long p_times_stride = h + pad_h - (long long)r * dilation_h;
                    if (p_times_stride < 0 || p_times_stride % stride_h != 0) continue;
                    const long long p = p_times_stride / stride_h;
                    if (p >= P) continue;
                    for (int s = 0; s < S; ++s) {
                        // And along the width.
                        const long long q_times_stride = wi + pad_w - (long long)s * dilation_w;
                        if (q_times_stride < 0 || q_times_stride % stride_w != 0) continue;
                        const long long q = q_times_stride / stride_w;
                        if (q >= Q) continue;
                        acc += to_acc(dy[offset5(n, k_first + k, o, p, q, K, O, P, Q)]) *
                               to_acc(w[offset5(k_first + k, c_in_group, t, r, s, C_per_group,
                                                T, R, S)]);
                    }
                }
            }
        }
        dx[i] = from_acc<Elem>(acc);
    }
}

template <typename Elem>
__global__ void conv3d_wgrad_v1_direct(const Elem* __restrict__ x, const Elem* __restrict__ dy,
                                       Elem* __restrict__ dw, int N, int C, int D, int H, int W,
                                       int K, int T, int R, int S, int O, int P, int Q,
                                       int pad_d, int pad_h, int pad_w, int stride_d,
                                       int stride_h, int stride_w, int dilation_d,
                                       int dilation_h, int dilation_w, int groups) {
    typedef typename accumulator<Elem>::type Acc;
    const int C_per_group = C / groups;
    const int K_per_group = K / groups;
    const long long dw_count = (long long)K * C_per_group * T * R * S;

    // Grid-stride loop over dw; consecutive threads take consecutive s, so dw stores are
    // coalesced (and neighbouring threads read neighbouring x columns).
    for (long long i = grid_first_index(); i < dw_count; i += grid_stride()) {
        long long k, c, t, r, s;
        split5(i, C_per_group, T, R, S, k, c, t, r, s);
        const long long x_channel = (k / K_per_group) * C_per_group + c;  // c within k's group

        // The reduction runs over (n, o, p, q) in this fixed order: deterministic.
        Acc acc = 0;
        for (int n = 0; n < N; ++n) {
            for (int o = 0; o < O; ++o) {
                const long long d = (long long)o * stride_d - pad_d + t * dilation_d;
                // Tap t of window frame o lies in the front or back zero padding: adds nothing.
                if (d < 0 || d >= D) continue;
                for (int p = 0; p < P; ++p) {
                    const long long h = (long long)p * stride_h - pad_h + r * dilation_h;
                    // Tap r of window row p lies in the top or bottom zero padding.
                    if (h < 0 || h >= H) continue;
                    for (int q = 0; q < Q; ++q) {
                        const long long wi = (long long)q * stride_w - pad_w + s * dilation_w;
                        // Tap s of window column q lies in the left or right zero padding.
                        if (wi < 0 || wi >= W) continue;
                        acc += to_acc(dy[offset5(n, k, o, p, q, K, O, P, Q)]) *
                               to_acc(x[offset5(n, x_channel, d, h, wi, C, D, H, W)]);
                    }
                }
            }
        }
        dw[i] = from_acc<Elem>(acc);
    }
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv3d.cu`: taking each instance's
// address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU runtime get
// their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv3d_instance(int i) {
    void* const instances[] = {(void*)conv3d_fprop_v1_direct<__half>,
                               (void*)conv3d_fprop_v1_direct<__nv_bfloat16>,
                               (void*)conv3d_fprop_v1_direct<float>,
                               (void*)conv3d_fprop_v1_direct<double>,
                               (void*)conv3d_dgrad_v1_direct<__half>,
                               (void*)conv3d_dgrad_v1_direct<__nv_bfloat16>,
                               (void*)conv3d_dgrad_v1_direct<float>,
                               (void*)conv3d_dgrad_v1_direct<double>,
                               (void*)conv3d_wgrad_v1_direct<__half>,
                               (void*)conv3d_wgrad_v1_direct<__nv_bfloat16>,
                               (void*)conv3d_wgrad_v1_direct<float>,
                               (void*)conv3d_wgrad_v1_direct<double>};
    return instances[i];
}
#endif
