// Tiled shared-memory SGEMM C = A(MxK) B(KxN): two barriers per tile; -DNO_BARRIER1/2 removes one.
#define TILE 16
extern "C" __global__ void matmul_tiled(const float* A, const float* B, float* C, int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.f;
    Bs[ty][tx] = (col < N && k0 + ty < K) ? B[(k0 + ty) * N + col] : 0.f;
#ifndef NO_BARRIER1
    __syncthreads();
#endif
    for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
#ifndef NO_BARRIER2
    __syncthreads();
#endif
  }
  if (row < M && col < N) C[row * N + col] = acc;
}
