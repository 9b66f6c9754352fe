// The one way the explorer talks to the hub: GraphQL POSTs to /graphql, with the signed-in
// token (kept in sessionStorage only: gone when the tab closes, never in the page source).

const TOKEN_KEY = "lineagehub.token";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Run a query or mutation; GraphQL errors become an ApiError carrying the first one's code. */
export async function gql<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
  const secret = token();
  if (secret) headers.authorization = `Bearer ${secret}`;
  const response = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
    credentials: "omit",
    cache: "no-store",
  });
  let body: any = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`the hub answered ${response.status} without JSON`, "BAD_RESPONSE", response.status);
  }
  const first = body?.errors?.[0];
  if (first) {
    const code = first.extensions?.code ?? (response.status === 401 ? "UNAUTHENTICATED" : "ERROR");
    // the shell asks for a token, whichever view (or button in it) made the call
    if (code === "UNAUTHENTICATED") window.dispatchEvent(new CustomEvent("unauthenticated", { detail: first.message }));
    throw new ApiError(first.message ?? "error", code, response.status);
  }
  if (!response.ok) throw new ApiError(`the hub answered ${response.status}`, "HTTP", response.status);
  return body.data as T;
}
