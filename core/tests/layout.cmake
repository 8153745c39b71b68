# The file graph of core/src (calls between files, includes) has no cycle.
find_package(Python3 COMPONENTS Interpreter REQUIRED)
cuipc_add_test(core_call_graph
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/call_graph.py ${PROJECT_SOURCE_DIR}/core/src
  TIMEOUT 30)
