/* channels.c: see channels.h. */
#include "migration/channels.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "machine/vm.h"
#include "migration/vmstate.h"
#include "util/le.h"
#include "util/log.h"

#define CHANNELS_VERSION 1
#define ACCEPT_TIMEOUT_MS 10000

/* ---- source ---------------------------------------------------------------------- */

int mig_channels_open(struct mig_channels *c, unsigned n, const struct mig_address *addr,
		      int stall_ms, struct mig_writer *main_w, struct ram_codec *main_codec,
		      const struct ram_codec_params *params, uint64_t ram_size, struct error *err)
{
	memset(c, 0, sizeof(*c));
	c->n = 1;
	c->w[0] = main_w;
	c->codec[0] = main_codec;
	c->fds[0] = -1;
	if (n <= 1)
		return 0;
	if (n > MIG_MAX_CHANNELS)
		return error_set(err, EINVAL, "at most %d channels", MIG_MAX_CHANNELS);
	uint64_t session = 0;
	if (getrandom(&session, sizeof(session), 0) != sizeof(session))
		session = (uint64_t)monotonic_ns();
	uint8_t p[12];
	put_le32(p, n);
	put_le64(p + 4, session);
	if (mig_write_section(main_w, MIG_SEC_CHANNELS, 0, CHANNELS_VERSION, p, sizeof(p)) < 0 ||
	    mig_flush(main_w) < 0)
		return mig_writer_status(main_w, err);
	main_codec->part = 0;
	main_codec->nparts = n;
	for (unsigned i = 1; i < n; i++) {
		int fd = mig_connect(addr, ACCEPT_TIMEOUT_MS, stall_ms, err);
		if (fd < 0)
			return error_wrap(err, "channel %u", i);
		c->fds[i] = fd;
		c->n = i + 1;
		int rc = mig_writer_init(&c->aux[i], fd, true, err);
		if (rc) {
			close(fd);
			c->fds[i] = -1;
			c->n = i;
			return rc;
		}
		c->w[i] = &c->aux[i];
		rc = ram_codec_init(&c->aux_codec[i], params, ram_size, err);
		if (rc)
			return rc;
		c->codec[i] = &c->aux_codec[i];
		c->aux_codec[i].part = i;
		c->aux_codec[i].nparts = n;
		c->aux_codec[i].bandwidth = main_codec->bandwidth;
		put_le32(p, i);
		if (mig_write_header(c->w[i]) < 0 ||
		    mig_write_section(c->w[i], MIG_SEC_CHANNEL, 0, CHANNELS_VERSION, p, sizeof(p)) < 0)
			return mig_writer_status(c->w[i], err);
	}
	log_info("migrating over %u connections", n);
	return 0;
}

struct pass_job {
	struct mig_channels *c;
	unsigned index;
	struct vm *vm;
	const uint64_t *bitmap;
	struct ram_stats stats;
	struct error err;
	int rc;
};

static void *pass_main(void *arg)
{
	struct pass_job *j = arg;
	struct mig_channels *c = j->c;
	j->rc = vmstate_save_ram_coded(j->vm, c->w[j->index], j->bitmap, c->codec[j->index],
				       &j->stats, &j->err);
	if (!j->rc && mig_flush(c->w[j->index]) < 0)
		j->rc = mig_writer_status(c->w[j->index], &j->err);
	return NULL;
}

int mig_channels_send(struct mig_channels *c, struct vm *vm, const uint64_t *bitmap,
		      struct ram_stats *stats, struct error *err)
{
	struct pass_job jobs[MIG_MAX_CHANNELS];
	pthread_t threads[MIG_MAX_CHANNELS];
	bool started[MIG_MAX_CHANNELS] = { false };
	for (unsigned i = 0; i < c->n; i++) {
		jobs[i] = (struct pass_job){ .c = c, .index = i, .vm = vm, .bitmap = bitmap };
		if (i > 0) {
			c->codec[i]->bandwidth = c->codec[0]->bandwidth;
			started[i] = pthread_create(&threads[i], NULL, pass_main, &jobs[i]) == 0;
			if (!started[i])
				pass_main(&jobs[i]);    /* no thread: do it here, in turn */
		}
	}
	pass_main(&jobs[0]);
	int rc = 0;
	for (unsigned i = 0; i < c->n; i++) {
		if (started[i])
			pthread_join(threads[i], NULL);
		stats->pages_data += jobs[i].stats.pages_data;
		stats->pages_zero += jobs[i].stats.pages_zero;
		stats->pages_skipped += jobs[i].stats.pages_skipped;
		if (jobs[i].rc && !rc) {
			rc = jobs[i].rc;
			*err = jobs[i].err;
			if (i)
				error_wrap(err, "channel %u", i);
		}
	}
	return rc;
}

int mig_channels_end(struct mig_channels *c, struct error *err)
{
	if (c->ended)
		return 0;
	for (unsigned i = 1; i < c->n; i++)
		if (mig_write_end(c->w[i]) < 0)
			return error_wrap(err, "channel %u: %s", i,
					  (mig_writer_status(c->w[i], err), err->msg));
	c->ended = true;
	return 0;
}

void mig_channels_abort(struct mig_channels *c, int code, const char *why)
{
	for (unsigned i = 1; i < c->n; i++) {
		if (c->w[i])
			mig_writer_abort(c->w[i], code, why);
		if (c->fds[i] >= 0)
			shutdown(c->fds[i], SHUT_RDWR);
	}
}

uint64_t mig_channels_aux_bytes(struct mig_channels *c)
{
	uint64_t bytes = 0;
	for (unsigned i = 1; i < c->n; i++)
		if (c->w[i])
			bytes += __atomic_load_n(&c->w[i]->bytes, __ATOMIC_RELAXED);
	return bytes;
}

void mig_channels_close(struct mig_channels *c)
{
	for (unsigned i = 1; i < c->n; i++) {
		if (c->w[i])
			mig_writer_free(c->w[i]);
		if (c->codec[i])
			ram_codec_free(c->codec[i]);
		if (c->fds[i] >= 0)
			close(c->fds[i]);
		c->w[i] = NULL;
		c->codec[i] = NULL;
		c->fds[i] = -1;
	}
	c->n = 1;
}

/* ---- destination ------------------------------------------------------------------ */

struct reader_job {
	struct mig_channels_in *in;
	unsigned index;
	uint64_t session;
};

/* Applies one channel's stream: CHANNEL, then RAM sections, then END. */
static int read_channel(struct mig_channels_in *in, unsigned i, uint64_t session,
			struct error *err)
{
	struct mig_reader r;
	int rc = mig_reader_init(&r, in->fds[i], "a migration channel", err);
	if (rc)
		return rc;
	rc = mig_read_header(&r, err);
	struct mig_section s;
	if (!rc && (rc = mig_read_section(&r, &s, err)) == 0)
		rc = error_set(err, EPROTO, "a migration channel ended before saying which it is");
	if (rc > 0) {
		rc = 0;
		if (s.type != MIG_SEC_CHANNEL || s.length != 12 || get_le64(s.payload + 4) != session)
			rc = error_set(err, EPROTO, "a connection that is not a channel of this "
				       "migration");
		else if (get_le32(s.payload) != i)
			rc = error_set(err, EPROTO, "channel %u came as number %u",
				       get_le32(s.payload), i);
	}
	struct vmstate_loader l;
	vmstate_loader_init(&l, in->vm, false);
	l.config_checked = true;
	l.live = true;
	while (!rc) {
		rc = mig_read_section(&r, &s, err);
		if (rc == 0)
			break;
		if (rc < 0)
			break;
		rc = s.type == MIG_SEC_RAM ? vmstate_load_section(&l, &s, err)
			: error_set(err, EPROTO, "a %s section on a channel", mig_section_name(s.type));
	}
	in->pages[i] = l.ram.pages_data + l.ram.pages_zero;
	vmstate_loader_free(&l);
	mig_reader_free(&r);
	return rc;
}

static void *reader_main(void *arg)
{
	struct reader_job *j = arg;
	struct mig_channels_in *in = j->in;
	in->rc[j->index] = read_channel(in, j->index, j->session, &in->err[j->index]);
	if (in->rc[j->index])
		error_wrap(&in->err[j->index], "channel %u", j->index);
	free(j);
	return NULL;
}

int mig_channels_accept(struct mig_channels_in *in, struct vm *vm, int listen_fd,
			const struct mig_section *s, int stall_ms, struct error *err)
{
	if (in->n > 1)
		return error_set(err, EPROTO, "a second CHANNELS section");
	if (s->version != CHANNELS_VERSION || s->length != 12)
		return error_set(err, EPROTO, "CHANNELS section version %u of %llu bytes",
				 s->version, (unsigned long long)s->length);
	uint32_t n = get_le32(s->payload);
	uint64_t session = get_le64(s->payload + 4);
	if (n < 2 || n > MIG_MAX_CHANNELS)
		return error_set(err, EPROTO, "%u channels: this tern takes 2 to %d", n,
				 MIG_MAX_CHANNELS);
	if (listen_fd < 0)
		return error_set(err, EPROTO, "channels where no more connections can come");
	in->vm = vm;
	for (unsigned i = 1; i < n; i++) {
		int fd = mig_accept(listen_fd, ACCEPT_TIMEOUT_MS, stall_ms, err);
		if (fd < 0)
			return error_wrap(err, "channel %u", i);
		in->fds[i] = fd;
		in->n = i + 1;
		struct reader_job *j = malloc(sizeof(*j));
		if (j)
			*j = (struct reader_job){ .in = in, .index = i, .session = session };
		int rc = j ? pthread_create(&in->threads[i], NULL, reader_main, j) : ENOMEM;
		if (rc) {
			free(j);
			close(fd);
			in->fds[i] = -1;
			in->n = i;
			return error_errno(err, rc, "starting the reader of channel %u", i);
		}
	}
	log_info("incoming migration over %u connections", n);
	return 0;
}

void mig_channels_stop(struct mig_channels_in *in)
{
	for (unsigned i = 1; i < in->n; i++)
		if (in->fds[i] >= 0)
			shutdown(in->fds[i], SHUT_RDWR);
	struct error ignored = { 0 };
	mig_channels_join(in, &ignored);
}

int mig_channels_join(struct mig_channels_in *in, struct error *err)
{
	int rc = 0;
	for (unsigned i = 1; i < in->n; i++) {
		pthread_join(in->threads[i], NULL);
		close(in->fds[i]);
		in->fds[i] = -1;
		if (in->rc[i] && !rc) {
			rc = in->rc[i];
			*err = in->err[i];
		}
	}
	in->n = 1;
	return rc;
}
