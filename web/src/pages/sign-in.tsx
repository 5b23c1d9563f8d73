/** Sign in with a merchant API key; it is kept for this tab only (sessionStorage). */
import { useState } from "react";
import { describeError } from "../errors.ts";
import { client, signIn, signOut } from "../session.ts";

export function SignInPage({ expired }: { expired: boolean }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" className="sign-in">
      <h1>stockroom</h1>
      <form
        className="card"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          signIn(key);
          try {
            // One cheap authenticated call proves the key before the dashboard opens.
            await client.bulk.listBulkJobs({ pageSize: 1 });
          } catch (err) {
            signOut();
            setError(err);
          } finally {
            setBusy(false);
          }
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
        {error !== undefined && (
          <p className="inline-error" role="alert">
            {describeError(error)}
          </p>
        )}
      </form>
    </main>
  );
}
