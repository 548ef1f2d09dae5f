// Dynamic shared memory, templates via name_expressions, __half conversions, math helpers.

// Reverse each block's slice through dynamic shared memory; `fresh` records a read before any write.
extern "C" __global__ void reverse_dyn(const float* x, float* y, unsigned* fresh) {
  extern __shared__ float buf[];
  int t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
  if (t == 0) fresh[blockIdx.x] = __float_as_uint(buf[n - 1]);  // 0xff fill -> 0xffffffff
  __syncthreads();  // the read above happens before anyone writes
  buf[t] = x[base + t];
  __syncthreads();  // the whole slice is in shared memory before reading it reversed
  y[base + t] = buf[n - 1 - t];
  __syncthreads();  // next block's fill check is per block anyway; keep writes ordered
}

template <typename T, int SCALE>
__global__ void scale(const T* x, T* y, T add, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] * (T)SCALE + add;
}

// half <-> float, grid-stride loops
extern "C" __global__ void half_to_float(const unsigned short* h, float* f, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    f[i] = __half2float(__ushort_as_half(h[i]));
}
extern "C" __global__ void float_to_half(const float* f, unsigned short* h, unsigned short* h_rn, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    h[i] = __half_as_ushort(__float2half(f[i]));
    h_rn[i] = __half_as_ushort(__float2half_rn(f[i]));
  }
}
extern "C" __global__ void half_math(const __half* a, const __half* b, __half* out, __half s) {
  int i = threadIdx.x;
  out[4 * i + 0] = a[i] + b[i];
  out[4 * i + 1] = a[i] * b[i];
  out[4 * i + 2] = __hmax(a[i], b[i]);
  out[4 * i + 3] = __float2half(__half2float(a[i]) * __half2float(s));
}

// Math intrinsics and vector types, one result per slot.
extern "C" __global__ void math_ops(const float* x, float* out, int* iout) {
  float a = x[0], b = x[1];
  out[0] = fmaf(a, b, 1.0f);
  out[1] = __fmaf_rn(a, b, 2.0f);
  out[2] = fminf(a, b);
  out[3] = fmaxf(a, b);
  out[4] = rsqrtf(4.0f);
  out[5] = expf(0.0f) + sqrtf(9.0f) + floorf(-1.5f);
  out[6] = __int_as_float(0x7f800000);
  out[7] = __ldg(x + 1);
  out[8] = min(a, b);
  out[9] = max(2.0, 3.0f);
  iout[0] = isnan(__int_as_float(0x7fc00000)) ? 1 : 0;
  iout[1] = __float_as_int(1.0f);
  iout[2] = min(3, 7) + max(-1, -5);
  iout[3] = (int)max(5u, 2u);
  float4 v = make_float4(1.f, 2.f, 3.f, 4.f);
  float2 w = make_float2(5.f, 6.f);
  int2 q = make_int2(7, 8);
  dim3 d(2, 3);
  iout[4] = (int)(v.x + v.y + v.z + v.w + w.x + w.y) + q.x + q.y + (int)(d.x * d.y * d.z) + warpSize;
  iout[5] = (int)(alignof(float4) + alignof(float2));
}

// Threads and blocks see their own coordinates (3-D grid and block).
extern "C" __global__ void coords(int* out) {
  int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  int nt = blockDim.x * blockDim.y * blockDim.z;
  int* o = out + 6 * (b * nt + t);
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
}

// Argument signatures of every kind.
struct Pair { int a; float b; };
extern "C" __global__ void sig_kinds(const float* a, double* b, int c, unsigned d, long long e,
                                     unsigned long long f, float g, double h, __half i, Pair j, void* k) {}
