// Shared pieces of the native kernels: bf16 <-> float32 and the AVX2 bf16 GEMV over a block of rows.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace vita_native {

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// float32 -> bf16 bits, round to nearest even, NaN -> the canonical quiet NaN: exactly as c10::BFloat16
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// the value PyTorch holds after storing f in a bf16 tensor
inline float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// x_split[k..k+16) = the 8 even then the 8 odd elements of x[k..k+16), for every whole 16-block: the order in which
// gemv_rows widens a row's bf16 pairs in registers
inline void split_even_odd(const float* x, int64_t K, float* x_split) {
  for (int64_t k = 0; k + 16 <= K; k += 16) {
    for (int j = 0; j < 8; ++j) {
      x_split[k + j] = x[k + 2 * j];
      x_split[k + 8 + j] = x[k + 2 * j + 1];
    }
  }
}

// For rows n in [n0, n1) of w [N, K] (bf16 bits): store(n, sum_k w[n, k] * x[k]) with the sum in float32.
// Each 32 weights are two 256-bit loads widened in registers (a bf16 is the top half of a float32: even elements
// by a 16-bit left shift of each 32-bit lane, odd ones by masking the low half), four independent FMA chains.
template <typename Store>
inline void gemv_rows(const uint16_t* w, int64_t n0, int64_t n1, int64_t K, const float* x_split, const float* x,
                      Store store) {
  const __m256i high_half = _mm256_set1_epi32(int32_t(0xffff0000u));
  const int64_t K32 = K / 32 * 32;
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* row = w + n * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K32; k += 32) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k + 16));
      a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), _mm256_loadu_ps(x_split + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, high_half)), _mm256_loadu_ps(x_split + k + 8),
                           a1);
      a2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), _mm256_loadu_ps(x_split + k + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, high_half)), _mm256_loadu_ps(x_split + k + 24),
                           a3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int64_t k = K32; k < K; ++k) s += bf16_to_float(row[k]) * x[k];
    store(n, s);
  }
}

}  // namespace vita_native

namespace vita_native {

// The float32 counterpart of gemv_rows (same contract; x_split is unused: float32 rows need no reordering).
template <typename Store>
inline void gemv_rows(const float* w, int64_t n0, int64_t n1, int64_t K, const float* /*x_split*/, const float* x,
                      Store store) {
  const int64_t K32 = K / 32 * 32;
  for (int64_t n = n0; n < n1; ++n) {
    const float* row = w + n * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K32; k += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(row + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(row + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int64_t k = K32; k < K; ++k) s += row[k] * x[k];
    store(n, s);
  }
}

}  // namespace vita_native

namespace vita_native {

// Row `row` (K bf16 weights) against NB inputs at once: out[b] = sum_k row[k] * x_b[k], each sum in exactly
// gemv_rows's order (the same four FMA chains, the same tail), so every result equals gemv_rows's bit for bit; the
// row is widened once for the NB inputs. split[b]: x_b in split_even_odd order, x[b]: x_b itself (the tail).
template <int NB>
inline void dot_rows(const uint16_t* row, int64_t K, const float* const* split, const float* const* x, float* out) {
  const __m256i high_half = _mm256_set1_epi32(int32_t(0xffff0000u));
  const int64_t K32 = K / 32 * 32;
  __m256 a[NB][4];
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 4; ++j) a[b][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K32; k += 32) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k + 16));
    const __m256 w[4] = {_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)),
                         _mm256_castsi256_ps(_mm256_and_si256(v0, high_half)),
                         _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)),
                         _mm256_castsi256_ps(_mm256_and_si256(v1, high_half))};
    for (int b = 0; b < NB; ++b)
      for (int j = 0; j < 4; ++j) a[b][j] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(split[b] + k + 8 * j), a[b][j]);
  }
  for (int b = 0; b < NB; ++b) {
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a[b][0], a[b][1]), _mm256_add_ps(a[b][2], a[b][3])));
    for (int64_t k = K32; k < K; ++k) s += bf16_to_float(row[k]) * x[b][k];
    out[b] = s;
  }
}

// The float32 counterpart (split unused), in the float32 gemv_rows's order.
template <int NB>
inline void dot_rows(const float* row, int64_t K, const float* const* /*split*/, const float* const* x, float* out) {
  const int64_t K32 = K / 32 * 32;
  __m256 a[NB][4];
  for (int b = 0; b < NB; ++b)
    for (int j = 0; j < 4; ++j) a[b][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K32; k += 32) {
    for (int j = 0; j < 4; ++j) {
      const __m256 w = _mm256_loadu_ps(row + k + 8 * j);
      for (int b = 0; b < NB; ++b) a[b][j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[b] + k + 8 * j), a[b][j]);
    }
  }
  for (int b = 0; b < NB; ++b) {
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a[b][0], a[b][1]), _mm256_add_ps(a[b][2], a[b][3])));
    for (int64_t k = K32; k < K; ++k) s += row[k] * x[b][k];
    out[b] = s;
  }
}

// Rows n in [n0, n1) of w [N, K] against B inputs: store(b, n, sum) for every b, each row read from memory once
// (the inputs taken two at a time while the row stays in L1: 8 accumulators, no spills).
template <typename E, typename Store>
inline void gemv_rows_multi(const E* w, int64_t n0, int64_t n1, int64_t K, int B, const float* const* split,
                            const float* const* x, Store store) {
  float out[2];
  for (int64_t n = n0; n < n1; ++n) {
    const E* row = w + n * K;
    for (int b = 0; b < B; b += 2) {
      const int m = std::min(2, B - b);
      if (m == 2) dot_rows<2>(row, K, split + b, x + b, out);
      else dot_rows<1>(row, K, split + b, x + b, out);
      for (int i = 0; i < m; ++i) store(b + i, n, out[i]);
    }
  }
}

}  // namespace vita_native

namespace vita_native {

// AVX512-BF16 rows (`vdpbf16ps`: 32 bf16 products summed into 16 float32 lanes per instruction, against the AVX2
// path's 4 FMAs and 4 widenings per 32 weights). Used where the CPU has it, unless VITA_NATIVE_DPBF16=0; both the
// batch-1 step and the batched one take the same path, so their rows stay equal bit for bit. The input must be
// bf16 (`xb`): every stage input of the decode kernels is already rounded to bf16, so converting it is exact.
#define VITA_DPBF16 __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))

inline bool has_dpbf16() {
  static const bool yes = [] {
    const char* env = std::getenv("VITA_NATIVE_DPBF16");
    return __builtin_cpu_supports("avx512bf16") && !(env != nullptr && env[0] == '0');
  }();
  return yes;
}

// out[b] = sum_k row[k] * xb_b[k] for NB inputs (bf16 bits): four accumulators per input over 128-weight blocks
// (independent chains: the instruction's latency is hidden within a row), then one per 32-weight block left
template <int NB>
VITA_DPBF16 inline void dot_rows_dp(const uint16_t* row, int64_t K, const uint16_t* const* xb, float* out) {
  __m512 a[NB][4];
  for (int b = 0; b < NB; ++b) a[b][0] = a[b][1] = a[b][2] = a[b][3] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 128 <= K; k += 128) {
    __m512bh w[4];
    for (int j = 0; j < 4; ++j) w[j] = (__m512bh)_mm512_loadu_si512(row + k + 32 * j);
    for (int b = 0; b < NB; ++b)
      for (int j = 0; j < 4; ++j)
        a[b][j] = _mm512_dpbf16_ps(a[b][j], w[j], (__m512bh)_mm512_loadu_si512(xb[b] + k + 32 * j));
  }
  for (int j = 0; k + 32 <= K; k += 32, ++j) {
    const __m512bh w = (__m512bh)_mm512_loadu_si512(row + k);
    for (int b = 0; b < NB; ++b) a[b][j] = _mm512_dpbf16_ps(a[b][j], w, (__m512bh)_mm512_loadu_si512(xb[b] + k));
  }
  for (int b = 0; b < NB; ++b) {
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[b][0], a[b][1]), _mm512_add_ps(a[b][2], a[b][3])));
    for (int64_t i = k; i < K; ++i) s += bf16_to_float(row[i]) * bf16_to_float(xb[b][i]);
    out[b] = s;
  }
}

// Rows n in [n0, n1) of w [N, K] against B bf16 inputs, up to 6 at a time (24 accumulators): store(b, n, sum)
template <typename Store>
VITA_DPBF16 inline void gemv_rows_dp(const uint16_t* w, int64_t n0, int64_t n1, int64_t K, int B,
                                     const uint16_t* const* xb, Store store) {
  float out[6];
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* row = w + n * K;
    for (int b = 0; b < B; b += 6) {
      const int m = std::min(6, B - b);
      switch (m) {
        case 6: dot_rows_dp<6>(row, K, xb + b, out); break;
        case 5: dot_rows_dp<5>(row, K, xb + b, out); break;
        case 4: dot_rows_dp<4>(row, K, xb + b, out); break;
        case 3: dot_rows_dp<3>(row, K, xb + b, out); break;
        case 2: dot_rows_dp<2>(row, K, xb + b, out); break;
        default: dot_rows_dp<1>(row, K, xb + b, out); break;
      }
      for (int i = 0; i < m; ++i) store(b + i, n, out[i]);
    }
  }
}

}  // namespace vita_native
