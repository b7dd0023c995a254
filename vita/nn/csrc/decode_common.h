// Shared pieces of the whole-step decode kernels (decode_step.cpp: batch 1, dense or quantized; decode_batch.cpp:
// several sequences at once, dense): element types, tensor checks, the views of a layer's matrices, attention and
// the element-wise stages. Every function rounds as `vita.models.llm`'s module path does (see decode_step.cpp).
#pragma once

#include <ATen/ATen.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <type_traits>
#include <vector>

#include "bf16_gemv.h"
#include "quant_gemv.h"

namespace vita_native::step {

// The meeting point of a step's threads between stages (~10 a layer). An OpenMP barrier in a process whose libgomp
// manages more threads than there are CPUs (PyTorch's own pool beside this team) spins ~100 times and then sleeps
// on a futex: ~15 us a barrier, ~4.5 ms a step of SmolLM2-135M on 2 cores (bf16 77 tok/s against 113 with
// OMP_WAIT_POLICY=active, measured 2026-12-07). This one spins on an atomic with `pause` for up to `kSpinCycles`
// time-stamp cycles (~1 ms: longer than the one-thread sections between stages), then yields the CPU at every
// check (a thread the OS descheduled does not keep the other one spinning through its time slice).
// Sense by phase: the last thread in resets the count and bumps the phase (release); the others wait for the bump
// (acquire), so every write before the barrier is seen after it.
struct TeamBarrier {
  static constexpr unsigned long long kSpinCycles = 2'000'000;
  std::atomic<int> arrived{0};
  std::atomic<unsigned> phase{0};
  void wait(int nt) {
    if (nt <= 1) return;
    const unsigned p = phase.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == nt - 1) {
      arrived.store(0, std::memory_order_relaxed);
      phase.fetch_add(1, std::memory_order_release);
      return;
    }
    const unsigned long long start = __rdtsc();
    while (phase.load(std::memory_order_acquire) == p) {
      if (__rdtsc() - start < kSpinCycles) _mm_pause();
      else std::this_thread::yield();
    }
  }
};

// f(a, b) for thread t's share [a, b) of [0, N): one contiguous block each (one stream per thread), as
// schedule(static)
template <typename F>
inline void my_share(int64_t N, int t, int nt, F f) {
  const int64_t a = N * t / nt, b = N * (t + 1) / nt;
  if (a < b) f(a, b);
}

// E, the element type of weights, caches and logits: uint16_t (bf16 bits) or float. The float32 variant rounds
// nowhere, the bf16 one wherever the module path holds a bf16 tensor.
template <typename E> constexpr at::ScalarType kDtype = std::is_same_v<E, float> ? at::kFloat : at::kBFloat16;
inline float to_f(uint16_t h) { return bf16_to_float(h); }
inline float to_f(float f) { return f; }
template <typename E> inline E from_f(float f) {
  if constexpr (std::is_same_v<E, float>) return f; else return float_to_bf16(f);
}
template <typename E> inline float rnd(float f) {
  if constexpr (std::is_same_v<E, float>) return f; else return round_bf16(f);
}

template <typename E> const E* ptr(const at::Tensor& t) { return reinterpret_cast<const E*>(t.data_ptr()); }

inline void check(const at::Tensor& t, at::ScalarType dtype, const char* what, std::vector<int64_t> shape) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous(), "decode_step: ", what,
              " must be a contiguous ", dtype, " CPU tensor, got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), "decode_step: ", what, " has shape ", t.sizes(), ", expected ",
              at::IntArrayRef(shape));
}

constexpr int64_t kPerLayer = 12;

// W, the view of one weight matrix: `const E*` (dense rows), Q8Rows or Q4Rows (quant_gemv.h)
template <typename W>
struct Part {  // one matrix of a stack of GEMVs over the same input
  W w;
  int64_t rows;
};

template <typename E, typename W>
struct Layer {
  const E* attn_norm;
  Part<W> qkv[3];
  const E* bias[3];
  W wo;
  const E* ffn_norm;
  Part<W> gate_up[2];
  W w2;
  E *k_cache, *v_cache;
};

// The view of weight matrix `w` [rows, cols] (and its scales and offsets for a quantized W), checked.
template <typename E, typename W>
W matrix(const at::Tensor& w, const at::Tensor* scale, const at::Tensor* offset, int64_t rows, int64_t cols,
         int64_t group, const char* what) {
  if constexpr (std::is_same_v<W, const E*>) {
    check(w, kDtype<E>, what, {rows, cols});
    return ptr<E>(w);
  } else if constexpr (std::is_same_v<W, Q8Rows>) {
    check(w, at::kChar, what, {rows, cols});
    check(*scale, at::kFloat, what, {rows});
    return Q8Rows{ptr<int8_t>(w), ptr<float>(*scale)};
  } else {
    TORCH_CHECK(cols % group == 0, "decode_step: ", what, ": K = ", cols, " is not a multiple of the group ", group);
    check(w, at::kByte, what, {rows, cols / 2});
    check(*scale, at::kHalf, what, {rows, cols / group});
    check(*offset, at::kHalf, what, {rows, cols / group});
    return Q4Rows{ptr<uint8_t>(w), ptr<uint16_t>(*scale), ptr<uint16_t>(*offset), group};
  }
}

// The views of every layer's norms, biases and matrices (`layers`: kPerLayer tensors per layer, see decode_step.cpp;
// `scales` / `offsets` as there), checked; the cache pointers are left for the caller.
template <typename E, typename W>
std::vector<Layer<E, W>> read_layers(at::TensorList layers, at::TensorList scales, at::TensorList offsets, int64_t L,
                                     int64_t D, int64_t Q, int64_t KV, int64_t I, int64_t group, bool bias) {
  constexpr bool q4 = std::is_same_v<W, Q4Rows>;
  constexpr bool dense = std::is_same_v<W, const E*>;
  std::vector<Layer<E, W>> ls(L);
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor* t = layers.data() + kPerLayer * l;
    const at::Tensor* sc = dense ? nullptr : scales.data() + 7 * l;
    const at::Tensor* of = q4 ? offsets.data() + 7 * l : nullptr;
    const auto mat = [&](int i, int64_t rows, int64_t cols, const char* what) {
      const int j = i == 7 ? 3 : i < 4 ? i - 1 : i - 5;  // index among wq, wk, wv, wo, w1, w3, w2
      return matrix<E, W>(t[i], dense ? nullptr : sc + j, q4 ? of + j : nullptr, rows, cols, group, what);
    };
    check(t[0], kDtype<E>, "attention_norm", {D});
    for (int i = 0; i < 3; ++i) {
      TORCH_CHECK((t[4 + i].numel() > 0) == bias, "decode_step: q/k/v biases given for some projections only");
      if (bias) check(t[4 + i], kDtype<E>, i == 0 ? "bq" : i == 1 ? "bk" : "bv", {i == 0 ? Q : KV});
    }
    check(t[8], kDtype<E>, "ffn_norm", {D});
    Layer<E, W>& ly = ls[l];
    ly.attn_norm = ptr<E>(t[0]);
    ly.qkv[0] = {mat(1, Q, D, "wq"), Q};
    ly.qkv[1] = {mat(2, KV, D, "wk"), KV};
    ly.qkv[2] = {mat(3, KV, D, "wv"), KV};
    for (int i = 0; i < 3; ++i) ly.bias[i] = bias ? ptr<E>(t[4 + i]) : nullptr;
    ly.wo = mat(7, D, Q, "wo");
    ly.ffn_norm = ptr<E>(t[8]);
    ly.gate_up[0] = {mat(9, I, D, "w1"), I};
    ly.gate_up[1] = {mat(10, I, D, "w3"), I};
    ly.w2 = mat(11, D, I, "w2");
  }
  return ls;
}

// 8 cache entries (bf16 bits or float32) as float32
inline __m256 load8(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }

// sum_i q[i] * k[i] over one head (n floats against n cache entries)
template <typename E>
inline float dot(const float* q, const E* k, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k + i + 8), a1);
  }
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) s += q[i] * to_f(k[i]);
  return s;
}

// o[i] += p * v[i] over one head
template <typename E>
inline void axpy(float p, const E* v, float* o, int64_t n) {
  const __m256 pv = _mm256_set1_ps(p);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, _mm256_fmadd_ps(pv, load8(v + i), _mm256_loadu_ps(o + i)));
  for (; i < n; ++i) o[i] += p * to_f(v[i]);
}

// One query head's attention over the T cached positions of its KV head: o [Dh] = softmax(q . k / sqrt(Dh)) v,
// rounded to E as the module path's attention output; sc: T floats of scratch (the scores). With k_now / v_now the
// last position is read from them (float32 values already rounded to E, so the same numbers the cache would hold)
// instead of the cache: the batch-1 step attends before its own cache entry is written.
template <typename E>
inline void attend(const float* q, const E* kc, const E* vc, int64_t T, int64_t Dh, float scale, float* sc, float* o,
                   const float* k_now = nullptr, const float* v_now = nullptr) {
  const int64_t cached = k_now ? T - 1 : T;
  float best = -INFINITY;
  for (int64_t j = 0; j < T; ++j) {
    sc[j] = (j < cached ? dot(q, kc + j * Dh, Dh) : dot(q, k_now, Dh)) * scale;
    best = std::max(best, sc[j]);
  }
  float total = 0.f;
  for (int64_t j = 0; j < T; ++j) total += (sc[j] = std::exp(sc[j] - best));
  std::fill(o, o + Dh, 0.f);
  for (int64_t j = 0; j < T; ++j) {
    if (j < cached) axpy(sc[j] / total, vc + j * Dh, o, Dh);
    else axpy(sc[j] / total, v_now, o, Dh);
  }
  for (int64_t i = 0; i < Dh; ++i) o[i] = rnd<E>(o[i]);
}

// out = weight * (x / rms(x)), rounded as `vita.nn.norm.RMSNorm` rounds in E
template <typename E>
void rms_norm(const float* x, const E* weight, int64_t D, float eps, float* out) {
  float ss = 0.f;
  for (int64_t i = 0; i < D; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / float(D) + eps);
  for (int64_t i = 0; i < D; ++i) out[i] = rnd<E>(to_f(weight[i]) * rnd<E>(x[i] * inv));
}

// rotate_half RoPE on one head in place, cos/sin rows already rounded to E (the module casts the tables)
template <typename E>
void rope(float* h, const float* c, const float* s, int64_t Dh) {
  const int64_t half = Dh / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = h[i], b = h[i + half];
    h[i] = rnd<E>(a * c[i] - b * s[i]);
    h[i + half] = rnd<E>(b * c[i + half] + a * s[i + half]);
  }
}

}  // namespace vita_native::step
