#!/usr/bin/env bash
# Build the base session image `burstflare/base` locally, with no registry pulls:
# debootstrap a Debian rootfs from this machine's Debian mirror, customise it, `docker import` it.
#
#   deploy/images/base/build.sh [--force] [--print-tag]
#
#   --force       rebuild even if the image for the current recipe exists
#   --print-tag   print the image reference for the current recipe and exit
#
# The tag is content-derived: burstflare/base:<first 12 hex of sha256 over the recipe files>, see README.md.
# Environment: BURSTFLARE_DEBIAN_MIRROR overrides the mirror read from /etc/apt.
set -euo pipefail

start=$EPOCHREALTIME
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

IMAGE=burstflare/base
SUITE=bookworm
# Every file that determines the image content. Add new recipe files here.
RECIPE_FILES=(build.sh packages.txt rootfs-setup.sh)

force=0
print_tag=0
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    --print-tag) print_tag=1 ;;
    -h | --help)
      sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build.sh: unknown argument '$arg'" >&2
      exit 2
      ;;
  esac
done

die() {
  echo "build.sh: error: $*" >&2
  exit 1
}
elapsed() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

recipe_hash=$(cd "$here" && sha256sum -- "${RECIPE_FILES[@]}" | sha256sum | cut -c1-12)
tag=$IMAGE:$recipe_hash
if ((print_tag)); then
  echo "$tag"
  exit 0
fi

# Fast path: the image for this recipe exists.
up_to_date() {
  local id latest
  id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null) || return 1
  latest=$(docker image inspect --format '{{.Id}}' "$IMAGE:latest" 2>/dev/null || true)
  [[ $latest == "$id" ]] || docker tag "$tag" "$IMAGE:latest"
  echo "$tag is up to date"
}
if ((!force)) && up_to_date; then
  exit 0
fi

docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable; run scripts/setup.sh"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found; run scripts/setup.sh"

# One build at a time; a build that finished while we waited makes ours unnecessary.
lockdir=/run/lock
[[ -d $lockdir && -w $lockdir ]] || lockdir=${TMPDIR:-/tmp}
exec 9>"$lockdir/burstflare-base-image.lock"
flock 9
if ((!force)) && up_to_date; then
  exit 0
fi

# The Debian mirror this machine's apt uses (first source that carries $SUITE itself).
host_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    uri=$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          line = $i
          if (line ~ /^[ \t]*#/) continue
          if (line ~ /^URIs:/)         { sub(/^URIs:[ \t]*/, "", line); uris = line }
          else if (line ~ /^Suites:/)  { sub(/^Suites:[ \t]*/, "", line); suites = " " line " " }
          else if (line ~ /^Types:/)   { sub(/^Types:[ \t]*/, "", line); types = " " line " " }
          else if (line ~ /^Enabled:/) { sub(/^Enabled:[ \t]*/, "", line); enabled = line }
        }
        gsub(/\t/, " ", suites); gsub(/\t/, " ", types)
        if (enabled != "no" && types ~ / deb / && index(suites, " " suite " ") && uris != "") {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f")
    [[ -n $uri ]] && echo "$uri" && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    uri=$(awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f")
    [[ -n $uri ]] && echo "$uri" && return 0
  done
  return 1
}
mirror=${BURSTFLARE_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(host_mirror) || die "no Debian '$SUITE' mirror found in /etc/apt; set BURSTFLARE_DEBIAN_MIRROR"
fi

packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/packages.txt" | grep . | paste -sd, -)
[[ -n $packages ]] || die "packages.txt lists no packages"

workdir=$(mktemp -d /var/tmp/burstflare-base.XXXXXX)
rootfs=$workdir/rootfs
cleanup() {
  [[ -n ${workdir:-} && -d $workdir ]] || return 0
  # debootstrap mounts /proc and /sys inside the target; an interrupted run can leave them mounted.
  awk -v d="$workdir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "build.sh: building $tag: debootstrap $SUITE from $mirror ($packages)"
if ! debootstrap --variant=minbase --components=main --include="$packages" \
  "$SUITE" "$rootfs" "$mirror" >"$workdir/debootstrap.out" 2>&1; then
  tail -n 20 "$workdir/debootstrap.out" >&2
  if [[ -r $rootfs/debootstrap/debootstrap.log ]]; then
    echo "--- $rootfs/debootstrap/debootstrap.log (tail)" >&2
    tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
  fi
  die "debootstrap failed"
fi
echo "build.sh: rootfs ready after $(elapsed)s; customising and importing"

env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  chroot "$rootfs" /bin/sh -s <"$here/rootfs-setup.sh" ||
  die "rootfs-setup.sh failed"

# /dev, /proc and /sys stay empty: the container runtime provides them.
tar --numeric-owner -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.burstflare.recipe=$recipe_hash" \
    --message "burstflare/base recipe $recipe_hash (debootstrap $SUITE)" \
    - "$tag" >/dev/null
docker tag "$tag" "$IMAGE:latest"

size=$(docker image inspect --format '{{.Size}}' "$tag")
cleanup
trap - EXIT
echo "build.sh: built $tag (also $IMAGE:latest, $((size / 1000000)) MB) in $(elapsed)s"
