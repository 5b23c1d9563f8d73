/**
 * Hash routes (#/jobs/ID): the server serves one page at `/`, so every view
 * is a fragment of it and a reload or a shared link lands on the same view.
 */
import { useSyncExternalStore } from "react";

function subscribe(l: () => void): () => void {
  window.addEventListener("hashchange", l);
  return () => window.removeEventListener("hashchange", l);
}

/** useRoute returns the path after "#", e.g. ["jobs", "01J…"], and its query. */
export function useRoute(): { parts: string[]; query: URLSearchParams } {
  const hash = useSyncExternalStore(subscribe, () => location.hash);
  const [path = "", query = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

/** href builds a route link from path segments. */
export function href(...parts: string[]): string {
  return `#/${parts.map(encodeURIComponent).join("/")}`;
}

export function navigate(to: string): void {
  location.hash = to;
}
