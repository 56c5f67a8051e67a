/* plic.h: the RISC-V Platform-Level Interrupt Controller ("sifive,plic-1.0.0"),
 * as in the RISC-V PLIC specification 1.0.0: per-source priority, pending
 * bits, per-context enables, threshold and claim/complete. Sources are
 * level-triggered through the gateway. Context n is hart n's S-mode. */
#ifndef TERN_DEVICES_PLIC_H
#define TERN_DEVICES_PLIC_H

#include <stdbool.h>

#include "devices/device.h"

#define PLIC_WINDOW 0x4000000
#define PLIC_MAX_SOURCES 64      /* source 0 does not exist */
#define PLIC_MAX_CONTEXTS 32

struct plic;

/* notify(opaque, context, level) is called whenever the context's external
 * interrupt line (a pending, enabled source above threshold) changes. */
struct plic *plic_create(const char *id, uint64_t base, unsigned num_sources,
			 unsigned num_contexts,
			 void (*notify)(void *opaque, unsigned context, bool level),
			 void *opaque, struct error *err);
struct device *plic_device(struct plic *plic);

/* The irq_line.set_level callback: controller is the struct plic. */
void plic_set_level(void *plic, unsigned source, bool level);

static inline struct irq_line plic_irq_line(struct plic *plic, unsigned source)
{
	return (struct irq_line){ .set_level = plic_set_level, .controller = plic, .irq = source };
}

#endif
