// Weight-only quantized GEMV rows for batch-1 decoding: int8 per output row, int4 with a scale and an offset per
// group along K (see `vita/nn/quant.py` for the formats and why). For rows n in [n0, n1) of a matrix view,
// store(n, sum_k w[n, k] * x[k]) with x prepared once per product by `quantize_input`.
//
// Integer dot products. The activation vector is quantized once per product to int16 with one scale for the whole
// vector (round(x / s), s = max |x| / 32767: a relative step of 1/65534 of the largest activation, far below the
// weights' own rounding), and the weights are sign- (int8) or zero- (int4 nibbles) extended to int16 in registers:
// `vpmaddwd` multiplies 16 pairs and adds neighbours into 8 int32 lanes, so 32 int8 weights cost two widenings,
// two multiply-adds and two integer adds instead of the float path's four widenings, four conversions and four
// FMAs. Measured on this project's AVX-512 EPYC VM, one thread, same process (49152 x 576 / 1536 x 576 / 576 x 1536
// int8; many copies so the weights stream from memory): float widening 1.14-1.21 ms / 37-39 us / 32-36 us,
// int16 vpmaddwd 0.76-0.84 ms / 23-24 us / 24-26 us, the same with a 64-weight body and a software prefetch 8 KiB
// ahead 0.57-0.58 ms / 18 us / 18 us (~48 GB/s against ~56 GB/s of plain reading). int8 activations with
// vpmaddubsw or AVX-VNNI (vpdpbusd, vpdpwssd) measured no faster than int16 vpmaddwd once the prefetch is in, and
// would lose precision (int8) or need a runtime CPU dispatch (VNNI); the prefetch distance plateaus from 6 KiB.
//
// int8: each int32 lane sums K / 32 products (|q x| <= 127 * 32767), exact for up to 8192 columns; the lanes are
// added in float (their total would not fit), longer rows in 8192-column chunks. int4: w = nibble * d + m per group,
// so sum_k w x = sum_g d_g sum_k nibble x + sum_g m_g sum_(k in g) x: the first term is integer per block, the
// second uses the group sums of x computed once per product.
//
// AVX2 + FMA + F16C (the int4 scales and offsets are float16, as in GGUF's Q4_1).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bf16_gemv.h"

namespace vita_native {

constexpr int64_t kPrefetch = 8192;  // bytes ahead of the row being read
constexpr int64_t kChunk = 8192;     // int8: columns summed in int32 before a float conversion

// int8 rows: q [N, K] int8, scale [N] float32; w[n, k] = q[n, k] * scale[n]
struct Q8Rows {
  const int8_t* q;
  const float* scale;
};

// int4 rows: q [N, K / 2] uint8, scale and offset [N, K / group] float16 bits. Each block of 32 weights is 16 bytes:
// byte j holds weight j of the block in its low nibble and weight j + 16 in its high nibble, each in [0, 15];
// w[n, k] = nibble * scale[n, k / group] + offset[n, k / group]. group is a multiple of 32, K a multiple of group.
struct Q4Rows {
  const uint8_t* q;
  const uint16_t* scale;
  const uint16_t* offset;
  int64_t group;
};

// x [K] prepared for the integer kernels: q = round(x / scale) in int16; group_sum[g] = sum of x over group g (int4)
struct QInput {
  const int16_t* q;
  float scale;
  const float* group_sum;  // [K / group], or nullptr when group is 0
};

// Quantize x [K] into q [K] (and, for group > 0, its group sums into sums [K / group]); the view of both.
inline QInput quantize_input(const float* x, int64_t K, int16_t* q, float* sums, int64_t group) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vmax = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  float amax = std::max(_mm_cvtss_f32(m4), _mm_cvtss_f32(_mm_movehdup_ps(m4)));
  for (; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  const float scale = amax > 0.f ? amax / 32767.f : 1.f, inv = 1.f / scale;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (k = 0; k + 16 <= K; k += 16) {  // round to nearest even (the default mode), saturate to int16
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), vinv));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8), vinv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8));
  }
  for (; k < K; ++k) q[k] = int16_t(std::lrintf(std::min(32767.f, std::max(-32767.f, x[k] * inv))));
  if (group > 0) {
    for (int64_t g = 0; g < K / group; ++g) {
      float s = 0.f;
      for (int64_t k = g * group; k < (g + 1) * group; ++k) s += x[k];
      sums[g] = s;
    }
  }
  return QInput{q, scale, group > 0 ? sums : nullptr};
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// 16 int8 weights at p times 16 int16 activations at x, pairwise summed into 8 int32 lanes
inline __m256i madd8(const int8_t* p, const int16_t* x) {
  return _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}

// sum_k row[k] * x[k] over [k0, k1) (k1 - k0 <= kChunk): int32 per lane, float across lanes
inline float q8_dot(const int8_t* row, const int16_t* x, int64_t k0, int64_t k1) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = k0;
  for (; k + 64 <= k1; k += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(row + k + kPrefetch), _MM_HINT_T0);
    a0 = _mm256_add_epi32(a0, madd8(row + k, x + k));
    a1 = _mm256_add_epi32(a1, madd8(row + k + 16, x + k + 16));
    a2 = _mm256_add_epi32(a2, madd8(row + k + 32, x + k + 32));
    a3 = _mm256_add_epi32(a3, madd8(row + k + 48, x + k + 48));
  }
  for (; k + 16 <= k1; k += 16) a0 = _mm256_add_epi32(a0, madd8(row + k, x + k));
  const __m256 f = _mm256_add_ps(_mm256_add_ps(_mm256_cvtepi32_ps(a0), _mm256_cvtepi32_ps(a1)),
                                 _mm256_add_ps(_mm256_cvtepi32_ps(a2), _mm256_cvtepi32_ps(a3)));
  float s = hsum(f);
  for (; k < k1; ++k) s += float(int32_t(row[k]) * int32_t(x[k]));
  return s;
}

template <typename Store>
inline void gemv_rows(const Q8Rows& m, int64_t n0, int64_t n1, int64_t K, const QInput& x, Store store) {
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* row = m.q + n * K;
    float s = 0.f;
    for (int64_t k0 = 0; k0 < K; k0 += kChunk) s += q8_dot(row, x.q, k0, std::min(K, k0 + kChunk));
    store(n, s * (m.scale[n] * x.scale));
  }
}

// 16 packed bytes of one int4 block times its 32 int16 activations: 8 int32 lanes of pairwise sums
inline __m256i madd4(__m128i bytes, const int16_t* x) {
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m256i lo = _mm256_cvtepu8_epi16(_mm_and_si128(bytes, low4));                     // weights 0..15
  const __m256i hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(bytes, 4), low4));  // weights 16..31
  return _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))),
                          _mm256_madd_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16))));
}

template <typename Store>
inline void gemv_rows(const Q4Rows& m, int64_t n0, int64_t n1, int64_t K, const QInput& x, Store store) {
  const int64_t blocks = K / 32, groups = K / m.group, per_group = m.group / 32;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = m.q + n * (K / 2);
    const uint16_t* d = m.scale + n * groups;
    const uint16_t* off = m.offset + n * groups;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) {  // two blocks: one horizontal add, one conversion, one FMA
      _mm_prefetch(reinterpret_cast<const char*>(row + 16 * b + kPrefetch), _MM_HINT_T0);
      const __m256i s0 = madd4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b)), x.q + 32 * b);
      const __m256i s1 = madd4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b + 16)), x.q + 32 * b + 32);
      // lanes: block b, b, b + 1, b + 1 | b, b, b + 1, b + 1 (each a sum of 4 products)
      const __m256i h = _mm256_hadd_epi32(s0, s1);
      const uint32_t pair = uint32_t(d[b / per_group]) | (uint32_t(d[(b + 1) / per_group]) << 16);
      const __m128i dd = _mm_unpacklo_epi16(_mm_cvtsi32_si128(int32_t(pair)), _mm_cvtsi32_si128(int32_t(pair)));
      const __m256 scale = _mm256_cvtph_ps(_mm_unpacklo_epi64(dd, dd));  // d_b, d_b, d_b+1, d_b+1, (repeated)
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), scale, acc);
    }
    float s = hsum(acc);
    if (b < blocks) {
      const __m256i s0 = madd4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b)), x.q + 32 * b);
      s += float(hsum_i32(s0)) * _cvtsh_ss(d[b / per_group]);  // an odd last block
    }
    s *= x.scale;
    int64_t g = 0;  // offsets: sum_g m_g * (sum of x over g)
    __m256 macc = _mm256_setzero_ps();
    for (; g + 8 <= groups; g += 8) {
      macc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(off + g))),
                             _mm256_loadu_ps(x.group_sum + g), macc);
    }
    s += hsum(macc);
    for (; g < groups; ++g) s += _cvtsh_ss(off[g]) * x.group_sum[g];
    store(n, s);
  }
}

}  // namespace vita_native
