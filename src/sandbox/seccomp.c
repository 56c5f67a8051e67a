/* seccomp.c: see seccomp.h. The list is what tern's own code and its
 * libraries (glibc, OpenSSL, jansson, zstd) call while a VM runs, is
 * migrated, snapshotted or restored; tests/integration runs all of that
 * under it. Names, not numbers, so that it reads the same on any
 * architecture; a name this kernel's headers do not know is skipped. */
#include "sandbox/seccomp.h"

#include <errno.h>
#include <signal.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

static const char *const allowed[] = {
	/* files, disk images, sockets, the console */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "close", "openat", "open", "newfstatat", "fstat", "stat",
	"lstat", "statx", "lseek", "fcntl", "ioctl", "dup", "dup2", "dup3", "pipe2",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64",
	"fsync", "fdatasync", "sync_file_range", "fallocate", "ftruncate", "flock",
	"unlink", "unlinkat", "rename", "renameat", "renameat2", "link", "linkat",
	"chmod", "fchmod", "fchmodat", "umask", "statfs", "fstatfs", "mkdir", "getcwd",
	"socket", "socketpair", "connect", "accept", "accept4", "bind", "listen",
	"getsockname", "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom",
	"sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
	/* waiting */
	"poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
	"epoll_pwait", "eventfd2", "futex", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time", "sched_yield",
	"restart_syscall",
	/* memory: guest RAM, dirty tracking, post-copy */
	"mmap", "munmap", "mprotect", "mremap", "madvise", "mincore", "brk",
	"userfaultfd", "membarrier", "memfd_create",
	/* threads and signals */
	"clone", "clone3", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
	"exit", "exit_group", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
	"rt_sigtimedwait", "rt_sigpending", "sigaltstack", "tgkill", "tkill", "getpid",
	"gettid", "getppid", "prctl", "sched_getaffinity", "sched_setaffinity",
	/* the rest of the libraries' needs */
	"getrandom", "getuid", "geteuid", "getgid", "getegid", "uname", "sysinfo",
	"getrlimit", "prlimit64", "getrusage", "times",
};

/* A forbidden call traps here: say which, then die of SIGSYS as the
 * default action would. Async-signal-safe calls only. */
static void on_sigsys(int sig, siginfo_t *info, void *ucontext)
{
	char msg[96] = "tern: seccomp: forbidden system call ";
	size_t n = strlen(msg);
	char digits[16];
	int nd = 0;
	unsigned v = (unsigned)info->si_syscall;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && nd < (int)sizeof(digits));
	while (nd)
		msg[n++] = digits[--nd];
	memcpy(msg + n, ", the VMM stops\n", 16);
	n += 16;
	ssize_t w = write(STDERR_FILENO, msg, n);
	(void)w;
	signal(SIGSYS, SIG_DFL);
	raise(SIGSYS);
	_exit(128 + SIGSYS);
}

int sandbox_install(struct error *err)
{
#if defined(__SANITIZE_ADDRESS__)
	/* The ASan test build goes without: LeakSanitizer stops the world at
	 * exit by ptracing the process from a clone of it, which no filter
	 * fit for production allows. The release build is the one confined
	 * (and the one the integration tests run). */
	log_debug("seccomp: not in a sanitizer build");
	return 0;
#endif
	struct sigaction sa = { .sa_sigaction = on_sigsys,
				.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESETHAND };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return error_errno(err, errno, "seccomp: cannot handle SIGSYS");
	/* Trap, not kill at once: the handler names the call first. A thread
	 * that blocks SIGSYS is killed by the kernel all the same. */
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return error_set(err, ENOMEM, "seccomp: cannot make a filter");
	int rc = 0;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && !rc; i++) {
		int nr = seccomp_syscall_resolve_name(allowed[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;       /* not on this architecture */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc)
			error_set(err, -rc, "seccomp: cannot allow %s: %s", allowed[i], strerror(-rc));
	}
	if (!rc) {
		rc = seccomp_load(ctx);
		if (rc)
			error_set(err, -rc, "seccomp: cannot load the filter: %s", strerror(-rc));
	}
	seccomp_release(ctx);
	if (rc)
		return -abs(rc);
	log_debug("seccomp filter installed: %zu system calls allowed",
		  sizeof(allowed) / sizeof(allowed[0]));
	const char *probe = getenv("TERN_SECCOMP_PROBE");
	if (probe && !strcmp(probe, "1")) {
		log_info("seccomp probe: calling execve, which the filter forbids");
		char *const argv[] = { "/bin/true", NULL };
		execve("/bin/true", argv, environ);
		log_error("seccomp probe: execve returned: %s", strerror(errno));
	}
	return 0;
}
