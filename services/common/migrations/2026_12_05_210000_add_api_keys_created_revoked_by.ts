import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// Who created and who revoked each API key (ApiKeyService, the api-key tool):
// "api_key:<key id>" for a merchant's call, "operator" for the tool. Expand
// only: nullable columns, a metadata change; keys from before say nothing.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "api_keys", ["ADD COLUMN created_by VARCHAR(64) NULL", "ADD COLUMN revoked_by VARCHAR(64) NULL"]);
}
