// One whole batch-1 decode step of a dense Llama / Mistral / Qwen2 model in bf16 or float32 on AVX2 CPUs, in one
// call; `decode_step_quant` is the same step over weight-only int8 / int4 matrices (quant_gemv.h), whose GEMVs
// read each stage's input quantized once to int16 (so their results differ from the float products by that
// rounding, ~1e-5 of the largest activation, on top of the weights' own).
//
// `vita_native::decode_step(int token, int pos, Tensor embed, Tensor[] layers, Tensor[] caches, Tensor cos,
//  Tensor sin, Tensor norm, Tensor head, int num_heads, int num_kv_heads, float eps) -> Tensor logits [V]`
// (every tensor but cos/sin in the model's dtype, bf16 or float32)
//
// Why: batch-1 decoding of a small model is a chain of ~120 matrix-vector products plus ~300 tiny element-wise
// ops. Launched one by one (compiled or not), the tiny ops and the per-op dispatch cost ~6 ms a step on a 2-core
// machine next to ~15 ms of weight streaming. Here the threads enter one parallel region for the whole step, split
// every GEMV by rows (each thread streams one contiguous block: `gemv_rows_dp` with AVX512-BF16 where the CPU has it,
// else `gemv_rows`, bf16 widened in AVX2 registers), and meet at a barrier (`TeamBarrier`, decode_common.h) only after
// a stage whose output they wrote in parts (q/k/v, attention split by query head, wo, gate/up with SiLU, w2): the
// element-wise work in between (norms, residual, the GEMV inputs, RoPE of this position's key) every thread does
// alike on its own copy, which costs less than a meeting. decode_batch.cpp is this step for several sequences at
// once, with the same row kernels (its rows equal this step's bit for bit).
//
// Numerics follow the module path (`vita.models.llm`): in bf16 every tensor the module path holds in bf16 (the
// residual stream, norm outputs, projections, attention output, the KV cache, logits) is rounded to bf16 here at the
// same point, with sums, norms' statistics, RoPE, softmax and SiLU in float32 in between; in float32 nothing rounds.
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
#include <type_traits>
#include <vector>

#include "decode_common.h"

namespace {

using namespace vita_native;
using namespace vita_native::step;

// The input of the current GEMV stage, prepared once by one thread for every thread's rows: dense bf16 rows read x
// as bf16 (`gemv_rows_dp`, AVX512-BF16) or in even/odd order (split_even_odd, AVX2), quantized rows read it as int16
// with its group sums (quantize_input).
template <typename E, typename W>
struct Input {
  static constexpr bool dense = std::is_same_v<W, const E*>;
  static constexpr bool bf16 = dense && std::is_same_v<E, uint16_t>;
  std::vector<float> split;
  std::vector<uint16_t> xb;
  QWork work;
  int64_t group;
  const float* x = nullptr;
  QInput in{};
  const bool dp = bf16 && has_dpbf16();
  Input(int64_t widest, int64_t group)
      : split(widest), xb(bf16 ? widest : 0), work(dense ? 0 : widest), group(group) {}
  void prepare(const float* src, int64_t K) {
    x = src;
    if constexpr (!dense) in = quantize_input(src, K, group, work);
    else if constexpr (bf16) {
      if (dp) for (int64_t k = 0; k < K; ++k) xb[k] = float_to_bf16(src[k]);  // exact: src is bf16-rounded
      else split_even_odd(src, K, split.data());
    }
  }
  template <typename Store>
  void rows(const W& w, int64_t n0, int64_t n1, int64_t K, Store store) const {
    if constexpr (bf16) {
      const uint16_t* xp = xb.data();
      if (dp) return gemv_rows_dp(w, n0, n1, K, 1, &xp, [&](int, int64_t n, float v) { store(n, v); });
    }
    if constexpr (dense) gemv_rows(w, n0, n1, K, split.data(), x, store);
    else gemv_rows(w, n0, n1, K, in, store);
  }
};

// Rows [lo, hi) of the stacked matrices parts[0..P) (global row r of the stack is row r - offset of the part holding
// it), store(global row, sum).
template <typename E, typename W, typename Store>
void gemv_stack(const Part<W>* parts, int P, int64_t K, int64_t lo, int64_t hi, const Input<E, W>& in, Store store) {
  int64_t offset = 0;
  for (int p = 0; p < P; ++p) {
    const int64_t a = std::max(lo, offset), b = std::min(hi, offset + parts[p].rows);
    if (a < b) {
      in.rows(parts[p].w, a - offset, b - offset, K, [&](int64_t n, float v) { store(n + offset, v); });
    }
    offset += parts[p].rows;
  }
}

// scales: for a quantized W, 7 per layer (wq, wk, wv, wo, w1, w3, w2); offsets likewise for int4 (empty for int8);
// both unused (empty) when dense. The head of a quantized model is int8 whatever W (head_scale: its row scales).
template <typename E, typename W>
at::Tensor decode_step_impl(int64_t token, int64_t pos, const at::Tensor& embed, at::TensorList layers,
                            at::TensorList scales, at::TensorList offsets, at::TensorList caches,
                            const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& norm,
                            const at::Tensor& head, const at::Tensor& head_scale, int64_t num_heads,
                            int64_t num_kv_heads, double eps, int64_t group) {
  constexpr bool q4 = std::is_same_v<W, Q4Rows>;
  constexpr bool dense = std::is_same_v<W, const E*>;
  TORCH_CHECK(embed.dim() == 2, "decode_step: embed must be [V, D]");
  const int64_t D = embed.size(1), L = int64_t(layers.size()) / kPerLayer;
  TORCH_CHECK(L > 0 && int64_t(layers.size()) == kPerLayer * L, "decode_step: expected ", kPerLayer,
              " tensors per layer, got ", layers.size());
  TORCH_CHECK(int64_t(caches.size()) == 2 * L, "decode_step: expected 2 caches per layer, got ", caches.size());
  TORCH_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "decode_step: bad head counts");
  TORCH_CHECK(cos.dim() == 2 && cos.scalar_type() == at::kFloat && cos.is_contiguous() && sin.sizes() == cos.sizes() &&
                  sin.scalar_type() == at::kFloat && sin.is_contiguous(),
              "decode_step: cos/sin must be contiguous float32 [S, Dh] tables");
  const int64_t Dh = cos.size(1), Q = num_heads * Dh, KV = num_kv_heads * Dh, QKV = Q + 2 * KV;
  TORCH_CHECK(dense || int64_t(scales.size()) == 7 * L, "decode_step: expected 7 scales per layer, got ",
              scales.size());
  TORCH_CHECK(!q4 || int64_t(offsets.size()) == 7 * L, "decode_step: expected 7 int4 offsets per layer, got ",
              offsets.size());
  const int64_t I = layers[9].dim() == 2 ? layers[9].size(0) : 0, S = caches[0].dim() == 4 ? caches[0].size(2) : 0;
  const int64_t V = head.dim() == 2 ? head.size(0) : 0, heads_per_kv = num_heads / num_kv_heads;
  TORCH_CHECK(Dh % 2 == 0 && I > 0 && S > 0, "decode_step: bad head width, MLP width or cache length");
  TORCH_CHECK(0 <= pos && pos < S && pos < cos.size(0), "decode_step: position ", pos, " outside the cache (",
              S, ") or the RoPE tables (", cos.size(0), ")");
  TORCH_CHECK(0 <= token && token < embed.size(0), "decode_step: token id ", token, " outside the vocabulary (",
              embed.size(0), ")");
  check(embed, kDtype<E>, "embed", {embed.size(0), D});
  check(norm, kDtype<E>, "norm", {D});
  using H = std::conditional_t<dense, W, Q8Rows>;
  const H head_w = matrix<E, H>(head, &head_scale, nullptr, V, D, group, "head");
  const bool bias = layers[4].numel() > 0;
  std::vector<Layer<E, W>> ls = read_layers<E, W>(layers, scales, offsets, L, D, Q, KV, I, group, bias);
  for (int64_t l = 0; l < L; ++l) {
    check(caches[2 * l], kDtype<E>, "k_cache", {1, num_kv_heads, S, Dh});
    check(caches[2 * l + 1], kDtype<E>, "v_cache", {1, num_kv_heads, S, Dh});
    ls[l].k_cache = const_cast<E*>(ptr<E>(caches[2 * l]));
    ls[l].v_cache = const_cast<E*>(ptr<E>(caches[2 * l + 1]));
  }

  const int64_t T = pos + 1, widest = std::max({D, Q, I});
  const int threads = int(std::max<int64_t>(1, at::get_num_threads()));
  // shared between the threads: what a GEMV stage or the attention writes in parts (each thread its rows / heads)
  std::vector<float> qkv(QKV), att(Q), gu(2 * I), act(I), proj(D), scores(num_heads * T);
  std::vector<float> c(Dh), s(Dh);
  for (int64_t i = 0; i < Dh; ++i) {
    c[i] = rnd<E>(cos.data_ptr<float>()[pos * Dh + i]);
    s[i] = rnd<E>(sin.data_ptr<float>()[pos * Dh + i]);
  }
  at::Tensor logits = at::empty({V}, embed.options());  // the model dtype (head may be quantized)
  auto* logit_bits = reinterpret_cast<E*>(logits.data_ptr());
  const float scale = 1.f / std::sqrt(float(Dh));
  const float feps = float(eps);
  const E* row = ptr<E>(embed) + token * D;

  TeamBarrier bar;

#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const auto sync = [&] { bar.wait(nt); };
    // Private to each thread, computed by every thread alike (the same operations on the same numbers, so the same
    // bits): the residual stream, the norms, the prepared GEMV inputs and the roped keys and values of this position.
    // The threads meet only after each stage whose output they wrote in parts: five times a layer.
    Input<E, W> in(widest, std::is_same_v<W, Q4Rows> ? group : 0);
    std::vector<float> x(D), xn(std::max(D, Q)), k_now(KV), v_now(KV), q(Q);
    for (int64_t i = 0; i < D; ++i) x[i] = to_f(row[i]);
    // this thread's rows of an N-row GEMV over the prepared input `in`, stored by `store`
    auto gemv = [&](const W& w, int64_t N, int64_t K, auto store) {
      my_share(N, t, nt, [&](int64_t a, int64_t b) { in.rows(w, a, b, K, store); });
    };
    const auto rounded = [](float* out) { return [out](int64_t n, float v) { out[n] = rnd<E>(v); }; };
    const int64_t kv0 = num_kv_heads * t / nt, kv1 = num_kv_heads * (t + 1) / nt;  // cache entries this thread writes

    for (int64_t l = 0; l < L; ++l) {
      const Layer<E, W>& ly = ls[l];
      rms_norm(x.data(), ly.attn_norm, D, feps, xn.data());
      in.prepare(xn.data(), D);
      if (bias) {
        my_share(QKV, t, nt, [&](int64_t a, int64_t b) {
          gemv_stack(ly.qkv, 3, D, a, b, in, [&](int64_t n, float v) {
            const float bn = n < Q ? to_f(ly.bias[0][n])
                             : n < Q + KV ? to_f(ly.bias[1][n - Q]) : to_f(ly.bias[2][n - Q - KV]);
            qkv[n] = rnd<E>(rnd<E>(v) + bn);
          });
        });
      } else {
        my_share(QKV, t, nt, [&](int64_t a, int64_t b) { gemv_stack(ly.qkv, 3, D, a, b, in, rounded(qkv.data())); });
      }
      sync();
      std::copy_n(qkv.data() + Q, KV, k_now.data());
      std::copy_n(qkv.data() + Q + KV, KV, v_now.data());
      for (int64_t h = 0; h < num_kv_heads; ++h) rope<E>(k_now.data() + h * Dh, c.data(), s.data(), Dh);
      for (int64_t h = kv0; h < kv1; ++h) {  // read by the next step only: this one attends to k_now / v_now
        for (int64_t i = 0; i < Dh; ++i) {
          ly.k_cache[(h * S + pos) * Dh + i] = from_f<E>(k_now[h * Dh + i]);
          ly.v_cache[(h * S + pos) * Dh + i] = from_f<E>(v_now[h * Dh + i]);
        }
      }
      my_share(num_heads, t, nt, [&](int64_t h0, int64_t h1) {
        for (int64_t h = h0; h < h1; ++h) {
          float* qh = q.data() + h * Dh;
          std::copy_n(qkv.data() + h * Dh, Dh, qh);
          rope<E>(qh, c.data(), s.data(), Dh);
          const int64_t g = h / heads_per_kv, kv = g * S * Dh;
          attend(qh, ly.k_cache + kv, ly.v_cache + kv, T, Dh, scale, scores.data() + h * T, att.data() + h * Dh,
                 k_now.data() + g * Dh, v_now.data() + g * Dh);
        }
      });
      sync();
      in.prepare(att.data(), Q);
      gemv(ly.wo, D, Q, rounded(proj.data()));
      sync();
      for (int64_t i = 0; i < D; ++i) x[i] = rnd<E>(x[i] + proj[i]);
      rms_norm(x.data(), ly.ffn_norm, D, feps, xn.data());
      in.prepare(xn.data(), D);
      my_share(I, t, nt, [&](int64_t a, int64_t b) {
        in.rows(ly.gate_up[0].w, a, b, D, rounded(gu.data()));  // the same gate and up rows: SiLU needs no meeting
        in.rows(ly.gate_up[1].w, a, b, D, rounded(gu.data() + I));
        for (int64_t i = a; i < b; ++i) {
          const float g = gu[i];
          act[i] = rnd<E>(g / (1.f + std::exp(-g)) * gu[I + i]);
        }
      });
      sync();
      in.prepare(act.data(), I);
      gemv(ly.w2, D, I, rounded(proj.data()));
      sync();
      for (int64_t i = 0; i < D; ++i) x[i] = rnd<E>(x[i] + proj[i]);
    }
    rms_norm(x.data(), ptr<E>(norm), D, feps, xn.data());
    in.prepare(xn.data(), D);
    const auto store_logit = [logit_bits](int64_t n, float v) { logit_bits[n] = from_f<E>(v); };
    if constexpr (dense) gemv(head_w, V, D, store_logit);
    else my_share(V, t, nt, [&](int64_t a, int64_t b) { gemv_rows(head_w, a, b, D, in.in, store_logit); });
  }
  return logits;
}

at::Tensor decode_step(int64_t token, int64_t pos, const at::Tensor& embed, at::TensorList layers,
                       at::TensorList caches, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& norm,
                       const at::Tensor& head, int64_t num_heads, int64_t num_kv_heads, double eps) {
  const auto dtype = embed.scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kFloat, "decode_step: bf16 or float32 weights, got ", dtype);
  const auto impl = dtype == at::kFloat ? &decode_step_impl<float, const float*>
                                        : &decode_step_impl<uint16_t, const uint16_t*>;
  return impl(token, pos, embed, layers, {}, {}, caches, cos, sin, norm, head, at::Tensor(), num_heads, num_kv_heads,
              eps, 0);
}

// The same step over weight-only quantized matrices (int8 layers, or packed int4 (uint8) layers with offsets; the
// head int8 either way).
at::Tensor decode_step_quant(int64_t token, int64_t pos, const at::Tensor& embed, at::TensorList layers,
                             at::TensorList scales, at::TensorList offsets, at::TensorList caches,
                             const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& norm,
                             const at::Tensor& head, const at::Tensor& head_scale, int64_t num_heads,
                             int64_t num_kv_heads, double eps, int64_t group) {
  TORCH_CHECK(layers.size() > 1, "decode_step_quant: no layers");
  const auto dtype = embed.scalar_type(), wtype = layers[1].scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kFloat, "decode_step_quant: bf16 or float32 embeddings, got ",
              dtype);
  TORCH_CHECK(wtype == at::kChar || wtype == at::kByte, "decode_step_quant: int8 or packed int4 (uint8) weights, got ",
              wtype);
  TORCH_CHECK(wtype == at::kChar || (group > 0 && group % 32 == 0), "decode_step_quant: int4 group ", group,
              " is not a positive multiple of 32");
  using Impl = at::Tensor (*)(int64_t, int64_t, const at::Tensor&, at::TensorList, at::TensorList, at::TensorList,
                              at::TensorList, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&, int64_t, int64_t, double, int64_t);
  const Impl impl = dtype == at::kFloat ? (wtype == at::kChar ? &decode_step_impl<float, Q8Rows>
                                                              : &decode_step_impl<float, Q4Rows>)
                                        : (wtype == at::kChar ? &decode_step_impl<uint16_t, Q8Rows>
                                                              : &decode_step_impl<uint16_t, Q4Rows>);
  return impl(token, pos, embed, layers, scales, offsets, caches, cos, sin, norm, head, head_scale, num_heads,
              num_kv_heads, eps, group);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vita_native, m) {
  m.def("decode_step(int token, int pos, Tensor embed, Tensor[] layers, Tensor(a!)[] caches, Tensor cos, "
        "Tensor sin, Tensor norm, Tensor head, int num_heads, int num_kv_heads, float eps) -> Tensor");
  m.def("decode_step_quant(int token, int pos, Tensor embed, Tensor[] layers, Tensor[] scales, "
        "Tensor[] offsets, Tensor(a!)[] caches, Tensor cos, Tensor sin, Tensor norm, Tensor head, Tensor head_scale, "
        "int num_heads, int num_kv_heads, float eps, int group) -> Tensor");
}
TORCH_LIBRARY_IMPL(vita_native, CPU, m) {
  m.impl("decode_step", &decode_step);
  m.impl("decode_step_quant", &decode_step_quant);
}
