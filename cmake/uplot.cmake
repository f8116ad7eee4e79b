# uPlot, the report's chart library (experiments/report.cpp inlines it into report.html).
# NOTE: uPlot (MIT, 51 KB minified, no dependencies) over Vega-Lite (vega + vega-lite + embed,
# about 800 KB): it draws line charts with bands, log axes, cursor values and drag-zoom, which
# is every chart of the report but the heatmaps (experiments/report/charts.js draws those).
# Debian does not package it: the pinned tarball comes from the npm registry, checked against
# the registry's sha512 (`npm view uplot@1.6.32 dist.integrity`, in hex).
set(BLOCKOPT_UPLOT_VERSION 1.6.32)
set(BLOCKOPT_UPLOT_SHA512 2883159c6ebccefbb95d751b0b82d010f9e1c0ec41b8bc96d401eda66e882935c89a46cb824332fa369b8cb8122cc6ac36e186cd09bf7a9ded3a4c93c6989023)
set(BLOCKOPT_UPLOT_TARBALL "" CACHE FILEPATH
    "uPlot ${BLOCKOPT_UPLOT_VERSION} tarball (npm pack uplot@${BLOCKOPT_UPLOT_VERSION}); empty: download it")

set(uplot_dir ${PROJECT_BINARY_DIR}/_deps/uplot-${BLOCKOPT_UPLOT_VERSION})
set(uplot_tarball ${BLOCKOPT_UPLOT_TARBALL})
if(NOT uplot_tarball)
  set(uplot_tarball ${uplot_dir}.tgz)
  set(url https://registry.npmjs.org/uplot/-/uplot-${BLOCKOPT_UPLOT_VERSION}.tgz)
  foreach(attempt 1 2 3)
    # With EXPECTED_HASH, a file already there with that hash is not downloaded again.
    file(DOWNLOAD ${url} ${uplot_tarball} EXPECTED_HASH SHA512=${BLOCKOPT_UPLOT_SHA512}
         STATUS status TLS_VERIFY ON)
    list(GET status 0 code)
    if(code EQUAL 0)
      break()
    endif()
  endforeach()
  if(NOT code EQUAL 0)
    list(GET status 1 message)
    message(FATAL_ERROR "cannot download ${url} (${message}); fetch it elsewhere with "
            "`npm pack uplot@${BLOCKOPT_UPLOT_VERSION}` and pass -DBLOCKOPT_UPLOT_TARBALL=<file>")
  endif()
endif()
file(SHA512 ${uplot_tarball} actual)
if(NOT actual STREQUAL BLOCKOPT_UPLOT_SHA512)
  message(FATAL_ERROR "${uplot_tarball}: sha512 ${actual}, expected uPlot "
          "${BLOCKOPT_UPLOT_VERSION}'s ${BLOCKOPT_UPLOT_SHA512}")
endif()
if(NOT EXISTS ${uplot_dir}/package/dist/uPlot.iife.min.js)
  file(ARCHIVE_EXTRACT INPUT ${uplot_tarball} DESTINATION ${uplot_dir}
       PATTERNS package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE)
endif()
set(BLOCKOPT_UPLOT_JS ${uplot_dir}/package/dist/uPlot.iife.min.js)
set(BLOCKOPT_UPLOT_CSS ${uplot_dir}/package/dist/uPlot.min.css)
set(BLOCKOPT_UPLOT_LICENSE ${uplot_dir}/package/LICENSE)
