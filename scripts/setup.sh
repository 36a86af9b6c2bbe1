#!/usr/bin/env bash
# scripts/setup.sh - installs what building creditstream needs on a bare Debian machine:
# libclang (bindgen for librocksdb-sys), a C/C++ toolchain, make and cmake (RocksDB and
# librdkafka are built from source by their crates), Python's venv, and schemathesis (the
# API fuzzer tests/api_contract.rs runs) in a virtualenv under the build cache.
# Idempotent and quick when all is there.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v curl >/dev/null 2>&1 || need+=(curl)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || need+=(libclang-dev clang)
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || need+=(golang-go) # tests/grafana_schema (Go >= 1.21)
# tests/api_contract.rs runs schemathesis (PyPI) from a virtualenv of its own.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3 python3-venv)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not on PATH; install Rust (rustup, stable >= 1.88) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component" >/dev/null 2>&1 || echo "setup: could not add the $component component" >&2
  fi
done

# schemathesis, pinned, in its own virtualenv outside the clone (kept like the build cache).
SCHEMATHESIS_VERSION=4.32.5
tools=${CREDITSTREAM_TOOLS:-$HOME/.cache/creditstream/tools}
venv=$tools/schemathesis-$SCHEMATHESIS_VERSION
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
