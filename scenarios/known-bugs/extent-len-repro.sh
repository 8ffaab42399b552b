#!/bin/sh
# Reproducer: chattr +e (ext4_ext_migrate) of a block-mapped file whose data
# is one physically contiguous run longer than 32768 blocks makes an extent
# longer than EXT_INIT_MAX_LEN; the file then reads as zeros (or the
# migration fails with "EXT4-fs error ... ext4_ext_get_actual_len(newext) == 0"
# and chattr still exits 0). No crash is involved.
#
# Needs only e2fsprogs, perl and dd on the host, and any guest (or machine)
# whose kernel can mount the image. Usage:
#
#   sh extent-len-repro.sh [IMAGE] [BLOCKS]     default: extent-len.img 32769
#
# BLOCKS is the length of the run: 32768 works, 32769..65535 and 65537..
# lose data, 65536 is refused by ext4_ext_insert_extent() (ee_len wraps to 0).
#
# It makes a 256 MiB ext4 image with 1 KiB blocks, without the extent
# feature and with flex_bg packing all group metadata at the start (-G 256),
# so that block groups 10-24 (blocks 81921-204800) are free and hold no
# backup superblock. The file /f gets BLOCKS random data blocks at 81921..,
# physically contiguous; its indirect blocks (IND, DIND and the DIND's INDs)
# go right after the data, so nothing interrupts the run. Then the extent
# feature is turned on (tune2fs -O extent), as before any chattr +e.
set -eu
IMG=${1:-extent-len.img}
N=${2:-32769}
D=81921                        # first data block (group 10)
P=256                          # block pointers per 1 KiB indirect block
[ "$N" -ge 269 ] && [ "$N" -le 65804 ] || { echo "BLOCKS must be 269..65804 (direct + IND + DIND on 1 KiB blocks)" >&2; exit 2; }
[ $((D + N + 300)) -le 204800 ] || { echo "BLOCKS too large for groups 10-24" >&2; exit 2; }
NIND=$(( (N - 12 - P + P - 1) / P ))   # INDs under the DIND
X=$((D + N))                    # IND at X, DIND at X+1, the DIND's INDs at X+2..
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

mkfs.ext4 -F -q -b 1024 -O ^extent,^64bit,^metadata_csum -G 256 -E nodiscard "$IMG" 256M
if debugfs -R "testb $D $((N + NIND + 2))" "$IMG" 2>/dev/null | grep -q "marked in use"; then
  echo "blocks $D.. are not free in this mkfs's layout" >&2; exit 1
fi

# The data, and the indirect blocks as little-endian block numbers.
dd if=/dev/urandom of="$TMP/data" bs=1024 count="$N" status=none
dd if="$TMP/data" of="$IMG" bs=1024 seek="$D" conv=notrunc status=none
perl -e '
  my ($d, $n, $x, $p, $nind) = @ARGV;
  my $ind = pack("V*", map { $d + $_ } 12 .. 12 + $p - 1);
  my $dind = pack("V*", map { $x + 2 + $_ } 0 .. $nind - 1);
  my $leaves = "";
  for my $k (0 .. $nind - 1) {
    my $first = 12 + $p + $k * $p;
    my @b = map { $first + $_ < $n ? $d + $first + $_ : 0 } 0 .. $p - 1;
    $leaves .= pack("V*", @b);
  }
  $dind .= "\0" x (1024 - length $dind);
  print $ind, $dind, $leaves;
' "$D" "$N" "$X" "$P" "$NIND" > "$TMP/index"
dd if="$TMP/index" of="$IMG" bs=1024 seek="$X" conv=notrunc status=none

# The inode: 12 direct pointers, IND, DIND, size, i_blocks; blocks marked in use.
{
  echo "write /dev/null f"
  i=0
  while [ $i -lt 12 ]; do echo "sif f block[$i] $((D + i))"; i=$((i + 1)); done
  echo "sif f block[IND] $X"
  echo "sif f block[DIND] $((X + 1))"
  echo "sif f size $((N * 1024))"
  echo "sif f blocks $(( (N + NIND + 2) * 2 ))"
  echo "setb $D $((N + NIND + 2))"
} > "$TMP/cmds"
debugfs -w -f "$TMP/cmds" "$IMG" >/dev/null 2>&1
# setb leaves the free-block counts to e2fsck; nothing else may need fixing.
e2fsck -fy "$IMG" >/dev/null 2>&1 || [ $? -le 1 ]
e2fsck -fn "$IMG" >/dev/null
tune2fs -O extent "$IMG" >/dev/null
e2fsck -fn "$IMG" >/dev/null
debugfs -R "dump /f $TMP/before" "$IMG" 2>/dev/null
cmp -s "$TMP/data" "$TMP/before" || { echo "debugfs does not read back the data written" >&2; exit 1; }

echo "$IMG: /f is $N blocks of 1 KiB at $D-$((D + N - 1)), one contiguous run, block-mapped:"
debugfs -R "stat /f" "$IMG" 2>/dev/null | sed -n '/^BLOCKS:/,$p' | cut -c1-150
echo "sha256 of /f: $(sha256sum < "$TMP/data" | cut -d' ' -f1)"
cat <<EOF

In the guest, with the image as /dev/vda:
  mount /dev/vda /mnt
  sha256sum /mnt/f            # the sha256 above
  chattr +e /mnt/f; echo "chattr exit \$?"
  lsattr /mnt/f; filefrag -v /mnt/f
  sha256sum /mnt/f            # 32769..65535, 65537..: differs (the run reads as zeros)
  umount /mnt
Then on the host:
  debugfs -R 'stat /f' $IMG   # EXTENTS: one extent of length N mod 65536 (over 32768: unwritten)
  e2fsck -fn $IMG             # only i_blocks too high and '-' bitmap differences: it would free the data
EOF
