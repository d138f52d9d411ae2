// The machine's roofline for the block-size-1 kernels: read bandwidth at
// working sets from L1 to DRAM, and the peak rate of fused multiply-adds,
// on one thread and on all (OpenMP). Built and run by roofline_probe.py:
//
//   gcc -O3 -march=native -fopenmp roofline_probe.c -o probe && ./probe
//
// Prints one JSON object. Reads use GCC vector extensions of the target's
// widest vector (64 bytes with AVX-512, 32 with AVX2), eight independent
// accumulators so that the loop is bound by loads, not by the add chain;
// each working set is read repeatedly until about 2 GB have been read, and
// the best of five passes is kept. The FMA probe runs 16 independent
// chains of a*x+b per thread (enough to cover the FMA latency on current
// x86 cores) and reports multiply-adds x 2 per second.
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
typedef float vec __attribute__((vector_size(VBYTES)));
#define LANES (VBYTES / 4)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

// Sum of one thread's share, read `reps` times; returned so that the
// compiler keeps the loads.
static float read_share(const vec* a, size_t nvec, long reps) {
  vec s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0},
      s7 = {0};
  for (long r = 0; r < reps; ++r) {
    for (size_t i = 0; i + 8 <= nvec; i += 8) {
      s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3];
      s4 += a[i + 4]; s5 += a[i + 5]; s6 += a[i + 6]; s7 += a[i + 7];
    }
    __asm__ volatile("" : : "r"(a) : "memory");
  }
  vec s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
  float out = 0;
  for (int l = 0; l < LANES; ++l) out += s[l];
  return out;
}

// GB/s reading `bytes` in all (split over `threads`, each its own share).
static double read_bandwidth(size_t bytes, int threads, float* sink) {
  size_t per = bytes / threads / (8 * VBYTES) * (8 * VBYTES);
  long reps = (long)(2e9 / (per * threads)) + 1;
  double best = 0;
  vec** shares = calloc(threads, sizeof(vec*));
  for (int t = 0; t < threads; ++t) {
    shares[t] = aligned_alloc(4096, per);
    memset(shares[t], 0, per);
    float* f = (float*)shares[t];
    for (size_t i = 0; i < per / 4; ++i) f[i] = (float)(i % 7);
  }
  for (int pass = 0; pass < 5; ++pass) {
    double t0 = 0, t1 = 0;
    float acc = 0;
#pragma omp parallel num_threads(threads) reduction(+ : acc)
    {
      int id = omp_get_thread_num();
      read_share(shares[id], per / VBYTES, 1);  // warm the share
#pragma omp barrier
#pragma omp single
      t0 = now();
      acc += read_share(shares[id], per / VBYTES, reps);
#pragma omp barrier
#pragma omp single
      t1 = now();
    }
    *sink += acc;
    double gbs = (double)per * threads * reps / (t1 - t0) / 1e9;
    if (gbs > best) best = gbs;
  }
  for (int t = 0; t < threads; ++t) free(shares[t]);
  free(shares);
  return best;
}

static double fma_gflops(int threads, float* sink) {
  const long iters = 20000000;
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    double t0 = now();
    float acc = 0;
#pragma omp parallel num_threads(threads) reduction(+ : acc)
    {
      vec x = {0}, b = {0};
      for (int l = 0; l < LANES; ++l) { x[l] = 0.999999f; b[l] = 1e-7f; }
      vec c[16];
      for (int k = 0; k < 16; ++k) c[k] = x * (float)(k + 1);
      for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) c[k] = c[k] * x + b;
      }
      vec s = {0};
      for (int k = 0; k < 16; ++k) s += c[k];
      for (int l = 0; l < LANES; ++l) acc += s[l];
    }
    double t = now() - t0;
    *sink += acc;
    double g = 2.0 * LANES * 16 * iters * threads / t / 1e9;
    if (g > best) best = g;
  }
  return best;
}

int main(void) {
  float sink = 0;
  int all = omp_get_num_procs();
  const size_t sizes[] = {16u << 10, 128u << 10, 512u << 10, 1u << 20,
                          4u << 20, 16u << 20, 64u << 20, 256u << 20};
  printf("{\"vector_bytes\": %d, \"threads_all\": %d, \"read_gbs\": [", VBYTES,
         all);
  int n = sizeof(sizes) / sizeof(sizes[0]);
  for (int i = 0; i < n; ++i) {
    double one = read_bandwidth(sizes[i], 1, &sink);
    double every = read_bandwidth(sizes[i], all, &sink);
    printf("%s{\"bytes\": %zu, \"one_thread\": %.2f, \"all_threads\": %.2f}",
           i ? ", " : "", sizes[i], one, every);
    fflush(stdout);
  }
  printf("], \"fma_gflops\": {\"one_thread\": %.2f, \"all_threads\": %.2f},",
         fma_gflops(1, &sink), fma_gflops(all, &sink));
  printf(" \"sink\": %g}\n", (double)sink);
  return 0;
}
