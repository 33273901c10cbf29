#!/bin/sh
# Prints the linker flags binding.gyp gives the addon.
#
# A source build (setup.sh, or the install-time fallback when no prebuilt
# addon matches the host) links the system's shared libbpf, libelf and zlib.
#
# The prebuilt addon (scripts/prebuild.sh sets WSTRACE_LIBBPF_A) links a
# position-independent libbpf.a built from Debian's own libbpf source
# (scripts/libbpf-static.sh; the libbpf.a that libbpf-dev ships is not PIC,
# and a shared object cannot hold it), and libstdc++/libgcc statically: it
# then carries the libbpf it was built and tested with, loads on a host with
# no libbpf installed, and on one whose libstdc++ is older than the build
# host's. libelf and zlib stay shared: Debian's libelf.a is not PIC either
# (its thread-local error variable uses the local-exec TLS model), and both
# are on every Debian and Ubuntu host (zlib1g is required, libelf1 comes with
# iproute2). Debian 12's libelf (0.188) is built without zstd: nothing else.
if [ -n "${WSTRACE_LIBBPF_A:-}" ]; then
  echo "$WSTRACE_LIBBPF_A"
  echo "-lelf"
  echo "-lz"
  echo "-static-libstdc++"
  echo "-static-libgcc"
  # The archives' symbols stay inside the addon: neither Node's own libstdc++
  # nor another addon's libbpf is interposed by, or interposes on, these copies.
  echo "-Wl,--exclude-libs,ALL"
else
  echo "-lbpf"
  echo "-lelf"
  echo "-lz"
fi
