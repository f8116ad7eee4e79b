# run_step(command...): runs a command of a ctest check script (-P) and fails the check with
# the command line when it fails.
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${CMAKE_SCRIPT_MODE_FILE} failed (${rc}): ${ARGN}")
  endif()
endfunction()
