package envoy

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"text/template"
)

//go:embed envoy.yaml.tmpl
var configTemplate string

// Ports are the addresses Envoy listens on and forwards to; all on 127.0.0.1.
type Ports struct {
	// ListenPort is where browsers connect (10000 in the demo).
	ListenPort int
	// AdminPort is Envoy's own admin interface.
	AdminPort int
	// BFFGRPCPorts are the ext_authz gRPC listeners of every envoy-bff replica.
	BFFGRPCPorts []int
	// BFFHTTPPorts are the browser-endpoint listeners of every envoy-bff replica.
	BFFHTTPPorts []int
	// APIPort is the protected API.
	APIPort int
	// SPAPort serves the single-page app's static files.
	SPAPort int

	// The fields below place the parts on other hosts (docker-compose,
	// Kubernetes); left empty, everything is on 127.0.0.1.

	// ListenAddress is the address of Envoy's listener and admin (default 127.0.0.1).
	ListenAddress string
	// BFFHosts are the replicas' hosts, parallel to the port lists.
	BFFHosts []string
	// APIHost and SPAHost are the upstreams' hosts.
	APIHost, SPAHost string
	// BenchFloorRoute adds /bench-floor/, the API route without ext_authz:
	// `make bench` measures Envoy's own cost there, the floor of /api/.
	BenchFloorRoute bool
	// BenchNoopAuthzPort, when set, adds /bench-noop-authz/: the API route
	// checked by a second ext_authz filter, configured like envoy-bff's,
	// calling the no-op server on this port (127.0.0.1). `make bench`
	// measures there what the ext_authz round trip costs Envoy itself.
	BenchNoopAuthzPort int
	// AppPrefixes are the path prefixes of frontends other than "/"
	// (e.g. /partner/): each gets its browser endpoints (<prefix>bff/) and
	// its API (<prefix>api/, rewritten to /api/ for the sample API).
	AppPrefixes []string
	// APIRoutes are further APIs, each at /<name>/ (rewritten to /api/ for
	// the sample API) in its own cluster, behind ext_authz with policy
	// `user` and token profile <name> (context extension bff.token), so
	// each API gets the token made for it.
	APIRoutes []APIRoute
	// TLSCertFile and TLSKeyFile, when set, make the browser listener serve
	// HTTPS with this certificate chain and key (PEM files).
	TLSCertFile, TLSKeyFile string
	// AntiforgeryHeader is envoy-bff's antiforgery.header (default X-CSRF):
	// ext_authz sends it to Check with the other headers Check reads.
	AntiforgeryHeader string
}

// CheckHeaders lists, lower case and sorted, the request headers Envoy's
// ext_authz filter sends to Check (allowed_headers) when antiforgery is
// envoy-bff's anti-forgery header: what authz.RequestHeaders says Check
// reads (test/deploy keeps the two in step; this package imports nothing
// of envoy-bff's). Fewer headers make each CheckRequest cheaper to encode,
// send and decode.
func CheckHeaders(antiforgery string) []string {
	out := []string{
		"accept",
		"access-control-request-headers",
		"access-control-request-method",
		"cookie",
		"origin",
		"sec-fetch-mode",
		"sec-fetch-site",
		"traceparent",
		"tracestate",
		"upgrade",
		"x-request-id",
		strings.ToLower(cmp.Or(antiforgery, "X-CSRF")),
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// APIRoute is one extra API of Ports.APIRoutes.
type APIRoute struct {
	// Name is the route's path segment, its cluster's suffix and the token
	// profile envoy-bff uses for it: [a-z0-9_-]{1,64}, not "api", "bff" or
	// "bench-floor", nor an app prefix's name.
	Name string
	// Host is the API's host (default 127.0.0.1); Port its port.
	Host string
	Port int
	// PathRules leaves the route without context extensions: envoy-bff's
	// authz.path_rules then decide its policy, token profile and
	// requirements (ext_authz still runs).
	PathRules bool
}

// endpoint is one upstream address in the template.
type endpoint struct {
	Host string
	Port int
}

// view is what the template sees.
type view struct {
	ListenAddress    string
	ListenPort       int
	AdminPort        int
	ClusterType      string // STATIC for IPs, STRICT_DNS for names
	BFFGRPC, BFFHTTP []endpoint
	API, SPA         endpoint
	BenchFloorRoute  bool
	BenchNoopAuthz   int
	AppPrefixes      []string
	APIRoutes        []apiRoute
	TLSCertFile      string
	TLSKeyFile       string
	CheckHeaders     []string
}

// apiRoute is one extra API in the template.
type apiRoute struct {
	Name      string
	PathRules bool
	endpoint
}

// headerName is a header name the template can list unquoted (RFC 9110 token characters, no YAML specials).
var headerName = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)

// routeName is a valid APIRoute.Name.
var routeName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

func (p Ports) view() (view, error) {
	v := view{ListenAddress: p.ListenAddress, ListenPort: p.ListenPort, AdminPort: p.AdminPort, ClusterType: "STATIC", BenchFloorRoute: p.BenchFloorRoute, BenchNoopAuthz: p.BenchNoopAuthzPort, AppPrefixes: p.AppPrefixes,
		TLSCertFile: p.TLSCertFile, TLSKeyFile: p.TLSKeyFile, CheckHeaders: CheckHeaders(p.AntiforgeryHeader)}
	if !headerName.MatchString(p.AntiforgeryHeader) && p.AntiforgeryHeader != "" {
		return view{}, fmt.Errorf("render envoy config: anti-forgery header %q is not a header name", p.AntiforgeryHeader)
	}
	if (p.TLSCertFile == "") != (p.TLSKeyFile == "") || strings.ContainsAny(p.TLSCertFile+p.TLSKeyFile, "\"\n") {
		return view{}, fmt.Errorf("render envoy config: TLS needs both a certificate and a key file, without quotes or newlines in their paths")
	}
	if v.ListenAddress == "" {
		v.ListenAddress = "127.0.0.1"
	}
	host := func(h string) string {
		if h == "" {
			return "127.0.0.1"
		}
		if net.ParseIP(h) == nil {
			v.ClusterType = "STRICT_DNS"
		}
		return h
	}
	for _, a := range p.AppPrefixes {
		if len(a) < 3 || a[0] != '/' || a[len(a)-1] != '/' || strings.ContainsAny(a, " \"'{}\n") {
			return view{}, fmt.Errorf("render envoy config: app prefix %q must look like /name/", a)
		}
	}
	if len(p.BFFHosts) != 0 && (len(p.BFFHosts) != len(p.BFFGRPCPorts) || len(p.BFFHosts) != len(p.BFFHTTPPorts)) {
		return view{}, fmt.Errorf("render envoy config: %d BFF hosts for %d gRPC and %d HTTP ports", len(p.BFFHosts), len(p.BFFGRPCPorts), len(p.BFFHTTPPorts))
	}
	for i, port := range p.BFFGRPCPorts {
		h := ""
		if len(p.BFFHosts) > 0 {
			h = p.BFFHosts[i]
		}
		v.BFFGRPC = append(v.BFFGRPC, endpoint{host(h), port})
		v.BFFHTTP = append(v.BFFHTTP, endpoint{host(h), p.BFFHTTPPorts[i]})
	}
	seen := map[string]bool{"api": true, "bff": true, "bench-floor": true}
	for _, a := range p.AppPrefixes {
		seen[strings.Trim(a, "/")] = true
	}
	for _, r := range p.APIRoutes {
		if !routeName.MatchString(r.Name) || seen[r.Name] {
			return view{}, fmt.Errorf("render envoy config: API route name %q must match [a-z0-9_-]{1,64}, be unique and not api, bff, bench-floor or an app prefix", r.Name)
		}
		if r.Port <= 0 || r.Port > 65535 {
			return view{}, fmt.Errorf("render envoy config: API route %q: port %d", r.Name, r.Port)
		}
		seen[r.Name] = true
		v.APIRoutes = append(v.APIRoutes, apiRoute{r.Name, r.PathRules, endpoint{host(r.Host), r.Port}})
	}
	v.API = endpoint{host(p.APIHost), p.APIPort}
	v.SPA = endpoint{host(p.SPAHost), p.SPAPort}
	return v, nil
}

// Render fills the template with p.
func Render(p Ports) ([]byte, error) {
	if len(p.BFFGRPCPorts) == 0 || len(p.BFFHTTPPorts) == 0 {
		return nil, fmt.Errorf("render envoy config: at least one envoy-bff replica is required")
	}
	t, err := template.New("envoy").Option("missingkey=error").Parse(configTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse envoy template: %w", err)
	}
	v, err := p.view()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("render envoy config: %w", err)
	}
	return b.Bytes(), nil
}
