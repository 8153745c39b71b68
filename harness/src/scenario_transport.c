/* The transport's limits on a scenario, checked with the transport's own rules. */
#include "scenario_transport.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuipc/cuipc.h"
#include "cuipc/error.h"
#include "json_locate.h"
#include "read_file.h"
#include "util.h"

/* A proxy like those the producer's tensors travel as: the kind and memory of the scenario's
 * mode, one dimension (the harness sends flat tensors). */
static cuipc_value *proxy_like(const cuipc_scenario *s) {
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    bool device = s->tensors.location == CUIPC_LOCATION_DEVICE;
    p.layout.dtype = CUIPC_DTYPE_U8;
    p.layout.ndim = 1;
    p.layout.src_device = device ? s->producer_device : CUIPC_DEVICE_HOST;
    p.layout.shape[0] = 4096;
    p.layout.strides[0] = 1;
    p.nbytes = 4096;
    if (s->mode == CUIPC_MODE_CUDA_IPC) {
        p.kind = CUIPC_PROXY_IPC;
        p.u.ipc.alloc_size = p.nbytes;
        p.u.ipc.device = s->producer_device;
    } else {
        p.kind = CUIPC_PROXY_POOL;
        p.u.pool.memory =
            s->mode == CUIPC_MODE_CUDA_IPC_POOL ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST;
        p.u.pool.pool_device =
            p.u.pool.memory == CUIPC_MEMORY_CUDA ? s->producer_device : CUIPC_DEVICE_HOST;
    }
    return cuipc_value_proxy(&p);
}

/* The producer role's message: seq, send_ns (and gauge_ns with run.cpu_gauge), a list of tensors
 * and one of their checksums; its fault message carries one tensor and a "fault" flag. */
static uint64_t message_bytes(const cuipc_scenario *s, uint32_t tensors, bool fault) {
    cuipc_value *tree = cuipc_value_dict(), *list = cuipc_value_list(), *sums = cuipc_value_list();
    bool ok = tree && list && sums;
    for (uint32_t j = 0; j < tensors && ok; j++)
        ok = cuipc_list_append(list, proxy_like(s)) == CUIPC_OK &&
             cuipc_list_append(sums, cuipc_value_int(INT64_MAX)) == CUIPC_OK;
    ok = ok && cuipc_dict_set(tree, "seq", cuipc_value_int(INT64_MAX)) == CUIPC_OK &&
         (!fault || cuipc_dict_set(tree, "fault", cuipc_value_bool(true)) == CUIPC_OK) &&
         cuipc_dict_set(tree, "send_ns", cuipc_value_int(INT64_MAX)) == CUIPC_OK &&
         (!s->run.cpu_gauge ||
          cuipc_dict_set(tree, "gauge_ns", cuipc_value_int(INT64_MAX)) == CUIPC_OK);
    if (ok) {
        ok = cuipc_dict_set(tree, "tensors", list) == CUIPC_OK;
        list = NULL;
    }
    if (ok) {
        ok = cuipc_dict_set(tree, "checksums", sums) == CUIPC_OK;
        sums = NULL;
    }
    size_t len = 0;
    ok = ok && cuipc_encoded_size(tree, &len) == CUIPC_OK;
    cuipc_value_free(list);
    cuipc_value_free(sums);
    cuipc_value_free(tree);
    return ok ? (uint64_t)len : 0;
}

uint64_t cuipc_scenario_message_bytes(const cuipc_scenario *s) {
    uint64_t plain = message_bytes(s, s->tensors.per_message, false);
    uint64_t fault = s->fault.kind != CUIPC_FAULT_NONE ? message_bytes(s, 1, true) : 0;
    return plain > fault ? plain : fault;
}

/* The refusal as the parser words it: file, line and column of $.pool.ring_bytes where it is
 * given. */
__attribute__((format(printf, 2, 3))) static cuipc_status refuse(const cuipc_scenario *s,
                                                                 const char *fmt, ...) {
    static const cuipc_json_seg path[] = {{.key = "pool"}, {.key = "ring_bytes"}};
    char where[sizeof s->path + 32], msg[512];
    snprintf(where, sizeof where, "%s", s->path);
    char *text = cuipc_h_read_file(s->path, NULL);
    int line, col;
    if (text != NULL && cuipc_json_locate(text, path, 2, &line, &col))
        snprintf(where, sizeof where, "%s:%d:%d", s->path, line, col);
    free(text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap); /* fmt's arguments may be cuipc_last_error() itself */
    va_end(ap);
    return cuipc_error_set(CUIPC_ERR_INVALID_ARG, where, "$.pool.ring_bytes: %s", msg);
}

cuipc_status cuipc_scenario_check_transport(const cuipc_scenario *s) {
    char a[32], b[32];
    uint64_t limit = cuipc_ring_message_limit(s->pool.ring_bytes);
    if (limit == 0)
        return refuse(s, "%llu is not a ring size: a power of two from 4 KiB to 4 GiB",
                      (unsigned long long)s->pool.ring_bytes);
    uint64_t need = cuipc_scenario_message_bytes(s);
    if (need == 0)
        return refuse(s, "the messages of this scenario cannot be encoded: %s", cuipc_last_error());
    if (need > limit) {
        uint64_t ring = s->pool.ring_bytes;
        while (cuipc_ring_message_limit(ring) < need && ring < (1ull << 32))
            ring *= 2;
        return refuse(s,
                      "a message of %u tensor(s) encodes to %llu bytes and a ring of %s carries "
                      "%llu at most: %s is enough",
                      s->tensors.per_message, (unsigned long long)need,
                      cuipc_h_format_size(s->pool.ring_bytes, a, sizeof a),
                      (unsigned long long)limit, cuipc_h_format_size(ring, b, sizeof b));
    }
    return CUIPC_OK;
}
