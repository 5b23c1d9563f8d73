/**
 * stockroom.account.v1.ApiKeyService: a merchant's own API keys, created,
 * listed and revoked with one of them (auth.ts holds the table's writes).
 * A process serves it beside its other modules (apiKeysModule); the secret
 * of a new key is in CreateApiKey's answer only, never stored or logged.
 * Each key created or revoked is logged (merchant, key id, by whom, label),
 * for the security team's trail beside the table's created_by/revoked_by.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ApiKeySchema, ApiKeyService, type ApiKey } from "@stockroom/sdk/gen/stockroom/account/v1/api_key_service_pb.js";
import type { Kysely } from "kysely";
import type { Logger } from "../observe/log.ts";
import { commonMigrations } from "../db/database.ts";
import type { CommonTables } from "../db/schema.ts";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { hasControlCharacters, longerThan } from "../text.ts";
import { ULID_PATTERN } from "../ulid.ts";
import type { ServiceModule } from "./app.ts";
import { addApiKey, listApiKeys, principalOf, revokeApiKey, type ApiKeyRow } from "./auth.ts";
import { decodePageToken, encodePageToken, pageSize } from "./pagination.ts";

/** MAX_LABEL_CHARACTERS bounds a key's label (the column holds 200). */
export const MAX_LABEL_CHARACTERS = 100;
const API_KEY = "API key";

/** apiKeysModule plugs ApiKeyService into an API process; its table is in commonMigrations, which every process applies. */
export function apiKeysModule(db: Kysely<CommonTables>, { log }: { log?: Logger } = {}): ServiceModule {
  return {
    services: [ApiKeyService],
    migrations: [commonMigrations],
    register: (router) => router.service(ApiKeyService, createApiKeyService(db, log)),
  };
}

/** createApiKeyService implements stockroom.account.v1.ApiKeyService; log (if any) gets a line per key created or revoked. */
export function createApiKeyService(db: Kysely<CommonTables>, log?: Logger): ServiceImpl<typeof ApiKeyService> {
  return {
    async createApiKey(req, ctx) {
      const { merchantId, keyId, actor } = principalOf(ctx);
      if (longerThan(req.label, MAX_LABEL_CHARACTERS))
        throw new InvalidArgumentError([{ field: "label", description: `must be at most ${MAX_LABEL_CHARACTERS} characters` }]);
      if (hasControlCharacters(req.label))
        throw new InvalidArgumentError([{ field: "label", description: "must not hold control characters" }]);
      const { apiKey, key } = await addApiKey(db, merchantId, req.label, actor);
      log?.info("api key created", { merchant_id: merchantId, key_id: key.keyId, by: actor, label: key.label });
      return { key: toProto(key, keyId), apiKey };
    },

    async listApiKeys(req, ctx) {
      const { merchantId, keyId } = principalOf(ctx);
      const limit = pageSize(req.pageSize, 50, 100);
      const position = decodePageToken(req.pageToken, "api_keys");
      const rows = await listApiKeys(db, merchantId, limit + 1, position ? String(position[0]) : undefined);
      const page = rows.slice(0, limit);
      return {
        keys: page.map((row) => toProto(row, keyId)),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.keyId], "api_keys") : "",
      };
    },

    async revokeApiKey(req, ctx) {
      const { merchantId, keyId, actor } = principalOf(ctx);
      const revoked = ULID_PATTERN.test(req.keyId) ? await revokeApiKey(db, merchantId, req.keyId, actor) : undefined;
      if (!revoked) throw new NotFoundError(API_KEY, req.keyId);
      // A repeat answers the key as it was revoked before: logged once.
      if (revoked.revokedNow)
        log?.info("api key revoked", { merchant_id: merchantId, key_id: revoked.keyId, by: actor, label: revoked.label });
      return { key: toProto(revoked, keyId) };
    },
  };
}

function toProto(row: ApiKeyRow, currentKeyId: string): ApiKey {
  return create(ApiKeySchema, {
    id: row.keyId,
    label: row.label,
    createTime: timestampFromDate(row.createdAt),
    revokeTime: row.revokedAt ? timestampFromDate(row.revokedAt) : undefined,
    current: row.keyId === currentKeyId,
    createdBy: row.createdBy ?? "",
    revokedBy: row.revokedBy ?? "",
  });
}
