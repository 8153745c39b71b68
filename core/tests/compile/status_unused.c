/* Compiled three times by status_unused_check.cmake: with DROP the status of a public call is
 * dropped, with DROP_INTERNAL that of an internal one (neither may compile); without either the
 * calls go through cuipc_status_ignore() (must compile). */
#include "cuipc/cuipc.h"
#include "ring.h"

void drop_or_ignore(cuipc_value *list, cuipc_ring *ring);
void drop_or_ignore(cuipc_value *list, cuipc_ring *ring) {
#ifdef DROP
    cuipc_list_append(list, cuipc_value_int(1));
#else
    cuipc_status_ignore(cuipc_list_append(list, cuipc_value_int(1)));
#endif
#ifdef DROP_INTERNAL
    cuipc_ring_send(ring, "x", 1, 0);
#else
    cuipc_status_ignore(cuipc_ring_send(ring, "x", 1, 0));
#endif
}
