/** Webhooks: endpoints (create, rotate the signing secret, delete) and dead letters (read, replay one or all). */
import type { WebhookEndpoint } from "@stockroom/sdk/web";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { time } from "../format.ts";
import { client } from "../session.ts";
import { ActionButton, Badge, Empty, ErrorBox, InlineError, Loading, Pager, ShownOnce, useAction, usePages } from "../ui.tsx";

export function WebhooksPage() {
  const [secret, setSecret] = useState<{ url: string; secret: string; rotated: boolean }>();
  const endpoints = useQuery({
    queryKey: ["webhooks"],
    queryFn: ({ signal }) => client.notify.listWebhookEndpoints({ pageSize: 100 }, { signal }),
  });
  return (
    <>
      <h1>Webhooks</h1>
      {secret && (
        <ShownOnce value={secret.secret} testId="signing-secret" onDone={() => setSecret(undefined)}>
          {secret.rotated ? "New signing secret" : "Signing secret"} for <strong>{secret.url}</strong>. It is shown only now: store it where
          your receiver verifies signatures.
          {secret.rotated && " The previous secret keeps signing alongside it for 24 hours."}
        </ShownOnce>
      )}
      <CreateEndpoint onCreated={(url, s) => setSecret({ url, secret: s, rotated: false })} />
      <section aria-labelledby="endpoints-heading">
        <h2 id="endpoints-heading">Endpoints</h2>
        {endpoints.isPending ? (
          <Loading what="endpoints" />
        ) : endpoints.isError ? (
          <ErrorBox error={endpoints.error} retry={() => endpoints.refetch()} />
        ) : endpoints.data.endpoints.length === 0 ? (
          <Empty>No endpoint yet. Add one above to receive product, order and bulk job events.</Empty>
        ) : (
          <ul className="cards" aria-label="Endpoints">
            {endpoints.data.endpoints.map((e) => (
              <EndpointRow key={e.id} endpoint={e} onRotated={(s) => setSecret({ url: e.url, secret: s, rotated: true })} />
            ))}
          </ul>
        )}
      </section>
      <DeadLetters />
    </>
  );
}

function CreateEndpoint({ onCreated }: { onCreated: (url: string, secret: string) => void }) {
  const queryClient = useQueryClient();
  const [url, setUrl] = useState("");
  const [types, setTypes] = useState("*");
  const [description, setDescription] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const eventTypes = types
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean);
      const r = await client.notify.createWebhookEndpoint({ url: url.trim(), eventTypes, description });
      onCreated(r.endpoint!.url, r.signingSecret);
      setUrl("");
      setDescription("");
      await queryClient.invalidateQueries({ queryKey: ["webhooks"] });
    });
  };
  return (
    <form className="card editor" onSubmit={submit} aria-labelledby="new-endpoint-heading">
      <h2 id="new-endpoint-heading">Add an endpoint</h2>
      <div className="field">
        <label htmlFor="wh-url">URL</label>
        <input
          id="wh-url"
          type="url"
          required
          value={url}
          onChange={(e) => setUrl(e.target.value)}
          placeholder="https://shop.example/hooks"
        />
      </div>
      <div className="field-row">
        <div className="field">
          <label htmlFor="wh-types">Event types (comma-separated)</label>
          <input id="wh-types" value={types} onChange={(e) => setTypes(e.target.value)} aria-describedby="wh-types-help" />
          <span id="wh-types-help" className="muted small">
            e.g. product.*, order.paid, bulk_job.finished, or * for all
          </span>
        </div>
        <div className="field">
          <label htmlFor="wh-description">Description</label>
          <input id="wh-description" value={description} onChange={(e) => setDescription(e.target.value)} />
        </div>
      </div>
      <button type="submit" disabled={busy}>
        {busy ? "Adding…" : "Add endpoint"}
      </button>
      <InlineError error={error} />
    </form>
  );
}

function EndpointRow({ endpoint: e, onRotated }: { endpoint: WebhookEndpoint; onRotated: (secret: string) => void }) {
  const queryClient = useQueryClient();
  const paused = e.pausedUntil && Number(e.pausedUntil.seconds) * 1000 > Date.now();
  return (
    <li className="card">
      <div className="row-head">
        <span className="title">{e.url}</span>
        {paused ? (
          <Badge tone="bad">paused until {time(e.pausedUntil)}</Badge>
        ) : e.consecutiveFailures > 0 ? (
          <Badge tone="warn">{e.consecutiveFailures} failures in a row</Badge>
        ) : (
          <Badge tone="ok">healthy</Badge>
        )}
      </div>
      <p className="muted small">
        {e.eventTypes.join(", ")}
        {e.description && ` · ${e.description}`} · added {time(e.createTime)}
        {e.previousSecretExpireTime && ` · previous secret valid until ${time(e.previousSecretExpireTime)}`}
      </p>
      <div className="actions">
        <ActionButton
          action={async () => {
            const r = await client.notify.rotateWebhookSecret({ endpointId: e.id });
            onRotated(r.signingSecret);
            await queryClient.invalidateQueries({ queryKey: ["webhooks"] });
          }}
        >
          Rotate secret
        </ActionButton>
        <ActionButton
          className="danger"
          confirm={`Delete the endpoint ${e.url}? Its pending deliveries are dropped.`}
          action={async () => {
            await client.notify.deleteWebhookEndpoint({ endpointId: e.id });
            await queryClient.invalidateQueries({ queryKey: ["webhooks"] });
          }}
        >
          Delete
        </ActionButton>
      </div>
    </li>
  );
}

function DeadLetters() {
  const queryClient = useQueryClient();
  const pages = usePages();
  const letters = useQuery({
    queryKey: ["webhooks", "dead", pages.token],
    queryFn: ({ signal }) => client.notify.listDeadLetters({ pageSize: 25, pageToken: pages.token }, { signal }),
  });
  const [replayed, setReplayed] = useState<string>();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["webhooks", "dead"] });
  return (
    <section aria-labelledby="dead-heading">
      <div className="toolbar">
        <h2 id="dead-heading">Dead letters</h2>
        {letters.data && letters.data.deadLetters.length > 0 && (
          <ActionButton
            action={async () => {
              const r = await client.notify.replayAllDeadLetters({});
              setReplayed(`${r.replayedCount} deliveries will be sent again.`);
              await refresh();
            }}
          >
            Replay all
          </ActionButton>
        )}
      </div>
      <p className="muted small">Deliveries that failed for 24 hours. Replaying sends them again with a fresh retry budget.</p>
      {replayed && <p role="status">{replayed}</p>}
      {letters.isPending ? (
        <Loading what="dead letters" />
      ) : letters.isError ? (
        <ErrorBox error={letters.error} retry={() => letters.refetch()} />
      ) : letters.data.deadLetters.length === 0 ? (
        <Empty>No dead letter: every delivery got through.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last answer</th>
                <th scope="col">Last try</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {letters.data.deadLetters.map((d) => (
                <tr key={d.id}>
                  <td>{d.eventType}</td>
                  <td>{d.attempts}</td>
                  <td>{d.lastStatusCode ? `HTTP ${d.lastStatusCode}` : d.lastError || "—"}</td>
                  <td>{time(d.lastAttemptTime)}</td>
                  <td>
                    <ActionButton
                      action={async () => {
                        await client.notify.replayDeadLetter({ deliveryId: d.id });
                        await refresh();
                      }}
                    >
                      Replay
                    </ActionButton>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        hasPrev={pages.hasPrev}
        hasNext={!!letters.data?.nextPageToken}
        prev={pages.prev}
        next={() => pages.next(letters.data!.nextPageToken)}
      />
    </section>
  );
}
