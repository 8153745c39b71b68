/* Compiled twice by status_unused_check.cmake: with DROP the status of a call is dropped (must
 * not compile), without it the call goes through cuipc_status_ignore() (must compile). */
#include "cuipc/cuipc.h"

void drop_or_ignore(cuipc_value *list);
void drop_or_ignore(cuipc_value *list) {
#ifdef DROP
    cuipc_list_append(list, cuipc_value_int(1));
#else
    cuipc_status_ignore(cuipc_list_append(list, cuipc_value_int(1)));
#endif
}
