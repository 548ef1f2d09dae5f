// common.cuh — what every gpuconv kernel file shares.
//
//   * a minimal __half for NVRTC / nvcc (NVRTC has no system headers, so no <cuda_fp16.h>);
//     the CPU runtime (cuda_cpu.h, which defines GPUCONV_CPU_RUNTIME) brings its own
//   * INFINITY (NVRTC has no <math.h>)
//   * accumulator<T>: the type a kernel sums T in (float for __half, else T itself),
//     with to_acc / from_acc conversions, and is_nan
//   * 64-bit index helpers: flat NCHW offsets and grid-stride loop bounds in long long,
//     because a tensor may hold more than 2^31 elements even when every one of N, C, H, W
//     fits an int
//
// This file is included (inlined by gpuconv/sources.py) by every .cu file; it includes nothing.

#ifndef GPUCONV_COMMON_CUH
#define GPUCONV_COMMON_CUH

// ---------------------------------------------------------------------------------------
// Qualifiers. NVRTC and nvcc define these; the CPU runtime header defines its own. The
// fallbacks only keep the file readable by a plain C++ compiler.
#ifndef __forceinline__
#define __forceinline__ inline
#endif

// ---------------------------------------------------------------------------------------
// __half: 16 bits of IEEE binary16 with the two conversions the kernels need.
// Kernels never do arithmetic on __half: they load it, convert to float (to_acc), compute in
// float and round back once (from_acc). cvt.rn.f16.f32 rounds to nearest even, like
// __float2half_rn in cuda_fp16.h.
#if (defined(__CUDACC_RTC__) || defined(__CUDACC__)) && !defined(GPUCONV_CPU_RUNTIME)
struct __align__(2) __half {
    unsigned short bits;
};

__device__ __forceinline__ float __half2float(__half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
    return f;
}

__device__ __forceinline__ __half __float2half_rn(float f) {
    __half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
    return h;
}
#endif

// ---------------------------------------------------------------------------------------
// INFINITY: +inf as a float (converts exactly to double +inf).
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// ---------------------------------------------------------------------------------------
// Accumulation type: sums of __half products are carried in float (a float16 running sum
// loses all precision after ~2048 terms of similar size); float and double sum in their own
// type.
template <typename T> struct accumulator { typedef T type; };
template <> struct accumulator<__half> { typedef float type; };

__device__ __forceinline__ float  to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float  to_acc(float v)  { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

// from_acc<T>(a): round an accumulator back to the storage type, once, at the end.
template <typename T> __device__ __forceinline__ T from_acc(typename accumulator<T>::type a) {
    return a;
}
template <> __device__ __forceinline__ __half from_acc<__half>(float a) {
    return __float2half_rn(a);
}

// NaN test without <math.h>: NaN is the only value not equal to itself (the kernels are
// never compiled with fast-math, which would fold this to false).
template <typename A> __device__ __forceinline__ bool is_nan(A v) { return v != v; }

// ---------------------------------------------------------------------------------------
// 64-bit index helpers. Sizes arrive as int (each dimension < 2^31); every product of
// sizes is formed in long long.

// Flat offset of element (i0, i1, i2, i3) of a C-contiguous 4-D tensor with dims
// (., D1, D2, D3): ((i0*D1 + i1)*D2 + i2)*D3 + i3. Used for NCHW x/dx, NKPQ y/dy and
// K(C/groups)RS w/dw alike.
__host__ __device__ __forceinline__ long long offset4(long long i0, long long i1, long long i2,
                                                      long long i3, long long D1, long long D2,
                                                      long long D3) {
    return ((i0 * D1 + i1) * D2 + i2) * D3 + i3;
}

// The inverse of offset4: split a flat index into (i0, i1, i2, i3) for dims (., D1, D2, D3).
__host__ __device__ __forceinline__ void split4(long long flat, long long D1, long long D2,
                                                long long D3, long long& i0, long long& i1,
                                                long long& i2, long long& i3) {
    i3 = flat % D3;
    flat /= D3;
    i2 = flat % D2;
    flat /= D2;
    i1 = flat % D1;
    i0 = flat / D1;
}

// Grid-stride loops: thread t of the launch handles flat indices t, t + T, t + 2T, ... where
// T is the number of threads in the grid. The launch code (gpuconv/kernels.py) caps the grid
// at 2^31-1 blocks in x, so a tensor of any size is covered, never truncated.
__device__ __forceinline__ long long grid_first_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride() {
    return (long long)gridDim.x * blockDim.x;
}

// Ceiling / floor division for a non-negative numerator and positive divisor.
__host__ __device__ __forceinline__ long long div_up(long long a, long long b) {
    return (a + b - 1) / b;
}

#endif  // GPUCONV_COMMON_CUH
