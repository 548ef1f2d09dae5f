// Warp intrinsics: every shuffle kind with a width argument, ballot/any/all, a shuffle reduction.
#define FULL 0xffffffffu

// out[4*t + k] = result of shuffle kind k for thread t (value = 100*t + 7)
extern "C" __global__ void shuffles(int* out, int src, int delta, int width) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  int v = 100 * t + 7;
  out[4 * t + 0] = __shfl_sync(FULL, v, src, width);
  out[4 * t + 1] = __shfl_up_sync(FULL, v, delta, width);
  out[4 * t + 2] = __shfl_down_sync(FULL, v, delta, width);
  out[4 * t + 3] = __shfl_xor_sync(FULL, v, delta, width);
}

// Sum of x over each block with shuffles (float and double paths) and a shared array of warp sums.
extern "C" __global__ void reduce_sum(const float* x, float* out, int n) {
  __shared__ float warp_sums[32];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? x[i] : 0.f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL, v, o);
  int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
  if (lane == 0) warp_sums[wid] = v;
  __syncthreads();  // all warp sums written before warp 0 reads them
  if (wid == 0) {
    double d = lane < (int)(blockDim.x / 32) ? warp_sums[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(FULL, d, o);  // 8-byte shuffle
    if (lane == 0) out[blockIdx.x] = (float)d;
  }
}

// Per thread: ballot, any, all of pred = (x[t] > 0), syncwarp, activemask; sub-warp masks too.
extern "C" __global__ void votes(const int* x, unsigned* out) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  int p = x[t] > 0;
  unsigned b = __ballot_sync(FULL, p);
  int an = __any_sync(FULL, p), al = __all_sync(FULL, p);
  __syncwarp();
  unsigned half = (threadIdx.x % 32) < 16 ? 0x0000ffffu : 0xffff0000u;
  unsigned hb = __ballot_sync(half, p);  // two disjoint half-warp groups
  out[5 * t + 0] = b;
  out[5 * t + 1] = an;
  out[5 * t + 2] = al;
  out[5 * t + 3] = hb;
  out[5 * t + 4] = __activemask();
}

// __syncthreads_count/_and/_or
extern "C" __global__ void bar_votes(const int* x, int* out) {
  int p = x[blockIdx.x * blockDim.x + threadIdx.x] > 0;
  int c = __syncthreads_count(p);
  int a = __syncthreads_and(p);
  int o = __syncthreads_or(p);
  if (threadIdx.x == 0) {
    out[3 * blockIdx.x + 0] = c;
    out[3 * blockIdx.x + 1] = a;
    out[3 * blockIdx.x + 2] = o;
  }
}

// __activemask in divergent code: the lanes that are converged at the call.
extern "C" __global__ void active_divergent(unsigned* out) {
  unsigned lane = threadIdx.x % 32, m = 0;
  if (lane < 10) m = __activemask();  // lanes 10..31 are waiting in the barrier below
  __syncthreads();
  if (lane >= 20) m = __activemask();  // lanes 0..19 have gone on (and exited)
  out[threadIdx.x] = m;
}
