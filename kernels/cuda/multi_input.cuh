// The per-element formulation of the losses of several differentiable inputs (lossk/_losses/multi_input.py):
// one device function per loss, named by the spec's cuda_function (default <name>_element).
//
// Each is the CUDA spelling of the spec's scalar `element(a, b, c, *options)`, with the same operations in
// the same order:
//     void <cuda_function>(ACC a, ACC b, ACC c, <options in the spec's order>,
//                          ACC& loss, ACC& d1_first, ACC& d1_second, ACC& d2_first, ACC& d2_second)
// a, b, c are the spec's inputs in order; first and second are its two differentiable inputs (the spec's
// `differentiable`), d1 / d2 the first and second derivatives with respect to each, before the reduction's
// scale. Options are passed as in pointwise.cuh (a scalar an ACC, a flag a compile-time bool); spec
// constants are the macros LOSSK_<NAME>.

#pragma once

#include "common.cuh"

// gaussian_nll_loss(input, target, var): v = var raised to eps (the gradient passes as through the identity,
// as PyTorch's clamp under no_grad), q = d^2 / v; 1/2 (log v + q) [+ 1/2 log 2 pi];
// d/dinput d / v, d/dvar 1/2 (1 - q) / v; d2/dinput2 1 / v, d2/dvar2 (q - 1/2) / v^2
__device__ __forceinline__ void gaussian_nll_loss_element(ACC x, ACC y, ACC v, bool full, ACC eps, ACC& loss,
                                                          ACC& d1_input, ACC& d1_var, ACC& d2_input, ACC& d2_var) {
    const ACC vc = v < eps ? eps : v;  // a NaN var stays NaN
    const ACC d = x - y;
    const ACC q = d * d / vc;
    loss = (ACC)0.5 * (acc_log(vc) + q) + (full ? LOSSK_HALF_LOG_2PI : (ACC)0);
    d1_input = d / vc;
    d1_var = (ACC)0.5 * ((ACC)1 - q) / vc;
    d2_input = (ACC)1 / vc;
    d2_var = (q - (ACC)0.5) / (vc * vc);
}

// margin_ranking_loss(input1, input2, target): h = -y (x1 - x2) + margin; max(0, h) (NaN h: NaN);
// -y [h >= 0], y [h >= 0] (the gradient passes at the kink, as torch's clamp_min; 0 for a NaN h); 0, 0
__device__ __forceinline__ void margin_ranking_loss_element(ACC x1, ACC x2, ACC y, ACC margin, ACC& loss,
                                                            ACC& d1_input1, ACC& d1_input2, ACC& d2_input1,
                                                            ACC& d2_input2) {
    const ACC h = -y * (x1 - x2) + margin;
    loss = h < (ACC)0 ? (ACC)0 : h;
    const ACC g = h >= (ACC)0 ? (ACC)1 : (ACC)0;
    d1_input1 = -y * g;
    d1_input2 = y * g;
    d2_input1 = (ACC)0;
    d2_input2 = (ACC)0;
}
