/**
 * The signed-in merchant: the API key lives in sessionStorage (this tab
 * only, gone when it closes; never in a URL or localStorage), and one SDK
 * client reads it on every call.
 */
import { createStockroomClient, type StockroomClient, type WebUploadSource } from "@stockroom/sdk/web";
import { useSyncExternalStore } from "react";

const KEY = "stockroom.apiKey";
const listeners = new Set<() => void>();

export function apiKey(): string {
  return sessionStorage.getItem(KEY) ?? "";
}

export function signIn(key: string): void {
  sessionStorage.setItem(KEY, key.trim());
  for (const l of listeners) l();
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
  for (const l of listeners) l();
}

/** useSignedIn re-renders when the key is set or cleared. */
export function useSignedIn(): boolean {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => apiKey() !== "",
  );
}

/** client is the dashboard's one SDK client: Connect over fetch to the page's own origin. */
export const client: StockroomClient<WebUploadSource> = createStockroomClient({
  baseUrl: location.origin,
  apiKey: apiKey,
  timeoutMs: 20_000,
});
