package authz

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestRequestID: a denial's log line names the request by Envoy's
// x-request-id under request_id, the attribute oidcflow uses too, and a
// refresh's context carries it so the Refresher's lines name it as well.
func TestRequestID(t *testing.T) {
	t.Parallel()
	t.Run("denial_log_line", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.check(t, api(map[string]string{csrfHeader: ""})(e))
		var lines int
		sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("not a JSON log line: %s", sc.Text())
			}
			lines++
			if line["request_id"] != "req-1" {
				t.Errorf("request_id = %v in %s", line["request_id"], sc.Text())
			}
			if _, ok := line["x-request-id"]; ok {
				t.Errorf("the old attribute name is still logged: %s", sc.Text())
			}
		}
		if lines == 0 {
			t.Fatal("the denial was not logged")
		}
	})
	t.Run("refresh_context", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.check(t, api(nil)(e)) // not due: the refresher is not asked
		if n := e.refresher.calls.Load(); n != 0 {
			t.Fatalf("%d refreshes of a token not due", n)
		}
		expireToken(-time.Second)(t, e)
		if resp := e.check(t, api(nil)(e)); status(resp) != 200 {
			t.Fatalf("refreshed check: %d", status(resp))
		}
		if got, _ := e.refresher.requestID.Load().(string); got != "req-1" {
			t.Fatalf("the refresh's context carries request ID %q, want req-1", got)
		}
	})
}
