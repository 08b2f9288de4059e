package envoy

import (
	"bytes"
	_ "embed"
	"fmt"
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
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render envoy config: %w", err)
	}
	return b.Bytes(), nil
}
