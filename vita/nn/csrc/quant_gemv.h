// Weight-only quantized GEMV rows for batch-1 decoding: int8 per output row, int4 in groups along K (see
// `vita/nn/quant.py` for the formats and why). Same contract as `gemv_rows` in bf16_gemv.h: for rows n in [n0, n1)
// of a matrix view, store(n, sum_k w[n, k] * x[k]) with the sum in float32 (x_split is unused: quantized rows are
// widened in order). Activations stay float32: weights are widened int8 -> int32 -> float32 in registers and the
// scale multiplies the row (int8) or block (int4) sum, so the only error is the weights' own rounding.
//
// AVX2 + FMA only. AVX-512 widening (vpmovsxbd zmm) was tried and measured slower on this project's AVX-512 EPYC VM:
// a 49152 x 576 int8 GEMV on one thread took 2.75 ms against 1.27 ms with AVX2 (22 GB/s, as fast as bf16 streams),
// int4 2.45 ms either way. VNNI (vpdpbusd) would need the activations quantized to int8 too (an extra error
// source); the int8 path is already memory-bound without it.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "bf16_gemv.h"

namespace vita_native {

// int8 rows: q [N, K] int8, scale [N] float32; w[n, k] = q[n, k] * scale[n]
struct Q8Rows {
  const int8_t* q;
  const float* scale;
};

// int4 rows: q [N, K / 2] uint8, scale [N, K / group] bf16 bits. Each block of 32 weights is 16 bytes: byte j holds
// weight j of the block in its low nibble and weight j + 16 in its high nibble, both as (value + 8) in [0, 15];
// w[n, k] = (nibble - 8) * scale[n, k / group]. group is a multiple of 32, K a multiple of group.
struct Q4Rows {
  const uint8_t* q;
  const uint16_t* scale;
  int64_t group;
};

inline __m256 widen8(const int8_t* p) {  // 8 int8 -> 8 float32
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <typename Store>
inline void q8_rows_avx2(const Q8Rows& m, int64_t n0, int64_t n1, int64_t K, const float* x, Store store) {
  const int64_t K32 = K / 32 * 32;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* row = m.q + n * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K32; k += 32) {
      a0 = _mm256_fmadd_ps(widen8(row + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(widen8(row + k + 8), _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(widen8(row + k + 16), _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(widen8(row + k + 24), _mm256_loadu_ps(x + k + 24), a3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int64_t k = K32; k < K; ++k) s += float(row[k]) * x[k];
    store(n, s * m.scale[n]);
  }
}

template <typename Store>
inline void gemv_rows(const Q8Rows& m, int64_t n0, int64_t n1, int64_t K, const float* /*x_split*/, const float* x,
                      Store store) {
  q8_rows_avx2(m, n0, n1, K, x, store);
}

template <typename Store>
inline void q4_rows_avx2(const Q4Rows& m, int64_t n0, int64_t n1, int64_t K, const float* x, Store store) {
  const __m128i low4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
  const int64_t blocks = K / 32, groups = K / m.group, per_group = m.group / 32;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = m.q + n * (K / 2);
    const uint16_t* sc = m.scale + n * groups;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t b = 0; b < blocks; ++b) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, low4), eight);                     // weights 0..15
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low4), eight);  // weights 16..31
      const float* xb = x + 32 * b;
      __m256 g0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(xb));
      __m256 g1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(xb + 16));
      g0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(xb + 8),
                           g0);
      g1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))),
                           _mm256_loadu_ps(xb + 24), g1);
      const __m256 s = _mm256_set1_ps(bf16_to_float(sc[b / per_group]));
      if (b & 1) acc1 = _mm256_fmadd_ps(_mm256_add_ps(g0, g1), s, acc1);
      else acc0 = _mm256_fmadd_ps(_mm256_add_ps(g0, g1), s, acc0);
    }
    store(n, hsum(_mm256_add_ps(acc0, acc1)));
  }
}

template <typename Store>
inline void gemv_rows(const Q4Rows& m, int64_t n0, int64_t n1, int64_t K, const float* /*x_split*/, const float* x,
                      Store store) {
  q4_rows_avx2(m, n0, n1, K, x, store);
}

}  // namespace vita_native
