// paced: a fixed-rate HTTP/1.1 load generator without coordinated omission (wrk2 is not in Debian).
//
//   paced HOST PORT PATH RATE SECONDS CONNS REQUESTS.tsv ACKED_UIDS_OUT [LINES_FILE]
//
// Request i is *scheduled* at start + i/RATE whether or not the server has kept up. A due
// request goes out on any idle keep-alive connection (CONNS of them); if all are busy it
// waits, and that wait counts: latency = time its whole response arrived - its scheduled
// send time. A stalled server therefore shows up as a long tail instead of silently lowering
// the offered load. After SECONDS of schedule, outstanding requests get 10 s more; whatever is
// still unanswered then counts as a timeout (its latency as "at least until the end").
// Requests come from gen_bodies.py, one distinct signed body each, both signature headers.
// Prints one JSON line; writes the uid of every 2xx-acknowledged request to ACKED_UIDS_OUT.
//
// End to end (with LINES_FILE, the receiver's output file): paced follows the file with
// inotify from its current end, finds each new line's uid (the phase's tag + 8 digits, the
// request's index), and records when it saw the line. e2e latency = that moment - the
// request's scheduled send time: the whole way from send to a written notification. After the
// last answer it waits up to 10 s more for lines still missing; an acknowledged request whose
// line never appears counts in e2e_missing (and as "at least until the end" in the percentiles).
//
// With PACED_TIMELINE=FILE in the environment it also writes every request's times, to match a
// slow answer with what the server did then (strace -ttt, the server's log): a first line
// "# start_unix_ns N" (the wall clock of request 0's scheduled send), then one line per request:
// index, scheduled send in ms after that, answer latency in ms (-1 unanswered), e2e latency in
// ms (-1 no line), HTTP status.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef struct { char *uid; char *data; size_t len; } req_t;

typedef struct {
    int fd;
    long cur;      // request in flight, -1 when idle
    size_t sent;   // bytes of it written so far
    char *buf; size_t used, cap;
} conn_t;

static req_t *reqs;
static long nreqs;
static const char *host_s;
static int port_n, ep;
static uint64_t start_ns;
static double rate;
static uint64_t *done_ns;   // completion time per request, 0 = unanswered
static int *status_of;      // HTTP status, 0 = transport error / unanswered
static long finished, ok2xx, non2xx, errors, reconnects;
static conn_t **idle;
static int nidle;
// End to end: the output file followed, and when each request's line was seen (0 = not yet).
static int lines_fd = -1, watch_fd = -1;
static char watch_tag;              // its address marks the inotify fd in epoll
static uint64_t *line_ns;
static long lines_seen;
static char *tag; static size_t tag_len;
static char *pending; static size_t pending_used, pending_cap;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t sched_ns(long i) { return start_ns + (uint64_t)((double)i * 1e9 / rate); }

static void die(const char *m) { perror(m); exit(2); }

static void open_conn(conn_t *c) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_n)};
    if (inet_pton(AF_INET, host_s, &a.sin_addr) != 1) die("inet_pton");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd; c->cur = -1; c->sent = 0; c->used = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
}

static void finish(conn_t *c, int status) {
    long i = c->cur;
    done_ns[i] = now_ns();
    status_of[i] = status;
    finished++;
    if (status >= 200 && status < 300) ok2xx++;
    else if (status > 0) non2xx++;
    else errors++;
    c->cur = -1; c->sent = 0; c->used = 0;
}

static void reconnect(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    reconnects++;
    open_conn(c);
}

static void pump_write(conn_t *c) {
    req_t *r = &reqs[c->cur];
    while (c->sent < r->len) {
        ssize_t n = write(c->fd, r->data + c->sent, r->len - c->sent);
        if (n > 0) { c->sent += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return;
        }
        finish(c, 0); reconnect(c); idle[nidle++] = c;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

// 1 when buf holds a whole response; sets status and whether the server closes the connection.
static int parse(conn_t *c, int *status, int *closes) {
    c->buf[c->used] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end || c->used < 12) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    *status = atoi(c->buf + 9);
    long clen = -1;
    int chunked = 0;
    *closes = 0;
    for (char *line = strstr(c->buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (!strncasecmp(h, "content-length:", 15)) clen = atol(h + 15);
        else if (!strncasecmp(h, "transfer-encoding:", 18) && strcasestr(h, "chunked") && strcasestr(h, "chunked") < strstr(h, "\r\n")) chunked = 1;
        else if (!strncasecmp(h, "connection:", 11) && strcasestr(h, "close") && strcasestr(h, "close") < strstr(h, "\r\n")) *closes = 1;
    }
    if (clen >= 0) return c->used >= head + (size_t)clen;
    if (chunked) {
        if (c->used >= head + 5 && !memcmp(c->buf + head, "0\r\n\r\n", 5)) return 1;
        return strstr(c->buf + head, "\r\n0\r\n\r\n") != NULL;
    }
    return 1; // no body framing: a 1xx/204/304-style empty body
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->cap - c->used < 4097) {
            c->cap = c->cap * 2 + 8192;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) die("realloc");
        }
        ssize_t n = read(c->fd, c->buf + c->used, c->cap - c->used - 1);
        if (n > 0) { c->used += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        // EOF or error: the request in flight (if any) failed. A connection with none is
        // already in the idle list (the server closed it while idle, e.g. Herald's idle
        // timeout): adding it again overran the list and corrupted the heap, which lost
        // the last lines of a run.
        int was_busy = c->cur >= 0;
        if (was_busy) finish(c, 0);
        reconnect(c);
        if (was_busy) idle[nidle++] = c;
        return;
    }
    if (c->cur < 0) { c->used = 0; return; }
    int status, closes;
    if (parse(c, &status, &closes)) {
        finish(c, status);
        if (closes) reconnect(c);
        idle[nidle++] = c;
    }
}

// The request a written line belongs to: the index in "<tag><8 digits>", or -1.
static long line_index(const char *line, size_t len) {
    const char *p = memmem(line, len, tag, tag_len);
    if (!p || (size_t)(p - line) + tag_len + 8 > len) return -1;
    long i = 0;
    for (int k = 0; k < 8; k++) {
        char c = p[tag_len + (size_t)k];
        if (c < '0' || c > '9') return -1;
        i = i * 10 + (c - '0');
    }
    return i < nreqs ? i : -1;
}

// Reads what was appended to LINES_FILE since the last call and stamps each whole new line.
static void read_lines(void) {
    if (lines_fd < 0) return;
    for (;;) {
        if (pending_cap - pending_used < 65536) {
            pending_cap = pending_cap * 2 + 65536;
            pending = realloc(pending, pending_cap);
            if (!pending) die("realloc");
        }
        ssize_t n = read(lines_fd, pending + pending_used, pending_cap - pending_used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        pending_used += (size_t)n;
    }
    uint64_t t = now_ns();
    size_t start = 0;
    for (;;) {
        char *nl = memchr(pending + start, '\n', pending_used - start);
        if (!nl) break;
        size_t len = (size_t)(nl - (pending + start));
        long i = line_index(pending + start, len);
        if (i >= 0 && !line_ns[i]) { line_ns[i] = t; lines_seen++; }
        start += len + 1;
    }
    memmove(pending, pending + start, pending_used - start);
    pending_used -= start;
}

static void drain_watch(void) {
    char ev[4096];
    while (read(watch_fd, ev, sizeof ev) > 0) {}
    read_lines();
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 9 && argc != 10) {
        fprintf(stderr, "usage: %s HOST PORT PATH RATE SECONDS CONNS REQUESTS.tsv ACKED_UIDS_OUT [LINES_FILE]\n", argv[0]);
        return 2;
    }
    host_s = argv[1]; port_n = atoi(argv[2]);
    const char *path = argv[3];
    rate = atof(argv[4]);
    double seconds = atof(argv[5]);
    int nconn = atoi(argv[6]);
    long total = (long)(rate * seconds);

    FILE *f = fopen(argv[7], "r");
    if (!f) die(argv[7]);
    reqs = calloc((size_t)total, sizeof *reqs);
    char *line = NULL; size_t cap = 0; ssize_t len;
    while (nreqs < total && (len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n') line[--len] = 0;
        char *uid = strtok(line, "\t"), *js = strtok(NULL, "\t"), *xs = strtok(NULL, "\t"), *body = strtok(NULL, "");
        if (!uid || !js || !xs || !body) { fprintf(stderr, "bad line %ld\n", nreqs + 1); return 2; }
        req_t *r = &reqs[nreqs++];
        r->uid = strdup(uid);
        int n = asprintf(&r->data,
                         "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                         "Jicoo-Webhook-Signature: %s\r\nX-Signature: %s\r\nContent-Length: %zu\r\n\r\n%s",
                         path, host_s, port_n, js, xs, strlen(body), body);
        if (n < 0) die("asprintf");
        r->len = (size_t)n;
    }
    fclose(f);
    if (nreqs < total) { fprintf(stderr, "need %ld requests, file has %ld\n", total, nreqs); return 2; }
    done_ns = calloc((size_t)total, sizeof *done_ns);
    status_of = calloc((size_t)total, sizeof *status_of);

    ep = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    idle = calloc((size_t)nconn, sizeof *idle);
    for (int k = 0; k < nconn; k++) { open_conn(&conns[k]); idle[nidle++] = &conns[k]; }
    line_ns = calloc((size_t)total, sizeof *line_ns);
    if (argc == 10) {
        size_t ulen = strlen(reqs[0].uid);
        if (ulen < 8) { fprintf(stderr, "uid %s has no 8-digit counter\n", reqs[0].uid); return 2; }
        tag = strndup(reqs[0].uid, ulen - 8); tag_len = ulen - 8;
        lines_fd = open(argv[9], O_RDONLY | O_CLOEXEC);
        if (lines_fd < 0) die(argv[9]);
        lseek(lines_fd, 0, SEEK_END);   // only lines written from now on
        watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (watch_fd < 0 || inotify_add_watch(watch_fd, argv[9], IN_MODIFY) < 0) die("inotify");
        struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &watch_tag};
        epoll_ctl(ep, EPOLL_CTL_ADD, watch_fd, &wev);
    }

    start_ns = now_ns() + 1000000; // first request 1 ms from now
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    uint64_t start_unix_ns = (uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec + 1000000;
    uint64_t deadline = start_ns + (uint64_t)(seconds * 1e9) + 10000000000ull;
    long dispatched = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        long due = t < start_ns ? 0 : (long)((double)(t - start_ns) * rate / 1e9) + 1;
        if (due > total) due = total;
        while (dispatched < due && nidle > 0) {
            conn_t *c = idle[--nidle];
            c->cur = dispatched++; c->sent = 0; c->used = 0;
            pump_write(c);
        }
        if (finished == total || t >= deadline) break;
        uint64_t wake = due < total ? sched_ns(due) : deadline;
        struct itimerspec its = {.it_value = {.tv_sec = (time_t)(wake / 1000000000ull), .tv_nsec = (long)(wake % 1000000000ull)}};
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        int n = epoll_wait(ep, evs, 256, -1);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (!c) { uint64_t x; ssize_t r = read(tfd, &x, sizeof x); (void)r; continue; }
            if ((void *)c == &watch_tag) { drain_watch(); continue; }
            if (evs[k].events & EPOLLOUT && c->cur >= 0 && c->sent < reqs[c->cur].len) pump_write(c);
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
    uint64_t end = now_ns();
    // Lines still to come for acknowledged requests: up to 10 s more.
    if (lines_fd >= 0) {
        long want = 0;
        for (long i = 0; i < total; i++) if (status_of[i] >= 200 && status_of[i] < 300) want++;
        uint64_t line_deadline = now_ns() + 10000000000ull;
        read_lines();
        while (lines_seen < want && now_ns() < line_deadline) {
            struct pollfd pfd = {.fd = watch_fd, .events = POLLIN};
            if (poll(&pfd, 1, 100) > 0) drain_watch();
            read_lines();
        }
    }
    uint64_t lines_end = now_ns();

    const char *timeline = getenv("PACED_TIMELINE");
    if (timeline && *timeline) {
        FILE *tl = fopen(timeline, "w");
        if (!tl) die(timeline);
        fprintf(tl, "# start_unix_ns %llu\n", (unsigned long long)start_unix_ns);
        for (long i = 0; i < total; i++) {
            double at = (double)(sched_ns(i) - start_ns) / 1e6;
            double answer = done_ns[i] ? (double)(done_ns[i] - sched_ns(i)) / 1e6 : -1;
            double line_ms = line_ns[i] ? (double)(line_ns[i] - sched_ns(i)) / 1e6 : -1;
            fprintf(tl, "%ld %.3f %.3f %.3f %d\n", i, at, answer, line_ms, status_of[i]);
        }
        fclose(tl);
    }

    long timeouts = total - finished;
    uint64_t *lat = malloc((size_t)total * sizeof *lat);
    for (long i = 0; i < total; i++) lat[i] = (done_ns[i] ? done_ns[i] : end) - sched_ns(i);
    qsort(lat, (size_t)total, sizeof *lat, cmp_u64);
#define PCT(p) (lat[(long)((double)(total - 1) * (p))] / 1e6)
    FILE *out = fopen(argv[8], "w");
    if (!out) die(argv[8]);
    for (long i = 0; i < total; i++)
        if (status_of[i] >= 200 && status_of[i] < 300) fprintf(out, "%s\n", reqs[i].uid);
    fclose(out);
    // Achieved rate: answered requests over the span from the first schedule to the last answer.
    uint64_t last = start_ns;
    for (long i = 0; i < total; i++) if (done_ns[i] > last) last = done_ns[i];
    double p50 = PCT(0.50), p90 = PCT(0.90), p99 = PCT(0.99), p999 = PCT(0.999), pmax = lat[total - 1] / 1e6;
    // End to end over acknowledged requests: scheduled send -> its line seen in LINES_FILE.
    char e2e[256] = "";
    if (lines_fd >= 0) {
        long m = 0, missing = 0;
        for (long i = 0; i < total; i++) {
            if (status_of[i] < 200 || status_of[i] >= 300) continue;
            if (!line_ns[i] && missing++ == 0) fprintf(stderr, "paced: no line seen for %s\n", reqs[i].uid);
            lat[m++] = (line_ns[i] ? line_ns[i] : lines_end) - sched_ns(i);
        }
        if (m > 0) {
            qsort(lat, (size_t)m, sizeof *lat, cmp_u64);
#define EPCT(p) (lat[(long)((double)(m - 1) * (p))] / 1e6)
            snprintf(e2e, sizeof e2e, ",\"e2e_p50_ms\":%.3f,\"e2e_p99_ms\":%.3f,\"e2e_max_ms\":%.3f,\"e2e_missing\":%ld",
                     EPCT(0.50), EPCT(0.99), lat[m - 1] / 1e6, missing);
        }
    }
    printf("{\"tool\":\"paced\",\"target_rps\":%.0f,\"scheduled\":%ld,\"answered\":%ld,\"achieved_rps\":%.1f,"
           "\"ok_2xx\":%ld,\"non_2xx\":%ld,\"errors\":%ld,\"timeouts\":%ld,\"reconnects\":%ld,\"connections\":%d,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f%s}\n",
           rate, total, finished - errors, (double)(finished - errors) / ((double)(last - start_ns) / 1e9),
           ok2xx, non2xx, errors, timeouts, reconnects, nconn,
           p50, p90, p99, p999, pmax, e2e);
    return 0;
}
