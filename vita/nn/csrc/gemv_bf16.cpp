// bf16 matrix-vector product for batch-1 decoding on AVX2 CPUs: out[n] = sum_k w[n, k] * x[k].
//
// Registered as the PyTorch op `vita_native::gemv_bf16(Tensor weight, Tensor x) -> Tensor`, so a compiled decode
// step calls it through the C++ dispatcher (a Python custom op cost ~60 us a call there, ~120 calls a step).
// Each thread streams one contiguous block of rows (`gemv_rows`, bf16_gemv.h); the float32 sum of a row is rounded
// to bf16 once (round to nearest even).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "bf16_gemv.h"

namespace {

using namespace vita_native;

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
  split_even_odd(x_f.data(), K, x_split.data());

  at::Tensor out = at::empty({N}, w.options());
  const auto* w_bits = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
  auto* out_bits = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const auto store = [out_bits](int64_t n, float s) { out_bits[n] = float_to_bf16(s); };
  // one contiguous block of rows per thread (one sequential stream each); small products stay on one thread
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N / 64));
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    gemv_rows(w_bits, N * b0 / blocks, N * b1 / blocks, K, x_split.data(), x_f.data(), store);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vita_native, m) { m.def("gemv_bf16(Tensor weight, Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(vita_native, CPU, m) { m.impl("gemv_bf16", &gemv_bf16); }
