/* decode.c: instruction bits -> struct insn, for RV64IMAFDC + Zicsr + Zifencei.
 *
 * Encodings follow the RISC-V unprivileged ISA manual (20191213): chapter 24
 * ("RV32/64G Instruction Set Listings") and chapter 16 ("C" extension),
 * and the privileged manual for SRET/MRET/WFI/SFENCE.VMA. Compressed
 * instructions are expanded to the operation of their 32-bit equivalent.
 * Everything not listed decodes to RV_OP_ILLEGAL with the raw bits in imm,
 * so the guest gets an illegal-instruction trap with the right mtval. */
#include "cpu/rv64/interp.h"
#include "cpu/rv64/fpu.h"

#include <string.h>

static inline uint32_t bits(uint32_t v, unsigned hi, unsigned lo)
{
	return (v >> lo) & ((1u << (hi - lo + 1)) - 1);
}

static inline int32_t sext(uint32_t v, unsigned width)
{
	return (int32_t)(v << (32 - width)) >> (32 - width);
}

static inline uint8_t dest(uint32_t rd)
{
	return rd == 0 ? 32 : (uint8_t)rd;
}

static void set(struct insn *in, enum rv_op op, uint32_t rd, uint32_t rs1, uint32_t rs2, int32_t imm)
{
	in->op = (uint8_t)op;
	in->rd = dest(rd);
	in->rs1 = (uint8_t)rs1;
	in->rs2 = (uint8_t)rs2;
	in->imm = imm;
}

static void illegal(struct insn *in, uint32_t raw)
{
	memset(in, 0, sizeof(*in));
	in->op = RV_OP_ILLEGAL;
	in->rd = 32;
	in->imm = (int32_t)raw;
}

static int32_t imm_i(uint32_t r) { return (int32_t)r >> 20; }
static int32_t imm_s(uint32_t r) { return sext(bits(r, 31, 25) << 5 | bits(r, 11, 7), 12); }
static int32_t imm_b(uint32_t r)
{
	return sext(bits(r, 31, 31) << 12 | bits(r, 7, 7) << 11 | bits(r, 30, 25) << 5 |
		    bits(r, 11, 8) << 1, 13);
}
static int32_t imm_u(uint32_t r) { return (int32_t)(r & 0xfffff000u); }
static int32_t imm_j(uint32_t r)
{
	return sext(bits(r, 31, 31) << 20 | bits(r, 19, 12) << 12 | bits(r, 20, 20) << 11 |
		    bits(r, 30, 21) << 1, 21);
}

/* OP-FP (and the FMA family): funct7 = funct5 << 2 | fmt, fmt 0 = S, 1 = D. */
static bool decode_fp(uint32_t r, struct insn *in)
{
	uint32_t opcode = bits(r, 6, 0), fmt = bits(r, 26, 25), funct5 = bits(r, 31, 27);
	uint32_t rs2 = bits(r, 24, 20), rm = bits(r, 14, 12);
	int op = -1;
	bool d = fmt == 1;

	if (fmt > 1)
		return false;
	switch (opcode) {
	case 0x43: op = d ? FPU_MADD_D : FPU_MADD_S; break;
	case 0x47: op = d ? FPU_MSUB_D : FPU_MSUB_S; break;
	case 0x4b: op = d ? FPU_NMSUB_D : FPU_NMSUB_S; break;
	case 0x4f: op = d ? FPU_NMADD_D : FPU_NMADD_S; break;
	case 0x53:
		switch (funct5) {
		case 0x00: op = d ? FPU_ADD_D : FPU_ADD_S; break;
		case 0x01: op = d ? FPU_SUB_D : FPU_SUB_S; break;
		case 0x02: op = d ? FPU_MUL_D : FPU_MUL_S; break;
		case 0x03: op = d ? FPU_DIV_D : FPU_DIV_S; break;
		case 0x0b:
			if (rs2 != 0)
				return false;
			op = d ? FPU_SQRT_D : FPU_SQRT_S;
			break;
		case 0x04:
			if (rm > 2)
				return false;
			op = (d ? FPU_SGNJ_D : FPU_SGNJ_S) + (int)rm;
			break;
		case 0x05:
			if (rm > 1)
				return false;
			op = rm ? (d ? FPU_MAX_D : FPU_MAX_S) : (d ? FPU_MIN_D : FPU_MIN_S);
			break;
		case 0x08: /* fcvt.s.d (fmt S, rs2 1) and fcvt.d.s (fmt D, rs2 0) */
			if (!d && rs2 == 1)
				op = FPU_CVT_S_D;
			else if (d && rs2 == 0)
				op = FPU_CVT_D_S;
			else
				return false;
			break;
		case 0x14:
			if (rm == 2)
				op = d ? FPU_EQ_D : FPU_EQ_S;
			else if (rm == 1)
				op = d ? FPU_LT_D : FPU_LT_S;
			else if (rm == 0)
				op = d ? FPU_LE_D : FPU_LE_S;
			else
				return false;
			break;
		case 0x18: /* fcvt.{w,wu,l,lu}.fmt */
			if (rs2 > 3)
				return false;
			op = (d ? FPU_CVT_W_D : FPU_CVT_W_S) + (int)rs2;
			break;
		case 0x1a: /* fcvt.fmt.{w,wu,l,lu} */
			if (rs2 > 3)
				return false;
			op = (d ? FPU_CVT_D_W : FPU_CVT_S_W) + (int)rs2;
			break;
		case 0x1c:
			if (rs2 != 0)
				return false;
			if (rm == 0)
				op = d ? FPU_MV_X_D : FPU_MV_X_W;
			else if (rm == 1)
				op = d ? FPU_CLASS_D : FPU_CLASS_S;
			else
				return false;
			break;
		case 0x1e:
			if (rs2 != 0 || rm != 0)
				return false;
			op = d ? FPU_MV_D_X : FPU_MV_W_X;
			break;
		default:
			return false;
		}
		break;
	default:
		return false;
	}
	in->op = RV_OP_FP;
	in->rd = (uint8_t)bits(r, 11, 7);  /* FP destinations may be f0; fixed below for x0 */
	if (fpu_op_info[op].dst_int)
		in->rd = dest(in->rd);
	in->rs1 = (uint8_t)bits(r, 19, 15);
	in->rs2 = (uint8_t)rs2;
	in->imm = RV_FP_IMM((uint32_t)op, rm, bits(r, 31, 27));
	return true;
}

static void decode32(uint32_t r, struct insn *in)
{
	uint32_t opcode = bits(r, 6, 0), rd = bits(r, 11, 7), f3 = bits(r, 14, 12);
	uint32_t rs1 = bits(r, 19, 15), rs2 = bits(r, 24, 20), f7 = bits(r, 31, 25);

	switch (opcode) {
	case 0x37: set(in, RV_OP_LUI, rd, 0, 0, imm_u(r)); return;
	case 0x17: set(in, RV_OP_AUIPC, rd, 0, 0, imm_u(r)); return;
	case 0x6f: set(in, RV_OP_JAL, rd, 0, 0, imm_j(r)); return;
	case 0x67:
		if (f3 != 0)
			break;
		set(in, RV_OP_JALR, rd, rs1, 0, imm_i(r));
		return;
	case 0x63: {
		static const enum rv_op br[8] = { RV_OP_BEQ, RV_OP_BNE, RV_OP_ILLEGAL, RV_OP_ILLEGAL,
						  RV_OP_BLT, RV_OP_BGE, RV_OP_BLTU, RV_OP_BGEU };
		if (br[f3] == RV_OP_ILLEGAL)
			break;
		set(in, br[f3], 0, rs1, rs2, imm_b(r));
		return;
	}
	case 0x03: {
		static const enum rv_op ld[8] = { RV_OP_LB, RV_OP_LH, RV_OP_LW, RV_OP_LD,
						  RV_OP_LBU, RV_OP_LHU, RV_OP_LWU, RV_OP_ILLEGAL };
		if (ld[f3] == RV_OP_ILLEGAL)
			break;
		set(in, ld[f3], rd, rs1, 0, imm_i(r));
		return;
	}
	case 0x23: {
		static const enum rv_op st[4] = { RV_OP_SB, RV_OP_SH, RV_OP_SW, RV_OP_SD };
		if (f3 > 3)
			break;
		set(in, st[f3], 0, rs1, rs2, imm_s(r));
		return;
	}
	case 0x13:
		switch (f3) {
		case 0: set(in, RV_OP_ADDI, rd, rs1, 0, imm_i(r)); return;
		case 2: set(in, RV_OP_SLTI, rd, rs1, 0, imm_i(r)); return;
		case 3: set(in, RV_OP_SLTIU, rd, rs1, 0, imm_i(r)); return;
		case 4: set(in, RV_OP_XORI, rd, rs1, 0, imm_i(r)); return;
		case 6: set(in, RV_OP_ORI, rd, rs1, 0, imm_i(r)); return;
		case 7: set(in, RV_OP_ANDI, rd, rs1, 0, imm_i(r)); return;
		case 1:
			if (bits(r, 31, 26) != 0)
				break;
			set(in, RV_OP_SLLI, rd, rs1, 0, (int32_t)bits(r, 25, 20));
			return;
		case 5:
			if (bits(r, 31, 26) == 0x00)
				set(in, RV_OP_SRLI, rd, rs1, 0, (int32_t)bits(r, 25, 20));
			else if (bits(r, 31, 26) == 0x10)
				set(in, RV_OP_SRAI, rd, rs1, 0, (int32_t)bits(r, 25, 20));
			else
				break;
			return;
		}
		break;
	case 0x1b:
		switch (f3) {
		case 0: set(in, RV_OP_ADDIW, rd, rs1, 0, imm_i(r)); return;
		case 1:
			if (f7 != 0)
				break;
			set(in, RV_OP_SLLIW, rd, rs1, 0, (int32_t)rs2);
			return;
		case 5:
			if (f7 == 0x00)
				set(in, RV_OP_SRLIW, rd, rs1, 0, (int32_t)rs2);
			else if (f7 == 0x20)
				set(in, RV_OP_SRAIW, rd, rs1, 0, (int32_t)rs2);
			else
				break;
			return;
		}
		break;
	case 0x33: {
		static const enum rv_op base[8] = { RV_OP_ADD, RV_OP_SLL, RV_OP_SLT, RV_OP_SLTU,
						    RV_OP_XOR, RV_OP_SRL, RV_OP_OR, RV_OP_AND };
		static const enum rv_op mext[8] = { RV_OP_MUL, RV_OP_MULH, RV_OP_MULHSU, RV_OP_MULHU,
						    RV_OP_DIV, RV_OP_DIVU, RV_OP_REM, RV_OP_REMU };
		if (f7 == 0x00)
			set(in, base[f3], rd, rs1, rs2, 0);
		else if (f7 == 0x01)
			set(in, mext[f3], rd, rs1, rs2, 0);
		else if (f7 == 0x20 && f3 == 0)
			set(in, RV_OP_SUB, rd, rs1, rs2, 0);
		else if (f7 == 0x20 && f3 == 5)
			set(in, RV_OP_SRA, rd, rs1, rs2, 0);
		else
			break;
		return;
	}
	case 0x3b:
		if (f7 == 0x00 && f3 == 0)
			set(in, RV_OP_ADDW, rd, rs1, rs2, 0);
		else if (f7 == 0x20 && f3 == 0)
			set(in, RV_OP_SUBW, rd, rs1, rs2, 0);
		else if (f7 == 0x00 && f3 == 1)
			set(in, RV_OP_SLLW, rd, rs1, rs2, 0);
		else if (f7 == 0x00 && f3 == 5)
			set(in, RV_OP_SRLW, rd, rs1, rs2, 0);
		else if (f7 == 0x20 && f3 == 5)
			set(in, RV_OP_SRAW, rd, rs1, rs2, 0);
		else if (f7 == 0x01 && f3 == 0)
			set(in, RV_OP_MULW, rd, rs1, rs2, 0);
		else if (f7 == 0x01 && f3 == 4)
			set(in, RV_OP_DIVW, rd, rs1, rs2, 0);
		else if (f7 == 0x01 && f3 == 5)
			set(in, RV_OP_DIVUW, rd, rs1, rs2, 0);
		else if (f7 == 0x01 && f3 == 6)
			set(in, RV_OP_REMW, rd, rs1, rs2, 0);
		else if (f7 == 0x01 && f3 == 7)
			set(in, RV_OP_REMUW, rd, rs1, rs2, 0);
		else
			break;
		return;
	case 0x2f: {
		uint32_t f5 = bits(r, 31, 27);
		static const enum rv_op amo_w[32] = {
			[0x00] = RV_OP_AMOADD_W, [0x01] = RV_OP_AMOSWAP_W, [0x02] = RV_OP_LR_W,
			[0x03] = RV_OP_SC_W, [0x04] = RV_OP_AMOXOR_W, [0x08] = RV_OP_AMOOR_W,
			[0x0c] = RV_OP_AMOAND_W, [0x10] = RV_OP_AMOMIN_W, [0x14] = RV_OP_AMOMAX_W,
			[0x18] = RV_OP_AMOMINU_W, [0x1c] = RV_OP_AMOMAXU_W,
		};
		static const enum rv_op amo_d[32] = {
			[0x00] = RV_OP_AMOADD_D, [0x01] = RV_OP_AMOSWAP_D, [0x02] = RV_OP_LR_D,
			[0x03] = RV_OP_SC_D, [0x04] = RV_OP_AMOXOR_D, [0x08] = RV_OP_AMOOR_D,
			[0x0c] = RV_OP_AMOAND_D, [0x10] = RV_OP_AMOMIN_D, [0x14] = RV_OP_AMOMAX_D,
			[0x18] = RV_OP_AMOMINU_D, [0x1c] = RV_OP_AMOMAXU_D,
		};
		enum rv_op op;
		if (f3 == 2)
			op = amo_w[f5];
		else if (f3 == 3)
			op = amo_d[f5];
		else
			break;
		/* 0 is RV_OP_DECODE: an unassigned funct5 */
		if (op == RV_OP_DECODE)
			break;
		if ((op == RV_OP_LR_W || op == RV_OP_LR_D) && rs2 != 0)
			break;
		set(in, op, rd, rs1, rs2, 0);
		return;
	}
	case 0x0f:
		if (f3 == 0) {
			set(in, RV_OP_FENCE, 0, 0, 0, 0);
			return;
		}
		if (f3 == 1) {
			set(in, RV_OP_FENCE_I, 0, 0, 0, 0);
			return;
		}
		break;
	case 0x73:
		if (f3 == 0) {
			if (rd != 0)
				break;
			if (r == 0x00000073) {
				set(in, RV_OP_ECALL, 0, 0, 0, 0);
				return;
			}
			if (r == 0x00100073) {
				set(in, RV_OP_EBREAK, 0, 0, 0, 0);
				return;
			}
			if (r == 0x10200073) {
				set(in, RV_OP_SRET, 0, 0, 0, 0);
				return;
			}
			if (r == 0x30200073) {
				set(in, RV_OP_MRET, 0, 0, 0, 0);
				return;
			}
			if (r == 0x10500073) {
				set(in, RV_OP_WFI, 0, 0, 0, 0);
				return;
			}
			if (f7 == 0x09) {
				set(in, RV_OP_SFENCE_VMA, 0, rs1, rs2, 0);
				return;
			}
			break;
		}
		if (f3 == 4)
			break;
		{
			static const enum rv_op csr_ops[8] = {
				RV_OP_ILLEGAL, RV_OP_CSRRW, RV_OP_CSRRS, RV_OP_CSRRC,
				RV_OP_ILLEGAL, RV_OP_CSRRWI, RV_OP_CSRRSI, RV_OP_CSRRCI,
			};
			/* rs1 is the register or the 5-bit immediate; imm the CSR
			 * and the architectural rd, to tell x0 apart. */
			set(in, csr_ops[f3], rd, rs1, 0, RV_CSR_IMM(bits(r, 31, 20), rd));
			return;
		}
	case 0x07:
		if (f3 == 2)
			set(in, RV_OP_FLW, 0, rs1, 0, imm_i(r));
		else if (f3 == 3)
			set(in, RV_OP_FLD, 0, rs1, 0, imm_i(r));
		else
			break;
		in->rd = (uint8_t)rd;   /* an FP register: f0 is a real register */
		return;
	case 0x27:
		if (f3 == 2)
			set(in, RV_OP_FSW, 0, rs1, rs2, imm_s(r));
		else if (f3 == 3)
			set(in, RV_OP_FSD, 0, rs1, rs2, imm_s(r));
		else
			break;
		return;
	case 0x43: case 0x47: case 0x4b: case 0x4f: case 0x53:
		if (decode_fp(r, in))
			return;
		break;
	}
	illegal(in, r);
}

/* Compressed register fields name x8..x15. */
static inline uint32_t creg(uint32_t v) { return v + 8; }

static void decode16(uint32_t r, struct insn *in)
{
	uint32_t quadrant = r & 3, f3 = bits(r, 15, 13);
	uint32_t rd = bits(r, 11, 7), rs2 = bits(r, 6, 2);
	uint32_t rdp = creg(bits(r, 4, 2)), rs1p = creg(bits(r, 9, 7));

	switch (quadrant) {
	case 0:
		switch (f3) {
		case 0: { /* c.addi4spn */
			uint32_t imm = bits(r, 12, 11) << 4 | bits(r, 10, 7) << 6 | bits(r, 6, 6) << 2 |
				       bits(r, 5, 5) << 3;
			if (imm == 0)
				break;
			set(in, RV_OP_ADDI, rdp, 2, 0, (int32_t)imm);
			return;
		}
		case 1: /* c.fld */
			set(in, RV_OP_FLD, 0, rs1p, 0, (int32_t)(bits(r, 12, 10) << 3 | bits(r, 6, 5) << 6));
			in->rd = (uint8_t)rdp;
			return;
		case 2: /* c.lw */
			set(in, RV_OP_LW, rdp, rs1p, 0,
			    (int32_t)(bits(r, 12, 10) << 3 | bits(r, 6, 6) << 2 | bits(r, 5, 5) << 6));
			return;
		case 3: /* c.ld */
			set(in, RV_OP_LD, rdp, rs1p, 0, (int32_t)(bits(r, 12, 10) << 3 | bits(r, 6, 5) << 6));
			return;
		case 5: /* c.fsd */
			set(in, RV_OP_FSD, 0, rs1p, rdp, (int32_t)(bits(r, 12, 10) << 3 | bits(r, 6, 5) << 6));
			return;
		case 6: /* c.sw */
			set(in, RV_OP_SW, 0, rs1p, rdp,
			    (int32_t)(bits(r, 12, 10) << 3 | bits(r, 6, 6) << 2 | bits(r, 5, 5) << 6));
			return;
		case 7: /* c.sd */
			set(in, RV_OP_SD, 0, rs1p, rdp, (int32_t)(bits(r, 12, 10) << 3 | bits(r, 6, 5) << 6));
			return;
		}
		break;
	case 1: {
		int32_t imm6 = sext(bits(r, 12, 12) << 5 | bits(r, 6, 2), 6);
		switch (f3) {
		case 0: /* c.addi (c.nop when rd = 0) */
			set(in, RV_OP_ADDI, rd, rd, 0, imm6);
			return;
		case 1: /* c.addiw */
			if (rd == 0)
				break;
			set(in, RV_OP_ADDIW, rd, rd, 0, imm6);
			return;
		case 2: /* c.li */
			set(in, RV_OP_ADDI, rd, 0, 0, imm6);
			return;
		case 3:
			if (rd == 2) { /* c.addi16sp */
				int32_t imm = sext(bits(r, 12, 12) << 9 | bits(r, 6, 6) << 4 |
						   bits(r, 5, 5) << 6 | bits(r, 4, 3) << 7 |
						   bits(r, 2, 2) << 5, 10);
				if (imm == 0)
					break;
				set(in, RV_OP_ADDI, 2, 2, 0, imm);
				return;
			}
			if (imm6 == 0) /* c.lui with 0 is reserved */
				break;
			set(in, RV_OP_LUI, rd, 0, 0, (int32_t)((uint32_t)imm6 << 12));
			return;
		case 4: {
			uint32_t f2 = bits(r, 11, 10);
			uint32_t shamt = bits(r, 12, 12) << 5 | bits(r, 6, 2);
			if (f2 == 0) {
				set(in, RV_OP_SRLI, rs1p, rs1p, 0, (int32_t)shamt);
				return;
			}
			if (f2 == 1) {
				set(in, RV_OP_SRAI, rs1p, rs1p, 0, (int32_t)shamt);
				return;
			}
			if (f2 == 2) {
				set(in, RV_OP_ANDI, rs1p, rs1p, 0, imm6);
				return;
			}
			uint32_t f = bits(r, 12, 12) << 2 | bits(r, 6, 5);
			static const enum rv_op arith[8] = {
				RV_OP_SUB, RV_OP_XOR, RV_OP_OR, RV_OP_AND,
				RV_OP_SUBW, RV_OP_ADDW, RV_OP_ILLEGAL, RV_OP_ILLEGAL,
			};
			if (arith[f] == RV_OP_ILLEGAL)
				break;
			set(in, arith[f], rs1p, rs1p, rdp, 0);
			return;
		}
		case 5: { /* c.j */
			int32_t imm = sext(bits(r, 12, 12) << 11 | bits(r, 11, 11) << 4 |
					   bits(r, 10, 9) << 8 | bits(r, 8, 8) << 10 | bits(r, 7, 7) << 6 |
					   bits(r, 6, 6) << 7 | bits(r, 5, 3) << 1 | bits(r, 2, 2) << 5, 12);
			set(in, RV_OP_JAL, 0, 0, 0, imm);
			return;
		}
		case 6: case 7: { /* c.beqz, c.bnez */
			int32_t imm = sext(bits(r, 12, 12) << 8 | bits(r, 11, 10) << 3 |
					   bits(r, 6, 5) << 6 | bits(r, 4, 3) << 1 | bits(r, 2, 2) << 5, 9);
			set(in, f3 == 6 ? RV_OP_BEQ : RV_OP_BNE, 0, rs1p, 0, imm);
			return;
		}
		}
		break;
	}
	case 2:
		switch (f3) {
		case 0: { /* c.slli */
			uint32_t shamt = bits(r, 12, 12) << 5 | bits(r, 6, 2);
			set(in, RV_OP_SLLI, rd, rd, 0, (int32_t)shamt);
			return;
		}
		case 1: /* c.fldsp */
			set(in, RV_OP_FLD, 0, 2, 0,
			    (int32_t)(bits(r, 12, 12) << 5 | bits(r, 6, 5) << 3 | bits(r, 4, 2) << 6));
			in->rd = (uint8_t)rd;
			return;
		case 2: /* c.lwsp */
			if (rd == 0)
				break;
			set(in, RV_OP_LW, rd, 2, 0,
			    (int32_t)(bits(r, 12, 12) << 5 | bits(r, 6, 4) << 2 | bits(r, 3, 2) << 6));
			return;
		case 3: /* c.ldsp */
			if (rd == 0)
				break;
			set(in, RV_OP_LD, rd, 2, 0,
			    (int32_t)(bits(r, 12, 12) << 5 | bits(r, 6, 5) << 3 | bits(r, 4, 2) << 6));
			return;
		case 4:
			if (bits(r, 12, 12) == 0) {
				if (rs2 == 0) { /* c.jr */
					if (rd == 0)
						break;
					set(in, RV_OP_JALR, 0, rd, 0, 0);
				} else { /* c.mv */
					set(in, RV_OP_ADD, rd, 0, rs2, 0);
				}
				return;
			}
			if (rd == 0 && rs2 == 0) {
				set(in, RV_OP_EBREAK, 0, 0, 0, 0);
				return;
			}
			if (rs2 == 0) { /* c.jalr */
				set(in, RV_OP_JALR, 1, rd, 0, 0);
				return;
			}
			set(in, RV_OP_ADD, rd, rd, rs2, 0); /* c.add */
			return;
		case 5: /* c.fsdsp */
			set(in, RV_OP_FSD, 0, 2, rs2, (int32_t)(bits(r, 12, 10) << 3 | bits(r, 9, 7) << 6));
			return;
		case 6: /* c.swsp */
			set(in, RV_OP_SW, 0, 2, rs2, (int32_t)(bits(r, 12, 9) << 2 | bits(r, 8, 7) << 6));
			return;
		case 7: /* c.sdsp */
			set(in, RV_OP_SD, 0, 2, rs2, (int32_t)(bits(r, 12, 10) << 3 | bits(r, 9, 7) << 6));
			return;
		}
		break;
	}
	illegal(in, r & 0xffff);
}

void rv_decode(uint32_t raw, struct insn *out)
{
	memset(out, 0, sizeof(*out));
	if ((raw & 3) == 3)
		decode32(raw, out);
	else
		decode16(raw & 0xffff, out);
}
