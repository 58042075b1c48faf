# afut's version and shared-library names, read from Cargo.toml (the single source
# of truth for the version).
#
# include()d by CMakeLists.txt, which then calls afut_read_version(). Also runs as a
# script, for shell scripts that need the same answers:
#
#   cmake -P cmake/afutVersion.cmake
#   -> version=0.1.0
#      soname=libafut.so.0.1
#      realname=libafut.so.0.1.0
#
# The SONAME rule is build.rs's, repeated here because cargo only passes it to the
# linker: before 1.0 the minor version breaks the ABI, so the SONAME is
# libafut.so.0.MINOR; from 1.0 on it is libafut.so.MAJOR. The file itself is
# libafut.so.MAJOR.MINOR.PATCH. The CMake build stops if the SONAME that cargo
# linked differs from this one (cmake/afutStage.cmake), and tests/packaging.rs
# checks both against the rule.

# afut_read_version(<Cargo.toml>): sets, in the caller's scope, AFUT_VERSION
# ("MAJOR.MINOR.PATCH"), AFUT_VERSION_MAJOR, AFUT_VERSION_MINOR, AFUT_VERSION_PATCH,
# AFUT_SONAME and AFUT_SHARED_REAL_NAME.
function(afut_read_version cargo_toml)
    file(STRINGS "${cargo_toml}" lines)
    set(section "")
    set(version "")
    foreach(line IN LISTS lines)
        if(line MATCHES "^[ \t]*\\[+[ \t]*([A-Za-z0-9_.-]+)[ \t]*\\]+")
            set(section "${CMAKE_MATCH_1}")
        elseif(section STREQUAL "package" AND line MATCHES "^[ \t]*version[ \t]*=[ \t]*\"([^\"]*)\"")
            set(version "${CMAKE_MATCH_1}")
            break()
        endif()
    endforeach()
    if(NOT version MATCHES "^([0-9]+)\\.([0-9]+)\\.([0-9]+)$")
        message(FATAL_ERROR
            "afut: no plain MAJOR.MINOR.PATCH version in the [package] section of "
            "${cargo_toml} (found \"${version}\")")
    endif()
    set(major "${CMAKE_MATCH_1}")
    set(minor "${CMAKE_MATCH_2}")
    set(patch "${CMAKE_MATCH_3}")
    if(major EQUAL 0)
        set(soname "libafut.so.0.${minor}")
    else()
        set(soname "libafut.so.${major}")
    endif()
    set(AFUT_VERSION "${version}" PARENT_SCOPE)
    set(AFUT_VERSION_MAJOR "${major}" PARENT_SCOPE)
    set(AFUT_VERSION_MINOR "${minor}" PARENT_SCOPE)
    set(AFUT_VERSION_PATCH "${patch}" PARENT_SCOPE)
    set(AFUT_SONAME "${soname}" PARENT_SCOPE)
    set(AFUT_SHARED_REAL_NAME "libafut.so.${version}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
    afut_read_version("${CMAKE_CURRENT_LIST_DIR}/../Cargo.toml")
    # message() writes to stderr; the answers go to stdout.
    execute_process(COMMAND "${CMAKE_COMMAND}" -E echo "version=${AFUT_VERSION}")
    execute_process(COMMAND "${CMAKE_COMMAND}" -E echo "soname=${AFUT_SONAME}")
    execute_process(COMMAND "${CMAKE_COMMAND}" -E echo "realname=${AFUT_SHARED_REAL_NAME}")
endif()
