// SPDX-License-Identifier: GPL-2.0-only
/*
 * wsload: the benchmark's loopback load generator. The same binary makes the
 * load in every arm (untraced, wstrace, bpftrace), so the arms differ only in
 * what is attached to the kernel. Compiled at bench time into build/bench/.
 *
 * Every mode is bounded by a count and a duration, paced by batches and
 * absolute-deadline sleeps so the rate is a controlled variable (0 = as fast
 * as the machine allows), and prints one JSON line with what it did and the
 * rate it achieved, timed from the first operation to the last.
 *
 *   rst        closed-port connects (each: one RST sent, one received in
 *              SYN_SENT); every -l'th op is instead a linger-0 close of an
 *              established connection (RST sent from ESTABLISHED)
 *   churn      connect, accept, client closes first: one TIME_WAIT per op
 *   slowaccept non-blocking connects to small-backlog listeners that accept
 *              only -a per second each; clients close after -H ms. With -W 1
 *              (WebSocket-style) each client sends a request once connected
 *              and the server reads and answers what it accepts: answers to
 *              clients already gone abort on data (reset, no TIME_WAIT)
 *   ackstage   TCP_DEFER_ACCEPT listeners whose accept queue is filled to its
 *              limit before more handshakes send data: drops at the ACK stage
 *              only (none at the SYN stage)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum mode { RST, CHURN, SLOWACCEPT, ACKSTAGE };

struct opts {
	enum mode mode;
	double rate;		/* ops per second, all threads; 0 = unpaced */
	double seconds;		/* hard stop */
	long count;		/* ops, all threads */
	int threads;
	int port;		/* first listener port */
	int closed_port;
	int linger_every;	/* rst: 0 = no linger-0 ops */
	int dests;		/* churn: listener ports per thread */
	int backlog;
	double accept_rate;	/* slowaccept: accepts/s per listener */
	int listeners;		/* slowaccept */
	int hold_ms;		/* slowaccept */
	int answer;		/* slowaccept: clients send a request, the server answers (-W 1) */
};

static struct opts o = {
	.mode = RST, .rate = 0, .seconds = 10, .count = 100000, .threads = 1,
	.port = 20000, .closed_port = 9, .linger_every = 0, .dests = 4,
	.backlog = 8, .accept_rate = 200, .listeners = 4, .hold_ms = 100,
};

/* Totals over all threads. */
static atomic_long ops, refused, linger0, closes, connects, accepted, errors, cycles;
static atomic_int stop;
static int last_errno;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	struct timespec ts = { .tv_sec = (time_t)t, .tv_nsec = (long)((t - (time_t)t) * 1e9) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void fail(const char *what)
{
	fprintf(stderr, "wsload: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void note_error(void)
{
	last_errno = errno;
	atomic_fetch_add(&errors, 1);
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int listener(int port, int backlog, int defer_accept)
{
	struct sockaddr_in a = loopback(port);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		fail("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (defer_accept && setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_accept, sizeof(defer_accept)))
		fail("TCP_DEFER_ACCEPT");
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)))
		fail("bind");
	if (listen(fd, backlog))
		fail("listen");
	return fd;
}

static int connect_to(int port, int flags)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM | flags, 0);

	if (fd < 0) {
		note_error();
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS) {
		int e = errno;

		close(fd);
		errno = e;
		return -2;
	}
	return fd;
}

/*
 * A blocking connect that gives up after `ms`: a SYN dropped at a full queue
 * would otherwise hold the caller for the SYN retries (about two minutes).
 */
static int connect_within(int port, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int e = errno;

		close(fd);
		errno = e;
		return -2;
	}
	return fd;
}

/* Accepts and closes whatever is queued; returns how many. */
static long drain(int lfd)
{
	long n = 0;
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		close(fd);
		n++;
	}
	return n;
}

static void linger_close(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

/*
 * Paces one thread: `batch` ops per step, each step due at start + k*batch/rate.
 * A thread that falls behind by more than 50 ms restarts its schedule rather
 * than bursting to catch up, so the achieved rate is what it really kept.
 */
struct pacer {
	double start, rate, due;
	long batch;
};

static struct pacer pacer_new(double rate, long unpaced_batch)
{
	struct pacer p = { .start = now(), .rate = rate };

	p.batch = rate > 0 ? (long)(rate / 1000) : unpaced_batch;
	if (p.batch < 1)
		p.batch = 1;
	p.due = p.start;
	return p;
}

static void pacer_wait(struct pacer *p)
{
	double t;

	if (p->rate <= 0)
		return;
	p->due += p->batch / p->rate;
	t = now();
	if (p->due > t)
		sleep_until(p->due);
	else if (t - p->due > 0.05)
		p->due = t;
}

struct worker {
	pthread_t th;
	int id;
	long quota;		/* ops for this thread */
	double rate;		/* ops/s for this thread */
	double deadline;
	double ended;		/* when its last op finished */
};

static void *rst_worker(void *arg)
{
	struct worker *w = arg;
	int lfd = o.linger_every ? listener(o.port + w->id, 4096, 0) : -1;
	struct pacer p = pacer_new(w->rate, 64);
	long i = 0;

	while (i < w->quota && !atomic_load(&stop)) {
		for (long b = 0; b < p.batch && i < w->quota; b++, i++) {
			if (o.linger_every && i % o.linger_every == o.linger_every - 1) {
				int fd = connect_to(o.port + w->id, 0);

				if (fd < 0) {
					if (fd == -2)
						note_error();
					continue;
				}
				linger_close(fd);
				atomic_fetch_add(&linger0, 1);
			} else {
				int fd = connect_to(o.closed_port, 0);

				if (fd == -2 && errno == ECONNREFUSED)
					atomic_fetch_add(&refused, 1);
				else if (fd >= 0) {
					close(fd);
					errno = EISCONN;
					note_error();
				} else if (fd == -2)
					note_error();
			}
			atomic_fetch_add(&ops, 1);
		}
		if (lfd >= 0)
			atomic_fetch_add(&accepted, drain(lfd));
		if (now() > w->deadline)
			break;
		pacer_wait(&p);
	}
	w->ended = now();
	if (lfd >= 0) {
		atomic_fetch_add(&accepted, drain(lfd));
		close(lfd);
	}
	return NULL;
}

static void *churn_worker(void *arg)
{
	struct worker *w = arg;
	int *lfds = calloc(o.dests, sizeof(int));
	struct pacer p = pacer_new(w->rate, 64);
	long i = 0;

	for (int d = 0; d < o.dests; d++)
		lfds[d] = listener(o.port + w->id * o.dests + d, 4096, 0);
	while (i < w->quota && !atomic_load(&stop)) {
		for (long b = 0; b < p.batch && i < w->quota; b++, i++) {
			int d = i % o.dests;
			int c = connect_to(o.port + w->id * o.dests + d, 0), s;

			atomic_fetch_add(&ops, 1);
			if (c < 0) {
				if (c == -2)
					note_error();
				continue;
			}
			s = accept4(lfds[d], NULL, NULL, 0);
			close(c);	/* the client closes first: it ends in TIME_WAIT */
			atomic_fetch_add(&closes, 1);
			if (s >= 0) {
				close(s);
				atomic_fetch_add(&accepted, 1);
			} else {
				note_error();
			}
		}
		if (now() > w->deadline)
			break;
		pacer_wait(&p);
	}
	w->ended = now();
	for (int d = 0; d < o.dests; d++)
		close(lfds[d]);
	free(lfds);
	return NULL;
}

/* slowaccept: the acceptor thread, paced per listener. */
static int *slow_lfds;

static void *slow_acceptor(void *arg)
{
	double start = now(), credit_at = start;
	double credit = 0;

	(void)arg;
	while (!atomic_load(&stop)) {
		double t = now();

		credit += (t - credit_at) * o.accept_rate;
		credit_at = t;
		while (credit >= 1) {
			for (int l = 0; l < o.listeners; l++) {
				int fd = accept4(slow_lfds[l], NULL, NULL, SOCK_NONBLOCK);

				if (fd >= 0) {
					if (o.answer) {
						/* Read the request so close() sends a FIN, not a reset for unread data. */
						char req[256];
						static const char ans[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";

						while (recv(fd, req, sizeof(req), MSG_DONTWAIT) > 0)
							;
						(void)!send(fd, ans, sizeof(ans) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
					}
					close(fd);
					atomic_fetch_add(&accepted, 1);
				}
			}
			credit -= 1;
		}
		sleep_until(t + 0.001);
	}
	return NULL;
}

static void *slow_client(void *arg)
{
	struct worker *w = arg;
	struct pacer p = pacer_new(w->rate, 32);
	/* Open sockets, oldest first, closed once older than hold_ms. */
	long cap = 1 << 20, head = 0, tail = 0, i = 0;
	int *fds = malloc(cap * sizeof(int));
	double *opened = malloc(cap * sizeof(double));
	double hold = o.hold_ms / 1000.0;

	while (i < w->quota && !atomic_load(&stop)) {
		double t;

		for (long b = 0; b < p.batch && i < w->quota; b++, i++) {
			int fd = connect_to(o.port + (int)(i % o.listeners), SOCK_NONBLOCK);

			atomic_fetch_add(&ops, 1);
			atomic_fetch_add(&connects, 1);
			if (fd < 0) {
				if (fd == -2)
					note_error();
				continue;
			}
			if (o.answer) {
				/* Sent if the handshake is already done (loopback, queue not full), else never. */
				static const char req[] = "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";

				(void)!send(fd, req, sizeof(req) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			}
			if (tail - head == cap) {
				close(fds[head % cap]);
				head++;
			}
			fds[tail % cap] = fd;
			opened[tail % cap] = now();
			tail++;
		}
		t = now();
		while (head < tail && t - opened[head % cap] >= hold) {
			close(fds[head % cap]);
			atomic_fetch_add(&closes, 1);
			head++;
		}
		if (t > w->deadline)
			break;
		pacer_wait(&p);
	}
	w->ended = now();
	/* Let the last ones live their hold time too, so every op is treated alike. */
	while (head < tail) {
		double due = opened[head % cap] + hold;

		if (due > now())
			sleep_until(due);
		close(fds[head % cap]);
		atomic_fetch_add(&closes, 1);
		head++;
	}
	free(fds);
	free(opened);
	return NULL;
}

/*
 * ackstage: per cycle, `backlog` clients complete a handshake and send a byte
 * (TCP_DEFER_ACCEPT queues a child only when data arrives), which fills the
 * accept queue to its limit; then `extra` more complete handshakes (the SYN
 * check passes: depth == limit is not full) and send a byte: the first makes
 * the queue full, each later one is dropped at the ACK stage. Then every child
 * is accepted and closed, and every client closed with a reset.
 * ops counts the drops the cycle was built to cause.
 */
static void *ackstage_worker(void *arg)
{
	struct worker *w = arg;
	int port = o.port + w->id;
	int lfd = listener(port, o.backlog, 30);
	int extra = o.backlog / 2 + 1;
	int total = o.backlog + extra;
	int *c = malloc(total * sizeof(int));
	long per_cycle = extra - 1;
	struct pacer p = pacer_new(w->rate > 0 ? w->rate / per_cycle : 0, 1);
	long done = 0;

	p.batch = 1;
	while (done < w->quota && !atomic_load(&stop)) {
		int n = 0;

		for (int k = 0; k < total && !atomic_load(&stop); k++) {
			int fd = connect_within(port, 250);

			/* A SYN dropped (the machine was too slow to keep the queue
			 * below its limit): end the cycle; ListenOverflows then exceeds
			 * the drops built, and the report says so instead of a ratio. */
			if (fd < 0) {
				note_error();
				break;
			}
			c[n++] = fd;
			atomic_fetch_add(&connects, 1);
			/* The filling clients send at once; the extra ones after all have connected. */
			if (k < o.backlog && send(fd, "x", 1, 0) != 1)
				note_error();
		}
		for (int k = o.backlog; k < n; k++)
			if (send(c[k], "x", 1, 0) != 1)
				note_error();
		atomic_fetch_add(&accepted, drain(lfd));
		for (int k = 0; k < n; k++)
			linger_close(c[k]);
		done += per_cycle;
		atomic_fetch_add(&ops, per_cycle);
		atomic_fetch_add(&cycles, 1);
		if (now() > w->deadline)
			break;
		pacer_wait(&p);
	}
	w->ended = now();
	atomic_fetch_add(&accepted, drain(lfd));
	close(lfd);
	free(c);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: wsload rst|churn|slowaccept|ackstage [-r RATE] [-d SECONDS] [-n COUNT] [-t THREADS]\n"
		"              [-p PORT] [-c CLOSED_PORT] [-l LINGER_EVERY] [-D DESTS] [-b BACKLOG]\n"
		"              [-a ACCEPTS_PER_S] [-L LISTENERS] [-H HOLD_MS] [-W 1]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	const char *names[] = { "rst", "churn", "slowaccept", "ackstage" };
	void *(*fn[])(void *) = { rst_worker, churn_worker, slow_client, ackstage_worker };
	struct worker *w;
	struct rusage ru;
	struct rlimit nofile;
	pthread_t acceptor;
	double t0, t1;
	int opt, m = -1;

	if (argc < 2)
		usage();
	for (int i = 0; i < 4; i++)
		if (!strcmp(argv[1], names[i]))
			m = i;
	if (m < 0)
		usage();
	o.mode = m;
	optind = 2;
	while ((opt = getopt(argc, argv, "r:d:n:t:p:c:l:D:b:a:L:H:W:")) != -1) {
		switch (opt) {
		case 'r': o.rate = atof(optarg); break;
		case 'd': o.seconds = atof(optarg); break;
		case 'n': o.count = atol(optarg); break;
		case 't': o.threads = atoi(optarg); break;
		case 'p': o.port = atoi(optarg); break;
		case 'c': o.closed_port = atoi(optarg); break;
		case 'l': o.linger_every = atoi(optarg); break;
		case 'D': o.dests = atoi(optarg); break;
		case 'b': o.backlog = atoi(optarg); break;
		case 'a': o.accept_rate = atof(optarg); break;
		case 'L': o.listeners = atoi(optarg); break;
		case 'H': o.hold_ms = atoi(optarg); break;
		case 'W': o.answer = atoi(optarg); break;
		default: usage();
		}
	}
	if (o.threads < 1 || o.count < 1 || o.seconds <= 0 || o.dests < 1 || o.listeners < 1 || o.backlog < 2)
		usage();

	/* slowaccept holds a socket per connect for hold_ms: lift the soft fd limit. */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	if (o.mode == SLOWACCEPT) {
		slow_lfds = calloc(o.listeners, sizeof(int));
		for (int l = 0; l < o.listeners; l++)
			slow_lfds[l] = listener(o.port + l, o.backlog, 0);
		pthread_create(&acceptor, NULL, slow_acceptor, NULL);
	}
	/* Last resort against a syscall that never returns: die (the bench reports it) rather than hang the run. */
	alarm((unsigned)o.seconds + 30);
	w = calloc(o.threads, sizeof(*w));
	t0 = now();
	for (int i = 0; i < o.threads; i++) {
		w[i].id = i;
		w[i].quota = o.count / o.threads + (i < o.count % o.threads);
		w[i].rate = o.rate / o.threads;
		w[i].deadline = t0 + o.seconds;
		pthread_create(&w[i].th, NULL, fn[m], &w[i]);
	}
	t1 = t0;
	for (int i = 0; i < o.threads; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].ended > t1)
			t1 = w[i].ended;
	}
	if (o.mode == SLOWACCEPT) {
		atomic_store(&stop, 1);
		pthread_join(acceptor, NULL);
		/* Accept what is left before closing, so no queued child is reset. */
		for (int l = 0; l < o.listeners; l++) {
			atomic_fetch_add(&accepted, drain(slow_lfds[l]));
			close(slow_lfds[l]);
		}
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"mode\":\"%s\",\"ops\":%ld,\"seconds\":%.6f,\"rate\":%.1f,\"target\":%.1f,\"threads\":%d,"
	       "\"cpuSeconds\":%.6f,"
	       "\"refused\":%ld,\"linger0\":%ld,\"closes\":%ld,\"connects\":%ld,\"accepted\":%ld,\"cycles\":%ld,"
	       "\"errors\":%ld,\"lastError\":\"%s\"}\n",
	       names[m], atomic_load(&ops), t1 - t0, atomic_load(&ops) / (t1 - t0), o.rate, o.threads,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
	       atomic_load(&refused), atomic_load(&linger0), atomic_load(&closes), atomic_load(&connects),
	       atomic_load(&accepted), atomic_load(&cycles), atomic_load(&errors),
	       last_errno ? strerror(last_errno) : "");
	return 0;
}
