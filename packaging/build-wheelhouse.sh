#!/usr/bin/env bash
# Build the offline bundle of edx-agent: a wheelhouse tarball with the agent's wheel and every
# dependency, for linux x86_64 and aarch64 (manylinux, glibc <= 2.28 by default) and CPython 3.11
# and 3.12, plus install.sh, the systemd unit, the example configuration and the operations guide.
#
# The result installs on a front-end machine with no network (政务外网前置机无互联网):
#   sha256sum -c edx-agent-VERSION-wheelhouse-TAG.tar.gz.sha256
#   sudo sh install.sh --bundle edx-agent-VERSION-wheelhouse-TAG.tar.gz
# or by hand:  pip install --no-index --find-links wheels/ 'edx-agent[all]'
#
# The build host needs the network (or a mirror through pip's usual configuration); it can be any
# Linux machine with Python >= 3.11: binary dependencies are downloaded as manylinux wheels for each
# target with `pip download --only-binary=:all: --platform ... --python-version ...`, and a
# dependency published only as a source archive is built into a wheel here, which is accepted only
# if it is pure Python (py3-none-any), since it must install on every target.
#
# Usage: packaging/build-wheelhouse.sh [options]
#   --out DIR             where the tarball and its .sha256 go (default: dist/)
#   --current             only this machine's platform and Python (fast; what the tests build)
#   --arch A              target architecture, repeatable (default: x86_64 aarch64)
#   --python-version V    target CPython version, repeatable (default: 3.11 3.12)
#   --glibc X.Y           newest glibc the targets may need (default: 2.28, Kylin V10 / UOS 20)
#   --extras LIST         extras of edx-agent to include (default: all = every connector's driver)
#   --source DIR          source tree to build the agent from (default: this repository)
#   --keep-stage          keep the unpacked staging directory next to the tarball
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/.." && pwd)
OUT="$SOURCE/dist"
PYTHON=${PYTHON:-python3}
CURRENT=0
ARCHES=()
PYVERS=()
GLIBC=2.28
EXTRAS=all
KEEP_STAGE=0

die() { echo "build-wheelhouse: error: $*" >&2; exit 1; }
say() { echo "build-wheelhouse: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --current) CURRENT=1; shift ;;
        --arch) ARCHES+=("$2"); shift 2 ;;
        --python-version) PYVERS+=("$2"); shift 2 ;;
        --glibc) GLIBC=$2; shift 2 ;;
        --extras) EXTRAS=$2; shift 2 ;;
        --source) SOURCE=$(cd "$2" && pwd); shift 2 ;;
        --keep-stage) KEEP_STAGE=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is older than 3.11; set PYTHON=python3.11 (or newer)"
HOST_ARCH=$(uname -m)
HOST_PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$CURRENT" = 1 ]; then
    ARCHES=("$HOST_ARCH"); PYVERS=("$HOST_PYVER")
fi
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(x86_64 aarch64)
[ ${#PYVERS[@]} -gt 0 ] || PYVERS=(3.11 3.12)
for a in "${ARCHES[@]}"; do
    case "$a" in x86_64|aarch64) ;; *) die "unsupported architecture $a (x86_64 or aarch64)" ;; esac
done
GLIBC_MINOR=${GLIBC#2.}
case "$GLIBC_MINOR" in ''|*[!0-9]*) die "--glibc wants a version such as 2.28" ;; esac
[ "$GLIBC_MINOR" -ge 17 ] || die "--glibc must be 2.17 or newer"

# manylinux tags a target with glibc 2.$GLIBC_MINOR accepts, newest first (pip does not expand
# perennial manylinux_2_X tags by itself when --platform is given).
platform_args() {
    local arch=$1 m
    for ((m = GLIBC_MINOR; m >= 17; m--)); do printf -- '--platform\nmanylinux_2_%s_%s\n' "$m" "$arch"; done
    printf -- '--platform\nmanylinux2014_%s\n' "$arch"
    if [ "$arch" = x86_64 ]; then
        printf -- '--platform\nmanylinux2010_%s\n--platform\nmanylinux1_%s\n' "$arch" "$arch"
    fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edx-wheelhouse.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PIP=("$PYTHON" -m pip --disable-pip-version-check)

# 1. the agent's own wheel, from the source tree's files as git sees them (tracked and new files, not
#    ignored ones such as .venv/ or dist/), copied out so that the build leaves no build/ or
#    *.egg-info in the checkout. A release is built from a clean checkout of its tag: BUILD-INFO
#    records the commit, with "+dirty" when the tree had changes.
say "building the edx-agent wheel from $SOURCE"
mkdir -p "$WORK/src"
if git -C "$SOURCE" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$SOURCE" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done \
        | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
    COMMIT=$(git -C "$SOURCE" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$SOURCE" status --porcelain 2>/dev/null)" ]; then
        COMMIT="$COMMIT+dirty"
    fi
else
    (cd "$SOURCE" && tar --exclude=.venv --exclude=.git --exclude=dist -cf - .) | tar -xf - -C "$WORK/src"
    COMMIT=unknown
fi
"${PIP[@]}" wheel --quiet --no-deps -w "$WORK/agent" "$WORK/src" >&2
AGENT_WHL=$(ls "$WORK"/agent/edx_agent-*.whl)
VERSION=$(basename "$AGENT_WHL" | cut -d- -f2)
say "edx-agent $VERSION (commit $COMMIT)"

if [ "$CURRENT" = 1 ]; then
    TAG="$HOST_ARCH-cp${HOST_PYVER/./}"
else
    TAG="manylinux_2_${GLIBC_MINOR}-$(IFS=-; echo "${ARCHES[*]}")-$(printf 'cp%s-' "${PYVERS[@]//./}" | sed 's/-$//')"
fi
NAME="edx-agent-$VERSION-wheelhouse-$TAG"
STAGE="$WORK/$NAME"
WH="$STAGE/wheels"
mkdir -p "$WH"
cp "$AGENT_WHL" "$WH/"
REQ="edx-agent[$EXTRAS]==$VERSION"

# 2. dependencies only published as source archives: build them here, accept them only if pure
say "resolving dependencies; building wheels for those published only as source (must be pure Python)"
"${PIP[@]}" install --quiet --dry-run --ignore-installed --report "$WORK/report.json" \
    --find-links "$WH" "$REQ" pip >&2
"$PYTHON" - "$WORK/report.json" > "$WORK/sdist-only.txt" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    if not item["download_info"]["url"].endswith(".whl"):
        print(f'{item["metadata"]["name"]}=={item["metadata"]["version"]}')
PY
while read -r req; do
    [ -n "$req" ] || continue
    "${PIP[@]}" wheel --quiet --no-deps -w "$WORK/built" "$req" >&2
done < "$WORK/sdist-only.txt"
for w in "$WORK"/built/*.whl; do
    [ -e "$w" ] || continue
    case "$w" in
        *-py3-none-any.whl|*-py2.py3-none-any.whl) say "  built $(basename "$w") from its source archive"; cp "$w" "$WH/" ;;
        *) die "$(basename "$w") has no published wheel and is not pure Python: it cannot ship for other platforms" ;;
    esac
done

# 3. every dependency as a binary wheel for every target
for arch in "${ARCHES[@]}"; do
    mapfile -t PLAT < <(platform_args "$arch")
    for pv in "${PYVERS[@]}"; do
        say "downloading wheels for CPython $pv on $arch (manylinux, glibc <= $GLIBC)"
        "${PIP[@]}" download --quiet --only-binary=:all: --implementation cp --python-version "$pv" \
            "${PLAT[@]}" --find-links "$WH" -d "$WH" "$REQ" pip >&2 \
            || die "a dependency has no wheel for CPython $pv on $arch (see pip's message above)"
        # proof that the set is complete: resolve it for that target with the network off
        PIP_CONFIG_FILE=/dev/null "${PIP[@]}" install --isolated --dry-run --quiet --ignore-installed --no-index --find-links "$WH" \
            --only-binary=:all: --implementation cp --python-version "$pv" "${PLAT[@]}" \
            --target "$WORK/dry-$arch-$pv" "$REQ" pip >&2 \
            || die "the wheelhouse does not resolve offline for CPython $pv on $arch"
    done
done

# 4. what the installer needs besides the wheels
cp "$SOURCE/systemd/install.sh" "$STAGE/install.sh"
chmod 0755 "$STAGE/install.sh"
cp "$SOURCE/systemd/edx-agent.service" "$STAGE/"
mkdir -p "$STAGE/examples" "$STAGE/docs"
cp "$SOURCE"/systemd/examples/*.conf "$STAGE/examples/"
cp "$SOURCE/config/agent.example.toml" "$STAGE/"
for d in operations.md operations.zh.md; do
    [ -f "$SOURCE/docs/$d" ] && cp "$SOURCE/docs/$d" "$STAGE/docs/"
done
echo "$REQ" > "$STAGE/requirements.txt"
cat > "$STAGE/BUILD-INFO" <<EOF
name: edx-agent
version: $VERSION
commit: $COMMIT
architectures: ${ARCHES[*]}
python: ${PYVERS[*]}
glibc: <= $GLIBC
extras: $EXTRAS
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm) with Python $HOST_PYVER
EOF
cat > "$STAGE/README.txt" <<EOF
edx-agent $VERSION offline bundle (离线安装包) — $TAG

Install / 安装 (as root / 以 root 运行):
    sha256sum -c $NAME.tar.gz.sha256        # the tarball is intact / 校验安装包完整
    tar -xzf $NAME.tar.gz && cd $NAME
    sudo ./install.sh                          # or: sudo ./install.sh --help

By hand, into any venv / 手动安装到任意虚拟环境:
    python3 -m venv /opt/edx-agent/venv
    /opt/edx-agent/venv/bin/pip install --no-index --find-links wheels/ -r requirements.txt

Guide / 运维手册: docs/operations.md, docs/operations.zh.md
EOF
(cd "$STAGE" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum) > "$WORK/SHA256SUMS"
mv "$WORK/SHA256SUMS" "$STAGE/SHA256SUMS"

# 5. the tarball (reproducible: sorted, fixed owner and time) and its checksum
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SOURCE" log -1 --format=%ct 2>/dev/null || date +%s)}
tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner -C "$WORK" -cf - "$NAME" \
    | gzip -n -9 > "$OUT/$NAME.tar.gz.tmp"
mv "$OUT/$NAME.tar.gz.tmp" "$OUT/$NAME.tar.gz"
(cd "$OUT" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")
if [ "$KEEP_STAGE" = 1 ]; then
    rm -rf "${OUT:?}/$NAME"
    cp -a "$STAGE" "$OUT/$NAME"
fi
n=$(find "$WH" -name '*.whl' | wc -l)
size=$(du -h "$OUT/$NAME.tar.gz" | cut -f1)
say "wrote $OUT/$NAME.tar.gz ($n wheels, $size) and $NAME.tar.gz.sha256"
echo "$OUT/$NAME.tar.gz"
