package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// t0 is the tests' fixed clock.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testToken   = "at-valid-0123456789"
	testFresh   = "at-fresh-0123456789"
	cookieName  = "__Host-bff"
	csrfHeader  = "x-csrf"
	otherCookie = "theme=dark"
)

// countingStore wraps the real store, counts calls, and can inject a fault
// (the memory store cannot be made unreachable).
type countingStore struct {
	inner  SessionReader
	gets   atomic.Int64
	dels   atomic.Int64
	mu     sync.Mutex
	getErr error
}

func (c *countingStore) Get(ctx context.Context, id session.ID) (*sessionpb.Session, error) {
	c.gets.Add(1)
	c.mu.Lock()
	err := c.getErr
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.inner.Get(ctx, id)
}

func (c *countingStore) Delete(ctx context.Context, id session.ID) error {
	c.dels.Add(1)
	return c.inner.Delete(ctx, id)
}

func (c *countingStore) fail(err error) {
	c.mu.Lock()
	c.getErr = err
	c.mu.Unlock()
}

// fakeRefresher stands in for oidcflow.Refresher: the provider, its lock and
// its failure modes are oidcflow's to test; here only the answers matter. It
// keeps the Refresher's contract: a token more than fakeLead from expiry
// comes back untouched (and is not counted), and while a token is still
// valid only a rejection or a vanished session is an error.
type fakeRefresher struct {
	calls     atomic.Int64
	err       error
	requestID atomic.Value // the request ID the last due Refresh's context carried
}

// fakeLead is when the fake considers a token due.
const fakeLead = 30 * time.Second

// Due reports what Refresh would do, as oidcflow.Refresher.Due does.
func (f *fakeRefresher) Due(s *sessionpb.Session) bool {
	return s.GetAccessToken() == "" || t0.UnixMilli() >= s.GetAccessTokenExpiresAtUnixMs()-fakeLead.Milliseconds()
}

func (f *fakeRefresher) Refresh(ctx context.Context, _ session.ID, s *sessionpb.Session) (*sessionpb.Session, error) {
	if !f.Due(s) {
		return s, nil
	}
	f.calls.Add(1)
	f.requestID.Store(oidcflow.RequestID(ctx))
	exp := s.GetAccessTokenExpiresAtUnixMs()
	if f.err != nil {
		valid := s.GetAccessToken() != "" && t0.UnixMilli() < exp
		if valid && !errors.Is(f.err, oidcflow.ErrRefreshRejected) && !errors.Is(f.err, session.ErrNotFound) {
			return s, nil
		}
		return nil, f.err
	}
	fresh := &sessionpb.Session{
		SchemaVersion:              s.GetSchemaVersion(),
		Generation:                 s.GetGeneration() + 1,
		Subject:                    s.GetSubject(),
		AccessToken:                testFresh,
		AccessTokenExpiresAtUnixMs: t0.Add(time.Hour).UnixMilli(),
		AbsoluteExpiresAtUnixMs:    s.GetAbsoluteExpiresAtUnixMs(),
		ClaimsJson:                 s.GetClaimsJson(),
	}
	return fresh, nil
}

// fakeClientTokens stands in for oidcflow.ClientTokens (tested there, with
// the provider and the lock): a fixed token per configured name.
type fakeClientTokens struct {
	calls atomic.Int64
	err   error
}

// testClientToken is the fake's token for name.
func testClientToken(name string) string { return "cc-" + name + "-0123456789" }

func (f *fakeClientTokens) Token(_ context.Context, name string) (string, error) {
	f.calls.Add(1)
	switch {
	case f.err != nil:
		return "", f.err
	case name != "default" && name != "billing" && name != "partner":
		return "", oidcflow.ErrUnknownClientToken
	}
	return testClientToken(name), nil
}

// env is one Server over the real memory store, with one valid session.
type env struct {
	srv       *Server
	store     *countingStore
	creator   sessionCreator
	refresher *fakeRefresher
	clients   *fakeClientTokens
	cookie    session.CookieConfig
	id        session.ID
	idStr     string
	logs      *bytes.Buffer
}

type envOption func(*Config, *Deps)

func withIdentity(m map[string]string) envOption {
	return func(c *Config, _ *Deps) { c.IdentityHeaders = m }
}

// quiet discards the log (long fuzz runs would grow the buffer without end).
func quiet() envOption {
	return func(_ *Config, d *Deps) { d.Logger = nil }
}

func withoutRefresher() envOption {
	return func(_ *Config, d *Deps) { d.Refresher = nil }
}

func withoutClientTokens() envOption {
	return func(_ *Config, d *Deps) { d.ClientTokens = nil }
}

func testConfig() Config {
	c := DefaultConfig()
	c.PathRules = []PathRule{
		{Exact: "/", Policy: PolicyNone},
		{Prefix: "/public/", Policy: PolicyNone},
		{Prefix: "/api/", Policy: PolicyUser},
		{Prefix: "/api/public/", Policy: PolicyUserOrNone},
		{Prefix: "/app/", Policy: PolicyUser, Redirect: true},
		{Prefix: "/partner/", Policy: PolicyClient, ClientToken: "billing"},
		{Prefix: "/catalog/", Policy: PolicyUserOrClient},
	}
	return c
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	mem, creator := newMemoryStore(t)
	e := &env{
		store:     &countingStore{inner: mem},
		creator:   creator,
		refresher: &fakeRefresher{},
		clients:   &fakeClientTokens{},
		cookie:    session.DefaultConfig().Cookie,
		logs:      &bytes.Buffer{},
	}
	e.id = mustID(t, 1)
	e.idStr = e.id.String()
	e.put(t, e.id, validRecord())
	cfg := testConfig()
	deps := Deps{
		Sessions:     e.store,
		Refresher:    e.refresher,
		ClientTokens: e.clients,
		Cookie:       e.cookie,
		Antiforgery:  oidcflow.AntiforgeryConfig{Header: "X-CSRF", Value: "1"},
		Logger:       newTestLogger(e.logs),
		Now:          func() time.Time { return t0 },
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	srv, err := NewServer(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e
}

func (e *env) put(t testing.TB, id session.ID, rec *sessionpb.Session) {
	t.Helper()
	if err := e.creator.Create(context.Background(), id, rec); err != nil {
		t.Fatal(err)
	}
}

func mustID(t testing.TB, seed byte) session.ID {
	t.Helper()
	id, err := session.NewID(bytes.NewReader(bytes.Repeat([]byte{seed}, session.IDLen)))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func validRecord() *sessionpb.Session {
	return &sessionpb.Session{
		SchemaVersion:              1,
		Issuer:                     "https://idp.example.com",
		Subject:                    "user-1",
		Sid:                        "sid-1",
		AccessToken:                testToken,
		RefreshToken:               "rt-secret",
		IdToken:                    "id-token",
		TokenType:                  "Bearer",
		AccessTokenExpiresAtUnixMs: t0.Add(10 * time.Minute).UnixMilli(),
		CreatedAtUnixMs:            t0.Add(-time.Hour).UnixMilli(),
		AbsoluteExpiresAtUnixMs:    t0.Add(7 * time.Hour).UnixMilli(),
		ClaimsJson:                 []byte(`{"sub":"user-1","email":"u@example.com","email_verified":true,"groups":["a","b"],"n":42,"evil":"x\r\ny"}`),
	}
}

// sessionCookie is a Cookie header holding the valid session and another cookie.
func (e *env) sessionCookie() string { return otherCookie + "; " + cookieName + "=" + e.idStr }

// creq builds a CheckRequest the way Envoy does: lower-case header names,
// the request target with its query in path, the route's context extensions.
func creq(method, target string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "4711", Method: method, Path: target, Host: "app.example.com", Scheme: "https",
			Protocol: "HTTP/2", Headers: headers,
		}},
		ContextExtensions: ext,
	}}
}

// rawReq is creq with encode_raw_headers: separate, unmerged entries.
func rawReq(method, target string, entries [][2]string, ext map[string]string) *authv3.CheckRequest {
	in := creq(method, target, nil, ext)
	hm := &corev3.HeaderMap{}
	for _, kv := range entries {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	in.Attributes.Request.Http.HeaderMap = hm
	return in
}

func userRoute() map[string]string { return map[string]string{extPolicy: "user"} }

// apiHeaders is a well-behaved SPA fetch with the session cookie.
func (e *env) apiHeaders() map[string]string {
	return map[string]string{
		csrfHeader:     "1",
		"cookie":       e.sessionCookie(),
		"x-request-id": "req-1",
		"accept":       "application/json",
	}
}

func (e *env) check(t testing.TB, in *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := e.srv.Check(context.Background(), in)
	if err != nil {
		t.Fatalf("Check returned a gRPC error: %v", err)
	}
	if resp == nil {
		t.Fatal("Check returned nil")
	}
	return resp
}

// status is the HTTP status the client (or, for 200, the upstream) sees.
func status(resp *authv3.CheckResponse) int {
	if resp.GetOkResponse() != nil {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

func errorCode(t testing.TB, resp *authv3.CheckResponse) string {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || d.GetBody() == "" {
		return ""
	}
	var b errorBody
	if err := json.Unmarshal([]byte(d.GetBody()), &b); err != nil {
		t.Fatalf("denied body is not JSON: %q", d.GetBody())
	}
	return b.Error
}

// upstreamHeader returns the value the OK response sets for k, and how many
// times it is set.
func upstreamHeader(resp *authv3.CheckResponse, k string) (string, int) {
	var v string
	n := 0
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == k {
			v = h.GetHeader().GetValue()
			n++
		}
	}
	return v, n
}

func removes(resp *authv3.CheckResponse, k string) bool {
	for _, h := range resp.GetOkResponse().GetHeadersToRemove() {
		if h == k {
			return true
		}
	}
	return false
}

func deniedHeader(resp *authv3.CheckResponse, k string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == k {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// clearsCookie reports a clearing Set-Cookie on a denial or a pass.
func clearsCookie(resp *authv3.CheckResponse) bool {
	v := deniedHeader(resp, "set-cookie")
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		if h.GetHeader().GetKey() == "set-cookie" {
			v = h.GetHeader().GetValue()
		}
	}
	return strings.HasPrefix(v, cookieName+"=") && strings.Contains(v, "Max-Age=0")
}

// golden compares resp with testdata/<name>.json, or rewrites it with -update.
// protojson varies its whitespace on purpose, so the text is re-indented.
func golden(t *testing.T, name string, resp *authv3.CheckResponse) {
	t.Helper()
	raw, err := protojson.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var compact, got bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&got, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	got.WriteByte('\n')
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./authz -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("%s differs from the golden file (go test ./authz -update to accept):\n--- got\n%s--- want\n%s", path, got.String(), want)
	}
}

var errFault = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
