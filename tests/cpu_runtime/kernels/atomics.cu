// Atomics from many blocks, every type the runtime supports.
extern "C" __global__ void atomics(int* i, unsigned* u, unsigned long long* ull, float* f, double* d,
                                   int* imin, int* imax, unsigned* umin, unsigned* umax,
                                   unsigned long long* ullmax, int* exch_count, int* cas_counter) {
  int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(i, 1);
  atomicSub(i + 1, 2);
  atomicAdd(u, 3u);
  atomicSub(u + 1, 1u);
  atomicAdd(ull, 1ull << 33);
  atomicAdd(f, 0.5f);
  atomicAdd(d, 0.25);
  atomicMin(imin, -t);
  atomicMax(imax, t);
  atomicMin(umin, (unsigned)t + 5u);
  atomicMax(umax, (unsigned)t);
  atomicMax(ullmax, (unsigned long long)t << 40);
  // atomicExch: the values handed around are all distinct thread ids, each seen exactly once
  int old = atomicExch(exch_count, t);
  atomicAdd(exch_count + 1 + old, 1);
  float fo = atomicExch(f + 1, (float)t);
  (void)fo;
  // atomicCAS loop implementing an increment (int, unsigned, unsigned long long)
  int cur = *cas_counter, prev;
  while ((prev = atomicCAS(cas_counter, cur, cur + 1)) != cur) cur = prev;
  unsigned* uc = (unsigned*)(cas_counter + 1);
  unsigned ucur = *uc, uprev;
  while ((uprev = atomicCAS(uc, ucur, ucur + 2u)) != ucur) ucur = uprev;
  unsigned long long* lc = ull + 1;
  unsigned long long lcur = *lc, lprev;
  while ((lprev = atomicCAS(lc, lcur, lcur + 3ull)) != lcur) lcur = lprev;
}
