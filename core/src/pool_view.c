/* A consumer's view of a producer's pool released: by a detach, or by the keeper of a place
 * whose detach gave up (place_keeper.c), once nothing is queued into it. */
#include <stdlib.h>
#include <string.h>

#include "consumer_internal.h"
#include "cuda_api.h"
#include "shm.h"

void cuipc_pool_view_unmap(pool_view *v) {
    if (!v->present)
        return;
    /* Tear-down: nothing is left to retry a failed unregister on. */
    if (v->host_dev_base)
        cuipc_status_ignore(cuipc_cuda_host_unregister(v->base));
    if (v->base)
        cuipc_shm_unmap(v->base, v->size);
    if (v->sync_dev_base)
        cuipc_status_ignore(cuipc_cuda_host_unregister(cuipc_sync_table_base(v->sync)));
    cuipc_sync_table_destroy(v->sync);
    free(v->held_gen);
    free(v->ack_queued);
    memset(v, 0, sizeof *v);
}
