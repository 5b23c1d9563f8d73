import type { Kysely } from "kysely";
import { NotificationService } from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import type { ServiceModule } from "@stockroom/common/rpc";
import type { NotifyConfig } from "./config.ts";
import { createNotificationService } from "./rpc.ts";
import { notifyMigrations, type NotifyTables } from "./store.ts";

/**
 * notifyModule plugs the webhook API into an API process. Its tables are in
 * notifyMigrations. The dispatcher that sends the webhooks runs separately
 * (startWebhookDispatcher).
 */
export function notifyModule(db: Kysely<NotifyTables>, config: NotifyConfig): ServiceModule {
  return {
    services: [NotificationService],
    migrations: [notifyMigrations],
    register: (router) =>
      router.service(
        NotificationService,
        createNotificationService({ db, allowPrivateTargets: config.allowPrivateTargets, maxAgeMs: config.dispatcher.maxAgeMs }),
      ),
  };
}
