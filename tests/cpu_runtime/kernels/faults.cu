// Kernels that fault on purpose: each must become a KernelError naming the block and thread.
#define FULL 0xffffffffu

extern "C" __global__ void divergent_barrier(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

extern "C" __global__ void deadlock_bar_warp(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x != 31) {
    v = __shfl_sync(FULL, v, 0);  // waits for lane 31 ...
  } else {
    __syncthreads();              // ... which waits for the other 31 threads in the barrier
  }
  out[threadIdx.x] = v;
}

// Lanes 0 and 1 meet in different warp intrinsics (undefined on the GPU): reported as warp divergence.
extern "C" __global__ void warp_mismatch(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x == 0) v = __shfl_sync(0x3u, v, 1);
  else if (threadIdx.x == 1) v = (int)__ballot_sync(0x3u, 1);
  out[threadIdx.x] = v;
}

extern "C" __global__ void exited_lane(int* out) {
  if (threadIdx.x == 5 && blockIdx.x == 1) return;
  out[blockIdx.x * blockDim.x + threadIdx.x] = __shfl_down_sync(FULL, (int)threadIdx.x, 1);
}

extern "C" __global__ void noop(int* out) {}

__device__ int recurse(volatile char* p, int depth) {
  volatile char local[1024];
  local[0] = (char)depth;
  return depth > 0 ? recurse(local, depth - 1) + local[0] : p[0];
}
extern "C" __global__ void stack_overflow(int* out, int depth) {
  char start = 0;
  out[threadIdx.x] = recurse(&start, threadIdx.x == 3 ? depth : 1);
}

extern "C" __global__ void trap_kernel(int* out) {
  if (threadIdx.x == 7 && blockIdx.x == 2) __trap();
  out[threadIdx.x] = 1;
}
