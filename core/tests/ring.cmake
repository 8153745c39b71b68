# The shared-memory message ring: multi-process tests, no GPU needed.
cuipc_test(test_ring SOURCES test_ring.c DEPS cuipc_ring TIMEOUT 60 LABELS threads)
