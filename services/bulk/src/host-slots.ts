/**
 * Host slots: at most `slots` bulk workers of one host apply chunks at a
 * time; the others stand by and take a slot when one frees.
 *
 * Applying a chunk is CPU work (parse, diff, encode, the driver's packets),
 * and worker processes on one host share its cores. Past one worker per
 * core, more processes did not add throughput, they took it away: 4
 * workers on 2 cores spent 20–48% more CPU per item than 2 for the same
 * statements, commits and redo (four V8 heaps and JITs time-slicing two
 * cores' caches), and a 500,000-item job took 1.02–1.27× as long. A worker
 * past its host's slots now waits, connected and ready, instead of
 * competing: adding workers to a host never slows a job down, a crashed
 * worker's slot passes to a standby within the lease's time to live, and
 * workers on other hosts (other slot keys) add their own cores.
 *
 * A slot is a key of a NATS KV bucket, `<host>.<n>` for n < slots, taken by
 * kv.create (which fails while another holder's entry lives) and kept by
 * compare-and-set updates every third of the bucket's time to live. A
 * holder whose update fails (the entry expired while it was cut off, and
 * perhaps someone else took it) has lost the slot and must stop taking new
 * work; what it has in hand finishes, and chunks are idempotent, so an
 * overlap of one lease's length costs CPU, never correctness.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { pause } from "@stockroom/common";
import type { NatsDeps } from "@stockroom/common/nats";

export interface HostSlotOptions {
  /** The KV bucket holding the slots (one per deployment). */
  bucket: string;
  /** What identifies the host: its workers share its cores (Nomad: the node's id). */
  host: string;
  /** Workers of the host that apply at once. */
  slots: number;
  /** How long a silent holder keeps its slot; holders renew every third of it. */
  ttlMs: number;
  /** This worker, as the holder's value (for operators reading the bucket). */
  holder: string;
}

export interface HostSlot {
  /** The slot's key, `<host>.<n>`. */
  key: string;
  /** Resolves if the slot is lost (a renewal failed): stop taking new work. */
  lost: Promise<void>;
  /** Gives the slot back (deletes the key, if still this holder's), so a standby takes it at once. */
  release(): Promise<void>;
}

/** slotBucket names the KV bucket of the slots of the workers of a chunk stream. */
export function slotBucket(stream: string): string {
  return `${stream}_worker_slots`;
}

/** openSlotBucket opens (creating if needed) the slots' bucket: one entry per key, entries expire after ttlMs. */
export async function openSlotBucket(nats: NatsDeps, options: Pick<HostSlotOptions, "bucket" | "ttlMs">): Promise<KV> {
  return new Kvm(nats.js).create(options.bucket, { history: 1, ttl: options.ttlMs });
}

/**
 * acquireHostSlot takes a free slot of the host, trying again every
 * retryMs (by default a fifth of the time to live) until one frees or
 * signal aborts (then it rejects with the signal's reason).
 */
export async function acquireHostSlot(
  kv: KV,
  options: HostSlotOptions,
  signal: AbortSignal,
  retryMs = options.ttlMs / 5,
): Promise<HostSlot> {
  for (;;) {
    signal.throwIfAborted();
    for (let n = 0; n < options.slots; n++) {
      const key = `${options.host}.${n}`;
      let revision: number;
      try {
        revision = await kv.create(key, options.holder);
      } catch {
        continue; // held (or NATS is unreachable: the next pass tries again)
      }
      return keep(kv, key, revision, options);
    }
    await pause(retryMs, signal);
  }
}

/**
 * keep renews the slot by compare-and-set until it is released. A renewal
 * that fails (NATS unreachable for a moment, or a reply lost after the write
 * went through) is tried again at the next tick, the entry read back to
 * pick up a write of ours it missed; the slot is lost only once a time to
 * live has passed since the last renewal that succeeded, when the entry may
 * have expired and someone else may hold the key.
 */
function keep(kv: KV, key: string, created: number, options: HostSlotOptions): HostSlot {
  let revision = created;
  let renewedAt = Date.now();
  let released = false;
  let onLost!: () => void;
  const lost = new Promise<void>((resolve) => (onLost = resolve));
  let renewing: Promise<unknown> = Promise.resolve();
  const renew = async () => {
    const started = Date.now();
    try {
      revision = await kv.update(key, options.holder, revision);
      renewedAt = started;
      return;
    } catch {
      // below
    }
    if (released) return;
    if (Date.now() - renewedAt >= options.ttlMs) {
      clearInterval(timer);
      onLost();
      return;
    }
    const entry = await kv.get(key).catch(() => null);
    if (entry && entry.operation === "PUT" && entry.string() === options.holder) revision = entry.revision;
  };
  const timer = setInterval(() => {
    renewing = renew();
  }, options.ttlMs / 3);
  return {
    key,
    lost,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await renewing;
      // Only while it is still ours: a lost slot may be someone else's by now.
      await kv.delete(key, { previousSeq: revision }).catch(() => {});
    },
  };
}
