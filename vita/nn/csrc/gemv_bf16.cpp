// bf16 matrix-vector product for batch-1 decoding on AVX2 CPUs: out[n] = sum_k w[n, k] * x[k].
//
// Registered as the PyTorch op `vita_native::gemv_bf16(Tensor weight, Tensor x) -> Tensor`, so a compiled decode
// step calls it through the C++ dispatcher (a Python custom op cost ~60 us a call there, ~120 calls a step).
// Each thread streams one contiguous block of rows; per row, 32 bf16 weights are read as two 256-bit loads and
// widened to float32 in registers (a bf16 is the top half of a float32: even elements by a 16-bit left shift of
// each 32-bit lane, odd ones by masking the low half), multiplied with x laid out to match, and accumulated in
// float32 in four independent chains. The float32 sum is rounded to bf16 once (round to nearest even).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <cstring>
#include <vector>

namespace {

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows [n0, n1) of w [N, K]. x_split holds x per 16-element block as its 8 even then its 8 odd elements (the
// order the in-register widening produces); x holds x as is, for the K % 32 tail.
void gemv_rows(const uint16_t* w, int64_t n0, int64_t n1, int64_t K, const float* x_split, const float* x,
               at::BFloat16* out) {
  const __m256i high_half = _mm256_set1_epi32(int32_t(0xffff0000u));
  const int64_t K32 = K / 32 * 32;
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* row = w + n * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K32; k += 32) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k + 16));
      a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), _mm256_loadu_ps(x_split + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, high_half)), _mm256_loadu_ps(x_split + k + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), _mm256_loadu_ps(x_split + k + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, high_half)), _mm256_loadu_ps(x_split + k + 24), a3);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int64_t k = K32; k < K; ++k) s += bf16_to_float(row[k]) * x[k];
    out[n] = at::BFloat16(s);
  }
}

at::Tensor gemv_bf16(const at::Tensor& weight, const at::Tensor& x) {
  TORCH_CHECK(weight.dim() == 2 && x.dim() == 1 && weight.size(1) == x.size(0),
              "gemv_bf16: expected weight [N, K] and x [K], got ", weight.sizes(), " and ", x.sizes());
  TORCH_CHECK(weight.scalar_type() == at::kBFloat16 && x.scalar_type() == at::kBFloat16,
              "gemv_bf16: expected bfloat16 tensors, got ", weight.scalar_type(), " and ", x.scalar_type());
  TORCH_CHECK(weight.device().is_cpu() && x.device().is_cpu(), "gemv_bf16: expected CPU tensors");
  const at::Tensor w = weight.contiguous();
  const at::Tensor xc = x.contiguous();
  const int64_t N = w.size(0), K = w.size(1);

  const auto* x_bits = reinterpret_cast<const uint16_t*>(xc.data_ptr<at::BFloat16>());
  std::vector<float> x_f(K), x_split(K);
  for (int64_t k = 0; k < K; ++k) x_f[k] = bf16_to_float(x_bits[k]);
  for (int64_t k = 0; k + 16 <= K; k += 16) {
    for (int j = 0; j < 8; ++j) {
      x_split[k + j] = x_f[k + 2 * j];
      x_split[k + 8 + j] = x_f[k + 2 * j + 1];
    }
  }

  at::Tensor out = at::empty({N}, w.options());
  const auto* w_bits = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
  at::BFloat16* out_p = out.data_ptr<at::BFloat16>();
  // one contiguous block of rows per thread (one sequential stream each); small products stay on one thread
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N / 64));
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    gemv_rows(w_bits, N * b0 / blocks, N * b1 / blocks, K, x_split.data(), x_f.data(), out_p);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(vita_native, m) { m.def("gemv_bf16(Tensor weight, Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(vita_native, CPU, m) { m.impl("gemv_bf16", &gemv_bf16); }
