package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		wantCode int
		wantLine string
	}{
		{"all pass", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Elapsed":0.1}`, 0, "1 passed, 0 failed, 0 skipped"},
		{"a failure", `{"Action":"output","Package":"p","Test":"TestA","Output":"boom\n"}
{"Action":"fail","Package":"p","Test":"TestA"}
{"Action":"fail","Package":"p"}`, 1, "0 passed, 1 failed, 0 skipped"},
		{"a skip fails the run", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}`, 1, "1 passed, 0 failed, 1 skipped"},
		{"no tests at all", `{"Action":"skip","Package":"p"}`, 1, "0 passed, 0 failed, 0 skipped"},
		{"a package without tests beside passing ones", `{"Action":"skip","Package":"q"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p"}`, 0, "1 passed, 0 failed, 0 skipped"},
		{"build error", `# p
p/x.go:1: syntax error
{"Action":"fail","Package":"p"}`, 1, "0 passed, 0 failed, 0 skipped"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			code := report(strings.NewReader(tc.in), &out)
			if code != tc.wantCode {
				t.Errorf("code = %d, want %d\n%s", code, tc.wantCode, out.String())
			}
			if !strings.Contains(out.String(), tc.wantLine+"\n") {
				t.Errorf("output lacks %q:\n%s", tc.wantLine, out.String())
			}
		})
	}
}
