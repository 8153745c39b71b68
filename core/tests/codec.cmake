# Tensor descriptors, value trees and the wire codec (components cuipc_base and cuipc_codec).
cuipc_test(test_tensor SOURCES test_tensor.c DEPS cuipc_base TIMEOUT 30)
cuipc_test(test_value SOURCES test_value.c DEPS cuipc_codec TIMEOUT 30)
cuipc_test(test_codec SOURCES test_codec.c DEPS cuipc_codec TIMEOUT 60)
