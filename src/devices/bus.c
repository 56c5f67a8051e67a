/* bus.c: a sorted table of MMIO windows; few devices, so a linear scan. */
#include "devices/bus.h"

#include <errno.h>

int bus_add(struct bus *bus, struct device *dev, struct error *err)
{
	if (bus->count == BUS_MAX_DEVICES)
		return error_set(err, ENOSPC, "too many devices (at most %d)", BUS_MAX_DEVICES);
	if (dev->size == 0 || dev->base + dev->size < dev->base)
		return error_set(err, EINVAL, "device %s has an empty or wrapping window", dev->id);
	unsigned pos = 0;
	for (unsigned i = 0; i < bus->count; i++) {
		const struct device *other = bus->devices[i];
		if (dev->base < other->base + other->size && other->base < dev->base + dev->size)
			return error_set(err, EBUSY, "device %s at 0x%llx overlaps %s at 0x%llx", dev->id,
					 (unsigned long long)dev->base, other->id,
					 (unsigned long long)other->base);
		if (other->base < dev->base)
			pos = i + 1;
	}
	for (unsigned i = bus->count; i > pos; i--)
		bus->devices[i] = bus->devices[i - 1];
	bus->devices[pos] = dev;
	bus->count++;
	return 0;
}

struct device *bus_find(const struct bus *bus, uint64_t addr, uint64_t size, uint64_t *offset)
{
	for (unsigned i = 0; i < bus->count; i++) {
		struct device *dev = bus->devices[i];
		if (addr >= dev->base && addr - dev->base < dev->size &&
		    size <= dev->size - (addr - dev->base)) {
			*offset = addr - dev->base;
			return dev;
		}
	}
	return NULL;
}

bool bus_read(const struct bus *bus, uint64_t addr, unsigned size, uint64_t *value)
{
	uint64_t offset;
	struct device *dev = bus_find(bus, addr, size, &offset);
	if (!dev)
		return false;
	*value = dev->ops->read ? dev->ops->read(dev, offset, size) : 0;
	return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, unsigned size, uint64_t value)
{
	uint64_t offset;
	struct device *dev = bus_find(bus, addr, size, &offset);
	if (!dev)
		return false;
	if (dev->ops->write)
		dev->ops->write(dev, offset, value, size);
	return true;
}
