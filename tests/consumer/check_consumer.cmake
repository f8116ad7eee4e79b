# The drop-in check, run by ctest (install.consumer_project):
#   1. configures the library alone, with the experiments layer and the tests off and their
#      packages (yaml-cpp, fmt, spdlog, nlohmann-json, CLI11, GoogleTest, google benchmark)
#      made unfindable;
#   2. checks that every library source compiles there with the same command as in the
#      tested build (BLOCKOPT_BUILD), so that build's objects are the library-alone build's;
#   3. installs the library component of BLOCKOPT_BUILD into a scratch prefix, then
#      configures, builds and runs tests/consumer against it.
# NOTE: step 2 stands in for compiling the library a second time, which took 6 minutes of
# the CI run.
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/../run_step.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
set(hidden_packages)
foreach(package yaml-cpp fmt spdlog nlohmann_json CLI11 GTest benchmark)
  list(APPEND hidden_packages -DCMAKE_DISABLE_FIND_PACKAGE_${package}=ON)
endforeach()
run_step(${CMAKE_COMMAND} -S ${BLOCKOPT_SOURCE} -B ${WORK_DIR}/library -G Ninja
         -DCMAKE_BUILD_TYPE=Release -DBLOCKOPT_BUILD_TESTS=OFF -DBLOCKOPT_BUILD_EXPERIMENTS=OFF
         ${hidden_packages})

# library_compile_commands(<build dir> <out>): "<source>: <command>" for each source of the
# library layers, sorted, with <build dir> written as <BUILD>.
function(library_compile_commands build_dir out)
  file(READ ${build_dir}/compile_commands.json json)
  string(JSON count LENGTH "${json}")
  math(EXPR last "${count} - 1")
  set(result)
  foreach(i RANGE ${last})
    string(JSON source GET "${json}" ${i} file)
    string(JSON command GET "${json}" ${i} command)
    if(command MATCHES " -o CMakeFiles/blockopt_(optim|hessian|models|data|distributed)\\.dir/")
      string(REPLACE "${build_dir}" "<BUILD>" entry "${source}: ${command}")
      list(APPEND result "${entry}")
    endif()
  endforeach()
  list(SORT result)
  set(${out} "${result}" PARENT_SCOPE)
endfunction()
library_compile_commands(${WORK_DIR}/library library_alone)
library_compile_commands(${BLOCKOPT_BUILD} tested)
list(LENGTH library_alone count)
if(count EQUAL 0)
  message(FATAL_ERROR "no library sources in ${WORK_DIR}/library/compile_commands.json")
endif()
if(NOT library_alone STREQUAL tested)
  foreach(entry IN LISTS library_alone)
    if(NOT entry IN_LIST tested)
      message(FATAL_ERROR "the library-alone build compiles differently from "
                          "${BLOCKOPT_BUILD}:\n  ${entry}")
    endif()
  endforeach()
  message(FATAL_ERROR "${BLOCKOPT_BUILD} compiles library sources the library-alone build "
                      "does not have")
endif()

run_step(${CMAKE_COMMAND} --install ${BLOCKOPT_BUILD} --component library
         --prefix ${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/build -G Ninja
         -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
foreach(target optim hessian models data distributed blockopt)
  run_step(${WORK_DIR}/build/consumer_${target})
endforeach()
