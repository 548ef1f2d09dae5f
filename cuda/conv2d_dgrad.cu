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

#include "common.cuh"

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

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv2d_dgrad.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv2d_dgrad_instance(int i) {
    void* const instances[] = {(void*)conv2d_dgrad_v1_direct<__half>,
                               (void*)conv2d_dgrad_v1_direct<float>,
                               (void*)conv2d_dgrad_v1_direct<double>};
    return instances[i];
}
#endif
