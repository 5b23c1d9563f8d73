/**
 * StockroomTables: every table of the system, as the composition roots that
 * run all services in one process (npm start, the whole-system tests and
 * benches) see the one database. Each package names only its own tables
 * (and those of the packages it builds on); this is the one place that names
 * them all.
 */
import type { BulkTables } from "@stockroom/bulk";
import type { CatalogTables } from "@stockroom/catalog";
import type { NotifyTables } from "@stockroom/notify";
import type { OrderTables } from "@stockroom/orders";

export type StockroomTables = CatalogTables & BulkTables & OrderTables & NotifyTables;
