package spa

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// get fetches path from a server running Handler.
func get(t *testing.T, method, path string) (*http.Response, string) {
	t.Helper()
	return getFrom(t, Handler(), method, "", path)
}

// getFrom fetches path from a server running h, with host as the Host
// header unless it is empty.
func getFrom(t *testing.T, h http.Handler, method, host, path string) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, path string
		status       int
		contentType  string
	}{
		{http.MethodGet, "/", 200, "text/html; charset=utf-8"},
		{http.MethodHead, "/", 200, "text/html; charset=utf-8"},
		{http.MethodPost, "/", 405, "text/plain; charset=utf-8"},
		{http.MethodGet, "/favicon.ico", 204, ""},
		{http.MethodGet, "/index.html", 404, "text/plain; charset=utf-8"},
		{http.MethodGet, "/app/x", 200, "text/html; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			resp, _ := get(t, tt.method, tt.path)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestPageStructure(t *testing.T) {
	t.Parallel()
	_, body := get(t, http.MethodGet, "/")
	tests := []struct {
		name string
		re   string
	}{
		{"#login", `<button id="login"`},
		{"#logout", `<button id="logout"`},
		{"#call-api", `<button id="call-api"`},
		{"#user-name", `id="user-name"`},
		{"#api-result", `id="api-result"`},
		{"#status", `id="status"`},
		{"#app-name", `<h1 id="app-name">Sample app</h1>`},
		{"#app-host", `id="app-host"`},
		{"login target", `base \+ 'bff/login\?returnUrl=' \+ base`},
		{"user endpoint", `bffFetch\(base \+ 'bff/user'\)`},
		{"api endpoint", `bffFetch\(base \+ 'api/whoami'\)`},
		{"root app", `<body data-state="loading" data-base="/">`},
		{"csrf header", `headers: \{ 'X-CSRF': '1'`},
		{"same-origin credentials", `credentials: 'same-origin'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !regexp.MustCompile(tt.re).MatchString(body) {
				t.Errorf("page lacks %s", tt.re)
			}
		})
	}
	t.Run("one fetch call site", func(t *testing.T) {
		t.Parallel()
		if n := strings.Count(body, "fetch("); n != 1 {
			t.Errorf("%d fetch( call sites; every request must go through bffFetch", n)
		}
	})
	t.Run("no token storage", func(t *testing.T) {
		t.Parallel()
		for _, bad := range []string{"localStorage", "document.cookie", "access_token", "innerHTML"} {
			if strings.Contains(body, bad) {
				t.Errorf("page uses %s", bad)
			}
		}
		// sessionStorage holds one thing: when a silent login was last tried.
		allowed := []string{"sessionStorage.getItem(SILENT_KEY)", "sessionStorage.setItem(SILENT_KEY, String(Date.now()))"}
		if n := strings.Count(body, "sessionStorage"); n != len(allowed) {
			t.Errorf("page uses sessionStorage %d times, want only %q", n, allowed)
		}
		for _, use := range allowed {
			if !strings.Contains(body, use) {
				t.Errorf("page lacks %s", use)
			}
		}
	})
}

// TestAppName: two apps behind one envoy-bff (the demo's shop and admin)
// each get the page under their own name, chosen by the request's host
// whatever its port or case; any other host gets the plain page. The CSP
// stays the same, since the inline script and style do not change.
func TestAppName(t *testing.T) {
	t.Parallel()
	h := Handler(App{Host: "localhost", Name: "shop", SilentLogin: true}, App{Host: "127.0.0.1", Name: "admin"}, App{Host: "x.example", Name: "<b>&"})
	_, plain := get(t, http.MethodGet, "/")
	wantCSP := contentSecurityPolicy(indexHTML)
	tests := []struct {
		host, heading, title string
	}{
		{"localhost:10000", `<h1 id="app-name">shop</h1>`, `<title>shop · envoy-bff sample app</title>`},
		{"LOCALHOST:10000", `<h1 id="app-name">shop</h1>`, `<title>shop · envoy-bff sample app</title>`},
		{"127.0.0.1:10000", `<h1 id="app-name">admin</h1>`, `<title>admin · envoy-bff sample app</title>`},
		{"127.0.0.1", `<h1 id="app-name">admin</h1>`, `<title>admin · envoy-bff sample app</title>`},
		{"x.example", `<h1 id="app-name">&lt;b&gt;&amp;</h1>`, `<title>&lt;b&gt;&amp; · envoy-bff sample app</title>`},
		{"other.example:10000", headingHTML, titleHTML},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			resp, body := getFrom(t, h, http.MethodGet, tt.host, "/app/x")
			if silent := regexp.MustCompile(`<body [^>]*data-silent-login="on"`).MatchString(body); silent != strings.Contains(tt.heading, "shop") {
				t.Errorf("silent login %v on %s; only shop asked for it", silent, tt.host)
			}
			if !strings.Contains(body, tt.heading) || !strings.Contains(body, tt.title) {
				t.Errorf("page for %s lacks %s or %s", tt.host, tt.heading, tt.title)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != wantCSP {
				t.Errorf("CSP %q, want %q", got, wantCSP)
			}
			if between(t, body, "<script>", "</script>") != between(t, plain, "<script>", "</script>") {
				t.Error("the script changed")
			}
		})
	}
}

func TestContentSecurityPolicy(t *testing.T) {
	t.Parallel()
	resp, body := get(t, http.MethodGet, "/")
	csp := resp.Header.Get("Content-Security-Policy")
	script := between(t, body, "<script>", "</script>")
	sum := sha256.Sum256([]byte(script))
	want := "script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if !strings.Contains(csp, want) || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q lacks %q", csp, want)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("nosniff missing")
	}
}

// between returns the text of s between the first from and the next to.
func between(t *testing.T, s, from, to string) string {
	t.Helper()
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		t.Fatalf("%q not found", from)
	}
	in, _, ok := strings.Cut(rest, to)
	if !ok {
		t.Fatalf("%q not found", to)
	}
	return in
}

// nodeHarness runs the page's script against a stub DOM and fetch, then
// clicks the buttons given in CLICKS and prints what happened as JSON.
const nodeHarness = `
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const els = {};
const el = (id) => els[id] || (els[id] = { id, hidden: false, disabled: false, textContent: '', className: '', attrs: {}, listeners: {}, children: [],
  addEventListener(t, f) { this.listeners[t] = f; }, setAttribute(k, v) { this.attrs[k] = v; },
  appendChild(c) { this.children.push(c); }, removeChild(c) { this.children = this.children.filter((x) => x !== c); },
  get firstChild() { return this.children[0]; } });
const calls = [];
let navigated = null;
let replaced = null;
const sources = [];
const storage = Object.assign({}, input.storage || {});
globalThis.document = { getElementById: el, body: el('body'), createElement: () => el('li-' + Math.random()) };
if (input.base !== undefined) { el('body').attrs['data-base'] = input.base; }
if (input.silent) { el('body').attrs['data-silent-login'] = 'on'; }
el('body').attrs['data-state'] = 'loading';
for (const id of ['anonymous', 'signed-in', 'session-warning', 'session-info', 'ws-result', 'feed']) { el(id).hidden = true; }
el('body').getAttribute = function (k) { return k in this.attrs ? this.attrs[k] : null; };
globalThis.window = globalThis;
globalThis.location = { host: 'app.example:10000', protocol: 'http:', pathname: input.pathname || '/', search: input.search || '', hash: '', assign(u) { navigated = u; } };
globalThis.history = { replaceState(s, t, u) { replaced = u; } };
globalThis.sessionStorage = { getItem: (k) => (k in storage ? storage[k] : null), setItem: (k, v) => { storage[k] = String(v); } };
globalThis.EventSource = function (url) { sources.push(url); this.readyState = 0; this.close = () => { this.readyState = 2; }; this.addEventListener = () => {}; };
globalThis.fetch = async (url, opts) => {
  calls.push({ url, opts });
  const r = input.responses[(opts.method || 'GET') + ' ' + url] || input.responses[url] || { status: 404, body: { error: 'not_found' } };
  return { ok: r.status >= 200 && r.status < 300, status: r.status, statusText: '',
    json: async () => r.body, headers: { get: () => 'application/json' } };
};
const tick = () => new Promise((r) => setTimeout(r, 10));
(async () => {
  new Function(input.script)();
  await tick();
  const snap = () => ({ state: els.body.attrs['data-state'], user: el('user-name').textContent, status: el('status').textContent,
    statusClass: el('status').className, result: el('api-result').textContent, host: el('app-host').textContent, loginHidden: el('anonymous').hidden, signedInHidden: el('signed-in').hidden,
    warningHidden: el('session-warning').hidden, warning: el('session-warning-text').textContent, info: el('session-info').textContent });
  const steps = [{ after: 'load', ...snap() }];
  for (const id of input.clicks) {
    await el(id).listeners.click();
    await tick();
    steps.push({ after: id, ...snap() });
  }
  process.stdout.write(JSON.stringify({ calls, navigated, replaced, sources, storage, steps }));
  process.exit(0); // the page's countdown timer would keep Node alive
})().catch((e) => { console.error(e); process.exit(1); });
`

// nodeRun is the harness's output.
type nodeRun struct {
	Calls []struct {
		URL  string `json:"url"`
		Opts struct {
			Method      string            `json:"method"`
			Headers     map[string]string `json:"headers"`
			Credentials string            `json:"credentials"`
		} `json:"opts"`
	} `json:"calls"`
	Navigated string            `json:"navigated"`
	Replaced  *string           `json:"replaced"`
	Sources   []string          `json:"sources"`
	Storage   map[string]string `json:"storage"`
	Steps     []struct {
		After          string `json:"after"`
		State          string `json:"state"`
		User           string `json:"user"`
		Status         string `json:"status"`
		StatusClass    string `json:"statusClass"`
		Result         string `json:"result"`
		Host           string `json:"host"`
		LoginHidden    bool   `json:"loginHidden"`
		SignedInHidden bool   `json:"signedInHidden"`
		WarningHidden  bool   `json:"warningHidden"`
		Warning        string `json:"warning"`
		Info           string `json:"info"`
	} `json:"steps"`
}

type stubResponse struct {
	Status int `json:"status"`
	Body   any `json:"body"`
}

func TestBehaviourInNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not installed: this behaviour test needs Node.js (it never skips)")
	}
	_, page := get(t, http.MethodGet, "/")
	script := between(t, page, "<script>", "</script>")
	user := stubResponse{200, map[string]any{"sub": "demo-user", "name": "Demo User", "logoutUrl": "/bff/logout?sid=abc"}}
	whoami := stubResponse{200, map[string]any{"sub": "demo-user", "saw_session_cookie": false}}
	tests := []struct {
		name          string
		responses     map[string]stubResponse
		clicks        []string
		wantUser      string
		wantState     string
		wantStatus    string // substring of the final #status
		wantResult    string // substring of the final #api-result
		wantNavigated string
	}{
		{"anonymous", map[string]stubResponse{"/bff/user": {401, map[string]any{"error": "unauthenticated"}}}, nil, "", "anonymous", "Not signed in", "", ""},
		{"log in", map[string]stubResponse{"/bff/user": {401, nil}}, []string{"login"}, "", "anonymous", "Not signed in", "", "/bff/login?returnUrl=/"},
		{"signed in", map[string]stubResponse{"/bff/user": user}, nil, "Demo User", "authenticated", "Signed in", "", ""},
		{"name fallback", map[string]stubResponse{"/bff/user": {200, map[string]any{"sub": "demo-user", "preferred_username": "demo"}}}, nil, "demo", "authenticated", "Signed in", "", ""},
		{"claims list", map[string]stubResponse{"/bff/user": {200, []map[string]any{{"type": "sub", "value": "u1"}}}}, nil, "u1", "authenticated", "Signed in", "", ""},
		{"call api", map[string]stubResponse{"/bff/user": user, "/api/whoami": whoami}, []string{"call-api"}, "Demo User", "authenticated", "API answered 200", `"sub": "demo-user"`, ""},
		{"api 403", map[string]stubResponse{"/bff/user": user, "/api/whoami": {403, map[string]any{"error": "antiforgery_required"}}}, []string{"call-api"}, "Demo User", "authenticated", "403 antiforgery_required", "", ""},
		{"api 503", map[string]stubResponse{"/bff/user": user, "/api/whoami": {503, map[string]any{"error": "session_store_unavailable"}}}, []string{"call-api"}, "Demo User", "authenticated", "503 session_store_unavailable", "", ""},
		{"api 401 signs out", map[string]stubResponse{"/bff/user": user, "/api/whoami": {401, map[string]any{"error": "session_expired"}}}, []string{"call-api"}, "", "anonymous", "401 session_expired", "", ""},
		{"user 503", map[string]stubResponse{"/bff/user": {503, map[string]any{"error": "session_store_unavailable"}}}, nil, "", "anonymous", "503 session_store_unavailable", "", ""},
		{"log out", map[string]stubResponse{"/bff/user": user}, []string{"logout"}, "Demo User", "authenticated", "Signed in", "", "/bff/logout?sid=abc"},
		{"foreign logoutUrl refused", map[string]stubResponse{"/bff/user": {200, map[string]any{"sub": "x", "logoutUrl": "//evil.example/"}}}, []string{"logout"}, "x", "authenticated", "Signed in", "", "/bff/logout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := runPage(t, node, script, afterSilentLogin, tt.responses, tt.clicks)
			if run.Calls[0].URL != "/bff/user" {
				t.Errorf("first fetch %s", run.Calls[0].URL)
			}
			last := run.Steps[len(run.Steps)-1]
			if last.User != tt.wantUser || last.State != tt.wantState || !strings.Contains(last.Status, tt.wantStatus) || !strings.Contains(last.Result, tt.wantResult) {
				t.Errorf("final step %+v", last)
			}
			if (last.State == "authenticated") == last.SignedInHidden || (last.State == "authenticated") != last.LoginHidden {
				t.Errorf("visibility wrong in %+v", last)
			}
			if last.Host != "app.example:10000" {
				t.Errorf("#app-host %q, want the page's location.host", last.Host)
			}
			if run.Navigated != tt.wantNavigated {
				t.Errorf("navigated to %q, want %q", run.Navigated, tt.wantNavigated)
			}
		})
	}
}

// pageEnv is where the page runs: its data-base (nil: as served), its
// location's path and query, and what sessionStorage holds.
type pageEnv struct {
	base             *string
	pathname, search string
	storage          map[string]string
	silent           bool // the page's data-silent-login="on"
}

// afterSilentLogin is the query envoy-bff returns to when the provider
// answered a silent login with login_required.
var afterSilentLogin = pageEnv{search: "?bff_login=required"}

// runPage runs script in Node against the stub responses, with the body's
// data-base set to *base when base is not nil, clicks the buttons and
// checks that every fetch carried the anti-forgery header.
func runPage(t *testing.T, node, script string, env pageEnv, responses map[string]stubResponse, clicks []string) nodeRun {
	t.Helper()
	input := map[string]any{"script": script, "responses": responses, "clicks": append([]string{}, clicks...),
		"search": env.search, "pathname": env.pathname, "storage": env.storage, "silent": env.silent}
	if env.base != nil {
		input["base"] = *env.base
	}
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, "-e", nodeHarness)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var run nodeRun
	if err := json.Unmarshal(out, &run); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(run.Calls) == 0 {
		t.Fatal("no fetch on load")
	}
	for _, c := range run.Calls {
		if c.Opts.Headers["X-CSRF"] != "1" || c.Opts.Credentials != "same-origin" {
			t.Errorf("fetch %s sent headers %v credentials %q", c.URL, c.Opts.Headers, c.Opts.Credentials)
		}
	}
	return run
}

// TestAppUnderPrefix: an app under /partner/ on shop's host gets the page
// naming it and its prefix, with the same script and policy; the page then
// calls only that app's endpoints.
func TestAppUnderPrefix(t *testing.T) {
	t.Parallel()
	h := Handler(App{Host: "localhost", Name: "shop"}, App{Host: "localhost", Name: "partner", PathPrefix: "/partner/"},
		App{Name: "any", PathPrefix: "/any/"})
	pages := []struct {
		host, path, name, base string
		status                 int
	}{
		{"localhost:1", "/", "shop", "/", 200},
		{"localhost:1", "/partner/", "partner", "/partner/", 200},
		{"localhost:1", "/partner/orders/7", "partner", "/partner/", 200},
		{"localhost:1", "/partnerx/", "shop", "/", 200},
		{"localhost:1", "/any/", "shop", "/", 200}, // a host's own apps come first
		{"other.example", "/any/x", "any", "/any/", 200},
		{"other.example", "/", "Sample app", "/", 200},
		{"localhost:1", "/partner/x.js", "", "", 404},
		{"localhost:1", "/partner/favicon.ico", "", "", 204},
	}
	var appPage string
	for _, p := range pages {
		resp, body := getFrom(t, h, http.MethodGet, p.host, p.path)
		if resp.StatusCode != p.status {
			t.Errorf("GET %s%s: %d, want %d", p.host, p.path, resp.StatusCode, p.status)
			continue
		}
		if p.status != 200 {
			continue
		}
		if !strings.Contains(body, `<h1 id="app-name">`+p.name+`</h1>`) || !strings.Contains(body, `data-base="`+p.base+`"`) {
			t.Errorf("GET %s%s: not the page of %s under %s", p.host, p.path, p.name, p.base)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != contentSecurityPolicy(indexHTML) {
			t.Errorf("GET %s%s: CSP %q", p.host, p.path, got)
		}
		if p.name == "partner" {
			appPage = body
		}
	}
	for _, bad := range []string{"partner/", "/partner", "/a b/", `/"/`} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handler took the path prefix %q", bad)
				}
			}()
			Handler(App{Name: "x", PathPrefix: bad})
		}()
	}

	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not installed: this behaviour test needs Node.js (it never skips)")
	}
	_, plain := get(t, http.MethodGet, "/")
	script := between(t, appPage, "<script>", "</script>")
	if script != between(t, plain, "<script>", "</script>") {
		t.Fatal("the app's copy has another script")
	}
	user := stubResponse{200, map[string]any{"sub": "p1", "name": "Paula"}}
	whoami := stubResponse{200, map[string]any{"sub": "p1"}}
	tests := []struct {
		name, base    string
		responses     map[string]stubResponse
		clicks        []string
		wantCalls     []string
		wantNavigated string
		wantHost      string
	}{
		{"log in", "/partner/", map[string]stubResponse{"/partner/bff/user": {401, nil}}, []string{"login"}, []string{"/partner/bff/user"}, "/partner/bff/login?returnUrl=/partner/", "app.example:10000/partner"},
		{"call api", "/partner/", map[string]stubResponse{"/partner/bff/user": user, "/partner/api/whoami": whoami}, []string{"call-api"}, []string{"/partner/bff/user", "/partner/bff/session", "/partner/api/whoami"}, "", "app.example:10000/partner"},
		{"log out without logoutUrl", "/partner/", map[string]stubResponse{"/partner/bff/user": user}, []string{"logout"}, []string{"/partner/bff/user", "/partner/bff/session"}, "/partner/bff/logout", "app.example:10000/partner"},
		{"foreign base refused", "//evil.example/", map[string]stubResponse{"/bff/user": {401, nil}}, []string{"login"}, []string{"/bff/user"}, "/bff/login?returnUrl=/", "app.example:10000"},
		{"odd base refused", "/a b/", map[string]stubResponse{"/bff/user": {401, nil}}, []string{"login"}, []string{"/bff/user"}, "/bff/login?returnUrl=/", "app.example:10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := runPage(t, node, script, pageEnv{base: &tt.base, search: "?bff_login=required"}, tt.responses, tt.clicks)
			var calls []string
			for _, c := range run.Calls {
				calls = append(calls, c.URL)
			}
			if strings.Join(calls, " ") != strings.Join(tt.wantCalls, " ") || run.Navigated != tt.wantNavigated {
				t.Errorf("fetched %v and navigated to %q; want %v and %q", calls, run.Navigated, tt.wantCalls, tt.wantNavigated)
			}
			if host := run.Steps[0].Host; host != tt.wantHost {
				t.Errorf("#app-host %q, want %q", host, tt.wantHost)
			}
		})
	}
}

// TestSilentLoginInNode: an anonymous page tries one silent login
// (prompt=none) back to where it is; envoy-bff's ?bff_login=required marker
// ends the attempt (and leaves the URL), and a recent attempt is not repeated
// even when the marker is lost, so the page can never loop.
func TestSilentLoginInNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not installed: this behaviour test needs Node.js (it never skips)")
	}
	_, page := get(t, http.MethodGet, "/")
	script := between(t, page, "<script>", "</script>")
	now := time.Now().UnixMilli()
	recent := map[string]string{"envoy-bff-silent-login:/": strconv.FormatInt(now-5_000, 10)}
	stale := map[string]string{"envoy-bff-silent-login:/": strconv.FormatInt(now-120_000, 10)}
	partner := "/partner/"
	anonymous := map[string]stubResponse{"/bff/user": {401, nil}, "/partner/bff/user": {401, nil}}
	user := map[string]stubResponse{"/bff/user": {200, map[string]any{"sub": "u1"}}}
	tests := []struct {
		name          string
		env           pageEnv
		responses     map[string]stubResponse
		wantNavigated string
		wantReplaced  string // "" means the URL was left alone
		wantStatus    string
		wantState     string
	}{
		{"first load tries silently", pageEnv{silent: true}, anonymous, "/bff/login?prompt=none&returnUrl=%2F", "", "Trying silent login", "loading"},
		{"returns to the same place", pageEnv{silent: true, pathname: "/orders/7", search: "?tab=2"}, anonymous, "/bff/login?prompt=none&returnUrl=%2Forders%2F7%3Ftab%3D2", "", "Trying silent login", "loading"},
		{"app under a prefix", pageEnv{silent: true, base: &partner, pathname: "/partner/"}, anonymous, "/partner/bff/login?prompt=none&returnUrl=%2Fpartner%2F", "", "Trying silent login", "loading"},
		{"provider wants a login", pageEnv{silent: true, pathname: "/orders", search: "?bff_login=required&tab=2"}, anonymous, "", "/orders?tab=2", "the provider needs you to log in", "anonymous"},
		{"recent attempt not repeated", pageEnv{silent: true, storage: recent}, anonymous, "", "", "Not signed in.", "anonymous"},
		{"stale attempt repeated", pageEnv{silent: true, storage: stale}, anonymous, "/bff/login?prompt=none&returnUrl=%2F", "", "Trying silent login", "loading"},
		{"off unless the app asks", pageEnv{}, anonymous, "", "", "Not signed in.", "anonymous"},
		{"silent login worked", pageEnv{silent: true, search: "?x=1"}, user, "", "", "Signed in", "authenticated"},
		{"marker removed when signed in", pageEnv{silent: true, search: "?bff_login=required"}, user, "", "/", "Signed in", "authenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := runPage(t, node, script, tt.env, tt.responses, nil)
			last := run.Steps[len(run.Steps)-1]
			if run.Navigated != tt.wantNavigated {
				t.Errorf("navigated to %q, want %q", run.Navigated, tt.wantNavigated)
			}
			replaced := ""
			if run.Replaced != nil {
				replaced = *run.Replaced
			}
			if replaced != tt.wantReplaced {
				t.Errorf("URL replaced by %q, want %q", replaced, tt.wantReplaced)
			}
			if !strings.Contains(last.Status, tt.wantStatus) || last.State != tt.wantState {
				t.Errorf("final step %+v, want status %q state %s", last, tt.wantStatus, tt.wantState)
			}
			if tt.wantNavigated != "" && len(run.Storage) == 0 {
				t.Error("a silent login was tried without remembering it (the loop guard)")
			}
		})
	}
}

// TestSessionStatusInNode: a signed-in page reads /bff/session (GET, which
// does not extend the session), counts down to the earlier of the idle and
// absolute expiry on the server's clock, warns in the last two minutes, and
// extends only when the user asks (POST); it follows the SSE feed.
func TestSessionStatusInNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not installed: this behaviour test needs Node.js (it never skips)")
	}
	_, page := get(t, http.MethodGet, "/")
	script := between(t, page, "<script>", "</script>")
	now := time.Now().Unix()
	status := func(serverNow, idle, absolute int64) stubResponse {
		return stubResponse{200, map[string]any{"now": serverNow, "idleExpiresAt": serverNow + idle, "absoluteExpiresAt": serverNow + absolute,
			"accessTokenExpiresAt": serverNow + 60, "idleTimeout": 1800}}
	}
	user := stubResponse{200, map[string]any{"sub": "u1", "name": "U One"}}
	tests := []struct {
		name         string
		session      stubResponse
		extended     stubResponse
		clicks       []string
		wantWarning  bool
		wantInfo     string
		wantStatus   string
		wantMethods  string
		wantSignedIn bool
	}{
		{"plenty left", status(now, 600, 3600), stubResponse{}, nil, false, "Session ends in 10:00", "Signed in", "GET GET", true},
		{"idle ends soon", status(now, 90, 3600), stubResponse{}, nil, true, "Session ends in 1:30", "Signed in", "GET GET", true},
		{"absolute ends first", status(now, 600, 60), stubResponse{}, nil, true, "Session ends in 1:00", "Signed in", "GET GET", true},
		{"server clock behind", status(now-1000, 600, 3600), stubResponse{}, nil, false, "Session ends in 10:00", "Signed in", "GET GET", true},
		{"extend on request", status(now, 90, 3600), status(now, 1800, 3600), []string{"extend"}, false, "Session ends in 30:00", "Session extended", "GET GET POST", true},
		{"already ended", stubResponse{401, map[string]any{"error": "unauthenticated"}}, stubResponse{}, nil, false, "", "Session ended", "GET GET", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			responses := map[string]stubResponse{"/bff/user": user, "GET /bff/session": tt.session}
			if tt.extended.Status != 0 {
				responses["POST /bff/session"] = tt.extended
			}
			run := runPage(t, node, script, afterSilentLogin, responses, tt.clicks)
			last := run.Steps[len(run.Steps)-1]
			var methods []string
			for _, c := range run.Calls {
				if c.Opts.Method == "" {
					c.Opts.Method = "GET"
				}
				methods = append(methods, c.Opts.Method)
			}
			if got := strings.Join(methods, " "); got != tt.wantMethods {
				t.Errorf("methods %q, want %q (GET /bff/session must not be turned into an extension)", got, tt.wantMethods)
			}
			// One second may pass between the answer and the snapshot.
			if tt.wantInfo != "" && !strings.Contains(last.Info, tt.wantInfo) && !strings.Contains(last.Info, secondLess(tt.wantInfo)) {
				t.Errorf("session info %q, want %q", last.Info, tt.wantInfo)
			}
			if last.WarningHidden == tt.wantWarning {
				t.Errorf("warning shown %v (%q), want %v", !last.WarningHidden, last.Warning, tt.wantWarning)
			}
			if !strings.Contains(last.Status, tt.wantStatus) || (last.State == "authenticated") != tt.wantSignedIn {
				t.Errorf("final step %+v", last)
			}
			wantSources := 0
			if tt.wantSignedIn {
				wantSources = 1
			}
			if len(run.Sources) != wantSources || (wantSources == 1 && run.Sources[0] != "/api/events") {
				t.Errorf("EventSources %v, want %d of /api/events", run.Sources, wantSources)
			}
		})
	}
}

// secondLess is "… m:ss" one second earlier ("… 10:00" → "… 9:59").
func secondLess(s string) string {
	i := strings.LastIndex(s, " ")
	m, sec, _ := strings.Cut(s[i+1:], ":")
	mi, _ := strconv.Atoi(m)
	si, _ := strconv.Atoi(sec)
	total := mi*60 + si - 1
	return fmt.Sprintf("%s %d:%02d", s[:i], total/60, total%60)
}
