# cmake -DHEADER=model/lenet5.h -DOUT=model/lenet5.libs -P link_libs.cmake
# Writes the system libraries an mcc-built model needs, as its header lists them
# (#define NAME_LIBS "-lm ..."), to OUT: a linker response file for CMakeLists.txt.
file(STRINGS "${HEADER}" line REGEX "^#define [A-Za-z0-9_]+_LIBS \"")
if(NOT line MATCHES "^#define [A-Za-z0-9_]+_LIBS \"([^\"]*)\"")
  message(FATAL_ERROR "${HEADER} names no libraries (#define NAME_LIBS \"...\")")
endif()
file(WRITE "${OUT}" "${CMAKE_MATCH_1}\n")
