#!/bin/sh
# Make LOCAL STAND-INS for the base images the Dockerfiles need, when they cannot be pulled.
#
#   scripts/make-stand-in-images.sh [IMAGE...]
#   (default: debian:trixie-slim gcr.io/distroless/static-debian13:nonroot alpine:3.22 ubuntu:24.04)
#
# For each image: if Docker already has it (pulled, or a stand-in made earlier), it is KEPT:
# this script never overwrites an image. Otherwise it tries `docker pull`. Only when the pull
# fails (no registry reachable, as on the project's CI machine) does it make a stand-in from
# Debian's archive, tagged with the real name and labelled `org.long-poll.stand-in=true`:
#   debian:trixie-slim         debootstrap --variant=minbase trixie, trimmed like the official
#                              slim image (the root file system is cached under $CACHE_DIR).
#   gcr.io/distroless/static-debian13:nonroot
#                              the few files of the real image, assembled from Debian packages:
#                              base-files, netbase, tzdata, ca-certificates' bundle, passwd and
#                              group (root 0, nobody 65534, nonroot 65532), /tmp 1777,
#                              /home/nonroot, USER 65532.
#   alpine:*, ubuntu:*         cannot be made from Debian's archive: reported, not made; the
#                              Dockerfiles that need them cannot be built here.
# Stand-ins are close to the real images but not identical: image sizes measured on them
# are estimates of the real ones (scripts/image_sizes.py marks such rows).
#
# Needs: docker, and (for debian:*) debootstrap and root. The CA certificates in
# /usr/local/share/ca-certificates/ (a TLS-intercepting proxy's, for example) are copied into
# the debian stand-in, where installing ca-certificates adds them to the system store, so that
# pip inside `docker build` trusts the proxy. Set CA_DIR= (empty) to copy none.
#
# Exit status: 0 when every requested image that can be made is present, 1 otherwise.
set -eu

DOCKER=${DOCKER:-docker}
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/long-poll}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_DIR=${CA_DIR-/usr/local/share/ca-certificates}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}
LABEL=org.long-poll.stand-in
DEFAULT_IMAGES="debian:trixie-slim gcr.io/distroless/static-debian13:nonroot alpine:3.22 ubuntu:24.04"

say() { echo "stand-ins: $*" >&2; }

# The legacy builder works with every docker client; a client without buildx (docker 23+
# without the plugin) cannot use BuildKit at all.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! $DOCKER buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

have() { $DOCKER image inspect "$1" >/dev/null 2>&1; }

pull() {
    say "$1: not here, trying docker pull (up to ${PULL_TIMEOUT}s)"
    timeout "$PULL_TIMEOUT" $DOCKER pull --quiet "$1" >/dev/null 2>&1
}

# debian:<suite>-slim: debootstrap minbase, trimmed as the official slim images are.
make_debian() {
    image=$1
    suite=${image#debian:}; suite=${suite%-slim}
    command -v debootstrap >/dev/null 2>&1 || { say "$image: debootstrap is missing (apt-get install debootstrap)"; return 1; }
    [ "$(id -u)" = 0 ] || { say "$image: debootstrap needs root"; return 1; }
    mkdir -p "$CACHE_DIR"
    tarball=$CACHE_DIR/debian-$suite-minbase.tar
    if [ ! -s "$tarball" ]; then
        root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
        say "$image: debootstrap --variant=minbase $suite from $DEBIAN_MIRROR (about a minute)"
        if ! debootstrap --variant=minbase "$suite" "$root" "$DEBIAN_MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1; then
            say "$image: debootstrap failed, see $CACHE_DIR/debootstrap.log"
            rm -rf "$root"
            return 1
        fi
        trim_debian "$root" "$suite"
        tar --numeric-owner -C "$root" -cf "$tarball.partial" .
        mv -f "$tarball.partial" "$tarball"
        rm -rf "$root"
    else
        say "$image: using the cached root file system $tarball"
    fi
    if [ -n "$CA_DIR" ] && ls "$CA_DIR"/*.crt >/dev/null 2>&1; then
        # Add the local CA certificates as one more layer-free tar member set: rebuild the
        # stream with them appended under /usr/local/share/ca-certificates/.
        extra=$(mktemp -d)
        mkdir -p "$extra/usr/local/share/ca-certificates"
        cp "$CA_DIR"/*.crt "$extra/usr/local/share/ca-certificates/"
        cp "$tarball" "$extra.tar"
        tar --numeric-owner --owner=0 --group=0 -C "$extra" -rf "$extra.tar" ./usr/local/share/ca-certificates
        import_tar "$extra.tar" "$image" 'CMD ["bash"]'
        rm -rf "$extra" "$extra.tar"
    else
        import_tar "$tarball" "$image" 'CMD ["bash"]'
    fi
}

trim_debian() {
    root=$1; suite=$2
    # What the official debian:*-slim images do: no documentation, manual pages or
    # translations from later installs, apt cleans its cache, and deb822 sources.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
    echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    rm -f "$root/etc/machine-id"; : >"$root/etc/machine-id"
}

import_tar() {
    # $1 tarball, $2 image, $3 CMD
    $DOCKER import \
        --change "LABEL $LABEL=true" \
        --change "LABEL $LABEL.source=\"debootstrap from $DEBIAN_MIRROR by scripts/make-stand-in-images.sh\"" \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "$3" \
        "$1" "$2" >/dev/null
    say "$2: made a LOCAL STAND-IN ($($DOCKER image inspect --format '{{.Size}}' "$2") bytes)"
}

# gcr.io/distroless/static-debian13:nonroot: the same few files, from Debian's packages.
make_distroless() {
    image=$1
    have debian:trixie-slim || { say "$image: needs debian:trixie-slim first"; return 1; }
    dir=$(mktemp -d)
    cat >"$dir/Dockerfile" <<'DOCKERFILE'
FROM debian:trixie-slim AS files
WORKDIR /work
# The packages whose files distroless/static ships; only their files, no dpkg database.
RUN apt-get update \
 && apt-get download base-files netbase tzdata ca-certificates \
 && mkdir -p /rootfs \
 && for deb in ./*.deb; do dpkg-deb -x "$deb" /rootfs; done \
 && mkdir -p /rootfs/etc/ssl/certs \
 && cat /rootfs/usr/share/ca-certificates/mozilla/*.crt >/rootfs/etc/ssl/certs/ca-certificates.crt \
 && rm -rf /rootfs/usr/share/ca-certificates /rootfs/usr/sbin /rootfs/usr/share/doc /rootfs/usr/share/man \
           /rootfs/usr/share/lintian /rootfs/usr/share/base-files/dot* /rootfs/etc/profile* \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && printf 'hosts: files dns\n' >/rootfs/etc/nsswitch.conf \
 && mkdir -p /rootfs/tmp /rootfs/home/nonroot /rootfs/root \
 && chmod 1777 /rootfs/tmp && chmod 700 /rootfs/root \
 && chown 65532:65532 /rootfs/home/nonroot && chmod 700 /rootfs/home/nonroot

FROM scratch
COPY --from=files /rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.long-poll.stand-in=true \
      org.long-poll.stand-in.source="assembled from Debian trixie packages by scripts/make-stand-in-images.sh"
USER 65532
WORKDIR /home/nonroot
DOCKERFILE
    say "$image: assembling from Debian packages (base-files, netbase, tzdata, ca-certificates)"
    if $DOCKER build --quiet -t "$image" "$dir" >"$dir/log" 2>&1; then
        say "$image: made a LOCAL STAND-IN ($($DOCKER image inspect --format '{{.Size}}' "$image") bytes)"
        rm -rf "$dir"
    else
        cat "$dir/log" >&2
        rm -rf "$dir"
        return 1
    fi
}

status=0
# shellcheck disable=SC2086  # the default list is split on purpose
[ $# -gt 0 ] || set -- $DEFAULT_IMAGES
for image in "$@"; do
    if have "$image"; then
        if [ "$($DOCKER image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$image" 2>/dev/null)" = true ]; then
            say "$image: present (a stand-in made earlier), kept"
        else
            say "$image: present (pulled or built elsewhere), kept: never overwritten"
        fi
        continue
    fi
    if pull "$image"; then
        say "$image: pulled"
        continue
    fi
    case "$image" in
        debian:*-slim) make_debian "$image" || status=1 ;;
        gcr.io/distroless/static-debian13:*) make_distroless "$image" || status=1 ;;
        alpine:* | ubuntu:*)
            say "$image: CANNOT be pulled and cannot be made from Debian's archive: skipped;"
            say "  the Dockerfiles built on it cannot be built on this machine" ;;
        *) say "$image: no pull and no recipe for a stand-in"; status=1 ;;
    esac
done
exit $status
