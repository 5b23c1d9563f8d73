/** Entry: one TanStack Query client (SDK calls as query functions), the app, and a way back to sign-in on a rejected key. */
import { StockroomError } from "@stockroom/sdk/web";
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BulkJobState } from "@stockroom/sdk/web";
import { App } from "./app.tsx";
import { jobsQuery } from "./pages/jobs.tsx";
import { apiKey } from "./session.ts";
import { whenJobCreated } from "./uploads.ts";
import "./styles.css";

let authError: (e: unknown) => void = () => {};
const queryClient = new QueryClient({
  queryCache: new QueryCache({ onError: (e) => authError(e) }),
  mutationCache: new MutationCache({ onError: (e) => authError(e) }),
  defaultOptions: {
    queries: {
      // The SDK already retries what is safe to retry (with backoff); a typed error is final.
      retry: (failures, error) => !(error instanceof StockroomError) && failures < 1,
      staleTime: 2_000,
      refetchOnWindowFocus: false,
    },
  },
});
whenJobCreated(() => void queryClient.invalidateQueries({ queryKey: ["jobs"] }));
// The jobs page is the landing page: ask for its list while React renders, not after.
if (apiKey() && /^#?\/?(jobs)?$/.test(location.hash)) void queryClient.prefetchQuery(jobsQuery(BulkJobState.UNSPECIFIED, ""));

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App onAuthError={(f) => (authError = f)} />
    </QueryClientProvider>
  </StrictMode>,
);
