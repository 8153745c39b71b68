/* What the transport would refuse of a parsed scenario, found before anything runs: the ring
 * size and the encoded size of the scenario's largest message, asked of libcuipc itself so that
 * validate refuses exactly what run would. */
#ifndef CUIPC_HARNESS_SCENARIO_TRANSPORT_H
#define CUIPC_HARNESS_SCENARIO_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scenario.h"

/* The largest message the producer role sends for s, encoded (0 if it cannot be measured). */
uint64_t cuipc_scenario_message_bytes(const cuipc_scenario *s);

/* CUIPC_ERR_INVALID_ARG with cuipc_last_error() "FILE:LINE:COL: $.pool.ring_bytes: why" when the
 * transport would refuse s. */
cuipc_status cuipc_scenario_check_transport(const cuipc_scenario *s);

#endif
