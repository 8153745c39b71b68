# Tests of the CUDA layer (cuipc_cudart). test_pattern and test_no_gpu need no GPU and run in
# CPU CI for real; test_gpu_basics needs one and exits 77 (skipped) without.
cuipc_test(test_pattern SOURCES test_pattern.c DEPS cuipc_cudart TIMEOUT 30)
cuipc_test(test_no_gpu SOURCES test_no_gpu.c DEPS cuipc_cudart Threads::Threads TIMEOUT 30)
cuipc_test(test_gpu_basics SOURCES test_gpu_basics.c DEPS cuipc_cudart GPU TIMEOUT 120)
