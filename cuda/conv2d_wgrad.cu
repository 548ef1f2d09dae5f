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
// pad_h / pad_w are the top / left padding of the forward pass.
// T is float, double or __half; sums are carried in accumulator<T>::type (float for __half).
//
// Both reductions are deterministic: every dw / db element is summed by one thread in the
// fixed order n, then p, then q, so results are bit-identical from run to run (no atomics,
// no split of the reduction whose order could vary).
//
// Kernels:
//   conv2d_wgrad_v1_direct<T>  one thread per dw element, a grid-stride loop over
//                              K*(C/groups)*R*S; each thread runs the whole N*P*Q reduction
//                              serially. Right for every geometry, but the parallelism is only
//                              the filter's size and each thread's loop is N*P*Q long: slow for
//                              large batches and images (a later version splits the reduction
//                              over a block with a fixed-order tree).
//   conv2d_bgrad_v1_direct<T>  one thread per db element, a serial N*P*Q reduction.

#include "common.cuh"

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

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/conv2d_wgrad.cu`: taking each
// instance's address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU
// runtime get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* conv2d_wgrad_instance(int i) {
    void* const instances[] = {(void*)conv2d_wgrad_v1_direct<__half>,
                               (void*)conv2d_wgrad_v1_direct<float>,
                               (void*)conv2d_wgrad_v1_direct<double>,
                               (void*)conv2d_bgrad_v1_direct<__half>,
                               (void*)conv2d_bgrad_v1_direct<float>,
                               (void*)conv2d_bgrad_v1_direct<double>};
    return instances[i];
}
#endif
