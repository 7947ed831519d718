/*
 * kernels/ops_cuda.cuh - the CUDA implementations behind backend_cuda (backend_cuda.cu builds the table).
 * Signatures and semantics are exactly those of the Backend fields in include/quorum/ops.h: forward
 * overwrites, backward accumulates (+=), NULL gradient = skip, all pointers device memory.
 */
#ifndef QUORUM_OPS_CUDA_CUH
#define QUORUM_OPS_CUDA_CUH
#include <stddef.h>
#include <stdint.h>

/* matmul.cu */
void matmul_forward_cuda(float *out, const float *inp, const float *weight, const float *bias, int N, int C, int OC);
void matmul_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                          const float *weight, int N, int C, int OC);
/* matmul_lt.cu */
void matmul_forward_bf16_cuda(float *out, const float *inp, const uint16_t *weight, const float *bias, int N, int C,
                              int OC);
void matmul_backward_bf16_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const uint16_t *weight, int N, int C, int OC);
void cast_f32_to_bf16_cuda(uint16_t *dst, const float *src, size_t n);
/* norm.cu */
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                            const float *bias, int N, int C, float eps);
void layernorm_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                             const float *weight, const float *mean, const float *rstd, int N, int C);
void rmsnorm_forward_cuda(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void rmsnorm_backward_cuda(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                           const float *rstd, int N, int C);
/* pointwise.cu */
void residual_forward_cuda(float *out, const float *inp1, const float *inp2, size_t n);
void gelu_forward_cuda(float *out, const float *inp, size_t n);
void gelu_backward_cuda(float *dinp, const float *inp, const float *dout, size_t n);
void swiglu_forward_cuda(float *out, const float *inp, int N, int F);
void swiglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int F);
void rope_forward_cuda(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD);
void rope_backward_cuda(float *dqkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HD);
/* embed.cu */
void embedding_forward_cuda(float *out, const int *ids, const float *wte, const float *wpe, int B, int T, int C);
void embedding_forward_bf16_cuda(float *out, const int *ids, const uint16_t *wte, const uint16_t *wpe, int B, int T,
                                 int C);
void embedding_backward_cuda(float *dwte, float *dwpe, const float *dout, const int *ids, int B, int T, int C);
void gather_forward_cuda(float *out, const float *inp, const int *rows, int M, int C);
void gather_backward_cuda(float *dinp, const float *dout, const int *rows, int M, int C);
/* attention.cu */
void attention_forward_cuda(float *out, float *att, const float *qkv, const int *lens, int B, int T, int NH, int NKV, int HD);
void attention_backward_cuda(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                             const int *lens, int B, int T, int NH, int NKV, int HD);
/* attention_flash.cu */
void attention_varlen_forward_cuda(float *out, float *lse, const float *qkv, const int *segs, int S, int NH, int NKV,
                                   int HD, float scale, float softcap, int window);
/* attention_flash_bwd.cu */
void attention_varlen_backward_cuda(float *dqkv, const float *dout, const float *qkv, const float *out,
                                    const float *lse, const int *segs, int S, int NH, int NKV, int HD, float scale,
                                    float softcap, int window);
/* optional ops (quorum/ops.h) */
void attention_ex_forward_cuda(float *out, float *att, const float *qkv, const int *lens, int B, int T, int NH,
                               int NKV, int HD, float scale, float softcap, int window);
void attention_ex_backward_cuda(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                                const int *lens, int B, int T, int NH, int NKV, int HD, float scale, float softcap,
                                int window);
void qknorm_forward_cuda(float *out, float *rstd, const float *inp, const float *qw, const float *kw, int N, int NH,
                         int NKV, int HD, float eps);
void qknorm_backward_cuda(float *dinp, float *dqw, float *dkw, const float *dout, const float *inp, const float *qw,
                          const float *kw, const float *rstd, int N, int NH, int NKV, int HD);
void geglu_forward_cuda(float *out, const float *inp, int N, int F);
void geglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int F);
void scale_forward_cuda(float *out, const float *inp, float s, size_t n);
void softcap_forward_cuda(float *out, const float *inp, float cap, size_t n);
void softcap_backward_cuda(float *dinp, const float *dout, const float *out, float cap, size_t n);
void relu_forward_cuda(float *out, const float *inp, size_t n);
void relu_backward_cuda(float *dinp, const float *dout, const float *out, size_t n);
void axpy_cols_cuda(float *y, int ldy, const float *x, int ldx, float s, int N, int W);
void dropout_forward_cuda(float *out, const float *inp, size_t n, float p, uint64_t seed);
/* logprob.cu */
void logprob_forward_cuda(float *logp, float *lse, const float *logits, const int *targets, int M, int V);
void logprob_backward_cuda(float *dlogits, const float *dlogp, const float *logits, const float *lse,
                           const int *targets, int M, int V);
#endif
