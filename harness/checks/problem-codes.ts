/**
 * e2fsck problem codes (e2fsprogs e2fsck/problem.h, 1.47) that a crash in
 * the middle of a migration, or a bug planted in it, can produce. Names are
 * e2fsprogs' own so a report can be grepped against e2fsck's source.
 * Headers and latch questions carry no finding of their own (`header: true`).
 */
export interface ProblemInfo {
  name: string;
  meaning: string;
  header?: boolean;
}

const table: Record<number, ProblemInfo> = {
  0x000020: { name: 'PR_0_ORPHAN_CLEAR_INODE', meaning: 'orphan inode cleared during orphan processing' },
  0x000021: { name: 'PR_0_ORPHAN_ILLEGAL_BLOCK_NUM', meaning: 'illegal block in an orphaned inode' },
  0x000022: { name: 'PR_0_ORPHAN_ALREADY_CLEARED_BLOCK', meaning: 'orphaned inode references an already freed block' },
  0x000023: { name: 'PR_0_ORPHAN_ILLEGAL_HEAD_INODE', meaning: 'illegal orphan list head in the superblock' },
  0x000024: { name: 'PR_0_ORPHAN_ILLEGAL_INODE', meaning: 'illegal inode in the orphan list' },
  0x000018: { name: 'PR_0_JOURNAL_RECOVERY_CLEAR', meaning: 'journal has data but the recovery flag is clear' },
  0x000017: { name: 'PR_0_JOURNAL_RECOVER_SET', meaning: 'recovery flag set but no journal' },
  0x010000: { name: 'PR_1_PASS_HEADER', meaning: 'pass 1 header', header: true },
  0x010004: { name: 'PR_1_ZERO_DTIME', meaning: 'deleted inode (links 0) has zero dtime' },
  0x010005: { name: 'PR_1_SET_DTIME', meaning: 'inode in use but dtime set' },
  0x01000c: { name: 'PR_1_BAD_I_SIZE', meaning: 'inode has an incorrect i_size' },
  0x01000d: { name: 'PR_1_BAD_I_BLOCKS', meaning: 'inode has an incorrect i_blocks' },
  0x01000e: { name: 'PR_1_ILLEGAL_BLOCK_NUM', meaning: 'illegal block number in inode' },
  0x01000f: { name: 'PR_1_BLOCK_OVERLAPS_METADATA', meaning: 'block overlaps filesystem metadata' },
  0x010010: { name: 'PR_1_INODE_BLOCK_LATCH', meaning: 'inode has illegal blocks', header: true },
  0x010014: { name: 'PR_1_DUP_BLOCKS_PREENSTOP', meaning: 'duplicate or bad blocks in use' },
  0x010036: { name: 'PR_1_LOW_DTIME', meaning: 'inode was part of the orphan list' },
  0x010037: { name: 'PR_1_ORPHAN_LIST_REFUGEES', meaning: 'inodes that were part of a corrupted orphan list' },
  0x010055: { name: 'PR_1_TREAT_AS_DIRECTORY', meaning: 'inode looks like a directory' },
  0x010056: { name: 'PR_1_READ_EXTENT', meaning: 'error reading the extent tree' },
  0x010057: { name: 'PR_1_EXTENT_ITERATE_FAILURE', meaning: 'failed to iterate extents' },
  0x010058: { name: 'PR_1_EXTENT_BAD_START_BLK', meaning: 'extent has an invalid starting block' },
  0x010059: { name: 'PR_1_EXTENT_ENDS_BEYOND', meaning: 'extent ends beyond the filesystem' },
  0x01005a: { name: 'PR_1_EXTENTS_SET', meaning: 'EXTENTS_FL set on a filesystem without extents' },
  0x01005b: { name: 'PR_1_EXTENT_FEATURE', meaning: 'extent inode but no extent feature' },
  0x01005c: { name: 'PR_1_UNSET_EXTENT_FL', meaning: 'inode is in extent format but EXTENTS_FL is clear' },
  0x01005d: { name: 'PR_1_FAST_SYMLINK_EXTENT_FL', meaning: 'fast symlink has EXTENTS_FL set' },
  0x01005e: { name: 'PR_1_OUT_OF_ORDER_EXTENTS', meaning: 'extents out of order' },
  0x01005f: { name: 'PR_1_EXTENT_HEADER_INVALID', meaning: 'extent node header invalid' },
  0x010066: { name: 'PR_1_EXTENT_LENGTH_ZERO', meaning: 'zero-length extent' },
  0x010067: { name: 'PR_1_INODE_IS_GARBAGE', meaning: 'inode seems to contain garbage' },
  0x010068: { name: 'PR_1_INODE_ONLY_CSUM_INVALID', meaning: 'inode passes checks but its checksum does not match' },
  0x01006a: { name: 'PR_1_EXTENT_ONLY_CSUM_INVALID', meaning: 'extent block passes checks but its checksum does not match' },
  0x01006d: { name: 'PR_1_EXTENT_INDEX_START_INVALID', meaning: 'interior extent node start does not match the node below' },
  0x01006e: { name: 'PR_1_EXTENT_END_OUT_OF_BOUNDS', meaning: 'extent end exceeds the allowed value' },
  0x010071: { name: 'PR_1_CRITICAL_METADATA_COLLISION', meaning: 'inode block conflicts with critical metadata' },
  0x01007d: { name: 'PR_1_EXTENT_COLLISION', meaning: 'extent leaf has a duplicate mapping' },
  0x01007f: { name: 'PR_1_EXTENT_BAD_MAX_DEPTH', meaning: 'extent tree deeper than allowed' },
  0x010081: { name: 'PR_1_MISSING_EXTENT_HEADER', meaning: 'inode has a corrupt extent header' },
  0x011000: { name: 'PR_1B_PASS_HEADER', meaning: 'pass 1B: rescan for multiply-claimed blocks', header: true },
  0x011001: { name: 'PR_1B_DUP_BLOCK_HEADER', meaning: 'multiply-claimed blocks in inode (header)', header: true },
  0x011002: { name: 'PR_1B_DUP_BLOCK', meaning: 'multiply-claimed block in inode' },
  0x011003: { name: 'PR_1B_DUP_BLOCK_END', meaning: 'end of multiply-claimed block list', header: true },
  0x011008: { name: 'PR_1B_DUP_RANGE', meaning: 'multiply-claimed block range in inode' },
  0x012000: { name: 'PR_1C_PASS_HEADER', meaning: 'pass 1C header', header: true },
  0x013000: { name: 'PR_1D_PASS_HEADER', meaning: 'pass 1D header', header: true },
  0x013001: { name: 'PR_1D_DUP_FILE', meaning: 'file has multiply-claimed blocks shared with other files' },
  0x013002: { name: 'PR_1D_DUP_FILE_LIST', meaning: 'a file sharing multiply-claimed blocks' },
  0x013003: { name: 'PR_1D_SHARE_METADATA', meaning: 'file shares blocks with filesystem metadata' },
  0x013004: { name: 'PR_1D_NUM_DUP_INODES', meaning: 'number of inodes with multiply-claimed blocks', header: true },
  0x013005: { name: 'PR_1D_DUP_BLOCKS_DEALT', meaning: 'multiply-claimed blocks already reassigned or cloned' },
  0x013006: { name: 'PR_1D_CLONE_QUESTION', meaning: 'clone multiply-claimed blocks?', header: true },
  0x013007: { name: 'PR_1D_DELETE_QUESTION', meaning: 'delete file?', header: true },
  0x020000: { name: 'PR_2_PASS_HEADER', meaning: 'pass 2 header', header: true },
  0x020002: { name: 'PR_2_BAD_INO', meaning: 'directory entry has a bad inode number' },
  0x020003: { name: 'PR_2_UNUSED_INODE', meaning: 'directory entry points to a deleted or unused inode' },
  0x020013: { name: 'PR_2_DIR_CORRUPTED', meaning: 'directory corrupted' },
  0x020015: { name: 'PR_2_DIRECTORY_HOLE', meaning: 'directory has a hole' },
  0x020031: { name: 'PR_2_INVALID_SYMLINK', meaning: 'invalid symlink' },
  0x02004d: { name: 'PR_2_LEAF_NODE_ONLY_CSUM_INVALID', meaning: 'directory leaf passes checks but its checksum does not match' },
  0x030000: { name: 'PR_3_PASS_HEADER', meaning: 'pass 3 header', header: true },
  0x030003: { name: 'PR_3_UNCONNECTED_DIR', meaning: 'unconnected directory inode' },
  0x030005: { name: 'PR_3_BAD_DOT_DOT', meaning: "'..' entry is incorrect" },
  0x040000: { name: 'PR_4_PASS_HEADER', meaning: 'pass 4 header', header: true },
  0x040001: { name: 'PR_4_ZERO_LEN_INODE', meaning: 'unattached zero-length inode' },
  0x040002: { name: 'PR_4_UNATTACHED_INODE', meaning: 'unattached inode' },
  0x040003: { name: 'PR_4_BAD_REF_COUNT', meaning: 'inode reference count wrong' },
  0x050000: { name: 'PR_5_PASS_HEADER', meaning: 'pass 5 header', header: true },
  0x050003: { name: 'PR_5_BLOCK_BITMAP_HEADER', meaning: 'block bitmap differences', header: true },
  0x050004: { name: 'PR_5_BLOCK_UNUSED', meaning: "block not used but marked in the bitmap ('-')" },
  0x050005: { name: 'PR_5_BLOCK_USED', meaning: "block used but not marked in the bitmap ('+')" },
  0x050006: { name: 'PR_5_BLOCK_BITMAP_END', meaning: 'end of block bitmap differences', header: true },
  0x050007: { name: 'PR_5_INODE_BITMAP_HEADER', meaning: 'inode bitmap differences', header: true },
  0x050008: { name: 'PR_5_INODE_UNUSED', meaning: "inode not used but marked in the bitmap ('-')" },
  0x050009: { name: 'PR_5_INODE_USED', meaning: "inode used but not marked in the bitmap ('+')" },
  0x05000a: { name: 'PR_5_INODE_BITMAP_END', meaning: 'end of inode bitmap differences', header: true },
  0x05000b: { name: 'PR_5_FREE_INODE_COUNT_GROUP', meaning: 'free inodes count wrong for a group' },
  0x05000c: { name: 'PR_5_FREE_DIR_COUNT_GROUP', meaning: 'directories count wrong for a group' },
  0x05000d: { name: 'PR_5_FREE_INODE_COUNT', meaning: 'free inodes count wrong' },
  0x05000e: { name: 'PR_5_FREE_BLOCK_COUNT_GROUP', meaning: 'free blocks count wrong for a group' },
  0x05000f: { name: 'PR_5_FREE_BLOCK_COUNT', meaning: 'free blocks count wrong' },
  0x050014: { name: 'PR_5_BLOCK_RANGE_UNUSED', meaning: "block range not used but marked in the bitmap ('-')" },
  0x050015: { name: 'PR_5_BLOCK_RANGE_USED', meaning: "block range used but not marked in the bitmap ('+')" },
  0x050016: { name: 'PR_5_INODE_RANGE_UNUSED', meaning: "inode range not used but marked in the bitmap ('-')" },
  0x050017: { name: 'PR_5_INODE_RANGE_USED', meaning: "inode range used but not marked in the bitmap ('+')" },
  0x050019: { name: 'PR_5_GROUP_FLAG_INCONSISTENT', meaning: 'group descriptor flags inconsistent' },
};

export function codeHex(code: number): string {
  return `0x${code.toString(16).padStart(6, '0')}`;
}

export function problemInfo(code: number): ProblemInfo {
  return table[code] ?? { name: `unknown-${codeHex(code)}`, meaning: `e2fsck problem ${codeHex(code)} (not in qcrash's table)` };
}

export function problemCodeByName(name: string): number | undefined {
  for (const [k, v] of Object.entries(table)) if (v.name === name) return Number(k);
  return undefined;
}

export const knownProblemNames = (): string[] => Object.values(table).map((v) => v.name);
