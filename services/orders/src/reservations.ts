/**
 * Hot-SKU batching: the single-line CreateOrder calls of one merchant's SKU
 * that arrive while a reservation of that SKU is in flight in this process
 * join the next one, a single transaction (placeOrderBatch). On a
 * Black-Friday SKU every order used to queue on the product's row lock, one
 * transaction each (about 800 orders/s at best on one row, whatever the
 * hardware); a batch takes the lock once and moves the stock once for all
 * of its orders, so the lock is held once per batch instead of once per
 * order. Nothing waits to fill a batch: the first order of an idle SKU runs
 * at once, alone, and the ones arriving meanwhile form the next batch.
 *
 * Every order keeps what it had on its own: its idempotency key (stored with
 * its response, claimWithResponses), order row, product version, audit
 * entry and events, and its own outcome in arrival order (placed, or
 * refused with placeOrder's FAILED_PRECONDITION). Keys are claimed at the
 * COMMIT, as on the single path (idempotentMutation): a retry of an order
 * that already committed fails its batch's COMMIT on the key, and the batch
 * falls back. A batch whose transaction fails (a key claimed already, a
 * deadlock past retries, a lost connection, even during COMMIT) runs its orders again one by one on the
 * single-order path: an order the batch did commit finds its key there and
 * is answered from it, so nothing is lost or applied twice.
 *
 * Sold out: after each batch the process knows the product's stock as it
 * committed it. An order asking for more than that is refused from a
 * non-locking read (a consistent read never waits on row locks), one shared
 * by the batch, instead of queueing on the row lock to learn there is
 * nothing left; orders that the read shows can be served go on to the lock.
 * So a restock made anywhere (the catalog, a bulk job, another replica's
 * cancel) is seen by the next order. ORDER_SOLD_OUT_TRUST_MS (soldOutTrustMs,
 * default 0) lets the knowledge refuse orders without reading the product
 * for that long, the bound on how stale a "sold out" may be, for a storm of
 * calls on a SKU that stays sold out; this process's own cancels forget it
 * at once (restocked). A refusal is only ever made from committed state; a
 * success only ever under the lock. Before a call with a request_id is
 * refused, its key is read (refuse): the retry of an order placed before the
 * SKU sold out gets its stored answer, not INSUFFICIENT_STOCK.
 *
 * Spread sales: a lone order (nothing else of its SKU waiting) shares its
 * merchant's next transaction with the other SKUs' lone orders (share,
 * transact), which lock their products with one SKIP LOCKED statement: a
 * SKU held elsewhere is placed apart, so it never holds up the rest.
 */
import { create, type MessageShape } from "@bufbuild/protobuf";
import { CreateOrderResponseSchema, type CreateOrderRequestSchema } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { PreconditionError, RateLimitedError } from "@stockroom/common";
import { inTransaction, type CommonTables } from "@stockroom/common/db";
import { claimWithResponses, storedResponses, type IdempotentCall, type StoredAnswer } from "@stockroom/common/rpc";
import { findProduct, type Product } from "@stockroom/catalog";
import type { Transaction } from "kysely";
import { priceLines } from "./domain.ts";
import { orderToProto } from "./convert.ts";
import { placeOrderBatch, type BatchedOrder } from "./lifecycle.ts";
import type { OrderDb } from "./store.ts";
import type { Bulkhead } from "./bulkhead.ts";

export type CreateOrderCall = IdempotentCall<typeof CreateOrderRequestSchema, typeof CreateOrderResponseSchema>;
export type CreateOrderResult = MessageShape<typeof CreateOrderResponseSchema>;

/** Reservation is one single-line CreateOrder call, validated. */
export interface Reservation extends BatchedOrder {
  call: CreateOrderCall;
}

export interface Reservations {
  /** reserve places a single-line order, batched with the concurrent orders of its SKU. */
  reserve(reservation: Reservation): Promise<CreateOrderResult>;
  /** restocked forgets what the process knows of SKUs' stock, after it gave stock back to them. */
  restocked(merchantId: string, skus: readonly string[]): void;
  /**
   * overloaded is the refusal an order of the merchant's gets now, whatever
   * its SKU (its orders under way are past their budget, or its shared
   * transactions' line is full; a lone order's SKU cannot tell), or
   * undefined: the server's early shedding asks it before decoding a call.
   */
  overloaded(merchantId: string): RateLimitedError | undefined;
}

export interface ReservationOptions {
  db: OrderDb;
  reservationTtlMs: number;
  /** The most orders one transaction takes; more wait for the next one. */
  maxBatch: number;
  /** How long committed knowledge of a SKU's stock refuses orders without a read (0: every refusal is read first). */
  soldOutTrustMs: number;
  /** Each batch under way holds a place of its merchant's bulkhead (one transaction, however many orders). */
  bulkhead: Bulkhead;
  /** Orders of one SKU that may wait for a batch; past it they are refused as the bulkhead refuses (0: no cap). */
  maxWaiting: number;
  /** How long a merchant's orders may be expected to queue here: the budget of its orders under way (see underWay; 0: no cap). */
  queueMs: number;
  /** The single-order path (placeOrder under idempotentMutation): replays claimed keys, and runs a failed batch's orders. */
  single: (reservation: Reservation) => Promise<CreateOrderResult>;
  now?: () => number;
}

interface Waiting {
  reservation: Reservation;
  resolve: (result: CreateOrderResult) => void;
  reject: (error: unknown) => void;
}

/** Lane is one merchant's SKU: its queue and what the process knows of its stock. */
interface Lane {
  merchantId: string;
  sku: string;
  queue: Waiting[];
  /** Batches under way (at most PIPELINE). */
  running: number;
  /** The request ids of the orders in those batches: a duplicate waits for the next batch, where its key is found claimed. */
  taken: Set<string>;
  known?: { product: Product; at: number };
  /** The lane's latest batch's gate: open once it holds the row (or is done); the next batch asks for the lock after it. */
  turn: Gate;
}

interface Gate {
  open: Promise<void>;
  opened: boolean;
}

/**
 * Turn keeps a lane's batches in their order at the row lock: a batch asks
 * for the lock only once the batch before it has it (after), and says when
 * it has it (locked; called again, or for a batch that never locks, it does
 * nothing). Two pipelined batches otherwise race to the lock from two
 * connections, and the later orders could take the stock before the
 * earlier ones.
 */
interface Turn {
  after: Gate;
  locked: () => void;
}

/**
 * Batches of one lane under way at once. The second one does its work before
 * the lock (BEGIN, the lock request) while the first holds the
 * row, and is first in line when it commits: the row is never left idle
 * between batches, and a lone order that found the lane idle does not make
 * the crowd behind it wait a whole transaction for their turn.
 */
const PIPELINE = 2;

/** A merchant's shared transactions under way at once (see share). */
const GROUP_PIPELINE = 2;

/** Share is a lane's orders handed to its merchant's next shared transaction; done runs once they are answered. */
interface Share {
  lane: Lane;
  orders: Waiting[];
  done: () => void;
  turn: Turn;
}

interface Group {
  queue: Share[];
  /** The orders in queue. */
  waiting: number;
  running: number;
}

/** nextTurn is a new batch's turn at its lane's row lock, after the lane's latest batch's (Turn). */
function nextTurn(lane: Lane): Turn {
  const after = lane.turn;
  let resolve!: () => void;
  const gate: Gate = { open: new Promise<void>((r) => (resolve = r)), opened: false };
  lane.turn = gate;
  return {
    after,
    locked: () => {
      gate.opened = true;
      resolve();
    },
  };
}

/** Answers of a batch written before the event loop takes other I/O (transact). */
const ANSWER_CHUNK = 8;
const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The time constant of a merchant's answer rate (UnderWay.rate), in ms: about the last second counts. */
const RATE_TAU_MS = 1000;

/**
 * UnderWay is one merchant's single-line orders in this process, from
 * reserve to their answer: waiting in a lane's queue, in its merchant's
 * shared transactions' line, or in a transaction. The caps on each queue
 * (a SKU's waiting orders, the shared line) bound none of their sum: in a
 * spike over a catalog, each SKU with an order in a transaction queues the
 * next ones of its own (up to maxWaiting each), so while the database stalls
 * (a slow disk, a long lock) a thousand SKUs' queues go on admitting the
 * orders that reach the handler (the server's early refusal sees only gRPC,
 * and only once the shared line is full), each held in memory until its
 * answer. So a merchant's orders under way are capped by time: no more
 * than its recent answer rate clears in queueMs, and never fewer than one
 * SKU's full line (maxWaiting; at least 4 x maxBatch: two pipelined shared
 * transactions, full, and two more waiting), so a steady crowd of buyers
 * is not refused for a slow second, and a flash sale's first burst on a
 * merchant that was quiet (no answer rate yet) is taken as its SKU's lane
 * takes it, in batches, instead of refused with a second's retry delay.
 * When answers stop, the rate decays and the cap falls to that floor.
 */
interface UnderWay {
  count: number;
  /** Answers per ms, an exponentially weighted rate (RATE_TAU_MS) as of at. */
  rate: number;
  at: number;
}

/** Lanes kept for their knowledge once idle; past this the least recently used idle ones go. */
const MAX_IDLE_LANES = 10_000;

export function createReservations(options: ReservationOptions): Reservations {
  const { db, maxBatch, soldOutTrustMs } = options;
  const maxWaiting = options.maxWaiting > 0 ? options.maxWaiting : Number.POSITIVE_INFINITY;
  const now = options.now ?? (() => performance.now());
  const lanes = new Map<string, Lane>();
  /** Each merchant's single-line orders under way (UnderWay), while it has any. */
  const underWay = new Map<string, UnderWay>();
  const underWayFloor = Math.max(4 * maxBatch, Number.isFinite(maxWaiting) ? maxWaiting : 0);
  /** Each merchant's shared transactions: lone orders of its SKUs waiting for one, and how many are under way. */
  const groups = new Map<string, Group>();
  const keyOf = (merchantId: string, sku: string) => `${merchantId}\u0000${sku}`;

  const fresh = (lane: Lane) => lane.known !== undefined && now() - lane.known.at <= soldOutTrustMs;

  /** refusal is the error placeOrder would give against the known product, if it would refuse the order for its stock. */
  const refusal = (lane: Lane, r: Reservation): PreconditionError | undefined => {
    const product = lane.known?.product;
    if (!product || r.line.quantity <= product.stock) return undefined;
    try {
      priceLines([r.line], new Map([[lane.sku, product]]));
    } catch (error) {
      if (error instanceof PreconditionError) return error;
      throw error;
    }
    return undefined;
  };

  /** takeBatch takes up to maxBatch waiting orders in arrival order; a request_id already under way waits for a later batch. */
  const takeBatch = (lane: Lane): Waiting[] => {
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    for (const w of lane.queue) {
      if (batch.length < maxBatch && !lane.taken.has(w.reservation.call.requestId)) {
        lane.taken.add(w.reservation.call.requestId);
        batch.push(w);
      } else rest.push(w);
    }
    lane.queue = rest;
    return batch;
  };

  /**
   * refuse answers orders refused from what the process knows of their SKU:
   * each with its error (INSUFFICIENT_STOCK), unless its request_id already
   * committed (the retry of an order placed before the SKU sold out), which
   * is answered from its key. One read for all their keys.
   */
  const refuse = async (refused: { w: Waiting; error: PreconditionError }[]): Promise<void> => {
    let answers: StoredAnswer<typeof CreateOrderResponseSchema>[];
    try {
      answers = await storedResponses(
        db,
        refused.map(({ w }) => w.reservation.call),
      );
    } catch (error) {
      for (const { w } of refused) w.reject(error);
      return;
    }
    for (const [i, { w, error }] of refused.entries()) {
      const answer = answers[i];
      if (!answer) w.reject(error);
      else if ("error" in answer) w.reject(answer.error);
      else w.resolve(answer.response);
    }
  };

  /**
   * withoutRefused keeps the orders of list that the lane's knowledge does
   * not refuse, and adds the refused ones, with their errors, to refused.
   * Only orders eligible may be refused; the others are kept as they are.
   */
  const withoutRefused = (
    lane: Lane,
    list: Waiting[],
    refused: { w: Waiting; error: PreconditionError }[],
    eligible: (w: Waiting) => boolean = () => true,
  ): Waiting[] =>
    list.filter((w) => {
      const error = eligible(w) ? refusal(lane, w.reservation) : undefined;
      if (error) refused.push({ w, error });
      return !error;
    });

  const runSingle = (w: Waiting) => options.single(w.reservation).then(w.resolve, w.reject);

  /**
   * runBatch answers a batch of a lane's orders, holding the lane's place
   * (release). It returns true if it gave the place up: a lone order's
   * shared transaction holds a place of its own however many orders it
   * carries (runGroup), so the order does not keep one while it waits.
   */
  const runBatch = async (lane: Lane, batch: Waiting[], release: () => void, turn: Turn): Promise<boolean> => {
    let todo = batch;
    /** The refused orders' key read, which runs alongside the transaction of the rest. */
    let refusing: Promise<void> | undefined;
    if (lane.known && todo.some((w) => refusal(lane, w.reservation))) {
      // The orders waiting behind the batch before the read: it answers them too, as it came after them. So
      // once a SKU is sold out its whole crowd is refused from one read, not a batch of maxBatch at a time.
      const behind = new Set(lane.queue);
      if (!fresh(lane)) {
        const product = await findProduct(db, lane.merchantId, lane.sku);
        lane.known = product && { product, at: now() };
      }
      const refused: { w: Waiting; error: PreconditionError }[] = [];
      todo = withoutRefused(lane, todo, refused);
      // Only orders still waiting (another batch may have taken some meanwhile); one whose request_id is in a
      // batch under way stays: its twin's outcome decides.
      lane.queue = withoutRefused(lane, lane.queue, refused, (w) => behind.has(w) && !lane.taken.has(w.reservation.call.requestId));
      if (refused.length > 0) refusing = refuse(refused);
    }
    // A lone order shares its merchant's next transaction with other SKUs' lone orders; a hot SKU's batch keeps its own.
    const lone = todo.length === 1;
    if (lone) {
      release();
      await share(lane, todo, turn);
    } else if (todo.length > 0) await new Promise<void>((done) => void transact(lane.merchantId, [{ lane, orders: todo, done, turn }]));
    await refusing;
    return lone;
  };

  /** held runs a transaction that must run (its orders are admitted) holding a place of the merchant's, past the caps if need be. */
  const held = async <T>(merchantId: string, run: () => Promise<T>): Promise<T> => {
    const release = options.bulkhead.hold(merchantId);
    try {
      return await run();
    } finally {
      release();
    }
  };

  /**
   * transact runs lanes' orders as one transaction (placeOrderBatch), then
   * answers each order and keeps each lane's product as it committed it. A
   * failed transaction runs its orders again one by one. A transaction
   * shared by several lanes waits on no row lock (SKIP LOCKED): a lane whose
   * row another transaction holds gets a transaction of its own afterwards,
   * which waits for the row, so one busy SKU never holds up the others'
   * orders. It resolves once its own transaction is over (the merchant's
   * pipeline may go on); each share's done runs once all of its orders are
   * answered. It never throws.
   */
  const transact = async (merchantId: string, all: readonly Share[]): Promise<void> => {
    // A shared transaction waits on no lock, so it takes no lane out of its turn: a lane whose batch before is
    // not at the row yet is placed apart, in a transaction that waits for its turn.
    const shares: Share[] = [];
    for (const s of all) {
      if (all.length === 1 || s.turn.after.opened) shares.push(s);
      else void held(merchantId, () => transact(merchantId, [s]));
    }
    if (shares.length === 0) return;
    const todo = shares.flatMap((s) => s.orders);
    const shared = shares.length > 1;
    // A lane's own transaction takes a connection only once it may ask for the lock: its turn (the batch before it holds the row).
    if (!shared) await shares[0]!.turn.after.open;
    /** Each order's answer, in todo's order; undefined: busy, left for a transaction of its lane's own. */
    let committed: { results: (CreateOrderResult | PreconditionError | undefined)[]; products: Map<string, Product | undefined> };
    try {
      committed = await inTransaction(db, async (trx) => {
        const { outcomes, products } = await placeOrderBatch(
          trx,
          merchantId,
          todo.map((w) => w.reservation),
          options.reservationTtlMs,
          new Date(),
          {
            skipLocked: shared,
            onLocked: (locked) => {
              for (const s of shares) if (locked.has(s.lane.sku)) s.turn.locked();
            },
          },
        );
        const results = outcomes.map((o) =>
          o.busy ? undefined : (o.error ?? create(CreateOrderResponseSchema, { order: orderToProto(o.order) })),
        );
        await claimWithResponses(
          trx as unknown as Transaction<CommonTables>,
          todo.flatMap((w, i) => {
            const response = results[i];
            return response === undefined || response instanceof PreconditionError ? [] : [{ call: w.reservation.call, response }];
          }),
        );
        return { results, products };
      });
    } catch {
      // Rolled back, or the COMMIT's outcome is unknown: each order runs on
      // its own, where a committed one is answered from its key (in no turn).
      for (const s of shares) s.turn.locked();
      void Promise.allSettled(todo.map((w) => (shared ? held(merchantId, () => runSingle(w)) : runSingle(w)))).then(() => {
        for (const s of shares) s.done();
      });
      return;
    }
    let i = 0;
    let answered = 0;
    for (const { lane, orders, done, turn } of shares) {
      if (committed.products.has(lane.sku)) {
        const product = committed.products.get(lane.sku);
        lane.known = product && { product, at: now() };
      }
      const busy: Waiting[] = [];
      for (const w of orders) {
        const result = committed.results[i++];
        if (result === undefined) busy.push(w);
        else if (result instanceof PreconditionError) w.reject(result);
        else w.resolve(result);
        // Each answer is written in the microtasks of its resolve: a batch's answers go out a few at a time,
        // letting other calls' I/O (another merchant's, the next batch's) in between.
        if (++answered % ANSWER_CHUNK === 0) await yieldToIo();
      }
      // A busy lane's orders get a transaction of their own, apart from the merchant's pipeline.
      if (busy.length > 0) void held(merchantId, () => transact(merchantId, [{ lane, orders: busy, done, turn }]));
      else done();
    }
  };

  /**
   * share hands a lane's lone order to its merchant's next shared
   * transaction. A merchant has at most GROUP_PIPELINE of them under way;
   * lone orders arriving meanwhile (another SKU each, as a sale spread over
   * a catalog brings them) wait for the next one and go together, up to
   * maxBatch: one BEGIN, one lock statement, one COMMIT and one claim
   * statement for all of them, instead of one transaction each. Resolves
   * once the order is answered.
   */
  const share = (lane: Lane, orders: Waiting[], turn: Turn): Promise<void> =>
    new Promise<void>((done) => {
      let group = groups.get(lane.merchantId);
      if (!group) {
        group = { queue: [], waiting: 0, running: 0 };
        groups.set(lane.merchantId, group);
      }
      group.queue.push({ lane, orders, done, turn });
      group.waiting += orders.length;
      if (group.running < GROUP_PIPELINE) void runGroup(lane.merchantId, group);
    });

  const runGroup = async (merchantId: string, group: Group): Promise<void> => {
    group.running++;
    try {
      while (group.queue.length > 0) {
        const shares: Share[] = [];
        let orders = 0;
        while (group.queue.length > 0 && (shares.length === 0 || orders + group.queue[0]!.orders.length <= maxBatch)) {
          const next = group.queue.shift()!;
          shares.push(next);
          orders += next.orders.length;
        }
        group.waiting -= orders;
        await held(merchantId, () => transact(merchantId, shares));
      }
    } finally {
      group.running--;
      if (group.running === 0 && group.queue.length === 0) groups.delete(merchantId);
    }
  };

  const drain = async (lane: Lane, entered: () => void): Promise<void> => {
    lane.running++;
    let release: (() => void) | undefined = entered;
    try {
      while (lane.queue.length > 0) {
        const batch = takeBatch(lane);
        // Only duplicates of orders under way are left: the batch holding their twin takes them when it is done.
        if (batch.length === 0) break;
        const turn = nextTurn(lane);
        try {
          // A batch after one whose place went to a shared transaction needs a place again (or is refused as calls are).
          release ??= await options.bulkhead.enter(lane.merchantId);
          if (await runBatch(lane, batch, release, turn)) release = undefined;
        } catch (error) {
          // Only the non-locking read and the bulkhead can get here (the transaction's failures fall back above).
          for (const w of batch) w.reject(error);
        } finally {
          turn.locked();
          for (const w of batch) lane.taken.delete(w.reservation.call.requestId);
        }
      }
    } finally {
      lane.running--;
      release?.();
    }
    if (lane.running === 0) {
      // Idle: kept, most recently used last, for what it knows.
      const key = keyOf(lane.merchantId, lane.sku);
      lanes.delete(key);
      if (lane.known) lanes.set(key, lane);
      for (const [k, l] of lanes) {
        if (lanes.size <= MAX_IDLE_LANES) break;
        if (l.running === 0) lanes.delete(k);
      }
    }
  };

  /** groupFull is the refusal of a lone order of the merchant's when as many wait as its shared transactions under way and the next ones take. */
  const groupFull = (merchantId: string) => {
    const group = groups.get(merchantId);
    if (!group || group.waiting < maxBatch * GROUP_PIPELINE) return undefined;
    return options.bulkhead.refusal(`${group.waiting} orders of this merchant are waiting for a shared transaction`);
  };

  /** rateNow is a merchant's answer rate (per ms) decayed to now. */
  const rateNow = (u: UnderWay, t: number) => u.rate * Math.exp((u.at - t) / RATE_TAU_MS);

  /** pastBudget is the refusal of a merchant's order when its orders under way are at their cap (UnderWay), or undefined. */
  const pastBudget = (merchantId: string): RateLimitedError | undefined => {
    const u = underWay.get(merchantId);
    if (!u || options.queueMs <= 0 || u.count < underWayFloor) return undefined;
    const rate = rateNow(u, now());
    if (u.count < rate * options.queueMs) return undefined;
    return options.bulkhead.refusal(
      `${u.count} orders of this merchant are under way, more than it answers in ${options.queueMs} ms (${Math.round(rate * 1000)}/s)`,
      // When the orders under way would have cleared down to the budget at that rate (a second, the most, once answers stop).
      u.count / rate - options.queueMs,
    );
  };

  /**
   * track counts an order under way for its merchant until its answer, and
   * the answer in the merchant's rate (a refusal for load is no answer: it
   * says nothing of how fast orders clear).
   */
  const track = (merchantId: string, answer: Promise<CreateOrderResult>): Promise<CreateOrderResult> => {
    let u = underWay.get(merchantId);
    if (!u) {
      u = { count: 0, rate: 0, at: now() };
      underWay.set(merchantId, u);
    }
    u.count++;
    const done = (answered: boolean) => {
      if (answered) {
        const t = now();
        u.rate = rateNow(u, t) + 1 / RATE_TAU_MS;
        u.at = t;
      }
      if (--u.count === 0) underWay.delete(merchantId);
    };
    answer.then(
      () => done(true),
      (error) => done(!(error instanceof RateLimitedError)),
    );
    return answer;
  };

  /** join queues an order on its lane, starting a batch with the place it brings (released at once if the lane needs none). */
  const join = (lane: Lane, reservation: Reservation, release: (() => void) | undefined): Promise<CreateOrderResult> =>
    new Promise<CreateOrderResult>((resolve, reject) => {
      lane.queue.push({ reservation, resolve, reject });
      if (!release) return;
      if (lane.running < PIPELINE) void drain(lane, release);
      else release();
    });

  /** reserveNow is reserve past the merchant's budget check. */
  const reserveNow = (reservation: Reservation): Promise<CreateOrderResult> => {
    const { merchantId } = reservation.who;
    const { sku } = reservation.line;
    const key = keyOf(merchantId, sku);
    let lane = lanes.get(key);
    if (!lane) {
      lane = { merchantId, sku, queue: [], running: 0, taken: new Set(), turn: { open: Promise.resolve(), opened: true } };
      lanes.set(key, lane);
    }
    if (fresh(lane)) {
      const error = refusal(lane, reservation);
      if (error) return new Promise((resolve, reject) => void refuse([{ w: { reservation, resolve, reject }, error }]));
    }
    if (lane.queue.length >= maxWaiting) {
      return Promise.reject(options.bulkhead.refusal(`${lane.queue.length} orders of "${sku}" are waiting`));
    }
    // A lone order (its lane idle) waits for its merchant's next shared transaction without a place: as many
    // may wait as the transactions under way and the next ones take, no more.
    const full = lane.running === 0 ? groupFull(merchantId) : undefined;
    if (full) return Promise.reject(full);
    // A new transaction needs a place; with one under way already, the order can wait for it instead.
    const release = lane.running < PIPELINE ? options.bulkhead.tryEnter(merchantId) : undefined;
    if (!release && lane.running === 0) return options.bulkhead.enter(merchantId).then((entered) => join(lane!, reservation, entered));
    return join(lane, reservation, release);
  };

  return {
    reserve(reservation) {
      const { merchantId } = reservation.who;
      const refused = pastBudget(merchantId);
      return refused ? Promise.reject(refused) : track(merchantId, reserveNow(reservation));
    },
    overloaded: (merchantId) => pastBudget(merchantId) ?? groupFull(merchantId),
    restocked(merchantId, skus) {
      for (const sku of skus) {
        const lane = lanes.get(keyOf(merchantId, sku));
        if (lane) lane.known = undefined;
      }
    },
  };
}
