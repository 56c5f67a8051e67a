/* postcopy_src.c: see postcopy_src.h. A reader thread takes REQUEST
 * frames. With a preempt connection it sends the requested pages still
 * owed on it at once; without, it queues them and this thread sends them
 * before its next background batch (a requested page then waits behind
 * one batch here, and behind whatever the sockets already hold). The owed
 * map is shared under qlock: each page goes once, on one connection. */
#include "migration/postcopy_src.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine/vm.h"
#include "migration/stream.h"
#include "migration/transport.h"
#include "migration/vmstate.h"
#include "util/log.h"

#define BATCH_PAGES 32                  /* 128 KiB behind which a request may wait */
#define QUEUE_CAP 65536
#define DONE_TIMEOUT_MS 60000

struct server {
	struct vm *vm;
	int fd;
	uint64_t *owed;
	struct mig_writer w;
	int preempt_fd;                 /* -1: requested pages go on the main connection */
	struct mig_writer pw;           /* on preempt_fd, written by the reader thread */
	uint64_t preempt_pages;

	pthread_mutex_t qlock;          /* below */
	pthread_cond_t qcond;
	uint64_t queue[QUEUE_CAP];      /* requested page numbers */
	unsigned qhead, qlen;
	bool done, failed;
	struct error reader_err;
	uint64_t requested;
	uint64_t left;                  /* owed pages not yet sent, on either connection */
	uint64_t hint;                  /* 1 + where the background goes next (0: stay) */
};

static bool take_bit(uint64_t *map, uint64_t pfn)
{
	uint64_t bit = 1ull << (pfn % 64);
	if (!(map[pfn / 64] & bit))
		return false;
	map[pfn / 64] &= ~bit;
	return true;
}

/* Requested pages on the preempt connection, at once. A failure there is
 * the link's: both connections go down, and a reconnect (--resume) starts
 * from the destination's own account of what it lacks. */
static int send_preempt(struct server *s, const uint64_t *pfns, unsigned n)
{
	struct ram_stats rs = { 0 };
	struct error err = { 0 };
	int rc = vmstate_save_pages(s->vm, &s->pw, pfns, n, &rs, &err);
	if (!rc && mig_flush(&s->pw) < 0)
		rc = mig_writer_status(&s->pw, &err);
	pthread_mutex_lock(&s->qlock);
	if (rc) {
		if (!s->failed) {
			s->reader_err = err;
			error_wrap(&s->reader_err, "the post-copy preempt connection");
			s->failed = true;
		}
		pthread_cond_broadcast(&s->qcond);
	} else {
		s->preempt_pages += n;
	}
	pthread_mutex_unlock(&s->qlock);
	if (rc) {
		mig_writer_abort(&s->w, err.code ? err.code : EIO, err.msg);
		shutdown(s->fd, SHUT_RDWR);
	}
	return rc;
}

static void *reader_main(void *arg)
{
	struct server *s = arg;
	for (;;) {
		uint32_t type;
		uint8_t buf[MIG_FRAME_MAX];
		size_t len = 0;
		struct error err = { 0 };
		int rc = mig_recv_frame_bin(s->fd, -1, &type, buf, sizeof(buf), &len, &err);
		pthread_mutex_lock(&s->qlock);
		if (rc <= 0 || (type != MIG_FRAME_REQUEST && type != MIG_FRAME_DONE) ||
		    (type == MIG_FRAME_REQUEST && len % 8)) {
			if (rc == 0)
				error_set(&err, ECONNRESET, "the destination closed the connection");
			else if (rc > 0 && type == MIG_FRAME_ERROR)
				error_set(&err, EPROTO, "the destination failed: %.*s", (int)len, buf);
			else if (rc > 0)
				error_set(&err, EPROTO, "the destination sent frame %u during post-copy",
					  type);
			s->reader_err = err;
			s->failed = true;
			pthread_cond_broadcast(&s->qcond);
			pthread_mutex_unlock(&s->qlock);
			/* Unblock a send stuck on the same dead connection. */
			mig_writer_abort(&s->w, err.code ? err.code : EIO, err.msg);
			shutdown(s->fd, SHUT_RDWR);
			return NULL;
		}
		if (type == MIG_FRAME_DONE) {
			s->done = true;
			pthread_cond_broadcast(&s->qcond);
			pthread_mutex_unlock(&s->qlock);
			return NULL;
		}
		struct guest_ram *ram = &s->vm->ram;
		uint64_t now[MIG_FRAME_MAX / 8];
		unsigned n = 0;
		for (size_t i = 0; i < len; i += 8) {
			uint64_t gpa = 0;
			for (int b = 0; b < 8; b++)
				gpa |= (uint64_t)buf[i + b] << (8 * b);
			/* A bogus address is ignored: the background stream still
			 * sends every page that is really owed. */
			if (!guest_ram_contains(ram, gpa))
				continue;
			uint64_t pfn = (gpa - ram->base) >> GUEST_PAGE_SHIFT;
			s->requested++;
			if (s->preempt_fd >= 0) {
				if (take_bit(s->owed, pfn))
					now[n++] = pfn;
			} else if (s->qlen < QUEUE_CAP) {
				s->queue[(s->qhead + s->qlen++) % QUEUE_CAP] = pfn;
			}
		}
		if (n) {
			s->left -= n;
			/* The background follows the guest (see the queue path). */
			s->hint = now[n - 1] + 2;
		}
		pthread_mutex_unlock(&s->qlock);
		if (n && send_preempt(s, now, n) < 0)
			return NULL;
	}
}

/* One RAM section of the given pages, flushed. */
static int send_pages(struct server *s, const uint64_t *pfns, unsigned n, struct error *err)
{
	struct ram_stats rs = { 0 };
	int rc = vmstate_save_pages(s->vm, &s->w, pfns, n, &rs, err);
	if (!rc && mig_flush(&s->w) < 0)
		rc = mig_writer_status(&s->w, err);
	return rc;
}

static void publish(struct server *s, struct postcopy_progress *pr, pthread_mutex_t *lock,
		    uint64_t left)
{
	pthread_mutex_lock(&s->qlock);
	uint64_t requested = s->requested;
	pthread_mutex_unlock(&s->qlock);
	pthread_mutex_lock(lock);
	pr->pages_left = left;
	pr->pages_requested = requested;
	pr->bytes = s->w.bytes;
	pthread_mutex_unlock(lock);
}

int postcopy_serve(struct vm *vm, int fd, int preempt_fd, uint64_t *owed, uint64_t bandwidth,
		   struct postcopy_progress *progress, pthread_mutex_t *lock,
		   struct error *err)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s) {
		if (preempt_fd >= 0)
			close(preempt_fd);
		return error_set(err, ENOMEM, "no memory for post-copy");
	}
	s->vm = vm;
	s->fd = fd;
	s->preempt_fd = -1;
	s->owed = owed;
	pthread_mutex_init(&s->qlock, NULL);
	pthread_cond_init(&s->qcond, NULL);
	int rc = mig_writer_init(&s->w, fd, false, err);
	if (rc) {
		if (preempt_fd >= 0)
			close(preempt_fd);
		free(s);
		return rc;
	}
	mig_writer_set_rate(&s->w, bandwidth);
	if (preempt_fd >= 0) {
		struct error e2 = { 0 };
		if (mig_writer_init(&s->pw, preempt_fd, false, &e2) == 0 &&
		    mig_write_header(&s->pw) == 0) {
			s->preempt_fd = preempt_fd;
		} else {
			log_warn("post-copy: the preempt connection is not usable (%s); requested "
				 "pages go with the rest", e2.msg);
			if (s->pw.buf)
				mig_writer_free(&s->pw);
			close(preempt_fd);
		}
	}

	uint64_t pages = vm->ram.size >> GUEST_PAGE_SHIFT;
	for (size_t i = 0; i < vm->ram.dirty_words; i++)
		s->left += (uint64_t)__builtin_popcountll(owed[i]);
	pthread_t reader;
	rc = pthread_create(&reader, NULL, reader_main, s);
	if (rc) {
		mig_writer_free(&s->w);
		if (s->preempt_fd >= 0) {
			mig_writer_free(&s->pw);
			close(s->preempt_fd);
		}
		free(s);
		return error_errno(err, rc, "starting the post-copy request reader");
	}

	rc = mig_write_header(&s->w) < 0 ? mig_writer_status(&s->w, err) : 0;
	uint64_t cursor = 0, batch[BATCH_PAGES], left;
	for (;;) {
		/* Requested pages first (without a preempt connection). */
		unsigned n = 0;
		pthread_mutex_lock(&s->qlock);
		bool failed = s->failed;
		while (s->qlen && n < BATCH_PAGES) {
			uint64_t pfn = s->queue[s->qhead];
			s->qhead = (s->qhead + 1) % QUEUE_CAP;
			s->qlen--;
			if (take_bit(owed, pfn)) {
				batch[n++] = pfn;
				/* The background follows the guest: what it touches
				 * next is most often what lies after what it just
				 * asked for (as QEMU's source does). */
				cursor = pfn + 1 < pages ? pfn + 1 : 0;
			}
		}
		if (s->hint) {
			cursor = s->hint - 1;
			s->hint = 0;
		}
		/* The background: from the cursor on, round to the start again
		 * (the cursor jumps to requests), until every page went. */
		for (uint64_t scanned = 0; !n && s->left && scanned < pages;) {
			while (cursor < pages && n < BATCH_PAGES) {
				if (!owed[cursor / 64]) {
					uint64_t next = (cursor / 64 + 1) * 64;
					scanned += next - cursor;
					cursor = next;
					continue;
				}
				if (take_bit(owed, cursor))
					batch[n++] = cursor;
				cursor++;
				scanned++;
			}
			if (cursor >= pages)
				cursor = 0;
		}
		s->left -= n;
		left = s->left;
		pthread_mutex_unlock(&s->qlock);
		if (failed) {
			rc = -1;
			break;
		}
		if (!n || rc)
			break;
		rc = send_pages(s, batch, n, err);
		publish(s, progress, lock, left);
	}
	if (!rc && mig_write_end(&s->w) < 0)
		rc = mig_writer_status(&s->w, err);
	if (!rc) {
		/* Every page is on its way; the destination says when it has them. */
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += DONE_TIMEOUT_MS / 1000;
		pthread_mutex_lock(&s->qlock);
		while (!s->done && !s->failed &&
		       pthread_cond_timedwait(&s->qcond, &s->qlock, &deadline) != ETIMEDOUT)
			;
		if (!s->done && !s->failed)
			rc = error_set(err, ETIMEDOUT, "the destination did not confirm it has every "
				       "page within %d s", DONE_TIMEOUT_MS / 1000);
		pthread_mutex_unlock(&s->qlock);
	}
	pthread_mutex_lock(&s->qlock);
	if (s->failed && !s->done) {
		if (s->reader_err.code)
			*err = s->reader_err;
		else if (!err->code)
			error_set(err, EIO, "the post-copy connection failed");
		rc = -(err->code ? err->code : EIO);
	}
	uint64_t preempt_pages = s->preempt_pages;
	pthread_mutex_unlock(&s->qlock);
	if (rc < 0 && !err->code)
		mig_writer_status(&s->w, err);
	shutdown(fd, SHUT_RDWR);
	pthread_join(reader, NULL);
	if (s->preempt_fd >= 0) {
		if (!rc)
			(void)mig_write_end(&s->pw);
		mig_writer_free(&s->pw);
		close(s->preempt_fd);
		log_info("post-copy: %llu requested pages went on the preempt connection",
			 (unsigned long long)preempt_pages);
	}
	pthread_mutex_lock(&s->qlock);
	left = s->left;
	pthread_mutex_unlock(&s->qlock);
	publish(s, progress, lock, left);
	mig_writer_free(&s->w);
	pthread_cond_destroy(&s->qcond);
	pthread_mutex_destroy(&s->qlock);
	free(s);
	return rc < 0 ? rc : 0;
}
