#!/usr/bin/env bash
# Builds the spotguard-agent Debian package from a built binary:
#   deploy/agent-package.sh BINARY OUT_DIR [VERSION] [ARCH]
# (SPOTGUARD_DEB_COMPRESSION: xz by default; the tests use none)
# The unit is the binary's own (`spotguard-agent unit`, the same text launched instances' user
# data writes); ARCH defaults to this machine's (dpkg --print-architecture).
set -euo pipefail
binary=${1:?binary}
out=${2:?output directory}
version=${3:-0.1.0}
arch=${4:-$(dpkg --print-architecture)}
here=$(cd "$(dirname "$0")" && pwd)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT

install -D -m 0755 "$binary" "$stage/usr/bin/spotguard-agent"
install -d -m 0755 "$stage/lib/systemd/system"
"$binary" unit > "$stage/lib/systemd/system/spotguard-agent.service"
chmod 0644 "$stage/lib/systemd/system/spotguard-agent.service"
install -D -m 0600 "$here/agent/agent.conf" "$stage/etc/spotguard/agent.conf"
install -D -m 0644 /dev/stdin "$stage/usr/share/doc/spotguard-agent/copyright" <<'DOC'
SpotGuard agent. See https://github.com/spotguard/spotguard for the source and its licence.
DOC
install -d -m 0755 "$stage/DEBIAN"
# the Swift runtime is linked in statically by `make agent-package`; a binary that links it
# dynamically (a debug build, for the tests) runs only where the toolchain is
if ldd "$binary" | grep -q 'libswiftCore.so'; then
    echo "agent-package: $binary links the Swift runtime dynamically; this package runs only where $(dirname "$(ldd "$binary" | awk '/libswiftCore.so/ {print $3}')") is" >&2
fi
depends="libc6, libstdc++6, libgcc-s1, zlib1g, adduser"
if ldd "$binary" | grep -q 'libcurl.so'; then depends="$depends, libcurl4"; fi
if ldd "$binary" | grep -q 'libxml2.so'; then depends="$depends, libxml2"; fi
cat > "$stage/DEBIAN/control" <<CONTROL
Package: spotguard-agent
Version: $version
Architecture: $arch
Maintainer: SpotGuard <spotguard@example.com>
Section: admin
Priority: optional
Depends: $depends
Installed-Size: $(du -sk "$stage" | cut -f1)
Homepage: https://github.com/spotguard/spotguard
Description: SpotGuard agent for EC2 spot instances
 Reports heartbeats and spot prices to a SpotGuard server, watches for interruption
 notices, and carries out switches, replicas and failovers on this instance.
CONTROL
echo /etc/spotguard/agent.conf > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd spotguard-agent >/dev/null; then
        adduser --system --group --no-create-home --home /var/lib/spotguard-agent --quiet spotguard-agent
    fi
    chmod 0600 /etc/spotguard/agent.conf
    deb-systemd-helper unmask spotguard-agent.service >/dev/null || true
    deb-systemd-helper enable spotguard-agent.service >/dev/null || true
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # started once configured: a server in agent.conf, or the user data's agent.env
        if [ -e /etc/spotguard/agent.env ] || grep -q '^SPOTGUARD_AGENT_SERVER=' /etc/spotguard/agent.conf; then
            deb-systemd-invoke restart spotguard-agent.service >/dev/null || true
        fi
    fi
fi
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    deb-systemd-invoke stop spotguard-agent.service >/dev/null || true
fi
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ]; then
    deb-systemd-helper mask spotguard-agent.service >/dev/null || true
fi
if [ "$1" = purge ]; then
    deb-systemd-helper purge spotguard-agent.service >/dev/null || true
    deb-systemd-helper unmask spotguard-agent.service >/dev/null || true
    rm -f /etc/spotguard/agent.env
    rmdir /etc/spotguard 2>/dev/null || true
    rm -rf /var/lib/spotguard-agent /var/lib/private/spotguard-agent
    if getent passwd spotguard-agent >/dev/null; then
        deluser --system --quiet spotguard-agent || true
    fi
    if getent group spotguard-agent >/dev/null; then
        delgroup --system --quiet spotguard-agent || true
    fi
fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/spotguard-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${SPOTGUARD_DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
