/* What every cuipc header builds on and that needs no CUDA header: the opaque stream type and
 * the attribute that makes ignoring a returned status a compiler warning. */
#ifndef CUIPC_BASE_H
#define CUIPC_BASE_H

#ifdef __cplusplus
extern "C" {
#endif

/* A cudaStream_t, kept opaque so no cuipc header needs CUDA headers. NULL = legacy stream. */
typedef void *cuipc_stream;

/* On every function returning a cuipc_status: a caller that drops the status gets a warning
 * (an error under -Werror). Where ignoring it is right, pass it to cuipc_status_ignore() and
 * say why (GCC does not let a (void) cast silence this attribute). */
#if defined(__GNUC__) || defined(__clang__)
#define CUIPC_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define CUIPC_WARN_UNUSED
#endif

#ifdef __cplusplus
}
#endif

#endif
