#!/bin/sh
# Reproducer (e2fsck alone, no kernel): e2fsck -fy rebuilds (pass 3A) an
# extent-mapped directory, the new directory blocks push it past the four
# extents an inode holds, libext2fs allocates an extent tree block, and
# e2fsck writes quota usage that leaves that block out: the next e2fsck -fn
# exits 4 with "[QUOTA WARNING] Usage inconsistent ... actual (N+1 block) !=
# expected (N)". e2fsck -fy does not converge.
#
# Needs only e2fsprogs (1.47.0 here). Usage:
#
#   sh e2fsck-rehash-quota-repro.sh [IMAGE]     default: rehash-quota.img
#
# The 2 MiB image (1 KiB blocks, no journal) holds /d, a non-indexed
# directory of 200 entries in two extents, and /frag, a file that fills the
# rest of the filesystem; every other block of /frag's first 40 is punched,
# so the blocks e2fsck adds to /d are not contiguous. Then user quota is
# turned on (tune2fs counts every inode). e2fsck -fn is clean.
set -eu
IMG=${1:-rehash-quota.img}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/root/d"
i=1
while [ $i -le 200 ]; do : > "$TMP/root/d/entry-with-a-longish-name-$i"; i=$((i + 1)); done

mk() {  # mk KIB: the image with /frag of KIB KiB; prints the free blocks left
  yes abcdefgh | head -c $(($1 * 1024)) > "$TMP/root/frag"
  rm -f "$IMG"
  mkfs.ext4 -q -F -b 1024 -O ^has_journal,^metadata_csum -E nodiscard -N 256 -d "$TMP/root" "$IMG" 2M >/dev/null 2>&1
  dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Free blocks/ { print $2 + 0 }'
}
# Fill the filesystem: /frag grows until no block is free.
n=64
free=$(mk $n)
n=$((n + free - 20))
free=$(mk $n)
while [ "$free" -gt 0 ]; do n=$((n + free)); free=$(mk $n); done
b=1
while [ $b -le 39 ]; do debugfs -w -R "punch /frag $b $b" "$IMG" >/dev/null 2>&1; b=$((b + 2)); done
tune2fs -O quota -Q usrquota "$IMG" >/dev/null
e2fsck -fn "$IMG" >/dev/null 2>&1 || { echo "$IMG: e2fsck -fn is not clean" >&2; exit 1; }

echo "$IMG: /d before (e2fsck -fn exit 0):"
debugfs -R "stat /d" "$IMG" 2>/dev/null | sed -n '/Blockcount/p;/EXTENTS/,$p'
cp "$IMG" "$IMG.fy"
set +e
e2fsck -fy "$IMG.fy" > "$TMP/fy" 2>&1; fy=$?
e2fsck -fn "$IMG.fy" > "$TMP/fn" 2>&1; fn=$?
set -e
echo "e2fsck -fy $IMG.fy: exit $fy"; grep -E "Pass 3A|QUOTA" "$TMP/fy" || true
echo "/d after:"; debugfs -R "stat /d" "$IMG.fy" 2>/dev/null | sed -n '/Blockcount/p;/EXTENTS/,$p'
echo "e2fsck -fn $IMG.fy: exit $fn"; grep QUOTA "$TMP/fn" || true
