/** Sign in with a merchant API key; it is kept for this tab only (sessionStorage). */
import { useState } from "react";
import { Code, createStockroomClient, StockroomError } from "@stockroom/sdk/web";
import { signIn } from "../session.ts";
import { InlineError, useAction } from "../ui.tsx";

export function SignInPage({ expired }: { expired: boolean }) {
  const [key, setKey] = useState("");
  const { busy, error, run } = useAction();
  return (
    <main id="main" className="sign-in">
      <h1>stockroom</h1>
      <form
        className="card"
        onSubmit={(e) => {
          e.preventDefault();
          // One cheap authenticated call proves the key before it is kept and the dashboard opens.
          void run(async () => {
            await proveKey(key.trim());
            signIn(key);
          });
        }}
      >
        <h2>Sign in</h2>
        {expired && <p className="muted">Your key was not accepted any more; sign in again.</p>}
        <label htmlFor="api-key">Merchant API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder="srk_…"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <p className="muted small">Kept in this tab only, until you sign out or close it. `npm start` prints a demo key.</p>
        <button type="submit" disabled={busy || key.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <InlineError error={error} />
      </form>
    </main>
  );
}

/**
 * proveKey makes one cheap authenticated list call with the key; a process serves only its own services,
 * so the first service this one runs (not UNIMPLEMENTED) decides.
 */
async function proveKey(apiKey: string): Promise<void> {
  const probe = createStockroomClient({ baseUrl: location.origin, apiKey, retry: false });
  const calls = [
    () => probe.bulk.listBulkJobs({ pageSize: 1 }),
    () => probe.catalog.listProducts({ pageSize: 1 }),
    () => probe.orders.listOrders({ pageSize: 1 }),
    () => probe.notify.listWebhookEndpoints({ pageSize: 1 }),
  ];
  for (const call of calls) {
    try {
      await call();
      return;
    } catch (error) {
      if (!(error instanceof StockroomError && error.code === Code.Unimplemented)) throw error;
    }
  }
}
