/**
 * The declared signatures of a module's function imports, read from its
 * type and import sections, so that a user host function registered with a
 * signature other than the one the module imports fails at load, not with
 * wrong values at call time.
 *
 * @module
 */

/** A function signature as value type names (`i32`, `i64`, `f32`, `f64`). */
export interface ImportSignature {
  /** Parameter types. */
  params: string[];
  /** Result types. */
  results: string[];
}

const VALTYPES: Record<number, string> = {
  0x7f: "i32",
  0x7e: "i64",
  0x7d: "f32",
  0x7c: "f64",
  0x7b: "v128",
  0x70: "funcref",
  0x6f: "externref",
};

const decoder = new TextDecoder();

class Reader {
  pos = 0;
  constructor(readonly b: Uint8Array) {}
  byte(): number {
    if (this.pos >= this.b.length) throw new RangeError("unexpected end");
    return this.b[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw new RangeError("LEB128 too long");
    }
  }
  name(): string {
    const n = this.u32();
    const s = decoder.decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  limits(): void {
    const flags = this.byte();
    this.u32();
    if (flags & 1) this.u32();
  }
}

/**
 * The signatures of `bytes`' function imports, keyed `module\0name`; `null`
 * when the module uses encodings this reader does not follow (GC types):
 * then nothing is checked.
 */
export function importSignatures(
  bytes: Uint8Array,
): Map<string, ImportSignature> | null {
  try {
    const r = new Reader(bytes);
    r.pos = 8;
    const types: (ImportSignature | null)[] = [];
    const out = new Map<string, ImportSignature>();
    while (r.pos < bytes.length) {
      const id = r.byte();
      const size = r.u32();
      const end = r.pos + size;
      if (id === 1) {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          if (r.byte() !== 0x60) return null; // rec/sub types: not followed
          const vec = () => {
            const k = r.u32();
            const v: string[] = [];
            for (let j = 0; j < k; j++) {
              const t = VALTYPES[r.byte()];
              if (!t) throw new RangeError("unknown value type");
              v.push(t);
            }
            return v;
          };
          const params = vec();
          const results = vec();
          types.push({ params, results });
        }
      } else if (id === 2) {
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const module = r.name();
          const name = r.name();
          const kind = r.byte();
          switch (kind) {
            case 0: {
              const sig = types[r.u32()];
              if (sig) out.set(`${module}\u0000${name}`, sig);
              break;
            }
            case 1:
              if (!VALTYPES[r.byte()]) return null;
              r.limits();
              break;
            case 2:
              r.limits();
              break;
            case 3:
              if (!VALTYPES[r.byte()]) return null;
              r.byte();
              break;
            case 4:
              r.byte();
              r.u32();
              break;
            default:
              return null;
          }
        }
        return out;
      }
      r.pos = end;
    }
    return out;
  } catch {
    return null;
  }
}
