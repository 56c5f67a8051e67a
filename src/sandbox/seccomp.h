/* seccomp.h: once set up, the VMM process keeps only the system calls it
 * uses (libseccomp); any other kills the process (SIGSYS), so a bug that
 * hands control to a guest or a peer cannot exec, ptrace, mount, load
 * modules or reach the rest of the kernel's surface. */
#ifndef TERN_SANDBOX_SECCOMP_H
#define TERN_SANDBOX_SECCOMP_H

#include "util/error.h"

/* Installs the filter for this process and every thread it starts from
 * now on (threads already running keep none: call it before the first).
 * With TERN_SECCOMP_PROBE=1 in the environment it then makes one call the
 * filter forbids, to show that the process dies of it (the tests). */
int sandbox_install(struct error *err);

#endif
