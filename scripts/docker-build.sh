#!/bin/sh
# Build one of the Dockerfiles the way every part of the project does (make images,
# make binary-docker, scripts/image_sizes.py, tests/test_docker.py), so that they agree.
#
#   scripts/docker-build.sh DOCKERFILE TAG [docker build options...]
#   scripts/docker-build.sh --binary OUT        build the builder stage of
#                                               Dockerfile.multi.scratch and copy its
#                                               binary to OUT (make binary-docker)
#
# Needs only a docker client and engine (no Python on this machine). Passes through, as build
# arguments, whichever of these are set in the environment: the proxy variables (http_proxy,
# https_proxy, no_proxy, upper- or lower-case: apt and pip read them), PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST, PROFILE, BUILDER_IMAGE, FINAL_IMAGE and BASE_IMAGE.
# A docker client without the buildx plugin cannot use BuildKit (docker 23+ then refuses to
# build), so the legacy builder is used there; every Dockerfile builds with both. Set
# DOCKER_BUILDKIT yourself to choose.
set -eu
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! $DOCKER buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

binary=""
if [ "${1:-}" = "--binary" ]; then
    [ $# -ge 2 ] || { echo "usage: $0 --binary OUT" >&2; exit 2; }
    binary=$2; shift 2
    set -- Dockerfile.multi.scratch long-poll:builder --target builder "$@"
fi
[ $# -ge 2 ] || { echo "usage: $0 DOCKERFILE TAG [docker build options...]  |  $0 --binary OUT" >&2; exit 2; }
dockerfile=$1; tag=$2; shift 2

for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
        PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PROFILE BUILDER_IMAGE FINAL_IMAGE BASE_IMAGE; do
    eval "value=\${$var:-}"
    # shellcheck disable=SC2154  # set by the eval
    [ -z "$value" ] || set -- "$@" --build-arg "$var=$value"
done

echo "docker-build: $dockerfile -> $tag (builder: $([ "${DOCKER_BUILDKIT:-}" = 0 ] && echo legacy || echo default))" >&2
$DOCKER build -f "$dockerfile" -t "$tag" "$@" .

if [ -n "$binary" ]; then
    container=$($DOCKER create "$tag")
    trap '$DOCKER rm -f "$container" >/dev/null 2>&1 || true' EXIT
    mkdir -p "$(dirname "$binary")"
    $DOCKER cp "$container:/out/long-poll" "$binary.partial"
    chmod 0755 "$binary.partial"
    mv -f "$binary.partial" "$binary"
    echo "docker-build: copied the binary out of the builder stage: $binary ($(wc -c <"$binary") bytes)" >&2
fi
