package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const sessionsUsage = `Usage:
  envoy-bff sessions list   [--frontend NAME] --sub SUBJECT            [--admin URL]
  envoy-bff sessions revoke [--frontend NAME] --sub SUBJECT | --ref REF [--admin URL]

Lists or ends sessions through a running replica's admin listener. Ending a
session revokes its refresh token at the provider, then deletes it; every
replica denies it on its next request. Sessions belong to one frontend:
--frontend names it, and may be left out when the deployment has exactly one
(a config without frontends: has one, named default); otherwise the replica
answers with the names it knows. The admin token, if the listener has one, is
read from ENVOY_BFF_LISTEN_ADMIN_TOKEN.

Flags:
`

// runSessions is the session-administration client of the admin API.
func runSessions(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "revoke") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
			fmt.Fprint(stdout, sessionsUsage)
			return 0
		}
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	action := args[0]
	fs := flag.NewFlagSet("sessions "+action, flag.ContinueOnError)
	adminURL := fs.String("admin", "http://127.0.0.1:9003", "the admin listener of any replica (listen.admin)")
	sub := fs.String("sub", "", "the user's subject (sub claim)")
	ref := fs.String("ref", "", "one session's ref, as `sessions list` prints it (revoke only)")
	frontend := fs.String("frontend", "", "the frontend whose sessions these are (optional with exactly one frontend)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), sessionsUsage)
		fs.PrintDefaults()
	}
	if done, code := parseFlags(fs, args[1:], stdout, stderr); done {
		return code
	}
	token, _ := lookup("ENVOY_BFF_LISTEN_ADMIN_TOKEN")
	c := adminClient{base: strings.TrimRight(*adminURL, "/"), token: token, frontend: *frontend, http: &http.Client{Timeout: 30 * time.Second}}
	var err error
	switch {
	case action == "list" && *sub != "" && *ref == "":
		err = c.list(ctx, stdout, *sub)
	case action == "revoke" && (*sub == "") != (*ref == ""):
		err = c.revoke(ctx, stdout, *sub, *ref)
	case action == "list":
		fmt.Fprintln(stderr, "envoy-bff sessions list: give --sub")
		return 2
	default:
		fmt.Fprintln(stderr, "envoy-bff sessions revoke: give exactly one of --sub and --ref")
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "envoy-bff sessions %s: %v\n", action, err)
		return 1
	}
	return 0
}

// adminClient calls a replica's admin API.
type adminClient struct {
	base     string
	token    string
	frontend string // "": the replica's only frontend
	http     *http.Client
}

func (c adminClient) list(ctx context.Context, out io.Writer, sub string) error {
	var body struct {
		Sessions []struct {
			Ref       string `json:"ref"`
			SID       string `json:"sid"`
			CreatedAt int64  `json:"created_at_unix_ms"`
			ExpiresAt int64  `json:"expires_at_unix_ms"`
		} `json:"sessions"`
	}
	if err := c.do(ctx, http.MethodGet, "/admin/sessions", url.Values{"sub": {sub}}, &body); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tSID\tLOGGED IN\tEXPIRES")
	for _, s := range body.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Ref, s.SID,
			time.UnixMilli(s.CreatedAt).UTC().Format(time.RFC3339), time.UnixMilli(s.ExpiresAt).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func (c adminClient) revoke(ctx context.Context, out io.Writer, sub, ref string) error {
	path, q := "/admin/sessions", url.Values{"sub": {sub}}
	if ref != "" {
		path, q = "/admin/sessions/"+url.PathEscape(ref), url.Values{}
	}
	var body struct {
		Ended int `json:"ended"`
	}
	if err := c.do(ctx, http.MethodDelete, path, q, &body); err != nil {
		return err
	}
	fmt.Fprintf(out, "ended %d session(s)\n", body.Ended)
	return nil
}

// do sends one request with query q (plus the frontend, when given) and
// decodes a 200's JSON into v; other answers become errors carrying the
// server's error code.
func (c adminClient) do(ctx context.Context, method, path string, q url.Values, v any) error {
	if c.frontend != "" {
		q.Set("frontend", c.frontend)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("call the admin listener: %w", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = dec.Decode(&e)
		return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error, e.Description)
	}
	if err := dec.Decode(v); err != nil {
		return errors.New("the admin listener answered something other than JSON")
	}
	return nil
}
