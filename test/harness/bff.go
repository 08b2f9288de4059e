package harness

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// BFFOptions is what one envoy-bff replica is started with.
type BFFOptions struct {
	// Bin is the envoy-bff binary (default: $ENVOY_BFF_BIN).
	Bin string
	// Dir holds the config file and the log.
	Dir string
	// Name names the log file (default envoy-bff-<grpc port>).
	Name string
	// Config is the YAML config document; listen addresses are filled in.
	Config map[string]any
	// Env is added to the process environment.
	Env []string
}

// BFF is a running envoy-bff replica.
type BFF struct {
	*Process
	// ConfigPath is the config file the replica was started with.
	ConfigPath string
	GRPCAddr   string
	HTTPAddr   string
	AdminAddr  string
	GRPCPort   int
	HTTPPort   int

	bin string
	dir string
	env []string
}

// NewKeys draws a fresh encryption key and cookie-hash key, shared by every
// replica of one deployment.
func NewKeys() (encKey, hashKey string, err error) {
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("draw keys: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:32]), base64.StdEncoding.EncodeToString(b[32:]), nil
}

// StartBFF writes the config and starts one replica on free ports, then
// waits until its admin listener answers /healthz.
func StartBFF(ctx context.Context, o BFFOptions) (*BFF, error) {
	bin := o.Bin
	if bin == "" {
		var err error
		bin, err = findBinary("ENVOY_BFF_BIN", "envoy-bff", "run `make build`")
		if err != nil {
			return nil, err
		}
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	b := &BFF{
		GRPCAddr:  "127.0.0.1:" + strconv.Itoa(ports[0]),
		HTTPAddr:  "127.0.0.1:" + strconv.Itoa(ports[1]),
		AdminAddr: "127.0.0.1:" + strconv.Itoa(ports[2]),
		GRPCPort:  ports[0],
		HTTPPort:  ports[1],
	}
	cfg := map[string]any{}
	for k, v := range o.Config {
		cfg[k] = v
	}
	// The harness picks the addresses; other listen settings may come from
	// o.Config. No drain delay unless asked: most tests stop replicas at once.
	listen := map[string]any{"shutdown_timeout": "10s", "drain_delay": "0s"}
	if l, ok := o.Config["listen"].(map[string]any); ok {
		for k, v := range l {
			listen[k] = v
		}
	}
	listen["grpc"], listen["http"], listen["admin"] = b.GRPCAddr, b.HTTPAddr, b.AdminAddr
	cfg["listen"] = listen
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal envoy-bff config: %w", err)
	}
	name := o.Name
	if name == "" {
		name = "envoy-bff-" + strconv.Itoa(ports[0])
	}
	path := filepath.Join(o.Dir, name+".yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, fmt.Errorf("write envoy-bff config: %w", err)
	}
	b.ConfigPath, b.bin, b.dir, b.env = path, bin, o.Dir, o.Env
	if err := b.start(ctx, name); err != nil {
		return nil, err
	}
	return b, nil
}

// start runs the replica's process and waits for its listeners.
func (b *BFF) start(ctx context.Context, name string) error {
	p, err := StartProcess(name, b.dir, b.bin, []string{"serve", "--config", b.ConfigPath}, b.env)
	if err != nil {
		return err
	}
	b.Process = p
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := WaitHTTP(wctx, p, "http://"+b.AdminAddr+"/healthz", 200); err != nil {
		p.Stop(time.Second)
		return err
	}
	if err := waitTCP(wctx, p, b.GRPCAddr); err != nil {
		p.Stop(time.Second)
		return err
	}
	return nil
}

// Restart starts the replica again, on the same ports and config, after it
// has stopped (Stop or Kill), and waits until it is ready. Its log continues
// in the same file.
func (b *BFF) Restart(ctx context.Context) error {
	if exited, _ := b.Exited(); !exited {
		return fmt.Errorf("restart %s: still running", b.Name)
	}
	if err := b.start(ctx, b.Name); err != nil {
		return fmt.Errorf("restart %s: %w", b.Name, err)
	}
	return b.WaitReady(ctx)
}

// WaitReady waits until the replica's /readyz says ready (store reachable,
// provider discovered).
func (b *BFF) WaitReady(ctx context.Context) error {
	// Generous: under a full make test a provider's first answers (Keycloak
	// warming up) can time out, and discovery then retries with backoff.
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return WaitHTTP(ctx, b.Process, "http://"+b.AdminAddr+"/readyz", 200)
}

// Metric reads one sample (a full series name with labels, as /metrics
// prints it) from the replica's admin listener; 0 when the series is absent.
func (b *BFF) Metric(series string) (float64, error) {
	resp, err := http.Get("http://" + b.AdminAddr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", b.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", b.Name, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, nil
}

// Reload edits the replica's config file (edit gets the document as the
// file holds it now, listen addresses included), sends SIGHUP, and waits
// until the replica logs the reload's outcome: the "config reloaded" or
// "config reload refused…" line of its JSON log (the stack's format), which
// it returns. The file is replaced by
// a rename, so the replica never reads it half-written.
func (b *BFF) Reload(ctx context.Context, edit func(doc map[string]any)) (string, error) {
	raw, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		return "", fmt.Errorf("reload %s: %w", b.Name, err)
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("reload %s: parse its config: %w", b.Name, err)
	}
	edit(doc)
	if raw, err = yaml.Marshal(doc); err != nil {
		return "", fmt.Errorf("reload %s: marshal its config: %w", b.Name, err)
	}
	tmp := b.ConfigPath + ".new"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return "", fmt.Errorf("reload %s: %w", b.Name, err)
	}
	if err := os.Rename(tmp, b.ConfigPath); err != nil {
		return "", fmt.Errorf("reload %s: %w", b.Name, err)
	}
	before := len(b.reloadLines())
	if err := b.Signal(syscall.SIGHUP); err != nil {
		return "", fmt.Errorf("reload %s: SIGHUP: %w", b.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if lines := b.reloadLines(); len(lines) > before {
			return lines[before], nil
		}
		if exited, err := b.Exited(); exited {
			return "", fmt.Errorf("reload %s: exited (%v); log tail:\n%s", b.Name, err, b.Tail(4000))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("reload %s: no outcome logged: %w; log tail:\n%s", b.Name, ctx.Err(), b.Tail(4000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// reloadLines are the replica's log lines that report a config reload's
// outcome, in order.
func (b *BFF) reloadLines() []string {
	raw, err := os.ReadFile(b.LogPath)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if strings.Contains(line, `"msg":"config reloaded"`) || strings.Contains(line, `"msg":"config reload refused`) {
			out = append(out, line)
		}
	}
	return out
}
