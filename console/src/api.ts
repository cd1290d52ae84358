// The admin API, with the token in `Authorization` (never in a URL). The
// token is kept in sessionStorage: typed once per tab, gone when it closes.

const STORE = "gamefeed.console.token";

export class Refused extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function savedToken(): string | null {
  return sessionStorage.getItem(STORE);
}

export function saveToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(STORE);
  else sessionStorage.setItem(STORE, token);
}

export class Admin {
  constructor(private readonly token: string) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const text = await response.text();
    let value: unknown = null;
    try {
      value = text ? JSON.parse(text) : null;
    } catch {
      value = null;
    }
    if (!response.ok) {
      const error = (value as { error?: { code?: string; message?: string } } | null)?.error;
      throw new Refused(response.status, error?.code ?? "error", error?.message ?? `${response.status} ${response.statusText}`);
    }
    return value as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }
}
