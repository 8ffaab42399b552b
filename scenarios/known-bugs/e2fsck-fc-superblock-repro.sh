#!/bin/sh
# Reproducer (e2fsck alone, no kernel): e2fsck 1.47.0 replays a journal whose
# committed transaction logged the superblock block, then a fast commit, and
# leaves a superblock whose checksum does not match it: e2fsck exits 12 with
# "Superblock checksum does not match superblock while trying to re-open".
#
# Needs e2fsprogs (1.47.0 here) and python3 (crc32c). Usage:
#
#   sh e2fsck-fc-superblock-repro.sh [IMAGE] [MODE]   default: fc-superblock.img both
#
# MODE both: the journal holds a transaction logging block 0 (the
# superblock, one field changed: s_lastcheck + 1, checksum valid) and then a
# fast commit (HEAD and TAIL tags, tid = the next transaction). Controls:
# MODE no-fc (the transaction only), MODE other-block (the fast commit and a
# transaction that logs block 2000 instead of the superblock). mkfs.ext4
# -O fast_commit sizes the fast-commit area but leaves the journal's
# FAST_COMMIT feature to the kernel's first mount: it is set here.
set -eu
IMG=${1:-fc-superblock.img}
MODE=${2:-both}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -f "$IMG"
mkfs.ext4 -q -F -b 4096 -O fast_commit,metadata_csum -E nodiscard "$IMG" 8M >/dev/null

# crc32c as the kernel's and libext2fs's (no final inversion).
cat > "$TMP/lib.py" <<'EOP'
import struct, sys
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def crc(c, b):
    for x in b:
        c = T[(c ^ x) & 0xff] ^ (c >> 8)
    return c
cmd, img = sys.argv[1], sys.argv[2]
if cmd == 'superblock':  # block 0 with s_lastcheck + 1 and a valid checksum, to sys.argv[3]
    b = bytearray(open(img, 'rb').read(4096)); sb = b[1024:2048]
    sb[0x40:0x44] = struct.pack('<I', struct.unpack('<I', sb[0x40:0x44])[0] + 1)
    sb[0x3fc:0x400] = struct.pack('<I', crc(0xffffffff, bytes(sb[:0x3fc])))
    b[1024:2048] = sb; open(sys.argv[3], 'wb').write(b)
elif cmd == 'jsb':  # journal superblock at block sys.argv[3]: FAST_COMMIT (0x20) set, checksum fixed
    off = int(sys.argv[3]) * 4096
    f = open(img, 'r+b'); f.seek(off); j = bytearray(f.read(1024))
    assert struct.unpack('>I', j[0:4])[0] == 0xC03B3998
    j[0x28:0x2c] = struct.pack('>I', struct.unpack('>I', j[0x28:0x2c])[0] | 0x20)
    j[0xfc:0x100] = bytes(4); j[0xfc:0x100] = struct.pack('>I', crc(0xffffffff, bytes(j)))
    f.seek(off); f.write(j); f.close()
elif cmd == 'fc':  # a fast commit (HEAD, TAIL) for tid sys.argv[4] at block sys.argv[3]
    tid = int(sys.argv[4])
    t = struct.pack('<HHII', 9, 8, 0, tid) + struct.pack('<HHI', 8, 8, tid)
    blk = t + struct.pack('<I', crc(0, t)); blk += bytes(4096 - len(blk))
    f = open(img, 'r+b'); f.seek(int(sys.argv[3]) * 4096); f.write(blk); f.close()
EOP
bmap() { debugfs -R "bmap <8> $1" "$IMG" 2>/dev/null; }

if [ "$MODE" = other-block ]; then
  head -c 4096 /dev/zero > "$TMP/blk"; target=2000
else
  python3 "$TMP/lib.py" superblock "$IMG" "$TMP/blk"; target=0
fi
printf 'jo\njw -b %s %s\njc\n' "$target" "$TMP/blk" > "$TMP/cmds"
debugfs -w -f "$TMP/cmds" "$IMG" >/dev/null 2>&1
python3 "$TMP/lib.py" jsb "$IMG" "$(bmap 0)"
if [ "$MODE" != no-fc ]; then
  maxlen=$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Total journal blocks/ { print $2 + 0 }')
  nfc=$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Fast commit length/ { print $2 + 0 }')
  # jbd2: j_fc_first = s_maxlen - num_fc_blks + 1; transaction 1 is committed, so the fast commit is tid 2.
  python3 "$TMP/lib.py" fc "$IMG" "$(bmap $((maxlen - nfc + 1)))" 2
fi
echo "$IMG ($MODE): the journal:"
debugfs -R "logdump -b $target" "$IMG" 2>&1 | grep -E "FS block|tag " || true
set +e
e2fsck -fy "$IMG" > "$TMP/out" 2>&1; rc=$?
set -e
echo "e2fsck -fy: exit $rc"; grep -vE "^Pass|^$" "$TMP/out" || true
