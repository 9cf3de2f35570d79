#!/usr/bin/env bash
# Build the self-contained edx-agent bundle (自带解释器的离线安装包) for this machine's architecture:
# a one-folder PyInstaller build of the agent with its own CPython, every connector's driver
# (PyMySQL, oracledb thin mode, psycopg binary, pyodbc), the gettext catalogs and the entry-point
# metadata, plus install.sh, the systemd unit, the example configuration and the operations guide,
# packed as edx-agent-VERSION-linux-ARCH.tar.gz with a .sha256 file. A front-end machine needs no
# Python and no network to install it:
#   sha256sum -c edx-agent-VERSION-linux-x86_64.tar.gz.sha256
#   tar -xzf edx-agent-VERSION-linux-x86_64.tar.gz && sudo ./edx-agent-VERSION-linux-x86_64/install.sh
#
# How (packaging/README.md says why):
#   1. a build root of an old Debian release (default bullseye, glibc 2.31, the oldest Debian suite
#      on deb.debian.org) made with debootstrap, with a compiler and the -dev packages of the
#      libraries CPython links to; cached as a tarball;
#   2. SQLite and CPython built from source in that root (Debian's verified source packages of
#      sqlite3 and python3.13 from trixie: the upstream tarballs and Debian's security patches, not
#      its layout patches), with packaging/glibc-compat.h force-included so that nothing needs a glibc
#      newer than 2.28 (Kylin V10, UOS 20); cached as a tarball. SQLite is built because the
#      connector needs >= 3.37 (STRICT tables) and bullseye's is 3.34;
#   3. the agent's wheel and every dependency as manylinux wheels for that CPython, from
#      packaging/build-wheelhouse.sh (the same set the wheelhouse bundle ships), plus PyInstaller;
#      installed in the root with the network off (--no-index);
#   4. PyInstaller (packaging/edx-agent.spec) in the root; then the newest glibc symbol version any
#      ELF file of the bundle needs is measured (objdump -T) and written to BUILD-INFO.
# aarch64 (Phytium/飞腾, Kunpeng/鲲鹏) is built by this same script on an aarch64 build host.
#
# Usage (as root: debootstrap and chroot need it): packaging/build-bundle.sh [options]
#   --out DIR         where the tarball and its .sha256 go (default: dist/)
#   --cache DIR       build root, CPython source and build cache (default: /var/cache/edx-bundle-build)
#   --suite NAME      Debian release of the build root (default: bullseye)
#   --mirror URL      Debian mirror (default: http://deb.debian.org/debian)
#   --python-suite S  Debian release whose python3.X source package is built (default: trixie)
#   --python-package P  that source package (default: python3.13); sqlite3 comes from the same suite
#   --keep-stage      keep the unpacked bundle directory next to the tarball
#   --deb             also build the .deb of the bundle (packaging/build-deb.sh)
#
# Needs: bash, debootstrap, apt-get (for the CPython source package), tar, gzip, sha256sum, objdump,
# unshare, and Python >= 3.11 with pip and network access to PyPI for step 3 (PYTHON=...). The first
# build takes about 15 minutes on 2 cores (most of it compiling CPython); later builds reuse the cache.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/.." && pwd)
OUT="$SOURCE/dist"
CACHE=/var/cache/edx-bundle-build
SUITE=bullseye
MIRROR=http://deb.debian.org/debian
PY_SUITE=trixie
PY_PKG=python3.13
KEEP_STAGE=0
DEB=0
PYTHON=${PYTHON:-python3}
# the -dev packages of what CPython links to; libodbc1 only because PyInstaller's pyodbc hook
# imports pyodbc (the spec leaves libodbc out of the bundle); tcl because SQLite's build runs tclsh
BUILD_PKGS=build-essential,pkg-config,libssl-dev,zlib1g-dev,libffi-dev,libbz2-dev,liblzma-dev,uuid-dev,libexpat1-dev,xz-utils,binutils,libodbc1,tcl
PREFIX_IN_ROOT=/opt/edx-python

die() { echo "build-bundle: error: $*" >&2; exit 1; }
say() { echo "build-bundle: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --suite) SUITE=$2; shift 2 ;;
        --mirror) MIRROR=$2; shift 2 ;;
        --python-suite) PY_SUITE=$2; shift 2 ;;
        --python-package) PY_PKG=$2; shift 2 ;;
        --keep-stage) KEEP_STAGE=1; shift ;;
        --deb) DEB=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap apt-get tar gzip sha256sum objdump unshare chroot; do
    command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install debootstrap binutils)"
done
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is not Python >= 3.11; set PYTHON=... (it runs build-wheelhouse.sh)"
case "$(uname -m)" in
    x86_64|amd64) ARCH=x86_64; DEB_ARCH=amd64 ;;
    aarch64|arm64) ARCH=aarch64; DEB_ARCH=arm64 ;;
    *) die "unsupported build architecture $(uname -m): build on x86_64 or aarch64" ;;
esac
PY_MINOR=${PY_PKG#python}
case "$PY_MINOR" in 3.1[1-9]) ;; *) die "--python-package must be python3.11 or newer, not $PY_PKG" ;; esac

mkdir -p "$CACHE" "$OUT"
CACHE=$(cd "$CACHE" && pwd)
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/edx-bundle.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root

# in_root CMD...: run CMD in the build root with /proc and /dev, in a private mount namespace (the
# mounts vanish with it, whatever happens) and with no network configuration needed
in_root() {
    # shellcheck disable=SC2016  # the inner script's variables are its own
    unshare --mount --propagation private -- bash -c '
        r=$1; shift
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        exec chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 "$@"' in_root "$ROOT" "$@"
}

# --- 1. the build root -------------------------------------------------------------------------------
ROOT_KEY=$(printf '%s\n' "$SUITE" "$DEB_ARCH" "$MIRROR" "$BUILD_PKGS" | sha256sum | cut -c1-12)
ROOT_TAR=$CACHE/buildroot-$SUITE-$DEB_ARCH-$ROOT_KEY.tar.gz
if [ ! -f "$ROOT_TAR" ]; then
    say "making the build root: debootstrap $SUITE ($DEB_ARCH) with $BUILD_PKGS"
    debootstrap --variant=minbase --arch="$DEB_ARCH" --include="$BUILD_PKGS" "$SUITE" "$WORK/fresh" "$MIRROR" \
        > "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$WORK/fresh/var/cache/apt/archives/"*.deb "$WORK/fresh/var/lib/apt/lists/"*_Packages
    tar -C "$WORK/fresh" --numeric-owner -czf "$ROOT_TAR.tmp" .
    mv "$ROOT_TAR.tmp" "$ROOT_TAR"
    rm -rf "$WORK/fresh"
fi
say "build root: $ROOT_TAR"
mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner -xzf "$ROOT_TAR"
ROOT_GLIBC=$(in_root getconf GNU_LIBC_VERSION | awk '{ print $2 }')

# --- 2. SQLite and CPython, from Debian's source packages, built in the root ---------------------------
# fetch_source PKG: Debian's source package PKG of $PY_SUITE into $CACHE/src-PKG-$PY_SUITE (once)
fetch_source() {
    local pkg=$1 dir=$CACHE/src-$1-$PY_SUITE
    if ! ls "$dir"/"$pkg"_*.orig.tar.xz >/dev/null 2>&1 || ! ls "$dir"/"$pkg"_*.debian.tar.xz >/dev/null 2>&1; then
        say "fetching the $pkg source package from $PY_SUITE (apt verifies it against the signed index)"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/lists/partial" "$dir.tmp/cache/archives/partial"
        echo "deb-src $MIRROR $PY_SUITE main" > "$dir.tmp/sources.list"
        local apt=(-o "Dir::Etc::SourceList=$dir.tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
                   -o "Dir::State::Lists=$dir.tmp/lists" -o "Dir::Cache=$dir.tmp/cache" -o APT::Sandbox::User=root)
        apt-get "${apt[@]}" -qq update >&2
        (cd "$dir.tmp" && apt-get "${apt[@]}" -qq source --download-only "$pkg" >&2)
        rm -rf "$dir.tmp/lists" "$dir.tmp/cache" "$dir.tmp/sources.list"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}
# unpack_patched PKG DIR PATTERN: the upstream tarball in $ROOT/build/DIR with Debian's patches whose
# names match PATTERN applied in series order (the upstream fixes; Debian's own layout changes are not)
unpack_patched() {
    local src=$1 dest=$ROOT/build/$2 pattern=$3 p n=0
    mkdir -p "$dest" "$ROOT/build/debian-$2"
    local orig=("$src"/*.orig.tar.xz) deb=("$src"/*.debian.tar.xz)   # not *.orig-www.tar.xz
    tar -C "$dest" --strip-components=1 -xJf "${orig[0]}"
    tar -C "$ROOT/build/debian-$2" -xJf "${deb[0]}" debian/patches
    while read -r p; do
        case "$p" in ''|\#*) continue ;; esac
        # shellcheck disable=SC2254  # PATTERN is a glob on purpose
        case "$p" in $pattern) ;; *) continue ;; esac
        (cd "$dest" && patch -p1 --quiet --forward < "$ROOT/build/debian-$2/debian/patches/$p") \
            || die "Debian's $p does not apply to the upstream source of $2"
        echo "$2: $p" >> "$WORK/patches-applied.txt"
        n=$((n + 1))
    done < "$ROOT/build/debian-$2/debian/patches/series"
    say "$2: applied $n upstream fixes from Debian's patches"
}
PY_SRC=$(fetch_source "$PY_PKG")
SQLITE_SRC=$(fetch_source sqlite3)
PY_DEB_VERSION=$(basename "$(ls "$PY_SRC"/*.debian.tar.xz)" .debian.tar.xz | cut -d_ -f2)
SQLITE_DEB_VERSION=$(basename "$(ls "$SQLITE_SRC"/*.debian.tar.xz)" .debian.tar.xz | cut -d_ -f2)
COMPAT="-include /build/glibc-compat.h"
SQLITE_CONFIGURE="--prefix=$PREFIX_IN_ROOT --enable-shared --disable-static --disable-tcl --disable-readline"
CONFIGURE="--prefix=$PREFIX_IN_ROOT --enable-shared --with-ensurepip=install ac_cv_func_sem_clockwait=no"
PY_KEY=$( (cat "$PY_SRC"/*.xz "$SQLITE_SRC"/*.xz "$HERE/glibc-compat.h" | sha256sum; echo "$CONFIGURE $SQLITE_CONFIGURE $ROOT_KEY") \
          | sha256sum | cut -c1-12)
PY_TAR=$CACHE/cpython-$PY_DEB_VERSION-$SUITE-$DEB_ARCH-$PY_KEY.tar.gz
if [ ! -f "$PY_TAR" ]; then
    say "building SQLite $SQLITE_DEB_VERSION and CPython $PY_DEB_VERSION in the $SUITE root"
    : > "$WORK/patches-applied.txt"
    mkdir -p "$ROOT/build"
    cp "$HERE/glibc-compat.h" "$ROOT/build/"
    unpack_patched "$SQLITE_SRC" sqlite '*CVE*'
    unpack_patched "$PY_SRC" cpython '*.patch'
    in_root bash -c "set -e
        cd /build/sqlite
        ./configure -q $SQLITE_CONFIGURE CFLAGS='-O2 $COMPAT' >/build/sqlite-configure.log 2>&1
        make -j$(nproc) >/build/sqlite-make.log 2>&1
        make install >/build/sqlite-install.log 2>&1
        cd /build/cpython
        ./configure -q $CONFIGURE CFLAGS='$COMPAT' LDFLAGS='-L$PREFIX_IN_ROOT/lib -Wl,-rpath,$PREFIX_IN_ROOT/lib' \
            LIBSQLITE3_CFLAGS='-I$PREFIX_IN_ROOT/include' LIBSQLITE3_LIBS='-L$PREFIX_IN_ROOT/lib -lsqlite3' \
            >/build/configure.log 2>&1
        make -j$(nproc) >/build/make.log 2>&1
        make install >/build/install.log 2>&1" \
        || { tail -n 40 "$ROOT"/build/*.log >&2; die "the SQLite or CPython build failed"; }
    # no debug info in the shipped interpreter and extension modules (-g is CPython's default)
    find "$ROOT$PREFIX_IN_ROOT" -name '*.so*' -type f -exec strip --strip-debug {} +
    cp "$WORK/patches-applied.txt" "$ROOT$PREFIX_IN_ROOT/PATCHES-FROM-DEBIAN"
    tar -C "$ROOT" --numeric-owner -czf "$PY_TAR.tmp" "${PREFIX_IN_ROOT#/}"
    mv "$PY_TAR.tmp" "$PY_TAR"
    rm -rf "$ROOT/build"
else
    say "SQLite and CPython: $PY_TAR (cached)"
    tar -C "$ROOT" --numeric-owner -xzf "$PY_TAR"
fi
PY_IN_ROOT=$PREFIX_IN_ROOT/bin/python$PY_MINOR
PY_FULL=$(in_root "$PY_IN_ROOT" -c 'import platform; print(platform.python_version())')
SQLITE_FULL=$(in_root "$PY_IN_ROOT" -c 'import sqlite3; print(sqlite3.sqlite_version)')
say "CPython $PY_FULL with SQLite $SQLITE_FULL in the build root (glibc $ROOT_GLIBC)"

# --- 3. the wheels: the wheelhouse of this release for this CPython, plus PyInstaller ----------------
say "collecting the wheels (packaging/build-wheelhouse.sh for CPython $PY_MINOR on $ARCH)"
WH_TAR=$(PYTHON=$PYTHON bash "$HERE/build-wheelhouse.sh" --out "$WORK/wheelhouse" --arch "$ARCH" \
            --python-version "$PY_MINOR" --glibc 2.28 --source "$SOURCE" | tail -n 1)
tar -C "$WORK/wheelhouse" -xzf "$WH_TAR"
WH_DIR=$(find "$WORK/wheelhouse" -mindepth 1 -maxdepth 1 -type d | head -n 1)
VERSION=$(awk '/^version:/ { print $2 }' "$WH_DIR/BUILD-INFO")
COMMIT=$(awk '/^commit:/ { print $2 }' "$WH_DIR/BUILD-INFO")
PYI_PLAT=(--platform "manylinux2014_$ARCH" --platform "manylinux_2_17_$ARCH")
"$PYTHON" -m pip --disable-pip-version-check download --quiet --only-binary=:all: --implementation cp \
    --python-version "$PY_MINOR" "${PYI_PLAT[@]}" -d "$WORK/pyinstaller" \
    "pyinstaller>=6.10,<7" >&2 || die "could not download PyInstaller for CPython $PY_MINOR on $ARCH"
mkdir -p "$ROOT/build/wheels" "$ROOT/build/spec"
cp "$WH_DIR"/wheels/*.whl "$WORK"/pyinstaller/*.whl "$ROOT/build/wheels/"
cp "$HERE/edx-agent.spec" "$HERE/edx_agent_main.py" "$ROOT/build/spec/"
in_root bash -c "set -e
    $PY_IN_ROOT -m venv /build/venv
    /build/venv/bin/pip install --quiet --no-index --find-links /build/wheels --disable-pip-version-check \
        'edx-agent[all]==$VERSION' pyinstaller" >&2 || die "installing the wheels in the build root failed"
PYI_VERSION=$(in_root /build/venv/bin/python -c 'import PyInstaller; print(PyInstaller.__version__)')

# --- 4. PyInstaller -----------------------------------------------------------------------------------
say "PyInstaller $PYI_VERSION: freezing edx-agent $VERSION"
in_root bash -c "cd /build && /build/venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
        --distpath /build/dist --workpath /build/work /build/spec/edx-agent.spec" > "$WORK/pyinstaller.log" 2>&1 \
    || { tail -n 40 "$WORK/pyinstaller.log" >&2; die "PyInstaller failed"; }
APP=$ROOT/build/dist/edx-agent
in_root /build/dist/edx-agent/edx-agent version >/dev/null || die "the frozen edx-agent does not run in the build root"

# the newest glibc symbol version any ELF file of the bundle refers to: the bundle's minimum glibc
MIN_GLIBC=$(find "$APP" -type f \( -name '*.so*' -o -perm -u+x \) -print0 \
    | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -u -V | tail -n 1)
[ -n "$MIN_GLIBC" ] || die "could not measure the glibc the bundle needs"
say "the bundle needs glibc >= $MIN_GLIBC (built on $SUITE, glibc $ROOT_GLIBC)"

# --- 5. the bundle directory --------------------------------------------------------------------------
NAME=edx-agent-$VERSION-linux-$ARCH
STAGE=$WORK/$NAME
mkdir -p "$STAGE/examples" "$STAGE/docs"
cp -a "$APP" "$STAGE/edx-agent"
cp "$SOURCE/systemd/install.sh" "$STAGE/install.sh"
chmod 0755 "$STAGE/install.sh"
cp "$SOURCE/systemd/edx-agent.service" "$SOURCE/config/agent.example.toml" "$STAGE/"
cp "$SOURCE"/systemd/examples/*.conf "$STAGE/examples/"
for d in operations.md operations.zh.md; do
    [ -f "$SOURCE/docs/$d" ] && cp "$SOURCE/docs/$d" "$STAGE/docs/"
done
cat > "$STAGE/BUILD-INFO" <<EOF
name: edx-agent
kind: self-contained
version: $VERSION
commit: $COMMIT
architecture: $ARCH
glibc: >= $MIN_GLIBC
python: $PY_FULL (Debian source $PY_PKG $PY_DEB_VERSION, built on $SUITE)
sqlite: $SQLITE_FULL (Debian source sqlite3 $SQLITE_DEB_VERSION)
pyinstaller: $PYI_VERSION
drivers: PyMySQL, oracledb (thin mode), psycopg (binary), pyodbc (needs the system's unixODBC and the vendor's ODBC driver)
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm)
EOF
cat > "$STAGE/README.txt" <<EOF
edx-agent $VERSION self-contained bundle for Linux $ARCH (自带解释器的离线安装包)

No Python is needed on the machine: the agent brings its own interpreter and drivers.
本安装包自带 Python 解释器和数据库驱动，目标机器无需安装 Python。
Needs / 需要: Linux $ARCH with glibc >= $MIN_GLIBC (\`ldd --version\`), systemd for the service.

Install / 安装 (as root / 以 root 运行):
    sha256sum -c $NAME.tar.gz.sha256          # the tarball is intact / 校验安装包完整
    tar -xzf $NAME.tar.gz
    sudo ./$NAME/install.sh                      # or: sudo ./install.sh --bundle $NAME.tar.gz
Upgrade / 升级: the same command with the new bundle; the configuration and the state are kept, and
the previous version stays in service if the new one fails its self-test. Rollback / 回退:
    sudo /opt/edx-agent/share/install.sh --rollback

Databases / 数据库驱动: MySQL/MariaDB (PyMySQL), PostgreSQL (psycopg), Oracle (oracledb thin mode, no
Instant Client needed) and SQLite work as shipped. SQL Server needs the system's ODBC driver manager
and Microsoft's driver / SQL Server 还需要操作系统的 unixODBC 和微软 ODBC 驱动:
    Debian/Ubuntu: ACCEPT_EULA=Y apt-get install msodbcsql18 unixodbc
    RHEL/Kylin/UOS: ACCEPT_EULA=Y yum install msodbcsql18 unixODBC
\`edx-agent check\` and \`edx-agent doctor\` say when they are missing / 缺少时 check 和 doctor 会提示。

Guide / 运维手册: docs/operations.md, docs/operations.zh.md
EOF
(cd "$STAGE" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) > "$WORK/SHA256SUMS"
mv "$WORK/SHA256SUMS" "$STAGE/SHA256SUMS"

# --- 6. the tarball (sorted, fixed owner and time) and its checksum ------------------------------------
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SOURCE" log -1 --format=%ct 2>/dev/null || date +%s)}
tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner -C "$WORK" -cf - "$NAME" \
    | gzip -n -6 > "$OUT/$NAME.tar.gz.tmp"
mv "$OUT/$NAME.tar.gz.tmp" "$OUT/$NAME.tar.gz"
(cd "$OUT" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")
if [ "$KEEP_STAGE" = 1 ]; then
    rm -rf "${OUT:?}/$NAME"
    cp -a "$STAGE" "$OUT/$NAME"
fi
say "wrote $OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1); unpacked $(du -sh "$STAGE" | cut -f1)) and its .sha256"
if [ "$DEB" = 1 ]; then
    bash "$HERE/build-deb.sh" --out "$OUT" "$OUT/$NAME.tar.gz" >&2
fi
echo "$OUT/$NAME.tar.gz"
