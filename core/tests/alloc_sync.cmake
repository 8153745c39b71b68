# Allocator and sync table tests (pure CPU; the sync table ones fork real consumer processes).
cuipc_test(test_allocator SOURCES test_allocator.c DEPS cuipc_alloc TIMEOUT 60)
cuipc_test(test_sync_table SOURCES test_sync_table.c DEPS cuipc_sync TIMEOUT 60 LABELS threads)
