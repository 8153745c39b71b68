/* Writes the seed corpus for fuzz_decode into the directory given as argv[1]: encodings of small
 * trees covering every value kind and both proxy kinds, each prefixed by the fuzz mode byte (1:
 * header rewritten by the target, 0: decoded as is). Generated rather than committed so the
 * seeds always follow the current wire format. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cuipc/codec.h"

static cuipc_proxy seed_proxy(cuipc_proxy_kind kind, int32_t ndim) {
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.layout.dtype = CUIPC_DTYPE_F16;
    p.layout.ndim = ndim;
    p.layout.src_device = 0;
    cuipc_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = p.layout.dtype;
    t.ndim = ndim;
    for (int32_t i = ndim - 1, stride = 1; i >= 0; i--, stride *= 3) {
        t.shape[i] = p.layout.shape[i] = 3;
        t.strides[i] = p.layout.strides[i] = i == 0 ? 0 : stride; /* one broadcast dim */
    }
    p.nbytes = cuipc_tensor_span_bytes(&t);
    if (kind == CUIPC_PROXY_POOL) {
        p.u.pool.pool_id = 0x1234567890ull;
        p.u.pool.memory = ndim % 2 ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST;
        p.u.pool.pool_device = ndim % 2 ? 0 : CUIPC_DEVICE_HOST;
        p.u.pool.slot = 7;
        p.u.pool.generation = 2;
        p.u.pool.offset = 4096;
    } else {
        memset(p.u.ipc.handle, 0xA5, sizeof p.u.ipc.handle);
        p.u.ipc.export_id = 9;
        p.u.ipc.offset = 512;
        p.u.ipc.alloc_size = 512 + p.nbytes + 100;
        p.u.ipc.device = 0;
        p.u.ipc.producer_id = 77;
    }
    return p;
}

static cuipc_value *seed_tree(int which) {
    cuipc_value *root = cuipc_value_dict();
    cuipc_value *list = cuipc_value_list();
    const uint8_t raw[5] = {0, 1, 2, 0, 255};
    cuipc_proxy pool = seed_proxy(CUIPC_PROXY_POOL, which % (CUIPC_MAX_DIMS + 1));
    cuipc_proxy ipc = seed_proxy(CUIPC_PROXY_IPC, (which + 3) % (CUIPC_MAX_DIMS + 1));
    if (!root || !list || cuipc_list_append(list, cuipc_value_null()) != CUIPC_OK ||
        cuipc_list_append(list, cuipc_value_bool(which & 1)) != CUIPC_OK ||
        cuipc_list_append(list, cuipc_value_int(-which * 1000003)) != CUIPC_OK ||
        cuipc_list_append(list, cuipc_value_float(which * 0.5)) != CUIPC_OK ||
        cuipc_list_append(list, cuipc_value_bytes(raw, (size_t)which % sizeof raw)) != CUIPC_OK ||
        cuipc_dict_set(root, "input_ids", list) != CUIPC_OK ||
        cuipc_dict_set(root, "name", cuipc_value_string(which ? "pixel_values" : "")) != CUIPC_OK ||
        cuipc_dict_set(root, "pool", cuipc_value_proxy(&pool)) != CUIPC_OK ||
        cuipc_dict_set(root, "ipc", cuipc_value_proxy(&ipc)) != CUIPC_OK) {
        fprintf(stderr, "fuzz_seeds: building tree %d: %s\n", which, cuipc_last_error());
        exit(1);
    }
    /* Nest a little deeper every time. */
    cuipc_value *cur = root;
    for (int i = 0; i < which; i++) {
        cuipc_value *next = cuipc_value_dict();
        if (cuipc_dict_set(cur, "nested", next) != CUIPC_OK)
            exit(1);
        cur = next;
    }
    return root;
}

static void write_seed(const char *dir, const char *name, uint8_t mode, const uint8_t *msg,
                       size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&mode, 1, 1, f) != 1 || fwrite(msg, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "fuzz_seeds: writing %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    if (mkdir(argv[1], 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz_seeds: mkdir %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int written = 0;
    for (int which = 0; which < 10; which++) {
        cuipc_value *tree = which == 9 ? cuipc_value_null() : seed_tree(which);
        size_t size = 0, len = 0;
        uint8_t *msg = NULL;
        if (cuipc_encoded_size(tree, &size) != CUIPC_OK || !(msg = malloc(size)) ||
            cuipc_encode(tree, msg, size, &len) != CUIPC_OK) {
            fprintf(stderr, "fuzz_seeds: encoding tree %d: %s\n", which, cuipc_last_error());
            return 1;
        }
        char name[32];
        snprintf(name, sizeof name, "tree%d-fixed", which);
        write_seed(argv[1], name, 1, msg, len);
        snprintf(name, sizeof name, "tree%d-raw", which);
        write_seed(argv[1], name, 0, msg, len);
        written += 2;
        free(msg);
        cuipc_value_free(tree);
    }
    printf("fuzz_seeds: %d seeds in %s\n", written, argv[1]);
    return 0;
}
