// Fused loss, gradients and (optionally) second derivatives of the losses of several differentiable inputs
// (gaussian_nll_loss: input and var; margin_ranking_loss: input1 and input2), in one pass over memory.
//
// One grid-stride kernel serves every such loss of the spec table (lossk/_losses/multi_input.py): it reads
// the three inputs once (16-byte vector loads where every pointer is 16-byte aligned, a scalar loop for the
// tail and for unaligned arrays), evaluates the loss's device function of multi_input.cuh, writes both
// gradients (and both second derivatives) once, full-shaped, and either writes the unreduced loss
// (reduction='none') or one partial sum per block; `lossk_multi_input_finish` then sums the partials in a
// fixed order. No floating-point atomics: the same input and launch configuration give bit-identical
// results. An input broadcast from a smaller shape (a var of shape (N, 1)) arrives materialised; the host
// sums its full-shaped gradient over the broadcast axes (lossk._multi_input._sum_to).
//
// Specialisation macros (besides LOSSK_INPUT / LOSSK_TARGET, see common.cuh), all set by
// lossk/_backends/cupy/specialisation.py from the loss's spec:
//   LOSSK_INPUT            the first input's dtype: the gradients, second derivatives and loss are stored in it
//   LOSSK_TARGET           the dtype of the two other inputs (the host casts them to one)
//   LOSSK_ELEMENT          the device function of multi_input.cuh (the spec's cuda_function)
//   LOSSK_ELEMENT_OPTIONS  its option arguments, as in elementwise.cu (LOSSK_SCALAR(k), true / false)
//   LOSSK_<CONSTANT>       every spec constant, cast to ACC
//   LOSSK_GRAD             1: write the two gradients
//   LOSSK_HESS             1: write the two second derivatives, scaled like the gradients
//   LOSSK_REDUCE           0: write the unreduced loss; 1: write one partial sum per block
//   LOSSK_GRAD_OUTPUT      0: the upstream gradient is a scalar (grad_scale, times *upstream if given);
//                          1: an ACC array shaped like the input (reduction='none')
// Any output may be the same array as any input (in-place gradients): every element is read before it is
// written, by the same thread, so they are not marked __restrict__.

#include "common.cuh"
#include "multi_input.cuh"

#ifndef LOSSK_ELEMENT
#error "LOSSK_ELEMENT (the loss's device function) must be defined"
#endif
#ifndef LOSSK_ELEMENT_OPTIONS
#define LOSSK_ELEMENT_OPTIONS
#endif
#ifndef LOSSK_GRAD
#define LOSSK_GRAD 1
#endif
#ifndef LOSSK_HESS
#define LOSSK_HESS 0
#endif
#ifndef LOSSK_REDUCE
#define LOSSK_REDUCE 1
#endif
#ifndef LOSSK_GRAD_OUTPUT
#define LOSSK_GRAD_OUTPUT 0
#endif

#define LOSSK_DERIVATIVES (LOSSK_GRAD || LOSSK_HESS)

#define MULTI_INPUT_THREADS 256

#define LOSSK_COMMA ,
#define LOSSK_SCALAR(k) scalar##k

// The loss's device function with this call's options (loss and derivatives before scaling).
__device__ __forceinline__ void evaluate(ACC a, ACC b, ACC c, ACC scalar0, ACC scalar1, ACC scalar2, ACC scalar3,
                                         ACC& loss, ACC& d1_first, ACC& d1_second, ACC& d2_first, ACC& d2_second) {
    LOSSK_ELEMENT(a, b, c, LOSSK_ELEMENT_OPTIONS loss, d1_first, d1_second, d2_first, d2_second);
}

extern "C" __global__ void __launch_bounds__(MULTI_INPUT_THREADS)
lossk_multi_input(const T* input0, const TT* input1, const TT* input2, const ACC* __restrict__ grad_output,
                  T* grad_first, T* grad_second, T* hess_first, T* hess_second, T* __restrict__ loss_out,
                  ACC* __restrict__ partials, index_t n, int vectorised, ACC scalar0, ACC scalar1, ACC scalar2,
                  ACC scalar3, ACC grad_scale, const ACC* __restrict__ upstream) {
#if LOSSK_DERIVATIVES
    ACC scale = grad_scale;
#if !LOSSK_GRAD_OUTPUT
    if (upstream != 0) scale *= upstream[0];
#endif
#endif
#if LOSSK_REDUCE
    ACC thread_sum = (ACC)0;
#endif
    const index_t stride = (index_t)gridDim.x * blockDim.x;
    const index_t start = (index_t)blockIdx.x * blockDim.x + threadIdx.x;

    // 16-byte vectors of the first input: VEC elements per step
    const index_t vectors = vectorised ? n / VEC : 0;
    for (index_t v = start; v < vectors; v += stride) {
        const index_t first = v * VEC;
        ACC a[VEC], b[VEC], c[VEC], l[VEC], g0[VEC], g1[VEC], h0[VEC], h1[VEC];
        load_vec(input0, first, a);
        load_vec(input1, first, b);
        load_vec(input2, first, c);
#if LOSSK_DERIVATIVES && LOSSK_GRAD_OUTPUT
        ACC upstream_values[VEC];
        load_vec(grad_output, first, upstream_values);
#endif
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            evaluate(a[k], b[k], c[k], scalar0, scalar1, scalar2, scalar3, l[k], g0[k], g1[k], h0[k], h1[k]);
#if LOSSK_DERIVATIVES && LOSSK_GRAD_OUTPUT
            const ACC factor = scale * upstream_values[k];
#elif LOSSK_DERIVATIVES
            const ACC factor = scale;
#endif
#if LOSSK_GRAD
            g0[k] *= factor;
            g1[k] *= factor;
#endif
#if LOSSK_HESS
            h0[k] *= factor;
            h1[k] *= factor;
#endif
#if LOSSK_REDUCE
            thread_sum += l[k];
#endif
        }
#if LOSSK_GRAD
        store_vec(grad_first, first, g0);
        store_vec(grad_second, first, g1);
#endif
#if LOSSK_HESS
        store_vec(hess_first, first, h0);
        store_vec(hess_second, first, h1);
#endif
#if !LOSSK_REDUCE
        store_vec(loss_out, first, l);
#endif
    }

    // the scalar tail (and every element when some pointer is not 16-byte aligned)
    for (index_t i = vectors * VEC + start; i < n; i += stride) {
        ACC l, g0, g1, h0, h1;
        evaluate((ACC)to_acc(input0[i]), (ACC)to_acc(input1[i]), (ACC)to_acc(input2[i]), scalar0, scalar1, scalar2,
                 scalar3, l, g0, g1, h0, h1);
#if LOSSK_DERIVATIVES && LOSSK_GRAD_OUTPUT
        const ACC factor = scale * grad_output[i];
#elif LOSSK_DERIVATIVES
        const ACC factor = scale;
#endif
#if LOSSK_GRAD
        grad_first[i] = element<T>::from(g0 * factor);
        grad_second[i] = element<T>::from(g1 * factor);
#endif
#if LOSSK_HESS
        hess_first[i] = element<T>::from(h0 * factor);
        hess_second[i] = element<T>::from(h1 * factor);
#endif
#if LOSSK_REDUCE
        thread_sum += l;
#else
        loss_out[i] = element<T>::from(l);
#endif
    }

#if LOSSK_REDUCE
    __shared__ ACC scratch[32];
    const ACC block_total = block_sum(thread_sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = block_total;
#endif
}

// Stage two: the loss in the first input's dtype, sum(partials) * loss_scale, summed in a fixed order.
extern "C" __global__ void __launch_bounds__(FINISH_THREADS)
lossk_multi_input_finish(const ACC* __restrict__ partials, index_t count, ACC loss_scale, T* __restrict__ out) {
    finish_sum<T>(partials, count, 1, 1, loss_scale, (ACC)0, 0, out);
}
