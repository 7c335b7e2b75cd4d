#!/usr/bin/env bash
# The image's root filesystem, from Debian's packages only: mmdebstrap extracts Debian 13 (trixie)'s nodejs and the
# libraries it depends on, nothing else (no shell, no apt, no dpkg: nothing in the image runs them), then slims it.
#
#   scripts/image/rootfs.sh OUT.tar
#
# Why trixie's nodejs: package.json's engines asks for node >= 20.19.0; bookworm's nodejs is 18.20 and the builder's
# own node is NodeSource's (not a Debian package, and whatever the builder happens to have); trixie's is 20.19.2,
# built and signed by Debian, so the same package list gives the same Node on any builder.
# The extract variant runs no maintainer script, so what they would do is done here: the /usr-merge links, the
# passwd/group files (with the image's non-root user), and the dpkg status file that image scanners read.
set -euo pipefail
out=${1:?usage: rootfs.sh OUT.tar}
suite=${YQP_IMAGE_SUITE:-trixie}
mirror=${YQP_IMAGE_MIRROR:-http://deb.debian.org/debian}
uid=10001
command -v mmdebstrap >/dev/null || { echo "rootfs.sh: mmdebstrap not found (apt-get install mmdebstrap)" >&2; exit 3; }

# shellcheck disable=SC2016 # the hooks are expanded by mmdebstrap's shell, $1 = the root being built
mmdebstrap --variant=extract --format=tar --components=main --include=nodejs,base-files \
  --extract-hook='cd "$1" && for d in bin sbin lib lib64; do [ -e $d ] || ln -s usr/$d $d; done' \
  --extract-hook='
    set -e; mkdir -p "$1/var/lib/dpkg"; : > "$1/var/lib/dpkg/status"
    for deb in "$1"/var/cache/apt/archives/*.deb; do
      dpkg-deb -f "$deb" Package Version Architecture Maintainer Installed-Size Depends Pre-Depends Source Description \
        | sed "1a Status: install ok installed" >> "$1/var/lib/dpkg/status"; echo >> "$1/var/lib/dpkg/status"
    done' \
  --extract-hook="
    set -e
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nyqp:x:$uid:$uid:yqp-trt:/home/yqp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > \"\$1/etc/passwd\"
    printf 'root:x:0:\nyqp:x:$uid:\nnogroup:x:65534:\n' > \"\$1/etc/group\"
    mkdir -p \"\$1/home/yqp\" \"\$1/mnt/models\" \"\$1/root\" && chown $uid:$uid \"\$1/home/yqp\" && chmod 1777 \"\$1/tmp\"" \
  --extract-hook='
    set -e; cd "$1"
    # Debian'"'"'s node reads the system CA bundle at start (a warning when it is missing); the server makes no TLS
    # connections, so the bundle is left empty rather than bringing in ca-certificates, openssl and perl.
    mkdir -p etc/ssl/certs && : > etc/ssl/certs/ca-certificates.crt
    # Slimming: documentation (the copyright files stay), manuals, locales, iconv modules (node does not use them;
    # the image test decodes JPEGs through sharp without them), ICU tools node does not link, corepack, types.
    find usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete
    rm -rf usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/share/bash-completion \
      usr/share/gdb usr/share/gcc usr/lib/x86_64-linux-gnu/gconv usr/lib/x86_64-linux-gnu/libicuio.so* \
      usr/lib/x86_64-linux-gnu/libicutest.so* usr/lib/x86_64-linux-gnu/libicutu.so* \
      usr/share/nodejs/corepack usr/share/nodejs/@types usr/bin/corepack usr/bin/acorn \
      var/log/* etc/machine-id' \
  "$suite" "$out" "$mirror"
