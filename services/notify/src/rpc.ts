import type { ServiceImpl } from "@connectrpc/connect";
import { durationMs } from "@bufbuild/protobuf/wkt";
import {
  CreateWebhookEndpointRequestSchema,
  CreateWebhookEndpointResponseSchema,
  type NotificationService,
} from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import { principalOf, idempotent, decodePageToken, encodePageToken, pageSize } from "@stockroom/common/rpc";
import { inTransaction } from "@stockroom/common/db";
import { InvalidArgumentError, NotFoundError, PreconditionError, type FieldViolation, newUlid, ULID_PATTERN } from "@stockroom/common";
import { deliveryToProto, endpointToProto } from "./convert.ts";
import { LIMITS, newSigningSecret, validatePatterns, validateWebhookUrl } from "./domain.ts";
import {
  countEndpointsLocked,
  deleteEndpoint,
  findDelivery,
  findEndpoint,
  insertEndpoint,
  listDeadLetters,
  listEndpoints,
  replayDead,
  setSecret,
  unpauseEndpoints,
  type NotifyDb,
} from "./store.ts";

export interface NotifyDeps {
  db: NotifyDb;
  /** See NotifyConfig.allowPrivateTargets. */
  allowPrivateTargets: boolean;
  /** The retry budget a replayed dead letter gets (the dispatcher's maxAgeMs). */
  maxAgeMs: number;
}

const ENDPOINT = "webhook endpoint";
const DELIVERY = "webhook delivery";

/** createNotificationService implements stockroom.notify.v1.NotificationService over MySQL. */
export function createNotificationService({ db, allowPrivateTargets, maxAgeMs }: NotifyDeps): ServiceImpl<typeof NotificationService> {
  /** endpointOf reads the caller's endpoint; another merchant's is NOT_FOUND like a missing one. */
  async function endpointOf(merchantId: string, endpointId: string) {
    const row = ULID_PATTERN.test(endpointId) ? await findEndpoint(db, merchantId, endpointId) : undefined;
    if (!row) throw new NotFoundError(ENDPOINT, endpointId);
    return row;
  }

  return {
    async createWebhookEndpoint(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const violations: FieldViolation[] = [];
      const url = validateWebhookUrl("url", req.url, allowPrivateTargets, violations);
      validatePatterns("event_types", req.eventTypes, violations);
      if (req.description.length > LIMITS.descriptionLength) {
        violations.push({ field: "description", description: `must be at most ${LIMITS.descriptionLength} characters` });
      }
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const call = {
        merchantId,
        requestId: req.requestId,
        method: "NotificationService.CreateWebhookEndpoint",
        requestSchema: CreateWebhookEndpointRequestSchema,
        request: req,
        responseSchema: CreateWebhookEndpointResponseSchema,
      };
      return inTransaction(db, (trx) =>
        idempotent(trx, call, async () => {
          if ((await countEndpointsLocked(trx, merchantId)) >= LIMITS.endpointsPerMerchant) {
            throw new PreconditionError(
              "TOO_MANY_ENDPOINTS",
              `a merchant may have at most ${LIMITS.endpointsPerMerchant} webhook endpoints`,
              {
                limit: String(LIMITS.endpointsPerMerchant),
              },
            );
          }
          const now = new Date();
          const row = {
            merchant_id: merchantId,
            endpoint_id: newUlid(now.getTime()),
            url,
            description: req.description,
            event_types: JSON.stringify([...new Set(req.eventTypes)]),
            secret: newSigningSecret(),
            previous_secret: null,
            previous_secret_expires_at: null,
            consecutive_failures: 0,
            paused_until: null,
            version: 1,
            created_at: now,
            updated_at: now,
          };
          await insertEndpoint(trx, row);
          return { endpoint: endpointToProto(row, now), signingSecret: row.secret };
        }),
      );
    },

    async getWebhookEndpoint(req, ctx) {
      const { merchantId } = principalOf(ctx);
      return { endpoint: endpointToProto(await endpointOf(merchantId, req.endpointId)) };
    },

    async listWebhookEndpoints(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const limit = pageSize(req.pageSize, 20, 100);
      const after = decodePageToken(req.pageToken, { list: "endpoints" });
      const rows = await listEndpoints(db, merchantId, after?.[0] as string | undefined, limit + 1);
      const page = rows.slice(0, limit);
      return {
        endpoints: page.map((r) => endpointToProto(r)),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.endpoint_id], { list: "endpoints" }) : "",
      };
    },

    async deleteWebhookEndpoint(req, ctx) {
      const { merchantId } = principalOf(ctx);
      if (!ULID_PATTERN.test(req.endpointId) || !(await deleteEndpoint(db, merchantId, req.endpointId))) {
        throw new NotFoundError(ENDPOINT, req.endpointId);
      }
      return {};
    },

    async rotateWebhookSecret(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const validityMs = req.previousSecretValidity ? durationMs(req.previousSecretValidity) : LIMITS.previousSecretDefaultMs;
      if (validityMs < 0 || validityMs > LIMITS.previousSecretMaxMs) {
        throw new InvalidArgumentError([{ field: "previous_secret_validity", description: "must be from 0 to 7 days" }]);
      }
      // The transaction reads (and locks) the endpoint; a missing one is NOT_FOUND there.
      if (!ULID_PATTERN.test(req.endpointId)) throw new NotFoundError(ENDPOINT, req.endpointId);
      const secret = newSigningSecret();
      const row = await inTransaction(db, async (trx) => {
        const current = await findEndpoint(trx, merchantId, req.endpointId, true);
        if (!current) throw new NotFoundError(ENDPOINT, req.endpointId);
        const now = new Date();
        const previous = validityMs > 0 ? { secret: current.secret, expiresAt: new Date(now.getTime() + validityMs) } : null;
        await setSecret(trx, merchantId, req.endpointId, secret, previous, now);
        return (await findEndpoint(trx, merchantId, req.endpointId))!;
      });
      return { endpoint: endpointToProto(row), signingSecret: secret };
    },

    async listDeadLetters(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const limit = pageSize(req.pageSize, 50, 500);
      const filters = { list: "dead", endpoint: req.endpointId };
      const before = decodePageToken(req.pageToken, filters);
      if (req.endpointId !== "") await endpointOf(merchantId, req.endpointId);
      const rows = await listDeadLetters(db, merchantId, {
        endpointId: req.endpointId || undefined,
        beforeId: before?.[0] as string | undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        deadLetters: page.map(deliveryToProto),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.delivery_id], filters) : "",
      };
    },

    async replayDeadLetter(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const existing = ULID_PATTERN.test(req.deliveryId) ? await findDelivery(db, merchantId, req.deliveryId) : undefined;
      if (!existing) throw new NotFoundError(DELIVERY, req.deliveryId);
      const replayed = await replayDead(db, merchantId, { deliveryId: req.deliveryId }, new Date(), maxAgeMs);
      if (replayed === 0) {
        throw new PreconditionError("NOT_A_DEAD_LETTER", `webhook delivery "${req.deliveryId}" is ${existing.state}, not dead`, {
          state: existing.state,
        });
      }
      // The merchant says the endpoint works again: try now, not after its pause.
      await unpauseEndpoints(db, merchantId, existing.endpoint_id);
      return { delivery: deliveryToProto((await findDelivery(db, merchantId, req.deliveryId))!) };
    },

    async replayAllDeadLetters(req, ctx) {
      const { merchantId } = principalOf(ctx);
      if (req.endpointId !== "") await endpointOf(merchantId, req.endpointId);
      const endpointId = req.endpointId || undefined;
      const replayed = await replayDead(db, merchantId, { endpointId }, new Date(), maxAgeMs);
      if (replayed > 0) await unpauseEndpoints(db, merchantId, endpointId);
      return { replayedCount: BigInt(replayed) };
    },
  };
}
