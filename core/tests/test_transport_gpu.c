/* The GPU modes end to end across real processes: cuda_ipc_pool (copy-out and zero-copy borrow),
 * cuda_ipc (the tensor's own allocation; retained bytes accounted), default mode with device
 * tensors (staged through pinned shared memory), 1 to 8 consumers, recycling under a pool smaller
 * than the traffic, and data integrity of every tensor checked by a checksum kernel, with
 * non-contiguous and empty tensors, also when the producer writes them straight into its pool
 * buffers (zero-copy produce, GPU and host), and no reuse of a chunk before the GPU's writes
 * into it ran. The parent never touches CUDA: it only forks and waits. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuda_api.h"
#include "cuipc/cuipc.h"
#include "consumer_internal.h"
#include "handle_cache.h"
#include "cuipc/pattern.h"
#include "pool_internal.h"
#include "shm.h"
#include "test_util.h"

#define SEC 1000000000ll

static char sock_path[128];
/* gpu_wait cases: gates[i] = seq + 1 once consumer i has unwrapped message seq. The producer's
 * stream waits for every gate before its copy, so each consumer's unwrap runs before the copy and
 * must order the reads on the GPU; shared, anonymous, made before any fork. */
static uint32_t *gates;
#define GATES_BYTES 4096

typedef struct gpu_case {
    const char *name;
    cuipc_mode mode;
    int consumers;
    int messages;
    uint64_t tensor_bytes;
    uint64_t gpu_pool_bytes;
    int borrow_mask;  /* consumer i borrows when bit i is set, else copies out */
    int copy_to_host; /* copy-out consumers copy to host memory instead of the device */
    int gpu_wait;     /* unwrap never waits on the host: the stream waits for the ready word */
    int in_buffers;   /* tensors are written into producer buffers in the pool: no copy */
    int copy_to_gpu;  /* copy-out consumers copy to GPU 0 (default mode: out of the host pool) */
} gpu_case;

static const gpu_case *cur;

/* Tensor 0: a contiguous [rows, 256] f32 block of about tensor_bytes; tensor 1: every other row
 * of a second block (non-contiguous view); tensor 2: empty. */
static void make_layouts(uint64_t bytes, cuipc_tensor t[3]) {
    static char placeholder; /* init wants data; layouts get theirs later */
    int64_t rows = (int64_t)(bytes / 1024);
    if (rows < 1)
        rows = 1;
    int64_t s0[2] = {rows, 256};
    CHECK_OK(cuipc_tensor_init(&t[0], &placeholder, 0, CUIPC_DTYPE_F32, 2, s0));
    int64_t s1[2] = {(rows + 1) / 2, 256};
    CHECK_OK(cuipc_tensor_init(&t[1], &placeholder, 0, CUIPC_DTYPE_BF16, 2, s1));
    t[1].strides[0] = 512;
    int64_t s2[2] = {0, 256};
    CHECK_OK(cuipc_tensor_init(&t[2], NULL, 0, CUIPC_DTYPE_F32, 2, s2));
    t[0].data = t[1].data = NULL;
}

static int producer_main(void *arg) {
    (void)arg;
    const gpu_case *k = cur;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.mode = k->mode;
    cfg.gpu_pool_bytes = k->gpu_pool_bytes;
    cfg.host_pool_bytes = k->mode == CUIPC_MODE_DEFAULT ? 3 * k->tensor_bytes + (1 << 20) : 1 << 20;
    cfg.max_consumers = (uint32_t)k->consumers;
    cfg.full_policy = CUIPC_FULL_WAIT;
    cfg.full_timeout_ns = 20 * SEC;
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    if (cuipc_producer_create(&cfg, &p) != CUIPC_OK) {
        fprintf(stderr, "[%s] producer: %s\n", k->name, cuipc_last_error());
        return 10;
    }
    if (cuipc_producer_accept(p, (uint32_t)k->consumers, 30 * SEC) != CUIPC_OK) {
        fprintf(stderr, "[%s] accept: %s\n", k->name, cuipc_last_error());
        return 11;
    }
    void *stream = NULL;
    if (cuipc_gpu_stream_create(0, &stream) != CUIPC_OK)
        return 12;
    void *gates_dev = NULL;
    if (k->gpu_wait && cuipc_cuda_host_register(gates, GATES_BYTES, &gates_dev) != CUIPC_OK) {
        fprintf(stderr, "[%s] register gates: %s\n", k->name, cuipc_last_error());
        return 12;
    }
    cuipc_tensor t[3];
    make_layouts(k->tensor_bytes, t);
    /* Pool modes copy the tensor before send returns (in stream order), so one buffer pair is
     * reused. cuda_ipc consumers read the producer's memory in place with no flow control: as in
     * the reference, every message needs its own allocation, kept alive (the leak it documents). */
    int nbuf = k->mode == CUIPC_MODE_CUDA_IPC ? k->messages : 1;
    void *(*buf)[2] = calloc((size_t)nbuf, sizeof *buf);
    uint64_t span[2] = {cuipc_tensor_span_bytes(&t[0]), cuipc_tensor_span_bytes(&t[1])};
    for (int b = 0; b < nbuf; b++)
        for (int i = 0; i < 2; i++)
            if (cuipc_gpu_malloc(0, span[i], &buf[b][i]) != CUIPC_OK)
                return 13;
    int rc = 0;
    if (k->in_buffers && k->mode == CUIPC_MODE_CUDA_IPC_POOL) {
        /* A GPU buffer passed off as a host tensor is refused by name and stays held. */
        void *b = NULL;
        cuipc_tensor h = t[0];
        h.device = CUIPC_DEVICE_HOST;
        if (cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_CUDA, span[0], SEC, &b) != CUIPC_OK)
            rc = 20;
        h.data = b;
        cuipc_value *v = cuipc_value_tensor(&h, CUIPC_OWNER_NONE);
        if (!rc && (cuipc_producer_send(p, v, stream, SEC) != CUIPC_ERR_INVALID_ARG ||
                    strstr(cuipc_last_error(), "lies in the GPU pool") == NULL)) {
            fprintf(stderr, "[%s] host-labelled GPU buffer: %s\n", k->name, cuipc_last_error());
            rc = 20;
        }
        cuipc_value_free(v);
        if (!rc && cuipc_producer_buffer_free(p, b) != CUIPC_OK)
            rc = 20;
    }
    for (int m = 0; m < k->messages && !rc; m++) {
        cuipc_value *root = cuipc_value_dict();
        CHECK_OK(cuipc_dict_set(root, "seq", cuipc_value_int(m)));
        cuipc_value *feats = cuipc_value_list();
        for (int i = 0; i < 3; i++) {
            cuipc_tensor x = t[i];
            /* Host buffers (mode default) are written by a copy down queued on the stream. */
            bool host_buffer = k->in_buffers && k->mode == CUIPC_MODE_DEFAULT;
            void *host_dst = NULL;
            if (i < 2 && k->in_buffers) {
                /* The strided tensor sits at an offset inside a larger buffer. */
                uint64_t lead = i == 1 ? 256 : 0;
                void *b = NULL;
                if (cuipc_producer_buffer_alloc(p,
                                                host_buffer ? CUIPC_MEMORY_HOST : CUIPC_MEMORY_CUDA,
                                                lead + span[i] + 512, 20 * SEC, &b) != CUIPC_OK) {
                    fprintf(stderr, "[%s] buffer %d: %s\n", k->name, m, cuipc_last_error());
                    rc = 21;
                    break;
                }
                x.data = (char *)b + lead;
                if (host_buffer) {
                    host_dst = x.data;
                    x.data = buf[0][i];
                }
            } else if (i < 2) {
                x.data = buf[m % nbuf][i];
            }
            if (i < 2) {
                uint64_t seed = (uint64_t)m * 16 + (uint64_t)i;
                uint64_t sum = 0;
                if (cuipc_gpu_fill_pattern(x.data, span[i], seed, stream) != CUIPC_OK ||
                    cuipc_gpu_checksum(x.data, span[i], stream, &sum) != CUIPC_OK)
                    rc = 14;
                if (host_dst) {
                    if (cuipc_cuda_memcpy_async(host_dst, x.data, span[i], stream) != CUIPC_OK)
                        rc = 14;
                    x.data = host_dst;
                    x.device = CUIPC_DEVICE_HOST;
                }
                char key[16];
                snprintf(key, sizeof key, "sum%d", i);
                CHECK_OK(cuipc_dict_set(root, key, cuipc_value_int((int64_t)sum)));
            }
            CHECK_OK(cuipc_list_append(feats, cuipc_value_tensor(&x, CUIPC_OWNER_NONE)));
        }
        CHECK_OK(cuipc_dict_set(root, "features", feats));
        for (int i = 0; k->gpu_wait && i < k->consumers && !rc; i++)
            if (cuipc_cuda_stream_wait_u32(stream, (uint32_t *)gates_dev + i, (uint32_t)m + 1) !=
                CUIPC_OK)
                rc = 15;
        if (!rc && cuipc_producer_send(p, root, stream, 20 * SEC) != CUIPC_OK) {
            fprintf(stderr, "[%s] send %d: %s\n", k->name, m, cuipc_last_error());
            rc = 15;
        }
        cuipc_value_free(root);
    }
    cuipc_producer_close(p);
    if (!rc && cuipc_producer_drain(p, 30 * SEC) != CUIPC_OK) {
        fprintf(stderr, "[%s] drain: %s\n", k->name, cuipc_last_error());
        rc = 16;
    }
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    const cuipc_pool_stats *ps = k->mode == CUIPC_MODE_CUDA_IPC_POOL ? &st.gpu_pool : &st.host_pool;
    printf("[%s] sent %llu, pool allocs %llu recycled %llu high water %llu B full events %llu, "
           "ipc exports %llu retained %llu B\n",
           k->name, (unsigned long long)st.messages_sent, (unsigned long long)ps->allocs,
           (unsigned long long)ps->recycled, (unsigned long long)ps->high_water_bytes,
           (unsigned long long)ps->full_events, (unsigned long long)st.ipc_exports,
           (unsigned long long)st.ipc_retained_bytes);
    if (!rc && st.messages_sent != (uint64_t)k->messages)
        rc = 17;
    if (!rc && k->mode != CUIPC_MODE_CUDA_IPC &&
        (ps->in_flight || ps->held || ps->recycled + ps->cancelled != ps->allocs))
        rc = 18;
    if (!rc && k->mode == CUIPC_MODE_CUDA_IPC &&
        st.ipc_retained_bytes < (uint64_t)k->messages * (span[0] + span[1]))
        rc = 19; /* every exported allocation is accounted as retained */
    /* Consumers must have detached before the memory they mapped goes away. */
    for (int i = 0; i < 200 && cuipc_producer_consumer_count(p); i++)
        usleep(10000);
    cuipc_producer_destroy(p);
    for (int b = 0; b < nbuf; b++)
        for (int i = 0; i < 2; i++)
            CHECK_OK(cuipc_gpu_free(buf[b][i]));
    free(buf);
    if (gates_dev)
        CHECK_OK(cuipc_cuda_host_unregister(gates));
    CHECK_OK(cuipc_gpu_stream_destroy(stream));
    return rc;
}

static int consumer_main(void *arg) {
    int me = (int)(intptr_t)arg;
    const gpu_case *k = cur;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 30 * SEC, &c) != CUIPC_OK) {
        fprintf(stderr, "[%s] consumer attach: %s\n", k->name, cuipc_last_error());
        return 20;
    }
    void *stream = NULL, *other = NULL; /* other: where tensors ready for any stream are read */
    if (cuipc_gpu_stream_create(0, &stream) != CUIPC_OK ||
        cuipc_gpu_stream_create(0, &other) != CUIPC_OK)
        return 21;
    bool borrow = (k->borrow_mask >> me) & 1;
    int got = 0, bad = 0;
    cuipc_unwrap_options o;
    cuipc_unwrap_options_init(&o);
    o.kind = borrow ? CUIPC_UNWRAP_BORROW : CUIPC_UNWRAP_COPY;
    o.stream = stream;
    if (k->gpu_wait)
        o.host_wait_ns = 0;
    if (!borrow && k->copy_to_host)
        o.device = CUIPC_DEVICE_HOST;
    if (!borrow && k->copy_to_gpu)
        o.device = 0;
    /* The one-time set-up before the first message: for the GPU pool, its mapping. */
    if (cuipc_consumer_prepare(c, &o) != CUIPC_OK) {
        fprintf(stderr, "[%s] prepare: %s\n", k->name, cuipc_last_error());
        return 26;
    }
    cuipc_consumer_stats before;
    cuipc_consumer_stats_get(c, &before);
    if (before.handle_opens != (k->mode == CUIPC_MODE_CUDA_IPC_POOL ? 1u : 0u)) {
        fprintf(stderr, "[%s] %llu handle opens after prepare\n", k->name,
                (unsigned long long)before.handle_opens);
        bad++;
    }
    for (;;) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(c, 30 * SEC, &m);
        if (s == CUIPC_ERR_CLOSED)
            break;
        if (s != CUIPC_OK) {
            fprintf(stderr, "[%s] recv: %s\n", k->name, cuipc_last_error());
            return 22;
        }
        cuipc_value *v = NULL;
        if (cuipc_message_unwrap(m, &o, &v) != CUIPC_OK) {
            fprintf(stderr, "[%s] unwrap: %s\n", k->name, cuipc_last_error());
            return 23;
        }
        int seq = (int)cuipc_value_as_int(cuipc_dict_get(v, "seq"));
        if (seq != got)
            bad++;
        if (k->gpu_wait) /* unwrapped: let the producer's copy run */
            __atomic_store_n(&gates[me], (uint32_t)seq + 1, __ATOMIC_RELEASE);
        /* Work left on the stream: copies out of GPU memory to a device, and GPU-side waits
         * (gpu_wait cases: the copy waits for the gates, so it cannot be done yet). Outside the
         * GPU pool, borrows and copies to the host leave none, nor do copies out of host memory
         * (default mode), which the unwrap waits for. In the pool, a host wait for the ready
         * word that times out (slow hosts, sanitizers) queues a GPU wait, so those are not
         * checked. An unordered tensor is read below on another stream: ready for any. */
        bool pool = k->mode == CUIPC_MODE_CUDA_IPC_POOL;
        bool host_data = k->mode == CUIPC_MODE_DEFAULT;
        bool to_device = !borrow && !k->copy_to_host && !host_data;
        bool gpu_waits = borrow && k->gpu_wait && pool;
        bool host_ready = !pool && (borrow || k->copy_to_host || host_data);
        bool ordered = cuipc_message_stream_ordered(m);
        if (((to_device || gpu_waits) && !ordered) || (host_ready && ordered)) {
            fprintf(stderr, "[%s] consumer %d message %d: stream_ordered %d is wrong\n", k->name,
                    me, seq, ordered);
            bad++;
        }
        cuipc_tensor want[3];
        make_layouts(k->tensor_bytes, want);
        const cuipc_value *feats = cuipc_dict_get(v, "features");
        for (int i = 0; i < 3; i++) {
            const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_list_get(feats, (size_t)i));
            if (!t || t->dtype != want[i].dtype || t->ndim != 2 ||
                t->shape[0] != want[i].shape[0] || t->strides[0] != want[i].strides[0]) {
                bad++;
                continue;
            }
            uint64_t n = cuipc_tensor_span_bytes(t);
            if (i == 2) {
                bad += n != 0;
                continue;
            }
            char key[16];
            snprintf(key, sizeof key, "sum%d", i);
            uint64_t expect = (uint64_t)cuipc_value_as_int(cuipc_dict_get(v, key));
            uint64_t sum = 0;
            if (t->device == CUIPC_DEVICE_HOST)
                sum = cuipc_host_checksum(t->data, n);
            else if (cuipc_gpu_checksum(t->data, n, ordered ? stream : other, &sum) != CUIPC_OK)
                bad++;
            if (sum != expect) {
                fprintf(stderr, "[%s] consumer %d message %d tensor %d: checksum mismatch\n",
                        k->name, me, seq, i);
                bad++;
            }
        }
        cuipc_value_free(v);
        if (cuipc_message_release(m, stream) != CUIPC_OK)
            bad++;
        cuipc_message_free(m);
        got++;
    }
    CHECK_OK(cuipc_gpu_stream_sync(stream));
    cuipc_consumer_stats cs;
    cuipc_consumer_stats_get(c, &cs);
    /* One pool mapping per process (made by prepare); cuda_ipc: one per distinct exported
     * allocation. */
    uint64_t max_opens = k->mode == CUIPC_MODE_CUDA_IPC ? 2 * (uint64_t)k->messages : 1;
    if (k->mode != CUIPC_MODE_DEFAULT && (cs.handle_opens == 0 || cs.handle_opens > max_opens)) {
        fprintf(stderr, "[%s] %llu handle opens\n", k->name, (unsigned long long)cs.handle_opens);
        bad++;
    }
    cuipc_consumer_detach(c);
    CHECK_OK(cuipc_gpu_stream_destroy(stream));
    CHECK_OK(cuipc_gpu_stream_destroy(other));
    if (got != k->messages)
        return 24;
    return bad ? 25 : 0;
}

/* The checksum of tensor 0 of an unwrapped message against the one the producer sent. */
static bool tensor0_intact(const cuipc_value *v, void *stream) {
    const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_list_get(cuipc_dict_get(v, "features"), 0));
    uint64_t sum = 0;
    if (!t || cuipc_gpu_checksum(t->data, cuipc_tensor_span_bytes(t), stream, &sum) != CUIPC_OK) {
        fprintf(stderr, "[shared-mapping] checksum: %s\n", cuipc_last_error());
        return false;
    }
    return sum == (uint64_t)cuipc_value_as_int(cuipc_dict_get(v, "sum0"));
}

/* Every message a consumer has left, borrowed, checked and released; *n: how many. */
static bool read_to_end(cuipc_consumer *c, const cuipc_unwrap_options *o, int *n) {
    for (;;) {
        cuipc_message *m = NULL;
        cuipc_value *v = NULL;
        cuipc_status s = cuipc_consumer_recv(c, 30 * SEC, &m);
        if (s == CUIPC_ERR_CLOSED)
            return true;
        bool ok = s == CUIPC_OK && cuipc_message_unwrap(m, o, &v) == CUIPC_OK &&
                  tensor0_intact(v, o->stream) && cuipc_message_release(m, o->stream) == CUIPC_OK;
        cuipc_value_free(v);
        cuipc_message_free(m);
        if (!ok)
            return false;
        ++*n;
    }
}

/* Two consumers of one producer in one process share its IPC mapping of the GPU pool. The one
 * that opened it detaches first, while the other still holds a borrowed tensor in it: the
 * tensor must stay readable (the mapping is closed only by the last consumer holding it), and
 * the process holds no mapping once both are gone. */
static int shared_mapping_main(void *arg) {
    (void)arg;
    cuipc_consumer *a = NULL, *b = NULL; /* b opens the mapping, a finds it opened */
    void *stream = NULL;
    if (cuipc_consumer_attach(sock_path, 30 * SEC, &a) != CUIPC_OK ||
        cuipc_consumer_attach(sock_path, 30 * SEC, &b) != CUIPC_OK ||
        cuipc_gpu_stream_create(0, &stream) != CUIPC_OK) {
        fprintf(stderr, "[shared-mapping] set-up: %s\n", cuipc_last_error());
        return 30;
    }
    cuipc_unwrap_options o;
    cuipc_unwrap_options_init(&o);
    o.kind = CUIPC_UNWRAP_BORROW;
    o.stream = stream;
    cuipc_consumer_stats sa, sb;
    if (cuipc_consumer_prepare(b, &o) != CUIPC_OK || cuipc_consumer_prepare(a, &o) != CUIPC_OK)
        return 31;
    cuipc_consumer_stats_get(a, &sa);
    cuipc_consumer_stats_get(b, &sb);
    if (sb.handle_opens != 1 || sa.handle_opens != 0 || sa.handle_hits != 1 ||
        cuipc_handle_cache_size() != 1) {
        fprintf(stderr, "[shared-mapping] opens %llu/%llu, hits %llu, %u mappings\n",
                (unsigned long long)sb.handle_opens, (unsigned long long)sa.handle_opens,
                (unsigned long long)sa.handle_hits, cuipc_handle_cache_size());
        return 32;
    }
    cuipc_message *kept = NULL;
    cuipc_value *kept_tree = NULL;
    if (cuipc_consumer_recv(a, 30 * SEC, &kept) != CUIPC_OK ||
        cuipc_message_unwrap(kept, &o, &kept_tree) != CUIPC_OK ||
        !tensor0_intact(kept_tree, stream)) {
        fprintf(stderr, "[shared-mapping] first borrow: %s\n", cuipc_last_error());
        return 33;
    }
    int nb = 0, na = 1;
    if (!read_to_end(b, &o, &nb) || cuipc_consumer_detach_within(b, 10 * SEC) != CUIPC_OK)
        return 34;
    int rc = 0;
    if (cuipc_handle_cache_size() != 1) {
        fprintf(stderr, "[shared-mapping] %u mappings left with a consumer holding one\n",
                cuipc_handle_cache_size());
        rc = 35;
    }
    /* The borrowed tensor read again after the opener's detach, then the rest of the run. */
    if (!rc && !tensor0_intact(kept_tree, stream)) {
        fprintf(stderr, "[shared-mapping] borrowed tensor unreadable after the other detached\n");
        rc = 36;
    }
    cuipc_value_free(kept_tree);
    if (!rc && (cuipc_message_release(kept, stream) != CUIPC_OK || !read_to_end(a, &o, &na)))
        rc = 37;
    cuipc_message_free(kept);
    if (!rc && (na != cur->messages || nb != cur->messages)) {
        fprintf(stderr, "[shared-mapping] read %d and %d of %d messages\n", na, nb, cur->messages);
        rc = 38;
    }
    CHECK_OK(cuipc_gpu_stream_sync(stream));
    if (cuipc_consumer_detach_within(a, 10 * SEC) != CUIPC_OK || cuipc_handle_cache_size() != 0) {
        fprintf(stderr, "[shared-mapping] %u mappings left after both detached\n",
                cuipc_handle_cache_size());
        rc = rc ? rc : 39;
    }
    CHECK_OK(cuipc_gpu_stream_destroy(stream));
    return rc;
}

/* A chunk whose consumers have all acked (as a dead consumer's acks are given on its behalf)
 * is not reused while the copy queued into it has not run: the stream is held by a gate. */
static int reuse_waits_for_gpu_main(void *arg) {
    (void)arg;
    cuipc_pool_config cfg;
    cuipc_pool_config_init(&cfg);
    cfg.memory = CUIPC_MEMORY_CUDA;
    cfg.size = 1 << 20;
    cfg.recycler_thread = false; /* reclaims only when this test asks */
    cuipc_pool *pool = NULL;
    void *stream = NULL, *src = NULL, *gate_dev = NULL;
    uint32_t *gate = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (gate == MAP_FAILED || cuipc_pool_create(&cfg, &pool) != CUIPC_OK ||
        cuipc_gpu_stream_create(0, &stream) != CUIPC_OK ||
        cuipc_gpu_malloc(0, 4096, &src) != CUIPC_OK ||
        cuipc_cuda_host_register(gate, 4096, &gate_dev) != CUIPC_OK) {
        fprintf(stderr, "[reuse-waits-for-gpu] set-up: %s\n", cuipc_last_error());
        return 10;
    }
    *gate = 0;
    cuipc_chunk c;
    int rc = 0;
    if (cuipc_pool_alloc(pool, 4096, 1, 0, &c) != CUIPC_OK ||
        cuipc_cuda_stream_wait_u32(stream, gate_dev, 1) != CUIPC_OK ||
        cuipc_pool_copy_in(pool, stream, &c, src, 4096) != CUIPC_OK ||
        cuipc_pool_release(pool, c.slot, c.generation, 0) != CUIPC_OK)
        rc = 11;
    if (!rc && cuipc_pool_reclaim(pool) != 0) {
        fprintf(stderr, "[reuse-waits-for-gpu] reclaimed before the queued copy ran\n");
        rc = 12;
    }
    __atomic_store_n(gate, 1, __ATOMIC_RELEASE); /* the copy and its ready word run now */
    if (!rc && (cuipc_cuda_stream_sync(stream) != CUIPC_OK || cuipc_pool_reclaim(pool) != 1)) {
        fprintf(stderr, "[reuse-waits-for-gpu] not reclaimed once the copy ran\n");
        rc = 13;
    }
    CHECK_OK(cuipc_cuda_stream_sync(stream));
    CHECK_OK(cuipc_cuda_host_unregister(gate));
    CHECK_OK(cuipc_gpu_free(src));
    CHECK_OK(cuipc_gpu_stream_destroy(stream));
    cuipc_pool_destroy(pool);
    return rc;
}

static void *accept_one(void *p) {
    return (void *)(intptr_t)cuipc_producer_accept(p, 1, 10000000000ll);
}

/* A cuda_ipc_pool producer with one consumer attached in this process, a 4 KiB GPU tensor and
 * a stream that a host word holds until the test opens it (*gate = 1). */
typedef struct gated {
    cuipc_producer *p;
    cuipc_consumer *c;
    void *stream, *src, *gate_dev;
    uint32_t *gate;
    cuipc_tensor ten;
} gated;

static int gated_open(gated *g, const char *name) {
    memset(g, 0, sizeof *g);
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.mode = CUIPC_MODE_CUDA_IPC_POOL;
    cfg.gpu_pool_bytes = 1 << 20;
    /* A host pool too, its arena registered with CUDA: its release at tear-down would also
     * wait for the GPU's work in flight. */
    cfg.host_pool_bytes = 1 << 20;
    cfg.socket_path = sock_path;
    pthread_t t;
    g->gate = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->gate == MAP_FAILED || cuipc_producer_create(&cfg, &g->p) != CUIPC_OK ||
        pthread_create(&t, NULL, accept_one, g->p) != 0)
        return 10;
    cuipc_status as = cuipc_consumer_attach(sock_path, 10000000000ll, &g->c);
    void *accepted = NULL;
    pthread_join(t, &accepted);
    int64_t shape[1] = {4096};
    if (as != CUIPC_OK || accepted != NULL || cuipc_gpu_stream_create(0, &g->stream) != CUIPC_OK ||
        cuipc_gpu_malloc(0, 4096, &g->src) != CUIPC_OK ||
        cuipc_cuda_host_register(g->gate, 4096, &g->gate_dev) != CUIPC_OK ||
        cuipc_tensor_init(&g->ten, g->src, 0, CUIPC_DTYPE_U8, 1, shape) != CUIPC_OK) {
        fprintf(stderr, "[%s] set-up: %s\n", name, cuipc_last_error());
        return 11;
    }
    *g->gate = 0;
    return 0;
}

/* The gate held shut on the stream: what is queued there after this waits for gated_release. */
static cuipc_status gated_hold(gated *g) {
    return cuipc_cuda_stream_wait_u32(g->stream, g->gate_dev, 1);
}

static void gated_release(gated *g) {
    __atomic_store_n(g->gate, 1, __ATOMIC_RELEASE);
}

/* The stream, source tensor and gate of g. */
static void gated_free(gated *g) {
    CHECK_OK(cuipc_cuda_host_unregister(g->gate));
    CHECK_OK(cuipc_gpu_free(g->src));
    CHECK_OK(cuipc_gpu_stream_destroy(g->stream));
}

static void gated_close(gated *g) {
    gated_release(g);
    CHECK_OK(cuipc_cuda_stream_sync(g->stream));
    cuipc_consumer_detach(g->c);
    CHECK_OK(cuipc_producer_drain(g->p, 5000000000ll));
    cuipc_producer_destroy(g->p);
    gated_free(g);
}

/* A message released on a stream whose ack has not run yet (the stream held by a gate): its
 * bytes adopted again are refused all the same, before the ack lands and after. */
static int adopt_while_ack_queued_main(void *arg) {
    (void)arg;
    gated g;
    int rc = gated_open(&g, "adopt-while-ack-queued");
    if (rc)
        return rc;
    cuipc_value *tree = cuipc_value_tensor(&g.ten, CUIPC_OWNER_NONE), *wrapped = NULL;
    static char wire[4096];
    size_t len = 0;
    cuipc_message *m1 = NULL, *m2 = NULL, *m3 = NULL;
    if (cuipc_producer_wrap(g.p, tree, NULL, &wrapped) != CUIPC_OK ||
        cuipc_encode(wrapped, wire, sizeof wire, &len) != CUIPC_OK ||
        cuipc_consumer_adopt(g.c, wire, len, &m1) != CUIPC_OK || gated_hold(&g) != CUIPC_OK ||
        cuipc_message_release(m1, g.stream) != CUIPC_OK)
        rc = 12;
    if (!rc && cuipc_consumer_adopt(g.c, wire, len, &m2) != CUIPC_ERR_DUPLICATE) {
        fprintf(stderr, "[adopt-while-ack-queued] adopted again while the ack was queued\n");
        rc = 13;
    }
    gated_release(&g);
    if (!rc && (cuipc_cuda_stream_sync(g.stream) != CUIPC_OK ||
                cuipc_consumer_adopt(g.c, wire, len, &m3) != CUIPC_ERR_DUPLICATE)) {
        fprintf(stderr, "[adopt-while-ack-queued] adopted again once the ack ran\n");
        rc = 14;
    }
    CHECK_OK(cuipc_cuda_stream_sync(g.stream));
    cuipc_message_free(m1);
    cuipc_message_free(m2);
    cuipc_message_free(m3);
    cuipc_value_free(wrapped);
    cuipc_value_free(tree);
    gated_close(&g);
    return rc;
}

/* A wrapped tree given back (a send out of time, or stale) while the copy into its chunk is
 * still queued (the stream held by a gate): the chunk is not reused until the copy has run, so
 * the copy cannot land in another message's memory; then it is recycled. */
static int give_back_waits_for_gpu_main(void *arg) {
    (void)arg;
    gated g;
    int rc = gated_open(&g, "give-back-waits-for-gpu");
    if (rc)
        return rc;
    cuipc_value *tree = cuipc_value_tensor(&g.ten, CUIPC_OWNER_NONE), *wrapped = NULL;
    cuipc_producer_stats st;
    if (gated_hold(&g) != CUIPC_OK ||
        cuipc_producer_wrap(g.p, tree, g.stream, &wrapped) != CUIPC_OK ||
        cuipc_producer_cancel_wrapped(g.p, wrapped) != CUIPC_OK)
        rc = 12;
    cuipc_producer_stats_get(g.p, &st);
    if (!rc && st.gpu_pool.in_flight != 1) {
        fprintf(stderr, "[give-back-waits-for-gpu] %u in flight with the copy still queued\n",
                st.gpu_pool.in_flight);
        rc = 13;
    }
    /* Given back, it is no longer the tree's: sent again it is refused, given back again too. */
    cuipc_message *m = NULL;
    if (!rc && (cuipc_producer_send_wrapped(g.p, wrapped, 0) != CUIPC_ERR_STALE ||
                cuipc_consumer_recv(g.c, 100000000ll, &m) != CUIPC_ERR_TIMEOUT)) {
        fprintf(stderr, "[give-back-waits-for-gpu] a given-back tree was sent again\n");
        rc = 16;
    }
    cuipc_message_free(m);
    cuipc_status_ignore(cuipc_producer_cancel_wrapped(g.p, wrapped));
    gated_release(&g);
    if (!rc && (cuipc_cuda_stream_sync(g.stream) != CUIPC_OK ||
                cuipc_producer_drain(g.p, 5000000000ll) != CUIPC_OK)) {
        fprintf(stderr, "[give-back-waits-for-gpu] not recycled once the copy ran: %s\n",
                cuipc_last_error());
        rc = 14;
    }
    cuipc_producer_stats_get(g.p, &st);
    if (!rc && (st.gpu_pool.in_flight != 0 || st.gpu_pool.cancelled != 1 ||
                st.gpu_pool.recycled + st.gpu_pool.cancelled != st.gpu_pool.allocs)) {
        fprintf(stderr,
                "[give-back-waits-for-gpu] after the drain: %u in flight, %llu allocs, %llu "
                "recycled, %llu cancelled\n",
                st.gpu_pool.in_flight, (unsigned long long)st.gpu_pool.allocs,
                (unsigned long long)st.gpu_pool.recycled,
                (unsigned long long)st.gpu_pool.cancelled);
        rc = 15;
    }
    cuipc_value_free(wrapped);
    cuipc_value_free(tree);
    gated_close(&g);
    return rc;
}

/* A tear-down while the GPU still has writes queued into the transport's memory (the stream
 * held by a gate that a thread opens gate_ms later): it waits for them, or, past its limit,
 * leaves that memory allocated instead of blocking in the driver until the gate opens; either
 * way the writes land and the context still works. */
typedef struct teardown_case {
    const char *name;
    int (*main)(void *);
    int gate_ms;         /* when the gate opens */
    int64_t wait_ns;     /* the tear-down's limit */
    cuipc_status expect; /* OK: it waited for the GPU; TIMEOUT: it gave up and left the memory */
} teardown_case;

/* Checked after the tear-down returned, the gate still shut: 0, or the test's exit code. */
typedef int (*gated_check)(const teardown_case *k, gated *g);

typedef struct gate_timer {
    gated *g;
    int ms;
} gate_timer;

static void *open_gate_later(void *arg) {
    gate_timer *t = arg;
    usleep((useconds_t)t->ms * 1000);
    gated_release(t->g);
    return NULL;
}

/* Run tear_down(what) while the gate opens k->gate_ms later; judge its status and its time. */
static int timed_tear_down(const teardown_case *k, gated *g,
                           cuipc_status (*tear_down)(void *, int64_t), void *what, int set_up_rc,
                           uint32_t recorded, gated_check while_shut) {
    /* The driver's own release would wait for the gate too: what is judged is the side's
     * record of the one word it queued. */
    if (!set_up_rc && recorded != 1) {
        fprintf(stderr, "[%s] %u queued GPU writes on record before the tear-down, want 1\n",
                k->name, recorded);
        set_up_rc = 13;
    }
    if (set_up_rc) { /* torn down all the same, the gate open so that nothing waits on it */
        gated_release(g);
        cuipc_status_ignore(tear_down(what, k->wait_ns));
        return set_up_rc;
    }
    pthread_t t;
    gate_timer gt = {g, k->gate_ms};
    if (pthread_create(&t, NULL, open_gate_later, &gt) != 0)
        return 20;
    uint64_t t0 = cuipc_now_ns();
    cuipc_status s = tear_down(what, k->wait_ns);
    double took_ms = (double)(cuipc_now_ns() - t0) / 1e6;
    int rc = 0;
    if (s != k->expect) {
        fprintf(stderr, "[%s] tear-down returned %s (%s), want %s\n", k->name, cuipc_status_name(s),
                cuipc_last_error(), cuipc_status_name(k->expect));
        rc = 21;
    } else if (s == CUIPC_OK && took_ms < k->gate_ms * 0.9) {
        fprintf(stderr, "[%s] done in %.0f ms, before the GPU ran the writes\n", k->name, took_ms);
        rc = 22;
    } else if (s != CUIPC_OK && took_ms > (double)k->wait_ns / 1e6 + 2000) {
        fprintf(stderr, "[%s] gave up after %.0f ms, limit %lld ms\n", k->name, took_ms,
                (long long)(k->wait_ns / 1000000));
        rc = 23;
    }
    if (!rc && while_shut && took_ms < k->gate_ms * 0.9)
        rc = while_shut(k, g);
    pthread_join(t, NULL);
    /* The writes ran once the gate opened: the context must still work. */
    void *probe = NULL;
    if (cuipc_cuda_stream_sync(g->stream) != CUIPC_OK ||
        cuipc_gpu_malloc(0, 4096, &probe) != CUIPC_OK || cuipc_gpu_free(probe) != CUIPC_OK) {
        fprintf(stderr, "[%s] the context failed once the queued writes ran: %s\n", k->name,
                cuipc_last_error());
        rc = rc ? rc : 24;
    }
    printf("[%s] tear-down %s after %.0f ms\n", k->name, cuipc_status_name(s), took_ms);
    fflush(stdout); /* a forked child: its exit does not flush */
    return rc;
}

static cuipc_status destroy_producer(void *p, int64_t wait_ns) {
    return cuipc_producer_destroy_within(p, wait_ns);
}

static cuipc_status detach_consumer(void *c, int64_t wait_ns) {
    return cuipc_consumer_detach_within(c, wait_ns);
}

/* The producer destroyed, not drained, while the copy of a wrap (and its ready word) is queued
 * into its GPU pool. */
static int destroy_while_copy_queued_main(void *arg) {
    const teardown_case *k = arg;
    gated g;
    int rc = gated_open(&g, k->name);
    if (rc)
        return rc;
    cuipc_value *tree = cuipc_value_tensor(&g.ten, CUIPC_OWNER_NONE), *wrapped = NULL;
    if (gated_hold(&g) != CUIPC_OK ||
        cuipc_producer_wrap(g.p, tree, g.stream, &wrapped) != CUIPC_OK)
        rc = 12;
    cuipc_consumer_detach(g.c); /* it holds nothing: the tree was never sent */
    rc = timed_tear_down(k, &g, destroy_producer, g.p, rc,
                         cuipc_pool_gpu_writes_queued(g.p->gpu_pool), NULL);
    gated_release(&g);
    cuipc_value_free(wrapped);
    cuipc_value_free(tree);
    gated_free(&g);
    return rc;
}

/* A detach that gave up keeps the consumer's place while its ack is queued: the producer must
 * not hand on a chunk whose reads are still queued. */
static int place_kept_while_acks_queued(const teardown_case *k, gated *g) {
    if (k->expect == CUIPC_OK)
        return 0;
    usleep(500 * 1000); /* the producer's monitor sees a hang-up within milliseconds */
    cuipc_producer_stats st;
    cuipc_producer_stats_get(g->p, &st);
    if (cuipc_producer_consumer_count(g->p) == 1 && st.consumers_detached == 0)
        return 0;
    fprintf(stderr, "[%s] the consumer's place was given back with its ack queued\n", k->name);
    return 26;
}

/* The consumer detached while the ack of a message it released on a stream is queued. */
static int detach_while_ack_queued_main(void *arg) {
    const teardown_case *k = arg;
    gated g;
    int rc = gated_open(&g, k->name);
    if (rc)
        return rc;
    cuipc_value *tree = cuipc_value_tensor(&g.ten, CUIPC_OWNER_NONE);
    cuipc_message *m = NULL;
    if (cuipc_producer_send(g.p, tree, g.stream, SEC) != CUIPC_OK ||
        cuipc_cuda_stream_sync(g.stream) != CUIPC_OK ||
        cuipc_consumer_recv(g.c, 5 * SEC, &m) != CUIPC_OK || gated_hold(&g) != CUIPC_OK ||
        cuipc_message_release(m, g.stream) != CUIPC_OK)
        rc = 12;
    cuipc_message_free(m);
    rc = timed_tear_down(k, &g, detach_consumer, g.c, rc, cuipc_acks_queued(&g.c->gpu, g.c->index),
                         place_kept_while_acks_queued);
    gated_release(&g);
    /* Its chunk comes back by its ack either way, landed before the detach or after it. */
    if (!rc && cuipc_producer_drain(g.p, 5 * SEC) != CUIPC_OK) {
        fprintf(stderr, "[%s] not drained after the detach: %s\n", k->name, cuipc_last_error());
        rc = 25;
    }
    /* The place comes back either way: at the detach, or once the late ack landed. */
    uint64_t until = cuipc_now_ns() + 5 * SEC;
    while (cuipc_producer_consumer_count(g.p) != 0 && cuipc_now_ns() < until)
        usleep(1000);
    if (!rc && cuipc_producer_consumer_count(g.p) != 0) {
        fprintf(stderr, "[%s] the consumer's place was not given back once its ack landed\n",
                k->name);
        rc = 27;
    }
    cuipc_producer_destroy(g.p);
    cuipc_value_free(tree);
    gated_free(&g);
    return rc;
}

static void run_case(const gpu_case *k) {
    cur = k;
    memset(gates, 0, GATES_BYTES);
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    pid_t cons[8];
    for (int i = 0; i < k->consumers; i++)
        cons[i] = cuipc_test_fork(consumer_main, (void *)(intptr_t)i);
    pid_t prod = cuipc_test_fork(producer_main, NULL);
    int prc = cuipc_test_wait(prod, 120000);
    int bad = prc != 0;
    for (int i = 0; i < k->consumers; i++) {
        int rc = cuipc_test_wait(cons[i], 30000);
        if (rc != 0) {
            fprintf(stderr, "[%s] consumer %d exited %d\n", k->name, i, rc);
            bad = 1;
        }
    }
    if (prc != 0)
        fprintf(stderr, "[%s] producer exited %d\n", k->name, prc);
    CHECK(!bad);
    printf("[%s] %s\n", k->name, bad ? "FAILED" : "ok");
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    cuipc_test_require_gpu();
    gates = mmap(NULL, GATES_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(gates != MAP_FAILED);
    static const gpu_case cases[] = {
        {"pool-copy-1", CUIPC_MODE_CUDA_IPC_POOL, 1, 50, 1 << 20, 16 << 20, 0x0, 0, 0, 0, 0},
        {"pool-borrow-1", CUIPC_MODE_CUDA_IPC_POOL, 1, 50, 1 << 20, 16 << 20, 0x1, 0, 0, 0, 0},
        /* Pool smaller than the traffic: chunks must be recycled for the run to finish. */
        {"pool-mixed-4-recycle", CUIPC_MODE_CUDA_IPC_POOL, 4, 20, 32 << 20, 128 << 20, 0x5, 0, 0, 0,
         0},
        {"pool-copy-to-host-2", CUIPC_MODE_CUDA_IPC_POOL, 2, 20, 1 << 20, 16 << 20, 0x0, 1, 0, 0,
         0},
        {"pool-small-8", CUIPC_MODE_CUDA_IPC_POOL, 8, 200, 4096, 4 << 20, 0xAA, 0, 0, 0, 0},
        /* Ordering on the GPU alone: every unwrap comes before the producer's copy (gates), and
         * every read waits for that copy on the consumer's stream. */
        {"pool-gpu-wait-2", CUIPC_MODE_CUDA_IPC_POOL, 2, 50, 8 << 20, 32 << 20, 0x1, 0, 1, 0, 0},
        /* Zero-copy produce: tensors written into pool buffers, 150 MiB through an 8 MiB pool;
         * then with every unwrap before the ready word (GPU-side ordering of the buffer path). */
        {"pool-buffers-2", CUIPC_MODE_CUDA_IPC_POOL, 2, 100, 1 << 20, 8 << 20, 0x1, 0, 0, 1, 0},
        {"pool-buffers-gpu-wait-2", CUIPC_MODE_CUDA_IPC_POOL, 2, 50, 1 << 20, 8 << 20, 0x2, 0, 1, 1,
         0},
        /* Host buffers written by a copy queued on the send's stream: ready only after it. */
        {"default-host-buffers-2", CUIPC_MODE_DEFAULT, 2, 30, 1 << 20, 0, 0x1, 0, 0, 1, 0},
        {"cuda-ipc-2", CUIPC_MODE_CUDA_IPC, 2, 20, 1 << 20, 0, 0x2, 0, 0, 0, 0},
        {"default-device-tensors-2", CUIPC_MODE_DEFAULT, 2, 20, 1 << 20, 0, 0x2, 0, 0, 0, 0},
        /* Copied out of the host pool to a GPU: waited for in the unwrap, so not stream-ordered
         * and read on another stream. */
        {"default-copy-to-gpu-2", CUIPC_MODE_DEFAULT, 2, 20, 1 << 20, 0, 0x2, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    int rc = cuipc_test_wait(cuipc_test_fork(reuse_waits_for_gpu_main, NULL), 60000);
    CHECK(rc == 0);
    printf("[reuse-waits-for-gpu] %s\n", rc ? "FAILED" : "ok");
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    rc = cuipc_test_wait(cuipc_test_fork(adopt_while_ack_queued_main, NULL), 60000);
    CHECK(rc == 0);
    printf("[adopt-while-ack-queued] %s\n", rc ? "FAILED" : "ok");
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    rc = cuipc_test_wait(cuipc_test_fork(give_back_waits_for_gpu_main, NULL), 60000);
    CHECK(rc == 0);
    printf("[give-back-waits-for-gpu] %s\n", rc ? "FAILED" : "ok");
    /* One consumer process holding both places of the producer (the cases' producer). */
    static const gpu_case shared = {
        "shared-mapping", CUIPC_MODE_CUDA_IPC_POOL, 2, 4, 1 << 20, 16 << 20, 0x3, 0, 0, 0, 0};
    cur = &shared;
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    pid_t both = cuipc_test_fork(shared_mapping_main, NULL);
    rc = cuipc_test_wait(cuipc_test_fork(producer_main, NULL), 120000);
    int rc_both = cuipc_test_wait(both, 30000);
    CHECK(rc == 0 && rc_both == 0);
    printf("[shared-mapping] %s (producer %d, consumers %d)\n", rc || rc_both ? "FAILED" : "ok", rc,
           rc_both);
    static const teardown_case teardowns[] = {
        {"destroy-waits-for-queued-copy", destroy_while_copy_queued_main, 300, 10 * SEC, CUIPC_OK},
        /* The gate opens well after the limit and its 2 s margin: a tear-down that blocked
         * until the GPU got there (the driver's own wait) fails the time check. */
        {"destroy-leaves-pool-past-limit", destroy_while_copy_queued_main, 3000, SEC / 5,
         CUIPC_ERR_TIMEOUT},
        {"detach-waits-for-queued-ack", detach_while_ack_queued_main, 300, 10 * SEC, CUIPC_OK},
        {"detach-leaves-table-past-limit", detach_while_ack_queued_main, 3000, SEC / 5,
         CUIPC_ERR_TIMEOUT},
    };
    for (size_t i = 0; i < sizeof teardowns / sizeof teardowns[0]; i++) {
        cuipc_test_socket_path(sock_path, sizeof sock_path);
        rc = cuipc_test_wait(cuipc_test_fork(teardowns[i].main, (void *)&teardowns[i]), 60000);
        CHECK(rc == 0);
        printf("[%s] %s\n", teardowns[i].name, rc ? "FAILED" : "ok");
    }
    return cuipc_test_finish("test_transport_gpu");
}
