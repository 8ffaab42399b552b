#!/bin/sh
# Reproducer: chattr +e (ext4_ext_migrate) of a block-mapped file with an
# indirect block, on a filesystem with quota, leaves the quota files charging
# the file's owner (uid, gid and project) for the freed indirect blocks. No
# crash is involved: a clean umount leaves e2fsck -fn reporting
# "[QUOTA WARNING] Usage inconsistent" and exiting 4.
#
# Needs only e2fsprogs (1.47.0 here) and dd on the host, and any guest (or
# machine) whose kernel has ext4 and quota_v2. Usage:
#
#   sh quota-migrate-repro.sh [IMAGE] [BLOCKS]    default: quota-migrate.img 13
#
# BLOCKS (13..268) is the length of /f in 1 KiB blocks: more than the 12
# direct blocks, so the file has exactly one IND block. The image is 8 MiB,
# 1 KiB blocks, 256-byte inodes, made without the extent feature; /f is owned
# by uid 1003, gid 2003, project 13; then tune2fs turns on extent, project
# and quota (usrquota, grpquota, prjquota), which counts every inode's usage.
set -eu
IMG=${1:-quota-migrate.img}
N=${2:-13}
[ "$N" -ge 13 ] && [ "$N" -le 268 ] || { echo "BLOCKS must be 13..268 (one IND block on 1 KiB blocks)" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

mkdir "$TMP/root"
dd if=/dev/urandom of="$TMP/root/f" bs=1024 count="$N" status=none
rm -f "$IMG"
mkfs.ext4 -F -q -b 1024 -I 256 -O ^extent,^64bit,^metadata_csum -E nodiscard -d "$TMP/root" "$IMG" 8M >/dev/null
debugfs -w -R "sif /f uid 1003" "$IMG" >/dev/null 2>&1
debugfs -w -R "sif /f gid 2003" "$IMG" >/dev/null 2>&1
tune2fs -O extent,project,quota -Q usrquota,grpquota,prjquota "$IMG" >/dev/null
debugfs -w -R "sif /f projid 13" "$IMG" >/dev/null 2>&1
# sif changed the owner after tune2fs counted the usage: let e2fsck recount.
e2fsck -fy "$IMG" >/dev/null 2>&1 || [ $? -le 1 ]
e2fsck -fn "$IMG" >/dev/null 2>&1 || { echo "$IMG: e2fsck -fn is not clean" >&2; exit 1; }

echo "$IMG: /f is $N data blocks + 1 IND, uid 1003, gid 2003, project 13, block-mapped:"
debugfs -R "stat /f" "$IMG" 2>/dev/null | grep -E "User:|Project|Blockcount|^\(|BLOCKS|IND" | cut -c1-120
echo "sha256 of /f: $(sha256sum < "$TMP/root/f" | cut -d' ' -f1)"
cat <<EOG

In the guest, with the image as /dev/vda (the quota_v2 module loaded):
  mount /dev/vda /mnt
  chattr +e /mnt/f; echo "chattr exit \$?"
  umount /mnt
Then on the host:
  debugfs -R 'stat /f' $IMG   # EXTENTS:, Blockcount $((N * 2)) (the IND block is gone)
  e2fsck -fn $IMG             # exit 4: "Usage inconsistent for ID 1003: actual ($((N * 1024)), 1) != expected ($(((N + 1) * 1024)), 1)",
                              # the same for ID 2003 and project 13: the quota files still charge the IND block
EOG
