// One decode step of several sequences at once over one dense Llama / Mistral / Qwen2 model (bf16 or float32, AVX2):
// each sequence has its own token, position and KV cache (the caches may differ in length), so replies of different
// sessions, at different places of their prompts, step together. Every matrix row is read from memory once for all
// of them (`gemv_rows_multi`): batch-1 decoding streams the weights for one product per row, here for B.
//
// `vita_native::decode_batch(int[] tokens, int[] positions, Tensor embed, Tensor[] layers, Tensor(a!)[] caches,
//  Tensor cos, Tensor sin, Tensor norm, Tensor head, int num_heads, int num_kv_heads, float eps) -> Tensor [B, V]`
//
// layers, cos, sin, norm, head: as decode_step.cpp's; caches: 2 per layer per sequence, sequence-major (sequence b's
// layer l at [2 * (b * L + l)], [2 * (b * L + l) + 1], each [1, Hkv, S_b, Dh]). Row b of the result equals what
// decode_step returns for (tokens[b], positions[b]) over sequence b's cache, bit for bit, and the caches are written
// alike: every sum runs in the batch-1 kernel's order and rounds at the same points.
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include "decode_common.h"

namespace {

using namespace vita_native;
using namespace vita_native::step;

// The inputs of the current GEMV stage for every sequence (each prepared by the thread that owns its sequence), read by every thread's rows.
// bf16 inputs as bf16 bits where the rows run on AVX512-BF16 (as decode_step.cpp's Input), else split (AVX2).
template <typename E>
struct Inputs {
  static constexpr bool bf16 = std::is_same_v<E, uint16_t>;
  const bool dp = bf16 && has_dpbf16();
  std::vector<std::vector<float>> split;
  std::vector<std::vector<uint16_t>> xb;
  std::vector<const float*> x, split_ptr;
  std::vector<const uint16_t*> xb_ptr;
  Inputs(int B, int64_t widest)
      : split(B, std::vector<float>(bf16 && !dp ? widest : 0)), xb(B, std::vector<uint16_t>(dp ? widest : 0)),
        x(B), split_ptr(B), xb_ptr(B) {
    for (int b = 0; b < B; ++b) split_ptr[b] = split[b].data(), xb_ptr[b] = xb[b].data();
  }
  void prepare(int b, const float* src, int64_t K) {
    x[b] = src;
    if (dp) {
      for (int64_t k = 0; k < K; ++k) xb[b][k] = float_to_bf16(src[k]);  // exact: src is bf16-rounded
    } else if constexpr (bf16) {
      split_even_odd(src, K, split[b].data());
    }
  }
};

// Thread t of nt: its share of the rows of the stacked matrices parts[0..P), against every sequence's input.
template <typename E, typename Store>
void gemv_stack_multi(const Part<const E*>* parts, int P, int64_t K, int t, int nt, const Inputs<E>& in,
                      Store store) {
  int64_t N = 0;
  for (int p = 0; p < P; ++p) N += parts[p].rows;
  const int64_t lo = N * t / nt, hi = N * (t + 1) / nt;
  const int B = int(in.x.size());
  int64_t offset = 0;
  for (int p = 0; p < P; ++p) {
    const int64_t a = std::max(lo, offset), b = std::min(hi, offset + parts[p].rows);
    if (a < b) {
      const auto put = [&](int s, int64_t n, float v) { store(s, n + offset, v); };
      if constexpr (std::is_same_v<E, uint16_t>) {
        if (in.dp) {
          gemv_rows_dp(parts[p].w, a - offset, b - offset, K, B, in.xb_ptr.data(), put);
          offset += parts[p].rows;
          continue;
        }
      }
      gemv_rows_multi(parts[p].w, a - offset, b - offset, K, B, in.split_ptr.data(), in.x.data(), put);
    }
    offset += parts[p].rows;
  }
}

template <typename E>
at::Tensor decode_batch_impl(at::IntArrayRef tokens, at::IntArrayRef positions, const at::Tensor& embed,
                             at::TensorList layers, at::TensorList caches, const at::Tensor& cos, const at::Tensor& sin,
                             const at::Tensor& norm, const at::Tensor& head, int64_t num_heads, int64_t num_kv_heads,
                             double eps) {
  using W = const E*;
  const int B = int(tokens.size());
  TORCH_CHECK(B > 0 && int64_t(positions.size()) == B, "decode_batch: ", tokens.size(), " tokens and ",
              positions.size(), " positions");
  TORCH_CHECK(embed.dim() == 2, "decode_batch: embed must be [V, D]");
  const int64_t D = embed.size(1), L = int64_t(layers.size()) / kPerLayer;
  TORCH_CHECK(L > 0 && int64_t(layers.size()) == kPerLayer * L, "decode_batch: expected ", kPerLayer,
              " tensors per layer, got ", layers.size());
  TORCH_CHECK(int64_t(caches.size()) == 2 * L * B, "decode_batch: expected 2 caches per layer and sequence, got ",
              caches.size());
  TORCH_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0, "decode_batch: bad head counts");
  TORCH_CHECK(cos.dim() == 2 && cos.scalar_type() == at::kFloat && cos.is_contiguous() && sin.sizes() == cos.sizes() &&
                  sin.scalar_type() == at::kFloat && sin.is_contiguous(),
              "decode_batch: cos/sin must be contiguous float32 [S, Dh] tables");
  const int64_t Dh = cos.size(1), Q = num_heads * Dh, KV = num_kv_heads * Dh, QKV = Q + 2 * KV;
  const int64_t I = layers[9].dim() == 2 ? layers[9].size(0) : 0;
  const int64_t V = head.dim() == 2 ? head.size(0) : 0, heads_per_kv = num_heads / num_kv_heads;
  TORCH_CHECK(Dh % 2 == 0 && I > 0, "decode_batch: bad head width or MLP width");
  check(embed, kDtype<E>, "embed", {embed.size(0), D});
  check(norm, kDtype<E>, "norm", {D});
  const W head_w = matrix<E, W>(head, nullptr, nullptr, V, D, 0, "head");
  const bool bias = layers[4].numel() > 0;
  const std::vector<Layer<E, W>> ls = read_layers<E, W>(layers, {}, {}, L, D, Q, KV, I, 0, bias);
  std::vector<E*> kc(B * L), vc(B * L);  // sequence b's layer l: [b * L + l]
  std::vector<int64_t> S(B), T(B);
  int64_t maxT = 0;
  for (int b = 0; b < B; ++b) {
    const at::Tensor& k0 = caches[2 * b * L];
    S[b] = k0.dim() == 4 ? k0.size(2) : 0;
    const int64_t pos = positions[b];
    TORCH_CHECK(0 <= pos && pos < S[b] && pos < cos.size(0), "decode_batch: sequence ", b, ": position ", pos,
                " outside its cache (", S[b], ") or the RoPE tables (", cos.size(0), ")");
    TORCH_CHECK(0 <= tokens[b] && tokens[b] < embed.size(0), "decode_batch: sequence ", b, ": token id ", tokens[b],
                " outside the vocabulary (", embed.size(0), ")");
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor &k = caches[2 * (b * L + l)], &v = caches[2 * (b * L + l) + 1];
      check(k, kDtype<E>, "k_cache", {1, num_kv_heads, S[b], Dh});
      check(v, kDtype<E>, "v_cache", {1, num_kv_heads, S[b], Dh});
      kc[b * L + l] = const_cast<E*>(ptr<E>(k));
      vc[b * L + l] = const_cast<E*>(ptr<E>(v));
      for (int c = 0; c < b; ++c)
        TORCH_CHECK(kc[c * L + l] != kc[b * L + l], "decode_batch: sequences ", c, " and ", b, " share a cache");
    }
    T[b] = pos + 1;
    maxT = std::max(maxT, T[b]);
  }

  const int64_t widest = std::max({D, Q, I});
  Inputs<E> in(B, widest);
  const auto buf = [B](int64_t n) { return std::vector<float>(B * n); };
  std::vector<float> x = buf(D), xn = buf(std::max(D, Q)), qkv = buf(QKV), att = buf(Q), gu = buf(2 * I),
                     act = buf(I), proj = buf(D), c = buf(Dh), s = buf(Dh), scores = buf(num_heads * maxT);
  for (int b = 0; b < B; ++b) {
    const int64_t pos = positions[b];
    for (int64_t i = 0; i < Dh; ++i) {
      c[b * Dh + i] = rnd<E>(cos.data_ptr<float>()[pos * Dh + i]);
      s[b * Dh + i] = rnd<E>(sin.data_ptr<float>()[pos * Dh + i]);
    }
    const E* row = ptr<E>(embed) + tokens[b] * D;
    for (int64_t i = 0; i < D; ++i) x[b * D + i] = to_f(row[i]);
  }
  at::Tensor logits = at::empty({B, V}, embed.options());
  auto* logit_bits = reinterpret_cast<E*>(logits.data_ptr());
  const float scale = 1.f / std::sqrt(float(Dh));
  const float feps = float(eps);
  const int threads = int(std::max<int64_t>(1, at::get_num_threads()));
  const int64_t XN = std::max(D, Q);

  TeamBarrier bar;

#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int b0 = B * t / nt, b1 = B * (t + 1) / nt;  // the sequences whose element-wise work this thread does
    const auto sync = [&] { bar.wait(nt); };
    const auto rounded = [](float* out, int64_t n_per) {
      return [out, n_per](int b, int64_t n, float v) { out[b * n_per + n] = rnd<E>(v); };
    };
    const Part<W> head_part[1] = {{head_w, V}};
    // this thread's rows of a D-row matrix w [D, K] against every sequence's input, rounded into out [B, D]
    const auto gemv_one = [&](W w, int64_t K, float* out) {
      const Part<W> part[1] = {{w, D}};
      gemv_stack_multi<E>(part, 1, K, t, nt, in, rounded(out, D));
    };

    for (int64_t l = 0; l < L; ++l) {
      const Layer<E, W>& ly = ls[l];
      {  // each thread its share of the sequences
        for (int b = b0; b < b1; ++b) {
          rms_norm(x.data() + b * D, ly.attn_norm, D, feps, xn.data() + b * XN);
          in.prepare(b, xn.data() + b * XN, D);
        }
      }
      sync();
      if (bias) {
        gemv_stack_multi<E>(ly.qkv, 3, D, t, nt, in, [&](int b, int64_t n, float v) {
          const float bb = n < Q ? to_f(ly.bias[0][n])
                           : n < Q + KV ? to_f(ly.bias[1][n - Q]) : to_f(ly.bias[2][n - Q - KV]);
          qkv[b * QKV + n] = rnd<E>(rnd<E>(v) + bb);
        });
      } else {
        gemv_stack_multi<E>(ly.qkv, 3, D, t, nt, in, rounded(qkv.data(), QKV));
      }
      sync();
      {  // each thread its share of the sequences
        for (int b = b0; b < b1; ++b) {
          float* h = qkv.data() + b * QKV;
          const int64_t pos = positions[b];
          for (int64_t j = 0; j < num_heads + num_kv_heads; ++j) rope<E>(h + j * Dh, c.data() + b * Dh, s.data() + b * Dh, Dh);
          E *kl = kc[b * L + l], *vl = vc[b * L + l];
          for (int64_t j = 0; j < num_kv_heads; ++j) {
            for (int64_t i = 0; i < Dh; ++i) {
              kl[(j * S[b] + pos) * Dh + i] = from_f<E>(h[Q + j * Dh + i]);
              vl[(j * S[b] + pos) * Dh + i] = from_f<E>(h[Q + KV + j * Dh + i]);
            }
          }
        }
      }
      sync();
      const int64_t BH = B * num_heads;
      for (int64_t bh = BH * t / nt; bh < BH * (t + 1) / nt; ++bh) {  // split as schedule(static)
        const int b = int(bh / num_heads);
        const int64_t h = bh % num_heads, kv = (h / heads_per_kv) * S[b] * Dh;
        attend(qkv.data() + b * QKV + h * Dh, kc[b * L + l] + kv, vc[b * L + l] + kv, T[b], Dh, scale,
               scores.data() + bh * maxT, att.data() + b * Q + h * Dh);
      }
      sync();
      {  // each thread its share of the sequences
        for (int b = b0; b < b1; ++b) in.prepare(b, att.data() + b * Q, Q);
      }
      sync();
      gemv_one(ly.wo, Q, proj.data());
      sync();
      {  // each thread its share of the sequences
        for (int b = b0; b < b1; ++b) {
          float* xb = x.data() + b * D;
          for (int64_t i = 0; i < D; ++i) xb[i] = rnd<E>(xb[i] + proj[b * D + i]);
          rms_norm(xb, ly.ffn_norm, D, feps, xn.data() + b * XN);
          in.prepare(b, xn.data() + b * XN, D);
        }
      }
      sync();
      gemv_stack_multi<E>(ly.gate_up, 2, D, t, nt, in, rounded(gu.data(), 2 * I));
      sync();
      {  // each thread its share of the sequences
        for (int b = b0; b < b1; ++b) {
          const float* g = gu.data() + b * 2 * I;
          float* a = act.data() + b * I;
          for (int64_t i = 0; i < I; ++i) a[i] = rnd<E>(g[i] / (1.f + std::exp(-g[i])) * g[I + i]);
          in.prepare(b, a, I);
        }
      }
      sync();
      gemv_one(ly.w2, I, proj.data());
      sync();
      {  // each thread its share of the sequences
        for (int b = b0; b < b1; ++b) {
          float* xb = x.data() + b * D;
          for (int64_t i = 0; i < D; ++i) xb[i] = rnd<E>(xb[i] + proj[b * D + i]);
        }
      }
      sync();
    }
    {  // each thread its share of the sequences
      for (int b = b0; b < b1; ++b) {
        rms_norm(x.data() + b * D, ptr<E>(norm), D, feps, xn.data() + b * XN);
        in.prepare(b, xn.data() + b * XN, D);
      }
    }
    sync();
    gemv_stack_multi<E>(head_part, 1, D, t, nt, in,
                        [logit_bits, V](int b, int64_t n, float v) { logit_bits[b * V + n] = from_f<E>(v); });
  }
  return logits;
}

at::Tensor decode_batch(at::IntArrayRef tokens, at::IntArrayRef positions, const at::Tensor& embed,
                        at::TensorList layers, at::TensorList caches, const at::Tensor& cos, const at::Tensor& sin,
                        const at::Tensor& norm, const at::Tensor& head, int64_t num_heads, int64_t num_kv_heads,
                        double eps) {
  const auto dtype = embed.scalar_type();
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kFloat, "decode_batch: bf16 or float32 weights, got ", dtype);
  const auto impl = dtype == at::kFloat ? &decode_batch_impl<float> : &decode_batch_impl<uint16_t>;
  return impl(tokens, positions, embed, layers, caches, cos, sin, norm, head, num_heads, num_kv_heads, eps);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vita_native, m) {
  m.def("decode_batch(int[] tokens, int[] positions, Tensor embed, Tensor[] layers, Tensor(a!)[] caches, "
        "Tensor cos, Tensor sin, Tensor norm, Tensor head, int num_heads, int num_kv_heads, float eps) -> Tensor");
}
TORCH_LIBRARY_IMPL(vita_native, CPU, m) { m.impl("decode_batch", &decode_batch); }
