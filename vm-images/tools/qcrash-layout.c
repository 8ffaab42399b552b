/*
 * qcrash-layout: give empty block-mapped files an exact physical layout.
 *
 *   qcrash-layout IMAGE PLAN
 *
 * The host's image builder (harness/image/layout.ts) decides where every
 * data block and every indirect block of a file goes; this program only
 * carries the plan out with libext2fs, on an image whose extent feature is
 * still off, and refuses anything it cannot do exactly (a block already in
 * use, an inode that is not an empty block-mapped file, index blocks that
 * the block map does not need where the plan says). The builder then reads
 * the block map back with debugfs and compares it with the plan.
 *
 * PLAN is text, one record a line, in allocation order:
 *   file INO SIZE SOURCE   start a file: inode, i_size, host file with its bytes
 *   index PBLK             the next indirect block the block map needs: the
 *                          plan lists them just before the data block that
 *                          first needs them, top-down (TIND, DIND, IND)
 *   data LBLK PBLK COUNT   COUNT logical blocks from LBLK at PBLK..
 *   end                    finish the file
 *
 * Each data block is mapped with ext2fs_bmap2(BMAP_ALLOC): libext2fs walks
 * the block map, allocates the missing indirect blocks and then the data
 * block, and writes the pointers itself; the allocation callback hands out
 * the planned blocks, so the block map is exactly what libext2fs makes and
 * reads back. (BMAP_SET cannot be used here: with BMAP_ALLOC it also
 * allocates a data block inside the indirect block, in e2fsprogs 1.47.0.)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

#define MAX_CHUNK 1024 /* blocks written per io_channel call */

static const char *prog = "qcrash-layout";
static unsigned long plan_line;

/*
 * What the allocation callback hands out next: the planned indirect blocks
 * not yet used, then the data block being mapped.
 */
static blk64_t *index_blocks;
static size_t index_count, index_next, index_cap;
static blk64_t data_block;
static int data_pending;
static ext2_ino_t current_ino;

static void die(const char *what, errcode_t err) {
	if (err)
		fprintf(stderr, "%s: plan line %lu: inode %u: %s: %s\n", prog, plan_line, current_ino, what, error_message(err));
	else
		fprintf(stderr, "%s: plan line %lu: inode %u: %s\n", prog, plan_line, current_ino, what);
	exit(1);
}

static errcode_t planned_block(ext2_filsys fs, blk64_t goal, blk64_t *ret) {
	blk64_t b;
	(void)goal;
	if (index_next < index_count)
		b = index_blocks[index_next++];
	else if (data_pending) {
		b = data_block;
		data_pending = 0;
	} else {
		fprintf(stderr, "%s: plan line %lu: inode %u: the block map needs an indirect block the plan does not have here\n",
			prog, plan_line, current_ino);
		return EXT2_ET_BLOCK_ALLOC_FAIL;
	}
	if (b < fs->super->s_first_data_block || b >= ext2fs_blocks_count(fs->super)) {
		fprintf(stderr, "%s: plan line %lu: inode %u: block %llu is outside the filesystem\n",
			prog, plan_line, current_ino, (unsigned long long)b);
		return EXT2_ET_BLOCK_ALLOC_FAIL;
	}
	if (ext2fs_test_block_bitmap2(fs->block_map, b)) {
		fprintf(stderr, "%s: plan line %lu: inode %u: planned block %llu is already in use\n",
			prog, plan_line, current_ino, (unsigned long long)b);
		return EXT2_ET_BLOCK_ALLOC_FAIL;
	}
	*ret = b; /* ext2fs_alloc_block3 zeroes it and marks it in use */
	return 0;
}

struct file_state {
	struct ext2_inode inode;
	int src;
};

static void start_file(ext2_filsys fs, struct file_state *f, ext2_ino_t ino, unsigned long long size, const char *src) {
	errcode_t err;
	memset(f, 0, sizeof(*f));
	current_ino = ino;
	index_count = index_next = 0;
	err = ext2fs_read_inode(fs, ino, &f->inode);
	if (err)
		die("read inode", err);
	if (!LINUX_S_ISREG(f->inode.i_mode))
		die("not a regular file", 0);
	if (f->inode.i_flags & (EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL))
		die("not block-mapped (the extent feature must be off while the layout is made)", 0);
	for (int i = 0; i < EXT2_N_BLOCKS; i++)
		if (f->inode.i_block[i])
			die("already has blocks: a layout needs an empty file", 0);
	err = ext2fs_inode_size_set(fs, &f->inode, size);
	if (!err)
		err = ext2fs_write_inode(fs, ino, &f->inode);
	if (err)
		die("set size", err);
	f->src = open(src, O_RDONLY);
	if (f->src < 0) {
		fprintf(stderr, "%s: plan line %lu: open %s: %s\n", prog, plan_line, src, strerror(errno));
		exit(1);
	}
}

static void map_run(ext2_filsys fs, struct file_state *f, blk64_t lblk, blk64_t pblk, blk64_t count) {
	errcode_t err;
	char *bmap_buf, *data;
	unsigned bs = fs->blocksize;

	err = ext2fs_get_array(2, bs, &bmap_buf);
	if (!err)
		err = ext2fs_get_array(MAX_CHUNK, bs, &data);
	if (err)
		die("allocate buffers", err);
	for (blk64_t i = 0; i < count; i++) {
		blk64_t got = 0;
		data_block = pblk + i;
		data_pending = 1;
		err = ext2fs_bmap2(fs, current_ino, &f->inode, bmap_buf, BMAP_ALLOC, lblk + i, NULL, &got);
		if (err)
			die("map block", err);
		if (data_pending || got != pblk + i) {
			fprintf(stderr, "%s: plan line %lu: inode %u: logical block %llu mapped to %llu, planned %llu\n",
				prog, plan_line, current_ino, (unsigned long long)(lblk + i), (unsigned long long)got,
				(unsigned long long)(pblk + i));
			exit(1);
		}
		if (index_next != index_count)
			die("the plan has indirect blocks before this data block that the block map did not need", 0);
	}
	for (blk64_t done = 0; done < count; done += MAX_CHUNK) {
		blk64_t n = count - done < MAX_CHUNK ? count - done : MAX_CHUNK;
		size_t want = (size_t)n * bs;
		memset(data, 0, want);
		/* A short read is the file's partial last block: the rest stays zero. */
		ssize_t got = pread(f->src, data, want, (off_t)((lblk + done) * bs));
		if (got < 0) {
			fprintf(stderr, "%s: plan line %lu: read source: %s\n", prog, plan_line, strerror(errno));
			exit(1);
		}
		err = io_channel_write_blk64(fs->io, pblk + done, (int)n, data);
		if (err)
			die("write data", err);
	}
	ext2fs_free_mem(&bmap_buf);
	ext2fs_free_mem(&data);
}

static void finish_file(struct file_state *f) {
	if (index_next != index_count)
		die("the plan has indirect blocks after the last data block", 0);
	close(f->src);
	current_ino = 0;
}

int main(int argc, char **argv) {
	ext2_filsys fs;
	errcode_t err;
	FILE *plan;
	char line[4200];
	struct file_state f = { 0 };

	if (argc != 3) {
		fprintf(stderr, "usage: %s IMAGE PLAN\n", prog);
		return 2;
	}
	add_error_table(&et_ext2_error_table);
	err = ext2fs_open2(argv[1], NULL, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
	if (err) {
		com_err(prog, err, "while opening %s", argv[1]);
		return 1;
	}
	if (ext2fs_has_feature_extents(fs->super)) {
		fprintf(stderr, "%s: %s has the extent feature on: layouts are made while it is off\n", prog, argv[1]);
		return 1;
	}
	err = ext2fs_read_bitmaps(fs);
	if (err) {
		com_err(prog, err, "while reading bitmaps");
		return 1;
	}
	ext2fs_set_alloc_block_callback(fs, planned_block, NULL);
	plan = fopen(argv[2], "r");
	if (!plan) {
		perror(argv[2]);
		return 1;
	}
	while (fgets(line, sizeof line, plan)) {
		unsigned long long a, b, c;
		unsigned ino;
		char src[4097];
		plan_line++;
		if (sscanf(line, "file %u %llu %4096s", &ino, &a, src) == 3) {
			if (current_ino)
				die("file record before the previous file's end", 0);
			start_file(fs, &f, ino, a, src);
		} else if (sscanf(line, "index %llu", &a) == 1) {
			if (!current_ino)
				die("index record outside a file", 0);
			if (index_count == index_cap) {
				index_cap = index_cap ? 2 * index_cap : 64;
				index_blocks = realloc(index_blocks, index_cap * sizeof(*index_blocks));
				if (!index_blocks)
					die("out of memory", 0);
			}
			index_blocks[index_count++] = a;
		} else if (sscanf(line, "data %llu %llu %llu", &a, &b, &c) == 3) {
			if (!current_ino)
				die("data record outside a file", 0);
			map_run(fs, &f, a, b, c);
		} else if (strncmp(line, "end", 3) == 0) {
			if (!current_ino)
				die("end without a file", 0);
			finish_file(&f);
		} else if (line[0] != '\n' && line[0] != '#') {
			die("unknown record", 0);
		}
	}
	if (current_ino)
		die("plan ends inside a file", 0);
	fclose(plan);
	err = ext2fs_close_free(&fs);
	if (err) {
		com_err(prog, err, "while closing the filesystem");
		return 1;
	}
	return 0;
}
