#!/usr/bin/env bash
# Build a .deb of the self-contained bundle (edx-agent_VERSION-1_ARCH.deb) with dpkg-deb alone.
# 将自带解释器的安装包打成 .deb 软件包（仅需 dpkg-deb）。
#
# The package holds the unpacked bundle under /usr/lib/edx-agent/bundle and installs it with the
# bundle's own install.sh (postinst: `install.sh --bundle /usr/lib/edx-agent/bundle --link`), so a
# .deb install is the same as a tarball install: the service user and directories, the unit, a key
# pair on first install, the configuration and the state kept on upgrade, the self-test gate and
# the previous release kept for `install.sh --rollback`. The release is hard-linked to the package's
# files (no second copy on disk); dpkg replaces files by renaming, so an older release keeps its own.
#   dpkg -i edx-agent_VERSION-1_amd64.deb     install or upgrade (an upgrade that fails its
#                                            self-test leaves the old release in service)
#   dpkg -r edx-agent                        remove; keeps /etc/edx-agent and /var/lib/edx-agent
#   dpkg -P edx-agent                        also delete the configuration, state, logs and user
#
# Usage: packaging/build-deb.sh [--out DIR] edx-agent-VERSION-linux-ARCH.tar.gz
#   (the tarball's .sha256 must lie next to it). Prints the path of the .deb.
set -euo pipefail
umask 022

OUT=""
die() { echo "build-deb: error: $*" >&2; exit 1; }
say() { echo "build-deb: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || die "give one bundle: edx-agent-VERSION-linux-ARCH.tar.gz"
TARBALL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
command -v dpkg-deb >/dev/null || die "dpkg-deb is not installed (Debian: apt-get install dpkg)"
[ -f "$TARBALL.sha256" ] || die "$TARBALL.sha256 not found"
(cd "$(dirname "$TARBALL")" && sha256sum --check --quiet --strict "$(basename "$TARBALL").sha256") \
    || die "$TARBALL does not match its .sha256"
OUT=${OUT:-$(dirname "$TARBALL")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/edx-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PKG=$WORK/pkg
mkdir -p "$PKG/usr/lib/edx-agent" "$PKG/DEBIAN" "$WORK/x"
tar -xzf "$TARBALL" -C "$WORK/x"
SRC=$(find "$WORK/x" -mindepth 1 -maxdepth 1 -type d | head -n 1)
grep -q '^kind: self-contained' "$SRC/BUILD-INFO" || die "$(basename "$TARBALL") is not a self-contained bundle"
mv "$SRC" "$PKG/usr/lib/edx-agent/bundle"
B=$PKG/usr/lib/edx-agent/bundle
VERSION=$(awk '$1 == "version:" { print $2 }' "$B/BUILD-INFO")
ARCH=$(awk '$1 == "architecture:" { print $2 }' "$B/BUILD-INFO")
GLIBC=$(awk '$1 == "glibc:" { print $NF }' "$B/BUILD-INFO")
case "$ARCH" in x86_64) DEB_ARCH=amd64 ;; aarch64) DEB_ARCH=arm64 ;; *) die "unknown architecture $ARCH" ;; esac
# Debian versions sort "0.1.0rc1" after "0.1.0"; a PEP 440 pre-release becomes "0.1.0~rc1"
DEB_VERSION="$(printf '%s' "$VERSION" | sed -E 's/(a|b|rc)([0-9]+)$/~\1\2/')-1"

cat > "$PKG/DEBIAN/control" <<EOF
Package: edx-agent
Version: $DEB_VERSION
Architecture: $DEB_ARCH
Maintainer: edx-agent maintainers <edx-agent@localhost>
Installed-Size: $(du -sk "$PKG/usr" | cut -f1)
Depends: libc6 (>= $GLIBC), passwd
Suggests: unixodbc, msodbcsql18
Section: net
Priority: optional
Description: data-exchange front-end agent (数据交换前置机 agent), self-contained
 Pulls sealed datasets from the city education data platform and applies them to
 the local database (MySQL/MariaDB, PostgreSQL, Oracle, SQL Server, SQLite).
 Brings its own Python interpreter and database drivers: no Python is needed.
 SQL Server also needs unixODBC and Microsoft's ODBC driver (msodbcsql18).
EOF
cat > "$PKG/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# install or upgrade the release from the package's bundle, with the installer's checks and self-test
set -e
if [ "$1" = configure ]; then
    /usr/lib/edx-agent/bundle/install.sh --bundle /usr/lib/edx-agent/bundle --link
fi
EOF
cat > "$PKG/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# on removal: stop and remove the service and the releases; the configuration and the state stay
set -e
if [ "$1" = remove ]; then
    /usr/lib/edx-agent/bundle/install.sh --uninstall
fi
EOF
cat > "$PKG/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# on purge: also the configuration, the state (keys, enrolment, spool, audit log), logs and the user
set -e
if [ "$1" = purge ]; then
    rm -rf /etc/edx-agent /var/lib/edx-agent /var/log/edx-agent /etc/systemd/system/edx-agent.service.d
    if getent passwd edx-agent >/dev/null; then userdel edx-agent 2>/dev/null || true; fi
    if getent group edx-agent >/dev/null; then groupdel edx-agent 2>/dev/null || true; fi
fi
EOF
chmod 0755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/prerm" "$PKG/DEBIAN/postrm"
(cd "$PKG" && find usr -type f -printf '%P\n' | LC_ALL=C sort | sed 's#^#usr/#' | xargs -d '\n' md5sum) > "$PKG/DEBIAN/md5sums"

DEB=$OUT/edx-agent_${DEB_VERSION}_$DEB_ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB.tmp" >/dev/null
mv "$DEB.tmp" "$DEB"
(cd "$OUT" && sha256sum "$(basename "$DEB")" > "$(basename "$DEB").sha256")
say "wrote $DEB ($(du -h "$DEB" | cut -f1))"
echo "$DEB"
