# The VMGGA core package ships inside the extension as a wheel (Resources/wheels/): an installed
# extension installs the core from it, since "vmgga" is on no package index.

# vmgga_core_wheel_name(<pyproject.toml> <variable>): the file name that `pip wheel` gives the core,
# <name>-<version>-py3-none-any.whl, from the [project] name and version (the first ones in the file).
function(vmgga_core_wheel_name pyproject variable)
  file(STRINGS "${pyproject}" _name_lines REGEX "^name *= *\"[^\"]+\"")
  file(STRINGS "${pyproject}" _version_lines REGEX "^version *= *\"[^\"]+\"")
  if(NOT _name_lines OR NOT _version_lines)
    message(FATAL_ERROR "${pyproject}: no [project] name and version found")
  endif()
  list(GET _name_lines 0 _name_line)
  list(GET _version_lines 0 _version_line)
  string(REGEX REPLACE "^name *= *\"([^\"]+)\".*" "\\1" _name "${_name_line}")
  string(REGEX REPLACE "^version *= *\"([^\"]+)\".*" "\\1" _version "${_version_line}")
  # wheel file names use the normalised distribution name with "_" (PEP 427 / PEP 503)
  string(TOLOWER "${_name}" _name)
  string(REGEX REPLACE "[-_.]+" "_" _name "${_name}")
  set(${variable} "${_name}-${_version}-py3-none-any.whl" PARENT_SCOPE)
endfunction()
