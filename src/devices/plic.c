/* plic.c: the RISC-V Platform-Level Interrupt Controller, following the
 * RISC-V PLIC Specification 1.0.0: level-sensitive interrupt gateways
 * (section "Interrupt Gateways"), the memory map of section "Memory Map"
 * (priorities at 0x000000, pending bits at 0x001000, per-context enables at
 * 0x002000 + 0x80 * context, per-context threshold and claim/complete at
 * 0x200000 + 0x1000 * context), priorities and thresholds (sections
 * "Interrupt Priorities", "Priority Thresholds"), and the claim/complete
 * protocol (sections "Interrupt Claim Process", "Interrupt Completion").
 *
 * Choices where the specification leaves room:
 * - Priorities and thresholds are WARL with 3 bits (0..7).
 * - A claim returns the highest-priority source that is pending, enabled
 *   and above the context's threshold (ties go to the lowest id), so a
 *   claim never returns what the context's output line did not announce.
 * - Registers are 32 bits wide. An 8-byte access is two 32-bit accesses,
 *   the lower address first; 1- and 2-byte or misaligned accesses are
 *   ignored (read as 0).
 * - Once a gateway has forwarded a request, the pending bit stays set even
 *   if the line drops before the claim, as the specification describes;
 *   the driver then finds nothing to do.
 *
 * Locking: one mutex guards all state. notify() is called with that mutex
 * held, so it must not call back into the PLIC; in exchange, the sequence
 * of levels each context sees is exactly the sequence of its states. */
#include "devices/plic.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/state.h"

#define PRIORITY_BASE 0x000000u
#define PENDING_BASE 0x001000u
#define ENABLE_BASE 0x002000u
#define ENABLE_STRIDE 0x80u
#define CONTEXT_BASE 0x200000u
#define CONTEXT_STRIDE 0x1000u
#define CONTEXT_THRESHOLD 0x0u
#define CONTEXT_CLAIM 0x4u

#define PRIORITY_MASK 0x7u

_Static_assert(PLIC_MAX_SOURCES <= 64, "source bitmaps are one uint64_t");
_Static_assert(PLIC_MAX_CONTEXTS * ENABLE_STRIDE <= CONTEXT_BASE - ENABLE_BASE,
	       "enable blocks must not reach the context blocks");

struct plic {
	struct device dev;
	pthread_mutex_t lock;
	unsigned num_sources;           /* including the nonexistent source 0 */
	unsigned num_contexts;
	void (*notify)(void *opaque, unsigned context, bool level);
	void *opaque;

	uint64_t valid;                 /* bits of the sources that exist */
	uint64_t level;                 /* lines driven high by their devices */
	uint64_t pending;
	uint64_t in_service;            /* claimed and not yet completed */
	uint8_t priority[PLIC_MAX_SOURCES];
	uint64_t enable[PLIC_MAX_CONTEXTS];
	uint8_t threshold[PLIC_MAX_CONTEXTS];
	bool output[PLIC_MAX_CONTEXTS]; /* as last reported through notify */
};

/* A default mutex only fails here on a corrupted object: continuing would
 * let harts race on claims, so stop loudly instead. */
static void lock(struct plic *p)
{
	int rc = pthread_mutex_lock(&p->lock);
	if (rc) {
		fprintf(stderr, "tern: %s: pthread_mutex_lock: %s\n", p->dev.id, strerror(rc));
		abort();
	}
}

static void unlock(struct plic *p)
{
	int rc = pthread_mutex_unlock(&p->lock);
	if (rc) {
		fprintf(stderr, "tern: %s: pthread_mutex_unlock: %s\n", p->dev.id, strerror(rc));
		abort();
	}
}

static uint64_t bit(unsigned source)
{
	return 1ull << source;
}

/* The source a claim by `ctx` would return, 0 if none. */
static unsigned best_source(const struct plic *p, unsigned ctx)
{
	uint64_t candidates = p->pending & p->enable[ctx];
	unsigned best = 0, best_priority = p->threshold[ctx];
	while (candidates) {
		unsigned src = (unsigned)__builtin_ctzll(candidates);
		candidates &= candidates - 1;
		/* Ascending ids and a strict comparison: ties keep the lowest. */
		if (p->priority[src] > best_priority) {
			best = src;
			best_priority = p->priority[src];
		}
	}
	return best;
}

static void update_outputs(struct plic *p)
{
	for (unsigned ctx = 0; ctx < p->num_contexts; ctx++) {
		bool level = best_source(p, ctx) != 0;
		if (level == p->output[ctx])
			continue;
		p->output[ctx] = level;
		if (p->notify)
			p->notify(p->opaque, ctx, level);
	}
}

static uint32_t claim(struct plic *p, unsigned ctx)
{
	unsigned src = best_source(p, ctx);
	if (src) {
		p->pending &= ~bit(src);
		p->in_service |= bit(src);
	}
	return src;
}

static void complete(struct plic *p, unsigned ctx, uint32_t src)
{
	/* The specification ignores a completion for a source not enabled
	 * for the context; one for a source not in service would otherwise
	 * let the gateway forward a second request for a single assertion. */
	if (src >= p->num_sources || !(p->enable[ctx] & bit(src)) || !(p->in_service & bit(src)))
		return;
	p->in_service &= ~bit(src);
	if (p->level & bit(src))
		p->pending |= bit(src);
}

static uint32_t read32(struct plic *p, uint64_t offset)
{
	if (offset < PENDING_BASE) {
		uint64_t src = (offset - PRIORITY_BASE) / 4;
		return src < p->num_sources ? p->priority[src] : 0;
	}
	if (offset < ENABLE_BASE) {
		uint64_t word = (offset - PENDING_BASE) / 4;
		return word < 2 ? (uint32_t)(p->pending >> (32 * word)) : 0;
	}
	if (offset < CONTEXT_BASE) {
		uint64_t ctx = (offset - ENABLE_BASE) / ENABLE_STRIDE;
		uint64_t word = (offset - ENABLE_BASE) % ENABLE_STRIDE / 4;
		if (ctx >= p->num_contexts || word >= 2)
			return 0;
		return (uint32_t)(p->enable[ctx] >> (32 * word));
	}
	uint64_t ctx = (offset - CONTEXT_BASE) / CONTEXT_STRIDE;
	if (ctx >= p->num_contexts)
		return 0;
	switch ((offset - CONTEXT_BASE) % CONTEXT_STRIDE) {
	case CONTEXT_THRESHOLD:
		return p->threshold[ctx];
	case CONTEXT_CLAIM:
		return claim(p, (unsigned)ctx);
	}
	return 0;
}

static void write32(struct plic *p, uint64_t offset, uint32_t value)
{
	if (offset < PENDING_BASE) {
		uint64_t src = (offset - PRIORITY_BASE) / 4;
		if (src < p->num_sources && src != 0)
			p->priority[src] = value & PRIORITY_MASK;
		return;
	}
	if (offset < ENABLE_BASE)
		return;         /* pending bits are read-only */
	if (offset < CONTEXT_BASE) {
		uint64_t ctx = (offset - ENABLE_BASE) / ENABLE_STRIDE;
		uint64_t word = (offset - ENABLE_BASE) % ENABLE_STRIDE / 4;
		if (ctx >= p->num_contexts || word >= 2)
			return;
		uint64_t mask = 0xffffffffull << (32 * word);
		uint64_t bits = (uint64_t)value << (32 * word);
		p->enable[ctx] = (p->enable[ctx] & ~mask) | (bits & mask & p->valid);
		return;
	}
	uint64_t ctx = (offset - CONTEXT_BASE) / CONTEXT_STRIDE;
	if (ctx >= p->num_contexts)
		return;
	switch ((offset - CONTEXT_BASE) % CONTEXT_STRIDE) {
	case CONTEXT_THRESHOLD:
		p->threshold[ctx] = value & PRIORITY_MASK;
		break;
	case CONTEXT_CLAIM:
		complete(p, (unsigned)ctx, value);
		break;
	}
}

static struct plic *to_plic(struct device *dev)
{
	return (struct plic *)((char *)dev - offsetof(struct plic, dev));
}

static bool access_ok(uint64_t offset, unsigned size)
{
	return (size == 4 || size == 8) && (offset & 3) == 0 && offset < PLIC_WINDOW &&
	       size <= PLIC_WINDOW - offset;
}

static uint64_t plic_read(struct device *dev, uint64_t offset, unsigned size)
{
	struct plic *p = to_plic(dev);
	if (!access_ok(offset, size))
		return 0;
	lock(p);
	uint64_t value = read32(p, offset);
	if (size == 8)
		value |= (uint64_t)read32(p, offset + 4) << 32;
	update_outputs(p);
	unlock(p);
	return value;
}

static void plic_write(struct device *dev, uint64_t offset, uint64_t value, unsigned size)
{
	struct plic *p = to_plic(dev);
	if (!access_ok(offset, size))
		return;
	lock(p);
	write32(p, offset, (uint32_t)value);
	if (size == 8)
		write32(p, offset + 4, (uint32_t)(value >> 32));
	update_outputs(p);
	unlock(p);
}

/* The configuration goes back to its reset state, but the lines are the
 * devices' to drive: one still high is a fresh request. */
static void plic_reset(struct device *dev)
{
	struct plic *p = to_plic(dev);
	lock(p);
	memset(p->priority, 0, sizeof(p->priority));
	memset(p->enable, 0, sizeof(p->enable));
	memset(p->threshold, 0, sizeof(p->threshold));
	p->in_service = 0;
	p->pending = p->level & p->valid;
	update_outputs(p);
	unlock(p);
}

/* ---- save / restore ------------------------------------------------------ */

/* Field ids of the saved PLIC record (see plic_save); never reuse one. */
enum {
	PS_VERSION = 0,
	PS_NUM_SOURCES = 1,
	PS_NUM_CONTEXTS = 2,
	PS_PRIORITIES = 3,
	PS_PENDING = 4,
	PS_IN_SERVICE = 5,
	PS_LEVELS = 6,
	PS_ENABLES = 7,
	PS_THRESHOLDS = 8,
};
#define PLIC_STATE_VERSION 1u

/* The saved record, field by field (bitmaps: bit n is source n):
 *
 *   id  type                    contents
 *    0  u32                     record version (1)
 *    1  u32                     number of sources, source 0 included
 *    2  u32                     number of contexts
 *    3  bytes[sources]          priority of each source by id (0..7;
 *                               entry 0 is 0, there is no source 0)
 *    4  u64                     pending bits
 *    5  u64                     claimed and not yet completed (in service)
 *    6  u64                     input lines held high by their devices
 *    7  bytes[8 * contexts]     each context's enable bits, le64 each
 *    8  bytes[contexts]         each context's threshold (0..7)
 *
 * 1 and 2 are the shape, checked rather than restored. The context outputs
 * follow from the rest and are recomputed. */
static int plic_save(struct device *dev, struct state_writer *w, struct error *err)
{
	struct plic *p = to_plic(dev);
	uint8_t enables[8 * PLIC_MAX_CONTEXTS];

	lock(p);
	for (unsigned ctx = 0; ctx < p->num_contexts; ctx++)
		for (unsigned i = 0; i < 8; i++)
			enables[8 * ctx + i] = (uint8_t)(p->enable[ctx] >> (8 * i));
	state_put_u32(w, PS_VERSION, PLIC_STATE_VERSION);
	state_put_u32(w, PS_NUM_SOURCES, p->num_sources);
	state_put_u32(w, PS_NUM_CONTEXTS, p->num_contexts);
	state_put_bytes(w, PS_PRIORITIES, p->priority, p->num_sources);
	state_put_u64(w, PS_PENDING, p->pending);
	state_put_u64(w, PS_IN_SERVICE, p->in_service);
	state_put_u64(w, PS_LEVELS, p->level);
	state_put_bytes(w, PS_ENABLES, enables, 8 * (size_t)p->num_contexts);
	state_put_bytes(w, PS_THRESHOLDS, p->threshold, p->num_contexts);
	unlock(p);
	return state_writer_status(w, err);
}

/* What restore decodes and checks before any of it reaches the device;
 * each member means what its namesake in struct plic does. */
struct plic_saved {
	uint64_t level, pending, in_service;
	uint8_t priority[PLIC_MAX_SOURCES];
	uint64_t enable[PLIC_MAX_CONTEXTS];
	uint8_t threshold[PLIC_MAX_CONTEXTS];
};

/* A bitmap field naming only sources that exist. */
static int get_sources(struct plic *p, const struct state_reader *r, uint16_t id,
		       const char *name, uint64_t *out, struct error *err)
{
	int rc = state_get_u64(r, id, out, err);
	if (rc)
		return rc;
	if (*out & ~p->valid)
		return error_set(err, EINVAL, "%s: saved %s bits 0x%llx name sources this PLIC "
				 "does not have (0x%llx; it has 1 to %u)", p->dev.id, name,
				 (unsigned long long)*out, (unsigned long long)(*out & ~p->valid),
				 p->num_sources - 1);
	return 0;
}

static int read_saved(struct plic *p, struct state_reader *in, struct plic_saved *s,
		      struct error *err)
{
	static const uint16_t known[] = {
		PS_VERSION, PS_NUM_SOURCES, PS_NUM_CONTEXTS, PS_PRIORITIES, PS_PENDING,
		PS_IN_SERVICE, PS_LEVELS, PS_ENABLES, PS_THRESHOLDS,
	};
	const char *id = p->dev.id;
	struct state_reader r;
	uint32_t version, num_sources, num_contexts;
	uint8_t enables[8 * PLIC_MAX_CONTEXTS];
	int rc;

	/* Entries past the shape stay 0, as in a fresh PLIC. */
	memset(s, 0, sizeof(*s));
	/* The transport checked the framing without our list of ids: check
	 * again with it, so a required field we do not know is refused. */
	if ((rc = state_reader_init(&r, in->data, in->len, id, known,
				    sizeof(known) / sizeof(known[0]), err)))
		return rc;
	if ((rc = state_get_u32(&r, PS_VERSION, &version, err)))
		return rc;
	if (version != PLIC_STATE_VERSION)
		return error_set(err, EINVAL, "%s: saved PLIC state has version %u, this tern "
				 "reads %u", id, version, PLIC_STATE_VERSION);
	if ((rc = state_get_u32(&r, PS_NUM_SOURCES, &num_sources, err)) ||
	    (rc = state_get_u32(&r, PS_NUM_CONTEXTS, &num_contexts, err)))
		return rc;
	/* The guest's device tree named this PLIC's shape; its driver has
	 * no way to learn of another. */
	if (num_sources != p->num_sources || num_contexts != p->num_contexts)
		return error_set(err, EINVAL, "%s: saved PLIC has %u sources and %u contexts, "
				 "this one %u and %u", id, num_sources, num_contexts,
				 p->num_sources, p->num_contexts);

	/* The array lengths follow from the shape just checked, so they are
	 * within the bounds of the local arrays. */
	if ((rc = state_get_bytes(&r, PS_PRIORITIES, s->priority, p->num_sources, err)) ||
	    (rc = get_sources(p, &r, PS_PENDING, "pending", &s->pending, err)) ||
	    (rc = get_sources(p, &r, PS_IN_SERVICE, "in-service", &s->in_service, err)) ||
	    (rc = get_sources(p, &r, PS_LEVELS, "line level", &s->level, err)) ||
	    (rc = state_get_bytes(&r, PS_ENABLES, enables, 8 * (size_t)p->num_contexts, err)) ||
	    (rc = state_get_bytes(&r, PS_THRESHOLDS, s->threshold, p->num_contexts, err)))
		return rc;

	/* Priorities and thresholds are WARL with 3 bits: nothing else can
	 * be read back from the registers. */
	if (s->priority[0])
		return error_set(err, EINVAL, "%s: saved priority %u for source 0, which does "
				 "not exist", id, s->priority[0]);
	for (unsigned src = 1; src < p->num_sources; src++)
		if (s->priority[src] > PRIORITY_MASK)
			return error_set(err, EINVAL, "%s: saved priority %u of source %u is over "
					 "the maximum %u", id, s->priority[src], src,
					 PRIORITY_MASK);
	for (unsigned ctx = 0; ctx < p->num_contexts; ctx++) {
		if (s->threshold[ctx] > PRIORITY_MASK)
			return error_set(err, EINVAL, "%s: saved threshold %u of context %u is "
					 "over the maximum %u", id, s->threshold[ctx], ctx,
					 PRIORITY_MASK);
		uint64_t e = 0;
		for (unsigned i = 0; i < 8; i++)
			e |= (uint64_t)enables[8 * ctx + i] << (8 * i);
		if (e & ~p->valid)
			return error_set(err, EINVAL, "%s: saved enable bits 0x%llx of context %u "
					 "name sources this PLIC does not have", id,
					 (unsigned long long)e, ctx);
		s->enable[ctx] = e;
	}
	/* The gateway never forwards a request for a source in service, and
	 * re-forwards when a source completes with its line high. A state
	 * breaking either would lose or duplicate an interrupt for good. */
	if (s->pending & s->in_service)
		return error_set(err, EINVAL, "%s: saved sources 0x%llx are both pending and in "
				 "service", id, (unsigned long long)(s->pending & s->in_service));
	uint64_t lost = s->level & ~s->in_service & ~s->pending;
	if (lost)
		return error_set(err, EINVAL, "%s: saved lines 0x%llx are high but neither "
				 "pending nor in service", id, (unsigned long long)lost);
	return 0;
}

static int plic_restore(struct device *dev, struct state_reader *in, struct error *err)
{
	struct plic *p = to_plic(dev);
	struct plic_saved s;
	int rc = read_saved(p, in, &s, err);
	if (rc)
		return rc;

	lock(p);
	p->level = s.level;
	p->pending = s.pending;
	p->in_service = s.in_service;
	memcpy(p->priority, s.priority, sizeof(p->priority));
	memcpy(p->enable, s.enable, sizeof(p->enable));
	memcpy(p->threshold, s.threshold, sizeof(p->threshold));
	/* Every context, changed or not: the harts behind a restored PLIC
	 * start with SEIP clear whatever this PLIC last told them. */
	for (unsigned ctx = 0; ctx < p->num_contexts; ctx++) {
		p->output[ctx] = best_source(p, ctx) != 0;
		if (p->notify)
			p->notify(p->opaque, ctx, p->output[ctx]);
	}
	unlock(p);
	return 0;
}

static void plic_destroy(struct device *dev)
{
	struct plic *p = to_plic(dev);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static const struct device_ops plic_ops = {
	.type = "plic",
	.read = plic_read,
	.write = plic_write,
	.reset = plic_reset,
	.save = plic_save,
	.restore = plic_restore,
	.destroy = plic_destroy,
};

struct plic *plic_create(const char *id, uint64_t base, unsigned num_sources,
			 unsigned num_contexts,
			 void (*notify)(void *opaque, unsigned context, bool level),
			 void *opaque, struct error *err)
{
	if (!id || !*id || strlen(id) >= sizeof(((struct device *)0)->id)) {
		error_set(err, EINVAL, "PLIC instance name \"%s\" is empty or too long",
			  id ? id : "");
		return NULL;
	}
	if (num_sources < 2 || num_sources > PLIC_MAX_SOURCES) {
		error_set(err, EINVAL,
			  "PLIC %s: %u sources is out of range: 2 to %d (source 0 does not exist)",
			  id, num_sources, PLIC_MAX_SOURCES);
		return NULL;
	}
	if (num_contexts < 1 || num_contexts > PLIC_MAX_CONTEXTS) {
		error_set(err, EINVAL, "PLIC %s: %u contexts is out of range: 1 to %d", id,
			  num_contexts, PLIC_MAX_CONTEXTS);
		return NULL;
	}
	struct plic *p = calloc(1, sizeof(*p));
	if (!p) {
		error_set(err, ENOMEM, "cannot allocate PLIC %s", id);
		return NULL;
	}
	int rc = pthread_mutex_init(&p->lock, NULL);
	if (rc) {
		error_errno(err, rc, "cannot create the lock of PLIC %s", id);
		free(p);
		return NULL;
	}
	p->dev.ops = &plic_ops;
	strcpy(p->dev.id, id);
	p->dev.base = base;
	p->dev.size = PLIC_WINDOW;
	p->num_sources = num_sources;
	p->num_contexts = num_contexts;
	p->notify = notify;
	p->opaque = opaque;
	/* Bits 1..num_sources-1; shifting by 64 would be undefined. */
	p->valid = (num_sources == 64 ? ~0ull : bit(num_sources) - 1) & ~bit(0);
	return p;
}

struct device *plic_device(struct plic *plic)
{
	return &plic->dev;
}

void plic_set_level(void *opaque, unsigned source, bool level)
{
	struct plic *p = opaque;
	if (source == 0 || source >= p->num_sources)
		return;
	lock(p);
	if (level) {
		p->level |= bit(source);
		/* The gateway holds back a new request while one is in service. */
		if (!(p->in_service & bit(source)))
			p->pending |= bit(source);
	} else {
		p->level &= ~bit(source);
	}
	update_outputs(p);
	unlock(p);
}
