// mma.cuh — warp-level tensor-core building blocks for the v3 kernels, each with two paths:
//
//   * sm_80 and newer (__CUDA_ARCH__ >= 800): the PTX instruction itself (inline asm);
//   * everything else — the CPU runtime (no __CUDA_ARCH__) and NVRTC/nvcc for sm_75 — a
//     portable emulation built from warp shuffles (__shfl_sync) that reproduces the
//     instruction's per-lane semantics exactly: which lane holds which matrix element.
//
// The emulation is what makes the kernels' fragment index math testable without a GPU: a
// kernel that hands the wrong lane the wrong row gets the same wrong answer on the CPU runtime
// as on the tensor cores. tests/test_tensor_core.py checks the emulations against NumPy
// element by element, straight from the layouts written below.
//
//   mma_m16n8k16<T>(d, a, b)     d (16x8 f32) += a (16x16, row) * b (16x8, col), T = __half
//                                  (f16, the default) or __nv_bfloat16 (bf16): one layout
//                                  mma.sync.aligned.m16n8k16.row.col.f32.{f16.f16,bf16.bf16}.f32
//   ldmatrix<NUM, TRANS>(r, p)   NUM = 1, 2 or 4 8x8 b16 matrices from shared memory
//                                  ldmatrix.sync.aligned.m8n8.x{1,2,4}{,.trans}.shared.b16
//   cp_async_16(dst, src, bytes) 16-byte global -> shared copy, zero-filled past `bytes`
//                                  (cp.async.cg.shared.global; a plain copy elsewhere),
//   cp_async_commit / cp_async_wait_all
//   fragment_lane()              the lane id the kernels use for fragment index math, with
//                                  the GPUCONV_TEST_SWAP_LANES test hook (see there)
//   cp_async_wait_group<N>       until at most N committed groups are pending
//   mma_pipeline<STAGES>         the tile loops' load / multiply pipeline: mma_double_buffered
//                                  (a gathered A tile, 2 stages) or mma_multistage (both tiles
//                                  copied, MMA_COPY_STAGES stages: the v4 kernels)
//   MmaTile, mma_put, mma_store_words   the v3 loaders' operand words (16-bit or TF32)
//   mma_tile_product             zeroed accumulators + the tile loop for T (what v3 kernels run)
//   mma_gemm_mainloop            the v3 kernels' double-buffered shared-memory tile loop
//   mma_stage_tile               their epilogue's staging of the rounded tile (+ bias)
//   mma_each_element             each accumulator with its tile row and column (direct epilogues)
//   WgmmaTile, WgmmaMnTile, wgmma_m64nNk16, wgmma_tile_product, WgmmaColumns,
//   wgmma_nhwc_gemm              the warpgroup MMA of sm_90a (wgmma, both operands from shared
//                                  memory through descriptors, K-major or MN-major), the v5
//                                  kernels' tile loop and tile configurations; emulated with
//                                  mma_m16n8k16 elsewhere (at the end of the file)
//   MmaKMajorTile, MmaKMajorRows, mma_kmajor_tile_product   mma_tile_product from
//                                  reduction-major stages (rows = reduction steps), transposed
//                                  as fragments are read (ldmatrix .trans; TF32: shared
//                                  loads): wgrad v4
//   MmaRowsLoader                a B operand of reduction-contiguous rows (cp.async pieces)
//   MmaNhwcLoader                an A operand of channels-last pixels (cp.async pieces)
//   mma_nhwc_gemm                the NHWC kernels' loaders + tile product + epilogue walk
//
// TF32 (float32 operands on tensor cores; at the end of the file, with their own layouts):
//   to_tf32(x)                   fp32 -> tf32 bits, round to nearest, ties away from zero
//                                  (cvt.rna.tf32.f32; bit math elsewhere)
//   mma_m16n8k8_tf32(d, a, b)    d (16x8 f32) += a (16x8 tf32, row) * b (8x8 tf32, col)
//                                  mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32
//   mma_tf32_gemm_mainloop       mma_gemm_mainloop for 32-bit operands (plain shared loads)
//
// Registers holding f16 (or bf16) data are 32-bit words of two halves ("f16x2"): the element
// with the lower index (the lower address in memory) in the low 16 bits. The fragment layouts
// below are the same for .bf16 (the PTX ISA gives one table for both).
//
// ---------------------------------------------------------------------------------------
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"):
//
//   groupID = laneid >> 2, threadID_in_group = laneid % 4        (below: g and t)
//
//   A, 16x16 f16, four f16x2 registers a[0..3] = elements a0..a7 (low to high):
//     row = g      for ai, 0 <= i < 2 || 4 <= i < 6;   g + 8 otherwise
//     col = 2t + (i & 1)      for ai, i < 4;            2t + (i & 1) + 8 for i >= 4
//     i.e. a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..2t+1],
//          a[2] = A[g][2t+8..2t+9], a[3] = A[g+8][2t+8..2t+9]
//   B, 16x8 f16, two f16x2 registers b[0..1] = elements b0..b3:
//     row = 2t + (i & 1)      for bi, i < 2;            2t + (i & 1) + 8 for i >= 2
//     col = g
//     i.e. b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
//   C and D, 16x8 f32, four registers c0..c3:
//     row = g for ci, i < 2;  g + 8 for i >= 2;          col = 2t + (i & 1)
//
// ldmatrix (PTX ISA, "Warp-level matrix load instruction: ldmatrix"), .m8n8, .b16, .x1/.x2/.x4:
//   lanes 8i .. 8i+7 supply the shared-memory addresses of rows 0..7 of matrix i (16 bytes
//   each); lanes past 8*NUM supply nothing. Every lane receives one f16x2 register r[i] per
//   matrix: r[i] = M_i[laneid / 4][2*(laneid % 4) .. +1] — which is exactly the A/B fragment
//   layout above, one 8x8 quarter at a time. With .trans the matrix is read transposed:
//   r[i] = { M_i[2*(laneid % 4)][laneid / 4], M_i[2*(laneid % 4) + 1][laneid / 4] }.
//
// This file is included after common.cuh (block_sync, from_acc); it includes nothing.

#ifndef GPUCONV_MMA_CUH
#define GPUCONV_MMA_CUH

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define GPUCONV_MMA_PTX 1   // tensor-core instructions; else the shuffle emulation
#else
#define GPUCONV_MMA_PTX 0
#endif

// ---------------------------------------------------------------------------------------
// fragment_lane(): this thread's lane (1-D blocks whose size is a multiple of 32), as the
// kernels use it to compute which fragment rows and columns the lane holds.
//
// Test hook: built with -DGPUCONV_TEST_SWAP_LANES=1 the kernels believe lanes 1 and 5 are
// each other (same threadID_in_group, groupIDs 0 and 1: their fragment rows swap), while the
// instruction (or its emulation) keeps the true lane ids. tests/test_tensor_core.py shows the
// results are then wrong — the lane mapping is really exercised.
#ifndef GPUCONV_TEST_SWAP_LANES
#define GPUCONV_TEST_SWAP_LANES 0
#endif
__device__ __forceinline__ int fragment_lane() {
    const int lane = (int)(threadIdx.x & 31);
#if GPUCONV_TEST_SWAP_LANES
    if (lane == 1) return 5;
    if (lane == 5) return 1;
#endif
    return lane;
}

// ---------------------------------------------------------------------------------------
// Emulation helpers (CPU runtime and sm_75 only).
#if !GPUCONV_MMA_PTX
__device__ __forceinline__ float mma_half_bits_to_float(unsigned bits16) {
#if defined(GPUCONV_CPU_RUNTIME)
    return gpuconv_half_bits_to_float((unsigned short)bits16);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)bits16));
    return f;
#endif
}
// The low / high element of an f16x2 (T = __half) or bf16x2 (T = __nv_bfloat16) word.
template <typename T> __device__ __forceinline__ float mma_lo(unsigned pair) {
    if constexpr (is_bfloat16<T>::value)
        return __uint_as_float(pair << 16);  // bf16: the upper half of a float
    else
        return mma_half_bits_to_float(pair & 0xffffu);
}
template <typename T> __device__ __forceinline__ float mma_hi(unsigned pair) {
    if constexpr (is_bfloat16<T>::value)
        return __uint_as_float(pair & 0xffff0000u);
    else
        return mma_half_bits_to_float(pair >> 16);
}
__device__ __forceinline__ unsigned long long mma_join(unsigned lo, unsigned hi) {
    return (unsigned long long)lo | ((unsigned long long)hi << 32);
}

// One step of both mma emulations (m16n8k16 f16/bf16 and m16n8k8 tf32 share the register
// roles: a[0] / a[1] hold rows g / g+8 of the first k slice, a[2] / a[3] of the second;
// b[0] / b[1] column g of the first / second k slice). This lane owns D rows g and g+8 and
// columns 2t and 2t+1, so at step j it fetches, with 64-bit shuffles of register pairs,
//   a_words[row][slice]  from lane 4g + j          (row 0: g, row 1: g + 8)
//   b_words[col][slice]  from lane 4(2t + col) + j (col 0: 2t, col 1: 2t + 1)
// — each the word holding step j's part of that row / column in that k slice.
__device__ __forceinline__ void mma_emulation_fetch(const unsigned (&a)[4], const unsigned (&b)[2],
                                                    int j, unsigned (&a_words)[2][2],
                                                    unsigned (&b_words)[2][2]) {
    const int lane = (int)(threadIdx.x & 31);  // the hardware's lane id, never the test hook's
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long ra01 = __shfl_sync(0xffffffffu, mma_join(a[0], a[1]), 4 * g + j);
    const unsigned long long ra23 = __shfl_sync(0xffffffffu, mma_join(a[2], a[3]), 4 * g + j);
    const unsigned long long b01 = mma_join(b[0], b[1]);
    const unsigned long long rb0 = __shfl_sync(0xffffffffu, b01, 4 * (2 * t) + j);
    const unsigned long long rb1 = __shfl_sync(0xffffffffu, b01, 4 * (2 * t + 1) + j);
    a_words[0][0] = (unsigned)ra01;          a_words[0][1] = (unsigned)ra23;
    a_words[1][0] = (unsigned)(ra01 >> 32);  a_words[1][1] = (unsigned)(ra23 >> 32);
    b_words[0][0] = (unsigned)rb0;           b_words[0][1] = (unsigned)(rb0 >> 32);
    b_words[1][0] = (unsigned)rb1;           b_words[1][1] = (unsigned)(rb1 >> 32);
}

// mma_emulate: d[0..3] += A * B from the fragments, for both emulated mmas. Step j = 0..3
// fetches step j's words (mma_emulation_fetch) and adds, for each of this lane's four D
// elements (rows g, g+8 x columns 2t, 2t+1), the products of the A row's and the B column's
// words of both k slices: dot(sum, a_word, b_word) adds one word pair's products (the f16 /
// bf16 mma: 2 k per word, all 16 after 4 steps; tf32: 1 k per word, all 8).
template <class WordDot>
__device__ __forceinline__ void mma_emulate(float (&d)[4], const unsigned (&a)[4],
                                            const unsigned (&b)[2], WordDot dot) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        unsigned a_words[2][2], b_words[2][2];
        mma_emulation_fetch(a, b, j, a_words, b_words);
#pragma unroll
        for (int row = 0; row < 2; ++row)
#pragma unroll
            for (int col = 0; col < 2; ++col) {
                float s = d[row * 2 + col];
#pragma unroll
                for (int slice = 0; slice < 2; ++slice)
                    s = dot(s, a_words[row][slice], b_words[col][slice]);
                d[row * 2 + col] = s;
            }
    }
}
#endif

// ---------------------------------------------------------------------------------------
// mma_m16n8k16<T>: d[0..3] += A * B for one warp (all 32 lanes, converged), fp32
// accumulation; T (__half or __nv_bfloat16) is the operands' type.
template <typename T = __half>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const unsigned (&a)[4],
                                             const unsigned (&b)[2]) {
    static_assert(sizeof(T) == 2, "mma_m16n8k16 multiplies 16-bit operands");
#if GPUCONV_MMA_PTX
    if constexpr (!is_bfloat16<T>::value)
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    // Each word pair holds two k (low and high halves): both products, low first.
    mma_emulate(d, a, b, [](float s, unsigned a_word, unsigned b_word) {
        s += mma_lo<T>(a_word) * mma_lo<T>(b_word);
        return s + mma_hi<T>(a_word) * mma_hi<T>(b_word);
    });
#endif
}

// ---------------------------------------------------------------------------------------
// ldmatrix<NUM, TRANS>(r, row): r[0..NUM-1] from NUM 8x8 matrices of 16-bit elements in
// shared memory; `row` is the address of the row this lane supplies (lanes 8i..8i+7: rows
// 0..7 of matrix i; 16-byte aligned; ignored for lanes >= 8*NUM).
template <int NUM, bool TRANS>
__device__ __forceinline__ void ldmatrix(unsigned (&r)[NUM], const unsigned short* row) {
    static_assert(NUM == 1 || NUM == 2 || NUM == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if GPUCONV_MMA_PTX
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    if constexpr (NUM == 1 && !TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
                     : "=r"(r[0]) : "r"(addr));
    else if constexpr (NUM == 1 && TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                     : "=r"(r[0]) : "r"(addr));
    else if constexpr (NUM == 2 && !TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
    else if constexpr (NUM == 2 && TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
    else if constexpr (!TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
#else
    // Every lane shuffles the row addresses it needs from the lanes that supplied them.
    const int lane = (int)(threadIdx.x & 31);
    const unsigned long long mine = (unsigned long long)row;
#pragma unroll
    for (int i = 0; i < NUM; ++i) {
        if (!TRANS) {
            // r[i] = M_i[lane / 4][2*(lane % 4) .. +1]: row lane/4 comes from lane 8i + lane/4.
            const unsigned short* src =
                (const unsigned short*)__shfl_sync(0xffffffffu, mine, 8 * i + (lane >> 2));
            r[i] = (unsigned)src[2 * (lane & 3)] | ((unsigned)src[2 * (lane & 3) + 1] << 16);
        } else {
            // r[i] = {M_i[2*(lane%4)][lane/4], M_i[2*(lane%4)+1][lane/4]}: two rows.
            const unsigned short* src0 =
                (const unsigned short*)__shfl_sync(0xffffffffu, mine, 8 * i + 2 * (lane & 3));
            const unsigned short* src1 =
                (const unsigned short*)__shfl_sync(0xffffffffu, mine, 8 * i + 2 * (lane & 3) + 1);
            r[i] = (unsigned)src0[lane >> 2] | ((unsigned)src1[lane >> 2] << 16);
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------
// cp_async_16(dst, src, src_bytes): copy src_bytes (0 or 16) from global memory to shared
// memory and zero-fill the rest of the 16 bytes; both addresses 16-byte aligned. On sm_80+ an
// asynchronous copy (LDGSTS) that completes at cp_async_wait_all() (or at the
// cp_async_wait_group that leaves its group no longer pending); elsewhere a plain copy,
// complete at once. src must be a valid address even when src_bytes is 0 (nothing is read).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
#if GPUCONV_MMA_PTX
    const unsigned addr = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(addr), "l"(src), "r"(src_bytes));
#else
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (src_bytes >= 16) v = *reinterpret_cast<const uint4*>(src);
    *reinterpret_cast<uint4*>(dst) = v;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if GPUCONV_MMA_PTX
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
__device__ __forceinline__ void cp_async_wait_all() {
#if GPUCONV_MMA_PTX
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}
// cp_async_wait_group<N>(): until at most the N most recent of this thread's committed groups
// are still in flight (every older group has landed).
template <int N> __device__ __forceinline__ void cp_async_wait_group() {
#if GPUCONV_MMA_PTX
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
#endif
}

// ---------------------------------------------------------------------------------------
// The tile loops' pipelines. a_stage(s) / b_stage(s) give stage s's shared tiles; math(s)
// multiplies stage s into the accumulators. B loaders copy their tiles straight into a free
// stage (b.load(stage), cp.async where they can). A loaders come in two kinds:
//   * gathering (the NCHW kernels' im2col): a.load(regs) fetches this thread's WORDS words of
//     the next tile into registers, a.store(regs, stage) writes them to shared memory;
//   * copying (`enum { COPIES = 1 }`: the NHWC kernels, whose A pieces are contiguous in
//     memory): a.load(stage), like b.
// MmaCopies<L>::value tells them apart; mma_pipeline<STAGES> runs the one that fits:
// mma_multistage for two copying loaders, mma_double_buffered (2 stages) otherwise.
template <class L, class = void> struct MmaCopies { enum { value = 0 }; };
template <class L> struct MmaCopies<L, decltype(void(L::COPIES))> { enum { value = L::COPIES }; };

// mma_double_buffered: two stages, a gathering A loader. The next tile's loads are issued
// before the math on this one (A into registers, B copied asynchronously into the free
// stage) and A is stored after it. One barrier per tile (block_sync ids 5 and 6, common.cuh).
template <class ALoader, class BLoader, class AStage, class BStage, class Math>
__device__ __forceinline__ void mma_double_buffered(ALoader& a, BLoader& b, int tiles,
                                                    AStage a_stage, BStage b_stage, Math math) {
    unsigned regs[ALoader::WORDS];  // A's next tile, between its load and its store
    a.load(regs);
    b.load(b_stage(0));
    cp_async_commit();
    a.store(regs, a_stage(0));
    cp_async_wait_all();
    // Barrier 5: the first tile is in shared memory (this thread's cp.async copies have
    // landed: wait_all above) before any warp reads rows other threads stored.
    block_sync(5);

    for (int t = 0; t < tiles; ++t) {
        const int buf = t & 1;
        const bool has_next = t + 1 < tiles;
        // Issue the next tile's loads now: A into registers, B straight into the free stage
        // (every warp finished reading it before the barrier that ended the last iteration).
        if (has_next) {
            a.load(regs);
            b.load(b_stage(buf ^ 1));
            cp_async_commit();
        }
        math(buf);
        if (has_next) {
            a.store(regs, a_stage(buf ^ 1));
            cp_async_wait_all();
        }
        // Barrier 6, two duties: (1) the next tile (A stored above, B copied and waited for)
        // is complete before anyone reads it; (2) every warp has finished reading stage buf
        // before the next iteration's loads overwrite it.
        block_sync(6);
    }
}

// mma_multistage<STAGES[, ASYNC_PROXY]>: both loaders copy, so up to STAGES - 1 tiles are in
// flight while the math runs on another: tile t lives in stage t % STAGES, and its copies form
// one cp.async group (committed even when empty, past the last tile, so that "tile t has
// landed" is always "at most STAGES - 2 younger groups pending"). One barrier per tile
// (block_sync id 10). ASYNC_PROXY: the math reads the stages with wgmma (see there).
template <int STAGES, bool ASYNC_PROXY = false, class ALoader, class BLoader, class AStage,
          class BStage, class Math>
__device__ __forceinline__ void mma_multistage(ALoader& a, BLoader& b, int tiles,
                                               AStage a_stage, BStage b_stage, Math math) {
    static_assert(STAGES >= 2, "a pipeline of at least two stages");
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {  // prologue: tiles 0 .. STAGES-2
        if (s < tiles) {
            a.load(a_stage(s));
            b.load(b_stage(s));
        }
        cp_async_commit();
    }
    for (int t = 0; t < tiles; ++t) {
        cp_async_wait_group<STAGES - 2>();  // this thread's copies of tile t have landed
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        // ASYNC_PROXY (the wgmma kernels): the tensor cores read shared memory through the
        // async proxy, which must see this thread's writes (copies and plain stores) too.
        if constexpr (ASYNC_PROXY) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
        // Barrier 10, two duties: (1) tile t is complete (every thread's copies) before any
        // warp reads it; (2) every warp has finished the math on tile t - 1, whose stage the
        // loads below overwrite.
        block_sync(10);
        const int next = t + STAGES - 1;
        if (next < tiles) {
            a.load(a_stage(next % STAGES));
            b.load(b_stage(next % STAGES));
        }
        cp_async_commit();
        math(t % STAGES);
    }
}

template <int STAGES, class ALoader, class BLoader, class AStage, class BStage, class Math>
__device__ __forceinline__ void mma_pipeline(ALoader& a, BLoader& b, int tiles, AStage a_stage,
                                             BStage b_stage, Math math) {
    if constexpr (MmaCopies<ALoader>::value) {
        mma_multistage<STAGES>(a, b, tiles, a_stage, b_stage, math);
    } else {
        static_assert(STAGES == 2, "a gathering A loader runs two stages");
        mma_double_buffered(a, b, tiles, a_stage, b_stage, math);
    }
}

// MMA_COPY_STAGES: the stages of the kernels whose loaders both copy (v4, v5). Three stages of
// a 128 x 64 x 32 f16 tile pair (or 128 x 64 x 16 TF32) take 45 KB of shared memory (wgrad v4:
// 39 KB; v5: 36 KB), within the 48 KB of static shared memory; v5's 128 x 128 configuration
// takes all 48 KB, so a deeper pipeline (or BK > 32) needs dynamic shared memory for it.
// kernels.MMA_COPY_STAGES mirrors it.
#ifndef MMA_COPY_STAGES
#define MMA_COPY_STAGES 3
#endif

// ---------------------------------------------------------------------------------------
// mma_gemm_mainloop: acc += the block's BM x BN tile of an implicit GEMM over `tiles`
// reduction tiles of BK, on tensor cores (the v3 kernels: conv2d fprop, dgrad and wgrad).
//
//   a_smem[stage][row][kk], b_smem[stage][col][kk]: both operands as reduction-contiguous
//   rows of BK + MMA_SMEM_SKEW halves (80 bytes for BK = 32: the 8 rows one ldmatrix phase
//   reads fall in 8 different 16-byte bank groups, so no bank conflicts); STAGES stages
//   (2 with a gathering A loader; MMA_COPY_STAGES for the v4 kernels).
//   ALoader a:  a.load(regs) gathers this thread's part of the next A tile into registers
//               (zeros outside the problem) and steps on by BK; a.store(regs, stage) writes
//               it into a_smem[stage]. Or, a copying loader (COPIES), a.load(stage) like b.
//   BLoader b:  b.load(stage) copies the next B tile straight into the free stage b_smem[..]
//               (cp.async where it can) and steps on by BK.
//   Warps: warp w owns rows (w % (BM/WM))*WM .. +WM and columns (w / (BM/WM))*WN .. +WN:
//   WM/16 x WN/8 fragments of m16n8, accumulators acc[i][j][c0..c3] in the mma D layout.
//   Fragments: A, per m16 fragment, one ldmatrix.x4 whose quarters (rows 0-7 | 8-15) x
//   (kk 0-7 | 8-15) land as a[0..3] of the mma A layout: lane l supplies row l % 16 at kk
//   (l / 16) * 8. B, per pair of n8 fragments, one ldmatrix.x4: (cols 0-7, kk 0-7), (0-7,
//   8-15), (8-15, 0-7), (8-15, 8-15) = b[0..1] of the first fragment, then of the second: lane
//   l supplies column l % 8 + (l / 16) * 8 at kk ((l / 8) % 2) * 8. A column of B is a row
//   of b_smem, so the non-transposed load gives the mma's "col" B layout.
//   Pipeline: mma_pipeline (above), over the stages of a_smem / b_smem.
#define MMA_SMEM_SKEW 8  // halves of padding per shared row (keeps rows 16-byte aligned)

template <typename T, int BM, int BN, int BK, int WM, int WN, class ALoader, class BLoader,
          int STAGES>
__device__ __forceinline__ void mma_gemm_mainloop(
    ALoader& a, BLoader& b, int tiles, float (&acc)[WM / 16][WN / 8][4],
    unsigned short (&a_smem)[STAGES][BM][BK + MMA_SMEM_SKEW],
    unsigned short (&b_smem)[STAGES][BN][BK + MMA_SMEM_SKEW]) {
    constexpr int MI = WM / 16, NJ = WN / 8;  // m16 / n8 fragments per warp
    static_assert(BK % 16 == 0 && WM % 16 == 0 && WN % 16 == 0, "k16 steps, x4 B loads");
    static_assert(BM % WM == 0 && BN % WN == 0, "block tile must split into warp tiles");
    const int warp = (int)(threadIdx.x / 32);
    const int warp_m = (warp % (BM / WM)) * WM, warp_n = (warp / (BM / WM)) * WN;
    const int lane = fragment_lane();
    const int a_row = warp_m + lane % 16, a_kk = (lane / 16) * 8;
    const int b_row = warp_n + lane % 8 + (lane / 16) * 8, b_kk = ((lane / 8) % 2) * 8;

    mma_pipeline<STAGES>(a, b, tiles, [&](int stage) { return &a_smem[stage][0][0]; },
                        [&](int stage) { return &b_smem[stage][0][0]; }, [&](int buf) {
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            unsigned af[MI][4], bf[NJ][2];
#pragma unroll
            for (int i = 0; i < MI; ++i)
                ldmatrix<4, false>(af[i], &a_smem[buf][a_row + i * 16][ks + a_kk]);
#pragma unroll
            for (int j = 0; j < NJ; j += 2) {
                unsigned r[4];
                ldmatrix<4, false>(r, &b_smem[buf][b_row + j * 8][ks + b_kk]);
                bf[j][0] = r[0]; bf[j][1] = r[1];
                bf[j + 1][0] = r[2]; bf[j + 1][1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NJ; ++j) mma_m16n8k16<T>(acc[i][j], af[i], bf[j]);
        }
    });
}

// mma_each_element<BM, WM, WN>(acc, visit): visit(row, col, value) for each of this thread's
// accumulators, row and col within the block tile: accumulator c_e of fragment (i, j) is
// D[warp_m + 16i + g (+8 for e >= 2)][warp_n + 8j + 2t + (e & 1)] (the mma C/D layout; the
// same for m16n8k16 and m16n8k8). For epilogues that write straight from the fragments.
template <int BM, int WM, int WN, class Visit>
__device__ __forceinline__ void mma_each_element(const float (&acc)[WM / 16][WN / 8][4],
                                                 Visit visit) {
    const int warp = (int)(threadIdx.x / 32);
    const int warp_m = (warp % (BM / WM)) * WM, warp_n = (warp / (BM / WM)) * WN;
    const int lane = fragment_lane();
    const int grp = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
        for (int j = 0; j < WN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                visit(warp_m + i * 16 + grp + (e >= 2 ? 8 : 0), warp_n + j * 8 + 2 * tig + (e & 1),
                      acc[i][j][e]);
}

// mma_stage_tile: after mma_double_buffered's mainloop (its last barrier ended every read of
// a_smem; mma_multistage ends on the math, so its kernels must not stage here), write
// the block's tile, acc + bias[column], rounded to T once, into a_smem reinterpreted as
// out[column][row] (row pitch BM + MMA_SMEM_SKEW), so that the epilogue can store whole runs
// of consecutive rows (pixels) per column. bias(col) gives the column's bias (0 for none).
// Accumulator c_e of fragment (i, j) is D[row][col] with row = g (+8 for e >= 2) and
// col = 2t + (e & 1) (the mma C/D layout above).
template <typename T, int BM, int BN, int BK, int WM, int WN, class Bias>
__device__ __forceinline__ T* mma_stage_tile(const float (&acc)[WM / 16][WN / 8][4],
                                             unsigned short (&a_smem)[2][BM][BK + MMA_SMEM_SKEW],
                                             Bias bias) {
    constexpr int OUT_PITCH = BM + MMA_SMEM_SKEW;
    static_assert(BN * OUT_PITCH * sizeof(T) <= sizeof(a_smem), "staged tile must fit a_smem");
    T* out = reinterpret_cast<T*>(&a_smem[0][0][0]);
    const int warp = (int)(threadIdx.x / 32);
    const int warp_m = (warp % (BM / WM)) * WM, warp_n = (warp / (BM / WM)) * WN;
    const int lane = fragment_lane();
    const int grp = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int j = 0; j < WN / 8; ++j)
#pragma unroll
        for (int e1 = 0; e1 < 2; ++e1) {
            const int col = warp_n + j * 8 + 2 * tig + e1;
            const float col_bias = bias(col);
#pragma unroll
            for (int i = 0; i < WM / 16; ++i)
#pragma unroll
                for (int e2 = 0; e2 < 2; ++e2) {
                    const int row = warp_m + i * 16 + grp + e2 * 8;
                    out[col * OUT_PITCH + row] = from_acc<T>(acc[i][j][e2 * 2 + e1] + col_bias);
                }
        }
    // Barrier 7: the staged tile is complete before threads read rows other warps wrote.
    block_sync(7);
    return out;
}

// =======================================================================================
// TF32: float32 operands on the tensor cores (sm_80+), emulated like the f16 path elsewhere.
//
// tf32 keeps fp32's sign and 8-bit exponent (same range) and 10 fraction bits; a register
// holds it as a 32-bit word whose 13 low bits are zero (what cvt.rna.tf32.f32 writes; the
// PTX ISA calls the layout implementation-defined, so operands should come from to_tf32).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32 A and B, .f32 C/D):
//
//   g = laneid >> 2, t = laneid % 4          (groupID and threadID_in_group, as above)
//
//   A, 16x8 tf32, four .b32 registers a0..a3, one element each:
//     row = g      for a0, a2;      g + 8 for a1, a3
//     col = t      for a0, a1;      t + 4 for a2, a3
//     i.e. a[0] = A[g][t], a[1] = A[g+8][t], a[2] = A[g][t+4], a[3] = A[g+8][t+4]
//   B, 8x8 tf32, two .b32 registers b0, b1:
//     row = t      for b0;          t + 4 for b1;          col = g
//     i.e. b[0] = B[t][g], b[1] = B[t+4][g]
//   C and D, 16x8 f32, four registers c0..c3 (the same as for m16n8k16):
//     row = g for c0, c1;  g + 8 for c2, c3;               col = 2t + (i & 1)

// to_tf32(x): the tf32 nearest to x, ties away from zero (cvt.rna.tf32.f32), as register
// bits. Bit math for finite x: add half a tf32 ulp (bit 12) to the magnitude and clear the 13
// low bits. A carry into the exponent is exactly right: a fraction of all ones rounds up to the
// next power of two, and past the largest finite tf32 to the bit pattern of infinity (cvt's
// rule for results beyond the range: IEEE Inf for fp32's range). Denormals round the same way
// (cvt.rna.tf32 has no .ftz); infinity is unchanged by the arithmetic. A NaN stays a NaN of
// the same sign, quieted so that clearing the low bits cannot turn it into infinity (the ISA
// fixes no NaN payload; the tests compare NaNs as a class).
__device__ __forceinline__ unsigned to_tf32(float x) {
#if GPUCONV_MMA_PTX
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#else
    const unsigned bits = __float_as_uint(x);
    const unsigned sign = bits & 0x80000000u, magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (bits | 0x00400000u) & 0xffffe000u;  // NaN
    return sign | ((magnitude + 0x1000u) & 0xffffe000u);
#endif
}

#if !GPUCONV_MMA_PTX
// The value the tensor core takes from a tf32 register: the top 19 bits only. What we emulate
// for a word that did not come from to_tf32 (a raw fp32) is truncation of its 13 low bits,
// i.e. rounding toward zero; to_tf32's words pass unchanged.
__device__ __forceinline__ float mma_tf32_value(unsigned bits) {
    return __uint_as_float(bits & 0xffffe000u);
}
#endif

// ---------------------------------------------------------------------------------------
// mma_m16n8k8_tf32: d[0..3] += A * B for one warp (all 32 lanes, converged), fp32
// accumulation. Products of two tf32 values are exact in fp32 (11 + 11 significant bits;
// barring underflow), so the emulation's only roundings are those of the fp32 sums, in the
// order k = j, j + 4 for j = 0..3 (a tensor core may sum in another order: tests of random
// data allow for it).
__device__ __forceinline__ void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4],
                                                 const unsigned (&b)[2]) {
#if GPUCONV_MMA_PTX
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    // Each word holds one k.
    mma_emulate(d, a, b, [](float s, unsigned a_word, unsigned b_word) {
        return s + mma_tf32_value(a_word) * mma_tf32_value(b_word);
    });
#endif
}

// ---------------------------------------------------------------------------------------
// mma_tf32_gemm_mainloop: mma_gemm_mainloop for 32-bit operands: acc += the block's BM x BN
// tile over `tiles` reduction tiles of BK, on tf32 tensor cores (m16n8k8).
//
//   a_smem[stage][row][kk], b_smem[stage][col][kk]: both operands as reduction-contiguous
//   rows of BK + MMA_TF32_SMEM_SKEW floats; STAGES stages. The loaders' interface is
//   mma_gemm_mainloop's with one element per 32-bit word: a.load(regs) fills ALoader::WORDS
//   words and steps on by BK, a.store(regs, stage) writes them into a_smem[stage] (or a
//   copying loader's a.load(stage)); b.load(stage) copies the next B tile into the free stage
//   b_smem[..] (cp.async where it can).
//   Rounding: every fragment word is rounded to tf32 (to_tf32: nearest, ties away) as it is
//   read from shared memory. Tiles copied by cp.async hold raw fp32 words, which the tensor
//   core would truncate (mma_tf32_value); rounding them here makes every operand round to
//   nearest, whichever path (copy or gather, aligned or not) brought it in, so a result does
//   not depend on an operand's alignment. Words a gathering loader rounded already stay as
//   they are (to_tf32 of a tf32 value is itself).
//   Warps and accumulators: as in mma_gemm_mainloop (acc[i][j][c0..c3], the C/D layout).
//   Fragments: per k8 step, plain 32-bit shared loads at the layout's own coordinates: A
//   fragment i from rows warp_m + 16i + {g, g+8}, columns kk {t, t+4}; B fragment j from
//   b_smem row (= B column) warp_n + 8j + g, columns kk {t, t+4}.
//   Pipeline and barriers: mma_pipeline's (block_sync ids 5 and 6, or 10; common.cuh).
//
// Skew: one fragment load has the 32 lanes read rows r + g (g = 0..7) at column c + t
// (t = 0..3), i.e. word (r + g) * P + c + t for the row pitch P = BK + 4. With BK % 8 == 0,
// P / 4 is odd, so g * P mod 32 = 4 * (g * P/4 mod 8) takes each of 0, 4, .., 28 once: adding
// t then hits all 32 banks, no conflict. (No skew, P % 32 == 0: all eight rows would share 4
// banks, an 8-way conflict.) 4 words also keep every row 16-byte aligned for vector copies.
#define MMA_TF32_SMEM_SKEW 4  // floats of padding per shared row

template <int BM, int BN, int BK, int WM, int WN, class ALoader, class BLoader, int STAGES>
__device__ __forceinline__ void mma_tf32_gemm_mainloop(
    ALoader& a, BLoader& b, int tiles, float (&acc)[WM / 16][WN / 8][4],
    float (&a_smem)[STAGES][BM][BK + MMA_TF32_SMEM_SKEW],
    float (&b_smem)[STAGES][BN][BK + MMA_TF32_SMEM_SKEW]) {
    constexpr int MI = WM / 16, NJ = WN / 8;  // m16 / n8 fragments per warp
    static_assert(BK % 8 == 0, "k8 steps; also keeps the skewed fragment loads conflict-free");
    static_assert(WM % 16 == 0 && WN % 8 == 0, "warp tile must split into m16n8 fragments");
    static_assert(BM % WM == 0 && BN % WN == 0, "block tile must split into warp tiles");
    const int warp = (int)(threadIdx.x / 32);
    const int warp_m = (warp % (BM / WM)) * WM, warp_n = (warp / (BM / WM)) * WN;
    const int lane = fragment_lane();
    const int g = lane >> 2, t = lane & 3;

    mma_pipeline<STAGES>(a, b, tiles, [&](int stage) { return &a_smem[stage][0][0]; },
                        [&](int stage) { return &b_smem[stage][0][0]; }, [&](int buf) {
#pragma unroll
        for (int ks = 0; ks < BK; ks += 8) {
            unsigned af[MI][4], bf[NJ][2];
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                const float* upper = &a_smem[buf][warp_m + i * 16 + g][ks + t];   // row g
                const float* lower = &a_smem[buf][warp_m + i * 16 + g + 8][ks + t];  // g + 8
                af[i][0] = to_tf32(upper[0]);
                af[i][1] = to_tf32(lower[0]);
                af[i][2] = to_tf32(upper[4]);
                af[i][3] = to_tf32(lower[4]);
            }
#pragma unroll
            for (int j = 0; j < NJ; ++j) {
                const float* column = &b_smem[buf][warp_n + j * 8 + g][ks + t];
                bf[j][0] = to_tf32(column[0]);
                bf[j][1] = to_tf32(column[4]);
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NJ; ++j) mma_m16n8k8_tf32(acc[i][j], af[i], bf[j]);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Operand words of the v3 loaders, for T = __half / __nv_bfloat16 (16-bit tensor cores: two
// elements per 32-bit word, raw bits, lower index in the low half) and T = float (TF32: one
// element per word, rounded with to_tf32). A loader gathers PER_THREAD elements into
// mma_words<T>(PER_THREAD) words with mma_put, and writes 16-byte pieces of them to shared
// memory tiles of MmaTile<T>::type elements, rows padded by MmaTile<T>::skew.
template <typename T> struct MmaTile {  // 16-bit operands
    typedef unsigned short type;
    enum { skew = MMA_SMEM_SKEW };
};
template <> struct MmaTile<float> {      // TF32 operands
    typedef float type;
    enum { skew = MMA_TF32_SMEM_SKEW };
};
__host__ __device__ constexpr int mma_words(int elements, int element_bytes) {
    return elements * element_bytes / 4;
}
// mma_put<T>(regs, i, v, inside): element i of a loader's run, v (0 when !inside).
template <typename T, int WORDS>
__device__ __forceinline__ void mma_put(unsigned (&regs)[WORDS], int i, const T& v, bool inside) {
    if constexpr (sizeof(T) == 4) {
        regs[i] = inside ? to_tf32(v) : 0u;
    } else {
        const unsigned bits = inside ? (unsigned)*reinterpret_cast<const unsigned short*>(&v) : 0u;
        if (i % 2 == 0) regs[i / 2] = bits;  // even element: low half of the word
        else regs[i / 2] |= bits << 16;      // odd element: high half
    }
}
// mma_store_words: 8 words (32 bytes) into tile[row][col ..] (row pitch PITCH elements of E;
// col a multiple of 16 bytes' worth) as two 16-byte shared stores.
template <int PITCH, typename E>
__device__ __forceinline__ void mma_store_words(const unsigned (&regs)[8], E* tile, int row,
                                                int col) {
    uint4* dst = reinterpret_cast<uint4*>(tile + row * PITCH + col);
    dst[0] = make_uint4(regs[0], regs[1], regs[2], regs[3]);
    dst[1] = make_uint4(regs[4], regs[5], regs[6], regs[7]);
}

// ---------------------------------------------------------------------------------------
// mma_tile_product<T, BM, BN, BK, WM, WN>(a, b, tiles, acc, a_smem, b_smem): acc = the block's
// tile product over `tiles` reduction tiles, on the tensor cores for operand type T — the f16 /
// bf16 loop (mma_gemm_mainloop) or, for float, the TF32 one (mma_tf32_gemm_mainloop). The
// shared tiles are MmaTile<T>::type rows padded by MmaTile<T>::skew. What every v3 kernel runs.
template <typename T, int BM, int BN, int BK, int WM, int WN, class ALoader, class BLoader,
          class E, int STAGES>
__device__ __forceinline__ void mma_tile_product(ALoader& a, BLoader& b, int tiles,
                                                 float (&acc)[WM / 16][WN / 8][4],
                                                 E (&a_smem)[STAGES][BM][BK + MmaTile<T>::skew],
                                                 E (&b_smem)[STAGES][BN][BK + MmaTile<T>::skew]) {
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
        for (int j = 0; j < WN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
    if constexpr (sizeof(T) == 4)
        mma_tf32_gemm_mainloop<BM, BN, BK, WM, WN>(a, b, tiles, acc, a_smem, b_smem);
    else
        mma_gemm_mainloop<T, BM, BN, BK, WM, WN>(a, b, tiles, acc, a_smem, b_smem);
}

// ---------------------------------------------------------------------------------------
// Reduction-major ("k-major") tiles: for operands whose memory runs along the GEMM side, not
// the reduction (the NHWC weight gradient: x and dy are pixel rows of channels / filters, and
// the pixels are the reduction). A stage holds rows of the reduction, a_smem[kk][row] and
// b_smem[kk][col], so a loader copies 16-byte pieces of 8 consecutive rows (columns) of one
// reduction step straight from memory; the fragment loads do the transposing.
//
//   MmaKMajorTile<T>: the shared element (16-bit bits, or float for TF32) and the row skew.
//     16-bit: 8 halves (16 bytes). An ldmatrix phase reads 8 rows of 16 bytes at the same
//     column; with a pitch of (BM + 8) * 2 bytes, BM % 16 == 0, the pitch is an odd number of
//     16-byte units, so the 8 rows fall in 8 different bank groups.
//     TF32: 8 floats. A fragment load has lane (g, t) read word (kk + t) * P + row + g; with
//     P = BM + 8 and BM % 32 == 0, t * P mod 32 = 8t, so 8t + g hits all 32 banks once.
template <typename T> struct MmaKMajorTile {
    typedef unsigned short type;
    enum { skew = 8 };
};
template <> struct MmaKMajorTile<float> {
    typedef float type;
    enum { skew = 8 };
};

// MmaKMajorRows<T, ROWS>: where a reduction-major stage keeps element (row, kk) (row: the
// GEMM row or column, kk: the reduction step): one padded row of ROWS + skew elements per kk.
// The wgrad loaders' default Layout; with at(row, kk) for a piece's first row (8 halves or 4
// floats along the rows).
template <typename T, int ROWS> struct MmaKMajorRows {
    // MN_MAJOR: 8 consecutive rows at one kk are contiguous (a piece), as in WgmmaMnTile.
    enum { MN_MAJOR = 1, PITCH = ROWS + MmaKMajorTile<T>::skew };
    static __device__ __forceinline__ int at(int row, int kk) { return kk * PITCH + row; }
};

// mma_kmajor_tile_product<T, BM, BN, BK, WM, WN>(a, b, tiles, acc, a_smem, b_smem): what
// mma_tile_product computes (acc = the block's tile product over `tiles` reduction tiles),
// from k-major stages filled by two copying loaders (COPIES: a.load(stage), b.load(stage)).
// Warps and accumulators as in mma_gemm_mainloop. Fragments, per k step:
//   16-bit (k16): ldmatrix.trans of 8x8 blocks whose rows are reduction steps; .trans hands
//   lane (g, t) the pair {M[2t][g], M[2t+1][g]} = two consecutive k of GEMM row g: exactly the
//   A / B fragment pairs. A fragment i, one x4: lane l supplies kk (l % 8) + (l / 16) * 8 at
//   row warp_m + 16i + ((l / 8) % 2) * 8 (matrices: rows 0-7 | 8-15 for k 0-7, then for k
//   8-15 = a[0..3]). B fragments j, j+1, one x4: lane l supplies kk (l % 8) + ((l / 8) % 2) * 8
//   at column warp_n + 8j + (l / 16) * 8 (= b[0..1] of fragment j, then of j + 1).
//   TF32 (k8): 32-bit shared loads at the layout's coordinates, rounded by to_tf32 (as in
//   mma_tf32_gemm_mainloop): a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4] =
//   a_smem[kk + t (+4)][row + g (+8)]; b = B[t][g], B[t+4][g] = b_smem[kk + t (+4)][col + g].
// Pipeline and barriers: mma_multistage's (block_sync id 10), over the stages of the arrays.
template <typename T, int BM, int BN, int BK, int WM, int WN, class ALoader, class BLoader,
          class E, int STAGES>
__device__ __forceinline__ void mma_kmajor_tile_product(
    ALoader& a, BLoader& b, int tiles, float (&acc)[WM / 16][WN / 8][4],
    E (&a_smem)[STAGES][BK][BM + MmaKMajorTile<T>::skew],
    E (&b_smem)[STAGES][BK][BN + MmaKMajorTile<T>::skew]) {
    constexpr bool TF32 = sizeof(T) == 4;
    constexpr int MI = WM / 16, NJ = WN / 8, KSTEP = TF32 ? 8 : 16;
    static_assert(MmaCopies<ALoader>::value && MmaCopies<BLoader>::value,
                  "k-major stages are filled by copying loaders");
    static_assert(BK % KSTEP == 0 && WM % 16 == 0 && WN % 16 == 0, "k steps, x4 B loads");
    static_assert(BM % WM == 0 && BN % WN == 0, "block tile must split into warp tiles");
    static_assert(BM % 32 == 0 && BN % 32 == 0, "conflict-free skewed rows (see MmaKMajorTile)");
    const int warp = (int)(threadIdx.x / 32);
    const int warp_m = (warp % (BM / WM)) * WM, warp_n = (warp / (BM / WM)) * WN;
    const int lane = fragment_lane();
    const int g = lane >> 2, t = lane & 3;
    const int a_kk = lane % 8 + (lane / 16) * 8, a_row = warp_m + ((lane / 8) % 2) * 8;
    const int b_kk = lane % 8 + ((lane / 8) % 2) * 8, b_col = warp_n + (lane / 16) * 8;
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    mma_pipeline<STAGES>(a, b, tiles, [&](int stage) { return &a_smem[stage][0][0]; },
                        [&](int stage) { return &b_smem[stage][0][0]; }, [&](int buf) {
#pragma unroll
        for (int ks = 0; ks < BK; ks += KSTEP) {
            unsigned af[MI][4], bf[NJ][2];
            if constexpr (TF32) {
#pragma unroll
                for (int i = 0; i < MI; ++i) {
                    const int row = warp_m + i * 16 + g;
                    af[i][0] = to_tf32(a_smem[buf][ks + t][row]);
                    af[i][1] = to_tf32(a_smem[buf][ks + t][row + 8]);
                    af[i][2] = to_tf32(a_smem[buf][ks + t + 4][row]);
                    af[i][3] = to_tf32(a_smem[buf][ks + t + 4][row + 8]);
                }
#pragma unroll
                for (int j = 0; j < NJ; ++j) {
                    bf[j][0] = to_tf32(b_smem[buf][ks + t][warp_n + j * 8 + g]);
                    bf[j][1] = to_tf32(b_smem[buf][ks + t + 4][warp_n + j * 8 + g]);
                }
            } else {
#pragma unroll
                for (int i = 0; i < MI; ++i)
                    ldmatrix<4, true>(af[i], &a_smem[buf][ks + a_kk][a_row + i * 16]);
#pragma unroll
                for (int j = 0; j < NJ; j += 2) {
                    unsigned r[4];
                    ldmatrix<4, true>(r, &b_smem[buf][ks + b_kk][b_col + j * 8]);
                    bf[j][0] = r[0]; bf[j][1] = r[1];
                    bf[j + 1][0] = r[2]; bf[j + 1][1] = r[3];
                }
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NJ; ++j) {
                    if constexpr (TF32) mma_m16n8k8_tf32(acc[i][j], af[i], bf[j]);
                    else mma_m16n8k16<T>(acc[i][j], af[i], bf[j]);
                }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Loaders that copy straight into shared memory (cp.async): filter rows, NHWC pixels.
//
// Where a tile's element (row, kk) lives in its stage: Layout::at(row, kk) (an element index;
// kk a multiple of 16 bytes' worth is the start of a 16-byte piece); and which piece thread
// tid of a pass copies: Layout::piece(tid, PIECES_PER_ROW, row, piece) (row within the pass's
// rows, piece = kk / its 16 bytes). MmaPaddedRows: the mma.sync tiles' reduction-contiguous
// rows padded by MmaTile<T>::skew, neighbouring threads on neighbouring pieces of a row; the
// wgmma tiles have their own (WgmmaTile, below).
template <typename T, int BK> struct MmaPaddedRows {
    enum { MN_MAJOR = 0, PITCH = BK + MmaTile<T>::skew };  // pieces run along kk
    static __device__ __forceinline__ int at(int row, int kk) { return row * PITCH + kk; }
    static __device__ __forceinline__ void piece(int tid, int pieces_per_row, int& row,
                                                 int& piece) {
        row = tid / pieces_per_row;
        piece = tid % pieces_per_row;
    }
};

// MmaRowsLoader<T, BN, BK, THREADS>: a B operand stored as rows of a row-major matrix, each
// row one GEMM column and contiguous along the reduction (fprop's filters w[k, (c, r, s)]; the
// NHWC kernels' filters): init(w, first_row, rows_left, Kgemm, tid) for the block's rows
// first_row .. + BN (rows past rows_left load zeros). A 16-byte piece is PER_THREAD (8 halves
// or 4 floats) consecutive reduction steps of one row; thread t copies piece
// Layout::piece(t) of row n_local and of the rows ROWS_PER_PASS, 2 * ROWS_PER_PASS, ..
// below it (PASSES pieces: 1 where the threads cover the tile at once, 2 for the 128-column
// wgmma tiles). With Kgemm a multiple of PER_THREAD and w 16-byte aligned every piece is an
// aligned 16-byte vector, copied by cp.async (zero-filled past the last row or the
// reduction's end, which then holds whole pieces); otherwise PER_THREAD guarded loads
// (float: rounded to tf32).
template <typename T, int BN, int BK, int THREADS, class Layout = MmaPaddedRows<T, BK>>
struct MmaRowsLoader {
    enum { PER_THREAD = 16 / sizeof(T), ROWS_PER_PASS = THREADS / (BK / PER_THREAD),
           PASSES = BN / ROWS_PER_PASS };
    static_assert(BN * BK == PASSES * THREADS * PER_THREAD, "B tile split into whole passes");
    static_assert(!Layout::MN_MAJOR, "a piece is 8 consecutive kk of one row");
    const T* w;                   // w itself (a valid address for zero-byte copies)
    const T* w_row;               // this thread's first row (w itself past rows_left)
    int rows_here;                // real rows from this thread's first one on (may be <= 0)
    bool vector_ok;
    int n_local, kk_local, kk_first, Kgemm;

    __device__ __forceinline__ void init(const T* w_, int first_row, int rows_left, int Kgemm_,
                                         int tid) {
        w = w_;
        Kgemm = Kgemm_;
        int piece;
        Layout::piece(tid, BK / PER_THREAD, n_local, piece);
        kk_local = piece * PER_THREAD;
        kk_first = kk_local;
        rows_here = rows_left - n_local;
        w_row = rows_here > 0 ? w + (long long)(first_row + n_local) * Kgemm : w;
        vector_ok = Kgemm % PER_THREAD == 0 &&
                    (reinterpret_cast<unsigned long long>(w) & 15ull) == 0;
    }
    // Fetch the next tile into `tile` (a free stage): asynchronously where possible.
    __device__ __forceinline__ void load(typename MmaTile<T>::type* tile) {
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            auto* dst = tile + Layout::at(n_local + i * ROWS_PER_PASS, kk_local);
            const bool row_valid = i * ROWS_PER_PASS < rows_here;
            const T* row = row_valid ? w_row + (long long)i * ROWS_PER_PASS * Kgemm : w;
            if (vector_ok) {
                const bool inside = row_valid && kk_first < Kgemm;  // whole piece or none
                cp_async_16(dst, inside ? row + kk_first : w, inside ? 16 : 0);
            } else {
                unsigned words[4];
#pragma unroll
                for (int e = 0; e < PER_THREAD; ++e) {
                    const bool inside = row_valid && kk_first + e < Kgemm;
                    mma_put(words, e, inside ? row[kk_first + e] : T(), inside);
                }
                *reinterpret_cast<uint4*>(dst) =
                    make_uint4(words[0], words[1], words[2], words[3]);
            }
        }
        kk_first += BK;
    }
};

// MmaNhwcLoader<T, BM, BK, THREADS, Window>: an A operand gathered from a channels-last
// tensor (the NHWC kernels). GEMM row m is a pixel of the result; its reduction runs over
// kk = (r, s, c) with c innermost: channel c of the tensor pixel that tap (r, s) of row m reads
// (Window::tap; none in the padding, or where no window puts the tap: zeros). PIECE = 16 /
// sizeof(T) consecutive kk are then PIECE consecutive channels of one tensor pixel: a
// 16-byte vector, copied by cp.async (COPIES: mma_multistage gives it a free stage to
// load into) when the channels per group Cg are a multiple of PIECE and the tensor is 16-byte
// aligned (then a piece is wholly inside one tap, and wholly in or out); otherwise element by
// element (a piece may cross taps; float: rounded to tf32), still without registers between
// load and store.
//   Window: struct Row (a row's pixel); Row row(long long m) (m may be past the last row:
//   its taps are none); long long tap(const Row&, int r, int s) (offset of channel 0 of the
//   group at the pixel tap (r, s) reads, or -1). Pieces: thread t copies piece t % (BK /
//   PIECE) of rows t / (BK / PIECE) + i * ROWS_PER_PASS (a row's BK elements: contiguous
//   pieces fetched by neighbouring threads).
template <typename T, int BM, int BK, int THREADS, class Window,
          class Layout = MmaPaddedRows<T, BK>>
struct MmaNhwcLoader {
    enum { COPIES = 1, PIECE = 16 / sizeof(T), PIECES_PER_ROW = BK / PIECE,
           ROWS_PER_PASS = THREADS / PIECES_PER_ROW, PASSES = BM / ROWS_PER_PASS };
    static_assert(BK % PIECE == 0 && THREADS % PIECES_PER_ROW == 0 &&
                  BM % ROWS_PER_PASS == 0, "A tile split into 16-byte pieces");
    static_assert(!Layout::MN_MAJOR, "a piece is 8 consecutive kk of one row");
    const T* src;
    Window window;
    typename Window::Row rows[PASSES];
    int row0, kk_local, kk_first;  // kk_first: reduction index of this thread's piece
    int r, s, c;                   // digits (r, s, c) of kk_first
    int Cg, S, Kgemm;
    bool vector_ok;
    MixedRadix3 step;              // BK as (r, s, c) digits

    __device__ __forceinline__ void init(const T* src_, const Window& window_, long long m_block,
                                         int Cg_, int R, int S_, int tid) {
        src = src_; window = window_; Cg = Cg_; S = S_;
        Kgemm = R * S * Cg;
        int piece;
        Layout::piece(tid, PIECES_PER_ROW, row0, piece);
        kk_local = piece * PIECE;
        kk_first = kk_local;
#pragma unroll
        for (int i = 0; i < PASSES; ++i) rows[i] = window.row(m_block + row0 + i * ROWS_PER_PASS);
        c = kk_first % Cg;
        s = (kk_first / Cg) % S;
        r = kk_first / (Cg * S);
        step = mixed_radix_step(BK, S, Cg);
        vector_ok = Cg % PIECE == 0 && (reinterpret_cast<unsigned long long>(src) & 15ull) == 0;
    }
    // Fetch the next tile into `tile` (a free stage): asynchronously where possible.
    __device__ __forceinline__ void load(typename MmaTile<T>::type* tile) {
#pragma unroll
        for (int i = 0; i < PASSES; ++i) {
            auto* dst = tile + Layout::at(row0 + i * ROWS_PER_PASS, kk_local);
            if (vector_ok) {
                // The piece is PIECE channels of tap (r, s): wholly inside or wholly out.
                const long long pixel = kk_first < Kgemm ? window.tap(rows[i], r, s) : -1;
                cp_async_16(dst, pixel >= 0 ? src + pixel + c : src, pixel >= 0 ? 16 : 0);
            } else {
                unsigned words[4];
                int cc = c, ss = s, rr = r;
#pragma unroll
                for (int e = 0; e < PIECE; ++e) {
                    const long long pixel =
                        kk_first + e < Kgemm ? window.tap(rows[i], rr, ss) : -1;
                    mma_put(words, e, pixel >= 0 ? src[pixel + cc] : T(), pixel >= 0);
                    if (++cc == Cg) { cc = 0; if (++ss == S) { ss = 0; ++rr; } }  // kk + 1
                }
                *reinterpret_cast<uint4*>(dst) =
                    make_uint4(words[0], words[1], words[2], words[3]);
            }
        }
        kk_first += BK;
        advance_by_step(step, S, Cg, r, s, c);
    }
};

// mma_nhwc_gemm: what both NHWC (v4) kernels run. The block's tile of GEMM rows blockIdx.x*BM
// .. (Window's pixels of src, `channels` per tap of R x S taps: MmaNhwcLoader) times the rows
// first_row .. of `rows` (rows_left of them real: MmaRowsLoader), on the tensor cores; then
// store(m, col, value) for each accumulator: m the GEMM row (may be past the last: the caller
// guards), col the column within the tile.
template <typename T, int BM, int BN, int BK, int WM, int WN, class Window, class E, int STAGES,
          class Store>
__device__ __forceinline__ void mma_nhwc_gemm(const T* src, const Window& window, int channels,
                                              int R, int S, const T* rows, int first_row,
                                              int rows_left,
                                              E (&a_smem)[STAGES][BM][BK + MmaTile<T>::skew],
                                              E (&b_smem)[STAGES][BN][BK + MmaTile<T>::skew],
                                              Store store) {
    constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
    const long long m_block = (long long)blockIdx.x * BM;
    const int Kgemm = R * S * channels;
    MmaNhwcLoader<T, BM, BK, THREADS, Window> a;
    a.init(src, window, m_block, channels, R, S, threadIdx.x);
    MmaRowsLoader<T, BN, BK, THREADS> b;
    b.init(rows, first_row, rows_left, Kgemm, threadIdx.x);
    float acc[WM / 16][WN / 8][4];
    mma_tile_product<T, BM, BN, BK, WM, WN>(a, b, (int)div_up(Kgemm, BK), acc, a_smem, b_smem);
    mma_each_element<BM, WM, WN>(acc, [&](int row, int col, float v) {
        store(m_block + row, col, v);
    });
}

// =======================================================================================
// wgmma: the warpgroup MMA of sm_90a (Hopper), emulated elsewhere like mma.sync.
//
// wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}.{f16,bf16}: a warpgroup (4 consecutive
// warps, 128 threads) computes D (64 x N, f32, in its registers) += A (64 x 16) * B (16 x N),
// both operands read from shared memory through 64-bit matrix descriptors. Asynchronous:
// wgmma.fence orders the accumulator registers before it, wgmma.commit_group + wait_group
// wait for it. An arch-specific feature: only code compiled for sm_90a has it (NVRTC's
// -arch=sm_90a defines __CUDA_ARCH_FEAT_SM90_ALL; gpuconv's GPU runtime compiles for sm_90a on
// devices of compute capability 9.0, cupy_rt.arch_option).
//
// Shared-memory layouts (PTX ISA, "Shared Memory Matrix Layout", no swizzling), in units of
// core matrices of 128 contiguous bytes (T = 8 16-bit elements make 16 bytes):
//   K-major (imm-trans 0): a core matrix is 8 rows x 16 bytes (8 kk), row by row; core
//     matrices adjacent along K lie LBO bytes apart, those adjacent along the rows (M for A,
//     N for B) SBO bytes apart: in CuTe terms ((8, m), (T, 2k)) : ((T, SBO), (1, LBO)).
//     WgmmaTile<ROWS, BK> puts a group of 8 rows' core matrices side by side along K
//     (LBO = 128) and the row groups one after another (SBO = BK * 16 bytes). A 16-byte loader
//     piece (8 consecutive kk of one row) is one row of one core matrix: at(row, kk) for
//     kk % 8 == 0. (fprop, dgrad: pieces run along the reduction.)
//   MN-major (imm-trans 1, "transposed"; 16-bit types only): a core matrix is 8 kk x 16 bytes
//     (8 rows), kk by kk; core matrices adjacent along K lie LBO bytes apart, those adjacent
//     along the rows SBO bytes apart: ((T, 1, m), (8, k)) : ((1, T, SBO), (T, LBO)).
//     WgmmaMnTile<ROWS, BK>: LBO = 128, SBO = BK * 16 + 16 (see there). A 16-byte piece is 8
//     consecutive rows at one kk: at(row, kk) for row % 8 == 0. (wgrad: pieces run along the
//     GEMM rows and columns, a pixel's channels and filters; what mma_kmajor_tile_product
//     calls a reduction-major, "k-major" stage, the ISA calls MN-major.)
//
// Matrix descriptor (PTX ISA, "Matrix Descriptor Format"): bits 0-13 the start address, 16-29
// LBO, 32-45 SBO, each as (x & 0x3FFFF) >> 4; bits 49-51 the base offset (0 without swizzle);
// bits 62-63 the swizzle mode (0: none).
//
// Accumulators (PTX ISA, "Matrix Fragments for wgmma.mma_async.m64nNk16"): warp w of the
// warpgroup holds rows 16w .. 16w + 15 of D in the mma.m16n8 C layout, once per 8 columns:
// d[4j + e] = D[16w + g (+8 for e >= 2)][8j + 2t + (e & 1)]. Held here as acc[1][N / 8][4]:
// mma_each_element's layout for warp tiles of 16 rows x N columns.
//
// Emulation (the CPU runtime; sm_75 to sm_90 without the 'a' features): each warp multiplies
// its own 16 rows. Per k16 slice it reads its A fragment and each n8 block's B fragment from
// shared memory where the slices' descriptors put them (wgmma_descriptor_offset: the
// canonical layout with the LBO / SBO the descriptor encodes) and runs mma_m16n8k16 (the instruction on sm_80+, the shuffle emulation elsewhere). A kernel that
// puts a piece in the wrong core matrix, or hands the epilogue the wrong rows, gets the same
// wrong answer from the emulation as from the tensor cores.

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GPUCONV_WGMMA_PTX 1   // wgmma instructions; else the emulation
#else
#define GPUCONV_WGMMA_PTX 0
#endif

template <int ROWS, int BK> struct WgmmaTile {
    static_assert(ROWS % 8 == 0 && BK % 16 == 0, "whole core matrices; k16 slices");
    enum { MN_MAJOR = 0, LBO = 128, SBO = BK * 16, ELEMENTS = ROWS * BK };  // bytes; elements
    // Element index of (row, kk): row group, core matrix along K, row in it, element in the row.
    static __device__ __forceinline__ int at(int row, int kk) {
        return (row / 8) * (SBO / 2) + (kk / 8) * (LBO / 2) + (row % 8) * 8 + kk % 8;
    }
    // Thread tid's piece: each 8 * pieces_per_row threads take one row group, the 8 rows of a
    // piece column first. A 16-byte shared store is served 8 threads at a time; these 8 write
    // the 8 rows of one core matrix, 8 different bank groups (8 threads along one row would
    // land LBO = 128 bytes apart: one bank group, a 4-way conflict for BK = 32). A warp still
    // fetches whole rows' pieces from global memory.
    static __device__ __forceinline__ void piece(int tid, int pieces_per_row, int& row,
                                                 int& piece) {
        const int group = tid / (8 * pieces_per_row), in_group = tid % (8 * pieces_per_row);
        row = 8 * group + in_group % 8;
        piece = in_group / 8;
    }
};

// WgmmaMnTile<ROWS, BK>: an MN-major stage (above). Its row groups lie SBO = BK * 16 + 16
// bytes apart, not BK * 16: a 16-byte shared store is served 8 threads at a time, and the
// wgrad loaders give 8 consecutive threads 8 neighbouring pieces of one pixel (8 consecutive
// row groups at one kk: one coalesced 128-byte read). Unpadded, those 8 pieces would be BK * 16
// bytes apart, all in one 16-byte bank group (an 8-way conflict); 16 bytes more per row group
// puts them in 8 different bank groups. The ISA allows any SBO (a multiple of 16).
template <int ROWS, int BK> struct WgmmaMnTile {
    static_assert(ROWS % 8 == 0 && BK % 16 == 0, "whole core matrices; k16 slices");
    enum { MN_MAJOR = 1, LBO = 128, SBO = BK * 16 + 16, ELEMENTS = ROWS / 8 * (SBO / 2) };
    // Element index of (row, kk): row group, core matrix along K, kk in it, element in the kk.
    static __device__ __forceinline__ int at(int row, int kk) {
        return (row / 8) * (SBO / 2) + (kk / 8) * (LBO / 2) + (kk % 8) * 8 + row % 8;
    }
};

// wgmma_descriptor(start, lbo, sbo): the matrix descriptor of an unswizzled slice starting at
// shared-memory byte address `start` (the same fields for K-major and MN-major slices: the
// instruction's imm-trans says which). wgmma_descriptor_offset<MN_MAJOR>(desc, row, kk): the
// byte offset from the slice's start of its element (row, kk), as the descriptor lays the
// canonical layout out (16-bit elements): what the emulation reads through, so that the
// descriptor's LBO / SBO fields (not only the tiles' at) decide what it multiplies.
__device__ __forceinline__ unsigned long long wgmma_descriptor(unsigned long long start,
                                                               int lbo, int sbo) {
    return ((start & 0x3FFFFull) >> 4) | ((unsigned long long)((lbo & 0x3FFFF) >> 4) << 16) |
           ((unsigned long long)((sbo & 0x3FFFF) >> 4) << 32);
}
template <bool MN_MAJOR = false>
__device__ __forceinline__ int wgmma_descriptor_offset(unsigned long long desc, int row,
                                                       int kk) {
    const int lbo = (int)((desc >> 16) & 0x3FFF) << 4, sbo = (int)((desc >> 32) & 0x3FFF) << 4;
    const int in_core = MN_MAJOR ? (kk % 8) * 16 + (row % 8) * 2 : (row % 8) * 16 + (kk % 8) * 2;
    return (row / 8) * sbo + (kk / 8) * lbo + in_core;
}

// The emulation's fragment word of a slice: elements (row, kk) and (row, kk + 1), the low one
// first, where the descriptor puts them: one 32-bit word K-major; MN-major, two 16-bit
// elements 16 bytes apart.
template <bool MN_MAJOR>
__device__ __forceinline__ unsigned wgmma_fragment_word(const unsigned short* slice,
                                                        unsigned long long desc, int row,
                                                        int kk) {
    const char* base = reinterpret_cast<const char*>(slice);
    if constexpr (MN_MAJOR) {
        const unsigned lo = *reinterpret_cast<const unsigned short*>(
            base + wgmma_descriptor_offset<true>(desc, row, kk));
        const unsigned hi = *reinterpret_cast<const unsigned short*>(
            base + wgmma_descriptor_offset<true>(desc, row, kk + 1));
        return lo | hi << 16;
    } else {
        return *reinterpret_cast<const unsigned*>(base +
                                                  wgmma_descriptor_offset(desc, row, kk));
    }
}

// Pin each accumulator register in place around the asynchronous wgmma (the compiler must
// neither read it early nor move writes across the fence / wait).
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[N / 8][4]) {
#if GPUCONV_WGMMA_PTX
#pragma unroll
    for (int j = 0; j < N / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
#endif
}

#define GPUCONV_WGMMA_D8(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
// The accumulator operands of m64n64 (32 registers a thread) and m64n128 (64).
#define GPUCONV_WGMMA_D64                                                                  \
    GPUCONV_WGMMA_D8(0), GPUCONV_WGMMA_D8(1), GPUCONV_WGMMA_D8(2), GPUCONV_WGMMA_D8(3),       \
        GPUCONV_WGMMA_D8(4), GPUCONV_WGMMA_D8(5), GPUCONV_WGMMA_D8(6), GPUCONV_WGMMA_D8(7)
#define GPUCONV_WGMMA_D128                                                                 \
    GPUCONV_WGMMA_D64, GPUCONV_WGMMA_D8(8), GPUCONV_WGMMA_D8(9), GPUCONV_WGMMA_D8(10),        \
        GPUCONV_WGMMA_D8(11), GPUCONV_WGMMA_D8(12), GPUCONV_WGMMA_D8(13),                     \
        GPUCONV_WGMMA_D8(14), GPUCONV_WGMMA_D8(15)
#define GPUCONV_WGMMA_R64  \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
    "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define GPUCONV_WGMMA_R128  \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
    "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, " \
    "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, " \
    "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// wgmma_m64nNk16<T, ATile, BTile, N>(d, a, b): d (this warp's 16 rows of the warpgroup's
// 64 x N accumulators) += A * B over one k16 slice; a = the slice's first element of the
// warpgroup's first row (&stage[ATile::at(row0, ks)], row0 and ks multiples of 8), b = that of
// B's first row. Each tile's MN_MAJOR is the instruction's imm-trans for it. All 128 threads
// of the warpgroup, converged. N = 64 or 128 (the instruction shapes spelled out below).
template <typename T, class ATile, class BTile, int N>
__device__ __forceinline__ void wgmma_m64nNk16(float (&d)[N / 8][4], const unsigned short* a,
                                               const unsigned short* b) {
    static_assert(sizeof(T) == 2, "wgmma_m64nNk16 multiplies 16-bit operands");
    static_assert(N == 64 || N == 128, "the instruction shapes spelled out below");
#if GPUCONV_WGMMA_PTX
    const unsigned long long desc_a =
        wgmma_descriptor(__cvta_generic_to_shared(a), ATile::LBO, ATile::SBO);
    const unsigned long long desc_b =
        wgmma_descriptor(__cvta_generic_to_shared(b), BTile::LBO, BTile::SBO);
    // scale-d = 1 (accumulate), A and B unscaled (1), imm-trans-a / -b: the tiles' MN_MAJOR.
    // SHAPE, the accumulators' register list and operands, the first operand after them.
#define GPUCONV_WGMMA_ASM(SHAPE, TYPES, REGS, OUTS, A, B, TA, TB)                             \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                 \
                 "wgmma.mma_async.sync.aligned." SHAPE ".f32." TYPES " " REGS ", " A ", " B   \
                 ", p, 1, 1, " TA ", " TB ";\n}\n"                                            \
                 : OUTS                                                                      \
                 : "l"(desc_a), "l"(desc_b), "n"((int)ATile::MN_MAJOR),                     \
                   "n"((int)BTile::MN_MAJOR))
#define GPUCONV_WGMMA_N64(TYPES)                                                              \
    GPUCONV_WGMMA_ASM("m64n64k16", TYPES, GPUCONV_WGMMA_R64, GPUCONV_WGMMA_D64, "%32", "%33", \
                      "%34", "%35")
#define GPUCONV_WGMMA_N128(TYPES)                                                             \
    GPUCONV_WGMMA_ASM("m64n128k16", TYPES, GPUCONV_WGMMA_R128, GPUCONV_WGMMA_D128, "%64",     \
                      "%65", "%66", "%67")
    if constexpr (N == 64) {
        if constexpr (is_bfloat16<T>::value)
            GPUCONV_WGMMA_N64("bf16.bf16");
        else
            GPUCONV_WGMMA_N64("f16.f16");
    } else {
        if constexpr (is_bfloat16<T>::value)
            GPUCONV_WGMMA_N128("bf16.bf16");
        else
            GPUCONV_WGMMA_N128("f16.f16");
    }
#undef GPUCONV_WGMMA_N128
#undef GPUCONV_WGMMA_N64
#undef GPUCONV_WGMMA_ASM
#else
    // Descriptors of the two slices, their starts taken as offset 0 from a and b.
    const unsigned long long desc_a = wgmma_descriptor(0, ATile::LBO, ATile::SBO);
    const unsigned long long desc_b = wgmma_descriptor(0, BTile::LBO, BTile::SBO);
    const int warp = (int)(threadIdx.x / 32) % 4;  // warp within the warpgroup
    const int lane = fragment_lane();
    const int g = lane >> 2, t = lane & 3, row = 16 * warp + g;
    constexpr bool A_MN = ATile::MN_MAJOR, B_MN = BTile::MN_MAJOR;
    const unsigned af[4] = {wgmma_fragment_word<A_MN>(a, desc_a, row, 2 * t),
                            wgmma_fragment_word<A_MN>(a, desc_a, row + 8, 2 * t),
                            wgmma_fragment_word<A_MN>(a, desc_a, row, 2 * t + 8),
                            wgmma_fragment_word<A_MN>(a, desc_a, row + 8, 2 * t + 8)};
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
        const unsigned bf[2] = {wgmma_fragment_word<B_MN>(b, desc_b, 8 * j + g, 2 * t),
                                wgmma_fragment_word<B_MN>(b, desc_b, 8 * j + g, 2 * t + 8)};
        mma_m16n8k16<T>(d[j], af, bf);
    }
#endif
}
#undef GPUCONV_WGMMA_R128
#undef GPUCONV_WGMMA_R64
#undef GPUCONV_WGMMA_D128
#undef GPUCONV_WGMMA_D64
#undef GPUCONV_WGMMA_D8

// wgmma_fence(): before the first wgmma of a batch (its accumulators were written by other
// instructions); wgmma_commit_and_wait(): the batch is one group, waited for at once.
__device__ __forceinline__ void wgmma_fence() {
#if GPUCONV_WGMMA_PTX
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit_and_wait() {
#if GPUCONV_WGMMA_PTX
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}

// wgmma_tile_product<T, BM, BN, BK[, ATile, BTile]>(a, b, tiles, acc, a_smem, b_smem): acc =
// the block's BM x BN tile product over `tiles` reduction tiles of BK, on wgmma: BM / 64
// warpgroups, warpgroup i owning rows 64i .. 64i + 63 (acc: this warp's 16 of them, all BN
// columns). Stages in the layouts ATile and BTile (K-major WgmmaTile by default, or
// WgmmaMnTile), filled by two copying loaders with the same Layouts through mma_multistage,
// which also makes the copies visible to the tensor cores' (async proxy) reads. Each tile's
// BK / 16 wgmmas are one group, waited for before the next barrier: a stage is never refilled
// under a running wgmma.
template <typename T, int BM, int BN, int BK, class ATile = WgmmaTile<BM, BK>,
          class BTile = WgmmaTile<BN, BK>, class ALoader, class BLoader, int STAGES>
__device__ __forceinline__ void wgmma_tile_product(
    ALoader& a, BLoader& b, int tiles, float (&acc)[1][BN / 8][4],
    unsigned short (&a_smem)[STAGES][ATile::ELEMENTS],
    unsigned short (&b_smem)[STAGES][BTile::ELEMENTS]) {
    static_assert(BM % 64 == 0, "warpgroups of 64 rows");
    const int row0 = (int)(threadIdx.x / 128) * 64;  // this warpgroup's first row
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[0][j][e] = 0.0f;
    mma_multistage<STAGES, true>(a, b, tiles, [&](int stage) { return &a_smem[stage][0]; },
                                 [&](int stage) { return &b_smem[stage][0]; }, [&](int buf) {
        wgmma_fence_operands<BN>(acc[0]);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16)
            wgmma_m64nNk16<T, ATile, BTile, BN>(acc[0], &a_smem[buf][ATile::at(row0, ks)],
                                                &b_smem[buf][BTile::at(0, ks)]);
        wgmma_commit_and_wait();
        wgmma_fence_operands<BN>(acc[0]);
    });
}

// WgmmaColumns<CFG, BN>: the v5 kernels' (fprop, dgrad) tile configurations, the CFG template
// argument (kernels.TILE_CONFIGS mirrors them, the selection picks one per shape); the rows
// stay v3's 128, two warpgroups of 64.
//   CFG 0  BN columns, the kernel's own -D default (64: m64n64k16, 32 accumulators a thread).
//   CFG 1  128 columns (m64n128k16, 64 accumulators a thread): each A slice the tensor cores
//          read from shared memory serves twice the columns. Three stages of 128 x 32 A and
//          B tiles take 48 KB, all of the static shared memory.
// Both give the same bits: an accumulator's reduction order does not depend on the columns.
template <int CFG, int BN_> struct WgmmaColumns {
    static_assert(CFG == 0 || CFG == 1, "the v5 kernels have tile configurations 0 and 1");
    enum { BN = CFG == 1 ? 128 : BN_ };
};

// wgmma_nhwc_gemm: mma_nhwc_gemm on wgmma (the v5 kernels): the same loaders with WgmmaTile
// layouts, wgmma_tile_product, the same epilogue walk (store(m, col, value)).
template <typename T, int BM, int BN, int BK, class Window, int STAGES, class Store>
__device__ __forceinline__ void wgmma_nhwc_gemm(const T* src, const Window& window, int channels,
                                                int R, int S, const T* rows, int first_row,
                                                int rows_left,
                                                unsigned short (&a_smem)[STAGES][BM * BK],
                                                unsigned short (&b_smem)[STAGES][BN * BK],
                                                Store store) {
    constexpr int THREADS = BM / 64 * 128;
    const long long m_block = (long long)blockIdx.x * BM;
    const int Kgemm = R * S * channels;
    MmaNhwcLoader<T, BM, BK, THREADS, Window, WgmmaTile<BM, BK>> a;
    a.init(src, window, m_block, channels, R, S, threadIdx.x);
    MmaRowsLoader<T, BN, BK, THREADS, WgmmaTile<BN, BK>> b;
    b.init(rows, first_row, rows_left, Kgemm, threadIdx.x);
    float acc[1][BN / 8][4];
    wgmma_tile_product<T, BM, BN, BK>(a, b, (int)div_up(Kgemm, BK), acc, a_smem, b_smem);
    mma_each_element<BM, 16, BN>(acc, [&](int row, int col, float v) {
        store(m_block + row, col, v);
    });
}

#endif  // GPUCONV_MMA_CUH
