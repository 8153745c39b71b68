# Pool and transport: real forked producer/consumer processes, default mode with host tensors.
cuipc_test(test_transport SOURCES test_transport.c DEPS cuipc TIMEOUT 120 LABELS threads)
# The GPU modes across processes (label gpu: skipped without a GPU).
cuipc_test(test_transport_gpu SOURCES test_transport_gpu.c DEPS cuipc GPU TIMEOUT 300)
