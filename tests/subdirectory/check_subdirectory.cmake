# Configures tests/subdirectory (a parent project with add_subdirectory(blockopt)) and
# compiles its main.cpp. Run by ctest (build.add_subdirectory).
include(${CMAKE_CURRENT_LIST_DIR}/../run_step.cmake)
file(REMOVE_RECURSE ${WORK_DIR})
run_step(${CMAKE_COMMAND} -S ${PARENT_SOURCE} -B ${WORK_DIR} -G Ninja
         -DCMAKE_BUILD_TYPE=Release -DBLOCKOPT_SOURCE=${BLOCKOPT_SOURCE}
         -DBLOCKOPT_BUILD_TESTS=ON)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR} --target CMakeFiles/parent.dir/main.cpp.o)
