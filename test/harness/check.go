package harness

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// CheckClient calls one replica's ext_authz Check directly, as Envoy does,
// so a test can pick the replica that answers.
type CheckClient struct {
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	// Host is the :authority of every check (default app.test); with
	// several frontends it picks one.
	Host string
	// Token, when set, is the token profile every check names (context
	// extension bff.token), as an Envoy route for one API does.
	Token string
}

// DialCheck connects to a replica's gRPC address; Close releases it.
func DialCheck(addr string) (*CheckClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial ext_authz %s: %w", addr, err)
	}
	return &CheckClient{conn: conn, client: authv3.NewAuthorizationClient(conn)}, nil
}

// Close closes the connection.
func (c *CheckClient) Close() error { return c.conn.Close() }

// CheckResult is what a Check answered: the HTTP status Envoy would send
// (200 for a pass) and, on a pass, the bearer token it would forward.
type CheckResult struct {
	Status int
	Bearer string
	Body   string
	// Header holds a denial's response headers (retry-after, set-cookie),
	// keyed in lower case.
	Header map[string][]string
}

// API checks GET path on a route with the user policy, carrying cookie and
// the anti-forgery header, as a browser's fetch through Envoy would.
func (c *CheckClient) API(ctx context.Context, path, cookie string) (CheckResult, error) {
	return c.APIAt(ctx, cmp.Or(c.Host, "app.test"), path, cookie)
}

// APIAt is API on host (the :authority, which picks among several frontends).
func (c *CheckClient) APIAt(ctx context.Context, host, path, cookie string) (CheckResult, error) {
	headers := map[string]string{"x-csrf": "1", "accept": "application/json"}
	if cookie != "" {
		headers["cookie"] = cookie
	}
	ext := map[string]string{"bff.policy": "user"}
	if c.Token != "" {
		ext["bff.token"] = c.Token
	}
	resp, err := c.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: host, Scheme: "http", Protocol: "HTTP/1.1", Headers: headers,
		}},
		ContextExtensions: ext,
	}})
	if err != nil {
		return CheckResult{}, fmt.Errorf("check %s: %w", path, err)
	}
	if ok := resp.GetOkResponse(); ok != nil {
		return CheckResult{Status: 200, Bearer: bearer(ok.GetHeaders())}, nil
	}
	d := resp.GetDeniedResponse()
	h := map[string][]string{}
	for _, o := range d.GetHeaders() {
		k := strings.ToLower(o.GetHeader().GetKey())
		h[k] = append(h[k], o.GetHeader().GetValue())
	}
	return CheckResult{Status: int(d.GetStatus().GetCode()), Body: d.GetBody(), Header: h}, nil
}

// bearer returns the token of the authorization header a pass sets.
func bearer(hs []*corev3.HeaderValueOption) string {
	for _, h := range hs {
		if strings.EqualFold(h.GetHeader().GetKey(), "authorization") {
			return strings.TrimPrefix(h.GetHeader().GetValue(), "Bearer ")
		}
	}
	return ""
}
