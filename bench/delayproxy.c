/* A TCP proxy that delays every byte by a fixed one-way time in each direction (W7).

   Used by bench/w7.py when the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM unset, as in
   some VMs and containers): the worker hosts, each in its own network namespace, connect over
   their veth link to this proxy, which forwards to PostgreSQL after holding each chunk for the
   delay, in both directions, so a request and its answer take one round trip of 2 x delay.

   Usage: delayproxy LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT DELAY_US
   Prints "ready PORT" once listening (LISTEN_PORT 0 picks a free port). Reads lines from its
   standard input: "delay US" changes the one-way delay (for data read from then on); the end
   of its input ends the proxy. Timing comes from a timerfd (microseconds), not from epoll's
   millisecond timeouts. Bytes keep their order; TCP_NODELAY on every socket. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct chunk {
    struct chunk *next;
    uint64_t due;
    size_t len, off;
    char data[];
};

struct conn;

/* One socket of a proxied connection; its queue holds what was read from the other one. */
struct end {
    int fd;
    struct conn *conn;
    struct end *peer;
    struct chunk *head, *tail; /* to be written to fd */
    int peer_eof;              /* the peer's side sent FIN: shut fd's write side once flushed */
    int shut;
    int want_out;
    int read_eof;
};

struct conn {
    struct end a, b;
    struct conn *next, *prev;
    int dead;
};

static int ep, tfd, lfd;
static uint64_t delay_ns;
static struct conn *conns;
/* Connections closed during one batch of events, freed after it (later events may name them). */
static struct conn *graveyard;
static struct sockaddr_in target;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void update(struct end *e) {
    struct epoll_event ev = {0};
    ev.events = (e->read_eof ? 0 : EPOLLIN) | (e->want_out ? EPOLLOUT : 0);
    ev.data.ptr = e;
    epoll_ctl(ep, EPOLL_CTL_MOD, e->fd, &ev);
}

static void free_queue(struct end *e) {
    while (e->head) {
        struct chunk *c = e->head;
        e->head = c->next;
        free(c);
    }
    e->tail = NULL;
}

static void kill_conn(struct conn *c) {
    if (c->dead) return;
    c->dead = 1;
    close(c->a.fd);
    close(c->b.fd);
    free_queue(&c->a);
    free_queue(&c->b);
    if (c->prev) c->prev->next = c->next; else conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = graveyard;
    graveyard = c;
}

static int fcntl_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Write what is due to e->fd; returns -1 when the connection died. */
static int flush(struct end *e, uint64_t now) {
    while (e->head && e->head->due <= now) {
        struct chunk *c = e->head;
        ssize_t n = write(e->fd, c->data + c->off, c->len - c->off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!e->want_out) { e->want_out = 1; update(e); }
                return 0;
            }
            if (errno == EINTR) continue;
            return -1;
        }
        c->off += (size_t)n;
        if (c->off < c->len) continue;
        e->head = c->next;
        if (!e->head) e->tail = NULL;
        free(c);
    }
    if (e->want_out) { e->want_out = 0; update(e); }
    if (!e->head && e->peer_eof && !e->shut) {
        shutdown(e->fd, SHUT_WR);
        e->shut = 1;
    }
    return 0;
}

/* Read from e->fd into the peer's queue. Returns -1 when the connection died. */
static int pump(struct end *e) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(e->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            e->read_eof = 1;
            update(e);
            e->peer->peer_eof = 1;
            return 0;
        }
        struct chunk *c = malloc(sizeof *c + (size_t)n);
        if (!c) return -1;
        c->next = NULL;
        c->len = (size_t)n;
        c->off = 0;
        memcpy(c->data, buf, (size_t)n);
        uint64_t due = now_ns() + delay_ns;
        /* Keep the order when the delay was just lowered. */
        if (e->peer->tail && e->peer->tail->due > due) due = e->peer->tail->due;
        c->due = due;
        if (e->peer->tail) e->peer->tail->next = c; else e->peer->head = c;
        e->peer->tail = c;
        if ((size_t)n < sizeof buf) return 0;
    }
}

static void add_fd(struct end *e) {
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.ptr = e;
    epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev);
}

static void accept_one(void) {
    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) return;
    int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&target, sizeof target) < 0) {
        /* The server is local: a blocking connect is immediate. */
        close(cfd);
        if (sfd >= 0) close(sfd);
        return;
    }
    if (fcntl_nonblock(sfd) < 0) { close(cfd); close(sfd); return; }
    nodelay(cfd);
    nodelay(sfd);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) { close(cfd); close(sfd); return; }
    c->a.fd = cfd; c->a.conn = c; c->a.peer = &c->b;
    c->b.fd = sfd; c->b.conn = c; c->b.peer = &c->a;
    c->next = conns;
    if (conns) conns->prev = c;
    conns = c;
    add_fd(&c->a);
    add_fd(&c->b);
}

static void arm_timer(void) {
    uint64_t first = 0;
    for (struct conn *c = conns; c; c = c->next) {
        struct end *ends[2] = {&c->a, &c->b};
        for (int i = 0; i < 2; i++) {
            struct end *e = ends[i];
            if (e->head && !e->want_out && (!first || e->head->due < first)) first = e->head->due;
        }
    }
    struct itimerspec its = {0};
    if (first) {
        its.it_value.tv_sec = (time_t)(first / 1000000000ull);
        its.it_value.tv_nsec = (long)(first % 1000000000ull);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec) its.it_value.tv_nsec = 1;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int stdin_line(void) {
    static char line[256];
    static size_t used;
    ssize_t n = read(0, line + used, sizeof line - 1 - used);
    if (n <= 0) return -1;
    used += (size_t)n;
    char *nl;
    while ((nl = memchr(line, '\n', used))) {
        *nl = 0;
        unsigned long long us;
        if (sscanf(line, "delay %llu", &us) == 1) {
            delay_ns = us * 1000ull;
            printf("delay %llu\n", us);
            fflush(stdout);
        }
        size_t rest = used - (size_t)(nl + 1 - line);
        memmove(line, nl + 1, rest);
        used = rest;
    }
    if (used == sizeof line - 1) used = 0;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT DELAY_US\n",
                argv[0]);
        return 2;
    }
    /* A peer that vanished must end its connection, not the proxy. */
    signal(SIGPIPE, SIG_IGN);
    delay_ns = strtoull(argv[5], NULL, 10) * 1000ull;
    struct sockaddr_in la = {0};
    la.sin_family = AF_INET;
    la.sin_port = htons((uint16_t)atoi(argv[2]));
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(argv[4]));
    if (inet_pton(AF_INET, argv[1], &la.sin_addr) != 1 ||
        inet_pton(AF_INET, argv[3], &target.sin_addr) != 1) {
        fprintf(stderr, "delayproxy: bad address\n");
        return 2;
    }
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&la, sizeof la) < 0 || listen(lfd, 512) < 0) {
        perror("delayproxy: listen");
        return 1;
    }
    socklen_t alen = sizeof la;
    getsockname(lfd, (struct sockaddr *)&la, &alen);
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.ptr = &lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = &tfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    static int in = 0;
    ev.data.ptr = &in;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready %d\n", ntohs(la.sin_port));
    fflush(stdout);
    struct epoll_event events[128];
    for (;;) {
        arm_timer();
        int n = epoll_wait(ep, events, 128, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("delayproxy: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &lfd) {
                for (int k = 0; k < 64; k++) accept_one();
            } else if (p == &tfd) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0) { /* nothing due */ }
            } else if (p == &in) {
                if (stdin_line() < 0) return 0;
            } else {
                struct end *e = p;
                if (e->conn->dead) continue;
                if ((events[i].events & EPOLLERR) ||
                    ((events[i].events & EPOLLHUP) && e->read_eof)) {
                    /* Closed both ways (or failed): nothing more can pass through it. */
                    kill_conn(e->conn);
                    continue;
                }
                if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !e->read_eof) {
                    if (pump(e) < 0) { kill_conn(e->conn); continue; }
                }
                if (events[i].events & EPOLLOUT) {
                    e->want_out = 0;
                    update(e);
                }
            }
        }
        /* Write everything due, close the pairs that are done both ways. */
        uint64_t now = now_ns();
        struct conn *c = conns;
        while (c) {
            struct conn *next = c->next;
            if (flush(&c->a, now) < 0 || flush(&c->b, now) < 0) {
                kill_conn(c);
            } else if (c->a.shut && c->b.shut) {
                kill_conn(c);
            } else if ((c->a.read_eof && c->b.read_eof) && !c->a.head && !c->b.head) {
                kill_conn(c);
            }
            c = next;
        }
        while (graveyard) {
            struct conn *dead = graveyard;
            graveyard = dead->next;
            free(dead);
        }
    }
}
