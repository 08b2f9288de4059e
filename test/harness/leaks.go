package harness

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LogLeaks reads every log of the stack's processes (each replica, Envoy,
// Redis) whole and reports each secret that appears in one: every token
// the local provider issued, and the named values given (authorization
// codes, cookie values, …). Each report names the secret and the log,
// never the value. Values shorter than 8 bytes are refused: they would
// match by chance.
func (s *Stack) LogLeaks(named map[string][]string) ([]string, error) {
	secrets := map[string][]string{}
	for k, vs := range named {
		for _, v := range vs {
			if len(v) < 8 {
				return nil, fmt.Errorf("log leaks: %s value of %d bytes is too short to look for", k, len(v))
			}
			secrets[k] = append(secrets[k], v)
		}
	}
	if s.Provider != nil {
		secrets["token the provider issued"] = s.Provider.IssuedTokens()
	}
	var found []string
	for _, p := range s.processes() {
		raw, err := os.ReadFile(p.LogPath)
		if err != nil {
			return nil, fmt.Errorf("log leaks: read %s: %w", p.LogPath, err)
		}
		log := string(raw)
		for _, kind := range slices.Sorted(maps.Keys(secrets)) {
			for i, v := range secrets[kind] {
				if strings.Contains(log, v) {
					found = append(found, fmt.Sprintf("%s #%d in %s", kind, i+1, filepath.Base(p.LogPath)))
				}
			}
		}
	}
	return found, nil
}

// LogText is the concatenation of every process log, whole.
func (s *Stack) LogText() (string, error) {
	var b strings.Builder
	for _, p := range s.processes() {
		raw, err := os.ReadFile(p.LogPath)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", p.LogPath, err)
		}
		b.Write(raw)
	}
	return b.String(), nil
}
