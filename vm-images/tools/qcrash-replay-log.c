/*
 * qcrash-replay-log: replay the first entries of a dm-log-writes log onto
 * an image, with the I/O pattern of fstests' src/log-writes/replay-log:
 *
 *   qcrash-replay-log --log LOG --replay IMAGE --limit N
 *
 * The bench's fstests loop (harness/bench/writelog-bench.ts) runs this once
 * per crash state, on a fresh copy of the base image, as fstests' loops run
 * `replay-log --limit`: so that its baseline costs what that tool costs,
 * not what qcrash's in-process replay costs. What it does, in order:
 *
 *   - one process per state (the caller starts it);
 *   - the log's superblock, then every entry header read from entry 0 with
 *     read(2) of one whole header sector, sequentially (no index);
 *   - each write's data read(2) into a buffer allocated for that entry and
 *     written to the image with one pwrite(2);
 *   - a discard as zeros written with pwrite(2) (a regular file takes no
 *     BLKDISCARD; fstests then writes zeros too), flushes and marks nothing;
 *   - an fsync(2) of the image at the end.
 *
 * It replays min(N, the entries the file holds) entries; it does not stop
 * at the superblock's entry count, so that a log the guest was killed
 * during (its count not rewritten since the last flush) replays as far as
 * qcrash's own replay does (harness/crash/writelog/replay.ts). The format
 * is in harness/crash/writelog/format.ts. Exit 0, or 1 with a message on
 * stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MAGIC 0x6a736677736872ULL
#define LOG_VERSION 1ULL
#define FLAG_DISCARD 4ULL
#define FLAG_MARK 8ULL
#define ZERO_CHUNK (1u << 20)

static const char *prog = "qcrash-replay-log";

static void fail(const char *what, const char *path) {
	fprintf(stderr, "%s: %s %s: %s\n", prog, what, path, errno ? strerror(errno) : "short read");
	exit(1);
}

static uint64_t le64(const unsigned char *p) {
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* read(2) exactly n bytes, or 0 at a clean end of file before any byte; exits on a short read. */
static int read_all(int fd, void *buf, size_t n, const char *path) {
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, (char *)buf + done, n - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("cannot read", path);
		if (r == 0) {
			if (done == 0)
				return 0;
			errno = 0;
			fail("the log ends inside an entry of", path);
		}
		done += (size_t)r;
	}
	return 1;
}

static void pwrite_all(int fd, const void *buf, size_t n, uint64_t at, const char *path) {
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(fd, (const char *)buf + done, n - done, (off_t)(at + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fail("cannot write", path);
		done += (size_t)w;
	}
}

static void zero_range(int fd, uint64_t at, uint64_t len, const char *path) {
	static char zeros[ZERO_CHUNK];
	while (len) {
		size_t n = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
		pwrite_all(fd, zeros, n, at, path);
		at += n;
		len -= n;
	}
}

/* The superblock: checks magic and version, returns the sector size; leaves the log at entry 0. */
static uint32_t read_super(int logfd, const char *log) {
	unsigned char sb[32];
	errno = 0;
	if (!read_all(logfd, sb, sizeof sb, log))
		fail("no superblock in", log);
	if (le64(sb) != LOG_MAGIC || le64(sb + 8) != LOG_VERSION) {
		fprintf(stderr, "%s: %s: not a dm-log-writes log (magic or version)\n", prog, log);
		exit(1);
	}
	uint32_t ss = (uint32_t)sb[24] | (uint32_t)sb[25] << 8 | (uint32_t)sb[26] << 16 | (uint32_t)sb[27] << 24;
	if (ss < 512 || (ss & (ss - 1)) || ss > (1u << 23)) {
		fprintf(stderr, "%s: %s: sector size %" PRIu32 "\n", prog, log, ss);
		exit(1);
	}
	if (lseek(logfd, ss, SEEK_SET) < 0)
		fail("cannot seek in", log);
	return ss;
}

/* Replay one entry whose header sector is `h`; reads its data from the log. */
static void replay_entry(int logfd, int imgfd, const unsigned char *h, uint32_t ss, const char *log, const char *img) {
	uint64_t sector = le64(h), nr = le64(h + 8), flags = le64(h + 16);
	uint64_t bytes = nr * ss;
	if (!bytes || (flags & FLAG_MARK))
		return;
	if (flags & FLAG_DISCARD) {
		zero_range(imgfd, sector * ss, bytes, img);
		return;
	}
	char *data = malloc(bytes);
	if (!data) {
		fprintf(stderr, "%s: %s: cannot allocate %" PRIu64 " bytes\n", prog, log, bytes);
		exit(1);
	}
	errno = 0;
	if (!read_all(logfd, data, bytes, log))
		fail("the log ends before an entry's data in", log);
	pwrite_all(imgfd, data, bytes, sector * ss, img);
	free(data);
}

int main(int argc, char **argv) {
	static const struct option opts[] = {
		{"log", required_argument, NULL, 'l'},
		{"replay", required_argument, NULL, 'r'},
		{"limit", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	const char *log = NULL, *img = NULL;
	char *end = NULL;
	uint64_t limit = 0;
	int c, have_limit = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'l')
			log = optarg;
		else if (c == 'r')
			img = optarg;
		else if (c == 'n') {
			limit = strtoull(optarg, &end, 10);
			have_limit = end && *end == '\0' && *optarg;
		} else
			break;
	}
	if (!log || !img || !have_limit || optind != argc) {
		fprintf(stderr, "usage: %s --log LOG --replay IMAGE --limit N\n", prog);
		return 1;
	}
	int logfd = open(log, O_RDONLY);
	if (logfd < 0)
		fail("cannot open", log);
	int imgfd = open(img, O_WRONLY);
	if (imgfd < 0)
		fail("cannot open", img);
	uint32_t ss = read_super(logfd, log);
	unsigned char *h = malloc(ss);
	if (!h)
		return 1;
	for (uint64_t i = 0; i < limit; i++) {
		errno = 0;
		if (!read_all(logfd, h, ss, log))
			break;
		if (!le64(h + 8) && !le64(h + 16))
			break; /* a header slot reserved and never written: the log's end */
		replay_entry(logfd, imgfd, h, ss, log, img);
	}
	if (fsync(imgfd))
		fail("cannot fsync", img);
	free(h);
	close(imgfd);
	close(logfd);
	return 0;
}
