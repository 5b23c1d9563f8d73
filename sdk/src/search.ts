/**
 * reindexProducts runs ReindexProducts to its end through what cuts a raw
 * stream off: a dropped connection, a server that stops for a deploy (the
 * stream ends without its last message). Each time it opens the call again
 * with the resume_token of the last message it yielded, after a backoff,
 * so the rebuild takes up after the pages already counted and the counts go
 * on from there; every progress message is yielded once, the last with done
 * set. After reconnectForMs of failed attempts in a row it gives up with an
 * error that carries the token to resume with later.
 */
import type { Client } from "@connectrpc/connect";
import type { ReindexProductsResponse, SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { throwUnlessReconnectable } from "./follow.ts";
import { backoffMs, sleep, type RetryPolicy } from "./retry.ts";

export interface ReindexOptions {
  signal?: AbortSignal;
  /** Take up a rebuild cut off earlier: the resumeToken of the last message it yielded. Default: from the start. */
  resumeToken?: string;
  /** How long to keep reconnecting while every attempt fails, in ms. Default 60,000 (a server restart). */
  reconnectForMs?: number;
}

export async function* reindexProducts(
  deps: { search: Client<typeof SearchService>; retry: RetryPolicy },
  options: ReindexOptions = {},
): AsyncGenerator<ReindexProductsResponse> {
  const { signal, reconnectForMs = 60_000 } = options;
  let resumeToken = options.resumeToken ?? "";
  let failingSince: number | undefined;
  for (let failures = 0; ; ) {
    try {
      for await (const progress of deps.search.reindexProducts({ resumeToken }, { signal })) {
        failures = 0;
        failingSince = undefined;
        yield progress;
        if (progress.done) return;
        resumeToken = progress.resumeToken;
      }
      // The stream ended before its last message (e.g. the server is draining): take it up again.
    } catch (e) {
      // A bad token is the caller's, thrown at once.
      throwUnlessReconnectable(e, signal, deps.retry);
    }
    failingSince ??= Date.now();
    if (Date.now() - failingSince > reconnectForMs) {
      throw new Error(
        `reindexProducts: could not reach the search API for ${reconnectForMs} ms; ` +
          (resumeToken === "" ? "nothing was counted yet: start again" : `take it up with resumeToken ${JSON.stringify(resumeToken)}`),
      );
    }
    await sleep(backoffMs(deps.retry, failures++), signal);
  }
}
