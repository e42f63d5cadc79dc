#!/bin/sh
# rpm.sh BIN: package BIN/skyline (already built by `make build`), the
# systemd units and the builder's example configuration into an RPM under
# BIN/rpm/RPMS, with rpmbuild and packaging/skyline.spec. Offline: the spec
# does not compile anything. SKYLINE_VERSION sets the version (0.1.0).
set -eu
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
version=${SKYLINE_VERSION:-0.1.0}
[ -x "$bin/skyline" ] || { echo "rpm.sh: $bin/skyline is missing: run make build" >&2; exit 1; }
mkdir -p "$bin/rpm"
top=$(cd "$bin/rpm" && pwd)
rm -rf "$top/stage" "$top/RPMS" "$top/BUILD" "$top/BUILDROOT"
stage=$top/stage/skyline-$version
mkdir -p "$stage/bin" "$stage/packaging" "$stage/docs" "$top/SOURCES"
cp "$bin/skyline" "$stage/bin/skyline"
cp "$root"/packaging/skyline-builder.service "$root"/packaging/skyline-serve.service \
	"$root"/packaging/skyline-witness.service "$root"/packaging/builder.toml "$stage/packaging/"
cp "$root/docs/builder.md" "$stage/docs/"
tar -C "$top/stage" -czf "$top/SOURCES/skyline-$version.tar.gz" "skyline-$version"
rpmbuild -bb --nodeps --quiet \
	--define "_topdir $top" \
	--define "skyline_version $version" \
	"$root/packaging/skyline.spec"
ls "$top"/RPMS/*/skyline-"$version"-*.rpm
