"""rvimage: tiny RISC-V "kernels" for tests that need a guest but not Linux.

Each is a valid Linux Image header (boot-image-header.rst) followed by a few
hand-encoded instructions, so tern loads it exactly like a real kernel."""
import struct

# instruction encoders (RISC-V unprivileged ISA, chapter 24)


def _i(imm, rs1, f3, rd, op):
    return ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def addi(rd, rs1, imm):
    return _i(imm, rs1, 0, rd, 0x13)


def lui(rd, imm20):
    return ((imm20 & 0xfffff) << 12) | (rd << 7) | 0x37


def auipc(rd, imm20):
    return ((imm20 & 0xfffff) << 12) | (rd << 7) | 0x17


def csrrw(rd, csr, rs1):
    return _i(csr, rs1, 1, rd, 0x73)


def csrrs(rd, csr, rs1):
    return _i(csr, rs1, 2, rd, 0x73)


def jal(rd, off):
    return (((off >> 20) & 1) << 31) | (((off >> 1) & 0x3ff) << 21) | \
        (((off >> 11) & 1) << 20) | (((off >> 12) & 0xff) << 12) | (rd << 7) | 0x6f


ECALL = 0x00000073
WFI = 0x10500073
A0, A1, A6, A7, T0 = 10, 11, 16, 17, 5
STVEC, SCAUSE = 0x105, 0x142


def li32(rd, value):
    """lui + addi for a 32-bit constant."""
    lo = value & 0xfff
    if lo >= 0x800:
        lo -= 0x1000
    hi = ((value - lo) >> 12) & 0xfffff
    return [lui(rd, hi), addi(rd, rd, lo)]


def image(code_words, image_size=None):
    """A 64-byte Image header whose first instruction jumps over it to the code."""
    code = b"".join(struct.pack("<I", w) for w in code_words)
    size = image_size or 64 + len(code)
    header = struct.pack("<IIQQQIIQQII", jal(0, 64), 0, 0x200000, size, 0, 2, 0, 0,
                         0x5643534952, 0x05435352, 0)
    assert len(header) == 64
    return header + code


def idle_kernel(image_size=None):
    """Waits for interrupts forever: a VM that runs but does nothing."""
    return image([WFI, jal(0, -4)], image_size)


def illegal_instruction_kernel():
    """Sets stvec, executes an illegal instruction, prints '0'+scause on the
    SBI debug console from the trap handler, then powers off through SBI."""
    code = [auipc(T0, 0), addi(T0, T0, 24), csrrw(0, STVEC, T0),
            0x00000000,        # the all-zero encoding: defined illegal
            jal(0, 0), jal(0, 0)]
    # handler, at code offset 24
    code += [csrrs(A0, SCAUSE, 0), addi(A0, A0, ord("0"))]
    code += li32(A7, 0x4442434E) + [addi(A6, 0, 2), ECALL]            # DBCN write_byte
    code += li32(A7, 0x53525354) + [addi(A0, 0, 0), addi(A1, 0, 0),  # SRST shutdown
                                    addi(A6, 0, 0), ECALL, jal(0, 0)]
    return image(code)
