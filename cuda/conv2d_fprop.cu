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

#include "common.cuh"

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

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv2d_fprop.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv2d_fprop_instance(int i) {
    void* const instances[] = {(void*)conv2d_fprop_v1_direct<__half>,
                               (void*)conv2d_fprop_v1_direct<float>,
                               (void*)conv2d_fprop_v1_direct<double>};
    return instances[i];
}
#endif
