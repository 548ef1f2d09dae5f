// avgpool2d.cu — 2-D average pooling, forward and backward, with PyTorch's exact rules
// (torch.nn.functional.avg_pool2d; gpuconv.lp_pool2d runs these kernels on x**p):
//
//   window of output (p, q), along h (w alike; aten/src/ATen/native/cpu/AvgPoolKernel.cpp):
//     first = p*stride_h - pad_h             the window's first row (may be padding)
//     end   = min(first + R, H + pad_h)      one past its last row, clipped to the padded input
//                                            (a ceil_mode window may run past it)
//     lo    = max(first, 0),  hi = min(end, H)   the rows that hold input
//
//   forward:   y[n, c, p, q]  = (sum over lo <= h < hi, lo_w <= w < hi_w of x[n, c, h, w])
//                               / divisor(p, q)
//   divisor(p, q) = divisor_override                 when nonzero, else
//                 = (end - first) * (end_w - first_w) with count_include_pad (padding cells
//                                                    count; cells past the padded input not)
//                 = (hi - lo) * (hi_w - lo_w)        without (input cells only)
//   backward:  dx[n, c, h, w] = sum of dy[n, c, p, q] / divisor(p, q) over the outputs whose
//                               window holds (h, w)
//
// Layouts (all C-contiguous): x, dx (N, C, H, W); y, dy (N, C, P, Q). T is float, double or
// __half; sums and divisions use accumulator<T>::type (float for __half), rounded to T once.
// P, Q, the padding <= kernel/2 rule and the ceil_mode correction come from the caller
// (gpuconv/geometry.py), which guarantees that every window holds at least one input cell.
//
// Kernels:
//   avgpool2d_fwd_v1_direct<T>  one thread per y element, a grid-stride loop over N*C*P*Q;
//                               each thread sums its window's input cells from global memory
//                               in row-major order.
//   avgpool2d_bwd_v1_gather<T>  one thread per dx element, a grid-stride loop over N*C*H*W;
//                               each thread visits, in row-major order, the outputs whose window
//                               holds its element and sums dy / divisor. Deterministic, no
//                               atomics; overlapping windows accumulate.
//   Not done: a 2-D launch without 64-bit divisions per element (maxpool2d.cu's v2 idea),
//   separable row/column sums shared between neighbouring windows.

#include "common.cuh"

// One axis of a pooling window: input cells [lo, hi), and `padded` cells of the window that
// lie within the padded input (what count_include_pad divides by).
struct AvgPoolSpan {
    long long lo, hi, padded;
};

__device__ __forceinline__ AvgPoolSpan avgpool_span(long long out_index, int stride, int pad,
                                                    int kernel, int size) {
    const long long first = out_index * stride - pad;
    long long end = first + kernel;
    // A ceil_mode window may run past the right padding: PyTorch clips it there.
    if (end > (long long)size + pad) end = (long long)size + pad;
    AvgPoolSpan span;
    span.padded = end - first;
    span.lo = first > 0 ? first : 0;  // rows/columns in the left padding hold no input
    span.hi = end < size ? end : size;  // nor do those in the right padding
    return span;
}

template <typename Acc>
__device__ __forceinline__ Acc avgpool_divisor(const AvgPoolSpan& h, const AvgPoolSpan& w,
                                               int count_include_pad, int divisor_override) {
    if (divisor_override != 0) return (Acc)divisor_override;
    if (count_include_pad) return (Acc)(h.padded * w.padded);
    return (Acc)((h.hi - h.lo) * (w.hi - w.lo));
}

template <typename T>
__global__ void avgpool2d_fwd_v1_direct(const T* __restrict__ x, T* __restrict__ y, int N, int C,
                                        int H, int W, int R, int S, int P, int Q, int pad_h,
                                        int pad_w, int stride_h, int stride_w,
                                        int count_include_pad, int divisor_override) {
    typedef typename accumulator<T>::type Acc;
    const long long y_count = (long long)N * C * P * Q;

    // Grid-stride loop over y; consecutive threads take consecutive q, so y stores are
    // coalesced.
    for (long long i = grid_first_index(); i < y_count; i += grid_stride()) {
        long long n, c, p, q;
        split4(i, C, P, Q, n, c, p, q);
        const AvgPoolSpan span_h = avgpool_span(p, stride_h, pad_h, R, H);
        const AvgPoolSpan span_w = avgpool_span(q, stride_w, pad_w, S, W);
        // A window without input cells gives 0 (PyTorch's rule, instead of 0/0 without
        // count_include_pad). The geometry never produces one; the guard keeps the rule.
        if (span_h.lo >= span_h.hi || span_w.lo >= span_w.hi) {
            y[i] = from_acc<T>((Acc)0);
            continue;
        }
        const T* x_plane = x + offset4(n, c, 0, 0, C, H, W);
        Acc sum = 0;
        // Only input cells are visited (the span bounds are the guard): padding adds 0.
        for (long long h = span_h.lo; h < span_h.hi; ++h)
            for (long long wi = span_w.lo; wi < span_w.hi; ++wi)  // wi: the width coordinate
                sum += to_acc(x_plane[h * W + wi]);
        y[i] = from_acc<T>(sum / avgpool_divisor<Acc>(span_h, span_w, count_include_pad,
                                                      divisor_override));
    }
}

template <typename T>
__global__ void avgpool2d_bwd_v1_gather(const T* __restrict__ dy, T* __restrict__ dx, int N,
                                        int C, int H, int W, int R, int S, int P, int Q,
                                        int pad_h, int pad_w, int stride_h, int stride_w,
                                        int count_include_pad, int divisor_override) {
    typedef typename accumulator<T>::type Acc;
    const long long dx_count = (long long)N * C * H * W;

    // Grid-stride loop over dx; consecutive threads take consecutive w, so dx stores are
    // coalesced.
    for (long long i = grid_first_index(); i < dx_count; i += grid_stride()) {
        long long n, c, h, wi;  // wi: the width coordinate
        split4(i, C, H, W, n, c, h, wi);
        const T* dy_plane = dy + offset4(n, c, 0, 0, C, P, Q);

        // Output rows p whose window [p*stride_h - pad_h, ... + R) holds h:
        //   p*stride_h <= h + pad_h  and  p*stride_h > h + pad_h - R.
        // Clamped to [0, P): windows outside the output do not exist. An input cell inside
        // [first, first + R) is also inside the clipped window (it is < H <= H + pad_h).
        const long long h_padded = h + pad_h;
        const long long p_begin = h_padded >= R ? div_up(h_padded - R + 1, stride_h) : 0;
        const long long p_end = h_padded / stride_h + 1 < P ? h_padded / stride_h + 1 : P;
        const long long w_padded = wi + pad_w;
        const long long q_begin = w_padded >= S ? div_up(w_padded - S + 1, stride_w) : 0;
        const long long q_end = w_padded / stride_w + 1 < Q ? w_padded / stride_w + 1 : Q;

        Acc acc = 0;
        for (long long p = p_begin; p < p_end; ++p) {
            const AvgPoolSpan span_h = avgpool_span(p, stride_h, pad_h, R, H);
            for (long long q = q_begin; q < q_end; ++q) {
                const AvgPoolSpan span_w = avgpool_span(q, stride_w, pad_w, S, W);
                acc += to_acc(dy_plane[p * Q + q]) /
                       avgpool_divisor<Acc>(span_h, span_w, count_include_pad, divisor_override);
            }
        }
        dx[i] = from_acc<T>(acc);
    }
}

// Standalone `nvcc -cubin -arch=sm_90 -Xptxas -v cuda/avgpool2d.cu`: taking each instance's
// address makes nvcc compile it, so ptxas reports every kernel. NVRTC and the CPU runtime
// get their instances from name expressions (gpuconv/kernels.py) instead.
#if defined(__CUDACC__) && !defined(__CUDACC_RTC__) && !defined(GPUCONV_CPU_RUNTIME)
void* avgpool2d_instance(int i) {
    void* const instances[] = {(void*)avgpool2d_fwd_v1_direct<__half>,
                               (void*)avgpool2d_fwd_v1_direct<__nv_bfloat16>,
                               (void*)avgpool2d_fwd_v1_direct<float>,
                               (void*)avgpool2d_fwd_v1_direct<double>,
                               (void*)avgpool2d_bwd_v1_gather<__half>,
                               (void*)avgpool2d_bwd_v1_gather<__nv_bfloat16>,
                               (void*)avgpool2d_bwd_v1_gather<float>,
                               (void*)avgpool2d_bwd_v1_gather<double>};
    return instances[i];
}
#endif
