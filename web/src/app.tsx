/** The shell: sign-in gate, navigation, and the page the route names. */
import { useEffect, useState } from "react";
import { isSignedOut } from "./errors.ts";
import { JobPage } from "./pages/job.tsx";
import { KeysPage } from "./pages/keys.tsx";
import { JobsPage } from "./pages/jobs.tsx";
import { OrderPage, OrdersPage } from "./pages/orders.tsx";
import { ProductPage, ProductsPage } from "./pages/products.tsx";
import { SignInPage } from "./pages/sign-in.tsx";
import { WebhooksPage } from "./pages/webhooks.tsx";
import { href, useRoute } from "./router.ts";
import { signOut, useSignedIn } from "./session.ts";
import { resumeUploads } from "./uploads.ts";

const SECTIONS = [
  ["jobs", "Bulk jobs"],
  ["products", "Products"],
  ["orders", "Orders"],
  ["webhooks", "Webhooks"],
  ["keys", "API keys"],
] as const;

export function App({ onAuthError }: { onAuthError: (f: (e: unknown) => void) => void }) {
  const signedIn = useSignedIn();
  const [expired, setExpired] = useState(false);
  const { parts } = useRoute();
  useEffect(() => {
    onAuthError((e) => {
      if (isSignedOut(e)) {
        setExpired(true);
        signOut();
      }
    });
  }, [onAuthError]);
  useEffect(() => {
    if (signedIn) void resumeUploads();
  }, [signedIn]);
  const [section = "jobs", id] = parts;
  useTitle(signedIn ? (SECTIONS.find(([s]) => s === section)?.[1] ?? "Bulk jobs") : "Sign in");
  if (!signedIn) return <SignInPage expired={expired} />;
  return (
    <>
      {/* A button, not a #main link: the fragment holds the route. */}
      <button type="button" className="skip" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header className="top">
        <span className="brand">stockroom</span>
        <nav aria-label="Sections">
          {SECTIONS.map(([s, label]) => (
            <a key={s} href={href(s)} aria-current={s === section ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <button type="button" className="link" onClick={() => signOut()}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {section === "products" ? (
          id ? (
            <ProductPage sku={id} />
          ) : (
            <ProductsPage />
          )
        ) : section === "orders" ? (
          id ? (
            <OrderPage id={id} />
          ) : (
            <OrdersPage />
          )
        ) : section === "webhooks" ? (
          <WebhooksPage />
        ) : section === "keys" ? (
          <KeysPage />
        ) : id ? (
          <JobPage id={id} />
        ) : (
          <JobsPage />
        )}
      </main>
    </>
  );
}

function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · stockroom`;
  }, [title]);
}
