/**
 * Online reindex: rebuilds one merchant's projection from the catalog while
 * the projector keeps applying live events.
 *
 * It reads the catalog database directly, in SKU order, one keyset page at
 * a time (the catalog's own listProducts, so the schema knowledge stays
 * there): a documented dependency of search on the catalog's tables. The
 * alternative, CatalogService.ListProducts, needs a credential per merchant,
 * which an operator rebuilding every merchant (tools/reindex.ts) does not
 * have, and costs a serialization round trip per page for nothing.
 *
 * Why it ends in the catalog's state with events racing it:
 * - each page is stored with the projector's version guard, so a live event
 *   newer than the page wins and the page wins over anything older;
 * - a live row whose SKU is missing from the page's range of the catalog
 *   was deleted (its delete event may still be on its way) — unless the row
 *   was written after the reindex started, in which case it is a product
 *   created after the page was read. Such rows are marked deleted only if
 *   applied_at (the search database's clock) is older than the start, in the
 *   same statement that checks it;
 * - everything committed after a page was read reaches search as an event.
 *
 * A SKU held at the catalog's state but with another brand (store.ts
 * SearchFacetRow: none when its facets row is missing or older, as for rows
 * projected before that table existed or from the event of a process of an
 * older release, which carried no brand) counts as behind and is rewritten:
 * a reindex after a release repairs the brands. So is one whose terms were
 * made by older rules (domain.ts TERMS_FORMAT): a release that changes how
 * text is indexed has its reindex remake them.
 */
import { listProducts, type CatalogDb } from "@stockroom/catalog";
import { entryFromProduct } from "./convert.ts";
import { isAtOrAfter, TERMS_FORMAT } from "./domain.ts";
import type { Logger } from "@stockroom/common/observe";
import {
  CLOCK_ZERO,
  type DbClock,
  findHeld,
  merchantClock,
  merchantsWithOlderTerms,
  tombstone,
  upsertEntries,
  type SearchDb,
} from "./store.ts";

export interface ReindexCounts {
  /** Catalog products read. */
  read: number;
  /** Products search was missing or held in an older state (or without current facets). */
  updated: number;
  /** Search rows whose product no longer exists, now marked deleted. */
  removed: number;
}

export interface ReindexProgress extends ReindexCounts {
  done: boolean;
  /** Where a reindex stopped after this progress (an outage, say) takes up again: pass the progress to reindexMerchant. */
  resume: ReindexResume;
}

/**
 * ReindexResume is a reindex's place: the last SKU of the pages done and the
 * clock it started at. Taking up from it is the same as the reindex having
 * paused there: each page is reconciled on its own, and everything
 * committed after a page was read reaches search as an event.
 */
export interface ReindexResume {
  after: string | undefined;
  startedAt: DbClock;
}

export interface ReindexDeps {
  catalogDb: CatalogDb;
  searchDb: SearchDb;
  /** Products per page (default 500). */
  pageSize?: number;
}

/**
 * reindexMerchant rebuilds one merchant's rows, yielding progress after each
 * page; the last progress has done set. From a progress, it takes up after
 * the pages that progress counted, and goes on counting from its counts.
 */
export async function* reindexMerchant(deps: ReindexDeps, merchantId: string, from?: ReindexProgress): AsyncGenerator<ReindexProgress> {
  const { catalogDb, searchDb } = deps;
  const pageSize = deps.pageSize ?? 500;
  // No rows yet: nothing can be stale, and rows written from now on are not.
  const startedAt = from?.resume.startedAt ?? (await merchantClock(searchDb, merchantId)) ?? CLOCK_ZERO;
  const progress: ReindexCounts = { read: from?.read ?? 0, updated: from?.updated ?? 0, removed: from?.removed ?? 0 };
  let after = from?.resume.after;
  for (;;) {
    const products = await listProducts(catalogDb, merchantId, {
      order: "sku",
      after: after === undefined ? undefined : { sku: after },
      limit: pageSize,
    });
    // This page covers (after, through]; the last page runs to the end.
    const through = products.length < pageSize ? undefined : products.at(-1)!.sku;
    const held = await findHeld(searchDb, merchantId, { after, through });
    const entries = products.map((p) => entryFromProduct(merchantId, p));
    const behind = entries.filter((e) => {
      const state = held.get(e.sku);
      if (!isAtOrAfter(state, { productId: e.product_id, version: e.version })) return true;
      // At this very state but with another brand than the catalog's (from an older release's event, or a row from
      // before facets), or with terms made by older rules.
      const atThisState = state!.productId === e.product_id && state!.version === e.version;
      return atThisState && (state!.brand !== e.brand || state!.termsFormat < TERMS_FORMAT);
    });
    await upsertEntries(searchDb, behind, { fromCatalog: true });
    const inCatalog = new Set(products.map((p) => p.sku));
    const gone = [...held].filter(([sku, state]) => !state.deleted && !inCatalog.has(sku)).map(([sku]) => sku);
    progress.read += products.length;
    progress.updated += behind.length;
    progress.removed += await tombstone(searchDb, merchantId, gone, startedAt);
    const done = through === undefined;
    yield { ...progress, done, resume: { after: done ? after : through, startedAt } };
    if (done) return;
    after = through;
  }
}

/** A background task that can be stopped: it stops between pages. */
export interface BackgroundReindex {
  /** Settles when every merchant is done, or the task stopped or gave up. */
  done: Promise<void>;
  stop(): Promise<void>;
}

/**
 * reindexOlderTerms reindexes, one after the other, the merchants with rows
 * whose terms older rules made (domain.ts TERMS_FORMAT), in the background:
 * what `npm start` runs after an update that changed the rules, where a
 * deployment runs `npm run reindex` after the roll. A failure is logged and
 * ends it; the next start takes up what is left.
 */
export function reindexOlderTerms(deps: ReindexDeps, log: Logger): BackgroundReindex {
  let stopping = false;
  const done = (async () => {
    const merchants = await merchantsWithOlderTerms(deps.searchDb);
    if (merchants.length === 0) return;
    log.info("search: remaking the terms older rules made, in the background", { merchants: merchants.length, format: TERMS_FORMAT });
    for (const merchantId of merchants) {
      let last: ReindexProgress | undefined;
      for await (const progress of reindexMerchant(deps, merchantId)) {
        last = progress;
        if (stopping) return;
      }
      log.info("search: terms remade", { merchantId, read: last?.read, updated: last?.updated });
    }
  })().catch((error: unknown) => log.warn("search: remaking older terms stopped; the next start takes it up", { error }));
  return {
    done,
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}
