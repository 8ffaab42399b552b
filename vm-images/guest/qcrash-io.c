/*
 * qcrash-io: the guest's writer and migrator. Its bytes come from splitmix64
 * seeded by the host, so the host can compute what a write left in a file
 * (harness/guest/content.ts implements the same generator and formats).
 *
 *   qcrash-io write PATH OFFSET SIZE SEED APPEND   one write (APPEND=1: O_APPEND)
 *   qcrash-io fsync PATH
 *   qcrash-io migrate ROOT RECURSIVE PATH...       FS_IOC_SETFLAGS +EXTENTS_FL on each
 *                                                  file and directory, one result line each
 *   qcrash-io demigrate ROOT RECURSIVE PATH...     the same with EXTENTS_FL cleared (chattr -e:
 *                                                  ext4_ind_migrate), lines start "demigrate"
 *   qcrash-io odirect PATH SIZE SEED [OFFSET]      O_DIRECT rewrites of [OFFSET, OFFSET+SIZE),
 *                                                  round after round, until SIGTERM
 *   qcrash-io mmap PATH SIZE SEED [OFFSET]         the same through a shared mapping + msync
 *   qcrash-io buffered PATH SIZE SEED [OFFSET]     the same with pwrite through the page cache
 *                                                  (no fsync: writeback or a sync makes it durable)
 *   qcrash-io mmap-holes PATH PACE_US SEED         one store into each hole page of an
 *                                                  existing file, PACE_US apart, then exits
 *
 * migrate prints, per path (PATH relative to ROOT, bytes outside 0x21-0x7e
 * and '%' as %XX):
 *   migrate file|dir RET ERRNO PATH flags=F blocks=B
 *                                     RET: what syscall(SYS_ioctl, FS_IOC_SETFLAGS)
 *                                     returned, so a positive value the kernel lets
 *                                     out (ext4_ext_migrate) is seen; ERRNO when RET is -1.
 *                                     F: FS_IOC_GETFLAGS on the same fd right after, in
 *                                     hex (0x...), or e<errno> when it failed; B: st_blocks
 *                                     then (512-byte units), or e<errno>. The host takes
 *                                     the kernel's word from F, not from RET: a 0 with no
 *                                     FS_EXTENT_FL in F is an ioctl that lied.
 *   skip symlink|other PATH           not migrated, as chattr -R would not
 *   error lstat|open|getflags|opendir ERRNO PATH   the walk itself failed (exit 1)
 * An ioctl error is a result, not a failure: the exit status is 0 when every
 * file could be asked.
 *
 * The rewriters (odirect, mmap, buffered) write rounds r = 0, 1, ... of the
 * range [OFFSET, OFFSET+SIZE) (OFFSET a multiple of the page size, SIZE rounded
 * up to one); each 512-byte sector at file offset 512*i of round r is a
 * 16-byte header ("QCRW", r as u32, i as u64, little-endian) and 496 bytes of
 * splitmix64 seeded by sector_seed(seed, r, i), so the host tells a sector of
 * any round from anything else by reading its header. Before round 0 the file
 * is grown (ftruncate) to OFFSET+SIZE when shorter: a range past the end of an
 * existing file appends to it. On SIGTERM a rewriter finishes the round it is
 * in and prints "writer MODE rounds=N size=S offset=O" (rounds completed, the
 * last one is N-1); it prints that line also when a write fails.
 *
 * mmap-holes lists the file's hole pages first (SEEK_HOLE, page-aligned,
 * file order), then stores into the k-th one byte 0 = (k-th splitmix64
 * output of SEED) | 1. It stops early on SIGTERM and prints
 * "mmap-holes stored=N holes=M first=OFF last=OFF" (the first N of the M
 * hole pages were stored; OFF of the first and last hole page, -1 if none).
 *
 * With QCRASH_IO_PROGRESS=K in the environment, the writers also report
 * their progress every K stores (mmap-holes) or rounds (odirect, mmap) as a
 * kernel log line "qcrash-io: MODE stored=N" / "qcrash-io: MODE rounds=N"
 * at level 4, which the console shows: the host follows a writer there while
 * the agent is busy with another step (a hold point's marker). Written
 * through /dev/kmsg because printk writes the serial console synchronously
 * from the writer's own CPU, while a tty write waits for the UART's
 * interrupt, which may be routed to a vCPU the host is holding; /dev/kmsg
 * is opened anew per line, as its rate limit (10 lines per 5 s) is per open
 * file.
 *
 * mmap-holes is the race ext4_ext_migrate() guards against with
 * EXT4_STATE_EXT_MIGRATE: chattr holds i_rwsem, but a store through a shared
 * mapping into a hole still allocates a block (page_mkwrite; with -o
 * nodelalloc at once), and the migration must notice and fail with EAGAIN
 * without having touched the old map.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef FS_EXTENT_FL
#define FS_EXTENT_FL 0x00080000
#endif

#define SECTOR 512
#define HEADER 16

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* One generator output from state x: a mixing function. */
static uint64_t mix(uint64_t x) { return splitmix64(&x); }

/* Fill buf with the generator's little-endian output, starting at stream position 0. */
static void fill(unsigned char *buf, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = splitmix64(&s);
    for (size_t j = 0; j < 8 && i + j < n; j++) buf[i + j] = (unsigned char)(v >> (8 * j));
  }
}

static void put_le(unsigned char *p, uint64_t v, int n) {
  for (int j = 0; j < n; j++) p[j] = (unsigned char)(v >> (8 * j));
}

static uint64_t sector_seed(uint64_t seed, uint32_t round, uint64_t index) {
  return mix(seed ^ mix(((uint64_t)round << 40) ^ index));
}

/* Round `round` of a rewriter's range of `size` bytes at `base` (both multiples of SECTOR). */
static void fill_round(unsigned char *buf, size_t size, uint64_t seed, uint32_t round, off_t base) {
  for (size_t off = 0; off < size; off += SECTOR) {
    uint64_t index = ((uint64_t)base + off) / SECTOR;
    memcpy(buf + off, "QCRW", 4);
    put_le(buf + off + 4, round, 4);
    put_le(buf + off + 8, index, 8);
    fill(buf + off + HEADER, SECTOR - HEADER, sector_seed(seed, round, index));
  }
}

static volatile sig_atomic_t stop_requested;
static void on_term(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* SIGTERM asks for a graceful stop; SA_RESTART so that no write is cut short by it. */
static void graceful_stop(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, 0);
}

/*
 * Wait `us` microseconds without sleeping. A held interleaving stops one
 * vCPU: on qcrash's minimal kernel (no ACPI, so no HPET; a periodic or
 * jiffies-driven timekeeper on the boot CPU) a sleeping writer on the other
 * vCPU was not woken while the hold lasted (1 store in 3 s, against 8 in
 * 0.1 s on Debian's kernel), so the race it exists for never ran. Spinning
 * on the TSC clock (tsc=reliable) needs no timer interrupt. Used when a hold
 * waits on this writer's progress lines (QCRASH_IO_PROGRESS).
 */
static void pace_wait(useconds_t us) {
  struct timespec t0, t;
  if (clock_gettime(CLOCK_MONOTONIC, &t0)) return;
  do {
    if (clock_gettime(CLOCK_MONOTONIC, &t)) return;
  } while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < (long)us);
}

static long progress_every;

static void progress_init(void) {
  const char *e = getenv("QCRASH_IO_PROGRESS");
  progress_every = e && *e ? strtol(e, 0, 10) : 0;
}

static void progress(const char *op, const char *what, unsigned long n) {
  if (progress_every <= 0 || n % (unsigned long)progress_every) return;
  char line[96];
  int len = snprintf(line, sizeof line, "<4>qcrash-io: %s %s=%lu\n", op, what, n);
  int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (write(fd, line, (size_t)len) < 0) { /* a lost progress line only ends a hold at its limit */ }
  close(fd);
}

static int die(const char *what) {
  fprintf(stderr, "qcrash-io: %s: %s\n", what, strerror(errno));
  return 1;
}

/* A path as one token: bytes outside 0x21-0x7e and '%' as %XX. */
static void put_path(const char *p) {
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x21 || c > 0x7e || c == '%') printf("%%%02X", c);
    else putchar(c);
  }
}

/* What the kernel says the file is now, whatever the ioctl returned: " flags=F blocks=B\n". */
static void put_readback(int fd) {
  int now = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &now)) printf(" flags=e%d", errno);
  else printf(" flags=0x%x", (unsigned)now);
  struct stat st;
  if (fstat(fd, &st)) printf(" blocks=e%d\n", errno);
  else printf(" blocks=%lld\n", (long long)st.st_blocks);
}

static const char *migrate_root;
static int walk_failed;
/* demigrate: clear FS_EXTENT_FL instead of setting it. */
static int to_blocks;

static void walk_error(const char *op, int err, const char *rel) {
  printf("error %s %d ", op, err);
  put_path(rel);
  putchar('\n');
  walk_failed = 1;
}

/*
 * chattr -R's order: the path itself, then (directories, recursive) each
 * entry in readdir order, depth first. Unlike chattr, a path that cannot be
 * migrated never ends the walk of its directory.
 */
static void migrate_path(const char *rel, int recursive) {
  char full[PATH_MAX];
  snprintf(full, sizeof full, "%s%s", migrate_root, rel);
  struct stat st;
  if (lstat(full, &st)) {
    walk_error("lstat", errno, rel);
    return;
  }
  int dir = S_ISDIR(st.st_mode);
  if (!dir && !S_ISREG(st.st_mode)) {
    printf("skip %s ", S_ISLNK(st.st_mode) ? "symlink" : "other");
    put_path(rel);
    putchar('\n');
    return;
  }
  int fd = open(full, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | (dir ? O_DIRECTORY : 0));
  if (fd < 0) {
    walk_error("open", errno, rel);
    return;
  }
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags)) {
    walk_error("getflags", errno, rel);
    close(fd);
    return;
  }
  if (to_blocks) flags &= ~FS_EXTENT_FL;
  else flags |= FS_EXTENT_FL;
  errno = 0;
  long ret = syscall(SYS_ioctl, fd, FS_IOC_SETFLAGS, &flags);
  int err = ret == -1 ? errno : 0;
  printf("%s %s %ld %d ", to_blocks ? "demigrate" : "migrate", dir ? "dir" : "file", ret, err);
  put_path(rel);
  put_readback(fd);
  close(fd);
  if (!dir || !recursive) return;
  DIR *d = opendir(full);
  if (!d) {
    walk_error("opendir", errno, rel);
    return;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    char child[PATH_MAX];
    snprintf(child, sizeof child, "%s/%s", strcmp(rel, "/") ? rel : "", de->d_name);
    migrate_path(child, recursive);
  }
  closedir(d);
}

/* A rewriter (odirect, mmap, buffered): rounds of [base, base+size) until SIGTERM or a failed write. */
static int rewrite(const char *op, const char *path, size_t size, uint64_t seed, off_t base) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size = (size + page - 1) & ~(page - 1);
  if (base < 0 || (size_t)base % page) {
    errno = EINVAL;
    return die("offset");
  }
  unsigned char *buf;
  if (posix_memalign((void **)&buf, page, size)) return die("posix_memalign");
  int direct = !strcmp(op, "odirect"), mapped = !strcmp(op, "mmap");
  int fd = open(path, O_RDWR | O_CREAT | (direct ? O_DIRECT : 0), 0644);
  if (fd < 0) return die("open");
  /* Only ever grow the file: bytes outside the rewritten range stay what they were. */
  struct stat st;
  if (fstat(fd, &st)) return die("fstat");
  off_t end = base + (off_t)size;
  if (st.st_size < end && ftruncate(fd, end)) return die("ftruncate");
  unsigned char *map = 0;
  if (mapped) {
    map = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, base);
    if (map == MAP_FAILED) return die("mmap");
  }
  uint32_t rounds = 0;
  int rc = 0;
  while (!stop_requested) {
    fill_round(buf, size, seed, rounds, base);
    if (mapped) {
      memcpy(map, buf, size);
      if (msync(map, size, MS_SYNC)) rc = die("msync");
    } else {
      /* A short write is legal (e.g. on a full disk): finish it, never skip the rest. */
      for (size_t done = 0; done < size && !rc;) {
        ssize_t w = pwrite(fd, buf + done, size - done, base + (off_t)done);
        if (w == 0) errno = ENOSPC;
        if (w <= 0) rc = die("pwrite");
        else done += (size_t)w;
      }
    }
    if (rc) break;
    rounds++;
    progress(op, "rounds", rounds);
  }
  printf("writer %s rounds=%u size=%zu offset=%lld\n", op, rounds, size, (long long)base);
  return fflush(stdout) ? 1 : rc;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: qcrash-io write|fsync|migrate|odirect|mmap|buffered|mmap-holes ...\n");
    return 2;
  }
  const char *op = argv[1], *path = argv[2];
  progress_init();
  if (!strcmp(op, "fsync")) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return die("open");
    if (fsync(fd)) return die("fsync");
    return close(fd) ? die("close") : 0;
  }
  if ((!strcmp(op, "migrate") || !strcmp(op, "demigrate")) && argc >= 5) {
    to_blocks = !strcmp(op, "demigrate");
    migrate_root = argv[2];
    int recursive = atoi(argv[3]);
    for (int i = 4; i < argc; i++) migrate_path(argv[i], recursive);
    return fflush(stdout) || walk_failed ? 1 : 0;
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
  if ((!strcmp(op, "odirect") || !strcmp(op, "mmap") || !strcmp(op, "buffered")) && (argc == 5 || argc == 6)) {
    graceful_stop();
    return rewrite(op, path, strtoull(argv[3], 0, 10), strtoull(argv[4], 0, 10), argc == 6 ? strtoll(argv[5], 0, 10) : 0);
  }
  if (!strcmp(op, "mmap-holes") && argc == 5) {
    graceful_stop();
    useconds_t pace = (useconds_t)strtoul(argv[3], 0, 10);
    uint64_t seed = strtoull(argv[4], 0, 10);
    int fd = open(path, O_RDWR);
    if (fd < 0) return die("open");
    struct stat st;
    if (fstat(fd, &st)) return die("fstat");
    off_t page = (off_t)sysconf(_SC_PAGESIZE);
    off_t size = st.st_size & ~(page - 1);
    /* The hole pages as the file has them now (SEEK_HOLE), in file order, before any store. */
    size_t nholes = 0, cap = 0;
    off_t *holes = 0;
    for (off_t pos = 0; pos < size;) {
      off_t hole = lseek(fd, pos, SEEK_HOLE);
      if (hole < 0 || hole >= size) break;
      off_t data = lseek(fd, hole, SEEK_DATA);
      if (data < 0 || data > size) data = size;
      for (off_t at = (hole + page - 1) & ~(page - 1); at + page <= data; at += page) {
        if (nholes == cap) {
          cap = cap ? 2 * cap : 1024;
          holes = realloc(holes, cap * sizeof *holes);
          if (!holes) return die("realloc");
        }
        holes[nholes++] = at;
      }
      pos = data;
    }
    size_t stored = 0;
    if (nholes) {
      unsigned char *map = mmap(0, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (map == MAP_FAILED) return die("mmap");
      uint64_t s = seed;
      for (; stored < nholes && !stop_requested; stored++) {
        map[holes[stored]] = (unsigned char)splitmix64(&s) | 1;
        progress(op, "stored", stored + 1);
        /* Spin only for a hold (it asked for progress lines): elsewhere a
           spinning writer would take the migrating task's CPU on a 1-vCPU guest. */
        if (pace && progress_every > 0) pace_wait(pace);
        else if (pace) usleep(pace);
      }
      if (munmap(map, (size_t)size)) return die("munmap");
    }
    printf("mmap-holes stored=%zu holes=%zu first=%lld last=%lld\n", stored, nholes,
           nholes ? (long long)holes[0] : -1LL, nholes ? (long long)holes[nholes - 1] : -1LL);
    return close(fd) || fflush(stdout) ? die("close") : 0;
  }
  fprintf(stderr, "qcrash-io: bad arguments\n");
  return 2;
}
