#!/bin/sh
# Runs as root inside the freshly bootstrapped rootfs (`chroot ROOTFS /bin/sh -s`), called by build.sh.
# Part of the recipe: changing this file changes the image tag.
set -eu

# The session user: uid/gid 1000, home /home/dev, bash, passwordless sudo.
groupadd --gid 1000 dev
useradd --uid 1000 --gid 1000 --create-home --home-dir /home/dev --shell /bin/bash dev
echo 'dev ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/dev
chmod 0440 /etc/sudoers.d/dev
visudo -c -q -f /etc/sudoers.d/dev

# debootstrap copies some of the build host's files; the container runtime provides its own at run time.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts
echo localhost >/etc/hostname
: >/etc/resolv.conf
: >/etc/machine-id 2>/dev/null || true

# Package caches and build logs: not needed in the image (`sudo apt-get update` restores the lists).
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /var/tmp/* /root/.bash_history
