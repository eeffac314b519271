# retort_library(<folder> SOURCES ... DEPS ... [TORCH])
#   One static library per folder, named retort_<folder>. TORCH reuses the shared
#   precompiled header of torch/torch.h.
function(retort_library folder)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  set(target retort_${folder})
  add_library(${target} STATIC ${ARG_SOURCES})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    target_link_libraries(${target} PUBLIC torch)
    target_precompile_headers(${target} REUSE_FROM retort_pch)
  endif()
endfunction()

# retort_test(<name> SOURCES ... DEPS ... [TORCH] [MPI_RANKS n] [TIMEOUT s] [PROPERTIES ...])
#   One GoogleTest binary per test folder (test_<name>), registered with CTest.
#   With MPI_RANKS, the binary runs under mpirun with that many ranks as a single test.
#   PROPERTIES: more CTest properties of each discovered test (LABELS cluster RUN_SERIAL TRUE).
function(retort_test name)
  cmake_parse_arguments(ARG "TORCH" "MPI_RANKS;TIMEOUT" "SOURCES;DEPS;PROPERTIES" ${ARGN})
  set(target test_${name})
  add_executable(${target} ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(ARG_TORCH)
    target_link_libraries(${target} PRIVATE torch)
    target_precompile_headers(${target} REUSE_FROM retort_pch)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  if(ARG_MPI_RANKS)
    add_test(NAME ${name}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe
                     -np ${ARG_MPI_RANKS} $<TARGET_FILE:${target}>)
    set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} ENVIRONMENT "OMP_NUM_THREADS=1")
  else()
    include(GoogleTest)
    gtest_discover_tests(${target} DISCOVERY_MODE PRE_TEST
                         PROPERTIES TIMEOUT ${ARG_TIMEOUT}
                                    ENVIRONMENT "RETORT_SOURCE_DIR=${PROJECT_SOURCE_DIR}" ${ARG_PROPERTIES})
  endif()
endfunction()
