/* illegal: executes an instruction user mode may not run, so that a test
 * can see the guest kernel receive the architectural trap (SIGILL for the
 * process) while the VM itself keeps running.
 *   illegal        the all-zero halfword, defined to be illegal
 *   illegal csr    a read of mstatus, a machine-mode CSR */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "csr") == 0) {
		unsigned long v;
		__asm__ volatile("csrr %0, mstatus" : "=r"(v));
		printf("read mstatus = %lx: the CPU did not trap\n", v);
		return 0;
	}
	__asm__ volatile(".2byte 0x0000");
	printf("executed an illegal instruction: the CPU did not trap\n");
	return 0;
}
