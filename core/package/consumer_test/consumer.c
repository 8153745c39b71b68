/* A program built outside the tree against the installed library: a producer and a consumer in
 * one process hand a nested tree through the default (host) mode and check what arrives. */
#include <cuipc/cuipc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cuipc_status s_ = (call);                                                                  \
        if (s_ != CUIPC_OK) {                                                                      \
            fprintf(stderr, "%s: %s (%s)\n", #call, cuipc_status_name(s_), cuipc_last_error());    \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Attaching is a handshake: the producer accepts on another thread. */
static void *accept_one(void *p) {
    return (void *)(intptr_t)cuipc_producer_accept(p, 1, 5000000000ll);
}

int main(void) {
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cuipc_producer *p;
    CHECK(cuipc_producer_create(&cfg, &p));
    pthread_t acceptor;
    pthread_create(&acceptor, NULL, accept_one, p);
    cuipc_consumer *c;
    CHECK(cuipc_consumer_attach(cuipc_producer_socket_path(p), 5000000000ll, &c));
    void *accepted;
    pthread_join(acceptor, &accepted);
    CHECK((cuipc_status)(intptr_t)accepted);

    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    cuipc_tensor t;
    CHECK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 2, shape));
    cuipc_value *tree = cuipc_value_dict();
    CHECK(cuipc_dict_set(tree, "x", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    CHECK(cuipc_dict_set(tree, "name", cuipc_value_string("image")));
    CHECK(cuipc_producer_send(p, tree, NULL, -1));
    cuipc_value_free(tree);

    cuipc_message *m;
    CHECK(cuipc_consumer_recv(c, 5000000000ll, &m));
    cuipc_unwrap_options o;
    cuipc_unwrap_options_init(&o);
    o.kind = CUIPC_UNWRAP_BORROW;
    cuipc_value *out;
    CHECK(cuipc_message_unwrap(m, &o, &out));
    const cuipc_tensor *r = cuipc_value_as_tensor(cuipc_dict_get(out, "x"));
    int ok = r && r->ndim == 2 && r->shape[1] == 3 && memcmp(r->data, data, sizeof data) == 0 &&
             strcmp(cuipc_value_as_string(cuipc_dict_get(out, "name")), "image") == 0;
    cuipc_value_free(out);
    CHECK(cuipc_message_release(m, NULL));
    cuipc_message_free(m);
    CHECK(cuipc_producer_drain(p, 5000000000ll));
    cuipc_consumer_detach(c);
    cuipc_producer_destroy(p);
    printf("installed cuipc: %s\n", ok ? "tree received intact" : "tree differs");
    return ok ? 0 : 1;
}
