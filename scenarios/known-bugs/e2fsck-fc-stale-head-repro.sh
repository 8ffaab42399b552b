#!/bin/sh
# Reproducer (e2fsck alone, no kernel): e2fsck 1.47.0 refuses a whole journal
# whose fast-commit area still holds the fast commit of a transaction that has
# since been committed in full (its HEAD tag names the last committed tid).
# The kernel's replay stops at such a stale fast commit and replays the
# journal; e2fsck's scan pass returns -EINVAL, so jbd2_journal_recover()
# replays nothing, e2fsck prints "Invalid argument while recovering journal",
# resets the journal and goes on: the committed transactions are lost.
#
# Needs e2fsprogs (1.47.0 here) and python3 (crc32c). Usage:
#
#   sh e2fsck-fc-stale-head-repro.sh [IMAGE] [MODE]   default: fc-stale-head.img stale
#
# The journal holds one committed transaction (tid 1) that logs block 2000
# (4096 bytes of 0xAB, the block is free and zero on the image). MODE stale:
# the fast-commit area holds a fast commit (HEAD, TAIL) of tid 1, the
# transaction that was then committed in full, as the kernel leaves it after
# an fsync went out as a fast commit and the next commit was a full one.
# Controls: MODE current (the fast commit is of tid 2, the next transaction:
# a valid fast commit), MODE no-fc (no fast commit). mkfs.ext4 -O fast_commit
# sizes the fast-commit area but leaves the journal's FAST_COMMIT feature to
# the kernel's first mount: it is set here.
set -eu
IMG=${1:-fc-stale-head.img}
MODE=${2:-stale}
TARGET=2000
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -f "$IMG"
mkfs.ext4 -q -F -b 4096 -O fast_commit -E nodiscard "$IMG" 8M >/dev/null

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
if cmd == 'jsb':  # journal superblock at block sys.argv[3]: FAST_COMMIT (0x20) set
    off = int(sys.argv[3]) * 4096
    f = open(img, 'r+b'); f.seek(off); j = bytearray(f.read(1024))
    assert struct.unpack('>I', j[0:4])[0] == 0xC03B3998
    j[0x28:0x2c] = struct.pack('>I', struct.unpack('>I', j[0x28:0x2c])[0] | 0x20)
    f.seek(off); f.write(j); f.close()
elif cmd == 'fc':  # a fast commit (HEAD, TAIL) for tid sys.argv[4] at block sys.argv[3]
    tid = int(sys.argv[4])
    t = struct.pack('<HHII', 9, 8, 0, tid) + struct.pack('<HHI', 8, 8, tid)
    blk = t + struct.pack('<I', crc(0, t)); blk += bytes(4096 - len(blk))
    f = open(img, 'r+b'); f.seek(int(sys.argv[3]) * 4096); f.write(blk); f.close()
elif cmd == 'block':  # print what block sys.argv[3] holds
    f = open(img, 'rb'); f.seek(int(sys.argv[3]) * 4096); b = f.read(4096)
    print('0xAB x 4096 (the transaction was replayed)' if b == b'\xab' * 4096 else
          'zeros (the transaction was NOT replayed)' if b == bytes(4096) else 'other bytes')
EOP
bmap() { debugfs -R "bmap <8> $1" "$IMG" 2>/dev/null; }

python3 -c "import sys; sys.stdout.buffer.write(b'\xab' * 4096)" > "$TMP/blk"
printf 'jo\njw -b %s %s\njc\n' "$TARGET" "$TMP/blk" > "$TMP/cmds"
debugfs -w -f "$TMP/cmds" "$IMG" >/dev/null 2>&1
python3 "$TMP/lib.py" jsb "$IMG" "$(bmap 0)"
case "$MODE" in
  stale) tid=1 ;;
  current) tid=2 ;;
  no-fc) tid= ;;
  *) echo "MODE: stale, current or no-fc" >&2; exit 2 ;;
esac
if [ -n "$tid" ]; then
  maxlen=$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Total journal blocks/ { print $2 + 0 }')
  nfc=$(dumpe2fs -h "$IMG" 2>/dev/null | awk -F: '/^Fast commit length/ { print $2 + 0 }')
  # jbd2: j_fc_first = s_maxlen - num_fc_blks + 1.
  python3 "$TMP/lib.py" fc "$IMG" "$(bmap $((maxlen - nfc + 1)))" "$tid"
fi
echo "$IMG ($MODE): the journal:"
debugfs -R "logdump" "$IMG" 2>&1 | grep -E "FS block|commit block|tag " || true
set +e
e2fsck -y -E journal_only "$IMG" > "$TMP/out" 2>&1; rc=$?
set -e
echo "e2fsck -E journal_only: exit $rc"; grep -vE "^Pass|^$|^e2fsck 1" "$TMP/out" || true
echo "block $TARGET: $(python3 "$TMP/lib.py" block "$IMG" "$TARGET")"
