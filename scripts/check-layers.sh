#!/usr/bin/env bash
# The architecture invariants of ARCHITECTURE.md that a machine can check: the crate graph
# (which layer may depend on what) and where generated protobuf types are used. Run by
# `make lint`, so CI fails when one stops being true.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0

# forbid CRATE DEP...: CRATE must not depend on any DEP, directly or through another crate.
forbid() {
    local crate=$1
    shift
    local deps
    deps=$(cargo tree --locked -p "$crate" -e normal --prefix none | awk '{print $1}' | sort -u)
    for dep in "$@"; do
        if grep -qx "$dep" <<<"$deps"; then
            echo "layer violation: $crate depends on $dep (cargo tree -p $crate -i $dep)"
            status=1
        fi
    done
}

# The pure layers: no libtorch, no async runtime, no gRPC, no database.
for pure in gradstream-metrics gradstream-domain gradstream-data; do
    forbid "$pure" tch torch-sys tokio tonic prost rusqlite
done
# The engine: libtorch, but no async runtime, gRPC or database.
forbid gradstream-engine tokio tonic prost rusqlite
# The store: a database and files, but no libtorch and no gRPC.
forbid gradstream-store tch torch-sys tokio tonic prost

# Generated protobuf types stay in the transport (and the CLI, a gRPC client). The
# scheduler's unit tests build their specs through the transport's conversion.
if grep -rn 'pb::' src --include='*.rs' \
    | grep -v -e '^src/transport/' -e '^src/cli/' -e '^src/jobs/scheduler_tests.rs:'; then
    echo "layer violation: protobuf types used outside src/transport and src/cli (above)"
    status=1
fi

# tonic::Status is built in the one status mapping only.
if grep -rn 'Status::\(new\|internal\|invalid_argument\|not_found\|unavailable\|cancelled\|failed_precondition\|resource_exhausted\|already_exists\|aborted\|unknown\)' src --include='*.rs' \
    | grep -v -e '^src/transport/status.rs:' -e '^src/cli/'; then
    echo "layer violation: a tonic::Status built outside src/transport/status.rs (above)"
    status=1
fi

if [ "$status" = 0 ]; then
    echo "layers: ok"
fi
exit "$status"
