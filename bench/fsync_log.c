/* An LD_PRELOAD shim for bench/failover_loss.py: after every successful fsync or fdatasync, append
 * "SIZE PATH" of the file to $FSYNC_LOG. What a file held at its last fsync is what a power loss leaves of
 * it at worst, so the benchmark truncates Redis' AOF to those sizes to play a power loss after SIGKILL. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static void note(int fd) {
    const char *log = getenv("FSYNC_LOG");
    if (!log) return;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    char line[4200];
    int len = snprintf(line, sizeof line, "%lld %s\n", (long long)st.st_size, path);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (out < 0) return;
    ssize_t w = write(out, line, len); (void)w;
    close(out);
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    if (r == 0) note(fd);
    return r;
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    if (r == 0) note(fd);
    return r;
}
