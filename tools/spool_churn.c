/* spool_churn: the file-system half of a spool consumer, without an MTA.
 *
 * One thread lists DIR over and over, reads each file it has not taken yet
 * (openat, fstat, read, close) and queues its name; UNLINKERS threads
 * unlinkat the queued names. It stops once COUNT files were read and all of
 * them unlinked. This is ringmail pickup's pattern (one reader, 16 unlink
 * threads, a rescan every 50 ms when idle) with no cleanup, no queue and no
 * SMTP, so tools/spool_churn.sh can show what the churn of the input files
 * alone costs the machine.
 *
 * usage: spool_churn DIR COUNT UNLINKERS
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_CAP 65536
#define TAKEN_CAP (1 << 18)
#define MAX_UNLINKERS 64

static char *queue[QUEUE_CAP];
static long head, tail;
static int reading_done;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static int dir_fd;

/* Names read and not yet unlinked (open addressing; a rescan skips them). */
static char *taken[TAKEN_CAP];
static char tombstone[1];

static unsigned long fnv1a(const char *s) {
  unsigned long x = 1469598103934665603UL;
  while (*s) {
    x ^= (unsigned char)*s++;
    x *= 1099511628211UL;
  }
  return x;
}

static int is_taken(const char *name) {
  for (unsigned long i = fnv1a(name);; i++) {
    char *v = taken[i % TAKEN_CAP];
    if (!v) return 0;
    if (v != tombstone && strcmp(v, name) == 0) return 1;
  }
}

static void take(char *name) {
  for (unsigned long i = fnv1a(name);; i++) {
    char **v = &taken[i % TAKEN_CAP];
    if (!*v || *v == tombstone) {
      *v = name;
      return;
    }
  }
}

static void forget(const char *name) {
  for (unsigned long i = fnv1a(name);; i++) {
    char **v = &taken[i % TAKEN_CAP];
    if (!*v) return;
    if (*v != tombstone && strcmp(*v, name) == 0) {
      *v = tombstone;
      return;
    }
  }
}

static void *unlinker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    while (head == tail && !reading_done) pthread_cond_wait(&more, &lock);
    if (head == tail) {
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    char *name = queue[head++ % QUEUE_CAP];
    pthread_mutex_unlock(&lock);
    if (unlinkat(dir_fd, name, 0) != 0) perror(name);
    pthread_mutex_lock(&lock);
    forget(name);
    pthread_mutex_unlock(&lock);
    free(name);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: spool_churn DIR COUNT UNLINKERS\n");
    return 2;
  }
  long count = atol(argv[2]), read_files = 0;
  int unlinkers = atoi(argv[3]);
  if (count < 1 || unlinkers < 1 || unlinkers > MAX_UNLINKERS || count >= TAKEN_CAP / 2) {
    fprintf(stderr, "spool_churn: COUNT 1..%d, UNLINKERS 1..%d\n", TAKEN_CAP / 2 - 1, MAX_UNLINKERS);
    return 2;
  }
  dir_fd = open(argv[1], O_RDONLY | O_DIRECTORY);
  if (dir_fd < 0) {
    perror(argv[1]);
    return 1;
  }
  pthread_t threads[MAX_UNLINKERS];
  for (int i = 0; i < unlinkers; i++) pthread_create(&threads[i], NULL, unlinker, NULL);
  static char buf[1 << 16];
  while (read_files < count) {
    DIR *d = fdopendir(dup(dir_fd));
    if (!d) {
      perror("fdopendir");
      return 1;
    }
    rewinddir(d);
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL && read_files < count) {
      if (e->d_name[0] == '.') continue;
      pthread_mutex_lock(&lock);
      int busy = is_taken(e->d_name);
      pthread_mutex_unlock(&lock);
      if (busy) continue;
      int fd = openat(dir_fd, e->d_name, O_RDONLY | O_NOFOLLOW);
      if (fd < 0) continue;
      struct stat st;
      if (fstat(fd, &st) != 0) perror(e->d_name);
      while (read(fd, buf, sizeof buf) > 0) {
      }
      close(fd);
      char *name = strdup(e->d_name);
      pthread_mutex_lock(&lock);
      while (tail - head >= QUEUE_CAP) {
        pthread_mutex_unlock(&lock);
        usleep(100);
        pthread_mutex_lock(&lock);
      }
      take(name);
      queue[tail++ % QUEUE_CAP] = name;
      pthread_cond_signal(&more);
      pthread_mutex_unlock(&lock);
      read_files++;
      found++;
    }
    closedir(d);
    if (!found) usleep(50000);
  }
  pthread_mutex_lock(&lock);
  reading_done = 1;
  pthread_cond_broadcast(&more);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < unlinkers; i++) pthread_join(threads[i], NULL);
  return 0;
}
