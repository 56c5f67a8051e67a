/* postcopy_dst.c: see postcopy_dst.h. Two threads: the fault thread turns
 * userfaultfd faults into REQUEST frames (or, for a page the source does
 * not owe, a zero page); the receive thread installs the pages of the
 * post-copy stream with UFFDIO_COPY, and after a broken link waits for the
 * source to come back. Neither may touch guest RAM itself: a fault there
 * would wait for the very thread that has to resolve it. */
#include "migration/postcopy_dst.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "machine/vm.h"
#include "migration/stream.h"
#include "migration/vmstate.h"
#include "util/log.h"

#define STALL_TIMEOUT_MS 10000
#define RESUME_TIMEOUT_MS 10000
#define REQUEST_BATCH 64
#define PREEMPT_ACCEPT_MS 5000

struct postcopy_dst {
	struct vm *vm;
	int uffd;
	int stop_pipe[2];               /* written once to end the fault thread */
	pthread_t fault_thread, receive_thread, preempt_thread;
	bool fault_started, receive_started, preempt_started;
	int preempt_lfd, preempt_fd;    /* the second connection, for requested pages */
	bool preempt_running;           /* under lock: its pages may still come */
	struct mig_address addr;
	char session[64];

	/* Pages still to come: a set bit is cleared once, by the receive
	 * thread, after the page is installed; the fault thread reads it. */
	uint64_t *owed;
	size_t words;
	uint64_t owed_left;             /* atomic: both receiving threads install */
	uint64_t *requested;            /* fault thread only */

	pthread_mutex_t lock;           /* below */
	pthread_cond_t go_cond;         /* went or stopping became true */
	bool went;                      /* GO came: the guest may run here */
	int fd;                         /* -1 while the link is down */
	bool stopping;
	uint64_t pages_requested, pages_background, pages_preempt, zero_faults;
	int64_t started_ns;
};

static bool owed(struct postcopy_dst *p, uint64_t pfn)
{
	/* Set before READY; no fault comes before GO, nor a page. */
	const uint64_t *map = __atomic_load_n(&p->owed, __ATOMIC_ACQUIRE);
	return map && (__atomic_load_n(&map[pfn / 64], __ATOMIC_ACQUIRE) >> (pfn % 64)) & 1;
}

/* ---- faults ----------------------------------------------------------------- */

static int send_requests(struct postcopy_dst *p, const uint64_t *gpas, unsigned n)
{
	uint8_t buf[REQUEST_BATCH * 8];
	for (unsigned i = 0; i < n; i++)
		for (int b = 0; b < 8; b++)
			buf[8 * i + b] = (uint8_t)(gpas[i] >> (8 * b));
	struct error err = { 0 };
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	/* With the link down the request waits: the pages requested and
	 * still owed are asked for again when the source is back. */
	if (p->fd >= 0)
		rc = mig_send_frame_bin(p->fd, MIG_FRAME_REQUEST, buf, n * 8, &err);
	p->pages_requested += n;
	pthread_mutex_unlock(&p->lock);
	if (rc)
		log_warn("post-copy: asking for pages: %s", err.msg);
	return rc;
}

static void zero_page(struct postcopy_dst *p, uint64_t host_addr)
{
	struct uffdio_zeropage z = { .range = { .start = host_addr, .len = GUEST_PAGE_SIZE } };
	while (ioctl(p->uffd, UFFDIO_ZEROPAGE, &z) < 0) {
		if (errno == EAGAIN)
			continue;
		/* EEXIST: the page arrived meanwhile, and that woke the faulter. */
		if (errno != EEXIST)
			log_error("post-copy: zero page at guest 0x%" PRIx64 ": %s",
				  host_addr - (uint64_t)(uintptr_t)p->vm->ram.host + p->vm->ram.base,
				  strerror(errno));
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->zero_faults++;
	pthread_mutex_unlock(&p->lock);
}

static void *fault_main(void *arg)
{
	struct postcopy_dst *p = arg;
	struct guest_ram *ram = &p->vm->ram;
	uint64_t base = (uint64_t)(uintptr_t)ram->host;
	for (;;) {
		struct pollfd fds[2] = { { .fd = p->uffd, .events = POLLIN },
					 { .fd = p->stop_pipe[0], .events = POLLIN } };
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("post-copy: waiting for faults: %s", strerror(errno));
			return NULL;
		}
		if (fds[1].revents)
			return NULL;
		struct uffd_msg msgs[16];
		ssize_t n = read(p->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			log_error("post-copy: reading faults: %s", strerror(errno));
			return NULL;
		}
		uint64_t batch[REQUEST_BATCH];
		unsigned count = 0;
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t addr = msgs[i].arg.pagefault.address & ~(uint64_t)(GUEST_PAGE_SIZE - 1);
			uint64_t pfn = (addr - base) >> GUEST_PAGE_SHIFT;
			if (!owed(p, pfn)) {
				/* Not owed and not here: zero on the source too. */
				zero_page(p, addr);
				continue;
			}
			uint64_t bit = 1ull << (pfn % 64);
			if (p->requested[pfn / 64] & bit)
				continue;    /* on its way; its arrival wakes this faulter too */
			p->requested[pfn / 64] |= bit;
			batch[count++] = ram->base + (pfn << GUEST_PAGE_SHIFT);
			if (count == REQUEST_BATCH) {
				send_requests(p, batch, count);
				count = 0;
			}
		}
		if (count)
			send_requests(p, batch, count);
	}
}

/* ---- pages -------------------------------------------------------------------- */

struct install_ctx {
	struct postcopy_dst *p;
	uint64_t installed;
};

static int install(void *arg, uint64_t gpa, const uint8_t *data)
{
	struct install_ctx *ctx = arg;
	struct postcopy_dst *p = ctx->p;
	struct guest_ram *ram = &p->vm->ram;
	uint64_t pfn = (gpa - ram->base) >> GUEST_PAGE_SHIFT;
	if (!owed(p, pfn))
		return 0;    /* sent again after a reconnect: we have it */
	uint64_t dst = (uint64_t)(uintptr_t)ram->host + (pfn << GUEST_PAGE_SHIFT);
	int rc;
	for (;;) {
		if (data) {
			struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)data,
						 .len = GUEST_PAGE_SIZE };
			rc = ioctl(p->uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = { .range = { .start = dst, .len = GUEST_PAGE_SIZE } };
			rc = ioctl(p->uffd, UFFDIO_ZEROPAGE, &z);
		}
		if (rc == 0 || errno == EEXIST)
			break;
		if (errno != EAGAIN) {
			log_error("post-copy: installing guest page 0x%" PRIx64 ": %s", gpa,
				  strerror(errno));
			return -errno;
		}
	}
	/* Two threads may install the same page (EEXIST for the second):
	 * whoever clears the bit counts it. */
	uint64_t bit = 1ull << (pfn % 64);
	if (__atomic_fetch_and(&p->owed[pfn / 64], ~bit, __ATOMIC_ACQ_REL) & bit) {
		__atomic_fetch_sub(&p->owed_left, 1, __ATOMIC_ACQ_REL);
		ctx->installed++;
	}
	return 0;
}

static uint64_t owed_left(struct postcopy_dst *p)
{
	return __atomic_load_n(&p->owed_left, __ATOMIC_ACQUIRE);
}

/* Reads RAM sections from a post-copy stream until END (0) or a failure;
 * adds the pages it installed to *installed (under lock) as it goes. */
static int install_stream(struct postcopy_dst *p, struct mig_reader *r, uint64_t *installed,
			  struct error *err)
{
	int rc = mig_read_header(r, err);
	while (!rc) {
		struct mig_section s;
		rc = mig_read_section(r, &s, err);
		if (rc <= 0)
			break;
		if (s.type != MIG_SEC_RAM) {
			rc = error_set(err, EPROTO, "a %s section in the post-copy stream",
				       mig_section_name(s.type));
			break;
		}
		struct install_ctx ctx = { p, 0 };
		rc = vmstate_for_each_page(p->vm, &s, install, &ctx, err);
		if (rc && !err->code)
			error_errno(err, -rc, "installing a post-copy page");
		pthread_mutex_lock(&p->lock);
		*installed += ctx.installed;
		pthread_mutex_unlock(&p->lock);
	}
	return rc;
}

/* Reads the post-copy stream until END (0) or a failure (< 0); then waits
 * for the pages still on the preempt connection. */
static int receive_stream(struct postcopy_dst *p, int fd, struct error *err)
{
	struct mig_reader r;
	int rc = mig_reader_init(&r, fd, "the post-copy stream", err);
	if (rc)
		return rc;
	rc = install_stream(p, &r, &p->pages_background, err);
	mig_reader_free(&r);
	/* The background is over; requested pages may still be on the way on
	 * the other connection (the source takes each page for one of them). */
	for (int64_t deadline = monotonic_ns() + (int64_t)STALL_TIMEOUT_MS * 1000000;
	     !rc && owed_left(p) && monotonic_ns() < deadline;) {
		pthread_mutex_lock(&p->lock);
		bool preempt = p->preempt_running;
		pthread_mutex_unlock(&p->lock);
		if (!preempt)
			break;
		usleep(1000);
	}
	if (!rc && owed_left(p))
		rc = error_set(err, EPROTO, "the post-copy stream ended with %" PRIu64
			       " pages still missing", owed_left(p));
	return rc;
}

/* The owed map as the source needs it on a reconnect: a stream of one
 * POSTCOPY section. */
static int send_owed(struct postcopy_dst *p, int fd, struct error *err)
{
	struct mig_writer w;
	int rc = mig_writer_init(&w, fd, false, err);
	if (rc)
		return rc;
	uint64_t *snapshot = malloc(p->words * 8);
	if (!snapshot) {
		mig_writer_free(&w);
		return error_set(err, ENOMEM, "no memory for the post-copy page map");
	}
	for (size_t i = 0; i < p->words; i++)
		snapshot[i] = __atomic_load_n(&p->owed[i], __ATOMIC_ACQUIRE);
	rc = mig_write_header(&w);
	if (!rc)
		rc = vmstate_save_postcopy(p->vm, &w, snapshot, err);
	if (!rc && mig_write_end(&w) < 0)
		rc = mig_writer_status(&w, err);
	free(snapshot);
	mig_writer_free(&w);
	return rc;
}

/* The link is gone: the guest waits, paused, for the source to reconnect
 * on the incoming address. Returns the new connection, or -1 if stopping. */
static int wait_for_source(struct postcopy_dst *p, const char *why)
{
	struct vm *vm = p->vm;
	vm_freeze(vm);
	log_error("post-copy: the link to the source failed (%s); %" PRIu64 " pages are still "
		  "there, so the guest is paused. It continues when the source reconnects: "
		  "tern vm migrate --resume on the source, to %s:%s", why, owed_left(p),
		  p->addr.host, p->addr.port);
	for (;;) {
		struct error err = { 0 };
		int lfd = mig_listen(&p->addr, &err);
		if (lfd < 0) {
			log_error("post-copy: %s; trying again", err.msg);
			sleep(1);
			continue;
		}
		int fd = -1;
		while (fd < 0) {
			pthread_mutex_lock(&p->lock);
			bool stop = p->stopping;
			pthread_mutex_unlock(&p->lock);
			if (stop)
				break;
			fd = mig_accept(lfd, 500, STALL_TIMEOUT_MS, &err);
			if (fd < 0 && err.code != ETIMEDOUT)
				log_warn("post-copy: %s", err.msg);
		}
		close(lfd);
		if (fd < 0)
			return -1;
		uint32_t type;
		char text[MIG_FRAME_MAX];
		int rc = mig_recv_frame(fd, RESUME_TIMEOUT_MS, &type, text, sizeof(text), &err);
		if (rc > 0 && type == MIG_FRAME_RESUME && !strcmp(text, p->session) &&
		    send_owed(p, fd, &err) == 0) {
			log_info("post-copy: the source is back; %" PRIu64 " pages to go",
				 owed_left(p));
			return fd;
		}
		if (rc > 0 && type == MIG_FRAME_RESUME && strcmp(text, p->session))
			error_set(&err, EPERM, "a source of another migration (session %s) tried to "
				  "resume this one", text);
		else if (rc >= 0 && !err.code)
			error_set(&err, EPROTO, "the connection did not start with RESUME");
		struct error e2 = { 0 };
		(void)mig_send_frame(fd, MIG_FRAME_ERROR, err.msg, &e2);
		log_warn("post-copy: refused a connection: %s", err.msg);
		close(fd);
	}
}

/* After a reconnect: the faults that were waiting ask again. */
static void request_again(struct postcopy_dst *p)
{
	uint64_t batch[REQUEST_BATCH];
	unsigned count = 0;
	for (size_t i = 0; i < p->words; i++) {
		/* requested[] belongs to the fault thread; a stale read only
		 * costs a duplicate request, which the source ignores. */
		uint64_t bits = __atomic_load_n(&p->requested[i], __ATOMIC_RELAXED) &
				__atomic_load_n(&p->owed[i], __ATOMIC_ACQUIRE);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			batch[count++] = p->vm->ram.base + ((i * 64 + b) << GUEST_PAGE_SHIFT);
			if (count == REQUEST_BATCH) {
				send_requests(p, batch, count);
				count = 0;
			}
		}
	}
	if (count)
		send_requests(p, batch, count);
}

/* The threads start before GO, where starting them costs no downtime,
 * and wait here for it; false when post-copy ends before it came. */
static bool wait_for_go(struct postcopy_dst *p)
{
	pthread_mutex_lock(&p->lock);
	while (!p->went && !p->stopping)
		pthread_cond_wait(&p->go_cond, &p->lock);
	bool go = p->went && !p->stopping;
	pthread_mutex_unlock(&p->lock);
	return go;
}

static void *receive_main(void *arg)
{
	struct postcopy_dst *p = arg;
	if (!wait_for_go(p))
		return NULL;
	pthread_mutex_lock(&p->lock);
	int fd = p->fd;
	pthread_mutex_unlock(&p->lock);
	for (;;) {
		struct error err = { 0 };
		int rc = receive_stream(p, fd, &err);
		if (rc == 0) {
			struct error e2 = { 0 };
			pthread_mutex_lock(&p->lock);
			if (mig_send_frame(fd, MIG_FRAME_DONE, NULL, &e2) < 0)
				log_warn("post-copy: telling the source all pages arrived: %s", e2.msg);
			log_info("post-copy complete after %lld ms: %" PRIu64 " pages asked for, "
				 "%" PRIu64 " received on the main connection, %" PRIu64 " on the "
				 "preempt one, %" PRIu64 " zero pages filled in here",
				 (long long)(monotonic_ns() - p->started_ns) / 1000000,
				 p->pages_requested, p->pages_background, p->pages_preempt,
				 p->zero_faults);
			p->fd = -1;
			pthread_mutex_unlock(&p->lock);
			close(fd);
			return NULL;
		}
		pthread_mutex_lock(&p->lock);
		bool stop = p->stopping;
		p->fd = -1;
		pthread_mutex_unlock(&p->lock);
		close(fd);
		if (stop)
			return NULL;
		fd = wait_for_source(p, err.msg);
		if (fd < 0)
			return NULL;
		pthread_mutex_lock(&p->lock);
		p->fd = fd;
		pthread_mutex_unlock(&p->lock);
		request_again(p);
		struct error e3 = { 0 };
		if (vm_resume(p->vm, &e3) < 0)
			log_warn("post-copy: resuming the guest: %s", e3.msg);
	}
}

/* The preempt connection: requested pages only, each sent the moment the
 * source has the request. It ends with END after DONE; failing before,
 * it is the link's failure: the main connection is shut too, and the
 * recovery (--resume) goes on with the main connection alone. */
static void *preempt_main(void *arg)
{
	struct postcopy_dst *p = arg;
	struct error err = { 0 };
	/* The source connects after GO: the wait for it starts then. */
	int fd = -1;
	if (wait_for_go(p))
		fd = mig_accept(p->preempt_lfd, PREEMPT_ACCEPT_MS, STALL_TIMEOUT_MS, &err);
	else
		error_set(&err, ECANCELED, "post-copy ended before GO");
	close(p->preempt_lfd);
	p->preempt_lfd = -1;
	int rc = -1;
	if (fd < 0) {
		log_info("post-copy: no preempt connection (%s); requested pages come with the "
			 "rest", err.msg);
		goto out;
	}
	uint32_t type;
	char text[MIG_FRAME_MAX];
	rc = mig_recv_frame(fd, RESUME_TIMEOUT_MS, &type, text, sizeof(text), &err);
	if (rc <= 0 || type != MIG_FRAME_PREEMPT || strcmp(text, p->session)) {
		log_warn("post-copy: refused a preempt connection that is not this migration's");
		rc = -1;
		goto out;
	}
	pthread_mutex_lock(&p->lock);
	bool stop = p->stopping;
	p->preempt_fd = stop ? -1 : fd;
	pthread_mutex_unlock(&p->lock);
	if (stop)
		goto out;
	struct mig_reader r;
	rc = mig_reader_init(&r, fd, "the post-copy preempt stream", &err);
	if (!rc) {
		rc = install_stream(p, &r, &p->pages_preempt, &err);
		mig_reader_free(&r);
	}
	pthread_mutex_lock(&p->lock);
	if (rc < 0 && !p->stopping && owed_left(p)) {
		log_warn("post-copy: the preempt connection failed: %s", err.msg);
		if (p->fd >= 0)
			shutdown(p->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&p->lock);
out:
	pthread_mutex_lock(&p->lock);
	p->preempt_running = false;
	p->preempt_fd = -1;
	pthread_mutex_unlock(&p->lock);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* ---- set-up and teardown -------------------------------------------------------- */

/* Stale copies of the owed pages go, so that the first touch of each
 * faults; those a DISCARD dropped before the pause are gone already. */
static int drop_owed(struct postcopy_dst *p, const uint64_t *dropped, struct error *err)
{
	int64_t t0 = monotonic_ns();
	uint64_t n = 0;
	int rc = guest_ram_drop(&p->vm->ram, p->owed, dropped, &n, err);
	if (!rc)
		log_debug("post-copy: dropped %llu stale pages in %.1f ms (%llu owed)",
			  (unsigned long long)n, (monotonic_ns() - t0) / 1e6,
			  (unsigned long long)p->owed_left);
	if (rc)
		error_wrap(err, "dropping the stale copies of post-copy pages");
	return rc;
}

static int register_ram(struct postcopy_dst *p, struct error *err)
{
	p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (p->uffd < 0)
		return error_errno(err, errno, "userfaultfd (post-copy needs it; as non-root, "
				   "vm.unprivileged_userfaultfd=1)");
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(p->uffd, UFFDIO_API, &api) < 0)
		return error_errno(err, errno, "userfaultfd API handshake");
	struct uffdio_register reg = {
		.range = { .start = (uint64_t)(uintptr_t)p->vm->ram.host, .len = p->vm->ram.size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0)
		return error_errno(err, errno, "registering guest RAM with userfaultfd");
	if (!(reg.ioctls & (1ull << _UFFDIO_COPY)) || !(reg.ioctls & (1ull << _UFFDIO_ZEROPAGE)))
		return error_set(err, ENOTSUP, "userfaultfd cannot copy or zero pages of guest RAM");
	return 0;
}

int postcopy_dst_prepare(struct postcopy_dst **out, struct vm *vm, int listen_fd,
			 const struct mig_address *addr, struct error *err)
{
	struct postcopy_dst *p = calloc(1, sizeof(*p));
	if (!p) {
		if (listen_fd >= 0)
			close(listen_fd);
		return error_set(err, ENOMEM, "no memory for post-copy");
	}
	p->preempt_lfd = listen_fd;
	p->preempt_fd = -1;
	p->vm = vm;
	p->uffd = -1;
	p->stop_pipe[0] = p->stop_pipe[1] = -1;
	p->words = vm->ram.dirty_words;
	p->addr = *addr;
	p->fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->go_cond, NULL);
	*out = p;
	p->requested = calloc(p->words, 8);
	if (!p->requested)
		return error_set(err, ENOMEM, "no memory for post-copy");
	if (pipe2(p->stop_pipe, O_CLOEXEC) < 0)
		return error_errno(err, errno, "pipe for the post-copy fault thread");
	int rc = register_ram(p, err);
	if (rc)
		return rc;
	rc = pthread_create(&p->fault_thread, NULL, fault_main, p);
	if (rc)
		return error_errno(err, rc, "starting the post-copy fault thread");
	p->fault_started = true;
	if (p->preempt_lfd >= 0) {
		p->preempt_running = true;
		rc = pthread_create(&p->preempt_thread, NULL, preempt_main, p);
		if (rc) {
			p->preempt_running = false;
			return error_errno(err, rc, "starting the post-copy preempt thread");
		}
		p->preempt_started = true;
	}
	rc = pthread_create(&p->receive_thread, NULL, receive_main, p);
	if (rc)
		return error_errno(err, rc, "starting the post-copy receive thread");
	p->receive_started = true;
	return 0;
}

int postcopy_dst_owe(struct postcopy_dst *p, uint64_t *owed_map, uint64_t owed_pages,
		     const uint64_t *dropped, struct error *err)
{
	if (p->owed) {
		free(owed_map);
		return error_set(err, EPROTO, "a second map of the pages post-copy owes");
	}
	p->owed_left = owed_pages;
	__atomic_store_n(&p->owed, owed_map, __ATOMIC_RELEASE);
	return drop_owed(p, dropped, err);
}

int postcopy_dst_go(struct postcopy_dst *p, int fd, const char *session, struct error *err)
{
	/* Under the lock: a request for a page (once the caller resumed the
	 * guest) goes after RUNNING. */
	pthread_mutex_lock(&p->lock);
	p->fd = fd;
	snprintf(p->session, sizeof(p->session), "%s", session);
	int rc = mig_send_frame(fd, MIG_FRAME_RUNNING, NULL, err);
	p->started_ns = monotonic_ns();
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void postcopy_dst_receive(struct postcopy_dst *p)
{
	pthread_mutex_lock(&p->lock);
	p->went = true;
	pthread_cond_broadcast(&p->go_cond);
	pthread_mutex_unlock(&p->lock);
	log_info("post-copy: the guest runs here; %" PRIu64 " pages (%" PRIu64 " MiB) follow "
		 "from the source", owed_left(p), (owed_left(p) << GUEST_PAGE_SHIFT) >> 20);
}

void postcopy_dst_destroy(struct postcopy_dst *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->go_cond);
	if (p->fd >= 0)
		shutdown(p->fd, SHUT_RDWR);
	if (p->preempt_fd >= 0)
		shutdown(p->preempt_fd, SHUT_RDWR);
	pthread_mutex_unlock(&p->lock);
	if (p->receive_started)
		pthread_join(p->receive_thread, NULL);
	if (p->preempt_started)
		pthread_join(p->preempt_thread, NULL);
	else if (p->preempt_lfd >= 0)
		close(p->preempt_lfd);
	if (p->stop_pipe[1] >= 0 && write(p->stop_pipe[1], "x", 1) < 0)
		log_warn("post-copy: stopping the fault thread: %s", strerror(errno));
	if (p->fault_started)
		pthread_join(p->fault_thread, NULL);
	if (p->fd >= 0)
		close(p->fd);
	if (p->uffd >= 0)
		close(p->uffd);
	for (int i = 0; i < 2; i++)
		if (p->stop_pipe[i] >= 0)
			close(p->stop_pipe[i]);
	pthread_cond_destroy(&p->go_cond);
	pthread_mutex_destroy(&p->lock);
	free(p->owed);
	free(p->requested);
	free(p);
}
