// Weight-only quantized matrix-vector products for batch-1 decoding (formats: quant_gemv.h, vita/nn/quant.py).
//
// `vita_native::gemv_q8(Tensor q, Tensor scale, Tensor x) -> Tensor`: q [N, K] int8, scale [N] float32.
// `vita_native::gemv_q4(Tensor q, Tensor scale, Tensor offset, Tensor x, int group) -> Tensor`: q [N, K/2] uint8,
// scale and offset [N, K/group] float16. x [K] float32 or bf16, quantized once to int16 for the integer kernels; the
// result [N] has x's dtype (a bf16 result is the float32 sum rounded once).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "quant_gemv.h"

namespace {

using namespace vita_native;

std::vector<float> widen(const at::Tensor& x) {
  const at::Tensor xc = x.contiguous();
  std::vector<float> out(xc.numel());
  if (xc.scalar_type() == at::kFloat) {
    std::copy(xc.data_ptr<float>(), xc.data_ptr<float>() + xc.numel(), out.begin());
  } else {
    const auto* bits = reinterpret_cast<const uint16_t*>(xc.data_ptr<at::BFloat16>());
    for (int64_t k = 0; k < xc.numel(); ++k) out[k] = bf16_to_float(bits[k]);
  }
  return out;
}

template <typename M>
at::Tensor run(const M& m, int64_t N, int64_t K, const at::Tensor& x, int64_t group) {
  const std::vector<float> xf = widen(x);
  QWork work(K);
  const QInput in = quantize_input(xf.data(), K, group, work);
  at::Tensor out = at::empty({N}, x.options());
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  auto* out_f = bf16 ? nullptr : out.data_ptr<float>();
  auto* out_b = bf16 ? reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()) : nullptr;
  const auto store = [=](int64_t n, float s) {
    if (bf16) out_b[n] = float_to_bf16(s); else out_f[n] = s;
  };
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N / 64));
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    gemv_rows(m, N * b0 / blocks, N * b1 / blocks, K, in, store);
  });
  return out;
}

void check_x(const at::Tensor& x, int64_t K, const char* op) {
  TORCH_CHECK(x.dim() == 1 && x.size(0) == K, op, ": expected x of shape [", K, "], got ", x.sizes());
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16), op,
              ": x must be a float32 or bf16 CPU tensor, got ", x.scalar_type());
}

at::Tensor gemv_q8(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& x) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kChar && q.device().is_cpu(),
              "gemv_q8: q must be an int8 [N, K] CPU tensor, got ", q.scalar_type(), " ", q.sizes());
  const int64_t N = q.size(0), K = q.size(1);
  TORCH_CHECK(scale.dim() == 1 && scale.size(0) == N && scale.scalar_type() == at::kFloat,
              "gemv_q8: scale must be float32 [", N, "], got ", scale.scalar_type(), " ", scale.sizes());
  check_x(x, K, "gemv_q8");
  const at::Tensor qc = q.contiguous(), sc = scale.contiguous();
  return run(Q8Rows{qc.data_ptr<int8_t>(), sc.data_ptr<float>()}, N, K, x, 0);
}

at::Tensor gemv_q4(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& offset, const at::Tensor& x,
                   int64_t group) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kByte && q.device().is_cpu(),
              "gemv_q4: q must be a uint8 [N, K/2] CPU tensor, got ", q.scalar_type(), " ", q.sizes());
  const int64_t N = q.size(0), K = 2 * q.size(1);
  TORCH_CHECK(group > 0 && group % 32 == 0 && K % group == 0, "gemv_q4: group ", group,
              " must be a multiple of 32 dividing K = ", K);
  for (const at::Tensor* t : {&scale, &offset}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == N && t->size(1) == K / group && t->scalar_type() == at::kHalf,
                "gemv_q4: ", t == &scale ? "scale" : "offset", " must be float16 [", N, ", ", K / group, "], got ",
                t->scalar_type(), " ", t->sizes());
  }
  check_x(x, K, "gemv_q4");
  const at::Tensor qc = q.contiguous(), sc = scale.contiguous(), oc = offset.contiguous();
  const auto* s16 = reinterpret_cast<const uint16_t*>(sc.data_ptr<at::Half>());
  const auto* o16 = reinterpret_cast<const uint16_t*>(oc.data_ptr<at::Half>());
  return run(Q4Rows{qc.data_ptr<uint8_t>(), s16, o16, group}, N, K, x, group);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vita_native, m) {
  m.def("gemv_q8(Tensor q, Tensor scale, Tensor x) -> Tensor");
  m.def("gemv_q4(Tensor q, Tensor scale, Tensor offset, Tensor x, int group) -> Tensor");
}
TORCH_LIBRARY_IMPL(vita_native, CPU, m) {
  m.impl("gemv_q8", &gemv_q8);
  m.impl("gemv_q4", &gemv_q4);
}
