/** Small building blocks every page shares: states (loading, empty, error), progress, buttons that report their call. */
import { useState, type ReactNode } from "react";
import { describeError } from "./errors.ts";

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

export function ErrorBox({ error, retry }: { error: unknown; retry?: () => void }) {
  return (
    <div className="error" role="alert">
      <p>{describeError(error)}</p>
      {retry && (
        <button type="button" onClick={retry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** Progress is a labelled bar: value of max, with the text beside it for screen readers and small screens. */
export function Progress({ label, value, max, text }: { label: string; value: number; max: number; text?: string }) {
  const pct = max > 0 ? Math.min(100, Math.floor((value / max) * 100)) : 0;
  return (
    <div className="progress">
      <progress aria-label={label} value={pct} max={100} />
      <span className="progress-text">{text ?? `${pct}%`}</span>
    </div>
  );
}

/** useAction runs an async action at a time: busy meanwhile, and its error kept (until the next run) for InlineError. */
export function useAction(): { busy: boolean; error: unknown; run: (action: () => Promise<unknown>) => Promise<void> } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const run = async (action: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}

/** InlineError says an action's error in plain words beside what started it; nothing when there is none. */
export function InlineError({ error, inline = false }: { error: unknown; inline?: boolean }) {
  if (error === undefined) return null;
  const Tag = inline ? "span" : "p";
  return (
    <Tag className="inline-error" role="alert">
      {describeError(error)}
    </Tag>
  );
}

/** ActionButton runs an async action, disables itself meanwhile, and shows the action's error beside it. */
export function ActionButton({
  action,
  children,
  className,
  confirm,
}: {
  action: () => Promise<unknown>;
  children: ReactNode;
  className?: string;
  confirm?: string;
}) {
  const { busy, error, run } = useAction();
  return (
    <span className="action">
      <button
        type="button"
        className={className}
        disabled={busy}
        onClick={() => {
          if (confirm && !window.confirm(confirm)) return;
          void run(action);
        }}
      >
        {children}
      </button>
      <InlineError error={error} inline />
    </span>
  );
}

/** ShownOnce shows a secret the server gives only once (an API key, a signing secret), with Copy and Done. */
export function ShownOnce({ value, testId, onDone, children }: { value: string; testId: string; onDone: () => void; children: ReactNode }) {
  return (
    <div className="card secret" role="status">
      <p>{children}</p>
      <code data-testid={testId}>{value}</code>{" "}
      <button type="button" onClick={() => void navigator.clipboard?.writeText(value)}>
        Copy
      </button>{" "}
      <button type="button" onClick={onDone}>
        Done
      </button>
    </div>
  );
}

export function Badge({ tone, children }: { tone: "ok" | "warn" | "bad" | "busy" | "plain"; children: ReactNode }) {
  return <span className={`badge badge-${tone}`}>{children}</span>;
}

/** Pager moves between keyset pages: the tokens seen so far are the way back. */
export function Pager({ hasPrev, hasNext, prev, next }: { hasPrev: boolean; hasNext: boolean; prev: () => void; next: () => void }) {
  if (!hasPrev && !hasNext) return null;
  return (
    <nav className="pager" aria-label="Pages">
      <button type="button" disabled={!hasPrev} onClick={prev}>
        ← Previous
      </button>
      <button type="button" disabled={!hasNext} onClick={next}>
        Next →
      </button>
    </nav>
  );
}

/** usePages keeps a stack of page tokens for keyset paging. */
export function usePages(): { token: string; hasPrev: boolean; next: (t: string) => void; prev: () => void; reset: () => void } {
  const [stack, setStack] = useState<string[]>([""]);
  return {
    token: stack.at(-1) ?? "",
    hasPrev: stack.length > 1,
    next: (t) => setStack((s) => [...s, t]),
    prev: () => setStack((s) => (s.length > 1 ? s.slice(0, -1) : s)),
    reset: () => setStack([""]),
  };
}
