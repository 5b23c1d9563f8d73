import { sql, type Kysely } from "kysely";

// An order's lines in request order, with the product as it was when the
// stock was reserved (id, title, unit price): later catalog edits never
// change what the buyer agreed to. Lines never change after creation.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE order_lines (
      merchant_id VARCHAR(26) NOT NULL,
      order_id VARCHAR(26) NOT NULL,
      line_no INT NOT NULL,
      sku VARCHAR(128) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      title VARCHAR(500) NOT NULL,
      quantity INT NOT NULL,
      unit_price_minor BIGINT NOT NULL,
      PRIMARY KEY (merchant_id, order_id, line_no),
      CONSTRAINT chk_order_lines_quantity CHECK (quantity >= 1),
      CONSTRAINT chk_order_lines_price CHECK (unit_price_minor >= 0)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
