#!/usr/bin/env bash
# Install, upgrade, roll back or remove edx-agent as a systemd service, from an offline bundle.
# 从离线安装包安装、升级、回退或卸载 edx-agent 系统服务。
#
# Two kinds of bundle / 两种安装包:
#   edx-agent-VERSION-linux-ARCH.tar.gz          self-contained: brings its own Python and drivers;
#                                                needs no Python on the machine (packaging/build-bundle.sh)
#                                                自带解释器，目标机器无需 Python
#   edx-agent-VERSION-wheelhouse-TAG.tar.gz      wheels, installed into a venv of the machine's
#                                                Python >= 3.11 (packaging/build-wheelhouse.sh)
#
# Usage / 用法 (as root / 以 root 运行):
#   install.sh [--bundle FILE.tar.gz|DIR] [options]   install or upgrade (idempotent) / 安装或升级
#   install.sh --rollback                             go back to the previous release / 回退到上一版本
#   install.sh --uninstall [--purge]                  remove (keep data unless --purge) / 卸载
#
# Options / 选项:
#   --bundle PATH     the bundle (either kind) with its .sha256 next to it, or an unpacked bundle
#                     directory (default: the directory of this script)
#   --python PATH     wheelhouse only: Python >= 3.11 to build the service's venv with (default:
#                     python3.12, python3.11 or python3, the first the bundle has wheels for)
#   --extras LIST     wheelhouse only: drivers to install: all (default), e.g. oracle,sqlserver, or ""
#   --link            self-contained only: hard-link the bundle's files into the release instead of
#                     copying them (same file system; the .deb package uses it to save the space)
#   --suite intl|gm   cipher suite of the key pair made on first install (default: intl; gm = 国密)
#   --no-keys         do not make a key pair on first install (run `edx-agent init` yourself)
#   --no-enable       do not enable the unit at boot
#   --prefix DIR      where the agent's releases and venv go (default: /opt/edx-agent)
#   --root DIR        install into DIR instead of / (image building, tests): no user is created and
#                     no service is started; ownership is set at the image's first boot by
#                     systemd-sysusers and systemd-tmpfiles. The venv is built in place, so its own
#                     paths include DIR.
#   --purge           with --uninstall: also delete the configuration, the state (keys, enrolment,
#                     spool, and the audit log, which 等保 asks to keep 180 days), logs and the user
#   --lang zh|en      language of messages (default: from EDX_AGENT_LANG, LC_ALL, LC_MESSAGES, LANG)
#
# Exit status / 退出码: 0 done; 1 failed; 2 usage; 65 the bundle is corrupt or does not match its
# checksum; 69 unsupported machine (architecture, a glibc older than a self-contained bundle needs,
# no Python >= 3.11 a wheelhouse has wheels for); 77 not run as root.
#
# Nothing is changed before every check has passed: architecture, privileges, the bundle's checksums,
# then glibc (self-contained) or Python and an offline resolution of the wheels (wheelhouse). An
# upgrade is installed next to the running release and switched to only after its self-test
# (`edx-agent version`, `selftest`, and `check` of the existing configuration) passes; the previous
# release is kept for --rollback. Under /opt/edx-agent, `venv` points at the active release for both
# kinds (for a self-contained bundle its bin/ holds the frozen executable), so the unit is the same.
set -euo pipefail
umask 022
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP

HERE=$(cd "$(dirname "$0")" && pwd)
SERVICE=edx-agent
UNIT=edx-agent.service
DEFAULT_PREFIX=/opt/edx-agent

ROOT=/
PREFIX=$DEFAULT_PREFIX
BUNDLE=""
PYTHON=""
EXTRAS=all
SUITE=intl
ACTION=install
PURGE=0
ENABLE=1
KEYS=1
LINK=0
KIND=""       # self-contained or wheelhouse, from the bundle
MSG_LANG=${EDX_AGENT_LANG:-}

# --- messages ---------------------------------------------------------------------------------------
if [ -z "$MSG_LANG" ]; then
    case "${LC_ALL:-${LC_MESSAGES:-${LANG:-}}}" in zh*) MSG_LANG=zh ;; *) MSG_LANG=en ;; esac
fi
for a in "$@"; do
    case "$a" in --lang=zh) MSG_LANG=zh ;; --lang=en) MSG_LANG=en ;; esac
done
prev=""
for a in "$@"; do
    [ "$prev" = --lang ] && MSG_LANG=$a
    prev=$a
done
# t ENGLISH CHINESE: the message in the chosen language
t() { if [ "$MSG_LANG" = zh ]; then printf '%s' "$2"; else printf '%s' "$1"; fi; }
say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    local code=$1
    shift
    printf 'install.sh: %s %s\n' "$(t error: 错误：)" "$*" >&2
    exit "$code"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle|--wheelhouse) [ $# -ge 2 ] || die 2 "$1 needs a value"; BUNDLE=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die 2 "$1 needs a value"; PYTHON=$2; shift 2 ;;
        --extras) [ $# -ge 2 ] || die 2 "$1 needs a value"; EXTRAS=$2; shift 2 ;;
        --suite) [ $# -ge 2 ] || die 2 "$1 needs a value"; SUITE=$2; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die 2 "$1 needs a value"; PREFIX=$2; shift 2 ;;
        --root) [ $# -ge 2 ] || die 2 "$1 needs a value"; ROOT=$2; shift 2 ;;
        --lang) shift 2 ;;
        --lang=*) shift ;;
        --no-keys) KEYS=0; shift ;;
        --link) LINK=1; shift ;;
        --no-enable) ENABLE=0; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        --rollback) ACTION=rollback; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die 2 "$(t "unknown option $1 (see --help)" "未知选项 $1（见 --help）")" ;;
    esac
done
case "$SUITE" in intl|gm) ;; *) die 2 "--suite must be intl or gm" ;; esac
case "$PREFIX" in /*) ;; *) die 2 "--prefix must be an absolute path" ;; esac
[ "$PURGE" = 0 ] || [ "$ACTION" = uninstall ] || die 2 "$(t "--purge goes with --uninstall" "--purge 只能与 --uninstall 一起使用")"
PREFIX=${PREFIX%/}
ROOT=$(cd "$ROOT" 2>/dev/null && pwd) || die 2 "--root: no such directory"
R=${ROOT%/}                      # "" for the real root
LIVE=0; [ -z "$R" ] && LIVE=1    # installing into the running system

P=$R$PREFIX
CONF_DIR=$R/etc/edx-agent
CONF=$CONF_DIR/agent.toml
CRED_DIR=$CONF_DIR/credentials
STATE_DIR=$R/var/lib/edx-agent
LOG_DIR=$R/var/log/edx-agent
UNIT_DIR=$R/etc/systemd/system
SYSUSERS=$R/usr/lib/sysusers.d/edx-agent.conf
TMPFILES=$R/usr/lib/tmpfiles.d/edx-agent.conf

WORK=""
cleanup() { if [ -n "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

booted() { [ "$LIVE" = 1 ] && [ -d /run/systemd/system ]; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- checks (nothing is changed until all of them pass) ----------------------------------------------
check_privileges() {
    if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
        die 77 "$(t "run as root (sudo $0 ...), or use --root DIR for a staging directory" \
                    "请以 root 身份运行（sudo $0 ...），或用 --root DIR 安装到暂存目录")"
    fi
}

ARCH=""
check_arch() {
    local m
    m=$(uname -m)
    case "$m" in
        x86_64|amd64) ARCH=x86_64 ;;
        aarch64|arm64) ARCH=aarch64 ;;
        *) die 69 "$(t "unsupported architecture $m: edx-agent bundles exist for x86_64 and aarch64 only; nothing was changed" \
                       "不支持的处理器架构 $m：安装包仅支持 x86_64 和 aarch64；未做任何改动")" ;;
    esac
}

py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
py_ok() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

CANDIDATES=()
check_python() {
    local c v found=""
    if [ -n "$PYTHON" ]; then
        set -- "$PYTHON"
    else
        set -- python3.13 python3.12 python3.11 python3
    fi
    for c in "$@"; do
        have "$c" || continue
        v=$(py_version "$c") || continue
        if ! py_ok "$c"; then
            found="$found $c=$v"
            continue
        fi
        # the unit's ProtectHome=yes hides /home, /root and /run/user from the service
        case "$("$c" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null)" in
            /home/*|/root/*|/run/user/*)
                if [ "$LIVE" = 1 ]; then
                    found="$found $c=$v(in-a-home-directory)"
                    continue
                fi ;;
        esac
        CANDIDATES+=("$(command -v "$c")")
    done
    if [ ${#CANDIDATES[@]} -eq 0 ]; then
        die 69 "$(t "edx-agent needs Python >= 3.11 with its venv module, outside home directories; found:${found:- none}. Install python3.11 (or newer) from the OS vendor, or use the self-contained bundle; nothing was changed" \
                    "edx-agent 需要 Python 3.11 及以上版本（含 venv 模块，且不在用户主目录下）；当前找到：${found:- 无}。请从操作系统厂商安装 python3.11 或更新版本，或使用自带解释器的安装包；未做任何改动")"
    fi
}

B=""          # the unpacked bundle
WH=""         # its wheels
VERSION=""
RELEASE=""    # VERSION-<digest of the bundle's SHA256SUMS>
PIPWHL=""
open_bundle() {
    local src=$BUNDLE sum want got f
    if [ -z "$src" ]; then
        [ -d "$HERE/wheels" ] || [ -x "$HERE/edx-agent/edx-agent" ] \
            || die 2 "$(t "no bundle: pass --bundle edx-agent-VERSION-linux-ARCH.tar.gz" \
                          "未指定安装包：请使用 --bundle edx-agent-版本-linux-架构.tar.gz")"
        src=$HERE
    fi
    if [ -f "$src" ]; then
        sum="$src.sha256"
        [ -f "$sum" ] || die 65 "$(t "checksum file $sum not found: copy it next to the bundle; refusing to install an unverified bundle" \
                                    "未找到校验文件 $sum：请把它和安装包放在同一目录；拒绝安装未经校验的安装包")"
        want=$(awk 'NR == 1 { print $1 }' "$sum")
        got=$(sha256sum "$src" | awk '{ print $1 }')
        if [ "$want" != "$got" ]; then
            die 65 "$(t "checksum mismatch for $src (expected $want, got $got): the file is damaged or not the published one; nothing was changed" \
                        "安装包 $src 校验和不一致（应为 $want，实为 $got）：文件已损坏或不是发布的版本；未做任何改动")"
        fi
        say "$(t "bundle checksum OK: $got" "安装包校验通过：$got")"
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/edx-agent-install.XXXXXX")
        tar -xzf "$src" -C "$WORK" || die 65 "$(t "cannot unpack $src" "无法解压 $src")"
        B=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    elif [ -d "$src" ]; then
        B=$(cd "$src" && pwd)
    else
        die 2 "$(t "bundle $src not found" "找不到安装包 $src")"
    fi
    [ -f "$B/SHA256SUMS" ] || die 65 "$(t "$B has no SHA256SUMS: not an edx-agent bundle" "$B 中没有 SHA256SUMS：不是 edx-agent 安装包")"
    if ! (cd "$B" && sha256sum --check --quiet --strict SHA256SUMS >/dev/null 2>&1); then
        die 65 "$(t "files in the bundle do not match its SHA256SUMS: $(cd "$B" && sha256sum --check --quiet SHA256SUMS 2>&1 | head -n 3 | tr '\n' ' ')" \
                    "安装包内文件与 SHA256SUMS 不一致：$(cd "$B" && sha256sum --check --quiet SHA256SUMS 2>&1 | head -n 3 | tr '\n' ' ')")"
    fi
    for f in edx-agent.service agent.example.toml; do
        [ -f "$B/$f" ] || die 65 "$(t "the bundle lacks $f" "安装包缺少 $f")"
    done
    if grep -q '^kind: self-contained' "$B/BUILD-INFO" 2>/dev/null; then
        open_self_contained
        return
    fi
    KIND=wheelhouse
    # pip would also pick up a wheel that is not listed; only listed files count
    for f in "$B"/wheels/*; do
        grep -q "  wheels/$(basename "$f")\$" "$B/SHA256SUMS" \
            || die 65 "$(t "wheels/$(basename "$f") is not listed in SHA256SUMS" "wheels/$(basename "$f") 不在 SHA256SUMS 中")"
    done
    WH=$B/wheels
    set -- "$WH"/edx_agent-*.whl
    { [ $# -eq 1 ] && [ -f "$1" ]; } || die 65 "$(t "the bundle must hold exactly one edx_agent wheel" "安装包中应有且仅有一个 edx_agent wheel")"
    VERSION=$(basename "$1" | cut -d- -f2)
    RELEASE="$VERSION-$(sha256sum "$B/SHA256SUMS" | cut -c1-12)"
    set -- "$WH"/pip-*.whl
    [ -f "$1" ] || die 65 "$(t "the bundle lacks the pip wheel" "安装包缺少 pip 的 wheel")"
    PIPWHL=$1
    if grep -q -E '_(x86_64|aarch64)\.whl$' "$B/SHA256SUMS" && ! grep -q -E "_$ARCH\.whl\$" "$B/SHA256SUMS"; then
        die 69 "$(t "this bundle has no wheels for $ARCH; use the bundle built for $ARCH; nothing was changed" \
                    "该安装包没有 $ARCH 架构的 wheel，请使用为 $ARCH 构建的安装包；未做任何改动")"
    fi
    say "$(t "bundle: edx-agent $VERSION ($(grep -c '\.whl$' "$B/SHA256SUMS") wheels, all checksums OK)" \
             "安装包：edx-agent $VERSION（共 $(grep -c '\.whl$' "$B/SHA256SUMS") 个 wheel，校验全部通过）")"
}

# glibc_version: the C library's version ("2.31"), empty if it is not glibc (musl)
glibc_version() { getconf GNU_LIBC_VERSION 2>/dev/null | awk '$1 == "glibc" { print $2 }'; }
version_lt() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }

open_self_contained() {  # the checks of a self-contained bundle; nothing is changed here either
    local want_arch need_glibc have_glibc listed present
    KIND=self-contained
    [ -x "$B/edx-agent/edx-agent" ] || die 65 "$(t "the bundle lacks its executable edx-agent/edx-agent" "安装包缺少可执行文件 edx-agent/edx-agent")"
    # a file that is not listed could still be loaded by the frozen program: only listed files count
    listed=$(grep -c '  edx-agent/' "$B/SHA256SUMS" || true)
    present=$(find "$B/edx-agent" -type f | wc -l)
    [ "$listed" = "$present" ] || die 65 "$(t "edx-agent/ holds $present files but SHA256SUMS lists $listed" \
                                                "edx-agent/ 中有 $present 个文件，而 SHA256SUMS 列出 $listed 个")"
    VERSION=$(awk '$1 == "version:" { print $2 }' "$B/BUILD-INFO")
    want_arch=$(awk '$1 == "architecture:" { print $2 }' "$B/BUILD-INFO")
    need_glibc=$(awk '$1 == "glibc:" { print $NF }' "$B/BUILD-INFO")
    if [ -z "$VERSION" ] || [ -z "$want_arch" ] || [ -z "$need_glibc" ]; then
        die 65 "$(t "BUILD-INFO lacks the version, architecture or glibc" "BUILD-INFO 缺少版本、架构或 glibc 信息")"
    fi
    if [ "$want_arch" != "$ARCH" ]; then
        die 69 "$(t "this bundle is for $want_arch but this machine is $ARCH: use edx-agent-$VERSION-linux-$ARCH.tar.gz; nothing was changed" \
                    "该安装包适用于 $want_arch，而本机为 $ARCH：请使用 edx-agent-$VERSION-linux-$ARCH.tar.gz；未做任何改动")"
    fi
    have_glibc=$(glibc_version)
    if [ -z "$have_glibc" ] || version_lt "$have_glibc" "$need_glibc"; then
        die 69 "$(t "this bundle needs glibc >= $need_glibc; this machine has ${have_glibc:-no glibc} (ldd --version): use a bundle built on an older system (packaging/README.md); nothing was changed" \
                    "该安装包需要 glibc >= $need_glibc，本机为 ${have_glibc:-非 glibc}（ldd --version）：请使用在更旧系统上构建的安装包；未做任何改动")"
    fi
    RELEASE="$VERSION-$(sha256sum "$B/SHA256SUMS" | cut -c1-12)"
    say "$(t "bundle: edx-agent $VERSION, self-contained for $ARCH (glibc >= $need_glibc; here $have_glibc), all checksums OK" \
             "安装包：edx-agent $VERSION，自带解释器（$ARCH，需 glibc >= $need_glibc，本机 $have_glibc），校验全部通过")"
}

REQ=""
pip_in() {  # pip_in PYTHON ARGS...: the bundle's pip, isolated from the machine's pip configuration
    local py=$1
    shift
    PIP_CONFIG_FILE=/dev/null "$py" "$PIPWHL/pip" --isolated --disable-pip-version-check --no-input "$@"
}
choose_python() {
    local c
    if [ -n "$EXTRAS" ]; then REQ="edx-agent[$EXTRAS]==$VERSION"; else REQ="edx-agent==$VERSION"; fi
    for c in "${CANDIDATES[@]}"; do
        # a resolution only, nothing is installed into the OS's Python (hence no PEP 668 objection)
        if pip_in "$c" install --dry-run --quiet --ignore-installed --break-system-packages --no-index \
                --find-links "$WH" "$REQ" pip >/dev/null 2>&1; then
            PYTHON=$c
            say "$(t "Python: $c ($(py_version "$c")); the bundle resolves offline for it" \
                     "Python：$c（$(py_version "$c")）；安装包可离线满足其全部依赖")"
            return
        fi
    done
    die 69 "$(t "the bundle has no complete set of wheels for ${CANDIDATES[*]} on $ARCH; use a bundle built for this Python (see docs/operations.md); nothing was changed" \
                "该安装包没有适用于 ${CANDIDATES[*]}（$ARCH）的完整 wheel；请使用为此 Python 版本构建的安装包；未做任何改动")"
}

# --- the changes ------------------------------------------------------------------------------------
write_sysusers_tmpfiles() {
    mkdir -p "$(dirname "$SYSUSERS")" "$(dirname "$TMPFILES")"
    cat > "$SYSUSERS" <<EOF
# edx-agent service user (installed by edx-agent install.sh)
u edx-agent - "edx-agent data-exchange agent" /var/lib/edx-agent /usr/sbin/nologin
EOF
    cat > "$TMPFILES" <<EOF
# edx-agent directories and the credential file LoadCredential= reads (installed by install.sh)
d /etc/edx-agent 0750 root edx-agent -
z /etc/edx-agent/agent.toml 0640 root edx-agent -
d /etc/edx-agent/credentials 0700 root root -
f /etc/edx-agent/credentials/db-password 0600 root root -
d /var/lib/edx-agent 0700 edx-agent edx-agent -
d /var/log/edx-agent 0750 edx-agent edx-agent -
EOF
    chmod 0644 "$SYSUSERS" "$TMPFILES"
}

ensure_user() {
    if [ "$LIVE" = 0 ]; then
        note "$(t "--root: the user edx-agent is made at the image's first boot (systemd-sysusers)" \
                  "--root：系统用户 edx-agent 将在镜像首次启动时由 systemd-sysusers 创建")"
        return
    fi
    if getent passwd "$SERVICE" >/dev/null; then
        note "$(t "user $SERVICE exists" "用户 $SERVICE 已存在")"
        return
    fi
    say "$(t "creating system user $SERVICE (no login, home /var/lib/edx-agent)" \
             "创建系统用户 $SERVICE（不可登录，主目录 /var/lib/edx-agent）")"
    if have systemd-sysusers; then
        systemd-sysusers "$SYSUSERS"
    fi
    if ! getent passwd "$SERVICE" >/dev/null; then
        local nologin=/usr/sbin/nologin
        [ -x "$nologin" ] || nologin=/sbin/nologin
        if have useradd; then
            useradd --system --user-group --home-dir /var/lib/edx-agent --no-create-home \
                --shell "$nologin" --comment "edx-agent data-exchange agent" "$SERVICE"
        elif have adduser; then
            adduser --system --group --home /var/lib/edx-agent --no-create-home --shell "$nologin" "$SERVICE"
        else
            die 1 "$(t "cannot create user $SERVICE: neither systemd-sysusers, useradd nor adduser" \
                       "无法创建用户 $SERVICE：系统没有 systemd-sysusers、useradd 或 adduser")"
        fi
    fi
}

ensure_dirs() {
    say "$(t "directories: $CONF_DIR, $STATE_DIR, $LOG_DIR" "目录：$CONF_DIR、$STATE_DIR、$LOG_DIR")"
    mkdir -p "$CONF_DIR" "$CRED_DIR" "$STATE_DIR" "$LOG_DIR" "$P/releases" "$P/share/doc" "$UNIT_DIR"
    if [ ! -e "$CRED_DIR/db-password" ]; then
        (umask 077 && : > "$CRED_DIR/db-password")
        note "$(t "created an empty $CRED_DIR/db-password (put the database password there, mode 0600)" \
                  "已创建空文件 $CRED_DIR/db-password（数据库密码写在这里，权限 0600）")"
    fi
    chmod 0750 "$CONF_DIR"; chmod 0700 "$CRED_DIR" "$STATE_DIR"; chmod 0600 "$CRED_DIR/db-password"
    chmod 0750 "$LOG_DIR"
    if [ "$LIVE" = 1 ]; then
        if have systemd-tmpfiles; then
            systemd-tmpfiles --create "$TMPFILES" >/dev/null
        fi
        chown root:"$SERVICE" "$CONF_DIR"; chown root:root "$CRED_DIR" "$CRED_DIR/db-password"
        chown "$SERVICE:$SERVICE" "$STATE_DIR" "$LOG_DIR"
    fi
}

selftest() {  # selftest VENV: the new release must work before it is switched to
    local venv=$1 bin=$1/bin/edx-agent
    "$bin" version >/dev/null || { echo "edx-agent version failed" >&2; return 1; }
    if "$bin" selftest --help >/dev/null 2>&1; then
        "$bin" selftest >/dev/null || { echo "edx-agent selftest failed" >&2; return 1; }
    fi
    if [ -f "$STATE_DIR/enrolment.json" ] && [ -f "$CONF" ]; then
        # an agent in service: its configuration must still be valid for the new release
        CREDENTIALS_DIRECTORY=$CRED_DIR "$bin" --config "$CONF" check || return 1
    fi
    : "$venv"
}

current_release() { if [ -L "$P/venv" ]; then basename "$(readlink "$P/venv")"; fi; }

switch_to() {  # atomically point $P/venv at releases/$1
    ln -sfn "releases/$1" "$P/venv.new"
    mv -T "$P/venv.new" "$P/venv"
}

install_release() {
    local rel=$P/releases/$RELEASE cur
    cur=$(current_release)
    if [ -x "$rel/bin/edx-agent" ] && [ -f "$rel/.complete" ] && selftest "$rel" >/dev/null 2>&1; then
        note "$(t "release $RELEASE is already installed" "版本 $RELEASE 已安装")"
    else
        rm -rf "$rel"
        if [ "$KIND" = self-contained ]; then
            say "$(t "installing edx-agent $VERSION into $rel (self-contained, no Python needed)" \
                     "安装 edx-agent $VERSION 到 $rel（自带解释器，无需 Python）")"
            mkdir -p "$rel"
            # bin/ is the frozen program's folder: bin/edx-agent and bin/_internal/
            if ! { [ "$LINK" = 1 ] && cp -al "$B/edx-agent" "$rel/bin" 2>/dev/null; }; then
                rm -rf "${rel:?}/bin"
                cp -a "$B/edx-agent" "$rel/bin" || { rm -rf "$rel"; die 1 "$(t "could not copy the bundle to $rel" "无法复制安装包到 $rel")"; }
            fi
        else
            say "$(t "installing edx-agent $VERSION into $rel (offline, from the bundle's wheels)" \
                     "安装 edx-agent $VERSION 到 $rel（离线，使用安装包中的 wheel）")"
            "$PYTHON" -m venv --without-pip "$rel"
            if ! pip_in "$rel/bin/python" install --quiet --no-index --find-links "$WH" --no-cache-dir \
                    --no-compile --no-warn-script-location "$REQ" pip; then
                rm -rf "$rel"
                die 1 "$(t "pip could not install the bundle; the running release is unchanged" \
                           "pip 安装失败；正在运行的版本未受影响")"
            fi
            # byte-compile now, on every core: the service cannot write .pyc files (ProtectSystem=strict)
            "$rel/bin/python" -m compileall -q -j 0 "$rel/lib" >/dev/null 2>&1 || true
        fi
        say "$(t "self-test of the new release" "新版本自检")"
        if ! selftest "$rel"; then
            rm -rf "$rel"
            die 1 "$(t "the new release failed its self-test (above); it was removed and ${cur:-nothing} stays in service" \
                       "新版本自检失败（见上）；已删除新版本，继续使用 ${cur:-（无）}")"
        fi
        touch "$rel/.complete"
    fi
    if [ "$cur" != "$RELEASE" ]; then
        switch_to "$RELEASE"
        say "$(t "active release: $RELEASE${cur:+ (previous: $cur, kept for --rollback)}" \
                 "当前版本：$RELEASE${cur:+（上一版本 $cur 保留，可用 --rollback 回退）}")"
    fi
    PREVIOUS=$cur
    # keep the active and the previous release only
    local d
    for d in "$P"/releases/*; do
        [ -e "$d" ] || continue
        case "$(basename "$d")" in "$RELEASE"|"$cur") ;; *) rm -rf "$d"; note "$(t "removed old release" "删除旧版本") $(basename "$d")" ;; esac
    done
}

install_files() {
    local unit_tmp changed=0
    unit_tmp=$(mktemp)
    sed "s#$DEFAULT_PREFIX#$PREFIX#g" "$B/edx-agent.service" > "$unit_tmp"
    if ! cmp -s "$unit_tmp" "$UNIT_DIR/$UNIT"; then
        install -m 0644 "$unit_tmp" "$UNIT_DIR/$UNIT"
        changed=1
        say "$(t "installed the unit $UNIT_DIR/$UNIT" "已安装服务单元 $UNIT_DIR/$UNIT")"
    fi
    rm -f "$unit_tmp"
    UNIT_CHANGED=$changed
    install -m 0644 "$B/agent.example.toml" "$CONF_DIR/agent.example.toml"
    if [ -e "$CONF" ]; then
        note "$(t "kept the existing configuration $CONF (new settings: see $CONF_DIR/agent.example.toml)" \
                  "保留现有配置 $CONF（新增配置项见 $CONF_DIR/agent.example.toml）")"
    else
        sed "s/^suite = \"intl\"/suite = \"$SUITE\"/" "$B/agent.example.toml" > "$CONF.tmp"
        chmod 0640 "$CONF.tmp"
        [ "$LIVE" = 1 ] && chown root:"$SERVICE" "$CONF.tmp"
        mv "$CONF.tmp" "$CONF"
        say "$(t "installed the configuration $CONF from the example" "已根据示例安装配置文件 $CONF")"
    fi
    mkdir -p "$P/share/doc" "$P/share/examples"
    install -m 0644 "$B/edx-agent.service" "$P/share/"
    if [ -d "$B/docs" ]; then cp -f "$B"/docs/* "$P/share/doc/" 2>/dev/null || true; fi
    if [ -d "$B/examples" ]; then cp -f "$B"/examples/* "$P/share/examples/" 2>/dev/null || true; fi
    install -m 0755 "$B/install.sh" "$P/share/install.sh" 2>/dev/null || true
    for f in BUILD-INFO README.txt; do
        if [ -f "$B/$f" ]; then install -m 0644 "$B/$f" "$P/share/doc/$f"; fi
    done
}

ensure_keys() {
    [ "$KEYS" = 1 ] || return 0
    if ls "$STATE_DIR"/keys/*.json >/dev/null 2>&1; then
        note "$(t "keys exist in $STATE_DIR/keys (kept)" "密钥已存在于 $STATE_DIR/keys（保留）")"
        return
    fi
    say "$(t "making this agent's $SUITE key pair in $STATE_DIR/keys (mode 0600)" \
             "在 $STATE_DIR/keys 生成本 agent 的 $SUITE 密钥对（权限 0600）")"
    local scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/edx-agent-keys.XXXXXX")
    # `init` writes a throw-away config next to the keys it makes; only the keys are kept
    if [ "$LIVE" = 1 ]; then
        chown "$SERVICE:$SERVICE" "$scratch"
        runuser -u "$SERVICE" -- "$P/venv/bin/edx-agent" --config "$scratch/agent.toml" init \
            --database "sqlite:///$scratch/scratch.db" --state-dir "$STATE_DIR" --suite "$SUITE" >/dev/null
    else
        "$P/venv/bin/edx-agent" --config "$scratch/agent.toml" init \
            --database "sqlite:///$scratch/scratch.db" --state-dir "$STATE_DIR" --suite "$SUITE" >/dev/null
    fi
    rm -rf "$scratch"
}

enable_unit() {
    if booted; then
        systemctl daemon-reload
        if [ "$ENABLE" = 1 ]; then
            systemctl enable "$UNIT" 2>&1 | sed 's/^/    /'
        fi
        if systemctl is-active --quiet "$UNIT"; then
            if [ -n "${PREVIOUS:-}" ] && [ "$PREVIOUS" != "$RELEASE" ] || [ "$UNIT_CHANGED" = 1 ]; then
                say "$(t "restarting the running service on the new release" "使用新版本重启正在运行的服务")"
                if ! systemctl restart "$UNIT"; then
                    if [ -n "${PREVIOUS:-}" ] && [ "$PREVIOUS" != "$RELEASE" ]; then
                        switch_to "$PREVIOUS"
                        systemctl restart "$UNIT" || true
                        die 1 "$(t "the service did not start on $RELEASE; rolled back to $PREVIOUS (journalctl -u $SERVICE says why)" \
                                   "服务在 $RELEASE 上未能启动，已回退到 $PREVIOUS（原因见 journalctl -u $SERVICE）")"
                    fi
                    die 1 "$(t "the service did not start (journalctl -u $SERVICE says why)" "服务未能启动（原因见 journalctl -u $SERVICE）")"
                fi
            fi
        fi
    elif [ "$ENABLE" = 1 ] && have systemctl; then
        if systemctl --root="$ROOT" enable "$UNIT" >/dev/null 2>&1; then
            note "$(t "enabled $UNIT at boot (offline, in $ROOT)" "已设置 $UNIT 开机启动（离线，位于 $ROOT）")"
        else
            note "$(t "could not enable $UNIT (systemd is not running here): run 'systemctl enable $UNIT' on the target" \
                      "无法设置开机启动（此处未运行 systemd）：请在目标机器上运行 'systemctl enable $UNIT'")"
        fi
    fi
}

next_steps() {
    local bin=$PREFIX/venv/bin/edx-agent
    say "$(t "done: edx-agent $VERSION installed" "完成：edx-agent $VERSION 已安装")"
    if [ -f "$STATE_DIR/enrolment.json" ]; then
        note "$(t "status:  $bin --config /etc/edx-agent/agent.toml status" "状态：  $bin --config /etc/edx-agent/agent.toml status")"
        return
    fi
    t "Next steps (docs: $PREFIX/share/doc/operations.md):
  1. edit /etc/edx-agent/agent.toml ([database] url; the password goes into
     /etc/edx-agent/credentials/db-password and password_file = \"\${CREDENTIALS_DIRECTORY}/db-password\")
  2. sudo CREDENTIALS_DIRECTORY=/etc/edx-agent/credentials $bin --config /etc/edx-agent/agent.toml check
  3. sudo -u edx-agent $bin --config /etc/edx-agent/agent.toml enrol --token TOKEN --hub URL
  4. sudo systemctl start edx-agent && journalctl -u edx-agent -f
" "后续步骤（手册：$PREFIX/share/doc/operations.zh.md）：
  1. 编辑 /etc/edx-agent/agent.toml（[database] url；密码写入 /etc/edx-agent/credentials/db-password，
     并设置 password_file = \"\${CREDENTIALS_DIRECTORY}/db-password\"）
  2. sudo CREDENTIALS_DIRECTORY=/etc/edx-agent/credentials $bin --config /etc/edx-agent/agent.toml check
  3. sudo -u edx-agent $bin --config /etc/edx-agent/agent.toml enrol --token 令牌 --hub 平台地址
  4. sudo systemctl start edx-agent && journalctl -u edx-agent -f
"
}

do_install() {
    check_arch
    check_privileges
    open_bundle
    if [ "$KIND" = wheelhouse ]; then
        check_python
        choose_python
    fi
    say "$(t "installing into ${ROOT} (prefix $PREFIX)" "安装到 ${ROOT}（前缀 $PREFIX）")"
    write_sysusers_tmpfiles
    ensure_user
    ensure_dirs
    install_release
    install_files
    ensure_keys
    enable_unit
    next_steps
}

do_rollback() {
    check_privileges
    local cur prev=""
    cur=$(current_release)
    [ -n "$cur" ] || die 1 "$(t "edx-agent is not installed in $P" "$P 中未安装 edx-agent")"
    local d
    for d in "$P"/releases/*; do
        [ -f "$d/.complete" ] && [ "$(basename "$d")" != "$cur" ] && prev=$(basename "$d")
    done
    [ -n "$prev" ] || die 1 "$(t "no previous release to roll back to" "没有可回退的上一版本")"
    switch_to "$prev"
    say "$(t "active release: $prev (was $cur)" "当前版本：$prev（原为 $cur）")"
    if booted && systemctl is-active --quiet "$UNIT"; then systemctl restart "$UNIT"; fi
}

do_uninstall() {
    check_privileges
    if booted; then
        systemctl disable --now "$UNIT" >/dev/null 2>&1 || true
    elif have systemctl && [ -e "$UNIT_DIR/$UNIT" ]; then
        systemctl --root="$ROOT" disable "$UNIT" >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT_DIR/$UNIT" "$UNIT_DIR"/*.wants/"$UNIT" "$SYSUSERS" "$TMPFILES"
    rm -rf "$P"
    say "$(t "removed the service, the unit and $P" "已删除服务、服务单元和 $P")"
    if [ "$PURGE" = 1 ]; then
        rm -rf "$CONF_DIR" "$STATE_DIR" "$LOG_DIR" "$R/run/edx-agent" "$UNIT_DIR/$UNIT.d"
        say "$(t "purged $CONF_DIR, $STATE_DIR (keys, enrolment, audit log), $LOG_DIR" \
                 "已清除 $CONF_DIR、$STATE_DIR（密钥、注册信息、审计日志）、$LOG_DIR")"
        if [ "$LIVE" = 1 ] && getent passwd "$SERVICE" >/dev/null; then
            userdel "$SERVICE" 2>/dev/null || true
            getent group "$SERVICE" >/dev/null && { groupdel "$SERVICE" 2>/dev/null || true; }
            note "$(t "removed user $SERVICE" "已删除用户 $SERVICE")"
        fi
        note "$(t "the agent stays registered on the platform until the platform team revokes it" \
                  "平台上的注册记录需由平台技术团队注销")"
    else
        note "$(t "kept: $CONF_DIR, $STATE_DIR (keys, enrolment, spool, audit log), $LOG_DIR, the user $SERVICE and drop-ins; --purge deletes them" \
                  "已保留：$CONF_DIR、$STATE_DIR（密钥、注册信息、缓存、审计日志）、$LOG_DIR、用户 $SERVICE 及 drop-in；使用 --purge 可一并删除")"
    fi
    if booted; then systemctl daemon-reload; fi
}

case "$ACTION" in
    install) do_install ;;
    rollback) do_rollback ;;
    uninstall) do_uninstall ;;
esac
