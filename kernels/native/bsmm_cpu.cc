// Native CPU kernels for snn_jax's block-sparse matmul, registered with XLA's
// FFI (jax.ffi), and the module's Python entry point (which also hands out
// conv_cpu.cc's handlers). Python side: kernels/native_cpu.py. The runtime
// both files share (vectors, thread pool): cpu_runtime.h.
//
// W is a BlockCSR (snn_jax/sparse.py) of shape (n_in, n_out), block size bs:
// values[nnzb, bs, bs] in row-major block order, with the row view (row_ptr,
// col_idx) and the column view (col_ptr, col_order, row_idx) kept beside it.
//
//   forward  Y[B, n_out]  = X[B, n_in] @ W      gathers over the column view;
//   dX       dX[B, n_in]  = dY[B, n_out] @ W^T  gathers over the row view;
//   dW       dV[k]        = X[:, rows of k]^T @ dY[:, cols of k]  (SDDMM).
//
// All three work on feature-major float32 copies of the dense operands
// (XT[n][Bp], Bp = B rounded up to a multiple of kLanes), so the inner loops
// are vector FMAs across kLanes batch rows: `acc += XT[row] * w` with w one
// weight broadcast. Each output element is written by exactly one task, and
// its sum runs in one fixed order (stored blocks in index order, then the
// block's inner index), so results are bit-identical whatever the number of
// threads -- no atomics, no reductions across threads. bfloat16 operands are
// widened to float32 on load and the result rounded to nearest even once.
// Non-finite values propagate: no product is ever skipped.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include <unistd.h>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"
#include "cpu_runtime.h"

namespace ffi = xla::ffi;

namespace {

using namespace snn_native;  // the shared runtime: vf, ParallelFor, ...

// Gather at block size 1: one row of accumulators, kWide vectors of batch lanes.
constexpr int kWide = kVecRegs / 2;
// Gather at other block sizes: kGatherRows output rows x 4 vectors.
constexpr int kGatherRows = Clamp(kVecRegs / 8, 1, 4);
// SDDMM: partial sums per output entry (2 x 2 entries at a time).
constexpr int kSddmmParts = Clamp(kVecRegs / 8, 1, 4);
// Row-major kernels (block sizes that are multiples of kChunk): register
// tiles of kRowTile batch rows x kTileVectors vectors of columns
// (kTileCols). The weight vectors stay in registers beside the accumulators
// and one broadcast, so a step of kRowTile * kTileVectors FMAs loads
// kTileVectors + kRowTile operands (AVX2: 6 x 2, 12 FMAs per 8 loads). The
// earlier 3 x 4 tile needed 17 registers, so the compiler re-read every
// weight vector from memory once per row: 15 loads per 12 FMAs, and the
// forward ran load-bound (BUILD_NOTES.md).
constexpr int kChunk = 32;
constexpr int kTileVectors = 2, kTileCols = kTileVectors * kLanes;
constexpr int kRowTile = Clamp((kVecRegs - kTileVectors - 1) / kTileVectors, 1, 8);
static_assert(kChunk % kTileCols == 0, "row-major block sizes must split into tiles");
// dW row-major: kDwRows rows x 4 vectors of columns.
constexpr int kDwVectors = 4;
constexpr int kDwRows = Clamp((kVecRegs - kDwVectors - 1) / kDwVectors, 1, 4);

// Per-thread scratch, grown on demand and kept: a kernel call touches no
// fresh pages (first-touch page faults cost more than the work at low
// density). Slots 0 and 1: the two feature-major operands of one call on
// the calling thread, or a task's buffers on a pool thread; 2 and 4: the
// row-major operands of ReluLayers on the calling thread; 3: a task's
// accumulator row (ReluLayers' scatter, any thread); 5 and 6: the forward's
// column-ordered values and row indices (any thread: a task's own output
// rows, or every row on the calling thread; GatherBs1); 7: a sliced
// gather's copy of its slice (any thread).
float* ScratchSlot(int slot, int64_t n) {
  struct Buffer {
    float* data = nullptr;
    int64_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffers[8];
  Buffer& b = buffers[slot];
  if (b.size < n) {
    std::free(b.data);
    size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
    b.data = static_cast<float*>(std::aligned_alloc(64, bytes));
    b.size = n;
  }
  return b.data;
}

// ---------------------------------------------------------------------------
// Layout changes. a[rows][cols] (T) -> at[cols][bp] (float), zero-padded
// lanes rows..bp-1; and back. Both move tiles of kTR rows x kTC columns: on
// the row-major side kTR cache lines, one per row, each used whole; on the
// feature-major side kTC runs of kTR floats. (Tiles of 64 rows read 64
// lines a power-of-two stride apart, which share one L1 set and evicted
// each other.) A task walks the rows of kTC columns: four cache lines per
// row, which the hardware prefetcher fetches together, rather than one
// per 4 KB page (kTC 16): the block-size-1 forward at 4096 x 4096, batch
// 256, on batch-major operands took 0.89x the time (kTC 128 and 256 were
// no better than 16; BUILD_NOTES.md).
constexpr int64_t kTR = 8, kTC = 64;

// fn(c0, nc, r0, full) for every tile of nc <= kTC columns from c0 and kTR
// rows from r0 < row_end; full: a whole tile inside `rows`. Tasks own
// column tiles, so no two write the same output element.
template <typename Fn>
void ForTransposeTiles(int64_t rows, int64_t cols, int64_t row_end, Fn&& fn) {
  ParallelRanges((cols + kTC - 1) / kTC, TaskCount(), [&](int64_t t0, int64_t t1) {
    for (int64_t c0 = t0 * kTC; c0 < std::min(cols, t1 * kTC); c0 += kTC) {
      const int64_t nc = std::min(kTC, cols - c0);
      for (int64_t r0 = 0; r0 < row_end; r0 += kTR)
        fn(c0, nc, r0, nc == kTC && r0 + kTR <= rows);
    }
  });
}

// dst[j][i] = src[i][j] for an 8 x 8 tile of floats (row strides in floats):
// with AVX, eight loads, 24 shuffles and eight stores instead of 64 scalar
// moves.
inline void Transpose8x8(const float* src, int64_t src_stride, float* dst,
                         int64_t dst_stride) {
#if defined(__AVX__)
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride,
                     _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
#else
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
#endif
}

template <typename T>
void ToFeatureMajor(const T* a, int64_t rows, int64_t cols, int64_t bp, float* at) {
  ForTransposeTiles(rows, cols, bp, [&](int64_t c0, int64_t nc, int64_t r0, bool full) {
    if (full) {
      if constexpr (std::is_same_v<T, float> && kTR == 8 && kTC % 8 == 0) {
        for (int64_t c = 0; c < kTC; c += 8)
          Transpose8x8(a + r0 * cols + c0 + c, cols, at + (c0 + c) * bp + r0, bp);
        return;
      }
      float tile[kTC][kTR];
      for (int64_t r = 0; r < kTR; ++r)
        for (int64_t c = 0; c < kTC; ++c) tile[c][r] = to_f32<T>(a[(r0 + r) * cols + c0 + c]);
      for (int64_t c = 0; c < kTC; ++c)
        std::memcpy(at + (c0 + c) * bp + r0, tile[c], sizeof(tile[c]));
      return;
    }
    const int64_t nr = std::min(kTR, bp - r0);  // lanes past `rows` are zero
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t r = 0; r < nr; ++r)
        at[(c0 + c) * bp + r0 + r] =
            r0 + r < rows ? to_f32<T>(a[(r0 + r) * cols + c0 + c]) : 0.0f;
  });
}

template <typename T>
void FromFeatureMajor(const float* at, int64_t rows, int64_t cols, int64_t bp, T* a) {
  ForTransposeTiles(rows, cols, rows, [&](int64_t c0, int64_t nc, int64_t r0, bool full) {
    if (full) {
      if constexpr (std::is_same_v<T, float> && kTR == 8 && kTC % 8 == 0) {
        // Through an L1 tile, so each output row's kTC floats (a cache line)
        // are stored together: storing the two 8 x 8 halves straight into
        // rows n floats apart was slower at n = 4096.
        alignas(64) float rows_tile[kTR][kTC];
        for (int64_t c = 0; c < kTC; c += 8)
          Transpose8x8(at + (c0 + c) * bp + r0, bp, &rows_tile[0][c], kTC);
        for (int64_t r = 0; r < kTR; ++r)
          std::memcpy(a + (r0 + r) * cols + c0, rows_tile[r], sizeof(rows_tile[r]));
        return;
      }
      float tile[kTC][kTR];
      for (int64_t c = 0; c < kTC; ++c)
        std::memcpy(tile[c], at + (c0 + c) * bp + r0, sizeof(tile[c]));
      for (int64_t r = 0; r < kTR; ++r)
        for (int64_t c = 0; c < kTC; ++c) a[(r0 + r) * cols + c0 + c] = from_f32<T>(tile[c][r]);
      return;
    }
    for (int64_t r = r0; r < std::min(rows, r0 + kTR); ++r)
      for (int64_t c = 0; c < nc; ++c) a[r * cols + c0 + c] = from_f32<T>(at[(c0 + c) * bp + r]);
  });
}

// Operands XLA already hands over feature-major (the ops layer asks for
// layout {0,1} of a [B, n] array through ffi_call's operand layouts, so the
// transposes above disappear into the producers' fusions): memory a[n][B].
// Used in place when float32 with B a multiple of kLanes; otherwise widened
// into bp-lane rows of scratch, lanes past B zero.
template <typename T>
const float* FeatureMajorIn(const T* a, int64_t batch, int64_t n, int64_t bp, int slot) {
  if constexpr (std::is_same_v<T, float>)
    if (bp == batch) return a;
  float* at = ScratchSlot(slot, n * bp);
  ParallelRanges(n, TaskCount(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t b = 0; b < batch; ++b) at[r * bp + b] = to_f32<T>(a[r * batch + b]);
      for (int64_t b = batch; b < bp; ++b) at[r * bp + b] = 0.0f;
    }
  });
  return at;
}

// Where a feature-major result of n rows is computed: the output buffer
// itself when that needs no padding or rounding, else scratch that
// FeatureMajorOutDone copies over.
template <typename T>
float* FeatureMajorOut(T* a, int64_t batch, int64_t n, int64_t bp, int slot) {
  if constexpr (std::is_same_v<T, float>)
    if (bp == batch) return a;
  return ScratchSlot(slot, n * bp);
}

template <typename T>
void FeatureMajorOutDone(const float* at, int64_t batch, int64_t n, int64_t bp, T* a) {
  if (static_cast<const void*>(at) == static_cast<const void*>(a)) return;
  ParallelRanges(n, TaskCount(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t b = 0; b < batch; ++b) a[r * batch + b] = from_f32<T>(at[r * bp + b]);
  });
}

// Batch rows rounded up to whole vectors: the feature-major row length.
int64_t Lanes(int64_t b) { return (b + kLanes - 1) / kLanes * kLanes; }

// A dense [batch, n] operand as feature-major float32 (n rows of bp lanes):
// as XLA hands it over (feature_major: FeatureMajorIn) or transposed here
// into scratch `slot`.
template <typename T>
const float* FeatureMajorOperand(const T* a, int64_t batch, int64_t n, int64_t bp,
                                 bool feature_major, int slot) {
  if (feature_major) return FeatureMajorIn(a, batch, n, bp, slot);
  float* at = ScratchSlot(slot, n * bp);
  ToFeatureMajor(a, batch, n, bp, at);
  return at;
}

// compute(in_t, out_t) on feature-major operands, from a [batch, in_rows]
// input to a [batch, out_rows] result: both as XLA hands them over
// (feature_major) or transposed here, into and out of scratch.
template <typename T, typename Fn>
void OnFeatureMajor(const T* in, int64_t in_rows, T* out, int64_t out_rows, int64_t batch,
                    bool feature_major, Fn&& compute) {
  const int64_t bp = Lanes(batch);
  if (feature_major) {
    float* out_t = FeatureMajorOut(out, batch, out_rows, bp, 1);
    compute(FeatureMajorIn(in, batch, in_rows, bp, 0), out_t);
    FeatureMajorOutDone(out_t, batch, out_rows, bp, out);
    return;
  }
  float* in_t = ScratchSlot(0, in_rows * bp);
  float* out_t = ScratchSlot(1, out_rows * bp);
  ToFeatureMajor(in, batch, in_rows, bp, in_t);
  compute(in_t, out_t);
  FromFeatureMajor(out_t, batch, out_rows, bp, out);
}

// ---------------------------------------------------------------------------
// The gather kernel behind forward and dX:
//   out[o*bs + a][:] = sum_{p in ptr[o] .. ptr[o+1]} sum_b
//                        in[g(k)*bs + b][:] * V[k](a, b),   k = perm ? perm[p] : p
// with V[k](a, b) = values[k][b][a] (forward: W's block, b = input row) or
// values[k][a][b] (dX: W^T's block). `in` and `out` are feature-major with
// bp lanes. One task owns a range of output block rows and all lanes.
template <typename T, bool kTransposed, int kVectors, int kA = kGatherRows>
void GatherTile(const float* in, const T* values, const int32_t* ptr,
                const int32_t* perm, const int32_t* gidx, int64_t bs, int64_t bp,
                int64_t o, int64_t lane0, float* out) {
  // kA output rows per pass: kA x kVectors accumulators.
  const int64_t begin = ptr[o], end = ptr[o + 1];
  for (int64_t a0 = 0; a0 < bs; a0 += kA) {
    const int na = static_cast<int>(std::min<int64_t>(kA, bs - a0));
    vf acc[kA][kVectors];
    for (int i = 0; i < kA; ++i)
      for (int v = 0; v < kVectors; ++v) acc[i][v] = vf{};
    for (int64_t p = begin; p < end; ++p) {
      const int64_t k = perm ? perm[p] : p;
      const T* blk = values + k * bs * bs;
      const float* src = in + (static_cast<int64_t>(gidx[k]) * bs) * bp + lane0;
      for (int64_t b = 0; b < bs; ++b) {
        vf x[kVectors];
        for (int v = 0; v < kVectors; ++v) x[v] = load(src + b * bp + v * kLanes);
        for (int i = 0; i < na; ++i) {
          const int64_t a = a0 + i;
          const float w = to_f32<T>(kTransposed ? blk[a * bs + b] : blk[b * bs + a]);
          const vf ws = splat(w);
          for (int v = 0; v < kVectors; ++v) acc[i][v] += x[v] * ws;
        }
      }
    }
    for (int i = 0; i < na; ++i)
      for (int v = 0; v < kVectors; ++v)
        store(out + (o * bs + a0 + i) * bp + lane0 + v * kLanes, acc[i][v]);
  }
}

// Software prefetch of gathered rows at block size 1. The rows a gather
// reads are named by the index arrays, which the hardware prefetcher
// cannot follow; where the feature-major operand outgrows the caches (the
// giant MLP's 65,536 x 128 lanes: 32 MB) each row is a fresh trip to L3 or
// DRAM. The forward, dX and dW then ask for the rows of the stored entry
// kPrefetchRows ahead. Below kPrefetchMinBytes the rows are in cache and
// the extra instructions only cost (dW at 1000 x 1000: 1.1x the time), so
// smaller operands go without (BUILD_NOTES.md has the measurements).
#ifndef SNN_PREFETCH_ROWS
#define SNN_PREFETCH_ROWS 16
#endif
constexpr int kPrefetchRows = SNN_PREFETCH_ROWS;
constexpr int64_t kPrefetchMinBytes = int64_t{8} << 20;

inline bool PrefetchGathers(int64_t rows, int64_t bp) {
  return kPrefetchRows > 0 && rows * bp * static_cast<int64_t>(sizeof(float)) > kPrefetchMinBytes;
}

// Asks for the cache lines of n floats from `src` ahead of their use.
inline void PrefetchFloats(const float* src, int64_t n) {
  for (int64_t f = 0; f < n; f += 64 / static_cast<int64_t>(sizeof(float)))
    __builtin_prefetch(src + f);
}

// Block size 1: out[o][:] = sum_p in[g(k)][:] * values[k], with the lane
// count a template parameter (nv vectors, 1 .. kWide) and no block loops, so
// every lane count -- from the 8 or 24 rows a Graph Challenge layer carries
// once most of its inputs have died, to full groups of kWide vectors -- gets
// a fully unrolled loop of nv independent FMA chains (the generic tile
// below runs its block loops at run time; with this tile the Graph
// Challenge's bsmm scan went from 4.05x to 5.66x scipy, BUILD_NOTES.md).
// Same summation order as the generic tile, so the same bits.
template <typename T, int kNV>
void GatherBs1Tile(const float* in, int64_t in_stride, const T* values, const int32_t* ptr,
                   int64_t entry0, const int32_t* gidx, int64_t o, int64_t prefetch_end,
                   float* out) {
  vf acc[kNV];
  for (int v = 0; v < kNV; ++v) acc[v] = vf{};
  const int64_t begin = ptr[o], end = ptr[o + 1];
  for (int64_t p = begin; p < end; ++p) {
    const int64_t k = p - entry0;
    if (p + kPrefetchRows < prefetch_end)
      PrefetchFloats(in + static_cast<int64_t>(gidx[k + kPrefetchRows]) * in_stride,
                     kNV * kLanes);
    const float* src = in + static_cast<int64_t>(gidx[k]) * in_stride;
    const vf w = splat(to_f32<T>(values[k]));
    for (int v = 0; v < kNV; ++v) acc[v] += load(src + v * kLanes) * w;
  }
  for (int v = 0; v < kNV; ++v) store(out + v * kLanes, acc[v]);
}

// Dispatches a run-time vector count nv (1 .. kNV) to GatherBs1Tile<nv>:
// output row o's nv vectors from `in`'s rows (in_stride floats apart) to
// `out` (that row's first lane). Stored entry p's weight and row index are
// values[p - entry0] and gidx[p - entry0] (a task's copy of its entries
// starts at entry0), the rows prefetched while p + kPrefetchRows <
// prefetch_end.
template <typename T, int kNV>
void GatherBs1Lanes(const float* in, int64_t in_stride, const T* values, const int32_t* ptr,
                    int64_t entry0, const int32_t* gidx, int64_t o, int64_t nv,
                    int64_t prefetch_end, float* out) {
  if constexpr (kNV >= 1) {
    if (nv == kNV)
      GatherBs1Tile<T, kNV>(in, in_stride, values, ptr, entry0, gidx, o, prefetch_end, out);
    else
      GatherBs1Lanes<T, kNV - 1>(in, in_stride, values, ptr, entry0, gidx, o, nv,
                                 prefetch_end, out);
  }
}

// Block size 1 on an input larger than the L2 cache: lanes in slices of
// at most this many vectors (0: no slicing), each slice of in_rows x slice
// lanes at most half the L2, so that a core gathers from a slice in its
// own L2 instead of whole rows from L3 (GatherBs1Sliced): 4096 rows x 256
// lanes (4 MB) on a 2 MB-L2 host, forward 0.74x and dX 0.82x the
// time (BUILD_NOTES.md). A slice narrower than 2 vectors leaves too few FMA
// chains per output row (measured slower), so wider inputs stay unsliced.
int64_t LaneSliceVectors(int64_t in_rows, int64_t bp) {
  static const int64_t l2_bytes = [] {
    const long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return v > 0 ? static_cast<int64_t>(v) : int64_t{1} << 20;
  }();
  const int64_t row_bytes = in_rows * static_cast<int64_t>(sizeof(float));
  if (row_bytes * bp <= l2_bytes) return 0;
  // At most kWide vectors: the widest tile GatherBs1Lanes has.
  const int64_t slice = std::min<int64_t>(kWide, l2_bytes / 2 / (row_bytes * kLanes));
  return slice >= 2 && slice < bp / kLanes ? slice : 0;
}

// Whether a slice of `slice` vectors, read in place from rows bp floats
// apart, would fall into a fraction of the cache's sets: the rows' first
// lines are a multiple of gcd(row stride, 4096) lines apart in a set-indexed
// cache (4096 lines: more sets than any L2 has), and a slice narrower than
// that spacing leaves the sets between unused. At 4096 x 256 lanes the rows
// are 16 lines apart and a slice of 4 vectors used a quarter of the 2 MB
// L2: its 1 MB was evicted and the sliced forward ran 1.3x slower than
// unsliced, in a throw-away harness on the Intel host (BUILD_NOTES.md).
bool SliceAliases(int64_t bp, int64_t slice) {
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(float));
  const int64_t stride_lines = std::max<int64_t>(1, bp / kLine);
  const int64_t width_lines = std::max<int64_t>(1, slice * kLanes / kLine);
  return std::gcd(stride_lines, int64_t{4096}) > width_lines;
}

// The sliced walk. Where the slice would not alias (SliceAliases), slices
// are read in place, tasks over (slice, output row) in slice order, each
// slice with as many tasks as a whole row walk would have. Where it would,
// a task copies its slice -- in_rows rows of the slice's lanes -- into
// thread-local scratch, rows contiguous, and gathers the slice's lanes of
// its output rows from there, prefetching the stored entry kPrefetchRows
// ahead: forward and dX at 4096 x 4096, batch 256, 0.36-0.67x the time of
// the in-place walk (BUILD_NOTES.md). There the slice count is rounded up
// to a multiple of the thread count (slices of 2 vectors or more), so that
// no thread is left with one slice more than the others, and output rows
// split further where slices are fewer than TaskCount(), each task copying
// its slice (in_rows rows against its share of the stored entries).
template <typename T>
void GatherBs1Sliced(const float* in, int64_t in_rows, const T* values, const int32_t* ptr,
                     const int32_t* gidx, int64_t n_out, int64_t bp, int64_t slice,
                     float* out) {
  const int64_t vectors = bp / kLanes;
  if (!SliceAliases(bp, slice)) {
    const int64_t groups = (vectors + slice - 1) / slice;
    const int64_t prefetch_end = PrefetchGathers(in_rows, bp) ? ptr[n_out] : 0;
    ParallelRanges(n_out * groups, TaskCount() * groups, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / n_out, o = t % n_out, lane0 = g * slice * kLanes;
        GatherBs1Lanes<T, kWide>(in + lane0, bp, values, ptr, 0, gidx, o,
                                 std::min(slice, vectors - g * slice), prefetch_end,
                                 out + o * bp + lane0);
      }
    });
    return;
  }
  const int64_t threads = Threads();
  int64_t slices = (vectors + slice - 1) / slice;
  slices = (slices + threads - 1) / threads * threads;
  if (const int64_t even = (vectors + slices - 1) / slices; even >= 2) slice = even;
  slices = (vectors + slice - 1) / slice;
  const int64_t slice_lanes = slice * kLanes;
  const int64_t chunks = std::min<int64_t>(
      n_out, std::max<int64_t>(1, (TaskCount() + slices - 1) / slices));
  const int64_t rows_per_chunk = (n_out + chunks - 1) / chunks;
  ParallelFor(slices * chunks, [&](int64_t t) {
    const int64_t s = t / chunks, c = t % chunks;
    const int64_t l0 = s * slice_lanes, width = std::min(slice_lanes, bp - l0);
    const int64_t o0 = c * rows_per_chunk, o1 = std::min(n_out, o0 + rows_per_chunk);
    if (o0 >= o1) return;
    float* staged = ScratchSlot(7, in_rows * slice_lanes);
    for (int64_t r = 0; r < in_rows; ++r)
      std::memcpy(staged + r * width, in + r * bp + l0, width * sizeof(float));
    for (int64_t o = o0; o < o1; ++o)
      GatherBs1Lanes<T, kWide>(staged, width, values, ptr, 0, gidx, o, width / kLanes,
                               kPrefetchRows > 0 ? ptr[o1] : 0, out + o * bp + l0);
  });
}

// Block size 1: out[o][:] = sum over p in ptr[o] .. ptr[o+1] of
// in[gidx[k]][:] * values[k], k = perm ? perm[p] : p. Output rows
// outermost, all lane groups of a row together, so the gathered input rows
// are fetched whole once per output row (their later groups follow the
// first through the cache) and the row's indices and weights are read
// once: 1.1-1.5x faster than groups outermost at the shapes measured
// (BUILD_NOTES.md) -- unless the input outgrows the L2 cache
// (LaneSliceVectors, GatherBs1Sliced).
// Through a permutation (the forward's column view) each weight and row
// index would be two dependent random reads ahead of every gathered row;
// they are first copied into column order: by each task for its own output
// rows where the walk is unsliced (no pass and no call into the pool of its
// own: the forward kernel at 1000 x 1000, batch 128, in 0.93x the time of
// a separate pass, BUILD_NOTES.md), once for all slices where it is sliced
// (a task per slice would copy them once per slice).
// values_c[q] = values[perm[begin + q]], rows_c[q] = gidx[perm[begin + q]]
// for q < end - begin: stored entries begin .. end-1 of a permuted view.
template <typename T>
void CopyInViewOrder(const int32_t* perm, const T* values, const int32_t* gidx, int64_t begin,
                     int64_t end, T* values_c, int32_t* rows_c) {
  int64_t p = begin;
#if defined(__AVX512F__)
  // 16 entries per pair of hardware gathers (float32 weights only: the
  // copy is bitwise either way): the forward at 1000 x 1000, batch 128,
  // 4.5 % in 0.85-1.04x the time of the scalar copy (three interleaved
  // runs beside an unchanged copy of the old build, which read 0.96-1.09x;
  // benchmarks/cpu/ab_native_20261208_gather_copy_*.json), 0.98-1.00x at
  // 4096 x 4096, 1 %.
  if constexpr (sizeof(T) == sizeof(float)) {
    const float* vf32 = reinterpret_cast<const float*>(values);
    float* cf32 = reinterpret_cast<float*>(values_c);
    for (; p + 16 <= end; p += 16) {
      const __m512i k = _mm512_loadu_si512(perm + p);
      _mm512_storeu_ps(cf32 + (p - begin), _mm512_i32gather_ps(k, vf32, 4));
      _mm512_storeu_si512(rows_c + (p - begin), _mm512_i32gather_epi32(k, gidx, 4));
    }
  }
#endif
  for (; p < end; ++p) {
    const int32_t k = perm[p];
    values_c[p - begin] = values[k];
    rows_c[p - begin] = gidx[k];
  }
}

template <typename T>
void GatherBs1(const float* in, int64_t in_rows, const T* values, const int32_t* ptr,
               const int32_t* perm, const int32_t* gidx, int64_t n_out, int64_t bp,
               float* out) {
  static_assert(sizeof(T) <= sizeof(float) && sizeof(int32_t) == sizeof(float));
  if (const int64_t slice = LaneSliceVectors(in_rows, bp); slice > 0) {
    if (perm != nullptr) {
      const int64_t nnz = ptr[n_out];
      T* values_c = reinterpret_cast<T*>(ScratchSlot(5, nnz));
      int32_t* rows_c = reinterpret_cast<int32_t*>(ScratchSlot(6, nnz));
      ParallelRanges(nnz, TaskCount(), [&](int64_t p0, int64_t p1) {
        CopyInViewOrder(perm, values, gidx, p0, p1, values_c + p0, rows_c + p0);
      });
      values = values_c;
      gidx = rows_c;
    }
    GatherBs1Sliced<T>(in, in_rows, values, ptr, gidx, n_out, bp, slice, out);
    return;
  }
  const int64_t vectors = bp / kLanes, groups = (vectors + kWide - 1) / kWide;
  const int64_t prefetch_end = PrefetchGathers(in_rows, bp) ? ptr[n_out] : 0;
  ParallelRanges(n_out * groups, TaskCount(), [&](int64_t t0, int64_t t1) {
    const T* task_values = values;
    const int32_t* task_gidx = gidx;
    int64_t entry0 = 0, task_prefetch_end = prefetch_end;
    if (perm != nullptr) {
      const int64_t o_end = (t1 - 1) / groups + 1;
      entry0 = ptr[t0 / groups];
      const int64_t m = ptr[o_end] - entry0;
      T* v = reinterpret_cast<T*>(ScratchSlot(5, m));
      int32_t* g = reinterpret_cast<int32_t*>(ScratchSlot(6, m));
      CopyInViewOrder(perm, values, gidx, entry0, entry0 + m, v, g);
      task_values = v;
      task_gidx = g;
      task_prefetch_end = std::min<int64_t>(prefetch_end, ptr[o_end]);
    }
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t % groups, o = t / groups, lane0 = g * kWide * kLanes;
      GatherBs1Lanes<T, kWide>(in + lane0, bp, task_values, ptr, entry0, task_gidx, o,
                               std::min<int64_t>(kWide, vectors - g * kWide),
                               task_prefetch_end, out + o * bp + lane0);
    }
  });
}

template <typename T, bool kTransposed>
void Gather(const float* in, int64_t in_rows, const T* values, const int32_t* ptr,
            const int32_t* perm, const int32_t* gidx, int64_t n_out_blocks, int64_t bs,
            int64_t bp, float* out) {
  // Block size 1: GatherBs1 (kWide vectors per load stream, AVX-512: 256
  // lanes, AVX2: 64, kWide independent chains). Otherwise lanes in groups
  // of 4 vectors x kGatherRows output rows, narrower tails taking the 3-,
  // 2- and 1-vector tiles, groups outermost.
  if (bs == 1) {
    GatherBs1<T>(in, in_rows, values, ptr, perm, gidx, n_out_blocks, bp, out);
    return;
  }
  const int64_t vectors = bp / kLanes, groups = (vectors + 3) / 4;
  ParallelRanges(n_out_blocks * groups, TaskCount(), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / n_out_blocks, o = t % n_out_blocks;
      const int64_t lane0 = g * 4 * kLanes;
      switch (std::min<int64_t>(4, (bp - lane0) / kLanes)) {
        case 4: GatherTile<T, kTransposed, 4>(in, values, ptr, perm, gidx, bs, bp, o, lane0, out); break;
        case 3: GatherTile<T, kTransposed, 3>(in, values, ptr, perm, gidx, bs, bp, o, lane0, out); break;
        case 2: GatherTile<T, kTransposed, 2>(in, values, ptr, perm, gidx, bs, bp, o, lane0, out); break;
        default: GatherTile<T, kTransposed, 1>(in, values, ptr, perm, gidx, bs, bp, o, lane0, out); break;
      }
    }
  });
}

// dV[k][i][j] = sum over batch lanes of XT[r*bs + i][:] * DYT[c*bs + j][:].
// kSddmmParts partial sums per entry over the lane vectors (fixed
// assignment v mod kP), combined in a fixed order.
template <typename T>
void Sddmm(const float* xt, const float* dyt, const int32_t* row_idx,
           const int32_t* col_idx, int64_t nnzb, int64_t bs, int64_t bp, T* dv) {
  const int64_t nvec = bp / kLanes;
  constexpr int kI = 2, kJ = 2, kP = kSddmmParts;
  ParallelRanges(nnzb, TaskCount(), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const float* xs = xt + static_cast<int64_t>(row_idx[k]) * bs * bp;
      const float* ds = dyt + static_cast<int64_t>(col_idx[k]) * bs * bp;
      T* out = dv + k * bs * bs;
      for (int64_t i0 = 0; i0 < bs; i0 += kI) {
        const int ni = static_cast<int>(std::min<int64_t>(kI, bs - i0));
        for (int64_t j0 = 0; j0 < bs; j0 += kJ) {
          const int nj = static_cast<int>(std::min<int64_t>(kJ, bs - j0));
          vf acc[kI][kJ][kP];
          for (int i = 0; i < kI; ++i)
            for (int j = 0; j < kJ; ++j)
              for (int q = 0; q < kP; ++q) acc[i][j][q] = vf{};
          for (int64_t v = 0; v < nvec; ++v) {
            const int q = static_cast<int>(v % kP);
            vf x[kI], d[kJ];
            for (int i = 0; i < ni; ++i) x[i] = load(xs + (i0 + i) * bp + v * kLanes);
            for (int j = 0; j < nj; ++j) d[j] = load(ds + (j0 + j) * bp + v * kLanes);
            for (int i = 0; i < ni; ++i)
              for (int j = 0; j < nj; ++j) acc[i][j][q] += x[i] * d[j];
          }
          for (int i = 0; i < ni; ++i)
            for (int j = 0; j < nj; ++j) {
              vf s = acc[i][j][0];  // a fixed tree over the parts
              if constexpr (kP == 2) s = acc[i][j][0] + acc[i][j][1];
              if constexpr (kP == 4)
                s = (acc[i][j][0] + acc[i][j][1]) + (acc[i][j][2] + acc[i][j][3]);
              out[(i0 + i) * bs + j0 + j] = from_f32<T>(hsum(s));
            }
        }
      }
    }
  });
}

// dW at block size 1: dv[k] = sum over lanes of XT[r_k][:] * DYT[c_k][:].
// Stored weights go in groups of kDwGroup consecutive ones, each weight one
// FMA chain over all its lanes, the group's chains interleaved so that the
// FMA latency is hidden; where the group lies in one row (stored weights
// are in row order) one load of XT feeds all its chains. The group's sums
// are reduced together (Hsum8) and a group never spans two tasks, so the
// order depends on the structure only. Against the earlier form (lane
// slices sized for L2, one weight at a time, a horizontal sum per weight)
// 0.36-0.84x the time in a throw-away harness at 1000 x 1000 and 4096 x
// 4096 (BUILD_NOTES.md has the committed measurement).
constexpr int kDwGroup = 8;

// out[j] = the sum of s[j]'s lanes, j < kDwGroup, in hsum's tree (lane l
// plus lane l + kLanes/2 first, and so on down), so a weight's bits do not
// depend on whether it was summed in a group of eight or alone (the fused
// backward below groups a row's weights, SddmmBs1 all weights in storage
// order; a partial group's sums go through here padded). With AVX2 the
// eight trees run side by side: the halves of s[j] and s[j+4] added in one
// vector, then pairs and single lanes by shuffles (the earlier hadd form
// summed neighbouring lanes first: other bits than hsum).
inline void Hsum8(const vf* s, float* out) {
#if defined(__AVX__) && !defined(__AVX512F__)
  static_assert(kDwGroup == 8 && kLanes == 8);
  __m256 u[4];  // u[j] = [s[j] lanes l + l+4 | s[j+4] lanes l + l+4], l < 4
  for (int j = 0; j < 4; ++j)
    u[j] = _mm256_add_ps(_mm256_permute2f128_ps((__m256)s[j], (__m256)s[j + 4], 0x20),
                         _mm256_permute2f128_ps((__m256)s[j], (__m256)s[j + 4], 0x31));
  // f01 = [u0 (e0+e2), u0 (e1+e3), u1 (e0+e2), u1 (e1+e3)] per half; f23 alike.
  const __m256 f01 = _mm256_add_ps(_mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 f23 = _mm256_add_ps(_mm256_shuffle_ps(u[2], u[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(u[2], u[3], _MM_SHUFFLE(3, 2, 3, 2)));
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_shuffle_ps(f01, f23, _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm256_shuffle_ps(f01, f23, _MM_SHUFFLE(3, 1, 3, 1))));
#else
  for (int j = 0; j < kDwGroup; ++j) out[j] = hsum(s[j]);
#endif
}

// s[j] = XT[x_j][:] * DYT[cols[j]][:] lane by lane, summed over the lane
// vectors (j < kJ); x_j is `rows[j]`, or `rows[0]` for all when kSameRow.
template <int kJ, bool kSameRow>
inline void DotChains(const float* xt, const float* dyt, const int32_t* rows,
                      const int32_t* cols, int64_t nvec, int64_t bp, vf* s) {
  const float* x[kJ];
  const float* d[kJ];
  for (int j = 0; j < kJ; ++j) {
    x[j] = xt + static_cast<int64_t>(rows[kSameRow ? 0 : j]) * bp;
    d[j] = dyt + static_cast<int64_t>(cols[j]) * bp;
    s[j] = vf{};
  }
  for (int64_t v = 0; v < nvec; ++v) {
    if constexpr (kSameRow) {
      const vf xv = load(x[0] + v * kLanes);
      for (int j = 0; j < kJ; ++j) s[j] += xv * load(d[j] + v * kLanes);
    } else {
      for (int j = 0; j < kJ; ++j) s[j] += load(x[j] + v * kLanes) * load(d[j] + v * kLanes);
    }
  }
}

template <typename T>
void SddmmBs1(const float* xt, const float* dyt, const int32_t* row_idx,
              const int32_t* col_idx, int64_t nnzb, int64_t bp, bool prefetch, T* dv) {
  const int64_t nvec = bp / kLanes;
  const int64_t groups = (nnzb + kDwGroup - 1) / kDwGroup;
  ParallelRanges(groups, TaskCount(), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t k = g * kDwGroup;
      if (prefetch && k + kPrefetchRows + kDwGroup <= nnzb)
        for (int j = 0; j < kDwGroup; ++j)
          PrefetchFloats(dyt + static_cast<int64_t>(col_idx[k + kPrefetchRows + j]) * bp, bp);
      if (k + kDwGroup <= nnzb) {
        vf s[kDwGroup];
        if (row_idx[k] == row_idx[k + kDwGroup - 1])  // rows are sorted
          DotChains<kDwGroup, true>(xt, dyt, row_idx + k, col_idx + k, nvec, bp, s);
        else
          DotChains<kDwGroup, false>(xt, dyt, row_idx + k, col_idx + k, nvec, bp, s);
        float out[kDwGroup];
        Hsum8(s, out);
        for (int j = 0; j < kDwGroup; ++j) dv[k + j] = from_f32<T>(out[j]);
        continue;
      }
      for (int64_t kk = k; kk < nnzb; ++kk) {  // the last, partial group
        vf s[1];
        DotChains<1, true>(xt, dyt, row_idx + kk, col_idx + kk, nvec, bp, s);
        dv[kk] = from_f32<T>(hsum(s[0]));
      }
    }
  });
}

// ---------------------------------------------------------------------------
// The block-size-1 backward in one pass over dY. dX's gather over the row
// view and dW's dot products both read, for every stored weight p of input
// row i, the row DYT[col_idx[p]]; apart they read it twice (the two
// largest streams of a training step's backward). Fused, a task owns input
// rows i and, for each group of kDwGroup weights of row i, loads every
// vector of each of their dY rows once and uses it twice:
//   DXT[i][v] += DYT[c_p][v] * w_p   (accumulated in DXT's row: L1),
//   s_p       += XT[i][v] * DYT[c_p][v],
// then dv[p] = Hsum8(s). Per output the operations and their order are the
// separate kernels' (dX: weights in row order from +0, per lane; dW: one
// chain over the lane vectors, reduced in hsum's tree), so the two forms
// give the same bits, and neither depends on the thread count.
template <typename T, int kJ>
inline void FusedBwdGroup(const float* x, const float* dyt, const T* values,
                          const int32_t* cols, int64_t nvec, int64_t bp, float* dx_row,
                          T* dv) {
  const float* d[kJ];
  vf w[kJ], s[kDwGroup];
  for (int j = 0; j < kJ; ++j) {
    d[j] = dyt + static_cast<int64_t>(cols[j]) * bp;
    w[j] = splat(to_f32<T>(values[j]));
  }
  for (int j = 0; j < kDwGroup; ++j) s[j] = vf{};
  for (int64_t v = 0; v < nvec; ++v) {
    const vf xv = load(x + v * kLanes);
    vf acc = load(dx_row + v * kLanes);
    for (int j = 0; j < kJ; ++j) {
      const vf dv_j = load(d[j] + v * kLanes);
      acc += dv_j * w[j];
      s[j] += xv * dv_j;
    }
    store(dx_row + v * kLanes, acc);
  }
  float out[kDwGroup];
  Hsum8(s, out);  // s[j >= kJ] stay zero: padding
  for (int j = 0; j < kJ; ++j) dv[j] = from_f32<T>(out[j]);
}

// A row's last, partial group: kJ (1 .. kDwGroup - 1) dispatched at run time.
template <typename T, int kJ>
void FusedBwdTail(const float* x, const float* dyt, const T* values, const int32_t* cols,
                  int64_t nj, int64_t nvec, int64_t bp, float* dx_row, T* dv) {
  if constexpr (kJ >= 1) {
    if (nj == kJ)
      FusedBwdGroup<T, kJ>(x, dyt, values, cols, nvec, bp, dx_row, dv);
    else
      FusedBwdTail<T, kJ - 1>(x, dyt, values, cols, nj, nvec, bp, dx_row, dv);
  }
}

// No software prefetch: asking for the dY rows kPrefetchRows weights
// ahead, as the gathers do past kPrefetchMinBytes, changed nothing beyond
// the noise at 16,384 and 32,768 rows of dY (8 and 16 MB; BUILD_NOTES.md).
template <typename T>
void FusedBackwardBs1(const float* xt, const float* dyt, const T* values,
                      const int32_t* row_ptr, const int32_t* col_idx, int64_t n_in,
                      int64_t bp, float* dxt, T* dv) {
  const int64_t nvec = bp / kLanes;
  ParallelRanges(n_in, TaskCount(), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* x = xt + i * bp;
      float* dx_row = dxt + i * bp;
      for (int64_t v = 0; v < nvec; ++v) store(dx_row + v * kLanes, vf{});
      const int64_t end = row_ptr[i + 1];
      int64_t p = row_ptr[i];
      for (; p + kDwGroup <= end; p += kDwGroup)
        FusedBwdGroup<T, kDwGroup>(x, dyt, values + p, col_idx + p, nvec, bp, dx_row, dv + p);
      if (p < end)
        FusedBwdTail<T, kDwGroup - 1>(x, dyt, values + p, col_idx + p, end - p, nvec, bp,
                                      dx_row, dv + p);
    }
  });
}

// ---------------------------------------------------------------------------
// Row-major kernels for block sizes that are multiples of kLanes: vectors
// run along a block's columns, which are contiguous in the weights and in
// the batch-major operands, so no operand is transposed. Same ownership
// rule (one task per output element) and fixed summation order as above.

// Forward: y[b][cb*bs + j] = sum_p sum_i x[b][r_p*bs + i] * V[k_p][i][j].
// A task is (kJV vectors of columns in output block column cb, tile of kTB
// batch rows); kTB x kJV accumulators stay in registers.
template <typename T, int kTB, int kJV>
void FwdRowTile(const T* x, const T* values, const int32_t* row_idx,
                const int32_t* col_ptr, const int32_t* col_order, int64_t n_in,
                int64_t n_out, int64_t bs, int64_t b0, int64_t cb, int64_t j0, int64_t batch, T* y) {
  vf acc[kTB][kJV];
  for (int t = 0; t < kTB; ++t)
    for (int v = 0; v < kJV; ++v) acc[t][v] = vf{};
  for (int64_t p = col_ptr[cb]; p < col_ptr[cb + 1]; ++p) {
    const int64_t k = col_order[p];
    const T* blk = values + k * bs * bs + j0;
    const T* xr = x + b0 * n_in + static_cast<int64_t>(row_idx[k]) * bs;
    // The next batch tile's rows of this block's input panel: kTB pieces
    // of bs values, n_in apart, which the hardware prefetcher does not
    // follow (a few cache lines per 4 KB page). At density 0.01 the
    // forward ran 0.54 ms against 0.62-0.83 without (BUILD_NOTES.md).
    if (b0 + 2 * kTB <= batch) {
      const T* nx = xr + kTB * n_in;
      for (int t = 0; t < kTB; ++t)
        for (int64_t f = 0; f < bs * static_cast<int64_t>(sizeof(T)); f += 64)
          __builtin_prefetch(reinterpret_cast<const char*>(nx + t * n_in) + f);
    }
    for (int64_t i = 0; i < bs; ++i) {
      vf w[kJV];
      for (int v = 0; v < kJV; ++v) {
        if constexpr (std::is_same_v<T, float>) {
          w[v] = load(blk + i * bs + v * kLanes);
        } else {
          float tmp[kLanes];
          for (int l = 0; l < kLanes; ++l) tmp[l] = to_f32<T>(blk[i * bs + v * kLanes + l]);
          w[v] = load(tmp);
        }
      }
      for (int t = 0; t < kTB; ++t) {
        const vf xs = splat(to_f32<T>(xr[t * n_in + i]));
        for (int v = 0; v < kJV; ++v) acc[t][v] += xs * w[v];
      }
    }
  }
  for (int t = 0; t < kTB; ++t)
    for (int v = 0; v < kJV; ++v)
      StoreAs<T>(y + (b0 + t) * n_out + cb * bs + j0 + v * kLanes, acc[t][v]);
}

// Runs tile(b0, tb) over the batch in tiles of kTB rows, the last one
// narrower: TileFn is a template on the tile height.
template <int kTB, typename Fn>
void ForBatchTile(int64_t tb, Fn&& fn) {
  if constexpr (kTB >= 1) {
    if (tb == kTB) fn(std::integral_constant<int, kTB>{});
    else ForBatchTile<kTB - 1>(tb, fn);
  }
}

template <typename T>
void ForwardRows(const T* x, const T* values, const int32_t* row_idx,
                 const int32_t* col_ptr, const int32_t* col_order, int64_t batch,
                 int64_t n_in, int64_t n_cb, int64_t bs, T* y) {
  constexpr int kTB = kRowTile, kJV = kTileVectors;
  const int64_t n_out = n_cb * bs, chunks = bs / kTileCols;
  const int64_t tiles = (batch + kTB - 1) / kTB;
  ParallelRanges(n_cb * chunks * tiles, TaskCount(), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t cb = t / (chunks * tiles), rest = t % (chunks * tiles);
      const int64_t j0 = (rest / tiles) * kJV * kLanes, b0 = (rest % tiles) * kTB;
      ForBatchTile<kTB>(std::min<int64_t>(kTB, batch - b0), [&](auto tb) {
        FwdRowTile<T, decltype(tb)::value, kJV>(x, values, row_idx, col_ptr, col_order,
                                                n_in, n_out, bs, b0, cb, j0, batch, y);
      });
    }
  });
}

// dX: dx[b][rb*bs + i] = sum_p sum_j dy[b][c_p*bs + j] * V[p][i][j]. A task
// owns kTileCols columns i of block row rb for the whole batch. The row's
// blocks are first transposed, for those columns only, into a per-task
// buffer (wt[p][j][i], the row's share of W^T: a tile, not a copy of the
// weights), so the inner loop is the forward's: vectors along i, dy
// broadcast, kTB batch rows of accumulators in registers over all of the
// row's blocks. The order per output is p, then j: fixed.
template <typename T, int kTB>
void DxRowTile(const T* dy, const float* wt, const int32_t* col_idx, int64_t p0,
               int64_t p1, int64_t n_out, int64_t n_in, int64_t bs, int64_t b0,
               int64_t col0, T* dx) {
  constexpr int kJV = kTileVectors;
  vf acc[kTB][kJV];
  for (int t = 0; t < kTB; ++t)
    for (int v = 0; v < kJV; ++v) acc[t][v] = vf{};
  for (int64_t p = p0; p < p1; ++p) {
    const float* w_p = wt + (p - p0) * bs * kTileCols;
    const T* dcol = dy + b0 * n_out + static_cast<int64_t>(col_idx[p]) * bs;
    for (int64_t j = 0; j < bs; ++j) {
      vf w[kJV];
      for (int v = 0; v < kJV; ++v) w[v] = load(w_p + j * kTileCols + v * kLanes);
      for (int t = 0; t < kTB; ++t) {
        const vf d = splat(to_f32<T>(dcol[t * n_out + j]));
        for (int v = 0; v < kJV; ++v) acc[t][v] += d * w[v];
      }
    }
  }
  for (int t = 0; t < kTB; ++t)
    for (int v = 0; v < kJV; ++v)
      StoreAs<T>(dx + (b0 + t) * n_in + col0 + v * kLanes, acc[t][v]);
}

template <typename T>
void DxRows(const T* dy, const T* values, const int32_t* row_ptr, const int32_t* col_idx,
            int64_t batch, int64_t n_out, int64_t n_rb, int64_t bs, T* dx) {
  constexpr int kTB = kRowTile;
  const int64_t n_in = n_rb * bs, chunks = bs / kTileCols;
  ParallelRanges(n_rb * chunks, TaskCount(), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t rb = t / chunks, i0 = (t % chunks) * kTileCols;
      const int64_t p0 = row_ptr[rb], p1 = row_ptr[rb + 1];
      float* wt = ScratchSlot(1, std::max<int64_t>(1, (p1 - p0) * bs * kTileCols));
      for (int64_t p = p0; p < p1; ++p) {
        const T* blk = values + p * bs * bs;
        float* w_p = wt + (p - p0) * bs * kTileCols;
        for (int64_t i = 0; i < kTileCols; ++i)
          for (int64_t j = 0; j < bs; ++j)
            w_p[j * kTileCols + i] = to_f32<T>(blk[(i0 + i) * bs + j]);
      }
      for (int64_t b0 = 0; b0 < batch; b0 += kTB) {
        ForBatchTile<kTB>(std::min<int64_t>(kTB, batch - b0), [&](auto tb) {
          DxRowTile<T, decltype(tb)::value>(dy, wt, col_idx, p0, p1, n_out, n_in, bs, b0,
                                            rb * bs + i0, dx);
        });
      }
    }
  });
}

// Panels: a[batch][n] (T) -> ap[n / bs][batch][bs] (float), each block
// column's slice of the batch contiguous. Tasks over block columns.
template <typename T>
void ToPanels(const T* a, int64_t batch, int64_t n, int64_t bs, float* ap) {
  ParallelRanges(n / bs, TaskCount(), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t b = 0; b < batch; ++b) {
        const T* src = a + b * n + c * bs;
        float* dst = ap + (c * batch + b) * bs;
        for (int64_t i = 0; i < bs; ++i) dst[i] = to_f32<T>(src[i]);
      }
  });
}

// dW: dV[k][i][j] = sum_b x[b][r*bs + i] * dy[b][c*bs + j], vectors along j,
// the batch summed in order. x and dy are first copied into panels (one
// contiguous batch x bs slice per block row / column) so that each block's
// product streams two contiguous arrays; read in place, every batch row
// was a new cache line and page n floats away. A task is (block, group of
// kI rows) with kI x kJV accumulators in registers.
template <typename T>
void DwRows(const T* x, const T* dy, const int32_t* row_idx, const int32_t* col_idx,
            int64_t batch, int64_t n_in, int64_t n_out, int64_t nnzb, int64_t bs, T* dv) {
  constexpr int kI = kDwRows, kJV = kDwVectors;
  float* xp = ScratchSlot(0, batch * n_in);
  float* dp = ScratchSlot(1, batch * n_out);
  ToPanels(x, batch, n_in, bs, xp);
  ToPanels(dy, batch, n_out, bs, dp);
  const int64_t groups = bs / kI;
  ParallelRanges(nnzb * groups, TaskCount(), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k = t / groups, i0 = (t % groups) * kI;
      const float* xs = xp + static_cast<int64_t>(row_idx[k]) * batch * bs + i0;
      const float* ds = dp + static_cast<int64_t>(col_idx[k]) * batch * bs;
      T* out = dv + k * bs * bs + i0 * bs;
      for (int64_t j0 = 0; j0 < bs; j0 += kJV * kLanes) {
        const int nv = static_cast<int>(std::min<int64_t>(kJV, (bs - j0) / kLanes));
        vf acc[kI][kJV];
        for (int i = 0; i < kI; ++i)
          for (int v = 0; v < kJV; ++v) acc[i][v] = vf{};
        for (int64_t b = 0; b < batch; ++b) {
          vf d[kJV];
          for (int v = 0; v < nv; ++v) d[v] = load(ds + b * bs + j0 + v * kLanes);
          for (int i = 0; i < kI; ++i) {
            const vf xv = splat(xs[b * bs + i]);
            for (int v = 0; v < nv; ++v) acc[i][v] += xv * d[v];
          }
        }
        for (int i = 0; i < kI; ++i)
          for (int v = 0; v < nv; ++v) {
            T* o = out + i * bs + j0 + v * kLanes;
            float tmp[kLanes];
            store(tmp, acc[i][v]);
            for (int l = 0; l < kLanes; ++l) o[l] = from_f32<T>(tmp[l]);
          }
      }
    }
  });
}

bool RowMajor(int64_t bs) { return bs % kChunk == 0; }

// ---------------------------------------------------------------------------
// FFI handlers.

ffi::Error CheckBlocks(const ffi::AnyBuffer& values, int64_t* nnzb, int64_t* bs) {
  auto d = values.dimensions();
  if (d.size() != 3 || d[1] != d[2])
    return ffi::Error::InvalidArgument("values must be [nnzb, bs, bs]");
  *nnzb = d[0];
  *bs = d[1];
  return ffi::Error::Success();
}

ffi::Error CheckDtypes(const ffi::AnyBuffer& a, const ffi::AnyBuffer& b) {
  if (a.element_type() != b.element_type())
    return ffi::Error::InvalidArgument("operands must share one dtype");
  if (a.element_type() != ffi::DataType::F32 && a.element_type() != ffi::DataType::BF16)
    return ffi::Error::InvalidArgument("native kernels take float32 or bfloat16");
  return ffi::Error::Success();
}

// Feature-major operands are for the block sizes that run feature-major
// inside; the row-major kernels (multiples of kChunk) take batch-major ones.
ffi::Error CheckFeatureMajor(bool feature_major, int64_t bs) {
  if (feature_major && RowMajor(bs))
    return ffi::Error::InvalidArgument(
        "feature-major operands are only taken at block sizes that are not "
        "multiples of 32; pass batch-major operands at this block size");
  return ffi::Error::Success();
}

template <typename T>
void Forward(const ffi::AnyBuffer& x, const ffi::AnyBuffer& values, const int32_t* row_idx,
             const int32_t* col_ptr, const int32_t* col_order, int64_t n_cb, int64_t bs,
             bool feature_major, ffi::AnyBuffer* y) {
  const int64_t batch = x.dimensions()[0], n_in = x.dimensions()[1];
  const int64_t n_out = n_cb * bs, bp = Lanes(batch);
  const T* x_data = static_cast<const T*>(x.untyped_data());
  T* y_data = static_cast<T*>(y->untyped_data());
  const T* v = static_cast<const T*>(values.untyped_data());
  if (!feature_major && RowMajor(bs)) {
    ForwardRows<T>(x_data, v, row_idx, col_ptr, col_order, batch, n_in, n_cb, bs, y_data);
    return;
  }
  OnFeatureMajor(x_data, n_in, y_data, n_out, batch, feature_major,
                 [&](const float* xt, float* yt) {
                   Gather<T, false>(xt, n_in, v, col_ptr, col_order, row_idx, n_cb, bs, bp, yt);
                 });
}

ffi::Error BsmmFwdImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer values, ffi::Buffer<ffi::S32> row_idx,
                       ffi::Buffer<ffi::S32> col_ptr, ffi::Buffer<ffi::S32> col_order,
                       bool feature_major, ffi::Result<ffi::AnyBuffer> y) {
  XlaPoolScope pool_scope(xla_pool);
  int64_t nnzb, bs;
  if (auto e = CheckBlocks(values, &nnzb, &bs); e.failure()) return e;
  if (auto e = CheckDtypes(x, values); e.failure()) return e;
  if (auto e = CheckFeatureMajor(feature_major, bs); e.failure()) return e;
  const int64_t n_cb = static_cast<int64_t>(col_ptr.element_count()) - 1;
  if (x.dimensions().size() != 2 || y->dimensions().size() != 2 ||
      x.dimensions()[1] % bs || y->dimensions()[1] != n_cb * bs ||
      y->dimensions()[0] != x.dimensions()[0] ||
      static_cast<int64_t>(row_idx.element_count()) != nnzb ||
      static_cast<int64_t>(col_order.element_count()) != nnzb)
    return ffi::Error::InvalidArgument("bsmm_fwd: inconsistent shapes");
  if (x.element_type() == ffi::DataType::F32)
    Forward<float>(x, values, row_idx.typed_data(), col_ptr.typed_data(),
                   col_order.typed_data(), n_cb, bs, feature_major, &*y);
  else
    Forward<uint16_t>(x, values, row_idx.typed_data(), col_ptr.typed_data(),
                      col_order.typed_data(), n_cb, bs, feature_major, &*y);
  return ffi::Error::Success();
}

template <typename T>
void Dx(const ffi::AnyBuffer& dy, const ffi::AnyBuffer& values, const int32_t* row_ptr,
        const int32_t* col_idx, int64_t n_rb, int64_t bs, bool feature_major,
        ffi::AnyBuffer* dx) {
  const int64_t batch = dy.dimensions()[0], n_out = dy.dimensions()[1];
  const int64_t n_in = n_rb * bs, bp = Lanes(batch);
  const T* dy_data = static_cast<const T*>(dy.untyped_data());
  T* dx_data = static_cast<T*>(dx->untyped_data());
  const T* v = static_cast<const T*>(values.untyped_data());
  if (!feature_major && RowMajor(bs)) {
    DxRows<T>(dy_data, v, row_ptr, col_idx, batch, n_out, n_rb, bs, dx_data);
    return;
  }
  OnFeatureMajor(dy_data, n_out, dx_data, n_in, batch, feature_major,
                 [&](const float* dyt, float* dxt) {
                   Gather<T, true>(dyt, n_out, v, row_ptr, nullptr, col_idx, n_rb, bs, bp, dxt);
                 });
}

ffi::Error BsmmDxImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer dy, ffi::AnyBuffer values, ffi::Buffer<ffi::S32> row_ptr,
                      ffi::Buffer<ffi::S32> col_idx, bool feature_major,
                      ffi::Result<ffi::AnyBuffer> dx) {
  XlaPoolScope pool_scope(xla_pool);
  int64_t nnzb, bs;
  if (auto e = CheckBlocks(values, &nnzb, &bs); e.failure()) return e;
  if (auto e = CheckDtypes(dy, values); e.failure()) return e;
  if (auto e = CheckFeatureMajor(feature_major, bs); e.failure()) return e;
  const int64_t n_rb = static_cast<int64_t>(row_ptr.element_count()) - 1;
  if (dy.dimensions().size() != 2 || dx->dimensions().size() != 2 ||
      dy.dimensions()[1] % bs || dx->dimensions()[1] != n_rb * bs ||
      dx->dimensions()[0] != dy.dimensions()[0] ||
      static_cast<int64_t>(col_idx.element_count()) != nnzb)
    return ffi::Error::InvalidArgument("bsmm_dx: inconsistent shapes");
  if (dy.element_type() == ffi::DataType::F32)
    Dx<float>(dy, values, row_ptr.typed_data(), col_idx.typed_data(), n_rb, bs,
              feature_major, &*dx);
  else
    Dx<uint16_t>(dy, values, row_ptr.typed_data(), col_idx.typed_data(), n_rb, bs,
                 feature_major, &*dx);
  return ffi::Error::Success();
}

template <typename T>
void Dw(const ffi::AnyBuffer& x, const ffi::AnyBuffer& dy, const int32_t* row_idx,
        const int32_t* col_idx, int64_t nnzb, int64_t bs, bool feature_major,
        ffi::AnyBuffer* dv) {
  const int64_t batch = x.dimensions()[0], n_in = x.dimensions()[1];
  const int64_t n_out = dy.dimensions()[1], bp = Lanes(batch);
  if (!feature_major && RowMajor(bs)) {
    DwRows<T>(static_cast<const T*>(x.untyped_data()), static_cast<const T*>(dy.untyped_data()),
              row_idx, col_idx, batch, n_in, n_out, nnzb, bs,
              static_cast<T*>(dv->untyped_data()));
    return;
  }
  const float* xt = FeatureMajorOperand(static_cast<const T*>(x.untyped_data()), batch, n_in,
                                        bp, feature_major, 0);
  const float* dyt = FeatureMajorOperand(static_cast<const T*>(dy.untyped_data()), batch,
                                         n_out, bp, feature_major, 1);
  if (bs == 1) {
    SddmmBs1<T>(xt, dyt, row_idx, col_idx, nnzb, bp, PrefetchGathers(n_out, bp),
                static_cast<T*>(dv->untyped_data()));
    return;
  }
  Sddmm<T>(xt, dyt, row_idx, col_idx, nnzb, bs, bp,
           static_cast<T*>(dv->untyped_data()));
}

ffi::Error BsmmDwImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Buffer<ffi::S32> row_idx,
                      ffi::Buffer<ffi::S32> col_idx, bool feature_major,
                      ffi::Result<ffi::AnyBuffer> dv) {
  XlaPoolScope pool_scope(xla_pool);
  int64_t nnzb, bs;
  if (auto e = CheckBlocks(*dv, &nnzb, &bs); e.failure()) return e;
  if (auto e = CheckDtypes(x, dy); e.failure()) return e;
  if (auto e = CheckFeatureMajor(feature_major, bs); e.failure()) return e;
  if (x.dimensions().size() != 2 || dy.dimensions().size() != 2 ||
      x.dimensions()[0] != dy.dimensions()[0] || x.dimensions()[1] % bs ||
      dy.dimensions()[1] % bs || dv->element_type() != x.element_type() ||
      static_cast<int64_t>(row_idx.element_count()) != nnzb ||
      static_cast<int64_t>(col_idx.element_count()) != nnzb)
    return ffi::Error::InvalidArgument("bsmm_dw: inconsistent shapes");
  if (x.element_type() == ffi::DataType::F32)
    Dw<float>(x, dy, row_idx.typed_data(), col_idx.typed_data(), nnzb, bs, feature_major,
              &*dv);
  else
    Dw<uint16_t>(x, dy, row_idx.typed_data(), col_idx.typed_data(), nnzb, bs,
                 feature_major, &*dv);
  return ffi::Error::Success();
}

// The block-size-1 backward, dX and dW from one call: fused
// (FusedBackwardBs1; 0.67-0.97x the time of the two kernels at every
// shape measured, from 784 x 1000 at batch 128 to 32,768 x 32,768 with
// dY 16 MB, also where dX's gather slices its lanes for L2: BUILD_NOTES.md),
// or with fuse false the two kernels above on the same feature-major
// operands (one transpose of dY, not two). The same bits either way.
template <typename T>
void Backward(const ffi::AnyBuffer& x, const ffi::AnyBuffer& dy, const ffi::AnyBuffer& values,
              const int32_t* row_ptr, const int32_t* col_idx, const int32_t* row_idx,
              bool feature_major, bool fuse, ffi::AnyBuffer* dx, ffi::AnyBuffer* dv) {
  const int64_t batch = x.dimensions()[0], n_in = x.dimensions()[1];
  const int64_t n_out = dy.dimensions()[1], bp = Lanes(batch);
  const int64_t nnz = values.element_count();
  const T* x_data = static_cast<const T*>(x.untyped_data());
  const T* dy_data = static_cast<const T*>(dy.untyped_data());
  const T* v = static_cast<const T*>(values.untyped_data());
  T* dx_data = static_cast<T*>(dx->untyped_data());
  T* dv_data = static_cast<T*>(dv->untyped_data());
  const float* xt = FeatureMajorOperand(x_data, batch, n_in, bp, feature_major, 0);
  const float* dyt = FeatureMajorOperand(dy_data, batch, n_out, bp, feature_major, 1);
  float* dxt = feature_major ? FeatureMajorOut(dx_data, batch, n_in, bp, 2)
                             : ScratchSlot(2, n_in * bp);
  if (fuse) {
    FusedBackwardBs1<T>(xt, dyt, v, row_ptr, col_idx, n_in, bp, dxt, dv_data);
  } else {
    Gather<T, true>(dyt, n_out, v, row_ptr, nullptr, col_idx, n_in, 1, bp, dxt);
    SddmmBs1<T>(xt, dyt, row_idx, col_idx, nnz, bp, PrefetchGathers(n_out, bp), dv_data);
  }
  if (feature_major)
    FeatureMajorOutDone(dxt, batch, n_in, bp, dx_data);
  else
    FromFeatureMajor(dxt, batch, n_in, bp, dx_data);
}

ffi::Error BsmmBwdImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer x, ffi::AnyBuffer dy,
                       ffi::AnyBuffer values, ffi::Buffer<ffi::S32> row_ptr,
                       ffi::Buffer<ffi::S32> col_idx, ffi::Buffer<ffi::S32> row_idx,
                       bool feature_major, bool fuse, ffi::Result<ffi::AnyBuffer> dx,
                       ffi::Result<ffi::AnyBuffer> dv) {
  XlaPoolScope pool_scope(xla_pool);
  int64_t nnzb, bs;
  if (auto e = CheckBlocks(values, &nnzb, &bs); e.failure()) return e;
  if (bs != 1)
    return ffi::Error::InvalidArgument("bsmm_bwd: block size 1 only; use bsmm_dx and "
                                       "bsmm_dw at other block sizes");
  if (auto e = CheckDtypes(x, dy); e.failure()) return e;
  if (auto e = CheckDtypes(dy, values); e.failure()) return e;
  const int64_t n_in = static_cast<int64_t>(row_ptr.element_count()) - 1;
  if (x.dimensions().size() != 2 || dy.dimensions().size() != 2 ||
      dx->dimensions().size() != 2 || x.dimensions()[0] != dy.dimensions()[0] ||
      x.dimensions()[1] != n_in || dx->dimensions()[0] != x.dimensions()[0] ||
      dx->dimensions()[1] != n_in || dv->element_count() != nnzb ||
      dv->element_type() != values.element_type() ||
      dx->element_type() != x.element_type() ||
      static_cast<int64_t>(col_idx.element_count()) != nnzb ||
      static_cast<int64_t>(row_idx.element_count()) != nnzb)
    return ffi::Error::InvalidArgument("bsmm_bwd: inconsistent shapes");
  if (x.element_type() == ffi::DataType::F32)
    Backward<float>(x, dy, values, row_ptr.typed_data(), col_idx.typed_data(),
                    row_idx.typed_data(), feature_major, fuse, &*dx, &*dv);
  else
    Backward<uint16_t>(x, dy, values, row_ptr.typed_data(), col_idx.typed_data(),
                       row_idx.typed_data(), feature_major, fuse, &*dx, &*dv);
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------
// Bias gradient: db[j] = sum over the batch of dy[b][j], in float32, each
// output by one task in batch order (the same bits for every thread count).
// It runs beside dX and dW on the dy they read, in the layout XLA hands
// them: feature-major (n rows of B), where XLA's own reduction first copied
// dy back to batch-major -- a transpose per layer and step that cost more
// than the reduction (BUILD_NOTES.md).
template <typename T>
void BiasGrad(const T* dy, int64_t batch, int64_t n, bool feature_major, T* db) {
  if (feature_major) {
    ParallelRanges(n, TaskCount(), [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const T* row = dy + j * batch;
        int64_t b = 0;
        float acc = 0.0f;
        if constexpr (std::is_same_v<T, float>) {
          vf v = vf{};
          for (; b + kLanes <= batch; b += kLanes) v += load(row + b);
          acc = hsum(v);
        }
        for (; b < batch; ++b) acc += to_f32<T>(row[b]);
        db[j] = from_f32<T>(acc);
      }
    });
    return;
  }
  // Batch-major: a task owns a range of columns and walks the rows in order.
  ParallelRanges((n + kLanes - 1) / kLanes, TaskCount(), [&](int64_t c0, int64_t c1) {
    const int64_t j0 = c0 * kLanes, j1 = std::min(n, c1 * kLanes);
    float acc[kLanes * 8];
    for (int64_t jb = j0; jb < j1; jb += kLanes * 8) {
      const int64_t je = std::min(j1, jb + kLanes * 8);
      std::fill(acc, acc + (je - jb), 0.0f);
      for (int64_t b = 0; b < batch; ++b) {
        const T* row = dy + b * n;
        for (int64_t j = jb; j < je; ++j) acc[j - jb] += to_f32<T>(row[j]);
      }
      for (int64_t j = jb; j < je; ++j) db[j] = from_f32<T>(acc[j - jb]);
    }
  });
}

ffi::Error BiasGradImpl(ffi::ThreadPool xla_pool, ffi::AnyBuffer dy, bool feature_major, ffi::Result<ffi::AnyBuffer> db) {
  XlaPoolScope pool_scope(xla_pool);
  if (auto e = CheckDtypes(dy, *db); e.failure()) return e;
  if (dy.dimensions().size() != 2 || db->dimensions().size() != 1 ||
      db->dimensions()[0] != dy.dimensions()[1])
    return ffi::Error::InvalidArgument("bias_grad: dy must be [B, n] and db [n]");
  const int64_t batch = dy.dimensions()[0], n = dy.dimensions()[1];
  if (dy.element_type() == ffi::DataType::F32)
    BiasGrad<float>(static_cast<const float*>(dy.untyped_data()), batch, n, feature_major,
                    static_cast<float*>(db->untyped_data()));
  else
    BiasGrad<uint16_t>(static_cast<const uint16_t*>(dy.untyped_data()), batch, n,
                       feature_major, static_cast<uint16_t*>(db->untyped_data()));
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------
// Stacked ReLU layers at block size 1 (the Sparse DNN Graph Challenge's
// inference, Kepner et al. 2019):
//   Y_{l+1} = min(max(Y_l W_l + bias, 0), ymax),   l = start .. start+length-1,
// over layers stacked on a leading axis, in one call: no per-layer dispatch,
// slicing or transposes, and rows that become all zero are dropped as they
// die (with bias <= 0 a zero row stays zero; such rows come back as zeros).
// Each layer of the live rows takes one of two forms, chosen by the density
// of its input (nonzeros / (live rows * n)):
//   scatter (density < sparse_below): row-major; a task owns rows and, for
//     each nonzero y[b][i], adds y[b][i] * W[i][:] into an accumulator row
//     over the row view (row_ptr, col_idx, values in row order) -- work
//     proportional to the nonzeros of Y, as the challenge's sparse form;
//   gather (otherwise): feature-major, the forward's block-size-1 gather
//     over the column view given as column-ordered copies of the values
//     and row indices (built once per network, so no indirection through
//     col_order per weight).
// The scatter form never multiplies a zero activation; the gather form
// forms every product. Both sum each output in row order from an
// accumulator that starts at +0, so with finite weights (whose products
// with zero are zeros that change no sum) they give the same bits as each
// other and as the forward kernel followed by the same bias and clip; the
// callers require finite weights (snn_jax/graph_challenge.py).
inline float Epilogue(float acc, float bias, float ymax) {
  return std::min(std::max(acc + bias, 0.0f), ymax);
}

// Scatter layer over `rows` row-major rows: out[b][:], and per-row nonzero
// counts of the output in counts[b].
void ScatterLayer(const float* in, const float* values, const int32_t* row_ptr,
                  const int32_t* col_idx, int64_t rows, int64_t n, float bias,
                  float ymax, float* out, int64_t* counts) {
  ParallelRanges(rows, TaskCount(), [&](int64_t b0, int64_t b1) {
    float* acc = ScratchSlot(3, n);
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(acc, acc + n, 0.0f);
      const float* yb = in + b * n;
      for (int64_t i = 0; i < n; ++i) {
        const float x = yb[i];
        if (x == 0.0f) continue;
        for (int64_t p = row_ptr[i]; p < row_ptr[i + 1]; ++p) acc[col_idx[p]] += x * values[p];
      }
      float* ob = out + b * n;
      int64_t count = 0;
      for (int64_t j = 0; j < n; ++j) {
        ob[j] = Epilogue(acc[j], bias, ymax);
        count += ob[j] != 0.0f;
      }
      counts[b] = count;
    }
  });
}

// Gather layer on feature-major operands (n rows of bp lanes; lanes >= rows
// stay zero); per-lane nonzero counts of the output in counts[0 .. rows).
void GatherLayer(const float* in, const float* col_values, const int32_t* col_rows,
                 const int32_t* col_ptr, int64_t rows, int64_t n, int64_t bp, float bias,
                 float ymax, float* out, int64_t* counts) {
  Gather<float, false>(in, n, col_values, col_ptr, nullptr, col_rows, n, 1, bp, out);
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(n, TaskCount()));
  const int64_t step = (n + parts - 1) / parts, tasks = (n + step - 1) / step;
  std::vector<int64_t> part_counts(tasks * rows, 0);
  ParallelFor(tasks, [&](int64_t t) {
    int64_t* c = part_counts.data() + t * rows;
    for (int64_t j = t * step; j < std::min(n, (t + 1) * step); ++j) {
      float* row = out + j * bp;
      for (int64_t l = 0; l < rows; ++l) {
        row[l] = Epilogue(row[l], bias, ymax);
        c[l] += row[l] != 0.0f;
      }
      for (int64_t l = rows; l < bp; ++l) row[l] = 0.0f;
    }
  });
  for (int64_t l = 0; l < rows; ++l) counts[l] = 0;
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t l = 0; l < rows; ++l) counts[l] += part_counts[t * rows + l];
}

ffi::Error ReluLayersImpl(ffi::ThreadPool xla_pool, ffi::Buffer<ffi::F32> y0, ffi::Buffer<ffi::F32> row_values,
                          ffi::Buffer<ffi::S32> col_idx, ffi::Buffer<ffi::S32> row_ptr,
                          ffi::Buffer<ffi::F32> col_values, ffi::Buffer<ffi::S32> col_rows,
                          ffi::Buffer<ffi::S32> col_ptr, ffi::Buffer<ffi::S32> start_buf,
                          float bias, float ymax, int64_t length, float sparse_below,
                          ffi::Result<ffi::Buffer<ffi::F32>> y) {
  XlaPoolScope pool_scope(xla_pool);
  auto yd = y0.dimensions(), vd = row_values.dimensions();
  if (yd.size() != 2 || vd.size() != 2 || start_buf.element_count() != 1)
    return ffi::Error::InvalidArgument(
        "relu_layers: y0 must be [B, n], values [L, nnz], start a scalar");
  const int64_t batch = yd[0], n = yd[1], n_layers = vd[0], nnz = vd[1];
  auto dims_are = [](auto buf, int64_t a, int64_t b) {
    auto d = buf.dimensions();
    return d.size() == 2 && d[0] == a && d[1] == b;
  };
  if (!dims_are(col_idx, n_layers, nnz) || !dims_are(row_ptr, n_layers, n + 1) ||
      !dims_are(col_values, n_layers, nnz) || !dims_are(col_rows, n_layers, nnz) ||
      !dims_are(col_ptr, n_layers, n + 1) || !dims_are(*y, batch, n))
    return ffi::Error::InvalidArgument("relu_layers: inconsistent shapes");
  if (bias > 0.0f)
    return ffi::Error::InvalidArgument("relu_layers: bias must be <= 0 (a zero row "
                                       "must stay zero)");
  const int64_t start = start_buf.typed_data()[0];
  if (length < 0 || start < 0 || start + length > n_layers)
    return ffi::Error::InvalidArgument("relu_layers: layers [start, start+length) "
                                       "outside the stack");
  // Live rows (original indices) and their activations, compacted: row-major
  // in rm[cur] or feature-major in fm[fcur] (fcur >= 0).
  std::vector<int64_t> live, counts(batch);
  const float* y_in = y0.typed_data();
  float* rm[2] = {ScratchSlot(2, batch * n), ScratchSlot(4, batch * n)};
  int cur = 0, fcur = -1;
  int64_t nonzeros = 0;
  for (int64_t b = 0; b < batch; ++b) {
    int64_t c = 0;
    for (int64_t j = 0; j < n; ++j) c += y_in[b * n + j] != 0.0f;
    if (!c) continue;
    std::memcpy(rm[cur] + static_cast<int64_t>(live.size()) * n, y_in + b * n,
                sizeof(float) * n);
    live.push_back(b);
    nonzeros += c;
  }
  const int64_t bp_max = Lanes(std::max<int64_t>(1, static_cast<int64_t>(live.size())));
  float* fm[2] = {ScratchSlot(0, n * bp_max), ScratchSlot(1, n * bp_max)};
  auto to_rows = [&](int64_t rows, int64_t bp) {  // leave the feature-major layout
    FromFeatureMajor(fm[fcur], rows, n, bp, rm[cur]);
    fcur = -1;
  };
  for (int64_t l = start; l < start + length && !live.empty(); ++l) {
    const int64_t rows = static_cast<int64_t>(live.size()), bp = Lanes(rows);
    const bool scatter = static_cast<double>(nonzeros) <
                         static_cast<double>(sparse_below) * static_cast<double>(rows * n);
    if (scatter) {
      if (fcur >= 0) to_rows(rows, bp);
      ScatterLayer(rm[cur], row_values.typed_data() + l * nnz, row_ptr.typed_data() + l * (n + 1),
                   col_idx.typed_data() + l * nnz, rows, n, bias, ymax, rm[cur ^ 1],
                   counts.data());
      cur ^= 1;
    } else {
      if (fcur < 0) {
        ToFeatureMajor(rm[cur], rows, n, bp, fm[0]);
        fcur = 0;
      }
      GatherLayer(fm[fcur], col_values.typed_data() + l * nnz, col_rows.typed_data() + l * nnz,
                  col_ptr.typed_data() + l * (n + 1), rows, n, bp, bias, ymax, fm[fcur ^ 1],
                  counts.data());
      fcur ^= 1;
    }
    nonzeros = 0;
    int64_t kept = 0;
    for (int64_t r = 0; r < rows; ++r) {
      nonzeros += counts[r];
      kept += counts[r] != 0;
    }
    if (kept < rows) {  // drop the rows that died, in row-major form
      if (fcur >= 0) to_rows(rows, bp);
      int64_t w = 0;
      for (int64_t r = 0; r < rows; ++r) {
        if (!counts[r]) continue;
        if (w != r) std::memmove(rm[cur] + w * n, rm[cur] + r * n, sizeof(float) * n);
        live[w++] = live[r];
      }
      live.resize(w);
    }
  }
  const int64_t rows = static_cast<int64_t>(live.size());
  if (fcur >= 0) to_rows(rows, Lanes(rows));
  float* out = y->typed_data();
  std::memset(out, 0, sizeof(float) * batch * n);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out + live[r] * n, rm[cur] + r * n, sizeof(float) * n);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxBsmmFwd, BsmmFwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()        // x [B, n_in]
                                  .Arg<ffi::AnyBuffer>()        // values
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_idx
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_ptr
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_order
                                  .Attr<bool>("feature_major")  // x, y laid out {0,1}
                                  .Ret<ffi::AnyBuffer>());      // y [B, n_out]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxBsmmDx, BsmmDxImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()        // dy [B, n_out]
                                  .Arg<ffi::AnyBuffer>()        // values
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_ptr
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_idx
                                  .Attr<bool>("feature_major")  // dy, dx laid out {0,1}
                                  .Ret<ffi::AnyBuffer>());      // dx [B, n_in]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxBsmmDw, BsmmDwImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()        // x [B, n_in]
                                  .Arg<ffi::AnyBuffer>()        // dy [B, n_out]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_idx
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_idx
                                  .Attr<bool>("feature_major")  // x, dy laid out {0,1}
                                  .Ret<ffi::AnyBuffer>());      // dvalues

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxBsmmBwd, BsmmBwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()        // x [B, n_in]
                                  .Arg<ffi::AnyBuffer>()        // dy [B, n_out]
                                  .Arg<ffi::AnyBuffer>()        // values [nnz, 1, 1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_ptr
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_idx
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_idx
                                  .Attr<bool>("feature_major")  // x, dy, dx laid out {0,1}
                                  .Attr<bool>("fuse")           // false: the two kernels
                                  .Ret<ffi::AnyBuffer>()        // dx [B, n_in]
                                  .Ret<ffi::AnyBuffer>());      // dvalues [nnz, 1, 1]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxBiasGrad, BiasGradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()        // dy [B, n]
                                  .Attr<bool>("feature_major")  // dy laid out {0,1}
                                  .Ret<ffi::AnyBuffer>());      // db [n]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxReluLayers, ReluLayersImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // y0 [B, n]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // values, row order [L, nnz]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_idx [L, nnz]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_ptr [L, n+1]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // values, column order [L, nnz]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row of each, column order
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_ptr [L, n+1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // start (scalar)
                                  .Attr<float>("bias")
                                  .Attr<float>("ymax")
                                  .Attr<int64_t>("length")
                                  .Attr<float>("sparse_below")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // y [B, n]

// ---------------------------------------------------------------------------
// The Python module: handler capsules for jax.ffi.register_ffi_target, and
// the thread count.

// The convolution's handlers (kernels/native/conv_cpu.cc, same module).
XLA_FFI_DECLARE_HANDLER_SYMBOL(SnnJaxConvFwd);
XLA_FFI_DECLARE_HANDLER_SYMBOL(SnnJaxConvDx);
XLA_FFI_DECLARE_HANDLER_SYMBOL(SnnJaxConvDw);

namespace {

PyObject* Capsule(void* fn) { return PyCapsule_New(fn, nullptr, nullptr); }

PyObject* Handlers(PyObject*, PyObject*) {
  PyObject* d = PyDict_New();
  if (d == nullptr) return nullptr;
  const std::pair<const char*, void*> items[] = {
      {"snn_jax_bsmm_fwd", reinterpret_cast<void*>(SnnJaxBsmmFwd)},
      {"snn_jax_bsmm_dx", reinterpret_cast<void*>(SnnJaxBsmmDx)},
      {"snn_jax_bsmm_dw", reinterpret_cast<void*>(SnnJaxBsmmDw)},
      {"snn_jax_bsmm_bwd", reinterpret_cast<void*>(SnnJaxBsmmBwd)},
      {"snn_jax_bias_grad", reinterpret_cast<void*>(SnnJaxBiasGrad)},
      {"snn_jax_relu_layers", reinterpret_cast<void*>(SnnJaxReluLayers)},
      {"snn_jax_conv_fwd", reinterpret_cast<void*>(SnnJaxConvFwd)},
      {"snn_jax_conv_dx", reinterpret_cast<void*>(SnnJaxConvDx)},
      {"snn_jax_conv_dw", reinterpret_cast<void*>(SnnJaxConvDw)}};
  for (const auto& [name, fn] : items) {
    PyObject* c = Capsule(fn);
    if (c == nullptr || PyDict_SetItemString(d, name, c) != 0) {
      Py_XDECREF(c);
      Py_DECREF(d);
      return nullptr;
    }
    Py_DECREF(c);
  }
  return d;
}

PyObject* NumThreads(PyObject*, PyObject*) {
  return PyLong_FromLong(Pool::Get().threads());
}

PyObject* SetNumThreads(PyObject*, PyObject* arg) {
  long n = PyLong_AsLong(arg);
  if (n == -1 && PyErr_Occurred()) return nullptr;
  if (n < 1) {
    PyErr_SetString(PyExc_ValueError, "the number of threads must be >= 1");
    return nullptr;
  }
  Pool::Get().set_threads(static_cast<int>(n));
  return PyLong_FromLong(Pool::Get().threads());
}

PyObject* ThreadPoolName(PyObject*, PyObject*) {
  return PyUnicode_FromString(
      PoolKindSetting().load() == static_cast<int>(PoolKind::kXla) ? "xla" : "own");
}

PyObject* SetThreadPool(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  if (std::strcmp(name, "xla") == 0) {
    PoolKindSetting().store(static_cast<int>(PoolKind::kXla));
  } else if (std::strcmp(name, "own") == 0) {
    PoolKindSetting().store(static_cast<int>(PoolKind::kOwn));
  } else {
    PyErr_Format(PyExc_ValueError, "thread pool must be 'xla' or 'own', got %R", arg);
    return nullptr;
  }
  return ThreadPoolName(nullptr, nullptr);
}

PyObject* MaxThreads(PyObject*, PyObject*) {
  return PyLong_FromLong(Pool::DefaultThreads());
}

PyObject* VectorLanes(PyObject*, PyObject*) { return PyLong_FromLong(kLanes); }

PyMethodDef kMethods[] = {
    {"handlers", Handlers, METH_NOARGS, "FFI handler capsules by target name."},
    {"num_threads", NumThreads, METH_NOARGS, "Threads the kernels use now."},
    {"set_num_threads", SetNumThreads, METH_O,
     "Use at most n threads (1 .. the pool's size); returns the number set."},
    {"thread_pool", ThreadPoolName, METH_NOARGS,
     "Whose threads run the kernels' tasks: 'xla' or 'own'."},
    {"set_thread_pool", SetThreadPool, METH_O,
     "Run the tasks on XLA's intra-op pool ('xla') or the module's own ('own')."},
    {"vector_lanes", VectorLanes, METH_NOARGS,
     "float32 lanes of one vector in this build (16: AVX-512, 8: AVX, 4 otherwise)."},
    {"max_threads", MaxThreads, METH_NOARGS,
     "The pool's size: SNN_JAX_NATIVE_THREADS, else the hardware threads."},
    {nullptr, nullptr, 0, nullptr}};

// The module's name: one build per CPU target (setup.py), each its own
// module, _native_cpu_<target>; kernels/native_cpu.py loads the best one
// the CPU runs.
#ifndef SNN_MODULE
#define SNN_MODULE _native_cpu
#endif
#define SNN_STR2(x) #x
#define SNN_STR(x) SNN_STR2(x)
#define SNN_CAT2(a, b) a##b
#define SNN_CAT(a, b) SNN_CAT2(a, b)

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, SNN_STR(SNN_MODULE),
                       "snn_jax native CPU kernels (XLA FFI).", -1, kMethods};

}  // namespace

PyMODINIT_FUNC SNN_CAT(PyInit_, SNN_MODULE)(void) { return PyModule_Create(&kModule); }
