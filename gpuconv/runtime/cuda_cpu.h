// cuda_cpu.h - run unmodified CUDA C kernels on the CPU (force-included with `g++ -include cuda_cpu.h`).
//
// Design
//  * Blocks: a launch hands the grid to a pool of OS worker threads (the calling thread plus
//    GPUCONV_CPU_WORKERS-1 helpers); each worker runs one block at a time. Between barriers the
//    threads run in thread order, or from the last down with GPUCONV_CPU_FIBER_ORDER=reverse, or
//    with =greedy the first thread that can run always runs next: its warp runs ahead up to the
//    next __syncthreads before the later warps start (what a missing barrier must not survive).
//  * Threads: every CUDA thread of a block is a cooperative fiber on its worker, with its own stack
//    (64 KiB, 256 KiB under ASan, GPUCONV_CPU_STACK_KB overrides) below a PROT_NONE guard area. Stacks are
//    cached per worker across launches. Switching uses a small x86-64 routine (callee-saved registers,
//    mxcsr, x87 control word, rsp); define GPUCONV_CPU_UCONTEXT (or build on another CPU) for ucontext.
//  * threadIdx/blockIdx/blockDim/gridDim are thread_local globals the scheduler rewrites before each
//    resume; a fiber never migrates between workers, and every blocking call is opaque (noipa), so the
//    compiler reloads them after a switch.
//  * The scheduler runs each runnable fiber as far as it can (up to a barrier, warp rendezvous or exit),
//    which makes a missing __syncthreads show up as wrong results.  __syncthreads opens when every live
//    fiber waits at it; exited threads count as arrived; waiting at different source lines is an error
//    ("divergent barrier").  Warp intrinsics are a rendezvous of the lanes named in the mask: the last
//    lane to arrive computes every lane's result.  If no fiber can run and the barrier cannot open
//    (e.g. some wait in __syncthreads while others wait in __shfl_sync) that is a deadlock error.
//  * __shared__ is `thread_local` (implies static at block scope): one copy per worker = per running
//    block.  `extern __shared__` arrays are defined by the build step (cpu_rt.py) in a second translation
//    unit, which also fills the first `shared_mem` bytes with 0xff at every block so reads before writes
//    show as NaN / garbage.
//  * Faults never crash or hang the interpreter: the first error (with block and thread) is recorded,
//    the launch stops and returns nonzero, Python raises KernelError.  A fiber stack overflow hits the
//    guard area; a SIGSEGV handler on an alternate signal stack recognises it and longjmps back to the
//    worker's scheduler (other faults are passed on to the previous handler).
//  * Sanitizer (GPUCONV_CPU_SANITIZE=1 in cpu_rt.py: -fsanitize=address,undefined): fiber switches are
//    announced to ASan; array arguments are copied into exact-size malloc'd buffers (so redzones catch
//    overruns, and the report names the argument); dynamic shared memory beyond `shared_mem` is
//    poisoned; simple static __shared__ declarations are rewritten into exact-size heap blocks; an ASan
//    death callback prints the CUDA block and thread.
//  * Not emulated: inline PTX, cp.async, mma/wgmma, cooperative-groups grid sync, texture memory.
#pragma once
#define GPUCONV_CPU_RUNTIME 1

#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/mman.h>
#include <time.h>
#include <tuple>
#include <type_traits>
#include <utility>
#if !defined(__x86_64__) && !defined(GPUCONV_CPU_UCONTEXT)
#define GPUCONV_CPU_UCONTEXT 1
#endif
#ifdef GPUCONV_CPU_UCONTEXT
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#define GPUCONV_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ thread_local
#define GPUCONV_BLOCKING __attribute__((noipa))
#define GPUCONV_API extern "C" __attribute__((visibility("default")))

// ---------------------------------------------------------------- vector types
#define GPUCONV_VEC(T, N, A)                                                                   \
  struct __attribute__((aligned(A))) N##1 { T x; };                                            \
  struct __attribute__((aligned(A * 2))) N##2 { T x, y; };                                     \
  struct N##3 { T x, y, z; };                                                                  \
  struct __attribute__((aligned(A * 4))) N##4 { T x, y, z, w; };                               \
  static inline N##1 make_##N##1(T x) { return N##1{x}; }                                      \
  static inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }                              \
  static inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }                      \
  static inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
GPUCONV_VEC(signed char, char, 1)
GPUCONV_VEC(unsigned char, uchar, 1)
GPUCONV_VEC(short, short, 2)
GPUCONV_VEC(unsigned short, ushort, 2)
GPUCONV_VEC(int, int, 4)
GPUCONV_VEC(unsigned int, uint, 4)
GPUCONV_VEC(long long, longlong, 8)
GPUCONV_VEC(unsigned long long, ulonglong, 8)
GPUCONV_VEC(float, float, 4)
GPUCONV_VEC(double, double, 8)
#undef GPUCONV_VEC

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// Built-in variables: rewritten by the scheduler before every fiber resume.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------- math
template <class A, class B>
static inline typename std::common_type<A, B>::type min(A a, B b) {
  typedef typename std::common_type<A, B>::type T;
  return (T)a < (T)b ? (T)a : (T)b;
}
template <class A, class B>
static inline typename std::common_type<A, B>::type max(A a, B b) {
  typedef typename std::common_type<A, B>::type T;
  return (T)a > (T)b ? (T)a : (T)b;
}
using std::isnan;
using std::isinf;
using std::isfinite;
using std::signbit;
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
static inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned v; memcpy(&v, &f, 4); return v; }
static inline double __longlong_as_double(long long v) { double f; memcpy(&f, &v, 8); return f; }
static inline long long __double_as_longlong(double f) { long long v; memcpy(&v, &f, 8); return v; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
static inline double rsqrt(double a) { return 1.0 / sqrt(a); }
// glibc declares __expf & co. itself: rename ours.
#define __expf gpuconv_expf
#define __exp10f gpuconv_exp10f
#define __logf gpuconv_logf
#define __log2f gpuconv_log2f
#define __sinf gpuconv_sinf
#define __cosf gpuconv_cosf
#define __tanf gpuconv_tanf
#define __powf gpuconv_powf
static inline float gpuconv_expf(float a) { return expf(a); }
static inline float gpuconv_exp10f(float a) { return powf(10.0f, a); }
static inline float gpuconv_logf(float a) { return logf(a); }
static inline float gpuconv_log2f(float a) { return log2f(a); }
static inline float gpuconv_sinf(float a) { return sinf(a); }
static inline float gpuconv_cosf(float a) { return cosf(a); }
static inline float gpuconv_tanf(float a) { return tanf(a); }
static inline float gpuconv_powf(float a, float b) { return powf(a, b); }
static inline float __saturatef(float a) { return a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : (a == a ? a : 0.0f)); }
static inline int __float2int_rn(float a) { return (int)nearbyintf(a); }
static inline int __float2int_rz(float a) { return (int)a; }
static inline int __float2int_rd(float a) { return (int)floorf(a); }
static inline int __float2int_ru(float a) { return (int)ceilf(a); }
static inline float __int2float_rn(int a) { return (float)a; }
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
static inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
static inline int __clzll(long long v) { return v ? __builtin_clzll((unsigned long long)v) : 64; }
static inline int __ffs(int v) { return __builtin_ffs(v); }
static inline int __ffsll(long long v) { return __builtin_ffsll(v); }
static inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}
static inline int __mul24(int a, int b) { return a * b; }
static inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
template <class T> static inline T __ldg(const T* p) { return *p; }
template <class T> static inline T __ldcs(const T* p) { return *p; }
template <class T> static inline T __ldcg(const T* p) { return *p; }
template <class T> static inline void __stcs(T* p, T v) { *p = v; }
template <class T> static inline void __stcg(T* p, T v) { *p = v; }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline long long clock64() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000ll + t.tv_nsec;
}

// ---------------------------------------------------------------- __half (IEEE binary16 storage)
static inline float gpuconv_half_bits_to_float(unsigned short h) {
  unsigned sign = (unsigned)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do { man <<= 1; ++e; } while (!(man & 0x400u));
    bits = sign | ((unsigned)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  return __uint_as_float(bits);
}
static inline unsigned short gpuconv_float_to_half_bits(float f) {  // round to nearest even
  unsigned x = __float_as_uint(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return (unsigned short)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u | ((a >> 13) & 0x3ffu) : 0u));
  if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {  // normal half
    unsigned r = a - 0x38000000u;  // rebias exponent 127 -> 15
    unsigned h = r >> 13, rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return (unsigned short)(sign | h);
  }
  if (a < 0x33000000u) return (unsigned short)sign;  // < 2^-25 -> 0 (2^-25 exactly ties to even 0)
  // subnormal half: value = man * 2^-24
  unsigned e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
  unsigned shift = 126 - e;  // a = m * 2^(e-150); want m * 2^(e-150+24) = m >> (126-e)
  unsigned h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return (unsigned short)(sign | h);
}
struct __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(gpuconv_float_to_half_bits(f)) {}
  __half(double f) : __x(gpuconv_float_to_half_bits((float)f)) {}
  __half(int i) : __x(gpuconv_float_to_half_bits((float)i)) {}
  operator float() const { return gpuconv_half_bits_to_float(__x); }
  __half& operator+=(__half o) { return *this = __half(float(*this) + float(o)); }
  __half& operator-=(__half o) { return *this = __half(float(*this) - float(o)); }
  __half& operator*=(__half o) { return *this = __half(float(*this) * float(o)); }
  __half& operator/=(__half o) { return *this = __half(float(*this) / float(o)); }
};
typedef __half half;
struct __half2 { __half x, y; };
static inline __half operator+(__half a, __half b) { return __half(float(a) + float(b)); }
static inline __half operator-(__half a, __half b) { return __half(float(a) - float(b)); }
static inline __half operator*(__half a, __half b) { return __half(float(a) * float(b)); }
static inline __half operator/(__half a, __half b) { return __half(float(a) / float(b)); }
static inline __half operator-(__half a) { __half r; r.__x = a.__x ^ 0x8000u; return r; }
static inline bool operator<(__half a, __half b) { return float(a) < float(b); }
static inline bool operator>(__half a, __half b) { return float(a) > float(b); }
static inline bool operator<=(__half a, __half b) { return float(a) <= float(b); }
static inline bool operator>=(__half a, __half b) { return float(a) >= float(b); }
static inline bool operator==(__half a, __half b) { return float(a) == float(b); }
static inline bool operator!=(__half a, __half b) { return float(a) != float(b); }
static inline float __half2float(__half h) { return gpuconv_half_bits_to_float(h.__x); }
static inline __half __float2half(float f) { __half h; h.__x = gpuconv_float_to_half_bits(f); return h; }
static inline __half __float2half_rn(float f) { return __float2half(f); }
static inline __half __double2half(double d) { return __float2half((float)d); }
static inline __half __ushort_as_half(unsigned short v) { __half h; h.__x = v; return h; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline short __half_as_short(__half h) { return (short)h.__x; }
static inline __half __short_as_half(short v) { __half h; h.__x = (unsigned short)v; return h; }
static inline __half __hadd(__half a, __half b) { return a + b; }
static inline __half __hsub(__half a, __half b) { return a - b; }
static inline __half __hmul(__half a, __half b) { return a * b; }
static inline __half __hdiv(__half a, __half b) { return a / b; }
static inline __half __hneg(__half a) { return -a; }
static inline __half __habs(__half a) { __half r; r.__x = a.__x & 0x7fffu; return r; }
static inline __half __hfma(__half a, __half b, __half c) { return __float2half(fmaf(float(a), float(b), float(c))); }
static inline __half __hmax(__half a, __half b) { return float(a) > float(b) ? a : b; }
static inline __half __hmin(__half a, __half b) { return float(a) < float(b) ? a : b; }

// ---------------------------------------------------------------- __nv_bfloat16 (bfloat16 storage)
// The upper 16 bits of an IEEE binary32, as cuda_bf16.h's __nv_bfloat16 stores it: widening is
// a shift; narrowing rounds to nearest even like cvt.rn.bf16.f32 (finite values past the
// largest bfloat16 round to inf); a NaN stays a quiet NaN of the same sign, its payload's top
// bits kept (no canonical NaN). cuda/common.cuh has the same formula for the GPU.
static inline float gpuconv_bf16_bits_to_float(unsigned short b) { return __uint_as_float((unsigned)b << 16); }
static inline unsigned short gpuconv_float_to_bf16_bits(float f) {
  unsigned x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
  return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  explicit __nv_bfloat16(float f) : __x(gpuconv_float_to_bf16_bits(f)) {}
  explicit operator float() const { return gpuconv_bf16_bits_to_float(__x); }
};
static inline float __bfloat162float(__nv_bfloat16 b) { return gpuconv_bf16_bits_to_float(b.__x); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { __nv_bfloat16 b; b.__x = gpuconv_float_to_bf16_bits(f); return b; }
static inline bool __hlt(__half a, __half b) { return a < b; }
static inline bool __hgt(__half a, __half b) { return a > b; }
static inline bool __hle(__half a, __half b) { return a <= b; }
static inline bool __hge(__half a, __half b) { return a >= b; }
static inline bool __heq(__half a, __half b) { return a == b; }
static inline bool __hisnan(__half a) { return (a.__x & 0x7fffu) > 0x7c00u; }
static inline bool __hisinf(__half a) { return (a.__x & 0x7fffu) == 0x7c00u; }
static inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
static inline __half2 __float2half2_rn(float f) { return __half2{__float2half(f), __float2half(f)}; }
static inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half(a), __float2half(b)}; }
static inline float __low2float(__half2 v) { return __half2float(v.x); }
static inline float __high2float(__half2 v) { return __half2float(v.y); }
static inline __half __low2half(__half2 v) { return v.x; }
static inline __half __high2half(__half2 v) { return v.y; }
static inline float2 __half22float2(__half2 v) { return float2{__half2float(v.x), __half2float(v.y)}; }
static inline __half2 __hadd2(__half2 a, __half2 b) { return __half2{a.x + b.x, a.y + b.y}; }
static inline __half2 __hmul2(__half2 a, __half2 b) { return __half2{a.x * b.x, a.y * b.y}; }

// ---------------------------------------------------------------- atomics (relaxed; fibers on one worker never interleave inside one)
#define GPUCONV_ATOMIC_INT(T)                                                                              \
  static inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }            \
  static inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }            \
  static inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }          \
  static inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }            \
  static inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }              \
  static inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }            \
  static inline T atomicCAS(T* p, T cmp, T v) {                                                          \
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);                  \
    return cmp;                                                                                          \
  }                                                                                                      \
  static inline T atomicMin(T* p, T v) {                                                                 \
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                                        \
    while (v < old && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
      ;                                                                                                  \
    return old;                                                                                          \
  }                                                                                                      \
  static inline T atomicMax(T* p, T v) {                                                                 \
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                                        \
    while (v > old && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
      ;                                                                                                  \
    return old;                                                                                          \
  }
GPUCONV_ATOMIC_INT(int)
GPUCONV_ATOMIC_INT(unsigned int)
GPUCONV_ATOMIC_INT(unsigned long long)
GPUCONV_ATOMIC_INT(long long)
#undef GPUCONV_ATOMIC_INT
// Floating-point atomics: compare-and-swap on the bit pattern.
template <class F, class I, class Op>
static inline F gpuconv_atomic_fp(F* p, Op op) {
  I* ip = reinterpret_cast<I*>(p);
  I old = __atomic_load_n(ip, __ATOMIC_RELAXED), nw;
  F oldf, newf;
  do {
    memcpy(&oldf, &old, sizeof(F));
    newf = op(oldf);
    memcpy(&nw, &newf, sizeof(F));
  } while (!__atomic_compare_exchange_n(ip, &old, nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return oldf;
}
static inline float atomicAdd(float* p, float v) { return gpuconv_atomic_fp<float, unsigned>(p, [v](float o) { return o + v; }); }
static inline double atomicAdd(double* p, double v) { return gpuconv_atomic_fp<double, unsigned long long>(p, [v](double o) { return o + v; }); }
static inline float atomicExch(float* p, float v) { return gpuconv_atomic_fp<float, unsigned>(p, [v](float) { return v; }); }
static inline unsigned atomicInc(unsigned* p, unsigned lim) {
  return gpuconv_atomic_fp<unsigned, unsigned>(p, [lim](unsigned o) { return o >= lim ? 0u : o + 1u; });
}
static inline unsigned atomicDec(unsigned* p, unsigned lim) {
  return gpuconv_atomic_fp<unsigned, unsigned>(p, [lim](unsigned o) { return (o == 0 || o > lim) ? lim : o - 1u; });
}
#define atomicAdd_block atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin

// ---------------------------------------------------------------- the runtime (scheduler, fibers, faults)
namespace gpuconv_rt {

enum FiberState : int { RUN, WAIT_BAR, WAIT_WARP, DONE };
enum WarpOp : int { OP_SHFL, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_ANY, OP_ALL, OP_SYNCWARP, OP_ACTIVE };
static const char* const warp_op_names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                            "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp",
                                            "__activemask"};

struct Fiber {
  void* sp;  // saved stack pointer (x86-64 switch)
#ifdef GPUCONV_CPU_UCONTEXT
  ucontext_t uc;
#endif
  char* stack_lo;  // lowest usable byte; the guard area lies below
  size_t stack_size;
  uint3 tid;
  int state;
  // barrier
  int bar_line;
  const char* bar_file;
  int bar_pred;
  // warp rendezvous
  int op;
  unsigned mask;
  unsigned long long val;
  int arg, width;
  unsigned long long result;
  void* asan_fake_stack;
};

struct Launch;
struct Worker {  // per OS thread (thread_local)
  Fiber* fibers;
  int nfibers, cap;
  size_t stack_size;
  int cur;  // fiber running now (valid while in_block)
  int live;
  void* sched_sp;
#ifdef GPUCONV_CPU_UCONTEXT
  ucontext_t sched_uc;
#endif
  sigjmp_buf on_fault;
  bool in_block;
  bool abort_block;
  Launch* launch;
  int bar_count, bar_and, bar_or;  // results of the last __syncthreads_count/_and/_or
  void* altstack;
#ifdef GPUCONV_ASAN
  const void* sched_stack_bottom;
  size_t sched_stack_size;
#endif
};
inline thread_local Worker worker;  // zero-initialised: no TLS init function on access

struct Launch {
  void (*body)(void*);
  void* ctx;
  dim3 grid, block;
  unsigned long long nblocks;
  size_t smem;
  bool reverse_fibers;  // GPUCONV_CPU_FIBER_ORDER=reverse: resume fibers from the last thread down
  bool greedy_fibers;   // GPUCONV_CPU_FIBER_ORDER=greedy: always resume the first runnable fiber
  unsigned long long next;  // atomic block counter
  int failed;               // atomic: first error recorded
};

// ---- first error of the current launch (the launch itself is serialised by a mutex)
inline char error_msg[1024];
inline int error_set = 0;
static inline void record_error(const char* msg) {
  int expected = 0;
  if (__atomic_compare_exchange_n(&error_set, &expected, 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    snprintf(error_msg, sizeof error_msg, "%s", msg);
  }
  if (worker.launch) __atomic_store_n(&worker.launch->failed, 1, __ATOMIC_SEQ_CST);
}
static inline int where(char* buf, size_t n, const Fiber* f) {
  return snprintf(buf, n, "block (%u,%u,%u) thread (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z, f->tid.x,
                  f->tid.y, f->tid.z);
}

// ---- context switch
#ifndef GPUCONV_CPU_UCONTEXT
extern "C" void gpuconv_ctx_switch(void** save_sp, void* new_sp) __attribute__((visibility("hidden")));
extern "C" void gpuconv_fiber_trampoline() __attribute__((visibility("hidden")));
// Saves callee-saved registers, mxcsr and the x87 control word on the old stack, swaps rsp, restores.
__asm__(
    ".text\n.p2align 4\n.hidden gpuconv_ctx_switch\n.globl gpuconv_ctx_switch\n"
    ".type gpuconv_ctx_switch,@function\ngpuconv_ctx_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movl (%rsp), %eax\n  movzwl 4(%rsp), %edx\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    // ldmxcsr/fldcw serialise the pipeline: load them only when the new context's values differ.
    "  cmpl (%rsp), %eax\n  jne 1f\n  cmpw 4(%rsp), %dx\n  jne 1f\n"
    "2:  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n"
    "1:  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  jmp 2b\n"
    ".size gpuconv_ctx_switch,.-gpuconv_ctx_switch\n"
    // A new fiber 'returns' here with its Fiber* in rbx and a 16-byte aligned rsp.
    ".p2align 4\n.hidden gpuconv_fiber_trampoline\n.globl gpuconv_fiber_trampoline\n"
    ".type gpuconv_fiber_trampoline,@function\ngpuconv_fiber_trampoline:\n"
    "  movq %rbx, %rdi\n  call gpuconv_fiber_main\n  ud2\n"
    ".size gpuconv_fiber_trampoline,.-gpuconv_fiber_trampoline\n");
#endif
extern "C" __attribute__((visibility("hidden"), used, noreturn)) void gpuconv_fiber_main(Fiber* f);

// Fiber -> scheduler.
static inline void yield_to_scheduler(Fiber* f) {
  Worker& w = worker;
#ifdef GPUCONV_ASAN
  __sanitizer_start_switch_fiber(f->state == DONE ? nullptr : &f->asan_fake_stack, w.sched_stack_bottom,
                                 w.sched_stack_size);
#endif
#ifdef GPUCONV_CPU_UCONTEXT
  swapcontext(&f->uc, &w.sched_uc);
#else
  gpuconv_ctx_switch(&f->sp, w.sched_sp);
#endif
#ifdef GPUCONV_ASAN
  __sanitizer_finish_switch_fiber(f->asan_fake_stack, nullptr, nullptr);
#endif
}
// Scheduler -> fiber.
static inline void resume(Fiber* f) {
  Worker& w = worker;
  threadIdx = f->tid;
#ifdef GPUCONV_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f->stack_lo, f->stack_size);
#endif
#ifdef GPUCONV_CPU_UCONTEXT
  swapcontext(&w.sched_uc, &f->uc);
#else
  gpuconv_ctx_switch(&w.sched_sp, f->sp);
#endif
#ifdef GPUCONV_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// Fault inside a fiber: record, then leave the block for good.
[[noreturn]] static inline void fiber_fail(Fiber* f, const char* what) {
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s in ", what);
  where(buf + n, sizeof buf - n, f);
  record_error(buf);
  worker.abort_block = true;
  f->state = DONE;
  yield_to_scheduler(f);
  __builtin_unreachable();
}

#ifdef GPUCONV_CPU_UCONTEXT
static void ucontext_entry(unsigned hi, unsigned lo) {
  gpuconv_fiber_main((Fiber*)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}
#endif

// ---- stacks: mmap'd once per worker, guard area below each stack.
static inline size_t guard_bytes() { return 64 * 1024; }
static inline size_t wanted_stack_size() {
  const char* e = getenv("GPUCONV_CPU_STACK_KB");
  size_t kb = e ? strtoul(e, nullptr, 10) : 0;
#ifdef GPUCONV_ASAN
  if (!kb) kb = 256;
#else
  if (!kb) kb = 64;
#endif
  return ((kb * 1024 + 4095) / 4096) * 4096 + 16384;  // + room for the cache colouring offset
}
static inline bool ensure_fibers(int n) {
  Worker& w = worker;
  size_t ss = wanted_stack_size();
  if (ss != w.stack_size) {  // stack size changed: drop the cache
    for (int i = 0; i < w.cap; ++i) munmap(w.fibers[i].stack_lo - guard_bytes(), w.stack_size + guard_bytes());
    free(w.fibers);
    w.fibers = nullptr;
    w.cap = 0;
    w.stack_size = ss;
  }
  if (n <= w.cap) return true;
  Fiber* nf = (Fiber*)realloc(w.fibers, sizeof(Fiber) * n);
  if (!nf) return false;
  w.fibers = nf;
  for (int i = w.cap; i < n; ++i) {
    size_t total = ss + guard_bytes();
    char* p = (char*)mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    mprotect(p, guard_bytes(), PROT_NONE);
    memset(&nf[i], 0, sizeof(Fiber));
    nf[i].stack_lo = p + guard_bytes();
    nf[i].stack_size = ss;
    w.cap = i + 1;
  }
  return true;
}

// ---- SIGSEGV: stack overflow into a guard area -> error + longjmp back to the scheduler.
inline struct sigaction previous_segv;
static void segv_handler(int sig, siginfo_t* info, void* uctx) {
  Worker& w = worker;
  char* addr = (char*)info->si_addr;
  if (w.in_block && w.cur >= 0) {
    Fiber* f = &w.fibers[w.cur];
    if (addr >= f->stack_lo - guard_bytes() && addr < f->stack_lo) {
      char buf[1024];
      int n = snprintf(buf, sizeof buf, "fiber stack overflow (stack %zu KiB; raise GPUCONV_CPU_STACK_KB) in ",
                       (f->stack_size - 16384) / 1024);
      where(buf + n, sizeof buf - n, f);
      record_error(buf);
      static const char hdr[] = "gpuconv cpu runtime: ";
      ssize_t r = write(2, hdr, sizeof hdr - 1);
      r = write(2, buf, strlen(buf));
      r = write(2, "\n", 1);
      (void)r;
      siglongjmp(w.on_fault, 1);
    }
  }
  // Not ours: hand it to whoever was installed before (e.g. Python's faulthandler) or die.
  if (previous_segv.sa_flags & SA_SIGINFO) {
    if (previous_segv.sa_sigaction) { previous_segv.sa_sigaction(sig, info, uctx); return; }
  } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN) {
    previous_segv.sa_handler(sig);
    return;
  }
  signal(sig, SIG_DFL);  // returning re-executes the faulting instruction and dies
}
static inline void install_segv_handler() {
  static bool done = false;  // under the launch mutex
  if (done) return;
  done = true;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &previous_segv);
}

// ---- dynamic shared memory: defined by the generated second translation unit (weak: may be absent).
extern "C" __attribute__((weak)) void gpuconv_dyn_smem_prepare(size_t nbytes);
// ---- sanitizer-mode static shared memory: exact-size heap blocks per site and block.
struct SanShared { const void* site; void* p; };
inline thread_local SanShared* san_shared_tab = nullptr;
inline thread_local int san_shared_n = 0, san_shared_cap = 0;
template <class A>
static inline A* san_shared(const void* site) {
  for (int i = 0; i < san_shared_n; ++i)
    if (san_shared_tab[i].site == site) return (A*)san_shared_tab[i].p;
  if (san_shared_n == san_shared_cap) {
    san_shared_cap = san_shared_cap ? 2 * san_shared_cap : 16;
    san_shared_tab = (SanShared*)realloc(san_shared_tab, sizeof(SanShared) * san_shared_cap);
  }
  void* p = malloc(sizeof(A));
  memset(p, 0xff, sizeof(A));
  san_shared_tab[san_shared_n++] = SanShared{site, p};
  return (A*)p;
}
static inline void san_shared_reset() {
  for (int i = 0; i < san_shared_n; ++i) free(san_shared_tab[i].p);
  san_shared_n = 0;
}

// __activemask() is a rendezvous of the warp's live lanes; lanes that exit or block elsewhere drop out
// (they are not converged with the caller), and the result is the set of lanes that met.
static inline void finish_active(Worker& w, int base, unsigned arrived) {
  for (int l = 0; l < 32; ++l) {
    if (!(arrived >> l & 1u)) continue;
    Fiber* o = &w.fibers[base + l];
    o->result = arrived;
    o->state = RUN;
  }
}
static inline unsigned active_waiters(Worker& w, int base) {
  unsigned r = 0;
  for (int l = 0; l < 32 && base + l < w.nfibers; ++l)
    if (w.fibers[base + l].state == WAIT_WARP && w.fibers[base + l].op == OP_ACTIVE) r |= 1u << l;
  return r;
}

extern "C" __attribute__((visibility("hidden"), used, noreturn)) inline void gpuconv_fiber_main(Fiber* f) {
  Worker& w = worker;
#ifdef GPUCONV_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &w.sched_stack_bottom, &w.sched_stack_size);
#endif
  w.launch->body(w.launch->ctx);
  // Thread exit: a lane still waiting in a warp intrinsic whose mask names this thread can never finish.
  f->state = DONE;
  --w.live;
  int me = (int)(f - w.fibers), base = me & ~31;
  unsigned act = active_waiters(w, base);
  if (act) {  // an exited lane leaves pending __activemask rendezvous
    unsigned bit = 1u << (me - base), need = 0;
    for (int l = 0; l < 32; ++l)
      if (act >> l & 1u) { w.fibers[base + l].mask &= ~bit; need = w.fibers[base + l].mask; }
    if ((need & ~act) == 0) finish_active(w, base, act);
  }
  for (int i = base; i < base + 32 && i < w.nfibers; ++i) {
    Fiber* o = &w.fibers[i];
    if (o->state == WAIT_WARP && o->op != OP_ACTIVE && (o->mask >> (me - base) & 1u)) {
      char buf[1024], a[200];
      where(a, sizeof a, f);
      int n = snprintf(buf, sizeof buf, "warp mask 0x%08x of %s names lane %d which exited (%s) in ", o->mask,
                       warp_op_names[o->op], me - base, a);
      where(buf + n, sizeof buf - n, o);
      record_error(buf);
      w.abort_block = true;
      break;
    }
  }
  yield_to_scheduler(f);
  __builtin_unreachable();
}

static inline void init_fiber(Fiber* f) {
  f->state = RUN;
#ifdef GPUCONV_CPU_UCONTEXT
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack_lo;
  f->uc.uc_stack.ss_size = f->stack_size;
  f->uc.uc_link = nullptr;
  uintptr_t p = (uintptr_t)f;
  makecontext(&f->uc, (void (*)())ucontext_entry, 2, (unsigned)(p >> 32), (unsigned)(p & 0xffffffffu));
#else
  // Stagger the stack tops: stacks 64 KiB apart would all map onto the same cache sets.
  size_t color = ((size_t)(f - worker.fibers) * 7 % 128) * 128;
  uint64_t* top = (uint64_t*)(f->stack_lo + f->stack_size - color);  // 16-byte aligned
  uint64_t* sp = top - 8;
  unsigned csr[2];
  __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  sp[0] = (uint64_t)csr[0] | ((uint64_t)(csr[1] & 0xffff) << 32);
  for (int i = 1; i <= 6; ++i) sp[i] = 0;  // r15 r14 r13 r12 rbx rbp
  sp[5] = (uint64_t)f;                       // rbx -> first argument of gpuconv_fiber_main
  sp[7] = (uint64_t)(void*)gpuconv_fiber_trampoline;
  f->sp = sp;
#endif
}

// Every live fiber is blocked: open the barrier, or report divergence / deadlock.
static inline bool resolve_block(Worker& w) {
  bool progress = false;  // __activemask waiters whose other lanes are blocked elsewhere: they meet now
  for (int base = 0; base < w.nfibers; base += 32) {
    unsigned a = active_waiters(w, base);
    if (a) { finish_active(w, base, a); progress = true; }
  }
  if (progress) return true;
  Fiber *bar = nullptr, *warp = nullptr;
  for (int i = 0; i < w.nfibers; ++i) {
    Fiber* f = &w.fibers[i];
    if (f->state == WAIT_BAR && !bar) bar = f;
    if (f->state == WAIT_WARP && !warp) warp = f;
  }
  char buf[1024], a[200];
  if (warp) {
    int n;
    if (bar) {
      where(a, sizeof a, bar);
      n = snprintf(buf, sizeof buf, "deadlock: %s waits in __syncthreads (line %d) while %s (mask 0x%08x) waits in ",
                   a, bar->bar_line, warp_op_names[warp->op], warp->mask);
    } else {
      n = snprintf(buf, sizeof buf, "deadlock: %s (mask 0x%08x) can never complete; waiting: ",
                   warp_op_names[warp->op], warp->mask);
    }
    where(buf + n, sizeof buf - n, warp);
    record_error(buf);
    return false;
  }
  int count = 0, all = 1, any = 0;
  for (int i = 0; i < w.nfibers; ++i) {
    Fiber* f = &w.fibers[i];
    if (f->state != WAIT_BAR) continue;
    if (f->bar_line != bar->bar_line || (f->bar_file != bar->bar_file && strcmp(f->bar_file, bar->bar_file))) {
      where(a, sizeof a, bar);
      int n = snprintf(buf, sizeof buf,
                       "divergent barrier: %s waits in __syncthreads at %s:%d, but ", a, bar->bar_file,
                       bar->bar_line);
      n += where(buf + n, sizeof buf - n, f);
      snprintf(buf + n, sizeof buf - n, " waits at %s:%d", f->bar_file, f->bar_line);
      record_error(buf);
      return false;
    }
    count += f->bar_pred != 0;
    all &= f->bar_pred != 0;
    any |= f->bar_pred != 0;
  }
  w.bar_count = count;
  w.bar_and = all;
  w.bar_or = any;
  for (int i = 0; i < w.nfibers; ++i)
    if (w.fibers[i].state == WAIT_BAR) w.fibers[i].state = RUN;
  return true;
}

static inline void run_block(Launch* L, unsigned long long b) {
  Worker& w = worker;
  blockIdx.x = (unsigned)(b % L->grid.x);
  blockIdx.y = (unsigned)((b / L->grid.x) % L->grid.y);
  blockIdx.z = (unsigned)(b / ((unsigned long long)L->grid.x * L->grid.y));
  if (gpuconv_dyn_smem_prepare) gpuconv_dyn_smem_prepare(L->smem);
  san_shared_reset();
  int n = w.nfibers;
  for (int i = 0; i < n; ++i) {
    Fiber* f = &w.fibers[i];
    f->tid.x = i % L->block.x;
    f->tid.y = (i / L->block.x) % L->block.y;
    f->tid.z = i / (L->block.x * L->block.y);
    init_fiber(f);
  }
  w.live = n;
  w.abort_block = false;
  w.cur = -1;
  w.in_block = true;
  if (sigsetjmp(w.on_fault, 1)) {  // came back from the SIGSEGV handler: the block is lost
    w.in_block = false;
    w.cur = -1;
    return;
  }
  for (;;) {
    bool ran = true;
    while (ran) {
      ran = false;
      for (int k = 0; k < n; ++k) {
        // Another order of running the threads between barriers must not change any result
        // of a correct kernel: tests run both orders to show a kernel does not depend on it.
        const int i = L->reverse_fibers ? n - 1 - k : k;
        if (w.fibers[i].state != RUN) continue;
        w.cur = i;
        resume(&w.fibers[i]);
        ran = true;
        if (w.abort_block || __atomic_load_n(&L->failed, __ATOMIC_RELAXED)) goto out;
        if (L->greedy_fibers) break;  // rescan from thread 0: the lowest runnable thread goes on
      }
    }
    if (w.live == 0 || !resolve_block(w)) break;
  }
out:
  w.in_block = false;
  w.cur = -1;
}

static inline void worker_loop(Launch* L) {
  Worker& w = worker;
  w.launch = L;
  int n = (int)(L->block.x * L->block.y * L->block.z);
  if (!ensure_fibers(n)) {
    record_error("out of memory allocating fiber stacks");
    return;
  }
  w.nfibers = n;
  blockDim = L->block;
  gridDim = L->grid;
  // Alternate signal stack so the SIGSEGV handler can run after a stack overflow.
  if (!w.altstack) w.altstack = malloc(64 * 1024);
  stack_t ss, old;
  ss.ss_sp = w.altstack;
  ss.ss_size = 64 * 1024;
  ss.ss_flags = 0;
  sigaltstack(&ss, &old);
  while (!__atomic_load_n(&L->failed, __ATOMIC_RELAXED)) {
    unsigned long long b = __atomic_fetch_add(&L->next, 1ull, __ATOMIC_RELAXED);
    if (b >= L->nblocks) break;
    run_block(L, b);
  }
  san_shared_reset();
  if (!(old.ss_flags & SS_DISABLE)) sigaltstack(&old, nullptr);
  else { ss.ss_flags = SS_DISABLE; sigaltstack(&ss, nullptr); }
  w.launch = nullptr;
}

// ---- worker pool: helper threads live for the process (never joined, never destroyed).
struct Pool {
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
  int nthreads = 0, want = 0, finished = 0;
  unsigned long long generation = 0;
  Launch* launch = nullptr;
};
inline Pool* pool = nullptr;
struct PoolArg { int index; };
static void* pool_thread(void* arg) {
  int index = ((PoolArg*)arg)->index;
  free(arg);
  unsigned long long seen = 0;
  pthread_mutex_lock(&pool->m);
  for (;;) {
    while (pool->generation == seen) pthread_cond_wait(&pool->go, &pool->m);
    seen = pool->generation;
    if (index < pool->want) {
      Launch* L = pool->launch;
      pthread_mutex_unlock(&pool->m);
      worker_loop(L);
      pthread_mutex_lock(&pool->m);
      if (++pool->finished == pool->want) pthread_cond_signal(&pool->done);
    }
  }
  return nullptr;
}

inline pthread_mutex_t launch_mutex = PTHREAD_MUTEX_INITIALIZER;

#ifdef GPUCONV_ASAN
struct SanArg { int index; char* start; size_t size; };
inline SanArg san_args[64];
inline int san_nargs = 0;
static void asan_death_callback() {
  Worker& w = worker;
  char buf[1400];
  int n = 0;
  if (w.in_block && w.cur >= 0) {
    n = snprintf(buf, sizeof buf, "gpuconv cpu runtime: the error above happened in CUDA ");
    n += where(buf + n, sizeof buf - n, &w.fibers[w.cur]);
    n += snprintf(buf + n, sizeof buf - n, "\n");
  }
  char* addr = (char*)__asan_get_report_address();
  int best = -1;  // the argument array nearest to the bad address
  size_t best_d = 1 << 16;
  for (int i = 0; i < san_nargs; ++i) {
    SanArg& s = san_args[i];
    size_t d = addr < s.start ? (size_t)(s.start - addr) : addr < s.start + s.size ? 0 : (size_t)(addr - s.start - s.size + 1);
    if (d < best_d) { best_d = d; best = i; }
  }
  if (best >= 0) {
    SanArg& s = san_args[best];
    n += snprintf(buf + n, sizeof buf - n,
                  "gpuconv cpu runtime: address %p is %s kernel argument %d (array of %zu bytes at %p)\n",
                  (void*)addr, best_d == 0 ? "inside" : "outside the bounds of", s.index, s.size, (void*)s.start);
  }
  ssize_t r = write(2, buf, n);
  (void)r;
}
#endif
// Sizes of pointer arguments in bytes (set by Python just before a sanitizer-mode launch).
inline thread_local const unsigned long long* next_arg_sizes = nullptr;

// ---- argument type signature (checked by cpu_rt.py before every launch)
template <class T> struct TypeCode {
  static void put(char* s) {
    typedef typename std::remove_cv<T>::type U;
    if (std::is_same<U, __half>::value) strcat(s, "f2");
    else if (std::is_same<U, __nv_bfloat16>::value) strcat(s, "bf16");
    else if (std::is_same<U, bool>::value) strcat(s, "b1");
    else if (std::is_floating_point<U>::value) sprintf(s + strlen(s), "f%zu", sizeof(U));
    else if (std::is_integral<U>::value) sprintf(s + strlen(s), "%c%zu", std::is_signed<U>::value ? 'i' : 'u', sizeof(U));
    else if (std::is_void<U>::value) strcat(s, "v");
    else sprintf(s + strlen(s), "s%zu", sizeof(U));
  }
};
template <class T> struct TypeCode<T*> {
  static void put(char* s) {
    strcat(s, std::is_const<T>::value ? "P" : "p");
    TypeCode<typename std::remove_cv<T>::type>::put(s);
  }
};
template <class... A> static const char* signature(void (*)(A...)) {
  static char sig[1024];
  if (!sig[0]) {
    char tmp[1024] = "";
    int k = 0;
    ((strcat(tmp, k++ ? "," : ""), TypeCode<typename std::decay<A>::type>::put(tmp)), ...);
    strcpy(sig, tmp[0] ? tmp : "-");
  }
  return strcmp(sig, "-") ? sig : "";
}

template <class... A> struct Call {
  void (*f)(A...);
  std::tuple<typename std::decay<A>::type...> args;
  static void run(void* self) {
    Call* c = (Call*)self;
    std::apply(c->f, c->args);  // kernel parameters are copies per thread, as on the GPU
  }
};
template <class T> static inline T load_arg(void* p) {
  T v;
  memcpy((void*)&v, p, sizeof(T));
  return v;
}
template <class... A, size_t... I>
static inline Call<A...> make_call(void (*f)(A...), void** args, std::index_sequence<I...>) {
  return Call<A...>{f, std::tuple<typename std::decay<A>::type...>(load_arg<typename std::decay<A>::type>(args[I])...)};
}

static inline int check_config(const unsigned g[3], const unsigned b[3], size_t smem) {
  char buf[512];
  buf[0] = 0;
  unsigned long long nt = (unsigned long long)b[0] * b[1] * b[2];
  if (!g[0] || !g[1] || !g[2] || !b[0] || !b[1] || !b[2])
    snprintf(buf, sizeof buf, "invalid launch configuration: zero-size grid (%u,%u,%u) or block (%u,%u,%u)", g[0],
             g[1], g[2], b[0], b[1], b[2]);
  else if (b[0] > 1024 || b[1] > 1024 || b[2] > 64)
    snprintf(buf, sizeof buf, "invalid launch configuration: block (%u,%u,%u) exceeds the limits (1024,1024,64)",
             b[0], b[1], b[2]);
  else if (nt > 1024)
    snprintf(buf, sizeof buf, "invalid launch configuration: block (%u,%u,%u) has %llu threads > 1024", b[0], b[1],
             b[2], nt);
  else if (g[0] > 2147483647u || g[1] > 65535 || g[2] > 65535)
    snprintf(buf, sizeof buf, "invalid launch configuration: grid (%u,%u,%u) exceeds the limits (2^31-1,65535,65535)",
             g[0], g[1], g[2]);
  else if (smem > 227 * 1024)
    snprintf(buf, sizeof buf, "invalid launch configuration: %zu bytes of dynamic shared memory > 227 KiB (232448)",
             smem);
  if (!buf[0]) return 0;
  record_error(buf);
  return 1;
}

template <class... A>
static int launch(void (*f)(A...), const unsigned g[3], const unsigned b[3], size_t smem, void** args) {
  pthread_mutex_lock(&launch_mutex);
  error_set = 0;
  error_msg[0] = 0;
  if (check_config(g, b, smem)) {
    pthread_mutex_unlock(&launch_mutex);
    return 1;
  }
  install_segv_handler();
  const unsigned long long* sizes = next_arg_sizes;
  next_arg_sizes = nullptr;
  constexpr size_t N = sizeof...(A);
  void* argv[N + 1];
  void* ptrs[N + 1];
  void* copies[N + 1];
  for (size_t i = 0; i < N; ++i) { argv[i] = args[i]; copies[i] = nullptr; }
#ifdef GPUCONV_ASAN
  // Copy each array into an exact-size malloc'd block so ASan's redzones sit right at its bounds.
  san_nargs = 0;
  if (sizes) {
    for (size_t i = 0; i < N; ++i) {
      if (!sizes[i]) continue;
      void* src;
      memcpy(&src, args[i], sizeof(void*));
      copies[i] = malloc(sizes[i]);
      memcpy(copies[i], src, sizes[i]);
      ptrs[i] = copies[i];
      argv[i] = &ptrs[i];
      if (san_nargs < 64) san_args[san_nargs++] = SanArg{(int)i, (char*)copies[i], (size_t)sizes[i]};
    }
  }
  static bool cb = false;
  if (!cb) { cb = true; __sanitizer_set_death_callback(asan_death_callback); }
#else
  (void)sizes; (void)ptrs;
#endif
  Call<A...> call = make_call(f, argv, std::index_sequence_for<A...>{});
  Launch L;
  L.body = &Call<A...>::run;
  L.ctx = &call;
  L.grid = dim3(g[0], g[1], g[2]);
  L.block = dim3(b[0], b[1], b[2]);
  L.nblocks = (unsigned long long)g[0] * g[1] * g[2];
  L.smem = smem;
  L.next = 0;
  L.failed = 0;
  const char* order = getenv("GPUCONV_CPU_FIBER_ORDER");
  L.reverse_fibers = order && strcmp(order, "reverse") == 0;
  L.greedy_fibers = order && strcmp(order, "greedy") == 0;
  const char* e = getenv("GPUCONV_CPU_WORKERS");
  long nw = e ? strtol(e, nullptr, 10) : 0;
  if (nw <= 0) nw = sysconf(_SC_NPROCESSORS_ONLN);
  if (nw <= 0) nw = 1;
  if ((unsigned long long)nw > L.nblocks) nw = (long)L.nblocks;
  int helpers = (int)nw - 1;
  if (helpers > 0) {
    if (!pool) pool = new Pool();
    pthread_mutex_lock(&pool->m);
    while (pool->nthreads < helpers) {
      PoolArg* a = (PoolArg*)malloc(sizeof(PoolArg));
      a->index = pool->nthreads;
      pthread_t t;
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      if (pthread_create(&t, &attr, pool_thread, a) != 0) { free(a); pthread_attr_destroy(&attr); break; }
      pthread_attr_destroy(&attr);
      ++pool->nthreads;
    }
    if (helpers > pool->nthreads) helpers = pool->nthreads;
    pool->want = helpers;
    pool->finished = 0;
    pool->launch = &L;
    ++pool->generation;
    pthread_cond_broadcast(&pool->go);
    pthread_mutex_unlock(&pool->m);
  }
  worker_loop(&L);
  if (helpers > 0) {
    pthread_mutex_lock(&pool->m);
    while (pool->finished < pool->want) pthread_cond_wait(&pool->done, &pool->m);
    pool->want = 0;
    pthread_mutex_unlock(&pool->m);
  }
  for (size_t i = 0; i < N; ++i) {
    if (!copies[i]) continue;
    void* dst;
    memcpy(&dst, args[i], sizeof(void*));
    memcpy(dst, copies[i], sizes[i]);
    free(copies[i]);
  }
#ifdef GPUCONV_ASAN
  san_nargs = 0;
#endif
  int rc = error_set ? 1 : 0;
  pthread_mutex_unlock(&launch_mutex);
  return rc;
}

// ---- blocking primitives called from kernel code
GPUCONV_BLOCKING static void barrier(const char* file, int line, int pred) {
  Worker& w = worker;
  Fiber* f = &w.fibers[w.cur];
  f->state = WAIT_BAR;
  f->bar_file = file;
  f->bar_line = line;
  f->bar_pred = pred;
  yield_to_scheduler(f);
}

static inline unsigned lane_id(int i) { return (unsigned)i & 31u; }
// Rendezvous of the lanes in `mask`; the last one to arrive computes everybody's result.
GPUCONV_BLOCKING static unsigned long long warp_op(int op, unsigned mask, unsigned long long val, int arg, int width) {
  Worker& w = worker;
  int me = w.cur, base = me & ~31;
  Fiber* f = &w.fibers[me];
  unsigned exists = (w.nfibers - base >= 32) ? 0xffffffffu : ((1u << (w.nfibers - base)) - 1u);
  unsigned m = mask & exists;  // lanes past the end of the block are ignored
  char buf[512];
  if (!(m >> (me - base) & 1u)) {
    snprintf(buf, sizeof buf, "%s called with mask 0x%08x that does not include the calling lane %d",
             warp_op_names[op], mask, me - base);
    fiber_fail(f, buf);
  }
  f->op = op; f->mask = m; f->val = val; f->arg = arg; f->width = width;
  unsigned arrived = 0;
  for (int l = 0; l < 32; ++l) {
    if (!(m >> l & 1u)) continue;
    Fiber* o = &w.fibers[base + l];
    if (o->state == DONE) {
      snprintf(buf, sizeof buf, "warp mask 0x%08x of %s names lane %d which exited", mask, warp_op_names[op], l);
      fiber_fail(f, buf);
    }
    if (o == f || o->state == WAIT_WARP) arrived |= 1u << l;
  }
  if (arrived != m) {
    f->state = WAIT_WARP;
    yield_to_scheduler(f);
    return f->result;
  }
  for (int l = 0; l < 32; ++l) {  // every lane has arrived: check they agree, then compute
    if (!(m >> l & 1u)) continue;
    Fiber* o = &w.fibers[base + l];
    if (o->op != op || o->mask != m) {
      snprintf(buf, sizeof buf, "warp divergence: lane %d is in %s (mask 0x%08x) while lane %d is in %s (mask 0x%08x)",
               me - base, warp_op_names[op], mask, l, warp_op_names[o->op], o->mask);
      fiber_fail(f, buf);
    }
  }
  unsigned ballot = 0;
  for (int l = 0; l < 32; ++l)
    if ((m >> l & 1u) && w.fibers[base + l].val) ballot |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    if (!(m >> l & 1u)) continue;
    Fiber* o = &w.fibers[base + l];
    unsigned long long r = 0;
    if (op <= OP_SHFL_XOR) {
      // PTX shfl.sync semantics with c = ((32-width)<<8) | (0x1f or 0 for up)
      int wd = o->width, seg = (32 - wd) & 31, b = o->arg;
      int minl = l & seg, maxl = (l & seg) | (31 & ~seg), j = l;
      bool ok;
      switch (op) {
        case OP_SHFL: j = minl | (b & 31 & ~seg); ok = j <= maxl; break;
        case OP_SHFL_UP: j = l - b; ok = j >= minl; break;
        case OP_SHFL_DOWN: j = l + b; ok = j <= maxl; break;
        default: j = l ^ (b & 31); ok = j <= maxl; break;
      }
      if (!ok || !(m >> j & 1u)) j = l;  // out of the segment (or an inactive source): own value
      r = w.fibers[base + j].val;
    } else if (op == OP_BALLOT) r = ballot;
    else if (op == OP_ANY) r = ballot != 0;
    else if (op == OP_ALL) r = ballot == m;
    else if (op == OP_ACTIVE) r = m;
    o->result = r;
    if (o != f) o->state = RUN;
  }
  f->state = RUN;
  return f->result;
}
static inline unsigned active_mask() {
  Worker& w = worker;
  int base = w.cur & ~31;
  unsigned live = 0;
  for (int l = 0; l < 32 && base + l < w.nfibers; ++l)
    if (w.fibers[base + l].state != DONE) live |= 1u << l;
  return (unsigned)warp_op(OP_ACTIVE, live, 0, 0, 32);
}
[[noreturn]] GPUCONV_BLOCKING static void trap() {
  Worker& w = worker;
  fiber_fail(&w.fibers[w.cur], "__trap() called");
}

template <class T> static inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8, "warp shuffle of a type wider than 8 bytes");
  unsigned long long b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T> static inline T from_bits(unsigned long long b) {
  T v;
  memcpy((void*)&v, &b, sizeof(T));
  return v;
}
}  // namespace gpuconv_rt

// ---------------------------------------------------------------- CUDA API used by kernels
// Barriers are macros so the call site (file:line) identifies the barrier: threads waiting at different
// lines are a divergent barrier.
#define __syncthreads() gpuconv_rt::barrier(__FILE__, __LINE__, 1)
#define __syncthreads_count(p) (gpuconv_rt::barrier(__FILE__, __LINE__, (p) ? 1 : 0), gpuconv_rt::worker.bar_count)
#define __syncthreads_and(p) (gpuconv_rt::barrier(__FILE__, __LINE__, (p) ? 1 : 0), gpuconv_rt::worker.bar_and)
#define __syncthreads_or(p) (gpuconv_rt::barrier(__FILE__, __LINE__, (p) ? 1 : 0), gpuconv_rt::worker.bar_or)
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return gpuconv_rt::from_bits<T>(gpuconv_rt::warp_op(gpuconv_rt::OP_SHFL, mask, gpuconv_rt::to_bits(v), src, width));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
  return gpuconv_rt::from_bits<T>(gpuconv_rt::warp_op(gpuconv_rt::OP_SHFL_UP, mask, gpuconv_rt::to_bits(v), (int)d, width));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
  return gpuconv_rt::from_bits<T>(gpuconv_rt::warp_op(gpuconv_rt::OP_SHFL_DOWN, mask, gpuconv_rt::to_bits(v), (int)d, width));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
  return gpuconv_rt::from_bits<T>(gpuconv_rt::warp_op(gpuconv_rt::OP_SHFL_XOR, mask, gpuconv_rt::to_bits(v), lm, width));
}
static inline unsigned __ballot_sync(unsigned mask, int p) {
  return (unsigned)gpuconv_rt::warp_op(gpuconv_rt::OP_BALLOT, mask, p != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int p) { return (int)gpuconv_rt::warp_op(gpuconv_rt::OP_ANY, mask, p != 0, 0, 32); }
static inline int __all_sync(unsigned mask, int p) { return (int)gpuconv_rt::warp_op(gpuconv_rt::OP_ALL, mask, p != 0, 0, 32); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { gpuconv_rt::warp_op(gpuconv_rt::OP_SYNCWARP, mask, 0, 0, 32); }
static inline unsigned __activemask() { return gpuconv_rt::active_mask(); }
static inline unsigned __lanemask_lt() { return (1u << (gpuconv_rt::worker.cur & 31)) - 1u; }
[[noreturn]] static inline void __trap() { gpuconv_rt::trap(); }

// Sanitizer mode: cpu_rt.py rewrites `__shared__ T name[dims];` into this (exact-size heap block per block).
#define GPUCONV_SAN_SHARED(T, name, dims)                                 \
  static char gpuconv_site_##name;                                        \
  typedef T gpuconv_arr_##name dims;                                      \
  gpuconv_arr_##name& name = *gpuconv_rt::san_shared<gpuconv_arr_##name>(&gpuconv_site_##name)

// ---------------------------------------------------------------- C entry points used by cpu_rt.py
GPUCONV_API const char* gpuconv_last_error() { return gpuconv_rt::error_msg; }
GPUCONV_API void gpuconv_set_arg_sizes(const unsigned long long* sizes) { gpuconv_rt::next_arg_sizes = sizes; }
#define GPUCONV_EXPORT_KERNEL(id, ...)                                                                   \
  GPUCONV_API int gpuconv_k##id(const unsigned grid[3], const unsigned block[3], size_t smem, void** args) { \
    return gpuconv_rt::launch(__VA_ARGS__, grid, block, smem, args);                                     \
  }                                                                                                      \
  GPUCONV_API const char* gpuconv_k##id##_sig() { return gpuconv_rt::signature(__VA_ARGS__); }
