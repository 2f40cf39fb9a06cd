# Build the VMGGA core wheel from a clean copy of its sources (a stale build/ folder in the
# repository can then never end up in the wheel). Needs no network: no index, no build isolation.
#
#   cmake -DPYTHON=<python> -DREPOSITORY=<repository root> -DSTAGE=<scratch folder>
#         -DWHEEL_DIR=<output folder> -P BuildCoreWheel.cmake
foreach(_variable PYTHON REPOSITORY STAGE WHEEL_DIR)
  if(NOT DEFINED ${_variable})
    message(FATAL_ERROR "BuildCoreWheel.cmake needs -D${_variable}=...")
  endif()
endforeach()

file(REMOVE_RECURSE "${STAGE}")
file(MAKE_DIRECTORY "${STAGE}" "${WHEEL_DIR}")
file(COPY "${REPOSITORY}/pyproject.toml" "${REPOSITORY}/README.md" DESTINATION "${STAGE}")
file(COPY "${REPOSITORY}/vmgga" DESTINATION "${STAGE}"
  PATTERN "__pycache__" EXCLUDE
  PATTERN "*.pyc" EXCLUDE
  )
execute_process(
  COMMAND "${PYTHON}" -m pip wheel --no-deps --no-index --no-build-isolation
          --wheel-dir "${WHEEL_DIR}" "${STAGE}"
  RESULT_VARIABLE _result
  )
if(NOT _result EQUAL 0)
  message(FATAL_ERROR "building the VMGGA core wheel failed (pip exit status ${_result})")
endif()
