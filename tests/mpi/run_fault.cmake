# Runs one fault scenario of fault_main under mpirun and checks its exit code, output
# and duration. Arguments (-D): MPIEXEC, PROGRAM, MODE, TARGET, EXPECT (regex on the
# merged output), EXPECT_RC (zero or nonzero), MAX_SECONDS.
string(TIMESTAMP t0 "%s")
execute_process(
  COMMAND ${MPIEXEC} --allow-run-as-root --oversubscribe -np 2 ${PROGRAM} ${MODE} ${TARGET}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out
  TIMEOUT ${MAX_SECONDS})
string(TIMESTAMP t1 "%s")
math(EXPR elapsed "${t1} - ${t0}")
message(STATUS "fault ${MODE}: exit ${rc} after ${elapsed} s\n${out}")
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "fault ${MODE}: did not end by itself within ${MAX_SECONDS} s (${rc})")
endif()
if(EXPECT_RC STREQUAL "zero" AND NOT rc EQUAL 0)
  message(FATAL_ERROR "fault ${MODE}: expected exit 0, got ${rc}")
endif()
if(EXPECT_RC STREQUAL "nonzero" AND rc EQUAL 0)
  message(FATAL_ERROR "fault ${MODE}: expected a non-zero exit, got 0")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "fault ${MODE}: output does not match '${EXPECT}'")
endif()
