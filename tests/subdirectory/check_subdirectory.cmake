# Configures tests/subdirectory (a parent project with add_subdirectory(blockopt)) and
# compiles its main.cpp. Run by ctest (build.add_subdirectory).
file(REMOVE_RECURSE ${WORK_DIR})
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "add_subdirectory check failed (${rc}): ${ARGN}")
  endif()
endfunction()
run_step(${CMAKE_COMMAND} -S ${PARENT_SOURCE} -B ${WORK_DIR} -G Ninja
         -DCMAKE_BUILD_TYPE=Release -DBLOCKOPT_SOURCE=${BLOCKOPT_SOURCE})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR} --target CMakeFiles/parent.dir/main.cpp.o)
