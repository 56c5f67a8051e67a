/* device.h: what every emulated device is to the rest of tern.
 *
 * A device owns one MMIO window on the bus and its own lock. The machine
 * calls the operations; the device never calls the machine except through
 * the irq_line it was given. save/restore carry the complete device state
 * for snapshots and migration (their byte format is defined with the state
 * stream, docs/migration-format.md). */
#ifndef TERN_DEVICES_DEVICE_H
#define TERN_DEVICES_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct device;
struct state_writer;
struct state_reader;

/* An interrupt line into an interrupt controller (the PLIC). Level
 * semantics: the device holds the line high while it wants attention. */
struct irq_line {
	void (*set_level)(void *controller, unsigned irq, bool level);
	void *controller;
	unsigned irq;
};

static inline void irq_line_set(const struct irq_line *line, bool level)
{
	if (line->set_level)
		line->set_level(line->controller, line->irq, level);
}

struct device_ops {
	const char *type;
	/* MMIO access at `offset` within the window, size 1, 2, 4 or 8.
	 * Called from hart threads without any lock held. A read of an
	 * unimplemented register returns 0; a write to one is ignored. */
	uint64_t (*read)(struct device *dev, uint64_t offset, unsigned size);
	void (*write)(struct device *dev, uint64_t offset, uint64_t value, unsigned size);
	void (*reset)(struct device *dev);
	/* Complete device state; NULL until the device supports it. */
	int (*save)(struct device *dev, struct state_writer *out, struct error *err);
	int (*restore)(struct device *dev, struct state_reader *in, struct error *err);
	void (*destroy)(struct device *dev);
};

struct device {
	const struct device_ops *ops;
	char id[64];        /* stable instance name, e.g. "uart@10000000" */
	uint64_t base;      /* guest physical address of the window */
	uint64_t size;
};

#endif
