# Copies what cargo built (libafut.so, libafut.a) into the CMake build tree under
# the names the library is installed with, and checks the SONAME cargo linked.
# Run by the afut_cargo target after `cargo build`:
#
#   cmake -DAFUT_CARGO_OUT=<cargo's target/<profile>> -DAFUT_STAGE_DIR=<dir>
#         -DAFUT_SONAME=libafut.so.0.1 -DAFUT_SHARED_REAL_NAME=libafut.so.0.1.0
#         [-DAFUT_READELF=/usr/bin/readelf] -P cmake/afutStage.cmake
#
# Result in AFUT_STAGE_DIR:
#   libafut.so.0.1.0                      the shared library (a copy of cargo's libafut.so)
#   libafut.so.0.1 -> libafut.so.0.1.0    its SONAME, what programs load at run time
#   libafut.so     -> libafut.so.0.1      the name `-lafut` finds at link time
#   libafut.a                             the static library
# Files are only rewritten when their content changed, so a no-op cargo build
# relinks nothing.

foreach(var AFUT_CARGO_OUT AFUT_STAGE_DIR AFUT_SONAME AFUT_SHARED_REAL_NAME)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "afutStage.cmake: ${var} is not set")
    endif()
endforeach()

set(shared "${AFUT_CARGO_OUT}/libafut.so")
set(static "${AFUT_CARGO_OUT}/libafut.a")
foreach(f "${shared}" "${static}")
    if(NOT EXISTS "${f}")
        message(FATAL_ERROR "afut: cargo did not produce ${f}")
    endif()
endforeach()

if(AFUT_READELF)
    execute_process(COMMAND "${AFUT_READELF}" -d "${shared}"
        OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "afut: ${AFUT_READELF} -d ${shared} failed: ${err}")
    endif()
    if(NOT dynamic MATCHES "Library soname: \\[([^\n]*)\\]")
        message(FATAL_ERROR "afut: cargo's ${shared} has no SONAME (build.rs sets one)")
    endif()
    if(NOT CMAKE_MATCH_1 STREQUAL AFUT_SONAME)
        message(FATAL_ERROR
            "afut: cargo linked SONAME ${CMAKE_MATCH_1}, CMake expects ${AFUT_SONAME}: "
            "build.rs and cmake/afutVersion.cmake disagree on the SONAME rule")
    endif()
else()
    message(WARNING "afut: readelf not found; the SONAME of ${shared} is not checked")
endif()

file(MAKE_DIRECTORY "${AFUT_STAGE_DIR}")
# configure_file(COPYONLY) leaves the destination untouched when nothing changed.
configure_file("${shared}" "${AFUT_STAGE_DIR}/${AFUT_SHARED_REAL_NAME}" COPYONLY)
configure_file("${static}" "${AFUT_STAGE_DIR}/libafut.a" COPYONLY)

function(afut_symlink target link)
    if(IS_SYMLINK "${link}")
        file(READ_SYMLINK "${link}" current)
        if(current STREQUAL target)
            return()
        endif()
    endif()
    file(REMOVE "${link}")
    file(CREATE_LINK "${target}" "${link}" SYMBOLIC)
endfunction()
afut_symlink("${AFUT_SHARED_REAL_NAME}" "${AFUT_STAGE_DIR}/${AFUT_SONAME}")
afut_symlink("${AFUT_SONAME}" "${AFUT_STAGE_DIR}/libafut.so")
