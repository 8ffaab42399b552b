/*
 * qcrash-writeback: write back the test disk's dirty buffers in a loop,
 * beside a migration, until SIGTERM. Metadata a kernel dirties outside a
 * journal handle sits in the block device's page cache until writeback;
 * this puts it on the disk at once, ahead of the journal commit that
 * should cover it (with mount -o commit=30 that commit comes much later).
 *
 *   qcrash-writeback DEV fsync|range PAUSE_US
 *
 * fsync: fsync(2) of the device: its dirty pages written, then a cache
 *        flush (the writes are durable; each round is a flush in a write log).
 * range: sync_file_range(2) over the whole device: written and waited on,
 *        no cache flush (a write log keeps its flush epochs).
 * Neither asks the filesystem for anything. BLKFLSBUF (blockdev
 * --flushbufs) would not do: on a mounted device it syncs the filesystem
 * (fsync_bdev -> sync_filesystem), which commits the journal.
 *
 * On SIGTERM it finishes its round and prints "flush-loop rounds=N" (exit
 * 0); a failed call prints "flush-loop error ERRNO rounds=N" (exit 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[2], "fsync") && strcmp(argv[2], "range"))) {
    fprintf(stderr, "usage: qcrash-writeback DEV fsync|range PAUSE_US\n");
    return 2;
  }
  int range = !strcmp(argv[2], "range");
  useconds_t pause = (useconds_t)strtoul(argv[3], NULL, 10);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) {
    printf("flush-loop error %d rounds=0\n", errno);
    return 1;
  }
  unsigned long rounds = 0;
  while (!stop) {
    int r = range ? sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) : fsync(fd);
    if (r < 0 && errno != EINTR) {
      printf("flush-loop error %d rounds=%lu\n", errno, rounds);
      return 1;
    }
    rounds++;
    if (pause && !stop) usleep(pause);
  }
  printf("flush-loop rounds=%lu\n", rounds);
  return 0;
}
