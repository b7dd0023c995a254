// One whole batch-1 decode step of a dense Llama / Mistral / Qwen2 model in bf16 on AVX2 CPUs, in one call.
//
// `vita_native::decode_step_bf16(int token, int pos, Tensor embed, Tensor[] layers, Tensor[] caches, Tensor cos,
//  Tensor sin, Tensor norm, Tensor head, int num_heads, int num_kv_heads, float eps) -> Tensor logits [V] (bf16)`
//
// Why: batch-1 decoding of a small model is a chain of ~120 matrix-vector products plus ~300 tiny element-wise
// ops. Launched one by one (compiled or not), the tiny ops and the per-op dispatch cost ~6 ms a step on a 2-core
// machine next to ~15 ms of weight streaming. Here the threads enter one parallel region for the whole step, split
// every GEMV by rows (each thread streams one contiguous block, `gemv_rows`), and meet at a barrier between stages;
// the element-wise work runs on one thread in between, attention is split by query head.
//
// Numerics follow the module path (`vita.models.llm` in bf16, as compiled): every tensor the module path holds in
// bf16 (the residual stream, norm outputs, projections, attention output, the KV cache, logits) is rounded to bf16
// here at the same point; sums, norms' statistics, RoPE, softmax and SiLU run in float32 in between.
//
// layers: 12 tensors per layer, the module's own parameters (fused or not), in order: attention_norm [D],
// wq [Hq*Dh, D], wk [Hkv*Dh, D], wv [Hkv*Dh, D], bq, bk, bv (their lengths, or all three empty when the model has
// no q/k/v bias), wo [D, Hq*Dh], ffn_norm [D], w1 (gate) [I, D], w3 (up) [I, D], w2 [D, I]. The products that share
// an input (q/k/v; gate/up) run as one stage: the threads split their stacked rows.
// caches: k_cache, v_cache [1, Hkv, S, Dh] per layer, written at `pos`; cos/sin: float32 RoPE tables [>= S, Dh].
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "bf16_gemv.h"

namespace {

using namespace vita_native;

const uint16_t* bits(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }

void check_bf16(const at::Tensor& t, const char* what, std::vector<int64_t> shape) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kBFloat16 && t.is_contiguous(),
              "decode_step_bf16: ", what, " must be a contiguous bf16 CPU tensor");
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), "decode_step_bf16: ", what, " has shape ", t.sizes(),
              ", expected ", at::IntArrayRef(shape));
}

constexpr int64_t kPerLayer = 12;

struct Part {  // one matrix of a stack of GEMVs over the same input
  const uint16_t* w;
  int64_t rows;
};

struct Layer {
  const uint16_t* attn_norm;
  Part qkv[3];
  const uint16_t* bias[3];
  const uint16_t *wo, *ffn_norm;
  Part gate_up[2];
  const uint16_t* w2;
  uint16_t *k_cache, *v_cache;
};

// Thread t of nt: its share of the rows of the stacked matrices parts[0..P) (global row r of the stack is row
// r - offset of the part holding it), store(global row, sum).
template <typename Store>
void gemv_stack(const Part* parts, int P, int64_t K, int t, int nt, const float* x_split, const float* x,
                Store store) {
  int64_t N = 0;
  for (int p = 0; p < P; ++p) N += parts[p].rows;
  const int64_t lo = N * t / nt, hi = N * (t + 1) / nt;
  int64_t offset = 0;
  for (int p = 0; p < P; ++p) {
    const int64_t a = std::max(lo, offset), b = std::min(hi, offset + parts[p].rows);
    if (a < b) {
      gemv_rows(parts[p].w, a - offset, b - offset, K, x_split, x, [&](int64_t n, float v) { store(n + offset, v); });
    }
    offset += parts[p].rows;
  }
}

// out = bf16(weight * bf16(x / rms(x))), as `vita.nn.norm.RMSNorm` in bf16
void rms_norm(const float* x, const uint16_t* weight, int64_t D, float eps, float* out) {
  float ss = 0.f;
  for (int64_t i = 0; i < D; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / float(D) + eps);
  for (int64_t i = 0; i < D; ++i) out[i] = round_bf16(bf16_to_float(weight[i]) * round_bf16(x[i] * inv));
}

// rotate_half RoPE on one head in place, cos/sin rows already rounded to bf16 (the module casts the tables)
void rope(float* h, const float* c, const float* s, int64_t Dh) {
  const int64_t half = Dh / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = h[i], b = h[i + half];
    h[i] = round_bf16(a * c[i] - b * s[i]);
    h[i + half] = round_bf16(b * c[i + half] + a * s[i + half]);
  }
}

at::Tensor decode_step_bf16(int64_t token, int64_t pos, const at::Tensor& embed, at::TensorList layers,
                            at::TensorList caches, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& norm, const at::Tensor& head, int64_t num_heads, int64_t num_kv_heads,
                            double eps) {
  TORCH_CHECK(embed.dim() == 2, "decode_step_bf16: embed must be [V, D]");
  const int64_t D = embed.size(1), L = int64_t(layers.size()) / kPerLayer;
  TORCH_CHECK(L > 0 && int64_t(layers.size()) == kPerLayer * L, "decode_step_bf16: expected ", kPerLayer,
              " tensors per layer, got ", layers.size());
  TORCH_CHECK(int64_t(caches.size()) == 2 * L, "decode_step_bf16: expected 2 caches per layer, got ", caches.size());
  TORCH_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "decode_step_bf16: bad head counts");
  TORCH_CHECK(cos.dim() == 2 && cos.scalar_type() == at::kFloat && cos.is_contiguous() && sin.sizes() == cos.sizes() &&
                  sin.scalar_type() == at::kFloat && sin.is_contiguous(),
              "decode_step_bf16: cos/sin must be contiguous float32 [S, Dh] tables");
  const int64_t Dh = cos.size(1), Q = num_heads * Dh, KV = num_kv_heads * Dh, QKV = Q + 2 * KV;
  const int64_t I = layers[11].dim() == 2 ? layers[11].size(1) : 0, S = caches[0].dim() == 4 ? caches[0].size(2) : 0;
  const int64_t V = head.dim() == 2 ? head.size(0) : 0, group = num_heads / num_kv_heads;
  TORCH_CHECK(Dh % 2 == 0 && I > 0 && S > 0, "decode_step_bf16: bad head width, MLP width or cache length");
  TORCH_CHECK(0 <= pos && pos < S && pos < cos.size(0), "decode_step_bf16: position ", pos, " outside the cache (",
              S, ") or the RoPE tables (", cos.size(0), ")");
  TORCH_CHECK(0 <= token && token < embed.size(0), "decode_step_bf16: token id ", token, " outside the vocabulary (",
              embed.size(0), ")");
  check_bf16(embed, "embed", {embed.size(0), D});
  check_bf16(norm, "norm", {D});
  check_bf16(head, "head", {V, D});
  const bool bias = layers[4].numel() > 0;
  std::vector<Layer> ls(L);
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor* t = layers.data() + kPerLayer * l;
    check_bf16(t[0], "attention_norm", {D});
    check_bf16(t[1], "wq", {Q, D});
    check_bf16(t[2], "wk", {KV, D});
    check_bf16(t[3], "wv", {KV, D});
    for (int i = 0; i < 3; ++i) {
      TORCH_CHECK((t[4 + i].numel() > 0) == bias, "decode_step_bf16: q/k/v biases given for some projections only");
      if (bias) check_bf16(t[4 + i], i == 0 ? "bq" : i == 1 ? "bk" : "bv", {i == 0 ? Q : KV});
    }
    check_bf16(t[7], "wo", {D, Q});
    check_bf16(t[8], "ffn_norm", {D});
    check_bf16(t[9], "w1", {I, D});
    check_bf16(t[10], "w3", {I, D});
    check_bf16(t[11], "w2", {D, I});
    check_bf16(caches[2 * l], "k_cache", {1, num_kv_heads, S, Dh});
    check_bf16(caches[2 * l + 1], "v_cache", {1, num_kv_heads, S, Dh});
    Layer& ly = ls[l];
    ly.attn_norm = bits(t[0]);
    ly.qkv[0] = {bits(t[1]), Q};
    ly.qkv[1] = {bits(t[2]), KV};
    ly.qkv[2] = {bits(t[3]), KV};
    for (int i = 0; i < 3; ++i) ly.bias[i] = bias ? bits(t[4 + i]) : nullptr;
    ly.wo = bits(t[7]);
    ly.ffn_norm = bits(t[8]);
    ly.gate_up[0] = {bits(t[9]), I};
    ly.gate_up[1] = {bits(t[10]), I};
    ly.w2 = bits(t[11]);
    ly.k_cache = const_cast<uint16_t*>(bits(caches[2 * l]));
    ly.v_cache = const_cast<uint16_t*>(bits(caches[2 * l + 1]));
  }

  const int64_t T = pos + 1, widest = std::max({D, Q, I});
  std::vector<float> x(D), xn(std::max(D, Q)), xs(widest), qkv(QKV), att(Q), gu(2 * I), act(I), proj(D), c(Dh),
      s(Dh), scores(num_heads * T);
  for (int64_t i = 0; i < Dh; ++i) {
    c[i] = round_bf16(cos.data_ptr<float>()[pos * Dh + i]);
    s[i] = round_bf16(sin.data_ptr<float>()[pos * Dh + i]);
  }
  const uint16_t* row = bits(embed) + token * D;
  for (int64_t i = 0; i < D; ++i) x[i] = bf16_to_float(row[i]);
  at::Tensor logits = at::empty({V}, head.options());
  auto* logit_bits = reinterpret_cast<uint16_t*>(logits.data_ptr<at::BFloat16>());
  const float scale = 1.f / std::sqrt(float(Dh));
  const float feps = float(eps);
  const int threads = int(std::max<int64_t>(1, at::get_num_threads()));

#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    // this thread's rows of an N-row GEMV over xs (split) / src (plain), stored by `store`
    auto gemv = [&](const uint16_t* w, int64_t N, int64_t K, const float* src, auto store) {
      gemv_rows(w, N * t / nt, N * (t + 1) / nt, K, xs.data(), src, store);
    };
    const auto to_bf16 = [](float* out) { return [out](int64_t n, float v) { out[n] = round_bf16(v); }; };

    for (int64_t l = 0; l < L; ++l) {
      const Layer& ly = ls[l];
#pragma omp single
      {
        rms_norm(x.data(), ly.attn_norm, D, feps, xn.data());
        split_even_odd(xn.data(), D, xs.data());
      }
      if (bias) {
        gemv_stack(ly.qkv, 3, D, t, nt, xs.data(), xn.data(), [&](int64_t n, float v) {
          const float b = n < Q ? bf16_to_float(ly.bias[0][n])
                          : n < Q + KV ? bf16_to_float(ly.bias[1][n - Q]) : bf16_to_float(ly.bias[2][n - Q - KV]);
          qkv[n] = round_bf16(round_bf16(v) + b);
        });
      } else {
        gemv_stack(ly.qkv, 3, D, t, nt, xs.data(), xn.data(), to_bf16(qkv.data()));
      }
#pragma omp barrier
#pragma omp single
      {
        for (int64_t h = 0; h < num_heads + num_kv_heads; ++h) rope(qkv.data() + h * Dh, c.data(), s.data(), Dh);
        for (int64_t h = 0; h < num_kv_heads; ++h) {
          for (int64_t i = 0; i < Dh; ++i) {
            ly.k_cache[(h * S + pos) * Dh + i] = float_to_bf16(qkv[Q + h * Dh + i]);
            ly.v_cache[(h * S + pos) * Dh + i] = float_to_bf16(qkv[Q + KV + h * Dh + i]);
          }
        }
      }
#pragma omp for schedule(static)
      for (int64_t h = 0; h < num_heads; ++h) {
        const float* q = qkv.data() + h * Dh;
        const uint16_t* kc = ly.k_cache + (h / group) * S * Dh;
        const uint16_t* vc = ly.v_cache + (h / group) * S * Dh;
        float* sc = scores.data() + h * T;
        float best = -INFINITY;
        for (int64_t j = 0; j < T; ++j) {
          float dot = 0.f;
          for (int64_t i = 0; i < Dh; ++i) dot += q[i] * bf16_to_float(kc[j * Dh + i]);
          sc[j] = dot * scale;
          best = std::max(best, sc[j]);
        }
        float total = 0.f;
        for (int64_t j = 0; j < T; ++j) total += (sc[j] = std::exp(sc[j] - best));
        float* o = att.data() + h * Dh;
        std::fill(o, o + Dh, 0.f);
        for (int64_t j = 0; j < T; ++j) {
          const float p = sc[j] / total;
          for (int64_t i = 0; i < Dh; ++i) o[i] += p * bf16_to_float(vc[j * Dh + i]);
        }
        for (int64_t i = 0; i < Dh; ++i) o[i] = round_bf16(o[i]);
      }
#pragma omp single
      split_even_odd(att.data(), Q, xs.data());
      gemv(ly.wo, D, Q, att.data(), to_bf16(proj.data()));
#pragma omp barrier
#pragma omp single
      {
        for (int64_t i = 0; i < D; ++i) x[i] = round_bf16(x[i] + proj[i]);
        rms_norm(x.data(), ly.ffn_norm, D, feps, xn.data());
        split_even_odd(xn.data(), D, xs.data());
      }
      gemv_stack(ly.gate_up, 2, D, t, nt, xs.data(), xn.data(), to_bf16(gu.data()));
#pragma omp barrier
#pragma omp single
      {
        for (int64_t i = 0; i < I; ++i) {
          const float g = gu[i];
          act[i] = round_bf16(g / (1.f + std::exp(-g)) * gu[I + i]);
        }
        split_even_odd(act.data(), I, xs.data());
      }
      gemv(ly.w2, D, I, act.data(), to_bf16(proj.data()));
#pragma omp barrier
#pragma omp single
      for (int64_t i = 0; i < D; ++i) x[i] = round_bf16(x[i] + proj[i]);
    }
#pragma omp single
    {
      rms_norm(x.data(), bits(norm), D, feps, xn.data());
      split_even_odd(xn.data(), D, xs.data());
    }
    gemv(bits(head), V, D, xn.data(), [logit_bits](int64_t n, float v) { logit_bits[n] = float_to_bf16(v); });
  }
  return logits;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vita_native, m) {
  m.def("decode_step_bf16(int token, int pos, Tensor embed, Tensor[] layers, Tensor(a!)[] caches, Tensor cos, "
        "Tensor sin, Tensor norm, Tensor head, int num_heads, int num_kv_heads, float eps) -> Tensor");
}
TORCH_LIBRARY_IMPL(vita_native, CPU, m) { m.impl("decode_step_bf16", &decode_step_bf16); }
