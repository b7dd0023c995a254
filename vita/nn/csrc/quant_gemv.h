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
// ahead 0.57-0.58 ms / 18 us / 18 us (~48 GB/s against ~56 GB/s of plain reading). Without the prefetch, int8
// activations per block of 32 with vpmaddubsw or AVX-VNNI vpdpbusd, and AVX-VNNI vpdpwssd on int16, measured
// 0.69-0.75 ms / 20-22 us / 23-25 us: no better than vpmaddwd with it, and they would lose precision (int8) or need
// a run-time CPU dispatch (VNNI). The prefetch distance plateaus from 6 KiB.
//
// int8: each int32 lane sums K / 32 products (|q x| <= 127 * 32767), exact for up to 8192 columns; the lanes are
// added in float (their total would not fit), longer rows in 8192-column chunks. int4: w = nibble * d + m per group,
// so sum_k w x = sum_g d_g sum_k nibble x + sum_g m_g sum_(k in g) x: the first term is integer per block, the
// second uses the group sums of x computed once per product (the int4 kernel: above `q4_rows`).
//
// AVX2 + FMA + F16C (the int4 scales and offsets are float16, as in GGUF's Q4_1).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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

// x [K] prepared for the integer kernels: q = round(x / scale) in int16. For int4 rows (group > 0) also its bytes,
// q = 256 hi + lo with hi signed and lo unsigned (both exact), each laid out per pair of blocks (b, b + 1) as the
// kernel's nibbles come: x_b[0..16), x_b+1[0..16), x_b[16..32), x_b+1[16..32); group_sum[g] = sum of x over group g
// (for the offsets).
struct QInput {
  const int16_t* q;
  float scale;
  const int8_t* hi;
  const uint8_t* lo;
  const float* group_sum;  // [K / group], or nullptr when group is 0
};

// The buffers behind a QInput for inputs of up to `capacity` elements.
struct QWork {
  std::vector<int16_t> q;
  std::vector<int8_t> hi;
  std::vector<uint8_t> lo;
  std::vector<float> sums;
  explicit QWork(int64_t capacity) : q(capacity), hi(capacity + 64), lo(capacity + 64), sums(capacity / 32 + 1) {}
};

// The bytes of w.q [K] (K a multiple of 32) into w.hi / w.lo, in the QInput layout
inline void split_bytes(int64_t K, QWork& w) {
  const __m256i low8 = _mm256_set1_epi16(0xff);
  for (int64_t b = 0; b < K / 32; ++b) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.q.data() + 32 * b));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.q.data() + 32 * b + 16));
    const __m256i hi = _mm256_permute4x64_epi64(
        _mm256_packs_epi16(_mm256_srai_epi16(v0, 8), _mm256_srai_epi16(v1, 8)), 0xd8);  // x_b[0..32) in order
    const __m256i lo = _mm256_permute4x64_epi64(
        _mm256_packus_epi16(_mm256_and_si256(v0, low8), _mm256_and_si256(v1, low8)), 0xd8);
    const int64_t at = 64 * (b / 2) + 16 * (b % 2);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w.hi.data() + at), _mm256_castsi256_si128(hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w.hi.data() + at + 32), _mm256_extracti128_si256(hi, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w.lo.data() + at), _mm256_castsi256_si128(lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w.lo.data() + at + 32), _mm256_extracti128_si256(lo, 1));
  }
}

// Quantize x [K] for the kernels of int8 rows (and, for group > 0, of int4 rows: K a multiple of group).
inline QInput quantize_input(const float* x, int64_t K, int64_t group, QWork& w) {
  int16_t* q = w.q.data();
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
  if (group == 0) return QInput{q, scale, nullptr, nullptr, nullptr};
  split_bytes(K, w);
  for (int64_t g = 0; g < K / group; ++g) {
    float s = 0.f;
    for (int64_t i = g * group; i < (g + 1) * group; ++i) s += x[i];
    w.sums[g] = s;
  }
  return QInput{q, scale, w.hi.data(), w.lo.data(), w.sums.data()};
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

// int4 rows: per pair of blocks, one 32-byte load holds both blocks' nibbles; masking gives weights 0..15 of block b
// (low lane) and b + 1 (high lane), shifting gives weights 16..31. vpmaddubsw multiplies unsigned by signed bytes
// with pairs summed in int16: nibble x hi byte of x (|pair| <= 2 * 15 * 128) and lo byte of x x nibble (<= 2 * 255
// * 15); the halves add in int16 (<= 15300), vpmaddwd by 256 and by 1 widens them into 4 int32 lanes per block, one
// conversion and one FMA by (d_b x4, d_b+1 x4). ~18 instructions per 64 weights, against ~26 with int16 widening
// (4 zero-extensions, 4 vpmaddwd, a horizontal add). int8 activations per block of 32 (llama.cpp's Q8_1 route,
// ~14) measured no faster here and moved SmolLM2-135M's logit KL vs bf16 from 0.003 to 0.024 nats.
// kPerGroup: blocks per scale (1 for the usual group of 32; 0: m.group / 32, known at run time only): a run-time
// division per block pair cost 2.4x the kernel.
template <int64_t kPerGroup, typename Store>
inline void q4_rows(const Q4Rows& m, int64_t n0, int64_t n1, int64_t K, const QInput& x, Store store) {
  const int64_t blocks = K / 32, groups = K / m.group, per_group = kPerGroup ? kPerGroup : m.group / 32;
  const __m256i low4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1), w256 = _mm256_set1_epi16(256);
  const __m128i spread = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);  // d_b x4, d_b+1 x4
  const auto ld = [](const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = m.q + n * (K / 2);
    const uint16_t* d = m.scale + n * groups;
    const uint16_t* off = m.offset + n * groups;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
      _mm_prefetch(reinterpret_cast<const char*>(row + 16 * b + kPrefetch), _MM_HINT_T0);
      const __m256i v = ld(row + 16 * b);
      const __m256i q0 = _mm256_and_si256(v, low4), q1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      const int64_t at = 32 * b;  // 64 * (b / 2)
      const __m256i hi = _mm256_add_epi16(_mm256_maddubs_epi16(q0, ld(x.hi + at)),
                                          _mm256_maddubs_epi16(q1, ld(x.hi + at + 32)));
      const __m256i lo = _mm256_add_epi16(_mm256_maddubs_epi16(ld(x.lo + at), q0),
                                          _mm256_maddubs_epi16(ld(x.lo + at + 32), q1));
      const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(hi, w256), _mm256_madd_epi16(lo, ones));
      const uint32_t pair = uint32_t(d[b / per_group]) | (uint32_t(d[(b + 1) / per_group]) << 16);
      const __m256 dv = _mm256_cvtph_ps(_mm_shuffle_epi8(_mm_cvtsi32_si128(int32_t(pair)), spread));
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), dv, acc);  // block b x4 | block b + 1 x4
    }
    float s = hsum(acc);
    if (b < blocks) {  // an odd last block: widen its nibbles against the int16 x
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * b));
      const __m128i l4 = _mm_set1_epi8(0x0f);
      const __m256i w0 = _mm256_cvtepu8_epi16(_mm_and_si128(v, l4));
      const __m256i w1 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), l4));
      const __m256i t =
          _mm256_add_epi32(_mm256_madd_epi16(w0, ld(x.q + 32 * b)), _mm256_madd_epi16(w1, ld(x.q + 32 * b + 16)));
      s += float(hsum_i32(t)) * _cvtsh_ss(d[b / per_group]);
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

template <typename Store>
inline void gemv_rows(const Q4Rows& m, int64_t n0, int64_t n1, int64_t K, const QInput& x, Store store) {
  if (m.group == 32) q4_rows<1>(m, n0, n1, K, x, store);
  else q4_rows<0>(m, n0, n1, K, x, store);
}

}  // namespace vita_native
