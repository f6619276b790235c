// Shared pieces of lossk's CUDA kernels: element types, 16-byte vector loads, math overloads, block
// reductions and the deterministic final sum.
//
// Written for NVRTC (CuPy's RawModule) and nvcc alike, so it includes no header at all: float16 and
// bfloat16 are stored as raw 16-bit words and converted with single PTX instructions (cvt), which keeps
// the sources independent of where cuda_fp16.h / cuda_bf16.h live on a given install. NVRTC has no
// INFINITY macro either; -inf is __int_as_float(0xff800000).
//
// The host (lossk/_backends/cupy) inlines this file in place of `#include "common.cuh"` before handing a
// source to NVRTC; nvcc finds it through -I. Specialisations are chosen with -D macros:
//   LOSSK_INPUT   dtype code of the input (and gradient / unreduced loss): 0 f32, 1 f64, 2 f16, 3 bf16
//   LOSSK_TARGET  dtype code of a floating target (same codes; default: the input's)
// Arithmetic is in ACC: double for float64 inputs, float otherwise.

#pragma once

#define LOSSK_F32 0
#define LOSSK_F64 1
#define LOSSK_F16 2
#define LOSSK_BF16 3

#ifndef LOSSK_INPUT
#error "LOSSK_INPUT (input dtype code) must be defined"
#endif
#ifndef LOSSK_TARGET
#define LOSSK_TARGET LOSSK_INPUT
#endif

typedef long long index_t;  // 64-bit element indices: more than 2^31 elements work

// ---- element types -------------------------------------------------------------------------------
// A storage type and its loader/storer, per dtype code. Half and bfloat16 are 16-bit words.
struct f16_t { unsigned short bits; };
struct bf16_t { unsigned short bits; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(f16_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}
__device__ __forceinline__ float to_acc(bf16_t v) { return __int_as_float((int)((unsigned int)v.bits << 16)); }

template <typename T> struct element;
template <> struct element<float> {
    typedef float acc;
    static __device__ __forceinline__ float from(float v) { return v; }
};
template <> struct element<double> {
    typedef double acc;
    static __device__ __forceinline__ double from(double v) { return v; }
};
template <> struct element<f16_t> {
    typedef float acc;
    static __device__ __forceinline__ f16_t from(float v) {  // round to nearest even, like torch
        f16_t r;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
        return r;
    }
};
template <> struct element<bf16_t> {
    typedef float acc;
    static __device__ __forceinline__ bf16_t from(float v) {  // round to nearest even (sm_80+ instruction)
        bf16_t r;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
        return r;
    }
};

template <int CODE> struct dtype_of;
template <> struct dtype_of<LOSSK_F32> { typedef float type; };
template <> struct dtype_of<LOSSK_F64> { typedef double type; };
template <> struct dtype_of<LOSSK_F16> { typedef f16_t type; };
template <> struct dtype_of<LOSSK_BF16> { typedef bf16_t type; };

typedef dtype_of<LOSSK_INPUT>::type T;      // input, gradient and unreduced-loss elements
typedef dtype_of<LOSSK_TARGET>::type TT;    // floating target elements
typedef element<T>::acc ACC;                // arithmetic type

// ---- math in ACC ------------------------------------------------------------------------------------
__device__ __forceinline__ float acc_exp(float x) { return expf(x); }
__device__ __forceinline__ double acc_exp(double x) { return exp(x); }
__device__ __forceinline__ float acc_log(float x) { return logf(x); }
__device__ __forceinline__ double acc_log(double x) { return log(x); }
__device__ __forceinline__ float acc_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double acc_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float acc_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double acc_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float acc_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double acc_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float acc_hypot(float a, float b) { return hypotf(a, b); }
__device__ __forceinline__ double acc_hypot(double a, double b) { return hypot(a, b); }
__device__ __forceinline__ float acc_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double acc_abs(double x) { return fabs(x); }
// max and min that keep NaN, as torch.maximum / torch.clamp do: fmaxf and fminf return the other operand
// when one is NaN, which would turn a clamp of a NaN residual into a finite gradient.
template <typename A> __device__ __forceinline__ A acc_max(A a, A b) { return (a != a || a > b) ? a : b; }
template <typename A> __device__ __forceinline__ A acc_min(A a, A b) { return (a != a || a < b) ? a : b; }

template <typename A> __device__ __forceinline__ A negative_infinity();
template <> __device__ __forceinline__ float negative_infinity<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double negative_infinity<double>() {
    return __longlong_as_double(0xfff0000000000000ULL);
}

// ---- vector loads -------------------------------------------------------------------------------------
// VEC elements per thread and step: 16 bytes of the input type. Arrays of other element sizes move
// VEC * sizeof(U) bytes with the widest load that size allows (4, 8, 16 or 2 x 16 bytes, ...).
#define VEC (16 / (int)sizeof(T))

template <typename U, int BYTES> struct raw_chunk;
template <typename U> struct raw_chunk<U, 4> { typedef unsigned int type; };
template <typename U> struct raw_chunk<U, 8> { typedef uint2 type; };
template <typename U> struct raw_chunk<U, 16> { typedef uint4 type; };

template <typename U> struct vector_of {
    static const int BYTES = VEC * (int)sizeof(U);
    static const int CHUNK = BYTES < 16 ? BYTES : 16;
    static const int CHUNKS = BYTES / CHUNK;
    typedef typename raw_chunk<U, CHUNK>::type chunk;
    union storage {
        chunk raw[CHUNKS];
        U values[VEC];
    };
};

// Loads elements [first, first + VEC) of `p` (16-byte aligned base, first a multiple of VEC) as ACC.
template <typename U>
__device__ __forceinline__ void load_vec(const U* p, index_t first, ACC out[VEC]) {
    typename vector_of<U>::storage s;
    const typename vector_of<U>::chunk* src = reinterpret_cast<const typename vector_of<U>::chunk*>(p + first);
#pragma unroll
    for (int k = 0; k < vector_of<U>::CHUNKS; ++k) s.raw[k] = src[k];
#pragma unroll
    for (int k = 0; k < VEC; ++k) out[k] = (ACC)to_acc(s.values[k]);
}

// Stores VEC values (converted to T) at elements [first, first + VEC) of `p`.
__device__ __forceinline__ void store_vec(T* p, index_t first, const ACC in[VEC]) {
    typename vector_of<T>::storage s;
#pragma unroll
    for (int k = 0; k < VEC; ++k) s.values[k] = element<T>::from(in[k]);
    typename vector_of<T>::chunk* dst = reinterpret_cast<typename vector_of<T>::chunk*>(p + first);
#pragma unroll
    for (int k = 0; k < vector_of<T>::CHUNKS; ++k) dst[k] = s.raw[k];
}

// ---- block reduction ----------------------------------------------------------------------------------
// Sum over the block in a fixed order (warp shuffles, then warp 0 over the warp sums): the same inputs in
// the same launch configuration give the same bits. The result is valid in thread 0. `scratch` holds 32
// values; the function ends with a barrier so that scratch can be reused.
template <typename A>
__device__ __forceinline__ A block_sum(A value, A* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) scratch[warp] = value;
    __syncthreads();
    if (warp == 0) {
        const int warps = (blockDim.x + 31) >> 5;
        value = lane < warps ? scratch[lane] : (A)0;
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    __syncthreads();
    return value;
}

// ---- deterministic final sum ------------------------------------------------------------------------
// Stage two of every reduction: one block of FINISH_THREADS threads sums `count` partials of `width` (1 or
// 2) components (partials[i * stride + k], k < width) in a fixed order, in double, and writes
//     out = sum_k (sum_i partials[i, k]) * scale_k / divisor_k
// converted to OutT, where divisor_k = device_divisor[k] (a device scalar: a weight sum, a count of rows
// not ignored) or 1 when device_divisor is null. 0 / 0 gives NaN, as PyTorch's mean over nothing does.
#define FINISH_THREADS 256

template <typename OutT>
__device__ __forceinline__ void finish_sum(const ACC* partials, index_t count, int stride, int width, ACC scale0, ACC scale1,
                                           const ACC* device_divisor, OutT* out) {
    __shared__ double scratch[32];
    double total = 0.0;
    for (int k = 0; k < width; ++k) {
        double component = 0.0;
        for (index_t i = threadIdx.x; i < count; i += blockDim.x) component += (double)partials[i * stride + k];
        component = block_sum(component, scratch);
        if (threadIdx.x == 0) {
            double term = component * (double)(k == 0 ? scale0 : scale1);
            if (device_divisor != 0) term /= (double)device_divisor[k];
            total += term;
        }
    }
    if (threadIdx.x == 0) *out = element<OutT>::from((typename element<OutT>::acc)total);
}
