# Pool and transport: real forked producer/consumer processes, default mode with host tensors.
cuipc_test(test_transport SOURCES test_transport.c DEPS cuipc TIMEOUT 120 LABELS threads)
# The GPU modes across processes (label gpu: skipped without a GPU).
cuipc_test(test_transport_gpu SOURCES test_transport_gpu.c DEPS cuipc GPU TIMEOUT 300)
# A long-lived producer with consumers that come and go, attach that can't be stalled or
# hijacked, timeouts that hold, bad configuration refused: one executable, one test per case.
add_executable(test_services test_services.c)
target_link_libraries(test_services PRIVATE cuipc_testutil cuipc_internal cuipc)
foreach(case churn producer_credentials foreign_consumer silent_peers attach_timeouts bad_config
        fd_exhaustion crashed_producer_dir place_kept_until_acked)
  cuipc_add_test(test_services_${case} COMMAND test_services ${case} TIMEOUT 120 LABELS threads)
endforeach()
