// Native CPU kernels for snn_jax's weight-level sparse 2-D convolution,
// registered with XLA's FFI. Python side: kernels/native_cpu.py
// (conv_*_native), wired with jax.custom_vjp in snn_jax/conv.py.
//
// The weight is a block-size-1 BlockCSR of shape (S * kh * kw, D): row
// r = s * kh * kw + i * kw + j is input channel s at kernel offset (i, j)
// (channel-major, as lax.conv_general_dilated_patches orders patch
// features), column d the output channel. Only its stored entries are
// ever multiplied: the work is nnz * Hd * Wd * B multiply-adds, against
// S * kh * kw * D * Hd * Wd * B for a dense convolution.
//
// Images are "plane-major", [C, H, W, B] (layout "CHWB" of snn_jax.conv):
// a[channel][row][column * B + b], batch innermost, so a kernel offset (i, j) moves a whole row window by i rows
// and j * B floats, and every tap of an output row is one contiguous run
// of Wd * B floats:
//
//   correlate  dst[d][h][q] = sum over taps (s, i, j, w) of d:
//                             w * src[s][h + i][j * B + q],   q < Wd * B
//
// The forward is a correlation of the padded input over the column view
// (taps of output channel d); dX runs the row view's taps of input channel
// c over dY, each clipped to the part of the row its window covers (no
// padded copy of dY, and the input's padding is never computed); dW is, for each stored entry, the dot product of dY's plane
// with the shifted input plane. Each output element is written by one
// task and summed in one fixed order (the view's entry order), so results
// are bit-identical for any thread count; every product of a stored weight
// and an image value is formed, so NaN and Inf propagate through them (dX
// forms none with dY's implicit zero border). float32 only.
//
// Every load and store stays inside its window: a row's last partial
// vector is read and written through a small buffer, so the operands need
// no padding and a result holds exactly its elements.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"
#include "cpu_runtime.h"

namespace ffi = xla::ffi;

namespace {

using namespace snn_native;  // the shared runtime: vf, ParallelFor, ...

// One tap of an output channel: where its window starts in src, relative
// to the output row's own row of src, and its weight.
struct Tap {
  int64_t offset;  // (s * Hs + i) * Ws * B + j * B
  float w;
};

// Accumulator vectors per register tile: half the register file, the
// other half for the loads in flight and the broadcast weight.
constexpr int kConvVectors = kVecRegs / 2;

// out[q .. q + kNV * kLanes) = (kAccumulate ? out : 0) + the taps' sum.
template <int kNV, bool kAccumulate = false>
inline void TapTile(const float* src_row, const Tap* taps, int64_t n_taps, int64_t q,
                    float* out) {
  vf acc[kNV];
  for (int v = 0; v < kNV; ++v) acc[v] = kAccumulate ? load(out + q + v * kLanes) : vf{};
  for (int64_t t = 0; t < n_taps; ++t) {
    const float* p = src_row + taps[t].offset + q;
    const vf w = splat(taps[t].w);
    for (int v = 0; v < kNV; ++v) acc[v] += w * load(p + v * kLanes);
  }
  for (int v = 0; v < kNV; ++v) store(out + q + v * kLanes, acc[v]);
}

// The last `rest` < kLanes elements of a run.
template <bool kAccumulate = false>
inline void TapTail(const float* src_row, const Tap* taps, int64_t n_taps, int64_t q,
                    int64_t rest, float* out) {
  float lanes[kLanes] = {};
  if (kAccumulate) std::memcpy(lanes, out + q, rest * sizeof(float));
  vf acc = load(lanes);
  for (int64_t t = 0; t < n_taps; ++t) {
    std::memcpy(lanes, src_row + taps[t].offset + q, rest * sizeof(float));
    acc += splat(taps[t].w) * load(lanes);
  }
  store(lanes, acc);
  std::memcpy(out + q, lanes, rest * sizeof(float));
}

// out[lo .. hi) (+)= sum over taps of w * src_row[offset + q], in register
// tiles of kConvVectors vectors, then smaller ones, then the partial tail.
template <bool kAccumulate>
void TapRun(const float* src_row, const Tap* taps, int64_t n_taps, int64_t lo, int64_t hi,
            float* out) {
  const int64_t vectors = (hi - lo) / kLanes, rest = (hi - lo) % kLanes;
  int64_t q = lo;
  const int64_t end = lo + vectors * kLanes;
  for (; q + kConvVectors * kLanes <= end; q += kConvVectors * kLanes)
    TapTile<kConvVectors, kAccumulate>(src_row, taps, n_taps, q, out);
  if (q + kConvVectors / 2 * kLanes <= end) {
    TapTile<kConvVectors / 2, kAccumulate>(src_row, taps, n_taps, q, out);
    q += kConvVectors / 2 * kLanes;
  }
  if (q + kConvVectors / 4 * kLanes <= end) {
    TapTile<kConvVectors / 4, kAccumulate>(src_row, taps, n_taps, q, out);
    q += kConvVectors / 4 * kLanes;
  }
  for (; q < end; q += kLanes) TapTile<1, kAccumulate>(src_row, taps, n_taps, q, out);
  if (rest) TapTail<kAccumulate>(src_row, taps, n_taps, end, rest, out);
}

// dst[d][h][0 .. len) for every d, h; taps of d: taps[ptr[d] .. ptr[d + 1]).
void Correlate(const float* src, int64_t src_row_floats, const std::vector<Tap>& taps,
               const std::vector<int64_t>& ptr, int64_t dst_rows, int64_t len, float* dst) {
  const int64_t n_dst = static_cast<int64_t>(ptr.size()) - 1;
  // Row-major task order: the tasks running together read the same few
  // source rows of every channel, which stay in cache between them.
  ParallelFor(n_dst * dst_rows, [&](int64_t task) {
    const int64_t h = task / n_dst, d = task % n_dst;
    TapRun<false>(src + h * src_row_floats, taps.data() + ptr[d], ptr[d + 1] - ptr[d], 0,
                  len, dst + (d * dst_rows + h) * len);
  });
}

struct Geometry {
  int64_t src_channels, src_h, src_w, batch, kh, kw;
  int64_t dst_h() const { return src_h - kh + 1; }
  int64_t dst_w() const { return src_w - kw + 1; }
  int64_t row_floats() const { return src_w * batch; }
  int64_t dst_row_floats() const { return dst_w() * batch; }
  int64_t Offset(int64_t s, int64_t i, int64_t j) const {
    return (s * src_h + i) * row_floats() + j * batch;
  }
};

// src: [src_channels, src_h, src_w, batch]; dst: [n_dst, dst_h, dst_w, batch].
ffi::Error CheckGeometry(const Geometry& g, const ffi::Buffer<ffi::F32>& src,
                         const ffi::Span<const int64_t>& dst, int64_t n_dst, const char* what) {
  const auto sd = src.dimensions();
  if (g.kh < 1 || g.kw < 1 || sd.size() != 4 || sd[0] != g.src_channels ||
      sd[1] != g.src_h || sd[2] != g.src_w || sd[3] != g.batch || g.dst_h() < 1 ||
      g.dst_w() < 1 || dst.size() != 4 || dst[0] != n_dst || dst[1] != g.dst_h() ||
      dst[2] != g.dst_w() || dst[3] != g.batch)
    return ffi::Error::InvalidArgument(std::string(what) + ": inconsistent shapes");
  return ffi::Error::Success();
}

ffi::Error ConvFwdImpl(ffi::ThreadPool xla_pool, ffi::Buffer<ffi::F32> src,
                       ffi::Buffer<ffi::F32> values, ffi::Buffer<ffi::S32> row_idx,
                       ffi::Buffer<ffi::S32> col_ptr, ffi::Buffer<ffi::S32> col_order,
                       int64_t channels, int64_t height, int64_t width, int64_t batch,
                       int64_t kh, int64_t kw, ffi::Result<ffi::Buffer<ffi::F32>> dst) {
  XlaPoolScope pool_scope(xla_pool);
  const Geometry g{channels, height, width, batch, kh, kw};
  const int64_t n_out = static_cast<int64_t>(col_ptr.element_count()) - 1;
  const int64_t nnz = static_cast<int64_t>(values.element_count());
  if (auto e = CheckGeometry(g, src, dst->dimensions(), n_out, "conv_fwd"); e.failure())
    return e;
  if (static_cast<int64_t>(row_idx.element_count()) != nnz ||
      static_cast<int64_t>(col_order.element_count()) != nnz)
    return ffi::Error::InvalidArgument("conv_fwd: inconsistent shapes");
  const int32_t* cp = col_ptr.typed_data();
  const int32_t* order = col_order.typed_data();
  const int32_t* rows = row_idx.typed_data();
  const float* w = values.typed_data();
  const int64_t kk = kh * kw;
  std::vector<Tap> taps(nnz);
  std::vector<int64_t> ptr(n_out + 1);
  for (int64_t d = 0; d <= n_out; ++d) ptr[d] = cp[d];
  for (int64_t k = 0; k < nnz; ++k) {
    const int64_t e = order[k], r = rows[e], p = r % kk;
    taps[k] = Tap{g.Offset(r / kk, p / kw, p % kw), w[e]};
  }
  Correlate(src.typed_data(), g.row_floats(), taps, ptr, g.dst_h(), g.dst_row_floats(),
            dst->typed_data());
  return ffi::Error::Success();
}

// dX of the unpadded input x[S, H, W, B] of a correlation whose padded
// input had (pad_top, pad_left) rows and columns of zeros before x:
//   dx[c][h][w'] = sum over entries (c, i, j; o) with 0 <= h + top - i < Ho
//                  and 0 <= w' + left - j < Wo of w * dy[o][h + top - i][w' + left - j].
// No padded copy of dY: a task (c, h) zeroes its row, then adds, for each
// kernel column j, the taps of that column over the part of the row their
// window covers (a run of Wo * B floats at offset (j - left) * B, clipped to
// the row). Taps are summed by j, then in the row view's order.
ffi::Error ConvDxImpl(ffi::ThreadPool xla_pool, ffi::Buffer<ffi::F32> dy,
                      ffi::Buffer<ffi::F32> values, ffi::Buffer<ffi::S32> row_ptr,
                      ffi::Buffer<ffi::S32> col_idx, int64_t kh, int64_t kw, int64_t pad_top,
                      int64_t pad_left, ffi::Result<ffi::Buffer<ffi::F32>> dx) {
  XlaPoolScope pool_scope(xla_pool);
  const int64_t kk = kh * kw;
  const int64_t n_rows = static_cast<int64_t>(row_ptr.element_count()) - 1;
  const int64_t nnz = static_cast<int64_t>(values.element_count());
  const auto sd = dy.dimensions();
  const auto xd = dx->dimensions();
  if (kh < 1 || kw < 1 || n_rows % kk || sd.size() != 4 || xd.size() != 4 ||
      static_cast<int64_t>(col_idx.element_count()) != nnz)
    return ffi::Error::InvalidArgument("conv_dx: inconsistent shapes");
  const int64_t ho = sd[1], wo = sd[2], batch = sd[3];
  const int64_t channels = xd[0], h_in = xd[1], w_in = xd[2];
  if (channels != n_rows / kk || xd[3] != batch || pad_top < 0 || pad_left < 0 ||
      pad_top + h_in > ho + kh - 1 || pad_left + w_in > wo + kw - 1)
    return ffi::Error::InvalidArgument("conv_dx: inconsistent shapes");
  const int32_t* rp = row_ptr.typed_data();
  const int32_t* cols = col_idx.typed_data();
  const float* w = values.typed_data();
  const int64_t src_row = wo * batch, dst_row = w_in * batch;
  // Entries of channel c with kernel column j: group c * kw + j.
  struct DxTap {
    int64_t plane;  // o * Ho * Wo * B
    int64_t i;
    float w;
  };
  std::vector<int64_t> group(channels * kw + 1, 0);
  for (int64_t r = 0; r < n_rows; ++r)
    group[(r / kk) * kw + (r % kw) + 1] += rp[r + 1] - rp[r];
  for (size_t g = 1; g < group.size(); ++g) group[g] += group[g - 1];
  std::vector<DxTap> taps(nnz);
  {
    std::vector<int64_t> fill(group.begin(), group.end() - 1);
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t p = r % kk, g = (r / kk) * kw + p % kw;
      for (int64_t e = rp[r]; e < rp[r + 1]; ++e)
        taps[fill[g]++] = DxTap{cols[e] * ho * src_row, p / kw, w[e]};
    }
  }
  const float* src = dy.typed_data();
  float* out = dx->typed_data();
  ParallelFor(channels * h_in, [&](int64_t task) {  // row-major, as Correlate
    const int64_t h = task / channels, c = task % channels, hp = h + pad_top;
    float* row = out + (c * h_in + h) * dst_row;
    std::memset(row, 0, dst_row * sizeof(float));
    thread_local std::vector<Tap> valid;
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t lo = std::max<int64_t>(0, (j - pad_left) * batch);
      const int64_t hi = std::min(dst_row, (j - pad_left + wo) * batch);
      if (lo >= hi) continue;
      valid.clear();
      for (int64_t t = group[c * kw + j]; t < group[c * kw + j + 1]; ++t) {
        const int64_t r = hp - taps[t].i;
        if (r >= 0 && r < ho)
          valid.push_back(Tap{taps[t].plane + r * src_row + (pad_left - j) * batch, taps[t].w});
      }
      if (!valid.empty())
        TapRun<true>(src, valid.data(), static_cast<int64_t>(valid.size()), lo, hi, row);
    }
  });
  return ffi::Error::Success();
}

// dV[e] = sum over h < Ho, q < Wo * B of dy[d][h][q] * x[s][h + i][j * B + q]
// for entry e = (s, i, j; d). x: the padded input (as the forward's src);
// dy: [D, Ho, Wo, B].
ffi::Error ConvDwImpl(ffi::ThreadPool xla_pool, ffi::Buffer<ffi::F32> src,
                      ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::S32> row_idx,
                      ffi::Buffer<ffi::S32> col_ptr, ffi::Buffer<ffi::S32> col_order,
                      int64_t channels, int64_t height, int64_t width, int64_t batch,
                      int64_t kh, int64_t kw, ffi::Result<ffi::Buffer<ffi::F32>> dv) {
  XlaPoolScope pool_scope(xla_pool);
  const Geometry g{channels, height, width, batch, kh, kw};
  const int64_t n_out = static_cast<int64_t>(col_ptr.element_count()) - 1;
  const int64_t nnz = static_cast<int64_t>(row_idx.element_count());
  if (auto e = CheckGeometry(g, src, dy.dimensions(), n_out, "conv_dw"); e.failure())
    return e;
  const int64_t ho = g.dst_h(), len = g.dst_row_floats();
  if (static_cast<int64_t>(dv->element_count()) != nnz ||
      static_cast<int64_t>(col_order.element_count()) != nnz)
    return ffi::Error::InvalidArgument("conv_dw: inconsistent shapes");
  const int32_t* cp = col_ptr.typed_data();
  const int32_t* order = col_order.typed_data();
  const int32_t* rows = row_idx.typed_data();
  const float* x = src.typed_data();
  const float* g_dy = dy.typed_data();
  float* out = dv->typed_data();
  const int64_t kk = kh * kw, row = g.row_floats();
  constexpr int kParts = 4;
  const int64_t full = len / (kParts * kLanes) * (kParts * kLanes);
  const int64_t vec_end = len / kLanes * kLanes;
  // Tasks are ranges of the column view, so consecutive entries share dY's
  // plane; the output channel of entry k is found by walking col_ptr.
  ParallelRanges(nnz, TaskCount(), [&](int64_t begin, int64_t end) {
    int64_t d = 0;
    while (cp[d + 1] <= begin) ++d;
    for (int64_t k = begin; k < end; ++k) {
      while (cp[d + 1] <= k) ++d;
      const int64_t e = order[k], r = rows[e], p = r % kk;
      const float* xs = x + g.Offset(r / kk, p / kw, p % kw);
      const float* gs = g_dy + d * ho * len;
      vf acc[kParts];
      for (int v = 0; v < kParts; ++v) acc[v] = vf{};
      float tail = 0.0f;
      for (int64_t h = 0; h < ho; ++h) {
        const float* xr = xs + h * row;
        const float* gr = gs + h * len;
        int64_t q = 0;
        for (; q < full; q += kParts * kLanes)
          for (int v = 0; v < kParts; ++v)
            acc[v] += load(gr + q + v * kLanes) * load(xr + q + v * kLanes);
        for (; q < vec_end; q += kLanes) acc[0] += load(gr + q) * load(xr + q);
        for (; q < len; ++q) tail += gr[q] * xr[q];
      }
      vf sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      out[e] = hsum(sum) + tail;
    }
  });
  return ffi::Error::Success();
}

}  // namespace

#define SNN_CONV_GEOMETRY_ATTRS                  \
  .Attr<int64_t>("channels")  /* src channels */ \
      .Attr<int64_t>("height")                   \
      .Attr<int64_t>("width")                    \
      .Attr<int64_t>("batch")                    \
      .Attr<int64_t>("kh")                       \
      .Attr<int64_t>("kw")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxConvFwd, ConvFwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // padded x [S, Hp, Wp, B]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // values [nnz]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_idx
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_ptr
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_order
                                      SNN_CONV_GEOMETRY_ATTRS
                                  .Ret<ffi::Buffer<ffi::F32>>());  // y [D, Ho, Wo, B]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxConvDx, ConvDxImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy [D, Ho, Wo, B]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // values [nnz]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_ptr
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_idx
                                  .Attr<int64_t>("kh")
                                  .Attr<int64_t>("kw")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dx [S, H, W, B]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SnnJaxConvDw, ConvDwImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // padded x [S, Hp, Wp, B]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy [D, Ho, Wo, B]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // row_idx
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_ptr
                                  .Arg<ffi::Buffer<ffi::S32>>()  // col_order
                                      SNN_CONV_GEOMETRY_ATTRS
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dvalues [nnz]
