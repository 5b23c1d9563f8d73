/**
 * @stockroom/notify: merchants' webhooks. The NotificationService API
 * (notifyModule, served by an API process), the dispatcher that sends the
 * events (startWebhookDispatcher; dispatcher-main.ts runs it as its own
 * process), their settings, tables and metrics. Other packages and tools
 * import only this file.
 */
export { parseNotifyConfig, type DispatcherConfig, type NotifyConfig } from "./config.ts";
export { startWebhookDispatcher, type DispatcherDeps, type DispatcherStats, type WebhookDispatcher } from "./dispatcher.ts";
export { registerDispatcherMetrics, type DispatcherStatsLike } from "./metrics.ts";
export { notifyModule } from "./module.ts";
export { notifyMigrations, type NotifyDb, type NotifyTables, type WebhookDeliveryRow, type WebhookEndpointRow } from "./store.ts";
