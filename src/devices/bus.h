/* bus.h: MMIO dispatch from a guest physical address to the device that owns it. */
#ifndef TERN_DEVICES_BUS_H
#define TERN_DEVICES_BUS_H

#include "devices/device.h"

#define BUS_MAX_DEVICES 64

struct bus {
	struct device *devices[BUS_MAX_DEVICES];   /* sorted by base */
	unsigned count;
};

/* Fails, naming both devices, if the window overlaps one already added. */
int bus_add(struct bus *bus, struct device *dev, struct error *err);
struct device *bus_find(const struct bus *bus, uint64_t addr, uint64_t size, uint64_t *offset);

/* False when no device answers at addr (the CPU then raises an access fault). */
bool bus_read(const struct bus *bus, uint64_t addr, unsigned size, uint64_t *value);
bool bus_write(const struct bus *bus, uint64_t addr, unsigned size, uint64_t value);

#endif
