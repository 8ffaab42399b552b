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

/** One problem a line: its code, its name, `finding` or `header`, and what it means. */
const rows = `
0x000020  PR_0_ORPHAN_CLEAR_INODE            finding  orphan inode cleared during orphan processing
0x000021  PR_0_ORPHAN_ILLEGAL_BLOCK_NUM      finding  illegal block in an orphaned inode
0x000022  PR_0_ORPHAN_ALREADY_CLEARED_BLOCK  finding  orphaned inode references an already freed block
0x000023  PR_0_ORPHAN_ILLEGAL_HEAD_INODE     finding  illegal orphan list head in the superblock
0x000024  PR_0_ORPHAN_ILLEGAL_INODE          finding  illegal inode in the orphan list
0x000018  PR_0_JOURNAL_RECOVERY_CLEAR        finding  journal has data but the recovery flag is clear
0x000017  PR_0_JOURNAL_RECOVER_SET           finding  recovery flag set but no journal
0x010000  PR_1_PASS_HEADER                   header   pass 1 header
0x010004  PR_1_ZERO_DTIME                    finding  deleted inode (links 0) has zero dtime
0x010005  PR_1_SET_DTIME                     finding  inode in use but dtime set
0x01000c  PR_1_BAD_I_SIZE                    finding  inode has an incorrect i_size
0x01000d  PR_1_BAD_I_BLOCKS                  finding  inode has an incorrect i_blocks
0x01000e  PR_1_ILLEGAL_BLOCK_NUM             finding  illegal block number in inode
0x01000f  PR_1_BLOCK_OVERLAPS_METADATA       finding  block overlaps filesystem metadata
0x010010  PR_1_INODE_BLOCK_LATCH             header   inode has illegal blocks
0x010014  PR_1_DUP_BLOCKS_PREENSTOP          finding  duplicate or bad blocks in use
0x010036  PR_1_LOW_DTIME                     finding  inode was part of the orphan list
0x010037  PR_1_ORPHAN_LIST_REFUGEES          finding  inodes that were part of a corrupted orphan list
0x010055  PR_1_TREAT_AS_DIRECTORY            finding  inode looks like a directory
0x010056  PR_1_READ_EXTENT                   finding  error reading the extent tree
0x010057  PR_1_EXTENT_ITERATE_FAILURE        finding  failed to iterate extents
0x010058  PR_1_EXTENT_BAD_START_BLK          finding  extent has an invalid starting block
0x010059  PR_1_EXTENT_ENDS_BEYOND            finding  extent ends beyond the filesystem
0x01005a  PR_1_EXTENTS_SET                   finding  EXTENTS_FL set on a filesystem without extents
0x01005b  PR_1_EXTENT_FEATURE                finding  extent inode but no extent feature
0x01005c  PR_1_UNSET_EXTENT_FL               finding  inode is in extent format but EXTENTS_FL is clear
0x01005d  PR_1_FAST_SYMLINK_EXTENT_FL        finding  fast symlink has EXTENTS_FL set
0x01005e  PR_1_OUT_OF_ORDER_EXTENTS          finding  extents out of order
0x01005f  PR_1_EXTENT_HEADER_INVALID         finding  extent node header invalid
0x010066  PR_1_EXTENT_LENGTH_ZERO            finding  zero-length extent
0x010067  PR_1_INODE_IS_GARBAGE              finding  inode seems to contain garbage
0x010068  PR_1_INODE_ONLY_CSUM_INVALID       finding  inode passes checks but its checksum does not match
0x01006a  PR_1_EXTENT_ONLY_CSUM_INVALID      finding  extent block passes checks but its checksum does not match
0x01006d  PR_1_EXTENT_INDEX_START_INVALID    finding  interior extent node start does not match the node below
0x01006e  PR_1_EXTENT_END_OUT_OF_BOUNDS      finding  extent end exceeds the allowed value
0x010071  PR_1_CRITICAL_METADATA_COLLISION   finding  inode block conflicts with critical metadata
0x01007d  PR_1_EXTENT_COLLISION              finding  extent leaf has a duplicate mapping
0x01007f  PR_1_EXTENT_BAD_MAX_DEPTH          finding  extent tree deeper than allowed
0x010081  PR_1_MISSING_EXTENT_HEADER         finding  inode has a corrupt extent header
0x011000  PR_1B_PASS_HEADER                  header   pass 1B: rescan for multiply-claimed blocks
0x011001  PR_1B_DUP_BLOCK_HEADER             header   multiply-claimed blocks in inode (header)
0x011002  PR_1B_DUP_BLOCK                    finding  multiply-claimed block in inode
0x011003  PR_1B_DUP_BLOCK_END                header   end of multiply-claimed block list
0x011008  PR_1B_DUP_RANGE                    finding  multiply-claimed block range in inode
0x012000  PR_1C_PASS_HEADER                  header   pass 1C header
0x013000  PR_1D_PASS_HEADER                  header   pass 1D header
0x013001  PR_1D_DUP_FILE                     finding  file has multiply-claimed blocks shared with other files
0x013002  PR_1D_DUP_FILE_LIST                finding  a file sharing multiply-claimed blocks
0x013003  PR_1D_SHARE_METADATA               finding  file shares blocks with filesystem metadata
0x013004  PR_1D_NUM_DUP_INODES               header   number of inodes with multiply-claimed blocks
0x013005  PR_1D_DUP_BLOCKS_DEALT             finding  multiply-claimed blocks already reassigned or cloned
0x013006  PR_1D_CLONE_QUESTION               header   clone multiply-claimed blocks?
0x013007  PR_1D_DELETE_QUESTION              header   delete file?
0x020000  PR_2_PASS_HEADER                   header   pass 2 header
0x020002  PR_2_BAD_INO                       finding  directory entry has a bad inode number
0x020003  PR_2_UNUSED_INODE                  finding  directory entry points to a deleted or unused inode
0x020013  PR_2_DIR_CORRUPTED                 finding  directory corrupted
0x020015  PR_2_DIRECTORY_HOLE                finding  directory has a hole
0x020028  PR_2_BAD_FILETYPE                  finding  directory entry's file type does not match its inode
0x020031  PR_2_INVALID_SYMLINK               finding  invalid symlink
0x02004d  PR_2_LEAF_NODE_ONLY_CSUM_INVALID   finding  directory leaf passes checks but its checksum does not match
0x030000  PR_3_PASS_HEADER                   header   pass 3 header
0x030003  PR_3_UNCONNECTED_DIR               finding  unconnected directory inode
0x030005  PR_3_BAD_DOT_DOT                   finding  '..' entry is incorrect
0x040000  PR_4_PASS_HEADER                   header   pass 4 header
0x040001  PR_4_ZERO_LEN_INODE                finding  unattached zero-length inode
0x040002  PR_4_UNATTACHED_INODE              finding  unattached inode
0x040003  PR_4_BAD_REF_COUNT                 finding  inode reference count wrong
0x050000  PR_5_PASS_HEADER                   header   pass 5 header
0x050003  PR_5_BLOCK_BITMAP_HEADER           header   block bitmap differences
0x050004  PR_5_BLOCK_UNUSED                  finding  block not used but marked in the bitmap ('-')
0x050005  PR_5_BLOCK_USED                    finding  block used but not marked in the bitmap ('+')
0x050006  PR_5_BLOCK_BITMAP_END              header   end of block bitmap differences
0x050007  PR_5_INODE_BITMAP_HEADER           header   inode bitmap differences
0x050008  PR_5_INODE_UNUSED                  finding  inode not used but marked in the bitmap ('-')
0x050009  PR_5_INODE_USED                    finding  inode used but not marked in the bitmap ('+')
0x05000a  PR_5_INODE_BITMAP_END              header   end of inode bitmap differences
0x05000b  PR_5_FREE_INODE_COUNT_GROUP        finding  free inodes count wrong for a group
0x05000c  PR_5_FREE_DIR_COUNT_GROUP          finding  directories count wrong for a group
0x05000d  PR_5_FREE_INODE_COUNT              finding  free inodes count wrong
0x05000e  PR_5_FREE_BLOCK_COUNT_GROUP        finding  free blocks count wrong for a group
0x05000f  PR_5_FREE_BLOCK_COUNT              finding  free blocks count wrong
0x050014  PR_5_BLOCK_RANGE_UNUSED            finding  block range not used but marked in the bitmap ('-')
0x050015  PR_5_BLOCK_RANGE_USED              finding  block range used but not marked in the bitmap ('+')
0x050016  PR_5_INODE_RANGE_UNUSED            finding  inode range not used but marked in the bitmap ('-')
0x050017  PR_5_INODE_RANGE_USED              finding  inode range used but not marked in the bitmap ('+')
0x050019  PR_5_GROUP_FLAG_INCONSISTENT       finding  group descriptor flags inconsistent
0x05001a  PR_5_INODE_BITMAP_CSUM_INVALID     finding  inode bitmap does not match its checksum in the group descriptor
0x05001b  PR_5_BLOCK_BITMAP_CSUM_INVALID     finding  block bitmap does not match its checksum in the group descriptor
0x000041  PR_0_HIDE_QUOTA                    finding  quota inode is a visible file, not hidden
0x00004c  PR_0_QUOTA_INIT_CTX                finding  error initialising the quota context
0x00004f  PR_0_INVALID_QUOTA_INO             finding  invalid quota inode number in the superblock
0x010062  PR_1_QUOTA_BAD_MODE                finding  quota inode is not a regular file
0x010063  PR_1_QUOTA_INODE_NOT_CLEAR         finding  quota inode is not in use but contains data
0x060002  PR_6_UPDATE_QUOTAS                 finding  quota usage on disk differs from what e2fsck counted
0x060006  PR_6_WRITE_QUOTAS                  finding  error updating quota information
`;

const rowPattern = /^(0x[0-9a-f]{6}) {2}(PR_\w+) +(finding|header) +(\S.*)$/;

function parseRow(line: string): [number, ProblemInfo] {
  const m = rowPattern.exec(line);
  if (!m) throw new Error(`problem-codes: malformed row: ${line}`);
  const [, code = '', name = '', kind = '', meaning = ''] = m;
  return [Number(code), { name, meaning, ...(kind === 'header' ? { header: true } : {}) }];
}

const table: Record<number, ProblemInfo> = Object.fromEntries(rows.trim().split('\n').map(parseRow));

export function codeHex(code: number): string {
  return `0x${code.toString(16).padStart(6, '0')}`;
}

export function problemInfo(code: number): ProblemInfo {
  return table[code] ?? { name: `unknown-${codeHex(code)}`, meaning: `e2fsck problem ${codeHex(code)} (not in qcrash's table)` };
}
