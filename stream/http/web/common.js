// Shared by the pages: the API token (kept in localStorage) and fetch() with it.
// The pages themselves hold no data; every /api/ call sends
// "Authorization: Bearer <token>" when a token is saved.

const TOKEN_KEY = "fakewatch.token";
let memoryToken = getToken();

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";  // storage disabled: no token
  }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts until the page is left
  }
  memoryToken = token;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** fetch() with the bearer token; throws ApiError with the service's message. */
export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (memoryToken) headers.set("Authorization", `Bearer ${memoryToken}`);
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 401) message = `enter the API token: ${message}`;
    throw new ApiError(response.status, message);
  }
  return response;
}

/** A same-origin path for a URL the service returned (it may name another host). */
export function localPath(url) {
  const parsed = new URL(url, window.location.href);
  return parsed.pathname + parsed.search;
}

/** Wire a token form: show the saved token, save it on submit, then call onSave. */
export function tokenForm(form, input, onSave) {
  input.value = getToken();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    onSave();
  });
}
