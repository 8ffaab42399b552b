/*
 * qcrash-io: the guest's writer. Its bytes come from splitmix64 seeded by the
 * host, so the host can compute what a completed write left in a file
 * (harness/guest/content.ts implements the same generator).
 *
 *   qcrash-io write PATH OFFSET SIZE SEED APPEND   one write (APPEND=1: O_APPEND)
 *   qcrash-io fsync PATH
 *   qcrash-io odirect PATH SIZE SEED               O_DIRECT rewrites until killed
 *   qcrash-io mmap PATH SIZE SEED                  mmap stores + msync until killed
 *   qcrash-io mmap-holes PATH PACE_US SEED         one store into each hole page of an
 *                                                  existing file, PACE_US apart, then exits
 *
 * mmap-holes is the race ext4_ext_migrate() guards against with
 * EXT4_STATE_EXT_MIGRATE: chattr holds i_rwsem, but a store through a shared
 * mapping into a hole still allocates a block (page_mkwrite; with -o
 * nodelalloc at once), and the migration must notice and fail with EAGAIN
 * without having touched the old map.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Fill buf with the generator's little-endian output, starting at stream position 0. */
static void fill(unsigned char *buf, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = splitmix64(&s);
    for (size_t j = 0; j < 8 && i + j < n; j++) buf[i + j] = (unsigned char)(v >> (8 * j));
  }
}

static int die(const char *what) {
  fprintf(stderr, "qcrash-io: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: qcrash-io write|fsync|odirect|mmap PATH ...\n");
    return 2;
  }
  const char *op = argv[1], *path = argv[2];
  if (!strcmp(op, "fsync")) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return die("open");
    if (fsync(fd)) return die("fsync");
    return close(fd) ? die("close") : 0;
  }
  if (!strcmp(op, "write") && argc == 7) {
    off_t off = strtoll(argv[3], 0, 10);
    size_t size = strtoull(argv[4], 0, 10);
    uint64_t seed = strtoull(argv[5], 0, 10);
    int append = atoi(argv[6]);
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return die("malloc");
    fill(buf, size, seed);
    int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : 0), 0644);
    if (fd < 0) return die("open");
    size_t done = 0;
    while (done < size) {
      ssize_t w = append ? write(fd, buf + done, size - done) : pwrite(fd, buf + done, size - done, off + done);
      if (w < 0) return die("write");
      done += (size_t)w;
    }
    return close(fd) ? die("close") : 0;
  }
  if ((!strcmp(op, "odirect") || !strcmp(op, "mmap")) && argc == 5) {
    size_t size = strtoull(argv[3], 0, 10);
    uint64_t seed = strtoull(argv[4], 0, 10);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) & ~(page - 1);
    unsigned char *buf;
    if (posix_memalign((void **)&buf, page, size)) return die("posix_memalign");
    int direct = !strcmp(op, "odirect");
    int fd = open(path, O_RDWR | O_CREAT | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0) return die("open");
    if (ftruncate(fd, (off_t)size)) return die("ftruncate");
    unsigned char *map = 0;
    if (!direct) {
      map = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (map == MAP_FAILED) return die("mmap");
    }
    for (uint64_t round = 0;; round++) {
      fill(buf, size, seed + round);
      if (direct) {
        /* A short O_DIRECT write is legal (e.g. on a full disk): finish it, never skip the rest. */
        for (size_t done = 0; done < size;) {
          ssize_t w = pwrite(fd, buf + done, size - done, (off_t)done);
          if (w < 0) return die("pwrite");
          if (w == 0) { errno = ENOSPC; return die("pwrite"); }
          done += (size_t)w;
        }
      } else {
        memcpy(map, buf, size);
        if (msync(map, size, MS_SYNC)) return die("msync");
      }
    }
  }
  if (!strcmp(op, "mmap-holes") && argc == 5) {
    useconds_t pace = (useconds_t)strtoul(argv[3], 0, 10);
    uint64_t seed = strtoull(argv[4], 0, 10);
    int fd = open(path, O_RDWR);
    if (fd < 0) return die("open");
    struct stat st;
    if (fstat(fd, &st)) return die("fstat");
    off_t page = (off_t)sysconf(_SC_PAGESIZE);
    off_t size = st.st_size & ~(page - 1);
    if (size <= 0) return 0;
    unsigned char *map = mmap(0, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return die("mmap");
    uint64_t s = seed;
    /* Holes as the file has them now (SEEK_HOLE), touched in file order. */
    for (off_t pos = 0; pos < size;) {
      off_t hole = lseek(fd, pos, SEEK_HOLE);
      if (hole < 0 || hole >= size) break;
      off_t data = lseek(fd, hole, SEEK_DATA);
      if (data < 0 || data > size) data = size;
      for (off_t at = (hole + page - 1) & ~(page - 1); at + page <= data; at += page) {
        map[at] = (unsigned char)splitmix64(&s) | 1;
        if (pace) usleep(pace);
      }
      pos = data;
    }
    return munmap(map, (size_t)size) || close(fd) ? die("close") : 0;
  }
  fprintf(stderr, "qcrash-io: bad arguments\n");
  return 2;
}
