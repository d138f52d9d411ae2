// The runtime every native CPU kernel file of snn_jax shares: the target's
// vector type, loads and stores, bfloat16 conversions, and the thread pool
// with its ParallelFor (kernels/native/bsmm_cpu.cc, conv_cpu.cc). Everything
// here is inline in one named namespace, so the kernel files of one module
// share a single pool and a single thread-count setting.
#ifndef SNN_JAX_KERNELS_NATIVE_CPU_RUNTIME_H_
#define SNN_JAX_KERNELS_NATIVE_CPU_RUNTIME_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

#include <unistd.h>

#include "xla/ffi/api/ffi.h"

namespace snn_native {

namespace ffi = xla::ffi;

// ---------------------------------------------------------------------------
// Vectors: GCC/Clang vector extensions, one vf = one register of the target
// (AVX-512: 16 float lanes, 32 registers; AVX/AVX2: 8 lanes, 16 registers;
// NEON: 4 lanes, 32; anything else: 4 lanes as SSE, 16 -- the portable
// fallback is the compiler's lowering). Every register tile below is sized
// from these two numbers so that its accumulators and operands fit the
// register file: a tile that spills runs several times slower (measured:
// the AVX-512 tiles compiled for an AVX2 machine ran its block-size-1
// forward 2.3x slower than tiles sized for it, BUILD_NOTES.md).
#if defined(__AVX512F__)
constexpr int kLanes = 16, kVecRegs = 32;
#elif defined(__AVX__)
constexpr int kLanes = 8, kVecRegs = 16;
#elif defined(__aarch64__)
constexpr int kLanes = 4, kVecRegs = 32;
#else
constexpr int kLanes = 4, kVecRegs = 16;
#endif
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));

constexpr int Clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(vf));
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(vf)); }
// A broadcast. s - 0.0 is s for every float (-0.0 included), so the
// compiler folds the subtraction away; `vf{} + s` is not (it turns -0.0
// into +0.0), and its scalar add sat in every innermost loop.
inline vf splat(float s) { return s - vf{}; }

inline float hsum(vf v) {  // a fixed tree: the same bits every time
  float t[kLanes];
  std::memcpy(t, &v, sizeof(vf));
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int i = 0; i < w; ++i) t[i] = t[i] + t[i + w];
  return t[0];
}

// bfloat16 <-> float32.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

template <typename T> inline float to_f32(T v);
template <> inline float to_f32<float>(float v) { return v; }
template <> inline float to_f32<uint16_t>(uint16_t v) { return bf16_to_f32(v); }
template <typename T> inline T from_f32(float v);
template <> inline float from_f32<float>(float v) { return v; }
template <> inline uint16_t from_f32<uint16_t>(float v) { return f32_to_bf16(v); }

// Stores one vector to kLanes elements of T (bfloat16: rounded per lane).
template <typename T>
inline void StoreAs(T* out, vf v) {
  if constexpr (std::is_same_v<T, float>) {
    store(out, v);
  } else {
    float tmp[kLanes];
    store(tmp, v);
    for (int l = 0; l < kLanes; ++l) out[l] = from_f32<T>(tmp[l]);
  }
}

// ---------------------------------------------------------------------------
// Thread pool. Work is split into a fixed list of tasks; which thread runs a
// task does not change any result. The calling thread works too, and a call
// that finds the pool busy (another kernel running concurrently) runs its
// tasks itself, so no call ever waits on another.
// Hand-offs spin before they sleep: a worker that finished a job watches for
// the next one for kSpinMicros, and the caller watches for the workers'
// last tasks as long, before either waits on a condition variable. Waking a
// sleeping thread through the kernel took ~80 us per call on the 2-core VM
// (a 1000 x 1000 forward at density 0.04 ran no faster on two threads than
// on one); the kernels of one training step come back to back, well within
// the spin. Spinning stops after kSpinMicros, so an idle process sleeps.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

#ifndef SNN_SPIN_MICROS
#define SNN_SPIN_MICROS 100
#endif
constexpr int kSpinMicros = SNN_SPIN_MICROS;

// Spins until pred() or kSpinMicros have passed; returns pred().
template <typename Pred>
inline bool SpinFor(Pred&& pred) {
  if (pred()) return true;
  if constexpr (kSpinMicros <= 0) return false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
  for (int i = 1;; ++i) {
    for (int j = 0; j < 16; ++j) CpuRelax();
    if (pred()) return true;
    if (i % 8 == 0 && std::chrono::steady_clock::now() >= until) return false;
  }
}
// Which threads run a call's tasks. kXla (the default): XLA's own
// intra-op pool, handed to every handler through the FFI
// (ffi::Ctx<ffi::ThreadPool>) -- the threads that also run XLA's
// partitioned fusions, so a training step's kernels and fusions share one
// set of threads. kOwn: a pool of this module's own, whose workers spin for
// kSpinMicros after each job so that back-to-back calls skip the wake-up;
// on the 2-core VM those spinning workers held a core while XLA's
// two-partition fusions (a ReLU, a bias add) waited for it, and the fusions
// ran 2-3x slower beside them (BUILD_NOTES.md). kOwn stays for calls that
// come without XLA's pool and as the measured alternative.
enum class PoolKind : int { kXla = 0, kOwn = 1 };

inline PoolKind DefaultPoolKind() {
  if (const char* env = std::getenv("SNN_JAX_NATIVE_POOL"))
    if (std::strcmp(env, "own") == 0) return PoolKind::kOwn;
  return PoolKind::kXla;
}

inline std::atomic<int>& PoolKindSetting() {
  static std::atomic<int> kind{static_cast<int>(DefaultPoolKind())};
  return kind;
}

class Pool {
 public:
  static Pool& Get() {
    static std::mutex init_mu;
    static Pool* pool = nullptr;
    std::lock_guard<std::mutex> lock(init_mu);
    // After fork() the child has none of the parent's threads: start anew
    // (the parent's pool object is left behind on purpose).
    if (pool == nullptr || pool->pid_ != getpid()) pool = new Pool(DefaultThreads());
    return *pool;
  }

  static int DefaultThreads() {
    if (const char* env = std::getenv("SNN_JAX_NATIVE_THREADS")) {
      int n = std::atoi(env);
      if (n >= 1) return n;
    }
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }

  int threads() const { return limit_.load(); }
  void set_threads(int n) { limit_.store(std::max(1, std::min(n, size_))); }

  void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
    if (n <= 1 || limit_.load() <= 1 || !run_mu_.try_lock()) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    StartWorkers();
    Job job{&fn, n};
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      wanted_ = limit_.load() - 1;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    Run(&job);
    {
      // No worker joins after this; those that joined finish their tasks.
      std::lock_guard<std::mutex> lock(mu_);
      job_ = nullptr;
    }
    if (!SpinFor([&] { return busy_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [&] { return busy_.load() == 0; });
    }
    run_mu_.unlock();
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* fn;
    int64_t n;
    std::atomic<int64_t> next{0};
  };

  explicit Pool(int n_threads) : pid_(getpid()), size_(n_threads), limit_(n_threads) {}

  // The workers start with the first job that wants them: with XLA's pool
  // in use they never start.
  void StartWorkers() {
    if (started_) return;
    started_ = true;
    for (int i = 0; i + 1 < size_; ++i) std::thread([this] { Work(); }).detach();
  }

  static void Run(Job* job) {
    for (;;) {
      int64_t i = job->next.fetch_add(1);
      if (i >= job->n) return;
      (*job->fn)(i);
    }
  }

  void Work() {
    uint64_t seen = 0;
    for (;;) {
      Job* job;
      SpinFor([&] { return generation_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (job_ == nullptr || wanted_ <= 0) continue;
        --wanted_;
        job = job_;
        busy_.fetch_add(1);
      }
      Run(job);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (busy_.fetch_sub(1) == 1) done_cv_.notify_all();
      }
    }
  }

  pid_t pid_;
  const int size_;
  std::atomic<int> limit_;
  bool started_ = false;  // guarded by run_mu_
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  Job* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  int wanted_ = 0;
  std::atomic<int> busy_{0};
};

// XLA's intra-op pool of the call this thread is running (null outside a
// handler, or where XLA passed none); set by XlaPoolScope.
inline thread_local ffi::ThreadPool* tl_xla_pool = nullptr;

class XlaPoolScope {
 public:
  explicit XlaPoolScope(ffi::ThreadPool& pool) : saved_(tl_xla_pool) {
    tl_xla_pool = pool.num_threads() > 0 ? &pool : nullptr;
  }
  ~XlaPoolScope() { tl_xla_pool = saved_; }

 private:
  ffi::ThreadPool* saved_;
};

// fn(0 .. n-1) on the calling thread and up to threads()-1 helpers scheduled
// on XLA's pool. Helpers take tasks from a shared counter, so a helper that
// starts late (its thread busy with another of XLA's tasks) finds the work
// done and leaves; the caller waits only for helpers inside a task. The
// caller runs tasks too, so the call finishes even if no helper ever runs.
inline void XlaParallelFor(ffi::ThreadPool& pool, int helpers, int64_t n,
                    const std::function<void(int64_t)>& fn) {
  struct Shared {
    const std::function<void(int64_t)>* fn;
    int64_t n;
    std::atomic<int64_t> next{0};
    std::atomic<int> active{0};
    std::atomic<bool> closed{false};
    void Run() {
      for (int64_t i; (i = next.fetch_add(1)) < n;) (*fn)(i);
    }
  };
  auto shared = std::make_shared<Shared>();
  shared->fn = &fn;
  shared->n = n;
  for (int h = 0; h < helpers; ++h)
    pool.Schedule([shared] {
      // Sequentially consistent: either the caller sees this helper active
      // and waits for it, or the helper sees the call closed and leaves
      // without touching fn.
      shared->active.fetch_add(1);
      if (!shared->closed.load()) shared->Run();
      shared->active.fetch_sub(1);
    });
  shared->Run();
  shared->closed.store(true);
  while (shared->active.load() != 0) CpuRelax();
}

inline int Threads() { return Pool::Get().threads(); }

// fn(0 .. n-1), tasks spread over the threads of the configured pool.
inline void ParallelFor(int64_t n, const std::function<void(int64_t)>& fn) {
  const int limit = Threads();
  if (n <= 1 || limit <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  if (tl_xla_pool != nullptr &&
      PoolKindSetting().load() == static_cast<int>(PoolKind::kXla)) {
    const int64_t xla_threads = tl_xla_pool->num_threads();
    const int helpers = static_cast<int>(
        std::min<int64_t>({limit - 1, xla_threads - 1, n - 1}));
    if (helpers > 0) {
      XlaParallelFor(*tl_xla_pool, helpers, n, fn);
      return;
    }
  }
  Pool::Get().ParallelFor(n, fn);
}

// Splits [0, n) into about `parts` contiguous ranges; fn(begin, end).
inline void ParallelRanges(int64_t n, int64_t parts,
                    const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;  // nothing to split (and no step of zero to divide by)
  parts = std::max<int64_t>(1, std::min(parts, n));
  int64_t step = (n + parts - 1) / parts;
  int64_t tasks = (n + step - 1) / step;
  ParallelFor(tasks, [&](int64_t t) {
    fn(t * step, std::min(n, (t + 1) * step));
  });
}

inline int64_t TaskCount() { return 4 * static_cast<int64_t>(Threads()); }

}  // namespace snn_native

#endif  // SNN_JAX_KERNELS_NATIVE_CPU_RUNTIME_H_
