/** Products: search (SearchService, or the catalog's list without words), edit with the etag, resolve conflicts, read the history. */
import { ConflictError, ProductStatus, ValidationError, type Product } from "@stockroom/sdk/web";
import { keepPreviousData, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent, type InputHTMLAttributes, type ReactNode } from "react";
import { count, money, time, words } from "../format.ts";
import {
  changedPaths,
  checkDraft,
  draftOf,
  FIELDS,
  overlay,
  showValue,
  updateRequest,
  type Draft,
  type Problems,
} from "../product-form.ts";
import { href } from "../router.ts";
import { client } from "../session.ts";
import { Empty, ErrorBox, InlineError, Loading, Pager, usePages } from "../ui.tsx";

interface Row {
  sku: string;
  title: string;
  price?: Product["price"];
  stock: number;
  status: ProductStatus;
}

export function ProductsPage() {
  const [form, setForm] = useState({ query: "", brand: "", inStock: false });
  const [filters, setFilters] = useState(form);
  const pages = usePages();
  const searching = filters.query.trim() !== "" || filters.brand.trim() !== "" || filters.inStock;
  const list = useQuery({
    queryKey: ["products", filters, pages.token],
    placeholderData: keepPreviousData,
    queryFn: async ({ signal }): Promise<{ rows: Row[]; next: string }> => {
      if (!searching) {
        const r = await client.catalog.listProducts({ pageSize: 25, pageToken: pages.token }, { signal });
        return { rows: r.products, next: r.nextPageToken };
      }
      const r = await client.search.searchProducts(
        { query: filters.query, brand: filters.brand.trim(), inStockOnly: filters.inStock, pageSize: 25, pageToken: pages.token },
        { signal },
      );
      return { rows: r.results, next: r.nextPageToken };
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setFilters(form);
    pages.reset();
  };
  return (
    <>
      <h1>Products</h1>
      <form className="search card" aria-label="Search products" onSubmit={submit}>
        <label>
          Words
          <input
            type="search"
            value={form.query}
            onChange={(e) => setForm({ ...form, query: e.target.value })}
            placeholder="mug blue, or a SKU"
          />
        </label>
        <label>
          Brand
          <input value={form.brand} onChange={(e) => setForm({ ...form, brand: e.target.value })} />
        </label>
        <label className="inline">
          <input type="checkbox" checked={form.inStock} onChange={(e) => setForm({ ...form, inStock: e.target.checked })} /> In stock only
        </label>
        <button type="submit">Search</button>
      </form>
      {list.isPending ? (
        <Loading what="products" />
      ) : list.isError ? (
        <ErrorBox error={list.error} retry={() => list.refetch()} />
      ) : list.data.rows.length === 0 ? (
        <Empty>
          {searching
            ? "No product matches. One-letter words are ignored, except in Chinese, Japanese, Korean, Thai, Lao, Khmer and Burmese."
            : "No product yet. Upload a bulk file to add some."}
        </Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">SKU</th>
                <th scope="col">Title</th>
                <th scope="col">Price</th>
                <th scope="col">Stock</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {list.data.rows.map((p) => (
                <tr key={p.sku}>
                  <td>
                    <a href={href("products", p.sku)}>{p.sku}</a>
                  </td>
                  <td>{p.title}</td>
                  <td>{money(p.price)}</td>
                  <td>{count(p.stock)}</td>
                  <td>{words(ProductStatus[p.status])}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager hasPrev={pages.hasPrev} hasNext={!!list.data?.next} prev={pages.prev} next={() => pages.next(list.data!.next)} />
    </>
  );
}

export function ProductPage({ sku }: { sku: string }) {
  const product = useQuery({
    queryKey: ["product", sku],
    queryFn: ({ signal }) => client.catalog.getProduct({ sku }, { signal }).then((r) => r.product!),
  });
  return (
    <>
      <p>
        <a href={href("products")}>← All products</a>
      </p>
      <h1>{sku}</h1>
      {product.isPending ? (
        <Loading what="the product" />
      ) : product.isError ? (
        <ErrorBox error={product.error} retry={() => product.refetch()} />
      ) : (
        <Editor key={product.data.etag} product={product.data} />
      )}
      <History sku={sku} />
    </>
  );
}

interface Conflict {
  current: Product;
  mine: Draft;
  paths: string[];
}

function Editor({ product }: { product: Product }) {
  const queryClient = useQueryClient();
  const [base, setBase] = useState(() => ({ etag: product.etag, draft: draftOf(product) }));
  const [draft, setDraft] = useState(base.draft);
  const [problems, setProblems] = useState<Problems>({});
  const [error, setError] = useState<unknown>();
  const [conflict, setConflict] = useState<Conflict>();
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const paths = changedPaths(base.draft, draft);

  async function save(etag: string, values: Draft, mask: string[]): Promise<void> {
    setBusy(true);
    setError(undefined);
    setSaved(false);
    try {
      const { product: next } = await client.catalog.updateProduct(updateRequest(product.sku, etag, values, mask));
      const fresh = draftOf(next!);
      setBase({ etag: next!.etag, draft: fresh });
      setDraft(fresh);
      setConflict(undefined);
      setSaved(true);
      void queryClient.invalidateQueries({ queryKey: ["history", product.sku] });
      void queryClient.invalidateQueries({ queryKey: ["products"] });
    } catch (e) {
      if (e instanceof ConflictError) {
        const { product: current } = await client.catalog.getProduct({ sku: product.sku });
        setConflict({ current: current!, mine: values, paths: mask });
      } else {
        setError(e);
        if (e instanceof ValidationError) {
          const byField: Problems = {};
          for (const v of e.fieldViolations) {
            const f = FIELDS.find((x) => v.field.split(".").includes(x.path));
            if (f) byField[f.key] = v.description;
          }
          setProblems(byField);
        }
      }
    } finally {
      setBusy(false);
    }
  }

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const found = checkDraft(draft);
    setProblems(found);
    if (Object.keys(found).length > 0 || paths.length === 0) return;
    void save(base.etag, draft, paths);
  };

  const field = (key: keyof Draft, input: (id: string, describedBy: string | undefined) => ReactNode) => {
    const f = FIELDS.find((x) => x.key === key)!;
    const id = `f-${key}`;
    const problem = problems[key];
    return (
      <div className={`field${problem ? " invalid" : ""}`}>
        <label htmlFor={id}>{f.label}</label>
        {input(id, problem ? `${id}-problem` : undefined)}
        {problem && (
          <span id={`${id}-problem`} className="inline-error">
            {problem}
          </span>
        )}
      </div>
    );
  };
  const text = (key: keyof Draft, props: InputHTMLAttributes<HTMLInputElement> = {}) =>
    field(key, (id, describedBy) => (
      <input
        id={id}
        aria-describedby={describedBy}
        aria-invalid={describedBy ? true : undefined}
        value={draft[key]}
        onChange={(e) => setDraft({ ...draft, [key]: e.target.value })}
        {...props}
      />
    ));

  return (
    <section aria-labelledby="edit-heading">
      <h2 id="edit-heading">Edit</h2>
      {conflict && (
        <ConflictView
          conflict={conflict}
          busy={busy}
          reapply={() => {
            const next = overlay(draftOf(conflict.current), conflict.mine, conflict.paths);
            setBase({ etag: conflict.current.etag, draft: draftOf(conflict.current) });
            setDraft(next);
            void save(conflict.current.etag, next, conflict.paths);
          }}
          discard={() => {
            const fresh = draftOf(conflict.current);
            setBase({ etag: conflict.current.etag, draft: fresh });
            setDraft(fresh);
            setConflict(undefined);
          }}
        />
      )}
      <form className="card editor" onSubmit={submit} noValidate>
        {text("title")}
        {field("description", (id, d) => (
          <textarea
            id={id}
            aria-describedby={d}
            rows={3}
            value={draft.description}
            onChange={(e) => setDraft({ ...draft, description: e.target.value })}
          />
        ))}
        <div className="field-row">
          {text("price", { inputMode: "decimal" })}
          {text("currency", { maxLength: 3, autoCapitalize: "characters" })}
          {text("compareAt", { inputMode: "decimal" })}
        </div>
        <div className="field-row">
          {text("stock", { inputMode: "numeric" })}
          {field("status", (id) => (
            <select id={id} value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.target.value })}>
              <option value={ProductStatus.ACTIVE}>Active</option>
              <option value={ProductStatus.DRAFT}>Draft</option>
              <option value={ProductStatus.ARCHIVED}>Archived</option>
            </select>
          ))}
          {text("weight", { inputMode: "numeric" })}
        </div>
        <div className="field-row">
          {text("gtin", { inputMode: "numeric" })}
          {text("brand")}
        </div>
        <div className="actions">
          <button type="submit" disabled={busy || paths.length === 0 || conflict !== undefined}>
            {busy ? "Saving…" : "Save changes"}
          </button>
          <span className="muted small" aria-live="polite">
            {saved ? "Saved." : paths.length === 0 ? "No change yet." : `Changed: ${paths.join(", ")}`}
          </span>
        </div>
        <InlineError error={error} />
      </form>
    </section>
  );
}

function ConflictView({
  conflict,
  busy,
  reapply,
  discard,
}: {
  conflict: Conflict;
  busy: boolean;
  reapply: () => void;
  discard: () => void;
}) {
  const current = draftOf(conflict.current);
  return (
    <div className="conflict card" role="alert" aria-labelledby="conflict-heading">
      <h3 id="conflict-heading">Someone changed this product after you opened it</h3>
      <p>Your changes were not saved. Compare them with the product as it is now (version {conflict.current.version.toString()}):</p>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Your value</th>
              <th scope="col">Current value</th>
            </tr>
          </thead>
          <tbody>
            {conflict.paths.map((p) => (
              <tr key={p} data-field={p}>
                <th scope="row">{FIELDS.find((f) => f.path === p)?.label ?? p}</th>
                <td className="mine">{showValue(conflict.mine, p)}</td>
                <td className="theirs">{showValue(current, p)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="actions">
        <button type="button" disabled={busy} onClick={reapply}>
          Apply my changes to the current version
        </button>
        <button type="button" disabled={busy} onClick={discard}>
          Discard mine, keep the current version
        </button>
      </div>
    </div>
  );
}

function History({ sku }: { sku: string }) {
  const pages = usePages();
  const history = useQuery({
    queryKey: ["history", sku, pages.token],
    queryFn: ({ signal }) => client.catalog.listProductHistory({ sku, pageSize: 20, pageToken: pages.token }, { signal }),
  });
  return (
    <section aria-labelledby="history-heading">
      <h2 id="history-heading">History</h2>
      {history.isPending ? (
        <Loading what="the history" />
      ) : history.isError ? (
        <ErrorBox error={history.error} retry={() => history.refetch()} />
      ) : history.data.changes.length === 0 ? (
        <Empty>No change recorded.</Empty>
      ) : (
        <ol className="history" aria-label="Changes, newest first">
          {history.data.changes.map((c) => {
            const before = c.before ? draftOf(c.before) : undefined;
            const after = c.after ? draftOf(c.after) : undefined;
            const fields = c.changedFields.map((f) => (f === "compare_at_price" || f === "weight_grams" ? f : f.split(".")[0]!));
            return (
              <li key={c.id} className="card">
                <p>
                  <strong>Version {c.version.toString()}</strong> · {words(["", "created", "updated", "deleted"][c.type])} by{" "}
                  {sourceText(c.source?.kind ?? 0, c.source?.reference ?? "")} · {time(c.changeTime)}
                </p>
                {before && after && fields.length > 0 && (
                  <ul className="small">
                    {[...new Set(fields)].map((f) => (
                      <li key={f}>
                        {FIELDS.find((x) => x.path === f)?.label ?? f}: {showValue(before, f)} → {showValue(after, f)}
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            );
          })}
        </ol>
      )}
      <Pager
        hasPrev={pages.hasPrev}
        hasNext={!!history.data?.nextPageToken}
        prev={pages.prev}
        next={() => pages.next(history.data!.nextPageToken)}
      />
    </section>
  );
}

function sourceText(kind: number, reference: string) {
  switch (kind) {
    case 2:
      return <a href={href("jobs", reference)}>bulk job</a>;
    case 3:
      return <a href={href("orders", reference)}>an order</a>;
    case 4:
      return <a href={href("jobs", reference)}>a rollback</a>;
    default:
      return "the API";
  }
}
