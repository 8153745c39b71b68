/* cuipc: hand GPU tensors to other processes on the same host without copying through the CPU. */
#ifndef CUIPC_H
#define CUIPC_H

#include "cuipc/base.h"
#include "cuipc/status.h"
#include "cuipc/tensor.h"
#include "cuipc/proxy.h"
#include "cuipc/value.h"
#include "cuipc/codec.h"
#include "cuipc/pool.h"
#include "cuipc/transport.h"
#include "cuipc/gpu.h"

#endif
