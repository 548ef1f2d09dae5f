// common.cuh — what every gpuconv kernel file shares.
//
//   * a minimal __half and __nv_bfloat16 for NVRTC / nvcc (NVRTC has no system headers, so no
//     <cuda_fp16.h> / <cuda_bf16.h>); the CPU runtime (cuda_cpu.h, which defines
//     GPUCONV_CPU_RUNTIME) brings its own
//   * INFINITY (NVRTC has no <math.h>)
//   * accumulator<T>: the type a kernel sums T in (float for the 16-bit types, else T itself),
//     with to_acc / from_acc conversions, and is_nan
//   * 64-bit index helpers: flat NCHW offsets and grid-stride loop bounds in long long,
//     because a tensor may hold more than 2^31 elements even when every one of N, C, H, W
//     fits an int (offset5 / split5 at the end of the file: the same for 5-D NCDHW tensors)
//   * block_sync(id): __syncthreads() with a test hook (GPUCONV_TEST_DROP_SYNC) that compiles
//     one numbered barrier away, to prove each barrier of the tiled kernels matters
//   * load4: four consecutive shared-memory values in 128-bit loads (LDS.128)
//   * load_readonly: a global load through the read-only data path (__ldg), for every T
//   * mixed_radix_step / advance_by_step: walk a flattened (a, b, c) index in fixed strides
//     without a division per step
//   * gemm_mainloop: the double-buffered shared-memory tile loop shared by the v2 implicit-GEMM
//     kernels (conv2d fprop, dgrad, wgrad); each kernel brings loaders that know its operands
//   * GemmV2Tiles, GemmV2Config: the tile configurations of fprop and dgrad v2
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

// __nv_bfloat16: the upper 16 bits of an IEEE binary32 (8 exponent bits, 7 mantissa bits).
// Widening is a shift; narrowing rounds to nearest even in integer arithmetic (finite values
// past the largest bfloat16 round to inf), as cvt.rn.bf16.f32 does on sm_80+; a NaN stays a
// quiet NaN of the same sign (payload kept, not canonical). Written out so that every device
// and the CPU runtime (cuda_cpu.h, the same formula) give the same bits.
struct __align__(2) __nv_bfloat16 {
    unsigned short __x;
};

__device__ __forceinline__ float __bfloat162float(__nv_bfloat16 b) {
    return __uint_as_float((unsigned)b.__x << 16);
}

__device__ __forceinline__ __nv_bfloat16 __float2bfloat16_rn(float f) {
    const unsigned u = __float_as_uint(f);
    __nv_bfloat16 b;
    b.__x = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)((u >> 16) | 0x40u)
                                             : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return b;
}
#endif

// ---------------------------------------------------------------------------------------
// INFINITY: +inf as a float (converts exactly to double +inf).
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

// ---------------------------------------------------------------------------------------
// Accumulation type: sums of __half / __nv_bfloat16 products are carried in float (a float16
// running sum loses all precision after ~2048 terms of similar size, a bfloat16 one after
// ~256); float and double sum in their own type.
template <typename T> struct accumulator { typedef T type; };
template <> struct accumulator<__half> { typedef float type; };
template <> struct accumulator<__nv_bfloat16> { typedef float type; };
// is_bfloat16<T>::value: picks the bf16 form of an instruction (mma.cuh) at compile time.
template <typename T> struct is_bfloat16 { static constexpr bool value = false; };
template <> struct is_bfloat16<__nv_bfloat16> { static constexpr bool value = true; };

__device__ __forceinline__ float  to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float  to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float  to_acc(float v)  { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

// from_acc<T>(a): round an accumulator back to the storage type, once, at the end.
template <typename T> __device__ __forceinline__ T from_acc(typename accumulator<T>::type a) {
    return a;
}
template <> __device__ __forceinline__ __half from_acc<__half>(float a) {
    return __float2half_rn(a);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float a) {
    return __float2bfloat16_rn(a);
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

// ---------------------------------------------------------------------------------------
// block_sync(id): a block-wide barrier. Every barrier of the tiled (v2) kernels is numbered;
// building with -DGPUCONV_TEST_DROP_SYNC=<id> compiles barrier <id> away (the condition is a
// compile-time constant, so the others stay unconditional and non-divergent). Only the tests
// use it (tests/test_kernels.py::test_dropping_a_barrier_breaks_v2): on the CPU runtime, whose
// scheduler runs each fiber as far as it can, every dropped barrier gives wrong results.
// Barrier ids: 1 = gemm_mainloop's first tile, 2 = gemm_mainloop's per-tile barrier,
//              3 = bgrad v2's partial sums stored, 4 = bgrad v2's tree step,
//              5 / 6 / 7 = v3 (mma.cuh): first tile / per-tile barrier / epilogue staging
//              (5 and 6 in both tile loops, mma_gemm_mainloop and mma_tf32_gemm_mainloop).
//              8 / 9 = bgrad v3's partial sums stored / read (conv2d_wgrad.cu),
//              10 = mma_multistage's per-tile barrier (mma.cuh: the v4 kernels).
#ifndef GPUCONV_TEST_DROP_SYNC
#define GPUCONV_TEST_DROP_SYNC 0
#endif
#define block_sync(id)                                                                        \
    do {                                                                                      \
        if ((id) != GPUCONV_TEST_DROP_SYNC) __syncthreads();                                  \
    } while (0)

// ---------------------------------------------------------------------------------------
// load4(p, v): v[0..3] = p[0..3], p 16-byte aligned in shared memory. One LDS.128 for float,
// two for double, instead of four scalar loads (shared-memory bandwidth is what limits a
// register-tiled GEMM's inner loop after the FMAs themselves).
__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
}
__device__ __forceinline__ void load4(const double* p, double (&v)[4]) {
    const double2 t0 = *reinterpret_cast<const double2*>(p);
    const double2 t1 = *reinterpret_cast<const double2*>(p + 2);
    v[0] = t0.x; v[1] = t0.y; v[2] = t1.x; v[3] = t1.y;
}

// ---------------------------------------------------------------------------------------
// load_readonly(p): *p through the read-only (non-coherent) data path, LDG.E.CONSTANT: for
// data a kernel only reads. __ldg has overloads for the built-in types only, so the 16-bit
// types load their raw bits. The CPU runtime's __ldg (cuda_cpu.h) is a plain load for any T.
template <typename T> __device__ __forceinline__ T load_readonly(const T* p) { return __ldg(p); }
#if (defined(__CUDACC_RTC__) || defined(__CUDACC__)) && !defined(GPUCONV_CPU_RUNTIME)
template <> __device__ __forceinline__ __half load_readonly(const __half* p) {
    __half h;
    h.bits = __ldg(reinterpret_cast<const unsigned short*>(p));
    return h;
}
template <> __device__ __forceinline__ __nv_bfloat16 load_readonly(const __nv_bfloat16* p) {
    __nv_bfloat16 b;
    b.__x = __ldg(reinterpret_cast<const unsigned short*>(p));
    return b;
}
#endif

// ---------------------------------------------------------------------------------------
// Walking a flattened index i = (a*B + b)*C + c in steps of a fixed `step` without dividing at
// every step: split `step` once into digits (da, db, dc) of the same mixed radix; adding it is
// then a digit-wise add with at most one carry per digit (db < B and dc < C).
struct MixedRadix3 {
    int da, db, dc;
};
__device__ __forceinline__ MixedRadix3 mixed_radix_step(int step, int B, int C) {
    MixedRadix3 d;
    d.dc = step % C;
    d.db = (step / C) % B;
    d.da = step / (C * B);
    return d;
}
__device__ __forceinline__ void advance_by_step(const MixedRadix3& d, int B, int C, int& a,
                                                int& b, int& c) {
    c += d.dc;
    if (c >= C) { c -= C; ++b; }
    b += d.db;
    if (b >= B) { b -= B; ++a; }
    a += d.da;
}

// ---------------------------------------------------------------------------------------
// gemm_mainloop: acc[TM][TN] += the product of one block's tiles, over reduction tiles
// [tile_begin, tile_end) of BK steps each. The GEMM is implicit: no operand exists as a matrix;
// loaders fetch elements from the convolution's tensors.
//
//   ALoader a:  a.load(regs) fetches this thread's LOADS elements of the next A tile (BK x BM,
//               rows = reduction index, columns = GEMM rows) into registers, zero outside the
//               problem, and steps on by BK; a.store(regs, tile) writes them into a
//               [BK][BM + SMEM_PAD] shared-memory tile.
//   BLoader b:  the same for the B tile (BK x BN).
//
// Double buffering: two shared-memory stages. While the block multiplies stage `buf`, each
// thread's global loads for the next tile are already in flight into registers (issued before
// the math, consumed after it), and are written into the other stage afterwards; one barrier
// per tile then suffices (see barrier 2).
//
// Register tile: thread (ty, tx) = (tid % (BM/TM), tid / (BM/TM)) owns rows
// frag(ty, i) = (i/4)*(BM/(TM/4)) + ty*4 + i%4 and columns frag(tx, j) likewise: groups of 4
// consecutive elements, so each group is one load4 from shared memory, and 8 neighbouring
// threads read 8 neighbouring groups (128 contiguous bytes: no bank conflict). ty varies
// fastest with the thread index so that the epilogue's stores along GEMM rows (which are
// contiguous pixels in NCHW) coalesce.
#define SMEM_PAD 4  // floats of padding per shared row: keeps 16-byte alignment, spreads banks

__device__ __forceinline__ int frag_index(int t, int i, int tile, int per_thread) {
    return (i / 4) * (tile / (per_thread / 4)) + t * 4 + (i % 4);
}

template <typename Acc, int BM, int BN, int BK, int TM, int TN, class ALoader, class BLoader>
__device__ __forceinline__ void gemm_mainloop(ALoader& a, BLoader& b, long long tile_begin,
                                              long long tile_end, Acc (&acc)[TM][TN]) {
    static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are groups of 4 (load4)");
    static_assert(BM % TM == 0 && BN % TN == 0, "block tile must split into register tiles");
    __shared__ __align__(16) Acc a_smem[2][BK][BM + SMEM_PAD];
    __shared__ __align__(16) Acc b_smem[2][BK][BN + SMEM_PAD];
    const int ty = threadIdx.x % (BM / TM);
    const int tx = threadIdx.x / (BM / TM);

    // An empty range (a wgrad split past the end) is the same for the whole block: every
    // thread returns here, so no barrier below is skipped by only some threads.
    if (tile_begin >= tile_end) return;

    Acc a_regs[ALoader::LOADS];
    Acc b_regs[BLoader::LOADS];
    a.load(a_regs);
    b.load(b_regs);
    a.store(a_regs, &a_smem[0][0][0]);
    b.store(b_regs, &b_smem[0][0][0]);
    // Barrier 1: the first tile is in shared memory, written by all threads, before any
    // thread reads rows and columns other threads stored.
    block_sync(1);

    for (long long t = tile_begin; t < tile_end; ++t) {
        const int buf = (int)((t - tile_begin) & 1);
        const bool has_next = t + 1 < tile_end;
        // Issue the next tile's global loads now; their latency hides behind the math below.
        if (has_next) {
            a.load(a_regs);
            b.load(b_regs);
        }
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            Acc a_frag[TM], b_frag[TN];
#pragma unroll
            for (int i = 0; i < TM; i += 4)
                load4(&a_smem[buf][k][frag_index(ty, i, BM, TM)],
                      *reinterpret_cast<Acc(*)[4]>(&a_frag[i]));
#pragma unroll
            for (int j = 0; j < TN; j += 4)
                load4(&b_smem[buf][k][frag_index(tx, j, BN, TN)],
                      *reinterpret_cast<Acc(*)[4]>(&b_frag[j]));
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
        }
        if (has_next) {
            a.store(a_regs, &a_smem[buf ^ 1][0][0]);
            b.store(b_regs, &b_smem[buf ^ 1][0][0]);
        }
        // Barrier 2, two duties: (1) the next tile, just stored into stage buf^1 by all
        // threads, is complete before anyone reads it in the next iteration; (2) everyone has
        // finished reading stage buf before the next iteration's stores overwrite it.
        block_sync(2);
    }
}

// ---------------------------------------------------------------------------------------
// Tile configurations of the fprop / dgrad v2 kernels (their CFG template argument;
// kernels.py's TILE_CONFIGS mirrors them, the selection picks one per shape). GemmV2Tiles:
// one configuration; THREADS follows from the tiles.
//   CFG 0  the kernel's own -D defaults (128 x 64 x 8, 8 x 4 per thread): the general case.
//   CFG 1  128 x 128 x 8, 8 x 8 per thread: 4 FMAs per value read from shared memory (8 x 4:
//          2.7), for large GEMMs. 64 accumulators and the loaders' state take 167 registers
//          (float, sm_90, nvcc 13.0): one block (8 warps) per SM, latency hidden by the ILP.
//   CFG 2  64 x 32 x 8, 4 x 4 per thread (128 threads, 4 blocks per SM): 4 times the blocks
//          of CFG 0, for GEMMs too small to fill the device with 128 x 64 tiles.
// Every configuration keeps BK = 8 and each thread's fixed reduction order, so all give the
// same bits. MIN_BLOCKS: resident blocks per SM the register budget must allow.
template <int BM_, int BN_, int BK_, int TM_, int TN_, int MIN_BLOCKS_>
struct GemmV2Tiles {
    enum { BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_, MIN_BLOCKS = MIN_BLOCKS_,
           THREADS = (BM_ / TM_) * (BN_ / TN_) };
};
template <int CFG, class Default> struct GemmV2Config : Default {
    static_assert(CFG == 0, "fprop / dgrad v2 have tile configurations 0, 1 and 2");
};
template <class Default> struct GemmV2Config<1, Default> : GemmV2Tiles<128, 128, 8, 8, 8, 1> {};
template <class Default> struct GemmV2Config<2, Default> : GemmV2Tiles<64, 32, 8, 4, 4, 4> {};

// ---------------------------------------------------------------------------------------
// 5-D index helpers (conv3d: NCDHW x/dx, NKOPQ y/dy, K(C/groups)TRS w/dw), built on the 4-D
// ones, all in long long.

// Flat offset of element (i0, i1, i2, i3, i4) of a C-contiguous 5-D tensor with dims
// (., D1, D2, D3, D4): (((i0*D1 + i1)*D2 + i2)*D3 + i3)*D4 + i4.
__host__ __device__ __forceinline__ long long offset5(long long i0, long long i1, long long i2,
                                                      long long i3, long long i4, long long D1,
                                                      long long D2, long long D3, long long D4) {
    return offset4(i0, i1, i2, i3, D1, D2, D3) * D4 + i4;
}

// The inverse of offset5: split a flat index into (i0, .., i4) for dims (., D1, D2, D3, D4).
__host__ __device__ __forceinline__ void split5(long long flat, long long D1, long long D2,
                                                long long D3, long long D4, long long& i0,
                                                long long& i1, long long& i2, long long& i3,
                                                long long& i4) {
    i4 = flat % D4;
    split4(flat / D4, D1, D2, D3, i0, i1, i2, i3);
}

#endif  // GPUCONV_COMMON_CUH
