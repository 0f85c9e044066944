/**
 * A small deterministic PRNG (mulberry32): numbers in [0, 1) from a seed, so a
 * randomised run (the invariant test, the chaos run) can be replayed from it.
 *
 * @example const rand = prng(42); const roll = rand();
 */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
