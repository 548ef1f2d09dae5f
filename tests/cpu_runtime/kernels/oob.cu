// Out-of-bounds accesses for the sanitizer-mode tests.
extern "C" __global__ void oob_global_write(const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i < n ? i : 0];  // no bounds guard on the write: the last block writes past y
}
extern "C" __global__ void oob_shared_read(const float* x, float* y) {
  __shared__ float tile[32];
  int t = threadIdx.x;
  tile[t] = x[t];
  __syncthreads();
  y[t] = tile[t + 1];  // thread 31 reads tile[32]
}
extern "C" __global__ void oob_dyn_shared_read(const float* x, float* y) {
  extern __shared__ float dbuf[];
  int t = threadIdx.x;
  dbuf[t] = x[t];
  __syncthreads();
  y[t] = dbuf[t + 1];  // thread 31 reads past the shared_mem bytes of the launch
}
extern "C" __global__ void in_bounds(const float* x, float* y, int n) {
  __shared__ float tile[32];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < n ? x[i] : 0.f;
  __syncthreads();
  if (i < n) y[i] = 2.f * tile[threadIdx.x];
}
