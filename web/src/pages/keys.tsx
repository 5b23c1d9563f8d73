/** API keys: create one per integration (its key shown once), list them, revoke one that leaked or is no longer used. */
import type { ApiKey } from "@stockroom/sdk/web";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { time } from "../format.ts";
import { client, signOut } from "../session.ts";
import { ActionButton, Badge, Empty, ErrorBox, InlineError, Loading, Pager, ShownOnce, useAction, usePages } from "../ui.tsx";

export function KeysPage() {
  const [created, setCreated] = useState<{ label: string; apiKey: string }>();
  const pages = usePages();
  const keys = useQuery({
    queryKey: ["keys", pages.token],
    queryFn: ({ signal }) => client.keys.listApiKeys({ pageSize: 50, pageToken: pages.token }, { signal }),
  });
  return (
    <>
      <h1>API keys</h1>
      <p className="muted">
        Give each integration a key of its own. To rotate a key, add its successor, move the integration to it, then revoke the old one:
        servers refuse a revoked key within 10 seconds.
      </p>
      {created && (
        <ShownOnce value={created.apiKey} testId="new-api-key" onDone={() => setCreated(undefined)}>
          New API key{created.label ? ` for ${created.label}` : ""}. It is shown only now: store it where the integration reads it.
        </ShownOnce>
      )}
      <CreateKey onCreated={(label, apiKey) => setCreated({ label, apiKey })} />
      <section aria-labelledby="keys-heading">
        <h2 id="keys-heading">Keys</h2>
        {keys.isPending ? (
          <Loading what="API keys" />
        ) : keys.isError ? (
          <ErrorBox error={keys.error} retry={() => keys.refetch()} />
        ) : keys.data.keys.length === 0 ? (
          <Empty>No key on this page.</Empty>
        ) : (
          <ul className="cards" aria-label="API keys">
            {keys.data.keys.map((k) => (
              <KeyRow key={k.id} apiKey={k} />
            ))}
          </ul>
        )}
        <Pager
          hasPrev={pages.hasPrev}
          hasNext={!!keys.data?.nextPageToken}
          prev={pages.prev}
          next={() => pages.next(keys.data!.nextPageToken)}
        />
      </section>
    </>
  );
}

function CreateKey({ onCreated }: { onCreated: (label: string, apiKey: string) => void }) {
  const queryClient = useQueryClient();
  const [label, setLabel] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const r = await client.keys.createApiKey({ label: label.trim() });
      onCreated(r.key!.label, r.apiKey);
      setLabel("");
      await queryClient.invalidateQueries({ queryKey: ["keys"] });
    });
  };
  return (
    <form className="card editor" onSubmit={submit} aria-labelledby="new-key-heading">
      <h2 id="new-key-heading">Add a key</h2>
      <div className="field">
        <label htmlFor="key-label">What it is for</label>
        <input id="key-label" value={label} maxLength={100} onChange={(e) => setLabel(e.target.value)} placeholder="ERP sync" />
      </div>
      <button type="submit" disabled={busy}>
        {busy ? "Adding…" : "Add key"}
      </button>
      <InlineError error={error} />
    </form>
  );
}

function KeyRow({ apiKey: k }: { apiKey: ApiKey }) {
  const queryClient = useQueryClient();
  return (
    <li className="card">
      <div className="row-head">
        <span className="title">{k.label || "(no label)"}</span>
        {k.revokeTime ? <Badge tone="plain">revoked {time(k.revokeTime)}</Badge> : <Badge tone="ok">active</Badge>}
        {k.current && <Badge tone="busy">this session's key</Badge>}
      </div>
      <p className="muted small">
        <code>{k.id}</code> · added {time(k.createTime)}
        {k.createdBy && ` by ${k.createdBy}`}
        {k.revokedBy && ` · revoked by ${k.revokedBy}`}
      </p>
      {!k.revokeTime && (
        <div className="actions">
          <ActionButton
            className="danger"
            confirm={
              k.current
                ? "Revoke the key you are signed in with? You will be signed out; sign in again with another key."
                : `Revoke the key "${k.label || k.id}"? Every integration using it stops working within 10 seconds.`
            }
            action={async () => {
              await client.keys.revokeApiKey({ keyId: k.id });
              if (k.current) signOut();
              else await queryClient.invalidateQueries({ queryKey: ["keys"] });
            }}
          >
            Revoke
          </ActionButton>
        </div>
      )}
    </li>
  );
}
