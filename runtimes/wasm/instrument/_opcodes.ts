/**
 * Private: opcode tables for the instrumenter: for each supported opcode, the
 * kind of immediate that follows it; for each refused one, why.
 *
 * Supported: MVP, sign-extension, non-trapping float-to-int (0xfc 0–7), bulk
 * memory (0xfc 8–17), reference types, multi-value, fixed-width SIMD (0xfd
 * 0–255) and tail calls. Everything else is refused.
 *
 * @module
 */

/** Immediate kinds of single-byte opcodes. `BAD` means refused. */
export const Imm = {
  BAD: 0,
  NONE: 1,
  BLOCK: 2, // block, if: block type
  LOOP: 3, // loop: block type (+ fuel check inserted)
  ELSE: 4,
  END: 5,
  LABEL: 6, // br, br_if
  BR_TABLE: 7,
  CALL: 8, // call, return_call: function index (remapped)
  CALL_INDIRECT: 9, // type index, table index
  SELECT_T: 10,
  LOCAL: 11,
  GLOBAL: 12,
  TABLE: 13, // table.get, table.set
  MEMARG: 14,
  MEMORY: 15, // memory.size, memory.grow: one 0x00 byte
  I32: 16,
  I64: 17,
  F32: 18,
  F64: 19,
  REF_NULL: 20,
  REF_FUNC: 21,
  PREFIX_FC: 22,
  PREFIX_FD: 23,
} as const;

/** Immediate kind of each single-byte opcode. */
export const OPCODE_IMM: Uint8Array = (() => {
  const t = new Uint8Array(256); // all BAD
  const set = (from: number, to: number, kind: number) => {
    for (let i = from; i <= to; i++) t[i] = kind;
  };
  set(0x00, 0x01, Imm.NONE); // unreachable, nop
  t[0x02] = Imm.BLOCK;
  t[0x03] = Imm.LOOP;
  t[0x04] = Imm.BLOCK;
  t[0x05] = Imm.ELSE;
  t[0x0b] = Imm.END;
  set(0x0c, 0x0d, Imm.LABEL);
  t[0x0e] = Imm.BR_TABLE;
  t[0x0f] = Imm.NONE; // return
  t[0x10] = Imm.CALL;
  t[0x11] = Imm.CALL_INDIRECT;
  t[0x12] = Imm.CALL; // return_call
  t[0x13] = Imm.CALL_INDIRECT; // return_call_indirect
  set(0x1a, 0x1b, Imm.NONE); // drop, select
  t[0x1c] = Imm.SELECT_T;
  set(0x20, 0x22, Imm.LOCAL);
  set(0x23, 0x24, Imm.GLOBAL);
  set(0x25, 0x26, Imm.TABLE);
  set(0x28, 0x3e, Imm.MEMARG);
  set(0x3f, 0x40, Imm.MEMORY);
  t[0x41] = Imm.I32;
  t[0x42] = Imm.I64;
  t[0x43] = Imm.F32;
  t[0x44] = Imm.F64;
  set(0x45, 0xc4, Imm.NONE); // numeric MVP + sign-extension
  t[0xd0] = Imm.REF_NULL;
  t[0xd1] = Imm.NONE; // ref.is_null
  t[0xd2] = Imm.REF_FUNC;
  t[0xfc] = Imm.PREFIX_FC;
  t[0xfd] = Imm.PREFIX_FD;
  return t;
})();

/** Why a refused single-byte opcode is refused (for error messages). */
export function refusedOpcodeReason(op: number): string {
  if (op >= 0x06 && op <= 0x0a) return "exception handling";
  if (op === 0x18 || op === 0x19 || op === 0x1f) return "exception handling";
  if (op === 0x14 || op === 0x15) return "typed function references";
  if (op >= 0xd3 && op <= 0xd6) return "typed function references / GC";
  if (op === 0xfb) return "GC";
  if (op === 0xfe) return "threads/atomics";
  return "unknown opcode";
}

/** Immediate kinds of 0xfc-prefixed opcodes. */
export const FcImm = {
  NONE: 1, // 0-7 trunc_sat
  DATA_MEM: 2, // memory.init: data index, memory 0x00
  DATA: 3, // data.drop
  MEM_MEM: 4, // memory.copy: 0x00 0x00
  MEM: 5, // memory.fill: 0x00
  ELEM_TABLE: 6, // table.init: elem index, table index
  ELEM: 7, // elem.drop
  TABLE_TABLE: 8, // table.copy
  TABLE: 9, // table.grow, table.size, table.fill
} as const;

/** Immediate kind of a 0xfc sub-opcode, or 0 when refused. */
export function fcImm(sub: number): number {
  if (sub <= 7) return FcImm.NONE;
  switch (sub) {
    case 8:
      return FcImm.DATA_MEM;
    case 9:
      return FcImm.DATA;
    case 10:
      return FcImm.MEM_MEM;
    case 11:
      return FcImm.MEM;
    case 12:
      return FcImm.ELEM_TABLE;
    case 13:
      return FcImm.ELEM;
    case 14:
      return FcImm.TABLE_TABLE;
    case 15:
    case 16:
    case 17:
      return FcImm.TABLE;
    default:
      return 0;
  }
}

/** Immediate kinds of 0xfd-prefixed (SIMD) opcodes. */
export const FdImm = {
  NONE: 1,
  MEMARG: 2,
  CONST16: 3, // v128.const: 16 bytes
  SHUFFLE: 4, // i8x16.shuffle: 16 lane bytes
  LANE: 5, // extract/replace lane: 1 lane byte
  MEMARG_LANE: 6, // load/store lane: memarg + 1 lane byte
} as const;

/** Immediate kind of each SIMD sub-opcode 0–255; 0 means not an opcode. */
export const SIMD_IMM: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(FdImm.NONE);
  for (let i = 0x00; i <= 0x0b; i++) t[i] = FdImm.MEMARG;
  t[0x0c] = FdImm.CONST16;
  t[0x0d] = FdImm.SHUFFLE;
  for (let i = 0x15; i <= 0x22; i++) t[i] = FdImm.LANE;
  for (let i = 0x54; i <= 0x5b; i++) t[i] = FdImm.MEMARG_LANE;
  t[0x5c] = FdImm.MEMARG;
  t[0x5d] = FdImm.MEMARG;
  // Holes in the final SIMD opcode space.
  for (
    const hole of [
      0x9a,
      0xa2,
      0xa5,
      0xa6,
      0xaf,
      0xb0,
      0xb2,
      0xb3,
      0xb4,
      0xbb,
      0xc2,
      0xc5,
      0xc6,
      0xcf,
      0xd0,
      0xd2,
      0xd3,
      0xd4,
      0xe2,
      0xee,
    ]
  ) {
    t[hole] = 0;
  }
  return t;
})();

/** Value types accepted in signatures, locals, globals and typed select. */
export function isValType(b: number): boolean {
  return (b >= 0x7b && b <= 0x7f) || b === 0x70 || b === 0x6f;
}

/** Reference types accepted in tables, elements and ref.null. */
export function isRefType(b: number): boolean {
  return b === 0x70 || b === 0x6f;
}

/** Why a value-type byte is refused (for error messages). */
export function refusedTypeReason(b: number): string {
  if (b === 0x69 || b === 0x68 || b === 0x74) return "exception handling";
  if (b === 0x64 || b === 0x63) return "typed function references";
  if (b >= 0x65 && b <= 0x6e) return "GC";
  if (b >= 0x71 && b <= 0x73) return "GC";
  return "unknown value type";
}
