package authz

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// claimValues renders the configured claims of an ID token's claim set as
// header values, in the order of ids. A claim that is absent, null, an
// object, or not a valid header value renders as "", and its header is then
// only removed. Strings pass as they are, numbers and booleans as JSON,
// arrays of strings and numbers comma-joined.
func claimValues(claimsJSON []byte, ids []identityHeader) []string {
	out := make([]string, len(ids))
	if len(claimsJSON) == 0 {
		return out
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(claimsJSON, &claims); err != nil {
		return out
	}
	for i, h := range ids {
		v := claimValue(claims[h.claim])
		if validHeader(v) && !strings.ContainsRune(v, '\t') {
			out[i] = strings.TrimSpace(v)
		}
	}
	return out
}

func claimValue(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return s
	case 't', 'f':
		return string(raw)
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return ""
		}
		parts := make([]string, 0, len(items))
		for _, it := range items {
			if len(it) > 0 && (it[0] == '[' || it[0] == '{') {
				return ""
			}
			p := claimValue(it)
			if p == "" || strings.Contains(p, ",") {
				return "" // a comma inside an item would make the list ambiguous
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, ",")
	case 'n', '{':
		return ""
	default: // a number
		if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
			return ""
		}
		return string(raw)
	}
}
