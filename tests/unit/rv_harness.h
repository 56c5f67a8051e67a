/* rv_harness.h: a tiny RISC-V machine and an instruction encoder for the
 * unit tests of the interpreter (tests/unit/test_cpu_*.c).
 *
 * The machine is one interpreter hart with 4 MiB of guest RAM at
 * 0x80000000, a 256-byte fake device at 0x10000000 that records every
 * access, a clock the test sets by hand and an SBI hook that records calls.
 * Programs are written into RAM with the encoder below and run until the
 * hart executes WFI, which in M-mode (with mie = 0) returns from cpu_run()
 * at once. Trap vectors point at small handlers that end in WFI too, so a
 * trapping test stops there and can look at mcause/mepc/mtval.
 *
 * The encoder functions are named after the instructions and take their
 * operands in assembly order: ADDI(A0, A1, -5) is `addi a0, a1, -5`,
 * LW(A0, 8, A1) is `lw a0, 8(a1)`, SW(A0, 8, A1) is `sw a0, 8(a1)`, BEQ(A0,
 * A1, off) and JAL(RA, off) take byte offsets from the instruction itself.
 * Field layouts follow the unprivileged ISA manual (20191213), chapter 24
 * (RV32/64G listings) and chapter 16 (RVC); each was cross-checked against
 * riscv64-linux-gnu-as. */
#ifndef TERN_TESTS_RV_HARNESS_H
#define TERN_TESTS_RV_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/cpu.h"
#include "cpu/rv_state.h"
#include "mem/guest_ram.h"

/* ---- the test machine ---------------------------------------------------- */

#define RVT_RAM_BASE  0x80000000ull
#define RVT_RAM_SIZE  (4ull << 20)
#define RVT_TRAP_M    0x80000000ull   /* csrrw t6, mie, x0; wfi; j .-4 */
#define RVT_TRAP_S    0x80000100ull   /* csrrw t5, sie, x0; wfi; j .-4 */
#define RVT_VEC_S     0x80000200ull   /* vectored stvec table, see rvt_install_vectors */
#define RVT_CODE      0x80001000ull   /* where tests put their programs */
#define RVT_DATA      0x80010000ull   /* scratch data */
#define RVT_PT        0x80100000ull   /* pool of page-table pages */
#define RVT_PT_END    0x80200000ull
#define RVT_MMIO_BASE 0x10000000ull
#define RVT_MMIO_SIZE 0x100u
#define RVT_NO_DEVICE 0x20000000ull   /* neither RAM nor a device */

/* Where the handlers stop: the pc after their WFI. */
#define RVT_TRAP_M_STOP (RVT_TRAP_M + 8)
#define RVT_TRAP_S_STOP (RVT_TRAP_S + 8)

struct rvt_mmio_access {
	bool write;
	uint64_t addr;
	unsigned size;
	uint64_t value;
};

struct rvt {
	struct guest_ram ram;
	struct cpu_env env;
	struct cpu *cpu;

	uint64_t time;                  /* what time_now() returns */
	uint64_t time_step;             /* added to time after each time_now() call */
	unsigned time_calls;            /* since the last rvt_run(): the watchdog */
	unsigned watchdog;              /* kick the hart after this many time_now() calls */

	uint8_t mmio[RVT_MMIO_SIZE];
	struct rvt_mmio_access mmio_log[32];
	unsigned mmio_count;

	/* SBI hook: install with rvt_enable_sbi(); records the last call. */
	unsigned sbi_count;
	uint64_t sbi_a0, sbi_a6, sbi_a7, sbi_pc, sbi_priv;
	uint64_t sbi_ret;               /* written to a0 by the hook */
	bool sbi_leave;                 /* the hook's return value */

	uint64_t cursor;                /* the assembler's next address */
	uint64_t pt_next;               /* next free page-table page */
};

/* cmocka setup/teardown: *state becomes a fresh struct rvt. */
int rvt_setup(void **state);
int rvt_teardown(void **state);
struct rvt *rvt_new(unsigned hart_id);
void rvt_free(struct rvt *t);

void rvt_enable_sbi(struct rvt *t, bool on);

/* Runs the hart until it returns; the watchdog turns a runaway into
 * CPU_EXIT_KICKED. */
enum cpu_exit rvt_run(struct rvt *t);
/* Runs from pc (keeping the privilege level) and asserts that the hart
 * stopped in WFI with pc == stop (the address after that WFI). */
void rvt_run_from(struct rvt *t, uint64_t pc, uint64_t stop);
/* rvt_run_from(t, RVT_CODE, end of the last program written). */
void rvt_go(struct rvt *t);
/* Runs from pc, expects a trap into the M (or S) handler with these
 * xcause/xepc/xtval; the rvt_go_ forms run from RVT_CODE. */
void rvt_run_trap_m(struct rvt *t, uint64_t pc, uint64_t cause, uint64_t epc, uint64_t tval);
void rvt_run_trap_s(struct rvt *t, uint64_t pc, uint64_t cause, uint64_t epc, uint64_t tval);
void rvt_go_trap_m(struct rvt *t, uint64_t cause, uint64_t epc, uint64_t tval);
void rvt_go_trap_s(struct rvt *t, uint64_t cause, uint64_t epc, uint64_t tval);
/* Prints pc, priv and the trap CSRs to stderr (on a failing assertion). */
void rvt_dump(struct rvt *t);

/* Program writing. Every write drops the hart's decoded instructions, as a
 * loader would with a remote fence.i, so tests can reuse RVT_CODE. */
void rvt_org(struct rvt *t, uint64_t addr);
void rvt_i(struct rvt *t, uint32_t insn);     /* one 32-bit instruction */
void rvt_c(struct rvt *t, uint16_t insn);     /* one 16-bit instruction */
void rvt_code(struct rvt *t, uint64_t addr, const uint32_t *insns, size_t n);
#define RVT_ASM(t, addr, ...)                                                        \
	rvt_code((t), (addr), (const uint32_t[]){ __VA_ARGS__ },                     \
		 sizeof((const uint32_t[]){ __VA_ARGS__ }) / sizeof(uint32_t))
/* The stvec vector table at RVT_VEC_S: slot n holds `jal t4, common`, so t4
 * tells which slot ran (RVT_VEC_S + 4n + 4); common = the S handler. */
void rvt_install_vectors(struct rvt *t);

/* Architectural state */
struct rv_state rvt_state(struct rvt *t);
void rvt_put_state(struct rvt *t, const struct rv_state *s);
uint64_t rvt_x(struct rvt *t, unsigned reg);
void rvt_set_x(struct rvt *t, unsigned reg, uint64_t value);
/* Field access to struct rv_state through get_state/set_state. Note that
 * set_state drops the TLB and the decoded instructions. */
#define RVT_GET(t, field) (rvt_state(t).field)
#define RVT_SET(t, field, value)                                                     \
	do {                                                                         \
		struct rv_state rvt_s_ = rvt_state(t);                               \
		rvt_s_.field = (value);                                              \
		rvt_put_state((t), &rvt_s_);                                         \
	} while (0)
void rvt_set_priv(struct rvt *t, enum rv_priv priv);

/* Guest physical memory (RAM only); writes do not flush decoded code. */
void *rvt_host(struct rvt *t, uint64_t paddr, uint64_t len);
uint8_t rvt_r8(struct rvt *t, uint64_t paddr);
uint16_t rvt_r16(struct rvt *t, uint64_t paddr);
uint32_t rvt_r32(struct rvt *t, uint64_t paddr);
uint64_t rvt_r64(struct rvt *t, uint64_t paddr);
void rvt_w8(struct rvt *t, uint64_t paddr, uint8_t v);
void rvt_w16(struct rvt *t, uint64_t paddr, uint16_t v);
void rvt_w32(struct rvt *t, uint64_t paddr, uint32_t v);
void rvt_w64(struct rvt *t, uint64_t paddr, uint64_t v);

/* ---- Sv39 page tables ----------------------------------------------------- */

#define PTE_V (1ull << 0)
#define PTE_R (1ull << 1)
#define PTE_W (1ull << 2)
#define PTE_X (1ull << 3)
#define PTE_U (1ull << 4)
#define PTE_G (1ull << 5)
#define PTE_A (1ull << 6)
#define PTE_D (1ull << 7)
#define PTE_RWX (PTE_R | PTE_W | PTE_X)
#define PTE_LEAF(pa, flags) ((((uint64_t)(pa) >> 12) << 10) | (flags))
#define SATP_SV39(root) ((8ull << 60) | ((uint64_t)(root) >> 12))

/* A zeroed page from the page-table pool. */
uint64_t rvt_pt_alloc(struct rvt *t);
/* The guest physical address of the PTE for va at level (2 = 1 GiB,
 * 1 = 2 MiB, 0 = 4 KiB), creating the non-leaf tables on the way. */
uint64_t rvt_pte_addr(struct rvt *t, uint64_t root, uint64_t va, int level);
/* Writes a leaf PTE: pa with flags (V is added). */
void rvt_map(struct rvt *t, uint64_t root, uint64_t va, uint64_t pa, int level, uint64_t flags);
/* A new Sv39 root with 4 KiB identity mappings of the first MiB of RAM
 * (handlers, code, data) as RWX, A, D, not U, and satp pointing at it. */
uint64_t rvt_paging_identity(struct rvt *t);

/* ---- registers and CSRs ---------------------------------------------------- */

enum {
	ZERO, RA, SP, GP, TP, T0, T1, T2, S0, S1, A0, A1, A2, A3, A4, A5, A6, A7,
	S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, T3, T4, T5, T6,
};

enum {
	CSR_FFLAGS = 0x001, CSR_FRM = 0x002, CSR_FCSR = 0x003,
	CSR_CYCLE = 0xc00, CSR_TIME = 0xc01, CSR_INSTRET = 0xc02,
	CSR_SSTATUS = 0x100, CSR_SIE = 0x104, CSR_STVEC = 0x105, CSR_SCOUNTEREN = 0x106,
	CSR_SENVCFG = 0x10a, CSR_SSCRATCH = 0x140, CSR_SEPC = 0x141, CSR_SCAUSE = 0x142,
	CSR_STVAL = 0x143, CSR_SIP = 0x144, CSR_STIMECMP = 0x14d, CSR_SATP = 0x180,
	CSR_MSTATUS = 0x300, CSR_MISA = 0x301, CSR_MEDELEG = 0x302, CSR_MIDELEG = 0x303,
	CSR_MIE = 0x304, CSR_MTVEC = 0x305, CSR_MCOUNTEREN = 0x306, CSR_MENVCFG = 0x30a,
	CSR_MSCRATCH = 0x340, CSR_MEPC = 0x341, CSR_MCAUSE = 0x342, CSR_MTVAL = 0x343,
	CSR_MIP = 0x344, CSR_PMPCFG0 = 0x3a0, CSR_PMPADDR0 = 0x3b0,
	CSR_MCYCLE = 0xb00, CSR_MINSTRET = 0xb02,
	CSR_MVENDORID = 0xf11, CSR_MARCHID = 0xf12, CSR_MIMPID = 0xf13, CSR_MHARTID = 0xf14,
};

#define RVT_INTERRUPT (1ull << 63)

/* ---- the encoder ------------------------------------------------------------ */

static inline uint32_t rv_r(uint32_t f7, unsigned rs2, unsigned rs1, uint32_t f3, unsigned rd,
			    uint32_t op)
{
	return f7 << 25 | (rs2 & 31) << 20 | (rs1 & 31) << 15 | f3 << 12 | (rd & 31) << 7 | op;
}

static inline uint32_t rv_i(int32_t imm, unsigned rs1, uint32_t f3, unsigned rd, uint32_t op)
{
	return ((uint32_t)imm & 0xfff) << 20 | (rs1 & 31) << 15 | f3 << 12 | (rd & 31) << 7 | op;
}

static inline uint32_t rv_s(int32_t imm, unsigned rs2, unsigned rs1, uint32_t f3, uint32_t op)
{
	uint32_t u = (uint32_t)imm;
	return (u >> 5 & 0x7f) << 25 | (rs2 & 31) << 20 | (rs1 & 31) << 15 | f3 << 12 |
	       (u & 0x1f) << 7 | op;
}

static inline uint32_t rv_b(int32_t off, unsigned rs1, unsigned rs2, uint32_t f3)
{
	uint32_t u = (uint32_t)off;
	return (u >> 12 & 1) << 31 | (u >> 5 & 0x3f) << 25 | (rs2 & 31) << 20 | (rs1 & 31) << 15 |
	       f3 << 12 | (u >> 1 & 0xf) << 8 | (u >> 11 & 1) << 7 | 0x63;
}

static inline uint32_t rv_u(uint32_t imm20, unsigned rd, uint32_t op)
{
	return (imm20 & 0xfffff) << 12 | (rd & 31) << 7 | op;
}

static inline uint32_t rv_j(int32_t off, unsigned rd)
{
	uint32_t u = (uint32_t)off;
	return (u >> 20 & 1) << 31 | (u >> 1 & 0x3ff) << 21 | (u >> 11 & 1) << 20 |
	       (u >> 12 & 0xff) << 12 | (rd & 31) << 7 | 0x6f;
}

/* RV64I */
static inline uint32_t LUI(unsigned rd, uint32_t imm20) { return rv_u(imm20, rd, 0x37); }
static inline uint32_t AUIPC(unsigned rd, uint32_t imm20) { return rv_u(imm20, rd, 0x17); }
static inline uint32_t JAL(unsigned rd, int32_t off) { return rv_j(off, rd); }
static inline uint32_t J(int32_t off) { return rv_j(off, ZERO); }
static inline uint32_t JALR(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 0, rd, 0x67); }
static inline uint32_t BEQ(unsigned a, unsigned b, int32_t off) { return rv_b(off, a, b, 0); }
static inline uint32_t BNE(unsigned a, unsigned b, int32_t off) { return rv_b(off, a, b, 1); }
static inline uint32_t BLT(unsigned a, unsigned b, int32_t off) { return rv_b(off, a, b, 4); }
static inline uint32_t BGE(unsigned a, unsigned b, int32_t off) { return rv_b(off, a, b, 5); }
static inline uint32_t BLTU(unsigned a, unsigned b, int32_t off) { return rv_b(off, a, b, 6); }
static inline uint32_t BGEU(unsigned a, unsigned b, int32_t off) { return rv_b(off, a, b, 7); }
static inline uint32_t LB(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 0, rd, 0x03); }
static inline uint32_t LH(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 1, rd, 0x03); }
static inline uint32_t LW(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 2, rd, 0x03); }
static inline uint32_t LD(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 3, rd, 0x03); }
static inline uint32_t LBU(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 4, rd, 0x03); }
static inline uint32_t LHU(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 5, rd, 0x03); }
static inline uint32_t LWU(unsigned rd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 6, rd, 0x03); }
static inline uint32_t SB(unsigned rs2, int32_t off, unsigned rs1) { return rv_s(off, rs2, rs1, 0, 0x23); }
static inline uint32_t SH(unsigned rs2, int32_t off, unsigned rs1) { return rv_s(off, rs2, rs1, 1, 0x23); }
static inline uint32_t SW(unsigned rs2, int32_t off, unsigned rs1) { return rv_s(off, rs2, rs1, 2, 0x23); }
static inline uint32_t SD(unsigned rs2, int32_t off, unsigned rs1) { return rv_s(off, rs2, rs1, 3, 0x23); }
static inline uint32_t ADDI(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 0, rd, 0x13); }
static inline uint32_t SLTI(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 2, rd, 0x13); }
static inline uint32_t SLTIU(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 3, rd, 0x13); }
static inline uint32_t XORI(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 4, rd, 0x13); }
static inline uint32_t ORI(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 6, rd, 0x13); }
static inline uint32_t ANDI(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 7, rd, 0x13); }
static inline uint32_t SLLI(unsigned rd, unsigned rs1, unsigned sh) { return rv_i((int32_t)(sh & 63), rs1, 1, rd, 0x13); }
static inline uint32_t SRLI(unsigned rd, unsigned rs1, unsigned sh) { return rv_i((int32_t)(sh & 63), rs1, 5, rd, 0x13); }
static inline uint32_t SRAI(unsigned rd, unsigned rs1, unsigned sh) { return rv_i((int32_t)(0x400 | (sh & 63)), rs1, 5, rd, 0x13); }
static inline uint32_t ADD(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 0, rd, 0x33); }
static inline uint32_t SUB(unsigned rd, unsigned a, unsigned b) { return rv_r(0x20, b, a, 0, rd, 0x33); }
static inline uint32_t SLL(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 1, rd, 0x33); }
static inline uint32_t SLT(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 2, rd, 0x33); }
static inline uint32_t SLTU(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 3, rd, 0x33); }
static inline uint32_t XOR(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 4, rd, 0x33); }
static inline uint32_t SRL(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 5, rd, 0x33); }
static inline uint32_t SRA(unsigned rd, unsigned a, unsigned b) { return rv_r(0x20, b, a, 5, rd, 0x33); }
static inline uint32_t OR(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 6, rd, 0x33); }
static inline uint32_t AND(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 7, rd, 0x33); }
static inline uint32_t ADDIW(unsigned rd, unsigned rs1, int32_t imm) { return rv_i(imm, rs1, 0, rd, 0x1b); }
static inline uint32_t SLLIW(unsigned rd, unsigned rs1, unsigned sh) { return rv_i((int32_t)(sh & 31), rs1, 1, rd, 0x1b); }
static inline uint32_t SRLIW(unsigned rd, unsigned rs1, unsigned sh) { return rv_i((int32_t)(sh & 31), rs1, 5, rd, 0x1b); }
static inline uint32_t SRAIW(unsigned rd, unsigned rs1, unsigned sh) { return rv_i((int32_t)(0x400 | (sh & 31)), rs1, 5, rd, 0x1b); }
static inline uint32_t ADDW(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 0, rd, 0x3b); }
static inline uint32_t SUBW(unsigned rd, unsigned a, unsigned b) { return rv_r(0x20, b, a, 0, rd, 0x3b); }
static inline uint32_t SLLW(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 1, rd, 0x3b); }
static inline uint32_t SRLW(unsigned rd, unsigned a, unsigned b) { return rv_r(0x00, b, a, 5, rd, 0x3b); }
static inline uint32_t SRAW(unsigned rd, unsigned a, unsigned b) { return rv_r(0x20, b, a, 5, rd, 0x3b); }
static inline uint32_t FENCE(void) { return 0x0ff0000f; }   /* fence iorw, iorw */
static inline uint32_t FENCE_I(void) { return 0x0000100f; }
static inline uint32_t ECALL(void) { return 0x00000073; }
static inline uint32_t EBREAK(void) { return 0x00100073; }
static inline uint32_t NOP(void) { return ADDI(ZERO, ZERO, 0); }

/* M */
static inline uint32_t MUL(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 0, rd, 0x33); }
static inline uint32_t MULH(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 1, rd, 0x33); }
static inline uint32_t MULHSU(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 2, rd, 0x33); }
static inline uint32_t MULHU(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 3, rd, 0x33); }
static inline uint32_t DIV(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 4, rd, 0x33); }
static inline uint32_t DIVU(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 5, rd, 0x33); }
static inline uint32_t REM(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 6, rd, 0x33); }
static inline uint32_t REMU(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 7, rd, 0x33); }
static inline uint32_t MULW(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 0, rd, 0x3b); }
static inline uint32_t DIVW(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 4, rd, 0x3b); }
static inline uint32_t DIVUW(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 5, rd, 0x3b); }
static inline uint32_t REMW(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 6, rd, 0x3b); }
static inline uint32_t REMUW(unsigned rd, unsigned a, unsigned b) { return rv_r(1, b, a, 7, rd, 0x3b); }

/* A: `amoadd.w.aqrl rd, rs2, (rs1)` is AMO(AMO_ADD, 2, rd, rs2, rs1, 1, 1). */
enum {
	AMO_ADD = 0x00, AMO_SWAP = 0x01, AMO_LR = 0x02, AMO_SC = 0x03, AMO_XOR = 0x04,
	AMO_OR = 0x08, AMO_AND = 0x0c, AMO_MIN = 0x10, AMO_MAX = 0x14, AMO_MINU = 0x18,
	AMO_MAXU = 0x1c,
};
static inline uint32_t AMO(uint32_t f5, uint32_t width_f3, unsigned rd, unsigned rs2, unsigned rs1,
			   bool aq, bool rl)
{
	return rv_r(f5 << 2 | (uint32_t)aq << 1 | (uint32_t)rl, rs2, rs1, width_f3, rd, 0x2f);
}
static inline uint32_t LR_W(unsigned rd, unsigned rs1) { return AMO(AMO_LR, 2, rd, 0, rs1, 0, 0); }
static inline uint32_t LR_D(unsigned rd, unsigned rs1) { return AMO(AMO_LR, 3, rd, 0, rs1, 0, 0); }
static inline uint32_t SC_W(unsigned rd, unsigned rs2, unsigned rs1) { return AMO(AMO_SC, 2, rd, rs2, rs1, 0, 0); }
static inline uint32_t SC_D(unsigned rd, unsigned rs2, unsigned rs1) { return AMO(AMO_SC, 3, rd, rs2, rs1, 0, 0); }
static inline uint32_t AMO_W(uint32_t f5, unsigned rd, unsigned rs2, unsigned rs1) { return AMO(f5, 2, rd, rs2, rs1, 0, 0); }
static inline uint32_t AMO_D(uint32_t f5, unsigned rd, unsigned rs2, unsigned rs1) { return AMO(f5, 3, rd, rs2, rs1, 0, 0); }

/* Zicsr and privileged */
static inline uint32_t CSRRW(unsigned rd, unsigned csr, unsigned rs1) { return rv_i((int32_t)csr, rs1, 1, rd, 0x73); }
static inline uint32_t CSRRS(unsigned rd, unsigned csr, unsigned rs1) { return rv_i((int32_t)csr, rs1, 2, rd, 0x73); }
static inline uint32_t CSRRC(unsigned rd, unsigned csr, unsigned rs1) { return rv_i((int32_t)csr, rs1, 3, rd, 0x73); }
static inline uint32_t CSRRWI(unsigned rd, unsigned csr, unsigned uimm) { return rv_i((int32_t)csr, uimm, 5, rd, 0x73); }
static inline uint32_t CSRRSI(unsigned rd, unsigned csr, unsigned uimm) { return rv_i((int32_t)csr, uimm, 6, rd, 0x73); }
static inline uint32_t CSRRCI(unsigned rd, unsigned csr, unsigned uimm) { return rv_i((int32_t)csr, uimm, 7, rd, 0x73); }
static inline uint32_t CSRR(unsigned rd, unsigned csr) { return CSRRS(rd, csr, ZERO); }
static inline uint32_t CSRW(unsigned csr, unsigned rs1) { return CSRRW(ZERO, csr, rs1); }
static inline uint32_t SRET(void) { return 0x10200073; }
static inline uint32_t MRET(void) { return 0x30200073; }
static inline uint32_t WFI(void) { return 0x10500073; }
static inline uint32_t SFENCE_VMA(unsigned rs1, unsigned rs2) { return rv_r(0x09, rs2, rs1, 0, 0, 0x73); }

/* F and D. rm: 0 RNE, 1 RTZ, 2 RDN, 3 RUP, 4 RMM, 7 DYN. */
enum { RM_RNE = 0, RM_RTZ = 1, RM_RDN = 2, RM_RUP = 3, RM_RMM = 4, RM_DYN = 7 };
static inline uint32_t FLW(unsigned frd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 2, frd, 0x07); }
static inline uint32_t FLD(unsigned frd, int32_t off, unsigned rs1) { return rv_i(off, rs1, 3, frd, 0x07); }
static inline uint32_t FSW(unsigned frs2, int32_t off, unsigned rs1) { return rv_s(off, frs2, rs1, 2, 0x27); }
static inline uint32_t FSD(unsigned frs2, int32_t off, unsigned rs1) { return rv_s(off, frs2, rs1, 3, 0x27); }
static inline uint32_t FADD_S(unsigned rd, unsigned a, unsigned b, unsigned rm) { return rv_r(0x00, b, a, rm, rd, 0x53); }
static inline uint32_t FADD_D(unsigned rd, unsigned a, unsigned b, unsigned rm) { return rv_r(0x01, b, a, rm, rd, 0x53); }
static inline uint32_t FDIV_S(unsigned rd, unsigned a, unsigned b, unsigned rm) { return rv_r(0x0c, b, a, rm, rd, 0x53); }
static inline uint32_t FSGNJ_S(unsigned rd, unsigned a, unsigned b) { return rv_r(0x10, b, a, 0, rd, 0x53); }
static inline uint32_t FSGNJ_D(unsigned rd, unsigned a, unsigned b) { return rv_r(0x11, b, a, 0, rd, 0x53); }
static inline uint32_t FMV_X_W(unsigned rd, unsigned frs1) { return rv_r(0x70, 0, frs1, 0, rd, 0x53); }
static inline uint32_t FMV_W_X(unsigned frd, unsigned rs1) { return rv_r(0x78, 0, rs1, 0, frd, 0x53); }
static inline uint32_t FMV_X_D(unsigned rd, unsigned frs1) { return rv_r(0x71, 0, frs1, 0, rd, 0x53); }
static inline uint32_t FMV_D_X(unsigned frd, unsigned rs1) { return rv_r(0x79, 0, rs1, 0, frd, 0x53); }
static inline uint32_t FCVT_D_S(unsigned frd, unsigned frs1, unsigned rm) { return rv_r(0x21, 0, frs1, rm, frd, 0x53); }
static inline uint32_t FCVT_W_S(unsigned rd, unsigned frs1, unsigned rm) { return rv_r(0x60, 0, frs1, rm, rd, 0x53); }
/* R4: fmadd.fmt rd, rs1, rs2, rs3 */
static inline uint32_t rv_r4(uint32_t op, uint32_t fmt, unsigned rd, unsigned a, unsigned b, unsigned c,
			     unsigned rm)
{
	return (c & 31) << 27 | fmt << 25 | (b & 31) << 20 | (a & 31) << 15 | rm << 12 | (rd & 31) << 7 | op;
}
static inline uint32_t FMADD_S(unsigned rd, unsigned a, unsigned b, unsigned c, unsigned rm) { return rv_r4(0x43, 0, rd, a, b, c, rm); }
static inline uint32_t FMADD_D(unsigned rd, unsigned a, unsigned b, unsigned c, unsigned rm) { return rv_r4(0x43, 1, rd, a, b, c, rm); }
static inline uint32_t FNMSUB_D(unsigned rd, unsigned a, unsigned b, unsigned c, unsigned rm) { return rv_r4(0x4b, 1, rd, a, b, c, rm); }

/* ---- RVC. Registers are given as x numbers; x8..x15 where the format
 * only has 3 bits. Immediates are the byte values, as in assembly. -------- */

static inline uint16_t rvc_bit(uint32_t v, unsigned from, unsigned to)
{
	return (uint16_t)(((v >> from) & 1) << to);
}

static inline uint16_t rvc_rp(unsigned r) { return (uint16_t)((r - 8) & 7); }

static inline uint16_t C_ADDI4SPN(unsigned rdp, uint32_t nzuimm)
{
	return (uint16_t)(0 << 13 | (nzuimm >> 4 & 3) << 11 | (nzuimm >> 6 & 15) << 7 |
			  rvc_bit(nzuimm, 2, 6) | rvc_bit(nzuimm, 3, 5) | rvc_rp(rdp) << 2 | 0);
}
/* c.ld / c.sd / c.fld / c.fsd: uimm[5:3] in 12:10, uimm[7:6] in 6:5 */
static inline uint16_t rvc_cl_d(uint32_t f3, unsigned r1, uint32_t uimm, unsigned r2)
{
	return (uint16_t)(f3 << 13 | (uimm >> 3 & 7) << 10 | rvc_rp(r1) << 7 | (uimm >> 6 & 3) << 5 |
			  rvc_rp(r2) << 2);
}
/* c.lw / c.sw: uimm[5:3] in 12:10, uimm[2] in 6, uimm[6] in 5 */
static inline uint16_t rvc_cl_w(uint32_t f3, unsigned r1, uint32_t uimm, unsigned r2)
{
	return (uint16_t)(f3 << 13 | (uimm >> 3 & 7) << 10 | rvc_rp(r1) << 7 | rvc_bit(uimm, 2, 6) |
			  rvc_bit(uimm, 6, 5) | rvc_rp(r2) << 2);
}
static inline uint16_t C_FLD(unsigned frdp, uint32_t uimm, unsigned rs1p) { return rvc_cl_d(1, rs1p, uimm, frdp); }
static inline uint16_t C_LW(unsigned rdp, uint32_t uimm, unsigned rs1p) { return rvc_cl_w(2, rs1p, uimm, rdp); }
static inline uint16_t C_LD(unsigned rdp, uint32_t uimm, unsigned rs1p) { return rvc_cl_d(3, rs1p, uimm, rdp); }
static inline uint16_t C_FSD(unsigned frs2p, uint32_t uimm, unsigned rs1p) { return rvc_cl_d(5, rs1p, uimm, frs2p); }
static inline uint16_t C_SW(unsigned rs2p, uint32_t uimm, unsigned rs1p) { return rvc_cl_w(6, rs1p, uimm, rs2p); }
static inline uint16_t C_SD(unsigned rs2p, uint32_t uimm, unsigned rs1p) { return rvc_cl_d(7, rs1p, uimm, rs2p); }

/* CI with a 6-bit immediate: imm[5] in 12, imm[4:0] in 6:2 */
static inline uint16_t rvc_ci(uint32_t f3, unsigned rd, int32_t imm, uint32_t op)
{
	uint32_t u = (uint32_t)imm;
	return (uint16_t)(f3 << 13 | (u >> 5 & 1) << 12 | (rd & 31) << 7 | (u & 31) << 2 | op);
}
static inline uint16_t C_NOP(void) { return 0x0001; }
static inline uint16_t C_ADDI(unsigned rd, int32_t imm) { return rvc_ci(0, rd, imm, 1); }
static inline uint16_t C_ADDIW(unsigned rd, int32_t imm) { return rvc_ci(1, rd, imm, 1); }
static inline uint16_t C_LI(unsigned rd, int32_t imm) { return rvc_ci(2, rd, imm, 1); }
/* imm6 is the sign-extended value of bits 17:12 of the result. */
static inline uint16_t C_LUI(unsigned rd, int32_t imm6) { return rvc_ci(3, rd, imm6, 1); }
static inline uint16_t C_ADDI16SP(int32_t nzimm)
{
	uint32_t u = (uint32_t)nzimm;
	return (uint16_t)(3 << 13 | rvc_bit(u, 9, 12) | SP << 7 | rvc_bit(u, 4, 6) | rvc_bit(u, 6, 5) |
			  (u >> 7 & 3) << 3 | rvc_bit(u, 5, 2) | 1);
}
static inline uint16_t C_SRLI(unsigned rdp, unsigned sh) { return (uint16_t)(4 << 13 | rvc_bit(sh, 5, 12) | 0 << 10 | rvc_rp(rdp) << 7 | (sh & 31) << 2 | 1); }
static inline uint16_t C_SRAI(unsigned rdp, unsigned sh) { return (uint16_t)(4 << 13 | rvc_bit(sh, 5, 12) | 1 << 10 | rvc_rp(rdp) << 7 | (sh & 31) << 2 | 1); }
static inline uint16_t C_ANDI(unsigned rdp, int32_t imm)
{
	uint32_t u = (uint32_t)imm;
	return (uint16_t)(4 << 13 | (u >> 5 & 1) << 12 | 2 << 10 | rvc_rp(rdp) << 7 | (u & 31) << 2 | 1);
}
static inline uint16_t rvc_ca(uint32_t b12, uint32_t f2, unsigned rdp, unsigned rs2p)
{
	return (uint16_t)(4 << 13 | b12 << 12 | 3 << 10 | rvc_rp(rdp) << 7 | f2 << 5 | rvc_rp(rs2p) << 2 | 1);
}
static inline uint16_t C_SUB(unsigned rdp, unsigned rs2p) { return rvc_ca(0, 0, rdp, rs2p); }
static inline uint16_t C_XOR(unsigned rdp, unsigned rs2p) { return rvc_ca(0, 1, rdp, rs2p); }
static inline uint16_t C_OR(unsigned rdp, unsigned rs2p) { return rvc_ca(0, 2, rdp, rs2p); }
static inline uint16_t C_AND(unsigned rdp, unsigned rs2p) { return rvc_ca(0, 3, rdp, rs2p); }
static inline uint16_t C_SUBW(unsigned rdp, unsigned rs2p) { return rvc_ca(1, 0, rdp, rs2p); }
static inline uint16_t C_ADDW(unsigned rdp, unsigned rs2p) { return rvc_ca(1, 1, rdp, rs2p); }
static inline uint16_t C_J(int32_t off)
{
	uint32_t u = (uint32_t)off;
	return (uint16_t)(5 << 13 | rvc_bit(u, 11, 12) | rvc_bit(u, 4, 11) | (u >> 8 & 3) << 9 |
			  rvc_bit(u, 10, 8) | rvc_bit(u, 6, 7) | rvc_bit(u, 7, 6) | (u >> 1 & 7) << 3 |
			  rvc_bit(u, 5, 2) | 1);
}
static inline uint16_t rvc_cb(uint32_t f3, unsigned rs1p, int32_t off)
{
	uint32_t u = (uint32_t)off;
	return (uint16_t)(f3 << 13 | rvc_bit(u, 8, 12) | (u >> 3 & 3) << 10 | rvc_rp(rs1p) << 7 |
			  (u >> 6 & 3) << 5 | (u >> 1 & 3) << 3 | rvc_bit(u, 5, 2) | 1);
}
static inline uint16_t C_BEQZ(unsigned rs1p, int32_t off) { return rvc_cb(6, rs1p, off); }
static inline uint16_t C_BNEZ(unsigned rs1p, int32_t off) { return rvc_cb(7, rs1p, off); }
static inline uint16_t C_SLLI(unsigned rd, unsigned sh) { return (uint16_t)(rvc_bit(sh, 5, 12) | (rd & 31) << 7 | (sh & 31) << 2 | 2); }
static inline uint16_t C_FLDSP(unsigned frd, uint32_t uimm)
{
	return (uint16_t)(1 << 13 | rvc_bit(uimm, 5, 12) | (frd & 31) << 7 | (uimm >> 3 & 3) << 5 |
			  (uimm >> 6 & 7) << 2 | 2);
}
static inline uint16_t C_LWSP(unsigned rd, uint32_t uimm)
{
	return (uint16_t)(2 << 13 | rvc_bit(uimm, 5, 12) | (rd & 31) << 7 | (uimm >> 2 & 7) << 4 |
			  (uimm >> 6 & 3) << 2 | 2);
}
static inline uint16_t C_LDSP(unsigned rd, uint32_t uimm)
{
	return (uint16_t)(3 << 13 | rvc_bit(uimm, 5, 12) | (rd & 31) << 7 | (uimm >> 3 & 3) << 5 |
			  (uimm >> 6 & 7) << 2 | 2);
}
static inline uint16_t C_JR(unsigned rs1) { return (uint16_t)(4 << 13 | (rs1 & 31) << 7 | 2); }
static inline uint16_t C_MV(unsigned rd, unsigned rs2) { return (uint16_t)(4 << 13 | (rd & 31) << 7 | (rs2 & 31) << 2 | 2); }
static inline uint16_t C_EBREAK(void) { return 0x9002; }
static inline uint16_t C_JALR(unsigned rs1) { return (uint16_t)(4 << 13 | 1 << 12 | (rs1 & 31) << 7 | 2); }
static inline uint16_t C_ADD(unsigned rd, unsigned rs2) { return (uint16_t)(4 << 13 | 1 << 12 | (rd & 31) << 7 | (rs2 & 31) << 2 | 2); }
static inline uint16_t C_FSDSP(unsigned frs2, uint32_t uimm)
{
	return (uint16_t)(5 << 13 | (uimm >> 3 & 7) << 10 | (uimm >> 6 & 7) << 7 | (frs2 & 31) << 2 | 2);
}
static inline uint16_t C_SWSP(unsigned rs2, uint32_t uimm)
{
	return (uint16_t)(6 << 13 | (uimm >> 2 & 15) << 9 | (uimm >> 6 & 3) << 7 | (rs2 & 31) << 2 | 2);
}
static inline uint16_t C_SDSP(unsigned rs2, uint32_t uimm)
{
	return (uint16_t)(7 << 13 | (uimm >> 3 & 7) << 10 | (uimm >> 6 & 7) << 7 | (rs2 & 31) << 2 | 2);
}

#endif
