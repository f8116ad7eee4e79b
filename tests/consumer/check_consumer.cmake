# Builds the blockopt library alone, with the experiments layer and the tests off and their
# packages (yaml-cpp, fmt, spdlog, nlohmann-json, CLI11, GoogleTest, google benchmark) made
# unfindable, installs it into a scratch prefix, then configures, builds and runs
# tests/consumer against it. Run by ctest (install.consumer_project).
include(${CMAKE_CURRENT_LIST_DIR}/../run_step.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
set(hidden_packages)
foreach(package yaml-cpp fmt spdlog nlohmann_json CLI11 GTest benchmark)
  list(APPEND hidden_packages -DCMAKE_DISABLE_FIND_PACKAGE_${package}=ON)
endforeach()
run_step(${CMAKE_COMMAND} -S ${BLOCKOPT_SOURCE} -B ${WORK_DIR}/library -G Ninja
         -DCMAKE_BUILD_TYPE=Release -DBLOCKOPT_BUILD_TESTS=OFF -DBLOCKOPT_BUILD_EXPERIMENTS=OFF
         ${hidden_packages})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/library)
run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/library --prefix ${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/build -G Ninja
         -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
foreach(target optim hessian models data blockopt)
  run_step(${WORK_DIR}/build/consumer_${target})
endforeach()
